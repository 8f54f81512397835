//! Removing socket files at process exit, for owners that never drop.

use super::*;

/// One socket file to remove at exit.
pub(super) struct Registered {
    pub(super) id: u64,
    pub(super) path: PathBuf,
    pub(super) dev: u64,
    pub(super) ino: u64,
    /// The process that bound it; a forked child must not remove it.
    pub(super) pid: u32,
}

pub(super) static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());
pub(super) static AT_EXIT: Once = Once::new();

pub(super) fn lock_registry() -> MutexGuard<'static, Vec<Registered>> {
    // The list stays consistent even if a holder panicked: every change is a
    // single push or retain.
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) extern "C" fn remove_registered_at_exit() {
    // Waiting without bound could hang exit: after `fork`, the lock may be
    // held by a thread that does not exist in the child. Other threads keep
    // running during `exit`, so a real holder lets go within microseconds.
    let mut registry = None;
    for _ in 0..100 {
        match REGISTRY.try_lock() {
            Ok(guard) => registry = Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => registry = Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        }
        break;
    }
    let Some(mut registry) = registry else {
        return;
    };
    let pid = process::id();
    for entry in registry.iter().filter(|entry| entry.pid == pid) {
        remove_if_same(&entry.path, entry.dev, entry.ino);
    }
    registry.retain(|entry| entry.pid != pid);
}
