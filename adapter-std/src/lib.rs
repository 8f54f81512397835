//! ispyd on std threads: embed an introspection shell in a Rust program.
//!
//! ```no_run
//! use ispyd_std::ShellManager;
//!
//! // As the 2012 Python original: everything from an ini file.
//! let manager = ShellManager::from_config_file("ispyd.ini")?;
//! println!("inspect me with: ispy {}", manager.address());
//! # Ok::<(), ispyd_std::Error>(())
//! ```
//!
//! A listener thread (`ispyd-listener`) accepts connections on a UNIX socket
//! (mode 0600, peer credentials checked) or a loopback TCP port, and starts
//! a thread per session, up to `max_sessions`. The protocol itself lives in
//! `ispyd-core`; this crate only moves bytes and runs plugin calls.
//!
//! Plugins implement [`Plugin`]; add them with [`Builder::plugin`]. The
//! [`process`] plugin is built in.
//!
//! The OS-facing pieces every adapter needs are public here for the others
//! to reuse: [`socket`] (binding safely), [`peer`] (credentials) and
//! [`process`].

mod manager;
pub mod peer;
pub mod process;
pub mod profile;
mod serve;
mod setup;
pub mod signals;
pub mod socket;
pub mod stream;

pub use ispyd_core::{
    Address, Call, CommandInfo, Completion, Interactive, Limits, Outcome, Plugin, PluginError,
    PluginInfo, Progress, Setting, SettingKind, Step,
};
pub use manager::ShellManager;
pub use process::ProcessPlugin;
pub use setup::{
    Builder, Engine, Error, Listener, Setup, Threads, bind, quiet_plugin_panics, read_config,
};
