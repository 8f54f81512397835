//! `ispy`: the client of ispyd. It finds the processes a configuration
//! points at, connects to one in framed mode and gives the operator its
//! shell, with line editing on a terminal or line by line from a pipe.
//!
//! The binary is a thin `main` around [`run`]; the Python package calls
//! [`run`] too, so that `pip install` brings the same `ispy` command.

mod cli;
mod console;
mod files;
mod fleet;
mod handshake;
mod input;
mod interrupt;
mod listing;
mod local;
mod ordered;
mod procinfo;
mod remote;
mod report;
mod servers;
mod session;
mod ssh;

#[cfg(test)]
mod testutil;

use std::cell::RefCell;
use std::ffi::OsString;
use std::io::{BufReader, IsTerminal, Write};
use std::rc::Rc;

use clap::Parser;

use crate::console::Console;
use crate::input::Input;
use crate::remote::Shared;

/// Runs `ispy` with `args` (the first is the program name) and returns its
/// exit status: 0, 1 when a `connect` failed, 2 for bad arguments or an
/// unusable configuration.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = match cli::Args::try_parse_from(args) {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            return u8::try_from(err.exit_code()).unwrap_or(2);
        }
    };
    if !args.ssh.is_empty() {
        return over_ssh(&args);
    }
    let target = match cli::load_target(&args.config) {
        Ok(target) => target,
        Err(err) => {
            eprintln!("ispy: {err}");
            return 2;
        }
    };
    let listen = target.listen;
    if args.list {
        return list(&listen, args.json, args.host_label.as_deref());
    }
    if !args.commands.is_empty() {
        return one_shot(&listen, &args);
    }
    if args.json || args.all || args.pid.is_some() {
        eprintln!("ispy: --json, --all and --pid go with -c COMMAND (or --json with --list)");
        return 2;
    }
    let conn: Shared = Rc::new(RefCell::new(None));
    let piped = || Input::piped(Box::new(BufReader::new(std::io::stdin())));
    let input = if std::io::stdin().is_terminal() {
        interrupt::catch();
        Input::terminal(conn.clone(), args.history_path()).unwrap_or_else(|err| {
            eprintln!("ispy: no line editing ({err}); reading plain lines");
            piped()
        })
    } else {
        piped()
    };
    // On a terminal, a server named directly is connected to at once;
    // piped input keeps starting at the local shell (scripts say
    // `connect`, or use -c).
    let direct = target.direct && input.is_interactive();
    let files = files::Saver::new(&args.out);
    let shell = local::Shell::new(listen, input, conn, Console::stdio(), files);
    if direct {
        shell.run_connected()
    } else {
        shell.run()
    }
}

/// `--list`: the servers, for a person or as JSON Lines.
fn list(listen: &ispyd_core::Listen, json: bool, host: Option<&str>) -> u8 {
    let servers = servers::scan(listen);
    let mut out = std::io::stdout().lock();
    let written = if json {
        let host = host.map_or_else(report::hostname, str::to_owned);
        listing::write_json(&servers, &host, &mut out)
    } else {
        if let Some(host) = host {
            let _ = writeln!(out, "==> {host} <==");
        }
        listing::write_table(&servers, &mut out)
    };
    if servers.live().is_empty() && servers.others().is_empty() {
        match servers::unreadable(listen) {
            Some(why) => eprintln!("ispy: no servers found at {}: {why}", listen.pattern()),
            None => eprintln!("ispy: no servers found at {}", listen.pattern()),
        }
    }
    u8::from(written.is_err())
}

/// `-c CMD…`: the commands on the chosen servers, then exit.
fn one_shot(listen: &ispyd_core::Listen, args: &cli::Args) -> u8 {
    let targets = match fleet::select(listen, args.pid, args.all) {
        Ok(targets) => targets,
        Err(err) => {
            eprintln!("ispy: {}", err.message);
            return err.status;
        }
    };
    let plan = fleet::Plan {
        commands: args.commands.clone(),
        json: args.json,
        timeout: std::time::Duration::from_secs_f64(args.timeout),
        jobs: usize::from(args.jobs),
        out: args.out.clone(),
    };
    let host = args.host_label.clone().unwrap_or_else(report::hostname);
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    let mut failed = false;
    let mut answered = 0;
    let mut text = report::TextReport {
        out: &mut out,
        err: &mut err,
        // A run over ssh is always a block naming its host.
        grouped: args.all || args.host_label.is_some(),
        host: args.host_label.as_deref(),
    };
    fleet::run_all(&targets, &plan, |run| {
        if run.stale && args.all {
            // A socket left by a process that has gone: not a server.
            eprintln!(
                "ispy: skipped {}: stale (nobody listening)",
                run.target.address
            );
            return;
        }
        answered += 1;
        failed |= !run.ok();
        let written = if plan.json {
            report::json_lines(run, &host)
                .iter()
                .try_for_each(|line| writeln!(text.out, "{line}"))
                .and_then(|()| text.out.flush())
        } else {
            text.write(run)
        };
        // A closed stdout (`| head`) ends the output, not the exit status.
        let _ = written;
    });
    if answered == 0 {
        eprintln!("ispy: No servers to connect to.");
        return 1;
    }
    u8::from(failed)
}

/// `--ssh HOST…`: the same run on other hosts, with their own ispy, or a
/// terminal session on one.
fn over_ssh(args: &cli::Args) -> u8 {
    if let Some(bad) = args.ssh.iter().find(|h| h.is_empty() || h.starts_with('-')) {
        eprintln!("ispy: --ssh {bad:?} is not a host");
        return 2;
    }
    let ssh = ssh::Ssh {
        command: args.ssh_command.clone(),
        remote_ispy: args.remote_ispy.clone(),
    };
    let mut remote = vec![args.config.clone()];
    if args.list {
        remote.push("--list".into());
    }
    if args.all {
        remote.push("--all".into());
    }
    if let Some(pid) = args.pid {
        remote.extend(["--pid".into(), pid.to_string()]);
    }
    if args.json {
        remote.push("--json".into());
    }
    if args.commands.is_empty() && !args.list {
        if args.ssh.len() > 1 || args.json || args.all || args.pid.is_some() {
            eprintln!(
                "ispy: a terminal session goes to one --ssh host, without --json, --all or --pid"
            );
            return 2;
        }
        return match ssh.command(&args.ssh[0], &remote, true).status() {
            Ok(status) => match status.code() {
                Some(0) => 0,
                Some(255) => {
                    eprintln!("ispy: {}: ssh failed (its message is above)", args.ssh[0]);
                    1
                }
                Some(code) => u8::try_from(code).unwrap_or(1),
                None => 1,
            },
            Err(err) => {
                eprintln!(
                    "ispy: cannot run the ssh command {:?}: {err}",
                    args.ssh_command
                );
                1
            }
        };
    }
    remote.extend([
        "--timeout".into(),
        args.timeout.to_string(),
        "--jobs".into(),
        args.jobs.to_string(),
    ]);
    for command in &args.commands {
        remote.extend(["-c".into(), command.clone()]);
    }
    let wait = std::time::Duration::from_secs_f64(args.timeout) + ssh::SSH_SLACK;
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    let mut failed = false;
    let mut refused = 0;
    ssh.run_all(&args.ssh, &remote, wait, |run| {
        let failure = run.failure(wait);
        let code = run.status.and_then(|s| s.code());
        failed |= failure.is_some() || code != Some(0);
        refused += usize::from(code == Some(2));
        let _ = ssh::write_stderr(run, failure.as_deref(), &mut err);
        let written = if args.json {
            ssh::write_json(run, failure.as_deref(), &args.commands, &mut out).map(|ok| {
                failed |= !ok;
            })
        } else {
            ssh::write_text(run, failure.as_deref(), &mut out)
        };
        let _ = written;
    });
    match (failed, refused == args.ssh.len()) {
        (false, _) => 0,
        // Every host refused the arguments: they are what is wrong.
        (true, true) => 2,
        (true, false) => 1,
    }
}
