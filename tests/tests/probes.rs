//! End-to-end tests of `netobs trace | pmtu | tcp | explain`: the real
//! binary inside network-namespace labs, asserting verdict, hop and numbers
//! from `--json`. Root only (under CI=true a missing root fails).
//!
//! Paths follow `netobs_lab::scenarios::linear`: hop n is `nodes[n]`, and
//! it answers from `198.18.n.254` / `2001:db8:n::fe` (its client-side end).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use netobs_e2e::{root_or_skip, run_netobs};
use netobs_lab::{Chain, Node, Reject, scenarios};
use serde_json::Value;

/// Runs netobs with `--json` and parses its output; fails with stderr.
fn json(node: &Node, args: &[&str]) -> Result<(Value, Duration)> {
    let mut argv = args.to_vec();
    argv.push("--json");
    let start = Instant::now();
    let out = run_netobs(node, &argv)?;
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 0 and 1 are answers (yes / no, see netobs::exit); 2 and 3 are errors.
    if !matches!(out.status.code(), Some(0 | 1)) {
        bail!("netobs {args:?} failed ({}): {stderr}\n{stdout}", out.status);
    }
    let v: Value = serde_json::from_str(&stdout).with_context(|| format!("parsing JSON: {stdout}\n{stderr}"))?;
    eprintln!("netobs {args:?} took {took:?}: {}", v["verdict"]["headline"].as_str().unwrap_or(""));
    Ok((v, took))
}

fn verdict(v: &Value) -> &Value {
    &v["verdict"]
}

/// Prints the verdict block on failure.
fn show(v: &Value) -> String {
    serde_json::to_string_pretty(&v["verdict"]).unwrap_or_default()
}

/// Field notes scenario 1 seen from the client: the second router rejects
/// the client's SYN to port 65000 with ICMP 3/10.
#[test]
fn explain_rejected_at_hop_2_code_10() -> Result<()> {
    if !root_or_skip("explain_rejected_at_hop_2_code_10") {
        return Ok(());
    }
    let s = scenarios::linear("probe-reject", &["client", "r1", "rc", "server"], &[])?;
    let rc = s.node("rc")?;
    rc.fw_reject(Chain::Forward, &format!("ip daddr {} tcp dport 65000", s.server_v4), Reject::HOST_PROHIBITED)?;
    let target = s.server_v4.to_string();
    let (v, took) = json(&s.client, &["explain", &target, "--port", "65000"])?;
    let vd = verdict(&v);
    assert_eq!(vd["kind"], "rejected", "{}", show(&v));
    assert_eq!(vd["hop"], 2, "{}", show(&v));
    assert_eq!(vd["addr"], s.hop_v4(2)?.to_string(), "{}", show(&v));
    assert_eq!(vd["icmp_type"], 3);
    assert_eq!(vd["icmp_code"], 10);
    // The TCP check names the hop from the quoted TTL too (sent 64, quoted 62).
    let tcp = &v["evidence"]["tcp"];
    assert_eq!(tcp["state"], "icmp");
    assert_eq!(tcp["icmp"]["quoted_ttl"], 62);
    assert_eq!(tcp["icmp"]["hop_by_quote"], 2);
    assert!(rc.fw_packets(Chain::Forward, "tcp dport 65000")? >= 1);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    Ok(())
}

/// A firewall at hop 3 drops TCP/443 on arrival (before the TTL check, like
/// an ingress ACL): nothing answers past hop 2, ICMP echo goes through.
#[test]
fn explain_silent_drop_after_hop_2() -> Result<()> {
    if !root_or_skip("explain_silent_drop_after_hop_2") {
        return Ok(());
    }
    let s = scenarios::linear("probe-drop", &["client", "r1", "r2", "r3", "server"], &[])?;
    let r3 = s.node("r3")?;
    r3.nft(
        "add chain inet netobs pre { type filter hook prerouting priority -300; policy accept; }\n\
         add rule inet netobs pre tcp dport 443 counter drop",
    )?;
    let target = s.server_v4.to_string();
    let (v, took) = json(&s.client, &["explain", &target, "--port", "443"])?;
    let vd = verdict(&v);
    assert_eq!(vd["kind"], "silently_dropped", "{}", show(&v));
    assert_eq!(vd["hop"], 2, "{}", show(&v));
    assert_eq!(vd["addr"], s.hop_v4(2)?.to_string());
    assert_eq!(vd["dest_hop"], 4, "ICMP echo must reach the server: {}", show(&v));
    assert_eq!(v["evidence"]["tcp"]["state"], "silent");
    let pre = r3.run_ok(&["nft", "list", "chain", "inet", "netobs", "pre"])?;
    assert!(!pre.contains("counter packets 0 "), "the drop rule never fired: {pre}");
    assert!(took < Duration::from_secs(12), "took {took:?}");
    Ok(())
}

/// PMTU blackhole: link r2 -> r3 (into hop 3) has MTU 1400 and r2 drops the
/// frag-needed it generates.
#[test]
fn explain_pmtu_blackhole_v4() -> Result<()> {
    if !root_or_skip("explain_pmtu_blackhole_v4") {
        return Ok(());
    }
    let s = scenarios::build("pmtu-blackhole")?;
    let target = s.server_v4.to_string();
    let (v, took) = json(&s.client, &["explain", &target])?;
    let vd = verdict(&v);
    assert_eq!(vd["kind"], "pmtu_blackhole", "{}", show(&v));
    assert_eq!(vd["mtu"], 1400, "{}", show(&v));
    assert_eq!(vd["hop"], 3, "{}", show(&v));
    let bh = &v["evidence"]["pmtu"]["blackhole"];
    assert_eq!(bh["largest_ok"], 1400);
    assert_eq!(bh["smallest_lost"], 1401);
    assert_eq!(bh["too_big_seen"], 0);
    assert_eq!(bh["last_big_hop"], 2);
    assert!(vd["recommendation"].as_str().unwrap_or("").contains("1360"), "{}", show(&v));
    assert!(s.node("r2")?.fw_packets(Chain::Output, "frag-needed")? >= 1);
    assert!(took < Duration::from_secs(12), "took {took:?}");
    Ok(())
}

/// Same path, frag-needed allowed: `netobs pmtu` finds 1400, announced by
/// the router in front of the 1400 link (r2, hop 2).
#[test]
fn pmtu_announced_by_router_in_front_of_narrow_link() -> Result<()> {
    if !root_or_skip("pmtu_announced_by_router_in_front_of_narrow_link") {
        return Ok(());
    }
    let s = scenarios::build("pmtu-ok")?;
    let target = s.server_v4.to_string();
    let (v, took) = json(&s.client, &["pmtu", &target])?;
    assert_eq!(v["pmtu"], 1400, "{v:#}");
    assert!(v["blackhole"].is_null(), "{v:#}");
    let a = &v["announcements"][0];
    assert_eq!(a["mtu"], 1400, "{v:#}");
    assert_eq!(a["from"], s.hop_v4(2)?.to_string());
    assert_eq!(a["hop"], 2);
    assert_eq!(v["dest_hops"], 4);
    assert!(v["probes_sent"].as_u64().unwrap_or(99) <= 12, "{v:#}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The explain verdict on the same path: reachable, MTU 1400.
    let (e, _) = json(&s.client, &["explain", &target])?;
    assert_eq!(verdict(&e)["kind"], "reachable", "{}", show(&e));
    assert_eq!(verdict(&e)["mtu"], 1400);
    Ok(())
}

/// r2 drops all forwarded UDP; ICMP passes.
#[test]
fn explain_udp_filtered_at_hop_2() -> Result<()> {
    if !root_or_skip("explain_udp_filtered_at_hop_2") {
        return Ok(());
    }
    let s = scenarios::build("udp-filtered")?;
    let target = s.server_v4.to_string();
    let (v, took) = json(&s.client, &["explain", &target, "--proto", "udp"])?;
    let vd = verdict(&v);
    assert_eq!(vd["kind"], "udp_filtered", "{}", show(&v));
    assert_eq!(vd["hop"], 2, "{}", show(&v));
    assert_eq!(vd["dest_hop"], 4);
    assert_eq!(v["evidence"]["icmp"]["reached_at"], 4);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    Ok(())
}

/// r2 rate-limits the ICMP errors it sends (2/s, burst 2).
#[test]
fn explain_icmp_rate_limited_at_hop_2() -> Result<()> {
    if !root_or_skip("explain_icmp_rate_limited_at_hop_2") {
        return Ok(());
    }
    let s = scenarios::build("icmp-ratelimit")?;
    let target = s.server_v4.to_string();
    let (v, took) = json(&s.client, &["explain", &target])?;
    let vd = verdict(&v);
    assert_eq!(vd["kind"], "icmp_rate_limited", "{}", show(&v));
    assert_eq!(vd["hop"], 2, "{}", show(&v));
    assert_eq!(vd["of"], 8);
    let k = vd["answered"].as_u64().unwrap_or(99);
    assert!((1..=4).contains(&k), "burst answers {k}: {}", show(&v));
    assert_eq!(vd["dest_hop"], 4);
    assert!(took < Duration::from_secs(12), "took {took:?}");
    Ok(())
}

/// IPv6: r2 drops the Packet Too Big it generates.
#[test]
fn explain_pmtu_blackhole_v6() -> Result<()> {
    if !root_or_skip("explain_pmtu_blackhole_v6") {
        return Ok(());
    }
    let s = scenarios::build("pmtu-blackhole")?;
    let target = s.server_v6.to_string();
    let (v, took) = json(&s.client, &["explain", &target])?;
    let vd = verdict(&v);
    assert_eq!(vd["kind"], "pmtu_blackhole", "{}", show(&v));
    assert_eq!(vd["mtu"], 1400, "{}", show(&v));
    assert_eq!(vd["hop"], 3, "{}", show(&v));
    assert!(vd["recommendation"].as_str().unwrap_or("").contains("1340"), "{}", show(&v));
    assert!(took < Duration::from_secs(12), "took {took:?}");
    Ok(())
}

/// Trace over every protocol and family on a clean 4-hop path: hops in
/// order, destination reached, one flow.
#[test]
fn trace_all_protocols_both_families() -> Result<()> {
    if !root_or_skip("trace_all_protocols_both_families") {
        return Ok(());
    }
    let s = scenarios::linear("probe-trace", &["client", "r1", "r2", "r3", "server"], &[])?;
    for fam in [4, 6] {
        let target = if fam == 4 { s.server_v4.to_string() } else { s.server_v6.to_string() };
        for proto in ["udp", "tcp", "icmp"] {
            let (v, took) = json(&s.client, &["trace", "-n", &target, "--proto", proto])?;
            assert_eq!(v["reached_at"], 4, "{proto} v{fam}: {v:#}");
            for n in 1..=3usize {
                let want = if fam == 4 { s.hop_v4(n)?.to_string() } else { s.hop_v6(n)?.to_string() };
                assert_eq!(v["hops"][n - 1]["addrs"][0], want, "{proto} v{fam} hop {n}");
                // An answering hop costs one probe (-q is the most per hop).
                assert_eq!(v["hops"][n - 1]["answered"], 1, "{proto} v{fam} hop {n}");
                assert_eq!(v["hops"][n - 1]["sent"], 1, "{proto} v{fam} hop {n}");
            }
            assert_eq!(v["hops"][3]["addrs"][0], target);
            assert!(v["probes_sent"].as_u64().unwrap_or(99) <= 8, "{proto} v{fam}: {v:#}");
            assert!(took < Duration::from_secs(3), "{proto} v{fam} took {took:?}");
        }
        // --burst: every query of a hop at once, as classic traceroute.
        let (v, _) = json(&s.client, &["trace", "-n", &target, "--burst"])?;
        assert_eq!(v["reached_at"], 4, "burst v{fam}: {v:#}");
        for n in 1..=3usize {
            assert_eq!(v["hops"][n - 1]["answered"], 3, "burst v{fam} hop {n}");
        }
    }
    // TCP handshake check: closed port -> RST; open port -> SYN-ACK + MSS.
    let (v, _) = json(&s.client, &["tcp", &format!("{}:80", s.server_v4)])?;
    assert_eq!(v["state"], "closed", "{v:#}");
    let _listener = s.server.spawn(&["sh", "-c", "exec nc -lk -p 8080 >/dev/null 2>&1 || exec sleep 30"])?;
    std::thread::sleep(Duration::from_millis(300));
    let (v, _) = json(&s.client, &["tcp", &format!("{}:8080", s.server_v4)])?;
    if v["state"] == "open" {
        assert_eq!(v["mss"], 1460, "{v:#}");
    }
    // A silent hop gets every query (`*` = no answer to all of them); the
    // hops around it still cost one probe each.
    s.hop(2)?.nft("add rule inet netobs output meta l4proto { icmp, ipv6-icmp } drop")?;
    for target in [s.server_v4.to_string(), s.server_v6.to_string()] {
        let (v, _) = json(&s.client, &["trace", "-n", &target])?;
        assert_eq!(v["reached_at"], 4, "{v:#}");
        assert_eq!((&v["hops"][1]["sent"], &v["hops"][1]["answered"]), (&3.into(), &0.into()), "{v:#}");
        for n in [0, 2, 3] {
            assert_eq!(v["hops"][n]["sent"], 1, "hop {}: {v:#}", n + 1);
        }
    }
    Ok(())
}

/// Bad input is a clear error with exit code 2, never a panic.
#[test]
fn bad_input_exits_2() -> Result<()> {
    if !root_or_skip("bad_input_exits_2") {
        return Ok(());
    }
    let lab = netobs_lab::Lab::new();
    let h = lab.host("h")?;
    for args in [
        vec!["trace", "not..an..ip!"],
        vec!["pmtu", "no-such-host.invalid"],
        vec!["tcp", "198.18.1.1"],
        vec!["tcp", "198.18.1.1:99999"],
        vec!["explain", "198.18.1.1", "--port", "0"],
        vec!["trace", "198.18.1.1", "--proto", "sctp"],
    ] {
        let out = run_netobs(&h, &args)?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.trim().is_empty());
    }
    Ok(())
}
