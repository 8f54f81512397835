//! The real `ispy` binary against the real demo process: piped, as a script
//! drives it, and interactive under tmux, as a person does.

mod common;

use common::tmux::Tmux;
use common::{Demo, Fleet, ispy_bin, ispy_piped, shared_tempdir, stderr, stdout};

#[test]
fn piped_commands_print_only_the_answers() {
    let fleet = Fleet::start(1, false);
    let output = ispy_piped(fleet.config(), "connect 1\nshell process\npid\n");
    assert_eq!(stdout(&output), format!("{}\n", fleet.demos[0].pid));
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn servers_lists_live_processes_numbered_and_stale_sockets_apart() {
    let fleet = Fleet::start(2, true);
    let output = ispy_piped(fleet.config(), "servers\n");
    let text = stdout(&output);
    let mut pids: Vec<u32> = fleet.demos.iter().map(|d| d.pid).collect();
    pids.sort_unstable();
    let lines: Vec<&str> = text.lines().collect();
    // Each live server: its line, then its whole command line.
    assert_eq!(lines.len(), 5, "{text}");
    for (i, pid) in pids.iter().enumerate() {
        let socket = fleet.dir.path().join(format!("ispyd-{pid}.sock"));
        let prefix = format!("{}: pid {pid}  {}  up ", i + 1, socket.display());
        assert!(
            lines[2 * i].starts_with(&prefix),
            "{:?} vs {prefix:?}",
            lines[2 * i]
        );
        assert!(lines[2 * i + 1].contains("examples/demo"), "{text}");
        assert!(lines[2 * i + 1].ends_with(".ini"), "not cut short: {text}");
    }
    assert!(lines[4].contains("pid 999999") && lines[4].ends_with("stale (nobody listening)"));
    assert!(!lines[4].trim_start().starts_with("3:"));
}

#[test]
fn connect_picks_the_numbered_server() {
    let fleet = Fleet::start(2, true);
    let mut pids: Vec<u32> = fleet.demos.iter().map(|d| d.pid).collect();
    pids.sort_unstable();
    let output = ispy_piped(fleet.config(), "connect 2\nshell process\npid\n");
    assert_eq!(stdout(&output), format!("{}\n", pids[1]));
}

#[test]
fn connect_without_number_asks_when_several_run() {
    let fleet = Fleet::start(2, false);
    let output = ispy_piped(fleet.config(), "connect\n");
    assert!(
        stderr(&output).starts_with("Multiple servers, which should be used?\n"),
        "{}",
        stderr(&output)
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn no_servers_is_said_and_the_exit_status_is_one() {
    let fleet = Fleet::start(0, true);
    let output = ispy_piped(fleet.config(), "connect\n");
    assert!(
        stderr(&output).contains("No servers to connect to."),
        "{}",
        stderr(&output)
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn bad_configuration_exits_with_two_and_names_the_key() {
    let dir = shared_tempdir();
    let config = dir.path().join("bad.ini");
    std::fs::write(&config, "[ispyd]\nlisten = somewhere\n").unwrap();
    let output = ispy_piped(config.to_str().unwrap(), "servers\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("[ispyd] listen"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn end_of_remote_session_returns_to_the_local_shell() {
    let fleet = Fleet::start(1, false);
    let output = ispy_piped(fleet.config(), "connect\nexit\nservers\n");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with(&format!("1: pid {}", fleet.demos[0].pid)),
        "{}",
        stdout(&output)
    );
}

#[test]
fn tcp_server_is_reached_with_host_and_port() {
    let demo = Demo::start_tcp();
    let address = format!("127.0.0.1:{}", demo.port.unwrap());
    let output = ispy_piped(&address, "connect\nshell process\npid\n");
    assert_eq!(stdout(&output), format!("{}\n", demo.pid));
}

#[test]
fn socket_path_can_be_given_instead_of_a_config() {
    let fleet = Fleet::start(1, false);
    let socket = fleet.socket(&fleet.demos[0]);
    let output = ispy_piped(socket.to_str().unwrap(), "connect\nshell demo\nworkers\n");
    assert!(stdout(&output).contains("stuck"), "{}", stdout(&output));
}

#[test]
fn remote_errors_go_to_stderr_and_the_script_goes_on() {
    let fleet = Fleet::start(1, false);
    let output = ispy_piped(fleet.config(), "connect\nshell nope\nshell process\npid\n");
    assert!(
        stderr(&output).contains("Unknown plugin 'nope'"),
        "{}",
        stderr(&output)
    );
    assert_eq!(stdout(&output), format!("{}\n", fleet.demos[0].pid));
}

#[test]
fn interactive_session_with_completion_history_ctrl_c_and_ctrl_d() {
    let (fleet, pid, tmux) = connected_to_a_demo();
    let history = fleet.dir.path().join("history");

    // Tab completion comes from the server.
    tmux.keys(&["shell pro", "Tab"]);
    tmux.wait_last_line(&format!("(ispyd:{pid}) shell process"));
    tmux.keys(&["Enter"]);
    tmux.wait_last_line(&format!("(process:{pid})"));

    // Ctrl-C clears the line being typed.
    tmux.keys(&["garbage"]);
    tmux.wait_last_line(&format!("(process:{pid}) garbage"));
    tmux.keys(&["C-c"]);
    tmux.wait_last_line(&format!("(process:{pid})"));
    tmux.keys(&["pid", "Enter"]);
    tmux.wait_screen(
        |screen| screen.contains(&format!("\n{pid}\n(process:{pid})")),
        "the pid under the command",
    );
    assert!(
        !tmux.screen().contains("Unknown syntax"),
        "{}",
        tmux.screen()
    );

    // Ctrl-D leaves the plugin shell, then the process, back to ispy.
    tmux.keys(&["C-d"]);
    tmux.wait_last_line(&format!("(ispyd:{pid})"));
    tmux.keys(&["C-d"]);
    tmux.wait_last_line("(ispyd)");

    // Up arrow recalls the history, which is kept in the file at exit.
    tmux.keys(&["Up"]);
    tmux.wait_screen(|_| tmux.last_line() != "(ispyd)", "history recall");
    tmux.keys(&["C-c"]);
    tmux.wait_last_line("(ispyd)");
    tmux.keys(&["exit", "Enter"]);
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while tmux.alive() {
        let screen = tmux.screen();
        assert!(
            std::time::Instant::now() < deadline,
            "ispy did not exit; the screen:\n{screen}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(
        saved.contains("shell process") && saved.contains("connect"),
        "{saved}"
    );
}

/// ispy on a terminal, connected to one demo, in its `demo` shell.
/// `ispy CONFIG` on a terminal, connected to the one demo of a fleet; the
/// history file is `history` in the fleet's folder.
fn connected_to_a_demo() -> (Fleet, u32, Tmux) {
    let fleet = Fleet::start(1, false);
    let pid = fleet.demos[0].pid;
    let history = fleet.dir.path().join("history");
    let ispy = ispy_bin();
    let tmux = Tmux::start(&[ispy.to_str().unwrap(), fleet.config()], &history);
    tmux.wait_last_line("(ispyd)");
    tmux.keys(&["connect", "Enter"]);
    tmux.wait_last_line(&format!("(ispyd:{pid})"));
    (fleet, pid, tmux)
}

fn in_the_demo_shell() -> (Fleet, u32, Tmux) {
    let (fleet, pid, tmux) = connected_to_a_demo();
    tmux.keys(&["shell demo", "Enter"]);
    tmux.wait_last_line(&format!("(demo:{pid})"));
    (fleet, pid, tmux)
}

#[test]
fn ctrl_c_during_a_slow_call_gives_the_prompt_back_and_keeps_the_session() {
    let (_fleet, pid, tmux) = in_the_demo_shell();
    tmux.keys(&["slow 30", "Enter"]);
    tmux.wait_last_line(&format!("(demo:{pid}) slow 30"));
    tmux.keys(&["C-c"]);
    tmux.wait_last_line(&format!("(demo:{pid})"));
    let screen = tmux.screen();
    assert!(
        screen.contains("Interrupted: gave up on 'slow' (demo plugin)"),
        "{screen}"
    );
    assert!(!screen.contains("connection closed"), "{screen}");
    // Still connected, in the same shell.
    tmux.keys(&["help slow", "Enter"]);
    tmux.wait_screen(
        |screen| screen.contains("slow SECONDS"),
        "the plugin's help, on the same connection",
    );
}

#[test]
fn ctrl_c_twice_while_nothing_answers_closes_the_connection_and_says_so() {
    let (_fleet, pid, tmux) = in_the_demo_shell();
    // The demo stops answering altogether.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    tmux.keys(&["slow 1", "Enter"]);
    tmux.wait_last_line(&format!("(demo:{pid}) slow 1"));
    tmux.keys(&["C-c"]);
    tmux.wait_screen(
        |screen| screen.contains("Ctrl-C again, before the server answers, closes the connection"),
        "the note on what a second Ctrl-C does",
    );
    tmux.keys(&["C-c"]);
    tmux.wait_last_line("(ispyd)");
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    assert!(
        tmux.screen()
            .contains("Interrupted twice; connection closed."),
        "{}",
        tmux.screen()
    );
}

#[test]
fn the_demo_script_survives_ctrl_c_in_ispy() {
    let root = common::workspace_root();
    let history = shared_tempdir();
    let tmux = Tmux::start(
        &[root.join("demo.sh").to_str().unwrap()],
        &history.path().join("history"),
    );
    tmux.wait_last_line("(ispyd)");
    let screen = tmux.screen();
    let pid: u32 = screen
        .split("The demo runs as pid ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid on the screen:\n{screen}"));
    tmux.keys(&["connect", "Enter"]);
    tmux.wait_last_line(&format!("(ispyd:{pid})"));
    tmux.keys(&["shell demo", "Enter"]);
    tmux.wait_last_line(&format!("(demo:{pid})"));
    tmux.keys(&["slow 5", "Enter"]);
    tmux.wait_last_line(&format!("(demo:{pid}) slow 5"));
    tmux.keys(&["C-c"]);
    tmux.wait_last_line(&format!("(demo:{pid})"));
    // SAFETY: kill(2) with signal 0 only asks whether the process exists.
    assert_eq!(unsafe { libc::kill(pid as i32, 0) }, 0, "the demo died");
    tmux.keys(&["exit", "Enter"]);
    tmux.wait_last_line(&format!("(ispyd:{pid})"));
    tmux.keys(&["exit", "Enter"]);
    tmux.wait_last_line("(ispyd)");
    tmux.keys(&["exit", "Enter"]);
    common::wait_for(|| !tmux.alive(), "demo.sh to end");
    common::wait_for(
        // SAFETY: as above.
        || unsafe { libc::kill(pid as i32, 0) } != 0,
        "demo.sh to stop the demo when ispy exits",
    );
}

#[test]
fn a_unique_completion_leaves_room_for_the_next_word() {
    let fleet = Fleet::start(1, false);
    let pid = fleet.demos[0].pid;
    let history = fleet.dir.path().join("history");
    let ispy = ispy_bin();
    let tmux = Tmux::start(&[ispy.to_str().unwrap(), fleet.config()], &history);
    tmux.wait_last_line("(ispyd)");
    tmux.keys(&["co", "Tab", "Enter"]);
    tmux.wait_last_line(&format!("(ispyd:{pid})"));
    tmux.keys(&["sh", "Tab"]);
    tmux.keys(&["pr", "Tab"]);
    tmux.wait_last_line(&format!("(ispyd:{pid}) shell process"));
    tmux.keys(&["Enter"]);
    tmux.wait_last_line(&format!("(process:{pid})"));
}

#[test]
fn lines_that_arrive_together_are_each_run_in_turn() {
    // A pasted block, or keys typed ahead that ssh delivers in one packet:
    // every line after the first reaches the line editor in the same read
    // and must wait there for its prompt, not be thrown away with it.
    let (_fleet, pid, tmux) = connected_to_a_demo();
    tmux.paste("shell process\rpid\rexit\rshell process\rpid\r");
    tmux.wait_screen(
        |screen| screen.matches(&format!("\n{pid}\n(process:{pid})")).count() == 2,
        "two pids, one from each pasted 'pid'",
    );
    assert!(
        !tmux.screen().contains("Unknown syntax"),
        "{}",
        tmux.screen()
    );
}

#[test]
fn a_socket_or_a_pid_named_on_a_terminal_is_connected_to_at_once() {
    let fleet = Fleet::start(1, false);
    let demo = &fleet.demos[0];
    let pid = demo.pid;
    let socket = fleet.socket(demo);
    let history = fleet.dir.path().join("history");
    let ispy = ispy_bin();
    for target in [socket.to_str().unwrap().to_owned(), pid.to_string()] {
        let tmux = Tmux::start(&[ispy.to_str().unwrap(), &target], &history);
        tmux.wait_last_line(&format!("(ispyd:{pid})"));
        tmux.keys(&["shell process", "Enter"]);
        tmux.keys(&["pid", "Enter"]);
        tmux.wait_screen(
            |screen| screen.contains(&format!("\n{pid}\n(process:{pid})")),
            &format!("the pid, after ispy {target}"),
        );
        assert!(
            !tmux.screen().contains("Unknown syntax"),
            "{}",
            tmux.screen()
        );
    }
}

#[test]
fn a_missing_socket_is_named_as_such() {
    let dir = shared_tempdir();
    let missing = dir.path().join("app.sock");
    let output = ispy_piped(missing.to_str().unwrap(), "servers\n");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!("ispy: {}: no such socket\n", missing.display())
    );
}

#[test]
fn a_pid_without_a_socket_is_explained() {
    let output = ispy_piped(&std::process::id().to_string(), "servers\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("listens on no UNIX socket"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_long_command_shows_its_progress_in_place_and_ctrl_c_stops_it_with_its_answer() {
    let (_fleet, pid, tmux) = in_the_demo_shell();
    tmux.keys(&["work 60", "Enter"]);
    tmux.wait_screen(
        |screen| screen.contains("work: ") && screen.contains(" s of 60"),
        "the progress line",
    );
    tmux.keys(&["C-c"]);
    tmux.wait_last_line(&format!("(demo:{pid})"));
    let screen = tmux.screen();
    assert!(
        screen.contains("stopped after ") && screen.contains(" s of 60 (Ctrl-C)"),
        "the command answered with what it did: {screen}"
    );
    assert!(!screen.contains("gave up on"), "{screen}");
    assert!(
        !screen.lines().any(|line| line.starts_with("work: ")),
        "the progress line was wiped: {screen}"
    );
}
