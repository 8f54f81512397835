//! Helpers shared by the unit tests.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use ispyd_core::CLIENT_HELLO;

use ispyd_std::stream::Stream;

/// A fresh directory under the system's temp dir, removed on drop. Kept
/// short: UNIX socket paths are limited to about 100 bytes.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a directory no other test (or test run) uses.
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ispy-t{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A socket pair whose far end a thread runs as `server`, once it has read
/// (and checked) the client hello. Returns the client's end.
pub fn peer_after_hello(
    server: impl FnOnce(&mut UnixStream) + Send + 'static,
) -> (Stream, thread::JoinHandle<()>) {
    let (client, mut peer) = UnixStream::pair().unwrap();
    let handle = thread::spawn(move || {
        let mut hello = [0u8; 8];
        peer.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, CLIENT_HELLO);
        server(&mut peer);
    });
    (Stream::Unix(client), handle)
}
