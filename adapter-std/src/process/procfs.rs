//! Readers of `/proc/self`: one per file, each turning a missing or
//! malformed file into an error the user can act on.

use super::*;

pub(super) fn proc_error(path: &Path, err: &io::Error) -> PluginError {
    PluginError::new(format!("cannot read {}: {err}", path.display()))
}

/// True when the error means the thing read has gone (a thread exited, a
/// descriptor was closed), which a listing must skip rather than report.
pub(super) fn vanished(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH)
}

pub(super) fn read_text(path: &str) -> Result<String, PluginError> {
    fs::read_to_string(path).map_err(|err| proc_error(Path::new(path), &err))
}

/// Reads a per-thread or per-descriptor file; `None` when it has vanished.
pub(super) fn read_if_present(path: &Path) -> Result<Option<String>, PluginError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if vanished(&err) => Ok(None),
        Err(err) => Err(proc_error(path, &err)),
    }
}

/// The numeric entries of a /proc directory (`task/`, `fd/`), sorted.
pub(super) fn read_numbered_dir(path: &str) -> Result<Vec<u64>, PluginError> {
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
pub(super) struct Stat {
    pub(super) comm: String,
    pub(super) state: char,
    pub(super) ppid: u32,
    pub(super) utime: u64,
    pub(super) stime: u64,
    pub(super) starttime: u64,
}

/// Parses a stat line. The name sits in parentheses and may itself contain
/// spaces and parentheses, hence the split at the last `)`.
pub(super) fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    // Fields from 3 (state) onwards; field N is at index N - 3.
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let number = |field: usize| rest.get(field - 3)?.parse().ok();
    Some(Stat {
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        utime: number(14)?,
        stime: number(15)?,
        starttime: number(22)?,
    })
}

pub(super) fn stat_format_error(path: &str) -> PluginError {
    PluginError::new(format!("cannot parse {path}: unexpected format"))
}

/// A `Key:\tvalue` line of a status or fdinfo file.
pub(super) fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

/// A `Key:   1234 kB` line of `/proc/self/status`, in bytes.
pub(super) fn status_bytes(status: &str, key: &str) -> Option<u64> {
    let kb = field(status, key)?
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

pub(super) fn clock_ticks_per_second() -> f64 {
    // The kernel's USER_HZ, from the auxiliary vector (100 on Linux).
    rustix::param::clock_ticks_per_second() as f64
}

/// Seconds since boot, the first number of `/proc/uptime`.
pub(super) fn read_uptime() -> Result<f64, PluginError> {
    let text = read_text("/proc/uptime")?;
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| stat_format_error("/proc/uptime"))
}

/// Boot time in seconds since the epoch, the `btime` line of `/proc/stat`.
pub(super) fn read_boot_time() -> Result<u64, PluginError> {
    let text = read_text("/proc/stat")?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
        .ok_or_else(|| stat_format_error("/proc/stat"))
}
