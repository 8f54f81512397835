//! Heap allocations per `pid` round trip on the session's side: the core's
//! session, dispatcher and registry with the real `process` plugin, stepped
//! in memory as the std adapter steps them, with no sockets, so that only
//! the allocations of parsing, dispatch, the plugin and formatting count.
//!
//! ```text
//! cargo bench -p ispyd-std --bench allocations
//! ```
//!
//! A counting global allocator wraps the system's. After a warm-up, each
//! round trip feeds one framed `pid` line, runs the call, hands the result
//! back, and takes the reply (output and prompt) as written. Reported: the
//! `alloc`, `realloc` and `dealloc` calls per round trip, and the bytes
//! asked for. `ISPYD_BENCH_ROUNDS` sets the round trips (default 100,000;
//! under `cargo test --benches`, 100).
#![allow(
    clippy::disallowed_methods,
    reason = "Instant::now is the driver's clock, as in the adapters"
)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use common::{env_or, full_run};
use ispyd_core::{
    Action, CLIENT_HELLO, Config, Dispatcher, Frame, Host, Listen, Plugin, Registry, Session,
};
use ispyd_std::ProcessPlugin;

/// The system allocator, counting its calls.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to `System` unchanged; the counters are
// atomics, touched without allocating.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREES.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        REALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counts() -> [u64; 4] {
    [&ALLOCS, &REALLOCS, &FREES, &BYTES].map(|c| c.load(Ordering::Relaxed))
}

/// One session in the process shell, stepped as an adapter steps it.
struct Served {
    session: Session,
    dispatcher: Dispatcher,
    registry: Registry,
}

impl Served {
    fn new() -> Served {
        let config = Config::new(Listen::Unix("/tmp/ispyd-bench.sock".into()), &["process"]);
        let available: Vec<Arc<dyn Plugin>> = vec![Arc::new(ProcessPlugin::new())];
        let registry = Registry::from_config(&config, &available).expect("the process plugin");
        let host = Host::new(std::process::id(), &config, registry.infos());
        let session = Session::new(Arc::new(host), 1, Instant::now());
        let mut served = Served {
            session,
            dispatcher: Dispatcher::new(),
            registry,
        };
        served.send(CLIENT_HELLO);
        served.send(&line("shell process"));
        served
    }

    /// Feeds `bytes`, runs what they ask for, and takes every reply byte.
    fn send(&mut self, bytes: &[u8]) -> usize {
        let now = Instant::now();
        self.session.handle_input(bytes, now);
        while let Some(action) = self
            .dispatcher
            .poll_action(&mut self.session, &self.registry, now)
        {
            if let Action::Run(job) = action {
                let done = job.run(&self.registry);
                self.dispatcher
                    .handle_done(&mut self.session, done, now)
                    .expect("a result the session waits for");
            }
        }
        let mut written = 0;
        while let Some(out) = self.session.poll_transmit() {
            let n = out.len();
            written += n;
            self.session.handle_written(n, now);
        }
        written
    }
}

fn line(text: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    Frame::Line(text.to_owned()).encode(&mut bytes);
    bytes
}

fn main() {
    let rounds: u64 = if full_run() {
        env_or("ISPYD_BENCH_ROUNDS", 100_000)
    } else {
        100
    };
    let mut served = Served::new();
    let pid = line("pid");
    for _ in 0..1_000 {
        served.send(&pid);
    }
    let before = counts();
    let mut written = 0;
    for _ in 0..rounds {
        written += served.send(&pid);
    }
    let after = counts();
    assert!(!served.session.is_closed() && written > 0);
    let per = |i: usize| (after[i] - before[i]) as f64 / rounds as f64;
    println!("| what | per `pid` round trip |");
    println!("|---|---:|");
    println!("| alloc | {:.2} |", per(0));
    println!("| realloc | {:.2} |", per(1));
    println!("| dealloc | {:.2} |", per(2));
    println!("| bytes allocated | {:.0} |", per(3));
    println!("| reply bytes | {:.0} |", written as f64 / rounds as f64);
    println!("({rounds} round trips)");
}
