//! The demo program, whatever engine serves its shell: a few named worker
//! threads doing real work, one of them stuck on a lock, and a plugin of
//! its own. The `demo` (std threads) and `demo-mio` examples include this
//! file and differ only in the `ShellManager` they start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ispyd_std::{Call, Outcome, Plugin, PluginError, PluginInfo, Progress};

/// Work counters the workers update and the `demo` plugin reads.
#[derive(Default)]
struct Stats {
    hashed_bytes: AtomicU64,
    sorted_items: AtomicU64,
    ticks: AtomicU64,
}

/// The demo's own plugin: shows how a program exposes its internals.
pub struct DemoPlugin {
    stats: Arc<Stats>,
    started: Instant,
}

/// A command's SECONDS argument, `default` when there is none.
fn seconds_of(args: &str, default: f64) -> Result<f64, PluginError> {
    let seconds: f64 = if args.is_empty() {
        default
    } else {
        args.parse()
            .map_err(|_| PluginError::new(format!("'{args}' is not a number of seconds")))?
    };
    if !(0.0..=600.0).contains(&seconds) {
        return Err(PluginError::new("it takes 0 to 600 seconds"));
    }
    Ok(seconds)
}

impl Plugin for DemoPlugin {
    fn describe(&self) -> PluginInfo {
        PluginInfo::new(
            "demo",
            "This demo program's own state: its workers and their work",
        )
        .command(
            "stats",
            "Show how much work each worker has done since the start.",
        )
        .command(
            "workers",
            "List the worker threads and what each one does.\n\
             Compare with 'threads' in the process plugin: 'stuck' sleeps on a lock forever.",
        )
        .command(
            "slow",
            "slow SECONDS: a command that takes its time (default 3 s), to see how the\n\
             shell behaves while a call runs and when it outlasts call_timeout.",
        )
        .command(
            "work",
            "work SECONDS: a long command (default 10 s) that says how far it has got,\n\
             which keeps it going past call_timeout; Ctrl-C stops it early, and it says\n\
             how much it did.",
        )
        .gated_command(
            "reset",
            "Set the work counters back to zero. It changes the program's state, so it is\n\
             off unless the configuration says [demo:reset] enabled = true.",
            "demo:reset",
        )
        .command(
            "fail",
            "A command that fails: its error reaches you, the session goes on.",
        )
        .command(
            "crash",
            "A command that panics inside the plugin: you get an error, and both the\n\
             session and the program survive.",
        )
    }

    fn call_with_progress(&self, call: &Call, progress: &Progress) -> Result<Outcome, PluginError> {
        if call.command != "work" {
            return self.call(call);
        }
        let seconds = seconds_of(&call.args, 10.0)?;
        let started = Instant::now();
        let total = Duration::from_secs_f64(seconds);
        while started.elapsed() < total {
            if progress.stop_requested() {
                return Ok(Outcome::Output(format!(
                    "stopped after {:.1} s of {seconds} (Ctrl-C)\n",
                    started.elapsed().as_secs_f64()
                )));
            }
            progress.report(&format!(
                "work: {:.1} s of {seconds}",
                started.elapsed().as_secs_f64()
            ));
            thread::sleep(Duration::from_millis(100).min(total.saturating_sub(started.elapsed())));
        }
        Ok(Outcome::Output(format!("worked {seconds} s\n")))
    }

    fn call(&self, call: &Call) -> Result<Outcome, PluginError> {
        match call.command.as_str() {
            "stats" => {
                let uptime = self.started.elapsed().as_secs_f64();
                Ok(Outcome::Output(format!(
                    "uptime        {uptime:.1} s\n\
                     hashed bytes  {}\n\
                     sorted items  {}\n\
                     ticks         {}\n",
                    self.stats.hashed_bytes.load(Ordering::Relaxed),
                    self.stats.sorted_items.load(Ordering::Relaxed),
                    self.stats.ticks.load(Ordering::Relaxed),
                )))
            }
            "workers" => Ok(Outcome::Output(
                "hasher  hashes a 64 KiB buffer, 20 times a second\n\
                 sorter  sorts 10,000 pseudo-random numbers, 5 times a second\n\
                 ticker  counts seconds\n\
                 holder  holds the 'config' lock and never lets go\n\
                 stuck   waits for the 'config' lock: it hangs, like a deadlocked worker\n"
                    .to_owned(),
            )),
            "slow" => {
                let seconds = seconds_of(&call.args, 3.0)?;
                thread::sleep(Duration::from_secs_f64(seconds));
                Ok(Outcome::Output(format!("done after {seconds} s\n")))
            }
            "reset" => {
                self.stats.hashed_bytes.store(0, Ordering::Relaxed);
                self.stats.sorted_items.store(0, Ordering::Relaxed);
                self.stats.ticks.store(0, Ordering::Relaxed);
                Ok(Outcome::Output("counters reset\n".to_owned()))
            }
            "fail" => Err(PluginError::new(
                "this command always fails, to show what a failure looks like",
            )),
            "crash" => panic!("the demo plugin's crash command was called"),
            other => Err(PluginError::new(format!("no command '{other}'"))),
        }
    }
}

fn spawn_worker(name: &str, work: impl FnOnce() + Send + 'static) {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
        .expect("cannot start a worker thread");
}

/// The hasher's work (FNV-1a over the buffer): a function of its own, so
/// that `profile` in the process plugin names it.
#[inline(never)]
fn fnv1a_hash(mut hash: u64, buffer: &[u8]) -> u64 {
    for &byte in buffer {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The sorter's work: 10,000 xorshift numbers, sorted.
#[inline(never)]
fn sort_random_numbers(seed: &mut u64) -> Vec<u64> {
    let mut items: Vec<u64> = (0..10_000)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        })
        .collect();
    items.sort_unstable();
    items
}

fn start_workers(stats: &Arc<Stats>) {
    let s = Arc::clone(stats);
    spawn_worker("hasher", move || {
        let buffer: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        loop {
            hash = fnv1a_hash(hash, &buffer);
            std::hint::black_box(hash);
            s.hashed_bytes
                .fetch_add(buffer.len() as u64, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(50));
        }
    });
    let s = Arc::clone(stats);
    spawn_worker("sorter", move || {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        loop {
            let items = sort_random_numbers(&mut seed);
            s.sorted_items
                .fetch_add(items.len() as u64, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(200));
        }
    });
    let s = Arc::clone(stats);
    spawn_worker("ticker", move || {
        loop {
            thread::sleep(Duration::from_secs(1));
            s.ticks.fetch_add(1, Ordering::Relaxed);
        }
    });
    let lock = Arc::new(Mutex::new("config"));
    let held = Arc::clone(&lock);
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    spawn_worker("holder", move || {
        let _guard = held.lock().expect("the lock is never poisoned");
        let _ = locked_tx.send(());
        loop {
            thread::park();
        }
    });
    let _ = locked_rx.recv();
    spawn_worker("stuck", move || {
        let _never = lock.lock();
    });
}

/// Blocks SIGINT and SIGTERM in every thread (call before spawning any), so
/// that [`wait_for_signal`] can take them synchronously.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; the calls only fill and install it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut signal = 0;
    // SAFETY: `set` was initialised by block_signals.
    unsafe {
        libc::sigwait(set, &mut signal);
    }
    signal
}

/// The demo, started: its workers run, SIGINT and SIGTERM are blocked so
/// that [`Demo::wait`] can take them.
pub struct Demo {
    /// The configuration file named on the command line.
    pub config: String,
    signals: libc::sigset_t,
    stats: Arc<Stats>,
    started: Instant,
}

impl Demo {
    /// Reads the command line (`demo CONFIG.ini`) and starts the workers.
    pub fn start() -> Demo {
        let Some(config) = std::env::args().nth(1) else {
            eprintln!("usage: demo CONFIG.ini");
            std::process::exit(2);
        };
        let signals = block_signals();
        let stats = Arc::new(Stats::default());
        start_workers(&stats);
        Demo {
            config,
            signals,
            stats,
            started: Instant::now(),
        }
    }

    /// The demo's own plugin, to give to the builder.
    pub fn plugin(&self) -> DemoPlugin {
        DemoPlugin {
            stats: Arc::clone(&self.stats),
            started: self.started,
        }
    }

    /// Prints where ispyd listens, or the error and exits.
    pub fn announce<M, E: std::fmt::Display>(
        &self,
        started: Result<M, E>,
        address: impl Fn(&M) -> String,
    ) -> M {
        let manager = match started {
            Ok(manager) => manager,
            Err(err) => {
                eprintln!("{err}");
                std::process::exit(1);
            }
        };
        println!(
            "demo: pid {}, ispyd listening on {}",
            std::process::id(),
            address(&manager)
        );
        println!(
            "demo: inspect it with: ispy {}   (Ctrl-C here stops the demo)",
            self.config
        );
        manager
    }

    /// Waits for SIGINT or SIGTERM.
    pub fn wait(&self) {
        let signal = wait_for_signal(&self.signals);
        println!("demo: signal {signal}, shutting down");
    }
}
