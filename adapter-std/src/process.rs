//! The process plugin.
