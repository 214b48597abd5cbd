//! netobs beside other eBPF programs, on the legacy TC path, and following
//! interfaces with `--all`: the real binary in labs, with "foreign"
//! programs (fixtures in netobs-ebpf/src/foreign.rs, loaded by the test
//! itself from the embedded object) standing in for a DDoS filter or Cilium.

use std::{fs::File, os::fd::AsRawFd as _, time::Duration};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuArray,
    programs::{
        LinkOrder, SchedClassifier, Xdp, XdpMode,
        tc::{TcAttachOptions, TcAttachType},
    },
};
use netobs_e2e::{
    TwoHop, Watch,
    lab::{self, Chain, Lab, Node, scenarios},
    root_or_skip, run_netobs, two_hop_reject_lab,
};
use serde_json::Value;

const FOREIGN_XDP: &str = "foreign_xdp_ok";
const FOREIGN_TC: &str = "foreign_tc_drop";
/// Slots of the fixtures' `FOREIGN_COUNTS` map.
const XDP_SEEN: u32 = 0;
const ICMP_DROPPED: u32 = 1;
const LEGACY_TC: (&str, &str) = ("NETOBS_TEST_LEGACY_TC", "1");

/// Runs `f` on a thread that has entered `node`'s network namespace, so
/// aya resolves interface names and attaches there.
fn in_netns<T: Send>(node: &Node, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let path = lab::ns_path(node.ns_name());
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            // SAFETY: setns on this thread only, with a namespace fd we own.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {}: {}", path.display(), std::io::Error::last_os_error());
            }
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
    })
}

/// A foreign program, attached through a bpf_link the test holds: it stays
/// until this is dropped.
struct Foreign {
    ebpf: Ebpf,
    name: &'static str,
}

impl Foreign {
    fn load() -> Result<Ebpf> {
        EbpfLoader::new().load(netobs::kernel::loader::OBJECT).context("loading the embedded object")
    }

    /// `foreign_xdp_ok` in native mode on `iface`.
    fn xdp(node: &Node, iface: &str) -> Result<Foreign> {
        in_netns(node, || {
            let mut ebpf = Foreign::load()?;
            let prog: &mut Xdp = ebpf.program_mut(FOREIGN_XDP).context("no foreign XDP program")?.try_into()?;
            prog.load()?;
            prog.attach(iface, XdpMode::Driver).context("attaching the foreign XDP program")?;
            Ok(Foreign { ebpf, name: FOREIGN_XDP })
        })
    }

    /// `foreign_tc_drop` on TCX ingress and egress of `iface`, attached the
    /// default way (at the end of the chain, before netobs arrives).
    fn tcx_drop(node: &Node, iface: &str) -> Result<Foreign> {
        in_netns(node, || {
            let mut ebpf = Foreign::load()?;
            let prog: &mut SchedClassifier =
                ebpf.program_mut(FOREIGN_TC).context("no foreign TC program")?.try_into()?;
            prog.load()?;
            for at in [TcAttachType::Ingress, TcAttachType::Egress] {
                prog.attach_with_options(iface, at, TcAttachOptions::TcxOrder(LinkOrder::last()))
                    .context("attaching the foreign TCX program")?;
            }
            Ok(Foreign { ebpf, name: FOREIGN_TC })
        })
    }

    /// `foreign_xdp_ok` attached the old way, through netlink (`ip link set
    /// ... xdpgeneric pinned`), with no bpf_link: what `--force` can remove.
    /// Nothing is held by the test; the interface holds the program.
    fn xdp_netlink(node: &Node, iface: &str, fs: &BpfFs) -> Result<u32> {
        let pin = fs.0.join("foreign_xdp_ok");
        let id = in_netns(node, || {
            let mut ebpf = Foreign::load()?;
            let prog: &mut Xdp = ebpf.program_mut(FOREIGN_XDP).context("no foreign XDP program")?.try_into()?;
            prog.load()?;
            prog.pin(&pin).context("pinning the foreign program")?;
            Ok(prog.info()?.id())
        })?;
        node.ip(&["link", "set", "dev", iface, "xdpgeneric", "pinned", pin.to_str().context("pin path")?])?;
        std::fs::remove_file(&pin).context("unpinning")?;
        Ok(id)
    }

    fn id(&self) -> u32 {
        let p = self.ebpf.program(self.name).expect("foreign program");
        match p {
            aya::programs::Program::Xdp(x) => x.info().expect("xdp info").id(),
            aya::programs::Program::SchedClassifier(c) => c.info().expect("tc info").id(),
            _ => panic!("unexpected program type"),
        }
    }

    fn count(&self, slot: u32) -> u64 {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("FOREIGN_COUNTS").expect("FOREIGN_COUNTS")).expect("per-CPU array");
        map.get(&slot, 0).expect("read FOREIGN_COUNTS").iter().sum()
    }
}

/// A bpffs mounted for one test: `ip -n` remounts /sys, so it cannot see
/// pins under /sys/fs/bpf. Unmounted on drop.
struct BpfFs(std::path::PathBuf);

impl BpfFs {
    fn mount(tag: &str) -> BpfFs {
        let dir = std::path::PathBuf::from(format!("/run/nobs-bpffs-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bpffs mount point");
        let st = std::process::Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&dir).status().expect("mount");
        assert!(st.success(), "mounting a bpffs at {}", dir.display());
        BpfFs(dir)
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Name of program `id` (`bpftool prog show id`).
fn prog_name(id: u64) -> String {
    std::process::Command::new("bpftool")
        .args(["-j", "prog", "show", "id", &id.to_string()])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
        .and_then(|v| v["name"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Every XDP and TC attachment on `ifaces` of `node`, as (kind, program
/// name): XDP and clsact filters from `bpftool net show`, TCX from a
/// BPF_PROG_QUERY (this bpftool predates TCX).
fn net_show(node: &Node, ifaces: &[&str]) -> Vec<(String, String)> {
    let out = node.run(&["bpftool", "-j", "net", "show"]).expect("bpftool net show");
    let v: Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    let mut found = Vec::new();
    for entry in v.as_array().into_iter().flatten() {
        for x in entry["xdp"].as_array().into_iter().flatten() {
            let name = x["id"].as_u64().map(prog_name).unwrap_or_default();
            found.push((format!("xdp/{}", x["devname"].as_str().unwrap_or("")), name));
        }
        for t in entry["tc"].as_array().into_iter().flatten() {
            found.push((t["kind"].as_str().unwrap_or("").to_string(), t["name"].as_str().unwrap_or("").to_string()));
        }
    }
    let tcx = in_netns(node, || {
        let mut tcx = Vec::new();
        for iface in ifaces {
            for (at, kind) in [(TcAttachType::Ingress, "tcx/ingress"), (TcAttachType::Egress, "tcx/egress")] {
                let (_, progs) = SchedClassifier::query_tcx(iface, at)?;
                for p in progs {
                    tcx.push((format!("{kind}/{iface}"), p.name_as_str().unwrap_or("").to_string()));
                }
            }
        }
        Ok(tcx)
    })
    .expect("TCX query");
    found.extend(tcx);
    found
}

fn netobs_attachments(node: &Node, ifaces: &[&str]) -> Vec<(String, String)> {
    net_show(node, ifaces).into_iter().filter(|(_, n)| n.starts_with("netobs_")).collect()
}

/// `InDestUnreachs` of the node's host stack (/proc/net/snmp is per netns).
fn in_dest_unreachs(node: &Node) -> u64 {
    let text = node.run_ok(&["cat", "/proc/net/snmp"]).expect("/proc/net/snmp");
    let mut icmp = text.lines().filter(|l| l.starts_with("Icmp:"));
    let (names, values) = (icmp.next().unwrap_or(""), icmp.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "InDestUnreachs")
        .and_then(|(_, v)| v.parse().ok())
        .expect("InDestUnreachs in /proc/net/snmp")
}

/// The acl-reject scenario's server: a listener on the rejected port, and
/// a client connection whose SYN-ACKs rc rejects with ICMP 3/10.
fn provoke_acl_reject(s: &scenarios::ScenarioLab) {
    let port = scenarios::ACL_PORT;
    let _listener = netobs_e2e::listener(&s.server, port, 30).expect("listener");
    std::thread::sleep(Duration::from_millis(300));
    s.client
        .run(&[
            "python3",
            "-c",
            &format!(
                "import socket\ns=socket.socket()\ns.settimeout(3.5)\ntry: s.connect(('{}',{port}))\nexcept Exception: pass",
                s.server_v4
            ),
        ])
        .expect("client");
}

fn attach_record<'a>(records: &'a [Value], iface: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["type"] == "attach" && r["iface"] == iface)
        .unwrap_or_else(|| panic!("no attach record for {iface} in {records:?}"))
}

#[test]
fn foreign_xdp_keeps_its_slot_and_netobs_still_explains() {
    if !root_or_skip("foreign_xdp_keeps_its_slot_and_netobs_still_explains") {
        return;
    }
    let s = scenarios::build("acl-reject").unwrap();
    let foreign = Foreign::xdp(&s.server, "eth0").unwrap();
    let id = foreign.id();

    // auto, no flags: XDP is taken, so TC ingress beside it.
    let w = Watch::start(&s.server, &["-i", "eth0", "--no-metrics", "--update-interval", "1"]).unwrap();
    provoke_acl_reject(&s);
    w.wait_for(Duration::from_secs(15), |r| r["type"] == "finding" && r["verdict"] == "rejected")
        .expect("a rejected finding while XDP belongs to someone else");
    let out = w.stop().unwrap();
    assert!(out.status.success(), "{}", out.stderr);

    let a = attach_record(&out.records, "eth0");
    assert_eq!(a["ingress"], "tc_ingress", "{a}");
    assert_eq!(a["tc"], "tcx", "{a}");
    assert_eq!(a["xdp_holder"]["id"], id, "{a}");
    assert_eq!(a["xdp_holder"]["name"], FOREIGN_XDP, "{a}");
    assert!(
        out.stderr.contains(FOREIGN_XDP) && out.stderr.contains(&format!("id {id}")),
        "the note names the program holding XDP: {}",
        out.stderr
    );
    let f = out.findings().into_iter().find(|f| f["verdict"] == "rejected").expect("rejected finding");
    assert_eq!(f["reporter"], "198.18.2.1");
    assert_eq!((f["icmp_type"].as_u64(), f["icmp_code"].as_u64()), (Some(3), Some(10)));
    assert_eq!(f["direction"], "return");

    // The foreign program still holds XDP and still sees traffic.
    let xdp: Vec<_> = net_show(&s.server, &["eth0"]).into_iter().filter(|(k, _)| k.starts_with("xdp/")).collect();
    assert_eq!(xdp, vec![("xdp/eth0".to_string(), FOREIGN_XDP.to_string())], "XDP slot after netobs");
    let before = foreign.count(XDP_SEEN);
    s.client
        .run(&["ping", "-c", "2", "-i", "0.2", "-W", "2", &s.server_v4.to_string()])
        .expect("ping through foreign XDP");
    assert!(foreign.count(XDP_SEEN) >= before + 2, "foreign XDP still runs: {before} -> {}", foreign.count(XDP_SEEN));
    assert!(netobs_attachments(&s.server, &["eth0"]).is_empty(), "{:?}", net_show(&s.server, &["eth0"]));
}

#[test]
fn foreign_tcx_drop_runs_after_netobs_which_still_counts() {
    if !root_or_skip("foreign_tcx_drop_runs_after_netobs_which_still_counts") {
        return;
    }
    let s = scenarios::build("acl-reject").unwrap();
    let foreign = Foreign::tcx_drop(&s.server, "eth0").unwrap();
    let unreach_before = in_dest_unreachs(&s.server);

    // TC ingress, so netobs and the foreign program share one TCX chain.
    let w = Watch::start(&s.server, &["-i", "eth0", "--no-metrics", "--xdp-mode", "tc"]).unwrap();
    // netobs went ahead of the program that was there first, both ways.
    let chains = net_show(&s.server, &["eth0"]);
    for (dir, ours) in [("ingress", "netobs_tc_ingre"), ("egress", "netobs_tc_egres")] {
        let order: Vec<&str> =
            chains.iter().filter(|(k, _)| *k == format!("tcx/{dir}/eth0")).map(|(_, n)| n.as_str()).collect();
        assert_eq!(order, vec![ours, FOREIGN_TC], "TCX {dir} chain order");
    }
    provoke_acl_reject(&s);
    std::thread::sleep(Duration::from_millis(500));
    let out = w.stop().unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(attach_record(&out.records, "eth0")["tc"], "tcx");

    let rejected = s.node("rc").unwrap().fw_packets(Chain::Forward, "tcp sport 65000").unwrap();
    assert!(rejected >= 2, "rc rejected {rejected} SYN-ACKs");
    let counted = out.icmp_count("eth0", 3, 10);
    assert_eq!(counted, rejected, "netobs at the head counts every 3/10: {:?}", out.counters());
    assert!(
        foreign.count(ICMP_DROPPED) >= counted,
        "the foreign program dropped them ({})",
        foreign.count(ICMP_DROPPED)
    );
    assert_eq!(in_dest_unreachs(&s.server), unreach_before, "no 3/10 reached the server's stack");

    // Still attached and still dropping after netobs left.
    let after = net_show(&s.server, &["eth0"]);
    assert!(after.iter().any(|(k, n)| k == "tcx/ingress/eth0" && n == FOREIGN_TC), "{after:?}");
    assert!(netobs_attachments(&s.server, &["eth0"]).is_empty(), "{:?}", net_show(&s.server, &["eth0"]));
    let dropped = foreign.count(ICMP_DROPPED);
    let ping = s.client.run_unchecked(&["ping", "-c", "1", "-W", "1", &s.server_v4.to_string()]).unwrap();
    assert!(!ping.status.success(), "the echo request must be dropped by the foreign program");
    assert!(foreign.count(ICMP_DROPPED) > dropped);
}

/// a -- r -- b; b has nothing on UDP 9999, so a gets port unreachables.
fn two_hop_lab() -> (Lab, Node, Node) {
    let TwoHop { lab, a, r: _r, b } = two_hop_reject_lab();
    (lab, a, b)
}

fn send_udp(a: &Node, port: u16, n: usize) {
    a.run(&[
        "python3",
        "-c",
        &format!("import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range({n}): s.sendto(b'x',('198.18.2.1',{port})); time.sleep(0.05)"),
    ])
    .expect("udp traffic");
}

fn tc_show(node: &Node, what: &[&str]) -> String {
    let mut argv = vec!["tc"];
    argv.extend_from_slice(what);
    node.run_ok(&argv).unwrap_or_default()
}

#[test]
fn legacy_tc_creates_clsact_when_missing_and_removes_only_that() {
    if !root_or_skip("legacy_tc_creates_clsact_when_missing_and_removes_only_that") {
        return;
    }
    let (_lab, a, _b) = two_hop_lab();
    assert!(!tc_show(&a, &["qdisc", "show", "dev", "eth0"]).contains("clsact"));

    // 1. No qdisc: netobs creates it, puts its filters first, removes it.
    let w = Watch::start_env(&a, &["-i", "eth0", "--no-metrics", "--xdp-mode", "tc"], &[LEGACY_TC]).unwrap();
    assert!(tc_show(&a, &["qdisc", "show", "dev", "eth0"]).contains("clsact"));
    let ingress = tc_show(&a, &["filter", "show", "dev", "eth0", "ingress"]);
    assert!(ingress.contains("pref 1 bpf") && ingress.contains("netobs_tc_ingre"), "{ingress}");
    assert!(tc_show(&a, &["filter", "show", "dev", "eth0", "egress"]).contains("netobs_tc_egres"));
    send_udp(&a, 9999, 3);
    w.wait_for(Duration::from_secs(10), |r| r["type"] == "finding" && r["icmp_code"] == 3).expect("3/3 finding");
    let out = w.stop().unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    let rec = attach_record(&out.records, "eth0");
    assert_eq!((&rec["tc"], &rec["clsact_created"]), (&Value::from("clsact"), &Value::from(true)), "{rec}");
    assert_eq!(rec["kernel"]["tcx"], "no", "{rec}");
    assert!(out.stderr.contains("clsact"), "a note says which path: {}", out.stderr);
    assert_eq!(out.icmp_count("eth0", 3, 3), 3, "{:?}", out.counters());
    assert!(!tc_show(&a, &["qdisc", "show", "dev", "eth0"]).contains("clsact"), "the qdisc netobs created is gone");

    // 2. Someone's clsact already there: used, left in place, emptied of ours.
    a.run(&["tc", "qdisc", "add", "dev", "eth0", "clsact"]).unwrap();
    let w = Watch::start_env(&a, &["-i", "eth0", "--no-metrics", "--xdp-mode", "tc"], &[LEGACY_TC]).unwrap();
    send_udp(&a, 7000, 2);
    w.wait_for(Duration::from_secs(10), |r| r["type"] == "finding" && r["icmp_code"] == 13).expect("3/13 finding");
    let out = w.stop().unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(attach_record(&out.records, "eth0")["clsact_created"], false);
    assert_eq!(out.icmp_count("eth0", 3, 13), 2, "{:?}", out.counters());
    assert!(tc_show(&a, &["qdisc", "show", "dev", "eth0"]).contains("clsact"), "a pre-existing clsact stays");
    for dir in ["ingress", "egress"] {
        let filters = tc_show(&a, &["filter", "show", "dev", "eth0", dir]);
        assert!(!filters.contains("netobs"), "netobs filters left on {dir}: {filters}");
    }

    // 3. cls_bpf filters outlive a SIGKILL; the next start replaces them.
    let w = Watch::start_env(&a, &["-i", "eth0", "--no-metrics", "--xdp-mode", "tc"], &[LEGACY_TC]).unwrap();
    // SAFETY: kill(2) on our own child (`ip netns exec` execs netobs).
    unsafe { libc::kill(w.pid() as i32, libc::SIGKILL) };
    let _ = w.stop();
    assert!(tc_show(&a, &["filter", "show", "dev", "eth0", "ingress"]).contains("netobs_tc_ingre"));
    let w = Watch::start_env(&a, &["-i", "eth0", "--no-metrics", "--xdp-mode", "tc"], &[LEGACY_TC]).unwrap();
    let ingress = tc_show(&a, &["filter", "show", "dev", "eth0", "ingress"]);
    assert_eq!(
        ingress.lines().filter(|l| l.contains("netobs_tc_ingre")).count(),
        1,
        "one netobs filter, not two: {ingress}"
    );
    // A second netobs running beside it keeps its hands off the live one's.
    let beside = Watch::start_env(&a, &["-i", "eth0", "--no-metrics", "--xdp-mode", "tc"], &[LEGACY_TC]).unwrap();
    let ingress = tc_show(&a, &["filter", "show", "dev", "eth0", "ingress"]);
    assert_eq!(ingress.lines().filter(|l| l.contains("netobs_tc_ingre")).count(), 2, "{ingress}");
    let out = beside.stop().unwrap();
    let note = attach_record(&out.records, "eth0")["note"].as_str().unwrap_or("").to_string();
    assert!(note.contains("another running netobs"), "{note}");
    let ingress = tc_show(&a, &["filter", "show", "dev", "eth0", "ingress"]);
    assert_eq!(ingress.lines().filter(|l| l.contains("netobs_tc_ingre")).count(), 1, "{ingress}");
    let out = w.stop().unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    let note = attach_record(&out.records, "eth0")["note"].as_str().unwrap_or("").to_string();
    assert!(note.contains("left by an earlier netobs"), "{note}");
    assert!(!tc_show(&a, &["filter", "show", "dev", "eth0", "ingress"]).contains("netobs"));
}

#[test]
fn all_follows_interfaces_that_appear_and_vanish() {
    if !root_or_skip("all_follows_interfaces_that_appear_and_vanish") {
        return;
    }
    let (_lab, a, _b) = two_hop_lab();
    let w = Watch::start(&a, &["--all", "--no-metrics"]).unwrap();
    assert_eq!(w.records().iter().filter(|r| r["type"] == "attach").count(), 1, "only eth0 at start");

    a.ip(&["link", "add", "hp0", "type", "veth", "peer", "name", "hp1"]).unwrap();
    a.ip(&["link", "set", "hp0", "up"]).unwrap();
    a.ip(&["link", "set", "hp1", "up"]).unwrap();
    for iface in ["hp0", "hp1"] {
        w.wait_for(Duration::from_secs(15), |r| r["type"] == "attach" && r["iface"] == iface)
            .unwrap_or_else(|| panic!("no attach record for {iface}: {:?}", w.records()));
    }
    let during = net_show(&a, &["eth0", "hp0", "hp1"]);
    assert!(during.iter().any(|(k, n)| k == "xdp/hp0" && n == "netobs_xdp"), "{during:?}");
    assert!(during.iter().any(|(k, n)| k == "tcx/egress/hp1" && n == "netobs_tc_egres"), "{during:?}");

    // Deleting one end deletes the pair: both are forgotten.
    a.ip(&["link", "del", "hp0"]).unwrap();
    for iface in ["hp0", "hp1"] {
        w.wait_for(Duration::from_secs(15), |r| {
            r["type"] == "detach" && r["reason"] == "vanished" && r["ifaces"][0] == iface
        })
        .unwrap_or_else(|| panic!("no detach record for {iface}: {:?}", w.records()));
    }
    // Still watching eth0.
    send_udp(&a, 9999, 2);
    w.wait_for(Duration::from_secs(10), |r| r["type"] == "finding" && r["icmp_code"] == 3).expect("3/3 finding");
    let out = w.stop().unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    let exit = out.records.iter().rev().find(|r| r["type"] == "detach").expect("final detach");
    assert_eq!(exit["ifaces"], serde_json::json!(["eth0"]), "{exit}");
    assert!(netobs_attachments(&a, &["eth0"]).is_empty(), "{:?}", net_show(&a, &["eth0"]));
}

#[test]
fn only_force_replaces_a_foreign_xdp_program() {
    if !root_or_skip("only_force_replaces_a_foreign_xdp_program") {
        return;
    }
    let (_lab, a, _b) = two_hop_lab();
    let xdp_names = |node: &Node| -> Vec<String> {
        net_show(node, &["eth0"]).into_iter().filter(|(k, _)| k == "xdp/eth0").map(|(_, n)| n).collect()
    };

    // Held through a bpf_link: not even --force can take it.
    let linked = Foreign::xdp(&a, "eth0").unwrap();
    let out = run_netobs(&a, &["watch", "-i", "eth0", "--force", "--no-metrics", "--json"]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "--force must fail on a bpf_link: {stderr}");
    assert!(stderr.contains("bpf_link") && stderr.contains(FOREIGN_XDP), "{stderr}");
    assert_eq!(xdp_names(&a), vec![FOREIGN_XDP.to_string()]);
    // A forced mode without --force refuses, naming the holder.
    let out = run_netobs(&a, &["watch", "-i", "eth0", "--xdp-mode", "native", "--no-metrics", "--json"]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(FOREIGN_XDP) && stderr.contains("--force"), "{stderr}");
    assert!(netobs_attachments(&a, &["eth0"]).is_empty(), "nothing attached: {:?}", net_show(&a, &["eth0"]));
    drop(linked);
    assert!(xdp_names(&a).is_empty());

    // Attached through netlink: --force removes it (over netlink, no `ip`).
    let fs = BpfFs::mount("force");
    let id = Foreign::xdp_netlink(&a, "eth0", &fs).unwrap();
    assert_eq!(xdp_names(&a), vec![FOREIGN_XDP.to_string()]);
    let w = Watch::start(&a, &["-i", "eth0", "--force", "--no-metrics"]).unwrap();
    assert_eq!(xdp_names(&a), vec!["netobs_xdp".to_string()]);
    let out = w.stop().unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    let rec = attach_record(&out.records, "eth0");
    assert_eq!(rec["ingress"], "xdp_native", "{rec}");
    assert_eq!(rec["xdp_holder"]["id"], id, "{rec}");
    assert!(rec["note"].as_str().unwrap_or("").contains("--force detached"), "{rec}");
    assert!(xdp_names(&a).is_empty(), "netobs detached, the foreign program stays removed");
}
