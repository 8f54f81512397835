//! Latency of ispyd-std over a UNIX socket, against a bare echo server
//! measured in the same run by the same client code.
//!
//! ```text
//! cargo bench -p ispyd-std --bench roundtrip
//! ```
//!
//! Two measurements, each for ispyd and for the echo baseline:
//!
//! - **round trip**: in text mode, inside `shell process`, the client writes
//!   `pid\n` and reads until the reply ends with the prompt
//!   `(process:PID) `; against echo it writes the same line and reads until
//!   the echoed `\n`.
//! - **connect to first prompt**: from `connect()` to having read the whole
//!   greeting `(ispyd:PID) `; against echo, `connect()` and one exchange of
//!   a 1-byte message. The connection is closed and the server seen to
//!   notice (untimed) before the next one.
//!
//! The echo server has ispyd's threading shape: a listener thread, a thread
//! per connection doing blocking `read` then `write` back.
//!
//! Both run twice, each in a child process that re-executes this binary:
//! unpinned, and with the whole process (client, listener and session
//! threads) pinned to CPU 0 before any thread starts. Echo and ispyd
//! alternate in blocks so that drift in the machine hits both alike.
//!
//! Settings: `ISPYD_BENCH_ROUNDS` (timed round trips per server, default
//! 20000, after 2000 warm-up ones) and `ISPYD_BENCH_CONNECTS` (timed
//! connections per server, default 2000). Under `cargo test --benches` the
//! counts are tiny: that run only checks that the benchmark works.
//!
//! The table printed at the end is Markdown, ready for BENCHMARKS.md.

mod common;

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{PrivateDir, env_or, full_run};
use ispyd_std::{Limits, ShellManager};

/// Round trips and connections are timed in this many blocks per server,
/// alternating echo and ispyd.
const BLOCKS: usize = 10;

/// The line every round trip sends, to either server.
const LINE: &[u8] = b"pid\n";

/// The 1-byte message of the echo baseline's first exchange.
const PING: &[u8] = b"x";

/// Where the child process's threads may run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Wherever the scheduler puts them.
    Unpinned,
    /// All on CPU 0.
    Pinned,
}

impl Placement {
    const ALL: [Placement; 2] = [Placement::Unpinned, Placement::Pinned];

    fn name(self) -> &'static str {
        match self {
            Placement::Unpinned => "unpinned",
            Placement::Pinned => "pinned to CPU 0",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Placement::Unpinned => "unpinned",
            Placement::Pinned => "pinned",
        }
    }

    fn from_arg(arg: &str) -> Placement {
        Placement::ALL
            .into_iter()
            .find(|p| p.arg() == arg)
            .unwrap_or_else(|| panic!("unknown placement {arg:?}"))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--child") {
        let placement = Placement::from_arg(args.get(at + 1).map_or("", String::as_str));
        measure(placement);
        return;
    }
    println!("{}", machine_summary());
    let mut results = Vec::new();
    for placement in Placement::ALL {
        results.extend(run_child(placement));
    }
    print_table(&results);
}

/// Re-executes this binary to measure with `placement`, and collects what
/// it reports.
fn run_child(placement: Placement) -> Vec<Measured> {
    let exe = std::env::current_exe().expect("cannot find this benchmark's executable");
    let mut command = Command::new(exe);
    command.arg("--child").arg(placement.arg());
    if full_run() {
        command.arg("--bench");
    }
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot start the measuring child process");
    assert!(
        output.status.success(),
        "the {} measurement failed: {}",
        placement.name(),
        output.status
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(Measured::parse)
        .collect()
}

/// One measurement of one server, as the child reports it to the parent.
struct Measured {
    what: String,
    placement: String,
    server: String,
    stats: Stats,
}

impl Measured {
    const TAG: &'static str = "RESULT";

    fn line(&self) -> String {
        let s = &self.stats;
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            Measured::TAG,
            self.what,
            self.placement,
            self.server,
            s.count,
            s.median,
            s.p90,
            s.p99,
            s.mean
        )
    }

    fn parse(line: &str) -> Option<Measured> {
        let fields: Vec<&str> = line.split('\t').collect();
        let [tag, what, placement, server, numbers @ ..] = fields.as_slice() else {
            return None;
        };
        let numbers: Vec<f64> = numbers.iter().filter_map(|n| n.parse().ok()).collect();
        let [count, median, p90, p99, mean] = numbers.as_slice() else {
            return None;
        };
        (*tag == Measured::TAG).then(|| Measured {
            what: (*what).to_owned(),
            placement: (*placement).to_owned(),
            server: (*server).to_owned(),
            stats: Stats {
                count: *count as usize,
                median: *median,
                p90: *p90,
                p99: *p99,
                mean: *mean,
            },
        })
    }
}

/// Summary of a set of durations, in microseconds.
struct Stats {
    count: usize,
    median: f64,
    p90: f64,
    p99: f64,
    mean: f64,
}

impl Stats {
    fn of(samples: &mut [Duration]) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let n = samples.len();
        let at = |percent: usize| micros(samples[(n * percent / 100).min(n - 1)]);
        let total: Duration = samples.iter().sum();
        Stats {
            count: n,
            median: at(50),
            p90: at(90),
            p99: at(99),
            mean: micros(total) / n as f64,
        }
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn print_table(results: &[Measured]) {
    println!();
    println!(
        "| measurement | placement | server | n | median µs | p90 µs | p99 µs | mean µs | ispyd ÷ echo (median / mean) |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---|");
    for result in results {
        let s = &result.stats;
        let ratio = if result.server == "ispyd" {
            results
                .iter()
                .find(|echo| {
                    echo.server == "echo"
                        && echo.what == result.what
                        && echo.placement == result.placement
                })
                .map_or(String::new(), |echo| {
                    format!(
                        "{:.2}× / {:.2}×",
                        s.median / echo.stats.median,
                        s.mean / echo.stats.mean
                    )
                })
        } else {
            String::new()
        };
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            result.what,
            result.placement,
            result.server,
            s.count,
            s.median,
            s.p90,
            s.p99,
            s.mean,
            ratio
        );
    }
}

/// CPUs, kernel and compiler, for the record.
fn machine_summary() -> String {
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    // SAFETY: utsname is plain data that uname(2) fills in.
    let release = unsafe {
        let mut uts: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut uts) == 0 {
            std::ffi::CStr::from_ptr(uts.release.as_ptr())
                .to_string_lossy()
                .into_owned()
        } else {
            "unknown".to_owned()
        }
    };
    format!("ispyd-std roundtrip benchmark: {cpus} CPUs, Linux {release}")
}

/// What the child does: starts both servers and measures them.
fn measure(placement: Placement) {
    if placement == Placement::Pinned {
        pin_process_to_cpu(0);
    }
    let full = full_run();
    let rounds: usize = env_or("ISPYD_BENCH_ROUNDS", if full { 20_000 } else { 200 });
    let warmup = if full { 2_000 } else { 20 };
    let connects: usize = env_or("ISPYD_BENCH_CONNECTS", if full { 2_000 } else { 20 });

    let dir = PrivateDir::new("roundtrip");
    let manager = ShellManager::builder()
        .listen(path_text(&dir.join("ispyd.sock")))
        .limits(Limits {
            max_sessions: 1024,
            ..Limits::default()
        })
        .report_warnings(false)
        .start()
        .expect("cannot start ispyd");
    let echo_server = EchoServer::start(&dir.join("echo.sock"));
    let pid = std::process::id();
    let ispyd = Target {
        name: "ispyd",
        path: dir.join("ispyd.sock"),
        hello: Vec::new(),
        hello_end: format!("(ispyd:{pid}) ").into_bytes(),
        reply_end: format!("(process:{pid}) ").into_bytes(),
        open: Box::new(|| manager.session_count()),
    };
    let echo = Target {
        name: "echo",
        path: echo_server.path.clone(),
        hello: PING.to_vec(),
        hello_end: PING.to_vec(),
        reply_end: b"\n".to_vec(),
        open: Box::new(move || echo_server.open.load(Ordering::SeqCst)),
    };
    let targets = [&echo, &ispyd];
    let report = |what: &str, target: &Target, samples: &mut [Duration]| {
        let measured = Measured {
            what: what.to_owned(),
            placement: placement.name().to_owned(),
            server: target.name.to_owned(),
            stats: Stats::of(samples),
        };
        println!("{}", measured.line());
    };

    // Connect to first prompt.
    let mut connect_samples = [Vec::new(), Vec::new()];
    for target in targets {
        for _ in 0..warmup.min(connects) {
            target.connect_once();
        }
    }
    for _ in 0..BLOCKS {
        for (target, samples) in targets.iter().zip(&mut connect_samples) {
            for _ in 0..connects.div_ceil(BLOCKS) {
                samples.push(target.connect_once());
            }
        }
    }
    for (target, samples) in targets.iter().zip(&mut connect_samples) {
        report("connect to first prompt", target, samples);
    }

    // Round trips, each on one long-lived session.
    let mut echo_stream = UnixStream::connect(&echo.path).expect("cannot connect to echo");
    let mut ispyd_stream = UnixStream::connect(&ispyd.path).expect("cannot connect to ispyd");
    let mut reply = Vec::new();
    exchange(&mut ispyd_stream, b"", &ispyd.hello_end, &mut reply).expect("no greeting");
    exchange(
        &mut ispyd_stream,
        b"shell process\n",
        &ispyd.reply_end,
        &mut reply,
    )
    .expect("cannot enter 'shell process'");
    exchange(&mut ispyd_stream, LINE, &ispyd.reply_end, &mut reply).expect("no reply to 'pid'");
    assert_eq!(
        String::from_utf8_lossy(&reply),
        format!("{pid}\n(process:{pid}) "),
        "unexpected reply to 'pid'"
    );
    exchange(&mut echo_stream, LINE, &echo.reply_end, &mut reply).expect("no echo");
    assert_eq!(reply, LINE, "the echo server changed the line");

    let mut streams = [echo_stream, ispyd_stream];
    let mut round_samples = [
        Vec::with_capacity(rounds + BLOCKS),
        Vec::with_capacity(rounds + BLOCKS),
    ];
    let mut sink = Vec::new();
    for (target, stream) in targets.iter().zip(&mut streams) {
        time_round_trips(stream, &target.reply_end, warmup, &mut sink);
    }
    for _ in 0..BLOCKS {
        for ((target, stream), samples) in targets.iter().zip(&mut streams).zip(&mut round_samples)
        {
            time_round_trips(stream, &target.reply_end, rounds.div_ceil(BLOCKS), samples);
        }
    }
    for (target, samples) in targets.iter().zip(&mut round_samples) {
        report("round trip `pid`", target, samples);
    }
    drop(streams);
    drop(ispyd);
    manager.shutdown();
}

/// A server as the client sees it.
struct Target<'a> {
    name: &'static str,
    path: PathBuf,
    /// What a new connection writes first (nothing for ispyd, which speaks
    /// first) and the suffix that ends the first reply.
    hello: Vec<u8>,
    hello_end: Vec<u8>,
    /// The suffix that ends the reply to [`LINE`].
    reply_end: Vec<u8>,
    /// How many connections the server is serving now.
    open: Box<dyn Fn() -> usize + 'a>,
}

impl Target<'_> {
    /// Times one connection up to the end of its first reply, then closes
    /// it and waits (untimed) until the server has let it go.
    fn connect_once(&self) -> Duration {
        let before = (self.open)();
        let mut reply = Vec::new();
        let start = Instant::now();
        let mut stream = UnixStream::connect(&self.path).expect("cannot connect");
        exchange(&mut stream, &self.hello, &self.hello_end, &mut reply).expect("no first reply");
        let elapsed = start.elapsed();
        drop(stream);
        let give_up = Instant::now() + Duration::from_secs(10);
        while (self.open)() > before {
            assert!(
                Instant::now() < give_up,
                "{} did not notice a closed connection",
                self.name
            );
            thread::sleep(Duration::from_micros(20));
        }
        elapsed
    }
}

/// The client's half of an exchange, the same for both servers: writes
/// `send` (if any), then reads until what came back ends with `end`.
fn exchange(
    stream: &mut UnixStream,
    send: &[u8],
    end: &[u8],
    reply: &mut Vec<u8>,
) -> io::Result<()> {
    if !send.is_empty() {
        stream.write_all(send)?;
    }
    reply.clear();
    let mut chunk = [0u8; 4096];
    while !reply.ends_with(end) {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        reply.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

fn time_round_trips(stream: &mut UnixStream, end: &[u8], n: usize, samples: &mut Vec<Duration>) {
    let mut reply = Vec::with_capacity(256);
    for _ in 0..n {
        let start = Instant::now();
        exchange(stream, LINE, end, &mut reply).expect("round trip failed");
        samples.push(start.elapsed());
    }
}

/// The baseline: what any blocking thread-per-connection server costs.
struct EchoServer {
    path: PathBuf,
    /// Connections whose thread has not finished yet.
    open: Arc<AtomicUsize>,
}

impl EchoServer {
    fn start(path: &Path) -> EchoServer {
        let listener = UnixListener::bind(path).expect("cannot bind the echo socket");
        let open = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&open);
        thread::Builder::new()
            .name("echo-listener".to_owned())
            .spawn(move || {
                for (n, stream) in listener.incoming().enumerate() {
                    let Ok(stream) = stream else { continue };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let counter = Arc::clone(&counter);
                    thread::Builder::new()
                        .name(format!("echo-session-{n}"))
                        .spawn(move || {
                            echo(stream);
                            counter.fetch_sub(1, Ordering::SeqCst);
                        })
                        .expect("cannot start an echo thread");
                }
            })
            .expect("cannot start the echo listener");
        EchoServer {
            path: path.to_path_buf(),
            open,
        }
    }
}

fn echo(mut stream: UnixStream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Pins the calling thread, and so every thread it starts later, to `cpu`.
fn pin_process_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO and CPU_SET write inside it
    // and sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        rc,
        0,
        "cannot pin to CPU {cpu}: {}",
        io::Error::last_os_error()
    );
}

fn path_text(path: &Path) -> String {
    path.to_str()
        .expect("the temporary directory's path is not UTF-8")
        .to_owned()
}
