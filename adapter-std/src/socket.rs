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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
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
                "{} is in use by a live process; choose another listen path or stop that process",
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

// ---------------------------------------------------------------------------
// UNIX sockets
// ---------------------------------------------------------------------------

/// A listening UNIX socket together with the file that names it.
///
/// Dropping it removes the file (if it is still ours) and closes the socket.
#[derive(Debug)]
#[must_use = "dropping it closes the listener and removes the socket file"]
pub struct UnixSocketFile {
    // Declared first so it drops first: the name disappears before the socket
    // closes, so there is no moment in which another process finds a stale
    // file of ours and spends effort replacing it.
    guard: SocketPathGuard,
    listener: UnixListener,
}

impl UnixSocketFile {
    /// The listener, for `accept` or for `try_clone` into an event loop.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// The socket's path, made absolute at bind time so that a later
    /// `chdir` does not change which file is removed.
    pub fn path(&self) -> &Path {
        self.guard.path()
    }

    /// Splits into the listener and the guard that removes the file.
    ///
    /// For drivers that must own the listener (e.g. to hand it to mio). Keep
    /// the guard alive as long as the listener and drop it first.
    pub fn into_parts(self) -> (UnixListener, SocketPathGuard) {
        (self.listener, self.guard)
    }
}

/// Removes a socket file at drop, if it is still the one this process made.
///
/// Also registered for removal at process exit, in case it is never dropped.
#[derive(Debug)]
#[must_use = "dropping it removes the socket file"]
pub struct SocketPathGuard {
    id: u64,
    path: PathBuf,
    dev: u64,
    ino: u64,
    pid: u32,
}

impl SocketPathGuard {
    fn register(path: PathBuf, dev: u64, ino: u64) -> SocketPathGuard {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let guard = SocketPathGuard {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            path,
            dev,
            ino,
            pid: process::id(),
        };
        AT_EXIT.call_once(|| {
            // SAFETY: the handler is a plain `extern "C" fn()` that never
            // unwinds. A non-zero return only means it could not be
            // registered; then removal relies on Drop alone.
            unsafe { libc::atexit(remove_registered_at_exit) };
        });
        lock_registry().push(guard.registration());
        guard
    }

    fn registration(&self) -> Registered {
        Registered {
            id: self.id,
            path: self.path.clone(),
            dev: self.dev,
            ino: self.ino,
            pid: self.pid,
        }
    }

    /// The absolute path of the socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketPathGuard {
    fn drop(&mut self) {
        lock_registry().retain(|entry| entry.id != self.id);
        // A forked child that drops its copy must not remove the parent's
        // socket.
        if self.pid == process::id() {
            remove_if_same(&self.path, self.dev, self.ino);
        }
    }
}

/// Creates a listening UNIX socket at `path`, mode 0600 from the start.
///
/// Call it once per listen path at start-up. The directory holding `path`
/// must exist, belong to this user or root, and not be writable by others
/// unless it is sticky (like /tmp). A stale socket at `path` (nobody
/// listening) is replaced; a live one gives [`BindError::InUse`]; anything
/// else gives [`BindError::NotASocket`] and is left untouched.
///
/// Deciding whether an existing socket is live means connecting to it, so
/// its owner sees one connection that closes at once.
pub fn bind_unix(path: &Path) -> Result<UnixSocketFile, BindError> {
    let len = path.as_os_str().len();
    if len > MAX_UNIX_PATH_LEN {
        return Err(BindError::PathTooLong {
            path: path.to_path_buf(),
            len,
            max: MAX_UNIX_PATH_LEN,
        });
    }
    let parent = match path.parent() {
        Some(parent) if path.file_name().is_some() => parent,
        _ => {
            return Err(BindError::Io {
                what: format!("listen path {} does not name a file", path.display()),
                source: io::ErrorKind::InvalidInput.into(),
            });
        }
    };
    // A bare file name lives in the working directory.
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    check_directory(parent)?;

    let staging = Staging::create(parent, path)?;
    let listener = UnixListener::bind(&staging.socket).map_err(io_error(|| {
        format!("creating a socket in {}", staging.dir.display())
    }))?;
    // Nobody else can reach the socket inside the 0700 staging directory, so
    // narrowing it here leaves no window in which it is wider.
    fs::set_permissions(&staging.socket, Permissions::from_mode(0o600)).map_err(io_error(
        || format!("setting mode 0600 on {}", staging.socket.display()),
    ))?;
    // Taken from the staging name, which only we can touch, so the identity
    // is certainly that of our socket.
    let meta = fs::symlink_metadata(&staging.socket).map_err(io_error(|| {
        format!("inspecting {}", staging.socket.display())
    }))?;
    publish(&staging.socket, path)?;
    drop(staging);

    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(UnixSocketFile {
        guard: SocketPathGuard::register(absolute, meta.dev(), meta.ino()),
        listener,
    })
}

/// The error if `dir` may not hold the socket.
fn check_directory(dir: &Path) -> Result<(), BindError> {
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(BindError::UnsafeDirectory {
                dir: dir.to_path_buf(),
                why: DirectoryProblem::Missing,
            });
        }
        Err(err) => {
            return Err(BindError::Io {
                what: format!("inspecting directory {}", dir.display()),
                source: err,
            });
        }
    };
    match directory_problem(meta.is_dir(), meta.mode(), meta.uid(), effective_uid()) {
        None => Ok(()),
        Some(why) => Err(BindError::UnsafeDirectory {
            dir: dir.to_path_buf(),
            why,
        }),
    }
}

/// Judges a directory's metadata: kept free of I/O so every case is testable
/// without root.
///
/// Group write is accepted: with per-user groups it is common and harmless,
/// and refusing it would push people towards world-readable workarounds.
fn directory_problem(is_dir: bool, mode: u32, owner: u32, euid: u32) -> Option<DirectoryProblem> {
    const OTHERS_WRITE: u32 = 0o002;
    const STICKY: u32 = 0o1000;
    if !is_dir {
        Some(DirectoryProblem::NotADirectory)
    } else if owner != euid && owner != 0 {
        Some(DirectoryProblem::OwnedByOtherUser { owner, euid })
    } else if mode & OTHERS_WRITE != 0 && mode & STICKY == 0 {
        Some(DirectoryProblem::WritableByOthers {
            mode: mode & 0o7777,
        })
    } else {
        None
    }
}

/// A private directory beside the target in which the socket is created;
/// removed with whatever is left in it when dropped.
struct Staging {
    dir: PathBuf,
    socket: PathBuf,
}

impl Staging {
    fn create(parent: &Path, target: &Path) -> Result<Staging, BindError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // Bytes of the staging socket path other than the directory name.
        let fixed = parent.join("x").join(STAGED_NAME).as_os_str().len() - 1;
        let room = MAX_UNIX_PATH_LEN.saturating_sub(fixed);
        if room == 0 {
            // The target fits only because its name is shorter than the
            // staging suffix; there is no safe way to stage it.
            return Err(BindError::PathTooLong {
                path: target.to_path_buf(),
                len: fixed + 1,
                max: MAX_UNIX_PATH_LEN,
            });
        }
        let pid = process::id();
        for _ in 0..STAGING_ATTEMPTS {
            let name = staging_name(pid, COUNTER.fetch_add(1, Ordering::Relaxed), room);
            let dir = parent.join(name);
            match DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {}
                // Someone else's (or a crashed process's) directory: never
                // reuse it, since we cannot vouch for who else can enter it.
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => {
                    return Err(BindError::Io {
                        what: format!("creating a private directory in {}", parent.display()),
                        source: err,
                    });
                }
            }
            let staging = Staging {
                socket: dir.join(STAGED_NAME),
                dir,
            };
            // The umask may have narrowed the mode (even below what we need
            // to bind inside); set it exactly. Never wider than 0700.
            fs::set_permissions(&staging.dir, Permissions::from_mode(0o700)).map_err(io_error(
                || format!("setting mode 0700 on {}", staging.dir.display()),
            ))?;
            return Ok(staging);
        }
        Err(BindError::Io {
            what: format!("creating a private directory in {}", parent.display()),
            source: io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{STAGING_ATTEMPTS} candidate names were all taken"),
            ),
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Best effort: a leftover is private to us and harmless.
        let _ = fs::remove_file(&self.socket);
        let _ = fs::remove_dir(&self.dir);
    }
}

/// A staging directory name of at most `room` bytes.
///
/// The descriptive name says who left it if a crash ever does; the short
/// form exists for directories so deep that only a few bytes remain.
/// Uniqueness does not depend on the name: `mkdir` fails on a taken one.
fn staging_name(pid: u32, n: u64, room: usize) -> String {
    let long = format!(".ispyd-{pid}-{n}");
    if long.len() <= room {
        return long;
    }
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut mixed = u64::from(pid).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n;
    let mut name = String::from(if room >= 2 { "." } else { "" });
    while name.len() < room.min(13) {
        name.push(char::from(DIGITS[(mixed % 36) as usize]));
        mixed /= 36;
    }
    name
}

/// Gives the staged socket its real name without ever replacing a live one.
fn publish(staged: &Path, path: &Path) -> Result<(), BindError> {
    let link_error = || format!("moving the new socket into place at {}", path.display());
    match fs::hard_link(staged, path) {
        Ok(()) => return Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(io_error(link_error)(err)),
    }
    remove_stale(path)?;
    match fs::hard_link(staged, path) {
        Ok(()) => Ok(()),
        // Another process took the path between our unlink and link.
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            Err(BindError::InUse(path.to_path_buf()))
        }
        Err(err) => Err(io_error(link_error)(err)),
    }
}

/// Removes the socket at `path` if nobody listens on it; errors otherwise.
fn remove_stale(path: &Path) -> Result<(), BindError> {
    let inspect = || format!("inspecting {}", path.display());
    let before = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io_error(inspect)(err)),
    };
    if !before.file_type().is_socket() {
        return Err(BindError::NotASocket(path.to_path_buf()));
    }
    match probe(path) {
        Probe::Live => Err(BindError::InUse(path.to_path_buf())),
        Probe::Gone => Ok(()),
        Probe::Unknown(err) => Err(BindError::Io {
            what: format!(
                "checking whether {} is still in use (remove it by hand if no process \
                 listens on it, or choose another listen path)",
                path.display()
            ),
            source: err,
        }),
        Probe::Stale => {
            // Only remove the very file we probed: if it was swapped in the
            // meantime, the newcomer is probably live. (A swap between this
            // check and the unlink cannot be excluded; POSIX has no
            // "unlink if inode" call.)
            match fs::symlink_metadata(path) {
                Ok(now) if now.dev() == before.dev() && now.ino() == before.ino() => {}
                Ok(_) => return Err(BindError::InUse(path.to_path_buf())),
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(err) => return Err(io_error(inspect)(err)),
            }
            match fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(err) => Err(io_error(|| {
                    format!("removing stale socket {}", path.display())
                })(err)),
            }
        }
    }
}

/// What connecting to an existing socket file revealed.
enum Probe {
    /// Someone accepted the connection or has a full backlog.
    Live,
    /// Refused: the file outlived its listener.
    Stale,
    /// The file vanished.
    Gone,
    /// Could not tell (e.g. no permission to connect).
    Unknown(io::Error),
}

/// Connects to `path` without blocking.
///
/// `UnixStream::connect` would block while a live but busy listener's
/// backlog is full, hanging start-up; a non-blocking connect answers at once.
fn probe(path: &Path) -> Probe {
    let (addr, addr_len) = match sockaddr_un(path) {
        Ok(addr) => addr,
        Err(err) => return Probe::Unknown(err),
    };
    // SAFETY: plain socket creation; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Probe::Unknown(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Err(err) = set_nonblocking_cloexec(&fd) {
        return Probe::Unknown(err);
    }
    // SAFETY: `addr` is a valid sockaddr_un and `addr_len` its used length.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&raw const addr).cast::<libc::sockaddr>(),
            addr_len,
        )
    };
    if rc == 0 {
        return Probe::Live;
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINPROGRESS | libc::EAGAIN) => Probe::Live,
        Some(libc::ECONNREFUSED) => Probe::Stale,
        Some(libc::ENOENT) => Probe::Gone,
        _ => Probe::Unknown(err),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const SOCK_CLOEXEC: libc::c_int = libc::SOCK_CLOEXEC;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SOCK_CLOEXEC: libc::c_int = 0;

fn set_nonblocking_cloexec(fd: &OwnedFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
        // Redundant where SOCK_CLOEXEC exists; closes the gap elsewhere.
        if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn sockaddr_un(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain integers and arrays; all-zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path does not fit in a UNIX socket address",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    let len = mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

/// Removes `path` if it is still the socket identified by `dev` and `ino`.
fn remove_if_same(path: &Path, dev: u64, ino: u64) {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.file_type().is_socket() && meta.dev() == dev && meta.ino() == ino {
            let _ = fs::remove_file(path);
        }
    }
}

// ---------------------------------------------------------------------------
// Removal at exit
// ---------------------------------------------------------------------------

/// One socket file to remove at exit.
struct Registered {
    id: u64,
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// The process that bound it; a forked child must not remove it.
    pid: u32,
}

static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

fn lock_registry() -> MutexGuard<'static, Vec<Registered>> {
    // The list stays consistent even if a holder panicked: every change is a
    // single push or retain.
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

extern "C" fn remove_registered_at_exit() {
    // Waiting without bound could hang exit: after `fork`, the lock may be
    // held by a thread that does not exist in the child. Other threads keep
    // running during `exit`, so a real holder lets go within microseconds.
    let mut registry = None;
    for _ in 0..100 {
        match REGISTRY.try_lock() {
            Ok(guard) => registry = Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => registry = Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        }
        break;
    }
    let Some(mut registry) = registry else {
        return;
    };
    let pid = process::id();
    for entry in registry.iter().filter(|entry| entry.pid == pid) {
        remove_if_same(&entry.path, entry.dev, entry.ino);
    }
    registry.retain(|entry| entry.pid != pid);
}

// ---------------------------------------------------------------------------
// TCP
// ---------------------------------------------------------------------------

/// Listens on TCP `host:port`; loopback only unless `allow_remote`.
///
/// The configuration already rejects non-loopback hosts without
/// `allow_remote`; this checks again on the resolved addresses, because a
/// name like `localhost` can be made to resolve anywhere. Every resolved
/// address must be loopback, not just the first that binds. `host` is a
/// name or IP address (IPv6 with or without brackets); port 0 picks a free
/// port.
pub fn bind_tcp(host: &str, port: u16, allow_remote: bool) -> Result<TcpListener, BindError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let listen = if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    };
    let resolving = || format!("resolving {listen}");
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(io_error(resolving))?
        .collect();
    if addrs.is_empty() {
        return Err(BindError::Io {
            what: resolving(),
            source: io::Error::new(io::ErrorKind::NotFound, "the name has no addresses"),
        });
    }
    if !allow_remote {
        if let Some(&addr) = addrs.iter().find(|addr| !is_loopback_ip(addr.ip())) {
            return Err(BindError::Remote { listen, addr });
        }
    }
    let mut last_error = None;
    for addr in &addrs {
        match TcpListener::bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(err) => last_error = Some((addr, err)),
        }
    }
    let (addr, source) = last_error.expect("addrs is not empty");
    Err(BindError::Io {
        what: format!("listening on {listen} ({addr})"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::process::Command;

    /// A fresh 0700 directory under the system temp dir, removed on drop.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new() -> TestDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("ispyd-sock-{}-{n}", process::id()));
            let _ = fs::remove_dir_all(&dir);
            DirBuilder::new().mode(0o700).create(&dir).unwrap();
            fs::set_permissions(&dir, Permissions::from_mode(0o700)).unwrap();
            TestDir(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }

        /// A subdirectory with the given permission bits.
        fn subdir(&self, name: &str, mode: u32) -> PathBuf {
            let dir = self.0.join(name);
            fs::create_dir(&dir).unwrap();
            fs::set_permissions(&dir, Permissions::from_mode(mode)).unwrap();
            dir
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn identity(path: &Path) -> (u64, u64) {
        let meta = fs::symlink_metadata(path).unwrap();
        (meta.dev(), meta.ino())
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Sends `message` from a new client and returns what the listener's
    /// first non-empty accepted connection received; skips connections that
    /// closed without data (liveness probes).
    fn round_trip(listener: &UnixListener, path: &Path, message: &[u8]) -> Vec<u8> {
        let mut client = UnixStream::connect(path).unwrap();
        client.write_all(message).unwrap();
        drop(client);
        loop {
            let (mut server, _) = listener.accept().unwrap();
            server
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut received = Vec::new();
            server.read_to_end(&mut received).unwrap();
            if !received.is_empty() {
                return received;
            }
        }
    }

    #[test]
    fn socket_mode_is_0600() {
        let dir = TestDir::new();
        let path = dir.path().join("ispyd.sock");
        let file = bind_unix(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
        assert_eq!(file.path(), path);
    }

    #[test]
    fn bound_socket_accepts_connections() {
        let dir = TestDir::new();
        let path = dir.path().join("ispyd.sock");
        let file = bind_unix(&path).unwrap();
        assert_eq!(round_trip(file.listener(), &path, b"hello"), b"hello");
    }

    #[test]
    fn staging_directory_is_removed_after_bind() {
        let dir = TestDir::new();
        let path = dir.path().join("ispyd.sock");
        let _file = bind_unix(&path).unwrap();
        assert_eq!(entries(dir.path()), ["ispyd.sock"]);
    }

    #[test]
    fn live_socket_is_not_stolen() {
        let dir = TestDir::new();
        let path = dir.path().join("ispyd.sock");
        let first = bind_unix(&path).unwrap();
        let before = identity(&path);

        let err = bind_unix(&path).unwrap_err();
        assert!(matches!(&err, BindError::InUse(p) if p == &path), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "{} is in use by a live process; choose another listen path or stop that process",
                path.display()
            )
        );
        assert_eq!(identity(&path), before);
        assert_eq!(
            round_trip(first.listener(), &path, b"still mine"),
            b"still mine"
        );
        assert_eq!(entries(dir.path()), ["ispyd.sock"]);
    }

    #[test]
    fn stale_socket_is_replaced() {
        let dir = TestDir::new();
        let path = dir.path().join("ispyd.sock");
        // std leaves the file behind when a listener is dropped.
        drop(UnixListener::bind(&path).unwrap());
        let stale = identity(&path);

        let file = bind_unix(&path).unwrap();
        assert_ne!(identity(&path), stale);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(round_trip(file.listener(), &path, b"fresh"), b"fresh");
    }

    #[test]
    fn regular_file_at_path_is_kept() {
        let dir = TestDir::new();
        let path = dir.path().join("ispyd.sock");
        fs::write(&path, "precious").unwrap();

        let err = bind_unix(&path).unwrap_err();
        assert!(
            matches!(&err, BindError::NotASocket(p) if p == &path),
            "{err:?}"
        );
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "precious");
        assert_eq!(entries(dir.path()), ["ispyd.sock"]);
    }

    #[test]
    fn directory_at_path_is_kept() {
        let dir = TestDir::new();
        let path = dir.subdir("ispyd.sock", 0o700);
        let err = bind_unix(&path).unwrap_err();
        assert!(matches!(err, BindError::NotASocket(_)), "{err:?}");
        assert!(path.is_dir());
    }

    #[test]
    fn symlink_at_path_is_neither_followed_nor_removed() {
        let dir = TestDir::new();
        let target = dir.path().join("elsewhere.sock");
        drop(UnixListener::bind(&target).unwrap());
        let path = dir.path().join("ispyd.sock");
        std::os::unix::fs::symlink(&target, &path).unwrap();

        let err = bind_unix(&path).unwrap_err();
        assert!(matches!(err, BindError::NotASocket(_)), "{err:?}");
        assert!(
            fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            fs::symlink_metadata(&target)
                .unwrap()
                .file_type()
                .is_socket()
        );
    }

    #[test]
    fn drop_removes_socket_file() {
        let dir = TestDir::new();
        let path = dir.path().join("ispyd.sock");
        drop(bind_unix(&path).unwrap());
        assert!(fs::symlink_metadata(&path).is_err());
        assert_eq!(entries(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn drop_unregisters_the_exit_cleanup() {
        let dir = TestDir::new();
        let path = dir.path().join("ispyd.sock");
        let file = bind_unix(&path).unwrap();
        let registered = |path: &Path| lock_registry().iter().any(|entry| entry.path == path);
        assert!(registered(&path));
        drop(file);
        assert!(!registered(&path));
    }

    #[test]
    fn drop_keeps_a_socket_that_replaced_ours() {
        let dir = TestDir::new();
        let path = dir.path().join("ispyd.sock");
        let ours = bind_unix(&path).unwrap();
        fs::remove_file(&path).unwrap();
        let theirs = UnixListener::bind(&path).unwrap();
        let their_identity = identity(&path);

        drop(ours);
        assert_eq!(identity(&path), their_identity);
        drop(theirs);
    }

    #[test]
    fn into_parts_guard_removes_file() {
        let dir = TestDir::new();
        let path = dir.path().join("ispyd.sock");
        let (listener, guard) = bind_unix(&path).unwrap().into_parts();
        assert_eq!(guard.path(), path);
        drop(guard);
        assert!(fs::symlink_metadata(&path).is_err());
        drop(listener);
    }

    #[test]
    fn world_writable_directory_without_sticky_bit_is_refused() {
        let dir = TestDir::new();
        let open = dir.subdir("open", 0o777);
        let err = bind_unix(&open.join("ispyd.sock")).unwrap_err();
        assert!(
            matches!(
                &err,
                BindError::UnsafeDirectory { dir, why: DirectoryProblem::WritableByOthers { mode: 0o777 } }
                    if dir == &open
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(&*open.to_string_lossy()), "{err}");
        assert_eq!(entries(&open), Vec::<String>::new());
    }

    #[test]
    fn sticky_world_writable_directory_is_accepted() {
        let dir = TestDir::new();
        let tmp_like = dir.subdir("tmp", 0o1777);
        let path = tmp_like.join("ispyd.sock");
        let _file = bind_unix(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn missing_directory_is_named() {
        let dir = TestDir::new();
        let missing = dir.path().join("missing");
        let err = bind_unix(&missing.join("ispyd.sock")).unwrap_err();
        assert!(
            matches!(&err, BindError::UnsafeDirectory { dir, why: DirectoryProblem::Missing } if dir == &missing),
            "{err:?}"
        );
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn directory_owned_by_another_user_is_refused() {
        assert_eq!(
            directory_problem(true, 0o700, 1001, 1000),
            Some(DirectoryProblem::OwnedByOtherUser {
                owner: 1001,
                euid: 1000
            })
        );
    }

    #[test]
    fn directory_owned_by_root_or_self_is_accepted() {
        assert_eq!(directory_problem(true, 0o755, 0, 1000), None);
        assert_eq!(directory_problem(true, 0o700, 1000, 1000), None);
        assert_eq!(directory_problem(true, 0o700, 0, 0), None);
    }

    #[test]
    fn group_writable_directory_is_accepted() {
        assert_eq!(directory_problem(true, 0o770, 1000, 1000), None);
    }

    #[test]
    fn file_as_directory_is_refused() {
        assert_eq!(
            directory_problem(false, 0o600, 1000, 1000),
            Some(DirectoryProblem::NotADirectory)
        );
    }

    #[test]
    fn path_over_the_limit_is_too_long() {
        let dir = TestDir::new();
        let base = dir.path().as_os_str().len() + 1;
        let path = dir.path().join("x".repeat(MAX_UNIX_PATH_LEN + 1 - base));
        let err = bind_unix(&path).unwrap_err();
        assert!(
            matches!(err, BindError::PathTooLong { len, max: MAX_UNIX_PATH_LEN, .. } if len == MAX_UNIX_PATH_LEN + 1),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&MAX_UNIX_PATH_LEN.to_string()),
            "{err}"
        );
    }

    #[test]
    fn path_at_the_limit_binds() {
        let dir = TestDir::new();
        let base = dir.path().as_os_str().len() + 1;
        let path = dir.path().join("x".repeat(MAX_UNIX_PATH_LEN - base));
        assert_eq!(path.as_os_str().len(), MAX_UNIX_PATH_LEN);
        let file = bind_unix(&path).unwrap();
        assert_eq!(round_trip(file.listener(), &path, b"long"), b"long");
    }

    /// A subdirectory whose path is exactly `len` bytes long.
    fn dir_of_length(dir: &TestDir, len: usize) -> PathBuf {
        let base = dir.path().as_os_str().len() + 1;
        let sub = dir.subdir(&"d".repeat(len - base), 0o700);
        assert_eq!(sub.as_os_str().len(), len);
        sub
    }

    #[test]
    fn short_name_in_deep_directory_binds_with_short_staging_name() {
        let dir = TestDir::new();
        // "/abcdef" takes the final path exactly to the limit, leaving no
        // room for the descriptive staging name.
        let deep = dir_of_length(&dir, MAX_UNIX_PATH_LEN - 7);
        let path = deep.join("abcdef");
        let file = bind_unix(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(entries(&deep), ["abcdef"]);
        assert_eq!(round_trip(file.listener(), &path, b"deep"), b"deep");
    }

    #[test]
    fn one_byte_name_at_the_limit_is_too_long_to_stage() {
        let dir = TestDir::new();
        let deep = dir_of_length(&dir, MAX_UNIX_PATH_LEN - 2);
        let err = bind_unix(&deep.join("a")).unwrap_err();
        assert!(matches!(err, BindError::PathTooLong { .. }), "{err:?}");
        assert_eq!(entries(&deep), Vec::<String>::new());
    }

    #[test]
    fn staging_names_fit_their_room() {
        for room in 1..30 {
            for n in 0..50 {
                let name = staging_name(4_194_304, n, room);
                assert!(!name.is_empty() && name.len() <= room, "{room}: {name}");
            }
        }
        assert_eq!(staging_name(42, 7, 64), ".ispyd-42-7");
    }

    const CHILD_SOCKET_ENV: &str = "ISPYD_TEST_CHILD_SOCKET";
    const CHILD_FORK_ENV: &str = "ISPYD_TEST_CHILD_FORK_SOCKET";

    fn marker(path: &Path) -> PathBuf {
        path.with_extension("bound")
    }

    /// Run as a child process by `leaked_socket_is_removed_at_exit`; does
    /// nothing in a normal test run.
    #[test]
    fn child_entry() {
        let Some(path) = std::env::var_os(CHILD_SOCKET_ENV) else {
            return;
        };
        let path = PathBuf::from(path);
        let file = bind_unix(&path).unwrap();
        fs::write(marker(&path), "bound").unwrap();
        mem::forget(file);
        process::exit(0);
    }

    fn run_child(test: &str, env: &str, path: &Path) {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(env, path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "child {test} failed: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(marker(path).exists(), "child {test} did not run");
    }

    #[test]
    fn leaked_socket_is_removed_at_exit() {
        let dir = TestDir::new();
        let path = dir.path().join("leaked.sock");
        run_child("socket::tests::child_entry", CHILD_SOCKET_ENV, &path);
        assert!(fs::symlink_metadata(&path).is_err(), "socket left behind");
        assert_eq!(entries(dir.path()), ["leaked.bound"]);
    }

    /// Run as a child process by `forked_child_exit_keeps_parent_socket`;
    /// does nothing in a normal test run.
    #[test]
    fn child_fork_entry() {
        let Some(path) = std::env::var_os(CHILD_FORK_ENV) else {
            return;
        };
        let path = PathBuf::from(path);
        let file = bind_unix(&path).unwrap();
        // SAFETY: the forked child only calls `exit`, which runs the atexit
        // handlers under test; the registry lock is free because this is the
        // only thread that uses it in this process.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: see above; never returns.
            unsafe { libc::exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above; `status` is writable.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            fs::symlink_metadata(&path).is_ok(),
            "the forked child removed its parent's socket"
        );
        fs::write(marker(&path), "survived").unwrap();
        drop(file);
    }

    #[test]
    fn forked_child_exit_keeps_parent_socket() {
        let dir = TestDir::new();
        let path = dir.path().join("forked.sock");
        run_child("socket::tests::child_fork_entry", CHILD_FORK_ENV, &path);
        assert_eq!(fs::read_to_string(marker(&path)).unwrap(), "survived");
    }

    #[test]
    fn tcp_wildcard_is_refused_without_allow_remote() {
        let err = bind_tcp("0.0.0.0", 0, false).unwrap_err();
        assert!(
            matches!(&err, BindError::Remote { listen, .. } if listen == "0.0.0.0:0"),
            "{err:?}"
        );
        assert!(err.to_string().contains("allow_remote"), "{err}");
    }

    #[test]
    fn tcp_loopback_binds() {
        let listener = bind_tcp("127.0.0.1", 0, false).unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0);
    }

    #[test]
    fn tcp_wildcard_binds_with_allow_remote() {
        let listener = bind_tcp("0.0.0.0", 0, true).unwrap();
        assert!(listener.local_addr().unwrap().ip().is_unspecified());
    }

    #[test]
    fn tcp_unresolvable_host_names_the_address() {
        let err = bind_tcp("no-such-host.invalid", 1234, false).unwrap_err();
        assert!(matches!(err, BindError::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains("no-such-host.invalid:1234"),
            "{err}"
        );
    }

    #[test]
    fn ipv4_mapped_loopback_counts_as_loopback() {
        assert!(is_loopback_ip("::ffff:127.0.0.1".parse().unwrap()));
        assert!(is_loopback_ip("::1".parse().unwrap()));
        assert!(!is_loopback_ip("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!is_loopback_ip("::".parse().unwrap()));
    }
}
