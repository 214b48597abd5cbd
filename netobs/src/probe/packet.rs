//! Building probe packets and reading the answers: pure functions, no
//! sockets, so every byte decision is unit-tested.
//!
//! # Flow identity (Paris traceroute)
//! Per-flow load balancers hash the 5-tuple (and the IPv6 flow label); if
//! probes of one trace differed there, each TTL could take another path and
//! the "path" printed would be a mix of several. So every probe of a
//! [`Flow`] keeps addresses, protocol, ports (or ICMP id) and flow label
//! constant, and probes are told apart by fields no balancer hashes on:
//! - IPv4: the IP identification (we write the IP header ourselves), which
//!   every ICMP error quotes;
//! - IPv6 UDP: a 16-bit token at the start of the payload, plus the UDP
//!   length (trace probes have distinct lengths); ICMPv6 errors quote as
//!   much of the packet as fits in 1280 bytes, so the payload comes back;
//! - TCP: the sequence number (`seq_base + token`), which the quote's first
//!   8 bytes carry and a SYN-ACK/RST acknowledges;
//! - ICMP echo: the sequence number; a compensating payload word keeps the
//!   ICMP checksum constant, because some balancers hash the first 4 bytes
//!   of the ICMP header as if they were ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netobs_common::{Cursor, PacketInfo, event::have, parse::parse_ip_packet};
use serde::Serialize;

/// Transport protocol of the probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// UDP datagrams to a (normally closed) high port: the destination
    /// answers "port unreachable". Classic traceroute.
    Udp,
    /// TCP SYN to the service port: follows the service's path and
    /// firewall rules; SYN-ACK (open) or RST (closed) both prove arrival.
    Tcp,
    /// ICMP echo request: least often filtered, but may take another path.
    Icmp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
            Proto::Icmp => "icmp",
        }
    }

    /// IP protocol number for `family`.
    pub fn number(self, family: u8) -> u8 {
        match (self, family) {
            (Proto::Udp, _) => 17,
            (Proto::Tcp, _) => 6,
            (Proto::Icmp, 4) => 1,
            (Proto::Icmp, _) => 58,
        }
    }
}

/// The constant part of every probe of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Proto,
    /// UDP/TCP source port (0 for ICMP).
    pub src_port: u16,
    /// UDP/TCP destination port (0 for ICMP).
    pub dst_port: u16,
    /// ICMP echo identifier.
    pub icmp_id: u16,
    /// TCP sequence numbers are `seq_base + token`.
    pub seq_base: u32,
}

impl Flow {
    pub fn family(&self) -> u8 {
        if self.dst.is_ipv4() { 4 } else { 6 }
    }

    /// IP + transport header bytes: the smallest probe.
    pub fn header_len(&self) -> usize {
        let ip = if self.family() == 4 { 20 } else { 40 };
        ip + match self.proto {
            Proto::Udp | Proto::Icmp => 8,
            Proto::Tcp => TCP_SYN_LEN,
        }
    }

    /// Smallest probe: UDP and ICMP carry a payload token; a TCP SYN
    /// carries none (its token is the sequence number, and a SYN with data
    /// would shift the acknowledgment).
    pub fn min_size(&self) -> usize {
        match self.proto {
            Proto::Tcp => self.header_len(),
            Proto::Udp | Proto::Icmp => self.header_len() + TOKEN_LEN,
        }
    }
}

/// Bytes of the payload token (UDP / ICMP).
pub const TOKEN_LEN: usize = 2;
/// TCP SYN: 20-byte header + 4-byte MSS option.
pub const TCP_SYN_LEN: usize = 24;

/// Ones'-complement sum of 16-bit words (RFC 1071), not yet inverted.
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    fold(sum16(0, data))
}

fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut acc = sum16(0, &src.octets());
    acc = sum16(acc, &dst.octets());
    acc + u32::from(proto) + len as u32
}

/// Transport part (UDP/TCP/ICMP header + payload) of a probe of `size`
/// bytes in total (IP header included). The checksum is filled for IPv4;
/// for IPv6 the kernel fills it (IPV6_CHECKSUM / ICMPv6 raw sockets),
/// because it knows the source address it finally picks.
pub fn transport(flow: &Flow, token: u16, size: usize) -> Vec<u8> {
    let ip_len = if flow.family() == 4 { 20 } else { 40 };
    let size = size.max(flow.min_size());
    let l4_len = size - ip_len;
    let mut b = vec![0u8; l4_len];
    match flow.proto {
        Proto::Udp => {
            b[0..2].copy_from_slice(&flow.src_port.to_be_bytes());
            b[2..4].copy_from_slice(&flow.dst_port.to_be_bytes());
            b[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            if flow.family() == 6 {
                b[8..10].copy_from_slice(&token.to_be_bytes());
            }
        }
        Proto::Tcp => {
            b[0..2].copy_from_slice(&flow.src_port.to_be_bytes());
            b[2..4].copy_from_slice(&flow.dst_port.to_be_bytes());
            b[4..8].copy_from_slice(&flow.seq_base.wrapping_add(u32::from(token)).to_be_bytes());
            b[12] = ((TCP_SYN_LEN / 4) as u8) << 4;
            b[13] = 0x02; // SYN
            b[14..16].copy_from_slice(&64240u16.to_be_bytes());
            // MSS option: what we could receive on a 1500-byte link. The
            // server's answer is what the test is about.
            let mss: u16 = if flow.family() == 4 { 1460 } else { 1440 };
            b[20..24].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
        }
        Proto::Icmp => {
            b[0] = if flow.family() == 4 { 8 } else { 128 };
            b[4..6].copy_from_slice(&flow.icmp_id.to_be_bytes());
            b[6..8].copy_from_slice(&token.to_be_bytes());
            // seq + !seq == 0xffff whatever seq is: the checksum stays the
            // same for every probe of the flow (Paris traceroute).
            b[8..10].copy_from_slice(&(!token).to_be_bytes());
        }
    }
    if let (IpAddr::V4(s), IpAddr::V4(d)) = (flow.src, flow.dst) {
        let (off, acc) = match flow.proto {
            Proto::Udp => (6, pseudo_v4(s, d, 17, l4_len)),
            Proto::Tcp => (16, pseudo_v4(s, d, 6, l4_len)),
            Proto::Icmp => (2, 0),
        };
        let mut c = fold(sum16(acc, &b));
        if flow.proto == Proto::Udp && c == 0 {
            c = 0xffff;
        }
        b[off..off + 2].copy_from_slice(&c.to_be_bytes());
    }
    b
}

/// A whole IPv4 probe (for an IP_HDRINCL socket): our own header so the IP
/// id carries the token and DF is exactly what we ask for.
pub fn ipv4_packet(flow: &Flow, token: u16, ttl: u8, size: usize, df: bool) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (flow.src, flow.dst) else {
        return Vec::new();
    };
    let l4 = transport(flow, token, size);
    let total = 20 + l4.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&token.to_be_bytes());
    p.extend_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
    p.extend_from_slice(&[ttl, flow.proto.number(4), 0, 0]);
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&l4);
    p
}

/// What came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    /// An ICMP/ICMPv6 error quoting one of our probes.
    IcmpError { icmp_type: u8, code: u8 },
    /// ICMP echo reply from the destination.
    EchoReply,
    /// TCP SYN-ACK (with the MSS option if there was one).
    SynAck { mss: Option<u16> },
    /// TCP RST.
    Rst,
}

/// One received packet that belongs to a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub kind: ReplyKind,
    /// Who sent it (the reporter for ICMP errors).
    pub from: IpAddr,
    /// TTL / hop limit the reply arrived with (return path).
    pub outer_ttl: u8,
    /// Probe token it answers.
    pub token: u16,
    /// Announced MTU (frag-needed / Packet Too Big).
    pub mtu: Option<u32>,
    /// TTL of our probe as the reporter received it (ICMP errors).
    pub quoted_ttl: Option<u8>,
    /// Total length of our probe as quoted.
    pub quoted_len: Option<u16>,
}

impl Reply {
    pub fn is_time_exceeded(&self, family: u8) -> bool {
        matches!(self.kind, ReplyKind::IcmpError { icmp_type, .. }
            if (family == 4 && icmp_type == 11) || (family == 6 && icmp_type == 3))
    }

    /// Frag-needed (v4 3/4) or Packet Too Big (v6 2).
    pub fn is_too_big(&self, family: u8) -> bool {
        matches!(self.kind, ReplyKind::IcmpError { icmp_type, code }
            if (family == 4 && icmp_type == 3 && code == 4) || (family == 6 && icmp_type == 2))
    }

    /// The reply proves the probe reached the destination: echo reply,
    /// SYN-ACK, RST, or an ICMP error sent by the destination itself.
    pub fn from_destination(&self, flow: &Flow) -> bool {
        self.from == flow.dst
    }
}

fn addr(family: u8, b: &[u8; 16]) -> IpAddr {
    if family == 4 { IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])) } else { IpAddr::V6(Ipv6Addr::from(*b)) }
}

/// Matches a quoted packet to our flow; returns the probe token.
fn token_from_quote(flow: &Flow, q: &PacketInfo, quote: &[u8]) -> Option<u16> {
    let fam = flow.family();
    if q.have & have::IP == 0 || q.family != fam || addr(fam, &q.dst) != flow.dst {
        return None;
    }
    if q.protocol != flow.proto.number(fam) {
        return None;
    }
    if q.have & have::PORTS == 0 {
        return None;
    }
    match flow.proto {
        Proto::Udp | Proto::Tcp => {
            if q.src_port != flow.src_port || q.dst_port != flow.dst_port {
                return None;
            }
        }
        Proto::Icmp => {
            if q.have & have::ECHO == 0 || q.src_port != flow.icmp_id {
                return None;
            }
        }
    }
    if fam == 4 {
        return Some(q.ip_id as u16);
    }
    match flow.proto {
        Proto::Tcp => Some(q.seq.wrapping_sub(flow.seq_base) as u16),
        Proto::Icmp => Some(q.seq as u16),
        // The token follows the 8-byte UDP header (no extension headers:
        // we send none).
        Proto::Udp => quote.get(48..50).map(|t| u16::from_be_bytes([t[0], t[1]])),
    }
}

/// Parses an ICMP/ICMPv6 message (starting at its ICMP header) from `from`
/// that arrived with `outer_ttl`; returns it if it concerns `flow`.
pub fn parse_icmp(flow: &Flow, msg: &[u8], from: IpAddr, outer_ttl: u8) -> Option<Reply> {
    let fam = flow.family();
    if msg.len() < 8 {
        return None;
    }
    let (t, code) = (msg[0], msg[1]);
    let (echo_reply, is_error) =
        if fam == 4 { (t == 0, matches!(t, 3 | 4 | 5 | 11 | 12)) } else { (t == 129, matches!(t, 1..=4)) };
    if echo_reply {
        let id = u16::from_be_bytes([msg[4], msg[5]]);
        if flow.proto != Proto::Icmp || id != flow.icmp_id || from != flow.dst {
            return None;
        }
        return Some(Reply {
            kind: ReplyKind::EchoReply,
            from,
            outer_ttl,
            token: u16::from_be_bytes([msg[6], msg[7]]),
            mtu: None,
            quoted_ttl: None,
            quoted_len: None,
        });
    }
    if !is_error {
        return None;
    }
    let quote = &msg[8..];
    let mut q = PacketInfo::default();
    parse_ip_packet(&Cursor::from_slice(quote), 0, fam, &mut q);
    let token = token_from_quote(flow, &q, quote)?;
    let mtu = if fam == 4 && t == 3 && code == 4 {
        Some(u32::from(u16::from_be_bytes([msg[6], msg[7]])))
    } else if fam == 6 && t == 2 {
        Some(u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]))
    } else {
        None
    };
    Some(Reply {
        kind: ReplyKind::IcmpError { icmp_type: t, code },
        from,
        outer_ttl,
        token,
        mtu,
        quoted_ttl: Some(q.ttl),
        quoted_len: Some(q.total_len),
    })
}

/// Parses an IPv4 packet as a raw socket returns it (IP header first):
/// ICMP (errors, echo replies) or TCP (SYN-ACK / RST).
pub fn parse_ipv4(flow: &Flow, pkt: &[u8]) -> Option<Reply> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let from = IpAddr::V4(Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]));
    let ttl = pkt[8];
    let body = pkt.get(ihl..)?;
    match pkt[9] {
        1 => parse_icmp(flow, body, from, ttl),
        6 => parse_tcp(flow, body, from, ttl),
        _ => None,
    }
}

/// Parses a TCP segment (header first) from `from`: a SYN-ACK or RST that
/// answers one of our SYNs. Its `token` is `ack - 1 - seq_base`, which is
/// the probe token plus the SYN's payload length (padded PMTU probes);
/// [`super::socket::Prober`] resolves that against the probes it sent.
pub fn parse_tcp(flow: &Flow, seg: &[u8], from: IpAddr, ttl: u8) -> Option<Reply> {
    if flow.proto != Proto::Tcp || seg.len() < 20 || from != flow.dst {
        return None;
    }
    let sport = u16::from_be_bytes([seg[0], seg[1]]);
    let dport = u16::from_be_bytes([seg[2], seg[3]]);
    if sport != flow.dst_port || dport != flow.src_port {
        return None;
    }
    let flags = seg[13];
    let ack = u32::from_be_bytes([seg[8], seg[9], seg[10], seg[11]]);
    let token = ack.wrapping_sub(1).wrapping_sub(flow.seq_base) as u16;
    let kind = if flags & 0x04 != 0 {
        ReplyKind::Rst
    } else if flags & 0x12 == 0x12 {
        ReplyKind::SynAck { mss: tcp_mss(seg) }
    } else {
        return None;
    };
    Some(Reply { kind, from, outer_ttl: ttl, token, mtu: None, quoted_ttl: None, quoted_len: None })
}

/// The MSS option of a TCP header, if present.
fn tcp_mss(seg: &[u8]) -> Option<u16> {
    let doff = usize::from(seg[12] >> 4) * 4;
    let opts = seg.get(20..doff.min(seg.len()))?;
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(*opts.get(i + 1)?);
                if len < 2 {
                    break;
                }
                if kind == 2 && len == 4 {
                    return Some(u16::from_be_bytes([*opts.get(i + 2)?, *opts.get(i + 3)?]));
                }
                i += len;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow4(proto: Proto) -> Flow {
        Flow {
            src: "198.18.1.1".parse().unwrap(),
            dst: "198.18.4.1".parse().unwrap(),
            proto,
            src_port: 40000,
            dst_port: if proto == Proto::Tcp { 443 } else { 33434 },
            icmp_id: 0x1234,
            seq_base: 0x1000_0000,
        }
    }

    fn flow6(proto: Proto) -> Flow {
        Flow { src: "2001:db8:1::1".parse().unwrap(), dst: "2001:db8:4::1".parse().unwrap(), ..flow4(proto) }
    }

    /// An ICMPv4 error from `from` quoting `probe` as a router would:
    /// TTL decremented to `quoted_ttl`, header + 8 bytes.
    fn icmp4_error(t: u8, code: u8, rest: [u8; 4], probe: &[u8], quoted_ttl: u8) -> Vec<u8> {
        let mut q = probe[..28.min(probe.len())].to_vec();
        q[8] = quoted_ttl;
        let mut m = vec![t, code, 0, 0];
        m.extend_from_slice(&rest);
        m.extend_from_slice(&q);
        m
    }

    #[test]
    fn ipv4_probe_header_and_checksums() {
        let f = flow4(Proto::Udp);
        let p = ipv4_packet(&f, 7, 3, 60, true);
        assert_eq!(p.len(), 60);
        assert_eq!(p[8], 3);
        assert_eq!(u16::from_be_bytes([p[4], p[5]]), 7);
        assert_eq!(p[6] & 0x40, 0x40);
        assert_eq!(checksum(&p[..20]), 0);
        // UDP checksum verifies over the pseudo header.
        let (IpAddr::V4(s), IpAddr::V4(d)) = (f.src, f.dst) else { unreachable!() };
        assert_eq!(fold(sum16(pseudo_v4(s, d, 17, 40), &p[20..])), 0);
    }

    #[test]
    fn paris_udp_v4_probes_share_the_flow() {
        let f = flow4(Proto::Udp);
        let a = ipv4_packet(&f, 1, 1, 60, false);
        let b = ipv4_packet(&f, 2, 2, 60, false);
        // Everything after the IP header is identical: same ports, length
        // and checksum, so a balancer hashing any of it sees one flow.
        assert_eq!(a[20..], b[20..]);
    }

    #[test]
    fn icmp_echo_checksum_is_constant() {
        let f = flow4(Proto::Icmp);
        let a = transport(&f, 1, 64);
        let b = transport(&f, 999, 64);
        assert_eq!(a[2..4], b[2..4]);
        assert_eq!(checksum(&a), 0);
        assert_ne!(a[6..8], b[6..8]);
    }

    #[test]
    fn time_exceeded_matches_by_ip_id() {
        let f = flow4(Proto::Udp);
        let probe = ipv4_packet(&f, 42, 2, 60, false);
        let m = icmp4_error(11, 0, [0; 4], &probe, 1);
        let r = parse_icmp(&f, &m, "198.18.2.254".parse().unwrap(), 63).unwrap();
        assert_eq!(r.token, 42);
        assert!(r.is_time_exceeded(4));
        assert_eq!(r.quoted_ttl, Some(1));
        // Another flow (other source port) does not match.
        let other = Flow { src_port: 40001, ..f };
        assert!(parse_icmp(&other, &m, "198.18.2.254".parse().unwrap(), 63).is_none());
    }

    #[test]
    fn frag_needed_carries_mtu() {
        let f = flow4(Proto::Udp);
        let probe = ipv4_packet(&f, 9, 64, 1500, true);
        let m = icmp4_error(3, 4, [0, 0, 0x05, 0x78], &probe, 62);
        let r = parse_icmp(&f, &m, "198.18.2.254".parse().unwrap(), 63).unwrap();
        assert!(r.is_too_big(4));
        assert_eq!(r.mtu, Some(1400));
        assert_eq!(r.quoted_len, Some(1500));
        assert_eq!(r.token, 9);
    }

    #[test]
    fn tcp_probe_matches_by_seq_in_quote_and_ack() {
        let f = flow6(Proto::Tcp);
        let l4 = transport(&f, 5, 40 + 24);
        // A v6 quote: IPv6 header + segment.
        let mut q = vec![0x60, 0, 0, 0, 0, 24, 6, 1];
        let (IpAddr::V6(s), IpAddr::V6(d)) = (f.src, f.dst) else { unreachable!() };
        q.extend_from_slice(&s.octets());
        q.extend_from_slice(&d.octets());
        q.extend_from_slice(&l4);
        let mut m = vec![1, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&q);
        let r = parse_icmp(&f, &m, "2001:db8:2::fe".parse().unwrap(), 63).unwrap();
        assert_eq!(r.token, 5);
        assert_eq!(r.kind, ReplyKind::IcmpError { icmp_type: 1, code: 1 });
        // SYN-ACK acknowledging seq_base + 5.
        let mut syn_ack = vec![0u8; 24];
        syn_ack[0..2].copy_from_slice(&443u16.to_be_bytes());
        syn_ack[2..4].copy_from_slice(&40000u16.to_be_bytes());
        syn_ack[8..12].copy_from_slice(&(f.seq_base + 6).to_be_bytes());
        syn_ack[12] = 6 << 4;
        syn_ack[13] = 0x12;
        syn_ack[20..24].copy_from_slice(&[2, 4, 0x05, 0x64]);
        let r = parse_tcp(&f, &syn_ack, f.dst, 62).unwrap();
        assert_eq!(r.token, 5);
        assert_eq!(r.kind, ReplyKind::SynAck { mss: Some(1380) });
    }

    #[test]
    fn udp_v6_token_in_payload_and_ptb() {
        let f = flow6(Proto::Udp);
        let l4 = transport(&f, 77, 1500);
        assert_eq!(l4.len(), 1460);
        let mut q = vec![0x60, 0, 0, 0];
        q.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        q.extend_from_slice(&[17, 60]);
        let (IpAddr::V6(s), IpAddr::V6(d)) = (f.src, f.dst) else { unreachable!() };
        q.extend_from_slice(&s.octets());
        q.extend_from_slice(&d.octets());
        q.extend_from_slice(&l4);
        q.truncate(1232);
        let mut m = vec![2, 0, 0, 0, 0, 0, 0x05, 0x78];
        m.extend_from_slice(&q);
        let r = parse_icmp(&f, &m, "2001:db8:2::fe".parse().unwrap(), 63).unwrap();
        assert_eq!(r.token, 77);
        assert_eq!(r.mtu, Some(1400));
        assert!(r.is_too_big(6));
    }

    #[test]
    fn echo_reply_from_destination_only() {
        let f = flow4(Proto::Icmp);
        let m = [0u8, 0, 0, 0, 0x12, 0x34, 0, 3];
        assert_eq!(parse_icmp(&f, &m, f.dst, 61).unwrap().token, 3);
        assert!(parse_icmp(&f, &m, "198.18.9.9".parse().unwrap(), 61).is_none());
    }

    #[test]
    fn garbage_is_ignored() {
        let f = flow4(Proto::Udp);
        assert!(parse_ipv4(&f, &[]).is_none());
        assert!(parse_ipv4(&f, &[0x45; 19]).is_none());
        assert!(parse_icmp(&f, &[11, 0, 0, 0, 0, 0, 0, 0, 0x45], f.dst, 1).is_none());
        assert!(tcp_mss(&[0u8; 20]).is_none());
    }
}
