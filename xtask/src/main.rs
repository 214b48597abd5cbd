//! Developer tasks: `cargo xtask <setup|build|run|test|bench|fuzz|install|lab>`.
//!
//! Everything a fresh machine needs is installed by `setup`, which the
//! other tasks run first when something is missing, so the README's two
//! commands work from a clean clone.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod demo;
mod fuzz;
mod install;
mod lab;
mod labtool;
mod setup;
mod test;
mod util;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "netobs developer tasks", max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent): Debian packages
    /// for the labs and peer tools, the nightly's rust-src, bpf-linker.
    Setup {
        /// Only report what is missing; install nothing.
        #[arg(long)]
        check: bool,
    },
    /// Build netobs (and the eBPF object it embeds).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build and run netobs with ARGS as root. Without ARGS: a demo that
    /// builds a lab, attaches netobs, provokes ICMP errors and prints what
    /// netobs explains.
    Run {
        #[arg(long)]
        release: bool,
        /// Arguments for netobs (after --), e.g. `-- watch -i eth0`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Host unit tests, then the root-only eBPF and lab tests; fails if a
    /// namespace or an eBPF program is left behind.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks: datapath (ns/packet via BPF_PROG_TEST_RUN and live
    /// frames), watch (user-space drain rate), probes (vs traceroute & co).
    Bench {
        #[arg(value_enum, default_value = "all")]
        which: bench::Which,
        /// soak: minutes of flood (default 2).
        #[arg(long)]
        minutes: Option<f64>,
    },
    /// libFuzzer over the shared parser and the probe-reply parser (every
    /// fuzz/src/bin target), seeded from the tcpdump corpus; prints the
    /// execution counts (`--runs 10000000` for the bench-style run).
    Fuzz(fuzz::FuzzArgs),
    /// Install the release binary, the systemd unit, /etc/default/netobs,
    /// shell completions and man pages (`--prefix`, `--destdir`).
    Install(install::InstallArgs),
    /// Network-namespace labs for exploring by hand.
    Lab {
        #[command(subcommand)]
        cmd: lab::LabCmd,
    },
    /// Helpers run inside lab namespaces (listen, connect, send UDP).
    #[command(hide = true)]
    LabTool {
        #[command(subcommand)]
        cmd: labtool::Tool,
    },
}

fn main() {
    let cli = Cli::parse();
    let result: Result<()> = match cli.task {
        Task::Setup { check } => setup::run(check),
        Task::Build { release } => setup::ensure().and_then(|_| util::build_netobs(release).map(|_| ())),
        Task::Run { release, args } => run(release, args),
        Task::Test { args } => test::run(&args),
        Task::Bench { which, minutes } => bench::run(which, minutes),
        Task::Fuzz(args) => fuzz::run(&args),
        Task::Install(args) => install::run(&args),
        Task::Lab { cmd } => lab::run(cmd),
        Task::LabTool { cmd } => labtool::run(cmd),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(release: bool, args: Vec<String>) -> Result<()> {
    setup::ensure()?;
    let bin = util::build_netobs(release)?;
    if args.is_empty() {
        return demo::run(&bin);
    }
    let status = util::privileged(&bin, &args)?.status()?;
    std::process::exit(status.code().unwrap_or(1));
}
