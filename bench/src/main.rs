//! `cargo xtask bench <datapath|watch|probes|all>`. Every benchmark measures
//! ratios within one run (ours vs a baseline on the same machine, same
//! moment) and prints a table; nothing here asserts a timing.

use anyhow::{bail, Result};

mod datapath;
mod netns;
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
            datapath::run()?;
            watch::run()?;
            probes()
        }
        other => bail!("unknown benchmark {other:?}: use datapath, watch, probes or all"),
    }
}

fn probes() -> Result<()> {
    println!("\n## probes: see `cargo xtask bench probes` (netobs trace/pmtu vs traceroute, mtr, tracepath, scamper)");
    Ok(())
}
