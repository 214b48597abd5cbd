//! netobs as a service: least privilege, a daemon that survives, exit codes
//! scripts can use. The real binary in lab namespaces; root only (the
//! unprivileged runs are made with `setpriv` from root).

use std::{
    collections::BTreeSet,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use netobs_e2e::{
    TwoHop, Watch, WatchOutput,
    lab::{Chain, Lab, Node, Reject, scenarios},
    netobs_bin, root_or_skip, run_netobs, two_hop_reject_lab,
};
use serde_json::Value;

/// What a service unit grants: exactly these, as ambient capabilities.
const CAPS: &str = "+bpf,+net_admin,+perfmon,+net_raw";

/// How netobs is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum As {
    Root,
    /// `nobody`, holding only [`CAPS`].
    Service,
    /// `nobody` with no capability at all.
    Nobody,
}

fn bin() -> String {
    netobs_bin().to_string_lossy().into_owned()
}

/// `netobs` in `node`, as `who`.
fn netobs(node: &Node, who: As) -> Command {
    let mut c = match who {
        As::Root => return node.command(&bin()),
        _ => node.command("setpriv"),
    };
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
    if who == As::Service {
        c.arg(format!("--inh-caps={CAPS}")).arg(format!("--ambient-caps={CAPS}"));
    }
    c.arg(bin());
    c
}

fn run(node: &Node, who: As, args: &[&str]) -> Result<std::process::Output> {
    netobs(node, who).args(args).output().context("running netobs")
}

/// A python3 one-liner run in a lab node (test traffic only).
fn py(node: &Node, code: &str) -> String {
    let out = node.run(&["python3", "-c", code]).expect("python3 traffic helper");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A `netobs watch --json` in the background, as root or as the service,
/// attached to every `-i` interface.
fn live(node: &Node, who: As, args: &[&str]) -> Result<Watch> {
    Watch::start_command(netobs(node, who), args, Duration::from_secs(60)).with_context(|| format!("watch as {who:?}"))
}

/// Stops a [`live`] watch with `sig` and collects its output.
fn stop(w: Watch, sig: i32) -> Result<WatchOutput> {
    w.stop_with(sig, Duration::from_secs(30))
}

/// `("prog", id)` / `("link", id)` for every BPF object `pid` holds a
/// descriptor on.
fn held_bpf_objects(pid: u32) -> Result<BTreeSet<(&'static str, u64)>> {
    let mut out = BTreeSet::new();
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(text) = std::fs::read_to_string(entry?.path()) else { continue };
        let field =
            |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(id) = field("link_id:") {
            out.insert(("link", id));
        } else if let Some(id) = field("prog_id:") {
            out.insert(("prog", id));
        }
    }
    Ok(out)
}

/// Whether the kernel still has BPF object `(kind, id)`.
fn exists(kind: &str, id: u64) -> bool {
    Command::new("bpftool")
        .args([kind, "show", "id", &id.to_string()])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(true)
}

/// Waits (freeing is asynchronous) until none of `objects` exists.
fn wait_gone(objects: &BTreeSet<(&'static str, u64)>) -> Vec<(&'static str, u64)> {
    let start = Instant::now();
    loop {
        let left: Vec<_> = objects.iter().copied().filter(|(k, id)| exists(k, *id)).collect();
        if left.is_empty() || start.elapsed() > Duration::from_secs(20) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// XDP and TCX attachments in a namespace, as bpftool lists them.
fn attached_in(node: &Node) -> String {
    let out = node.run(&["bpftool", "net", "show"]).expect("bpftool net show");
    let xdp = node.run(&["ip", "-d", "link", "show"]).expect("ip -d link show");
    let mut s: Vec<String> =
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("netobs")).map(str::to_string).collect();
    s.extend(String::from_utf8_lossy(&xdp.stdout).lines().filter(|l| l.contains("prog/")).map(str::to_string));
    s.join("\n")
}

/// Field notes 1 once, watched as `who`: the rejected finding, how many
/// SYN-ACKs the customer router rejected, and the client's port.
fn field_notes_1(who: As) -> (Value, u64, u64, WatchOutput) {
    let s = scenarios::build("acl-reject").unwrap();
    let port = scenarios::ACL_PORT;
    let _listener = netobs_e2e::listener(&s.server, port, 60).unwrap();
    wait_listening(&s.server, port);
    let w = live(&s.server, who, &["-i", "eth0", "--no-metrics", "--update-interval", "1"]).unwrap();
    let client_port: u64 = py(
        &s.client,
        &format!("import socket\ns=socket.socket()\ns.bind(('198.18.1.1',0))\nprint(s.getsockname()[1], flush=True)\ns.settimeout(3.5)\ntry: s.connect(('{}',{port}))\nexcept Exception: pass", s.server_v4),
    )
    .lines()
    .next()
    .and_then(|l| l.trim().parse().ok())
    .expect("client port");
    let out = stop(w, libc::SIGTERM).unwrap();
    assert!(out.status.success(), "{who:?}: {}", out.stderr);
    let rejected = s.node("rc").unwrap().fw_packets(Chain::Forward, "tcp sport 65000").unwrap();
    let f = out
        .findings()
        .into_iter()
        .find(|f| f["verdict"] == "rejected")
        .unwrap_or_else(|| panic!("{who:?}: no rejected finding in {:?}\n{}", out.records, out.stderr));
    assert!(!attached_in(&s.server).contains("netobs"), "{who:?} left something attached");
    (f, rejected, client_port, out)
}

/// The fields of a finding that make the verdict.
fn verdict_fields(f: &Value) -> Value {
    serde_json::json!({
        "verdict": f["verdict"], "reporter": f["reporter"], "icmp_type": f["icmp_type"],
        "icmp_code": f["icmp_code"], "direction": f["direction"], "tcp_flags": f["tcp_flags"],
        "src": f["flow"]["src"], "src_port": f["flow"]["src_port"], "dst": f["flow"]["dst"],
        "distance": f["hops"]["distance"], "quoted_ttl": f["hops"]["quoted_ttl"],
        "outer_ttl": f["hops"]["outer_ttl"], "agree": f["hops"]["agree"],
        "socket_state": f["socket_state"], "annotation": f["annotation"],
    })
}

#[test]
fn field_notes_1_as_an_unprivileged_service_gives_the_root_verdict() {
    if !root_or_skip("field_notes_1_as_an_unprivileged_service_gives_the_root_verdict") {
        return;
    }
    let (root, root_rejected, root_port, _) = field_notes_1(As::Root);
    let (svc, svc_rejected, svc_port, out) = field_notes_1(As::Service);
    assert_eq!(verdict_fields(&svc), verdict_fields(&root), "service:\n{svc}\nroot:\n{root}");
    // Each run counted every SYN-ACK its own customer router rejected.
    assert_eq!(root["count"], root_rejected);
    assert_eq!(svc["count"], svc_rejected);
    assert_eq!(root["flow"]["dst_port"], root_port);
    assert_eq!(svc["flow"]["dst_port"], svc_port);
    // The values themselves, as the root test asserts them.
    assert_eq!(svc["reporter"], "198.18.2.1");
    assert_eq!(svc["icmp_code"], 10);
    assert_eq!(svc["hops"]["distance"], 2);
    assert_eq!(svc["socket_state"], "SYN-RECV", "sock_diag works unprivileged: {svc}");
    // The icmp_send tracepoint needs no tracefs: nothing was lost.
    assert!(!out.stderr.contains("icmp_send"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn without_capabilities_one_line_names_them_and_exits_2() {
    if !root_or_skip("without_capabilities_one_line_names_them_and_exits_2") {
        return;
    }
    let lab = Lab::new();
    let a = lab.host("a").unwrap();
    let b = lab.host("b").unwrap();
    lab.link(&a, &b).v4("198.18.1.1/24", "198.18.1.2/24").names("eth0", "eth0").create().unwrap();
    for (args, caps) in [
        (vec!["watch", "-i", "eth0", "--no-metrics"], "CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON"),
        (vec!["tcp", "198.18.1.2:80"], "CAP_NET_RAW"),
        (vec!["trace", "198.18.1.2"], "CAP_NET_RAW"),
        (vec!["pmtu", "198.18.1.2"], "CAP_NET_RAW"),
        (vec!["explain", "198.18.1.2"], "CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_NET_RAW"),
        (vec!["explain", "198.18.1.2", "--no-kernel"], "CAP_NET_RAW"),
    ] {
        let out = run(&a, As::Nobody, &args).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line, not a cascade: {err}");
        assert!(err.starts_with(&format!("netobs: error: netobs {} needs {caps}", args[0])), "{args:?}: {err}");
        assert!(err.contains("setcap") && err.contains("AmbientCapabilities="), "says how to grant: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert!(!attached_in(&a).contains("netobs"));
}

#[test]
fn watch_json_into_head_ends_quietly_with_status_0() {
    if !root_or_skip("watch_json_into_head_ends_quietly_with_status_0") {
        return;
    }
    let TwoHop { lab, a, .. } = two_hop_reject_lab();
    let pipeline = |err: &std::path::Path| {
        format!(
            "timeout 60 {} watch -i eth0 --json --no-metrics 2>{} | head -1; echo \"status=${{PIPESTATUS[0]}}\"",
            bin(),
            err.display()
        )
    };
    let dir = std::env::temp_dir().join(format!("netobs-head-{}", lab.id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err_path = dir.join("stderr");

    // Quiet: no line follows the first, the closed pipe is noticed anyway.
    let start = Instant::now();
    let out = a.run(&["bash", "-c", &pipeline(&err_path)]).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.ends_with("status=0\n"), "{stdout}");
    assert!(start.elapsed() < Duration::from_secs(30), "noticed without a write: {:?}", start.elapsed());

    // Errors flow the whole time: one every 10 ms for 20 s.
    let traffic = a
        .spawn(&["python3", "-c", "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(2000): s.sendto(b'x',('198.18.2.1',7000)); time.sleep(0.01)"])
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let out = a.run(&["bash", "-c", &pipeline(&err_path)]).unwrap();
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let mut lines = stdout.lines();
    let first: Value = serde_json::from_str(lines.next().unwrap_or("")).expect("head got one JSON line");
    assert_eq!(first["type"], "attach");
    assert_eq!(lines.next(), Some("status=0"), "watch must exit 0 when its reader goes: {stdout}\n{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert!(took < Duration::from_secs(30), "it stopped because the pipe closed, not by timeout: {took:?}");
    // The orderly shutdown detached.
    assert!(!attached_in(&a).contains("netobs"), "{}", attached_in(&a));
    traffic.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until something listens on TCP `port` in `node` (python starts
/// slowly on a loaded machine).
fn wait_listening(node: &Node, port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let out = node.run(&["ss", "-Hltn", &format!("sport = :{port}")]).expect("ss");
        if !out.stdout.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on {port} after 30 s");
}

/// Exit status of `netobs ARGS` in `node`, with its stderr for messages.
fn code(node: &Node, args: &[&str]) -> (Option<i32>, String) {
    let out = run_netobs(node, args).unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    (out.status.code(), err)
}

#[test]
fn exit_codes_say_what_was_found() {
    if !root_or_skip("exit_codes_say_what_was_found") {
        return;
    }
    let lab = Lab::new();
    let c = lab.host("c").unwrap();
    let r = lab.router("r").unwrap();
    let s = lab.host("s").unwrap();
    lab.link(&c, &r).v4("198.18.1.1/24", "198.18.1.254/24").names("eth0", "eth0").create().unwrap();
    lab.link(&r, &s).v4("198.18.2.254/24", "198.18.2.1/24").names("eth1", "eth0").create().unwrap();
    c.route("default", "198.18.1.254").unwrap();
    s.route("default", "198.18.2.254").unwrap();
    // s: 8080 open, 81 closed (RST), 82 silently dropped; r rejects 83.
    let _listener = s
        .spawn(&["python3", "-c", "import socket,time\nl=socket.socket()\nl.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\nl.bind(('0.0.0.0',8080))\nl.listen(16)\ntime.sleep(120)"])
        .unwrap();
    s.fw_drop(Chain::Input, "tcp dport 82").unwrap();
    r.fw_reject(Chain::Forward, "tcp dport 83", Reject::ADMIN_PROHIBITED).unwrap();
    // r drops forwarded UDP to 33434: a UDP trace dies after hop 1.
    r.fw_drop(Chain::Forward, "udp dport 33434").unwrap();
    wait_listening(&s, 8080);

    let fast = ["--attempts", "2", "--wait", "300ms"];
    for (port, want) in [(8080, 0), (81, 1), (82, 1), (83, 1)] {
        let target = format!("198.18.2.1:{port}");
        let mut args = vec!["tcp", target.as_str()];
        args.extend(fast);
        let (got, err) = code(&c, &args);
        assert_eq!(got, Some(want), "tcp port {port}: {err}");
    }
    let (got, err) = code(&c, &["trace", "-n", "198.18.2.1", "--proto", "tcp", "--port", "8080", "--wait", "500ms"]);
    assert_eq!(got, Some(0), "trace reached: {err}");
    let (got, err) = code(&c, &["trace", "-n", "198.18.2.1", "--wait", "300ms", "--gap", "2", "-q", "1"]);
    assert_eq!(got, Some(1), "trace not reached: {err}");
    let (got, err) = code(&c, &["explain", "198.18.2.1", "--port", "8080", "--wait", "500ms", "-m", "6"]);
    assert_eq!(got, Some(0), "explain reachable: {err}");
    let (got, err) = code(&c, &["explain", "198.18.2.1", "--port", "83", "--wait", "500ms", "-m", "6"]);
    assert_eq!(got, Some(1), "explain rejected: {err}");
    // Usage errors: clap's, and ours (a host that cannot be probed).
    for args in [vec!["tcp"], vec!["watch", "-i", "eth0", "--bogus"], vec!["tcp", "198.18.2.1"], vec!["pmtu", "x..y"]] {
        let (got, err) = code(&c, &args);
        assert_eq!(got, Some(2), "{args:?}: {err}");
    }
    // The probes and explain as the service user: same answers, and
    // explain still has its kernel view.
    for (args, want) in [
        (vec!["tcp", "198.18.2.1:8080", "--attempts", "2", "--wait", "300ms"], 0),
        (vec!["tcp", "198.18.2.1:83", "--attempts", "2", "--wait", "300ms"], 1),
        (vec!["trace", "-n", "198.18.2.1", "--proto", "tcp", "--port", "8080", "--wait", "500ms"], 0),
        (vec!["pmtu", "198.18.2.1", "--proto", "icmp", "--wait", "500ms"], 0),
    ] {
        let out = run(&c, As::Service, &args).unwrap();
        assert_eq!(out.status.code(), Some(want), "{args:?} as the service: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = run(&c, As::Service, &["explain", "198.18.2.1", "--port", "83", "--wait", "500ms", "-m", "6", "--json"])
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("explain JSON");
    assert_eq!(report["verdict"]["kind"], "rejected", "{report}");
    assert!(report["evidence"]["kernel"].is_object(), "kernel view as the service: {}", report["evidence"]);
    assert!(report["evidence"]["kernel"]["icmp_errors"].as_u64().unwrap_or(0) >= 1, "{}", report["evidence"]);
    // --help documents them.
    let help = run_netobs(&c, &["tcp", "--help"]).unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Exit status:") && help.contains("0  open"), "{help}");
}

#[test]
fn pmtu_exit_codes_found_and_blackhole() {
    if !root_or_skip("pmtu_exit_codes_found_and_blackhole") {
        return;
    }
    for (scenario, want) in [("pmtu-ok", 0), ("pmtu-blackhole", 1)] {
        let s = scenarios::build(scenario).unwrap();
        let target = s.server_v4.to_string();
        let (got, err) = code(&s.client, &["pmtu", &target, "--wait", "500ms", "--no-locate"]);
        assert_eq!(got, Some(want), "{scenario}: {err}");
    }
}

#[test]
fn after_sigkill_a_restart_attaches_cleanly_and_leaves_nothing() {
    if !root_or_skip("after_sigkill_a_restart_attaches_cleanly_and_leaves_nothing") {
        return;
    }
    let lab = Lab::new();
    let a = lab.host("a").unwrap();
    let b = lab.host("b").unwrap();
    lab.link(&a, &b).v4("198.18.1.1/24", "198.18.1.2/24").names("eth0", "eth0").create().unwrap();
    let args = ["-i", "eth0", "--no-metrics", "--xdp-mode", "native"];

    let first = live(&a, As::Service, &args).unwrap();
    let held = held_bpf_objects(first.pid()).unwrap();
    let links = held.iter().filter(|(k, _)| *k == "link").count();
    // XDP + TC egress + the icmp_send, kfree_skb and the two TCP
    // retransmission raw tracepoints, all bpf_links, all in place by the
    // time the attach record is out.
    assert_eq!(links, 6, "expected XDP, TCX egress and four tracepoint links: {held:?}");
    let killed = stop(first, libc::SIGKILL).unwrap();
    assert_eq!(killed.status.code(), None, "killed by the signal");
    assert_eq!(wait_gone(&held), vec![], "SIGKILL left objects behind");
    assert!(!attached_in(&a).contains("netobs"), "{}", attached_in(&a));

    // The restart attaches natively again (no leftover XDP program to
    // refuse) and works.
    let second = live(&a, As::Service, &args).unwrap();
    let attach = second.records().into_iter().find(|r| r["type"] == "attach").unwrap();
    assert_eq!(attach["ingress"], "xdp_native", "{attach}");
    assert_eq!(attach["egress"], true, "{attach}");
    py(&a, "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.sendto(b'x',('198.18.1.2',9999))");
    second
        .wait_for(Duration::from_secs(10), |r| r["type"] == "finding" && r["icmp_code"] == 3)
        .expect("the restarted watch sees the port unreachable");
    let held2 = held_bpf_objects(second.pid()).unwrap();
    assert!(held2.is_disjoint(&held), "fresh objects, nothing reused from the killed run");
    let out = stop(second, libc::SIGTERM).unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(!out.stderr.contains("icmp_send"), "tracepoint attached both times: {}", out.stderr);
    assert!(!out.stderr.contains("kfree_skb"), "tracepoint attached both times: {}", out.stderr);
    assert_eq!(wait_gone(&held2), vec![], "the second exit left objects behind");
    assert!(!attached_in(&a).contains("netobs"), "{}", attached_in(&a));
}

/// The icmp_send tracepoint fires for the whole host: a watch in one
/// namespace must not count what another namespace's kernel generated.
#[test]
fn generated_icmp_is_counted_only_in_its_own_namespace() {
    if !root_or_skip("generated_icmp_is_counted_only_in_its_own_namespace") {
        return;
    }
    let s = scenarios::build("gateway-df").unwrap();
    let gw = s.node("gw").unwrap();
    let on_gw = live(gw, As::Service, &["-i", "eth0", "--no-metrics"]).unwrap();
    let on_src = live(&s.client, As::Service, &["-i", "eth0", "--no-metrics"]).unwrap();
    py(
        &s.client,
        &format!(
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IP,10,3)\nfor i in range(3): s.sendto(b'x'*1472,('{}',9)); time.sleep(0.2)",
            s.server_v4
        ),
    );
    std::thread::sleep(Duration::from_millis(500));
    let gw_out = stop(on_gw, libc::SIGTERM).unwrap();
    let src_out = stop(on_src, libc::SIGTERM).unwrap();
    let generated = |o: &WatchOutput| -> u64 {
        o.counters()
            .and_then(|c| c["icmp"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|r| r["direction"] == "generated" && r["type"] == 3 && r["code"] == 4)
            .filter_map(|r| r["count"].as_u64())
            .sum()
    };
    assert_eq!(generated(&gw_out), 3, "gw generated the frag-needed: {:?}", gw_out.counters());
    assert_eq!(generated(&src_out), 0, "src generated none: {:?}", src_out.counters());
    // src received them.
    let received: u64 = src_out
        .counters()
        .and_then(|c| c["icmp"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|r| r["direction"] == "received" && r["type"] == 3 && r["code"] == 4)
        .filter_map(|r| r["count"].as_u64())
        .sum();
    assert_eq!(received, 3);
}

/// Polls `pred` for up to `timeout`.
fn eventually(timeout: Duration, pred: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn sighup_reopens_the_json_file_for_logrotate() {
    if !root_or_skip("sighup_reopens_the_json_file_for_logrotate") {
        return;
    }
    let lab = Lab::new();
    let a = lab.host("a").unwrap();
    let b = lab.host("b").unwrap();
    lab.link(&a, &b).v4("198.18.1.1/24", "198.18.1.2/24").names("eth0", "eth0").create().unwrap();
    // A log directory the service user owns, as a unit's LogsDirectory= would.
    let dir = std::env::temp_dir().join(format!("netobs-hup-{}", lab.id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let path = dir.join("events.json");
    let rotated = dir.join("events.json.1");
    let w = live(&a, As::Service, &["-i", "eth0", "--no-metrics", "--json-file", path.to_str().unwrap()]).unwrap();
    let send = |port: u16| {
        py(
            &a,
            &format!(
                "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.sendto(b'x',('198.18.1.2',{port}))"
            ),
        )
    };
    let has = |p: &std::path::Path, needle: &str| std::fs::read_to_string(p).is_ok_and(|t| t.contains(needle));
    send(9001);
    assert!(eventually(Duration::from_secs(10), || has(&path, "\"dst_port\":9001")), "first finding in the file");
    // logrotate: move the file away, then SIGHUP.
    std::fs::rename(&path, &rotated).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(w.pid() as i32, libc::SIGHUP) };
    assert!(eventually(Duration::from_secs(10), || path.exists()), "SIGHUP reopened the file by name");
    send(9002);
    assert!(eventually(Duration::from_secs(10), || has(&path, "\"dst_port\":9002")), "new lines go to the new file");
    let out = stop(w, libc::SIGTERM).unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(has(&rotated, "\"type\":\"attach\"") && has(&rotated, "\"dst_port\":9001"));
    assert!(!has(&rotated, "\"dst_port\":9002"), "nothing new went to the rotated file");
    assert!(has(&path, "\"type\":\"detach\""), "the last lines are in the new file");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `Cap*:` and `NoNewPrivs:` of every thread of `pid`.
fn thread_status(pid: u32) -> Vec<(String, u64, u64, u64, u64, u64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = t.unwrap().path();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let hex = |name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        };
        let nnp = status.lines().find_map(|l| l.strip_prefix("NoNewPrivs:")).map(|v| v.trim() == "1");
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_string();
        out.push((
            comm,
            hex("CapEff:").unwrap_or(u64::MAX),
            hex("CapPrm:").unwrap_or(u64::MAX),
            hex("CapAmb:").unwrap_or(u64::MAX),
            hex("CapBnd:").unwrap_or(u64::MAX),
            u64::from(nnp == Some(true)),
        ));
    }
    out
}

/// Once attached, `watch` keeps CAP_NET_ADMIN only (with --all: what
/// attaching needs), in every thread
/// (capabilities are per thread: the metrics server's runtime worker
/// started before the drop and must lose them too).
#[test]
fn after_attach_every_thread_keeps_only_what_it_still_needs() {
    if !root_or_skip("after_attach_every_thread_keeps_only_what_it_still_needs") {
        return;
    }
    const NET_ADMIN: u64 = 1 << 12;
    let lab = Lab::new();
    let a = lab.host("a").unwrap();
    let b = lab.host("b").unwrap();
    lab.link(&a, &b).v4("198.18.1.1/24", "198.18.1.2/24").names("eth0", "eth0").create().unwrap();
    // With --all it keeps what attaching a new interface needs.
    const ATTACH: u64 = NET_ADMIN | 1 << 38 | 1 << 39;
    for (who, iface, keep) in [
        (As::Service, ["-i", "eth0"], NET_ADMIN),
        (As::Root, ["-i", "eth0"], NET_ADMIN),
        (As::Service, ["--all", "-v"], ATTACH),
    ] {
        let mut args = iface.to_vec();
        args.extend(["--metrics-addr", "127.0.0.1:9464"]);
        let w = live(&a, who, &args).unwrap();
        let threads = thread_status(w.pid());
        assert!(threads.len() >= 2, "{who:?}: the loop and the metrics worker at least: {threads:?}");
        for (comm, eff, prm, amb, bnd, nnp) in &threads {
            assert_eq!((*eff, *prm, *amb, *nnp), (keep, keep, 0, 1), "{who:?} {args:?} thread {comm}: {threads:?}");
            if who == As::Root {
                // Root may reduce the bounding set too: exec gains nothing.
                assert_eq!(*bnd, keep, "{who:?} thread {comm} bounding set");
            }
        }
        // Still serving metrics and still reading the kernel counters.
        let metrics = py(
            &a,
            "import urllib.request\nprint(urllib.request.urlopen('http://127.0.0.1:9464/metrics').read().decode())",
        );
        assert!(metrics.contains("netobs_"), "{who:?}: {metrics}");
        let out = stop(w, libc::SIGTERM).unwrap();
        assert!(out.status.success(), "{who:?}: {}", out.stderr);
        assert!(out.counters().is_some(), "{who:?}: counters read after the drop");
    }
}
