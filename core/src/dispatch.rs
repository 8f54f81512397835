//! From a session's events to work an adapter can run anywhere, and back.
//!
//! Theory of operation: a [`Dispatcher`] sits beside each [`Session`]. The
//! driver asks it, instead of the session, for what to do next
//! ([`Dispatcher::poll_action`]). It turns a call or a feed into a [`Job`]
//! (which is `Send`: it holds the takeover object for a feed), answers by
//! itself what needs no plugin (a feed for a takeover that is gone), keeps
//! the running takeover between lines, and drops it when the session
//! abandons the call or closes. When the driver has run a job, wherever it
//! chose, it hands the [`JobDone`] back with [`Dispatcher::handle_done`].
//!
//! The only decision left to a driver is where a job runs: on its own
//! thread when [`Job::is_inline`], elsewhere otherwise. A driver that
//! cannot start a job (no thread to be had) says so with
//! [`Dispatcher::handle_lost`], and the user gets an error, not a hang.

use std::sync::mpsc::Receiver;

use crate::progress::Progress;
use std::sync::Arc;
use std::time::Instant;

use crate::plugin::{Execution, Interactive, Interrupt, Registry};
use crate::session::{
    Call, CallId, CloseReason, Completing, Completion, Event, Feed, Session, UnexpectedResult,
};

/// Work for a plugin: a command, or a line for a running takeover.
#[must_use]
pub struct Job {
    work: Work,
    inline: bool,
    /// A call's progress, which the driver listens to while it runs.
    progress: Option<Progress>,
}

enum Work {
    Call(Call),
    Feed(Feed, Box<dyn Interactive>),
    Complete(Completing, Box<dyn Interactive>),
    CompleteArguments(Completing),
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.work {
            Work::Call(call) => f.debug_tuple("Job::Call").field(call).finish(),
            Work::Feed(feed, _) => f.debug_tuple("Job::Feed").field(feed).finish(),
            Work::Complete(completing, _) | Work::CompleteArguments(completing) => {
                f.debug_tuple("Job::Complete").field(completing).finish()
            }
        }
    }
}

impl Job {
    /// The call (or feed) this job answers.
    pub fn id(&self) -> CallId {
        match &self.work {
            Work::Call(call) => call.id,
            Work::Feed(feed, _) => feed.id,
            Work::Complete(completing, _) | Work::CompleteArguments(completing) => completing.id,
        }
    }

    /// The session it belongs to.
    pub fn session(&self) -> u64 {
        match &self.work {
            Work::Call(call) => call.session,
            Work::Feed(feed, _) => feed.session,
            Work::Complete(completing, _) | Work::CompleteArguments(completing) => {
                completing.session
            }
        }
    }

    /// True when the plugin says its calls are quick and wait on nothing
    /// (see [`PluginInfo::inline`](crate::PluginInfo::inline)): run it on
    /// the driver's own thread.
    pub fn is_inline(&self) -> bool {
        self.inline
    }

    /// A call's progress: set its waker (see [`Progress::set_waker`])
    /// before the job runs elsewhere, and forward its reports with
    /// [`Dispatcher::forward_progress`] when woken.
    pub fn progress(&self) -> Option<&Progress> {
        self.progress.as_ref()
    }

    /// Runs the plugin, catching panics (see [`Registry::execute`]).
    pub fn run(self, registry: &Registry) -> JobDone {
        let session = self.session();
        let (id, execution) = match self.work {
            Work::Call(call) => {
                let progress = self.progress.unwrap_or_default();
                (call.id, registry.execute_with(&call, &progress))
            }
            Work::Feed(feed, interactive) => (feed.id, Registry::feed(interactive, &feed)),
            Work::Complete(completing, interactive) => {
                (completing.id, Registry::complete(interactive, &completing))
            }
            Work::CompleteArguments(completing) => {
                let (plugin, command) = completing.command.clone().unwrap_or_default();
                let execution = registry.complete_arguments(&plugin, &command, &completing.text);
                (completing.id, execution)
            }
        };
        JobDone {
            session,
            id,
            execution,
        }
    }
}

/// A job's result, to hand back with [`Dispatcher::handle_done`].
#[must_use]
pub struct JobDone {
    session: u64,
    id: CallId,
    execution: Execution,
}

impl JobDone {
    /// The session it belongs to.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The call (or feed) it answers.
    pub fn id(&self) -> CallId {
        self.id
    }
}

/// What the driver must do next for a session.
#[must_use]
pub enum Action {
    /// Run this job (inline or elsewhere) and hand back its [`JobDone`].
    Run(Job),
    /// The running job was given up on: its result will be ignored. A
    /// driver that gave it a thread of its own may leave that thread behind
    /// and use a new one for the next job.
    Forget(CallId),
    /// Stop the code the running feed runs: call
    /// [`Interrupt::interrupt`] (it does not block). Its result still
    /// comes, unless a [`Action::Forget`] follows.
    Interrupt(Arc<dyn Interrupt>),
    /// Write what is left ([`Session::wants_write`]), then close.
    Close(CloseReason),
}

/// The call bookkeeping of one session (see the module documentation).
#[derive(Default)]
pub struct Dispatcher {
    takeover: Option<Box<dyn Interactive>>,
    running: Option<CallId>,
    /// The running call's progress reports.
    progress: Option<Receiver<String>>,
    /// What stops the running feed, while one runs.
    interrupter: Option<Arc<dyn Interrupt>>,
    /// A job to forget once its interruption has been handed out.
    forget: Option<CallId>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("takeover", &self.takeover.is_some())
            .field("running", &self.running)
            .field("interruptible", &self.interrupter.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Run(job) => f.debug_tuple("Run").field(job).finish(),
            Action::Forget(id) => f.debug_tuple("Forget").field(id).finish(),
            Action::Interrupt(_) => f.write_str("Interrupt(..)"),
            Action::Close(reason) => f.debug_tuple("Close").field(reason).finish(),
        }
    }
}

impl Dispatcher {
    /// A dispatcher for a new session.
    pub fn new() -> Dispatcher {
        Dispatcher::default()
    }

    /// The job handed out and not yet done, if any.
    pub fn running(&self) -> Option<CallId> {
        self.running
    }

    /// Hands the running call's latest progress report, if any, to the
    /// session; for the driver when the call's waker woke it.
    pub fn forward_progress(&mut self, session: &mut Session, now: Instant) {
        let (Some(id), Some(reports)) = (self.running, self.progress.as_ref()) else {
            return;
        };
        if let Some(report) = reports.try_iter().last() {
            let _ = session.handle_progress(id, &report, now);
        }
    }

    /// Takes the session's events until one needs the driver. Call it
    /// (with the time) until it returns `None`, like
    /// [`Session::poll_event`], which it replaces for the driver.
    pub fn poll_action(
        &mut self,
        session: &mut Session,
        registry: &Registry,
        now: Instant,
    ) -> Option<Action> {
        if let Some(id) = self.forget.take() {
            return Some(Action::Forget(id));
        }
        loop {
            match session.poll_event(now)? {
                Event::Call(call) => {
                    self.running = Some(call.id);
                    let inline = registry.runs_inline(&call.plugin, &call.command);
                    // An inline call runs on the driver's thread: nothing
                    // could show its progress meanwhile.
                    let (progress, reports) = match inline {
                        true => (None, None),
                        false => {
                            let (progress, reports) = Progress::channel();
                            (Some(progress), Some(reports))
                        }
                    };
                    self.progress = reports;
                    // A call's Ctrl-C (once it reports progress) asks it
                    // to stop, as a feed's does.
                    self.interrupter = progress
                        .clone()
                        .map(|progress| Arc::new(progress) as Arc<dyn Interrupt>);
                    return Some(Action::Run(Job {
                        work: Work::Call(call),
                        inline,
                        progress,
                    }));
                }
                Event::Feed(feed) => {
                    let Some(takeover) = self.takeover.take() else {
                        let ended = Completion::Error("the interactive session has ended".into());
                        let _ = session.handle_result(feed.id, ended, now);
                        continue;
                    };
                    self.running = Some(feed.id);
                    self.interrupter = takeover.interrupter();
                    self.progress = None;
                    return Some(Action::Run(Job {
                        work: Work::Feed(feed, takeover),
                        inline: false,
                        progress: None,
                    }));
                }
                Event::Abandon(id) => {
                    self.takeover = None;
                    if self.running == Some(id) {
                        self.running = None;
                        // A console line given up on must not run on.
                        if let Some(interrupter) = self.interrupter.take() {
                            self.forget = Some(id);
                            return Some(Action::Interrupt(interrupter));
                        }
                        return Some(Action::Forget(id));
                    }
                }
                Event::Complete(completing) if completing.command.is_some() => {
                    self.running = Some(completing.id);
                    self.interrupter = None;
                    let plugin = completing.command.as_ref().map(|(p, _)| p.as_str());
                    let inline = plugin.is_some_and(|p| registry.is_inline(p));
                    self.progress = None;
                    return Some(Action::Run(Job {
                        work: Work::CompleteArguments(completing),
                        inline,
                        progress: None,
                    }));
                }
                Event::Complete(completing) => {
                    let Some(takeover) = self.takeover.take() else {
                        let none = Completion::Candidates {
                            start: completing.text.len(),
                            items: Vec::new(),
                        };
                        let _ = session.handle_result(completing.id, none, now);
                        continue;
                    };
                    self.running = Some(completing.id);
                    self.interrupter = None;
                    self.progress = None;
                    return Some(Action::Run(Job {
                        work: Work::Complete(completing, takeover),
                        inline: false,
                        progress: None,
                    }));
                }
                Event::Interrupt(id) => {
                    if let Some(interrupter) = self
                        .interrupter
                        .as_ref()
                        .filter(|_| self.running == Some(id))
                    {
                        return Some(Action::Interrupt(Arc::clone(interrupter)));
                    }
                }
                Event::Close(reason) => {
                    self.takeover = None;
                    return Some(Action::Close(reason));
                }
            }
        }
    }

    /// Hands a job's result to the session, keeping the takeover it left
    /// running. A late result (the job was forgotten) is dropped with its
    /// takeover and reported.
    pub fn handle_done(
        &mut self,
        session: &mut Session,
        done: JobDone,
        now: Instant,
    ) -> Result<(), UnexpectedResult> {
        if self.running == Some(done.id) {
            self.running = None;
            self.interrupter = None;
            self.takeover = done.execution.interactive;
        }
        session.handle_result(done.id, done.execution.completion, now)
    }

    /// The driver could not run the job `id` (no thread could be started,
    /// or the one running it died): the user gets `why` as the error.
    pub fn handle_lost(&mut self, session: &mut Session, id: CallId, why: &str, now: Instant) {
        if self.running == Some(id) {
            self.running = None;
        }
        let _ = session.handle_result(id, Completion::Error(why.to_owned()), now);
    }
}
