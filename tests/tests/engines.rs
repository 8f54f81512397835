//! What each engine promises about where work runs: a slow call never
//! delays another session, and the mio engine runs inside a host's own
//! loop without a thread of its own.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use common::{Demo, Text, ispy_piped, stdout, wait_for};

#[test]
fn a_slow_call_never_delays_other_sessions() {
    let demo = Demo::start("call_timeout = 120\nmax_sessions = 128");
    let mut slow = demo.connect();
    let demo_prompt = format!("(demo:{}) ", demo.pid);
    slow.send("shell demo\n");
    slow.read_until(&demo_prompt);
    // Longer than any wait below: if the call held up the server, the
    // round trips would fail waiting, not pass late.
    slow.send("slow 60\n");
    let prompt = format!("(process:{}) ", demo.pid);
    let mut others: Vec<Text> = (0..100)
        .map(|_| {
            let mut text = demo.connect();
            text.send("shell process\n");
            text.read_until(&prompt);
            text
        })
        .collect();
    for _ in 0..100 {
        for text in &mut others {
            text.send("pid\n");
            assert_eq!(text.read_until(&prompt), format!("{}\n{prompt}", demo.pid));
        }
    }
    slow.stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let pending = slow.stream.read(&mut byte);
    assert!(
        matches!(&pending, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the slow call answered before the others were done: {pending:?}"
    );
}

/// The `host-loop` example, running with its config in a fresh directory.
struct HostLoop {
    child: std::process::Child,
    /// Kept open so that the program's later messages have a reader.
    _output: BufReader<std::process::ChildStdout>,
    pid: u32,
    echo_port: u16,
    socket: String,
    _dir: tempfile::TempDir,
}

impl HostLoop {
    fn start() -> HostLoop {
        let dir = common::shared_tempdir();
        let config = dir.path().join("host.ini");
        let listen = format!("{}/ispyd-%(pid)s.sock", dir.path().display());
        std::fs::write(&config, format!("[ispyd]\nlisten = {listen}\n")).unwrap();
        let mut child = Command::new(common::example_bin("host-loop"))
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start host-loop");
        let mut line = String::new();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        output.read_line(&mut line).unwrap();
        // "host-loop: pid P, echo service on 127.0.0.1:PORT, ispyd listening on PATH"
        let field = |after: &str, until: &str| {
            let start = line.find(after).expect("banner") + after.len();
            let rest = &line[start..];
            rest[..rest.find(until).unwrap_or(rest.len())]
                .trim()
                .to_owned()
        };
        let pid = field("pid ", ",").parse().unwrap();
        let echo_port = field("echo service on 127.0.0.1:", ",").parse().unwrap();
        let socket = field("ispyd listening on ", "\n");
        HostLoop {
            child,
            _output: output,
            pid,
            echo_port,
            socket,
            _dir: dir,
        }
    }

    fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid))
            .unwrap()
            .count()
    }
}

impl Drop for HostLoop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn host_loop_serves_its_echo_and_ispyd_from_its_main_thread_alone() {
    let host = HostLoop::start();
    let mut echo = TcpStream::connect(("127.0.0.1", host.echo_port)).unwrap();
    echo.write_all(b"ping\n").unwrap();
    let mut reply = [0u8; 5];
    echo.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"ping\n");

    let out = ispy_piped(&host.socket, "connect\nshell process\npid\nthreads\n");
    let text = stdout(&out);
    assert!(
        text.contains(&host.pid.to_string()),
        "{text} / {}",
        common::stderr(&out)
    );
    assert!(
        text.contains("host-loop"),
        "the main thread is listed: {text}"
    );
    // The process plugin runs inline: no worker was needed, so the program
    // still has only the thread it started with.
    assert_eq!(host.threads(), 1, "ispyd started a thread: {text}");

    echo.write_all(b"still there\n").unwrap();
    let mut again = [0u8; 12];
    echo.read_exact(&mut again).unwrap();
    assert_eq!(&again, b"still there\n");
}

#[test]
fn host_loop_removes_its_socket_on_sigterm() {
    let mut host = HostLoop::start();
    let socket = std::path::PathBuf::from(&host.socket);
    assert!(socket.exists());
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(host.pid as i32, libc::SIGTERM);
    }
    wait_for(
        || matches!(host.child.try_wait(), Ok(Some(_))),
        "host-loop to exit on SIGTERM",
    );
    assert!(!socket.exists(), "the socket file was left behind");
}

#[test]
fn a_client_pipelining_without_end_does_not_starve_the_others() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let demo = Demo::start("");
    let prompt = format!("(process:{}) ", demo.pid);
    let mut flood = demo.connect();
    flood.send("shell process\n");
    flood.read_until(&prompt);
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = flood.stream.try_clone().unwrap();
    // Bounded writes, so that the writer notices the end of the test even
    // while the server holds its input back.
    writer
        .set_write_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let writing = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let batch = "pid\n".repeat(16 * 1024);
            let mut at = 0;
            while !stop.load(Ordering::Relaxed) {
                match writer.write(&batch.as_bytes()[at..]) {
                    Ok(n) => at = (at + n) % batch.len(),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => return,
                }
            }
        })
    };
    let mut reader = flood.stream.try_clone().unwrap();
    let reading = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while !stop.load(Ordering::Relaxed) {
                match reader.read(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => return,
                }
            }
        })
    };
    let mut other = demo.connect();
    other.send("shell process\n");
    other.read_until(&prompt);
    for _ in 0..100 {
        other.send("pid\n");
        assert_eq!(other.read_until(&prompt), format!("{}\n{prompt}", demo.pid));
    }
    stop.store(true, Ordering::Relaxed);
    flood.stream.shutdown(std::net::Shutdown::Both).unwrap();
    writing.join().unwrap();
    reading.join().unwrap();
}

#[test]
fn shutdown_tells_a_session_that_waits_for_a_call() {
    let mut demo = Demo::start("call_timeout = 120");
    let mut waiting = demo.connect();
    let demo_prompt = format!("(demo:{}) ", demo.pid);
    waiting.send("shell demo\n");
    waiting.read_until(&demo_prompt);
    // Longer than any wait of this test: only shutdown can end it in time.
    waiting.send("slow 60\n");
    let mut idle = demo.connect();
    let output = demo.stop();
    assert!(output.status.success(), "{output:?}");
    let goodbye = "*** ispyd is shutting down; closing the session.\n";
    assert_eq!(waiting.read_to_close(), goodbye);
    assert_eq!(idle.read_to_close(), goodbye);
}
