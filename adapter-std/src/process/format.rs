//! The commands' output: one formatter per command, from the readers.

use super::*;

pub(super) fn line(value: impl std::fmt::Display) -> String {
    format!("{value}\n")
}

pub(super) fn format_cwd() -> Result<String, PluginError> {
    // getcwd fails once the directory is deleted; the kernel's link still
    // names it, marked "(deleted)".
    let dir = std::env::current_dir()
        .or_else(|_| fs::read_link("/proc/self/cwd"))
        .map_err(|err| proc_error(Path::new("/proc/self/cwd"), &err))?;
    Ok(line(escape_controls(&dir.to_string_lossy())))
}

pub(super) fn format_threads() -> Result<String, PluginError> {
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

pub(super) fn state_name(state: char) -> String {
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

pub(super) fn format_memory() -> Result<String, PluginError> {
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

pub(super) fn human_bytes(bytes: u64) -> String {
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

pub(super) fn format_fds() -> Result<String, PluginError> {
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
pub(super) fn access_mode(octal_flags: &str) -> &'static str {
    match u32::from_str_radix(octal_flags, 8).map(|f| f & libc::O_ACCMODE as u32) {
        Ok(0) => "r",
        Ok(1) => "w",
        Ok(2) => "rw",
        _ => "?",
    }
}

pub(super) fn format_limits() -> Result<String, PluginError> {
    // Already a table; only the kernel's trailing padding goes.
    let text = read_text("/proc/self/limits")?;
    Ok(text.lines().map(|l| line(l.trim_end())).collect())
}

pub(super) fn format_cmdline() -> Result<String, PluginError> {
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
pub(super) fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        return arg.to_owned();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

pub(super) fn format_environ() -> Result<String, PluginError> {
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
pub(super) fn quote_value(value: &str) -> String {
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

pub(super) fn format_uptime() -> Result<String, PluginError> {
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

pub(super) fn human_duration(seconds: f64) -> String {
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
pub(super) fn utc_date(epoch_seconds: u64) -> String {
    let (days, secs) = (epoch_seconds / 86_400, epoch_seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}")
}

/// Howard Hinnant's `civil_from_days`: proleptic Gregorian date of a day
/// count since 1970-01-01, exact without a date library.
pub(super) fn civil_from_days(days: i64) -> (i64, i64, i64) {
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
