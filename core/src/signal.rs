//! The signals a host may ask ispyd to act on: `dump_on` (write every
//! thread's stack and every active request when one arrives, then hand it
//! on) and `activate_on` (start listening only when it arrives).
//!
//! The core knows them by name only; the adapter that acts on them maps
//! each to its platform's number.

use std::fmt;

/// A signal named in `dump_on` or `activate_on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    /// `SIGHUP`.
    Hup,
    /// `SIGINT`.
    Int,
    /// `SIGQUIT`.
    Quit,
    /// `SIGABRT`: what gunicorn sends a worker that missed its timeout.
    Abrt,
    /// `SIGUSR1`.
    Usr1,
    /// `SIGUSR2`.
    Usr2,
    /// `SIGALRM`.
    Alrm,
    /// `SIGTERM`.
    Term,
}

impl Signal {
    /// Every signal ispyd can act on.
    pub const ALL: [Signal; 8] = [
        Signal::Hup,
        Signal::Int,
        Signal::Quit,
        Signal::Abrt,
        Signal::Usr1,
        Signal::Usr2,
        Signal::Alrm,
        Signal::Term,
    ];

    /// The conventional name, `SIGABRT`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hup => "SIGHUP",
            Signal::Int => "SIGINT",
            Signal::Quit => "SIGQUIT",
            Signal::Abrt => "SIGABRT",
            Signal::Usr1 => "SIGUSR1",
            Signal::Usr2 => "SIGUSR2",
            Signal::Alrm => "SIGALRM",
            Signal::Term => "SIGTERM",
        }
    }

    /// Parses `SIGABRT`, `ABRT` or `abrt`; the error says why a name is not
    /// one ispyd can act on.
    pub fn parse(text: &str) -> Result<Signal, String> {
        let upper = text.trim().to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper.clone()
        } else {
            format!("SIG{upper}")
        };
        if let Some(signal) = Signal::ALL.into_iter().find(|s| s.name() == name) {
            return Ok(signal);
        }
        Err(match name.as_str() {
            "SIGKILL" | "SIGSTOP" => format!("{name} cannot be caught by any program"),
            "SIGSEGV" | "SIGBUS" | "SIGFPE" | "SIGILL" => format!(
                "{name} is a crash, not a request: for a crash's stacks use Python's \
                 faulthandler (python -X faulthandler)"
            ),
            _ => format!(
                "'{}' is not a signal ispyd can act on; use one of {}",
                crate::render::echoed(text.trim()),
                {
                    let names: Vec<&str> = Signal::ALL.iter().map(|s| s.name()).collect();
                    names.join(", ")
                }
            ),
        })
    }

    /// Parses a list separated by spaces or commas; an empty list is none.
    /// A signal named twice counts once.
    pub fn parse_list(text: &str) -> Result<Vec<Signal>, String> {
        let mut signals = Vec::new();
        for word in text.split([' ', '\t', ',']).filter(|w| !w.is_empty()) {
            let signal = Signal::parse(word)?;
            if !signals.contains(&signal) {
                signals.push(signal);
            }
        }
        Ok(signals)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_or_without_the_prefix_in_any_case() {
        for text in ["SIGABRT", "ABRT", "abrt", " sigAbrt "] {
            assert_eq!(Signal::parse(text), Ok(Signal::Abrt), "{text}");
        }
    }

    #[test]
    fn lists_take_spaces_and_commas_and_drop_repeats() {
        assert_eq!(
            Signal::parse_list("SIGABRT, SIGTERM  abrt"),
            Ok(vec![Signal::Abrt, Signal::Term])
        );
        assert_eq!(Signal::parse_list("  "), Ok(vec![]));
    }

    #[test]
    fn refusals_say_why() {
        assert!(
            Signal::parse("SIGKILL")
                .unwrap_err()
                .contains("cannot be caught")
        );
        assert!(Signal::parse("segv").unwrap_err().contains("faulthandler"));
        let err = Signal::parse("SIGFOO").unwrap_err();
        assert!(err.contains("'SIGFOO'") && err.contains("SIGUSR2"), "{err}");
    }
}
