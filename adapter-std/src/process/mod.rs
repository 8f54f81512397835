//! The `process` plugin: what the operating system knows about this process.
//!
//! Every command reads `/proc/self` (Linux) or asks libc, so each is quick
//! and never waits on a lock another thread may hold; the plugin is marked
//! inline. Things under `/proc/self` can vanish between a directory listing
//! and the read that follows (a thread exits, a descriptor is closed), so
//! those reads skip what has gone instead of failing the whole command.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ispyd_core::{
    Call, Outcome, Plugin, PluginError, PluginInfo, Progress, Report, SettingKind, audit, secret,
};

use crate::profile::native;

/// The plugin's name, as typed in `shell process`.
pub const NAME: &str = "process";

/// The builtin `process` plugin: ids, threads, memory, descriptors, limits,
/// command line, environment and uptime of the host process.
///
/// Register it with the adapter's registry; it holds no state, so one value
/// serves any number of sessions.
#[derive(Debug, Clone, Default)]
pub struct ProcessPlugin {
    /// Where `profile` writes its files for a client that does not save
    /// them; `None`: the system's temporary directory.
    profile_dir: Option<PathBuf>,
}

/// The help of `profile`.
const PROFILE_HELP: &str = "\
profile [SECONDS] [--hz N] [--thread NAME]: where this program spends its CPU.
Samples the machine stack of every thread that is using CPU, N times a second
of CPU time (default 100), for SECONDS (default 10), on SIGPROF, then shows the
20 hottest functions (demangled; self and total share of the samples) and
makes a flame graph (SVG) and the folded stacks (for inferno, speedscope,
FlameGraph): ispy saves them where you are (ispy --out DIR); a client that
cannot (nc) gets them written in [process] profile_dir, else beside the
socket, and their paths. Nothing is installed until it starts and SIGPROF is
put back as it was after; a program that uses SIGPROF itself is refused. It
says how far it has got; Ctrl-C ends it early with what it collected.";

impl ProcessPlugin {
    /// The plugin, ready to register.
    pub fn new() -> Self {
        ProcessPlugin::default()
    }

    /// The plugin, writing `profile`'s files in `dir` for clients that do
    /// not save them.
    pub fn with_profile_dir(dir: impl Into<PathBuf>) -> Self {
        ProcessPlugin {
            profile_dir: Some(dir.into()),
        }
    }

    fn profile(&self, call: &Call, progress: &Progress) -> Result<Outcome, PluginError> {
        let request = native::Request::parse(&call.args)?;
        let (samples, took) = native::sample(&request, progress)?;
        let pid = std::process::id();
        let header = format!(
            "Profile of pid {pid}: {took:.1} s at {} Hz, {} samples of CPU time (threads \
             that wait are never sampled)",
            request.hz, samples.samples
        );
        let rendered = samples.render(&header, &format!("ispyd profile of pid {pid}"))?;
        let data = serde_json::json!({
            "seconds": took,
            "hz": request.hz,
            "samples": samples.samples,
            "top": rendered.top,
            "folded": rendered.folded,
        });
        let dir = self.profile_dir.clone().unwrap_or_else(std::env::temp_dir);
        rendered.into_report(call, &dir, data).map(Outcome::Report)
    }
}

impl Plugin for ProcessPlugin {
    fn describe(&self) -> PluginInfo {
        let summary = "The operating system's view of this process: ids, threads, memory, descriptors, limits";
        COMMANDS
            .iter()
            .fold(PluginInfo::new(NAME, summary).inline(), |info, cmd| {
                info.command(cmd.name, cmd.help)
            })
            .long_command("profile", PROFILE_HELP)
            .setting("profile_dir", SettingKind::Text)
    }

    fn call_with_progress(&self, call: &Call, progress: &Progress) -> Result<Outcome, PluginError> {
        if call.command == "profile" {
            return self.profile(call, progress);
        }
        self.call(call)
    }

    fn call(&self, call: &Call) -> Result<Outcome, PluginError> {
        if call.command == "profile" {
            return self.profile(call, &Progress::new());
        }
        if call.command == "environ" {
            return environ(call);
        }
        let command = COMMANDS
            .iter()
            .find(|cmd| cmd.name == call.command)
            .ok_or_else(|| {
                PluginError::new(format!(
                    "Unknown command '{}' for plugin '{NAME}'.",
                    call.command
                ))
            })?;
        if !call.args.is_empty() {
            return Err(PluginError::new(format!(
                "{} takes no arguments (got '{}')",
                command.name, call.args
            )));
        }
        let (text, data) = (command.run)(call.wants_data)?;
        Report::new(call, text, &data).map(Outcome::Report)
    }
}

/// `environ [--reveal]`: the one command with an argument.
fn environ(call: &Call) -> Result<Outcome, PluginError> {
    let reveal = match call.args.trim() {
        "" => false,
        "--reveal" => true,
        other => {
            return Err(PluginError::new(format!(
                "Usage: environ [--reveal] (not '{}')",
                ispyd_core::echoed(other)
            )));
        }
    };
    let (text, data) = format_environ(reveal)?;
    if reveal {
        audit::revealed(call.session, NAME, "environ", "every environment value");
    }
    Report::new(call, text, &data).map(Outcome::Report)
}

/// One command: the others take no arguments, so a table is all dispatch needs.
struct Command {
    name: &'static str,
    help: &'static str,
    /// Makes the text and, when the client asked for it (the flag), the
    /// data; a command whose data costs nothing extra may make it anyway.
    run: fn(bool) -> Output,
}

const COMMANDS: &[Command] = &[
    Command {
        name: "pid",
        help: "Process id.\nThe number other tools (ps, top, kill, /proc/PID) know this process by.",
        run: |data| number("pid", std::process::id(), data),
    },
    Command {
        name: "uid",
        help: "Real user id.\nThe user who started the process.",
        run: |data| number("uid", rustix::process::getuid().as_raw(), data),
    },
    Command {
        name: "euid",
        help: "Effective user id.\nThe user whose permissions the process has now; differs from uid after setuid.",
        run: |data| number("euid", rustix::process::geteuid().as_raw(), data),
    },
    Command {
        name: "gid",
        help: "Real group id.\nThe primary group of the user who started the process.",
        run: |data| number("gid", rustix::process::getgid().as_raw(), data),
    },
    Command {
        name: "egid",
        help: "Effective group id.\nThe group whose permissions the process has now; differs from gid after setgid.",
        run: |data| number("egid", rustix::process::getegid().as_raw(), data),
    },
    Command {
        name: "cwd",
        help: "Current working directory.\nRelative paths the process opens are resolved against it. A directory deleted since shows as '... (deleted)'.",
        run: |_| format_cwd(),
    },
    Command {
        name: "threads",
        help: "Every OS thread of the process, sorted by thread id.\nSTATE is the kernel's scheduling state; USER and SYS are CPU seconds spent in user and kernel mode; VCSW counts voluntary context switches (the thread waited: I/O, locks, sleep), ICSW involuntary ones (it was preempted: CPU contention).",
        run: |_| format_threads(),
    },
    Command {
        name: "dump",
        help: "What the process is doing, at a glance: its age, memory and open descriptors, then every thread with its state, CPU and the kernel function it waits in (WCHAN; '-' while it runs).\nThe top-level 'dump' runs this in a program whose own plugins have no dump.",
        run: |_| format_dump(),
    },
    Command {
        name: "memory",
        help: "Memory use from /proc/self/status.\nrss is what the process holds in RAM now, virtual what it has mapped (often far more than it uses); anon and file split rss into heap/stacks and mapped files/code.",
        run: |_| format_memory(),
    },
    Command {
        name: "fds",
        help: "Every open file descriptor with what it refers to.\nMODE is the access mode (r, w, rw), POS the file offset, FLAGS the open(2) flags in octal (e.g. 02000000 is O_CLOEXEC, 04000 O_NONBLOCK). Sockets and pipes show as socket:[INODE] and pipe:[INODE].",
        run: |_| format_fds(),
    },
    Command {
        name: "limits",
        help: "Resource limits (ulimit) from /proc/self/limits.\nThe soft limit is the one enforced; the process may raise it up to the hard limit.",
        run: |_| format_limits(),
    },
    Command {
        name: "cmdline",
        help: "The command line the process was started with.\nShown shell-quoted, so it can be copied to start the same program again.",
        run: |_| format_cmdline(),
    },
    Command {
        name: "environ",
        help: "environ [--reveal]: the process's environment variables, sorted by name.\nThe live environment, including changes the program made after it started. Values that look secret (names with KEY, TOKEN, SECRET, PASSWORD, PASSWD or CREDENTIAL; passwords in URLs) are masked; --reveal shows them, and the audit log records it.",
        run: |_| format_environ(false),
    },
    Command {
        name: "uptime",
        help: "How long the process has been running.\nAlso shows when it started, as a UTC date and as seconds after the machine booted.",
        run: |_| format_uptime(),
    },
];

mod format;
mod procfs;

pub use format::{civil_from_days, human_duration, shell_quote};

/// What `/proc` says of another process `pid`: how long it has run and
/// its parent. `None` when it cannot be read (gone, or another user's).
pub fn age_and_parent(pid: u32) -> Option<(std::time::Duration, u32)> {
    let stat = parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let started_after_boot = stat.starttime as f64 / clock_ticks_per_second();
    let running = (read_uptime().ok()? - started_after_boot).max(0.0);
    Some((std::time::Duration::from_secs_f64(running), stat.ppid))
}
mod text;

#[cfg(test)]
mod tests;

use format::*;
use procfs::*;
use text::*;
