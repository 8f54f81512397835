//! `ispy --ssh`: other hosts through a real OpenSSH. The test starts its
//! own `sshd` on a loopback port, with a throwaway host key and a key
//! authorized for the user running the tests; the demos run "on the remote
//! host", which is this machine reached through that sshd.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::tmux::Tmux;
use common::{Fleet, free_port, ispy, ispy_bin, stderr, stdout, wait_for};
use serde_json::Value;

/// A private sshd, stopped when dropped.
struct Sshd {
    child: Child,
    port: u16,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sshd {
    fn start() -> Sshd {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("key");
        let host_key = dir.path().join("host_key");
        for path in [&key, &host_key] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .expect("run ssh-keygen (openssh-client)");
            assert!(status.success());
        }
        // Only the user running the tests may log in: another user (the
        // refusing host of a test) has no file.
        let user = Command::new("id").arg("-un").output().expect("id -un");
        let user = String::from_utf8_lossy(&user.stdout).trim().to_owned();
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(
            key.with_extension("pub"),
            dir.path().join(format!("authorized_keys_{user}")),
        )
        .unwrap();
        let port = free_port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}_%u\n\
                 PidFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 LogLevel ERROR\n",
                host_key.display(),
                authorized.display(),
                dir.path().join("sshd.pid").display()
            ),
        )
        .unwrap();
        // As root, sshd wants its privilege separation directory.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd (openssh-server)");
        wait_for(
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "sshd to listen",
        );
        Sshd {
            child,
            port,
            key,
            _dir: dir,
        }
    }

    /// What `--ssh-command` gets: the port, the key, no known-hosts file.
    fn command(&self) -> String {
        format!(
            "ssh -p {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o LogLevel=ERROR",
            self.port,
            self.key.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn remote_ispy() -> String {
    ispy_bin().display().to_string()
}

fn over_ssh(sshd: &Sshd, hosts: &[&str], rest: &[&str]) -> std::process::Output {
    let command = sshd.command();
    let remote = remote_ispy();
    let mut args: Vec<&str> = Vec::new();
    for host in hosts {
        args.extend(["--ssh", host]);
    }
    args.extend(["--ssh-command", &command, "--remote-ispy", &remote]);
    args.extend(rest);
    ispy(&args)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect()
}

fn absolute(path: &Path) -> &str {
    assert!(path.is_absolute());
    path.to_str().unwrap()
}

#[test]
fn json_over_ssh_returns_the_remote_servers_data_with_the_host_set() {
    let sshd = Sshd::start();
    let fleet = Fleet::start(2, false);
    let output = over_ssh(
        &sshd,
        &["127.0.0.1"],
        &[
            absolute(&fleet.config),
            "--all",
            "--json",
            "-c",
            "shell process",
            "-c",
            "pid",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&stdout(&output));
    assert_eq!(lines.len(), 4, "{lines:?}");
    let mut pids: Vec<u32> = fleet.demos.iter().map(|d| d.pid).collect();
    pids.sort_unstable();
    for (pair, pid) in lines.chunks(2).zip(pids) {
        assert_eq!(pair[1]["host"], "127.0.0.1");
        assert_eq!(pair[1]["pid"], pid);
        assert_eq!(pair[1]["data"]["pid"], pid);
    }
}

#[test]
fn a_host_that_refuses_is_reported_and_the_others_still_answer() {
    let sshd = Sshd::start();
    let fleet = Fleet::start(1, false);
    let pid = fleet.demos[0].pid;
    let output = over_ssh(
        &sshd,
        &["nobody@127.0.0.1", "127.0.0.1"],
        &[
            absolute(&fleet.config),
            "--json",
            "-c",
            "shell process",
            "-c",
            "pid",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&stdout(&output));
    assert_eq!(lines.len(), 4, "{lines:?}");
    for refused in &lines[..2] {
        assert_eq!(refused["host"], "nobody@127.0.0.1");
        assert_eq!(refused["ok"], false);
        let error = refused["error"].as_str().unwrap();
        assert!(
            error.contains("ssh failed") && error.contains("Permission denied"),
            "{error}"
        );
    }
    assert_eq!(lines[3]["host"], "127.0.0.1");
    assert_eq!(lines[3]["data"]["pid"], pid);
    assert!(stderr(&output).contains("nobody@127.0.0.1: ssh failed"));
}

#[test]
fn text_over_ssh_names_the_host_and_pid_in_each_header() {
    let sshd = Sshd::start();
    let fleet = Fleet::start(1, false);
    let pid = fleet.demos[0].pid;
    let output = over_ssh(
        &sshd,
        &["127.0.0.1"],
        &[absolute(&fleet.config), "-c", "shell process", "-c", "pid"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let socket = fleet.socket(&fleet.demos[0]);
    assert_eq!(
        stdout(&output),
        format!(
            "==> 127.0.0.1 pid {pid}  {} <==\n{pid}\n\n",
            socket.display()
        )
    );
}

#[test]
fn a_missing_remote_ispy_is_named() {
    let sshd = Sshd::start();
    let command = sshd.command();
    let output = ispy(&[
        "--ssh",
        "127.0.0.1",
        "--ssh-command",
        &command,
        "--remote-ispy",
        "/nonexistent/ispy",
        "/etc/app/ispyd.ini",
        "--list",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("127.0.0.1: the remote ispy was not found (--remote-ispy)"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn interactive_ssh_gives_the_remote_ispy_on_a_terminal() {
    let sshd = Sshd::start();
    let fleet = Fleet::start(1, false);
    let pid = fleet.demos[0].pid;
    let history = fleet.dir.path().join("history");
    let command = format!("'{}'", sshd.command());
    let ispy = ispy_bin().display().to_string();
    let term = Tmux::start(
        &[
            &ispy,
            "--ssh",
            "127.0.0.1",
            "--ssh-command",
            &command,
            "--remote-ispy",
            &ispy,
            fleet.config(),
        ],
        &history,
    );
    term.wait_last_line("(ispyd)");
    term.keys(&["connect", "Enter"]);
    term.wait_last_line(&format!("(ispyd:{pid})"));
    term.keys(&["shell process", "Enter"]);
    term.keys(&["pid", "Enter"]);
    term.wait_screen(
        |screen| screen.contains(&format!("\n{pid}\n")),
        "the remote pid",
    );
    term.wait_last_line(&format!("(process:{pid})"));
    term.keys(&["exit", "Enter"]);
    term.wait_last_line(&format!("(ispyd:{pid})"));
    term.keys(&["exit", "Enter"]);
    term.wait_last_line("(ispyd)");
    term.keys(&["exit", "Enter"]);
    wait_for(|| !term.alive(), "ispy over ssh to end");
}
