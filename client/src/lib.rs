//! `ispy`: the client of ispyd. It finds the processes a configuration
//! points at, connects to one in framed mode and gives the operator its
//! shell, with line editing on a terminal or line by line from a pipe.
//!
//! The binary is a thin `main` around [`run`]; the Python package calls
//! [`run`] too, so that `pip install` brings the same `ispy` command.

mod cli;
mod console;
mod handshake;
mod input;
mod interrupt;
mod local;
mod remote;
mod servers;
mod session;

#[cfg(test)]
mod testutil;

use std::cell::RefCell;
use std::ffi::OsString;
use std::io::{BufReader, IsTerminal};
use std::rc::Rc;

use clap::Parser;

use crate::console::Console;
use crate::input::Input;
use crate::remote::Shared;

/// Runs `ispy` with `args` (the first is the program name) and returns its
/// exit status: 0, 1 when a `connect` failed, 2 for bad arguments or an
/// unusable configuration.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = match cli::Args::try_parse_from(args) {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            return u8::try_from(err.exit_code()).unwrap_or(2);
        }
    };
    let listen = match cli::load_listen(&args.config) {
        Ok(listen) => listen,
        Err(err) => {
            eprintln!("ispy: {err}");
            return 2;
        }
    };
    let conn: Shared = Rc::new(RefCell::new(None));
    let piped = || Input::piped(Box::new(BufReader::new(std::io::stdin())));
    let input = if std::io::stdin().is_terminal() {
        interrupt::catch();
        Input::terminal(conn.clone(), args.history_path()).unwrap_or_else(|err| {
            eprintln!("ispy: no line editing ({err}); reading plain lines");
            piped()
        })
    } else {
        piped()
    };
    local::Shell::new(listen, input, conn, Console::stdio()).run()
}
