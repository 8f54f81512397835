//! The audit trail: who connected, who was turned away and why, what each
//! session did with the features that run code or change the process, and
//! how each session ended.
//!
//! Records go through the [`log`] facade with target [`TARGET`], so they
//! land wherever the host sends its own logs (a Rust host's logger; in a
//! Python host, the `ispyd.audit` logger of Python's `logging`). Nothing
//! here runs per request or while ispyd is idle: one record per
//! connection, per gated command and per line typed into a gated
//! takeover (the console, the debugger), and one per session end.
//!
//! The adapter records [`accepted`] once the session's first prompt is on
//! its way (a logger may be slow, and in a Python host takes the GIL) and
//! [`refused`] after the refusal is written; the session records the rest.

use std::fmt;

use crate::admission::Refusal;
use crate::render::escaped;
use crate::session::CloseReason;

/// The `log` target of every audit record.
pub const TARGET: &str = "ispyd::audit";

/// The most characters of a typed line or command's arguments one record
/// keeps (control characters escaped; the rest is counted, not dropped
/// silently): a pasted megabyte must not become a megabyte log record.
pub const LINE_LIMIT: usize = 4096;

/// What the adapter learnt of a connecting peer, for [`crate::admit`] and
/// for the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    /// As [`crate::admit`] takes it: `Some(Some(uid))` for a process on this
    /// machine, `Some(None)` when its uid could not be found, `None` for a
    /// peer on another machine.
    pub uid: Option<Option<u32>>,
    /// The peer's pid, when the transport tells it (`SO_PEERCRED`).
    pub pid: Option<u32>,
    /// The peer's gid, when the transport tells it.
    pub gid: Option<u32>,
    /// Where it connected: the socket file's path, or the peer's
    /// `address:port` over TCP.
    pub address: String,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(pid) = self.pid {
            write!(f, "pid {pid}, ")?;
        }
        match self.uid {
            Some(Some(uid)) => write!(f, "uid {uid}")?,
            Some(None) => f.write_str("uid unknown")?,
            None => f.write_str("remote peer")?,
        }
        if let Some(gid) = self.gid {
            write!(f, ", gid {gid}")?;
        }
        write!(f, ", {}", escaped(&self.address, LINE_LIMIT))
    }
}

/// Records a session that began.
pub fn accepted(session: u64, peer: &Peer) {
    log::info!(target: TARGET, "session {session} opened: {peer}");
}

/// Records a connection turned away, and why.
pub fn refused(peer: &Peer, refusal: &Refusal) {
    log::warn!(target: TARGET, "connection refused: {peer}: {refusal}");
}

/// Records a gated command a session runs (`gate` is the section that
/// enables it).
pub(crate) fn gated(session: u64, gate: &str, plugin: &str, command: &str, args: &str) {
    log::info!(
        target: TARGET,
        "session {session} ran {plugin} {command} [{gate}]: {}",
        escaped(args, LINE_LIMIT)
    );
}

/// Records a line typed into a gated takeover (`None`: end of input).
pub(crate) fn line(session: u64, gate: &str, takeover: &str, line: Option<&str>) {
    match line {
        Some(line) => log::info!(
            target: TARGET,
            "session {session} {takeover} [{gate}] line: {}",
            escaped(line, LINE_LIMIT)
        ),
        None => log::info!(
            target: TARGET,
            "session {session} {takeover} [{gate}]: end of input"
        ),
    }
}

/// Records a session's end and its reason.
pub(crate) fn ended(session: u64, reason: &CloseReason) {
    log::info!(target: TARGET, "session {session} closed: {reason}");
}

/// Records that a plugin showed what it hides by default (`environ
/// --reveal`): `what` says what was shown.
pub fn revealed(session: u64, plugin: &str, command: &str, what: &str) {
    log::info!(target: TARGET, "session {session} ran {plugin} {command} --reveal: {what}");
}
