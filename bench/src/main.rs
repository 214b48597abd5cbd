//! `cargo xtask bench <datapath|watch|probes|all>`. Every benchmark measures
//! ratios within one run (ours vs a baseline on the same machine, same
//! moment) and prints a table; nothing here asserts a timing.

use anyhow::{Result, bail};

mod datapath;
mod frames;
mod netns;
mod probes;
mod stats;
mod watch;

fn main() -> Result<()> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmarks load eBPF programs and create network namespaces: run as root");
    }
    match which.as_str() {
        "datapath" => datapath::run(),
        "watch" => watch::run(),
        "probes" => probes(),
        "all" => {
            // Each benchmark that moves into a private namespace runs in its
            // own process, so they cannot see each other's interfaces.
            probes()?;
            for which in ["datapath", "watch"] {
                let status = std::process::Command::new(std::env::current_exe()?).arg(which).status()?;
                anyhow::ensure!(status.success(), "bench {which} failed");
            }
            Ok(())
        }
        other => bail!("unknown benchmark {other:?}: use datapath, watch, probes or all"),
    }
}

fn probes() -> Result<()> {
    let bin =
        std::env::var_os("NETOBS_BIN").map(std::path::PathBuf::from).unwrap_or_else(|| "target/release/netobs".into());
    probes::run(&bin)
}
