//! End to end per program type (native XDP, generic XDP, TC ingress; TC
//! egress always): real ICMP errors and real DF-oversized forwarding on the
//! `gateway-df` router, watched by the real `netobs watch --json` on the
//! router, counted and sampled with the right fields.
//!
//! Root only. Traffic is sent by this test process from a thread moved
//! into the source namespace (fixed ports, DF in "probe" mode so every
//! packet leaves at full size even after the first frag-needed).

use std::fs::File;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use netobs_e2e::{Watch, WatchOutput, lab, root_or_skip};
use serde_json::Value;

/// DF-set ICMP echo through a small egress is reported as DF-oversized
/// (see `PROGRAM_DF_CHECKS_NON_ERROR_ICMP` in datapath.rs).
const PROGRAM_DF_CHECKS_NON_ERROR_ICMP: bool = true;

/// Below the ephemeral range (32768-60999): a fixed port inside it can be
/// taken by any socket in the namespace that binds port 0, and a bind of
/// 40000 once failed with "Address already in use" under load.
const SRC_PORT: u16 = 31000;
const DF_PORT: u16 = 5201;
const REJECTED_PORT: u16 = 5353;
const CLOSED_PORT: u16 = 9;
/// DF packets sent per family.
const DF_COUNT: u64 = 5;
const ERRORS_PER_KIND: u64 = 3;

/// Runs `f` on a thread inside `node`'s network namespace.
fn in_netns<T: Send>(node: &lab::Node, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let path = lab::ns_path(node.ns_name());
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            // SAFETY: plain syscall on this thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {}: {}", path.display(), std::io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Sends `count` UDP datagrams of `payload` bytes from [`SRC_PORT`] of `node`
/// to `dst`; with `df`, DF set whatever the cached path MTU says.
fn send_udp(node: &lab::Node, dst: SocketAddr, payload: usize, count: u64, df: bool) -> Result<()> {
    in_netns(node, || {
        let bind: SocketAddr = match dst.ip() {
            IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, SRC_PORT).into(),
            IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, SRC_PORT).into(),
        };
        let sock = UdpSocket::bind(bind).with_context(|| format!("binding {bind}"))?;
        if df {
            let (level, opt, val) = match dst.ip() {
                IpAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE),
                IpAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_PMTUDISC_PROBE),
            };
            // SAFETY: valid socket and option buffer.
            let r = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    level,
                    opt,
                    &val as *const i32 as *const libc::c_void,
                    std::mem::size_of::<i32>() as libc::socklen_t,
                )
            };
            if r != 0 {
                bail!("setsockopt MTU_DISCOVER: {}", std::io::Error::last_os_error());
            }
        }
        let data = vec![0x42u8; payload];
        for _ in 0..count {
            sock.send_to(&data, dst).with_context(|| format!("sending {payload} bytes to {dst}"))?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    })
}

/// Sum of `icmp` counter rows matching all `(key, value)` pairs.
fn icmp_rows(out: &WatchOutput, want: &[(&str, Value)]) -> u64 {
    out.counters()
        .and_then(|c| c["icmp"].as_array())
        .map(|rows| {
            rows.iter().filter(|r| want.iter().all(|(k, v)| &r[*k] == v)).filter_map(|r| r["count"].as_u64()).sum()
        })
        .unwrap_or(0)
}

fn df_rows(out: &WatchOutput, ingress: &str, egress: &str) -> u64 {
    out.counters()
        .and_then(|c| c["df_oversized"].as_array())
        .map(|rows| {
            rows.iter()
                .filter(|r| r["ingress"] == ingress && r["egress"] == egress)
                .filter_map(|r| r["count"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

fn find(findings: &[Value], pred: impl Fn(&Value) -> bool) -> Option<&Value> {
    findings.iter().find(|f| pred(f))
}

/// Real traffic through `gateway-df` (or its black-hole variant) with
/// netobs watching the router's two interfaces in `mode`.
fn gateway(scenario: &str, mode: &str) -> Result<()> {
    let s = lab::scenarios::build(scenario)?;
    let gw = s.node("gw")?.clone();
    let (src, dst) = (s.client.clone(), s.server.clone());
    let (dst4, dst6) = (IpAddr::V4(s.server_v4), IpAddr::V6(s.server_v6));
    // An ACL on the destination: UDP to 5353 is rejected with 3/10.
    dst.fw_reject(
        lab::Chain::Input,
        &format!("ip saddr {} udp dport {REJECTED_PORT}", s.client_v4),
        lab::Reject::HOST_PROHIBITED,
    )?;

    let watch = Watch::start(&gw, &["-i", "eth0", "-i", "eth1", "--xdp-mode", mode, "--no-metrics"])?;
    let hook = if mode == "tc" { "tc_ingress" } else { "xdp" };
    let attached = if mode == "native" {
        "xdp_native"
    } else if mode == "skb" {
        "xdp_skb"
    } else {
        "tc_ingress"
    };
    for r in watch.records().iter().filter(|r| r["type"] == "attach") {
        assert_eq!(r["ingress"], attached, "{r}");
        assert_eq!(r["egress"], true, "{r}");
    }

    // The classic PMTU check first (later, the source knows the path MTU
    // and `-M do` would not send anything).
    src.run_unchecked(&["ping", "-n", "-M", "do", "-s", "1472", "-c", "1", "-W", "1", &dst4.to_string()])?;
    // Real ICMP errors from the destination: closed port, ACL reject.
    send_udp(&src, (dst4, CLOSED_PORT).into(), 32, ERRORS_PER_KIND, false)?;
    send_udp(&src, (dst4, REJECTED_PORT).into(), 32, ERRORS_PER_KIND, false)?;
    send_udp(&src, (dst6, CLOSED_PORT).into(), 32, ERRORS_PER_KIND, false)?;
    // DF-oversized forwarding: 1500-byte packets towards the 1400-byte link.
    send_udp(&src, (dst4, DF_PORT).into(), 1472, DF_COUNT, true)?;
    send_udp(&src, (dst6, DF_PORT).into(), 1452, DF_COUNT, true)?;
    std::thread::sleep(Duration::from_millis(300));
    let out = watch.stop()?;
    let ctx = format!("{scenario} --xdp-mode {mode}\nstderr: {}\n{}", out.stderr, s.describe());
    assert!(out.status.success(), "{ctx}");
    let stats = &out.counters().context("no counters record")?["stats"];

    // ---- ICMP errors arriving on eth1 (from the destination) ----
    let recv = |family: u64, t: u64, code: u64| {
        icmp_rows(
            &out,
            &[
                ("iface", "eth1".into()),
                ("family", family.into()),
                ("type", t.into()),
                ("code", code.into()),
                ("direction", "received".into()),
                ("hook", hook.into()),
            ],
        )
    };
    assert_eq!(recv(4, 3, 3), ERRORS_PER_KIND, "port unreachable; {ctx}");
    assert_eq!(recv(4, 3, 10), ERRORS_PER_KIND, "ACL reject; {ctx}");
    assert_eq!(recv(6, 1, 4), ERRORS_PER_KIND, "v6 port unreachable; {ctx}");
    let findings = out.findings();
    for (family, t, code, port) in [(4u64, 3u64, 3u64, CLOSED_PORT), (4, 3, 10, REJECTED_PORT), (6, 1, 4, CLOSED_PORT)]
    {
        let reporter = if family == 4 { dst4 } else { dst6 };
        let f = find(&findings, |f| {
            f["kind"] == "icmp_error" && f["family"] == family && f["icmp_type"] == t && f["icmp_code"] == code
        })
        .with_context(|| format!("no finding for {t}/{code} (v{family}): {findings:#?}\n{ctx}"))?;
        assert_eq!(f["iface"], "eth1", "{f}");
        assert_eq!(f["reporter"], reporter.to_string(), "{f}");
        assert_eq!(f["flow"]["protocol"], "udp", "{f}");
        assert_eq!(f["flow"]["dst"], reporter.to_string(), "{f}");
        assert_eq!(f["flow"]["src_port"], SRC_PORT, "{f}");
        assert_eq!(f["flow"]["dst_port"], port, "{f}");
        assert_eq!(f["quote_truncated"], false, "{f}");
        assert_eq!(f["count"], ERRORS_PER_KIND, "{f}");
    }

    // ---- DF-oversized packets arriving on eth0, too big for eth1 ----
    let echo = PROGRAM_DF_CHECKS_NON_ERROR_ICMP as u64;
    assert_eq!(df_rows(&out, "eth0", "eth1"), 2 * DF_COUNT + echo, "df_oversized rows; {ctx}");
    assert_eq!(stats["df_oversized"], 2 * DF_COUNT + echo, "{ctx}");
    for (family, dst) in [(4u64, dst4), (6, dst6)] {
        let f =
            find(&findings, |f| f["kind"] == "df_oversized" && f["family"] == family && f["flow"]["protocol"] == "udp")
                .with_context(|| format!("no df_oversized finding (v{family}): {findings:#?}\n{ctx}"))?;
        assert_eq!(f["mtu"], 1400, "{f}");
        assert_eq!(f["egress_iface"], "eth1", "{f}");
        assert_eq!(f["iface"], "eth0", "{f}");
        assert_eq!(f["packet_len"], 1500, "{f}");
        assert_eq!(f["flow"]["dst"], dst.to_string(), "{f}");
        assert_eq!(f["flow"]["src_port"], SRC_PORT, "{f}");
        assert_eq!(f["flow"]["dst_port"], DF_PORT, "{f}");
        assert_eq!(f["count"], DF_COUNT, "{f}");
    }

    // ---- what the router itself sends back out of eth0 (TC egress) ----
    let sent = |family: u64, t: u64, code: u64| {
        icmp_rows(
            &out,
            &[
                ("iface", "eth0".into()),
                ("family", family.into()),
                ("type", t.into()),
                ("code", code.into()),
                ("direction", "sent".into()),
                ("hook", "tc_egress".into()),
            ],
        )
    };
    // The destination's errors pass through eth0 too, forwarded: egress
    // reports only what the router itself sends.
    assert_eq!(sent(4, 3, 3), 0, "forwarded port unreachable counted as sent; {ctx}");
    assert_eq!(sent(4, 3, 10), 0, "forwarded ACL reject counted as sent; {ctx}");
    assert_eq!(sent(6, 1, 4), 0, "forwarded v6 port unreachable counted as sent; {ctx}");
    assert!(stats["egress_forwarded"].as_u64().unwrap_or(0) >= 3 * ERRORS_PER_KIND, "{stats}; {ctx}");
    let dropped_v4 = gw.fw_packets(lab::Chain::Output, "frag-needed")?;
    let dropped_v6 = gw.fw_packets(lab::Chain::Output, "packet-too-big")?;
    if scenario == "gateway-df-blackhole" {
        // nftables' output hook runs before TC egress: what it drops is
        // never seen there, although the router did generate it.
        assert!(dropped_v4 > DF_COUNT && dropped_v6 >= DF_COUNT, "nft drops {dropped_v4}/{dropped_v6}; {ctx}");
        assert_eq!(sent(4, 3, 4), 0, "{ctx}");
        assert_eq!(sent(6, 2, 0), 0, "{ctx}");
    } else {
        // One per DF packet, plus the ping's.
        assert_eq!((dropped_v4, dropped_v6), (0, 0));
        assert_eq!(sent(4, 3, 4), DF_COUNT + 1, "frag-needed sent; {ctx}");
        assert_eq!(sent(6, 2, 0), DF_COUNT, "packet too big sent; {ctx}");
        let f = find(&findings, |f| f["kind"] == "icmp_sent" && f["icmp_type"] == 3 && f["icmp_code"] == 4)
            .with_context(|| format!("no icmp_sent finding: {findings:#?}\n{ctx}"))?;
        assert_eq!(f["mtu"], 1400, "{f}");
        assert_eq!(f["iface"], "eth0", "{f}");
    }
    assert_eq!(stats["sampled_out"], 0, "{ctx}");
    assert_eq!(stats["ringbuf_full"], 0, "{ctx}");
    Ok(())
}

#[test]
fn gateway_df_xdp_native() -> Result<()> {
    if !root_or_skip("gateway_df_xdp_native") {
        return Ok(());
    }
    gateway("gateway-df", "native")
}

#[test]
fn gateway_df_xdp_skb() -> Result<()> {
    if !root_or_skip("gateway_df_xdp_skb") {
        return Ok(());
    }
    gateway("gateway-df", "skb")
}

#[test]
fn gateway_df_tc() -> Result<()> {
    if !root_or_skip("gateway_df_tc") {
        return Ok(());
    }
    gateway("gateway-df", "tc")
}

#[test]
fn gateway_df_blackhole_hides_frag_needed_from_tc_egress() -> Result<()> {
    if !root_or_skip("gateway_df_blackhole_hides_frag_needed_from_tc_egress") {
        return Ok(());
    }
    gateway("gateway-df-blackhole", "native")
}

/// Jumbo: on a gateway whose ingress veth runs MTU 9000, `watch` (auto
/// mode) attaches native XDP (the program is multi-buffer), and a
/// 9000-byte DF packet forwarded into a 1500-byte egress is reported as
/// DF-oversized with its true length.
#[test]
fn jumbo_ingress_gets_native_xdp_and_full_length_df_reports() -> Result<()> {
    if !root_or_skip("jumbo_ingress_gets_native_xdp_and_full_length_df_reports") {
        return Ok(());
    }
    const JUMBO: u32 = 9000;
    let s = lab::scenarios::build("gateway-df")?;
    let gw = s.node("gw")?.clone();
    let src = s.client.clone();
    let dst4 = IpAddr::V4(s.server_v4);
    let ingress = s.links.first().context("src-gw link")?;
    let egress = s.links.get(1).context("gw-dst link")?;
    for end in [&ingress.a, &ingress.b] {
        end.node.ip(&["link", "set", &end.ifname, "mtu", &JUMBO.to_string()])?;
    }
    for end in [&egress.a, &egress.b] {
        end.node.ip(&["link", "set", &end.ifname, "mtu", "1500"])?;
    }
    let gw_in = ingress.end("gw").context("gw end of the ingress link")?.ifname.clone();
    let gw_out = egress.end("gw").context("gw end of the egress link")?.ifname.clone();

    let watch = Watch::start(&gw, &["-i", &gw_in, "-i", &gw_out, "--no-metrics"])?;
    let attach: Vec<Value> = watch.records().into_iter().filter(|r| r["type"] == "attach").collect();
    let rec = attach.iter().find(|r| r["iface"] == gw_in.as_str()).with_context(|| format!("{attach:?}"))?;
    assert_eq!(rec["ingress"], "xdp_native", "jumbo ingress not native XDP: {rec}");
    assert!(rec["note"].is_null(), "fallback note on the jumbo link: {rec}");

    // IP length 9000: 8972 bytes of UDP payload.
    send_udp(&src, (dst4, DF_PORT).into(), JUMBO as usize - 28, DF_COUNT, true)?;
    std::thread::sleep(Duration::from_millis(300));
    let out = watch.stop()?;
    let ctx = format!("stderr: {}\n{}", out.stderr, s.describe());
    assert!(out.status.success(), "{ctx}");
    assert_eq!(df_rows(&out, &gw_in, &gw_out), DF_COUNT, "df_oversized rows; {ctx}");
    let findings = out.findings();
    let f = find(&findings, |f| f["kind"] == "df_oversized" && f["flow"]["protocol"] == "udp")
        .with_context(|| format!("no df_oversized finding: {findings:#?}\n{ctx}"))?;
    assert_eq!(f["packet_len"], JUMBO, "{f}");
    assert_eq!(f["mtu"], 1500, "{f}");
    assert_eq!(f["iface"], gw_in.as_str(), "{f}");
    assert_eq!(f["egress_iface"], gw_out.as_str(), "{f}");
    assert_eq!(f["flow"]["dst"], dst4.to_string(), "{f}");
    Ok(())
}
