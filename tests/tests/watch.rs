//! `netobs watch` end to end: the real binary attached inside lab
//! namespaces, real ICMP errors, assertions on its JSON output.

use std::time::Duration;

use netobs_e2e::{
    TwoHop, Watch, lab::Chain, lab::Lab, lab::Reject, lab::scenarios, root_or_skip, run_netobs, two_hop_reject_lab,
};
use serde_json::Value;

/// A python3 one-liner run in a lab node (test traffic only).
fn py(node: &netobs_e2e::lab::Node, code: &str) -> String {
    let out = node.run(&["python3", "-c", code]).expect("python3 traffic helper");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// XDP programs attached in a namespace (`ip -d link` names them).
fn attached_in(node: &netobs_e2e::lab::Node) -> String {
    let out = node.run(&["ip", "-d", "link", "show"]).expect("ip -d link show");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("prog/")).collect::<Vec<_>>().join("\n")
}

#[test]
fn icmp_errors_are_counted_by_type_and_code() {
    if !root_or_skip("icmp_errors_are_counted_by_type_and_code") {
        return;
    }
    let TwoHop { lab: _lab, a, .. } = two_hop_reject_lab();

    let w = Watch::start(&a, &["-i", "eth0", "--no-metrics"]).unwrap();
    py(
        &a,
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(3): s.sendto(b'x',('198.18.2.1',9999)); time.sleep(0.05)\nfor i in range(2): s.sendto(b'x',('198.18.2.1',7000)); time.sleep(0.05)",
    );
    w.wait_for(Duration::from_secs(5), |r| r["type"] == "finding" && r["icmp_code"] == 13).expect("3/13 finding");
    let out = w.stop().unwrap();
    assert!(out.status.success(), "watch exit: {:?} {}", out.status, out.stderr);
    assert_eq!(out.icmp_count("eth0", 3, 3), 3, "port unreachable count: {:?}", out.counters());
    assert_eq!(out.icmp_count("eth0", 3, 13), 2, "admin prohibited count: {:?}", out.counters());
    let findings = out.findings();
    let port = findings.iter().find(|f| f["icmp_code"] == 3).expect("port unreachable finding");
    assert_eq!(port["verdict"], "unreachable");
    assert_eq!(port["reporter"], "198.18.2.1");
    assert_eq!(port["count"], 3);
    assert_eq!(port["hops"]["distance"], 2, "{port}");
    let acl = findings.iter().find(|f| f["icmp_code"] == 13).expect("admin prohibited finding");
    assert_eq!(acl["verdict"], "rejected");
    assert_eq!(acl["reporter"], "198.18.1.254");
    assert_eq!(acl["hops"]["distance"], 1);
    assert_eq!(acl["flow"]["dst_port"], 7000);
    assert_eq!(acl["annotation"], "!X");
}

#[test]
fn missing_interface_is_named_and_nothing_is_attached() {
    if !root_or_skip("missing_interface_is_named_and_nothing_is_attached") {
        return;
    }
    let lab = Lab::new();
    let a = lab.host("a").unwrap();
    let b = lab.host("b").unwrap();
    lab.link(&a, &b).v4("198.18.1.1/24", "198.18.1.2/24").names("eth0", "eth0").create().unwrap();
    let out = run_netobs(&a, &["watch", "-i", "eth0", "-i", "nosuch0", "--json", "--no-metrics"]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("nosuch0"), "error must name the interface: {stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\"attach\""), "nothing may attach");
    assert!(!attached_in(&a).contains("netobs"), "eth0 must stay clean: {}", attached_in(&a));

    let bad = run_netobs(&a, &["watch", "-i", "eth0", "--events-per-sec", "lots"]).unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--events-per-sec"));
}

#[test]
fn field_notes_1_return_traffic_rejected_by_remote_acl() {
    if !root_or_skip("field_notes_1_return_traffic_rejected_by_remote_acl") {
        return;
    }
    let s = scenarios::build("acl-reject").unwrap();
    let port = scenarios::ACL_PORT;
    let _listener = netobs_e2e::listener(&s.server, port, 60).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let w =
        Watch::start(&s.server, &["-i", "eth0", "--metrics-addr", "127.0.0.1:9464", "--update-interval", "1"]).unwrap();

    // The client binds first so we know its port, then tries for ~3.5 s:
    // SYN at 0 s, retransmits at 1 s and 3 s; each SYN-ACK is rejected.
    let client_port: u64 = py(
        &s.client,
        &format!("import socket\ns=socket.socket()\ns.bind(('198.18.1.1',0))\nprint(s.getsockname()[1], flush=True)\ns.settimeout(3.5)\ntry: s.connect(('{}',{port}))\nexcept Exception: pass", s.server_v4),
    )
    .lines()
    .next()
    .and_then(|l| l.trim().parse().ok())
    .expect("client port");

    // Metrics while it runs.
    let metrics = py(
        &s.server,
        "import urllib.request\nprint(urllib.request.urlopen('http://127.0.0.1:9464/metrics').read().decode())",
    );
    let out = w.stop().unwrap();
    assert!(out.status.success(), "{}", out.stderr);

    let rejected_by_rc = s.node("rc").unwrap().fw_packets(Chain::Forward, "tcp sport 65000").unwrap();
    assert!(rejected_by_rc >= 2, "rc rejected {rejected_by_rc} SYN-ACKs");
    let f = out
        .findings()
        .into_iter()
        .find(|f| f["verdict"] == "rejected")
        .unwrap_or_else(|| panic!("no rejected finding in {:?}", out.records));
    assert_eq!(f["reporter"], "198.18.2.1");
    assert_eq!(f["icmp_type"], 3);
    assert_eq!(f["icmp_code"], 10);
    assert_eq!(f["direction"], "return");
    assert_eq!(f["tcp_flags"], "SYN-ACK");
    assert_eq!(f["flow"]["src"], s.server_v4.to_string());
    assert_eq!(f["flow"]["src_port"], u64::from(port));
    assert_eq!(f["flow"]["dst"], s.client_v4.to_string());
    assert_eq!(f["flow"]["dst_port"], client_port);
    assert_eq!(f["hops"]["distance"], 2);
    assert_eq!(f["hops"]["quoted_ttl"], 62);
    assert_eq!(f["hops"]["outer_ttl"], 63);
    assert_eq!(f["hops"]["agree"], true);
    assert_eq!(f["count"], rejected_by_rc, "every rejected SYN-ACK is counted once");
    assert_eq!(f["socket_state"], "SYN-RECV", "joined to the half-open connection: {f}");
    let text = f["text"].as_str().unwrap_or("");
    assert!(text.contains("return traffic") && text.contains("198.18.2.1") && text.contains("2 hops away"), "{text}");

    // The metrics scrape, taken mid-run, shows the rejection with bounded labels.
    let line = metrics
        .lines()
        .find(|l| l.starts_with("netobs_icmp_errors_total{iface=\"eth0\"") && l.contains("code=\"10\""))
        .unwrap_or_else(|| panic!("no 3/10 counter in:\n{metrics}"));
    assert!(
        line.contains("verdict=\"rejected\"")
            && line.contains("iface=\"eth0\"")
            && line.contains("direction=\"received\""),
        "{line}"
    );
    let n: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("counter value");
    assert!(n >= 1.0, "{line}");
    assert!(!metrics.contains("198.18."), "no addresses in metric labels");
    assert!(metrics.contains("netobs_program_attached{iface=\"eth0\",hook=\"xdp_native\"} 1"), "{metrics}");

    // SIGTERM detached everything.
    assert!(!attached_in(&s.server).contains("netobs"), "{}", attached_in(&s.server));
    assert!(out.records.iter().any(|r| r["type"] == "detach"));
}

fn df_findings(out: &netobs_e2e::WatchOutput) -> Vec<Value> {
    out.findings().into_iter().filter(|f| f["kind"] == "df_oversized").collect()
}

fn run_gateway_df(scenario: &str) -> (netobs_e2e::WatchOutput, u64) {
    let s = scenarios::build(scenario).unwrap();
    let gw = s.node("gw").unwrap();
    let w = Watch::start(gw, &["-i", "eth0", "--no-metrics"]).unwrap();
    // 3 DF UDP datagrams of 1500 bytes into a 1400-byte egress. PMTUDISC_PROBE
    // keeps DF but ignores the PMTU the first frag-needed teaches the sender.
    py(
        &s.client,
        &format!(
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IP,10,3)\nfor i in range(3): s.sendto(b'x'*1472,('{}',9)); time.sleep(0.2)",
            s.server_v4
        ),
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = w.stop().unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    (out, 3)
}

/// Both variants in one test, one after the other: the icmp_send
/// tracepoint is host-wide, and the two labs use the same addresses.
#[test]
fn gateway_df_oversized_and_whether_frag_needed_went_back() {
    if !root_or_skip("gateway_df_oversized_and_whether_frag_needed_went_back") {
        return;
    }
    // 1. The gateway sends frag-needed normally.
    let (out, sent) = run_gateway_df("gateway-df");
    let c = out.counters().expect("counters");
    let df = c["df_oversized"].as_array().expect("df rows");
    assert!(df.iter().any(|r| r["ingress"] == "eth0" && r["egress"] == "eth1" && r["count"] == sent), "{c}");
    let f = &df_findings(&out)[0];
    assert_eq!(f["mtu"], 1400);
    assert_eq!(f["egress_iface"], "eth1");
    assert_eq!(f["packet_len"], 1500);
    assert_eq!(f["flow"]["src"], "198.18.1.1");
    assert_eq!(f["count"], sent);
    assert_eq!(f["icmp_back"]["sent"], sent, "{f}");
    assert_eq!(f["icmp_back"]["generated"], sent, "{f}");
    // The frag-needed the gateway sent, seen by TC egress.
    let sent_rows: u64 = c["icmp"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["direction"] == "sent" && r["type"] == 3 && r["code"] == 4)
        .map(|r| r["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(sent_rows, sent);
    assert!(f["advice"].as_str().unwrap_or("").contains("went back"), "{f}");

    // 2. The gateway's own firewall drops the frag-needed it generates.
    let (out, sent) = run_gateway_df("gateway-df-blackhole");
    let f = &df_findings(&out)[0];
    assert_eq!(f["icmp_back"]["generated"], sent, "{f}");
    assert_eq!(f["icmp_back"]["sent"], 0, "{f}");
    let advice = f["advice"].as_str().unwrap_or("");
    assert!(advice.contains("own firewall") && advice.contains("PMTU blackhole"), "{advice}");
}

#[test]
fn a_second_watch_refuses_to_replace_the_first() {
    if !root_or_skip("a_second_watch_refuses_to_replace_the_first") {
        return;
    }
    let lab = Lab::new();
    let a = lab.host("a").unwrap();
    let b = lab.host("b").unwrap();
    lab.link(&a, &b).v4("198.18.1.1/24", "198.18.1.2/24").names("eth0", "eth0").create().unwrap();
    let first = Watch::start(&a, &["-i", "eth0", "--no-metrics", "--xdp-mode", "native"]).unwrap();
    let second =
        run_netobs(&a, &["watch", "-i", "eth0", "--no-metrics", "--xdp-mode", "native", "--duration", "1s"]).unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(stderr.contains("already has an XDP program"), "{stderr}");
    // The first is untouched and still detaches cleanly.
    assert!(attached_in(&a).contains("netobs_xdp"));
    let out = first.stop().unwrap();
    assert!(out.status.success());
    assert!(!attached_in(&a).contains("netobs"));
}

#[test]
fn frag_needed_for_our_traffic_names_the_mtu_and_our_route_cache() {
    if !root_or_skip("frag_needed_for_our_traffic_names_the_mtu_and_our_route_cache") {
        return;
    }
    let s = scenarios::build("pmtu-ok").unwrap();
    let w = Watch::start(&s.client, &["-i", "eth0", "--no-metrics"]).unwrap();
    // One DF datagram of 1500 bytes: r2 cannot forward it into the 1400 link.
    py(
        &s.client,
        &format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IP,10,2)\ns.sendto(b'x'*1472,('{}',9))",
            s.server_v4
        ),
    );
    w.wait_for(Duration::from_secs(5), |r| r["type"] == "finding" && r["verdict"] == "frag_needed")
        .expect("frag-needed finding");
    let out = w.stop().unwrap();
    let f = out.findings().into_iter().find(|f| f["verdict"] == "frag_needed").unwrap();
    assert_eq!(f["mtu"], 1400);
    assert_eq!(f["reporter"], "198.18.2.254", "the router in front of the 1400-byte link");
    assert_eq!(f["hops"]["distance"], 2, "{f}");
    assert_eq!(f["direction"], "outgoing");
    assert_eq!(f["packet_len"], 1500);
    assert_eq!(f["pmtu_cached"], 1400, "our kernel cached the announced MTU: {f}");
    assert_eq!(f["annotation"], "!F");
    assert!(f["advice"].as_str().unwrap_or("").contains("route cache took it"), "{f}");
}

#[test]
fn nat_gateway_names_the_original_client() {
    if !root_or_skip("nat_gateway_names_the_original_client") {
        return;
    }
    let lab = Lab::new();
    let client = lab.host("client").unwrap();
    let gw = lab.router("gw").unwrap();
    let r = lab.router("r").unwrap();
    let server = lab.host("server").unwrap();
    lab.link(&client, &gw).v4("198.18.1.5/24", "198.18.1.254/24").names("eth0", "eth0").create().unwrap();
    lab.link(&gw, &r).v4("198.18.2.254/24", "198.18.2.1/24").names("eth1", "eth0").create().unwrap();
    lab.link(&r, &server).v4("198.18.3.254/24", "198.18.3.1/24").names("eth1", "eth0").create().unwrap();
    client.route("default", "198.18.1.254").unwrap();
    gw.route("default", "198.18.2.1").unwrap();
    server.route("default", "198.18.3.254").unwrap();
    // gw hides the client behind its own address; r rejects tcp/443.
    gw.nft("add table ip nat\nadd chain ip nat post { type nat hook postrouting priority 100 ; }\nadd rule ip nat post oifname \"eth1\" masquerade\n").unwrap();
    r.fw_reject(Chain::Forward, "tcp dport 443", Reject::ADMIN_PROHIBITED).unwrap();

    let w = Watch::start(&gw, &["-i", "eth1", "--no-metrics"]).unwrap();
    py(
        &client,
        "import socket\nfor i in range(2):\n    s=socket.socket(); s.settimeout(2)\n    try: s.connect(('198.18.3.1',443))\n    except Exception: pass",
    );
    w.wait_for(Duration::from_secs(5), |r| r["type"] == "finding" && r["verdict"] == "rejected").expect("finding");
    let out = w.stop().unwrap();
    let fs: Vec<Value> = out.findings().into_iter().filter(|f| f["verdict"] == "rejected").collect();
    assert!(!fs.is_empty());
    for f in &fs {
        assert_eq!(f["reporter"], "198.18.2.1");
        assert_eq!(f["icmp_code"], 13);
        assert_eq!(f["flow"]["src"], "198.18.2.254", "the quote shows the translated source");
        assert_eq!(f["direction"], "forwarded", "{f}");
        assert_eq!(f["nat_original"]["src"], "198.18.1.5", "conntrack names the real client: {f}");
        assert_eq!(f["nat_original"]["dst_port"], 443);
        assert_eq!(f["hops"]["distance"], 1, "{f}");
        assert!(f["text"].as_str().unwrap_or("").contains("NAT of client 198.18.1.5"), "{f}");
    }
}
