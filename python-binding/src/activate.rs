//! `activate_on`: nothing listens until the signal arrives.
//!
//! The handler (in `signals`) cannot start a listener: that allocates,
//! binds and spawns. It writes one byte to a pipe; a thread that does
//! nothing but wait on that pipe (blocked in `read(2)`, with the
//! application's signals blocked: no CPU, no wake-ups) then starts the
//! shell, outside the handler, and ends. Starting needs no GIL, so a process
//! whose main thread is stuck in C, holding the GIL or not, can still be
//! opened up.
//!
//! A forked child has none of its parent's threads and must not share its
//! pipe (its signal would wake the parent): it gets a pipe and a waiting
//! thread of its own.

use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use ispyd_core::Signal;

use crate::signals::{self, Role};

/// The pipe's write end, for the handler; -1 when nothing waits.
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// What to do when the signal comes: true once nothing more is to be
/// waited for (the shell started, or was shut down before it did).
pub(crate) type OnWake = Arc<dyn Fn() -> bool + Send + Sync>;

/// The waiting thread's work, kept for a forked child to wait the same way.
static ON_WAKE: Mutex<Option<OnWake>> = Mutex::new(None);

/// The handler's part: wake the waiting thread. Async-signal-safe.
pub(crate) fn on_signal() {
    let fd = WAKE.load(Ordering::Acquire);
    if fd >= 0 {
        // SAFETY: a one-byte write to a non-blocking pipe; if it is full, a
        // wake-up is already pending.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// Waits for `signal`, then runs `on_wake` on a thread of its own.
pub(crate) fn arm(signal: Signal, on_wake: OnWake) -> Result<(), String> {
    *ON_WAKE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(on_wake.clone());
    start_waiting(on_wake)?;
    signals::take(signal, Role::Activate);
    Ok(())
}

/// Wakes the waiting thread so that it sees there is nothing left to do
/// (after a shutdown).
pub(crate) fn wake() {
    on_signal();
}

/// In a forked child: a pipe and a waiting thread of its own, if the parent
/// was waiting.
pub(crate) fn after_fork_in_child() {
    let old = WAKE.swap(-1, Ordering::AcqRel);
    if old < 0 {
        return;
    }
    // SAFETY: the child's copy of the parent's write end; nobody here uses it.
    unsafe { libc::close(old) };
    // A lock held by a parent thread at fork time stays held: only try.
    let on_wake = ON_WAKE.try_lock().ok().and_then(|guard| guard.clone());
    if let Some(on_wake) = on_wake {
        if let Err(err) = start_waiting(on_wake) {
            eprintln!("ispyd: activate_on: {err}; this process will not start listening");
        }
    }
}

fn start_waiting(on_wake: OnWake) -> Result<(), String> {
    let mut fds: [c_int; 2] = [-1; 2];
    // SAFETY: pipe2 into a local array; checked.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(format!(
            "cannot make a pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    let [read_end, write_end] = fds;
    // The waiting thread blocks in read: only the write end stays
    // non-blocking, so that the handler never waits.
    // SAFETY: fcntl on a descriptor just made.
    unsafe { libc::fcntl(read_end, libc::F_SETFL, 0) };
    let spawned = ispyd_std::signals::with_signals_blocked(|| {
        std::thread::Builder::new()
            .name("ispyd-activate".into())
            .spawn(move || wait(read_end, &on_wake))
    });
    if let Err(err) = spawned {
        // SAFETY: both ends are ours and unused.
        unsafe {
            libc::close(read_end);
            libc::close(write_end);
        }
        return Err(format!("cannot start the waiting thread: {err}"));
    }
    WAKE.store(write_end, Ordering::Release);
    Ok(())
}

fn wait(read_end: c_int, on_wake: &OnWake) {
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: a read into a local buffer from the pipe this thread owns.
        let n = unsafe { libc::read(read_end, byte.as_mut_ptr().cast(), 1) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 || on_wake() {
            break;
        }
    }
    // Both ends stay open: a handler may have read WAKE just before this
    // and still write (to a closed read end it would raise SIGPIPE; to a
    // reused descriptor it would write into someone else's file).
    WAKE.store(-1, Ordering::Release);
}
