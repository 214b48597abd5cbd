//! End-to-end tests of the tracer's names and statistics (issue 13 items
//! 1, 2 and 6): the real binary in network-namespace labs, with a real
//! DNS server (Debian's dnsmasq) inside the lab. Root only (under CI=true
//! a missing root fails).
//!
//! Paths follow `netobs_lab::scenarios::linear`: hop n answers from
//! `198.18.n.254`. netobs runs through `ip netns exec`, which bind-mounts
//! `/etc/netns/NS/resolv.conf` over `/etc/resolv.conf`: each test that
//! needs a resolver writes that file for its client namespace (and
//! removes the directory again), so netobs reads the lab's resolver the
//! way it reads any system's.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use netobs_e2e::{root_or_skip, run_netobs};
use netobs_lab::{Chain, Node, scenarios, scenarios::ScenarioLab};
use serde_json::Value;

/// `/etc/netns/NS/resolv.conf` for one namespace, removed on drop.
struct NetnsResolvConf {
    dir: PathBuf,
}

impl NetnsResolvConf {
    fn new(node: &Node, nameserver: Ipv4Addr) -> Result<NetnsResolvConf> {
        let dir = PathBuf::from("/etc/netns").join(node.ns_name());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // One attempt, short timeout: the bound under test is netobs's own,
        // not the resolver's settings.
        std::fs::write(dir.join("resolv.conf"), format!("nameserver {nameserver}\noptions timeout:5 attempts:2\n"))
            .context("writing resolv.conf")?;
        Ok(NetnsResolvConf { dir })
    }
}

impl Drop for NetnsResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs netobs; 0 and 1 are answers, anything else fails with stderr.
fn netobs(node: &Node, args: &[&str]) -> Result<(String, Duration)> {
    let start = Instant::now();
    let out = run_netobs(node, args)?;
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !matches!(out.status.code(), Some(0 | 1)) {
        bail!("netobs {args:?} failed ({}): {}\n{stdout}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    eprintln!("netobs {args:?} took {took:?}");
    Ok((stdout, took))
}

fn json(node: &Node, args: &[&str]) -> Result<(Value, Duration)> {
    let mut argv = args.to_vec();
    argv.push("--json");
    let (out, took) = netobs(node, &argv)?;
    Ok((serde_json::from_str(&out).with_context(|| format!("parsing JSON: {out}"))?, took))
}

/// Starts dnsmasq on `node`, authoritative for `records` (name, address:
/// an A record and the matching PTR), listening on `listen` only, and
/// waits until it answers on port 53.
fn start_dnsmasq(node: &Node, listen: Ipv4Addr, records: &[(String, Ipv4Addr)]) -> Result<()> {
    let pid = format!("/tmp/netobs-test-dnsmasq-{}.pid", node.ns_name());
    let mut argv: Vec<String> = [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--log-facility=-",
        "--user=root",
        "--port=53",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.push(format!("--pid-file={pid}"));
    argv.push(format!("--listen-address={listen}"));
    for (name, addr) in records {
        argv.push(format!("--host-record={name},{addr}"));
    }
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let _child = node.spawn(&refs).context("starting dnsmasq (Debian package dnsmasq-base, `cargo xtask setup`)")?;
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let ss = node.run_ok(&["ss", "-Hlun", "sport = :53"])?;
        if ss.contains(&listen.to_string()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("dnsmasq did not start listening on {listen}:53 within 20 s")
}

/// The first hop of a trace JSON with this TTL.
fn hop(v: &Value, ttl: u64) -> &Value {
    v["hops"].as_array().and_then(|h| h.iter().find(|h| h["ttl"] == ttl)).unwrap_or(&Value::Null)
}

fn lab() -> Result<ScenarioLab> {
    scenarios::linear("trace-names", &["client", "r1", "r2", "server"], &[])
}

/// Names from a real DNS server: dnsmasq on the server namespace serves A
/// and PTR records for every hop; the target is given by name; text shows
/// `name (address)`, JSON a `name` per answer, `-n` none.
#[test]
fn trace_names_from_dnsmasq() -> Result<()> {
    if !root_or_skip("trace_names_from_dnsmasq") {
        return Ok(());
    }
    let s = lab()?;
    let records = vec![
        ("r1.lab.test".to_string(), s.hop_v4(1)?),
        ("r2.lab.test".to_string(), s.hop_v4(2)?),
        ("server.lab.test".to_string(), s.server_v4),
    ];
    start_dnsmasq(&s.server, s.server_v4, &records)?;
    let _conf = NetnsResolvConf::new(&s.client, s.server_v4)?;

    // The target by name, resolved by the same resolver.
    let (v, _) = json(&s.client, &["trace", "server.lab.test"])?;
    assert_eq!(v["target"], s.server_v4.to_string(), "{v:#}");
    assert_eq!(v["reached_at"], 3, "{v:#}");
    for (ttl, (name, addr)) in records.iter().enumerate() {
        let p = &hop(&v, ttl as u64 + 1)["probes"][0];
        assert_eq!(p["from"], addr.to_string(), "{v:#}");
        assert_eq!(p["name"], name.as_str(), "hop {}: {v:#}", ttl + 1);
    }

    let (text, _) = netobs(&s.client, &["trace", &s.server_v4.to_string()])?;
    assert!(text.contains(&format!("r1.lab.test ({})", s.hop_v4(1)?)), "{text}");
    assert!(text.contains(&format!("server.lab.test ({})", s.server_v4)), "{text}");

    // -n: addresses only, no lookup at all (dnsmasq logs every query).
    let (v, _) = json(&s.client, &["trace", "-n", &s.server_v4.to_string()])?;
    for ttl in 1..=3 {
        assert!(hop(&v, ttl)["probes"][0]["name"].is_null(), "{v:#}");
    }
    let (text, _) = netobs(&s.client, &["trace", "-n", &s.server_v4.to_string()])?;
    assert!(!text.contains("lab.test"), "{text}");
    assert!(text.contains(&format!("  {}  ", s.hop_v4(1)?)), "{text}");

    // The same names in the report, and for `tcp` by name with --port.
    let (r, _) = json(&s.client, &["trace", "--report", "-c", "2", "--interval", "100ms", &s.server_v4.to_string()])?;
    assert_eq!(hop(&r, 2)["name"], "r2.lab.test", "{r:#}");
    assert_eq!(r["target_name"], "server.lab.test", "{r:#}");
    let (t, _) = json(&s.client, &["tcp", "server.lab.test", "--port", "80", "-4"])?;
    assert_eq!(t["target"], s.server_v4.to_string(), "{t:#}");
    assert_eq!(t["state"], "closed", "{t:#}");
    Ok(())
}

/// A resolver that never answers (the server drops UDP/53): the trace
/// takes at most the bounded wait (1 s) longer than with `-n`, and the
/// hops show addresses only.
#[test]
fn silent_resolver_costs_at_most_the_bounded_wait() -> Result<()> {
    if !root_or_skip("silent_resolver_costs_at_most_the_bounded_wait") {
        return Ok(());
    }
    let s = lab()?;
    s.server.fw_drop(Chain::Input, "udp dport 53")?;
    let _conf = NetnsResolvConf::new(&s.client, s.server_v4)?;
    let target = s.server_v4.to_string();
    // Best of three each: a loaded machine adds noise to both sides.
    let mut numeric = Duration::MAX;
    let mut named = Duration::MAX;
    let mut last = Value::Null;
    for _ in 0..3 {
        let (_, t) = json(&s.client, &["trace", "-n", &target])?;
        numeric = numeric.min(t);
        let (v, t) = json(&s.client, &["trace", "--dns-wait", "1s", &target])?;
        named = named.min(t);
        last = v;
    }
    assert_eq!(last["reached_at"], 3, "{last:#}");
    for ttl in 1..=3 {
        assert!(hop(&last, ttl)["probes"][0]["name"].is_null(), "{last:#}");
    }
    let asked = s.server.fw_packets(Chain::Input, "udp dport 53")?;
    assert!(asked >= 3, "the resolver was never asked (drop counter {asked})");
    let extra = named.saturating_sub(numeric);
    eprintln!("trace -n {numeric:?}, with a silent resolver {named:?}: {extra:?} more");
    // 1 s bound + process start/teardown noise on a loaded machine.
    assert!(extra < Duration::from_millis(1600), "a silent resolver cost {extra:?} (numeric {numeric:?})");
    // And it did wait for the names (the bound is a bound, not a skip).
    assert!(extra >= Duration::from_millis(700), "names were not waited for: {extra:?}");
    Ok(())
}

/// `--report` on a path whose hop 2 limits the ICMP errors it sends (one
/// a second, as a router's control-plane policer does): hop 2 shows loss
/// that later hops do not, and is labelled rate limited, not loss; the
/// destination shows 0 % loss.
#[test]
fn report_labels_rate_limiting_not_loss() -> Result<()> {
    if !root_or_skip("report_labels_rate_limiting_not_loss") {
        return Ok(());
    }
    let s = scenarios::linear("trace-report", &["client", "r1", "r2", "r3", "server"], &[])?;
    let r2 = s.hop(2)?;
    r2.fw_ratelimit_icmp_errors(1, 1)?;
    let target = s.server_v4.to_string();
    let (v, took) = json(&s.client, &["trace", "-n", "--report", "-c", "10", "--interval", "100ms", &target])?;
    assert_eq!(v["type"], "report", "{v:#}");
    assert_eq!(v["cycles"], 10, "{v:#}");
    assert_eq!(v["reached_at"], 4, "{v:#}");
    let h2 = hop(&v, 2);
    assert_eq!(h2["addrs"][0], s.hop_v4(2)?.to_string(), "{v:#}");
    assert_eq!(h2["sent"], 10, "{v:#}");
    assert!(h2["received"].as_u64().unwrap_or(10) < 10, "hop 2 answered every probe: {v:#}");
    assert_eq!(h2["loss"], "rate_limited", "{v:#}");
    assert!(v["rate_limited_hops"].as_array().is_some_and(|a| a.contains(&2.into())), "{v:#}");
    let dst = hop(&v, 4);
    assert_eq!(dst["addrs"][0], target, "{v:#}");
    assert_eq!((&dst["sent"], &dst["received"]), (&10.into(), &10.into()), "{v:#}");
    assert_eq!(dst["loss_pct"], 0.0, "{v:#}");
    assert_eq!(dst["loss"], "none", "{v:#}");
    // No row claims packet loss: nothing was lost.
    for ttl in 1..=4 {
        assert_ne!(hop(&v, ttl)["loss"], "loss", "hop {ttl}: {v:#}");
    }
    assert!(r2.fw_packets(Chain::Output, "time-exceeded")? >= 1, "the limiter never dropped");
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // The text table says so on hop 2's row.
    let (text, _) = netobs(&s.client, &["trace", "-n", "--report", "-c", "10", "--interval", "100ms", &target])?;
    let row = text.lines().find(|l| l.trim_start().starts_with("2.|--")).unwrap_or("");
    assert!(row.contains("ICMP rate limiting at this hop, not loss"), "{text}");
    let last = text.lines().find(|l| l.trim_start().starts_with("4.|--")).unwrap_or("");
    assert!(last.contains("  0.0%"), "{text}");
    Ok(())
}

/// traceroute's flags: -f first TTL, -I/-T/-U, -s source, -i interface,
/// -z send wait; `tcp` with -4 and --port. Bad ones exit 2.
#[test]
fn traceroute_flags() -> Result<()> {
    if !root_or_skip("traceroute_flags") {
        return Ok(());
    }
    let s = lab()?;
    let target = s.server_v4.to_string();
    let src = s.client_v4.to_string();
    let iface = s.client.interfaces().first().cloned().context("client without interface")?;
    let (v, _) = json(&s.client, &["trace", "-n", "-f", "2", "-T", "-p", "80", "-s", &src, "-i", &iface, &target])?;
    assert_eq!(v["proto"], "tcp", "{v:#}");
    assert_eq!(v["source"], src, "{v:#}");
    assert_eq!(v["hops"][0]["ttl"], 2, "{v:#}");
    assert_eq!(v["reached_at"], 3, "{v:#}");
    let (v, _) = json(&s.client, &["trace", "-n", "-I", &target])?;
    assert_eq!(v["proto"], "icmp", "{v:#}");
    // -z 100: 100 ms between probes, so 3 probes take at least 200 ms.
    let (v, took) = json(&s.client, &["trace", "-n", "-U", "-z", "100", &target])?;
    assert_eq!(v["proto"], "udp", "{v:#}");
    assert!(v["probes_sent"].as_u64().unwrap_or(0) >= 3, "{v:#}");
    assert!(took >= Duration::from_millis(200), "-z 100 took only {took:?}");
    let (t, _) = json(&s.client, &["tcp", "-4", &target, "--port", "80"])?;
    assert_eq!(t["state"], "closed", "{t:#}");
    for bad in [
        vec!["trace", "-n", "-s", "198.18.99.99", &target],
        vec!["trace", "-n", "-i", "nosuchif0", &target],
        vec!["trace", "-I", "-T", &target],
        vec!["trace", "-f", "9", "-m", "3", &target],
        vec!["tcp", &target],
        vec!["tcp", "-6", &target, "--port", "80"],
    ] {
        let out = run_netobs(&s.client, &bad)?;
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{bad:?}: {err}");
    }
    Ok(())
}
