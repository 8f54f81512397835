//! The sans-IO core of ispyd: one [`Session`] per connection, fed bytes and
//! time, polled for bytes to send and for things to do.
//!
//! The core is deterministic. It has no networking, runs no threads, reads
//! no clock and no files, and never calls a plugin: it asks its driver (an
//! adapter) to, with an [`Event`], and takes the result back as an input.
//! `clippy.toml` beside this crate makes those rules errors.
//!
//! # Driving a session
//!
//! 1. Describe the host once: [`Config::parse`] the configuration text,
//!    gather the plugins' [`PluginInfo`] (a [`Registry`] does this), and
//!    build a [`Host`].
//! 2. For each connection, [`Session::new`]. Then, whenever something
//!    happens, feed it in:
//!    - bytes read: [`Session::handle_input`] (read only while
//!      [`Session::wants_input`]),
//!    - end of input: [`Session::handle_eof`],
//!    - a plugin's result: [`Session::complete`],
//!    - a timer expired: [`Session::handle_timeout`].
//! 3. After every input, call [`Session::poll_output`] until it returns
//!    [`Output::Timeout`]: write what it transmits, act on its events
//!    ([`Event::Call`]: run it, e.g. with [`Registry::execute`], and hand the
//!    [`Completion`] back; [`Event::Close`]: finish writing and close), and
//!    arm a timer for the instant it names (fire it at once if that instant
//!    is already past).
//!
//! The wire protocol (text mode and framed mode) is specified in
//! `PROTOCOL.md` at the root of the repository.
//!
//! # Testing
//!
//! [`op`] holds the one operation type ([`op::Op`]) that the property tests
//! and the fuzz targets (`fuzz/` at the root of the repository) play
//! against a session, with an in-memory driver that checks the session's
//! invariants after every operation.

mod command;
mod config;
mod frame;
mod help;
pub mod op;
mod plugin;
mod session;
mod shell;
mod telnet;

pub use command::{CommandLine, parse_command};
pub use config::{
    Address, Config, ConfigError, ConfigProblem, ConfigWarning, Limits, Listen, MAIN_SECTION,
    is_loopback_host, parse_bool,
};
pub use frame::{
    CLIENT_HELLO, Decoded, Frame, FrameError, MAX_FRAME, PROTOCOL_VERSION, SERVER_HELLO, decode,
    find_server_hello,
};
pub use plugin::{
    CommandInfo, Execution, Interactive, Outcome, Plugin, PluginError, PluginInfo, Registry, Step,
};
pub use session::{
    Call, CallId, Completion, Event, Feed, OUTPUT_HIGH_WATER, Output, Refusal, Session,
};
pub use shell::Host;
