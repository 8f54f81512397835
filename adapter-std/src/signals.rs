//! Keeping the host's signals away from ispyd's threads.

/// Runs `f` with the application's signals blocked in this thread, so that
/// every thread `f` starts inherits that mask. [`ShellManager`] starts its
/// listener this way, and through it every session and call thread; other
/// adapters' helper threads should be started this way too.
///
/// [`ShellManager`]: crate::ShellManager
///
/// Why: the kernel hands a signal sent to the process to any thread that
/// does not block it, e.g. an ispyd thread just returning from `accept`.
/// A handler that only flags the signal (CPython's, or a Rust program's
/// self-pipe-less flag) then leaves the main thread blocked in a `read()`
/// the kernel restarts: in Python, `signal(SIGTERM, lambda *a: sys.exit(0))`
/// would not stop the program. Signals raised by a fault in the thread itself stay
/// unblocked, so a crash is still reported as one.
pub fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    const SYNCHRONOUS: [libc::c_int; 6] = [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGSYS,
    ];
    // SAFETY: plain calls on sigset_t values owned here; pthread_sigmask
    // only changes this thread's mask, and the old mask is put back below.
    let previous = unsafe {
        let mut blocked: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut blocked);
        for signal in SYNCHRONOUS {
            libc::sigdelset(&mut blocked, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, &mut previous);
        previous
    };
    let result = f();
    // SAFETY: restores the mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
    }
    result
}
