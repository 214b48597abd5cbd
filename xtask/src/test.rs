//! `cargo xtask test`: host unit tests, then the root-only eBPF and lab
//! tests, then a check that nothing was left behind.

use std::{
    collections::{BTreeSet, HashMap},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

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

    let baseline = Baseline::take();
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

    let leftovers = leftovers(&baseline)?;
    eprintln!("xtask: tests took {:.0} s", started.elapsed().as_secs_f64());
    result?;
    if !leftovers.is_empty() {
        bail!("the test suite left things behind:\n  {}", leftovers.join("\n  "));
    }
    eprintln!("xtask: no network namespace, eBPF program, XDP/TCX link, TC filter or clsact qdisc left behind");
    Ok(())
}

/// What existed before the suite, so only what it created counts as left
/// behind: clsact qdiscs in the root namespace (the labs' own namespaces
/// are gone by the end, or are leftovers themselves).
pub struct Baseline {
    clsact: BTreeSet<String>,
}

impl Baseline {
    pub fn take() -> Baseline {
        Baseline { clsact: clsact_devices(None) }
    }
}

/// Lab namespaces, netobs programs, links, attachments and clsact qdiscs
/// that outlived the suite. A netobs XDP or TCX attachment is a bpf_link
/// (it dies with its process); a clsact filter or qdisc from the legacy TC
/// path is not, so those are looked for in every namespace still there.
pub fn leftovers(baseline: &Baseline) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let ns = Command::new("ip").args(["netns", "list"]).output().context("running ip netns list")?;
    let mut lab_ns = Vec::new();
    for line in String::from_utf8_lossy(&ns.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.starts_with(netobs_lab::NS_PREFIX) {
            out.push(format!("network namespace {name}"));
            lab_ns.push(name.to_string());
        }
    }
    if !util::is_root() {
        return Ok(out);
    }
    let names = program_names()?;
    for name in names.values().filter(|n| n.starts_with("netobs_")) {
        out.push(format!("eBPF program {name} still loaded"));
    }
    let is_netobs = |id: u64| names.get(&id).is_some_and(|n| n.starts_with("netobs_"));
    // Links across every namespace: XDP (6) and TCX (11; this bpftool
    // predates TCX and prints the number).
    let links = bpftool_json(None, &["link", "show"])?;
    for l in links.as_array().into_iter().flatten() {
        let prog = l["prog_id"].as_u64().unwrap_or(0);
        let kind = match &l["type"] {
            Value::String(t) => t.clone(),
            Value::Number(n) if n.as_u64() == Some(11) => "tcx".to_string(),
            other => other.to_string(),
        };
        if matches!(kind.as_str(), "xdp" | "tcx") && is_netobs(prog) {
            let name = names.get(&prog).map_or("?", String::as_str);
            out.push(format!("{kind} link {} of program {name} still attached", l["id"]));
        }
    }
    // Netlink attachments (XDP without a link, clsact filters), per namespace.
    for ns in std::iter::once(None).chain(lab_ns.iter().map(|n| Some(n.as_str()))) {
        let where_ = ns.unwrap_or("the root namespace");
        let net = bpftool_json(ns, &["net", "show"])?;
        for entry in net.as_array().into_iter().flatten() {
            for x in entry["xdp"].as_array().into_iter().flatten() {
                if x["id"].as_u64().is_some_and(is_netobs) {
                    out.push(format!("XDP program {} on {} in {where_}", x["id"], x["devname"]));
                }
            }
            for t in entry["tc"].as_array().into_iter().flatten() {
                if t["name"].as_str().is_some_and(|n| n.starts_with("netobs_")) {
                    out.push(format!("TC filter {} ({}) on {} in {where_}", t["name"], t["kind"], t["devname"]));
                }
            }
        }
        let created = clsact_devices(ns);
        for dev in created.iter().filter(|d| ns.is_some() || !baseline.clsact.contains(*d)) {
            out.push(format!("clsact qdisc on {dev} in {where_}"));
        }
    }
    Ok(out)
}

/// `bpftool -j ARGS`, in network namespace `ns` when given.
fn bpftool_json(ns: Option<&str>, args: &[&str]) -> Result<Value> {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "bpftool"]);
            c
        }
        None => Command::new("bpftool"),
    };
    let out = cmd.arg("-j").args(args).output().with_context(|| format!("running bpftool {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("bpftool {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("parsing bpftool {} JSON", args.join(" ")))
}

/// id -> name of every loaded program.
fn program_names() -> Result<HashMap<u64, String>> {
    let progs = bpftool_json(None, &["prog", "show"])?;
    Ok(progs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_u64()?, p["name"].as_str().unwrap_or("").to_string())))
        .collect())
}

/// Devices with a clsact qdisc (`tc -j qdisc show`), in `ns` when given.
fn clsact_devices(ns: Option<&str>) -> BTreeSet<String> {
    let mut cmd = Command::new("tc");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    let Ok(out) = cmd.args(["-j", "qdisc", "show"]).output() else { return BTreeSet::new() };
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|q| q["kind"] == "clsact")
        .filter_map(|q| q["dev"].as_str().map(str::to_string))
        .collect()
}
