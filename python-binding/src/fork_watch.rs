//! Removing the socket file of a forked child that cannot remove it itself.
//!
//! A child created by `fork()` gets a listener, and a socket file, of its
//! own in the at-fork hook. It removes the file when it exits in an orderly
//! way, but not when it `exec`s another program (no exit handler runs; the
//! listener closes on exec, the file stays), ends with `os._exit()` (as
//! multiprocessing children do) or is killed. Nothing in the child can act
//! then, but its parent can notice: the child holds the write end of a
//! close-on-exec pipe whose read end the parent keeps, and every copy of
//! the write end is gone exactly when the child has exec'd or ended.
//!
//! The calls, in the order `os.register_at_fork` makes them:
//! [`prepare`] before the fork makes the pipe; [`parent`] closes
//! the parent's write end and starts a thread reading the other end until
//! end-of-file; [`child`] keeps the write end in the child (closing the
//! one it inherited from its own parent, which is not its to hold); and
//! [`report`] tells the parent each socket the child binds. At end-of-file
//! the thread removes each reported path that is still that very socket
//! (same device and inode) and that nobody listens on any more.
//!
//! Limits: nobody watches a child whose parent has exited or forked it with
//! no manager running; a socket some other process has since bound at the
//! same path is never touched.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use ispyd_std::signals::with_signals_blocked;

/// The pipe made for the fork in progress.
static PENDING: Mutex<Option<(File, File)>> = Mutex::new(None);

/// In a forked child: the write end whose closing tells the parent.
static TO_PARENT: Mutex<Option<File>> = Mutex::new(None);

/// A child reports a few short records; more is ignored, not buffered.
const REPORT_LIMIT: usize = 64 * 1024;

/// How long a live listener may take to say something (see
/// [`closes_unanswered`]); a silent one is left alone.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// How many times, and how far apart, a socket that still answers after
/// end-of-file is looked at again (see [`remove_if_orphaned`]).
const LOOKS: u32 = 20;
const BETWEEN_LOOKS: Duration = Duration::from_millis(250);

/// The watcher thread only reads, stats and connects.
const WATCHER_STACK: usize = 64 * 1024;

/// Before `fork()`, while a manager runs: makes the pipe for the child.
/// Without it (out of descriptors) the child is simply not watched.
pub(crate) fn prepare() {
    let pipe = cloexec_pipe();
    *PENDING.lock().unwrap_or_else(PoisonError::into_inner) = pipe;
}

/// In the parent after `fork()`: watches the child it just made.
pub(crate) fn parent() {
    let Some((reader, writer)) = take_pending() else {
        return;
    };
    drop(writer);
    let spawned = with_signals_blocked(|| {
        thread::Builder::new()
            .name("ispyd-fork-watch".to_owned())
            .stack_size(WATCHER_STACK)
            .spawn(move || watch(reader))
    });
    drop(spawned);
}

/// In the child after `fork()`: keeps the new pipe's write end for the
/// child's lifetime, and drops any inherited one.
pub(crate) fn child() {
    let writer = take_pending().map(|(_reader, writer)| writer);
    // A parent thread may have held the lock at fork time, and it would
    // stay held here for ever: only try it.
    if let Ok(mut to_parent) = TO_PARENT.try_lock() {
        *to_parent = writer;
    }
}

/// In the child: tells the parent about a socket file the child created.
pub(crate) fn report(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    let mut record = format!("{} {} ", meta.dev(), meta.ino()).into_bytes();
    record.extend_from_slice(path.as_os_str().as_bytes());
    record.push(0);
    if let Ok(mut to_parent) = TO_PARENT.try_lock() {
        if let Some(writer) = to_parent.as_mut() {
            // The parent reads until end-of-file; if it is gone, so be it.
            let _ = writer.write_all(&record);
        }
    }
}

/// A pipe whose ends close on `exec` (reader, writer).
fn cloexec_pipe() -> Option<(File, File)> {
    let mut fds: [libc::c_int; 2] = [-1; 2];
    // SAFETY: pipe2 fills `fds` with two new descriptors on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: both descriptors are new and owned by nothing else.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Some((File::from(reader), File::from(writer)))
}

fn take_pending() -> Option<(File, File)> {
    PENDING.try_lock().ok()?.take()
}

/// The watcher thread: reads the child's reports until the child has
/// exec'd or ended, then removes what it left behind.
fn watch(mut reader: File) {
    let mut reports = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) if reports.len() + n <= REPORT_LIMIT => reports.extend_from_slice(&chunk[..n]),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
    for record in reports.split(|&byte| byte == 0) {
        if let Some((dev, ino, path)) = parse_record(record) {
            remove_if_orphaned(path, dev, ino);
        }
    }
}

/// `DEV INO PATH` as [`report`] writes it.
fn parse_record(record: &[u8]) -> Option<(u64, u64, &Path)> {
    let mut parts = record.splitn(3, |&byte| byte == b' ');
    let mut number = || -> Option<u64> { std::str::from_utf8(parts.next()?).ok()?.parse().ok() };
    let (dev, ino) = (number()?, number()?);
    let path = parts.next().filter(|path| !path.is_empty())?;
    Some((dev, ino, Path::new(OsStr::from_bytes(path))))
}

/// Removes `path` if it is still the child's socket and nobody listens on
/// it any more.
///
/// A listener that still answers gets a few more looks before it is left
/// alone: end-of-file can come before the child's listener thread is gone,
/// e.g. when `subprocess` closes every descriptor in the child, the pipe's
/// first, and only then execs.
fn remove_if_orphaned(path: &Path, dev: u64, ino: u64) {
    for _ in 0..LOOKS {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        if !meta.file_type().is_socket() || meta.dev() != dev || meta.ino() != ino {
            return;
        }
        let orphaned = match UnixStream::connect(path) {
            Err(err) => err.kind() == io::ErrorKind::ConnectionRefused,
            Ok(stream) => closes_unanswered(stream),
        };
        if orphaned {
            let _ = fs::remove_file(path);
            return;
        }
        thread::sleep(BETWEEN_LOOKS);
    }
}

/// Whether a connection is dropped without a word.
///
/// The end-of-file can arrive while the child's `exec` or exit is still
/// closing its descriptors, before the listening socket: a connection then
/// still succeeds, into a backlog that closes a moment later. A live ispyd
/// always writes first (a prompt or a refusal), so a connection that ends
/// before any byte arrives was made to a listener on its way out.
fn closes_unanswered(mut stream: UnixStream) -> bool {
    if stream.set_read_timeout(Some(ANSWER_WAIT)).is_err() {
        return false;
    }
    match stream.read(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) => err.kind() == io::ErrorKind::ConnectionReset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_dev_ino_and_a_path_with_spaces() {
        let parsed = parse_record(b"2049 1234 /tmp/a dir/ispyd-7.sock");
        assert_eq!(
            parsed,
            Some((2049, 1234, Path::new("/tmp/a dir/ispyd-7.sock")))
        );
    }

    #[test]
    fn malformed_records_are_ignored() {
        assert_eq!(parse_record(b""), None);
        assert_eq!(parse_record(b"x 1 /p"), None);
        assert_eq!(parse_record(b"1 2 "), None);
        assert_eq!(parse_record(b"1 2"), None);
    }
}
