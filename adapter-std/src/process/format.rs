//! The commands' output: one formatter per command, from the readers.

use super::*;

pub(super) fn line(value: impl std::fmt::Display) -> String {
    format!("{value}\n")
}

/// A command's result: its text, and the same facts as data.
pub(super) type Output = Result<(String, serde_json::Value), PluginError>;

/// One number as text, `{key: number}` as data when `data` (the most
/// frequent commands: the data would be most of their cost).
pub(super) fn number(key: &str, value: u32, data: bool) -> Output {
    let data = match data {
        true => serde_json::json!({ key: value }),
        false => serde_json::Value::Null,
    };
    Ok((line(value), data))
}

pub(super) fn format_cwd() -> Output {
    // getcwd fails once the directory is deleted; the kernel's link still
    // names it, marked "(deleted)".
    let dir = std::env::current_dir()
        .or_else(|_| fs::read_link("/proc/self/cwd"))
        .map_err(|err| proc_error(Path::new("/proc/self/cwd"), &err))?;
    let dir = dir.to_string_lossy();
    Ok((
        line(escape_controls(&dir)),
        serde_json::json!({ "cwd": dir }),
    ))
}

pub(super) fn format_threads() -> Output {
    threads_table(false)
}

/// `dump`: the process at a glance, for a program with no dump of its own:
/// its age, memory and descriptors, then every thread with the kernel
/// function it waits in (WCHAN).
pub(super) fn format_dump() -> Output {
    let (uptime, uptime_data) = format_uptime()?;
    let status = read_text("/proc/self/status")?;
    let rss = field(&status, "VmRSS").unwrap_or("?").to_owned();
    let fds = read_numbered_dir("/proc/self/fd")?.len().saturating_sub(1);
    let pid = std::process::id();
    let mut out = format!(
        "pid {pid}, up {}, rss {rss}, {fds} open descriptors\n\n",
        uptime.trim_end()
    );
    let (threads, threads_data) = threads_table(true)?;
    out.push_str(&threads);
    let data = serde_json::json!({
        "pid": pid,
        "uptime_s": uptime_data["uptime_s"],
        "rss": rss,
        "fds": fds,
        "threads": threads_data["threads"],
    });
    Ok((out, data))
}

/// The threads table; with `wchan`, also what each waits in.
fn threads_table(wchan: bool) -> Output {
    let ticks = clock_ticks_per_second();
    let seconds = |t: u64| format!("{:.2}", t as f64 / ticks);
    let mut rows = Vec::new();
    let mut data = Vec::new();
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
        let count = |key| field(&status, key).and_then(|v| v.parse::<u64>().ok());
        let mut thread = serde_json::json!({
            "tid": tid,
            "name": stat.comm,
            "state": state_name(stat.state),
            "user_s": stat.utime as f64 / ticks,
            "sys_s": stat.stime as f64 / ticks,
            "voluntary_switches": count("voluntary_ctxt_switches"),
            "involuntary_switches": count("nonvoluntary_ctxt_switches"),
        });
        let mut row = vec![
            tid.to_string(),
            escape_controls(&stat.comm),
            state_name(stat.state),
            seconds(stat.utime),
            seconds(stat.stime),
            switches("voluntary_ctxt_switches"),
            switches("nonvoluntary_ctxt_switches"),
        ];
        if wchan {
            // "0" while it runs; hidden (also "0") without the right to see.
            let waits = read_if_present(Path::new(&format!("{dir}/wchan")))?
                .filter(|w| !w.is_empty() && w != "0");
            thread["wchan"] = serde_json::json!(waits);
            row.push(waits.map_or_else(|| "-".to_owned(), |w| escape_controls(&w)));
        }
        data.push(thread);
        rows.push(row);
    }
    let count = rows.len();
    let mut header = vec!["TID", "NAME", "STATE", "USER", "SYS", "VCSW", "ICSW"];
    let mut right = vec![true, false, false, true, true, true, true];
    if wchan {
        header.push("WCHAN");
        right.push(false);
    }
    let mut out = table(&header, &right, &rows);
    out.push_str(&format!("{count} thread{}\n", plural(count)));
    Ok((out, serde_json::json!({ "threads": data })))
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

pub(super) fn format_memory() -> Output {
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
    let mut data = serde_json::Map::new();
    for (label, key, note) in ROWS {
        let bytes = status_bytes(&status, key);
        data.insert(label.replace(' ', "_"), bytes.into());
        let value = bytes.map_or_else(|| "n/a".to_owned(), human_bytes);
        out.push_str(&format!("{label:<13}{value:>10}   ({key}) {note}\n"));
    }
    Ok((out, serde_json::json!({ "bytes": data })))
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

pub(super) fn format_fds() -> Output {
    // The listing's own descriptor is closed by the time the loop runs, so
    // its readlink fails as vanished and it is skipped.
    let mut rows = Vec::new();
    let mut data = Vec::new();
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
        let target = target.to_string_lossy();
        data.push(serde_json::json!({
            "fd": fd,
            "mode": access_mode(flags),
            "pos": field(&info, "pos").and_then(|v| v.parse::<u64>().ok()),
            "flags": flags,
            "target": target,
        }));
        rows.push(vec![
            fd.to_string(),
            access_mode(flags).to_owned(),
            field(&info, "pos").unwrap_or("?").to_owned(),
            flags.to_owned(),
            escape_controls(&target),
        ]);
    }
    let count = rows.len();
    let header = ["FD", "MODE", "POS", "FLAGS", "TARGET"];
    let right = [true, false, true, true, false];
    let mut out = table(&header, &right, &rows);
    out.push_str(&format!("{count} open descriptor{}\n", plural(count)));
    Ok((out, serde_json::json!({ "fds": data })))
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

pub(super) fn format_limits() -> Output {
    // Already a table; only the kernel's trailing padding goes.
    let text = read_text("/proc/self/limits")?;
    let out = text.lines().map(|l| line(l.trim_end())).collect();
    Ok((out, serde_json::json!({ "limits": parse_limits(&text) })))
}

/// The rows of `/proc/self/limits`, cut at the header's column starts
/// (the names have spaces in them). A limit is a number, or `null` for
/// "unlimited".
pub(super) fn parse_limits(text: &str) -> Vec<serde_json::Value> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let starts: Vec<usize> = ["Soft Limit", "Hard Limit", "Units"]
        .iter()
        .filter_map(|name| header.find(name))
        .collect();
    let [soft, hard, units] = starts[..] else {
        return Vec::new();
    };
    let cell = |row: &str, from: usize, to: usize| -> String {
        row.get(from.min(row.len())..to.min(row.len()))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let value = |text: String| -> serde_json::Value {
        match text.parse::<u64>() {
            Ok(n) => n.into(),
            Err(_) if text == "unlimited" => serde_json::Value::Null,
            Err(_) => text.into(),
        }
    };
    lines
        .filter(|row| !row.trim().is_empty())
        .map(|row| {
            serde_json::json!({
                "name": cell(row, 0, soft),
                "soft": value(cell(row, soft, hard)),
                "hard": value(cell(row, hard, units)),
                "units": Some(cell(row, units, usize::MAX)).filter(|u| !u.is_empty()),
            })
        })
        .collect()
}

pub(super) fn format_cmdline() -> Output {
    let path = "/proc/self/cmdline";
    let bytes = fs::read(path).map_err(|err| proc_error(Path::new(path), &err))?;
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(&bytes);
    let argv: Vec<String> = bytes
        .split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    let quoted: Vec<String> = argv.iter().map(|arg| shell_quote(arg)).collect();
    Ok((line(quoted.join(" ")), serde_json::json!({ "argv": argv })))
}

/// Quotes one argument for a POSIX shell, leaving plain words bare.
pub fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        return arg.to_owned();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// The environment, sorted by name; unless `reveal`, values that look
/// secret are masked ([`ispyd_core::secret::masked`]) and counted at the
/// end. The data lists the masked names under `masked`.
pub(super) fn format_environ(reveal: bool) -> Output {
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    vars.sort();
    let mut out = String::new();
    let mut data = serde_json::Map::new();
    let mut masked_names = Vec::new();
    for (name, value) in &vars {
        let (name, value) = (name.to_string_lossy(), value.to_string_lossy());
        let shown = if reveal {
            None
        } else {
            secret::masked(&name, &value)
        };
        let text = match &shown {
            None => quote_value(&value),
            Some(mask) => secret::shown(mask, quote_value),
        };
        out.push_str(&line(format!("{} = {text}", escape_controls(&name))));
        if shown.is_some() {
            masked_names.push(serde_json::Value::from(name.as_ref()));
        }
        let value = shown.unwrap_or_else(|| value.into_owned());
        data.insert(name.into_owned(), value.into());
    }
    if !masked_names.is_empty() {
        out.push_str(&line(format!(
            "{} value{} masked (names that look secret, passwords in URLs): 'environ --reveal' \
             shows them.",
            masked_names.len(),
            plural(masked_names.len())
        )));
    }
    Ok((
        out,
        serde_json::json!({ "environ": data, "masked": masked_names }),
    ))
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

pub(super) fn format_uptime() -> Output {
    let path = "/proc/self/stat";
    let stat = parse_stat(&read_text(path)?).ok_or_else(|| stat_format_error(path))?;
    let started_after_boot = stat.starttime as f64 / clock_ticks_per_second();
    let running = (read_uptime()? - started_after_boot).max(0.0);
    let started_at = read_boot_time()? + started_after_boot as u64;
    let text = line(format!(
        "{} (started {} UTC, {started_after_boot:.1} s after boot)",
        human_duration(running),
        utc_date(started_at)
    ));
    let data = serde_json::json!({
        "uptime_s": running,
        "start_time": utc_date(started_at).replace(' ', "T") + "Z",
        "start_epoch": started_at,
        "started_after_boot_s": started_after_boot,
    });
    Ok((text, data))
}

/// A duration as people read uptimes: `42.0s`, `3m 07s`, `2h 05m 07s`,
/// `3d 02h 05m 07s`.
pub fn human_duration(seconds: f64) -> String {
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
/// count since 1970-01-01, exact without a date library: `(year, month,
/// day)`. Arithmetic only, so a signal handler may call it too.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
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
