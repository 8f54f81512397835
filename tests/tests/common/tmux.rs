//! A private tmux server per test, to drive `ispy` as a person does.

use std::path::Path;
use std::process::Command;

/// A private tmux server running `ispy` in a 100×30 terminal.
pub struct Tmux {
    socket: String,
    /// The screen as the last keys were sent: `wait_last_line` waits for a
    /// change from it, so the prompt the keys were typed at is never taken
    /// for the answer to them.
    before: std::cell::RefCell<Option<String>>,
}

impl Tmux {
    /// Starts `command` (words, joined by spaces for the shell) with
    /// `ISPY_HISTORY` set to `history`.
    pub fn start(command: &[&str], history: &Path) -> Tmux {
        let socket = format!("ispyd-test-{}-{}", std::process::id(), rand_suffix());
        let mut shell = format!("ISPY_HISTORY={} exec", history.display());
        for word in command {
            shell.push(' ');
            shell.push_str(word);
        }
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "100",
                "-y",
                "30",
            ])
            .arg(&shell)
            .status()
            .unwrap();
        assert!(status.success());
        Tmux {
            socket,
            before: Default::default(),
        }
    }

    /// Sends keys, as tmux `send-keys` names them.
    pub fn keys(&self, keys: &[&str]) {
        *self.before.borrow_mut() = Some(self.screen());
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "t"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Writes `text` to the terminal in one piece, as a paste from the
    /// clipboard (no bracketed-paste markers) or keys typed ahead over a slow
    /// link arrive: the reader gets several lines in a single read.
    pub fn paste(&self, text: &str) {
        *self.before.borrow_mut() = Some(self.screen());
        let tmux = |args: &[&str]| {
            let status = Command::new("tmux")
                .args(["-L", &self.socket])
                .args(args)
                .status()
                .unwrap();
            assert!(status.success());
        };
        tmux(&["set-buffer", "--", text]);
        tmux(&["paste-buffer", "-t", "t"]);
    }

    /// The visible screen.
    pub fn screen(&self) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The last line of the screen that is not blank.
    pub fn last_line(&self) -> String {
        self.screen()
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned()
    }

    /// Waits until the last non-blank line is `expected` on a screen that
    /// has changed since the last keys were sent.
    pub fn wait_last_line(&self, expected: &str) {
        let before = self.before.borrow().clone();
        self.wait_screen(
            |screen| {
                Some(screen) != before.as_deref()
                    && screen.lines().rev().find(|l| !l.trim().is_empty()) == Some(expected)
            },
            &format!("last line {expected:?}"),
        );
    }

    /// Waits until `ready` holds for the screen; on failure the message
    /// shows the screen as it was.
    pub fn wait_screen(&self, ready: impl Fn(&str) -> bool, what: &str) {
        let deadline = std::time::Instant::now() + super::PATIENCE;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gave up waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// True while the session (its command) runs.
    pub fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["-L", &self.socket, "has-session", "-t", "t"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
