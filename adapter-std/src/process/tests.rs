use std::sync::mpsc;

use ispyd_core::CallId;

use super::*;

fn run(command: &str, args: &str, wants_data: bool) -> Result<Report, PluginError> {
    let call = Call {
        id: CallId(1),
        plugin: NAME.into(),
        command: command.into(),
        args: args.to_owned(),
        session: 1,
        wants_data,
        wants_text: true,
        wants_files: false,
    };
    match ProcessPlugin::new().call(&call)? {
        Outcome::Report(report) => Ok(report),
        other => panic!("{command} gave {other:?}, not a report"),
    }
}

fn call(command: &str, args: &str) -> Result<String, PluginError> {
    let report = run(command, args, false)?;
    assert_eq!(report.data(), None, "data made though not asked for");
    Ok(report.text().to_owned())
}

fn data(command: &str) -> serde_json::Value {
    let report = run(command, "", true).unwrap();
    serde_json::from_str(report.data().expect("data asked for")).unwrap()
}

#[test]
fn pid_prints_this_process_id() {
    assert_eq!(
        call("pid", "").unwrap(),
        format!("{}\n", std::process::id())
    );
}

#[test]
fn ids_print_one_number_each() {
    for command in ["uid", "euid", "gid", "egid"] {
        let out = call(command, "").unwrap();
        assert!(out.ends_with('\n'), "{command}: {out:?}");
        out.trim_end().parse::<u32>().unwrap();
    }
}

#[test]
fn cwd_prints_current_directory() {
    let expected = std::env::current_dir().unwrap();
    assert_eq!(
        call("cwd", "").unwrap(),
        format!("{}\n", expected.display())
    );
}

#[test]
fn threads_lists_a_named_thread_and_counts() {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let worker = std::thread::Builder::new()
        .name("probe-worker".to_owned())
        .spawn(move || {
            // SAFETY: gettid takes no arguments and cannot fail.
            ready_tx.send(unsafe { libc::gettid() }).unwrap();
            let _ = stop_rx.recv();
        })
        .unwrap();
    let tid = ready_rx.recv().unwrap();
    let out = call("threads", "");
    stop_tx.send(()).unwrap();
    worker.join().unwrap();

    let out = out.unwrap();
    assert!(out.trim_start().starts_with("TID  NAME"), "{out}");
    let probe = out.lines().find(|l| l.contains("probe-worker")).unwrap();
    assert!(
        probe.trim_start().starts_with(&format!("{tid}  ")),
        "{probe}"
    );
    let rows = out.lines().count() - 2;
    assert!(out.ends_with(&format!("\n{rows} threads\n")), "{out}");
}

#[test]
fn fds_show_an_open_file_by_path() {
    let file = fs::File::open("Cargo.toml").unwrap();
    let path = fs::canonicalize("Cargo.toml").unwrap();
    let out = call("fds", "").unwrap();
    drop(file);
    let row = out
        .lines()
        .find(|l| l.ends_with(&*path.to_string_lossy()))
        .unwrap_or_else(|| panic!("{path:?} not in\n{out}"));
    assert!(row.contains(" r "), "{row}");
    let rows = out.lines().count() - 2;
    assert!(
        out.ends_with(&format!("\n{rows} open descriptors\n")),
        "{out}"
    );
}

#[test]
fn environ_shows_path_quoted() {
    let path = std::env::var("PATH").unwrap();
    let out = call("environ", "").unwrap();
    let expected = format!("PATH = {}", quote_value(&path));
    assert!(out.lines().any(|l| l == expected), "{out}");
}

#[test]
fn memory_shows_rss_in_human_units() {
    let out = call("memory", "").unwrap();
    let rss = out.lines().next().unwrap();
    assert!(rss.starts_with("rss ") && rss.contains("iB"), "{out}");
}

#[test]
fn limits_passes_the_kernel_table_through() {
    assert!(call("limits", "").unwrap().contains("Max open files"));
}

#[test]
fn cmdline_starts_with_the_test_binary() {
    let exe = std::env::args().next().unwrap();
    assert!(call("cmdline", "").unwrap().starts_with(&shell_quote(&exe)));
}

#[test]
fn uptime_shows_a_utc_start_date() {
    let out = call("uptime", "").unwrap();
    assert!(
        out.contains(" UTC, ") && out.contains("s after boot)"),
        "{out}"
    );
}

#[test]
fn commands_reject_arguments() {
    let err = call("pid", "42").unwrap_err();
    assert!(err.message().starts_with("pid takes no arguments"), "{err}");
}

#[test]
fn unknown_command_is_named_in_the_error() {
    let err = call("frobnicate", "").unwrap_err();
    assert!(err.message().contains("'frobnicate'"), "{err}");
}

#[test]
fn describe_lists_every_command_inline_but_the_long_profile() {
    let info = ProcessPlugin::new().describe();
    let mut names: Vec<&str> = info.commands.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    let expected = [
        "cmdline", "cwd", "dump", "egid", "environ", "euid", "fds", "gid", "limits", "memory",
        "pid", "profile", "threads", "uid", "uptime",
    ];
    assert_eq!(names, expected);
    assert!(info.inline);
    let long: Vec<&str> = info
        .commands
        .iter()
        .filter(|c| c.long)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(long, ["profile"], "it never runs on the session's thread");
    assert!(info.commands.iter().all(|c| c.help.contains('\n')));
}

#[test]
fn stat_name_with_parentheses_and_spaces_parses() {
    let text = "42 (a) b (c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20";
    let stat = parse_stat(text).unwrap();
    assert_eq!(stat.comm, "a) b (c");
    assert_eq!((stat.state, stat.utime, stat.stime), ('R', 11, 12));
    assert_eq!(stat.starttime, 19);
    assert_eq!(stat.ppid, 1);
}

#[test]
fn shell_quote_leaves_words_bare_and_quotes_the_rest() {
    assert_eq!(shell_quote("--port=8080"), "--port=8080");
    assert_eq!(shell_quote("a b"), "'a b'");
    assert_eq!(shell_quote("it's"), r"'it'\''s'");
    assert_eq!(shell_quote(""), "''");
}

#[test]
fn utc_date_handles_epoch_and_leap_day() {
    assert_eq!(utc_date(0), "1970-01-01 00:00:00");
    assert_eq!(utc_date(951_827_696), "2000-02-29 12:34:56");
}

#[test]
fn human_units_scale() {
    assert_eq!(human_bytes(512), "512 B");
    assert_eq!(human_bytes(12_900_000), "12.3 MiB");
    assert_eq!(human_duration(7397.0), "2h 03m 17s");
}

#[test]
fn every_command_gives_data_when_asked() {
    for command in COMMANDS {
        let value = data(command.name);
        assert!(value.is_object(), "{}: {value}", command.name);
    }
    assert_eq!(data("pid")["pid"], std::process::id());
}

#[test]
fn threads_data_names_this_thread() {
    std::thread::Builder::new()
        .name("data-probe".into())
        .spawn(|| {
            let threads = data("threads");
            let mine = threads["threads"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == "data-probe")
                .cloned()
                .expect("this thread is listed");
            assert_eq!(mine["state"], "running");
            assert!(mine["tid"].as_u64().unwrap() > 0);
            assert!(mine["user_s"].is_f64());
            assert!(mine["voluntary_switches"].is_u64());
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn limits_data_parses_the_kernel_table() {
    let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                Max cpu time              unlimited            unlimited            seconds   \n\
                Max open files            1024                 524288               files     \n\
                Max nice priority         0                    0                    \n";
    let rows = parse_limits(text);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["name"], "Max cpu time");
    assert!(rows[0]["soft"].is_null());
    assert_eq!(rows[1]["soft"], 1024);
    assert_eq!(rows[1]["hard"], 524288);
    assert_eq!(rows[1]["units"], "files");
    assert!(rows[2]["units"].is_null());
    let live = data("limits");
    assert!(live["limits"].as_array().unwrap().len() >= 10);
}

#[test]
fn environ_and_cmdline_data_are_raw_not_quoted() {
    let environ = data("environ");
    assert_eq!(
        environ["environ"]["PATH"].as_str(),
        std::env::var("PATH").ok().as_deref()
    );
    let argv = data("cmdline");
    let first = std::env::args().next().unwrap();
    assert_eq!(argv["argv"][0], first.as_str());
}
