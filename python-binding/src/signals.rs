//! ispyd's own signal handler, for the signals of `dump_on` (write the
//! dump, then hand the signal on) and `activate_on` (start listening).
//!
//! One native handler serves both. It runs on whatever thread the signal
//! lands on, does only async-signal-safe work, and then hands the signal on
//! to the disposition that was there before it: Python's handler (whose
//! Python-level function then runs when the main thread next runs
//! bytecode), the default action, or nothing if the signal was ignored.
//!
//! Staying first: the application may set its own handler after ispyd (a
//! gunicorn worker does, after the fork). `ispyd.manager` wraps
//! `signal.signal` while ispyd handles any signal; after each call it calls
//! [`keep_first`], which puts this handler back in front, with the new
//! disposition as the one it hands on to. A handler that is this one is
//! never recorded as the one to hand on to, so nothing runs twice.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};

use ispyd_core::Signal;
use pyo3::prelude::*;

use crate::{activate, dump};

/// What ispyd does with a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `dump_on`: write the dump, then do what the signal did before.
    Dump,
    /// `activate_on`: start listening; a handler the application had runs
    /// too, but never a default action (which would end the process).
    Activate,
}

/// The signals of each role, as bit sets.
static DUMP_SIGNALS: AtomicU32 = AtomicU32::new(0);
static ACTIVATE_SIGNAL: AtomicI32 = AtomicI32::new(0);

type Handler = extern "C" fn(c_int);
type InfoHandler = extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void);

/// A disposition to hand a signal on to. Written in two halves that a
/// handler must see together, so each signal has two, and an index says
/// which one is whole.
struct Previous {
    handler: [AtomicUsize; 2],
    flags: [AtomicUsize; 2],
    current: AtomicUsize,
}

impl Previous {
    const fn new() -> Previous {
        Previous {
            handler: [AtomicUsize::new(0), AtomicUsize::new(0)],
            flags: [AtomicUsize::new(0), AtomicUsize::new(0)],
            current: AtomicUsize::new(0),
        }
    }

    fn set(&self, handler: usize, flags: c_int) {
        let next = 1 - self.current.load(Ordering::Relaxed);
        self.handler[next].store(handler, Ordering::Relaxed);
        self.flags[next].store(flags as usize, Ordering::Relaxed);
        self.current.store(next, Ordering::Release);
    }

    fn get(&self) -> (usize, c_int) {
        let index = self.current.load(Ordering::Acquire);
        (
            self.handler[index].load(Ordering::Relaxed),
            self.flags[index].load(Ordering::Relaxed) as c_int,
        )
    }
}

const MAX_SIGNAL: usize = 32;
static PREVIOUS: [Previous; MAX_SIGNAL] = [const { Previous::new() }; MAX_SIGNAL];

/// The platform's number for `signal`.
pub(crate) fn number(signal: Signal) -> c_int {
    match signal {
        Signal::Hup => libc::SIGHUP,
        Signal::Int => libc::SIGINT,
        Signal::Quit => libc::SIGQUIT,
        Signal::Abrt => libc::SIGABRT,
        Signal::Usr1 => libc::SIGUSR1,
        Signal::Usr2 => libc::SIGUSR2,
        Signal::Alrm => libc::SIGALRM,
        Signal::Term => libc::SIGTERM,
    }
}

/// The name of signal number `signum`, for messages.
pub(crate) fn name_of(signum: c_int) -> &'static str {
    Signal::ALL
        .into_iter()
        .find(|s| number(*s) == signum)
        .map_or("a signal", Signal::name)
}

/// Handles `signal` in `role` from now on, in front of what it had.
pub(crate) fn take(signal: Signal, role: Role) {
    let signum = number(signal);
    match role {
        Role::Dump => {
            DUMP_SIGNALS.fetch_or(1 << signum, Ordering::AcqRel);
        }
        Role::Activate => ACTIVATE_SIGNAL.store(signum, Ordering::Release),
    }
    install(signum);
}

/// The signals a dump is armed for.
pub(crate) fn dump_signals() -> Vec<c_int> {
    let bits = DUMP_SIGNALS.load(Ordering::Acquire);
    (1..MAX_SIGNAL as c_int)
        .filter(|n| bits & (1 << n) != 0)
        .collect()
}

fn is_handled(signum: c_int) -> bool {
    (1..MAX_SIGNAL as c_int).contains(&signum)
        && (DUMP_SIGNALS.load(Ordering::Acquire) & (1 << signum) != 0
            || ACTIVATE_SIGNAL.load(Ordering::Acquire) == signum)
}

/// Every signal ispyd handles, for `ispyd.manager` to keep the handler
/// first.
#[pyfunction]
pub(crate) fn handled_signals() -> Vec<c_int> {
    (1..MAX_SIGNAL as c_int)
        .filter(|&n| is_handled(n))
        .collect()
}

/// Puts the handler back in front of `signum`'s disposition if something
/// replaced it; for the wrapped `signal.signal`.
#[pyfunction]
pub(crate) fn keep_first(signum: c_int) {
    if is_handled(signum) {
        install(signum);
    }
}

/// Set where a server replaces its workers' signal handlers after ispyd
/// installed its own, at a moment none of the server's hooks reaches
/// (uWSGI: after the post-fork hook and after a lazy worker's app import).
/// The next request through the WSGI wrapper puts ispyd's handlers back in
/// front, the server's behind them.
static REARM: AtomicBool = AtomicBool::new(false);

/// Asks for [`REARM`]; for `ispyd.manager` under uWSGI.
#[pyfunction]
pub(crate) fn rearm_at_next_request() {
    REARM.store(true, Ordering::Relaxed);
}

/// Puts ispyd's handlers back in front once, if [`rearm_at_next_request`]
/// asked for it; called per request only while a dump is armed.
pub(crate) fn rearm_if_asked() {
    if REARM.load(Ordering::Relaxed) && REARM.swap(false, Ordering::Relaxed) {
        for signum in handled_signals() {
            keep_first(signum);
        }
    }
}

fn install(signum: c_int) {
    // SAFETY: sigaction with valid, zero-initialised structs.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signum, std::ptr::null(), &mut old) != 0 {
            return;
        }
        if old.sa_sigaction == on_signal as *const () as usize {
            return;
        }
        PREVIOUS[signum as usize].set(old.sa_sigaction, old.sa_flags);
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = on_signal as *const () as usize;
        // Restarting or not stays the application's choice: Python relies
        // on EINTR to run its handlers.
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | (old.sa_flags & libc::SA_RESTART);
        libc::sigemptyset(&mut new.sa_mask);
        libc::sigaction(signum, &new, std::ptr::null_mut());
    }
}

extern "C" fn on_signal(signum: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: errno is this thread's; restored so that the interrupted code
    // sees what it saw.
    let errno = unsafe { *libc::__errno_location() };
    let role = if ACTIVATE_SIGNAL.load(Ordering::Acquire) == signum {
        activate::on_signal();
        Role::Activate
    } else {
        dump::on_signal(signum);
        Role::Dump
    };
    hand_on(signum, info, context, role);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Runs what `signum` would have done without ispyd.
fn hand_on(signum: c_int, info: *mut libc::siginfo_t, context: *mut c_void, role: Role) {
    let Some(previous) = PREVIOUS.get(signum as usize) else {
        return;
    };
    let (handler, flags) = previous.get();
    if handler == libc::SIG_IGN {
        return;
    }
    if handler == libc::SIG_DFL {
        if role == Role::Activate {
            // The signal was sent to start ispyd, not to end the process.
            return;
        }
        // SAFETY: sigaction, pthread_sigmask and raise are
        // async-signal-safe. The default action of every signal a dump
        // takes is to end the process (with a core for SIGABRT and
        // SIGQUIT): restore it, let the signal through and send it again.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut default.sa_mask);
            libc::sigaction(signum, &default, std::ptr::null_mut());
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signum);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(signum);
        }
        // Still here: be first again.
        install(signum);
        return;
    }
    // SAFETY: `handler` was installed by the application for this signal,
    // with these flags; it is called as the kernel would have called it.
    unsafe {
        if flags & libc::SA_SIGINFO != 0 {
            let handler = std::mem::transmute::<usize, InfoHandler>(handler);
            handler(signum, info, context);
        } else {
            let handler = std::mem::transmute::<usize, Handler>(handler);
            handler(signum);
        }
    }
}
