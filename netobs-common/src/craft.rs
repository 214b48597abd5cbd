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
//! Checksums (IPv4 header, ICMP, ICMPv6, TCP, UDP) are correct for what is
//! built; the parser does not check them. Nothing here validates: a builder
//! can describe any byte pattern a test needs (bogus IHL, lying lengths).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::vec::Vec;

use crate::wire::{
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS,
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP,
};

/// MAC addresses every crafted frame carries (locally administered).
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// TCP flag bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

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
    fn encode(&self) -> Vec<u8> {
        let opts = self.options_len.div_ceil(4).min(10) * 4;
        let mut b = Vec::with_capacity(20 + opts + self.payload_len);
        b.extend_from_slice(&self.sport.to_be_bytes());
        b.extend_from_slice(&self.dport.to_be_bytes());
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.ack.to_be_bytes());
        b.push((((20 + opts) / 4) as u8) << 4);
        b.push(self.flags);
        b.extend_from_slice(&self.window.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        b.resize(20 + opts, 1); // NOP options
        b.extend((0..self.payload_len).map(|i| i as u8));
        b
    }
}

/// One IPv6 extension header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-hop options; `len8` is the Hdr Ext Len field (8-byte units
    /// after the first 8).
    HopByHop { len8: u8 },
    /// Routing header (type 4, segments left 0), `len8` as above.
    Routing { len8: u8 },
    /// Destination options, `len8` as above.
    DestOpts { len8: u8 },
    /// Fragment header: offset in 8-byte units, M flag, identification.
    Fragment { offset: u16, more: bool, id: u32 },
}

impl Ext {
    fn proto(&self) -> u8 {
        match self {
            Ext::HopByHop { .. } => IPPROTO_HOPOPTS,
            Ext::Routing { .. } => IPPROTO_ROUTING,
            Ext::DestOpts { .. } => IPPROTO_DSTOPTS,
            Ext::Fragment { .. } => IPPROTO_FRAGMENT,
        }
    }
    fn encode(&self, next: u8, out: &mut Vec<u8>) {
        match *self {
            Ext::HopByHop { len8 } | Ext::DestOpts { len8 } => {
                let total = (len8 as usize + 1) * 8;
                out.push(next);
                out.push(len8);
                // One PadN option filling the remaining total - 2 bytes.
                out.push(1);
                out.push((total - 4) as u8);
                out.resize(out.len() + total - 4, 0);
            }
            Ext::Routing { len8 } => {
                let total = (len8 as usize + 1) * 8;
                out.extend_from_slice(&[next, len8, 4, 0]);
                out.resize(out.len() + total - 4, 0);
            }
            Ext::Fragment { offset, more, id } => {
                out.extend_from_slice(&[next, 0]);
                out.extend_from_slice(&((offset << 3) | more as u16).to_be_bytes());
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
    }
}

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
                r[2..4].copy_from_slice(&(mtu as u16).to_be_bytes());
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

    /// Transport bytes with checksums filled in.
    fn l4_bytes(&self) -> Vec<u8> {
        let proto = self.l4_proto();
        let mut b = match &self.payload {
            Payload::None => Vec::new(),
            Payload::Raw(r) => r.clone(),
            Payload::Tcp(t) => t.encode(),
            Payload::Udp { sport, dport, len } => {
                let mut b = Vec::with_capacity(8 + len);
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&((8 + len) as u16).to_be_bytes());
                b.extend_from_slice(&[0, 0]);
                b.extend((0..*len).map(|i| (i as u8) ^ 0x5a));
                b
            }
            Payload::Echo { reply, id, seq, len } => {
                let t = match (self.family, reply) {
                    (4, false) => 8,
                    (4, true) => 0,
                    (_, false) => 128,
                    (_, true) => 129,
                };
                let mut b = std::vec![t, 0, 0, 0];
                b.extend_from_slice(&id.to_be_bytes());
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend((0..*len).map(|i| i as u8));
                b
            }
            Payload::Icmp { icmp_type, code, rest, body } => {
                let mut b = std::vec![*icmp_type, *code, 0, 0];
                b.extend_from_slice(rest);
                b.extend_from_slice(body);
                b
            }
        };
        let csum_at = match (&self.payload, proto) {
            (Payload::Tcp(_), IPPROTO_TCP) if b.len() >= 18 => Some(16),
            (Payload::Udp { .. }, IPPROTO_UDP) if b.len() >= 8 => Some(6),
            (Payload::Echo { .. } | Payload::Icmp { .. }, IPPROTO_ICMP | IPPROTO_ICMPV6) if b.len() >= 4 => Some(2),
            _ => None,
        };
        if let Some(at) = csum_at {
            // ICMPv4 has no pseudo-header; everything else over IPv6 and
            // TCP/UDP over IPv4 do.
            let mut sum = 0u32;
            if proto != IPPROTO_ICMP {
                let alen = if self.family == 4 { 4 } else { 16 };
                sum = add_bytes(sum, &self.src[..alen]);
                sum = add_bytes(sum, &self.dst[..alen]);
                let len = b.len() as u32;
                sum = add_bytes(sum, &len.to_be_bytes());
                sum = add_bytes(sum, &[0, 0, 0, proto]);
            }
            sum = add_bytes(sum, &b);
            let mut c = fold(sum);
            if c == 0 && proto == IPPROTO_UDP {
                c = 0xffff;
            }
            b[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        b
    }

    /// The IP packet (no Ethernet header).
    pub fn ip_bytes(&self) -> Vec<u8> {
        let l4 = self.l4_bytes();
        let proto = self.l4_proto();
        let mut out = Vec::with_capacity(60 + l4.len());
        if self.family == 4 {
            let hlen = 20 + self.v4_options.len();
            let total = self.total_len.unwrap_or((hlen + l4.len()).min(0xffff) as u16);
            let flags = (self.df as u16) << 14 | (self.mf as u16) << 13 | self.frag_offset;
            out.push(self.version_ihl.unwrap_or(0x40 | (hlen / 4) as u8));
            out.push(self.tos);
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(&self.id.to_be_bytes());
            out.extend_from_slice(&flags.to_be_bytes());
            out.push(self.ttl);
            out.push(proto);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&self.src[..4]);
            out.extend_from_slice(&self.dst[..4]);
            out.extend_from_slice(&self.v4_options);
            let c = fold(add_bytes(0, &out)).to_be_bytes();
            out[10] = c[0];
            out[11] = c[1];
        } else {
            let mut exts = Vec::new();
            for (i, e) in self.exts.iter().enumerate() {
                let next = self.exts.get(i + 1).map_or(proto, Ext::proto);
                e.encode(next, &mut exts);
            }
            let first = self.exts.first().map_or(proto, Ext::proto);
            let plen = self.total_len.unwrap_or((exts.len() + l4.len()).min(0xffff) as u16);
            out.extend_from_slice(&[0x60 | (self.tos >> 4), self.tos << 4, 0, 0]);
            out.extend_from_slice(&plen.to_be_bytes());
            out.push(first);
            out.push(self.ttl);
            out.extend_from_slice(&self.src);
            out.extend_from_slice(&self.dst);
            out.extend_from_slice(&exts);
        }
        out.extend_from_slice(&l4);
        out
    }

    /// The whole Ethernet frame.
    pub fn bytes(&self) -> Vec<u8> {
        let ip = self.ip_bytes();
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
        out
    }

    /// Offset of the IP header in [`Frame::bytes`].
    pub fn l3_offset(&self) -> usize {
        14 + 4 * self.vlans.len()
    }
}

/// An ND Redirected Header option (type 4) carrying `quote`, padded to a
/// multiple of 8 bytes.
pub fn redirected_header_option(quote: &[u8]) -> Vec<u8> {
    let padded = quote.len().div_ceil(8) * 8;
    let len8 = ((8 + padded) / 8).min(255) as u8;
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

fn add_bytes(mut sum: u32, b: &[u8]) -> u32 {
    for pair in b.chunks(2) {
        let w = if pair.len() == 2 { u16::from_be_bytes([pair[0], pair[1]]) } else { u16::from_be_bytes([pair[0], 0]) };
        sum += w as u32;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The Internet checksum of `b` (0 when `b` already carries a correct one).
pub fn checksum(b: &[u8]) -> u16 {
    fold(add_bytes(0, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify() {
        let inner = Frame::ipv4(Ipv4Addr::new(198, 18, 1, 1), Ipv4Addr::new(198, 18, 2, 1))
            .ihl(7)
            .tcp(Tcp::new(1, 2).options_len(12).payload_len(5))
            .ip_bytes();
        assert_eq!(checksum(&inner[..28]), 0, "IPv4 header checksum");
        let f =
            Frame::ipv4(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 1, 1)).icmp_error(3, 4, &inner).mtu(1400);
        let ip = f.ip_bytes();
        assert_eq!(checksum(&ip[20..]), 0, "ICMP checksum");
        let f6 = Frame::ipv6("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap()).udp(1, 2, 3);
        let ip6 = f6.ip_bytes();
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&ip6[8..40]);
        pseudo.extend_from_slice(&(11u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        pseudo.extend_from_slice(&ip6[40..]);
        assert_eq!(checksum(&pseudo), 0, "UDP/IPv6 checksum");
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
