//! `ispy -c` on one server and on many (`--all`, `--pid`, `--json`,
//! `--list`, `--timeout`), against real demo processes.

mod common;

use std::os::unix::net::UnixListener;

use common::{Fleet, ispy, stderr, stdout};
use serde_json::Value;

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect()
}

fn pids(fleet: &Fleet) -> Vec<u32> {
    let mut pids: Vec<u32> = fleet.demos.iter().map(|d| d.pid).collect();
    pids.sort_unstable();
    pids
}

#[test]
fn one_server_answers_without_prompts_or_headers() {
    let fleet = Fleet::start(1, false);
    let output = ispy(&[fleet.config(), "-c", "shell process", "-c", "pid"]);
    assert_eq!(stdout(&output), format!("{}\n", fleet.demos[0].pid));
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn all_prints_one_group_per_server_in_pid_order() {
    let fleet = Fleet::start(3, false);
    let output = ispy(&[fleet.config(), "--all", "-c", "shell process", "-c", "pid"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let expected: String = pids(&fleet)
        .iter()
        .map(|pid| {
            let socket = fleet.dir.path().join(format!("ispyd-{pid}.sock"));
            format!("==> pid {pid}  {} <==\n{pid}\n\n", socket.display())
        })
        .collect();
    assert_eq!(text, expected);
}

#[test]
fn json_gives_one_object_per_server_and_command() {
    let fleet = Fleet::start(2, false);
    let output = ispy(&[
        fleet.config(),
        "--all",
        "--json",
        "-c",
        "shell process",
        "-c",
        "threads",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&stdout(&output));
    assert_eq!(lines.len(), 4, "{lines:?}");
    for (line, pid) in lines.chunks(2).zip(pids(&fleet)) {
        assert_eq!(line[0]["pid"], pid);
        assert_eq!(line[0]["command"], "shell process");
        assert_eq!(line[0]["data"], serde_json::json!({"shell": "process"}));
        assert_eq!(line[1]["command"], "threads");
        assert_eq!(line[1]["ok"], true);
        assert_eq!(line[1]["schema"], 1);
        assert!(line[1]["host"].as_str().is_some_and(|h| !h.is_empty()));
        let threads = line[1]["data"]["threads"].as_array().expect("threads");
        assert!(threads.iter().any(|t| t["tid"] == pid), "the main thread");
        assert!(threads.iter().all(|t| t["name"].is_string()));
    }
}

#[test]
fn a_stopped_server_is_given_up_on_and_the_others_still_answer() {
    let fleet = Fleet::start(3, false);
    let stopped = fleet.demos[1].pid;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(stopped as i32, libc::SIGSTOP) };
    let output = ispy(&[
        fleet.config(),
        "--all",
        "--timeout",
        "1",
        "-c",
        "shell process",
        "-c",
        "pid",
    ]);
    // SAFETY: as above.
    unsafe { libc::kill(stopped as i32, libc::SIGCONT) };
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    for pid in pids(&fleet).into_iter().filter(|&p| p != stopped) {
        assert!(text.contains(&format!("<==\n{pid}\n")), "{text}");
    }
    let complaint = format!("ispy: pid {stopped}  ");
    assert!(text.contains(&complaint), "{text}");
    assert!(stderr(&output).contains(&complaint), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no answer within 1 s (--timeout)"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_failed_command_fails_the_run_and_the_rest_still_prints() {
    let fleet = Fleet::start(2, false);
    let output = ispy(&[
        fleet.config(),
        "--all",
        "--json",
        "-c",
        "shell process",
        "-c",
        "nonsense",
        "-c",
        "pid",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&stdout(&output));
    assert_eq!(lines.len(), 6);
    for line in lines.chunks(3) {
        assert_eq!(line[1]["ok"], false);
        assert!(line[1]["error"].as_str().unwrap().contains("nonsense"));
        assert!(line[1].get("data").is_none());
        assert_eq!(line[2]["data"]["pid"], line[2]["pid"]);
    }
}

#[test]
fn pid_picks_one_server_and_an_unknown_pid_is_unreachable() {
    let fleet = Fleet::start(2, false);
    let pid = fleet.demos[1].pid.to_string();
    let output = ispy(&[
        fleet.config(),
        "--pid",
        &pid,
        "-c",
        "shell process",
        "-c",
        "pid",
    ]);
    assert_eq!(stdout(&output), format!("{pid}\n"));
    let output = ispy(&[fleet.config(), "--pid", "999999", "-c", "pid"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("No server with pid 999999"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn several_servers_without_all_or_pid_is_an_argument_error() {
    let fleet = Fleet::start(2, false);
    let output = ispy(&[fleet.config(), "-c", "plugins"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("pick one with --pid PID, or all with --all"));
    assert_eq!(stdout(&output), "");
}

#[test]
fn all_skips_stale_sockets_and_says_so() {
    let fleet = Fleet::start(1, true);
    let output = ispy(&[fleet.config(), "--all", "-c", "shell process", "-c", "pid"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let pid = fleet.demos[0].pid;
    assert!(stdout(&output).contains(&format!("<==\n{pid}\n")));
    assert!(
        stderr(&output).contains("ispyd-999999.sock: stale (nobody listening)"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn list_shows_every_server_with_status_uptime_and_command() {
    let fleet = Fleet::start(2, true);
    let output = ispy(&[fleet.config(), "--list"]);
    assert!(output.status.success());
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].contains("PID") && lines[0].contains("UPTIME"),
        "{text}"
    );
    for (line, pid) in lines[1..3].iter().zip(pids(&fleet)) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[1], pid.to_string(), "{text}");
        assert_eq!(cells[2], "alive");
        assert!(line.contains("demo"), "the command line: {line}");
    }
    assert!(
        lines[3].trim_start().starts_with("-  999999  stale"),
        "{text}"
    );

    let output = ispy(&[fleet.config(), "--list", "--json"]);
    let lines = json_lines(&stdout(&output));
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["number"], 1);
    assert_eq!(lines[0]["status"], "alive");
    assert!(lines[0]["uptime_s"].as_f64().is_some_and(|up| up >= 0.0));
    assert_eq!(lines[2]["status"], "stale");
    assert!(lines[2]["number"].is_null());
}

#[test]
fn json_without_commands_or_list_is_refused() {
    let fleet = Fleet::start(1, false);
    let output = ispy(&[fleet.config(), "--json"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("go with -c COMMAND"));
}

#[test]
fn a_server_that_closes_mid_plan_is_reported_for_the_commands_left() {
    let fleet = Fleet::start(1, false);
    let output = ispy(&[fleet.config(), "--json", "-c", "exit", "-c", "plugins"]);
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&stdout(&output));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["command"], "plugins");
    assert_eq!(lines[1]["ok"], false);
}

#[test]
fn a_socket_that_never_answers_is_not_waited_on_past_the_timeout() {
    let fleet = Fleet::start(0, false);
    // A listener that accepts (the kernel's backlog) but never speaks.
    let _mute = UnixListener::bind(fleet.dir.path().join("ispyd-424242.sock")).unwrap();
    let output = ispy(&[fleet.config(), "--timeout", "0.5", "-c", "pid"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no answer within 0.5 s"),
        "{}",
        stderr(&output)
    );
}
