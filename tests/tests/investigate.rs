//! Closing the loop, end to end: `watch` notices a blackhole from this
//! host's own TCP retransmissions (no ICMP comes back), and with
//! `--investigate` probes it within its budget. Asserted from JSON.

use std::time::Duration;

use netobs_e2e::{
    Watch,
    lab::{Node, scenarios, scenarios::ScenarioLab},
    root_or_skip,
};
use serde_json::Value;

/// Port of the download server.
const PORT: u16 = 5001;

/// client - r1 - r2 - r3 - server; the r2 -- r3 link has MTU 1400 and r3
/// drops the frag-needed it generates: the server's full-size segments to
/// the client vanish at r3 and nothing says so. Seen from the server, r3 is
/// hop 1 (198.18.4.254) and r2, behind the narrow link, hop 2 (198.18.3.1).
fn blackhole_lab(name: &str) -> ScenarioLab {
    let s = scenarios::linear(name, &["client", "r1", "r2", "r3", "server"], &[(3, scenarios::PMTU)]).unwrap();
    s.node("r3").unwrap().fw_drop_frag_needed().unwrap();
    s
}

/// Downloads from the server once from each of `sources`, in parallel, for
/// at most `secs` seconds (the transfers stall: that is the point).
fn download(client: &Node, server: &str, sources: &[String], secs: u32) -> netobs_e2e::lab::Spawned {
    let srcs: Vec<String> = sources.iter().map(|s| format!("'{s}'")).collect();
    let code = format!(
        "import socket,threading,time\n\
         def get(src):\n  s=socket.socket()\n  s.bind((src,0))\n  s.settimeout({secs})\n  n=0\n  t=time.time()\n\
         \x20 try:\n    s.connect(('{server}',{PORT}))\n    while time.time()-t<{secs}:\n      b=s.recv(65536)\n      n+=len(b)\n      if not b: break\n\
         \x20 except Exception: pass\n  print(src,n,flush=True)\n\
         ts=[threading.Thread(target=get,args=(a,)) for a in [{}]]\n\
         [t.start() for t in ts]\n[t.join() for t in ts]\n",
        srcs.join(",")
    );
    client.spawn(&["python3", "-c", &code]).unwrap()
}

fn absences(w: &Watch) -> Vec<Value> {
    w.records().into_iter().filter(|r| r["type"] == "absence").collect()
}

/// ICMP echo requests from `src` that arrived at `node` (an nft counter in
/// a table of this test's own, before anything else sees them).
fn count_echo_requests(node: &Node, src: &str) {
    node.nft(&format!(
        "add table inet loopcount\n\
         add chain inet loopcount pre {{ type filter hook prerouting priority -300; policy accept; }}\n\
         add rule inet loopcount pre ip saddr {src} icmp type echo-request counter"
    ))
    .unwrap();
}

fn echo_requests_counted(node: &Node) -> u64 {
    let text = node.run_ok(&["nft", "list", "chain", "inet", "loopcount", "pre"]).unwrap();
    text.lines()
        .filter_map(|l| {
            let rest = &l[l.find("counter packets ")? + "counter packets ".len()..];
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

#[test]
fn passive_pmtu_blackhole_then_investigated_to_the_narrow_link() {
    if !root_or_skip("passive_pmtu_blackhole_then_investigated_to_the_narrow_link") {
        return;
    }
    let s = blackhole_lab("loop-pmtu");
    let client = s.client_v4.to_string();
    let server = s.server_v4.to_string();
    let r3 = s.node("r3").unwrap();
    count_echo_requests(r3, &server);
    let _srv = netobs_e2e::download_server(&s.server, PORT).unwrap();

    // Without probing: the suspicion alone, and not a single probe.
    let w = Watch::start(&s.server, &["-i", "eth0", "--no-metrics"]).unwrap();
    let dl = download(&s.client, &server, std::slice::from_ref(&client), 12);
    let found =
        w.wait_for(Duration::from_secs(40), |r| r["type"] == "absence" && r["kind"] == "pmtu_blackhole_suspected");
    let out = w.stop().unwrap();
    dl.kill();
    let f = found.unwrap_or_else(|| panic!("no suspected blackhole in {:#?}\n{}", out.records, out.stderr));
    eprintln!("{}", f["text"].as_str().unwrap_or(""));
    assert_eq!(f["remote"], client.as_str());
    assert_eq!(f["local"], server.as_str());
    assert_eq!(f["port"], u64::from(PORT));
    assert_eq!(f["mss"], 1448, "the client's MSS 1460 minus the timestamp option: {f}");
    let n = f["retransmissions"].as_u64().unwrap();
    assert!(n >= 3, "{f}");
    let headline = f["headline"].as_str().unwrap();
    assert_eq!(
        headline,
        format!(
            "SUSPECTED PMTU BLACKHOLE toward {client}: {n} full-size retransmissions (MSS 1448), no frag-needed seen"
        )
    );
    assert!(f["text"].as_str().unwrap().contains("handshake got through"), "{f}");
    assert!(!out.records.iter().any(|r| r["type"] == "investigation"), "nothing is probed without --investigate");
    assert_eq!(echo_requests_counted(r3), 0, "no probe left the server");
    // Nothing on the ICMP side: the frag-needed never came back.
    assert!(!out.findings().iter().any(|f| f["verdict"] == "frag_needed"), "{:?}", out.findings());

    // With --investigate: path MTU 1400, located between hop 1 (r3) and hop 2 (r2), MSS advice.
    let w = Watch::start(&s.server, &["-i", "eth0", "--no-metrics", "--investigate", "--probe-budget", "60"]).unwrap();
    let dl = download(&s.client, &server, std::slice::from_ref(&client), 25);
    let inv = w.wait_for(Duration::from_secs(60), |r| r["type"] == "investigation");
    let out = w.stop().unwrap();
    dl.kill();
    let inv = inv.unwrap_or_else(|| panic!("no investigation in {:#?}\n{}", out.records, out.stderr));
    eprintln!("{}", inv["text"].as_str().unwrap_or(""));
    let trigger = out
        .records
        .iter()
        .find(|r| r["type"] == "absence" && r["id"] == inv["trigger_id"])
        .unwrap_or_else(|| panic!("the investigation names no printed finding: {inv}"));
    assert_eq!(trigger["kind"], "pmtu_blackhole_suspected");
    assert_eq!(inv["trigger"], "suspected_blackhole");
    assert_eq!(inv["trigger_record"], "absence");
    assert_eq!(inv["target"], client.as_str());
    assert_eq!(inv["status"], "done", "{inv}");
    let v = &inv["verdict"];
    assert_eq!(v["kind"], "pmtu_blackhole", "{v}");
    assert_eq!(v["mtu"], 1400, "{v}");
    assert_eq!(v["hop"], 2, "the link into hop 2 (r2) is the narrow one: {v}");
    assert_eq!(v["addr"], s.link("r2", "r3").unwrap().a.v4_or_err().unwrap().to_string(), "{v}");
    assert!(v["recommendation"].as_str().unwrap().contains("clamp TCP MSS to 1360"), "{v}");
    let text = inv["text"].as_str().unwrap();
    assert!(text.contains("PMTU BLACKHOLE between hop 1") && text.contains("hop 2"), "{text}");
    let sent = inv["probes_sent"].as_u64().unwrap();
    let counted = echo_requests_counted(r3);
    assert!(sent > 0 && sent <= 60, "{inv}");
    assert_eq!(counted, sent, "every probe is an echo request that crossed r3, and each is reported");

    // SIGTERM in the middle of an investigation (it starts within a second
    // of the finding and takes seconds): watch does not wait for it.
    let w =
        Watch::start(&s.server, &["-i", "eth0", "--no-metrics", "--investigate", "--probe-cooldown", "1s"]).unwrap();
    let dl = download(&s.client, &server, std::slice::from_ref(&client), 15);
    assert!(w.wait_for(Duration::from_secs(40), |r| r["type"] == "absence").is_some());
    std::thread::sleep(Duration::from_millis(1200));
    let stopping = std::time::Instant::now();
    let out = w.stop_with(libc::SIGTERM, Duration::from_secs(20)).unwrap();
    dl.kill();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(stopping.elapsed() < Duration::from_secs(3), "SIGTERM took {:?}", stopping.elapsed());
}

#[test]
fn investigations_stay_within_the_probe_budget() {
    if !root_or_skip("investigations_stay_within_the_probe_budget") {
        return;
    }
    let s = blackhole_lab("loop-budget");
    let server = s.server_v4.to_string();
    // Five clients (five destinations, so the per-destination cooldown
    // does not hold any back): five suspected blackholes at once.
    let mut sources = vec![s.client_v4.to_string()];
    for i in 2..=5 {
        let a = format!("198.18.1.{i}");
        s.client.add_addr("eth0", &format!("{a}/24")).unwrap();
        sources.push(a);
    }
    let r3 = s.node("r3").unwrap();
    count_echo_requests(r3, &server);
    let _srv = netobs_e2e::download_server(&s.server, PORT).unwrap();
    const BUDGET: u64 = 30;
    let w = Watch::start(
        &s.server,
        &["-i", "eth0", "--metrics-addr", "127.0.0.1:9464", "--investigate", "--probe-budget", "30"],
    )
    .unwrap();
    let dl = download(&s.client, &server, &sources, 25);
    // Every destination's investigation has been decided: run or refused.
    let all_decided = |w: &Watch| {
        let absent = absences(w);
        let invs: Vec<Value> = w.records().into_iter().filter(|r| r["type"] == "investigation").collect();
        absent.len() >= 5 && invs.len() >= 5
    };
    let start = std::time::Instant::now();
    while !all_decided(&w) && start.elapsed() < Duration::from_secs(50) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let scrape = s
        .server
        .run(&[
            "python3",
            "-c",
            "import urllib.request\nprint(urllib.request.urlopen('http://127.0.0.1:9464/metrics').read().decode())",
        ])
        .unwrap();
    let metrics = String::from_utf8_lossy(&scrape.stdout).to_string();
    let out = w.stop().unwrap();
    dl.kill();
    let invs: Vec<&Value> = out.records.iter().filter(|r| r["type"] == "investigation").collect();
    assert!(invs.len() >= 5, "{:#?}\n{}", out.records, out.stderr);
    let targets: std::collections::BTreeSet<&str> = invs.iter().filter_map(|i| i["target"].as_str()).collect();
    assert_eq!(targets.len(), invs.len(), "one investigation per destination (cooldown): {invs:#?}");
    let done = invs.iter().filter(|i| i["status"] == "done").count();
    let refused = invs.iter().filter(|i| i["status"] == "skipped_budget").count();
    assert!(done >= 1, "{invs:#?}");
    assert!(refused >= 1, "five PMTU investigations do not fit 30 probes a minute: {invs:#?}");
    let reported: u64 = invs.iter().filter_map(|i| i["probes_sent"].as_u64()).sum();
    let counted = echo_requests_counted(r3);
    assert_eq!(counted, reported, "the nft counter on r3 agrees with the records");
    assert!(counted <= BUDGET, "{counted} probes crossed r3 within a minute, budget {BUDGET}");
    // The metric by trigger and verdict, and the findings behind them.
    let metric = |labels: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("netobs_investigations_total{{{labels}}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    assert_eq!(metric("trigger=\"suspected_blackhole\",verdict=\"pmtu_blackhole\""), done as u64, "{metrics}");
    assert_eq!(metric("trigger=\"suspected_blackhole\",verdict=\"skipped_budget\""), refused as u64, "{metrics}");
    assert!(metrics.contains("netobs_retransmission_findings_total{kind=\"pmtu_blackhole_suspected\"} 5"), "{metrics}");
    for i in invs.iter().filter(|i| i["status"] == "skipped_budget") {
        assert_eq!(i["probes_sent"], 0);
        assert!(i["budget_left"].as_u64().unwrap() < 8, "{i}");
        assert!(i["text"].as_str().unwrap().contains("probe budget"), "{i}");
    }
}

#[test]
fn synack_retransmissions_agree_with_the_icmp_rejection() {
    if !root_or_skip("synack_retransmissions_agree_with_the_icmp_rejection") {
        return;
    }
    let s = scenarios::build("acl-reject").unwrap();
    let port = scenarios::ACL_PORT;
    let _listener = netobs_e2e::listener(&s.server, port, 60).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let w = Watch::start(&s.server, &["-i", "eth0", "--no-metrics"]).unwrap();
    let c = s
        .client
        .spawn(&["python3", "-c", &format!("import socket\ns=socket.socket()\ns.settimeout(8)\ntry: s.connect(('{}',{port}))\nexcept Exception: pass", s.server_v4)])
        .unwrap();
    let found = w.wait_for(Duration::from_secs(30), |r| {
        r["type"] == "absence" && r["kind"] == "synack_retransmitted" && !r["icmp"].is_null()
    });
    let out = w.stop().unwrap();
    c.kill();
    let f = found.unwrap_or_else(|| panic!("no SYN-ACK finding agreeing with ICMP in {:#?}", out.records));
    assert_eq!(f["remote"], s.client_v4.to_string());
    assert_eq!(f["local_port"], u64::from(port));
    assert_eq!(f["icmp"]["verdict"], "rejected");
    assert_eq!(f["icmp"]["reporter"], "198.18.2.1");
    assert_eq!(f["icmp"]["icmp_code"], 10);
    let icmp_finding = out
        .findings()
        .into_iter()
        .find(|r| r["id"] == f["icmp"]["finding_id"])
        .unwrap_or_else(|| panic!("the ICMP finding it names was printed: {f}"));
    assert_eq!(icmp_finding["tcp_flags"], "SYN-ACK");
    assert!(f["text"].as_str().unwrap().contains("agrees with the ICMP evidence"), "{f}");
}

#[test]
fn passive_pmtu_blackhole_over_ipv6() {
    if !root_or_skip("passive_pmtu_blackhole_over_ipv6") {
        return;
    }
    // r3 drops the Packet Too Big it generates too (fw_drop_frag_needed).
    let s = blackhole_lab("loop-pmtu6");
    let client = s.client_v6.to_string();
    let code = format!(
        "import socket,threading\n\
         l=socket.socket(socket.AF_INET6)\nl.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         l.bind(('::',{PORT}))\nl.listen(8)\n\
         def serve(c):\n  c.settimeout(60)\n  try: c.sendall(b'x'*1000000)\n  except Exception: pass\n\
         while True:\n  c,_=l.accept()\n  threading.Thread(target=serve,args=(c,),daemon=True).start()\n"
    );
    let _srv = s.server.spawn(&["python3", "-c", &code]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let w = Watch::start(&s.server, &["-i", "eth0", "--no-metrics"]).unwrap();
    let get = format!(
        "import socket\ns=socket.socket(socket.AF_INET6)\ns.settimeout(12)\n\
         try:\n  s.connect(('{}',{PORT}))\n  while s.recv(65536): pass\nexcept Exception: pass",
        s.server_v6
    );
    let dl = s.client.spawn(&["python3", "-c", &get]).unwrap();
    let found =
        w.wait_for(Duration::from_secs(40), |r| r["type"] == "absence" && r["kind"] == "pmtu_blackhole_suspected");
    let out = w.stop().unwrap();
    dl.kill();
    let f = found.unwrap_or_else(|| panic!("no suspected blackhole in {:#?}\n{}", out.records, out.stderr));
    assert_eq!(f["family"], 6);
    assert_eq!(f["remote"], client.as_str());
    assert_eq!(f["local"], s.server_v6.to_string());
    assert_eq!(f["mss"], 1428, "1500 - 40 - 20 - the timestamp option: {f}");
    assert!(f["headline"].as_str().unwrap().ends_with("no Packet Too Big seen"), "{f}");
}

#[test]
fn syns_without_any_answer_are_a_silent_drop_and_investigated_to_the_hop() {
    if !root_or_skip("syns_without_any_answer_are_a_silent_drop_and_investigated_to_the_hop") {
        return;
    }
    // r3 (hop 3 from the client) drops forwarded TCP to port 443; the
    // client's watch sees only its own SYNs being resent.
    let s = scenarios::build("silent-drop").unwrap();
    let w = Watch::start(&s.client, &["-i", "eth0", "--no-metrics", "--investigate"]).unwrap();
    let c = s
        .client
        .spawn(&[
            "python3",
            "-c",
            &format!(
                "import socket\ns=socket.socket()\ns.settimeout(10)\ntry: s.connect(('{}',443))\nexcept Exception: pass",
                s.server_v4
            ),
        ])
        .unwrap();
    let inv = w.wait_for(Duration::from_secs(40), |r| r["type"] == "investigation");
    let out = w.stop().unwrap();
    c.kill();
    let inv = inv.unwrap_or_else(|| panic!("no investigation in {:#?}\n{}", out.records, out.stderr));
    eprintln!("{}", inv["text"].as_str().unwrap_or(""));
    let f = out
        .records
        .iter()
        .find(|r| r["type"] == "absence" && r["id"] == inv["trigger_id"])
        .unwrap_or_else(|| panic!("no absence record behind {inv}"));
    assert_eq!(f["kind"], "silent_drop");
    assert_eq!(f["key"], format!("silent_drop {}:443", s.server_v4));
    assert!(f["retransmissions"].as_u64().unwrap() >= 2, "{f}");
    assert!(f["headline"].as_str().unwrap().starts_with(&format!("SILENT DROP toward {}:443", s.server_v4)), "{f}");
    assert_eq!(inv["trigger"], "silent_drop");
    assert_eq!(inv["status"], "done", "{inv}");
    assert_eq!(inv["verdict"]["kind"], "silently_dropped", "{inv}");
    // r3 still answers TTL-limited probes (the TTL check comes before its
    // forward filter), so the drop is after hop 3, as `explain` says.
    assert_eq!(inv["verdict"]["hop"], 3, "{inv}");
    assert_eq!(inv["verdict"]["addr"], s.hop_v4(3).unwrap().to_string(), "{inv}");
    assert_eq!(inv["verdict"]["dest_hop"], 4, "ICMP echo reaches the server: only TCP 443 is dropped");
}

#[test]
fn congestion_loss_on_this_hosts_download_is_no_blackhole() {
    if !root_or_skip("congestion_loss_on_this_hosts_download_is_no_blackhole") {
        return;
    }
    // client - r1 - server; r1 loses one in eight of the server's
    // full-size segments at random. The server, watching, resends them,
    // often several under one ACK, while others get through.
    let s = scenarios::linear("loc-loss", &["client", "r1", "server"], &[]).unwrap();
    let r1 = s.node("r1").unwrap();
    r1.fw_lose_one_in(&format!("tcp sport {PORT} meta length > 1000"), 8).unwrap();
    // Segments, not 64 KB GSO bursts, on the wire: each loss is one segment.
    s.server.run_ok(&["ethtool", "-K", "eth0", "tso", "off", "gso", "off"]).unwrap();
    let server_v4 = s.server_v4.to_string();
    let _srv = netobs_e2e::download_server(&s.server, PORT).unwrap();
    let w = Watch::start(&s.server, &["-i", "eth0", "--no-metrics"]).unwrap();
    for _ in 0..2 {
        let dl = download(&s.client, &server_v4, &[s.client_v4.to_string()], 8);
        let _ = dl.wait_timeout(Duration::from_secs(10));
        dl.kill();
    }
    std::thread::sleep(Duration::from_secs(3));
    let lost = r1.fw_lost().unwrap();
    let found = absences(&w);
    let _ = w.stop().unwrap();
    assert!(lost >= 20, "r1 dropped {lost} segments: not enough loss to mean anything");
    assert!(
        !found.iter().any(|r| r["kind"] == "pmtu_blackhole_suspected"),
        "loss with progress is no blackhole ({lost} segments lost): {found:#?}"
    );
}
