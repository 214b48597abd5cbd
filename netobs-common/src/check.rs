//! An independent oracle for the shared parser (feature `craft`): what
//! [`crate::parse`] must make of a frame, recomputed with plain slice
//! indexing from the raw bytes, field by field.
//!
//! The fuzz targets (`fuzz/`), the BPF_PROG_TEST_RUN comparison bench and
//! the defect tests all call [`check_frame`] / [`check_ip`]; each returns
//! the first disagreement in words. Three invariants beyond "no panic":
//! - every decoded field equals the raw bytes at its offset;
//! - the truncation bits (`QUOTE_TRUNCATED`, `EXT_WALK_INCOMPLETE`, the
//!   `have` bits) agree with what could be decoded;
//! - nothing is decoded past the outer IP packet's length: the same frame
//!   with every byte after that length changed decodes the same.

use std::format;
use std::string::String;
use std::vec::Vec;

use crate::cursor::Cursor;
use crate::event::{Event, PacketInfo, flags, have, kind};
use crate::parse::{
    IcmpOutcome, MAX_IPV6_EXT_HEADERS, MAX_ND_OPTIONS, MAX_VLAN_TAGS, Outer, Skip, is_reported_icmp, parse_icmp_error,
    parse_ip_packet_l4, parse_outer,
};

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn addr(b: &[u8], at: usize, family: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    let n = if family == 4 { 4 } else { 16 };
    a[..n].copy_from_slice(&b[at..at + n]);
    a
}

fn is_ext(nh: u8) -> bool {
    matches!(nh, 0 | 43 | 44 | 60)
}

/// The extension-header walk, over a slice.
struct Walk {
    protocol: u8,
    l4: usize,
    later_fragment: bool,
    fragment: Option<(u16, u32)>,
    incomplete: bool,
    crossed: bool,
}

fn walk(b: &[u8], mut off: usize, mut nh: u8) -> Walk {
    let mut w =
        Walk { protocol: nh, l4: off, later_fragment: false, fragment: None, incomplete: false, crossed: false };
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if !is_ext(nh) {
            w.protocol = nh;
            w.l4 = off;
            return w;
        }
        if off + 8 > b.len() {
            (w.protocol, w.l4, w.incomplete) = (nh, off, true);
            return w;
        }
        w.crossed = true;
        if nh == 44 {
            let v = be16(b, off + 2);
            w.fragment = Some((((v >> 3) << 3) | (v & 1), be32(b, off + 4)));
            nh = b[off];
            off += 8;
            if v >> 3 != 0 {
                (w.protocol, w.l4, w.later_fragment) = (nh, off, true);
                return w;
            }
        } else {
            let len = (usize::from(b[off + 1]) + 1) * 8;
            if off + len > b.len() {
                (w.protocol, w.l4, w.incomplete) = (nh, off, true);
                return w;
            }
            nh = b[off];
            off += len;
        }
    }
    w.protocol = nh;
    w.l4 = off;
    w.incomplete = is_ext(nh);
    w
}

/// What [`parse_ip_packet_l4`] must produce for the IP packet `q` (all of
/// `q` is readable, nothing after it): the info and the transport offset.
pub fn expected_ip(q: &[u8], family: u8) -> (PacketInfo, Option<usize>) {
    let mut p = PacketInfo::default();
    let l4;
    if family == 4 {
        if q.len() < 20 || q[0] >> 4 != 4 || usize::from(q[0] & 15) * 4 < 20 {
            return (p, None);
        }
        let hlen = usize::from(q[0] & 15) * 4;
        p.family = 4;
        p.src = addr(q, 12, 4);
        p.dst = addr(q, 16, 4);
        p.protocol = q[9];
        p.ttl = q[8];
        p.total_len = be16(q, 2);
        p.ip_id = u32::from(be16(q, 4));
        p.frag = be16(q, 6);
        p.have = have::IP;
        if hlen > 20 {
            p.have |= have::IP_OPTIONS;
        }
        if p.frag & 0x1fff != 0 {
            p.have |= have::LATER_FRAGMENT;
            return (p, None);
        }
        l4 = hlen;
    } else {
        if q.len() < 40 || q[0] >> 4 != 6 {
            return (p, None);
        }
        p.family = 6;
        p.src = addr(q, 8, 6);
        p.dst = addr(q, 24, 6);
        p.ttl = q[7];
        p.total_len = be16(q, 4).saturating_add(40);
        p.have = have::IP;
        let w = walk(q, 40, q[6]);
        p.protocol = w.protocol;
        if w.crossed {
            p.have |= have::EXT_HEADERS;
        }
        if let Some((frag, id)) = w.fragment {
            p.frag = frag;
            p.ip_id = id;
        }
        if w.later_fragment {
            p.have |= have::LATER_FRAGMENT;
            return (p, None);
        }
        if w.incomplete {
            p.have |= have::EXT_WALK_INCOMPLETE;
            return (p, None);
        }
        l4 = w.l4;
    }
    let proto = p.protocol;
    let left = q.len().saturating_sub(l4);
    if proto == 6 || proto == 17 {
        if left >= 4 {
            p.src_port = be16(q, l4);
            p.dst_port = be16(q, l4 + 2);
            p.have |= have::PORTS;
        }
        if proto == 6 {
            if left >= 8 {
                p.seq = be32(q, l4 + 4);
                p.have |= have::SEQ;
            }
            if left >= 14 {
                p.tcp_flags = q[l4 + 13];
                p.have |= have::TCP_FLAGS;
            }
        }
    } else if (proto == 1 || proto == 58) && left >= 8 {
        let t = q[l4];
        let echo = if proto == 1 { t == 8 || t == 0 } else { t == 128 || t == 129 };
        if echo {
            p.src_port = be16(q, l4 + 4);
            p.seq = u32::from(be16(q, l4 + 6));
            p.have |= have::PORTS | have::SEQ | have::ECHO;
        }
    }
    (p, Some(l4))
}

/// Was the quote `q` cut short, by the parser's rule: no transport header
/// reachable (other than in a later fragment), or fewer bytes of it than
/// the ports (TCP/UDP) or the 8 bytes RFC 792 promises (anything else).
pub fn expected_truncated(q: &[u8], info: &PacketInfo, l4: Option<usize>) -> bool {
    match l4 {
        None => info.have & have::LATER_FRAGMENT == 0,
        Some(l4) => {
            let need = if info.protocol == 6 || info.protocol == 17 { 4 } else { 8 };
            q.len().saturating_sub(l4) < need
        }
    }
}

/// Checks the shared IP parser on `q` (an IP packet of `family`) against
/// [`expected_ip`].
pub fn check_ip(q: &[u8], family: u8) -> Result<(), String> {
    let mut got = PacketInfo::default();
    let l4 = parse_ip_packet_l4(&Cursor::from_slice(q), 0, family, &mut got);
    let (want, want_l4) = expected_ip(q, family);
    if got != want || l4 != want_l4 {
        return Err(format!("IP packet: parser {got:?} at {l4:?}, raw bytes say {want:?} at {want_l4:?}"));
    }
    if family == 6 && got.have & have::EXT_WALK_INCOMPLETE == 0 && l4.is_some_and(|o| o > q.len()) {
        return Err(format!("transport offset {l4:?} past the end ({})", q.len()));
    }
    Ok(())
}

/// What [`parse_outer`] must say of `frame`.
fn expected_outer(frame: &[u8]) -> Result<Outer, Skip> {
    if frame.len() < 14 {
        return Err(Skip::Malformed);
    }
    let mut et = be16(frame, 12);
    let mut l3 = 14;
    let mut depth = 0u8;
    for _ in 0..MAX_VLAN_TAGS {
        if et != 0x8100 && et != 0x88a8 {
            break;
        }
        if l3 + 4 > frame.len() {
            return Err(Skip::Malformed);
        }
        et = be16(frame, l3 + 2);
        l3 += 4;
        depth += 1;
    }
    match et {
        0x0800 => {
            if l3 + 20 > frame.len() || frame[l3] >> 4 != 4 || usize::from(frame[l3] & 15) < 5 {
                return Err(Skip::Malformed);
            }
            let ff = be16(frame, l3 + 6);
            Ok(Outer {
                family: 4,
                vlan_depth: depth,
                ttl: frame[l3 + 8],
                protocol: frame[l3 + 9],
                l3_off: l3,
                l4_off: l3 + usize::from(frame[l3] & 15) * 4,
                total_len: u32::from(be16(frame, l3 + 2)),
                dont_fragment: ff & 0x4000 != 0,
                later_fragment: ff & 0x1fff != 0,
            })
        }
        0x86dd => {
            if l3 + 40 > frame.len() || frame[l3] >> 4 != 6 {
                return Err(Skip::Malformed);
            }
            let end = frame.len().min(l3 + 40 + usize::from(be16(frame, l3 + 4)));
            let w = walk(&frame[..end], l3 + 40, frame[l3 + 6]);
            Ok(Outer {
                family: 6,
                vlan_depth: depth,
                ttl: frame[l3 + 7],
                protocol: w.protocol,
                l3_off: l3,
                l4_off: w.l4,
                total_len: u32::from(be16(frame, l3 + 4)) + 40,
                dont_fragment: true,
                later_fragment: w.later_fragment,
            })
        }
        _ => Err(Skip::NotIp),
    }
}

/// What [`parse_icmp_error`] must produce for `frame` with outer `o`.
fn expected_icmp(frame: &[u8], o: &Outer) -> (IcmpOutcome, Event) {
    let mut ev = Event::default();
    let end = frame.len().min(o.l3_off + o.total_len as usize);
    let b = &frame[..end.max(o.l3_off).min(frame.len())];
    let l4 = o.l4_off;
    if l4 + 8 > b.len() {
        return (IcmpOutcome::Truncated, ev);
    }
    let (t, code) = (b[l4], b[l4 + 1]);
    if !is_reported_icmp(o.family, t) {
        return (IcmpOutcome::NotError, ev);
    }
    let rest = [b[l4 + 4], b[l4 + 5], b[l4 + 6], b[l4 + 7]];
    ev.kind = kind::ICMP_ERROR;
    ev.icmp_type = t;
    ev.icmp_code = code;
    ev.outer_family = o.family;
    ev.outer_ttl = o.ttl;
    ev.vlan_depth = o.vlan_depth;
    ev.outer_len = o.total_len;
    let (s, d) = if o.family == 4 { (12, 16) } else { (8, 24) };
    ev.outer_src = addr(frame, o.l3_off + s, o.family);
    ev.outer_dst = addr(frame, o.l3_off + d, o.family);
    let rfc4884 = |ev: &mut Event, n: u16| {
        if n != 0 {
            ev.rfc4884_len = n;
            ev.flags |= flags::HAS_RFC4884;
        }
    };
    let mut quote = l4 + 8;
    if o.family == 4 {
        match t {
            3 => {
                if code == 4 {
                    ev.mtu = u32::from(be16(&rest, 2));
                    ev.flags |= flags::HAS_MTU;
                }
                rfc4884(&mut ev, u16::from(rest[1]) * 4);
            }
            11 => rfc4884(&mut ev, u16::from(rest[1]) * 4),
            12 => {
                ev.aux = u32::from(rest[0]);
                ev.flags |= flags::HAS_POINTER;
                rfc4884(&mut ev, u16::from(rest[1]) * 4);
            }
            5 => {
                ev.gateway[..4].copy_from_slice(&rest);
                ev.flags |= flags::HAS_GATEWAY;
            }
            _ => {}
        }
    } else {
        match t {
            2 => {
                ev.mtu = be32(&rest, 0);
                ev.flags |= flags::HAS_MTU;
            }
            1 | 3 => rfc4884(&mut ev, u16::from(rest[0]) * 8),
            4 => {
                ev.aux = be32(&rest, 0);
                ev.flags |= flags::HAS_POINTER;
            }
            137 => {
                if quote + 32 > b.len() {
                    ev.flags |= flags::QUOTE_TRUNCATED;
                    return (IcmpOutcome::Error, ev);
                }
                ev.gateway = addr(b, quote, 6);
                ev.flags |= flags::HAS_GATEWAY;
                let mut opt = quote + 32;
                let mut found = None;
                for _ in 0..MAX_ND_OPTIONS {
                    if opt + 8 > b.len() || b[opt + 1] == 0 {
                        break;
                    }
                    if b[opt] == 4 {
                        found = Some(opt + 8);
                        break;
                    }
                    opt += usize::from(b[opt + 1]) * 8;
                }
                match found {
                    Some(at) => quote = at,
                    None => {
                        ev.inner.dst = addr(b, l4 + 8 + 16, 6);
                        ev.inner.family = 6;
                        ev.flags |= flags::QUOTE_TRUNCATED;
                        return (IcmpOutcome::Error, ev);
                    }
                }
            }
            _ => {}
        }
    }
    let q = b.get(quote..).unwrap_or(&[]);
    ev.quote_len = q.len().min(0xffff) as u16;
    let (info, l4q) = expected_ip(q, o.family);
    if expected_truncated(q, &info, l4q) {
        ev.flags |= flags::QUOTE_TRUNCATED;
    }
    ev.inner = info;
    (IcmpOutcome::Error, ev)
}

/// The parser's view of `frame`: the outer header and, for ICMP that is
/// not a later fragment, the outcome and event.
pub fn parse_frame(frame: &[u8]) -> (Result<Outer, Skip>, Option<(IcmpOutcome, Event)>) {
    let c = Cursor::from_slice(frame);
    let outer = parse_outer(&c);
    let icmp = match &outer {
        Ok(o) if !o.later_fragment && o.protocol == if o.family == 4 { 1 } else { 58 } => {
            let mut ev = Event::default();
            let r = parse_icmp_error(&c, o, &mut ev);
            // As the datapath writes it: the RFC 4884 bytes only the host
            // parser copies have their own tests (ext.rs, ext_corpus.rs).
            Some((r, ev.as_datapath()))
        }
        _ => None,
    };
    (outer, icmp)
}

/// Checks the shared frame parser on `frame` against the oracle: the
/// outer header, the ICMP outcome and every event field, the truncation
/// bits, and that bytes past the outer IP length change nothing.
pub fn check_frame(frame: &[u8]) -> Result<(), String> {
    let (outer, icmp) = parse_frame(frame);
    let want = expected_outer(frame);
    if outer != want {
        return Err(format!("outer: parser {outer:?}, raw bytes say {want:?}"));
    }
    let Ok(o) = outer else { return Ok(()) };
    if o.family == 6 && o.l4_off > frame.len() {
        return Err(format!("IPv6 transport offset {} past the frame ({})", o.l4_off, frame.len()));
    }
    let Some((r, ev)) = icmp else { return Ok(()) };
    let (want_r, want_ev) = expected_icmp(frame, &o);
    if r != want_r || ev != want_ev {
        return Err(format!("ICMP: parser {r:?} {ev:?}\n  raw bytes say {want_r:?} {want_ev:?}"));
    }
    if r == IcmpOutcome::Error {
        let truncated = ev.flags & flags::QUOTE_TRUNCATED != 0;
        if ev.inner.have & have::PORTS != 0 && truncated {
            return Err("ports decoded, yet the quote is flagged truncated".into());
        }
        if ev.quote_len as usize > frame.len().saturating_sub(o.l4_off) {
            return Err(format!("quote_len {} past the frame", ev.quote_len));
        }
    }
    // Past the outer IP packet: change every byte, expect the same result.
    // (The fixed IP header is read whatever the length field says.)
    let end = (o.l3_off + o.total_len as usize).max(o.l3_off + if o.family == 4 { 20 } else { 40 });
    if end < frame.len() {
        let mut other: Vec<u8> = frame.to_vec();
        for x in &mut other[end..] {
            *x ^= 0xa5;
        }
        let again = parse_frame(&other);
        if again.0 != outer || again.1 != icmp {
            return Err(format!("bytes past the IP length ({end} of {}) changed the decode", frame.len()));
        }
    }
    Ok(())
}
