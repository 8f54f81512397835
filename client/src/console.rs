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
    /// Whether stderr is a terminal, where progress is shown in place.
    terminal: bool,
    /// A progress line is on the screen, to be wiped before what follows.
    progress_shown: bool,
}

impl Console {
    /// The process's stdout and stderr.
    pub fn stdio() -> Console {
        use std::io::IsTerminal;
        let mut console = Console::new(Box::new(io::stdout()), Box::new(io::stderr()));
        console.terminal = io::stderr().is_terminal();
        console
    }

    /// A console over any two writers (tests capture them).
    pub fn new(out: Box<dyn Write>, err: Box<dyn Write>) -> Console {
        Console {
            out,
            err,
            terminal: false,
            progress_shown: false,
        }
    }

    /// Shows a running command's progress on stderr, in place of the
    /// previous one, on a terminal only (a log or a pipe gets only the
    /// result). Control characters the server sent are not passed on.
    pub fn progress(&mut self, text: &str) {
        if !self.terminal {
            return;
        }
        let shown: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let _ = self.out.flush();
        let _ = write!(self.err, "\r\x1b[K{shown}");
        let _ = self.err.flush();
        self.progress_shown = true;
    }

    /// Clears the progress line, if one is shown (before a prompt).
    pub fn wipe_progress(&mut self) {
        if self.progress_shown {
            let _ = self.err.write_all(b"\r\x1b[K");
            let _ = self.err.flush();
            self.progress_shown = false;
        }
    }

    /// Writes `text` to stdout as-is and flushes, so that output without a
    /// newline shows before the next prompt.
    pub fn out(&mut self, text: &str) {
        self.wipe_progress();
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }

    /// Writes `text` to stderr as a line (adding the newline if missing),
    /// after flushing stdout so that the two stay in order on a terminal.
    pub fn err_line(&mut self, text: &str) {
        self.wipe_progress();
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

#[cfg(test)]
mod tests {
    use super::Console;
    use super::capture::Buffer;

    fn console(terminal: bool) -> (Console, Buffer, Buffer) {
        let (out, err) = (Buffer::default(), Buffer::default());
        let mut console = Console::new(Box::new(out.clone()), Box::new(err.clone()));
        console.terminal = terminal;
        (console, out, err)
    }

    #[test]
    fn progress_is_shown_in_place_on_a_terminal_and_wiped_before_output() {
        let (mut console, out, err) = console(true);
        console.progress("1 s of 3");
        console.progress("2 s of 3\x1b[2J");
        console.out("result\n");
        assert_eq!(
            err.text(),
            "\r\x1b[K1 s of 3\r\x1b[K2 s of 3 [2J\r\x1b[K",
            "the server's escape is not passed on"
        );
        assert_eq!(out.text(), "result\n");
    }

    #[test]
    fn progress_is_not_written_where_stderr_is_not_a_terminal() {
        let (mut console, out, err) = console(false);
        console.progress("1 s of 3");
        console.out("result\n");
        assert_eq!(err.text(), "");
        assert_eq!(out.text(), "result\n");
    }
}
