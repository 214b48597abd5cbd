//! Hidden `netobs completions SHELL` and `netobs man [SUBCOMMAND]`: shell
//! completions (clap_complete) and man pages (clap_mangen) generated from
//! the same clap definition as `--help`, so they can never drift from it.
//! `cargo xtask install` runs them on the binary it installs.

use std::{io::Write as _, process::ExitCode};

use anyhow::{Context as _, Result, bail};
use clap::{Args, CommandFactory as _};

use crate::cli::Cli;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// A subcommand's page (netobs-SUBCOMMAND(1)) instead of netobs(1).
    pub subcommand: Option<String>,
    /// List the subcommands that have a page, one per line.
    #[arg(long, conflicts_with = "subcommand")]
    pub list: bool,
}

/// Writes the completion script for `args.shell` to stdout.
pub fn completions(args: &CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "netobs", &mut out);
    std::io::stdout().write_all(&out).context("writing completions to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Writes a man page to stdout. The subcommand pages are named
/// `netobs-<sub>` and listed in netobs(1)'s SUBCOMMANDS section.
pub fn man(args: &ManArgs) -> Result<ExitCode> {
    let root = Cli::command();
    if args.list {
        let mut out = String::new();
        for s in root.get_subcommands().filter(|s| !s.is_hide_set()) {
            out.push_str(s.get_name());
            out.push('\n');
        }
        std::io::stdout().write_all(out.as_bytes()).context("writing to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }
    let cmd = match &args.subcommand {
        None => root,
        Some(name) => {
            let Some(sub) = root.find_subcommand(name).filter(|s| !s.is_hide_set()).cloned() else {
                let names: Vec<String> =
                    root.get_subcommands().filter(|s| !s.is_hide_set()).map(|s| s.get_name().to_string()).collect();
                bail!("no subcommand {name:?}; man pages exist for: {}", names.join(", "));
            };
            let sub_name = sub.get_name().to_string();
            sub.display_name(format!("netobs-{sub_name}"))
                .bin_name(format!("netobs {sub_name}"))
                .version(crate::cli::VERSION)
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out).context("rendering the man page")?;
    std::io::stdout().write_all(&out).context("writing the man page to stdout")?;
    Ok(ExitCode::SUCCESS)
}
