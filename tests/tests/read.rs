//! `netobs read` checked against someone else's decoder: tcpdump's own
//! test captures (tests/data/corpus/tcpdump, copied with their licence
//! from tcpdump's test suite) and the output tcpdump's tests expect.
//! Host tests: no root, the real binary (`netobs read --json --frames`).
//!
//! Every ICMP/ICMPv6 error tcpdump printed must be a `frame` record with
//! the same type, code, reporter, destination, announced MTU, quoted
//! destination and port, and (with `-v` outputs) the quoted packet's TTL,
//! length, addresses and ports; and every error netobs reports must be
//! one tcpdump printed. The MPLS labels are parsed here too
//! ([`tcpdump::Expected::mpls`]) and compared by the RFC 4884 decoder's
//! own test.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
};

use netobs_e2e::{netobs_bin, tcpdump};
use serde_json::Value;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/corpus/tcpdump")
}

/// `netobs read --json --frames FILE`: (exit code, records).
fn read(file: &Path, extra: &[&str]) -> (i32, Vec<Value>) {
    let out = Command::new(netobs_bin())
        .arg("read")
        .arg("--json")
        .arg("--frames")
        .args(extra)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e} (build it: cargo xtask build)", netobs_bin().display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "netobs panicked on {}: {stderr}", file.display());
    let code = out.status.code().unwrap_or_else(|| panic!("netobs killed by a signal on {}: {stderr}", file.display()));
    let records = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (code, records)
}

fn summary(records: &[Value]) -> &Value {
    records.iter().rev().find(|r| r["type"] == "read").expect("a read summary record")
}

fn as_ip(v: &Value) -> Option<IpAddr> {
    v.as_str().and_then(|s| s.parse().ok())
}

/// The fields of `f` (a finding) that disagree with what tcpdump printed.
fn disagreements(e: &tcpdump::Expected, f: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let mut check = |what: &str, ours: Option<String>, theirs: Option<String>| {
        if ours != theirs {
            bad.push(format!("{what}: netobs {ours:?}, tcpdump {theirs:?}"));
        }
    };
    let s = |v: &Value| if v.is_null() { None } else { Some(v.to_string().trim_matches('"').to_string()) };
    check("family", s(&f["family"]), Some(e.family.to_string()));
    check("type", s(&f["icmp_type"]), Some(e.icmp_type.to_string()));
    check("code", s(&f["icmp_code"]), Some(e.icmp_code.to_string()));
    check("reporter", as_ip(&f["reporter"]).map(|a| a.to_string()), Some(e.reporter.to_string()));
    check("to", as_ip(&f["to"]).map(|a| a.to_string()), Some(e.to.to_string()));
    if let Some(m) = e.mtu {
        check("mtu", s(&f["mtu"]), Some(m.to_string()));
    }
    let flow = &f["flow"];
    if let Some(d) = e.named_dst {
        check("quoted dst", as_ip(&flow["dst"]).map(|a| a.to_string()), Some(d.to_string()));
    }
    if let Some((proto, port)) = &e.named_port {
        check("quoted protocol", s(&flow["protocol"]), Some(proto.clone()));
        check("quoted dst port", s(&flow["dst_port"]), Some(port.to_string()));
    }
    if let Some(q) = &e.quoted {
        if let Some(t) = q.ttl
            && f["kind"] == "icmp_error"
        {
            check("quoted ttl", s(&f["hops"]["quoted_ttl"]), Some(t.to_string()));
        }
        if let Some(l) = q.length {
            check("quoted length", s(&f["packet_len"]), Some(l.to_string()));
        }
        if let Some(a) = q.src {
            check("quoted src", as_ip(&flow["src"]).map(|a| a.to_string()), Some(a.to_string()));
        }
        if let Some(a) = q.dst {
            check("quoted dst", as_ip(&flow["dst"]).map(|a| a.to_string()), Some(a.to_string()));
        }
        if let Some(p) = q.src_port {
            check("quoted src port", s(&flow["src_port"]), Some(p.to_string()));
        }
        if let Some(p) = q.dst_port {
            check("quoted dst port", s(&flow["dst_port"]), Some(p.to_string()));
        }
    }
    bad
}

#[test]
fn every_icmp_error_agrees_with_tcpdump() {
    let dir = corpus();
    let list = std::fs::read_to_string(dir.join("TESTLIST")).expect("TESTLIST");
    let mut by_capture: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (name, cap, out, _flags) in tcpdump::testlist(&list) {
        by_capture.entry(cap).or_default().push((name, out));
    }
    let (mut checked, mut cut, mut failures) = (0usize, 0usize, Vec::new());
    for (cap, outs) in &by_capture {
        let (code, records) = read(&dir.join(cap), &[]);
        assert!(code == 0 || code == 1, "{cap}: exit {code}");
        let frames: BTreeMap<u64, &Value> =
            records.iter().filter(|r| r["type"] == "frame").map(|r| (r["frame"].as_u64().expect("frame"), r)).collect();
        let mut tcpdump_errors = BTreeSet::new();
        for (name, out) in outs {
            let text = std::fs::read_to_string(dir.join(out)).unwrap_or_else(|e| panic!("{out}: {e}"));
            for e in tcpdump::parse_out(&text) {
                tcpdump_errors.insert(e.frame);
                let Some(fr) = frames.get(&e.frame) else {
                    failures.push(format!("{name} frame {}: netobs reported nothing for\n{}", e.frame, e.text));
                    continue;
                };
                if e.cut && fr["finding"].is_null() {
                    // tcpdump ran out of bytes too: netobs must count it.
                    if fr["malformed"].is_null() {
                        failures.push(format!("{name} frame {}: cut short, but not counted malformed", e.frame));
                    }
                    cut += 1;
                    continue;
                }
                checked += 1;
                let bad = disagreements(&e, &fr["finding"]);
                if !bad.is_empty() {
                    failures.push(format!("{name} frame {}: {}\n{}", e.frame, bad.join("; "), e.text));
                }
            }
        }
        // And nothing netobs calls an ICMP error that tcpdump did not.
        for (n, fr) in &frames {
            if !fr["finding"].is_null() && !tcpdump_errors.contains(n) {
                failures.push(format!(
                    "{cap} frame {n}: netobs reports {} but tcpdump printed no ICMP error",
                    fr["finding"]
                ));
            }
        }
    }
    eprintln!("checked {checked} ICMP errors against tcpdump's decode, {cut} cut short and counted malformed");
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n\n"));
    assert!(checked > 0, "the corpus holds ICMP errors: none was parsed from tcpdump's outputs");
}

#[test]
fn malformed_captures_are_counted_and_never_crash_netobs() {
    let mut seen = 0;
    for entry in std::fs::read_dir(corpus()).expect("corpus") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) || !(name.contains("oobr") || name.contains("asan"))
        {
            continue;
        }
        seen += 1;
        let (code, records) = read(&path, &[]);
        assert!(code == 0 || code == 1, "{name}: exit {code}");
        let s = summary(&records);
        let malformed = s["malformed"].as_u64().expect("malformed count");
        assert!(malformed > 0, "{name}: an out-of-bounds-read reproducer gave no malformed frame: {s}");
        let by: u64 = s["malformed_by"].as_object().expect("malformed_by").values().filter_map(Value::as_u64).sum();
        assert_eq!(by, malformed, "{name}: the reasons add up");
        let per_frame = records.iter().filter(|r| r["type"] == "frame" && !r["malformed"].is_null()).count() as u64;
        assert_eq!(per_frame, malformed, "{name}: one frame record per malformed frame");
        eprintln!("{name}: {malformed} malformed ({})", s["malformed_by"]);
    }
    assert!(seen >= 10, "the corpus has its oobr/asan captures ({seen})");
}

/// The hook for the RFC 4884 decoder's test: the labels tcpdump printed
/// for the corpus's MPLS traceroute are parsed, one stack per
/// time-exceeded that carried one.
#[test]
fn tcpdump_mpls_label_stacks_are_parsed_for_the_extension_test() {
    let text = std::fs::read_to_string(corpus().join("mpls-traceroute-v.out")).expect("out");
    let errors = tcpdump::parse_out(&text);
    let with_labels: Vec<_> = errors.iter().filter(|e| !e.mpls.is_empty()).collect();
    let blocks_with_objects = text.matches("MPLS Stack Entry Object").count();
    assert_eq!(with_labels.len(), blocks_with_objects, "one parsed stack per MPLS object tcpdump printed");
    for e in &with_labels {
        assert_eq!((e.family, e.icmp_type), (4, 11), "{}", e.text);
        assert!(e.mpls.last().is_some_and(|m| m.bottom), "the last entry has the S bit: {}", e.text);
        let printed = format!("label {}, ", e.mpls[0].label);
        assert!(e.text.contains(&printed), "{printed} is in {}", e.text);
    }
}

/// Must show: the MPLS labels of the corpus's MPLS traceroute, shown by
/// `read` in JSON and in text, frame for frame the stacks tcpdump printed.
#[test]
fn read_shows_the_mpls_labels_tcpdump_printed() {
    let text = std::fs::read_to_string(corpus().join("mpls-traceroute-v.out")).expect("out");
    let want: Vec<Vec<(u64, u64, bool, u64)>> = tcpdump::parse_out(&text)
        .iter()
        .filter(|e| !e.mpls.is_empty())
        .map(|e| e.mpls.iter().map(|m| (u64::from(m.label), u64::from(m.tc), m.bottom, u64::from(m.ttl))).collect())
        .collect();
    assert!(!want.is_empty(), "tcpdump printed MPLS stacks");
    let (code, records) = read(&corpus().join("mpls-traceroute.pcap"), &[]);
    assert_eq!(code, 0);
    let got: Vec<Vec<(u64, u64, bool, u64)>> = records
        .iter()
        .filter(|r| r["type"] == "frame")
        .filter_map(|r| r["finding"]["extensions"]["mpls"].as_array())
        .map(|stack| {
            stack
                .iter()
                .map(|m| {
                    let n = |k: &str| m[k].as_u64().unwrap_or(u64::MAX);
                    (n("label"), n("tc"), m["bottom"].as_bool().unwrap_or(false), n("ttl"))
                })
                .collect()
        })
        .collect();
    assert_eq!(got, want, "read's MPLS stacks, frame by frame, against tcpdump's");
    let out = Command::new(netobs_bin()).arg("read").arg(corpus().join("mpls-traceroute.pcap")).output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    let (l, e, s_, t) = want[0][0];
    let words = format!("MPLS L={l},E={e},S={},T={t}", u8::from(s_));
    assert!(text.contains(&words), "{words} in:\n{text}");
}

#[test]
fn not_a_capture_and_a_missing_file_are_usage_errors() {
    let tmp = std::env::temp_dir().join(format!("netobs-read-{}.txt", std::process::id()));
    std::fs::write(&tmp, b"this is not a capture").expect("write");
    let out = Command::new(netobs_bin()).args(["read"]).arg(&tmp).output().expect("run");
    let _ = std::fs::remove_file(&tmp);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap or pcapng capture"));
    let out = Command::new(netobs_bin()).args(["read", "/nonexistent/x.pcap"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn stdin_and_a_file_say_the_same() {
    let path = corpus().join("mpls-traceroute.pcap");
    let (_, from_file) = read(&path, &["--iface", "ppp0"]);
    let out = Command::new(netobs_bin())
        .args(["read", "--json", "--frames", "--iface", "ppp0", "-"])
        .stdin(std::fs::File::open(&path).expect("open"))
        .output()
        .expect("run");
    assert!(out.status.success());
    let from_stdin: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let strip = |rs: &[Value]| -> Vec<Value> {
        rs.iter()
            .map(|r| {
                let mut r = r.clone();
                if r["type"] == "read" {
                    r["file"] = Value::Null;
                }
                r
            })
            .collect()
    };
    assert_eq!(strip(&from_file), strip(&from_stdin));
    assert!(from_file.iter().filter(|r| r["type"] == "finding").all(|r| r["iface"] == "ppp0"));
    assert!(summary(&from_file)["icmp_errors"].as_u64() > Some(0));
}

/// A cut-short file (a capture copied while tcpdump still wrote it): what
/// came before is reported, the end is said, exit 1.
#[test]
fn a_capture_cut_inside_a_record_reports_what_it_has() {
    let bytes = std::fs::read(corpus().join("mpls-traceroute.pcap")).expect("read");
    let tmp = std::env::temp_dir().join(format!("netobs-read-cut-{}.pcap", std::process::id()));
    std::fs::write(&tmp, &bytes[..bytes.len() - 30]).expect("write");
    let (code, records) = read(&tmp, &[]);
    let _ = std::fs::remove_file(&tmp);
    assert_eq!(code, 1);
    let s = summary(&records);
    assert_eq!(s["end"], "cut_short");
    assert!(s["icmp_errors"].as_u64() > Some(0), "{s}");
}

// ---- field notes scenario 1, captured with tcpdump --------------------------------------

/// The finding both `watch` (live) and `read` (the capture) must agree on.
fn rejected(findings: &[Value]) -> Value {
    findings
        .iter()
        .find(|f| f["verdict"] == "rejected")
        .cloned()
        .unwrap_or_else(|| panic!("no rejected finding in {findings:#?}"))
}

/// The last version of each finding of `netobs read --json` output.
fn last_findings(records: &[Value]) -> Vec<Value> {
    let mut by_id: BTreeMap<u64, Value> = BTreeMap::new();
    for r in records.iter().filter(|r| r["type"] == "finding") {
        by_id.insert(r["id"].as_u64().expect("id"), r.clone());
    }
    by_id.into_values().collect()
}

/// What "the same finding" means: reporter, code, hop distance, ports, count.
fn same_finding(live: &Value, read: &Value) {
    for key in ["reporter", "icmp_type", "icmp_code", "direction", "tcp_flags", "count"] {
        assert_eq!(live[key], read[key], "{key}: live {live}\nread {read}");
    }
    for key in ["src", "dst", "src_port", "dst_port", "protocol"] {
        assert_eq!(live["flow"][key], read["flow"][key], "flow.{key}: live {live}\nread {read}");
    }
    for key in ["distance", "quoted_ttl", "outer_ttl", "agree"] {
        assert_eq!(live["hops"][key], read["hops"][key], "hops.{key}: live {live}\nread {read}");
    }
}

fn lab_capture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/lab/field-notes-1-acl-reject.pcap")
}

/// Root: field notes scenario 1 (a remote ACL rejects the server's
/// SYN-ACKs with 3/10), `tcpdump -w` on the server's eth0 while `netobs
/// watch --json` runs there live; then `netobs read --json` on the capture
/// gives the same finding. With NETOBS_SAVE_LAB_CAPTURE=1 the capture and
/// the live finding are saved into tests/data/lab/ for the host test below.
#[test]
fn a_tcpdump_capture_of_field_notes_1_reads_as_watch_saw_it_live() {
    use netobs_e2e::{Watch, lab::scenarios, root_or_skip};
    use std::time::{Duration, Instant};
    if !root_or_skip("a_tcpdump_capture_of_field_notes_1_reads_as_watch_saw_it_live") {
        return;
    }
    let s = scenarios::build("acl-reject").expect("scenario");
    let port = scenarios::ACL_PORT;
    let listener = netobs_e2e::listener(&s.server, port, 60).expect("listener");
    let cap = std::env::temp_dir().join(format!("netobs-fn1-{}.pcap", std::process::id()));
    let _ = std::fs::remove_file(&cap);
    let cap_s = cap.to_str().expect("utf-8 path");
    let tcpdump =
        s.server.spawn(&["tcpdump", "-i", "eth0", "-n", "-U", "-s", "0", "-w", cap_s, "icmp or tcp"]).expect("tcpdump");
    // tcpdump has the file open (header written) once it listens.
    let start = Instant::now();
    while std::fs::metadata(&cap).map(|m| m.len()).unwrap_or(0) < 24 {
        assert!(start.elapsed() < Duration::from_secs(20), "tcpdump did not start: {}", tcpdump.describe());
        std::thread::sleep(Duration::from_millis(50));
    }
    let w = Watch::start(&s.server, &["-i", "eth0", "--no-metrics", "--update-interval", "1"]).expect("watch");
    let out = s
        .client
        .run(&["python3", "-c", &format!("import socket\ns=socket.socket()\ns.bind(('198.18.1.1',0))\nprint(s.getsockname()[1], flush=True)\ns.settimeout(3.5)\ntry: s.connect(('{}',{port}))\nexcept Exception: pass", s.server_v4)])
        .expect("client");
    let client_port: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("client port");
    // The server would go on retransmitting its SYN-ACK (and rc rejecting
    // it) after the client gave up: close the listener, which drops the
    // half-open connection, so nothing more arrives while watch and
    // tcpdump are stopped one after the other.
    listener.signal(libc::SIGKILL).expect("stop the listener");
    assert!(listener.wait_timeout(Duration::from_secs(10)).expect("wait").is_some(), "listener did not exit");
    let rc = s.node("rc").expect("rc");
    let mut rejected_by_rc = rc.fw_packets(netobs_e2e::lab::Chain::Forward, "tcp sport 65000").expect("counter");
    loop {
        std::thread::sleep(Duration::from_millis(700));
        let now = rc.fw_packets(netobs_e2e::lab::Chain::Forward, "tcp sport 65000").expect("counter");
        if now == rejected_by_rc {
            break;
        }
        rejected_by_rc = now;
    }
    let live = w.stop().expect("watch stops");
    assert!(live.status.success(), "{}", live.stderr);
    tcpdump.signal(libc::SIGTERM).expect("stop tcpdump");
    assert!(tcpdump.wait_timeout(Duration::from_secs(10)).expect("wait").is_some(), "tcpdump did not exit");

    let live_f = rejected(&live.findings());
    assert_eq!(live_f["flow"]["dst_port"], client_port);
    let (code, records) = read(&cap, &["--iface", "eth0"]);
    assert_eq!(code, 0, "{records:?}");
    let read_f = rejected(&last_findings(&records));
    same_finding(&live_f, &read_f);
    assert_eq!(read_f["iface"], "eth0");
    assert!(live_f["count"].as_u64() >= Some(2), "a rejected SYN-ACK and its retransmission: {live_f}");
    assert_eq!(live_f["count"].as_u64(), Some(rejected_by_rc), "every SYN-ACK rc rejected, counted once");

    if std::env::var_os("NETOBS_SAVE_LAB_CAPTURE").is_some() {
        std::fs::create_dir_all(lab_capture().parent().expect("dir")).expect("mkdir");
        std::fs::copy(&cap, lab_capture()).expect("save the capture");
        std::fs::write(lab_capture().with_extension("watch.json"), format!("{live_f}\n")).expect("save the finding");
    }
    let _ = std::fs::remove_file(&cap);
}

/// Host: the saved capture of the root test above reads as the live
/// `watch` said then (its finding is saved beside the capture).
#[test]
fn the_saved_field_notes_1_capture_reads_as_watch_saw_it_live() {
    let live: Value = serde_json::from_str(
        &std::fs::read_to_string(lab_capture().with_extension("watch.json")).expect("saved live finding"),
    )
    .expect("json");
    let (code, records) = read(&lab_capture(), &["--iface", "eth0"]);
    assert_eq!(code, 0);
    same_finding(&live, &rejected(&last_findings(&records)));
    // And every 3/10 frame in the capture is one count of it.
    let frames_3_10 = records
        .iter()
        .filter(|r| r["type"] == "frame" && r["finding"]["icmp_type"] == 3 && r["finding"]["icmp_code"] == 10)
        .count() as u64;
    assert_eq!(live["count"].as_u64(), Some(frames_3_10));
    // The capture's clock: first and last seen are the first and last 3/10 frames.
    let ts: Vec<&str> = records
        .iter()
        .filter(|r| r["type"] == "frame" && r["finding"]["icmp_code"] == 10)
        .filter_map(|r| r["ts"].as_str())
        .collect();
    let f = rejected(&last_findings(&records));
    let ms = |t: &str| t.get(..23).map(str::to_string);
    assert_eq!(f["first_seen"].as_str().and_then(ms), ts.first().and_then(|t| ms(t)), "{f}");
    assert_eq!(f["last_seen"].as_str().and_then(ms), ts.last().and_then(|t| ms(t)), "{f}");
}

/// Root: `--kernel` puts every frame of every corpus capture through the
/// real XDP program; the datapath and the host parser agree on all of
/// them (a disagreement is printed and makes the exit 1).
#[test]
fn the_real_xdp_program_agrees_with_read_on_the_corpus() {
    if !netobs_e2e::root_or_skip("the_real_xdp_program_agrees_with_read_on_the_corpus") {
        return;
    }
    let mut run = 0;
    for entry in std::fs::read_dir(corpus()).expect("corpus") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) {
            continue;
        }
        let (code, records) = read(&path, &["--kernel"]);
        let s = summary(&records);
        let k = &s["kernel"];
        assert_eq!(k["disagreed"], 0, "{name}: {k}");
        assert_eq!(code, if s["end"] == "complete" { 0 } else { 1 }, "{name}: {s}");
        // Every IP frame (and every one the shared parser called malformed) ran.
        let ran = k["run"].as_u64().unwrap_or(0) + k["not_run"].as_u64().unwrap_or(0);
        let ip = s["ip"].as_u64().unwrap_or(0)
            + s["malformed_by"]["ip_header"].as_u64().unwrap_or(0)
            + s["malformed_by"]["icmp_header"].as_u64().unwrap_or(0);
        assert!(ran >= ip, "{name}: {ran} frames ran, {ip} IP frames: {s}");
        run += k["run"].as_u64().unwrap_or(0);
    }
    assert!(run > 0);
}

/// Without the capabilities, `--kernel` is one clear line and exit 2.
#[test]
fn kernel_mode_without_privileges_says_what_is_missing() {
    if !netobs_e2e::root_or_skip("kernel_mode_without_privileges_says_what_is_missing") {
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(netobs_bin())
        .args(["read", "--kernel"])
        .arg(lab_capture())
        .output()
        .expect("setpriv");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("read --kernel needs CAP_BPF"), "{err}");
}
