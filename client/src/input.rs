//! Where lines come from: a rustyline editor on a terminal (history,
//! completion, Ctrl-C and Ctrl-D), or plain lines from piped stdin with no
//! prompts shown.

use std::collections::HashMap;
use std::io::{self, BufRead};
use std::path::PathBuf;

use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};

use crate::local;
use crate::remote::Shared;

/// What the user typed, as reading a line gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Typed {
    /// A line, without its terminator.
    Line(String),
    /// Ctrl-C: the line was abandoned; read again.
    Interrupted,
    /// Ctrl-D on an empty line, or the end of piped input.
    Eof,
}

/// The source of lines.
pub struct Input {
    kind: Kind,
}

enum Kind {
    Terminal(Box<Terminal>),
    Piped(Box<dyn BufRead>),
}

impl Input {
    /// A line editor on the terminal, completing through `conn` when
    /// connected, with its history in `history` (if any).
    pub fn terminal(conn: Shared, history: Option<PathBuf>) -> Result<Input, ReadlineError> {
        Ok(Input {
            kind: Kind::Terminal(Box::new(Terminal::new(conn, history)?)),
        })
    }

    /// Lines read from `reader`, as from a pipe.
    pub fn piped(reader: Box<dyn BufRead>) -> Input {
        Input {
            kind: Kind::Piped(reader),
        }
    }

    /// True on a terminal: prompts and chatty messages are shown.
    pub fn is_interactive(&self) -> bool {
        matches!(self.kind, Kind::Terminal(_))
    }

    /// Reads a line, showing `prompt` on a terminal (never when piped).
    pub fn read_line(&mut self, prompt: &str) -> Typed {
        match &mut self.kind {
            Kind::Terminal(terminal) => terminal.read_line(prompt),
            Kind::Piped(reader) => read_piped(reader.as_mut()),
        }
    }

    /// Switches to the history of takeover `name` (a console's lines are not
    /// shell commands, and vice versa).
    pub fn enter_takeover(&mut self, name: &str) {
        if let Kind::Terminal(terminal) = &mut self.kind {
            terminal.enter_takeover(name);
        }
    }

    /// Switches back to the shell's history.
    pub fn leave_takeover(&mut self) {
        if let Kind::Terminal(terminal) = &mut self.kind {
            terminal.leave_takeover();
        }
    }

    /// Writes the shell's history to its file.
    pub fn save_history(&mut self) {
        if let Kind::Terminal(terminal) = &mut self.kind {
            terminal.save_history();
        }
    }
}

fn read_piped(reader: &mut dyn BufRead) -> Typed {
    let mut line = Vec::new();
    match reader.read_until(b'\n', &mut line) {
        Ok(0) => Typed::Eof,
        Ok(_) => {
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            // The server would refuse bytes that are not UTF-8 anyway; a
            // replacement character at least shows where the fault was.
            Typed::Line(String::from_utf8_lossy(&line).into_owned())
        }
        Err(err) => {
            eprintln!("ispy: cannot read stdin: {err}");
            Typed::Eof
        }
    }
}

struct Terminal {
    editor: Editor<LineHelper, FileHistory>,
    history_path: Option<PathBuf>,
    /// Histories of takeovers not running now, by takeover name; kept in
    /// memory for the life of ispy only.
    takeovers: HashMap<String, FileHistory>,
    /// The takeover whose history is in the editor, if any; the shell's
    /// history is then parked here too, under the empty name.
    current: Option<String>,
    warned: bool,
}

impl Terminal {
    fn new(conn: Shared, history_path: Option<PathBuf>) -> Result<Terminal, ReadlineError> {
        let config = config()?;
        let history = FileHistory::with_config(&config);
        let mut editor = Editor::with_history(config, history)?;
        editor.set_helper(Some(LineHelper { conn }));
        let mut terminal = Terminal {
            editor,
            history_path,
            takeovers: HashMap::new(),
            current: None,
            warned: false,
        };
        if let Some(path) = &terminal.history_path {
            match terminal.editor.load_history(path) {
                Ok(()) => {}
                Err(ReadlineError::Io(err)) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    eprintln!("ispy: cannot read history from {}: {err}", path.display());
                    terminal.warned = true;
                }
            }
        }
        Ok(terminal)
    }

    fn read_line(&mut self, prompt: &str) -> Typed {
        match self.editor.readline(prompt) {
            Ok(line) => Typed::Line(line),
            Err(ReadlineError::Interrupted | ReadlineError::Signal(_)) => Typed::Interrupted,
            Err(ReadlineError::Eof) => Typed::Eof,
            Err(err) => {
                eprintln!("ispy: cannot read the terminal: {err}");
                Typed::Eof
            }
        }
    }

    fn enter_takeover(&mut self, name: &str) {
        self.leave_takeover();
        let mut history = self
            .takeovers
            .remove(name)
            .unwrap_or_else(|| FileHistory::with_config(&config().unwrap_or_default()));
        std::mem::swap(self.editor.history_mut(), &mut history);
        self.takeovers.insert(String::new(), history);
        self.current = Some(name.to_owned());
    }

    fn leave_takeover(&mut self) {
        let Some(name) = self.current.take() else {
            return;
        };
        if let Some(mut history) = self.takeovers.remove("") {
            std::mem::swap(self.editor.history_mut(), &mut history);
            self.takeovers.insert(name, history);
        }
    }

    fn save_history(&mut self) {
        // Only the shell's history belongs in the file.
        self.leave_takeover();
        let Some(path) = &self.history_path else {
            return;
        };
        if let Err(err) = self.editor.save_history(path) {
            if !self.warned {
                eprintln!("ispy: cannot save history to {}: {err}", path.display());
                self.warned = true;
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.save_history();
    }
}

fn config() -> Result<Config, ReadlineError> {
    Ok(Config::builder()
        .auto_add_history(true)
        .history_ignore_dups(true)?
        .history_ignore_space(true)
        .max_history_size(1000)?
        // Like bash: Tab completes the common prefix, a second Tab lists.
        .completion_type(CompletionType::List)
        .build())
}

/// Completion for the editor: the server's when connected, else the local
/// shell's.
struct LineHelper {
    conn: Shared,
}

impl Completer for LineHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let text = line.get(..pos).unwrap_or(line);
        // The session loop never holds the connection while reading a line,
        // but a failed borrow must not panic the client either.
        let Ok(mut conn) = self.conn.try_borrow_mut() else {
            return Ok((pos, Vec::new()));
        };
        Ok(match conn.as_mut() {
            Some(conn) => conn.complete(text).unwrap_or((pos, Vec::new())),
            None => local::complete(text),
        })
    }
}

impl Hinter for LineHelper {
    type Hint = String;
}

impl Highlighter for LineHelper {}

impl Validator for LineHelper {}

impl Helper for LineHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn piped(text: &'static str) -> Input {
        Input::piped(Box::new(text.as_bytes()))
    }

    #[test]
    fn piped_lines_lose_their_terminators() {
        let mut input = piped("connect 1\r\npid\nlast");
        assert!(!input.is_interactive());
        assert_eq!(input.read_line("(ispyd) "), Typed::Line("connect 1".into()));
        assert_eq!(input.read_line(""), Typed::Line("pid".into()));
        assert_eq!(input.read_line(""), Typed::Line("last".into()));
        assert_eq!(input.read_line(""), Typed::Eof);
    }

    #[test]
    fn piped_empty_line_is_a_line_not_the_end() {
        let mut input = piped("\n");
        assert_eq!(input.read_line(""), Typed::Line(String::new()));
        assert_eq!(input.read_line(""), Typed::Eof);
    }
}
