use super::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;

/// A fresh 0700 directory under the system temp dir, removed on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new() -> TestDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ispyd-sock-{}-{n}", process::id()));
        let _ = fs::remove_dir_all(&dir);
        DirBuilder::new().mode(0o700).create(&dir).unwrap();
        fs::set_permissions(&dir, Permissions::from_mode(0o700)).unwrap();
        TestDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// A subdirectory with the given permission bits.
    fn subdir(&self, name: &str, mode: u32) -> PathBuf {
        let dir = self.0.join(name);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, Permissions::from_mode(mode)).unwrap();
        dir
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn identity(path: &Path) -> (u64, u64) {
    let meta = fs::symlink_metadata(path).unwrap();
    (meta.dev(), meta.ino())
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

/// Sends `message` from a new client and returns what the listener's
/// first non-empty accepted connection received; skips connections that
/// closed without data (liveness probes).
fn round_trip(listener: &UnixListener, path: &Path, message: &[u8]) -> Vec<u8> {
    let mut client = UnixStream::connect(path).unwrap();
    client.write_all(message).unwrap();
    drop(client);
    loop {
        let (mut server, _) = listener.accept().unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut received = Vec::new();
        server.read_to_end(&mut received).unwrap();
        if !received.is_empty() {
            return received;
        }
    }
}

#[test]
fn socket_mode_is_0600() {
    let dir = TestDir::new();
    let path = dir.path().join("ispyd.sock");
    let file = bind_unix(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
    assert_eq!(file.path(), path);
}

#[test]
fn bound_socket_accepts_connections() {
    let dir = TestDir::new();
    let path = dir.path().join("ispyd.sock");
    let file = bind_unix(&path).unwrap();
    assert_eq!(round_trip(file.listener(), &path, b"hello"), b"hello");
}

#[test]
fn staging_directory_is_removed_after_bind() {
    let dir = TestDir::new();
    let path = dir.path().join("ispyd.sock");
    let _file = bind_unix(&path).unwrap();
    assert_eq!(entries(dir.path()), ["ispyd.sock"]);
}

#[test]
fn live_socket_is_not_stolen() {
    let dir = TestDir::new();
    let path = dir.path().join("ispyd.sock");
    let first = bind_unix(&path).unwrap();
    let before = identity(&path);

    let err = bind_unix(&path).unwrap_err();
    assert!(matches!(&err, BindError::InUse(p) if p == &path), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{} is in use by a live process; choose another listen path or stop that process \
             (several processes of one program, such as gunicorn or uWSGI workers, each need \
             their own: put %(pid)s in the path, e.g. /run/app/ispyd-%(pid)s.sock)",
            path.display()
        )
    );
    assert_eq!(identity(&path), before);
    assert_eq!(
        round_trip(first.listener(), &path, b"still mine"),
        b"still mine"
    );
    assert_eq!(entries(dir.path()), ["ispyd.sock"]);
}

#[test]
fn stale_socket_is_replaced() {
    let dir = TestDir::new();
    let path = dir.path().join("ispyd.sock");
    // std leaves the file behind when a listener is dropped.
    drop(UnixListener::bind(&path).unwrap());
    let stale = identity(&path);

    let file = bind_unix(&path).unwrap();
    assert_ne!(identity(&path), stale);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(round_trip(file.listener(), &path, b"fresh"), b"fresh");
}

#[test]
fn regular_file_at_path_is_kept() {
    let dir = TestDir::new();
    let path = dir.path().join("ispyd.sock");
    fs::write(&path, "precious").unwrap();

    let err = bind_unix(&path).unwrap_err();
    assert!(
        matches!(&err, BindError::NotASocket(p) if p == &path),
        "{err:?}"
    );
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "precious");
    assert_eq!(entries(dir.path()), ["ispyd.sock"]);
}

#[test]
fn directory_at_path_is_kept() {
    let dir = TestDir::new();
    let path = dir.subdir("ispyd.sock", 0o700);
    let err = bind_unix(&path).unwrap_err();
    assert!(matches!(err, BindError::NotASocket(_)), "{err:?}");
    assert!(path.is_dir());
}

#[test]
fn symlink_at_path_is_neither_followed_nor_removed() {
    let dir = TestDir::new();
    let target = dir.path().join("elsewhere.sock");
    drop(UnixListener::bind(&target).unwrap());
    let path = dir.path().join("ispyd.sock");
    std::os::unix::fs::symlink(&target, &path).unwrap();

    let err = bind_unix(&path).unwrap_err();
    assert!(matches!(err, BindError::NotASocket(_)), "{err:?}");
    assert!(
        fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        fs::symlink_metadata(&target)
            .unwrap()
            .file_type()
            .is_socket()
    );
}

#[test]
fn drop_removes_socket_file() {
    let dir = TestDir::new();
    let path = dir.path().join("ispyd.sock");
    drop(bind_unix(&path).unwrap());
    assert!(fs::symlink_metadata(&path).is_err());
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}

#[test]
fn drop_unregisters_the_exit_cleanup() {
    let dir = TestDir::new();
    let path = dir.path().join("ispyd.sock");
    let file = bind_unix(&path).unwrap();
    let registered = |path: &Path| lock_registry().iter().any(|entry| entry.path == path);
    assert!(registered(&path));
    drop(file);
    assert!(!registered(&path));
}

#[test]
fn drop_keeps_a_socket_that_replaced_ours() {
    let dir = TestDir::new();
    let path = dir.path().join("ispyd.sock");
    let ours = bind_unix(&path).unwrap();
    fs::remove_file(&path).unwrap();
    let theirs = UnixListener::bind(&path).unwrap();
    let their_identity = identity(&path);

    drop(ours);
    assert_eq!(identity(&path), their_identity);
    drop(theirs);
}

#[test]
fn into_parts_guard_removes_file() {
    let dir = TestDir::new();
    let path = dir.path().join("ispyd.sock");
    let (listener, guard) = bind_unix(&path).unwrap().into_parts();
    assert_eq!(guard.path(), path);
    drop(guard);
    assert!(fs::symlink_metadata(&path).is_err());
    drop(listener);
}

#[test]
fn world_writable_directory_without_sticky_bit_is_refused() {
    let dir = TestDir::new();
    let open = dir.subdir("open", 0o777);
    let err = bind_unix(&open.join("ispyd.sock")).unwrap_err();
    assert!(
        matches!(
            &err,
            BindError::UnsafeDirectory { dir, why: DirectoryProblem::WritableByOthers { mode: 0o777 } }
                if dir == &open
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&*open.to_string_lossy()), "{err}");
    assert_eq!(entries(&open), Vec::<String>::new());
}

#[test]
fn sticky_world_writable_directory_is_accepted() {
    let dir = TestDir::new();
    let tmp_like = dir.subdir("tmp", 0o1777);
    let path = tmp_like.join("ispyd.sock");
    let _file = bind_unix(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn missing_directory_is_named() {
    let dir = TestDir::new();
    let missing = dir.path().join("missing");
    let err = bind_unix(&missing.join("ispyd.sock")).unwrap_err();
    assert!(
        matches!(&err, BindError::UnsafeDirectory { dir, why: DirectoryProblem::Missing } if dir == &missing),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn directory_owned_by_another_user_is_refused() {
    assert_eq!(
        directory_problem(true, 0o700, 1001, 1000),
        Some(DirectoryProblem::OwnedByOtherUser {
            owner: 1001,
            euid: 1000
        })
    );
}

#[test]
fn directory_owned_by_root_or_self_is_accepted() {
    assert_eq!(directory_problem(true, 0o755, 0, 1000), None);
    assert_eq!(directory_problem(true, 0o700, 1000, 1000), None);
    assert_eq!(directory_problem(true, 0o700, 0, 0), None);
}

#[test]
fn group_writable_directory_is_accepted() {
    assert_eq!(directory_problem(true, 0o770, 1000, 1000), None);
}

#[test]
fn file_as_directory_is_refused() {
    assert_eq!(
        directory_problem(false, 0o600, 1000, 1000),
        Some(DirectoryProblem::NotADirectory)
    );
}

#[test]
fn path_over_the_limit_is_too_long() {
    let dir = TestDir::new();
    let base = dir.path().as_os_str().len() + 1;
    let path = dir.path().join("x".repeat(MAX_UNIX_PATH_LEN + 1 - base));
    let err = bind_unix(&path).unwrap_err();
    assert!(
        matches!(err, BindError::PathTooLong { len, max: MAX_UNIX_PATH_LEN, .. } if len == MAX_UNIX_PATH_LEN + 1),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&MAX_UNIX_PATH_LEN.to_string()),
        "{err}"
    );
}

#[test]
fn path_at_the_limit_binds() {
    let dir = TestDir::new();
    let base = dir.path().as_os_str().len() + 1;
    let path = dir.path().join("x".repeat(MAX_UNIX_PATH_LEN - base));
    assert_eq!(path.as_os_str().len(), MAX_UNIX_PATH_LEN);
    let file = bind_unix(&path).unwrap();
    assert_eq!(round_trip(file.listener(), &path, b"long"), b"long");
}

/// A subdirectory whose path is exactly `len` bytes long.
fn dir_of_length(dir: &TestDir, len: usize) -> PathBuf {
    let base = dir.path().as_os_str().len() + 1;
    let sub = dir.subdir(&"d".repeat(len - base), 0o700);
    assert_eq!(sub.as_os_str().len(), len);
    sub
}

#[test]
fn short_name_in_deep_directory_binds_with_short_staging_name() {
    let dir = TestDir::new();
    // "/abcdef" takes the final path exactly to the limit, leaving no
    // room for the descriptive staging name.
    let deep = dir_of_length(&dir, MAX_UNIX_PATH_LEN - 7);
    let path = deep.join("abcdef");
    let file = bind_unix(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(entries(&deep), ["abcdef"]);
    assert_eq!(round_trip(file.listener(), &path, b"deep"), b"deep");
}

#[test]
fn one_byte_name_at_the_limit_is_too_long_to_stage() {
    let dir = TestDir::new();
    let deep = dir_of_length(&dir, MAX_UNIX_PATH_LEN - 2);
    let err = bind_unix(&deep.join("a")).unwrap_err();
    assert!(matches!(err, BindError::PathTooLong { .. }), "{err:?}");
    assert_eq!(entries(&deep), Vec::<String>::new());
}

#[test]
fn staging_names_fit_their_room() {
    for room in 1..30 {
        for n in 0..50 {
            let name = staging_name(4_194_304, n, room);
            assert!(!name.is_empty() && name.len() <= room, "{room}: {name}");
        }
    }
    assert_eq!(staging_name(42, 7, 64), ".ispyd-42-7");
}

const CHILD_SOCKET_ENV: &str = "ISPYD_TEST_CHILD_SOCKET";
const CHILD_FORK_ENV: &str = "ISPYD_TEST_CHILD_FORK_SOCKET";

fn marker(path: &Path) -> PathBuf {
    path.with_extension("bound")
}

/// Run as a child process by `leaked_socket_is_removed_at_exit`; does
/// nothing in a normal test run.
#[test]
fn child_entry() {
    let Some(path) = std::env::var_os(CHILD_SOCKET_ENV) else {
        return;
    };
    let path = PathBuf::from(path);
    let file = bind_unix(&path).unwrap();
    fs::write(marker(&path), "bound").unwrap();
    mem::forget(file);
    process::exit(0);
}

fn run_child(test: &str, env: &str, path: &Path) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "child {test} failed: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(marker(path).exists(), "child {test} did not run");
}

#[test]
fn leaked_socket_is_removed_at_exit() {
    let dir = TestDir::new();
    let path = dir.path().join("leaked.sock");
    run_child("socket::tests::child_entry", CHILD_SOCKET_ENV, &path);
    assert!(fs::symlink_metadata(&path).is_err(), "socket left behind");
    assert_eq!(entries(dir.path()), ["leaked.bound"]);
}

/// Run as a child process by `forked_child_exit_keeps_parent_socket`;
/// does nothing in a normal test run.
#[test]
fn child_fork_entry() {
    let Some(path) = std::env::var_os(CHILD_FORK_ENV) else {
        return;
    };
    let path = PathBuf::from(path);
    let file = bind_unix(&path).unwrap();
    // SAFETY: the forked child only calls `exit`, which runs the atexit
    // handlers under test; the registry lock is free because this is the
    // only thread that uses it in this process.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: see above; never returns.
        unsafe { libc::exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` is writable.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        fs::symlink_metadata(&path).is_ok(),
        "the forked child removed its parent's socket"
    );
    fs::write(marker(&path), "survived").unwrap();
    drop(file);
}

#[test]
fn forked_child_exit_keeps_parent_socket() {
    let dir = TestDir::new();
    let path = dir.path().join("forked.sock");
    run_child("socket::tests::child_fork_entry", CHILD_FORK_ENV, &path);
    assert_eq!(fs::read_to_string(marker(&path)).unwrap(), "survived");
}

#[test]
fn tcp_wildcard_is_refused_without_allow_remote() {
    let err = bind_tcp("0.0.0.0", 0, false).unwrap_err();
    assert!(
        matches!(&err, BindError::Remote { listen, .. } if listen == "0.0.0.0:0"),
        "{err:?}"
    );
    assert!(err.to_string().contains("allow_remote"), "{err}");
}

#[test]
fn tcp_loopback_binds() {
    let listener = bind_tcp("127.0.0.1", 0, false).unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
}

#[test]
fn tcp_wildcard_binds_with_allow_remote() {
    let listener = bind_tcp("0.0.0.0", 0, true).unwrap();
    assert!(listener.local_addr().unwrap().ip().is_unspecified());
}

#[test]
fn tcp_unresolvable_host_names_the_address() {
    let err = bind_tcp("no-such-host.invalid", 1234, false).unwrap_err();
    assert!(matches!(err, BindError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains("no-such-host.invalid:1234"),
        "{err}"
    );
}

#[test]
fn ipv4_mapped_loopback_counts_as_loopback() {
    assert!(is_loopback_ip("::ffff:127.0.0.1".parse().unwrap()));
    assert!(is_loopback_ip("::1".parse().unwrap()));
    assert!(!is_loopback_ip("::ffff:10.0.0.1".parse().unwrap()));
    assert!(!is_loopback_ip("::".parse().unwrap()));
}
