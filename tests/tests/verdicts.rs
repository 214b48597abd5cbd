//! `netobs explain` findings that rest on firm ground: the real binary in
//! network-namespace labs, asserted from `--json`. Root only (under CI=true
//! a missing root fails).
//!
//! - a rate-limited hop on a reachable path is a first-class finding;
//! - a busy interface (ICMP errors for other flows) does not make a
//!   return-path verdict: only errors quoting netobs's own probes count;
//! - a forged frag-needed (MTU 9000 for a 1500-byte packet this host never
//!   sent) is flagged, not believed, and no MSS advice comes from it; `watch`
//!   flags it too;
//! - answers to our own probes dropped by this host's INPUT firewall still
//!   make a return-path verdict.

use std::{
    fs::File,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use netobs_common::craft::{Frame, Tcp, cut};
use netobs_e2e::{Watch, lab, root_or_skip, run_netobs};
use netobs_lab::{Chain, Node, scenarios};
use serde_json::Value;

/// Runs netobs with `--json` and parses its output; fails with stderr.
/// `explain` exits 0 or 1 (problem found), both with a JSON verdict.
fn json(node: &Node, args: &[&str]) -> Result<Value> {
    let mut argv = args.to_vec();
    argv.push("--json");
    let out = run_netobs(node, &argv)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !matches!(out.status.code(), Some(0 | 1)) {
        bail!("netobs {args:?} failed ({}): {stderr}\n{stdout}", out.status);
    }
    let v: Value = serde_json::from_str(&stdout).with_context(|| format!("parsing JSON: {stdout}\n{stderr}"))?;
    eprintln!("netobs {args:?}: {}", v["verdict"]["headline"].as_str().unwrap_or(""));
    Ok(v)
}

fn show(v: &Value) -> String {
    serde_json::to_string_pretty(&v["verdict"]).unwrap_or_default()
}

fn findings<'a>(v: &'a Value, kind: &str) -> Vec<&'a Value> {
    v["verdict"]["findings"].as_array().map(|a| a.iter().filter(|f| f["kind"] == kind).collect()).unwrap_or_default()
}

/// Runs `f` on a thread inside `node`'s network namespace until `stop`.
fn in_netns_until<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    node: &Node,
    stop: &'s AtomicBool,
    f: impl Fn() -> Result<()> + Send + 's,
) -> std::thread::ScopedJoinHandle<'s, Result<u64>> {
    let path = lab::ns_path(node.ns_name());
    scope.spawn(move || {
        let ns = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: plain syscall, on this thread only.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {}: {}", path.display(), std::io::Error::last_os_error());
        }
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            f()?;
            n += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(n)
    })
}

/// (e) The `icmp-ratelimit` scenario: r2 (hop 2) answers only part of a
/// burst. `explain` says so in its headline and as a finding of its own,
/// says the destination is reachable, and does not call it a problem.
#[test]
fn explain_rate_limited_hop_on_reachable_path_is_a_finding() -> Result<()> {
    if !root_or_skip("explain_rate_limited_hop_on_reachable_path_is_a_finding") {
        return Ok(());
    }
    let s = scenarios::build("icmp-ratelimit")?;
    let target = s.server_v4.to_string();
    let v = json(&s.client, &["explain", &target])?;
    let d = &v["verdict"];
    assert_eq!(d["kind"], "icmp_rate_limited", "{}", show(&v));
    assert_eq!(d["problem"], false, "{}", show(&v));
    assert_eq!(d["dest_hop"], 4, "{}", show(&v));
    let headline = d["headline"].as_str().unwrap_or("");
    assert!(headline.contains("destination reachable") && headline.contains("not packet loss"), "{headline}");
    let f = findings(&v, "icmp_rate_limited");
    assert_eq!(f.len(), 1, "{}", show(&v));
    assert_eq!(f[0]["hop"], 2, "{}", show(&v));
    assert_eq!(f[0]["addr"], s.hop_v4(2)?.to_string());
    // The limit really dropped ICMP errors of hop 2.
    assert!(s.node("r2")?.fw_packets(Chain::Output, "limit rate")? >= 1, "{}", s.describe());
    Ok(())
}

/// (f) Everything vanishes after hop 2 (hop 3 drops the client's packets
/// and sends no ICMP), while another flow of the client draws a stream of
/// port unreachables from hop 1. The kernel sees many more ICMP errors than
/// the probes got, but none quote the probes: no return-path verdict.
#[test]
fn explain_on_a_busy_interface_does_not_suspect_the_return_path() -> Result<()> {
    if !root_or_skip("explain_on_a_busy_interface_does_not_suspect_the_return_path") {
        return Ok(());
    }
    let s = scenarios::linear("busy-iface", &["client", "r1", "r2", "r3", "server"], &[])?;
    let r3 = s.node("r3")?;
    r3.nft(&format!(
        "add rule inet netobs output meta l4proto {{ icmp, ipv6-icmp }} drop\n\
         add rule inet netobs forward ip saddr {} counter drop",
        s.client_v4
    ))?;
    let noise_dst = SocketAddr::new(s.hop_v4(1)?.into(), 9);
    let stop = AtomicBool::new(false);
    let (v, sent) = std::thread::scope(|scope| -> Result<(Value, u64)> {
        let noise = in_netns_until(scope, &s.client, &stop, move || {
            let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("binding the noise socket")?;
            sock.send_to(b"unrelated", noise_dst).context("sending noise")?;
            Ok(())
        });
        // Let the noise start before the probes.
        std::thread::sleep(Duration::from_millis(200));
        let v = json(&s.client, &["explain", &s.server_v4.to_string(), "--port", "443"]);
        stop.store(true, Ordering::Relaxed);
        let sent = noise.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?;
        Ok((v?, sent))
    })?;
    let d = &v["verdict"];
    assert!(sent >= 10, "noise datagrams sent: {sent}");
    let k = &v["evidence"]["kernel"];
    let icmp_errors = k["icmp_errors"].as_u64().unwrap_or(0);
    let matched = k["matched_by_probes"].as_u64().unwrap_or(0);
    // The interface was busy: the old rule (all errors > matched) would fire.
    assert!(icmp_errors > matched + 5, "not busy enough: {k}");
    assert!(k["foreign"].as_u64().unwrap_or(0) >= 5, "{k}");
    assert_eq!(k["lost"], 0, "every answer to our probes reached the sockets: {k}");
    assert_eq!(d["kind"], "silently_dropped", "{}", show(&v));
    assert_eq!(d["hop"], 2, "{}", show(&v));
    assert!(d["return_path"][0].as_str().unwrap_or("").contains("rests partly"), "{}", show(&v));
    assert!(r3.fw_packets(Chain::Forward, "drop")? >= 1, "{}", s.describe());
    Ok(())
}

/// A forged frag-needed from `from` to `to`: MTU 9000 for a 1500-byte TCP
/// packet `to` -> 198.18.3.1:443 that `to` never sent (port 40404, no
/// socket), quoted as routers do (header + 8 bytes).
fn forged_frag_needed(from: Ipv4Addr, to: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    const PACKET_LEN: usize = 1500;
    let inner = Frame::ipv4(to, dst).df().ttl(63).tcp(Tcp::new(40404, 443).payload_len(PACKET_LEN - 40)).ip_bytes();
    assert_eq!(inner.len(), PACKET_LEN);
    Frame::ipv4(from, to).ttl(64).icmp_error(3, 4, &cut(&inner, 28)).mtu(9000).ip_bytes()
}

/// Sends one IPv4 packet (header included) with a raw socket.
fn send_raw(packet: &[u8], to: Ipv4Addr) -> Result<()> {
    // SAFETY: plain socket calls with valid buffers; the fd is closed below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
        if fd < 0 {
            bail!("raw socket: {}", std::io::Error::last_os_error());
        }
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(to.octets()) },
            sin_zero: [0; 8],
        };
        let r = libc::sendto(
            fd,
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r < 0 {
            bail!("sendto: {err}");
        }
    }
    Ok(())
}

/// (g) Hop 1 keeps sending the client a forged frag-needed. `explain` flags
/// it (both reasons), believes nothing from it (path MTU stays 1500, no MSS
/// advice), and `watch` flags it too.
#[test]
fn forged_ptb_is_flagged_not_believed() -> Result<()> {
    if !root_or_skip("forged_ptb_is_flagged_not_believed") {
        return Ok(());
    }
    let s = scenarios::linear("forged-ptb", &["client", "r1", "r2", "server"], &[])?;
    let r1 = s.hop(1)?;
    let packet = forged_frag_needed(s.hop_v4(1)?, s.client_v4, Ipv4Addr::new(198, 18, 3, 1));
    let client = s.client_v4;
    let stop = AtomicBool::new(false);
    let forge = || {
        let p = packet.clone();
        move || send_raw(&p, client)
    };
    let v = std::thread::scope(|scope| -> Result<Value> {
        let sender = in_netns_until(scope, r1, &stop, forge());
        std::thread::sleep(Duration::from_millis(200));
        let v = json(&s.client, &["explain", &s.server_v4.to_string()]);
        stop.store(true, Ordering::Relaxed);
        let sent = sender.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?;
        assert!(sent >= 5, "forged PTBs sent: {sent}");
        v
    })?;
    let d = &v["verdict"];
    assert_eq!(d["kind"], "reachable", "{}", show(&v));
    assert_eq!(d["mtu"], 1500, "{}", show(&v));
    let f = findings(&v, "ptb_not_believed");
    assert!(!f.is_empty(), "{}", show(&v));
    assert_eq!(f[0]["mtu"], 9000, "{}", show(&v));
    assert_eq!(f[0]["addr"], s.hop_v4(1)?.to_string());
    let reasons: Vec<&str> = f[0]["reasons"].as_array().into_iter().flatten().filter_map(|r| r.as_str()).collect();
    assert!(reasons.contains(&"mtu_not_smaller") && reasons.contains(&"unknown_flow"), "{reasons:?}");
    assert!(f[0]["headline"].as_str().unwrap_or("").contains("NOT BELIEVED"), "{}", show(&v));
    // No advice from it: nothing in the verdict's own lines mentions 9000 or an MSS.
    let own = format!("{} {} {}", d["headline"], d["details"], d["recommendation"]);
    assert!(!own.contains("9000") && !own.contains("MSS"), "{own}");
    let ptb = &v["evidence"]["kernel"]["ptbs"][0];
    assert_eq!(ptb["ours"], false, "{ptb}");
    assert_eq!(ptb["quoted_len"], 1500, "{ptb}");

    // `watch` on the client flags the same message.
    let w = Watch::start(&s.client, &["-i", "eth0", "--no-metrics"])?;
    let stop_watch = AtomicBool::new(false);
    std::thread::scope(|scope| -> Result<()> {
        let sender = in_netns_until(scope, r1, &stop_watch, forge());
        let found = w.wait_for(Duration::from_secs(10), |r| r["type"] == "finding" && r["mtu"] == 9000);
        stop_watch.store(true, Ordering::Relaxed);
        sender.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?;
        let f = found.context("watch reported no finding for the forged frag-needed")?;
        assert_eq!(f["ptb_suspect"], "mtu_not_smaller", "{f}");
        let advice = f["advice"].as_str().unwrap_or("");
        assert!(advice.contains("NOT BELIEVED") && !advice.contains("TCP MSS"), "{advice}");
        Ok(())
    })?;
    w.stop()?;
    Ok(())
}

/// The other side of (f): answers to our own probes that reach the
/// interface and are dropped by this host's INPUT firewall still make a
/// return-path verdict. The client drops everything from hop 3 and the
/// server, so past hop 2 the sockets hear nothing while XDP sees the
/// time-exceeded and the destination's answers quoting our probes.
#[test]
fn explain_answers_dropped_by_our_own_firewall_are_the_return_path() -> Result<()> {
    if !root_or_skip("explain_answers_dropped_by_our_own_firewall_are_the_return_path") {
        return Ok(());
    }
    let s = scenarios::linear("local-drop", &["client", "r1", "r2", "r3", "server"], &[])?;
    s.client.fw_drop(Chain::Input, &format!("ip saddr {{ {}, {} }}", s.hop_v4(3)?, s.server_v4))?;
    let v = json(&s.client, &["explain", &s.server_v4.to_string(), "--proto", "udp"])?;
    let d = &v["verdict"];
    assert_eq!(d["kind"], "return_path", "{}", show(&v));
    assert_eq!(d["hop"], 2, "{}", show(&v));
    let k = &v["evidence"]["kernel"];
    assert!(k["ours"].as_u64().unwrap_or(0) > k["matched_by_probes"].as_u64().unwrap_or(u64::MAX), "{k}");
    assert!(k["lost"].as_u64().unwrap_or(0) >= 1, "{k}");
    assert!(s.client.fw_packets(Chain::Input, "drop")? >= 1, "{}", s.describe());
    Ok(())
}
