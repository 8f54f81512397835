//! Other hosts, through the user's own OpenSSH: `ispy --ssh HOST TARGET …`
//! runs the `ispy` installed on each host (one-shot, fan-out or `--list`)
//! and merges what they print, or gives a terminal session on one.
//!
//! ispyd has no network transport of its own: authentication, host keys,
//! ports and jump hosts are the user's ssh setup. The ssh program is
//! `--ssh-command` or `$ISPY_SSH_COMMAND` (default `ssh`), run through
//! `sh -c` as git runs `GIT_SSH_COMMAND`, so it may carry options. Each host
//! runs `ispy … --host-label HOST`, which names the host in its headers and
//! its JSON; the hosts run at once, and each one's output is printed whole,
//! in the order the hosts were given, as soon as it and those before it are
//! done.

use std::io::{self, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ispyd_core::SCHEMA_VERSION;
use ispyd_std::process::shell_quote;
use serde_json::Value;

use crate::report::Line;

/// What a host may print, at most: a broken remote must not make the
/// client grow without bound.
const MAX_OUTPUT: u64 = 512 * 1024 * 1024;

/// How much longer than `--timeout` a host is given, for ssh to connect and
/// the remote `ispy` to start.
pub const SSH_SLACK: Duration = Duration::from_secs(10);

/// How to reach the hosts.
#[derive(Debug, Clone)]
pub struct Ssh {
    /// The ssh program and its options, as a shell command line.
    pub command: String,
    /// The `ispy` to run on the hosts.
    pub remote_ispy: String,
}

/// What one host printed, and how its ssh ended.
#[derive(Debug)]
pub struct HostRun {
    /// The host as given to `--ssh`.
    pub host: String,
    /// The remote `ispy`'s standard output.
    pub stdout: Vec<u8>,
    /// The remote `ispy`'s (and ssh's) standard error.
    pub stderr: String,
    /// How ssh exited; `None` when it was given up on.
    pub status: Option<ExitStatus>,
}

impl HostRun {
    /// Why the host could not answer at all (ssh failed, the remote `ispy`
    /// is missing or refused its arguments, or time ran out), if so.
    pub fn failure(&self, waited: Duration) -> Option<String> {
        let said = last_words(&self.stderr);
        match self.status.and_then(|s| s.code()) {
            None => Some(format!(
                "no answer within {} s; gave up on it",
                waited.as_secs_f64()
            )),
            // The remote ispy printed nothing: it could not even start
            // (no servers there, or the login shell refused).
            Some(1) if self.stdout.is_empty() => Some(said),
            Some(0 | 1) => None,
            Some(255) => Some(format!("ssh failed: {said}")),
            Some(127) => Some(format!(
                "the remote ispy was not found (--remote-ispy): {said}"
            )),
            Some(code) => Some(format!("the remote ispy failed (exit {code}): {said}")),
        }
    }
}

/// The last non-empty lines of what ssh or the remote said, on one line.
fn last_words(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    if tail.is_empty() {
        "(it said nothing)".to_owned()
    } else {
        tail.join(" / ")
    }
}

impl Ssh {
    /// The command that runs `remote_args` with the remote `ispy` on
    /// `host`; `terminal` asks ssh for a terminal (`-t`).
    pub fn command(&self, host: &str, remote_args: &[String], terminal: bool) -> Command {
        let mut remote = shell_quote(&self.remote_ispy);
        for arg in remote_args {
            remote.push(' ');
            remote.push_str(&shell_quote(arg));
        }
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{} \"$@\"", self.command))
            .arg("ispy-ssh");
        if terminal {
            command.arg("-t");
        } else {
            command.args(["-o", "BatchMode=yes"]);
            remote.push_str(" --host-label ");
            remote.push_str(&shell_quote(host));
        }
        // A host starting with '-' would be an ssh option: the caller
        // refuses it.
        command.arg(host).arg(remote);
        command
    }

    /// Runs `remote_args` on every host at once and hands each host's
    /// [`HostRun`] to `report` in the order given, as soon as it and the
    /// hosts before it are done. Each host is given `wait`.
    pub fn run_all(
        &self,
        hosts: &[String],
        remote_args: &[String],
        wait: Duration,
        mut report: impl FnMut(&HostRun),
    ) {
        let (ssh, remote_args) = (self.clone(), remote_args.to_vec());
        crate::ordered::run_in_order(
            hosts.to_vec(),
            hosts.len(),
            move |host| run_host(ssh.command(host, &remote_args, false), host.clone(), wait),
            |run| report(&run),
        );
    }
}

/// Runs one host's ssh, collecting its output, killing it after `wait`.
fn run_host(mut command: Command, host: String, wait: Duration) -> HostRun {
    let spawned = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            return HostRun {
                host,
                stdout: Vec::new(),
                stderr: format!("cannot run the ssh command: {err}"),
                status: Some(exit_status(255)),
            };
        }
    };
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let status = wait_until(&mut child, Instant::now() + wait);
    HostRun {
        host,
        stdout: stdout.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned(),
        status,
    }
}

/// Reads a pipe to its end (up to [`MAX_OUTPUT`]) on a thread of its own.
fn collect(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(pipe) = pipe {
            let _ = pipe.take(MAX_OUTPUT).read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Waits for `child` until `deadline`, then kills it; `None` if killed.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

fn exit_status(code: i32) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus::from_raw(code << 8)
}

/// Writes a host's JSON Lines with `host` set as given, each line checked
/// to be JSON; a host that could not answer gets one failed object per
/// command (or one for `--list`).
pub fn write_json(
    run: &HostRun,
    failure: Option<&str>,
    commands: &[String],
    out: &mut dyn Write,
) -> io::Result<bool> {
    let mut ok = failure.is_none();
    if let Some(failure) = failure {
        let commands: Vec<Option<&str>> = if commands.is_empty() {
            vec![None]
        } else {
            commands.iter().map(|c| Some(c.as_str())).collect()
        };
        for command in commands {
            let line = Line {
                host: Some(run.host.clone()),
                pid: None,
                address: None,
                command: command.map(str::to_owned),
                ok: false,
                data: None,
                error: Some(format!("{}: {failure}", run.host)),
                schema: Some(SCHEMA_VERSION),
                files: Vec::new(),
            };
            writeln!(out, "{}", line.to_json())?;
        }
    }
    for line in String::from_utf8_lossy(&run.stdout).lines() {
        // A command's result keeps its data as the text it came as; a
        // line of `--list` is small and parsed whole.
        if let Ok(mut result) = serde_json::from_str::<Line<'_>>(line) {
            result.host = Some(run.host.clone());
            ok &= result.ok;
            writeln!(out, "{}", result.to_json())?;
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(mut object)) => {
                object.insert("host".into(), run.host.clone().into());
                writeln!(out, "{}", Value::Object(object))?;
            }
            _ => {
                ok = false;
                eprintln!(
                    "ispy: {}: the remote ispy printed a line that is not a JSON object",
                    run.host
                );
            }
        }
    }
    Ok(ok)
}

/// Writes a host's text output whole, and its failure under a header.
pub fn write_text(run: &HostRun, failure: Option<&str>, out: &mut dyn Write) -> io::Result<()> {
    if let Some(failure) = failure {
        writeln!(out, "==> {} <==", run.host)?;
        writeln!(out, "ispy: {}: {failure}", run.host)?;
        writeln!(out)?;
    }
    out.write_all(&run.stdout)?;
    out.flush()
}

/// Passes on what the remote said on stderr, each line naming the host.
pub fn write_stderr(run: &HostRun, failure: Option<&str>, err: &mut dyn Write) -> io::Result<()> {
    match failure {
        Some(failure) => writeln!(err, "ispy: {}: {failure}", run.host),
        None => {
            for line in run.stderr.lines().filter(|l| !l.trim().is_empty()) {
                writeln!(err, "[{}] {line}", run.host)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_arguments_are_quoted_for_the_remote_shell() {
        assert_eq!(shell_quote("threads"), "threads");
        assert_eq!(shell_quote("shell python"), "'shell python'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(reboot)"), "'$(reboot)'");
    }

    #[test]
    fn the_ssh_command_runs_through_sh_with_its_options() {
        let ssh = Ssh {
            command: "ssh -p 2222".into(),
            remote_ispy: "/opt/ispy".into(),
        };
        let command = ssh.command(
            "web-1",
            &["app.ini".into(), "-c".into(), "shell python".into()],
            false,
        );
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-c",
                "ssh -p 2222 \"$@\"",
                "ispy-ssh",
                "-o",
                "BatchMode=yes",
                "web-1",
                "/opt/ispy app.ini -c 'shell python' --host-label web-1"
            ]
        );
    }

    #[test]
    fn a_host_that_said_nothing_is_explained() {
        let run = HostRun {
            host: "h".into(),
            stdout: Vec::new(),
            stderr: "\nPermission denied (publickey).\n".into(),
            status: Some(exit_status(255)),
        };
        assert_eq!(
            run.failure(Duration::from_secs(1)).as_deref(),
            Some("ssh failed: Permission denied (publickey).")
        );
        let gone = HostRun {
            status: None,
            ..run
        };
        assert!(
            gone.failure(Duration::from_secs(3))
                .unwrap()
                .contains("within 3 s")
        );
    }
}
