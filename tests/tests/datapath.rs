//! Differential tests of the kernel programs through BPF_PROG_TEST_RUN: every
//! crafted packet (each ICMP/ICMPv6 error type/code, VLAN tags, IPv4
//! options, IPv6 extension headers, later fragments, each truncation point,
//! random bytes and mutations) goes through `netobs_xdp` (and a selection
//! through the TC programs), and the return value, the counter deltas and
//! the ring-buffer event must equal what the host parser (`netobs-common`,
//! the same code) implies for the same bytes.
//!
//! Root only. Test runs happen on a thread moved into a fresh lab network
//! namespace, so `bpf_fib_lookup` sees a known routing table (none, or the
//! `gateway-df` router's) instead of the host's.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use aya::Ebpf;
use aya::maps::{MapData, RingBuf};
use aya::programs::{Program, RawTracePoint, SchedClassifier, TestRun as _, TestRunOptions, TracePoint, Xdp, XdpMode};
use netobs::kernel::{self, LoadOptions, counters, events, loader::load_program, stage};
use netobs_common::counters::{class_key, icmp_class};
use netobs_common::craft::{Frame, Tcp, cut, non_ip_frame};
use netobs_common::event::{IcmpCapture, flags, hook, kind, stat};
use netobs_common::parse::{
    IcmpOutcome, Outer, Skip, capture_icmp, decode_icmp_capture, ip_len_in_frame, is_df_candidate, parse_icmp_error,
    parse_ip_packet, parse_outer,
};
use netobs_common::sample::{fair_burst, fair_rate, reporter_buckets};
use netobs_common::{Config, Cursor, DfCounterKey, Event, IcmpCounterKey, PacketInfo};
use netobs_e2e::{lab, root_or_skip};

const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC (-1) as the test run reports it.
const TC_CONTINUE: u32 = u32::MAX;
/// Test runs without a context see the namespace's loopback.
const LO: u32 = 1;

/// The programs count IPv4 / IPv6 packets in the `ipv4` / `ipv6` slots.
const PROGRAM_COUNTS_FAMILIES: bool = true;

/// ICMP that is not an error (echo, ND, ...) falls through to the
/// DF-oversized check like any other protocol, so a DF-set
/// `ping -M do -s 1472` through a small egress is reported.
const PROGRAM_DF_CHECKS_NON_ERROR_ICMP: bool = true;

const R4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
const C4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const S4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
const R6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe);
const C6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const S6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
const T6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// Events are never held back: the differential tests want every one.
/// Every DF candidate pays for its own FIB lookup (the route cache has its
/// own test), so the counters match the host model packet by packet.
/// Events are staged as in production: `Harness::run` flushes the stages.
fn big_config() -> Config {
    Config {
        min_mtu: 1500,
        events_per_sec: 10_000_000,
        burst: 1_000_000,
        egress_path_mtu: 0,
        fib_cache_ms: 0,
        ..Config::DEFAULT
    }
}

// ---- what one run did -------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Outcome {
    ret: u32,
    /// STATS deltas by slot name (zero slots left out).
    stats: BTreeMap<&'static str, u64>,
    icmp: BTreeMap<IcmpCounterKey, u64>,
    df: BTreeMap<DfCounterKey, u64>,
    /// Ring-buffer events, `ts_ns` zeroed.
    events: Vec<Event>,
}

impl Outcome {
    fn bump(&mut self, slot: u32) {
        *self.stats.entry(stat::NAMES[slot as usize]).or_default() += 1;
    }
}

/// The kernel's view: one object, its programs verified, the ring buffer
/// taken out of it.
struct Harness {
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prog {
    Xdp,
    TcIngress,
    TcEgress,
}

impl Prog {
    fn name(self) -> &'static str {
        match self {
            Prog::Xdp => "netobs_xdp",
            Prog::TcIngress => "netobs_tc_ingress",
            Prog::TcEgress => "netobs_tc_egress",
        }
    }
    fn hook(self) -> u8 {
        match self {
            Prog::Xdp => hook::XDP,
            Prog::TcIngress => hook::TC_INGRESS,
            Prog::TcEgress => hook::TC_EGRESS,
        }
    }
    fn ret(self) -> u32 {
        if self == Prog::Xdp { XDP_PASS } else { TC_CONTINUE }
    }
}

impl Harness {
    fn new(config: Config) -> Result<Harness> {
        let mut ebpf = kernel::load(&LoadOptions { config, ringbuf_bytes: 1 << 20, ..LoadOptions::default() })?;
        load_program::<Xdp>(&mut ebpf, "netobs_xdp")?;
        load_program::<SchedClassifier>(&mut ebpf, "netobs_tc_ingress")?;
        load_program::<SchedClassifier>(&mut ebpf, "netobs_tc_egress")?;
        stage::prepare(&mut ebpf)?;
        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("EVENTS map missing")?)?;
        Ok(Harness { ebpf, ring })
    }

    /// Runs `prog` once on `frame` (optionally with an `xdp_md` / `__sk_buff`
    /// context) and reports what changed.
    fn run(&mut self, prog: Prog, frame: &[u8], ctx_in: Option<&[u8]>) -> Result<Outcome> {
        let before = counters::read(&self.ebpf)?;
        let opts = TestRunOptions { data_in: Some(frame), ctx_in, repeat: 1, ..TestRunOptions::new() };
        let p = self.ebpf.program(prog.name()).context("program missing")?;
        let res = match prog {
            Prog::Xdp => <&Xdp>::try_from(p)?.test_run(opts),
            Prog::TcIngress | Prog::TcEgress => <&SchedClassifier>::try_from(p)?.test_run(opts),
        }
        .with_context(|| format!("test run of {} on {} bytes", prog.name(), frame.len()))?;
        // Events staged on a CPU (several in one clock tick) are written
        // out now, as `netobs watch` does on its timer.
        stage::flush(&self.ebpf, Duration::ZERO)?;
        let after = counters::read(&self.ebpf)?;
        let mut out = Outcome { ret: res.return_value, ..Outcome::default() };
        for (name, v) in &after.stats {
            let d = v - before.stats.get(name).copied().unwrap_or(0);
            if d != 0 {
                out.stats.insert(name, d);
            }
        }
        for (k, v) in &after.icmp {
            let d = v - before.icmp.get(k).copied().unwrap_or(0);
            if d != 0 {
                out.icmp.insert(*k, d);
            }
        }
        for (k, v) in &after.df {
            let d = v - before.df.get(k).copied().unwrap_or(0);
            if d != 0 {
                out.df.insert(*k, d);
            }
        }
        let drained = events::drain(&mut self.ring, &mut out.events, 1 << 16);
        if drained.short_records != 0 || drained.undecodable != 0 {
            bail!("ring buffer: {drained:?} (short records or events that did not decode)");
        }
        for ev in &mut out.events {
            if ev.ts_ns == 0 {
                bail!("event without a timestamp: {ev:?}");
            }
            ev.ts_ns = 0;
        }
        Ok(out)
    }
}

// ---- what the host parser implies ---------------------------------------------------

/// Egress interface and MTU `bpf_fib_lookup` is expected to report for an
/// oversized packet (`None`: it fits, or there is no route).
type Fib<'a> = &'a dyn Fn(&PacketInfo) -> Option<(u32, u32)>;

fn no_route(_: &PacketInfo) -> Option<(u32, u32)> {
    None
}

/// What `classify::observe` must do with `frame`, computed with the host
/// build of the same parser.
fn model(frame: &[u8], prog: Prog, ifindex: u32, cfg: &Config, fib: Fib) -> Outcome {
    let hook = prog.hook();
    let mut o = Outcome { ret: prog.ret(), ..Outcome::default() };
    o.bump(stat::PACKETS);
    let c = Cursor::from_slice(frame);
    let outer = match parse_outer(&c) {
        Ok(outer) => outer,
        Err(Skip::NotIp) => return o,
        Err(Skip::Malformed) => {
            o.bump(stat::MALFORMED);
            return o;
        }
    };
    if PROGRAM_COUNTS_FAMILIES {
        o.bump(if outer.family == 4 { stat::IPV4 } else { stat::IPV6 });
    }
    let icmp_proto = if outer.family == 4 { 1 } else { 58 };
    if outer.protocol == icmp_proto && !outer.later_fragment {
        let mut ev = Event::default();
        match parse_icmp_error(&c, &outer, &mut ev) {
            IcmpOutcome::Truncated => o.bump(stat::MALFORMED),
            IcmpOutcome::NotError => {
                o.bump(stat::ICMP_OTHER);
                if PROGRAM_DF_CHECKS_NON_ERROR_ICMP {
                    df_check(&mut o, &c, &outer, prog, ifindex, cfg, fib);
                }
            }
            IcmpOutcome::Error => {
                o.bump(stat::ICMP_ERRORS);
                // Counted by class: codes beyond the known ones of the type
                // come back as OTHER_CODE.
                let (_, _, icmp_code) = class_key(icmp_class(outer.family, ev.icmp_type, ev.icmp_code));
                let key = IcmpCounterKey { ifindex, family: outer.family, icmp_type: ev.icmp_type, icmp_code, hook };
                o.icmp.insert(key, 1);
                ev.ifindex = ifindex;
                ev.hook = hook;
                if hook == hook::TC_EGRESS {
                    ev.kind = kind::ICMP_SENT;
                }
                // The datapath copies the message and user space parses the
                // copy: the same event, unless the copy cut the quote's
                // transport header (CAPTURE_CUT, checked in crafted.rs).
                let mut cap = IcmpCapture { ifindex, hook, ..IcmpCapture::default() };
                capture_icmp(&c, &outer, &mut cap);
                let decoded = decode_icmp_capture(&cap).expect("a copied error parses");
                if decoded.flags & flags::CAPTURE_CUT == 0 {
                    assert_eq!(decoded, ev.as_datapath(), "the copy parses as the whole frame");
                }
                o.bump(stat::EVENTS);
                o.events.push(decoded);
            }
        }
        return o;
    }
    df_check(&mut o, &c, &outer, prog, ifindex, cfg, fib);
    o
}

/// The DF-oversized part of `observe`.
fn df_check(o: &mut Outcome, c: &Cursor, outer: &Outer, prog: Prog, ifindex: u32, cfg: &Config, fib: Fib) {
    let hook = prog.hook();
    let df = |o: &mut Outcome, egress: u32, mtu: u32| {
        o.bump(stat::DF_OVERSIZED);
        o.df.insert(DfCounterKey { ingress_ifindex: ifindex, egress_ifindex: egress }, 1);
        let mut ev = Event {
            ifindex,
            hook,
            kind: kind::DF_OVERSIZED,
            outer_family: outer.family,
            outer_ttl: outer.ttl,
            outer_len: outer.total_len,
            mtu,
            aux: egress,
            flags: flags::HAS_MTU,
            ..Event::default()
        };
        parse_ip_packet(c, outer.l3_off, outer.family, &mut ev.inner);
        ev.outer_src = ev.inner.src;
        ev.outer_dst = ev.inner.dst;
        o.bump(stat::EVENTS);
        o.events.push(ev);
    };
    // The IP length must really be there (the kernel drops the packet
    // otherwise); the frame is the whole test-run input.
    let in_frame = ip_len_in_frame(outer, c.len() as u32);
    if hook == hook::TC_EGRESS {
        if is_df_candidate(outer, cfg.egress_path_mtu) && in_frame {
            df(o, ifindex, cfg.egress_path_mtu);
        }
    } else if outer.vlan_depth == 0 && !outer.later_fragment && is_df_candidate(outer, cfg.min_mtu) && in_frame {
        let mut pkt = PacketInfo::default();
        parse_ip_packet(c, outer.l3_off, outer.family, &mut pkt);
        o.bump(stat::FIB_LOOKUPS);
        if let Some((egress, mtu)) = fib(&pkt) {
            df(o, egress, mtu);
        }
    }
}

/// Runs every frame through `prog` and compares with the model; returns
/// the mismatches (name, expected, got) so one failure shows them all.
fn differential(
    h: &mut Harness,
    prog: Prog,
    cfg: &Config,
    frames: &[(String, Vec<u8>)],
    ifindex: u32,
    ctx_in: Option<&[u8]>,
    fib: Fib,
) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    for (name, frame) in frames {
        let ctx;
        let ctx_in = match ctx_in {
            // xdp_md.data_end must be the frame length.
            Some(c) => {
                let mut v = c.to_vec();
                v[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
                ctx = v;
                Some(&ctx[..])
            }
            None => None,
        };
        let got = h.run(prog, frame, ctx_in)?;
        let want = model(frame, prog, ifindex, cfg, fib);
        if got != want {
            bad.push(format!(
                "{} {name} ({} bytes):\n  want {want:?}\n  got  {got:?}\n  frame {frame:02x?}",
                prog.name(),
                frame.len()
            ));
        }
    }
    Ok(bad)
}

fn assert_clean(bad: Vec<String>, runs: usize) {
    if !bad.is_empty() {
        let shown: Vec<&String> = bad.iter().take(10).collect();
        panic!(
            "{} of {runs} runs differ from the host parser; first ones:\n{}",
            bad.len(),
            shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
        );
    }
}

// ---- namespaces and CPUs -----------------------------------------------------------

/// Runs `f` on a thread inside `node`'s network namespace, pinned to one
/// CPU (per-CPU token buckets and counters stay on one slot).
fn in_netns<T: Send>(node: &lab::Node, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let path = lab::ns_path(node.ns_name());
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            // SAFETY: plain syscalls on this thread only.
            unsafe {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    bail!("setns {}: {}", path.display(), std::io::Error::last_os_error());
                }
                let cpu = libc::sched_getcpu().max(0) as usize;
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            }
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// An empty namespace (loopback only): every FIB lookup finds no route.
fn empty_netns<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let l = lab::Lab::new();
    let node = l.host("dp")?;
    in_netns(&node, f)
}

// ---- the packets --------------------------------------------------------------------

fn udp4() -> Vec<u8> {
    Frame::ipv4(C4, S4).ttl(1).id(0x4242).df().udp(40000, 33434, 1472).ip_bytes()
}
fn udp6() -> Vec<u8> {
    Frame::ipv6(C6, S6).ttl(1).udp(40000, 33434, 1452).ip_bytes()
}
fn syn4() -> Vec<u8> {
    Frame::ipv4(C4, S4).ttl(2).df().tcp(Tcp::new(40001, 443).seq(0xdead_beef).syn().options_len(20)).ip_bytes()
}
fn syn6() -> Vec<u8> {
    Frame::ipv6(C6, S6).ttl(2).tcp(Tcp::new(40001, 443).seq(7).syn()).ip_bytes()
}
fn err4(t: u8, code: u8, quote: &[u8]) -> Frame {
    Frame::ipv4(R4, C4).ttl(63).icmp_error(t, code, quote)
}
fn err6(t: u8, code: u8, quote: &[u8]) -> Frame {
    Frame::ipv6(R6, C6).ttl(63).icmp_error(t, code, quote)
}

/// `quote` zero-padded to 128 bytes, then an RFC 4884 extension: an MPLS
/// stack (labels 16, 17), RFC 5837 interface information and an object
/// of another class with `filler` bytes (76 bytes in all with no filler;
/// a filler of 100 makes it longer than an event carries).
fn ext_quote(quote: &[u8], filler: usize) -> Vec<u8> {
    use netobs_common::ext::{IfAddr, IfRole, InterfaceInfoRepr, MplsEntryRepr, craft_structure};
    let mut mpls = [0u8; 8];
    let _ = MplsEntryRepr { label: 16, tc: 0, bottom: false, ttl: 1 }.emit(&mut mpls[..4]);
    let _ = MplsEntryRepr { label: 17, tc: 0, bottom: true, ttl: 1 }.emit(&mut mpls[4..]);
    let info = InterfaceInfoRepr {
        role: IfRole::Incoming,
        if_index: Some(3),
        addr: Some(IfAddr::V4([198, 18, 2, 1])),
        name: Some(b"eth1"),
        mtu: Some(1400),
    };
    let mut ifinfo = [0u8; 32];
    let n = info.emit(&mut ifinfo).unwrap_or(0);
    let filler = vec![0xab; filler];
    let mut q = quote.to_vec();
    q.resize(128, 0);
    q.extend(craft_structure(&[(1, 1, &mpls), (2, info.c_type(), &ifinfo[..n]), (9, 1, &filler)]));
    q
}

/// Every error type/code netobs reports, v4 and v6, plus VLAN tags, IPv4
/// options, IPv6 extension headers, later fragments, non-errors and
/// ordinary traffic.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = Vec::new();
    let q4 = cut(&udp4(), 28);
    let q6 = cut(&udp6(), 48);
    for code in 0..=15u8 {
        v.push((format!("v4 3/{code}"), err4(3, code, &q4).mtu(if code == 4 { 1400 } else { 0 }).bytes()));
    }
    v.push(("v4 4/0".into(), err4(4, 0, &q4).bytes()));
    for code in 0..=3u8 {
        v.push((format!("v4 5/{code}"), err4(5, code, &q4).gateway(Ipv4Addr::new(198, 18, 0, 1)).bytes()));
    }
    for code in 0..=1u8 {
        v.push((format!("v4 11/{code} tcp rfc4884"), err4(11, code, &syn4()).rfc4884_len(32).bytes()));
    }
    for code in 0..=2u8 {
        v.push((format!("v4 12/{code}"), err4(12, code, &q4).pointer(9).bytes()));
    }
    for code in 0..=6u8 {
        v.push((format!("v6 1/{code}"), err6(1, code, &q6).bytes()));
    }
    v.push(("v6 2/0".into(), err6(2, 0, &q6).mtu(1280).bytes()));
    for code in 0..=1u8 {
        v.push((format!("v6 3/{code} rfc4884"), err6(3, code, &syn6()).rfc4884_len(2).bytes()));
    }
    for code in 0..=2u8 {
        v.push((format!("v6 4/{code}"), err6(4, code, &q6).pointer(40).bytes()));
    }
    v.push(("v6 137 quote".into(), Frame::ipv6(R6, C6).ttl(255).icmpv6_redirect(T6, S6, Some(&syn6())).bytes()));
    v.push(("v6 137 no quote".into(), Frame::ipv6(R6, C6).ttl(255).icmpv6_redirect(T6, S6, None).bytes()));
    // RFC 4884 extensions after a quote padded to 128 bytes: length field
    // set, the pre-RFC layout (length 0), ICMPv6, and one longer than an
    // event carries (ext::CARRY_MAX).
    for (name, q, words) in
        [("v4 11/0 ext", syn4(), 32u8), ("v4 11/0 ext compat", syn4(), 0), ("v4 3/1 ext", udp4(), 32)]
    {
        let t = if name.contains("3/1") { 3 } else { 11 };
        v.push((name.into(), err4(t, t & 1, &ext_quote(&q, 0)).rfc4884_len(words).bytes()));
    }
    v.push(("v6 3/0 ext".into(), err6(3, 0, &ext_quote(&syn6(), 0)).rfc4884_len(16).bytes()));
    v.push(("v4 11/0 ext cut".into(), err4(11, 0, &ext_quote(&cut(&syn4(), 20), 100)).rfc4884_len(32).bytes()));
    // Echo quotes.
    v.push(("v4 11/0 echo".into(), err4(11, 0, &Frame::ipv4(C4, S4).ttl(1).echo_request(7, 9, 56).ip_bytes()).bytes()));
    v.push(("v6 3/0 echo".into(), err6(3, 0, &Frame::ipv6(C6, S6).ttl(1).echo_request(7, 9, 56).ip_bytes()).bytes()));
    // VLAN tags.
    v.push(("v4 3/13 vlan".into(), err4(3, 13, &q4).vlan(100).bytes()));
    v.push(("v4 3/13 qinq".into(), err4(3, 13, &q4).qinq(10, 20).bytes()));
    v.push(("v6 1/1 vlan".into(), err6(1, 1, &q6).vlan(100).bytes()));
    v.push(("v6 2/0 qinq".into(), err6(2, 0, &q6).mtu(1280).qinq(10, 20).bytes()));
    v.push(("three tags".into(), err4(3, 13, &q4).qinq(10, 20).vlan(30).bytes()));
    // IPv4 options, outer and quoted.
    for ihl in 5..=15u8 {
        let inner = Frame::ipv4(C4, S4).ttl(1).df().ihl(ihl).udp(1, 2, 100).ip_bytes();
        let q = cut(&inner, ihl as usize * 4 + 8);
        v.push((format!("v4 ihl {ihl} outer+quote"), err4(3, 4, &q).mtu(1400).ihl(ihl).bytes()));
    }
    // IPv6 extension headers, outer and quoted.
    let ext_inner = Frame::ipv6(C6, S6)
        .hop_by_hop(0)
        .routing(2)
        .dest_opts(0)
        .fragment(0, true, 5)
        .tcp(Tcp::new(9, 10).syn())
        .ip_bytes();
    v.push(("v6 ext quote".into(), err6(1, 4, &ext_inner).bytes()));
    v.push(("v6 ext outer+quote".into(), err6(1, 4, &ext_inner).hop_by_hop(0).dest_opts(1).bytes()));
    let five =
        Frame::ipv6(C6, S6).hop_by_hop(0).dest_opts(0).dest_opts(0).dest_opts(0).dest_opts(0).udp(1, 2, 0).ip_bytes();
    v.push(("v6 five ext quote".into(), err6(1, 0, &five).bytes()));
    v.push((
        "v6 five ext outer".into(),
        err6(1, 0, &q6).hop_by_hop(0).dest_opts(0).dest_opts(0).dest_opts(0).dest_opts(0).bytes(),
    ));
    // Later fragments: quoted, and of the outer packet.
    v.push((
        "v4 quoted later frag".into(),
        err4(11, 1, &cut(&Frame::ipv4(C4, S4).mf().frag_offset(185).udp(1, 2, 100).ip_bytes(), 28)).bytes(),
    ));
    v.push((
        "v6 quoted later frag".into(),
        err6(3, 1, &Frame::ipv6(C6, S6).fragment(185, false, 77).udp(5, 6, 100).ip_bytes()).bytes(),
    ));
    v.push(("v4 outer later frag".into(), err4(3, 3, &q4).frag_offset(3).bytes()));
    v.push(("v6 outer later frag".into(), err6(1, 4, &q6).fragment(3, false, 1).bytes()));
    v.push(("v6 outer first frag".into(), err6(1, 4, &q6).fragment(0, true, 1).bytes()));
    // Truncated quotes.
    v.push(("v4 quote 20".into(), err4(3, 3, &cut(&q4, 20)).bytes()));
    v.push(("v4 no quote".into(), err4(3, 3, &[]).bytes()));
    v.push((
        "v4 gre quote".into(),
        err4(3, 4, &cut(&Frame::ipv4(C4, S4).df().raw(47, &[1; 60]).ip_bytes(), 28)).mtu(1400).bytes(),
    ));
    // Not errors / not classified.
    v.push(("v4 echo".into(), Frame::ipv4(C4, S4).echo_request(1, 1, 56).bytes()));
    v.push(("v6 echo reply".into(), Frame::ipv6(C6, S6).echo_reply(1, 1, 56).bytes()));
    v.push(("v6 ns".into(), Frame::ipv6(C6, S6).ttl(255).icmp(135, 0, &[0; 20]).bytes()));
    v.push(("v4 type 1".into(), Frame::ipv4(R4, C4).icmp_error(1, 0, &q4).bytes()));
    v.push(("arp".into(), non_ip_frame(0x0806, 28)));
    v.push(("bad ihl".into(), Frame::ipv4(C4, S4).raw_version_ihl(0x44).udp(1, 2, 0).bytes()));
    v.push(("bad version".into(), Frame::ipv4(C4, S4).raw_version_ihl(0x65).udp(1, 2, 0).bytes()));
    // Ordinary traffic, at and below the DF threshold.
    v.push(("v4 tcp 64".into(), Frame::ipv4(C4, S4).df().tcp(Tcp::new(1, 2)).bytes()));
    v.push(("v4 tcp df 1500".into(), Frame::ipv4(C4, S4).df().tcp(Tcp::new(1, 2).payload_len(1460)).bytes()));
    v.push(("v6 udp 1500".into(), Frame::ipv6(C6, S6).udp(1, 2, 1452).bytes()));
    v.push(("v4 udp vlan".into(), Frame::ipv4(C4, S4).vlan(5).udp(1, 2, 10).bytes()));
    v
}

/// Frames cut at every length the test run accepts (>= 14 bytes).
fn truncations() -> Vec<(String, Vec<u8>)> {
    let ext_inner = Frame::ipv6(C6, S6).hop_by_hop(0).fragment(0, true, 5).tcp(Tcp::new(9, 10).syn()).ip_bytes();
    let frames = [
        ("v4 3/3 udp", err4(3, 3, &cut(&udp4(), 28)).bytes()),
        ("v4 vlan ihl7 11/0 syn", err4(11, 0, &syn4()).vlan(3).ihl(7).rfc4884_len(8).bytes()),
        ("v4 3/4 echo", err4(3, 4, &Frame::ipv4(C4, S4).ihl(6).echo_request(1, 2, 0).ip_bytes()).mtu(576).bytes()),
        ("v6 qinq hbh 1/4 ext", err6(1, 4, &ext_inner).qinq(1, 2).hop_by_hop(0).bytes()),
        ("v6 2/0", err6(2, 0, &cut(&udp6(), 48)).mtu(1280).bytes()),
        (
            "v6 137",
            Frame::ipv6(R6, C6).icmpv6_redirect(T6, S6, Some(&Frame::ipv6(C6, S6).udp(11, 12, 4).ip_bytes())).bytes(),
        ),
    ];
    let mut v = Vec::new();
    for (name, f) in frames {
        for n in 14..=f.len() {
            v.push((format!("{name} cut {n}"), f[..n].to_vec()));
        }
    }
    v
}

/// The skb test run rejects (EINVAL) an untagged IPv4 / IPv6 frame shorter
/// than its fixed IP header; the XDP one only wants the Ethernet header.
fn skb_test_run_accepts(f: &[u8]) -> bool {
    match f.get(12..14) {
        Some([0x08, 0x00]) => f.len() >= 14 + 20,
        Some([0x86, 0xdd]) => f.len() >= 14 + 40,
        Some(_) => true,
        None => false,
    }
}

/// Deterministic xorshift: random frames without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Random bytes, random tails after a valid ICMP-error header, and random
/// mutations of the corpus.
fn random_frames(seed: u64, n: usize) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(seed);
    let corpus = corpus();
    let mut v = Vec::new();
    for i in 0..n {
        let len = 14 + rng.below(300);
        v.push((format!("random {i}"), rng.bytes(len)));
        // Ethernet + IPv4/IPv6 + an ICMP error header of a reported type,
        // then garbage (half the time with a plausible IP version).
        let v6 = rng.below(2) == 1;
        let code = rng.below(16) as u8;
        let mut f = if v6 {
            Frame::ipv6(R6, C6).icmp([1u8, 2, 3, 4, 137][rng.below(5)], code, &[])
        } else {
            Frame::ipv4(R4, C4).icmp([3u8, 4, 5, 11, 12][rng.below(5)], code, &[])
        };
        for t in 0..rng.below(3) {
            f = f.vlan(t as u16);
        }
        let mut b = f.bytes();
        let at = b.len();
        let tail = rng.below(200);
        b.extend(rng.bytes(tail));
        if tail > 0 && rng.below(2) == 1 {
            b[at] = if v6 { 0x60 } else { 0x45 };
        }
        v.push((format!("random tail {i}"), b));
        // A corpus frame with a few bytes changed and maybe cut.
        let (name, base) = &corpus[rng.below(corpus.len())];
        let mut b = base.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(b.len());
            b[at] = rng.next() as u8;
        }
        if rng.below(2) == 1 {
            b.truncate(14 + rng.below(b.len() - 13));
        }
        v.push((format!("mutated {name} {i}"), b));
    }
    v
}

// ---- tests --------------------------------------------------------------------------

#[test]
fn verifier_accepts_every_program() -> Result<()> {
    if !root_or_skip("verifier_accepts_every_program") {
        return Ok(());
    }
    // With the tick clock and with the helper it falls back to.
    for helper_clock in [false, true] {
        verify_all(kernel::load(&LoadOptions { helper_clock, ..LoadOptions::default() })?)?;
    }
    Ok(())
}

fn verify_all(mut ebpf: Ebpf) -> Result<()> {
    let names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_string()).collect();
    for want in ["netobs_xdp", "netobs_baseline", "netobs_tc_ingress", "netobs_tc_egress"] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    // Every program in the object, whatever gets added later.
    for name in &names {
        let info = match ebpf.program(name).context("program vanished")? {
            Program::Xdp(_) => load_program::<Xdp>(&mut ebpf, name)?.info()?,
            Program::SchedClassifier(_) => load_program::<SchedClassifier>(&mut ebpf, name)?.info()?,
            Program::TracePoint(_) => load_program::<TracePoint>(&mut ebpf, name)?.info()?,
            Program::RawTracePoint(_) => load_program::<RawTracePoint>(&mut ebpf, name)?.info()?,
            other => bail!("{name}: no verifier check for program type {:?}", other.prog_type()),
        };
        // Headroom against the verifier's 1M-instruction complexity limit:
        // a parser change that explodes the state space fails here, not on
        // an operator's kernel.
        let verified = info.verified_instruction_count().context("verified instruction count")?;
        eprintln!("{name}: verifier processed {verified} instructions");
        assert!(verified < 800_000, "{name}: the verifier processed {verified} instructions (limit 1M; keep headroom)");
    }
    Ok(())
}

#[test]
fn xdp_matches_host_parser_on_crafted_packets() -> Result<()> {
    if !root_or_skip("xdp_matches_host_parser_on_crafted_packets") {
        return Ok(());
    }
    empty_netns(|| {
        let cfg = big_config();
        let mut h = Harness::new(cfg)?;
        let frames = corpus();
        let bad = differential(&mut h, Prog::Xdp, &cfg, &frames, LO, None, &no_route)?;
        assert_clean(bad, frames.len());
        // The corpus exercised every path it is meant to.
        let total = counters::read(&h.ebpf)?;
        assert!(total.stat(stat::ICMP_ERRORS) >= 60, "{:?}", total.stats);
        assert!(total.stat(stat::ICMP_OTHER) >= 4);
        assert!(total.stat(stat::MALFORMED) >= 2);
        // Truncated quotes are counted by user space, from the events the
        // differential compared above.
        let truncated = frames
            .iter()
            .filter(|(_, f)| {
                model(f, Prog::Xdp, LO, &cfg, &no_route).events.iter().any(|e| e.flags & flags::QUOTE_TRUNCATED != 0)
            })
            .count();
        assert!(truncated >= 3, "{truncated} truncated quotes");
        assert_eq!(total.stat(stat::EVENTS), total.stat(stat::ICMP_ERRORS));
        assert_eq!(total.stat(stat::SAMPLED_OUT) + total.stat(stat::RINGBUF_FULL) + total.stat(stat::MAP_FULL), 0);
        Ok(())
    })
}

#[test]
fn xdp_matches_host_parser_at_every_truncation() -> Result<()> {
    if !root_or_skip("xdp_matches_host_parser_at_every_truncation") {
        return Ok(());
    }
    empty_netns(|| {
        let cfg = big_config();
        let mut h = Harness::new(cfg)?;
        let frames = truncations();
        let bad = differential(&mut h, Prog::Xdp, &cfg, &frames, LO, None, &no_route)?;
        assert_clean(bad, frames.len());
        Ok(())
    })
}

#[test]
fn xdp_matches_host_parser_on_random_bytes() -> Result<()> {
    if !root_or_skip("xdp_matches_host_parser_on_random_bytes") {
        return Ok(());
    }
    let seed = std::env::var("NETOBS_DATAPATH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x9e37_79b9_7f4a_7c15);
    empty_netns(|| {
        let cfg = big_config();
        let mut h = Harness::new(cfg)?;
        let frames = random_frames(seed, 400);
        let bad = differential(&mut h, Prog::Xdp, &cfg, &frames, LO, None, &no_route)?;
        assert_clean(bad, frames.len());
        Ok(())
    })
}

#[test]
fn tc_programs_match_host_parser() -> Result<()> {
    if !root_or_skip("tc_programs_match_host_parser") {
        return Ok(());
    }
    empty_netns(|| {
        let cfg = big_config();
        let mut h = Harness::new(cfg)?;
        let mut frames = corpus();
        frames.extend(truncations().into_iter().step_by(7));
        frames.extend(random_frames(42, 60));
        frames.retain(|(_, f)| skb_test_run_accepts(f));
        for prog in [Prog::TcIngress, Prog::TcEgress] {
            let bad = differential(&mut h, prog, &cfg, &frames, LO, None, &no_route)?;
            assert_clean(bad, frames.len());
        }
        // Egress reports ICMP errors as sent by this host.
        let out = h.run(Prog::TcEgress, &err4(3, 3, &cut(&udp4(), 28)).bytes(), None)?;
        assert_eq!(out.events.len(), 1);
        assert_eq!((out.events[0].kind, out.events[0].hook), (kind::ICMP_SENT, hook::TC_EGRESS));
        Ok(())
    })
}

#[test]
fn tc_egress_reports_df_above_the_path_mtu() -> Result<()> {
    if !root_or_skip("tc_egress_reports_df_above_the_path_mtu") {
        return Ok(());
    }
    empty_netns(|| {
        let cfg = Config { egress_path_mtu: 1400, ..big_config() };
        let mut h = Harness::new(cfg)?;
        let frames: Vec<(String, Vec<u8>)> = vec![
            ("v4 df 1500".into(), Frame::ipv4(C4, S4).df().tcp(Tcp::new(1, 2).payload_len(1460)).bytes()),
            ("v4 df 1400".into(), Frame::ipv4(C4, S4).df().tcp(Tcp::new(1, 2).payload_len(1360)).bytes()),
            ("v4 no df 1500".into(), Frame::ipv4(C4, S4).tcp(Tcp::new(1, 2).payload_len(1460)).bytes()),
            ("v6 1401".into(), Frame::ipv6(C6, S6).udp(1, 2, 1353).bytes()),
            ("v4 df 1500 vlan".into(), Frame::ipv4(C4, S4).vlan(3).df().udp(1, 2, 1472).bytes()),
        ];
        let bad = differential(&mut h, Prog::TcEgress, &cfg, &frames, LO, None, &no_route)?;
        assert_clean(bad, frames.len());
        let total = counters::read(&h.ebpf)?;
        assert_eq!(total.stat(stat::DF_OVERSIZED), 3, "{:?}", total.stats);
        Ok(())
    })
}

/// The FIB path for real: a test run inside the `gateway-df` router's
/// namespace, arriving on its eth0, for packets routed out of its
/// 1400-byte eth1.
#[test]
fn xdp_df_oversized_through_fib_lookup() -> Result<()> {
    if !root_or_skip("xdp_df_oversized_through_fib_lookup") {
        return Ok(());
    }
    df_through_fib_lookup(1)
}

/// The same without `BPF_FIB_LOOKUP_SKIP_NEIGH`, as on kernels before 6.3
/// (which reject the flag): an unresolved neighbour (NO_NEIGH) still names
/// the egress, the length lookup finds the MTU, and no lookup fails.
#[test]
fn xdp_df_oversized_without_skip_neigh() -> Result<()> {
    if !root_or_skip("xdp_df_oversized_without_skip_neigh") {
        return Ok(());
    }
    df_through_fib_lookup(0)
}

fn df_through_fib_lookup(fib_skip_neigh: u32) -> Result<()> {
    let s = lab::scenarios::build("gateway-df")?;
    let gw = s.node("gw")?.clone();
    if fib_skip_neigh == 0 {
        // Unresolved neighbours: every lookup answers NO_NEIGH.
        gw.ip(&["neigh", "flush", "all"])?;
    }
    let eth0 = gw.ifindex("eth0")?;
    let eth1 = gw.ifindex("eth1")?;
    in_netns(&gw, || {
        let cfg = Config { min_mtu: 1400, fib_skip_neigh, ..big_config() };
        let mut h = Harness::new(cfg)?;
        // A test run may only name a veth as its ingress once the veth has
        // registered its XDP receive queues: attach the empty program.
        load_program::<Xdp>(&mut h.ebpf, "netobs_baseline")?.attach("eth0", XdpMode::Driver)?;
        let frames: Vec<(String, Vec<u8>)> = vec![
            (
                "v4 df 1500 tcp".into(),
                Frame::ipv4(C4, S4).df().ttl(64).tcp(Tcp::new(40000, 5201).seq(1).payload_len(1460)).bytes(),
            ),
            ("v4 df 1500 udp".into(), Frame::ipv4(C4, S4).df().udp(40000, 5201, 1472).bytes()),
            ("v4 df 1401".into(), Frame::ipv4(C4, S4).df().udp(40000, 5201, 1373).bytes()),
            ("v4 df 1400".into(), Frame::ipv4(C4, S4).df().udp(40000, 5201, 1372).bytes()),
            ("v4 no df 1500".into(), Frame::ipv4(C4, S4).udp(40000, 5201, 1472).bytes()),
            ("v4 df 1500 back to src link".into(), Frame::ipv4(S4, C4).df().udp(5201, 40000, 1472).bytes()),
            ("v4 df 1500 vlan".into(), Frame::ipv4(C4, S4).vlan(4).df().udp(40000, 5201, 1472).bytes()),
            ("v4 df later frag".into(), Frame::ipv4(C4, S4).df().frag_offset(10).raw(17, &[0; 1480]).bytes()),
            ("v4 df 1500 echo".into(), Frame::ipv4(C4, S4).df().echo_request(3, 4, 1472).bytes()),
            ("v6 1500 udp".into(), Frame::ipv6(C6, S6).udp(40000, 5201, 1452).bytes()),
            ("v6 1500 tcp hbh".into(), Frame::ipv6(C6, S6).hop_by_hop(0).tcp(Tcp::new(1, 2).payload_len(1432)).bytes()),
            ("v6 1400".into(), Frame::ipv6(C6, S6).udp(40000, 5201, 1352).bytes()),
        ];
        let fib = |p: &PacketInfo| -> Option<(u32, u32)> {
            let towards_dst =
                if p.family == 4 { p.dst[..3] == [198, 18, 2] } else { p.dst[..6] == [0x20, 0x01, 0x0d, 0xb8, 0, 2] };
            (towards_dst && p.total_len > 1400).then_some((eth1, 1400))
        };
        // xdp_md: data, data_end (filled per frame), data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
        let mut ctx = Vec::new();
        for w in [0u32, 0, 0, eth0, 0, 0] {
            ctx.extend_from_slice(&w.to_ne_bytes());
        }
        let bad = differential(&mut h, Prog::Xdp, &cfg, &frames, eth0, Some(&ctx), &fib)?;
        assert_clean(bad, frames.len());
        let total = counters::read(&h.ebpf)?;
        let echo = PROGRAM_DF_CHECKS_NON_ERROR_ICMP as u64;
        assert_eq!(total.stat(stat::DF_OVERSIZED), 5 + echo, "{:?}", total.stats);
        assert_eq!(total.stat(stat::FIB_LOOKUPS), 6 + echo, "{:?}", total.stats);
        assert_eq!(total.df.get(&DfCounterKey { ingress_ifindex: eth0, egress_ifindex: eth1 }), Some(&(5 + echo)));
        assert_eq!(total.stat(stat::FIB_ERRORS), 0, "{:?}", total.stats);
        Ok(())
    })
}

/// The per-CPU route cache: a flow's second DF packet is answered without
/// a FIB lookup, with the same verdict and event; other flows still ask;
/// and a route change shows once the entry expires.
#[test]
fn route_cache_answers_repeated_flows_and_expires() -> Result<()> {
    if !root_or_skip("route_cache_answers_repeated_flows_and_expires") {
        return Ok(());
    }
    let s = lab::scenarios::build("gateway-df")?;
    let gw = s.node("gw")?.clone();
    let eth0 = gw.ifindex("eth0")?;
    let eth1 = gw.ifindex("eth1")?;
    in_netns(&gw, || {
        let ttl = Duration::from_millis(300);
        // A threshold below the narrow link, so a packet that fits it is
        // still a candidate.
        let cfg = Config { min_mtu: 1300, fib_cache_ms: ttl.as_millis() as u32, ..big_config() };
        let mut h = Harness::new(cfg)?;
        load_program::<Xdp>(&mut h.ebpf, "netobs_baseline")?.attach("eth0", XdpMode::Driver)?;
        let run = |h: &mut Harness, frame: &[u8]| -> Result<Outcome> {
            let mut ctx = Vec::new();
            for w in [0u32, frame.len() as u32, 0, eth0, 0, 0] {
                ctx.extend_from_slice(&w.to_ne_bytes());
            }
            h.run(Prog::Xdp, frame, Some(&ctx))
        };
        let fib = |p: &PacketInfo| -> Option<(u32, u32)> {
            (p.dst[..3] == [198, 18, 2] && p.total_len > 1400).then_some((eth1, 1400))
        };
        let big = Frame::ipv4(C4, S4).df().tcp(Tcp::new(40000, 5201).seq(1).payload_len(1460)).bytes();
        let fits = Frame::ipv4(C4, S4).df().tcp(Tcp::new(40000, 5201).seq(1).payload_len(1350)).bytes();
        let other_flow = Frame::ipv4(C4, S4).df().tcp(Tcp::new(40001, 5201).seq(1).payload_len(1460)).bytes();
        let want_event = model(&big, Prog::Xdp, eth0, &cfg, &fib).events;
        assert_eq!(want_event.len(), 1);

        let first = run(&mut h, &big)?;
        assert_eq!(first.stats.get("fib_lookups"), Some(&1), "{first:?}");
        assert_eq!(first.stats.get("fib_cache_hits"), None, "{first:?}");
        assert_eq!(first.events, want_event);
        for i in 0..2 {
            let again = run(&mut h, &big)?;
            assert_eq!(again.stats.get("fib_lookups"), None, "repeat {i}: {again:?}");
            assert_eq!(again.stats.get("fib_cache_hits"), Some(&1), "repeat {i}: {again:?}");
            assert_eq!(again.stats.get("df_oversized"), Some(&1), "repeat {i}: {again:?}");
            assert_eq!(again.events, want_event, "repeat {i}");
        }
        // Same flow, smaller packet: the cached route MTU says it fits.
        let small = run(&mut h, &fits)?;
        assert_eq!(small.stats.get("fib_cache_hits"), Some(&1), "{small:?}");
        assert_eq!(small.stats.get("df_oversized"), None, "{small:?}");
        // Another flow asks the FIB itself.
        let other = run(&mut h, &other_flow)?;
        assert_eq!(other.stats.get("fib_lookups"), Some(&1), "{other:?}");
        assert_eq!(other.stats.get("df_oversized"), Some(&1), "{other:?}");

        // Widen the narrow link: cached answers may lag by at most the TTL.
        gw.ip(&["link", "set", "eth1", "mtu", "1500"])?;
        std::thread::sleep(ttl + Duration::from_millis(100));
        let after = run(&mut h, &big)?;
        assert_eq!(after.stats.get("fib_lookups"), Some(&1), "{after:?}");
        assert_eq!(after.stats.get("df_oversized"), None, "1500-byte packet now fits: {after:?}");
        assert!(after.events.is_empty(), "{after:?}");
        Ok(())
    })
}

/// Under a flood events leave the CPU in multi-event records; every one
/// arrives, in order, equal to the host parser's, and is counted once.
#[test]
fn events_are_batched_under_a_flood_and_none_is_lost() -> Result<()> {
    if !root_or_skip("events_are_batched_under_a_flood_and_none_is_lost") {
        return Ok(());
    }
    empty_netns(|| {
        let cfg = big_config();
        let mut h = Harness::new(cfg)?;
        let frame = err4(3, 10, &syn4()).bytes();
        let want = model(&frame, Prog::Xdp, LO, &cfg, &no_route).events;
        assert_eq!(want.len(), 1);
        const RUNS: u32 = 50;
        let before = counters::read(&h.ebpf)?;
        let p: &Xdp = h.ebpf.program("netobs_xdp").context("program")?.try_into()?;
        p.test_run(TestRunOptions { data_in: Some(&frame), repeat: RUNS, ..TestRunOptions::new() })?;
        stage::flush(&h.ebpf, Duration::ZERO)?;
        let after = counters::read(&h.ebpf)?;
        assert_eq!(after.stat(stat::EVENTS) - before.stat(stat::EVENTS), u64::from(RUNS));
        assert_eq!(after.stat(stat::RINGBUF_FULL), before.stat(stat::RINGBUF_FULL));
        let mut records = Vec::new();
        let mut events = Vec::new();
        while let Some(item) = h.ring.next() {
            let decoded: Vec<Event> = Event::from_record(&item)
                .context("record of whole events")?
                .collect::<Option<_>>()
                .context("every event decodes")?;
            records.push(decoded.len());
            events.extend(decoded);
        }
        assert_eq!(events.len(), RUNS as usize, "records {records:?}");
        assert!(records.iter().any(|&n| n > 1), "no batch among records {records:?}");
        assert!(records.iter().all(|&n| n <= netobs_common::event::STAGE_EVENTS), "records {records:?}");
        assert!(events.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns), "out of order");
        for mut ev in events {
            ev.ts_ns = 0;
            assert_eq!(Some(&ev), want.first());
        }
        // Nothing is left behind in any stage.
        assert_eq!(stage::flush(&h.ebpf, Duration::ZERO)?, 0);
        Ok(())
    })
}

/// The packet programs read time from jiffies (an inlined load) scaled by
/// the tick netobs measured at start: their timestamps must read as
/// CLOCK_MONOTONIC_COARSE does, within a tick, and advance with it.
#[test]
fn events_are_stamped_on_the_coarse_clock_by_the_tick_clock() -> Result<()> {
    if !root_or_skip("events_are_stamped_on_the_coarse_clock_by_the_tick_clock") {
        return Ok(());
    }
    let tick = kernel::features::detect().tick_clock.context("the kernel tick was not measured")?;
    assert!([100, 250, 300, 1000].contains(&tick.hz), "{tick:?}");
    empty_netns(|| {
        let mut h = Harness::new(big_config())?;
        let frame = err4(3, 10, &syn4()).bytes();
        let coarse = || {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: valid clock id and pointer.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        };
        let mut stamps = Vec::new();
        for _ in 0..2 {
            let before = coarse();
            let p: &Xdp = h.ebpf.program("netobs_xdp").context("program")?.try_into()?;
            p.test_run(TestRunOptions { data_in: Some(&frame), repeat: 1, ..TestRunOptions::new() })?;
            let after = coarse();
            stage::flush(&h.ebpf, Duration::ZERO)?;
            let mut evs = Vec::new();
            events::drain(&mut h.ring, &mut evs, 16);
            let ev = evs.first().context("no event")?;
            let slack = 2 * u64::from(tick.tick_ns);
            assert!(
                ev.ts_ns + slack >= before && ev.ts_ns <= after + slack,
                "stamp {} outside [{before}, {after}] +- {slack}",
                ev.ts_ns
            );
            stamps.push(ev.ts_ns);
            std::thread::sleep(Duration::from_millis(30));
        }
        let moved = stamps[1] - stamps[0];
        assert!(moved >= 30_000_000 - 2 * u64::from(tick.tick_ns), "the clock moved {moved} ns in 30 ms");
        Ok(())
    })
}

/// A fixed sampling seed, so the tests know which reporters share a bucket.
const SEED: u32 = 0x5eed_1234;

/// `n` IPv4 reporters in 198.18.100.0/24.. whose fair-sampling buckets
/// (two each, under [`SEED`]) differ from each other's and from `avoid`.
fn reporters_in_distinct_buckets(n: usize, avoid: &[u32]) -> Vec<Ipv4Addr> {
    let mut used: Vec<u32> = avoid.to_vec();
    let mut out = Vec::new();
    for i in 0..=u16::MAX {
        let a = Ipv4Addr::new(198, 18, 100 + (i >> 8) as u8, i as u8);
        let b = buckets4(a);
        if !b.iter().any(|x| used.contains(x)) {
            used.extend(b);
            out.push(a);
            if out.len() == n {
                break;
            }
        }
    }
    out
}

fn buckets4(a: Ipv4Addr) -> [u32; 2] {
    let mut w = [0u8; 16];
    w[..4].copy_from_slice(&a.octets());
    reporter_buckets(&w, SEED)
}

/// An ICMP 3/10 error from `reporter` quoting our SYN.
fn reject_from(reporter: Ipv4Addr) -> Vec<u8> {
    Frame::ipv4(reporter, C4).ttl(63).icmp_error(3, 10, &cut(&syn4(), 40)).bytes()
}

#[test]
fn token_bucket_holds_events_back_and_counts_them() -> Result<()> {
    if !root_or_skip("token_bucket_holds_events_back_and_counts_them") {
        return Ok(());
    }
    empty_netns(|| {
        // The global cap: burst 3; 2/s refills well under one token during
        // the test, but fills the (initially empty) bucket on the first
        // packet. Ten reporters in ten buckets, one error each.
        let cfg = Config { events_per_sec: 2, burst: 3, sample_seed: SEED, ..big_config() };
        let mut h = Harness::new(cfg)?;
        let run = |h: &mut Harness, frames: &[Vec<u8>]| -> Result<(usize, u64, u64)> {
            let (mut events, mut sampled_out, mut counted) = (0, 0, 0);
            for (i, frame) in frames.iter().enumerate() {
                let out = h.run(Prog::Xdp, frame, None)?;
                assert_eq!(out.ret, XDP_PASS);
                assert_eq!(out.stats.get("icmp_errors"), Some(&1), "run {i}: {out:?}");
                counted += out.icmp.values().sum::<u64>();
                events += out.events.len();
                sampled_out += out.stats.get("sampled_out").copied().unwrap_or(0);
                assert_eq!(out.stats.get("events").copied().unwrap_or(0), out.events.len() as u64);
                if let Some(ev) = out.events.first() {
                    let mut want = model(frame, Prog::Xdp, LO, &cfg, &no_route).events;
                    assert_eq!(want.pop().as_ref(), Some(ev));
                }
            }
            Ok((events, sampled_out, counted))
        };
        let frames: Vec<Vec<u8>> = reporters_in_distinct_buckets(10, &[]).into_iter().map(reject_from).collect();
        let start = std::time::Instant::now();
        let (events, sampled_out, counted) = run(&mut h, &frames)?;
        // A stalled CI machine may refill a token (one per 0.5 s) mid-loop.
        let refilled = (start.elapsed().as_secs_f64() * cfg.events_per_sec as f64) as usize;
        assert_eq!(counted, 10);
        assert_eq!(events + sampled_out as usize, 10);
        assert!((3..=3 + refilled).contains(&events), "{events} events, {refilled} tokens refilled");
        if refilled == 0 {
            assert_eq!((events, sampled_out), (3, 7));
        }

        // One reporter gets the share of the burst of its two buckets
        // (2 x 48 / FAIR_SHARE = 6), however much is left globally.
        let cfg = Config { events_per_sec: 2, burst: 48, sample_seed: SEED, ..big_config() };
        let mut h = Harness::new(cfg)?;
        let one = reject_from(Ipv4Addr::new(198, 18, 7, 7));
        let start = std::time::Instant::now();
        let (events, sampled_out, counted) = run(&mut h, &vec![one.clone(); 10])?;
        let refilled = (start.elapsed().as_secs_f64() * 2.0 * f64::from(fair_rate(cfg.events_per_sec))) as usize;
        let share = 2 * fair_burst(cfg.burst) as usize;
        assert_eq!((counted, events + sampled_out as usize), (10, 10));
        assert!((share..=share + refilled).contains(&events), "{events} events, share {share}");

        // events_per_sec 0: counted, never sampled.
        let cfg = Config { events_per_sec: 0, ..big_config() };
        let mut h = Harness::new(cfg)?;
        let out = h.run(Prog::Xdp, &one, None)?;
        assert!(out.events.is_empty());
        assert_eq!(out.stats.get("sampled_out"), Some(&1));
        assert_eq!(out.icmp.values().sum::<u64>(), 1);
        Ok(())
    })
}

/// Fair sampling: a flood from one reporter, far past the global burst,
/// takes only its own two buckets' share; one real rejection from another
/// reporter right after, even one sharing a bucket with the flooder, still
/// yields its event (its other bucket serves it). (With one bucket per CPU,
/// first come first served, the flood took every token.)
#[test]
fn a_flood_from_one_reporter_leaves_events_for_another() -> Result<()> {
    if !root_or_skip("a_flood_from_one_reporter_leaves_events_for_another") {
        return Ok(());
    }
    empty_netns(|| {
        // The production defaults (1000/s, burst 200).
        let cfg = Config { sample_seed: SEED, ..Config { fib_cache_ms: 0, ..Config::DEFAULT } };
        let mut h = Harness::new(cfg)?;
        let flooder = Ipv4Addr::new(198, 18, 66, 66);
        // Sharing one of the flooder's two buckets: the other one serves it.
        let [shared, _] = buckets4(flooder);
        let real = (0..=u8::MAX)
            .map(|i| Ipv4Addr::new(198, 18, 101, i))
            .find(|&a| buckets4(a).contains(&shared) && !buckets4(a).contains(&buckets4(flooder)[1]))
            .context("no reporter sharing one bucket")?;
        const FLOOD: u32 = 5_000;
        let before = counters::read(&h.ebpf)?;
        let p: &Xdp = h.ebpf.program("netobs_xdp").context("program")?.try_into()?;
        let flood = reject_from(flooder);
        let t = std::time::Instant::now();
        p.test_run(TestRunOptions { data_in: Some(&flood), repeat: FLOOD, ..TestRunOptions::new() })?;
        let out = h.run(Prog::Xdp, &reject_from(real), None)?;
        let elapsed = t.elapsed();
        let after = counters::read(&h.ebpf)?;
        assert_eq!(after.stat(stat::ICMP_ERRORS) - before.stat(stat::ICMP_ERRORS), u64::from(FLOOD) + 1);
        // `run` flushed the stage: the flood's staged events came out too.
        let from = |a: Ipv4Addr| out.events.iter().filter(|e| e.outer_src_ip() == std::net::IpAddr::V4(a)).count();
        let flood_events = after.stat(stat::EVENTS) - before.stat(stat::EVENTS) - from(real) as u64;
        assert_eq!(from(flooder) + from(real), out.events.len());
        // The flood's share: its two buckets' burst plus what refilled meanwhile.
        let refill = (elapsed.as_secs_f64() * 2.0 * f64::from(fair_rate(cfg.events_per_sec))).ceil() as u64;
        assert!(
            flood_events <= 2 * u64::from(fair_burst(cfg.burst)) + refill,
            "the flood took {flood_events} events in {elapsed:?}"
        );
        assert!(flood_events < u64::from(cfg.burst), "the flood took the whole burst ({flood_events})");
        assert_eq!(from(real), 1, "no event for the real rejection ({flood_events} flood events)");
        Ok(())
    })
}

/// A spoofed flood, random reporters, types and codes, v4 and v6, on XDP
/// and TC ingress: the counters never fill (MAP_FULL stays 0), every error
/// is counted, codes beyond the known ones land in their type's "other"
/// bucket, and the key space stays within its fixed size.
#[test]
fn a_spoofed_flood_never_fills_the_counters() -> Result<()> {
    if !root_or_skip("a_spoofed_flood_never_fills_the_counters") {
        return Ok(());
    }
    empty_netns(|| {
        let cfg = Config { events_per_sec: 1000, burst: 200, ..big_config() };
        let mut h = Harness::new(cfg)?;
        let mut rng = Rng(0x51_00f3d);
        let mut want: BTreeMap<(u8, u8, u8, u8), u64> = BTreeMap::new();
        const N: usize = 3000;
        for i in 0..N {
            let code = rng.next() as u8;
            let v6 = rng.below(2) == 1;
            let (family, t, frame) = if v6 {
                let t = [1u8, 2, 3, 4][rng.below(4)];
                let r = Ipv6Addr::new(0x2001, 0xdb8, rng.next() as u16, 0, 0, 0, 0, rng.next() as u16);
                (6, t, Frame::ipv6(r, C6).ttl(rng.below(255) as u8 + 1).icmp_error(t, code, &cut(&udp6(), 48)).bytes())
            } else {
                let t = [3u8, 4, 5, 11, 12][rng.below(5)];
                let r = Ipv4Addr::new(198, 18, rng.next() as u8, rng.next() as u8);
                (4, t, Frame::ipv4(r, C4).ttl(rng.below(255) as u8 + 1).icmp_error(t, code, &cut(&udp4(), 28)).bytes())
            };
            let prog = if i % 2 == 0 { Prog::Xdp } else { Prog::TcIngress };
            let out = h.run(prog, &frame, None)?;
            assert_eq!(out.icmp.values().sum::<u64>(), 1, "{i}: {out:?}");
            let (_, _, c) = class_key(icmp_class(family, t, code));
            *want.entry((prog.hook(), family, t, c)).or_default() += 1;
        }
        let total = counters::read(&h.ebpf)?;
        assert_eq!(total.stat(stat::MAP_FULL), 0);
        assert_eq!(total.stat(stat::ICMP_ERRORS), N as u64);
        assert_eq!(total.icmp.values().sum::<u64>(), N as u64);
        let got: BTreeMap<(u8, u8, u8, u8), u64> =
            total.icmp.iter().map(|(k, &n)| ((k.hook, k.family, k.icmp_type, k.icmp_code), n)).collect();
        assert_eq!(got, want);
        assert!(total.icmp.keys().all(|k| k.ifindex == LO), "{:?}", total.icmp.keys());
        assert!(total.icmp.keys().any(|k| k.icmp_code == counters::OTHER_CODE));
        assert!(total.icmp.len() <= 2 * netobs_common::counters::ICMP_CLASSES);
        Ok(())
    })
}

/// Collects log records (the kernel-side logger's output).
#[derive(Default, Clone)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<(log::Level, String)>>>);
impl log::Log for Captured {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((r.level(), r.args().to_string()));
    }
    fn flush(&self) {}
}

/// aya-log for cold paths: at debug level a malformed frame is logged once
/// (rate-limited per CPU, so the next one within the second is not), and
/// with the default (off) nothing is written at all.
#[test]
fn malformed_frames_are_logged_at_debug_and_rate_limited() -> Result<()> {
    if !root_or_skip("malformed_frames_are_logged_at_debug_and_rate_limited") {
        return Ok(());
    }
    use netobs::kernel::loader::EbpfLogLevel;
    empty_netns(|| {
        let bad = Frame::ipv4(C4, S4).raw_version_ihl(0x44).udp(1, 2, 0).bytes();
        for (level, want) in [(EbpfLogLevel::Debug, 1), (EbpfLogLevel::Off, 0)] {
            let mut ebpf =
                kernel::load(&LoadOptions { config: big_config(), ebpf_log_level: level, ..LoadOptions::default() })?;
            let sink = Captured::default();
            let mut logger = aya_log::EbpfLogger::init_with_logger(&mut ebpf, sink.clone())?;
            let p: &mut Xdp = load_program(&mut ebpf, "netobs_xdp")?;
            p.test_run(TestRunOptions { data_in: Some(&bad), repeat: 5, ..TestRunOptions::new() })?;
            logger.flush();
            let records = sink.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let malformed: Vec<_> = records.iter().filter(|(_, m)| m.contains("malformed")).collect();
            assert_eq!(malformed.len(), want, "{level:?}: {records:?}");
            if let Some((lvl, msg)) = malformed.first() {
                assert_eq!(*lvl, log::Level::Debug);
                assert!(msg.contains(&format!("ifindex {LO}")), "{msg}");
            }
            assert_eq!(counters::read(&ebpf)?.stat(stat::MALFORMED), 5);
        }
        Ok(())
    })
}

/// Interface names and MTUs (the DF threshold, the names in every report)
/// come from the namespace netobs runs in, also when it was entered with
/// setns (`nsenter --net`), where /sys/class/net still shows the host's.
#[test]
fn interface_facts_come_from_our_namespace() -> Result<()> {
    if !root_or_skip("interface_facts_come_from_our_namespace") {
        return Ok(());
    }
    let s = lab::scenarios::build("gateway-df")?;
    let gw = s.node("gw")?.clone();
    let eth0 = gw.ifindex("eth0")?;
    let eth1 = gw.ifindex("eth1")?;
    in_netns(&gw, || {
        let names = netobs::net::interface_names();
        assert_eq!(names.get(&eth0).map(String::as_str), Some("eth0"), "{names:?}");
        assert_eq!(names.get(&eth1).map(String::as_str), Some("eth1"), "{names:?}");
        assert_eq!(netobs::net::interfaces()?, vec!["eth0".to_string(), "eth1".to_string()]);
        assert_eq!(netobs::net::mtu("eth1"), Some(1400));
        assert_eq!(netobs::net::smallest_mtu(), Some(1400));
        assert_eq!(netobs::net::mtu("nosuch0"), None);
        Ok(())
    })
}
