//! placeholder
use std::time::Instant;
/// Identifies one plugin call (or takeover feed) of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);
/// A plugin command the adapter must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Give it back with the completion.
    pub id: CallId,
    /// Plugin name.
    pub plugin: String,
    /// Command name.
    pub command: String,
    /// Rest of the line, trimmed.
    pub args: String,
    /// The session's number, unique in the process.
    pub session: u64,
}
/// A line for a running takeover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// Give it back with the completion.
    pub id: CallId,
    /// The line, or None at end of input.
    pub line: Option<String>,
}
/// The result of a call or feed, handed back to the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Finished with this output.
    Output(String),
    /// Failed with this message.
    Error(String),
    /// A takeover is (still) running: show output, then prompt.
    Interactive { output: String, prompt: String },
}
/// What the adapter must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event { Call(Call), Feed(Feed), Abandon(CallId), Close }
pub struct Session { _now: Instant }
