//! Many sessions at once: ispyd-mio (one loop thread), ispyd-std (a thread
//! per session) and a bare mio echo server with the same loop shape, each
//! measured in the same run with the same client.
//!
//! ```text
//! cargo bench -p ispyd-mio --bench sessions
//! ```
//!
//! The servers run in this process, one after the other; the clients run
//! in a child process (this binary again, with `--client`), so that each
//! side has the machine's whole open-file limit (20,000 here) for its own
//! N descriptors. Both raise their soft limit to the hard one.
//!
//! For each server:
//!
//! - **connect storm**: the client starts N non-blocking connects at once
//!   (retrying the ones the listen backlog turns away) and waits until
//!   every connection has read its greeting (`(ispyd:PID) `, or the echo
//!   server's `(echo) `); the time from the first connect to the last
//!   greeting;
//! - **memory per idle session**: the server process's RSS growth from
//!   before the storm to after it, divided by N;
//! - **idle**: CPU time (ns, from `schedstat`) and context switches of
//!   every server thread over a window with all N sessions idle;
//! - **round trip**: in `shell process`, `pid\n` until the prompt comes back
//!   (the echo server: the echoed line), with 1, 100 and N clients active at
//!   once: each round, every active client sends, and each reply's latency
//!   is timed from its own send; median and p99.
//!
//! Everything runs once per placement of `ISPYD_BENCH_PLACEMENTS` (default
//! `same-cpu,different-cpus`; `unpinned` too if asked): the servers' threads
//! and the client process on CPU 0, or the servers on CPU 1 and the client
//! on CPU 0. Each table says its placement; unpinned the scheduler picks
//! one of those from run to run, so no verdict is read from it.
//!
//! Settings: `ISPYD_BENCH_SESSIONS` (N, default 10000), `ISPYD_BENCH_IDLE_SECS`
//! (default 10), `ISPYD_BENCH_SAMPLES` (round trips timed per active count,
//! default 20000, in at least 5 rounds), `ISPYD_BENCH_STD_SESSIONS` (N for ispyd-std, default N up to 5000). Under
//! `cargo test --benches` the counts are tiny.

#[path = "../../adapter-std/benches/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::task::{self, Counters};
use common::{Placement, PrivateDir, env_or, full_run};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};

fn main() {
    raise_file_limit();
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--client") {
        return client::run(Path::new(&args[at + 1]));
    }
    let full = full_run();
    let n: usize = env_or("ISPYD_BENCH_SESSIONS", if full { 10_000 } else { 20 });
    // A thread per session: at 10,000 this machine left some sessions
    // without a greeting (see BENCHMARKS.md), so the std engine stops lower.
    let std_n: usize = env_or("ISPYD_BENCH_STD_SESSIONS", n.min(5_000));
    let idle_secs: f64 = env_or("ISPYD_BENCH_IDLE_SECS", if full { 10.0 } else { 0.2 });
    let samples: usize = env_or("ISPYD_BENCH_SAMPLES", if full { 20_000 } else { 30 });
    let placements: String = env_or(
        "ISPYD_BENCH_PLACEMENTS",
        "same-cpu,different-cpus".to_owned(),
    );
    let dir = PrivateDir::new("sessions");
    let pid = std::process::id();
    for placement in placements.split(',').map(|p| Placement::from_arg(p.trim())) {
        // The servers' threads inherit this thread's mask; the client
        // process pins itself (BENCH_CLIENT_CPU).
        placement.pin_servers();
        let mut rows = Vec::new();
        for server in [Server::Echo, Server::Mio, Server::Std] {
            let count = if server == Server::Std { std_n } else { n };
            let socket = dir.join(&format!("{}.sock", server.name()));
            let running = server.start(&socket, count);
            let mut client = Client::start(&socket, server.replies(pid), placement.client_cpu());
            rows.push(measure(
                server,
                count,
                &mut client,
                Duration::from_secs_f64(idle_secs),
                samples,
            ));
            client.finish();
            drop(running);
        }
        report(placement, &rows);
    }
}

/// Raises this process's soft open-file limit to its hard limit.
fn raise_file_limit() {
    // SAFETY: plain getrlimit/setrlimit on a struct owned here.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Echo,
    Mio,
    Std,
}

/// A server kept running until dropped.
#[allow(
    dead_code,
    reason = "held only to be dropped at the end of its measurement"
)]
enum Running {
    Echo(echo::EchoServer),
    Mio(ispyd_mio::ShellManager),
    Std(ispyd_std::ShellManager),
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Echo => "echo (bare mio loop)",
            Server::Mio => "ispyd-mio",
            Server::Std => "ispyd-std",
        }
    }

    fn config(socket: &Path, sessions: usize) -> String {
        format!(
            "[ispyd]\nlisten = {}\nmax_sessions = {sessions}\n",
            socket.display()
        )
    }

    fn start(self, socket: &Path, sessions: usize) -> Running {
        let config = Server::config(socket, sessions);
        match self {
            Server::Echo => Running::Echo(echo::EchoServer::start(socket)),
            Server::Mio => Running::Mio(
                ispyd_mio::ShellManager::builder()
                    .config_text("bench", config)
                    .start()
                    .expect("start ispyd-mio"),
            ),
            Server::Std => Running::Std(
                ispyd_std::ShellManager::builder()
                    .config_text("bench", config)
                    .start()
                    .expect("start ispyd-std"),
            ),
        }
    }

    /// What the client sends and the suffix of each answer it waits for.
    fn replies(self, pid: u32) -> Replies {
        match self {
            Server::Echo => Replies {
                greeting: "(echo) ".into(),
                shell: "shell process\n".into(),
                shell_reply: "\n".into(),
                reply: "\n".into(),
            },
            Server::Mio | Server::Std => Replies {
                greeting: format!("(ispyd:{pid}) "),
                shell: "shell process\n".into(),
                shell_reply: format!("(process:{pid}) "),
                reply: format!("(process:{pid}) "),
            },
        }
    }

    /// The server's own threads, by name.
    fn owns(self, name: &str) -> bool {
        match self {
            Server::Echo => name.starts_with("echo-"),
            Server::Mio | Server::Std => name.starts_with("ispyd-"),
        }
    }
}

struct Replies {
    greeting: String,
    shell: String,
    shell_reply: String,
    reply: String,
}

struct Row {
    server: Server,
    sessions: usize,
    storm: Duration,
    rss_per_session: f64,
    threads: usize,
    idle: Counters,
    idle_secs: f64,
    /// (active clients, median µs, p99 µs)
    rtt: Vec<(usize, f64, f64)>,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

fn server_counters(server: Server) -> Vec<(u32, Counters)> {
    task::tasks()
        .into_iter()
        .filter(|t| server.owns(&t.name))
        .filter_map(|t| Some((t.tid, Counters::read(t.tid)?)))
        .collect()
}

fn measure(server: Server, n: usize, client: &mut Client, idle: Duration, samples: usize) -> Row {
    thread::sleep(Duration::from_millis(200));
    let before = rss_kib();
    let storm = client.ask(&format!("connect {n}"));
    let storm = Duration::from_secs_f64(storm[0]);
    // Let the server finish settling its last sessions.
    thread::sleep(Duration::from_millis(500));
    let after = rss_kib();
    let start = server_counters(server);
    thread::sleep(idle);
    let end = server_counters(server);
    let mut total = Counters::default();
    for (tid, end) in &end {
        if let Some((_, start)) = start.iter().find(|(t, _)| t == tid) {
            total.add(&end.since(start));
        }
    }
    client.ask("shell");
    let mut rtt = Vec::new();
    for active in [1, 100, n] {
        if active > n || (active == n && rtt.iter().any(|(a, _, _)| *a == n)) {
            continue;
        }
        let rounds = (samples / active).max(5);
        let stats = client.ask(&format!("rtt {active} {rounds}"));
        rtt.push((active, stats[0], stats[1]));
    }
    Row {
        server,
        sessions: n,
        storm,
        rss_per_session: (after.saturating_sub(before)) as f64 * 1024.0 / n as f64,
        threads: end.len(),
        idle: total,
        idle_secs: idle.as_secs_f64(),
        rtt,
    }
}

fn report(placement: Placement, rows: &[Row]) {
    let placement = placement.name();
    println!("\n### Sessions held at once, {placement} (one run; each server beside the others)\n");
    println!(
        "| server | sessions | connect storm: all greeted | RSS per idle session | server \
         threads | idle: CPU ns / ctx switches over the window |"
    );
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {:.1} ms | {:.0} B | {} | {} / {} over {:.0} s |",
            row.server.name(),
            row.sessions,
            row.storm.as_secs_f64() * 1e3,
            row.rss_per_session,
            row.threads,
            row.idle.cpu_ns.map_or("n/a".into(), |ns| ns.to_string()),
            row.idle.switches(),
            row.idle_secs,
        );
    }
    println!("\n### Round trip `pid` (µs) with many clients active at once, {placement}\n");
    println!("| server | active clients | median | p99 | median ÷ echo | p99 ÷ echo |");
    println!("|---|---|---|---|---|---|");
    let echo: HashMap<usize, (f64, f64)> = rows
        .iter()
        .find(|r| r.server == Server::Echo)
        .map(|r| r.rtt.iter().map(|&(a, m, p)| (a, (m, p))).collect())
        .unwrap_or_default();
    for row in rows {
        for &(active, median, p99) in &row.rtt {
            let (em, ep) = echo.get(&active).copied().unwrap_or((f64::NAN, f64::NAN));
            println!(
                "| {} | {active} | {median:.1} | {p99:.1} | {:.2} | {:.2} |",
                row.server.name(),
                median / em,
                p99 / ep
            );
        }
    }
}

/// The parent's handle on the client process.
struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    fn start(socket: &Path, replies: Replies, cpu: Option<usize>) -> Client {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .arg("--client")
            .env(
                "BENCH_CLIENT_CPU",
                cpu.map_or_else(String::new, |cpu| cpu.to_string()),
            )
            .arg(socket)
            .env("BENCH_GREETING", replies.greeting)
            .env("BENCH_SHELL", replies.shell)
            .env("BENCH_SHELL_REPLY", replies.shell_reply)
            .env("BENCH_REPLY", replies.reply)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the client process");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Client {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command; returns the numbers of its one-line answer.
    fn ask(&mut self, command: &str) -> Vec<f64> {
        writeln!(self.stdin, "{command}").expect("write to the client");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the client");
        assert!(!line.is_empty(), "the client exited during '{command}'");
        line.split_whitespace()
            .map(|v| v.parse().expect("a number"))
            .collect()
    }

    fn finish(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

/// The client process: holds every connection on one mio loop.
mod client {
    use super::*;

    struct Conn {
        stream: UnixStream,
        got: Vec<u8>,
        sent_at: Option<Instant>,
    }

    fn var(name: &str) -> Vec<u8> {
        std::env::var(name).expect(name).into_bytes()
    }

    pub fn run(socket: &Path) {
        if let Ok(cpu) = std::env::var("BENCH_CLIENT_CPU")
            .unwrap_or_default()
            .parse()
        {
            super::common::pin_thread_to_cpu(cpu);
        }
        let greeting = var("BENCH_GREETING");
        let shell = var("BENCH_SHELL");
        let shell_reply = var("BENCH_SHELL_REPLY");
        let reply = var("BENCH_REPLY");
        let mut poll = Poll::new().expect("poll");
        let mut events = Events::with_capacity(4096);
        let mut conns: Vec<Conn> = Vec::new();
        let stdin = io::stdin();
        let mut out = io::stdout();
        for line in stdin.lock().lines() {
            let line = line.expect("command");
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["connect", n] => {
                    let n: usize = n.parse().expect("count");
                    let start = Instant::now();
                    connect_all(&poll, socket, n, &mut conns);
                    let all: Vec<usize> = (0..conns.len()).collect();
                    wait_all(&mut poll, &mut events, &mut conns, &all, &greeting, None);
                    writeln!(out, "{}", start.elapsed().as_secs_f64()).unwrap();
                }
                ["shell"] => {
                    let all: Vec<usize> = (0..conns.len()).collect();
                    for &i in &all {
                        send(&mut conns[i], &shell);
                    }
                    wait_all(&mut poll, &mut events, &mut conns, &all, &shell_reply, None);
                    writeln!(out, "0").unwrap();
                }
                ["rtt", active, rounds] => {
                    let active: usize = active.parse().expect("count");
                    let rounds: usize = rounds.parse().expect("count");
                    let chosen: Vec<usize> = (0..active.min(conns.len())).collect();
                    let mut samples = Vec::with_capacity(rounds * chosen.len());
                    // Warm-up rounds, untimed.
                    for round in 0..rounds + rounds / 10 + 1 {
                        for &i in &chosen {
                            conns[i].sent_at = Some(Instant::now());
                            send(&mut conns[i], b"pid\n");
                        }
                        let timed = round > rounds / 10;
                        let keep = if timed { Some(&mut samples) } else { None };
                        wait_all(&mut poll, &mut events, &mut conns, &chosen, &reply, keep);
                    }
                    samples.sort_by(f64::total_cmp);
                    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
                    writeln!(out, "{} {}", at(0.5), at(0.99)).unwrap();
                }
                _ => panic!("unknown client command {line:?}"),
            }
            out.flush().unwrap();
        }
    }

    fn send(conn: &mut Conn, bytes: &[u8]) {
        // Short lines into an empty socket buffer: written whole.
        let mut rest = bytes;
        while !rest.is_empty() {
            match conn.stream.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => thread::yield_now(),
                Err(e) => panic!("send failed: {e}"),
            }
        }
    }

    fn connect_all(poll: &Poll, socket: &Path, n: usize, conns: &mut Vec<Conn>) {
        let mut missing = n;
        while missing > 0 {
            match UnixStream::connect(socket) {
                Ok(mut stream) => {
                    let token = Token(conns.len());
                    poll.registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .expect("register");
                    conns.push(Conn {
                        stream,
                        got: Vec::new(),
                        sent_at: None,
                    });
                    missing -= 1;
                }
                // The listen backlog is full: let the server accept.
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_micros(200))
                }
                Err(e) => panic!("connect failed after {} connections: {e}", conns.len()),
            }
        }
    }

    /// Reads until each of `which` has received a reply ending in `end`.
    fn wait_all(
        poll: &mut Poll,
        events: &mut Events,
        conns: &mut [Conn],
        which: &[usize],
        end: &[u8],
        mut samples: Option<&mut Vec<f64>>,
    ) {
        let mut waiting: std::collections::HashSet<usize> = which.iter().copied().collect();
        // Replies that came before their readiness event was seen.
        for &i in which {
            if drain(&mut conns[i], end) {
                record(&mut conns[i], &mut samples);
                waiting.remove(&i);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while !waiting.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{} replies never came",
                waiting.len()
            );
            poll.poll(events, Some(Duration::from_secs(1)))
                .expect("poll");
            for event in events.iter() {
                let i = event.token().0;
                if waiting.contains(&i) && drain(&mut conns[i], end) {
                    record(&mut conns[i], &mut samples);
                    waiting.remove(&i);
                }
            }
        }
    }

    fn record(conn: &mut Conn, samples: &mut Option<&mut Vec<f64>>) {
        if let (Some(samples), Some(at)) = (samples.as_mut(), conn.sent_at.take()) {
            samples.push(at.elapsed().as_secs_f64() * 1e6);
        }
        conn.got.clear();
    }

    /// Reads what is there; true once the received text ends with `end`.
    fn drain(conn: &mut Conn, end: &[u8]) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match conn.stream.read(&mut buf) {
                Ok(0) => panic!("the server closed a session"),
                Ok(n) => conn.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
        conn.got.ends_with(end)
    }
}

/// The baseline: a bare mio echo server with ispyd-mio's loop shape (one
/// loop thread owning the listener and every connection, edge-triggered,
/// read interest only), which greets each connection as ispyd does.
mod echo {
    use super::*;

    const LISTENER: Token = Token(usize::MAX - 1);
    const STOP: Token = Token(usize::MAX - 2);

    pub struct EchoServer {
        waker: mio::Waker,
        thread: Option<thread::JoinHandle<()>>,
        path: PathBuf,
    }

    impl EchoServer {
        pub fn start(path: &Path) -> EchoServer {
            let std_listener = StdUnixListener::bind(path).expect("bind the echo socket");
            std_listener.set_nonblocking(true).expect("non-blocking");
            let mut listener = UnixListener::from_std(std_listener);
            let poll = Poll::new().expect("poll");
            poll.registry()
                .register(&mut listener, LISTENER, Interest::READABLE)
                .expect("register");
            let waker = mio::Waker::new(poll.registry(), STOP).expect("waker");
            let thread = thread::Builder::new()
                .name("echo-loop".into())
                .spawn(move || serve(poll, listener))
                .expect("spawn");
            EchoServer {
                waker,
                thread: Some(thread),
                path: path.to_path_buf(),
            }
        }
    }

    impl Drop for EchoServer {
        fn drop(&mut self) {
            let _ = self.waker.wake();
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn serve(mut poll: Poll, listener: UnixListener) {
        let mut events = Events::with_capacity(1024);
        let mut conns: Vec<Option<UnixStream>> = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if poll.poll(&mut events, None).is_err() {
                continue;
            }
            for event in events.iter() {
                match event.token() {
                    STOP => return,
                    LISTENER => loop {
                        match listener.accept() {
                            Ok((mut stream, _)) => {
                                let token = Token(conns.len());
                                poll.registry()
                                    .register(&mut stream, token, Interest::READABLE)
                                    .expect("register");
                                let _ = stream.write(b"(echo) ");
                                conns.push(Some(stream));
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(_) => break,
                        }
                    },
                    Token(i) => {
                        let Some(stream) = conns.get_mut(i).and_then(Option::as_mut) else {
                            continue;
                        };
                        loop {
                            match stream.read(&mut buf) {
                                Ok(0) => {
                                    conns[i] = None;
                                    break;
                                }
                                Ok(n) => {
                                    let _ = stream.write(&buf[..n]);
                                }
                                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                                Err(_) => {
                                    conns[i] = None;
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
