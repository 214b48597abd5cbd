//! One module per subcommand.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};

pub mod watch;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Watch(args) => watch::run(args),
        Command::Trace(_) | Command::Pmtu(_) | Command::Tcp(_) | Command::Explain(_) => {
            anyhow::bail!("this probe is not built yet")
        }
    }
}
