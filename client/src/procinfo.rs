//! The socket a process listens on, from `/proc` (for `ispy PID`).

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use ispyd_core::Address;
use ispyd_std::stream::Stream;

use crate::servers::PROBE_TIMEOUT;

/// The UNIX socket process `pid` listens on, found from its descriptors
/// and `/proc/net/unix` (what `manhole-cli PID` and `ss -xlp` do).
///
/// The kernel knows a socket by the path it was bound to, and ispyd binds
/// in a private staging directory beside the published path, then links
/// it into place and removes the staging one. So a bound path that is gone
/// stands for its directory's parent: the socket files there are asked
/// who listens on them (the peer's pid, from its credentials), those whose
/// name holds the pid first.
pub fn socket_of(pid: u32) -> Result<String, String> {
    let none = || format!("process {pid} listens on no UNIX socket (is ispyd running in it?)");
    let bound = sockets_of(pid)?;
    if let Some(path) = bound.iter().find(|path| Path::new(path).exists()) {
        return Ok(path.clone());
    }
    let mut published: Vec<String> = bound
        .iter()
        .filter_map(|path| Path::new(path).parent()?.parent())
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.filter_map(Result::ok))
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_socket()))
        .filter_map(|entry| entry.path().to_str().map(str::to_owned))
        .collect();
    let name_has_pid = |path: &String| {
        let name = Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        !name
            .split(|c: char| !c.is_ascii_digit())
            .any(|digits| digits == pid.to_string())
    };
    published.sort_by_key(name_has_pid);
    published
        .into_iter()
        .find(|path| listened_by(path, pid))
        .ok_or_else(none)
}

/// True when the process that accepts connections on `path` is `pid`.
fn listened_by(path: &str, pid: u32) -> bool {
    Stream::connect(&Address::Unix(path.to_owned()), PROBE_TIMEOUT)
        .ok()
        .and_then(|stream| ispyd_std::peer::peer_credentials(&stream).ok())
        .is_some_and(|creds| u32::try_from(creds.pid) == Ok(pid))
}

/// Every named UNIX socket process `pid` listens on.
fn sockets_of(pid: u32) -> Result<Vec<String>, String> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => format!("no process {pid}"),
        io::ErrorKind::PermissionDenied => {
            format!("cannot see the descriptors of process {pid}: it is another user's")
        }
        _ => format!("cannot read /proc/{pid}/fd: {err}"),
    })?;
    let inodes: std::collections::HashSet<u64> = fds
        .filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?.to_owned();
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/unix")
        .map_err(|err| format!("cannot read /proc/net/unix: {err}"))?;
    Ok(listening_paths(&table, &inodes))
}

/// The paths of the listening sockets among `inodes` in a `/proc/net/unix`
/// table (`Num RefCount Protocol Flags Type St Inode Path`).
fn listening_paths(table: &str, inodes: &std::collections::HashSet<u64>) -> Vec<String> {
    // __SO_ACCEPTCON: the socket is listening.
    const ACCEPTING: u32 = 0x0001_0000;
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
            let inode: u64 = fields.get(6)?.parse().ok()?;
            let path = fields.get(7)?;
            (flags & ACCEPTING != 0 && inodes.contains(&inode) && path.starts_with('/'))
                .then(|| (*path).to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::os::unix::net::UnixListener;

    #[test]
    fn listening_sockets_of_a_process_are_found_in_the_table() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
                     0000000061f51914: 00000002 00000000 00010000 0001 01 4242 /tmp/ispyd-7.sock\n\
                     000000008e12805c: 00000003 00000000 00000000 0001 03 4243 /tmp/ispyd-7.sock\n\
                     000000008e12805d: 00000002 00000000 00010000 0001 01 9999 /tmp/other.sock\n\
                     000000008e12805e: 00000002 00000000 00010000 0001 01 4244 @abstract\n";
        let inodes = [4242, 4243, 4244].into_iter().collect();
        assert_eq!(listening_paths(table, &inodes), ["/tmp/ispyd-7.sock"]);
    }

    #[test]
    fn this_process_listening_socket_is_found_by_pid() {
        let dir = TempDir::new();
        let path = dir.path().join("found.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let found = sockets_of(std::process::id()).unwrap();
        assert!(found.contains(&path.display().to_string()), "{found:?}");
        assert!(socket_of(u32::MAX).unwrap_err().contains("no process"));
    }
}
