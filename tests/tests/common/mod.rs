//! Shared helpers for the end-to-end tests: build the real binaries, start
//! the demo program, talk to it over real sockets, run the real `ispy`.
//!
//! Every wait here is bounded (a hung server fails the test instead of
//! hanging CI), but no test asserts on how long anything took.

#![allow(dead_code)]

pub mod tmux;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait may last before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The workspace's target directory for the current profile.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/e2e-xxxx → target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/PROFILE/deps")
        .to_path_buf()
}

/// Which engine serves the demo in this run: `threads` (ispyd-std, the
/// default) or `mio` (ispyd-mio), from `ISPYD_TEST_ENGINE`. The whole suite
/// runs once per engine (see `test.sh`).
pub fn engine() -> &'static str {
    static ENGINE: OnceLock<String> = OnceLock::new();
    ENGINE.get_or_init(|| match std::env::var("ISPYD_TEST_ENGINE").as_deref() {
        Err(_) | Ok("" | "threads") => "threads".to_owned(),
        Ok("mio") => "mio".to_owned(),
        Ok(other) => panic!("ISPYD_TEST_ENGINE={other}: use threads or mio"),
    })
}

/// Builds the `ispy` binary and both demo examples once per test binary.
fn build_once() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            // Target flags select across the workspace: this builds all of them.
            .args([
                "build",
                "--quiet",
                "--bin",
                "ispy",
                "--example",
                "demo",
                "--example",
                "demo-mio",
            ])
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building ispy and the demo failed");
    });
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf()
}

/// Path of the real `ispy` binary (built on first use).
pub fn ispy_bin() -> PathBuf {
    build_once();
    target_dir().join("ispy")
}

/// Path of the demo program for this run's [`engine`] (built on first use).
pub fn demo_bin() -> PathBuf {
    build_once();
    let name = match engine() {
        "mio" => "demo-mio",
        _ => "demo",
    };
    target_dir().join("examples").join(name)
}

/// Path of the example program `name` (built on first use).
pub fn example_bin(name: &str) -> PathBuf {
    build_once();
    target_dir().join("examples").join(name)
}

/// A private directory readable by other users (the security tests run a
/// client as `nobody`, which must be able to reach the socket file).
pub fn shared_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ispyd-e2e-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    set_mode(dir.path(), 0o755);
    dir
}

/// Sets a file's permission bits.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The demo program, running for real with ispyd embedded.
pub struct Demo {
    child: Option<Child>,
    /// Its pid.
    pub pid: u32,
    /// Its configuration file.
    pub config: PathBuf,
    /// Its socket path (UNIX listen), or `None` for TCP.
    pub socket: Option<PathBuf>,
    /// Its TCP port, when listening on TCP.
    pub port: Option<u16>,
    _dir: Option<tempfile::TempDir>,
}

impl Demo {
    /// Starts the demo listening on a per-pid UNIX socket in a fresh
    /// directory; `extra` is appended to the `[ispyd]` section.
    pub fn start(extra: &str) -> Demo {
        Demo::start_env(extra, &[])
    }

    /// [`Demo::start`] with `env` added to the demo's environment.
    pub fn start_env(extra: &str, env: &[(&str, &str)]) -> Demo {
        let dir = shared_tempdir();
        let listen = format!("{}/ispyd-%(pid)s.sock", dir.path().display());
        let main = format!("listen = {listen}\n{extra}");
        let mut demo = Demo::spawn(dir.path(), &main, env);
        let socket = dir.path().join(format!("ispyd-{}.sock", demo.pid));
        wait_for(|| socket.exists(), "the demo's socket to appear");
        demo.socket = Some(socket);
        demo._dir = Some(dir);
        demo
    }

    /// Starts the demo with `main` as the body of its `[ispyd]` section,
    /// its config written into `dir`. Does not wait for the socket.
    pub fn start_with(dir: &Path, main: &str) -> Demo {
        Demo::spawn(dir, main, &[])
    }

    fn spawn(dir: &Path, main: &str, env: &[(&str, &str)]) -> Demo {
        let config = dir.join(format!("demo-{}.ini", unique()));
        std::fs::write(&config, format!("[ispyd]\n{main}\n")).expect("write config");
        let child = Command::new(demo_bin())
            .arg(&config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the demo");
        Demo {
            pid: child.id(),
            child: Some(child),
            config,
            socket: None,
            port: None,
            _dir: None,
        }
    }

    /// Starts the demo listening on a free loopback TCP port.
    pub fn start_tcp() -> Demo {
        let dir = shared_tempdir();
        let port = free_port();
        let mut demo = Demo::start_with(dir.path(), &format!("listen = 127.0.0.1:{port}"));
        wait_for(
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "the demo's TCP port to accept",
        );
        demo.port = Some(port);
        demo._dir = Some(dir);
        demo
    }

    /// The UNIX socket path.
    pub fn socket(&self) -> &Path {
        self.socket
            .as_deref()
            .expect("the demo listens on a UNIX socket")
    }

    /// A raw text-mode connection, greeting already read.
    pub fn connect(&self) -> Text {
        let mut text = Text::new(UnixStream::connect(self.socket()).expect("connect"));
        text.read_until(&format!("(ispyd:{}) ", self.pid));
        text
    }

    /// Resident memory of the demo, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("read the demo's status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in status")
    }

    /// True while the demo process runs.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends SIGTERM and waits for the demo to exit; returns its output.
    pub fn stop(&mut self) -> Output {
        let child = self.child.take().expect("demo still owned");
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        wait_output(child)
    }

    /// Waits for a demo that is expected to exit by itself (a start-up
    /// error); returns its output.
    pub fn stop_after_exit(&mut self) -> Output {
        wait_output(self.child.take().expect("demo still owned"))
    }

    /// Asserts that the demo still answers a command on a fresh session.
    pub fn assert_responsive(&self) {
        let mut text = self.connect();
        text.send("shell process\n");
        text.read_until(&format!("(process:{}) ", self.pid));
        text.send("pid\n");
        let reply = text.read_until(&format!("(process:{}) ", self.pid));
        assert_eq!(
            reply
                .trim_end_matches(&format!("(process:{}) ", self.pid))
                .trim(),
            self.pid.to_string()
        );
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_output(child: Child) -> Output {
    let pid = child.id();
    finish(child, &format!("the demo (pid {pid}) to exit"))
}

/// Collects a child's output, killing it and failing the test if it has not
/// exited within [`PATIENCE`].
fn finish(child: Child, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(output) => output.expect("collect a child's output"),
        Err(_) => {
            // SAFETY: kill(2) on our own child, which did not finish in time.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            panic!("gave up waiting for {what}");
        }
    }
}

/// Two demos listening in one directory (`%(pid)s`), plus a stale socket
/// of a process that is gone.
pub struct Fleet {
    /// The directory of the sockets.
    pub dir: tempfile::TempDir,
    /// A client configuration whose `listen` matches every demo.
    pub config: PathBuf,
    /// The demos, in the order started.
    pub demos: Vec<Demo>,
}

impl Fleet {
    /// Starts `count` demos, and leaves a stale socket if `stale`.
    pub fn start(count: usize, stale: bool) -> Fleet {
        let dir = shared_tempdir();
        let listen = format!("listen = {}/ispyd-%(pid)s.sock", dir.path().display());
        let demos: Vec<Demo> = (0..count)
            .map(|_| Demo::start_with(dir.path(), &listen))
            .collect();
        for demo in &demos {
            let socket = dir.path().join(format!("ispyd-{}.sock", demo.pid));
            wait_for(|| socket.exists(), "a demo's socket");
        }
        if stale {
            drop(UnixListener::bind(dir.path().join("ispyd-999999.sock")).unwrap());
        }
        let config = dir.path().join("client.ini");
        std::fs::write(&config, format!("[ispyd]\n{listen}\n")).unwrap();
        Fleet { dir, config, demos }
    }

    /// The client configuration's path.
    pub fn config(&self) -> &str {
        self.config.to_str().unwrap()
    }

    /// Where `demo` listens.
    pub fn socket(&self, demo: &Demo) -> PathBuf {
        self.dir.path().join(format!("ispyd-{}.sock", demo.pid))
    }
}

/// A text-mode session over a raw socket, as `nc` would hold it.
pub struct Text {
    /// The connection.
    pub stream: UnixStream,
    buf: Vec<u8>,
}

impl Text {
    /// Wraps a connected stream.
    pub fn new(stream: UnixStream) -> Text {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        Text {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends bytes.
    pub fn send(&mut self, text: impl AsRef<[u8]>) {
        self.stream.write_all(text.as_ref()).expect("send");
    }

    /// Reads until the received text ends with `end`; returns everything read
    /// since the last call, `end` included.
    pub fn read_until(&mut self, end: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut chunk = [0u8; 65536];
        loop {
            if let Some(at) = find(&self.buf, end.as_bytes()) {
                let rest = self.buf.split_off(at + end.len());
                let got = std::mem::replace(&mut self.buf, rest);
                return String::from_utf8_lossy(&got).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "waited too long for {end:?}; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!(
                    "connection closed while waiting for {end:?}; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Reads until the server closes; returns all that came.
    pub fn read_to_close(&mut self) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut chunk = [0u8; 65536];
        loop {
            assert!(
                Instant::now() < deadline,
                "the server did not close; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    return String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Waits until `ready` holds, failing the test after [`PATIENCE`].
pub fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs `ispy ARG` with `input` on its standard input (piped mode).
pub fn ispy_piped(arg: &str, input: &str) -> Output {
    let mut child = Command::new(ispy_bin())
        .arg(arg)
        .env("ISPY_HISTORY", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ispy");
    // ispy may exit without reading (a bad configuration): ignore EPIPE.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes());
    finish(child, &format!("ispy to finish with input {input:?}"))
}

/// Standard output of a finished process, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error of a finished process, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a command with `input` on stdin, bounded by [`PATIENCE`].
pub fn run_with_input(mut command: Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start command");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    finish(child, "a command to finish")
}

/// Runs `ispy ARGS…` with nothing on its standard input, bounded by
/// [`PATIENCE`].
pub fn ispy(args: &[&str]) -> Output {
    let child = Command::new(ispy_bin())
        .args(args)
        .env("ISPY_HISTORY", "/dev/null")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ispy");
    finish(child, &format!("ispy {args:?} to finish"))
}
