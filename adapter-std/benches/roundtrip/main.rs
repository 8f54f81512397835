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
//! The echo server ([`echo`]) has ispyd's threading shape: a listener
//! thread, a thread per connection doing blocking `read` then `write` back.
//!
//! Both run three times, each in a child process that re-executes this
//! binary: unpinned; with client and servers on one CPU (the whole process
//! pinned to CPU 0 before any thread starts); and on different CPUs (the
//! servers' threads on CPU 1, the client on CPU 0). Each ratio is reported
//! with its placement: unpinned, the scheduler picks one of the other two
//! from run to run, so that figure is bimodal and decides nothing. Echo and ispyd
//! alternate in blocks so that drift in the machine hits both alike. Around
//! each block of round trips the kernel's counters of the client thread and
//! of the serving thread are read (untimed), to show where time goes: CPU
//! time, voluntary and involuntary context switches, CPU migrations.
//!
//! Settings: `ISPYD_BENCH_ROUNDS` (timed round trips per server, default
//! 20000, after 2000 warm-up ones), `ISPYD_BENCH_CONNECTS` (timed
//! connections per server, default 2000) and `ISPYD_BENCH_CLIENT` (`read`,
//! the default: the client blocks in `read`; `poll`: it waits in `poll`
//! first, see [`CLIENT_POLLS`]). Under `cargo test --benches` the
//! counts are tiny: that run only checks that the benchmark works.
//!
//! The tables printed at the end are Markdown, ready for BENCHMARKS.md.

#[path = "../common/mod.rs"]
mod common;
mod echo;
mod report;

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::thread;
use std::time::{Duration, Instant};

use common::task::{self, Counters};
use common::{Placement, PrivateDir, env_or, full_run};
use echo::EchoServer;
use ispyd_std::{Limits, ShellManager};
use report::{Record, Stats};

/// Round trips and connections are timed in this many blocks per server,
/// alternating echo and ispyd.
const BLOCKS: usize = 10;

/// The line every round trip sends, to either server.
const LINE: &[u8] = b"pid\n";

/// The 1-byte message of the echo baseline's first exchange.
const PING: &[u8] = b"x";

/// Where the child process's threads may run.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--child") {
        let placement = Placement::from_arg(args.get(at + 1).map_or("", String::as_str));
        measure(placement);
        return;
    }
    println!("{}", machine_summary());
    let others = OtherLoad::start();
    let mut records = Vec::new();
    for placement in Placement::ALL {
        records.extend(run_child(placement));
    }
    report::print_tables(&records);
    println!();
    println!("{}", others.finish());
}

/// Re-executes this binary to measure with `placement`, and collects what
/// it reports.
fn run_child(placement: Placement) -> Vec<Record> {
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
        .filter_map(Record::parse)
        .collect()
}

/// CPUs, kernel and load average, for the record.
fn machine_summary() -> String {
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    // SAFETY: utsname is plain data that uname(2) fills in; the release is
    // NUL-terminated when it succeeds.
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
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let client = if *CLIENT_POLLS {
        "poll(POLLIN), then read"
    } else {
        "blocking read"
    };
    format!(
        "ispyd-std roundtrip benchmark: {cpus} CPUs, Linux {release}, load average {}; \
         the client waits in {client}",
        load.join(" ")
    )
}

/// How much CPU other processes used while the children measured: a busy
/// machine makes latencies noisy, so each run says how busy it was.
struct OtherLoad {
    started: Instant,
    busy: f64,
}

impl OtherLoad {
    fn start() -> OtherLoad {
        OtherLoad {
            started: Instant::now(),
            busy: machine_busy_seconds(),
        }
    }

    /// The share of the machine's CPU time, in the run so far, that went to
    /// anything but this benchmark's children.
    fn finish(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let cpus = thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let busy = machine_busy_seconds() - self.busy;
        let others = (busy - children_cpu_seconds()).max(0.0);
        format!(
            "Other processes used {:.1}% of the machine's CPU time during the {elapsed:.1} s run.",
            100.0 * others / (elapsed * cpus)
        )
    }
}

/// CPU time spent so far, on all CPUs, not idle (from `/proc/stat`).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and
    // iowait are busy (guest time is already inside user).
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    busy as f64 / hz as f64
}

/// CPU time used by the children this process has waited for.
fn children_cpu_seconds() -> f64 {
    // SAFETY: rusage is plain data that getrusage(2) fills in.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// What the child does: starts both servers in this process, measures
/// them, and prints its records.
fn measure(placement: Placement) {
    placement.pin_servers();
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
    placement.pin_client();
    let pid = std::process::id();
    let ispyd = Target {
        name: "ispyd",
        path: dir.join("ispyd.sock"),
        session_thread: "ispyd-s-",
        hello: Vec::new(),
        hello_end: format!("(ispyd:{pid}) ").into_bytes(),
        reply_end: format!("(process:{pid}) ").into_bytes(),
        open: Box::new(|| manager.session_count()),
    };
    let echo = Target {
        name: "echo",
        path: echo_server.path().to_path_buf(),
        session_thread: echo::SESSION_THREAD,
        hello: PING.to_vec(),
        hello_end: PING.to_vec(),
        reply_end: b"\n".to_vec(),
        open: Box::new(|| echo_server.open_connections()),
    };
    let targets = [&echo, &ispyd];
    let emit = |record: Record| println!("{}", record.line());
    let latency = |what: &str, target: &Target, samples: &mut [Duration]| Record::Latency {
        what: what.to_owned(),
        placement: placement.name().to_owned(),
        server: target.name.to_owned(),
        stats: Stats::of(samples),
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
        emit(latency("connect to first prompt", target, samples));
    }

    // Round trips, each server on one long-lived session.
    let mut sessions = [echo.open_session(LINE), ispyd.open_session(LINE)];
    let client = task::current_tid();
    let mut round_samples = [
        Vec::with_capacity(rounds + BLOCKS),
        Vec::with_capacity(rounds + BLOCKS),
    ];
    let mut counted = [[Counters::default(); 2]; 2];
    let mut sink = Vec::new();
    for (target, session) in targets.iter().zip(&mut sessions) {
        time_round_trips(&mut session.stream, &target.reply_end, warmup, &mut sink);
    }
    for _ in 0..BLOCKS {
        for (((target, session), samples), counted) in targets
            .iter()
            .zip(&mut sessions)
            .zip(&mut round_samples)
            .zip(&mut counted)
        {
            let threads = [client, session.server_thread];
            let before = threads.map(read_counters);
            let n = rounds.div_ceil(BLOCKS);
            time_round_trips(&mut session.stream, &target.reply_end, n, samples);
            let after = threads.map(read_counters);
            for ((sum, end), start) in counted.iter_mut().zip(&after).zip(&before) {
                sum.add(&end.since(start));
            }
        }
    }
    for ((target, samples), counted) in targets.iter().zip(&mut round_samples).zip(&counted) {
        emit(latency("round trip `pid`", target, samples));
        for (role, counted) in ["client", "server"].iter().zip(counted) {
            emit(Record::Thread {
                placement: placement.name().to_owned(),
                server: target.name.to_owned(),
                role: format!("{role} ({})", target.thread_label(role)),
                rounds: samples.len(),
                counted: *counted,
            });
        }
    }
    drop(sessions);
    drop(ispyd);
    manager.shutdown();
}

fn read_counters(tid: u32) -> Counters {
    Counters::read(tid).unwrap_or_else(|| panic!("thread {tid} has gone"))
}

/// A server as the client sees it.
struct Target<'a> {
    name: &'static str,
    path: PathBuf,
    /// The name prefix of the server's per-connection threads.
    session_thread: &'static str,
    /// What a new connection writes first (nothing for ispyd, which speaks
    /// first) and the suffix that ends the first reply.
    hello: Vec<u8>,
    hello_end: Vec<u8>,
    /// The suffix that ends the reply to [`LINE`].
    reply_end: Vec<u8>,
    /// How many connections the server is serving now.
    open: Box<dyn Fn() -> usize + 'a>,
}

/// A connection ready for round trips, and the thread serving it.
struct OpenSession {
    stream: UnixStream,
    server_thread: u32,
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

    /// Connects for round trips: gets past the greeting, into `shell
    /// process` for ispyd, and checks that `line` gets the reply it should.
    fn open_session(&self, line: &[u8]) -> OpenSession {
        let mut stream = UnixStream::connect(&self.path).expect("cannot connect");
        let mut reply = Vec::new();
        exchange(&mut stream, &self.hello, &self.hello_end, &mut reply).expect("no first reply");
        let pid = std::process::id();
        let expected = if self.hello.is_empty() {
            exchange(&mut stream, b"shell process\n", &self.reply_end, &mut reply)
                .expect("cannot enter 'shell process'");
            format!("{pid}\n(process:{pid}) ").into_bytes()
        } else {
            line.to_vec()
        };
        exchange(&mut stream, line, &self.reply_end, &mut reply).expect("no reply");
        assert_eq!(
            String::from_utf8_lossy(&reply),
            String::from_utf8_lossy(&expected),
            "unexpected reply from {}",
            self.name
        );
        // The connection just made is served by the newest such thread.
        let server_thread = task::tasks()
            .into_iter()
            .filter(|t| t.name.starts_with(self.session_thread))
            .map(|t| t.tid)
            .max()
            .unwrap_or_else(|| panic!("no {}* thread", self.session_thread));
        OpenSession {
            stream,
            server_thread,
        }
    }

    fn thread_label(&self, role: &str) -> String {
        match role {
            "server" => format!("{}N", self.session_thread),
            _ => "main".to_owned(),
        }
    }
}

/// Whether the client waits for a reply in `poll(POLLIN)` before each
/// `read`, instead of blocking in `read` (`ISPYD_BENCH_CLIENT=poll`).
///
/// A thread blocked in `read` on a UNIX stream socket is also woken when
/// the peer consumes what the thread sent (the kernel signals write space
/// on the same wait queue); one waiting in `poll` for `POLLIN` is not.
static CLIENT_POLLS: LazyLock<bool> =
    LazyLock::new(|| match std::env::var("ISPYD_BENCH_CLIENT").as_deref() {
        Ok("poll") => true,
        Ok("read") | Err(_) => false,
        Ok(other) => panic!("ISPYD_BENCH_CLIENT={other:?}: expected 'read' or 'poll'"),
    });

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
        if *CLIENT_POLLS {
            wait_readable(stream)?;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        reply.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

/// Blocks in `poll` until `stream` has something to read.
fn wait_readable(stream: &UnixStream) -> io::Result<()> {
    let mut wanted = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `wanted` is one valid pollfd for the call's duration.
        if unsafe { libc::poll(&mut wanted, 1, -1) } >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn time_round_trips(stream: &mut UnixStream, end: &[u8], n: usize, samples: &mut Vec<Duration>) {
    let mut reply = Vec::with_capacity(256);
    for _ in 0..n {
        let start = Instant::now();
        exchange(stream, LINE, end, &mut reply).expect("round trip failed");
        samples.push(start.elapsed());
    }
}

fn path_text(path: &Path) -> String {
    path.to_str()
        .expect("the temporary directory's path is not UTF-8")
        .to_owned()
}
