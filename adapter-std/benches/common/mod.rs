//! What the benchmarks share: how the run was asked for, settings from the
//! environment, a private directory for their sockets, and the kernel's
//! per-thread counters ([`task`]).

// Each benchmark is its own crate and uses only part of this module.
#![allow(dead_code)]

pub mod task;

use std::fs::{self, DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether this is a real measurement (`cargo bench` passes `--bench`)
/// rather than a smoke run from `cargo test --benches`, which only checks
/// that the benchmark still works and so uses tiny counts.
pub fn full_run() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// The environment variable `name` parsed as a `T`, or `default` when it is
/// unset. A value that does not parse is a mistake worth stopping for.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid value")),
        Err(_) => default,
    }
}

/// A fresh directory with mode 0700 under the temporary directory, removed
/// with its contents when dropped. ispyd refuses to put its socket in a
/// directory others can write to, so `/tmp` itself will not do.
pub struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// Creates the directory; `tag` makes its name say which benchmark
    /// left it behind, should it ever be left behind.
    pub fn new(tag: &str) -> PrivateDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("ispyd-bench-{tag}-{}-{n}", std::process::id());
        let path = std::env::temp_dir().join(name);
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        // The umask may only have narrowed the mode, but say it exactly.
        fs::set_permissions(&path, Permissions::from_mode(0o700))
            .unwrap_or_else(|err| panic!("cannot set mode 0700 on {}: {err}", path.display()));
        PrivateDir { path }
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
