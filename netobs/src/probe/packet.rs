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

use netobs_common::{
    Cursor, PacketInfo,
    event::have,
    icmp,
    parse::{is_reported_icmp, parse_ip_packet_l4},
    repr::{self, Checksum, IcmpRepr, IpPair, Ipv4Repr, Ipv6Repr, TcpRepr, UdpRepr, tcp_flags},
    wire::{IPPROTO_ICMP, IPPROTO_TCP},
};
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

/// Why a probe could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A `size`-byte probe does not fit the IP length field (65,535 for
    /// IPv4, 65,535 of payload for IPv6): refused, never cut to 16 bits.
    #[error("a {size}-byte probe does not fit the IP length field")]
    TooBig { size: usize },
    #[error("probe addresses of mixed families")]
    MixedFamilies,
    #[error("building the probe: {0}")]
    Header(#[from] repr::Error),
}

fn ip_pair(flow: &Flow) -> Result<IpPair, BuildError> {
    match (flow.src, flow.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ok(IpPair::V4(s, d)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ok(IpPair::V6(s, d)),
        _ => Err(BuildError::MixedFamilies),
    }
}

/// Transport part (UDP/TCP/ICMP header + payload) of a probe of `size`
/// bytes in total (IP header included). The checksum is filled for IPv4;
/// for IPv6 the kernel fills it (IPV6_CHECKSUM / ICMPv6 raw sockets),
/// because it knows the source address it finally picks. A size that does
/// not fit the IP length field is an error.
pub fn try_transport(flow: &Flow, token: u16, size: usize) -> Result<Vec<u8>, BuildError> {
    let v4 = flow.family() == 4;
    let ip_len = if v4 { 20 } else { 40 };
    let size = size.max(flow.min_size());
    let l4_len = size - ip_len;
    let max = if v4 { Ipv4Repr::max_payload(ip_len) } else { Ipv6Repr::MAX_PAYLOAD };
    if l4_len > max {
        return Err(BuildError::TooBig { size });
    }
    let csum = |plain: bool| -> Result<Checksum, BuildError> {
        Ok(match (v4, plain) {
            (false, _) => Checksum::Kernel,
            (true, true) => Checksum::Plain,
            (true, false) => Checksum::Pseudo(ip_pair(flow)?),
        })
    };
    let mut b = vec![0u8; l4_len];
    match flow.proto {
        Proto::Udp => {
            if !v4 {
                b[UdpRepr::LEN..UdpRepr::LEN + TOKEN_LEN].copy_from_slice(&token.to_be_bytes());
            }
            UdpRepr { src_port: flow.src_port, dst_port: flow.dst_port }.emit(&mut b, csum(false)?)?;
        }
        Proto::Tcp => {
            // MSS option: what we could receive on a 1500-byte link. The
            // server's answer is what the test is about.
            let mss: u16 = if v4 { 1460 } else { 1440 };
            let syn = TcpRepr {
                src_port: flow.src_port,
                dst_port: flow.dst_port,
                seq: flow.seq_base.wrapping_add(u32::from(token)),
                ack: 0,
                flags: tcp_flags::SYN,
                window: 64240,
                header_len: TCP_SYN_LEN,
                mss: Some(mss),
            };
            syn.emit(&mut b, csum(false)?)?;
        }
        Proto::Icmp => {
            // seq + !seq == 0xffff whatever seq is: the checksum stays the
            // same for every probe of the flow (Paris traceroute).
            b[IcmpRepr::LEN..IcmpRepr::LEN + 2].copy_from_slice(&(!token).to_be_bytes());
            IcmpRepr::echo_request(flow.family(), flow.icmp_id, token).emit(&mut b, csum(true)?)?;
        }
    }
    Ok(b)
}

/// [`try_transport`] for callers that pass sizes known to fit; an empty
/// packet otherwise (the kernel refuses to send it). Sending code uses
/// [`try_transport`] and reports the error.
pub fn transport(flow: &Flow, token: u16, size: usize) -> Vec<u8> {
    try_transport(flow, token, size).unwrap_or_default()
}

/// A whole IPv4 probe (for an IP_HDRINCL socket): our own header so the IP
/// id carries the token and DF is exactly what we ask for.
pub fn try_ipv4_packet(flow: &Flow, token: u16, ttl: u8, size: usize, df: bool) -> Result<Vec<u8>, BuildError> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (flow.src, flow.dst) else {
        return Err(BuildError::MixedFamilies);
    };
    let l4 = try_transport(flow, token, size)?;
    let ip = Ipv4Repr {
        src,
        dst,
        protocol: flow.proto.number(4),
        ttl,
        tos: 0,
        id: token,
        dont_fragment: df,
        more_fragments: false,
        frag_offset: 0,
        header_len: 20,
        payload_len: l4.len(),
    };
    let mut p = vec![0u8; 20 + l4.len()];
    ip.emit(&[], &mut p)?;
    p[20..].copy_from_slice(&l4);
    Ok(p)
}

/// [`try_ipv4_packet`], empty when it cannot be built (see [`transport`]).
pub fn ipv4_packet(flow: &Flow, token: u16, ttl: u8, size: usize, df: bool) -> Vec<u8> {
    try_ipv4_packet(flow, token, ttl, size, df).unwrap_or_default()
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
/// `l4_off` is where the shared parser found the quoted transport header
/// (after any extension headers), `quote` the quoted bytes.
fn token_from_quote(flow: &Flow, q: &PacketInfo, quote: &Cursor, l4_off: Option<usize>) -> Option<u16> {
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
        // The token follows the 8-byte UDP header, wherever the parser
        // found that header: a router may add extension headers, and a
        // fixed offset would then read the wrong bytes (another probe's
        // token).
        Proto::Udp => {
            let t = quote.get::<[u8; TOKEN_LEN]>(l4_off? + UdpRepr::LEN)?;
            Some(u16::from_be_bytes(*t))
        }
    }
}

/// Parses an ICMP/ICMPv6 message (starting at its ICMP header) from `from`
/// that arrived with `outer_ttl`; returns it if it concerns `flow`.
pub fn parse_icmp(flow: &Flow, msg: &[u8], from: IpAddr, outer_ttl: u8) -> Option<Reply> {
    let fam = flow.family();
    let c = Cursor::from_slice(msg);
    let icmp = IcmpRepr::parse(&c, 0).ok()?;
    let t = icmp.icmp_type;
    let echo_reply = IcmpRepr::echo_reply(fam, 0, 0).icmp_type == t;
    if echo_reply {
        if flow.proto != Proto::Icmp || icmp.echo_id() != flow.icmp_id || from != flow.dst {
            return None;
        }
        return Some(Reply {
            kind: ReplyKind::EchoReply,
            from,
            outer_ttl,
            token: icmp.rest_hi16(),
            mtu: None,
            quoted_ttl: None,
            quoted_len: None,
        });
    }
    // The errors the kernel observer reports too (a v6 redirect quotes
    // after ND options, and never answers a probe).
    if !is_reported_icmp(fam, t) || (fam == 6 && t == icmp::v6::REDIRECT) {
        return None;
    }
    let quote = Cursor::from_slice(msg.get(IcmpRepr::LEN..)?);
    let mut q = PacketInfo::default();
    let l4_off = parse_ip_packet_l4(&quote, 0, fam, &mut q);
    let token = token_from_quote(flow, &q, &quote, l4_off)?;
    Some(Reply {
        kind: ReplyKind::IcmpError { icmp_type: t, code: icmp.code },
        from,
        outer_ttl,
        token,
        mtu: icmp.mtu(fam),
        quoted_ttl: Some(q.ttl),
        quoted_len: Some(q.total_len),
    })
}

/// Parses an IPv4 packet as a raw socket returns it (IP header first):
/// ICMP (errors, echo replies) or TCP (SYN-ACK / RST). A header shorter
/// than 20 bytes, or a total length shorter than the header, is not a
/// reply; bytes past the total length are not part of the packet.
pub fn parse_ipv4(flow: &Flow, pkt: &[u8]) -> Option<Reply> {
    let ip = Ipv4Repr::parse(&Cursor::from_slice(pkt), 0).ok()?;
    let end = pkt.len().min(ip.header_len + ip.payload_len);
    let body = pkt.get(ip.header_len..end)?;
    let from = IpAddr::V4(ip.src);
    match ip.protocol {
        IPPROTO_ICMP => parse_icmp(flow, body, from, ip.ttl),
        IPPROTO_TCP => parse_tcp(flow, body, from, ip.ttl),
        _ => None,
    }
}

/// Parses a TCP segment (header first) from `from`: a SYN-ACK or RST that
/// answers one of our SYNs. Its `token` is `ack - 1 - seq_base`, which is
/// the probe token plus the SYN's payload length (padded PMTU probes);
/// [`super::socket::Prober`] resolves that against the probes it sent.
pub fn parse_tcp(flow: &Flow, seg: &[u8], from: IpAddr, ttl: u8) -> Option<Reply> {
    if flow.proto != Proto::Tcp || from != flow.dst {
        return None;
    }
    let tcp = TcpRepr::parse(&Cursor::from_slice(seg), 0).ok()?;
    if tcp.src_port != flow.dst_port || tcp.dst_port != flow.src_port {
        return None;
    }
    let token = tcp.ack.wrapping_sub(1).wrapping_sub(flow.seq_base) as u16;
    let kind = if tcp.flags & tcp_flags::RST != 0 {
        ReplyKind::Rst
    } else if tcp.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN | tcp_flags::ACK {
        ReplyKind::SynAck { mss: tcp.mss }
    } else {
        return None;
    };
    Some(Reply { kind, from, outer_ttl: ttl, token, mtu: None, quoted_ttl: None, quoted_len: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netobs_common::repr::checksum;

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
        assert_eq!(checksum::of(&p[..20]), 0);
        // UDP checksum verifies over the pseudo header.
        let (IpAddr::V4(s), IpAddr::V4(d)) = (f.src, f.dst) else { unreachable!() };
        assert_eq!(checksum::finish(checksum::add(IpPair::V4(s, d).pseudo_sum(17, 40), &p[20..])), 0);
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
        assert_eq!(checksum::of(&a), 0);
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
        assert!(parse_tcp(&flow4(Proto::Tcp), &[0u8; 20], flow4(Proto::Tcp).dst, 1).is_none());
    }

    /// An ICMPv4 time exceeded for `probe`, inside an IPv4 header whose
    /// version/IHL byte is `vihl`, as a raw socket hands it over.
    fn ipv4_reply(vihl: u8, probe: &[u8]) -> Vec<u8> {
        let m = icmp4_error(11, 0, [0; 4], probe, 1);
        let mut p = vec![vihl, 0, 0, 0, 0, 0, 0, 0, 63, 1, 0, 0, 198, 18, 2, 254, 198, 18, 1, 1];
        p.resize((usize::from(vihl & 0x0f) * 4).max(20), 0);
        let total = (p.len() + m.len()) as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&m);
        p
    }

    #[test]
    fn a_short_ipv4_header_is_not_a_reply() {
        let f = flow4(Proto::Udp);
        let probe = ipv4_packet(&f, 42, 2, 60, false);
        let good = ipv4_reply(0x45, &probe);
        assert_eq!(parse_ipv4(&f, &good).map(|r| r.token), Some(42));
        // IHL 4 (16 bytes) used to be accepted, and the "ICMP message"
        // read from byte 16, inside the IP header.
        for ihl in 0..5u8 {
            let mut bad = good.clone();
            bad[0] = 0x40 | ihl;
            assert_eq!(parse_ipv4(&f, &bad), None, "IHL {ihl}");
        }
        // Options are skipped, whatever their length.
        assert_eq!(parse_ipv4(&f, &ipv4_reply(0x47, &probe)).map(|r| r.token), Some(42));
        // Bytes past the IP total length are not part of the reply.
        let mut short = good.clone();
        short[2..4].copy_from_slice(&27u16.to_be_bytes());
        assert_eq!(parse_ipv4(&f, &short), None, "an ICMP header cut by the IP length");
    }

    /// An ICMPv6 Packet Too Big quoting `l4` behind an IPv6 header and
    /// `ext` (extension-header bytes whose first next-header is `first`).
    fn ptb_with_ext(f: &Flow, first: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
        let (IpAddr::V6(s), IpAddr::V6(d)) = (f.src, f.dst) else { unreachable!() };
        let mut q = vec![0x60, 0, 0, 0];
        q.extend_from_slice(&((ext.len() + l4.len()) as u16).to_be_bytes());
        q.extend_from_slice(&[first, 60]);
        q.extend_from_slice(&s.octets());
        q.extend_from_slice(&d.octets());
        q.extend_from_slice(ext);
        q.extend_from_slice(l4);
        let mut m = vec![2, 0, 0, 0, 0, 0, 0x05, 0x78];
        m.extend_from_slice(&q);
        m
    }

    #[test]
    fn udp_v6_token_follows_extension_headers() {
        let f = flow6(Proto::Udp);
        let l4 = transport(&f, 77, 100);
        // Destination options (16 bytes: Hdr Ext Len 1), then UDP. The
        // bytes at the old fixed offset 48 are the options' PadN content,
        // set here to another probe's token (5).
        let mut ext = vec![17, 1, 1, 12];
        ext.resize(16, 0);
        ext[8..10].copy_from_slice(&5u16.to_be_bytes());
        let m = ptb_with_ext(&f, 60, &ext, &l4);
        assert_eq!(u16::from_be_bytes([m[8 + 48], m[8 + 49]]), 5, "the trap is set");
        let r = parse_icmp(&f, &m, "2001:db8:2::fe".parse().unwrap(), 63).unwrap();
        assert_eq!(r.token, 77);
        // Without extension headers the token is where it always was.
        let plain = ptb_with_ext(&f, 17, &[], &l4);
        assert_eq!(parse_icmp(&f, &plain, "2001:db8:2::fe".parse().unwrap(), 63).unwrap().token, 77);
        // A quote cut inside the token has none: no match, not a guess.
        let cut = &plain[..8 + 40 + 9];
        assert!(parse_icmp(&f, cut, "2001:db8:2::fe".parse().unwrap(), 63).is_none());
    }

    #[test]
    fn sizes_above_the_ip_length_field_are_refused() {
        let f4 = flow4(Proto::Udp);
        assert_eq!(try_ipv4_packet(&f4, 1, 1, 65_535, true).unwrap().len(), 65_535);
        assert!(matches!(try_ipv4_packet(&f4, 1, 1, 65_536, true), Err(BuildError::TooBig { size: 65_536 })));
        // The old builder wrote 65,536 & 0xffff = 0 into the length field.
        assert!(ipv4_packet(&f4, 1, 1, 70_000, true).is_empty());
        let f6 = flow6(Proto::Icmp);
        assert_eq!(try_transport(&f6, 1, 40 + 65_535).unwrap().len(), 65_535);
        assert!(matches!(try_transport(&f6, 1, 40 + 65_536), Err(BuildError::TooBig { .. })));
        let t6 = flow6(Proto::Udp);
        assert!(try_transport(&t6, 1, 40 + 65_536).is_err(), "UDP length is 16 bits too");
    }
}
