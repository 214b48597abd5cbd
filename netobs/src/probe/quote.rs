//! Middlebox detection from the ICMP quote (tracebox's idea).
//!
//! Every ICMP error carries the start of the packet that caused it, as the
//! reporter received it. We know exactly what we sent (the probe is rebuilt
//! byte for byte from its flow and token), so any field that differs was
//! changed on the way, by something between us and the reporter. The first
//! hop whose quote shows a change puts the middlebox between the hop before
//! it and that hop:
//!
//! - **source address / port**: NAT ("NAT between hop 2 and 3");
//! - **DSCP / ECN**: rewritten, or bleached to 0;
//! - **IP ID** (IPv4): rewritten;
//! - **TCP MSS**: TCP probes are SYNs with an MSS option, and Linux quotes
//!   as much of the packet as fits (576 bytes for IPv4, 1280 for IPv6), so
//!   the option comes back and a clamp shows;
//! - **IPv6 flow label**, when we chose it (`--flows`);
//! - **TTL**: a time exceeded is sent by the router that got our probe with
//!   TTL 1, so it quotes 1 (some quote 0, after the decrement). A larger
//!   quoted TTL means a box before it reset the TTL or a hop did not
//!   decrement it.
//!
//! What it cannot see: Linux conntrack NAT (masquerade, SNAT) translates the
//! quote of every ICMP error it forwards back ("related" traffic) together
//! with the outer header, so the quote shows our own address again and a
//! masquerading router is invisible here; only stateless rewrites (nft
//! `ip saddr set` without conntrack, many carrier and cloud NATs) show.
//! With IPv4 the IP ID is also the probe's token and UDP/TCP probes are
//! matched by their source port, so a box that rewrites the IP ID or the
//! source port makes the answers unmatched (they look silent) instead of
//! being reported: only address rewrites are reported as NAT.
//!
//! The quote is read through the shared `netobs-common` views (the same
//! parser as the kernel side), the probe as sent through the same code, so
//! both sides of the comparison are decoded alike.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use netobs_common::{
    Cursor, PacketInfo,
    event::have,
    parse::{parse_ip_packet, walk_ipv6_ext},
    wire::{IPPROTO_ICMP, IPPROTO_TCP, IcmpHdr, Ipv4Hdr, Ipv6Hdr},
};
use serde::Serialize;

use super::{
    packet::{self, Flow},
    socket::Sent,
    trace::Hop,
};

/// A field of the probe that a middlebox may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// IP source address.
    Source,
    /// UDP/TCP source port or ICMP echo identifier.
    SourcePort,
    /// Differentiated services code point (6 bits).
    Dscp,
    /// Explicit congestion notification (2 bits).
    Ecn,
    /// IPv4 identification.
    IpId,
    /// IPv6 flow label.
    FlowLabel,
    /// TCP MSS option of a SYN.
    Mss,
    /// TTL as the reporter of a time exceeded got it.
    Ttl,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Source => "source address",
            Field::SourcePort => "source port",
            Field::Dscp => "DSCP",
            Field::Ecn => "ECN",
            Field::IpId => "IP ID",
            Field::FlowLabel => "flow label",
            Field::Mss => "TCP MSS",
            Field::Ttl => "TTL",
        }
    }
}

/// What the change means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Source address or port rewritten.
    Nat,
    /// Set to another non-zero value.
    Rewritten,
    /// Cleared to 0 (DSCP / ECN).
    Bleached,
    /// MSS lowered.
    Clamped,
    /// TTL above 1 on a time exceeded.
    TtlReset,
}

/// A field value, as sent or as quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum Value {
    Addr(IpAddr),
    Num(u32),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Addr(a) => write!(f, "{a}"),
            Value::Num(n) => write!(f, "{n}"),
        }
    }
}

/// One field that differs between the probe and its quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: Field,
    /// What we sent (for `ttl`: what the reporter should have quoted, 1).
    pub sent: Value,
    pub quoted: Value,
}

impl FieldChange {
    fn kind(&self) -> ChangeKind {
        match (self.field, self.sent, self.quoted) {
            (Field::Source | Field::SourcePort, ..) => ChangeKind::Nat,
            (Field::Ttl, ..) => ChangeKind::TtlReset,
            (Field::Mss, Value::Num(s), Value::Num(q)) if q < s => ChangeKind::Clamped,
            (Field::Dscp | Field::Ecn, _, Value::Num(0)) => ChangeKind::Bleached,
            _ => ChangeKind::Rewritten,
        }
    }
}

/// The quote of one answer compared with its probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuoteCheck {
    /// Bytes of our probe the reporter quoted.
    pub bytes: usize,
    /// Fields that differ (empty: the probe arrived as sent, as far as the
    /// quote shows).
    pub changes: Vec<FieldChange>,
}

/// The fields of a probe a quote can show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Fields {
    src: Option<IpAddr>,
    src_port: Option<u16>,
    tos: u8,
    ip_id: Option<u16>,
    flow_label: Option<u32>,
    ttl: u8,
    mss: Option<u16>,
}

fn addr(family: u8, b: &[u8; 16]) -> IpAddr {
    if family == 4 { IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])) } else { IpAddr::V6(Ipv6Addr::from(*b)) }
}

/// Reads the fields of an IP packet (a probe or a quote, possibly cut
/// short) of `family`.
fn read_fields(bytes: &[u8], family: u8) -> Option<Fields> {
    let c = Cursor::from_slice(bytes);
    let mut info = PacketInfo::default();
    parse_ip_packet(&c, 0, family, &mut info);
    if info.have & have::IP == 0 {
        return None;
    }
    let mut f = Fields { src: Some(addr(family, &info.src)), ttl: info.ttl, ..Fields::default() };
    let l4 = if family == 4 {
        let ip = c.get::<Ipv4Hdr>(0)?;
        f.tos = ip.tos;
        f.ip_id = Some(ip.id());
        ip.header_len()
    } else {
        let ip = c.get::<Ipv6Hdr>(0)?;
        let vtf = u32::from_be_bytes(ip.version_tc_flow);
        f.tos = (vtf >> 20) as u8;
        f.flow_label = Some(vtf & 0x000f_ffff);
        let walk = walk_ipv6_ext(&c, Ipv6Hdr::LEN, ip.next_header);
        if walk.incomplete {
            return Some(f);
        }
        walk.l4_off
    };
    if info.have & have::PORTS != 0 {
        f.src_port = Some(info.src_port);
    }
    if info.protocol == IPPROTO_TCP {
        f.mss = tcp_mss(&c, l4);
    }
    Some(f)
}

/// The MSS option of the TCP header at `off`, if the bytes reach it.
fn tcp_mss(c: &Cursor, off: usize) -> Option<u16> {
    let doff = usize::from(c.u8_at(off + 12)? >> 4) * 4;
    let end = off + doff;
    let mut i = off + 20;
    while i < end {
        match c.u8_at(i)? {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(c.u8_at(i + 1)?);
                if len < 2 {
                    return None;
                }
                if kind == 2 && len == 4 {
                    let v = c.get::<[u8; 2]>(i + 2)?;
                    return Some(u16::from_be_bytes(*v));
                }
                i += len;
            }
        }
    }
    None
}

/// How the prober sends, beyond the flow: what the quote is compared with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SentAs {
    /// IPv6 flow label we set (`None`: the kernel chose one, not compared).
    pub flow_label: Option<u32>,
    /// TOS / traffic class byte.
    pub tos: u8,
}

/// The probe `sent` of `flow` as it left this host.
fn sent_fields(flow: &Flow, probe: &Sent, how: SentAs) -> Option<Fields> {
    let (family, bytes) = match (flow.src, flow.dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (4, packet::ipv4_packet(flow, probe.token, probe.ttl, probe.size, false)),
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let l4 = packet::transport(flow, probe.token, probe.size);
            let mut b = Vec::with_capacity(40 + l4.len());
            b.extend_from_slice(&(0x6000_0000u32 | how.flow_label.unwrap_or(0)).to_be_bytes());
            b.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            b.extend_from_slice(&[flow.proto.number(6), probe.ttl]);
            b.extend_from_slice(&s.octets());
            b.extend_from_slice(&d.octets());
            b.extend_from_slice(&l4);
            (6, b)
        }
        _ => return None,
    };
    let mut f = read_fields(&bytes, family)?;
    f.tos = how.tos;
    if family == 6 && how.flow_label.is_none() {
        f.flow_label = None;
    }
    Some(f)
}

/// The quoted packet inside an ICMP error datagram as the prober receives
/// it (IPv4 from the IP header, IPv6 from the ICMPv6 header); `None` for
/// anything else (echo replies, TCP answers).
fn quote_of(family: u8, datagram: &[u8]) -> Option<&[u8]> {
    let c = Cursor::from_slice(datagram);
    let icmp_off = if family == 4 {
        let ip = c.get::<Ipv4Hdr>(0)?;
        if ip.version() != 4 || ip.protocol != IPPROTO_ICMP {
            return None;
        }
        ip.header_len()
    } else {
        0
    };
    let h = c.get::<IcmpHdr>(icmp_off)?;
    let error = if family == 4 { matches!(h.icmp_type, 3 | 4 | 5 | 11 | 12) } else { matches!(h.icmp_type, 1..=4) };
    if !error {
        return None;
    }
    let quote = datagram.get(icmp_off + IcmpHdr::LEN..)?;
    // RFC 4884: a message with extensions (MPLS labels) says how long the
    // quote is (IPv4: 32-bit words in byte 5, IPv6: 64-bit words in byte
    // 4); what follows is not our packet.
    let words = if family == 4 && matches!(h.icmp_type, 3 | 11 | 12) {
        usize::from(h.rest[1]) * 4
    } else if family == 6 && matches!(h.icmp_type, 1 | 3) {
        usize::from(h.rest[0]) * 8
    } else {
        0
    };
    Some(if words > 0 && words < quote.len() { &quote[..words] } else { quote })
}

fn is_time_exceeded(family: u8, datagram: &[u8]) -> bool {
    let off =
        if family == 4 { Cursor::from_slice(datagram).get::<Ipv4Hdr>(0).map_or(0, |ip| ip.header_len()) } else { 0 };
    let t = datagram.get(off).copied();
    (family == 4 && t == Some(11)) || (family == 6 && t == Some(3))
}

/// Compares the quote in `datagram` (the answer to `probe`) with the probe.
/// `None` when the answer is not an ICMP error or its quote is unreadable.
pub fn check(flow: &Flow, how: SentAs, probe: &Sent, datagram: &[u8]) -> Option<QuoteCheck> {
    let family = flow.family();
    let quote = quote_of(family, datagram)?;
    let q = read_fields(quote, family)?;
    let s = sent_fields(flow, probe, how)?;
    let mut changes = Vec::new();
    let mut push = |field, sent: Value, quoted: Value| {
        if sent != quoted {
            changes.push(FieldChange { field, sent, quoted });
        }
    };
    if let (Some(a), Some(b)) = (s.src, q.src) {
        push(Field::Source, Value::Addr(a), Value::Addr(b));
    }
    if let (Some(a), Some(b)) = (s.src_port, q.src_port) {
        push(Field::SourcePort, Value::Num(a.into()), Value::Num(b.into()));
    }
    push(Field::Dscp, Value::Num((s.tos >> 2).into()), Value::Num((q.tos >> 2).into()));
    push(Field::Ecn, Value::Num((s.tos & 3).into()), Value::Num((q.tos & 3).into()));
    if let (Some(a), Some(b)) = (s.ip_id, q.ip_id) {
        push(Field::IpId, Value::Num(a.into()), Value::Num(b.into()));
    }
    if let (Some(a), Some(b)) = (s.flow_label, q.flow_label) {
        push(Field::FlowLabel, Value::Num(a), Value::Num(b));
    }
    if let (Some(a), Some(b)) = (s.mss, q.mss) {
        push(Field::Mss, Value::Num(a.into()), Value::Num(b.into()));
    }
    if is_time_exceeded(family, datagram) && q.ttl > 1 {
        push(Field::Ttl, Value::Num(1), Value::Num(q.ttl.into()));
    }
    Some(QuoteCheck { bytes: quote.len(), changes })
}

/// A change on the path: where it first shows, and what it is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathChange {
    pub field: Field,
    pub kind: ChangeKind,
    pub sent: Value,
    pub quoted: Value,
    /// First hop (TTL) whose quote shows the change.
    pub first_hop: u8,
    /// Last hop before it whose quote did not show it (0: this host): the
    /// middlebox sits between `after_hop` and `first_hop`.
    pub after_hop: u8,
    /// Who answered at `first_hop`.
    pub reporter: Option<IpAddr>,
    /// Every hop whose quote shows it.
    pub hops: Vec<u8>,
}

impl PathChange {
    /// The change in words: "NAT between hop 2 and 3: source address
    /// 198.18.1.1 rewritten to 198.18.77.1 (quotes of hops 3-4)".
    pub fn words(&self) -> String {
        let what = match self.kind {
            ChangeKind::Nat => "NAT",
            ChangeKind::Clamped => "MSS clamp",
            ChangeKind::TtlReset => "TTL reset",
            ChangeKind::Bleached => "bleached",
            ChangeKind::Rewritten => "rewrite",
        };
        let head = match self.kind {
            ChangeKind::Bleached | ChangeKind::Rewritten => format!("{} {what}", self.field.name()),
            _ => what.to_string(),
        };
        let detail = match self.kind {
            ChangeKind::TtlReset => format!(
                "hop {} quoted TTL {} on a time exceeded (expected 1): a box before it reset the TTL or a hop did not decrement it",
                self.first_hop, self.quoted
            ),
            ChangeKind::Clamped => format!("{} {} clamped to {}", self.field.name(), self.sent, self.quoted),
            ChangeKind::Bleached => format!("{} {} cleared to {}", self.field.name(), self.sent, self.quoted),
            _ => format!("{} {} rewritten to {}", self.field.name(), self.sent, self.quoted),
        };
        let seen = match (self.hops.first(), self.hops.last()) {
            (Some(a), Some(b)) if a != b => format!(" (quotes of hops {a}-{b})"),
            (Some(a), _) => format!(" (quote of hop {a})"),
            _ => String::new(),
        };
        format!("{head} between hop {} and {}: {detail}{seen}", self.after_hop, self.first_hop)
    }

    /// A short note for the hop line, e.g. `[NAT src 198.18.77.1]`.
    pub fn note(&self) -> String {
        match self.kind {
            ChangeKind::Nat => {
                format!("[NAT {}={}]", if self.field == Field::Source { "src" } else { "sport" }, self.quoted)
            }
            ChangeKind::Clamped => format!("[MSS={}]", self.quoted),
            ChangeKind::TtlReset => format!("[qTTL={}]", self.quoted),
            _ => format!("[{}={}]", self.field.name().replace(' ', "-"), self.quoted),
        }
    }
}

/// Where each change first shows along the trace `hops` (ascending TTLs).
/// One entry per (field, quoted value): a DSCP set twice on the path gives
/// two entries.
pub fn summarize(hops: &[Hop]) -> Vec<PathChange> {
    // (field, quoted) -> change, hops showing it.
    let mut seen: BTreeMap<(Field, Value), (FieldChange, Vec<u8>)> = BTreeMap::new();
    for h in hops {
        for p in &h.probes {
            let Some(q) = &p.quote else { continue };
            for c in &q.changes {
                let e = seen.entry((c.field, c.quoted)).or_insert((*c, Vec::new()));
                if !e.1.contains(&h.ttl) {
                    e.1.push(h.ttl);
                }
            }
        }
    }
    let mut out: Vec<PathChange> = seen
        .into_values()
        .filter_map(|(c, hs)| {
            let first = *hs.iter().min()?;
            let after = hops
                .iter()
                .filter(|h| h.ttl < first && h.probes.iter().any(|p| p.quote.is_some()))
                .map(|h| h.ttl)
                .max()
                .unwrap_or(0);
            let reporter = hops.iter().find(|h| h.ttl == first).and_then(|h| {
                h.probes.iter().find(|p| p.quote.as_ref().is_some_and(|q| q.changes.contains(&c))).and_then(|p| p.from)
            });
            Some(PathChange {
                field: c.field,
                kind: c.kind(),
                sent: c.sent,
                quoted: c.quoted,
                first_hop: first,
                after_hop: after,
                reporter,
                hops: hs,
            })
        })
        .collect();
    out.sort_by_key(|c| (c.first_hop, c.field));
    out
}

/// Notes for the text line of hop `ttl`: the changes that first show there.
pub fn hop_notes(changes: &[PathChange], ttl: u8) -> String {
    changes.iter().filter(|c| c.first_hop == ttl).map(|c| format!(" {}", c.note())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::packet::Proto;

    fn flow(proto: Proto, v6: bool) -> Flow {
        let (src, dst): (IpAddr, IpAddr) = if v6 {
            ("2001:db8:1::1".parse().unwrap(), "2001:db8:5::1".parse().unwrap())
        } else {
            ("198.18.1.1".parse().unwrap(), "198.18.5.1".parse().unwrap())
        };
        Flow { src, dst, proto, src_port: 40000, dst_port: 33434, icmp_id: 0x1234, seq_base: 1000 }
    }

    fn sent(f: &Flow, token: u16, ttl: u8) -> Sent {
        Sent { token, ttl, size: f.min_size(), at: std::time::Instant::now() }
    }

    /// A reporter's ICMP error datagram quoting `quote`, as a raw socket
    /// returns it: IPv4 with the outer IP header, IPv6 from the ICMPv6 one.
    fn error(v6: bool, icmp_type: u8, quote: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        if !v6 {
            d.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 62, 1, 0, 0, 198, 18, 3, 254, 198, 18, 1, 1]);
        }
        d.extend_from_slice(&[icmp_type, 0, 0, 0, 0, 0, 0, 0]);
        d.extend_from_slice(quote);
        d
    }

    /// The probe as the reporter got it: sent bytes with TTL 1.
    fn v4_quote(f: &Flow, s: &Sent) -> Vec<u8> {
        let mut p = packet::ipv4_packet(f, s.token, 1, s.size, false);
        p[8] = 1;
        p
    }

    #[test]
    fn untouched_probe_shows_no_change() {
        for proto in [Proto::Udp, Proto::Tcp, Proto::Icmp] {
            let f = flow(proto, false);
            let s = sent(&f, 77, 3);
            let q = check(&f, SentAs::default(), &s, &error(false, 11, &v4_quote(&f, &s))).unwrap();
            assert_eq!(q.changes, vec![], "{proto:?}");
            assert_eq!(q.bytes, s.size);
        }
    }

    #[test]
    fn source_dscp_ecn_mss_and_ttl_changes() {
        let f = flow(Proto::Tcp, false);
        let s = sent(&f, 9, 4);
        let mut q = v4_quote(&f, &s);
        q[1] = (10 << 2) | 1; // DSCP AF11, ECT(1)
        q[8] = 5; // quoted TTL 5 on a time exceeded
        q[12..16].copy_from_slice(&[198, 18, 77, 1]);
        // MSS option at 20 (IP) + 20 (TCP) + 2.
        q[42..44].copy_from_slice(&1300u16.to_be_bytes());
        let c = check(&f, SentAs::default(), &s, &error(false, 11, &q)).unwrap();
        let fields: Vec<Field> = c.changes.iter().map(|c| c.field).collect();
        assert_eq!(fields, vec![Field::Source, Field::Dscp, Field::Ecn, Field::Mss, Field::Ttl]);
        assert_eq!(c.changes[0].quoted, Value::Addr("198.18.77.1".parse().unwrap()));
        assert_eq!(c.changes[0].kind(), ChangeKind::Nat);
        assert_eq!(c.changes[1].quoted, Value::Num(10));
        assert_eq!(c.changes[3].sent, Value::Num(1460));
        assert_eq!(c.changes[3].kind(), ChangeKind::Clamped);
        assert_eq!(c.changes[4].kind(), ChangeKind::TtlReset);
        // The same TTL in a port unreachable (the destination) is normal.
        let c = check(&f, SentAs::default(), &s, &error(false, 3, &q)).unwrap();
        assert!(!c.changes.iter().any(|c| c.field == Field::Ttl));
    }

    #[test]
    fn bleached_dscp_needs_a_marked_probe() {
        let f = flow(Proto::Udp, false);
        let s = sent(&f, 3, 3);
        // We sent EF (46) + ECT(0); the quote shows DSCP 0, ECN kept.
        let mut q = v4_quote(&f, &s);
        q[1] = 2;
        let c = check(&f, SentAs { flow_label: None, tos: (46 << 2) | 2 }, &s, &error(false, 11, &q)).unwrap();
        assert_eq!(c.changes, vec![FieldChange { field: Field::Dscp, sent: Value::Num(46), quoted: Value::Num(0) }]);
        assert_eq!(c.changes[0].kind(), ChangeKind::Bleached);
    }

    #[test]
    fn rfc4884_length_bounds_the_quote() {
        let f = flow(Proto::Udp, false);
        let s = sent(&f, 3, 3);
        let mut q = v4_quote(&f, &s);
        q.resize(128, 0);
        q.extend_from_slice(&[0x20, 0, 0, 0, 0, 8, 1, 1, 0, 0, 0x11, 0xff]);
        let mut d = error(false, 11, &q);
        d[20 + 5] = 32; // 128 bytes of quote
        let c = check(&f, SentAs::default(), &s, &d).unwrap();
        assert_eq!((c.bytes, c.changes.len()), (128, 0));
    }

    #[test]
    fn short_quote_compares_what_is_there() {
        // RFC 792 quotes: IP header + 8 bytes. No MSS, ports still there.
        let f = flow(Proto::Tcp, false);
        let s = sent(&f, 9, 2);
        let mut q = v4_quote(&f, &s);
        q.truncate(28);
        let c = check(&f, SentAs::default(), &s, &error(false, 11, &q)).unwrap();
        assert_eq!(c.changes, vec![]);
        assert_eq!(c.bytes, 28);
        // Not an error: nothing to compare.
        assert!(check(&f, SentAs::default(), &s, &error(false, 0, &q)).is_none());
    }

    #[test]
    fn ipv6_traffic_class_and_flow_label() {
        let f = flow(Proto::Udp, true);
        let s = sent(&f, 5, 2);
        let mut q = sent_fields_bytes(&f, &s, 0x12345);
        // Hop limit 1 at the reporter, traffic class CS1 (DSCP 8).
        q[7] = 1;
        let vtf = 0x6000_0000u32 | (8 << 2 << 20) | 0x12345;
        q[0..4].copy_from_slice(&vtf.to_be_bytes());
        let c = check(&f, SentAs { flow_label: Some(0x12345), tos: 0 }, &s, &error(true, 3, &q)).unwrap();
        assert_eq!(c.changes, vec![FieldChange { field: Field::Dscp, sent: Value::Num(0), quoted: Value::Num(8) }]);
        // A label we did not choose is not compared; one we chose is.
        assert!(
            check(&f, SentAs::default(), &s, &error(true, 3, &q))
                .unwrap()
                .changes
                .iter()
                .all(|c| c.field != Field::FlowLabel)
        );
        let c = check(&f, SentAs { flow_label: Some(0x11111), tos: 0 }, &s, &error(true, 3, &q)).unwrap();
        assert!(c.changes.iter().any(|c| c.field == Field::FlowLabel));
    }

    fn sent_fields_bytes(f: &Flow, s: &Sent, label: u32) -> Vec<u8> {
        let (IpAddr::V6(src), IpAddr::V6(dst)) = (f.src, f.dst) else { unreachable!() };
        let l4 = packet::transport(f, s.token, s.size);
        let mut b = (0x6000_0000u32 | label).to_be_bytes().to_vec();
        b.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        b.extend_from_slice(&[17, s.ttl]);
        b.extend_from_slice(&src.octets());
        b.extend_from_slice(&dst.octets());
        b.extend_from_slice(&l4);
        b
    }

    fn hop(ttl: u8, changes: Vec<FieldChange>) -> Hop {
        use crate::probe::trace::ProbeResult;
        let p = ProbeResult {
            from: Some(format!("198.18.{ttl}.254").parse().unwrap()),
            name: None,
            rtt_ms: Some(1.0),
            icmp_type: Some(11),
            icmp_code: Some(0),
            reply: "time_exceeded",
            words: None,
            annotation: String::new(),
            quoted_ttl: Some(1),
            reply_ttl: Some(64 - ttl),
            return_hops: Some(ttl),
            mtu: None,
            quote: Some(QuoteCheck { bytes: 28, changes }),
        };
        Hop { ttl, probes: vec![p], addrs: vec![], sent: 1, answered: 1 }
    }

    #[test]
    fn change_located_between_the_last_clean_hop_and_the_first_changed_one() {
        let nat = FieldChange {
            field: Field::Source,
            sent: Value::Addr("198.18.1.1".parse().unwrap()),
            quoted: Value::Addr("198.18.77.1".parse().unwrap()),
        };
        let mut silent = hop(3, vec![]);
        silent.probes[0].quote = None;
        silent.probes[0].from = None;
        let hops = vec![hop(1, vec![]), hop(2, vec![]), silent, hop(4, vec![nat]), hop(5, vec![nat])];
        let s = summarize(&hops);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].after_hop, s[0].first_hop, s[0].kind), (2, 4, ChangeKind::Nat));
        assert_eq!(s[0].hops, vec![4, 5]);
        assert_eq!(s[0].reporter, Some("198.18.4.254".parse().unwrap()));
        assert!(
            s[0].words().starts_with("NAT between hop 2 and 4: source address 198.18.1.1 rewritten to 198.18.77.1")
        );
        assert_eq!(hop_notes(&s, 4), " [NAT src=198.18.77.1]");
        assert_eq!(hop_notes(&s, 5), "");
        // Nothing changed: nothing reported.
        assert!(summarize(&[hop(1, vec![]), hop(2, vec![])]).is_empty());
    }
}
