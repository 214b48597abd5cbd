//! One module per subcommand. Each returns its exit code (see
//! [`crate::exit`]): what it found, or an error that `main` maps to 2
//! (usage, permission) or 3 (failed while running).

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};

pub mod explain;
pub mod generate;
pub mod pmtu;
pub mod read;
pub mod tcp;
pub mod trace;
pub mod watch;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Watch(args) => watch::run(args),
        Command::Read(args) => read::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Pmtu(args) => pmtu::run(args),
        Command::Tcp(args) => tcp::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Completions(args) => generate::completions(&args),
        Command::Man(args) => generate::man(&args),
    }
}
