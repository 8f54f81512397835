//! ispyd on a mio event loop: one thread serves every session.
//!
//! ```no_run
//! use ispyd_mio::ShellManager;
//!
//! // The same configuration file as ispyd-std, served by one loop thread.
//! let manager = ShellManager::from_config_file("ispyd.ini")?;
//! println!("inspect me with: ispy {}", manager.address());
//! # Ok::<(), ispyd_mio::Error>(())
//! ```
//!
//! Two ways to run:
//!
//! - **Standalone**: [`ShellManager`] starts a thread named `ispyd-loop`
//!   that owns the listener and every session. Calls of inline plugins
//!   (the `process` plugin) run on the loop; every other call runs on a
//!   small pool of worker threads (`[ispyd] workers`, default 2, started on
//!   first use) and comes back through a `mio::Waker`, so a slow call never
//!   delays another session.
//! - **Inside the host's own loop**: a program that already runs a
//!   `mio::Poll` makes a [`Server`] on its registry with a [`TokenRange`]
//!   of its own choosing, forwards the events of those tokens to
//!   [`Server::handle_event`], calls [`Server::handle_timeout`] after every
//!   poll, and takes [`Server::poll_timeout`] into its own poll timeout. No
//!   thread is started unless a call needs a worker. See the `host-loop`
//!   example.
//!
//! Everything else is `ispyd-std`'s: the [`Builder`], the [`Plugin`] trait,
//! the configuration, the `process` plugin, the safe socket binding and the
//! peer-credential check. The protocol lives in `ispyd-core`; this crate
//! only moves bytes and decides where jobs run.

mod manager;
mod pool;
mod server;
mod stream;

pub use ispyd_std::{
    Address, Call, CommandInfo, Completion, Error, Interactive, Limits, Outcome, Plugin,
    PluginError, PluginInfo, Setup, Step,
};
pub use manager::ShellManager;
pub use server::{Server, TokenRange};

/// The mio engine, for [`ispyd_std::Builder`]: `Builder<Mio>` starts a
/// [`ShellManager`] of this crate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mio;

/// Configures and starts ispyd on the mio engine (see [`ispyd_std::Builder`]).
pub type Builder = ispyd_std::Builder<Mio>;
