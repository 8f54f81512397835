//! Ctrl-C while waiting for the server: give the user the local shell back
//! instead of killing ispy.
//!
//! Outside line editing a terminal turns Ctrl-C into SIGINT. On a terminal
//! ispy catches it, and a blocking read then fails with `EINTR` (the handler
//! is installed without `SA_RESTART`), so the session can stop waiting and
//! disconnect. rustyline installs its own handler while it reads a line and
//! puts this one back afterwards.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    // Only async-signal-safe work here: an atomic store.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catches SIGINT from now on. Call once, only when the user is at a
/// terminal: a script's Ctrl-C should still stop ispy.
pub fn catch() {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value, and
    // the handler only touches an atomic.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigint as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}

/// True (once) if Ctrl-C was pressed since the last call.
pub fn take() -> bool {
    INTERRUPTED.swap(false, Ordering::SeqCst)
}

/// Forgets a Ctrl-C pressed earlier: call when a wait begins, so that only a
/// Ctrl-C during the wait interrupts it.
pub fn clear() {
    INTERRUPTED.store(false, Ordering::SeqCst);
}
