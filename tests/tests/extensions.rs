//! RFC 4884 extension objects end to end: a router answers expiring
//! probes with time exceeded carrying an MPLS label stack (RFC 4950) and
//! the incoming interface's information (RFC 5837); `netobs trace` must
//! show both, and `netobs watch` (whose datapath does not copy extension
//! bytes: the verifier's limit) must say they were announced and not
//! carried.
//!
//! Linux appends RFC 5837 information itself from 6.19 on
//! (`net.ipv4.icmp_errors_extension_mask`); on older kernels the router's
//! own time exceeded is dropped by its output filter and a responder in
//! the router's namespace sends the same message the kernel would, plus
//! an MPLS stack (test traffic only, 198.18.0.0/15 inside the lab).

use std::time::Duration;

use netobs_common::ext::{IfAddr, IfRole, InterfaceInfoRepr, MplsEntryRepr, craft_structure};
use netobs_e2e::{
    Watch,
    lab::{Chain, Lab, Node},
    root_or_skip, run_netobs,
};
use serde_json::Value;

/// a (198.18.1.1) -- r (198.18.1.254 / 198.18.2.254) -- b (198.18.2.1).
struct Lab3 {
    _lab: Lab,
    a: Node,
    r: Node,
}

fn lab3() -> Lab3 {
    let lab = Lab::new();
    let a = lab.host("a").expect("host a");
    let r = lab.router("r").expect("router r");
    let b = lab.host("b").expect("host b");
    lab.link(&a, &r).v4("198.18.1.1/24", "198.18.1.254/24").names("eth0", "eth0").create().expect("link a-r");
    lab.link(&r, &b).v4("198.18.2.254/24", "198.18.2.1/24").names("eth1", "eth0").create().expect("link r-b");
    a.route("default", "198.18.1.254").expect("route on a");
    b.route("default", "198.18.2.254").expect("route on b");
    Lab3 { _lab: lab, a, r }
}

/// The extension structure r sends: labels 16 and 17 (bottom), and the
/// incoming interface `eth0` of r with its ifIndex, address and MTU.
fn extension(ifindex: u32) -> Vec<u8> {
    let mut mpls = [0u8; 8];
    MplsEntryRepr { label: 16, tc: 0, bottom: false, ttl: 1 }.emit(&mut mpls[..4]).unwrap();
    MplsEntryRepr { label: 17, tc: 5, bottom: true, ttl: 1 }.emit(&mut mpls[4..]).unwrap();
    let info = InterfaceInfoRepr {
        role: IfRole::Incoming,
        if_index: Some(ifindex),
        addr: Some(IfAddr::V4([198, 18, 1, 254])),
        name: Some(b"eth0"),
        mtu: Some(1500),
    };
    let mut p = [0u8; 32];
    let n = info.emit(&mut p).unwrap();
    craft_structure(&[(1, 1, &mpls), (2, info.c_type(), &p[..n])])
}

/// A responder in r: every IPv4 packet arriving on eth0 with TTL 1 (and
/// not for r) gets an RFC 4884 time exceeded (length field 32 words, the
/// quote padded to 128 bytes) with `ext` appended, sent with mark 0x4884
/// so r's filter (which drops the kernel's own time exceeded) lets it out.
const RESPONDER: &str = r#"
import socket, struct, sys
ext = bytes.fromhex(sys.argv[1])
rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
rx.bind(('eth0', 0))
tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
tx.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 0x4884)
def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
print('ready', flush=True)
while True:
    pkt, addr = rx.recvfrom(65535)
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    ip = pkt[14:]
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[8] != 1 or ip[16:20] == socket.inet_aton('198.18.1.254'):
        continue
    msg = bytearray(struct.pack('!BBHBBH', 11, 0, 0, 0, 32, 0) + ip[:128].ljust(128, b'\0') + ext)
    msg[2:4] = struct.pack('!H', csum(bytes(msg)))
    tx.sendto(bytes(msg), (socket.inet_ntoa(ip[12:16]), 0))
"#;

fn assert_extensions(e: &Value, ifindex: u32, what: &str) {
    assert_eq!(e["layout"], "rfc4884", "{what}: {e}");
    assert_eq!(e["checksum"], "correct", "{what}: {e}");
    assert_eq!(
        e["mpls"],
        serde_json::json!([
            { "label": 16, "tc": 0, "bottom": false, "ttl": 1 },
            { "label": 17, "tc": 5, "bottom": true, "ttl": 1 },
        ]),
        "{what}: {e}"
    );
    assert_eq!(
        e["interfaces"],
        serde_json::json!([{ "role": "incoming", "ifindex": ifindex, "address": "198.18.1.254", "name": "eth0", "mtu": 1500 }]),
        "{what}: {e}"
    );
    assert_eq!(e["cut"], false, "{what}: {e}");
}

#[test]
fn trace_and_watch_show_mpls_labels_and_the_incoming_interface() {
    if !root_or_skip("trace_and_watch_show_mpls_labels_and_the_incoming_interface") {
        return;
    }
    let Lab3 { _lab, a, r } = lab3();
    let ifindex = r.ifindex("eth0").expect("r eth0 ifindex");
    r.fw_drop(Chain::Output, "meta mark != 0x4884 icmp type time-exceeded").expect("drop r's own time exceeded");
    let hex: String = extension(ifindex).iter().map(|b| format!("{b:02x}")).collect();
    let responder = r.spawn(&["python3", "-c", RESPONDER, &hex]).expect("responder");
    // Poll until the responder's raw sockets are open (a loaded machine).
    let ready = responder.take_stdout().map(|out| {
        use std::io::BufRead as _;
        std::io::BufReader::new(out).lines().next().and_then(Result::ok)
    });
    assert_eq!(ready.flatten().as_deref(), Some("ready"), "responder did not start");

    let w = Watch::start(&a, &["-i", "eth0", "--no-metrics"]).expect("watch");
    let out = run_netobs(&a, &["trace", "198.18.2.1", "--json", "-m", "3", "-q", "1"]).expect("trace --json");
    assert!(out.status.success(), "trace: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    let trace: Value = serde_json::from_slice(&out.stdout).expect("trace JSON");
    let hop1 = &trace["hops"][0];
    assert_eq!(hop1["ttl"], 1, "{trace}");
    let probe = &hop1["probes"][0];
    assert_eq!(probe["from"], "198.18.1.254", "{trace}");
    assert_eq!(probe["reply"], "time_exceeded", "{trace}");
    assert_extensions(&probe["extensions"], ifindex, "trace hop 1");
    // The destination's port unreachable carries none.
    assert!(trace["hops"][1]["probes"][0].get("extensions").is_none(), "{trace}");

    // Text: as traceroute -e prints the labels.
    let text = run_netobs(&a, &["trace", "198.18.2.1", "-m", "2", "-q", "1"]).expect("trace");
    let text = String::from_utf8_lossy(&text.stdout);
    let line1 = text.lines().find(|l| l.trim_start().starts_with("1 ")).unwrap_or_else(|| panic!("{text}"));
    eprintln!("trace hop 1: {line1}");
    assert!(line1.contains("<MPLS:L=16,E=0,S=0,T=1/L=17,E=5,S=1,T=1>"), "{text}");
    assert!(line1.contains(&format!("incoming interface eth0 (ifIndex {ifindex}, 198.18.1.254, MTU 1500)")), "{text}");

    // watch saw the same time exceeded through XDP. The datapath does not
    // copy the extension objects (the verifier's limit): the finding says
    // they were announced and not carried, and where to get them.
    let f = w
        .wait_for(Duration::from_secs(20), |r| {
            r["type"] == "finding" && r["verdict"] == "ttl_expired" && r.get("extensions").is_some()
        })
        .unwrap_or_else(|| panic!("no time exceeded finding with extensions in {:?}", w.records()));
    assert_eq!(f["reporter"], "198.18.1.254");
    assert_eq!(f["extensions"]["not_carried"], true, "{f}");
    assert_eq!(f["extensions"]["layout"], "rfc4884", "{f}");
    let text = f["text"].as_str().unwrap_or_default();
    eprintln!("watch finding: {text}");
    assert!(text.contains("RFC 4884 extensions announced, not carried by the datapath"), "{text}");
    let done = w.stop().expect("stop watch");
    assert!(done.status.success(), "{}", done.stderr);
}

/// Linux 6.19+: the router's kernel appends RFC 5837 information itself
/// when `net.ipv4.icmp_errors_extension_mask` is 1. On kernels without the
/// sysctl there is nothing to test (this one returns early, saying so).
#[test]
fn kernel_rfc5837_interface_information_when_the_kernel_has_it() {
    if !root_or_skip("kernel_rfc5837_interface_information_when_the_kernel_has_it") {
        return;
    }
    if !std::path::Path::new("/proc/sys/net/ipv4/icmp_errors_extension_mask").exists() {
        eprintln!("this kernel has no net.ipv4.icmp_errors_extension_mask (Linux 6.19+): nothing to test");
        return;
    }
    let Lab3 { _lab, a, r } = lab3();
    r.sysctl(&["net.ipv4.icmp_errors_extension_mask=1"]).expect("enable RFC 5837 on r");
    let ifindex = r.ifindex("eth0").expect("r eth0 ifindex");
    let w = Watch::start(&a, &["-i", "eth0", "--no-metrics"]).expect("watch");
    let out = run_netobs(&a, &["trace", "198.18.2.1", "--json", "-m", "2", "-q", "1"]).expect("trace --json");
    let trace: Value = serde_json::from_slice(&out.stdout).expect("trace JSON");
    let e = &trace["hops"][0]["probes"][0]["extensions"];
    let i = &e["interfaces"][0];
    assert_eq!(i["role"], "incoming", "{trace}");
    assert_eq!(i["ifindex"], ifindex, "{trace}");
    assert_eq!(i["name"], "eth0", "{trace}");
    assert_eq!(i["address"], "198.18.1.254", "{trace}");
    assert_eq!(i["mtu"], 1500, "{trace}");
    let f = w
        .wait_for(Duration::from_secs(20), |r| r["type"] == "finding" && r.get("extensions").is_some())
        .unwrap_or_else(|| panic!("no finding with extensions in {:?}", w.records()));
    assert_eq!(f["extensions"]["not_carried"], true, "{f}");
    let _ = w.stop();
}
