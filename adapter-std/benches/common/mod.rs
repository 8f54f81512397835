//! What the benchmarks share: how the run was asked for, settings from the
//! environment, a private directory for their sockets, and the kernel's
//! per-thread counters ([`task`]).

// Each benchmark is its own crate and uses only part of this module.
#![allow(dead_code)]

pub mod task;

use std::io;

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

/// Where a benchmark's client and servers run. Unpinned, on a machine with
/// idle CPUs, the scheduler picks one of the other two from run to run, so
/// that figure flips between them: shown for the record, never the verdict.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Placement {
    /// Wherever the scheduler puts them.
    Unpinned,
    /// All on CPU 0: client and server take turns on one CPU.
    SameCpu,
    /// The servers' threads on CPU 1, the client on CPU 0: every reply
    /// crosses CPUs, as between two processes on an idle machine.
    DifferentCpus,
}

impl Placement {
    /// Every placement, in the order the benchmarks report them.
    pub const ALL: [Placement; 3] = [
        Placement::Unpinned,
        Placement::SameCpu,
        Placement::DifferentCpus,
    ];

    /// As the tables show it.
    pub fn name(self) -> &'static str {
        match self {
            Placement::Unpinned => "unpinned",
            Placement::SameCpu => "same CPU (0)",
            Placement::DifferentCpus => "different CPUs (client 0, server 1)",
        }
    }

    /// As a command line or the environment gives it.
    pub fn arg(self) -> &'static str {
        match self {
            Placement::Unpinned => "unpinned",
            Placement::SameCpu => "same-cpu",
            Placement::DifferentCpus => "different-cpus",
        }
    }

    /// The placement named `arg` (see [`Placement::arg`]).
    pub fn from_arg(arg: &str) -> Placement {
        Placement::ALL
            .into_iter()
            .find(|p| p.arg() == arg)
            .unwrap_or_else(|| {
                panic!("unknown placement {arg:?} (unpinned, same-cpu, different-cpus)")
            })
    }

    /// The servers' CPU, if pinned.
    pub fn server_cpu(self) -> Option<usize> {
        match self {
            Placement::Unpinned => None,
            Placement::SameCpu => Some(0),
            Placement::DifferentCpus => Some(1),
        }
    }

    /// The client's CPU, if pinned.
    pub fn client_cpu(self) -> Option<usize> {
        match self {
            Placement::Unpinned => None,
            Placement::SameCpu | Placement::DifferentCpus => Some(0),
        }
    }

    /// Pins the calling thread where the servers run: call it before they
    /// start, since their threads inherit the mask of the thread that
    /// starts them.
    pub fn pin_servers(self) {
        if let Some(cpu) = self.server_cpu() {
            pin_thread_to_cpu(cpu);
        }
    }

    /// Pins the calling thread where the client runs.
    pub fn pin_client(self) {
        if let Some(cpu) = self.client_cpu() {
            pin_thread_to_cpu(cpu);
        }
    }
}

/// Pins the calling thread, and so every thread it starts later, to `cpu`
/// (`sched_setaffinity(0, ...)` sets the calling thread's mask only).
pub fn pin_thread_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO and CPU_SET write inside it
    // and sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        rc,
        0,
        "cannot pin to CPU {cpu}: {}",
        io::Error::last_os_error()
    );
}
