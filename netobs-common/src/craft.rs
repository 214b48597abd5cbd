//! Packet builders for tests and benchmarks (feature `craft`, needs std).
//!
//! One builder, [`Frame`], describes an Ethernet frame (0-2 VLAN tags), its
//! IPv4 or IPv6 header (options, flags, fragment offset, extension headers)
//! and its payload (TCP, UDP, ICMP echo, an ICMP/ICMPv6 error quoting
//! another packet, raw bytes). [`Frame::bytes`] gives the whole frame,
//! [`Frame::ip_bytes`] the IP packet alone (what an ICMP error quotes).
//!
//! ```
//! use netobs_common::craft::{Frame, Tcp};
//! use std::net::Ipv4Addr;
//! let inner = Frame::ipv4(Ipv4Addr::new(198, 18, 1, 1), Ipv4Addr::new(198, 18, 2, 1))
//!     .ttl(1)
//!     .tcp(Tcp::new(40000, 443).syn())
//!     .ip_bytes();
//! let frame = Frame::ipv4(Ipv4Addr::new(198, 18, 0, 254), Ipv4Addr::new(198, 18, 1, 1))
//!     .vlan(100)
//!     .ttl(63)
//!     .icmp_error(3, 10, &inner)
//!     .bytes();
//! assert_eq!(frame.len(), 14 + 4 + 20 + 8 + inner.len());
//! ```
//!
//! Every header is written by its [`crate::repr`] emitter, the same one
//! the probes use, so checksums (IPv4 header, ICMP, ICMPv6, TCP, UDP) are
//! correct for what is built and come from the one checksum
//! implementation; the parser does not check them. Nothing here validates: a builder
//! can describe any byte pattern a test needs (bogus IHL, lying lengths).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::vec::Vec;

pub use crate::repr::Error;
use crate::repr::{Checksum, IcmpRepr, IpPair, Ipv4Repr, Ipv6Repr, TcpRepr, UdpRepr};
use crate::wire::{
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
};

/// MAC addresses every crafted frame carries (locally administered).
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

pub use crate::repr::tcp_flags;

/// A TCP header (plus optional options and payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Bytes of options (NOPs, rounded up to a multiple of 4, at most 40).
    pub options_len: usize,
    pub payload_len: usize,
}

impl Tcp {
    pub fn new(sport: u16, dport: u16) -> Tcp {
        Tcp { sport, dport, seq: 1, ack: 0, flags: tcp_flags::ACK, window: 64240, options_len: 0, payload_len: 0 }
    }
    pub fn seq(mut self, seq: u32) -> Self {
        self.seq = seq;
        self
    }
    pub fn ack(mut self, ack: u32) -> Self {
        self.ack = ack;
        self
    }
    pub fn flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }
    pub fn syn(self) -> Self {
        self.flags(tcp_flags::SYN)
    }
    pub fn syn_ack(self) -> Self {
        self.flags(tcp_flags::SYN | tcp_flags::ACK)
    }
    pub fn options_len(mut self, n: usize) -> Self {
        self.options_len = n;
        self
    }
    pub fn payload_len(mut self, n: usize) -> Self {
        self.payload_len = n;
        self
    }
    /// The segment (header, NOP options, payload), checksum per `csum`.
    fn encode(&self, csum: Checksum) -> Result<Vec<u8>, Error> {
        let opts = self.options_len.div_ceil(4).min(10) * 4;
        let mut b = std::vec![0u8; 20 + opts + self.payload_len];
        for (i, x) in b[20 + opts..].iter_mut().enumerate() {
            *x = i as u8;
        }
        let repr = TcpRepr {
            src_port: self.sport,
            dst_port: self.dport,
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            window: self.window,
            header_len: 20 + opts,
            mss: None,
        };
        repr.emit(&mut b, csum)?;
        Ok(b)
    }
}

/// One IPv6 extension header (the shared emitter's).
pub use crate::repr::Ipv6ExtRepr as Ext;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Payload {
    None,
    Raw(Vec<u8>),
    Tcp(Tcp),
    Udp {
        sport: u16,
        dport: u16,
        len: usize,
    },
    Echo {
        reply: bool,
        id: u16,
        seq: u16,
        len: usize,
    },
    /// ICMP/ICMPv6 message: type, code, the 4 type-specific bytes and body.
    Icmp {
        icmp_type: u8,
        code: u8,
        rest: [u8; 4],
        body: Vec<u8>,
    },
}

/// A frame under construction. Every setter consumes and returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// (TPID, TCI) of each tag, outermost first.
    vlans: Vec<(u16, u16)>,
    family: u8,
    src: [u8; 16],
    dst: [u8; 16],
    ttl: u8,
    tos: u8,
    id: u16,
    df: bool,
    mf: bool,
    frag_offset: u16,
    v4_options: Vec<u8>,
    version_ihl: Option<u8>,
    total_len: Option<u16>,
    exts: Vec<Ext>,
    proto: Option<u8>,
    payload: Payload,
}

fn v4_slot(a: Ipv4Addr) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..4].copy_from_slice(&a.octets());
    s
}

impl Frame {
    /// IPv4 from `src` to `dst`: TTL 64, id 0x1234, DF clear, no payload.
    pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr) -> Frame {
        Frame::new(4, v4_slot(src), v4_slot(dst))
    }

    /// IPv6 from `src` to `dst`: hop limit 64, no extension headers.
    pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr) -> Frame {
        Frame::new(6, src.octets(), dst.octets())
    }

    /// Either family, from addresses of the same family.
    pub fn ip(src: IpAddr, dst: IpAddr) -> Frame {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Frame::ipv4(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => Frame::ipv6(s, d),
            _ => panic!("craft: mixed address families {src} / {dst}"),
        }
    }

    fn new(family: u8, src: [u8; 16], dst: [u8; 16]) -> Frame {
        Frame {
            vlans: Vec::new(),
            family,
            src,
            dst,
            ttl: 64,
            tos: 0,
            id: 0x1234,
            df: false,
            mf: false,
            frag_offset: 0,
            v4_options: Vec::new(),
            version_ihl: None,
            total_len: None,
            exts: Vec::new(),
            proto: None,
            payload: Payload::None,
        }
    }

    pub fn family(&self) -> u8 {
        self.family
    }

    // ---- Ethernet -------------------------------------------------------

    /// Adds an 802.1Q tag (TPID 0x8100) inside any tags already added.
    pub fn vlan(mut self, vid: u16) -> Self {
        self.vlans.push((ETH_P_8021Q, vid & 0x0fff));
        self
    }

    /// Adds an 802.1ad service tag (TPID 0x88a8) inside any tags already added
    /// (call it first for the usual QinQ order).
    pub fn svlan(mut self, vid: u16) -> Self {
        self.vlans.push((ETH_P_8021AD, vid & 0x0fff));
        self
    }

    /// QinQ: 802.1ad outer tag `s_vid`, 802.1Q inner tag `c_vid`.
    pub fn qinq(self, s_vid: u16, c_vid: u16) -> Self {
        self.svlan(s_vid).vlan(c_vid)
    }

    // ---- IP header ------------------------------------------------------

    /// TTL / hop limit.
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }
    pub fn tos(mut self, tos: u8) -> Self {
        self.tos = tos;
        self
    }
    /// IPv4 identification.
    pub fn id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }
    /// Sets IPv4 DF.
    pub fn df(mut self) -> Self {
        self.df = true;
        self
    }
    /// Sets IPv4 MF.
    pub fn mf(mut self) -> Self {
        self.mf = true;
        self
    }
    /// IPv4 fragment offset in 8-byte units.
    pub fn frag_offset(mut self, units: u16) -> Self {
        self.frag_offset = units & 0x1fff;
        self
    }
    /// IPv4 options, padded with EOL (0) to a multiple of 4, at most 40 bytes.
    pub fn ip_options(mut self, opts: &[u8]) -> Self {
        let mut o = opts.to_vec();
        o.resize(o.len().div_ceil(4).min(10) * 4, 0);
        self.v4_options = o;
        self
    }
    /// IPv4 header of `ihl` 32-bit words (5-15), options filled with NOPs
    /// ending in EOL.
    pub fn ihl(self, ihl: u8) -> Self {
        let n = (ihl.clamp(5, 15) as usize - 5) * 4;
        let mut o = std::vec![1u8; n];
        if let Some(last) = o.last_mut() {
            *last = 0;
        }
        self.ip_options(&o)
    }
    /// Overrides the IPv4 version/IHL byte as is (malformed headers).
    pub fn raw_version_ihl(mut self, b: u8) -> Self {
        self.version_ihl = Some(b);
        self
    }
    /// Overrides the IPv4 total length / IPv6 payload length field.
    pub fn length_field(mut self, len: u16) -> Self {
        self.total_len = Some(len);
        self
    }
    /// Overrides the protocol / next-header value (after extension headers).
    pub fn protocol(mut self, proto: u8) -> Self {
        self.proto = Some(proto);
        self
    }
    /// Appends an IPv6 extension header (in the order given).
    pub fn ext(mut self, e: Ext) -> Self {
        self.exts.push(e);
        self
    }
    pub fn hop_by_hop(self, len8: u8) -> Self {
        self.ext(Ext::HopByHop { len8 })
    }
    pub fn routing(self, len8: u8) -> Self {
        self.ext(Ext::Routing { len8 })
    }
    pub fn dest_opts(self, len8: u8) -> Self {
        self.ext(Ext::DestOpts { len8 })
    }
    /// IPv6 fragment header (offset in 8-byte units).
    pub fn fragment(self, offset: u16, more: bool, id: u32) -> Self {
        self.ext(Ext::Fragment { offset, more, id })
    }

    // ---- payload --------------------------------------------------------

    pub fn tcp(mut self, tcp: Tcp) -> Self {
        self.payload = Payload::Tcp(tcp);
        self
    }
    /// UDP with `payload_len` bytes of data.
    pub fn udp(mut self, sport: u16, dport: u16, payload_len: usize) -> Self {
        self.payload = Payload::Udp { sport, dport, len: payload_len };
        self
    }
    /// ICMP / ICMPv6 echo request with `payload_len` bytes of data.
    pub fn echo_request(mut self, id: u16, seq: u16, payload_len: usize) -> Self {
        self.payload = Payload::Echo { reply: false, id, seq, len: payload_len };
        self
    }
    pub fn echo_reply(mut self, id: u16, seq: u16, payload_len: usize) -> Self {
        self.payload = Payload::Echo { reply: true, id, seq, len: payload_len };
        self
    }
    /// Raw payload bytes with protocol `proto`.
    pub fn raw(mut self, proto: u8, bytes: &[u8]) -> Self {
        self.proto = Some(proto);
        self.payload = Payload::Raw(bytes.to_vec());
        self
    }
    /// Any ICMP/ICMPv6 message (family decides which): the 4 type-specific
    /// bytes are zero until set with [`Frame::mtu`], [`Frame::gateway`],
    /// [`Frame::pointer`], [`Frame::rfc4884_len`] or [`Frame::icmp_rest`].
    pub fn icmp(mut self, icmp_type: u8, code: u8, body: &[u8]) -> Self {
        self.payload = Payload::Icmp { icmp_type, code, rest: [0; 4], body: body.to_vec() };
        self
    }
    /// An ICMP error quoting `quote` (an IP packet, possibly cut short).
    pub fn icmp_error(self, icmp_type: u8, code: u8, quote: &[u8]) -> Self {
        self.icmp(icmp_type, code, quote)
    }
    /// ICMPv6 Redirect (137): `target` is the better first hop, `dest` the
    /// redirected destination; a target link-layer address option comes
    /// first, then (when `quote` is given) a Redirected Header option.
    pub fn icmpv6_redirect(self, target: Ipv6Addr, dest: Ipv6Addr, quote: Option<&[u8]>) -> Self {
        let mut body = Vec::new();
        body.extend_from_slice(&target.octets());
        body.extend_from_slice(&dest.octets());
        body.extend_from_slice(&[2, 1]);
        body.extend_from_slice(&SRC_MAC);
        if let Some(q) = quote {
            body.extend_from_slice(&redirected_header_option(q));
        }
        self.icmp(137, 0, &body)
    }

    fn icmp_rest(mut self, f: impl FnOnce(&mut [u8; 4])) -> Self {
        if let Payload::Icmp { rest, .. } = &mut self.payload {
            f(rest);
        }
        self
    }
    /// Sets the 4 type-specific bytes as is.
    pub fn rest(self, bytes: [u8; 4]) -> Self {
        self.icmp_rest(|r| *r = bytes)
    }
    /// Next-hop MTU (v4 3/4: bytes 6-7) or Packet Too Big MTU (v6: 4-7).
    pub fn mtu(self, mtu: u32) -> Self {
        let v6 = self.family == 6;
        self.icmp_rest(|r| {
            if v6 {
                *r = mtu.to_be_bytes();
            } else {
                let Ok(mtu) = u16::try_from(mtu) else {
                    panic!("craft: an ICMPv4 next-hop MTU is 16 bits; {mtu} does not fit");
                };
                r[2..4].copy_from_slice(&mtu.to_be_bytes());
            }
        })
    }
    /// IPv4 redirect gateway (bytes 4-7).
    pub fn gateway(self, gw: Ipv4Addr) -> Self {
        self.icmp_rest(|r| *r = gw.octets())
    }
    /// Parameter-problem pointer (v4: byte 4; v6: bytes 4-7).
    pub fn pointer(self, p: u32) -> Self {
        let v6 = self.family == 6;
        self.icmp_rest(|r| if v6 { *r = p.to_be_bytes() } else { r[0] = p as u8 })
    }
    /// RFC 4884 length field: 32-bit words (v4, byte 5) or 64-bit words
    /// (v6, byte 4) of original datagram.
    pub fn rfc4884_len(self, words: u8) -> Self {
        let v6 = self.family == 6;
        self.icmp_rest(|r| if v6 { r[0] = words } else { r[1] = words })
    }

    // ---- output ---------------------------------------------------------

    fn l4_proto(&self) -> u8 {
        if let Some(p) = self.proto {
            return p;
        }
        match &self.payload {
            Payload::Tcp(_) => IPPROTO_TCP,
            Payload::Udp { .. } => IPPROTO_UDP,
            Payload::Echo { .. } | Payload::Icmp { .. } => {
                if self.family == 4 {
                    IPPROTO_ICMP
                } else {
                    IPPROTO_ICMPV6
                }
            }
            Payload::None | Payload::Raw(_) => 59, // IPv6 "no next header"
        }
    }

    /// How the transport checksum is computed: only when the payload is
    /// what the protocol field says (a test that overrides the protocol
    /// gets bytes without one), ICMPv4 without a pseudo-header.
    fn checksum_kind(&self, proto: u8) -> Checksum {
        let matches = match &self.payload {
            Payload::Tcp(_) => proto == IPPROTO_TCP,
            Payload::Udp { .. } => proto == IPPROTO_UDP,
            Payload::Echo { .. } | Payload::Icmp { .. } => proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6,
            Payload::None | Payload::Raw(_) => false,
        };
        if !matches {
            return Checksum::Kernel;
        }
        if proto == IPPROTO_ICMP {
            return Checksum::Plain;
        }
        Checksum::Pseudo(if self.family == 4 {
            IpPair::V4(v4_of(&self.src), v4_of(&self.dst))
        } else {
            IpPair::V6(Ipv6Addr::from(self.src), Ipv6Addr::from(self.dst))
        })
    }

    /// Transport bytes with checksums filled in.
    fn l4_bytes(&self) -> Result<Vec<u8>, Error> {
        let csum = self.checksum_kind(self.l4_proto());
        Ok(match &self.payload {
            Payload::None => Vec::new(),
            Payload::Raw(r) => r.clone(),
            Payload::Tcp(t) => t.encode(csum)?,
            Payload::Udp { sport, dport, len } => {
                let mut b = std::vec![0u8; UdpRepr::LEN + len];
                for (i, x) in b[UdpRepr::LEN..].iter_mut().enumerate() {
                    *x = (i as u8) ^ 0x5a;
                }
                UdpRepr { src_port: *sport, dst_port: *dport }.emit(&mut b, csum)?;
                b
            }
            Payload::Echo { reply, id, seq, len } => {
                let mut b = std::vec![0u8; IcmpRepr::LEN + len];
                for (i, x) in b[IcmpRepr::LEN..].iter_mut().enumerate() {
                    *x = i as u8;
                }
                let repr = if *reply {
                    IcmpRepr::echo_reply(self.family, *id, *seq)
                } else {
                    IcmpRepr::echo_request(self.family, *id, *seq)
                };
                repr.emit(&mut b, csum)?;
                b
            }
            Payload::Icmp { icmp_type, code, rest, body } => {
                let mut b = std::vec![0u8; IcmpRepr::LEN + body.len()];
                b[IcmpRepr::LEN..].copy_from_slice(body);
                IcmpRepr { icmp_type: *icmp_type, code: *code, rest: *rest }.emit(&mut b, csum)?;
                b
            }
        })
    }

    /// The IP packet (no Ethernet header), or why it cannot be built: a
    /// length that does not fit its 16-bit field is an error, never cut.
    pub fn try_ip_bytes(&self) -> Result<Vec<u8>, Error> {
        let l4 = self.l4_bytes()?;
        let proto = self.l4_proto();
        let mut out;
        if self.family == 4 {
            let hlen = 20 + self.v4_options.len();
            let repr = Ipv4Repr {
                src: v4_of(&self.src),
                dst: v4_of(&self.dst),
                protocol: proto,
                ttl: self.ttl,
                tos: self.tos,
                id: self.id,
                dont_fragment: self.df,
                more_fragments: self.mf,
                frag_offset: self.frag_offset,
                header_len: hlen,
                payload_len: l4.len(),
            };
            out = std::vec![0u8; hlen];
            repr.emit(&self.v4_options, &mut out)?;
            // Deliberate lies a test asked for, under a correct checksum.
            if let Some(b) = self.version_ihl {
                out[0] = b;
            }
            if let Some(len) = self.total_len {
                out[2..4].copy_from_slice(&len.to_be_bytes());
            }
            Ipv4Repr::fill_checksum(&mut out);
        } else {
            let ext_len: usize = self.exts.iter().map(Ext::len).sum();
            let repr = Ipv6Repr {
                src: Ipv6Addr::from(self.src),
                dst: Ipv6Addr::from(self.dst),
                next_header: self.exts.first().map_or(proto, Ext::protocol),
                hop_limit: self.ttl,
                traffic_class: self.tos,
                flow_label: 0,
                payload_len: ext_len + l4.len(),
            };
            out = std::vec![0u8; 40 + ext_len];
            repr.emit(&mut out)?;
            if let Some(len) = self.total_len {
                out[4..6].copy_from_slice(&len.to_be_bytes());
            }
            let mut at = 40;
            for (i, e) in self.exts.iter().enumerate() {
                let next = self.exts.get(i + 1).map_or(proto, Ext::protocol);
                at += e.emit(next, &mut out[at..])?;
            }
        }
        out.extend_from_slice(&l4);
        Ok(out)
    }

    /// [`Frame::try_ip_bytes`] for tests and benchmarks, which describe
    /// packets that fit.
    ///
    /// # Panics
    /// When a length does not fit its field (a test asking for the
    /// impossible): the frame is never silently cut to 16 bits.
    pub fn ip_bytes(&self) -> Vec<u8> {
        match self.try_ip_bytes() {
            Ok(b) => b,
            Err(e) => panic!("craft: cannot build this packet: {e}"),
        }
    }

    /// The whole Ethernet frame, or why it cannot be built.
    pub fn try_bytes(&self) -> Result<Vec<u8>, Error> {
        let ip = self.try_ip_bytes()?;
        let mut out = Vec::with_capacity(14 + 4 * self.vlans.len() + ip.len());
        out.extend_from_slice(&DST_MAC);
        out.extend_from_slice(&SRC_MAC);
        for (tpid, tci) in &self.vlans {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&tci.to_be_bytes());
        }
        let et = if self.family == 4 { ETH_P_IPV4 } else { ETH_P_IPV6 };
        out.extend_from_slice(&et.to_be_bytes());
        out.extend_from_slice(&ip);
        Ok(out)
    }

    /// The whole Ethernet frame.
    ///
    /// # Panics
    /// As [`Frame::ip_bytes`].
    pub fn bytes(&self) -> Vec<u8> {
        match self.try_bytes() {
            Ok(b) => b,
            Err(e) => panic!("craft: cannot build this frame: {e}"),
        }
    }

    /// Offset of the IP header in [`Frame::bytes`].
    pub fn l3_offset(&self) -> usize {
        14 + 4 * self.vlans.len()
    }
}

/// An ND Redirected Header option (type 4) carrying `quote`, padded to a
/// multiple of 8 bytes.
///
/// # Panics
/// When the option would be longer than its 8-bit length field allows
/// (2040 bytes): never cut short silently.
pub fn redirected_header_option(quote: &[u8]) -> Vec<u8> {
    let padded = quote.len().div_ceil(8) * 8;
    let Ok(len8) = u8::try_from((8 + padded) / 8) else {
        panic!("craft: a {}-byte quote does not fit a Redirected Header option", quote.len());
    };
    let mut o = std::vec![4, len8, 0, 0, 0, 0, 0, 0];
    o.extend_from_slice(quote);
    o.resize(8 + padded, 0);
    o
}

/// A non-IP frame (ARP-like) with ethertype `ethertype` and `len` bytes.
pub fn non_ip_frame(ethertype: u16, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + len);
    out.extend_from_slice(&DST_MAC);
    out.extend_from_slice(&SRC_MAC);
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.resize(14 + len, 0);
    out
}

/// The first `n` bytes of `bytes` (all of them when shorter): a quote cut
/// the way a router cuts it.
pub fn cut(bytes: &[u8], n: usize) -> Vec<u8> {
    bytes[..n.min(bytes.len())].to_vec()
}

fn v4_of(slot: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(slot[0], slot[1], slot[2], slot[3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{IPPROTO_FRAGMENT, IPPROTO_HOPOPTS};

    #[test]
    fn checksums_verify() {
        let inner = Frame::ipv4(Ipv4Addr::new(198, 18, 1, 1), Ipv4Addr::new(198, 18, 2, 1))
            .ihl(7)
            .tcp(Tcp::new(1, 2).options_len(12).payload_len(5))
            .ip_bytes();
        assert_eq!(crate::repr::checksum::of(&inner[..28]), 0, "IPv4 header checksum");
        let f =
            Frame::ipv4(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 1, 1)).icmp_error(3, 4, &inner).mtu(1400);
        let ip = f.ip_bytes();
        assert_eq!(crate::repr::checksum::of(&ip[20..]), 0, "ICMP checksum");
        let f6 = Frame::ipv6("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap()).udp(1, 2, 3);
        let ip6 = f6.ip_bytes();
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&ip6[8..40]);
        pseudo.extend_from_slice(&(11u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        pseudo.extend_from_slice(&ip6[40..]);
        assert_eq!(crate::repr::checksum::of(&pseudo), 0, "UDP/IPv6 checksum");
    }

    #[test]
    fn layout() {
        let f = Frame::ipv6("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap())
            .qinq(10, 20)
            .hop_by_hop(0)
            .fragment(0, true, 7)
            .tcp(Tcp::new(1, 2));
        let b = f.bytes();
        assert_eq!(&b[12..14], &[0x88, 0xa8]);
        assert_eq!(&b[16..18], &[0x81, 0x00]);
        assert_eq!(&b[20..22], &[0x86, 0xdd]);
        assert_eq!(f.l3_offset(), 22);
        assert_eq!(b[22 + 6], IPPROTO_HOPOPTS);
        assert_eq!(b[22 + 40], IPPROTO_FRAGMENT);
        assert_eq!(b[22 + 48], IPPROTO_TCP);
        assert_eq!(u16::from_be_bytes([b[26], b[27]]), 16 + 20);
    }
}
