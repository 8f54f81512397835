//! The audit records a session writes: each gated command, each line typed
//! into a gated takeover, and its end, read back through the `log` facade.

#![allow(
    clippy::disallowed_types,
    reason = "a `log::Log` is shared by every thread of the test binary; the session under test stays single-threaded"
)]

use std::sync::{Mutex, Once};

use super::*;
use crate::audit::TARGET;
use crate::config::{Config, Listen};
use crate::plugin::PluginInfo;

/// Every audit record logged in this test binary, as `LEVEL message`.
static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == TARGET
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            RECORDS.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

/// Installs the capturing logger, once for the test binary: call it
/// before the session under test begins.
fn capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in the core's tests");
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// The records of session `id` logged so far.
fn records_of(id: u64) -> Vec<String> {
    let prefix = format!("session {id} ");
    let records = RECORDS.lock().unwrap();
    records
        .iter()
        .filter(|r| {
            r.split_once(' ')
                .is_some_and(|(_, m)| m.starts_with(&prefix))
        })
        .cloned()
        .collect()
}

/// A host whose `shell` plugin has a gated console (enabled) beside a
/// plain command.
fn console_host() -> Host {
    let mut config = Config::new(Listen::Unix("/tmp/ispyd-audit.sock".to_owned()), &[]);
    config.set_enabled("shell:console", true);
    let plugins = vec![
        PluginInfo::new("shell", "A console")
            .command("status", "Say how things are.")
            .gated_command("console", "Run code.", "shell:console"),
    ];
    Host::new(4242, &config, plugins)
}

#[test]
fn gated_commands_their_lines_and_the_end_are_recorded_and_nothing_else() {
    const ID: u64 = 7_001;
    capture();
    let mut peer = Peer::with_host(console_host(), ID);
    peer.text();
    peer.send("shell shell\nstatus\n");
    let status = peer.call();
    peer.complete(status.id, Completion::Output("fine\n".into()));
    assert_eq!(
        records_of(ID),
        Vec::<String>::new(),
        "an ungated command is not recorded"
    );

    peer.send("console\n");
    let console = peer.call();
    peer.complete(
        console.id,
        Completion::Interactive {
            output: String::new(),
            prompt: ">>> ".into(),
        },
    );
    peer.send("import os; os.getpid()\x1b[2J\n");
    let feed = peer.feed();
    peer.complete(
        feed.id,
        Completion::Interactive {
            output: "4242\n".into(),
            prompt: ">>> ".into(),
        },
    );
    peer.eof();
    assert_eq!(
        records_of(ID),
        [
            "INFO session 7001 ran shell console [shell:console]: ",
            "INFO session 7001 console [shell:console] line: import os; os.getpid()\\u{1b}[2J",
            "INFO session 7001 closed: end of input",
        ]
    );
}

#[test]
fn a_long_pasted_line_makes_a_bounded_record() {
    const ID: u64 = 7_002;
    capture();
    let mut peer = Peer::with_host(console_host(), ID);
    peer.text();
    let long = "x".repeat(50_000);
    peer.send(format!("shell shell\nconsole {long}\n"));
    peer.call();
    let records = records_of(ID);
    assert_eq!(records.len(), 1, "{:.200?}", records);
    assert!(records[0].len() < crate::audit::LINE_LIMIT + 200);
    assert!(records[0].ends_with(&format!(
        "… ({} more characters)",
        50_000 - crate::audit::LINE_LIMIT
    )));
}
