//! The shared parser against crafted packets: exact fields for every ICMP /
//! ICMPv6 error netobs reports, VLAN tags, IPv4 options and IPv6 extension
//! headers on both the outer and the quoted packet, later fragments, every
//! truncation point, random bytes and random mutations (proptest).

use std::net::{Ipv4Addr, Ipv6Addr};

use netobs_common::craft::{Ext, Frame, Tcp, cut, non_ip_frame, tcp_flags};
use netobs_common::event::{IcmpCapture, flags, have, kind};
use netobs_common::parse::{
    IcmpOutcome, Outer, Skip, capture_icmp, decode_icmp_capture, icmp_header, is_reported_icmp, parse_icmp_error,
    parse_outer,
};
use netobs_common::{Cursor, Event, PacketInfo};
use proptest::prelude::*;

// ---- addresses ------------------------------------------------------------

const R4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
const C4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const S4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
const GW4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const R6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe);
const C6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const S6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
const T6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

fn s4(a: Ipv4Addr) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..4].copy_from_slice(&a.octets());
    s
}

fn s6(a: Ipv6Addr) -> [u8; 16] {
    a.octets()
}

// ---- parsing helpers -------------------------------------------------------

/// What the parser makes of a frame: the outer header and, when it carries
/// ICMP, the outcome and event.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    outer: Result<Outer, Skip>,
    icmp: Option<(IcmpOutcome, Event)>,
}

fn parse(bytes: &[u8]) -> Parsed {
    let c = Cursor::from_slice(bytes);
    let outer = parse_outer(&c);
    let icmp = match &outer {
        Ok(o) if !o.later_fragment && o.protocol == if o.family == 4 { 1 } else { 58 } => {
            let mut ev = Event::default();
            let r = parse_icmp_error(&c, o, &mut ev);
            check_invariants(bytes, o, r, &ev);
            Some((r, ev))
        }
        _ => None,
    };
    Parsed { outer, icmp }
}

/// The event of a frame that must be a reported ICMP error.
/// The event as the datapath would write it: the RFC 4884 bytes the host
/// parser adds are tested in `ext.rs` and `ext_corpus.rs`.
fn event(bytes: &[u8]) -> Event {
    match parse(bytes).icmp {
        Some((IcmpOutcome::Error, ev)) => ev.as_datapath(),
        other => panic!("not an ICMP error: {other:?}\n{bytes:02x?}"),
    }
}

/// Properties every parse must have, whatever the bytes.
fn check_invariants(bytes: &[u8], o: &Outer, r: IcmpOutcome, ev: &Event) {
    if r != IcmpOutcome::Error {
        assert_eq!(*ev, Event::default(), "a non-error must leave the event alone");
        return;
    }
    assert_eq!(ev.kind, kind::ICMP_ERROR);
    assert!(is_reported_icmp(o.family, ev.icmp_type));
    assert_eq!(ev.outer_family, o.family);
    assert_eq!(ev.outer_ttl, o.ttl);
    assert_eq!(ev.vlan_depth, o.vlan_depth);
    assert_eq!(ev.outer_len, o.total_len);
    assert!(ev.quote_len as usize <= bytes.len());
    assert_eq!(ev.ts_ns, 0);
    assert_eq!(ev.ifindex, 0);
    assert_eq!(ev.hook, 0);
    let (v4, v6) = (o.family == 4, o.family == 6);
    assert_eq!(
        ev.flags & flags::HAS_MTU != 0,
        (v4 && ev.icmp_type == 3 && ev.icmp_code == 4) || (v6 && ev.icmp_type == 2)
    );
    assert_eq!(ev.flags & flags::HAS_POINTER != 0, (v4 && ev.icmp_type == 12) || (v6 && ev.icmp_type == 4));
    if ev.flags & flags::HAS_MTU == 0 {
        assert_eq!(ev.mtu, 0);
    }
    if ev.flags & flags::HAS_POINTER == 0 {
        assert_eq!(ev.aux, 0);
    }
    if ev.flags & flags::HAS_RFC4884 == 0 {
        assert_eq!(ev.rfc4884_len, 0);
    }
    if ev.flags & flags::HAS_GATEWAY == 0 {
        assert_eq!(ev.gateway, [0; 16]);
    }
    check_info(&ev.inner, o.family, ev.icmp_type == 137 && v6);
    let h = ev.inner.have;
    let truncated = ev.flags & flags::QUOTE_TRUNCATED != 0;
    if h & have::IP == 0 {
        assert!(truncated, "no quoted IP header must be flagged");
    }
    if h & have::LATER_FRAGMENT != 0 {
        assert!(!truncated, "a later fragment has nothing to truncate");
    }
    if h & have::PORTS != 0 {
        assert!(!truncated);
    }
}

/// A field whose `have` bit is clear is zero.
fn check_info(p: &PacketInfo, family: u8, redirect: bool) {
    let h = p.have;
    assert_eq!(p._pad, 0);
    if h & have::IP == 0 {
        assert_eq!(h, 0, "no other bit without the IP header");
        assert_eq!(p.src, [0; 16]);
        assert_eq!((p.ttl, p.total_len, p.ip_id, p.frag, p.protocol), (0, 0, 0, 0, 0));
        if !redirect {
            assert_eq!(p.dst, [0; 16]);
            assert_eq!(p.family, 0);
        }
    } else {
        assert_eq!(p.family, family);
    }
    if h & have::PORTS == 0 {
        assert_eq!((p.src_port, p.dst_port), (0, 0));
    }
    if h & have::SEQ == 0 {
        assert_eq!(p.seq, 0);
    }
    if h & have::TCP_FLAGS == 0 {
        assert_eq!(p.tcp_flags, 0);
    }
    if h & have::ECHO != 0 {
        assert_eq!(h & (have::PORTS | have::SEQ), have::PORTS | have::SEQ);
        assert_eq!(p.dst_port, 0);
    }
    if h & (have::LATER_FRAGMENT | have::EXT_WALK_INCOMPLETE) != 0 {
        assert_eq!(h & (have::PORTS | have::SEQ | have::TCP_FLAGS | have::ECHO), 0);
    }
    if family == 4 {
        assert_eq!(h & (have::EXT_HEADERS | have::EXT_WALK_INCOMPLETE), 0);
    } else {
        assert_eq!(h & have::IP_OPTIONS, 0);
    }
}

// ---- the packets -------------------------------------------------------------

/// UDP traceroute-style probe, 1500 bytes, DF.
fn udp4() -> Vec<u8> {
    Frame::ipv4(C4, S4).ttl(1).id(0x4242).df().udp(40000, 33434, 1472).ip_bytes()
}

fn udp4_info() -> PacketInfo {
    PacketInfo {
        src: s4(C4),
        dst: s4(S4),
        src_port: 40000,
        dst_port: 33434,
        ip_id: 0x4242,
        total_len: 1500,
        frag: 0x4000,
        family: 4,
        protocol: 17,
        ttl: 1,
        have: have::IP | have::PORTS,
        ..PacketInfo::default()
    }
}

fn udp6() -> Vec<u8> {
    Frame::ipv6(C6, S6).ttl(1).udp(40000, 33434, 1452).ip_bytes()
}

fn udp6_info() -> PacketInfo {
    PacketInfo {
        src: s6(C6),
        dst: s6(S6),
        src_port: 40000,
        dst_port: 33434,
        total_len: 1500,
        family: 6,
        protocol: 17,
        ttl: 1,
        have: have::IP | have::PORTS,
        ..PacketInfo::default()
    }
}

/// A SYN with 20 bytes of options, whole header quoted.
fn syn4() -> Vec<u8> {
    Frame::ipv4(C4, S4).ttl(2).id(7).df().tcp(Tcp::new(40001, 443).seq(0xdead_beef).syn().options_len(20)).ip_bytes()
}

fn syn4_info() -> PacketInfo {
    PacketInfo {
        src: s4(C4),
        dst: s4(S4),
        src_port: 40001,
        dst_port: 443,
        seq: 0xdead_beef,
        ip_id: 7,
        total_len: 60,
        frag: 0x4000,
        family: 4,
        protocol: 6,
        ttl: 2,
        tcp_flags: tcp_flags::SYN,
        have: have::IP | have::PORTS | have::SEQ | have::TCP_FLAGS,
        ..PacketInfo::default()
    }
}

fn base4(t: u8, code: u8, outer_len: u32, quote_len: u16) -> Event {
    Event {
        kind: kind::ICMP_ERROR,
        icmp_type: t,
        icmp_code: code,
        outer_src: s4(R4),
        outer_dst: s4(C4),
        outer_family: 4,
        outer_ttl: 63,
        outer_len,
        quote_len,
        ..Event::default()
    }
}

fn base6(t: u8, code: u8, outer_len: u32, quote_len: u16) -> Event {
    Event {
        kind: kind::ICMP_ERROR,
        icmp_type: t,
        icmp_code: code,
        outer_src: s6(R6),
        outer_dst: s6(C6),
        outer_family: 6,
        outer_ttl: 63,
        outer_len,
        quote_len,
        ..Event::default()
    }
}

fn err4(t: u8, code: u8, quote: &[u8]) -> Frame {
    Frame::ipv4(R4, C4).ttl(63).icmp_error(t, code, quote)
}

fn err6(t: u8, code: u8, quote: &[u8]) -> Frame {
    Frame::ipv6(R6, C6).ttl(63).icmp_error(t, code, quote)
}

// ---- exact fields: ICMPv4 ----------------------------------------------------

#[test]
fn v4_dest_unreachable_every_code() {
    let q = cut(&udp4(), 28);
    for code in 0..=15u8 {
        let mut f = err4(3, code, &q);
        let mut want = base4(3, code, 56, 28);
        want.inner = udp4_info();
        if code == 4 {
            f = f.mtu(1400);
            want.mtu = 1400;
            want.flags = flags::HAS_MTU;
        }
        assert_eq!(event(&f.bytes()), want, "3/{code}");
    }
}

#[test]
fn v4_mtu_only_for_frag_needed() {
    // Bytes 6-7 set on a port unreachable are not an MTU.
    let q = cut(&udp4(), 28);
    let ev = event(&err4(3, 3, &q).rest([0, 0, 0x05, 0x78]).bytes());
    assert_eq!((ev.mtu, ev.flags), (0, 0));
    // RFC 1191 MTU 0 (old routers) is reported as announced.
    let ev = event(&err4(3, 4, &q).bytes());
    assert_eq!((ev.mtu, ev.flags), (0, flags::HAS_MTU));
}

#[test]
fn v4_rfc4884_length() {
    let q = cut(&udp4(), 28);
    for (t, code) in [(3u8, 1u8), (3, 4), (11, 0), (12, 0)] {
        let ev = event(&err4(t, code, &q).rfc4884_len(32).bytes());
        assert_eq!(ev.rfc4884_len, 128, "{t}/{code}");
        assert_ne!(ev.flags & flags::HAS_RFC4884, 0);
    }
    // 255 words is the largest the field can say.
    let ev = event(&err4(11, 0, &q).rfc4884_len(255).bytes());
    assert_eq!(ev.rfc4884_len, 1020);
    // Redirect and source quench have no length field.
    for t in [4u8, 5] {
        let ev = event(&err4(t, 0, &q).rest([0, 32, 0, 0]).bytes());
        assert_eq!(ev.rfc4884_len, 0);
        assert_eq!(ev.flags & flags::HAS_RFC4884, 0);
    }
}

#[test]
fn v4_time_exceeded_quoting_tcp_syn() {
    let q = syn4();
    for code in 0..=1u8 {
        let ev = event(&err4(11, code, &q).rfc4884_len(32).bytes());
        let mut want = base4(11, code, 20 + 8 + 60, 60);
        want.rfc4884_len = 128;
        want.flags = flags::HAS_RFC4884;
        want.inner = syn4_info();
        assert_eq!(ev, want, "11/{code}");
    }
}

#[test]
fn v4_parameter_problem_pointer() {
    let q = cut(&udp4(), 28);
    for code in 0..=2u8 {
        let ev = event(&err4(12, code, &q).pointer(9).bytes());
        let mut want = base4(12, code, 56, 28);
        want.aux = 9;
        want.flags = flags::HAS_POINTER;
        want.inner = udp4_info();
        assert_eq!(ev, want, "12/{code}");
    }
}

#[test]
fn v4_redirect_gateway() {
    let q = cut(&udp4(), 28);
    for code in 0..=3u8 {
        let ev = event(&err4(5, code, &q).gateway(GW4).bytes());
        let mut want = base4(5, code, 56, 28);
        want.gateway = s4(GW4);
        want.flags = flags::HAS_GATEWAY;
        want.inner = udp4_info();
        assert_eq!(ev, want, "5/{code}");
    }
}

#[test]
fn v4_source_quench() {
    let q = cut(&udp4(), 28);
    let mut want = base4(4, 0, 56, 28);
    want.inner = udp4_info();
    assert_eq!(event(&err4(4, 0, &q).bytes()), want);
}

#[test]
fn v4_quoted_echo() {
    let q = cut(&Frame::ipv4(C4, S4).ttl(1).id(9).echo_request(0x1111, 7, 56).ip_bytes(), 28);
    let mut want = base4(11, 0, 56, 28);
    want.inner = PacketInfo {
        src: s4(C4),
        dst: s4(S4),
        src_port: 0x1111,
        seq: 7,
        ip_id: 9,
        total_len: 84,
        family: 4,
        protocol: 1,
        ttl: 1,
        have: have::IP | have::PORTS | have::SEQ | have::ECHO,
        ..PacketInfo::default()
    };
    assert_eq!(event(&err4(11, 0, &q).bytes()), want);
    // Echo reply quoted too (e.g. a reflected reply hitting a filter).
    let q = cut(&Frame::ipv4(C4, S4).echo_reply(3, 4, 0).ip_bytes(), 28);
    let ev = event(&err4(3, 13, &q).bytes());
    assert_eq!((ev.inner.src_port, ev.inner.seq, ev.inner.have & have::ECHO), (3, 4, have::ECHO));
}

#[test]
fn v4_quoted_non_echo_icmp_and_other_protocols() {
    // ICMP timestamp (13): 8 bytes present, no ports to name, not truncated.
    let ts = Frame::ipv4(C4, S4).icmp(13, 0, &[0; 12]).ip_bytes();
    let ev = event(&err4(3, 1, &cut(&ts, 28)).bytes());
    assert_eq!(ev.inner.have, have::IP);
    assert_eq!(ev.inner.protocol, 1);
    assert_eq!(ev.flags & flags::QUOTE_TRUNCATED, 0);
    // GRE (47) and ESP (50): a full 8-byte quote is not truncated ...
    for proto in [47u8, 50, 132] {
        let p = Frame::ipv4(C4, S4).df().raw(proto, &[0xab; 100]).ip_bytes();
        let ev = event(&err4(3, 4, &cut(&p, 28)).mtu(1400).bytes());
        assert_eq!(ev.inner.have, have::IP, "proto {proto}");
        assert_eq!(ev.inner.protocol, proto);
        assert_eq!(ev.flags, flags::HAS_MTU, "proto {proto}");
        // ... a shorter one is.
        let ev = event(&err4(3, 4, &cut(&p, 27)).mtu(1400).bytes());
        assert_eq!(ev.flags, flags::HAS_MTU | flags::QUOTE_TRUNCATED, "proto {proto}");
    }
}

#[test]
fn v4_quote_truncated_after_ip_header() {
    let ev = event(&err4(3, 3, &cut(&udp4(), 20)).bytes());
    let mut want = base4(3, 3, 48, 20);
    want.flags = flags::QUOTE_TRUNCATED;
    want.inner = PacketInfo { src_port: 0, dst_port: 0, have: have::IP, ..udp4_info() };
    assert_eq!(ev, want);
    // 4 bytes of UDP: ports, nothing truncated that names the flow.
    let ev = event(&err4(3, 3, &cut(&udp4(), 24)).bytes());
    assert_eq!(ev.inner, udp4_info());
    assert_eq!(ev.flags, 0);
    // No quote at all.
    let ev = event(&err4(3, 3, &[]).bytes());
    let mut want = base4(3, 3, 28, 0);
    want.flags = flags::QUOTE_TRUNCATED;
    assert_eq!(ev, want);
}

#[test]
fn v4_tcp_quote_lengths() {
    let q = syn4();
    // 8 bytes of TCP: ports + seq, no flags; 14 bytes: flags.
    let ev = event(&err4(3, 4, &cut(&q, 28)).mtu(1400).bytes());
    assert_eq!(ev.inner.have, have::IP | have::PORTS | have::SEQ);
    assert_eq!((ev.inner.seq, ev.inner.tcp_flags), (0xdead_beef, 0));
    let ev = event(&err4(3, 4, &cut(&q, 33)).mtu(1400).bytes());
    assert_eq!(ev.inner.have, have::IP | have::PORTS | have::SEQ);
    let ev = event(&err4(3, 4, &cut(&q, 34)).mtu(1400).bytes());
    assert_eq!(ev.inner.have, have::IP | have::PORTS | have::SEQ | have::TCP_FLAGS);
    assert_eq!(ev.inner.tcp_flags, tcp_flags::SYN);
    let synack = Frame::ipv4(S4, C4).tcp(Tcp::new(443, 40001).syn_ack()).ip_bytes();
    assert_eq!(event(&err4(3, 10, &synack).bytes()).inner.tcp_flags, 0x12);
}

#[test]
fn v4_vlan_tags() {
    let q = cut(&udp4(), 28);
    let mut want = base4(3, 13, 56, 28);
    want.inner = udp4_info();
    for (f, depth) in [
        (err4(3, 13, &q).vlan(100), 1u8),
        (err4(3, 13, &q).svlan(100), 1),
        (err4(3, 13, &q).qinq(10, 20), 2),
        (err4(3, 13, &q).vlan(1).vlan(2), 2),
    ] {
        want.vlan_depth = depth;
        assert_eq!(event(&f.bytes()), want, "{f:?}");
    }
    // A third tag is beyond what is skipped: not IP.
    let f = err4(3, 13, &q).qinq(10, 20).vlan(30).bytes();
    assert_eq!(parse(&f).outer, Err(Skip::NotIp));
}

#[test]
fn v4_options_outer_and_quoted() {
    for ihl in 5..=15u8 {
        let inner = Frame::ipv4(C4, S4).ttl(1).id(0x4242).df().ihl(ihl).udp(40000, 33434, 100).ip_bytes();
        let hlen = ihl as usize * 4;
        let q = cut(&inner, hlen + 8);
        let f = err4(3, 3, &q).ihl(ihl).vlan(7);
        let ev = event(&f.bytes());
        let mut want = base4(3, 3, (hlen + 8 + hlen + 8) as u32, (hlen + 8) as u16);
        want.vlan_depth = 1;
        want.inner = PacketInfo { total_len: (hlen + 108) as u16, ..udp4_info() };
        if ihl > 5 {
            want.inner.have |= have::IP_OPTIONS;
        }
        assert_eq!(ev, want, "ihl {ihl}");
        // The quote cut inside the options: IP fields, no ports.
        if ihl > 5 {
            let ev = event(&err4(3, 3, &cut(&inner, hlen + 3)).ihl(ihl).bytes());
            assert_eq!(ev.inner.have, have::IP | have::IP_OPTIONS);
            assert_ne!(ev.flags & flags::QUOTE_TRUNCATED, 0);
        }
    }
}

#[test]
fn v4_quoted_later_fragment() {
    let inner = Frame::ipv4(C4, S4).ttl(5).id(99).mf().frag_offset(185).udp(1, 2, 100).ip_bytes();
    let ev = event(&err4(11, 1, &cut(&inner, 28)).bytes());
    let mut want = base4(11, 1, 56, 28);
    want.inner = PacketInfo {
        src: s4(C4),
        dst: s4(S4),
        ip_id: 99,
        total_len: 128,
        frag: 0x2000 | 185,
        family: 4,
        protocol: 17,
        ttl: 5,
        have: have::IP | have::LATER_FRAGMENT,
        ..PacketInfo::default()
    };
    assert_eq!(ev, want);
    // First fragment (MF, offset 0): ports are there.
    let first = Frame::ipv4(C4, S4).mf().udp(1, 2, 100).ip_bytes();
    let ev = event(&err4(11, 1, &cut(&first, 28)).bytes());
    assert_eq!(ev.inner.have, have::IP | have::PORTS);
    assert_eq!(ev.inner.frag, 0x2000);
}

// ---- exact fields: ICMPv6 ------------------------------------------------------

#[test]
fn v6_dest_unreachable_every_code() {
    let q = cut(&udp6(), 48);
    for code in 0..=6u8 {
        let ev = event(&err6(1, code, &q).bytes());
        let mut want = base6(1, code, 96, 48);
        want.inner = udp6_info();
        assert_eq!(ev, want, "1/{code}");
    }
}

#[test]
fn v6_packet_too_big() {
    let q = cut(&udp6(), 48);
    let ev = event(&err6(2, 0, &q).mtu(1280).bytes());
    let mut want = base6(2, 0, 96, 48);
    want.mtu = 1280;
    want.flags = flags::HAS_MTU;
    want.inner = udp6_info();
    assert_eq!(ev, want);
    // The 32-bit MTU field is taken whole.
    assert_eq!(event(&err6(2, 0, &q).mtu(70000).bytes()).mtu, 70000);
}

#[test]
fn v6_time_exceeded_rfc4884() {
    let q = cut(&udp6(), 48);
    for code in 0..=1u8 {
        let ev = event(&err6(3, code, &q).rfc4884_len(2).bytes());
        let mut want = base6(3, code, 96, 48);
        want.rfc4884_len = 16;
        want.flags = flags::HAS_RFC4884;
        want.inner = udp6_info();
        assert_eq!(ev, want, "3/{code}");
    }
    let ev = event(&err6(1, 4, &q).rfc4884_len(255).bytes());
    assert_eq!(ev.rfc4884_len, 2040);
}

#[test]
fn v6_parameter_problem_pointer() {
    let q = cut(&udp6(), 48);
    for code in 0..=2u8 {
        let ev = event(&err6(4, code, &q).pointer(40).bytes());
        let mut want = base6(4, code, 96, 48);
        want.aux = 40;
        want.flags = flags::HAS_POINTER;
        want.inner = udp6_info();
        assert_eq!(ev, want, "4/{code}");
    }
    assert_eq!(event(&err6(4, 0, &q).pointer(0x0102_0304).bytes()).aux, 0x0102_0304);
}

#[test]
fn v6_redirect_with_redirected_header() {
    let inner = Frame::ipv6(C6, S6).ttl(64).tcp(Tcp::new(40002, 80).seq(5)).ip_bytes();
    let f = Frame::ipv6(R6, C6).ttl(255).icmpv6_redirect(T6, S6, Some(&inner));
    let ev = event(&f.bytes());
    // 40 + 8 + 32 + 8 (target link-layer option) + 8 + 64 (quote padded).
    let mut want = base6(137, 0, 160, 64);
    want.outer_ttl = 255;
    want.gateway = s6(T6);
    want.flags = flags::HAS_GATEWAY;
    want.inner = PacketInfo {
        src: s6(C6),
        dst: s6(S6),
        src_port: 40002,
        dst_port: 80,
        seq: 5,
        total_len: 60,
        family: 6,
        protocol: 6,
        ttl: 64,
        tcp_flags: tcp_flags::ACK,
        have: have::IP | have::PORTS | have::SEQ | have::TCP_FLAGS,
        ..PacketInfo::default()
    };
    assert_eq!(ev, want);
}

#[test]
fn v6_redirect_without_redirected_header() {
    let f = Frame::ipv6(R6, C6).ttl(255).icmpv6_redirect(T6, S6, None);
    let ev = event(&f.bytes());
    let mut want = base6(137, 0, 40 + 8 + 32 + 8, 0);
    want.outer_ttl = 255;
    want.gateway = s6(T6);
    want.flags = flags::HAS_GATEWAY | flags::QUOTE_TRUNCATED;
    want.inner.dst = s6(S6);
    want.inner.family = 6;
    assert_eq!(ev, want);
    // Body cut short: no gateway, flagged truncated.
    let bytes = f.bytes();
    let ev = event(&bytes[..14 + 40 + 8 + 31]);
    assert_eq!(ev.flags, flags::QUOTE_TRUNCATED);
    assert_eq!(ev.gateway, [0; 16]);
    // A zero-length option stops the walk.
    let mut body = Vec::new();
    body.extend_from_slice(&T6.octets());
    body.extend_from_slice(&S6.octets());
    body.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&netobs_common::craft::redirected_header_option(&udp6()[..48]));
    let ev = event(&Frame::ipv6(R6, C6).icmp(137, 0, &body).bytes());
    assert_ne!(ev.flags & flags::QUOTE_TRUNCATED, 0);
    assert_eq!(ev.inner.have, 0);
}

#[test]
fn v6_quoted_echo() {
    let q = Frame::ipv6(C6, S6).ttl(3).echo_request(0xbeef, 513, 8).ip_bytes();
    let ev = event(&err6(3, 0, &q).bytes());
    let mut want = base6(3, 0, 40 + 8 + 56, 56);
    want.inner = PacketInfo {
        src: s6(C6),
        dst: s6(S6),
        src_port: 0xbeef,
        seq: 513,
        total_len: 56,
        family: 6,
        protocol: 58,
        ttl: 3,
        have: have::IP | have::PORTS | have::SEQ | have::ECHO,
        ..PacketInfo::default()
    };
    assert_eq!(ev, want);
}

#[test]
fn v6_extension_headers_outer_and_quoted() {
    // Quote: hop-by-hop, routing (24 bytes), destination options and a first
    // fragment in front of TCP: 4 headers, the most the walk follows.
    let inner = Frame::ipv6(C6, S6)
        .ttl(9)
        .hop_by_hop(0)
        .routing(2)
        .dest_opts(0)
        .fragment(0, true, 0xabcd_ef01)
        .tcp(Tcp::new(1234, 22).seq(77))
        .ip_bytes();
    let exts = 8 + 24 + 8 + 8;
    assert_eq!(inner.len(), 40 + exts + 20);
    let info = PacketInfo {
        src: s6(C6),
        dst: s6(S6),
        src_port: 1234,
        dst_port: 22,
        seq: 77,
        ip_id: 0xabcd_ef01,
        total_len: (40 + exts + 20) as u16,
        frag: 1,
        family: 6,
        protocol: 6,
        ttl: 9,
        tcp_flags: tcp_flags::ACK,
        have: have::IP | have::EXT_HEADERS | have::PORTS | have::SEQ | have::TCP_FLAGS,
        ..PacketInfo::default()
    };
    // Outer: none, hop-by-hop, hop-by-hop + destination options (+ VLAN).
    for (f, ext_len, depth) in [
        (err6(1, 1, &inner), 0usize, 0u8),
        (err6(1, 1, &inner).hop_by_hop(0), 8, 0),
        (err6(1, 1, &inner).hop_by_hop(1).dest_opts(0).vlan(42), 24, 1),
        (err6(1, 1, &inner).hop_by_hop(0).routing(0).dest_opts(0).qinq(1, 2), 24, 2),
    ] {
        let ev = event(&f.bytes());
        let mut want = base6(1, 1, (40 + ext_len + 8 + inner.len()) as u32, inner.len() as u16);
        want.vlan_depth = depth;
        want.inner = info;
        assert_eq!(ev, want, "{f:?}");
    }
}

#[test]
fn v6_quoted_later_fragment() {
    let inner = Frame::ipv6(C6, S6).ttl(4).fragment(185, false, 77).udp(5, 6, 100).ip_bytes();
    let ev = event(&err6(3, 1, &inner).bytes());
    let mut want = base6(3, 1, (48 + inner.len()) as u32, inner.len() as u16);
    want.inner = PacketInfo {
        src: s6(C6),
        dst: s6(S6),
        ip_id: 77,
        total_len: inner.len() as u16,
        frag: 185 << 3,
        family: 6,
        protocol: 17,
        ttl: 4,
        have: have::IP | have::EXT_HEADERS | have::LATER_FRAGMENT,
        ..PacketInfo::default()
    };
    assert_eq!(ev, want);
}

#[test]
fn v6_too_many_extension_headers() {
    let inner =
        Frame::ipv6(C6, S6).hop_by_hop(0).dest_opts(0).dest_opts(0).dest_opts(0).dest_opts(0).udp(1, 2, 8).ip_bytes();
    let ev = event(&err6(1, 0, &inner).bytes());
    assert_eq!(ev.inner.have, have::IP | have::EXT_HEADERS | have::EXT_WALK_INCOMPLETE);
    assert_eq!(ev.inner.protocol, 60, "the last next-header seen");
    assert_ne!(ev.flags & flags::QUOTE_TRUNCATED, 0);
    // The same on the outer packet: the ICMPv6 header is never reached.
    let f = err6(1, 0, &udp6()).hop_by_hop(0).dest_opts(0).dest_opts(0).dest_opts(0).dest_opts(0).bytes();
    let p = parse(&f);
    assert_eq!(p.outer.unwrap().protocol, 60);
    assert_eq!(p.icmp, None);
}

// ---- not errors / not classified --------------------------------------------------

#[test]
fn non_errors_and_skips() {
    let echo4 = Frame::ipv4(C4, S4).echo_request(1, 1, 56).bytes();
    assert_eq!(parse(&echo4).icmp.unwrap().0, IcmpOutcome::NotError);
    let echo6 = Frame::ipv6(C6, S6).echo_reply(1, 1, 56).bytes();
    assert_eq!(parse(&echo6).icmp.unwrap().0, IcmpOutcome::NotError);
    let ns = Frame::ipv6(C6, S6).ttl(255).icmp(135, 0, &[0; 20]).bytes();
    assert_eq!(parse(&ns).icmp.unwrap().0, IcmpOutcome::NotError);
    // v4 numbers are not v6 errors and vice versa.
    let v4_type_1 = Frame::ipv4(R4, C4).icmp_error(1, 0, &udp4()[..28]).bytes();
    assert_eq!(parse(&v4_type_1).icmp.unwrap().0, IcmpOutcome::NotError);
    let v6_type_11 = err6(11, 0, &udp6()[..48]).bytes();
    assert_eq!(parse(&v6_type_11).icmp.unwrap().0, IcmpOutcome::NotError);
    // ICMP header cut short.
    let t = err4(3, 3, &[]).bytes();
    assert_eq!(parse(&t[..14 + 20 + 7]).icmp.unwrap().0, IcmpOutcome::Truncated);
    // A later fragment of an ICMP error is not parsed as one.
    let frag = err4(3, 3, &udp4()[..28]).frag_offset(3).bytes();
    let p = parse(&frag);
    assert!(p.outer.unwrap().later_fragment);
    assert_eq!(p.icmp, None);

    assert_eq!(parse(&non_ip_frame(0x0806, 28)).outer, Err(Skip::NotIp));
    assert_eq!(parse(&non_ip_frame(0x88cc, 0)).outer, Err(Skip::NotIp));
    for n in 0..14 {
        assert_eq!(parse(&echo4[..n]).outer, Err(Skip::Malformed), "{n} bytes");
    }
    let tagged = Frame::ipv4(C4, S4).qinq(1, 2).udp(1, 2, 0).bytes();
    assert_eq!(parse(&tagged[..17]).outer, Err(Skip::Malformed));
    assert_eq!(parse(&tagged[..21]).outer, Err(Skip::Malformed));
    for vihl in [0x44u8, 0x40, 0x55, 0x65] {
        let b = Frame::ipv4(C4, S4).raw_version_ihl(vihl).udp(1, 2, 0).bytes();
        assert_eq!(parse(&b).outer, Err(Skip::Malformed), "version/ihl {vihl:#x}");
    }
    let mut b6 = Frame::ipv6(C6, S6).udp(1, 2, 0).bytes();
    assert_eq!(parse(&b6[..14 + 39]).outer, Err(Skip::Malformed));
    b6[14] = 0x40;
    assert_eq!(parse(&b6).outer, Err(Skip::Malformed));
}

#[test]
fn quoted_header_with_bad_version_or_ihl() {
    for vihl in [0x44u8, 0x65, 0x00] {
        let q = Frame::ipv4(C4, S4).raw_version_ihl(vihl).udp(1, 2, 0).ip_bytes();
        let ev = event(&err4(3, 3, &q).bytes());
        assert_eq!(ev.inner, PacketInfo::default(), "{vihl:#x}");
        assert_eq!(ev.flags, flags::QUOTE_TRUNCATED);
    }
    // An IPv4 packet quoted in ICMPv6 is not an IPv6 header.
    let ev = event(&err6(1, 0, &udp4()[..48]).bytes());
    assert_eq!(ev.inner, PacketInfo::default());
}

#[test]
fn outer_fields() {
    let f = Frame::ipv4(C4, S4).df().ttl(17).tcp(Tcp::new(1, 2).payload_len(1460)).bytes();
    let o = parse_outer(&Cursor::from_slice(&f)).unwrap();
    assert_eq!(
        o,
        Outer {
            family: 4,
            vlan_depth: 0,
            ttl: 17,
            protocol: 6,
            l3_off: 14,
            l4_off: 34,
            total_len: 1500,
            dont_fragment: true,
            later_fragment: false
        }
    );
    let f = Frame::ipv6(C6, S6).ttl(3).vlan(5).hop_by_hop(0).fragment(10, false, 1).udp(1, 2, 0).bytes();
    let o = parse_outer(&Cursor::from_slice(&f)).unwrap();
    assert_eq!(
        o,
        Outer {
            family: 6,
            vlan_depth: 1,
            ttl: 3,
            protocol: 17,
            l3_off: 18,
            l4_off: 18 + 40 + 16,
            total_len: 40 + 16 + 8,
            dont_fragment: true,
            later_fragment: true
        }
    );
}

// ---- every truncation point -------------------------------------------------------

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    /// Offset of the quoted IP header in the frame.
    quote: usize,
    /// Offset of the quoted transport header.
    l4: usize,
}

fn truncation_cases() -> Vec<Case> {
    let syn = syn4();
    let ext_inner = Frame::ipv6(C6, S6).hop_by_hop(0).fragment(0, true, 5).tcp(Tcp::new(9, 10).syn()).ip_bytes();
    let redirect_inner = Frame::ipv6(C6, S6).udp(11, 12, 4).ip_bytes();
    let echo = Frame::ipv4(C4, S4).ihl(6).echo_request(1, 2, 0).ip_bytes();
    vec![
        Case { name: "v4 3/3 udp", frame: err4(3, 3, &cut(&udp4(), 28)).bytes(), quote: 42, l4: 62 },
        Case {
            name: "v4 vlan ihl7 11/0 tcp",
            frame: err4(11, 0, &syn).vlan(3).ihl(7).rfc4884_len(8).bytes(),
            quote: 18 + 28 + 8,
            l4: 18 + 28 + 8 + 20,
        },
        Case { name: "v4 3/4 echo opts", frame: err4(3, 4, &echo).mtu(576).bytes(), quote: 42, l4: 42 + 24 },
        Case {
            name: "v6 hbh 1/4 ext quote",
            frame: err6(1, 4, &ext_inner).qinq(1, 2).hop_by_hop(0).bytes(),
            quote: 22 + 48 + 8,
            l4: 22 + 48 + 8 + 56,
        },
        Case { name: "v6 2/0 udp", frame: err6(2, 0, &cut(&udp6(), 48)).mtu(1280).bytes(), quote: 62, l4: 102 },
        Case {
            name: "v6 137",
            frame: Frame::ipv6(R6, C6).icmpv6_redirect(T6, S6, Some(&redirect_inner)).bytes(),
            quote: 14 + 40 + 8 + 32 + 8 + 8,
            l4: 14 + 40 + 8 + 32 + 8 + 8 + 40,
        },
    ]
}

fn have_monotone_bits(h: u16) -> u16 {
    h & !have::EXT_WALK_INCOMPLETE
}

#[test]
fn every_truncation_point() {
    for case in truncation_cases() {
        let full = event(&case.frame);
        let ip_len = if full.outer_family == 4 { 20 } else { 40 };
        let is_tcp_udp = matches!(full.inner.protocol, 6 | 17);
        let is_tcp = full.inner.protocol == 6;
        let mut prev_have = 0u16;
        let mut was_error = false;
        for n in 0..=case.frame.len() {
            let bytes = &case.frame[..n];
            let p = parse(bytes);
            let ev = match p.icmp {
                Some((IcmpOutcome::Error, ev)) => ev,
                other => {
                    assert!(!was_error, "{}: error at a shorter cut, {other:?} at {n}", case.name);
                    continue;
                }
            };
            was_error = true;
            let ctx = format!("{} cut at {n}", case.name);
            // ICMP-level fields are complete as soon as it is an error, except
            // the redirect target which needs its 32-byte body.
            assert_eq!(
                (ev.icmp_type, ev.icmp_code, ev.mtu, ev.aux),
                (full.icmp_type, full.icmp_code, full.mtu, full.aux),
                "{ctx}"
            );
            assert_eq!(
                (ev.outer_src, ev.outer_dst, ev.outer_ttl, ev.outer_len),
                (full.outer_src, full.outer_dst, full.outer_ttl, full.outer_len),
                "{ctx}"
            );
            assert_eq!(ev.rfc4884_len, full.rfc4884_len, "{ctx}");
            if ev.flags & flags::HAS_GATEWAY != 0 {
                assert_eq!(ev.gateway, full.gateway, "{ctx}");
            }
            if n >= case.quote {
                assert_eq!(ev.quote_len as usize, n - case.quote, "{ctx}");
            }
            let h = ev.inner.have;
            assert_eq!(have_monotone_bits(h) & prev_have, prev_have, "{ctx}: have bits lost");
            prev_have = have_monotone_bits(h);
            // Present exactly when their bytes are there.
            assert_eq!(h & have::IP != 0, n >= case.quote + ip_len, "{ctx}: IP");
            if h & have::IP != 0 {
                let (a, b) = (&ev.inner, &full.inner);
                assert_eq!(
                    (a.src, a.dst, a.ttl, a.total_len, a.family),
                    (b.src, b.dst, b.ttl, b.total_len, b.family),
                    "{ctx}"
                );
            }
            let want_ports =
                if is_tcp_udp { n >= case.l4 + 4 } else { n >= case.l4 + 8 && full.inner.have & have::ECHO != 0 };
            assert_eq!(h & have::PORTS != 0, want_ports, "{ctx}: ports");
            if want_ports {
                assert_eq!(
                    (ev.inner.src_port, ev.inner.dst_port, ev.inner.protocol),
                    (full.inner.src_port, full.inner.dst_port, full.inner.protocol),
                    "{ctx}"
                );
            }
            let want_seq = n >= case.l4 + 8 && (is_tcp || full.inner.have & have::ECHO != 0);
            assert_eq!(h & have::SEQ != 0, want_seq, "{ctx}: seq");
            if want_seq {
                assert_eq!(ev.inner.seq, full.inner.seq, "{ctx}");
            }
            assert_eq!(h & have::TCP_FLAGS != 0, is_tcp && n >= case.l4 + 14, "{ctx}: tcp flags");
            if h & have::TCP_FLAGS != 0 {
                assert_eq!(ev.inner.tcp_flags, full.inner.tcp_flags, "{ctx}");
            }
            let need = if is_tcp_udp { 4 } else { 8 };
            assert_eq!(ev.flags & flags::QUOTE_TRUNCATED != 0, n < case.l4 + need, "{ctx}: truncated flag");
        }
        assert!(was_error, "{}", case.name);
        assert_eq!(have_monotone_bits(full.inner.have), prev_have);
    }
}

#[test]
fn truncating_ordinary_packets_never_panics() {
    let frames = [
        Frame::ipv4(C4, S4).df().ihl(15).qinq(1, 2).tcp(Tcp::new(1, 2).options_len(40).payload_len(100)).bytes(),
        Frame::ipv6(C6, S6).hop_by_hop(3).routing(1).dest_opts(0).fragment(0, true, 1).udp(1, 2, 50).bytes(),
        Frame::ipv6(C6, S6).vlan(9).fragment(100, true, 1).udp(1, 2, 50).bytes(),
        Frame::ipv4(C4, S4).frag_offset(20).raw(47, &[1; 40]).bytes(),
    ];
    for f in frames {
        let full = parse(&f);
        for n in 0..=f.len() {
            let p = parse(&f[..n]);
            if let Ok(o) = p.outer {
                let fo = full.outer.unwrap();
                assert_eq!(
                    (o.family, o.ttl, o.total_len, o.l3_off, o.dont_fragment),
                    (fo.family, fo.ttl, fo.total_len, fo.l3_off, fo.dont_fragment)
                );
            }
        }
    }
}

// ---- the datapath's copy, parsed in user space ---------------------------------

/// The datapath copies an ICMP error's bytes and user space parses them
/// (`capture_icmp`, then `decode_icmp_capture`): the event must be the one
/// the parser makes of the whole frame, as the datapath writes it. Only a
/// message longer than the copy may lose fields, and then it says so
/// (`CAPTURE_CUT`) and keeps everything before the quote's transport.
/// Returns whether the copy cut something.
#[allow(clippy::expect_used)] // a test helper: a failed expectation fails the test
fn check_capture(bytes: &[u8]) -> bool {
    let c = Cursor::from_slice(bytes);
    let Ok(outer) = parse_outer(&c) else { return false };
    let icmp = if outer.family == 4 { 1 } else { 58 };
    let Some(h) = icmp_header(&c, &outer) else { return false };
    if outer.protocol != icmp || outer.later_fragment || !is_reported_icmp(outer.family, h.icmp_type) {
        return false;
    }
    let mut want = Event::default();
    assert_eq!(parse_icmp_error(&c, &outer, &mut want), IcmpOutcome::Error);
    let want = want.as_datapath();
    let mut cap = IcmpCapture::default();
    capture_icmp(&c, &outer, &mut cap);
    let got = decode_icmp_capture(&cap).expect("a copied error parses");
    if got.flags & flags::CAPTURE_CUT == 0 {
        assert_eq!(got, want, "{bytes:02x?}");
        return false;
    }
    assert!(cap.avail > cap.captured, "cut only past the copy");
    assert_eq!(got.flags & flags::QUOTE_TRUNCATED, 0);
    let before_transport = |e: &Event| Event {
        inner: PacketInfo::default(),
        flags: e.flags & !(flags::QUOTE_TRUNCATED | flags::CAPTURE_CUT),
        quote_len: 0,
        ..*e
    };
    assert_eq!(before_transport(&got), before_transport(&want), "{bytes:02x?}");
    true
}

#[test]
fn a_copied_error_parses_as_the_whole_frame_at_every_length() {
    let mut cut = 0;
    let mut frames = valid_frames();
    // Long quotes: what the copy leaves out must not matter.
    frames.push(err4(3, 10, &Frame::ipv4(C4, S4).tcp(Tcp::new(1, 2).payload_len(900)).ip_bytes()).bytes());
    frames.push(err6(1, 4, &Frame::ipv6(C6, S6).udp(3, 4, 900).ip_bytes()).bytes());
    frames.push(err4(11, 0, &syn4()).vlan(3).ihl(15).rfc4884_len(128).bytes());
    for frame in &frames {
        for n in 0..=frame.len() {
            cut += usize::from(check_capture(&frame[..n]));
        }
    }
    // The IPv6 redirect's quote starts 96 bytes in: its ports are past the copy.
    assert!(cut > 0, "no frame was long enough to be cut");
}

/// A ring-buffer record is a CPU's batch of events: each is decoded on its
/// own, and one whose copy does not parse is a `None` for the reader to
/// count, not a silent gap nor the end of the batch.
#[cfg(feature = "user")]
#[test]
fn a_record_decodes_event_by_event_and_names_what_does_not_parse() {
    use netobs_common::event::DATAPATH_EVENT_LEN;
    fn copy_of(frame: &[u8]) -> IcmpCapture {
        let c = Cursor::from_slice(frame);
        let outer = parse_outer(&c).expect("an IP frame");
        let mut cap = IcmpCapture::default();
        capture_icmp(&c, &outer, &mut cap);
        cap
    }
    let real = copy_of(&err4(3, 10, &syn4()).bytes());
    // Not an ICMP error at all: the copy of a UDP datagram.
    let garbage = copy_of(&Frame::ipv4(C4, S4).udp(1, 2, 8).bytes());
    let df = Event { kind: kind::DF_OVERSIZED, ifindex: 7, ..Event::default() };
    /// The first `len` bytes of `v`, as the datapath writes them out.
    fn datapath_bytes<T: aya::Pod>(v: &T, len: usize) -> &[u8] {
        // SAFETY: `T: Pod` is plain data without padding; the slice covers
        // its first `len` bytes (asserted to exist) and borrows `v`.
        assert!(core::mem::size_of::<T>() >= len);
        unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), len) }
    }
    // A capture goes out as its header and the words it filled: the
    // error quoting a SYN with options, 88 bytes from the IP header on, in
    // a 112-byte record.
    assert_eq!(real.captured, 88);
    assert_eq!(IcmpCapture::record_len(real.captured), 112);
    assert_eq!(IcmpCapture::record_len(20 + 8 + 28), 80, "a 28-byte quote behind IPv4 and ICMP headers");
    assert_eq!(IcmpCapture::record_len(0), 24);
    assert_eq!(IcmpCapture::record_len(u16::MAX), DATAPATH_EVENT_LEN, "never past the struct");
    let mut record = Vec::new();
    record.extend_from_slice(datapath_bytes(&real, IcmpCapture::record_len(real.captured)));
    record.extend_from_slice(datapath_bytes(&garbage, IcmpCapture::record_len(garbage.captured)));
    record.extend_from_slice(datapath_bytes(&df, DATAPATH_EVENT_LEN));
    let got: Vec<Option<Event>> = Event::from_record(&record).expect("whole events").collect();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], decode_icmp_capture(&real));
    assert!(got[0].is_some_and(|e| e.icmp_code == 10));
    assert_eq!(got[1], None, "a copy that is not an ICMP error does not decode");
    assert!(got[2].is_some_and(|e| e.kind == kind::DF_OVERSIZED && e.ifindex == 7));
    for cut in [1, 8, DATAPATH_EVENT_LEN - 1] {
        assert!(Event::from_record(&record[..record.len() - cut]).is_none(), "last event cut by {cut}");
    }
    let mut longer = record.clone();
    longer.extend_from_slice(&[0; 8]);
    assert!(Event::from_record(&longer).is_none(), "bytes past the last event");
    assert!(Event::from_record(&[]).is_none());
}

// ---- generated input ------------------------------------------------------------

fn valid_frames() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = truncation_cases().into_iter().map(|c| c.frame).collect();
    v.push(err4(5, 1, &udp4()[..28]).gateway(GW4).bytes());
    v.push(err4(12, 0, &syn4()).pointer(3).bytes());
    v.push(err6(4, 0, &udp6()).pointer(6).hop_by_hop(0).bytes());
    v.push(err6(3, 0, &Frame::ipv6(C6, S6).fragment(8, true, 1).udp(1, 2, 9).ip_bytes()).bytes());
    v.push(Frame::ipv6(R6, C6).icmpv6_redirect(T6, S6, None).bytes());
    v.push(Frame::ipv4(C4, S4).df().tcp(Tcp::new(1, 2).payload_len(1460)).bytes());
    v
}

/// Ethernet + outer header of an ICMP error of a reported type, so random
/// tails exercise the quote parser rather than stop at the ethertype.
fn error_prefix(v6: bool, type_idx: usize, code: u8, vlans: usize) -> Vec<u8> {
    let mut f = if v6 {
        let t = [1u8, 2, 3, 4, 137][type_idx % 5];
        Frame::ipv6(R6, C6).icmp(t, code, &[])
    } else {
        let t = [3u8, 4, 5, 11, 12][type_idx % 5];
        Frame::ipv4(R4, C4).icmp(t, code, &[])
    };
    for i in 0..vlans {
        f = f.vlan(i as u16);
    }
    f.bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let a = parse(&bytes);
        prop_assert_eq!(a, parse(&bytes));
    }

    #[test]
    fn random_quotes_never_panic(
        v6 in any::<bool>(),
        type_idx in 0usize..5,
        code in 0u8..20,
        vlans in 0usize..3,
        tail in proptest::collection::vec(any::<u8>(), 0..300),
        version_nibble in any::<bool>(),
    ) {
        let mut bytes = error_prefix(v6, type_idx, code, vlans);
        let quote_at = bytes.len();
        bytes.extend_from_slice(&tail);
        // Half the time force a plausible IP version so the quote is parsed.
        if version_nibble && bytes.len() > quote_at {
            bytes[quote_at] = if v6 { 0x60 | (bytes[quote_at] & 0x0f) } else { 0x40 | (bytes[quote_at] & 0x0f).max(5) };
        }
        let p = parse(&bytes);
        prop_assert!(matches!(p.icmp, Some((IcmpOutcome::Error, _))));
        prop_assert_eq!(p, parse(&bytes));
        check_capture(&bytes);
    }

    #[test]
    fn mutated_valid_packets_never_panic(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut_at in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let frames = valid_frames();
        let mut bytes = which.get(&frames).clone();
        for (at, b) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *b;
        }
        if do_cut {
            bytes.truncate(cut_at.index(bytes.len() + 1));
        }
        let p = parse(&bytes);
        prop_assert_eq!(&p, &parse(&bytes));
        check_capture(&bytes);
        // Unchanged headers keep their meaning: an edit after the ICMP header
        // never turns an error into a non-error.
        if let (Ok(o), Some((IcmpOutcome::Error, ev))) = (&p.outer, &p.icmp) {
            prop_assert_eq!(ev.outer_family, o.family);
        }
    }

    #[test]
    fn extension_chains(
        exts in proptest::collection::vec((0u8..4, 0u8..4, any::<bool>()), 0..7),
        cut_at in any::<prop::sample::Index>(),
    ) {
        let mut inner = Frame::ipv6(C6, S6);
        let mut later = false;
        for (kind, len8, more) in &exts {
            inner = inner.ext(match kind {
                0 => Ext::HopByHop { len8: *len8 },
                1 => Ext::Routing { len8: *len8 },
                2 => Ext::DestOpts { len8: *len8 },
                _ => { later |= *len8 != 0; Ext::Fragment { offset: *len8 as u16, more: *more, id: 1 } }
            });
        }
        let inner = inner.udp(7, 8, 0).ip_bytes();
        let full = event(&err6(1, 0, &inner).bytes());
        let h = full.inner.have;
        prop_assert!(h & have::IP != 0);
        prop_assert_eq!(h & have::EXT_HEADERS != 0, !exts.is_empty());
        if exts.len() <= 4 {
            // Walkable: either a later fragment stopped it, or UDP was reached.
            prop_assert_eq!(h & have::EXT_WALK_INCOMPLETE, 0);
            if h & have::LATER_FRAGMENT == 0 {
                prop_assert_eq!((full.inner.src_port, full.inner.dst_port), (7, 8));
            }
        }
        if !later && exts.len() <= 4 {
            prop_assert_eq!(h & have::LATER_FRAGMENT, 0);
        }
        let f = err6(1, 0, &inner).bytes();
        let n = cut_at.index(f.len() + 1);
        let _ = parse(&f[..n]);
    }
}
