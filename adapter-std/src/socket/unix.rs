//! Binding a UNIX socket: the directory check, the private staging
//! directory, publishing with `link(2)`, and replacing a stale socket.

use super::*;

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
pub(super) fn check_directory(dir: &Path) -> Result<(), BindError> {
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
pub(super) fn directory_problem(
    is_dir: bool,
    mode: u32,
    owner: u32,
    euid: u32,
) -> Option<DirectoryProblem> {
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
pub(super) struct Staging {
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
pub(super) fn staging_name(pid: u32, n: u64, room: usize) -> String {
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
pub(super) fn publish(staged: &Path, path: &Path) -> Result<(), BindError> {
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
pub(super) fn remove_stale(path: &Path) -> Result<(), BindError> {
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

/// Removes `path` if it is still the socket identified by `dev` and `ino`.
pub(super) fn remove_if_same(path: &Path, dev: u64, ino: u64) {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.file_type().is_socket() && meta.dev() == dev && meta.ino() == ino {
            let _ = fs::remove_file(path);
        }
    }
}
