//! `cargo xtask bench`: runs the netobs-bench binary (release build) for the
//! chosen benchmark. It lives in its own crate because it links netobs,
//! which xtask must not (xtask has to build before bpf-linker exists).

use anyhow::Result;

use crate::{setup, util};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Which {
    /// ns/packet of the XDP program vs an empty one, live-frame pps.
    Datapath,
    /// User-space drain/decode rate and CPU at 100k errors/s.
    Watch,
    /// netobs trace/pmtu vs traceroute, mtr, tracepath, scamper.
    Probes,
    /// `netobs read` vs `tcpdump -r -n` on one large capture, frames/s.
    Read,
    /// `watch` through minutes of spoofed ICMP-error flood: memory, scrape
    /// latency, drain lag, --duration/SIGTERM under load (not part of `all`).
    Soak,
    /// 1 M random and mutated frames through BPF_PROG_TEST_RUN, compared
    /// with the host parser (not part of `all`).
    Testrun,
    All,
}

/// `minutes`: length of the soak's flood (`--minutes N`, default 2).
pub fn run(which: Which, minutes: Option<f64>) -> Result<()> {
    setup::ensure()?;
    let netobs = util::build_netobs(true)?;
    let which = match which {
        Which::Datapath => "datapath",
        Which::Watch => "watch",
        Which::Probes => "probes",
        Which::Read => "read",
        Which::Soak => "soak",
        Which::Testrun => "testrun",
        Which::All => "all",
    };
    let mut c = util::cargo();
    c.args(["run", "--release", "-p", "netobs-bench", "--", which]).env("NETOBS_BIN", &netobs);
    if let Some(m) = minutes {
        c.args(["--minutes", &m.to_string()]);
    }
    util::run_loud(&mut c)
}
