//! Where the client writes: output to stdout, messages to stderr, in the
//! order they happen.

use std::io::{self, Write};

/// The client's two output streams.
///
/// Write errors are ignored: a closed stdout (`ispy ... | head`) must not
/// stop the session or the exit status from being reported.
pub struct Console {
    out: Box<dyn Write>,
    err: Box<dyn Write>,
}

impl Console {
    /// The process's stdout and stderr.
    pub fn stdio() -> Console {
        Console::new(Box::new(io::stdout()), Box::new(io::stderr()))
    }

    /// A console over any two writers (tests capture them).
    pub fn new(out: Box<dyn Write>, err: Box<dyn Write>) -> Console {
        Console { out, err }
    }

    /// Writes `text` to stdout as-is and flushes, so that output without a
    /// newline shows before the next prompt.
    pub fn out(&mut self, text: &str) {
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }

    /// Writes `text` to stderr as a line (adding the newline if missing),
    /// after flushing stdout so that the two stay in order on a terminal.
    pub fn err_line(&mut self, text: &str) {
        let _ = self.out.flush();
        let _ = self.err.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = self.err.write_all(b"\n");
        }
        let _ = self.err.flush();
    }
}

#[cfg(test)]
pub mod capture {
    //! A console whose output the test can read back.

    use super::Console;
    use std::cell::RefCell;
    use std::io::{self, Write};
    use std::rc::Rc;

    /// A writer appending to a shared buffer.
    #[derive(Clone, Default)]
    pub struct Buffer(Rc<RefCell<Vec<u8>>>);

    impl Buffer {
        /// Everything written so far.
        pub fn text(&self) -> String {
            String::from_utf8(self.0.borrow().clone()).unwrap()
        }
    }

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A console and the buffers behind its stdout and stderr.
    pub fn console() -> (Console, Buffer, Buffer) {
        let out = Buffer::default();
        let err = Buffer::default();
        (
            Console::new(Box::new(out.clone()), Box::new(err.clone())),
            out,
            err,
        )
    }
}
