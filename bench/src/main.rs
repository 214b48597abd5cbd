//! `cargo xtask bench <datapath|watch|probes|read|soak|all>`. Every benchmark measures
//! ratios within one run (ours vs a baseline on the same machine, same
//! moment) and prints a table; nothing here asserts a timing.

use anyhow::{Result, bail};

mod datapath;
mod flood;
mod frames;
mod netns;
mod probes;
mod read;
mod soak;
mod stats;
mod testrun;
mod watch;

fn main() -> Result<()> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmarks load eBPF programs and create network namespaces: run as root");
    }
    match which.as_str() {
        "datapath" => datapath::run(),
        // A developer aid, not part of `all`: one case in a loop for
        // `perf record -e cpu-clock` to sample inside the JITed program.
        "profile" => datapath::profile(
            std::env::args().nth(2).as_deref().unwrap_or("ICMP"),
            std::env::args().nth(3).and_then(|s| s.parse().ok()).unwrap_or(20),
        ),
        "watch" => watch::run(),
        "testrun" => testrun::run(std::env::args().nth(2).and_then(|n| n.parse().ok())),
        "probes" => probes(),
        "read" => read::run(std::path::Path::new(&netobs_bin())),
        "soak" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            soak::run(&netobs_bin(), &soak::Options::parse(&args)?)
        }
        "all" => {
            // Each benchmark that moves into a private namespace runs in its
            // own process, so they cannot see each other's interfaces.
            probes()?;
            for which in ["datapath", "watch", "read"] {
                let status = std::process::Command::new(std::env::current_exe()?).arg(which).status()?;
                anyhow::ensure!(status.success(), "bench {which} failed");
            }
            Ok(())
        }
        other => bail!("unknown benchmark {other:?}: use datapath, watch, probes, read, soak, testrun or all"),
    }
}

fn probes() -> Result<()> {
    probes::run(std::path::Path::new(&netobs_bin()))
}

/// The netobs binary under test: `$NETOBS_BIN` (xtask sets it), else the
/// release build.
fn netobs_bin() -> String {
    std::env::var("NETOBS_BIN").unwrap_or_else(|_| "target/release/netobs".into())
}
