//! Hostile and broken clients, each while a well-behaved session keeps
//! working: the host stays responsive, its memory bounded, and nothing of a
//! session outlives it.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use common::{Demo, Text, ispy, stderr, stdout, wait_for};

/// Memory the demo may gain while under attack, in KiB. A session's buffers
/// are bounded by max_line (64 KiB) and the output high-water mark (256
/// KiB); the slack covers thread stacks and allocator noise.
const RSS_SLACK_KIB: u64 = 16 * 1024;

fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Opens a well-behaved session in a plugin shell, to check on while
/// another one misbehaves.
fn bystander(demo: &Demo) -> Text {
    let mut text = demo.connect();
    text.send("shell process\n");
    text.read_until(&format!("(process:{}) ", demo.pid));
    text
}

fn assert_bystander_answers(demo: &Demo, text: &mut Text) {
    let prompt = format!("(process:{}) ", demo.pid);
    text.send("pid\n");
    assert_eq!(text.read_until(&prompt), format!("{}\n{prompt}", demo.pid));
}

#[test]
fn ten_megabyte_line_without_newline_gets_one_error_and_closes() {
    let demo = Demo::start("");
    let mut good = bystander(&demo);
    let before = demo.rss_kib();
    let mut bad = demo.connect();
    let writer = {
        let mut stream = bad.stream.try_clone().unwrap();
        thread::spawn(move || {
            let block = vec![b'x'; 64 * 1024];
            for _ in 0..160 {
                if stream.write_all(&block).is_err() {
                    break; // the server closed on us, as it should
                }
            }
        })
    };
    let reply = bad.read_to_close();
    writer.join().unwrap();
    assert_eq!(
        reply,
        "*** Line longer than 65536 bytes (max_line); closing the session.\n"
    );
    assert_bystander_answers(&demo, &mut good);
    assert!(demo.rss_kib() < before + RSS_SLACK_KIB, "memory grew");
}

#[test]
fn a_megabyte_of_random_bytes_costs_only_that_session() {
    let demo = Demo::start("");
    let mut good = bystander(&demo);
    let before = demo.rss_kib();
    let bad = UnixStream::connect(demo.socket()).unwrap();
    let mut reader = bad.try_clone().unwrap();
    let drain = thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink);
    });
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..1 << 20)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let mut writer = bad;
    let _ = writer.write_all(&noise);
    let _ = writer.shutdown(std::net::Shutdown::Write);
    drain.join().unwrap();
    assert_bystander_answers(&demo, &mut good);
    assert!(demo.rss_kib() < before + RSS_SLACK_KIB, "memory grew");
}

#[test]
fn invalid_utf8_gets_an_error_and_the_session_goes_on() {
    let demo = Demo::start("");
    let mut good = bystander(&demo);
    let mut text = demo.connect();
    let prompt = format!("(ispyd:{}) ", demo.pid);
    text.send(b"shell \xc3\x28process\n");
    assert_eq!(
        text.read_until(&prompt),
        format!("*** Input is not valid UTF-8; the line was ignored.\n{prompt}")
    );
    assert_bystander_answers(&demo, &mut good);
    text.send("shell process\npid\n");
    let prompt = format!("(process:{}) ", demo.pid);
    text.read_until(&prompt);
    assert_eq!(text.read_until(&prompt), format!("{}\n{prompt}", demo.pid));
}

#[test]
fn telnet_negotiation_is_ignored_not_echoed() {
    let demo = Demo::start("");
    let mut good = bystander(&demo);
    let mut text = demo.connect();
    // What a telnet client sends: DO SUPPRESS-GO-AHEAD, WILL NAWS with a
    // window-size subnegotiation, then CRLF-terminated lines.
    let mut input = vec![
        255, 253, 3, 255, 251, 31, 255, 250, 31, 0, 80, 0, 24, 255, 240,
    ];
    input.extend_from_slice(b"shell process\r\n");
    input.extend_from_slice(&[255, 254, 1]);
    input.extend_from_slice(b"pid\r\n");
    text.send(&input);
    let prompt = format!("(process:{}) ", demo.pid);
    let first = text.read_until(&prompt);
    assert_eq!(first, prompt);
    assert_eq!(text.read_until(&prompt), format!("{}\n{prompt}", demo.pid));
    assert_bystander_answers(&demo, &mut good);
}

#[test]
fn two_hundred_rapid_connects_leave_no_thread_or_descriptor_behind() {
    let demo = Demo::start("");
    let threads = thread_count(demo.pid);
    let fds = fd_count(demo.pid);
    let mut good = bystander(&demo);
    for i in 0..200 {
        let stream = UnixStream::connect(demo.socket()).unwrap();
        if i % 2 == 0 {
            let _ = (&stream).write_all(b"help\n");
        }
        drop(stream);
    }
    assert_bystander_answers(&demo, &mut good);
    drop(good);
    wait_for(
        || thread_count(demo.pid) <= threads && fd_count(demo.pid) <= fds,
        "every session's thread and descriptor to go",
    );
}

#[test]
fn silent_client_is_closed_after_idle_timeout_and_others_are_served() {
    let demo = Demo::start("idle_timeout = 1");
    let mut silent = Text::new(UnixStream::connect(demo.socket()).unwrap());
    silent.read_until(&format!("(ispyd:{}) ", demo.pid));
    demo.assert_responsive();
    assert_eq!(
        silent.read_to_close(),
        "*** No command for 1 s (idle_timeout); closing the session.\n"
    );
}

#[test]
fn sessions_past_max_sessions_are_refused_politely() {
    let demo = Demo::start("max_sessions = 2");
    let _one = demo.connect();
    let _two = demo.connect();
    let mut third = Text::new(UnixStream::connect(demo.socket()).unwrap());
    assert_eq!(
        third.read_to_close(),
        "*** ispyd: already serving 2 sessions (max_sessions = 2); try again when one ends.\n"
    );
    drop(_one);
    wait_for(
        || {
            let mut probe = Text::new(UnixStream::connect(demo.socket()).unwrap());
            // While no slot is free the server refuses and closes at once:
            // the write may then fail, and the probe tries again.
            let _ = probe.stream.write_all(b"prompt off\nexit\n");
            probe
                .read_to_close()
                .starts_with(&format!("(ispyd:{}) ", demo.pid))
        },
        "a slot to free up",
    );
}

#[test]
fn slow_call_is_given_up_on_after_call_timeout_and_the_shell_comes_back() {
    let demo = Demo::start("call_timeout = 0.5");
    let mut text = demo.connect();
    let prompt = format!("(demo:{}) ", demo.pid);
    text.send("shell demo\nslow 3\nworkers\n");
    text.read_until(&prompt);
    assert_eq!(
        text.read_until(&prompt),
        format!(
            "*** 'slow' (demo plugin) did not answer within 0.5 s. Gave up waiting for it (it \
             may still be running, and its output will be discarded).\n{prompt}"
        )
    );
    assert!(text.read_until(&prompt).contains("holder"));
}

#[test]
fn a_command_that_reports_progress_outlasts_call_timeout_in_both_modes() {
    let demo = Demo::start("call_timeout = 0.5");
    let mut text = demo.connect();
    let prompt = format!("(demo:{}) ", demo.pid);
    text.send("shell demo\nwork 1.5\n");
    text.read_until(&prompt);
    let answer = text.read_until(&prompt);
    assert!(answer.starts_with("work: 0.0 s of 1.5\n"), "{answer:?}");
    assert!(
        answer.ends_with(&format!("worked 1.5 s\n{prompt}")),
        "{answer:?}"
    );
    assert!(!answer.contains("did not answer"), "{answer:?}");

    let framed = ispy(&[
        demo.socket().to_str().unwrap(),
        "-c",
        "shell demo",
        "-c",
        "work 1.5",
    ]);
    assert!(framed.status.success(), "{framed:?}");
    assert_eq!(stdout(&framed), "worked 1.5 s\n");
    assert_eq!(
        stderr(&framed),
        "",
        "no progress where stderr is not a terminal"
    );
}

/// Sends `bytes` every `every` until the server hangs up (or 60 times).
fn trickle(stream: &UnixStream, bytes: &'static [u8], every: Duration) -> thread::JoinHandle<()> {
    let mut stream = stream.try_clone().unwrap();
    thread::spawn(move || {
        for _ in 0..60 {
            if stream.write_all(bytes).is_err() {
                return;
            }
            thread::sleep(every);
        }
    })
}

#[test]
fn trickling_client_is_closed_at_its_idle_timeout() {
    let demo = Demo::start("idle_timeout = 1");
    let mut slow = demo.connect();
    // A byte every 0.6 s, never a newline: no command is ever complete.
    let trickler = trickle(&slow.stream, b"x", Duration::from_millis(600));
    assert_eq!(
        slow.read_to_close(),
        "*** No command for 1 s (idle_timeout); closing the session.\n"
    );
    trickler.join().unwrap();
    demo.assert_responsive();
}

#[test]
fn telnet_nop_clients_cannot_hold_every_slot() {
    let demo = Demo::start("idle_timeout = 1\nmax_sessions = 2");
    // IAC NOP is stripped by the telnet filter: the line never grows, so
    // only the idle timeout can end these sessions.
    let holders: Vec<Text> = (0..2).map(|_| demo.connect()).collect();
    let tricklers: Vec<_> = holders
        .iter()
        .map(|h| trickle(&h.stream, b"\xff\xf1", Duration::from_millis(300)))
        .collect();
    wait_for(
        || {
            let mut probe = Text::new(UnixStream::connect(demo.socket()).unwrap());
            // A refused probe is hung up on: its write may fail.
            let _ = (&probe.stream).write_all(b"prompt off\nexit\n");
            probe
                .read_to_close()
                .starts_with(&format!("(ispyd:{}) ", demo.pid))
        },
        "the NOP-sending sessions to end at idle_timeout and free a slot",
    );
    for trickler in tricklers {
        trickler.join().unwrap();
    }
}

#[test]
fn client_that_stops_reading_threads_output_is_closed_at_send_timeout_without_growing_the_host() {
    let demo = Demo::start("send_timeout = 1");
    let mut good = bystander(&demo);
    let before = demo.rss_kib();
    let fds = fd_count(demo.pid);
    let greedy = UnixStream::connect(demo.socket()).unwrap();
    greedy
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut commands = b"shell process\n".to_vec();
    for _ in 0..5_000 {
        commands.extend_from_slice(b"threads\n");
    }
    let _ = (&greedy).write_all(&commands);
    wait_for(
        || fd_count(demo.pid) <= fds,
        "the server to close the non-reading session at send_timeout",
    );
    assert_bystander_answers(&demo, &mut good);
    assert!(demo.rss_kib() < before + RSS_SLACK_KIB, "memory grew");
    drop(greedy);
}
