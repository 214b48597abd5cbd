//! `cargo xtask test`: host unit tests, then the root-only eBPF and lab
//! tests, then a check that nothing was left behind.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{setup, util};

pub fn run(extra: &[String]) -> Result<()> {
    setup::ensure()?;
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if !util::is_root() {
        if ci {
            bail!("CI=true but not root: the eBPF and lab tests need root and must not be skipped");
        }
        eprintln!("xtask: warning: not root, so the eBPF and lab tests will skip (run as root for the full suite)");
    }
    // The end-to-end tests run the real binary: build it first.
    util::build_netobs(false)?;

    let started = std::time::Instant::now();
    // 1. Host tests: parsers, explanations, CLI; no privileges needed.
    let mut host = util::cargo();
    host.args([
        "test",
        "--workspace",
        "--exclude",
        "netobs-ebpf",
        "--exclude",
        "netobs-lab",
        "--exclude",
        "netobs-e2e",
    ])
    .args(["--no-fail-fast"])
    .args(extra);
    let host_result = util::run_loud(&mut host);
    // 2. Root-only tests: the lab library, then eBPF and end-to-end labs.
    let mut root = util::cargo();
    root.args(["test", "-p", "netobs-lab", "-p", "netobs-e2e", "--no-fail-fast"]).args(extra);
    let result = host_result.and(util::run_loud(&mut root));

    let leftovers = leftovers()?;
    eprintln!("xtask: tests took {:.0} s", started.elapsed().as_secs_f64());
    result?;
    if !leftovers.is_empty() {
        bail!("the test suite left things behind:\n  {}", leftovers.join("\n  "));
    }
    eprintln!("xtask: no network namespace or eBPF program left behind");
    Ok(())
}

/// Lab namespaces and netobs programs that outlived the suite.
pub fn leftovers() -> Result<Vec<String>> {
    let mut out = Vec::new();
    let ns = Command::new("ip").args(["netns", "list"]).output().context("running ip netns list")?;
    for line in String::from_utf8_lossy(&ns.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.starts_with(netobs_lab::NS_PREFIX) {
            out.push(format!("network namespace {name}"));
        }
    }
    if util::is_root() {
        let progs =
            Command::new("bpftool").args(["-j", "prog", "show"]).output().context("running bpftool prog show")?;
        let text = String::from_utf8_lossy(&progs.stdout);
        for name in text.split("\"name\":\"").skip(1).filter_map(|s| s.split('"').next()) {
            if name.starts_with("netobs_") {
                out.push(format!("eBPF program {name} still loaded"));
            }
        }
    }
    Ok(out)
}
