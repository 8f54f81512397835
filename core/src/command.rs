//! The command-line grammar of every shell level, as Python's `cmd` reads
//! it: a command word, then the rest of the line as its argument. `?` is
//! `help` and `!` is `shell`, with or without a space after them.
//!
//! The parser is stateless; what a command means is the shell's business.

use nom::IResult;
use nom::Parser;
use nom::branch::alt;
use nom::bytes::complete::{tag, take_till1};
use nom::character::complete::space0;
use nom::combinator::{rest, value};
use nom::sequence::preceded;
use std::fmt;

/// A non-empty command line split into its command word and argument text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandLine<'a> {
    /// The command word (`?` and `!` already turned into `help` and `shell`).
    pub name: &'a str,
    /// The rest of the line, without surrounding white space.
    pub args: &'a str,
}

impl fmt::Display for CommandLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.args.is_empty() {
            f.write_str(self.name)
        } else {
            write!(f, "{} {}", self.name, self.args)
        }
    }
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn word(input: &str) -> IResult<&str, &str> {
    preceded(
        space0,
        alt((
            value("help", tag("?")),
            value("shell", tag("!")),
            take_till1(is_space),
        )),
    )
    .parse(input)
}

/// Splits `line` into command and argument, or `None` for a blank line.
pub fn parse_command(line: &str) -> Option<CommandLine<'_>> {
    let (after, name) = word(line).ok()?;
    let (_, args) = preceded(space0::<&str, nom::error::Error<&str>>, rest)
        .parse(after)
        .ok()?;
    Some(CommandLine {
        name,
        args: args.trim_matches(is_space),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Option<(&str, &str)> {
        parse_command(line).map(|c| (c.name, c.args))
    }

    #[test]
    fn blank_line_is_no_command() {
        assert_eq!(parsed(""), None);
        assert_eq!(parsed("   \t "), None);
    }

    #[test]
    fn command_and_arguments_are_split_at_first_space() {
        assert_eq!(parsed("shell process"), Some(("shell", "process")));
        assert_eq!(parsed("  modules  os.*  "), Some(("modules", "os.*")));
        assert_eq!(parsed("pid"), Some(("pid", "")));
    }

    #[test]
    fn question_mark_is_help() {
        assert_eq!(parsed("?"), Some(("help", "")));
        assert_eq!(parsed("?shell"), Some(("help", "shell")));
        assert_eq!(parsed("? shell"), Some(("help", "shell")));
    }

    #[test]
    fn bang_is_shell() {
        assert_eq!(parsed("!process"), Some(("shell", "process")));
        assert_eq!(parsed("! process"), Some(("shell", "process")));
    }

    #[test]
    fn printing_and_parsing_again_is_stable() {
        let first = parse_command(" ?  topic  with spaces ").unwrap();
        let printed = first.to_string();
        assert_eq!(parse_command(&printed), Some(first));
    }
}
