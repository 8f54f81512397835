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
//!    choose the plugins it names with [`Registry::from_config`], and build
//!    a [`Host`].
//! 2. For each connection, ask [`admit`] (peer uid, sessions open); on a
//!    [`Refusal`], write its message and close. Otherwise create a
//!    [`Session`] and a [`Dispatcher`] beside it.
//! 3. Whenever something happens, feed it in, with the current time:
//!    - bytes read: [`Session::handle_input`] (read only while
//!      [`Session::wants_input`]),
//!    - end of input: [`Session::handle_eof`],
//!    - bytes written: [`Session::handle_written`],
//!    - a job done: [`Dispatcher::handle_done`],
//!    - a timer expired: [`Session::handle_timeout`],
//!    - the host stops: [`Session::handle_shutdown`].
//! 4. After every input, in this order:
//!    - take actions with [`Dispatcher::poll_action`] until it returns
//!      `None`: [`Action::Run`] a job (on this thread when
//!      [`Job::is_inline`], elsewhere otherwise) and hand its [`JobDone`]
//!      back; [`Action::Forget`] a job given up on; on [`Action::Close`],
//!      write what is left and close;
//!    - write what [`Session::poll_transmit`] offers as far as the socket
//!      takes it, reporting each write with [`Session::handle_written`]
//!      (register write interest while [`Session::wants_write`]), and go
//!      back to the actions if a write let processing resume;
//!    - arm the one timer from [`Session::poll_timeout`].
//!
//! The client's side of framed mode is sans-IO too: a [`Client`] is fed
//! the server's bytes and polled for [`ClientEvent`]s; `ispy` drives it
//! over a socket, and the tests drive it against a [`Session`] in memory.
//!
//! The wire protocol (text mode and framed mode) is specified in
//! `PROTOCOL.md` at the root of the repository.
//!
//! # Testing
//!
//! With the `testing` feature (off in what ships, as quinn-proto keeps its
//! fuzzing scaffolding behind a cfg), `op` holds the one operation type
//! (`op::Op`) that the property tests and the fuzz targets (`fuzz/` at the
//! root of the repository) play against a session, with an in-memory driver
//! that checks the session's invariants after every operation.

// Memory safety is the compiler's here, not a sanitizer's: the fuzz
// targets can run without AddressSanitizer (fuzz/README.md).
#![forbid(unsafe_code)]

mod admission;
pub mod audit;
mod client;
mod command;
mod config;
mod dispatch;
mod frame;
mod help;
mod mode;
mod name;
#[cfg(any(test, feature = "testing"))]
pub mod op;
mod plugin;
mod progress;
mod received;
mod render;
pub mod secret;
mod session;
mod shell;
mod signal;
mod telnet;

pub use admission::{Refusal, admit, may_inspect};
pub use audit::Peer;
pub use client::{Client, ClientError, ClientEvent, GREETING_LIMIT};

pub use command::{CommandLine, parse_command};
pub use config::{
    Address, Config, ConfigError, ConfigProblem, ConfigWarning, DEFAULT_MAX_OUTPUT,
    DEFAULT_WORKERS, EngineKind, Limits, Listen, MAIN_SECTION, Setting, SettingKind,
    is_loopback_host, is_loopback_ip, parse_bool,
};
pub use dispatch::{Action, Dispatcher, Job, JobDone};
pub use frame::{
    CLIENT_HELLO, Decoded, Frame, FrameError, MAX_FILE_NAME, MAX_FRAME, PROTOCOL_VERSION,
    SERVER_HELLO, decode, find_server_hello, is_file_name,
};
pub use name::Name;
pub use plugin::{
    Attachment, CommandInfo, Execution, Interactive, Interrupt, Outcome, Plugin, PluginError,
    PluginInfo, Registry, Report, Step,
};
pub use progress::{Progress, ProgressWaker};
pub use render::{ECHO_LIMIT, SCHEMA_VERSION, echoed, table};
pub use session::{
    Call, CallId, CloseReason, Completing, Completion, Event, Feed, OUTPUT_HIGH_WATER, Session,
    UnexpectedResult,
};
pub use shell::{Host, Hosts};
pub use signal::Signal;
