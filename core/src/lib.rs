//! placeholder while the session is written
#![allow(missing_docs)]
mod config;
mod frame;
mod plugin;
mod session;
pub use config::*;
pub use frame::*;
pub use plugin::*;
pub use session::*;
