//! `ispy`: the client of ispyd. It finds the processes a configuration
//! points at, connects to one in framed mode and gives the operator its
//! shell, with line editing on a terminal or line by line from a pipe.

mod cli;
mod console;
mod handshake;
mod input;
mod interrupt;
mod local;
mod remote;
mod servers;
mod session;
mod stream;
#[cfg(test)]
mod testutil;

use std::cell::RefCell;
use std::io::{BufReader, IsTerminal};
use std::process::ExitCode;
use std::rc::Rc;

use clap::Parser;

use crate::console::Console;
use crate::input::Input;
use crate::remote::Shared;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let listen = match cli::load_listen(&args.config) {
        Ok(listen) => listen,
        Err(err) => {
            eprintln!("ispy: {err}");
            return ExitCode::from(2);
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
    let status = local::Shell::new(listen, input, conn, Console::stdio()).run();
    ExitCode::from(status)
}
