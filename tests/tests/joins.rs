//! The joins (conntrack NAT original, route-cache PMTU, socket state) run
//! over netlink, off the drain path: root-only, the real binary in labs.
//!
//! - With `ip` and `conntrack` unreachable (an empty PATH), the NAT
//!   gateway and route-cache joins still name the client and the MTU.
//! - Under a burst of ICMP errors with thousands of distinct reporters and
//!   quoted flows (every one a new finding that needs host lookups),
//!   `--duration` and SIGTERM are honoured within about a second.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use netobs_e2e::{WatchOutput, lab::Chain, lab::Lab, lab::Node, lab::Reject, netobs_bin, root_or_skip};
use serde_json::Value;

/// `netobs watch --json ARGS` in `node`, started through `env` with
/// `PATH` set to an empty directory: no `ip`, no `conntrack`, nothing.
/// (The lab itself is driven with `ip`/`nft` by this test process.)
struct BareWatch {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    _empty: EmptyDir,
}

/// A fresh empty directory, removed on drop.
struct EmptyDir(std::path::PathBuf);

impl EmptyDir {
    fn new() -> EmptyDir {
        let p = std::env::temp_dir().join(format!("netobs-empty-path-{}-{:?}", std::process::id(), Instant::now()));
        std::fs::create_dir_all(&p).expect("creating an empty PATH directory");
        EmptyDir(p)
    }
}

impl Drop for EmptyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

impl BareWatch {
    fn start(node: &Node, args: &[&str]) -> BareWatch {
        let empty = EmptyDir::new();
        for tool in ["ip", "conntrack", "ss", "nft"] {
            assert!(!empty.0.join(tool).exists());
        }
        let bin = netobs_bin();
        let mut cmd = node.command("/usr/bin/env");
        cmd.arg("-i")
            .arg(format!("PATH={}", empty.0.display()))
            .arg("RUST_LOG=warn")
            .arg(&bin)
            .arg("watch")
            .arg("--json")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning netobs watch");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let mut w = BareWatch { child, lines, reader: Some(reader), _empty: empty };
        let start = Instant::now();
        while !w.lines().iter().any(|l| l.contains("\"type\":\"attach\"")) {
            if let Ok(Some(status)) = w.child.try_wait() {
                panic!("netobs watch exited early ({status}): {}", w.stderr());
            }
            assert!(start.elapsed() < Duration::from_secs(30), "netobs watch did not attach within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        w
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn records(&self) -> Vec<Value> {
        self.lines().iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    fn findings_seen(&self) -> usize {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().filter(|l| l.contains("\"type\":\"finding\"")).count()
    }

    fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(r) = self.records().into_iter().find(|r| pred(r)) {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Waits up to `limit` for the process to exit; returns when it did
    /// (before its output is parsed) and what it printed.
    fn wait_exit(&mut self, limit: Duration) -> (Instant, WatchOutput) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("netobs watch still running {limit:?} later");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let exited = Instant::now();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let stderr = self.stderr();
        (exited, WatchOutput { status, records: self.records(), stderr })
    }

    fn sigterm(&self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }
}

impl Drop for BareWatch {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn py(node: &Node, code: &str) -> String {
    let out = node.run(&["python3", "-c", code]).expect("python3 traffic helper");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// client -- gw (NAT) -- r -- server; r rejects tcp/443 and its link to
/// the server has MTU 1400.
fn nat_lab() -> (Lab, Node, Node, Node) {
    let lab = Lab::new();
    let client = lab.host("client").unwrap();
    let gw = lab.router("gw").unwrap();
    let r = lab.router("r").unwrap();
    let server = lab.host("server").unwrap();
    lab.link(&client, &gw).v4("198.18.1.5/24", "198.18.1.254/24").names("eth0", "eth0").create().unwrap();
    lab.link(&gw, &r).v4("198.18.2.254/24", "198.18.2.1/24").names("eth1", "eth0").create().unwrap();
    lab.link(&r, &server).v4("198.18.3.254/24", "198.18.3.1/24").names("eth1", "eth0").create().unwrap();
    r.set_mtu("eth1", 1400).unwrap();
    server.set_mtu("eth0", 1400).unwrap();
    client.route("default", "198.18.1.254").unwrap();
    gw.route("default", "198.18.2.1").unwrap();
    server.route("default", "198.18.3.254").unwrap();
    gw.nft("add table ip nat\nadd chain ip nat post { type nat hook postrouting priority 100 ; }\nadd rule ip nat post oifname \"eth1\" masquerade\n").unwrap();
    r.fw_reject(Chain::Forward, "tcp dport 443", Reject::ADMIN_PROHIBITED).unwrap();
    (lab, client, gw, server)
}

#[test]
fn nat_and_route_cache_joins_need_no_ip_or_conntrack_binary() {
    if !root_or_skip("nat_and_route_cache_joins_need_no_ip_or_conntrack_binary") {
        return;
    }
    let (_lab, client, gw, _server) = nat_lab();
    let mut w = BareWatch::start(&gw, &["-i", "eth1", "--no-metrics"]);
    // A client connection NATed by gw and rejected by r...
    py(
        &client,
        "import socket\ns=socket.socket(); s.settimeout(2)\ntry: s.connect(('198.18.3.1',443))\nexcept Exception: pass",
    );
    // ... and gw's own DF datagram, too big for r's 1400-byte link.
    py(
        &gw,
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IP,10,2)\ns.sendto(b'x'*1472,('198.18.3.1',9))",
    );
    let both = |r: &Value| r["type"] == "finding" && (r["verdict"] == "rejected" || r["verdict"] == "frag_needed");
    w.wait_for(Duration::from_secs(10), |r| both(r) && r["verdict"] == "rejected").expect("a rejected finding");
    w.wait_for(Duration::from_secs(10), |r| both(r) && r["verdict"] == "frag_needed").expect("a frag-needed finding");
    w.sigterm();
    let (_, out) = w.wait_exit(Duration::from_secs(20));
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);

    let fs = out.findings();
    let nat = fs.iter().find(|f| f["verdict"] == "rejected").expect("rejected");
    assert_eq!(nat["flow"]["src"], "198.18.2.254", "the quote shows the translated source: {nat}");
    assert_eq!(nat["direction"], "forwarded", "{nat}");
    assert_eq!(nat["nat_original"]["src"], "198.18.1.5", "conntrack over netlink names the client: {nat}");
    assert_eq!(nat["nat_original"]["dst_port"], 443);
    assert!(nat["unknown"].is_null(), "every lookup answered: {nat}");
    assert!(nat["text"].as_str().unwrap_or("").contains("NAT of client 198.18.1.5"), "{nat}");

    let big = fs.iter().find(|f| f["verdict"] == "frag_needed").expect("frag_needed");
    assert_eq!(big["flow"]["src"], "198.18.2.254");
    assert_eq!(big["mtu"], 1400);
    assert_eq!(big["pmtu_cached"], 1400, "the route cache, read over rtnetlink: {big}");
    assert!(big["nat_original"].is_null(), "our own datagram was not NATed: {big}");
    assert!(big["advice"].as_str().unwrap_or("").contains("route cache took it"), "{big}");
    assert!(!out.stderr.contains("No such file"), "nothing was spawned: {}", out.stderr);
}

/// Python for `attacker`: for `secs` seconds, frag-needed errors to
/// 198.18.1.1 from `reporters` spoofed routers (198.18.128.0/17), each
/// quoting a TCP segment 198.18.1.1:port -> 198.18.9.x:443, so that
/// every packet is a new finding about our own traffic (socket, NAT and
/// route-cache lookups each). Prints how many it sent.
fn flood_script(reporters: u32, secs: f64) -> String {
    format!(
        r#"
import socket,struct,time
def csum(b):
    if len(b)%2: b+=b'\0'
    s=sum(struct.unpack('!%dH'%(len(b)//2),b)); s=(s>>16)+(s&0xffff); s+=s>>16
    return (~s)&0xffff
me=socket.inet_aton('198.18.1.1')
pkts=[]
for i in range({reporters}):
    rep=socket.inet_aton('198.18.%d.%d'%(128+(i>>8)%128,i&255))
    dst=socket.inet_aton('198.18.9.%d'%(i%250+1))
    qip=struct.pack('!BBHHHBBH4s4s',0x45,0,1500,i&0xffff,0x4000,63,6,0,me,dst)
    qtcp=struct.pack('!HHI',10000+i%50000,443,i)
    icmp=struct.pack('!BBHHH',3,4,0,0,1400)+qip+qtcp
    icmp=icmp[:2]+struct.pack('!H',csum(icmp))+icmp[4:]
    ip=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(icmp),0,0,60,1,0,rep,me)
    pkts.append(ip+icmp)
s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_RAW)
n=0; end=time.time()+{secs}
while time.time()<end:
    for p in pkts:
        try: s.sendto(p,('198.18.1.1',0)); n+=1
        except OSError: pass
print(n,flush=True)
"#
    )
}

fn flood_lab() -> (Lab, Node, Node) {
    let lab = Lab::new();
    let a = lab.host("a").unwrap();
    let b = lab.host("b").unwrap();
    lab.link(&a, &b).v4("198.18.1.1/24", "198.18.1.2/24").names("eth0", "eth0").create().unwrap();
    a.route("default", "198.18.1.2").unwrap();
    b.route("default", "198.18.1.1").unwrap();
    (lab, a, b)
}

const REPORTERS: u32 = 16_000;
/// Sample every error so each distinct (flow, reporter) is a new finding.
const FLOOD_ARGS: [&str; 9] =
    ["-i", "eth0", "--no-metrics", "--events-per-sec", "1000000", "--burst", "1000000", "--max-flows", "100000"];

#[test]
fn duration_and_sigterm_are_honoured_under_a_burst_of_new_findings() {
    if !root_or_skip("duration_and_sigterm_are_honoured_under_a_burst_of_new_findings") {
        return;
    }
    let (_lab, a, b) = flood_lab();

    // 1. --duration 3s while the burst runs: exit within about a second
    // of the deadline (measured from the attach line, printed just before
    // the deadline is set).
    let flood = b.spawn(&["python3", "-c", &flood_script(REPORTERS, 6.0)]).expect("flood");
    let mut args = FLOOD_ARGS.to_vec();
    args.extend(["--duration", "3s"]);
    let mut w = BareWatch::start(&a, &args);
    let attached = Instant::now();
    let (exited, out) = w.wait_exit(Duration::from_secs(30));
    let ran = exited.duration_since(attached);
    let findings = out.records.iter().filter(|r| r["type"] == "finding").count();
    // The line budget prints a few first sightings per second and folds
    // the rest: the new entries are the printed plus the folded ones.
    let folded: u64 = out.records.iter().filter(|r| r["type"] == "folded").filter_map(|r| r["findings"].as_u64()).sum();
    eprintln!(
        "--duration 3s under the burst: exited {ran:?} after attaching, {findings} finding lines, {folded} folded"
    );
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    assert!(
        findings as u64 + folded > 1000,
        "the burst made many new findings ({findings} + {folded}): {}",
        out.stderr
    );
    assert!(ran < Duration::from_millis(4_200), "--duration 3s took {ran:?} under load");
    let counted = out.icmp_count("eth0", 3, 4);
    eprintln!("  {counted} frag-needed counted by the kernel");
    assert!(counted > findings as u64, "every error counted, {counted}");

    let sent = flood.wait_output(Duration::from_secs(30)).expect("flood output");
    eprintln!("  the flood sent {} errors", String::from_utf8_lossy(&sent.stdout).trim());

    // 2. SIGTERM under the same burst: exit within a second.
    let flood = b.spawn(&["python3", "-c", &flood_script(REPORTERS, 10.0)]).expect("flood");
    let mut w = BareWatch::start(&a, &FLOOD_ARGS);
    let start = Instant::now();
    // The line budget prints a handful of first sightings per second and
    // folds the rest, so a few lines already mean the burst is being
    // drained; signal it in the middle of that.
    while w.findings_seen() < 10 {
        assert!(start.elapsed() < Duration::from_secs(8), "only {} findings under the burst", w.findings_seen());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    w.sigterm();
    let sent = Instant::now();
    let (exited, out) = w.wait_exit(Duration::from_secs(30));
    let took = exited.duration_since(sent);
    eprintln!(
        "SIGTERM under the burst: exited in {took:?}, {} finding lines",
        out.records.iter().filter(|r| r["type"] == "finding").count()
    );
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    assert!(took < Duration::from_millis(1_200), "SIGTERM took {took:?} under load");
    assert!(out.records.iter().any(|r| r["type"] == "detach"), "it detached on the way out");
    let _ = flood.finish(Duration::from_secs(1));
}
