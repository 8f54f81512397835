//! What a long plugin call uses to say how far it has got, and to learn
//! that the user asked it to stop.
//!
//! The dispatcher makes one [`Progress`] for each call it hands out (see
//! [`Job::progress`](crate::Job::progress)); the plugin gets it in
//! [`Plugin::call_with_progress`](crate::Plugin::call_with_progress). A
//! report is queued (a few at most: progress is a status line, not a log)
//! and the driver is woken with the waker it set; the driver then hands the
//! latest to the session ([`Dispatcher::forward_progress`](crate::Dispatcher::forward_progress)),
//! which shows it and keeps the call alive. A Ctrl-C reaches the call as
//! [`Interrupt::interrupt`](crate::Interrupt::interrupt) on its progress:
//! [`Progress::stop_requested`] turns true, and the call answers early
//! with what it has.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};

use crate::plugin::Interrupt;

/// Wakes the driver of a session when its call reports progress.
pub type ProgressWaker = Arc<dyn Fn() + Send + Sync>;

/// Reports the driver has not taken yet, at most: progress is a status
/// line, and a call that reports faster than the driver shows loses the
/// surplus, never memory.
const QUEUED_REPORTS: usize = 16;

/// A running call's progress and stop request, for the plugin (reporting,
/// asking whether to stop) and the driver (setting the waker, asking the
/// call to stop through [`Interrupt`]). Cheap to clone.
#[derive(Clone, Default)]
pub struct Progress {
    /// `None` for a progress nobody listens to: it costs nothing.
    channel: Option<(SyncSender<String>, Arc<Shared>)>,
}

struct Shared {
    stop: AtomicBool,
    waker: OnceLock<ProgressWaker>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("listened_to", &self.channel.is_some())
            .field("stop_requested", &self.stop_requested())
            .finish()
    }
}

impl Progress {
    /// A progress nobody listens to (a call run outside a session, or
    /// inline on the driver's thread), which allocates nothing.
    pub fn new() -> Progress {
        Progress::default()
    }

    /// A progress and the receiving end of its reports.
    pub(crate) fn channel() -> (Progress, Receiver<String>) {
        let (reports, received) = sync_channel(QUEUED_REPORTS);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            waker: OnceLock::new(),
        });
        let progress = Progress {
            channel: Some((reports, shared)),
        };
        (progress, received)
    }

    /// Says how far the call has got (`3 s of 10`); the user sees the
    /// latest. Cheap; call it as often as useful.
    pub fn report(&self, text: &str) {
        let Some((reports, shared)) = &self.channel else {
            return;
        };
        if reports.try_send(text.to_owned()).is_ok() {
            if let Some(waker) = shared.waker.get() {
                waker();
            }
        }
    }

    /// True once the user asked the call to stop (Ctrl-C) or the session
    /// gave up on it: answer now, with what there is.
    pub fn stop_requested(&self) -> bool {
        self.channel
            .as_ref()
            .is_some_and(|(_, shared)| shared.stop.load(Ordering::Acquire))
    }

    /// For the driver, before the call runs: what to call when a report
    /// comes. Only the first waker set counts.
    pub fn set_waker(&self, waker: ProgressWaker) {
        if let Some((_, shared)) = &self.channel {
            let _ = shared.waker.set(waker);
        }
    }
}

impl Interrupt for Progress {
    fn interrupt(&self) {
        if let Some((_, shared)) = &self.channel {
            shared.stop.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn reports_wake_the_driver_the_latest_is_taken_and_stop_is_seen() {
        let (progress, received) = Progress::channel();
        let woken = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&woken);
        progress.set_waker(Arc::new(move || {
            count.fetch_add(1, Ordering::Relaxed);
        }));
        progress.report("1 of 3");
        progress.report("2 of 3");
        assert_eq!(woken.load(Ordering::Relaxed), 2);
        assert_eq!(received.try_iter().last().as_deref(), Some("2 of 3"));
        assert!(!progress.stop_requested());
        progress.clone().interrupt();
        assert!(progress.stop_requested());
    }

    #[test]
    fn a_flood_of_reports_is_bounded() {
        let (progress, received) = Progress::channel();
        for n in 0..10_000 {
            progress.report(&n.to_string());
        }
        assert_eq!(received.try_iter().count(), QUEUED_REPORTS);
    }
}
