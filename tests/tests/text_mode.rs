//! The demo process driven over raw sockets in text mode, as `nc`, `socat`
//! and `telnet` users drive it.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;

use common::{Demo, Text, run_with_input, stdout};

#[test]
fn greeting_is_the_root_prompt_with_the_pid() {
    let demo = Demo::start("");
    let mut text = Text::new(UnixStream::connect(demo.socket()).unwrap());
    let greeting = text.read_until(") ");
    assert_eq!(greeting, format!("(ispyd:{}) ", demo.pid));
}

#[test]
fn help_lists_root_commands_in_the_seeds_layout() {
    let demo = Demo::start("");
    let mut text = demo.connect();
    text.send("help\n");
    let reply = text.read_until(&format!("(ispyd:{}) ", demo.pid));
    assert!(
        reply.starts_with(
            "\nDocumented commands (type help <topic>):\n\
             ========================================\n\
             dump  exit  help  plugins  prompt  shell\n\n"
        ),
        "{reply:?}"
    );
}

#[test]
fn process_plugin_answers_pid_cwd_and_threads() {
    let demo = Demo::start("");
    let mut text = demo.connect();
    let prompt = format!("(process:{}) ", demo.pid);
    text.send("shell process\n");
    text.read_until(&prompt);
    text.send("pid\n");
    assert_eq!(text.read_until(&prompt), format!("{}\n{prompt}", demo.pid));
    text.send("threads\n");
    let threads = text.read_until(&prompt);
    let ispyd_thread = match common::engine() {
        "mio" => "ispyd-loop",
        _ => "ispyd-listener",
    };
    for name in ["hasher", "sorter", "ticker", "stuck", ispyd_thread] {
        assert!(threads.contains(name), "no {name} in {threads}");
    }
    text.send("exit\n");
    text.read_until(&format!("(ispyd:{}) ", demo.pid));
}

#[test]
fn custom_plugin_of_the_demo_works() {
    let demo = Demo::start("");
    let mut text = demo.connect();
    let prompt = format!("(demo:{}) ", demo.pid);
    text.send("!demo\nstats\n");
    text.read_until(&prompt);
    let stats = text.read_until(&prompt);
    assert!(stats.contains("hashed bytes"), "{stats}");
}

#[test]
fn plugin_panic_is_reported_and_session_and_host_survive() {
    let mut demo = Demo::start("");
    let mut text = demo.connect();
    let prompt = format!("(demo:{}) ", demo.pid);
    text.send("shell demo\n");
    text.read_until(&prompt);
    text.send("crash\n");
    let reply = text.read_until(&prompt);
    assert!(
        reply.starts_with("*** 'crash' failed inside the plugin (panic:"),
        "{reply}"
    );
    text.send("stats\n");
    assert!(text.read_until(&prompt).contains("ticks"));
    assert!(demo.is_alive());
    let output = demo.stop();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked"),
        "the host saw the panic: {stderr}"
    );
}

#[test]
fn plugin_error_is_shown_with_stars() {
    let demo = Demo::start("");
    let mut text = demo.connect();
    let prompt = format!("(demo:{}) ", demo.pid);
    text.send("shell demo\nfail\n");
    text.read_until(&prompt);
    assert_eq!(
        text.read_until(&prompt),
        format!("*** this command always fails, to show what a failure looks like\n{prompt}")
    );
}

#[test]
fn unknown_plugin_lists_the_loaded_ones() {
    let demo = Demo::start("");
    let mut text = demo.connect();
    text.send("shell foo\n");
    let reply = text.read_until(&format!("(ispyd:{}) ", demo.pid));
    assert!(
        reply.starts_with("Unknown plugin 'foo'. Loaded plugins: demo, process.\n"),
        "{reply}"
    );
}

#[test]
fn half_close_gets_every_answer_then_end_with_socat() {
    let demo = Demo::start("");
    let mut command = Command::new("socat");
    command.args(["-", &format!("UNIX-CONNECT:{}", demo.socket().display())]);
    let output = run_with_input(command, b"shell process\npid\n");
    assert!(output.status.success());
    let prompt = format!("(process:{}) ", demo.pid);
    assert_eq!(
        stdout(&output),
        format!("(ispyd:{}) {prompt}{}\n{prompt}", demo.pid, demo.pid)
    );
}

#[test]
fn half_close_gets_every_answer_then_end_with_netcat() {
    let demo = Demo::start("");
    let mut command = Command::new("nc");
    command.args(["-N", "-U", &demo.socket().display().to_string()]);
    let output = run_with_input(command, b"prompt off\nshell process\npid");
    assert!(output.status.success());
    assert_eq!(
        stdout(&output),
        format!("(ispyd:{}) {}\n", demo.pid, demo.pid)
    );
}

#[test]
fn prompt_off_is_inherited_and_prompt_on_restores() {
    let demo = Demo::start("");
    let mut text = demo.connect();
    text.send("prompt off\nshell process\npid\nprompt on\n");
    let prompt = format!("(process:{}) ", demo.pid);
    assert_eq!(text.read_until(&prompt), format!("{}\n{prompt}", demo.pid));
}

#[test]
fn gated_command_is_refused_until_enabled() {
    let demo = Demo::start("");
    let mut text = demo.connect();
    let prompt = format!("(demo:{}) ", demo.pid);
    text.send("shell demo\nreset\n");
    text.read_until(&prompt);
    assert_eq!(
        text.read_until(&prompt),
        format!(
            "Sorry, the reset command is disabled.\n\
             To enable it, set 'enabled = true' in the [demo:reset] section of the \
             configuration file.\n{prompt}"
        )
    );

    let demo = Demo::start("[demo:reset]\nenabled = true");
    let mut text = demo.connect();
    let prompt = format!("(demo:{}) ", demo.pid);
    text.send("shell demo\nreset\n");
    text.read_until(&prompt);
    assert_eq!(
        text.read_until(&prompt),
        format!("counters reset\n{prompt}")
    );
}

#[test]
fn tcp_listener_serves_the_same_shell() {
    let demo = Demo::start_tcp();
    let port = demo.port.unwrap();
    let mut command = Command::new("socat");
    command.args(["-", &format!("TCP:127.0.0.1:{port}")]);
    let output = run_with_input(command, b"shell process\npid\n");
    assert!(
        stdout(&output).contains(&format!("(process:{}) {}\n", demo.pid, demo.pid)),
        "{}",
        stdout(&output)
    );
}

#[test]
fn sessions_are_served_at_once_each_with_its_own_output() {
    let demo = Demo::start("");
    let mut first = demo.connect();
    let mut second = demo.connect();
    first.send("shell process\n");
    second.send("shell demo\n");
    first.read_until(&format!("(process:{}) ", demo.pid));
    second.read_until(&format!("(demo:{}) ", demo.pid));
    first.send("pid\n");
    second.send("workers\n");
    assert_eq!(
        first.read_until(&format!("(process:{}) ", demo.pid)),
        format!("{}\n(process:{}) ", demo.pid, demo.pid)
    );
    assert!(
        second
            .read_until(&format!("(demo:{}) ", demo.pid))
            .contains("holder")
    );
}

#[test]
fn socket_file_is_removed_on_orderly_exit() {
    let mut demo = Demo::start("");
    let socket = demo.socket().to_path_buf();
    let _session = demo.connect();
    let output = demo.stop();
    assert!(output.status.success(), "{output:?}");
    assert!(!socket.exists(), "{} was left behind", socket.display());
}

#[test]
fn five_thousand_pipelined_commands_are_answered_in_order() {
    let demo = Demo::start("");
    let mut text = demo.connect();
    let prompt = format!("(process:{}) ", demo.pid);
    text.send("shell process\n");
    text.read_until(&prompt);
    let mut writer = text.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        let mut batch = String::new();
        for n in 0..5_000 {
            // Alternate two commands so that order is visible.
            batch.push_str(if n % 2 == 0 { "pid\n" } else { "uid\n" });
        }
        batch.push_str("exit\nexit\n");
        writer.write_all(batch.as_bytes()).unwrap();
    });
    let all = text.read_to_close();
    sender.join().unwrap();
    let replies: Vec<&str> = all.split(prompt.as_str()).collect();
    // 5,000 answers, each followed by a prompt, then the root prompt.
    assert_eq!(
        replies.len(),
        5_001,
        "{}",
        &all[all.len().saturating_sub(200)..]
    );
    // SAFETY: getuid(2) has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() }.to_string();
    for (n, reply) in replies[..5_000].iter().enumerate() {
        let want = if n % 2 == 0 {
            demo.pid.to_string()
        } else {
            uid.clone()
        };
        assert_eq!(reply.trim(), want, "answer {n}");
    }
}

#[test]
fn everything_sent_at_once_then_half_closed_is_answered_every_time() {
    // The bytes and the end of input can reach the server together, in one
    // readable event: the end of input must not be missed. Many rounds,
    // since it depends on how the two arrive.
    let demo = Demo::start("");
    for round in 0..60 {
        let mut stream = UnixStream::connect(demo.socket()).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream.write_all(b"prompt off\nshell process\npid").unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .unwrap_or_else(|err| panic!("round {round}: no end of the answer: {err}"));
        assert_eq!(
            answer,
            format!("(ispyd:{}) {}\n", demo.pid, demo.pid),
            "round {round}"
        );
    }
}

#[test]
fn dump_at_the_top_gives_the_process_plugins_threads_with_what_they_wait_in() {
    let demo = Demo::start("");
    let mut text = demo.connect();
    text.send("dump\n");
    let reply = text.read_until(&format!("(ispyd:{}) ", demo.pid));
    assert!(
        reply.starts_with(&format!("pid {}, up ", demo.pid)),
        "{reply:?}"
    );
    let header = reply
        .lines()
        .find(|l| l.trim_start().starts_with("TID"))
        .unwrap();
    assert!(header.trim_end().ends_with("WCHAN"), "{header:?}");
    assert!(
        reply.lines().any(|l| l.contains(" hasher ")),
        "the demo's worker threads: {reply}"
    );
}
