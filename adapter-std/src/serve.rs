//! The thread that drives one session: reads the socket, feeds the core,
//! writes what it transmits, and runs the calls it asks for.
//!
//! Calls of inline plugins (see [`PluginInfo::inline`]) run right here.
//! Others go to a worker thread owned by the session, so that a call stuck
//! behind a lock (or the GIL) can be given up on when the core says so; the
//! stuck worker is then left to finish alone and a new one serves the next
//! call.
//!
//! [`PluginInfo::inline`]: ispyd_core::PluginInfo::inline

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::Instant;

use ispyd_core::{
    Call, CallId, Completion, Event, Execution, Feed, Interactive, Output, Registry, Session,
};

use crate::stream::Stream;

const READ_CHUNK: usize = 16 * 1024;

enum Job {
    Call(Call),
    Feed(Feed, Box<dyn Interactive>),
}

struct Finished {
    id: CallId,
    execution: Execution,
}

/// A thread that runs the session's slow calls one at a time.
struct Worker {
    jobs: Sender<Job>,
    done: Receiver<Finished>,
}

impl Worker {
    fn spawn(registry: Arc<Registry>, session: u64) -> std::io::Result<Worker> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel();
        thread::Builder::new()
            .name(format!("ispyd-call-{session}"))
            .spawn(move || {
                for job in job_rx {
                    let (id, execution) = match job {
                        Job::Call(call) => (call.id, registry.execute(&call)),
                        Job::Feed(feed, interactive) => {
                            (feed.id, Registry::feed(interactive, &feed))
                        }
                    };
                    if done_tx.send(Finished { id, execution }).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Worker { jobs, done })
    }
}

/// Runs one session until it closes. Never panics on I/O errors: they end
/// the session.
pub(crate) fn serve(stream: Stream, mut session: Session, registry: Arc<Registry>) {
    let mut driver = Driver {
        stream,
        registry,
        worker: None,
        interactive: None,
        waiting: None,
        out: Vec::with_capacity(READ_CHUNK),
    };
    driver.run(&mut session);
    let _ = driver.stream.shutdown(Shutdown::Both);
}

struct Driver {
    stream: Stream,
    registry: Arc<Registry>,
    worker: Option<Worker>,
    interactive: Option<Box<dyn Interactive>>,
    /// The call the worker is running for us.
    waiting: Option<CallId>,
    out: Vec<u8>,
}

impl Driver {
    fn run(&mut self, session: &mut Session) {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let Some(deadline) = self.drain(session) else {
                return;
            };
            if session.is_closed() {
                return;
            }
            if self.waiting.is_some() {
                self.wait_for_worker(session, deadline);
                continue;
            }
            if !session.wants_input() {
                // Nothing pending and nothing more to read: only time can
                // move the session on.
                let Some(deadline) = deadline else {
                    return;
                };
                thread::sleep(deadline.saturating_duration_since(Instant::now()));
                session.handle_timeout(Instant::now());
                continue;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => session.handle_eof(Instant::now()),
                Ok(n) => session.handle_input(&buf[..n], Instant::now()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    session.handle_timeout(Instant::now())
                }
                Err(_) => return,
            }
        }
    }

    /// Polls the session dry. Returns its next deadline, or `None` when the
    /// connection is gone.
    fn drain(&mut self, session: &mut Session) -> Option<Option<Instant>> {
        loop {
            match session.poll_output(&mut self.out) {
                Output::Transmit(_) => {
                    let result = self.stream.write_all(&self.out);
                    self.out.clear();
                    if result.is_err() {
                        // The peer stopped reading for send_timeout, or left.
                        return None;
                    }
                }
                Output::Event(Event::Call(call)) => self.start_call(session, call),
                Output::Event(Event::Feed(feed)) => self.start_feed(session, feed),
                Output::Event(Event::Abandon(id)) => {
                    if self.waiting == Some(id) {
                        // The worker is stuck in the call; leave it behind.
                        self.waiting = None;
                        self.worker = None;
                    }
                    self.interactive = None;
                }
                Output::Event(Event::Close) => {}
                Output::Timeout(deadline) => return Some(deadline),
            }
        }
    }

    fn start_call(&mut self, session: &mut Session, call: Call) {
        if self.registry.is_inline(&call.plugin) {
            let execution = self.registry.execute(&call);
            self.finish(session, call.id, execution);
        } else {
            self.dispatch(session, call.id, Job::Call(call));
        }
    }

    fn start_feed(&mut self, session: &mut Session, feed: Feed) {
        let Some(interactive) = self.interactive.take() else {
            let completion = Completion::Error("the interactive session has ended".to_owned());
            session.complete(feed.id, completion, Instant::now());
            return;
        };
        self.dispatch(session, feed.id, Job::Feed(feed, interactive));
    }

    fn dispatch(&mut self, session: &mut Session, id: CallId, job: Job) {
        if self.worker.is_none() {
            match Worker::spawn(Arc::clone(&self.registry), session.id()) {
                Ok(worker) => self.worker = Some(worker),
                Err(err) => {
                    let completion = Completion::Error(format!("cannot start a thread: {err}"));
                    session.complete(id, completion, Instant::now());
                    return;
                }
            }
        }
        let sent = self
            .worker
            .as_ref()
            .is_some_and(|w| w.jobs.send(job).is_ok());
        if sent {
            self.waiting = Some(id);
        } else {
            self.worker = None;
            let completion = Completion::Error("the call's thread has exited".to_owned());
            session.complete(id, completion, Instant::now());
        }
    }

    fn wait_for_worker(&mut self, session: &mut Session, deadline: Option<Instant>) {
        let Some(worker) = &self.worker else {
            self.waiting = None;
            return;
        };
        let result = match deadline {
            Some(deadline) => worker
                .done
                .recv_timeout(deadline.saturating_duration_since(Instant::now())),
            None => worker
                .done
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        match result {
            Ok(finished) => {
                if Some(finished.id) == self.waiting {
                    self.waiting = None;
                }
                self.finish(session, finished.id, finished.execution);
            }
            Err(RecvTimeoutError::Timeout) => session.handle_timeout(Instant::now()),
            Err(RecvTimeoutError::Disconnected) => {
                let id = self.waiting.take();
                self.worker = None;
                if let Some(id) = id {
                    let completion = Completion::Error("the call's thread has exited".to_owned());
                    session.complete(id, completion, Instant::now());
                }
            }
        }
    }

    fn finish(&mut self, session: &mut Session, id: CallId, execution: Execution) {
        self.interactive = execution.interactive;
        session.complete(id, execution.completion, Instant::now());
    }
}
