//! What an embedded ispyd costs while nobody uses it, against plain threads
//! blocked in `accept` and `read` measured in the same run.
//!
//! ```text
//! cargo bench -p ispyd-std --bench idle
//! ```
//!
//! A `ShellManager` is started in this process, beside two baseline threads:
//! `base-accept`, blocked in `UnixListener::accept` on a socket of its own,
//! and `base-read`, blocked in `read` on a connected socket that stays idle.
//! Three windows are measured: with no session; with a text-mode session
//! (as `nc` makes) that has read its greeting and then stays idle; and with
//! a framed-mode session (as `ispy` makes) idle beside it. For each thread whose
//! name starts with `ispyd-` or `base-` the window's deltas are reported:
//!
//! - CPU ticks: `utime + stime` from `/proc/self/task/TID/stat` (in
//!   `USER_HZ`, 10 ms);
//! - context switches: `voluntary_ctxt_switches +
//!   nonvoluntary_ctxt_switches` from `/proc/self/task/TID/status`;
//! - CPU time in ns: the first field of `/proc/self/task/TID/schedstat`,
//!   far finer than ticks;
//!
//! and where the thread sleeps (`wchan`). The aim is zero of each for
//! ispyd's threads, as for the baselines.
//!
//! `ISPYD_BENCH_IDLE_SECS` sets the window's length (default 10 s; under
//! `cargo test --benches`, 0.2 s).
//!
//! The table printed at the end is Markdown, ready for BENCHMARKS.md.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;
use std::time::Duration;

use common::task::{self, Counters};
use common::{PrivateDir, env_or, full_run};
use ispyd_std::ShellManager;

/// Time for freshly started threads to reach the call they block in.
const SETTLE: Duration = Duration::from_millis(300);

fn main() {
    let default_secs = if full_run() { 10.0 } else { 0.2 };
    let secs: f64 = env_or("ISPYD_BENCH_IDLE_SECS", default_secs);
    let window = Duration::from_secs_f64(secs);
    let dir = PrivateDir::new("idle");

    let base_listener =
        UnixListener::bind(dir.join("baseline.sock")).expect("cannot bind the baseline socket");
    thread::Builder::new()
        .name("base-accept".to_owned())
        .spawn(move || {
            let _ = base_listener.accept();
        })
        .expect("cannot start base-accept");
    let (mut reader, writer) = UnixStream::pair().expect("cannot make a socket pair");
    thread::Builder::new()
        .name("base-read".to_owned())
        .spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            let _ = reader.read(&mut buf);
        })
        .expect("cannot start base-read");

    let manager = ShellManager::builder()
        .listen(
            dir.join("ispyd.sock")
                .to_str()
                .expect("the temporary directory's path is not UTF-8"),
        )
        .report_warnings(false)
        .start()
        .expect("cannot start ispyd");

    println!("ispyd-std idle benchmark: window {secs} s");
    let mut rows = Vec::new();
    thread::sleep(SETTLE);
    rows.extend(measure_window("no session", window));

    let text = UnixStream::connect(dir.join("ispyd.sock")).expect("cannot connect");
    read_until(&text, ends_with_root_prompt);
    thread::sleep(SETTLE);
    rows.extend(measure_window("one idle text session", window));

    let mut framed = UnixStream::connect(dir.join("ispyd.sock")).expect("cannot connect");
    framed
        .write_all(HANDSHAKE)
        .expect("cannot send the handshake");
    read_until(&framed, has_prompt_frame);
    thread::sleep(SETTLE);
    rows.extend(measure_window("idle text + framed sessions", window));

    print_table(&rows);
    drop(text);
    drop(framed);
    drop(writer);
    manager.shutdown();
}

/// The client's opening of framed mode (see PROTOCOL.md).
const HANDSHAKE: &[u8] = b"\0ISPY/1\n";

/// Reads from `stream` until what has arrived satisfies `done`.
fn read_until(mut stream: &UnixStream, done: fn(&[u8]) -> bool) {
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    while !done(&received) {
        let n = stream.read(&mut chunk).expect("cannot read from ispyd");
        assert!(n > 0, "ispyd closed the session at once");
        received.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the text-mode greeting, the root prompt, has arrived.
fn ends_with_root_prompt(received: &[u8]) -> bool {
    let prompt = format!("(ispyd:{}) ", std::process::id());
    received.ends_with(prompt.as_bytes())
}

/// Whether the server's handshake and its first frame, a `Prompt`, have
/// arrived (anything before the handshake is the text-mode greeting).
fn has_prompt_frame(received: &[u8]) -> bool {
    const PROMPT: u8 = 0x83;
    let Some(at) = received.windows(6).position(|w| w == &HANDSHAKE[..6]) else {
        return false;
    };
    let frames = &received[(at + HANDSHAKE.len()).min(received.len())..];
    let Some(length) = frames.get(..4) else {
        return false;
    };
    let length = u32::from_be_bytes(length.try_into().expect("four bytes")) as usize;
    frames.len() >= 4 + length && frames.get(4) == Some(&PROMPT)
}

/// One thread's costs over a window.
struct Row {
    window: &'static str,
    thread: String,
    wchan: String,
    counted: Counters,
}

/// Samples the measured threads at the start and end of a window of
/// `length`, and returns their growth.
fn measure_window(window: &'static str, length: Duration) -> Vec<Row> {
    let before = sample_threads();
    thread::sleep(length);
    let after = sample_threads();
    after
        .into_iter()
        .map(|(tid, (name, end))| {
            let (thread, counted) = match before.get(&tid) {
                Some((_, start)) => (name, end.since(start)),
                None => (format!("{name} (started in the window)"), end),
            };
            Row {
                window,
                thread,
                wchan: task::wchan(tid).map_or("-".to_owned(), |w| format!("`{w}`")),
                counted,
            }
        })
        .collect()
}

/// The measured threads (named `ispyd-*` or `base-*`) and their counters.
fn sample_threads() -> BTreeMap<u32, (String, Counters)> {
    task::tasks()
        .into_iter()
        .filter(|t| t.name.starts_with("ispyd-") || t.name.starts_with("base-"))
        .filter_map(|t| Some((t.tid, (t.name, Counters::read(t.tid)?))))
        .collect()
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| window | thread | sleeps in | CPU ticks | context switches | CPU time ns |");
    println!("|---|---|---|---:|---:|---:|");
    for row in rows {
        let c = &row.counted;
        let cpu_ns = c.cpu_ns.map_or("n/a".to_owned(), |ns| ns.to_string());
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.window,
            row.thread,
            row.wchan,
            c.ticks,
            c.switches(),
            cpu_ns
        );
    }
    let busy: Vec<&Row> = rows
        .iter()
        .filter(|row| row.thread.starts_with("ispyd-"))
        .filter(|row| row.counted.ticks > 0 || row.counted.switches() > 0)
        .collect();
    println!();
    if busy.is_empty() {
        println!("ispyd's threads: no ticks and no context switches in any window.");
    } else {
        for row in busy {
            println!(
                "ispyd's thread {} was not idle in window '{}'",
                row.thread, row.window
            );
        }
    }
}
