//! The baseline server: what any blocking thread-per-connection server
//! costs, with ispyd-std's threading shape (a listener thread, a thread per
//! connection) and no work beyond `read` then `write` back.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

/// The name prefix of the echo server's connection threads.
pub const SESSION_THREAD: &str = "echo-session-";

/// A running echo server; its threads live until the process ends.
pub struct EchoServer {
    path: PathBuf,
    open: Arc<AtomicUsize>,
}

impl EchoServer {
    /// Binds `path` and starts the listener thread.
    pub fn start(path: &Path) -> EchoServer {
        let listener = UnixListener::bind(path).expect("cannot bind the echo socket");
        let open = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&open);
        thread::Builder::new()
            .name("echo-listener".to_owned())
            .spawn(move || {
                for (n, stream) in listener.incoming().enumerate() {
                    let Ok(stream) = stream else { continue };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let counter = Arc::clone(&counter);
                    thread::Builder::new()
                        .name(format!("{SESSION_THREAD}{n}"))
                        .spawn(move || {
                            echo(stream);
                            counter.fetch_sub(1, Ordering::SeqCst);
                        })
                        .expect("cannot start an echo thread");
                }
            })
            .expect("cannot start the echo listener");
        EchoServer {
            path: path.to_path_buf(),
            open,
        }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections whose thread has not finished yet.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Sends back whatever arrives until the peer leaves.
fn echo(mut stream: UnixStream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
