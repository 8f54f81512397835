//! Binding the listening socket without exposing it or stealing someone
//! else's.
//!
//! The rules come from the design's "Security model": a UNIX socket is 0600
//! from the moment anyone else could reach it, lives in a directory its user
//! controls, never replaces a socket a live process is serving, replaces a
//! stale one, and is removed when the process exits in an orderly way. TCP
//! listens on loopback unless remote access is explicitly allowed.
//!
//! # How a UNIX socket gets its mode without touching the umask
//!
//! `bind(2)` creates the file with `0777 & !umask`, and the umask is
//! process-wide: changing it around the bind would race with every other
//! thread of the host that creates files. Instead the socket is born in a
//! fresh private directory (mode 0700) beside the target, where nobody else
//! can reach it; there it is `chmod`ed to 0600 and then published under its
//! real name with `link(2)`, which fails with `EEXIST` instead of replacing
//! whatever holds that name. The staging name and directory are removed
//! afterwards, on success and on every error path. Staging in the same
//! directory keeps both names on one filesystem, which `link` needs.
//!
//! One visible consequence: `UnixListener::local_addr` reports the staging
//! path, which no longer exists. Use [`UnixSocketFile::path`] instead.
//!
//! # Removal
//!
//! The file is removed when its [`UnixSocketFile`] (or [`SocketPathGuard`])
//! is dropped, and, for owners that are leaked or outlived by
//! `std::process::exit`, by an `atexit` handler. Both remove the path only if
//! it is still the same inode this process created, and only in the process
//! that created it, so neither a socket another process put there later nor,
//! after `fork`, the parent's socket is ever deleted.

use std::fmt;
use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::mem;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once, TryLockError};
use std::time::Duration;

use ispyd_core::is_loopback_ip;

use crate::peer::effective_uid;

/// The longest UNIX socket path, in bytes, that `bind(2)` and `connect(2)`
/// accept on this platform (107 on Linux): `sun_path` less its NUL.
pub const MAX_UNIX_PATH_LEN: usize =
    mem::size_of::<libc::sockaddr_un>() - mem::offset_of!(libc::sockaddr_un, sun_path) - 1;

/// The name of the socket inside its staging directory; one byte, so that the
/// staging path is as short as possible.
const STAGED_NAME: &str = "s";

/// How many staging directory names to try before giving up; names only
/// collide with other binders or with leftovers of a crashed process.
const STAGING_ATTEMPTS: u32 = 64;

/// Why a listening socket could not be set up.
///
/// Every message names the path or address and says what to do about it.
#[derive(Debug)]
#[non_exhaustive]
pub enum BindError {
    /// A live process is listening on the path; it is left alone.
    InUse(PathBuf),
    /// Something other than a socket (file, directory, symlink) holds the
    /// path; it is never deleted.
    NotASocket(PathBuf),
    /// The directory that would hold the socket is missing or could let
    /// another user replace the socket.
    UnsafeDirectory {
        /// The directory that was checked.
        dir: PathBuf,
        /// What is wrong with it.
        why: DirectoryProblem,
    },
    /// The path (or the short staging path ispyd needs beside it) does not
    /// fit in a `sockaddr_un`.
    PathTooLong {
        /// The requested socket path.
        path: PathBuf,
        /// Bytes needed.
        len: usize,
        /// Bytes allowed ([`MAX_UNIX_PATH_LEN`]).
        max: usize,
    },
    /// A TCP host resolved to an address that is not loopback and remote
    /// access was not allowed.
    Remote {
        /// The requested `host:port`.
        listen: String,
        /// The offending resolved address.
        addr: SocketAddr,
    },
    /// An operating system call failed.
    Io {
        /// What was being done, naming the path or address.
        what: String,
        /// The OS error.
        source: io::Error,
    },
}

/// What makes a directory unfit to hold the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DirectoryProblem {
    /// The directory does not exist.
    Missing,
    /// The path exists but is not a directory.
    NotADirectory,
    /// Other users may create and delete entries (no sticky bit), so they
    /// could swap the socket for their own.
    WritableByOthers {
        /// The directory's permission bits.
        mode: u32,
    },
    /// The directory belongs to another user (not root), who could swap the
    /// socket for their own.
    OwnedByOtherUser {
        /// The directory's owner.
        owner: u32,
        /// This process's effective uid.
        euid: u32,
    },
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::InUse(path) => write!(
                f,
                "{} is in use by a live process; choose another listen path or stop that process \
                 (several processes of one program, such as gunicorn or uWSGI workers, each need \
                 their own: put %(pid)s in the path, e.g. /run/app/ispyd-%(pid)s.sock)",
                path.display()
            ),
            BindError::NotASocket(path) => write!(
                f,
                "{} exists and is not a socket, so ispyd will not replace it; \
                 remove it yourself or choose another listen path",
                path.display()
            ),
            BindError::UnsafeDirectory { dir, why } => {
                let dir = dir.display();
                match why {
                    DirectoryProblem::Missing => write!(
                        f,
                        "directory {dir} for the listen socket does not exist; \
                         create it (mkdir -m 700 {dir}) or choose another listen path"
                    ),
                    DirectoryProblem::NotADirectory => write!(
                        f,
                        "{dir} is not a directory, so the listen socket cannot be created in it; \
                         choose another listen path"
                    ),
                    DirectoryProblem::WritableByOthers { mode } => write!(
                        f,
                        "directory {dir} (mode {mode:04o}) is writable by other users and has no \
                         sticky bit, so they could replace the listen socket; use a private \
                         directory (or chmod o-w {dir}), or a sticky one like /tmp"
                    ),
                    DirectoryProblem::OwnedByOtherUser { owner, euid } => write!(
                        f,
                        "directory {dir} belongs to uid {owner}, not to this process's user \
                         (uid {euid}) or root, so its owner could replace the listen socket; \
                         use a directory you own, such as $XDG_RUNTIME_DIR"
                    ),
                }
            }
            BindError::PathTooLong { path, len, max } => write!(
                f,
                "listen path {} needs {len} bytes but UNIX socket paths are limited to {max}; \
                 choose a shorter path (for example in /tmp or $XDG_RUNTIME_DIR)",
                path.display()
            ),
            BindError::Remote { listen, addr } => write!(
                f,
                "refusing to listen on {addr} (from {listen}): it is not a loopback address, so \
                 anyone who can reach it could inspect this process; listen on localhost, or set \
                 allow_remote = true if you really mean it"
            ),
            BindError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BindError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_error(what: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> BindError {
    move |source| BindError::Io {
        what: what(),
        source,
    }
}

mod cleanup;
mod probe;
mod tcp;
mod unix;

#[cfg(test)]
mod tests;

use cleanup::*;
pub(crate) use probe::connect_nonblocking;
pub use probe::{Probe, probe};
pub use tcp::bind_tcp;
use unix::*;
pub use unix::{SocketPathGuard, UnixSocketFile, bind_unix};
