//! End-to-end tests of what `netobs trace` tells about the path itself:
//! ECMP branches (`--flows`), middleboxes seen in the ICMP quote (stateless
//! NAT, and no false NAT behind conntrack masquerade; DSCP rewrite; MSS
//! clamp) and the per-hop MTU (`--mtu`). The real binary in labs, asserting
//! on `--json`. Root only (under CI=true a missing root fails).
//!
//! Linear paths follow `netobs_lab::scenarios::linear`: hop n is `nodes[n]`
//! and answers from `198.18.n.254` (its client-side end).

use std::net::Ipv4Addr;

use anyhow::{Context as _, Result, bail};
use netobs_e2e::{root_or_skip, run_netobs};
use netobs_lab::{Node, scenarios, tracer};
use serde_json::Value;

/// Runs `netobs ARGS --json` and parses the document; exit 0/1 are answers.
fn json(node: &Node, args: &[&str]) -> Result<Value> {
    let mut argv = numeric(args);
    argv.push("--json");
    let out = run_netobs(node, &argv)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !matches!(out.status.code(), Some(0 | 1)) {
        bail!("netobs {args:?} failed ({}): {stderr}\n{stdout}", out.status);
    }
    serde_json::from_str(&stdout).with_context(|| format!("parsing JSON: {stdout}\n{stderr}"))
}

/// `trace -n`: no reverse DNS in these labs (the host's resolver is
/// outside them; names are tests/tests/tracer.rs's subject).
fn numeric<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut argv = args.to_vec();
    if argv.first() == Some(&"trace") {
        argv.insert(1, "-n");
    }
    argv
}

/// Runs `netobs ARGS` and returns its text output.
fn text(node: &Node, args: &[&str]) -> Result<String> {
    let out = run_netobs(node, &numeric(args))?;
    if !matches!(out.status.code(), Some(0 | 1)) {
        bail!("netobs {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The responders of TTL `ttl` in a multipath document.
fn branches(v: &Value, ttl: u64) -> Vec<String> {
    v["hops"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h["ttl"] == ttl))
        .and_then(|h| h["branches"].as_array())
        .map(|bs| bs.iter().filter_map(|b| b["addr"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// `--flows 8` on the diamond: hop 2 has both branches, every flow is on
/// exactly one of them, and every flow reaches the server. Eight random
/// flows all hash onto one branch with probability 2/2^8 = 0.8 %: that is
/// inherent to hashing (Dublin traceroute and tracelb have it too), so a
/// run that sees one branch is repeated, at most twice, with new flows,
/// after a second's pause. So is a run in which a flow lost its answers
/// (seen once in CI, on the attempt right after a one-branch run: 7 of 8
/// flows reached the server); the accepted run must have all eight.
fn flows_find_both_branches(d: &tracer::Diamond, target: &str, branch: [String; 2]) -> Result<()> {
    let mut last = Value::Null;
    for attempt in 1..=3 {
        if attempt > 1 {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        let v = json(&d.client, &["trace", target, "--flows", "8"])?;
        assert_eq!(v["type"], "multipath", "{}", pretty(&v));
        assert_eq!(v["flows"].as_array().map(Vec::len), Some(8), "{}", pretty(&v));
        let hop2 = branches(&v, 2);
        assert!(hop2.iter().all(|a| branch.contains(a)), "hop 2 answered from elsewhere: {hop2:?}");
        eprintln!("--flows 8 to {target}: {} probes in {} s", v["probes_sent"], v["seconds"]);
        if v["reached_by"] != 8 {
            eprintln!("attempt {attempt}: {} of 8 flows reached {target}", v["reached_by"]);
            last = v;
            continue;
        }
        // Every flow took exactly one branch at hop 2.
        let took: usize = v["hops"][1]["branches"]
            .as_array()
            .map(|bs| bs.iter().filter_map(|b| b["flows"].as_array()).map(Vec::len).sum())
            .unwrap_or(0);
        assert_eq!(took, 8, "{}", pretty(&v));
        // One path before and after the diamond.
        assert_eq!(branches(&v, 1).len(), 1, "{}", pretty(&v));
        assert_eq!(branches(&v, 4), vec![target.to_string()], "{}", pretty(&v));
        if hop2.len() == 2 {
            assert_eq!(v["diverges_at"], 2, "{}", pretty(&v));
            assert_eq!(v["max_branches"], 2);
            return Ok(());
        }
        eprintln!("attempt {attempt}: all 8 flows hashed onto {hop2:?}");
        last = v;
    }
    bail!("--flows 8 never found both branches with every flow answered in 3 runs: {}", pretty(&last))
}

#[test]
fn flows_find_both_ecmp_branches_v4() -> Result<()> {
    if !root_or_skip("flows_find_both_ecmp_branches_v4") {
        return Ok(());
    }
    let d = tracer::ecmp_diamond()?;
    let branch = d.branch_v4.map(|a| a.to_string());
    flows_find_both_branches(&d, &d.server_v4.to_string(), branch.clone())?;
    // TCP probes spread too (each flow its own source port).
    let v = json(&d.client, &["trace", &d.server_v4.to_string(), "--flows", "8", "--proto", "tcp", "-p", "443"])?;
    assert!(!branches(&v, 2).is_empty(), "{}", pretty(&v));
    // A single Paris trace stays on one branch.
    let one = json(&d.client, &["trace", &d.server_v4.to_string(), "-q", "3", "--burst"])?;
    let addrs = one["hops"][1]["addrs"].as_array().map(Vec::len);
    assert_eq!(addrs, Some(1), "one flow must take one path: {}", pretty(&one));
    Ok(())
}

/// IPv6 with the L3 hash (addresses, flow label, next header): only the
/// flow label differs between the flows, and it alone spreads them.
#[test]
fn flows_find_both_ecmp_branches_v6_by_flow_label() -> Result<()> {
    if !root_or_skip("flows_find_both_ecmp_branches_v6_by_flow_label") {
        return Ok(());
    }
    let d = tracer::ecmp_diamond()?;
    d.v6_hash_policy(0)?;
    let branch = d.branch_v6.map(|a| a.to_string());
    flows_find_both_branches(&d, &d.server_v6.to_string(), branch)?;
    let v = json(&d.client, &["trace", &d.server_v6.to_string(), "--flows", "4"])?;
    let labels: std::collections::HashSet<u64> =
        v["flows"].as_array().into_iter().flatten().filter_map(|f| f["flow_label"].as_u64()).collect();
    assert_eq!(labels.len(), 4, "each flow its own label: {}", pretty(&v));
    Ok(())
}

fn middleboxes(v: &Value) -> Vec<Value> {
    v["middleboxes"].as_array().cloned().unwrap_or_default()
}

/// A stateless source rewrite on hop 2 (on the way out, postrouting): hop
/// 2's own time exceeded quotes the probe as sent, every later quote shows
/// the public address. NAT between hop 2 and 3.
#[test]
fn stateless_nat_reported_at_the_right_hop() -> Result<()> {
    if !root_or_skip("stateless_nat_reported_at_the_right_hop") {
        return Ok(());
    }
    let s = scenarios::linear("trace-snat", &["client", "r1", "r2", "r3", "server"], &[])?;
    let public = Ipv4Addr::new(198, 18, 200, 1);
    tracer::stateless_snat(&s, 2, public)?;
    let target = s.server_v4.to_string();
    let v = json(&s.client, &["trace", &target])?;
    assert_eq!(v["reached_at"], 4, "{}", pretty(&v));
    let m = middleboxes(&v);
    let nat: Vec<&Value> = m.iter().filter(|c| c["kind"] == "nat").collect();
    assert_eq!(nat.len(), 1, "{}", pretty(&v));
    assert_eq!(nat[0]["field"], "source");
    assert_eq!(nat[0]["sent"], s.client_v4.to_string());
    assert_eq!(nat[0]["quoted"], public.to_string());
    assert_eq!(nat[0]["after_hop"], 2, "{}", pretty(&v));
    assert_eq!(nat[0]["first_hop"], 3, "{}", pretty(&v));
    assert_eq!(nat[0]["reporter"], s.hop_v4(3)?.to_string());
    assert_eq!(nat[0]["hops"], serde_json::json!([3, 4]), "{}", pretty(&v));
    // Hops 1 and 2 quote the probe unchanged.
    for h in 0..2 {
        let q = &v["hops"][h]["probes"][0]["quote"];
        assert_eq!(q["changes"], serde_json::json!([]), "hop {}: {}", h + 1, pretty(&v));
    }
    assert!(tracer::table_packets(s.hop(2)?, "ip", "nobs_snat")? > 0, "the NAT rules never fired");
    let t = text(&s.client, &["trace", &target])?;
    assert!(t.contains("NAT between hop 2 and 3"), "{t}");
    Ok(())
}

/// Conntrack masquerade on hop 2: conntrack translates the quotes back,
/// so nothing shows and `trace` must not claim a NAT.
#[test]
fn masquerade_is_not_claimed_as_nat() -> Result<()> {
    if !root_or_skip("masquerade_is_not_claimed_as_nat") {
        return Ok(());
    }
    let s = scenarios::linear("trace-masq", &["client", "r1", "r2", "r3", "server"], &[])?;
    tracer::masquerade(&s, 2)?;
    let target = s.server_v4.to_string();
    for proto in ["udp", "tcp", "icmp"] {
        let v = json(&s.client, &["trace", &target, "--proto", proto])?;
        assert_eq!(v["reached_at"], 4, "{proto}: {}", pretty(&v));
        assert_eq!(v["middleboxes"], serde_json::json!([]), "{proto}: {}", pretty(&v));
    }
    assert!(tracer::table_packets(s.hop(2)?, "ip", "nobs_masq")? > 0, "masquerade never fired");
    // The quotes were really checked (not just absent): hop 3 quotes our
    // own address again.
    let v = json(&s.client, &["trace", &target])?;
    assert!(v["hops"][2]["probes"][0]["quote"]["bytes"].as_u64().unwrap_or(0) >= 28, "{}", pretty(&v));
    Ok(())
}

/// Hop 2 sets DSCP AF21 (18) on what it forwards: the change shows from
/// hop 3 on. Both families.
#[test]
fn dscp_rewrite_reported_at_the_right_hop() -> Result<()> {
    if !root_or_skip("dscp_rewrite_reported_at_the_right_hop") {
        return Ok(());
    }
    let s = scenarios::linear("trace-dscp", &["client", "r1", "r2", "r3", "server"], &[])?;
    tracer::rewrite_dscp(s.hop(2)?, "af21")?;
    for target in [s.server_v4.to_string(), s.server_v6.to_string()] {
        let v = json(&s.client, &["trace", &target])?;
        assert_eq!(v["reached_at"], 4, "{}", pretty(&v));
        let m = middleboxes(&v);
        let d: Vec<&Value> = m.iter().filter(|c| c["field"] == "dscp").collect();
        assert_eq!(d.len(), 1, "{}", pretty(&v));
        assert_eq!((d[0]["sent"].as_u64(), d[0]["quoted"].as_u64()), (Some(0), Some(18)), "{}", pretty(&v));
        assert_eq!(d[0]["kind"], "rewritten");
        assert_eq!(d[0]["first_hop"], 3, "{}", pretty(&v));
        assert_eq!(d[0]["after_hop"], 2, "{}", pretty(&v));
        assert!(m.iter().all(|c| c["kind"] != "nat"), "{}", pretty(&v));
    }
    Ok(())
}

/// Hop 2 clears DSCP (sets CS0): invisible to unmarked probes, reported
/// as bleached for probes sent with `--tos 0xb8` (EF).
#[test]
fn dscp_bleaching_reported_for_marked_probes() -> Result<()> {
    if !root_or_skip("dscp_bleaching_reported_for_marked_probes") {
        return Ok(());
    }
    let s = scenarios::linear("trace-bleach", &["client", "r1", "r2", "r3", "server"], &[])?;
    tracer::rewrite_dscp(s.hop(2)?, "cs0")?;
    for target in [s.server_v4.to_string(), s.server_v6.to_string()] {
        let plain = json(&s.client, &["trace", &target])?;
        assert_eq!(plain["middleboxes"], serde_json::json!([]), "{}", pretty(&plain));
        let v = json(&s.client, &["trace", &target, "--tos", "0xb8"])?;
        assert_eq!(v["reached_at"], 4, "{}", pretty(&v));
        let m = middleboxes(&v);
        assert_eq!(m.len(), 1, "{}", pretty(&v));
        assert_eq!((m[0]["field"].as_str(), m[0]["kind"].as_str()), (Some("dscp"), Some("bleached")), "{}", pretty(&v));
        assert_eq!((m[0]["sent"].as_u64(), m[0]["quoted"].as_u64()), (Some(46), Some(0)), "{}", pretty(&v));
        assert_eq!((m[0]["after_hop"].as_u64(), m[0]["first_hop"].as_u64()), (Some(2), Some(3)), "{}", pretty(&v));
    }
    Ok(())
}

/// Hop 2 clamps the MSS of forwarded SYNs to 1300: TCP probes (SYNs with
/// MSS 1460) come back quoted with 1300 from hop 3 on.
#[test]
fn mss_clamp_reported_by_tcp_probes() -> Result<()> {
    if !root_or_skip("mss_clamp_reported_by_tcp_probes") {
        return Ok(());
    }
    let s = scenarios::linear("trace-mss", &["client", "r1", "r2", "r3", "server"], &[])?;
    tracer::clamp_mss(s.hop(2)?, 1300)?;
    let target = s.server_v4.to_string();
    let v = json(&s.client, &["trace", &target, "--proto", "tcp", "--port", "443"])?;
    let m = middleboxes(&v);
    let c: Vec<&Value> = m.iter().filter(|c| c["field"] == "mss").collect();
    assert_eq!(c.len(), 1, "{}", pretty(&v));
    assert_eq!(c[0]["kind"], "clamped");
    assert_eq!((c[0]["sent"].as_u64(), c[0]["quoted"].as_u64()), (Some(1460), Some(1300)), "{}", pretty(&v));
    assert_eq!(c[0]["first_hop"], 3, "{}", pretty(&v));
    assert_eq!(c[0]["after_hop"], 2, "{}", pretty(&v));
    assert!(tracer::table_packets(s.hop(2)?, "inet", "nobs_mss")? > 0, "the clamp never fired");
    // UDP probes carry no MSS: nothing to report.
    let u = json(&s.client, &["trace", &target])?;
    assert!(middleboxes(&u).is_empty(), "{}", pretty(&u));
    let t = text(&s.client, &["trace", &target, "--proto", "tcp", "--port", "443"])?;
    assert!(t.contains("MSS clamp between hop 2 and 3"), "{t}");
    Ok(())
}

/// `--mtu` on the field-notes PMTU path (link r2 -> r3 at 1400): hop 3 is
/// the first reached at 1400 only, announced by r2 (hop 2).
#[test]
fn mtu_drop_at_the_right_hop_with_the_announcer() -> Result<()> {
    if !root_or_skip("mtu_drop_at_the_right_hop_with_the_announcer") {
        return Ok(());
    }
    let s = scenarios::build("pmtu-ok")?;
    for (target, announcer) in
        [(s.server_v4.to_string(), s.hop_v4(2)?.to_string()), (s.server_v6.to_string(), s.hop_v6(2)?.to_string())]
    {
        let v = json(&s.client, &["trace", &target, "--mtu"])?;
        let m = &v["mtu"];
        assert_eq!(m["local_mtu"], 1500, "{}", pretty(&v));
        assert_eq!(m["path_mtu"], scenarios::PMTU, "{}", pretty(&v));
        let hops = m["hops"].as_array().context("mtu.hops")?;
        assert_eq!(hops[0]["f"], 1500, "{}", pretty(m));
        assert_eq!(hops[1]["size"], 1500, "{}", pretty(m));
        assert!(hops[1].get("f").is_none(), "{}", pretty(m));
        assert_eq!(hops[2]["f"], scenarios::PMTU, "{}", pretty(m));
        assert_eq!(hops[2]["announced_by"], announcer, "{}", pretty(m));
        assert_eq!(hops[2]["announcer_hop"], 2, "{}", pretty(m));
        assert_eq!(hops[3]["size"], scenarios::PMTU, "{}", pretty(m));
        assert!(hops[3].get("f").is_none(), "{}", pretty(m));
        eprintln!("--mtu to {target}: {} DF probes after the trace's {}", m["probes_sent"], v["probes_sent"]);
        let t = text(&s.client, &["trace", &target, "--mtu"])?;
        let line3 = t.lines().find(|l| l.starts_with(" 3 ")).unwrap_or("");
        assert!(line3.contains(&format!("F=1400 (announced by {announcer}, hop 2)")), "{t}");
    }
    Ok(())
}
