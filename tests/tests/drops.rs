//! What this host itself loses, end to end (issue 11 items 3 and 4): ICMP
//! errors its kernel drops (`kfree_skb` with the drop reason) and errors it
//! rate-limits (the kernel's OutRateLimit counters), plus the `icmp_send`
//! ledger's claims. The real binary in lab namespaces; every assertion is
//! on its JSON.

use std::time::{Duration, Instant};

use netobs_e2e::{
    Watch, WatchOutput,
    lab::{Chain, Node, scenarios},
    root_or_skip,
};
use serde_json::Value;

/// A python3 snippet run in a lab node (test traffic only).
fn py(node: &Node, code: &str) {
    let out = node.run(&["python3", "-c", code]).expect("python3 traffic helper");
    assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
}

/// `n` DF UDP datagrams of 1500 bytes to `dst`:9. IP_PMTUDISC_PROBE keeps
/// DF but ignores any path MTU learned meanwhile, so each one is too big.
fn send_df(node: &Node, dst: &str, n: u32) {
    py(
        node,
        &format!(
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IP,10,3)\n\
for i in range({n}): s.sendto(b'x'*1472,('{dst}',9)); time.sleep(0.1)"
        ),
    );
}

/// The first interface of a node (lab nodes have no other but lo).
fn iface_towards(node: &Node, peer_prefix: &str) -> String {
    let out = node.run_ok(&["ip", "-o", "-4", "addr", "show"]).expect("ip addr");
    out.lines()
        .find(|l| l.contains(peer_prefix))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(|s| s.trim_end_matches(':').to_string())
        .unwrap_or_else(|| panic!("no interface with {peer_prefix} in {out}"))
}

/// The last `icmp_dropped` record per (direction, peer, reason): the
/// records are re-emitted as counts grow.
fn drops(out: &WatchOutput) -> Vec<Value> {
    let mut last: Vec<Value> = Vec::new();
    for r in out.records.iter().filter(|r| r["type"] == "icmp_dropped") {
        let same = |x: &Value| x["direction"] == r["direction"] && x["peer"] == r["peer"] && x["reason"] == r["reason"];
        match last.iter_mut().find(|x| same(x)) {
            Some(x) => *x = r.clone(),
            None => last.push(r.clone()),
        }
    }
    last
}

fn generated_count(out: &WatchOutput) -> u64 {
    out.counters()
        .and_then(|c| c["icmp"].as_array())
        .map(|rows| rows.iter().filter(|r| r["direction"] == "generated").filter_map(|r| r["count"].as_u64()).sum())
        .unwrap_or(0)
}

/// Must show (b): the host's own nftables drops inbound frag-needed; watch
/// says the PTB arrived (XDP counted it) and that this host dropped it,
/// with the kernel's reason. Also checks the namespace filter: a watch in
/// an unrelated namespace, running at the same time, reports none of it,
/// and neither the frag-needed the gateway generated.
#[test]
fn ptb_dropped_by_this_hosts_own_firewall_is_reported_with_its_reason() {
    if !root_or_skip("ptb_dropped_by_this_hosts_own_firewall_is_reported_with_its_reason") {
        return;
    }
    let s = scenarios::build("gateway-df").unwrap();
    let src = &s.client;
    let gw = s.node("gw").unwrap();
    src.fw_drop_icmp(Chain::Input, "destination-unreachable", Some("frag-needed")).unwrap();
    let src_if = iface_towards(src, "198.18.1.");
    let gw_if = iface_towards(gw, "198.18.1.");
    // An unrelated pair of namespaces, quiet.
    let quiet = scenarios::linear("quiet", &["qa", "qb"], &[]).unwrap();
    let q_if = iface_towards(&quiet.client, "198.18.1.");

    let w_quiet = Watch::start(&quiet.client, &["-i", &q_if, "--no-metrics"]).unwrap();
    let w_gw = Watch::start(gw, &["-i", &gw_if, "--no-metrics"]).unwrap();
    let w = Watch::start(src, &["-i", &src_if, "--no-metrics"]).unwrap();
    let dst = s.server_v4.to_string();
    send_df(src, &dst, 3);
    w.wait_for(Duration::from_secs(20), |r| r["type"] == "icmp_dropped" && r["count"] == 3)
        .expect("an icmp_dropped record counting all 3 frag-needed");
    let out = w.stop().unwrap();
    let out_gw = w_gw.stop().unwrap();
    let out_quiet = w_quiet.stop().unwrap();
    assert!(out.status.success(), "{}", out.stderr);

    let nft = src.fw_packets(Chain::Input, "frag-needed").unwrap();
    assert_eq!(nft, 3, "the nft rule dropped 3");
    // XDP saw them arrive.
    assert_eq!(out.icmp_count(&src_if, 3, 4), 3, "{:?}", out.counters());
    let d = drops(&out);
    assert_eq!(d.len(), 1, "{d:?}");
    let d = &d[0];
    assert_eq!(d["direction"], "inbound", "{d}");
    assert_eq!(d["reason"], "NETFILTER_DROP", "{d}");
    assert_eq!(d["peer"], "198.18.1.254", "{d}");
    assert_eq!(d["iface"], src_if.as_str(), "{d}");
    assert_eq!((d["icmp_type"].as_u64(), d["icmp_code"].as_u64()), (Some(3), Some(4)), "{d}");
    assert_eq!(d["mtu"], 1400, "{d}");
    assert_eq!(d["count"], nft, "{d}");
    assert_eq!(d["quoted"]["dst"], dst.as_str(), "{d}");
    assert_eq!(d["quoted"]["dst_port"], 9, "{d}");
    assert_eq!(d["quoted"]["len"], 1500, "{d}");
    let text = d["text"].as_str().unwrap_or("");
    assert!(
        text.contains(&format!("from 198.18.1.254 arrived on {src_if} and was dropped by this host: NETFILTER_DROP")),
        "{text}"
    );

    // The gateway generated 3 frag-needed in its own namespace and
    // dropped none of them.
    assert_eq!(generated_count(&out_gw), 3, "{:?}", out_gw.counters());
    assert!(drops(&out_gw).is_empty(), "{:?}", drops(&out_gw));
    // The quiet namespace saw neither the drops nor the generated errors.
    assert!(drops(&out_quiet).is_empty(), "{:?}", drops(&out_quiet));
    assert_eq!(generated_count(&out_quiet), 0, "{:?}", out_quiet.counters());
    assert_eq!(generated_count(&out), 0, "the client generated nothing: {:?}", out.counters());
}

/// IPv6: a Packet Too Big dropped by the host's own input chain is told
/// the same way, with its MTU (4 bytes in ICMPv6) and quote.
#[test]
fn packet_too_big_dropped_here_is_reported_for_ipv6() {
    if !root_or_skip("packet_too_big_dropped_here_is_reported_for_ipv6") {
        return;
    }
    let s = scenarios::build("gateway-df").unwrap();
    let src = &s.client;
    src.fw_drop_icmpv6(Chain::Input, "packet-too-big", None).unwrap();
    let src_if = iface_towards(src, "198.18.1.");
    let w = Watch::start(src, &["-i", &src_if, "--no-metrics"]).unwrap();
    let dst = s.server_v6.to_string();
    // IPV6_MTU_DISCOVER = IPV6_PMTUDISC_PROBE: full size, never fragmented.
    py(
        src,
        &format!(
            "import socket,time\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IPV6,23,3)\n\
for i in range(3): s.sendto(b'x'*1452,('{dst}',9,0,0)); time.sleep(0.1)"
        ),
    );
    w.wait_for(Duration::from_secs(20), |r| r["type"] == "icmp_dropped" && r["count"] == 3)
        .expect("an icmp_dropped record counting all 3 Packet Too Big");
    let out = w.stop().unwrap();
    let d = drops(&out);
    assert_eq!(d.len(), 1, "{d:?}");
    let d = &d[0];
    assert_eq!((d["family"].as_u64(), d["icmp_type"].as_u64()), (Some(6), Some(2)), "{d}");
    assert_eq!(d["direction"], "inbound", "{d}");
    assert_eq!(d["reason"], "NETFILTER_DROP", "{d}");
    assert_eq!(d["peer"], "2001:db8:1::fe", "{d}");
    assert_eq!(d["mtu"], 1400, "{d}");
    assert_eq!(d["quoted"]["dst"], dst.as_str(), "{d}");
    assert_eq!(d["quoted"]["len"], 1500, "{d}");
    assert_eq!(d["count"], src.fw_packets(Chain::Input, "packet-too-big").unwrap(), "{d}");
    assert!(
        d["text"].as_str().unwrap_or("").starts_with("Packet Too Big (ICMPv6 2) (MTU 1400) from 2001:db8:1::fe"),
        "{d}"
    );
}

/// The same for an error this host generates and drops on the way out: a
/// gateway whose output chain drops the frag-needed it generates.
#[test]
fn frag_needed_a_gateway_generates_and_drops_is_reported_outbound() {
    if !root_or_skip("frag_needed_a_gateway_generates_and_drops_is_reported_outbound") {
        return;
    }
    let s = scenarios::build("gateway-df-blackhole").unwrap();
    let gw = s.node("gw").unwrap();
    let gw_if = iface_towards(gw, "198.18.1.");
    let w = Watch::start(gw, &["-i", &gw_if, "--no-metrics"]).unwrap();
    send_df(&s.client, &s.server_v4.to_string(), 3);
    w.wait_for(Duration::from_secs(20), |r| r["type"] == "icmp_dropped" && r["count"] == 3)
        .expect("an icmp_dropped record counting all 3 frag-needed");
    let out = w.stop().unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    let d = drops(&out);
    assert_eq!(d.len(), 1, "{d:?}");
    let d = &d[0];
    assert_eq!(d["direction"], "outbound", "{d}");
    assert_eq!(d["reason"], "NETFILTER_DROP", "{d}");
    assert_eq!(d["peer"], "198.18.1.1", "the frag-needed was for the client: {d}");
    assert_eq!(d["mtu"], 1400, "{d}");
    assert_eq!(d["quoted"]["src"], "198.18.1.1", "{d}");
    assert_eq!(d["count"], gw.fw_packets(Chain::Output, "frag-needed").unwrap(), "{d}");
    let text = d["text"].as_str().unwrap_or("");
    assert!(text.contains("this host generated frag-needed") && text.contains("NETFILTER_DROP"), "{text}");
    // The ledger agrees: generated, none left.
    let f = out.findings().into_iter().find(|f| f["kind"] == "df_oversized").expect("df finding");
    assert_eq!((f["icmp_back"]["generated"].as_u64(), f["icmp_back"]["sent"].as_u64()), (Some(3), Some(0)), "{f}");
}

/// With `--no-egress` nothing is seen leaving, so the ledger must not say
/// "its own firewall drops them": here the frag-needed does go back.
#[test]
fn without_egress_the_ledger_does_not_blame_this_hosts_firewall() {
    if !root_or_skip("without_egress_the_ledger_does_not_blame_this_hosts_firewall") {
        return;
    }
    let s = scenarios::build("gateway-df").unwrap();
    let gw = s.node("gw").unwrap();
    let gw_if = iface_towards(gw, "198.18.1.");
    let w = Watch::start(gw, &["-i", &gw_if, "--no-metrics", "--no-egress"]).unwrap();
    send_df(&s.client, &s.server_v4.to_string(), 3);
    w.wait_for(Duration::from_secs(20), |r| {
        r["type"] == "finding" && r["kind"] == "df_oversized" && r["icmp_back"]["generated"] == 3
    })
    .expect("df finding with 3 generated");
    let out = w.stop().unwrap();
    let f = out.findings().into_iter().find(|f| f["kind"] == "df_oversized").expect("df finding");
    assert_eq!(f["icmp_back"]["generated"], 3, "{f}");
    assert!(f["icmp_back"]["sent"].is_null(), "not observed, so unknown: {f}");
    let advice = f["advice"].as_str().unwrap_or("");
    assert!(!advice.contains("own firewall") && !advice.contains("none left"), "{advice}");
    assert!(advice.contains("not known"), "{advice}");
}

/// `/proc/net/snmp`'s Icmp line in `node`, by field name.
fn snmp(node: &Node) -> std::collections::HashMap<String, u64> {
    let text = node.run_ok(&["cat", "/proc/net/snmp"]).expect("cat /proc/net/snmp");
    let icmp: Vec<&str> = text.lines().filter(|l| l.starts_with("Icmp: ")).collect();
    assert_eq!(icmp.len(), 2, "{text}");
    icmp[0]
        .split_whitespace()
        .zip(icmp[1].split_whitespace())
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
        .collect()
}

/// Must show (c): a gateway with a strict `net.ipv4.icmp_ratelimit` is
/// traced through with many TTL-limited probes (time exceeded: Linux never
/// rate-limits frag-needed). It answers a few and suppresses the rest;
/// `watch` on it says how many it suppressed, names the sysctl, and the
/// number is the kernel counter's delta. Sent + suppressed = probes.
#[test]
fn a_gateway_that_rate_limits_time_exceeded_says_how_many() {
    if !root_or_skip("a_gateway_that_rate_limits_time_exceeded_says_how_many") {
        return;
    }
    let s = scenarios::linear("ratelimit-gw", &["client", "gw", "server"], &[]).unwrap();
    let gw = s.node("gw").unwrap();
    // One error per 10 s per destination (after the kernel's burst); the
    // host-wide budget stays far above what the probes need.
    gw.sysctl(&["net.ipv4.icmp_ratelimit=10000", "net.ipv4.icmp_msgs_per_sec=1000", "net.ipv4.icmp_msgs_burst=50"])
        .unwrap();
    let gw_if = iface_towards(gw, "198.18.1.");
    let w = Watch::start(gw, &["-i", &gw_if, "--no-metrics", "--update-interval", "1"]).unwrap();
    let before = snmp(gw);
    const PROBES: u64 = 30;
    py(
        &s.client,
        &format!(
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IP,socket.IP_TTL,1)\n\
for i in range({PROBES}): s.sendto(b'probe',('{}',33434+i)); time.sleep(0.01)",
            s.server_v4
        ),
    );
    // The counters settle once the last probe is through the gateway.
    let start = Instant::now();
    let mut after = snmp(gw);
    while start.elapsed() < Duration::from_secs(10) {
        let sent = after["OutTimeExcds"] - before["OutTimeExcds"];
        let limited = after["OutRateLimitHost"] + after["OutRateLimitGlobal"]
            - before["OutRateLimitHost"]
            - before["OutRateLimitGlobal"];
        if sent + limited >= PROBES {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        after = snmp(gw);
    }
    let delta = |k: &str| after[k] - before[k];
    let limited = delta("OutRateLimitHost") + delta("OutRateLimitGlobal");
    assert_eq!(delta("OutTimeExcds") + limited, PROBES, "every probe answered or suppressed: {before:?} {after:?}");
    assert!(limited > 0 && delta("OutTimeExcds") > 0, "a few answered, the rest suppressed: {before:?} {after:?}");
    w.wait_for(Duration::from_secs(10), |r| r["type"] == "icmp_rate_limited" && r["rate_limited"] == limited)
        .expect("watch reports the same number");
    let out = w.stop().unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    let last = out.records.iter().rev().find(|r| r["type"] == "icmp_rate_limited").expect("icmp_rate_limited record");
    assert_eq!(last["rate_limited"], limited, "{last}");
    assert_eq!(last["total"]["host"], delta("OutRateLimitHost"), "{last}");
    assert_eq!(last["sysctls"]["icmp_ratelimit"], 10000, "{last}");
    let text = last["text"].as_str().unwrap_or("");
    assert!(
        text.starts_with(&format!("this gateway rate-limited {limited} ICMP errors it should have sent")),
        "{text}"
    );
    assert!(text.contains("net.ipv4.icmp_ratelimit = 10000 ms"), "{text}");
    // Per-interval deltas add up to the total.
    let sum: u64 =
        out.records.iter().filter(|r| r["type"] == "icmp_rate_limited").filter_map(|r| r["new"].as_u64()).sum();
    assert_eq!(sum, limited);
}
