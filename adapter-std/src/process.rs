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
use std::path::Path;

use ispyd_core::{Call, Outcome, Plugin, PluginError, PluginInfo};

/// The plugin's name, as typed in `shell process`.
pub const NAME: &str = "process";

/// The builtin `process` plugin: ids, threads, memory, descriptors, limits,
/// command line, environment and uptime of the host process.
///
/// Register it with the adapter's registry; it holds no state, so one value
/// serves any number of sessions.
#[derive(Debug, Clone, Default)]
pub struct ProcessPlugin {
    _private: (),
}

impl ProcessPlugin {
    /// The plugin, ready to register.
    pub fn new() -> Self {
        ProcessPlugin::default()
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
    }

    fn call(&self, call: &Call) -> Result<Outcome, PluginError> {
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
        (command.run)().map(Outcome::Output)
    }
}

/// One command: none of them takes arguments, so a table is all dispatch needs.
struct Command {
    name: &'static str,
    help: &'static str,
    run: fn() -> Result<String, PluginError>,
}

const COMMANDS: &[Command] = &[
    Command {
        name: "pid",
        help: "Process id.\nThe number other tools (ps, top, kill, /proc/PID) know this process by.",
        run: || Ok(line(std::process::id())),
    },
    Command {
        name: "uid",
        help: "Real user id.\nThe user who started the process.",
        // SAFETY: getuid takes no arguments, cannot fail and touches no memory of ours.
        run: || Ok(line(unsafe { libc::getuid() })),
    },
    Command {
        name: "euid",
        help: "Effective user id.\nThe user whose permissions the process has now; differs from uid after setuid.",
        // SAFETY: as for getuid.
        run: || Ok(line(unsafe { libc::geteuid() })),
    },
    Command {
        name: "gid",
        help: "Real group id.\nThe primary group of the user who started the process.",
        // SAFETY: as for getuid.
        run: || Ok(line(unsafe { libc::getgid() })),
    },
    Command {
        name: "egid",
        help: "Effective group id.\nThe group whose permissions the process has now; differs from gid after setgid.",
        // SAFETY: as for getuid.
        run: || Ok(line(unsafe { libc::getegid() })),
    },
    Command {
        name: "cwd",
        help: "Current working directory.\nRelative paths the process opens are resolved against it. A directory deleted since shows as '... (deleted)'.",
        run: format_cwd,
    },
    Command {
        name: "threads",
        help: "Every OS thread of the process, sorted by thread id.\nSTATE is the kernel's scheduling state; USER and SYS are CPU seconds spent in user and kernel mode; VCSW counts voluntary context switches (the thread waited: I/O, locks, sleep), ICSW involuntary ones (it was preempted: CPU contention).",
        run: format_threads,
    },
    Command {
        name: "memory",
        help: "Memory use from /proc/self/status.\nrss is what the process holds in RAM now, virtual what it has mapped (often far more than it uses); anon and file split rss into heap/stacks and mapped files/code.",
        run: format_memory,
    },
    Command {
        name: "fds",
        help: "Every open file descriptor with what it refers to.\nMODE is the access mode (r, w, rw), POS the file offset, FLAGS the open(2) flags in octal (e.g. 02000000 is O_CLOEXEC, 04000 O_NONBLOCK). Sockets and pipes show as socket:[INODE] and pipe:[INODE].",
        run: format_fds,
    },
    Command {
        name: "limits",
        help: "Resource limits (ulimit) from /proc/self/limits.\nThe soft limit is the one enforced; the process may raise it up to the hard limit.",
        run: format_limits,
    },
    Command {
        name: "cmdline",
        help: "The command line the process was started with.\nShown shell-quoted, so it can be copied to start the same program again.",
        run: format_cmdline,
    },
    Command {
        name: "environ",
        help: "The process's environment variables, sorted by name.\nThe live environment, including changes the program made after it started; may contain secrets.",
        run: format_environ,
    },
    Command {
        name: "uptime",
        help: "How long the process has been running.\nAlso shows when it started, as a UTC date and as seconds after the machine booted.",
        run: format_uptime,
    },
];

// ---- readers: one per /proc file --------------------------------------------

fn proc_error(path: &Path, err: &io::Error) -> PluginError {
    PluginError::new(format!("cannot read {}: {err}", path.display()))
}

/// True when the error means the thing read has gone (a thread exited, a
/// descriptor was closed), which a listing must skip rather than report.
fn vanished(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH)
}

fn read_text(path: &str) -> Result<String, PluginError> {
    fs::read_to_string(path).map_err(|err| proc_error(Path::new(path), &err))
}

/// Reads a per-thread or per-descriptor file; `None` when it has vanished.
fn read_if_present(path: &Path) -> Result<Option<String>, PluginError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if vanished(&err) => Ok(None),
        Err(err) => Err(proc_error(path, &err)),
    }
}

/// The numeric entries of a /proc directory (`task/`, `fd/`), sorted.
fn read_numbered_dir(path: &str) -> Result<Vec<u64>, PluginError> {
    let entries = fs::read_dir(path).map_err(|err| proc_error(Path::new(path), &err))?;
    let mut numbers = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| proc_error(Path::new(path), &err))?;
        if let Some(n) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// The fields of `/proc/.../stat` this plugin uses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    comm: String,
    state: char,
    utime: u64,
    stime: u64,
    starttime: u64,
}

/// Parses a stat line. The name sits in parentheses and may itself contain
/// spaces and parentheses, hence the split at the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    // Fields from 3 (state) onwards; field N is at index N - 3.
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let number = |field: usize| rest.get(field - 3)?.parse().ok();
    Some(Stat {
        comm,
        state: rest.first()?.chars().next()?,
        utime: number(14)?,
        stime: number(15)?,
        starttime: number(22)?,
    })
}

fn stat_format_error(path: &str) -> PluginError {
    PluginError::new(format!("cannot parse {path}: unexpected format"))
}

/// A `Key:\tvalue` line of a status or fdinfo file.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

/// A `Key:   1234 kB` line of `/proc/self/status`, in bytes.
fn status_bytes(status: &str, key: &str) -> Option<u64> {
    let kb = field(status, key)?
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // 100 is what Linux reports everywhere; only a failed call gets here.
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Seconds since boot, the first number of `/proc/uptime`.
fn read_uptime() -> Result<f64, PluginError> {
    let text = read_text("/proc/uptime")?;
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| stat_format_error("/proc/uptime"))
}

/// Boot time in seconds since the epoch, the `btime` line of `/proc/stat`.
fn read_boot_time() -> Result<u64, PluginError> {
    let text = read_text("/proc/stat")?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
        .ok_or_else(|| stat_format_error("/proc/stat"))
}

// ---- formatters: one per command ----------------------------------------------

fn line(value: impl std::fmt::Display) -> String {
    format!("{value}\n")
}

fn format_cwd() -> Result<String, PluginError> {
    // getcwd fails once the directory is deleted; the kernel's link still
    // names it, marked "(deleted)".
    let dir = std::env::current_dir()
        .or_else(|_| fs::read_link("/proc/self/cwd"))
        .map_err(|err| proc_error(Path::new("/proc/self/cwd"), &err))?;
    Ok(line(escape_controls(&dir.to_string_lossy())))
}

fn format_threads() -> Result<String, PluginError> {
    let ticks = clock_ticks_per_second();
    let seconds = |t: u64| format!("{:.2}", t as f64 / ticks);
    let mut rows = Vec::new();
    for tid in read_numbered_dir("/proc/self/task")? {
        let dir = format!("/proc/self/task/{tid}");
        let Some(stat) = read_if_present(Path::new(&format!("{dir}/stat")))? else {
            continue;
        };
        let Some(status) = read_if_present(Path::new(&format!("{dir}/status")))? else {
            continue;
        };
        let stat = parse_stat(&stat).ok_or_else(|| stat_format_error(&format!("{dir}/stat")))?;
        let switches = |key| field(&status, key).unwrap_or("?").to_owned();
        rows.push(vec![
            tid.to_string(),
            escape_controls(&stat.comm),
            state_name(stat.state),
            seconds(stat.utime),
            seconds(stat.stime),
            switches("voluntary_ctxt_switches"),
            switches("nonvoluntary_ctxt_switches"),
        ]);
    }
    let count = rows.len();
    let header = ["TID", "NAME", "STATE", "USER", "SYS", "VCSW", "ICSW"];
    let right = [true, false, false, true, true, true, true];
    let mut out = table(&header, &right, &rows);
    out.push_str(&format!("{count} thread{}\n", plural(count)));
    Ok(out)
}

fn state_name(state: char) -> String {
    let name = match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk sleep",
        'T' => "stopped",
        't' => "tracing stop",
        'Z' => "zombie",
        'X' | 'x' => "dead",
        'I' => "idle",
        'P' => "parked",
        'W' => "waking",
        'K' => "wakekill",
        other => return other.to_string(),
    };
    name.to_owned()
}

fn format_memory() -> Result<String, PluginError> {
    let status = read_text("/proc/self/status")?;
    const ROWS: &[(&str, &str, &str)] = &[
        ("rss", "VmRSS", "resident in RAM now"),
        ("rss peak", "VmHWM", "highest rss so far"),
        (
            "rss anon",
            "RssAnon",
            "part of rss not backed by a file: heap, stacks",
        ),
        (
            "rss file",
            "RssFile",
            "part of rss backed by files: code, mapped files",
        ),
        ("virtual", "VmSize", "address space mapped now, used or not"),
        ("virtual peak", "VmPeak", "largest address space so far"),
        (
            "data",
            "VmData",
            "private data mappings: heap, thread stacks",
        ),
        ("stack", "VmStk", "main thread's stack"),
        ("swap", "VmSwap", "anonymous memory swapped out"),
    ];
    let mut out = String::new();
    for (label, key, note) in ROWS {
        let value = status_bytes(&status, key).map_or_else(|| "n/a".to_owned(), human_bytes);
        out.push_str(&format!("{label:<13}{value:>10}   ({key}) {note}\n"));
    }
    Ok(out)
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn format_fds() -> Result<String, PluginError> {
    // The listing's own descriptor is closed by the time the loop runs, so
    // its readlink fails as vanished and it is skipped.
    let mut rows = Vec::new();
    for fd in read_numbered_dir("/proc/self/fd")? {
        let link = format!("/proc/self/fd/{fd}");
        let target = match fs::read_link(&link) {
            Ok(target) => target,
            Err(err) if vanished(&err) => continue,
            Err(err) => return Err(proc_error(Path::new(&link), &err)),
        };
        let Some(info) = read_if_present(Path::new(&format!("/proc/self/fdinfo/{fd}")))? else {
            continue;
        };
        let flags = field(&info, "flags").unwrap_or("?");
        rows.push(vec![
            fd.to_string(),
            access_mode(flags).to_owned(),
            field(&info, "pos").unwrap_or("?").to_owned(),
            flags.to_owned(),
            escape_controls(&target.to_string_lossy()),
        ]);
    }
    let count = rows.len();
    let header = ["FD", "MODE", "POS", "FLAGS", "TARGET"];
    let right = [true, false, true, true, false];
    let mut out = table(&header, &right, &rows);
    out.push_str(&format!("{count} open descriptor{}\n", plural(count)));
    Ok(out)
}

/// The O_ACCMODE bits of an octal fdinfo `flags` value.
fn access_mode(octal_flags: &str) -> &'static str {
    match u32::from_str_radix(octal_flags, 8).map(|f| f & libc::O_ACCMODE as u32) {
        Ok(0) => "r",
        Ok(1) => "w",
        Ok(2) => "rw",
        _ => "?",
    }
}

fn format_limits() -> Result<String, PluginError> {
    // Already a table; only the kernel's trailing padding goes.
    let text = read_text("/proc/self/limits")?;
    Ok(text.lines().map(|l| line(l.trim_end())).collect())
}

fn format_cmdline() -> Result<String, PluginError> {
    let path = "/proc/self/cmdline";
    let bytes = fs::read(path).map_err(|err| proc_error(Path::new(path), &err))?;
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(&bytes);
    let args: Vec<String> = bytes
        .split(|&b| b == 0)
        .map(|arg| shell_quote(&String::from_utf8_lossy(arg)))
        .collect();
    Ok(line(args.join(" ")))
}

/// Quotes one argument for a POSIX shell, leaving plain words bare.
fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        return arg.to_owned();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

fn format_environ() -> Result<String, PluginError> {
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    vars.sort();
    Ok(vars
        .iter()
        .map(|(name, value)| {
            let name = escape_controls(&name.to_string_lossy());
            line(format!(
                "{name} = {}",
                quote_value(&value.to_string_lossy())
            ))
        })
        .collect())
}

/// Single-quotes a value as Python's `repr` would, so one variable stays on
/// one line whatever it holds.
fn quote_value(value: &str) -> String {
    let mut out = String::from("'");
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\'' => out.push_str(r"\'"),
            c if c.is_control() => out.push_str(&c.escape_default().to_string()),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn format_uptime() -> Result<String, PluginError> {
    let path = "/proc/self/stat";
    let stat = parse_stat(&read_text(path)?).ok_or_else(|| stat_format_error(path))?;
    let started_after_boot = stat.starttime as f64 / clock_ticks_per_second();
    let running = (read_uptime()? - started_after_boot).max(0.0);
    let started_at = read_boot_time()? + started_after_boot as u64;
    Ok(line(format!(
        "{} (started {} UTC, {started_after_boot:.1} s after boot)",
        human_duration(running),
        utc_date(started_at)
    )))
}

fn human_duration(seconds: f64) -> String {
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let total = seconds as u64;
    let (days, hours) = (total / 86_400, total / 3600 % 24);
    let (minutes, secs) = (total / 60 % 60, total % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes}m {secs:02}s"),
        (0, _) => format!("{hours}h {minutes:02}m {secs:02}s"),
        _ => format!("{days}d {hours:02}h {minutes:02}m {secs:02}s"),
    }
}

/// `YYYY-MM-DD HH:MM:SS` for seconds since the epoch, in UTC.
fn utc_date(epoch_seconds: u64) -> String {
    let (days, secs) = (epoch_seconds / 86_400, epoch_seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}")
}

/// Howard Hinnant's `civil_from_days`: proleptic Gregorian date of a day
/// count since 1970-01-01, exact without a date library.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---- text helpers --------------------------------------------------------------

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// Escapes control characters, so a thread name or a path holding a newline
/// or an escape sequence cannot break the table or the operator's terminal.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Aligned columns separated by two spaces; `right[i]` right-aligns column i.
/// The last column is not padded, so lines carry no trailing spaces.
fn table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len() - 1;
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| match (right[i], i == last) {
                (true, _) => format!("{cell:>w$}", w = widths[i]),
                (false, false) => format!("{cell:<w$}", w = widths[i]),
                (false, true) => cell.clone(),
            })
            .collect();
        out.push_str(&line(cells.join("  ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use ispyd_core::CallId;

    use super::*;

    fn call(command: &str, args: &str) -> Result<String, PluginError> {
        let call = Call {
            id: CallId(1),
            plugin: NAME.to_owned(),
            command: command.to_owned(),
            args: args.to_owned(),
            session: 1,
        };
        match ProcessPlugin::new().call(&call)? {
            Outcome::Output(text) => Ok(text),
            Outcome::Interactive(_) => panic!("{command} started a takeover"),
        }
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
    fn describe_lists_every_command_inline() {
        let info = ProcessPlugin::new().describe();
        let mut names: Vec<&str> = info.commands.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        let expected = [
            "cmdline", "cwd", "egid", "environ", "euid", "fds", "gid", "limits", "memory", "pid",
            "threads", "uid", "uptime",
        ];
        assert_eq!(names, expected);
        assert!(info.inline);
        assert!(info.commands.iter().all(|c| c.help.contains('\n')));
    }

    #[test]
    fn stat_name_with_parentheses_and_spaces_parses() {
        let text = "42 (a) b (c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.comm, "a) b (c");
        assert_eq!((stat.state, stat.utime, stat.stime), ('R', 11, 12));
        assert_eq!(stat.starttime, 19);
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
}
