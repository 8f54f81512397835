//! The `ispy` command: see the library's [`ispy::run`].

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(ispy::run(std::env::args_os()))
}
