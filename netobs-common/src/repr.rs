//! One parse/emit pair per header, in the style of smoltcp's `wire` Reprs.
//!
//! A `*Repr` is the meaning of a header (addresses, ports, lengths as
//! numbers); `parse` reads it through the same [`Cursor`] views the eBPF
//! programs use ([`crate::wire`]), `emit` writes it back into a buffer with
//! its checksum. The probe builder (`netobs::probe::packet`) and the test
//! and benchmark builder ([`crate::craft`]) both emit through these, so
//! there is one encoder and one Internet checksum ([`checksum`]).
//!
//! Nothing here truncates: a length that does not fit its field is an
//! [`Error::TooLong`], never cut to 16 bits. Host only (`user`, `craft`
//! and tests): the eBPF programs only parse, through [`crate::parse`].

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::cursor::Cursor;
use crate::icmp;
use crate::wire::{
    IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_ROUTING, IPPROTO_TCP,
    IPPROTO_UDP, IcmpHdr, Ipv4Hdr, Ipv6Hdr, TcpHdr, UdpHdr,
};

/// Why a header could not be parsed or emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The header is not all in the input.
    Truncated,
    /// A field is impossible: wrong IP version, an IPv4 header length
    /// below 20 bytes, a TCP data offset below 20, a length field shorter
    /// than the header it covers, options that are not whole words.
    Malformed,
    /// A length does not fit the field that carries it (`field` names it).
    TooLong { field: &'static str, len: usize },
    /// The output buffer is shorter than what is to be written.
    BufferTooShort { need: usize, have: usize },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Truncated => f.write_str("header cut short"),
            Error::Malformed => f.write_str("malformed header"),
            Error::TooLong { field, len } => write!(f, "{len} bytes do not fit the {field} field"),
            Error::BufferTooShort { need, have } => write!(f, "buffer of {have} bytes, {need} needed"),
        }
    }
}

impl core::error::Error for Error {}

/// The Internet checksum (RFC 1071): the only implementation in netobs.
pub mod checksum {
    /// Adds `data` as big-endian 16-bit words to `acc`; an odd last byte
    /// is padded with zero. A u64 accumulator cannot overflow on anything
    /// that fits in memory, so no folding is needed until [`finish`].
    pub fn add(mut acc: u64, data: &[u8]) -> u64 {
        let mut words = data.chunks_exact(2);
        for w in &mut words {
            acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            acc += u64::from(*last) << 8;
        }
        acc
    }

    /// Folds the carries in and inverts: the value to store.
    pub fn finish(mut acc: u64) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    /// The checksum of `data` (0 when `data` already carries a correct one).
    pub fn of(data: &[u8]) -> u16 {
        finish(add(0, data))
    }
}

/// The two addresses a transport checksum's pseudo-header covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpPair {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl IpPair {
    /// Sum of the pseudo-header (RFC 768/793 for IPv4, RFC 8200 8.1 for
    /// IPv6) for `len` bytes of protocol `proto`.
    pub fn pseudo_sum(&self, proto: u8, len: usize) -> u64 {
        let acc = match self {
            IpPair::V4(s, d) => checksum::add(checksum::add(0, &s.octets()), &d.octets()),
            IpPair::V6(s, d) => checksum::add(checksum::add(0, &s.octets()), &d.octets()),
        };
        acc + (len as u64 & 0xffff) + ((len as u64) >> 16) + u64::from(proto)
    }
}

/// How a transport header's checksum is filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// Left zero: the kernel fills it (IPv6 raw sockets with
    /// `IPV6_CHECKSUM`, ICMPv6 sockets), knowing the source it picks.
    Kernel,
    /// Over the message alone (ICMPv4).
    Plain,
    /// Over a pseudo-header and the message (TCP, UDP, ICMPv6).
    Pseudo(IpPair),
}

impl Checksum {
    fn compute(&self, proto: u8, msg: &[u8]) -> Option<u16> {
        match self {
            Checksum::Kernel => None,
            Checksum::Plain => Some(checksum::of(msg)),
            Checksum::Pseudo(ips) => Some(checksum::finish(checksum::add(ips.pseudo_sum(proto, msg.len()), msg))),
        }
    }
}

fn need(buf: &[u8], n: usize) -> Result<(), Error> {
    if buf.len() < n { Err(Error::BufferTooShort { need: n, have: buf.len() }) } else { Ok(()) }
}

fn fit16(field: &'static str, len: usize) -> Result<u16, Error> {
    u16::try_from(len).map_err(|_| Error::TooLong { field, len })
}

// ---- IPv4 ------------------------------------------------------------------

/// An IPv4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub tos: u8,
    pub id: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    /// Header length in bytes, options included (20..=60).
    pub header_len: usize,
    /// Bytes after the header the total-length field announces (what is
    /// really there may be less: a quote is cut).
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// Largest payload behind a header of `header_len` bytes.
    pub const fn max_payload(header_len: usize) -> usize {
        0xffff - header_len
    }

    /// Parses the header at `off`. Malformed when the version is not 4, the
    /// IHL is below 5 (a body read from inside the header) or the total
    /// length is shorter than the header; truncated when the header with
    /// its options is not all there.
    pub fn parse(c: &Cursor, off: usize) -> Result<Ipv4Repr, Error> {
        let ip = c.get::<Ipv4Hdr>(off).ok_or(Error::Truncated)?;
        let header_len = ip.header_len();
        if ip.version() != 4 || header_len < Ipv4Hdr::LEN {
            return Err(Error::Malformed);
        }
        let total = ip.total_len() as usize;
        if total < header_len {
            return Err(Error::Malformed);
        }
        if c.remaining_from(off) < header_len {
            return Err(Error::Truncated);
        }
        let ff = ip.flags_frag();
        Ok(Ipv4Repr {
            src: Ipv4Addr::from(ip.src),
            dst: Ipv4Addr::from(ip.dst),
            protocol: ip.protocol,
            ttl: ip.ttl,
            tos: ip.tos,
            id: ip.id(),
            dont_fragment: ff & Ipv4Hdr::FLAG_DF != 0,
            more_fragments: ff & Ipv4Hdr::FLAG_MF != 0,
            frag_offset: ff & Ipv4Hdr::OFFSET_MASK,
            header_len,
            payload_len: total - header_len,
        })
    }

    /// Writes the header, `options` (whole 32-bit words, at most 40 bytes;
    /// `header_len` is taken from them, not from `self`) and the header
    /// checksum into `buf`. Returns the header length.
    pub fn emit(&self, options: &[u8], buf: &mut [u8]) -> Result<usize, Error> {
        if !options.len().is_multiple_of(4) || options.len() > 40 {
            return Err(Error::Malformed);
        }
        let hlen = Ipv4Hdr::LEN + options.len();
        let total = fit16("IPv4 total length", hlen + self.payload_len)?;
        need(buf, hlen)?;
        let flags = (u16::from(self.dont_fragment) << 14)
            | (u16::from(self.more_fragments) << 13)
            | (self.frag_offset & Ipv4Hdr::OFFSET_MASK);
        let h = &mut buf[..hlen];
        h[0] = 0x40 | (hlen / 4) as u8;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&self.id.to_be_bytes());
        h[6..8].copy_from_slice(&flags.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        h[20..].copy_from_slice(options);
        Self::fill_checksum(h);
        Ok(hlen)
    }

    /// Recomputes the header checksum of `header` (the whole header with
    /// options), e.g. after a test overwrote a field with a bogus value.
    pub fn fill_checksum(header: &mut [u8]) {
        if header.len() < Ipv4Hdr::LEN {
            return;
        }
        header[10] = 0;
        header[11] = 0;
        let c = checksum::of(header);
        header[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

// ---- IPv6 ------------------------------------------------------------------

/// An IPv6 fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The first next-header value (an extension header or the transport).
    pub next_header: u8,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
    /// What the payload-length field announces.
    pub payload_len: usize,
}

impl Ipv6Repr {
    pub const MAX_PAYLOAD: usize = 0xffff;

    pub fn parse(c: &Cursor, off: usize) -> Result<Ipv6Repr, Error> {
        let ip = c.get::<Ipv6Hdr>(off).ok_or(Error::Truncated)?;
        if ip.version() != 6 {
            return Err(Error::Malformed);
        }
        let v = u32::from_be_bytes(ip.version_tc_flow);
        Ok(Ipv6Repr {
            src: Ipv6Addr::from(ip.src),
            dst: Ipv6Addr::from(ip.dst),
            next_header: ip.next_header,
            hop_limit: ip.hop_limit,
            traffic_class: (v >> 20) as u8,
            flow_label: v & 0x000f_ffff,
            payload_len: ip.payload_len() as usize,
        })
    }

    /// Writes the 40-byte header into `buf`; returns 40.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let plen = fit16("IPv6 payload length", self.payload_len)?;
        need(buf, Ipv6Hdr::LEN)?;
        let v = (6u32 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0x000f_ffff);
        let h = &mut buf[..Ipv6Hdr::LEN];
        h[0..4].copy_from_slice(&v.to_be_bytes());
        h[4..6].copy_from_slice(&plen.to_be_bytes());
        h[6] = self.next_header;
        h[7] = self.hop_limit;
        h[8..24].copy_from_slice(&self.src.octets());
        h[24..40].copy_from_slice(&self.dst.octets());
        Ok(Ipv6Hdr::LEN)
    }
}

/// An IPv6 extension header, as a builder writes it (the parser walks
/// them in [`crate::parse::walk_ipv6_ext`], which the verifier must accept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6ExtRepr {
    /// Hop-by-hop options; `len8` is the Hdr Ext Len field (8-byte units
    /// after the first 8), filled with one PadN option.
    HopByHop { len8: u8 },
    /// Routing header (type 4, segments left 0).
    Routing { len8: u8 },
    /// Destination options, filled with one PadN option.
    DestOpts { len8: u8 },
    /// Fragment header: offset in 8-byte units, M flag, identification.
    Fragment { offset: u16, more: bool, id: u32 },
}

impl Ipv6ExtRepr {
    /// The next-header value that announces this header.
    pub fn protocol(&self) -> u8 {
        match self {
            Ipv6ExtRepr::HopByHop { .. } => IPPROTO_HOPOPTS,
            Ipv6ExtRepr::Routing { .. } => IPPROTO_ROUTING,
            Ipv6ExtRepr::DestOpts { .. } => IPPROTO_DSTOPTS,
            Ipv6ExtRepr::Fragment { .. } => IPPROTO_FRAGMENT,
        }
    }

    /// Bytes the header occupies.
    pub fn len(&self) -> usize {
        match *self {
            Ipv6ExtRepr::HopByHop { len8 } | Ipv6ExtRepr::Routing { len8 } | Ipv6ExtRepr::DestOpts { len8 } => {
                (len8 as usize + 1) * 8
            }
            Ipv6ExtRepr::Fragment { .. } => 8,
        }
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the header, followed by `next`, into `buf`; returns its length.
    pub fn emit(&self, next: u8, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.len();
        need(buf, len)?;
        let h = &mut buf[..len];
        h.fill(0);
        h[0] = next;
        match *self {
            Ipv6ExtRepr::HopByHop { len8 } | Ipv6ExtRepr::DestOpts { len8 } => {
                h[1] = len8;
                // One PadN option filling the remaining len - 2 bytes.
                h[2] = 1;
                h[3] = (len - 4) as u8;
            }
            Ipv6ExtRepr::Routing { len8 } => {
                h[1] = len8;
                h[2] = 4;
            }
            Ipv6ExtRepr::Fragment { offset, more, id } => {
                h[2..4].copy_from_slice(&(((offset & 0x1fff) << 3) | u16::from(more)).to_be_bytes());
                h[4..8].copy_from_slice(&id.to_be_bytes());
            }
        }
        Ok(len)
    }
}

// ---- UDP -------------------------------------------------------------------

/// A UDP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    pub const LEN: usize = 8;

    /// Parses the header at `off`; returns it and the length field.
    pub fn parse(c: &Cursor, off: usize) -> Result<(UdpRepr, u16), Error> {
        let h = c.get::<UdpHdr>(off).ok_or(Error::Truncated)?;
        Ok((
            UdpRepr { src_port: u16::from_be_bytes(h.src), dst_port: u16::from_be_bytes(h.dst) },
            u16::from_be_bytes(h.len),
        ))
    }

    /// Writes the header into the first 8 bytes of `datagram` (header and
    /// payload, the payload already in place): its length and checksum
    /// cover all of `datagram`.
    pub fn emit(&self, datagram: &mut [u8], csum: Checksum) -> Result<(), Error> {
        need(datagram, Self::LEN)?;
        let len = fit16("UDP length", datagram.len())?;
        datagram[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        datagram[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        datagram[4..6].copy_from_slice(&len.to_be_bytes());
        datagram[6..8].fill(0);
        if let Some(mut c) = csum.compute(IPPROTO_UDP, datagram) {
            // 0 means "no checksum" in UDP: a computed 0 is sent as 0xffff.
            if c == 0 {
                c = 0xffff;
            }
            datagram[6..8].copy_from_slice(&c.to_be_bytes());
        }
        Ok(())
    }
}

// ---- TCP -------------------------------------------------------------------

/// TCP flag bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// A TCP header. Options: an MSS option when `mss` is set, the rest of
/// `header_len` NOPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Header length in bytes, options included (20..=60, whole words).
    pub header_len: usize,
    pub mss: Option<u16>,
}

impl TcpRepr {
    pub const LEN: usize = 20;
    /// Most option bytes looked at for the MSS (a header is at most 60).
    const MAX_OPTIONS: usize = 40;

    /// Parses the header at `off`, its MSS option included when the options
    /// are all there.
    pub fn parse(c: &Cursor, off: usize) -> Result<TcpRepr, Error> {
        let h = c.get::<TcpHdr>(off).ok_or(Error::Truncated)?;
        let header_len = usize::from(tcp_byte(h, 12) >> 4) * 4;
        if header_len < Self::LEN {
            return Err(Error::Malformed);
        }
        let mut mss = None;
        let end = off + header_len;
        let mut i = off + Self::LEN;
        for _ in 0..Self::MAX_OPTIONS {
            if i >= end {
                break;
            }
            let Some(kind) = c.u8_at(i) else { break };
            match kind {
                0 => break,
                1 => i += 1,
                _ => {
                    let Some(len) = c.u8_at(i + 1) else { break };
                    let len = usize::from(len);
                    if len < 2 || i + len > end {
                        break;
                    }
                    if kind == 2
                        && len == 4
                        && let Some(v) = c.get::<[u8; 2]>(i + 2)
                    {
                        mss = Some(u16::from_be_bytes(*v));
                    }
                    i += len;
                }
            }
        }
        Ok(TcpRepr {
            src_port: u16::from_be_bytes(h.source),
            dst_port: u16::from_be_bytes(h.dest),
            seq: u32::from_be_bytes(h.seq),
            ack: u32::from_be_bytes(h.ack_seq),
            flags: tcp_byte(h, 13),
            window: u16::from_be_bytes(h.window),
            header_len,
            mss,
        })
    }

    /// Writes the header into the start of `segment` (header and payload,
    /// the payload already in place after `header_len` bytes); the
    /// checksum covers all of `segment`.
    pub fn emit(&self, segment: &mut [u8], csum: Checksum) -> Result<(), Error> {
        let hl = self.header_len;
        if !(Self::LEN..=Self::LEN + Self::MAX_OPTIONS).contains(&hl)
            || !hl.is_multiple_of(4)
            || (self.mss.is_some() && hl < 24)
        {
            return Err(Error::Malformed);
        }
        need(segment, hl)?;
        let h = &mut segment[..hl];
        h[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        h[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        h[4..8].copy_from_slice(&self.seq.to_be_bytes());
        h[8..12].copy_from_slice(&self.ack.to_be_bytes());
        h[12] = ((hl / 4) as u8) << 4;
        h[13] = self.flags;
        h[14..16].copy_from_slice(&self.window.to_be_bytes());
        h[16..20].fill(0);
        let mut opt = &mut h[20..];
        if let Some(mss) = self.mss {
            let [hi, lo] = mss.to_be_bytes();
            opt[..4].copy_from_slice(&[2, 4, hi, lo]);
            opt = &mut opt[4..];
        }
        opt.fill(1);
        if let Some(c) = csum.compute(IPPROTO_TCP, segment) {
            segment[16..18].copy_from_slice(&c.to_be_bytes());
        }
        Ok(())
    }
}

/// Byte `i` (< 20) of a TCP header: 12 holds the data offset, 13 the
/// flags. network-types keeps both in a private bitfield whose getters
/// walk bits; the bytes are what RFC 9293 defines.
fn tcp_byte(h: &TcpHdr, i: usize) -> u8 {
    let bytes: &[u8; 20] = crate::wire::as_bytes(h);
    bytes[i % 20]
}

// ---- ICMP / ICMPv6 ---------------------------------------------------------

/// An ICMP or ICMPv6 header: type, code and the 4 type-specific bytes
/// (echo id/sequence, next-hop MTU, pointer, gateway, RFC 4884 length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpRepr {
    pub icmp_type: u8,
    pub code: u8,
    pub rest: [u8; 4],
}

impl IcmpRepr {
    pub const LEN: usize = 8;

    /// An echo request (family 4 or 6).
    pub fn echo_request(family: u8, id: u16, seq: u16) -> IcmpRepr {
        let t = if family == 4 { icmp::v4::ECHO_REQUEST } else { icmp::v6::ECHO_REQUEST };
        IcmpRepr::with_id_seq(t, id, seq)
    }

    /// An echo reply (family 4 or 6).
    pub fn echo_reply(family: u8, id: u16, seq: u16) -> IcmpRepr {
        let t = if family == 4 { icmp::v4::ECHO_REPLY } else { icmp::v6::ECHO_REPLY };
        IcmpRepr::with_id_seq(t, id, seq)
    }

    fn with_id_seq(icmp_type: u8, id: u16, seq: u16) -> IcmpRepr {
        let [a, b] = id.to_be_bytes();
        let [c, d] = seq.to_be_bytes();
        IcmpRepr { icmp_type, code: 0, rest: [a, b, c, d] }
    }

    /// Bytes 4-5: echo identifier.
    pub fn echo_id(&self) -> u16 {
        u16::from_be_bytes([self.rest[0], self.rest[1]])
    }

    /// Bytes 6-7: echo sequence; RFC 1191 next-hop MTU.
    pub fn rest_hi16(&self) -> u16 {
        u16::from_be_bytes([self.rest[2], self.rest[3]])
    }

    /// Bytes 4-7 as one number: Packet Too Big MTU, ICMPv6 pointer.
    pub fn rest_u32(&self) -> u32 {
        u32::from_be_bytes(self.rest)
    }

    /// The MTU an error announces: ICMPv4 frag-needed (3/4) or ICMPv6
    /// Packet Too Big (2).
    pub fn mtu(&self, family: u8) -> Option<u32> {
        if family == 4 && self.icmp_type == icmp::v4::DEST_UNREACH && self.code == icmp::v4::unreach::FRAG_NEEDED {
            Some(u32::from(self.rest_hi16()))
        } else if family == 6 && self.icmp_type == icmp::v6::PACKET_TOO_BIG {
            Some(self.rest_u32())
        } else {
            None
        }
    }

    pub fn parse(c: &Cursor, off: usize) -> Result<IcmpRepr, Error> {
        let h = c.get::<IcmpHdr>(off).ok_or(Error::Truncated)?;
        Ok(IcmpRepr { icmp_type: h.icmp_type, code: h.code, rest: h.rest })
    }

    /// Writes the header into the start of `message` (header and body, the
    /// body already in place); the checksum covers all of `message`.
    /// `csum` is [`Checksum::Plain`] for ICMPv4, a pseudo-header for ICMPv6.
    pub fn emit(&self, message: &mut [u8], csum: Checksum) -> Result<(), Error> {
        need(message, Self::LEN)?;
        message[0] = self.icmp_type;
        message[1] = self.code;
        message[2..4].fill(0);
        message[4..8].copy_from_slice(&self.rest);
        if let Some(c) = csum.compute(IPPROTO_ICMPV6, message) {
            message[2..4].copy_from_slice(&c.to_be_bytes());
        }
        Ok(())
    }
}

/// The ICMP protocol number of `family`.
pub fn icmp_protocol(family: u8) -> u8 {
    if family == 4 { IPPROTO_ICMP } else { IPPROTO_ICMPV6 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4pair() -> IpPair {
        IpPair::V4(Ipv4Addr::new(198, 18, 1, 1), Ipv4Addr::new(198, 18, 2, 1))
    }

    #[test]
    fn ipv4_round_trip_and_checksum() {
        let r = Ipv4Repr {
            src: Ipv4Addr::new(198, 18, 1, 1),
            dst: Ipv4Addr::new(198, 18, 2, 1),
            protocol: IPPROTO_UDP,
            ttl: 3,
            tos: 0x10,
            id: 0xbeef,
            dont_fragment: true,
            more_fragments: false,
            frag_offset: 0,
            header_len: 24,
            payload_len: 100,
        };
        let mut buf = [0u8; 24];
        assert_eq!(r.emit(&[1, 1, 1, 0], &mut buf), Ok(24));
        assert_eq!(checksum::of(&buf), 0);
        assert_eq!(Ipv4Repr::parse(&Cursor::from_slice(&buf), 0), Ok(r));
    }

    #[test]
    fn lengths_above_16_bits_are_errors_not_truncations() {
        let r = Ipv4Repr {
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            protocol: 17,
            ttl: 1,
            tos: 0,
            id: 0,
            dont_fragment: false,
            more_fragments: false,
            frag_offset: 0,
            header_len: 20,
            payload_len: 65_516,
        };
        let mut buf = [0u8; 20];
        assert_eq!(r.emit(&[], &mut buf), Err(Error::TooLong { field: "IPv4 total length", len: 65_536 }));
        assert_eq!(Ipv4Repr { payload_len: 65_515, ..r }.emit(&[], &mut buf), Ok(20));
        let r6 = Ipv6Repr {
            src: Ipv6Addr::UNSPECIFIED,
            dst: Ipv6Addr::UNSPECIFIED,
            next_header: 17,
            hop_limit: 1,
            traffic_class: 0,
            flow_label: 0,
            payload_len: 65_536,
        };
        let mut b6 = [0u8; 40];
        assert!(matches!(r6.emit(&mut b6), Err(Error::TooLong { .. })));
        let mut big = std::vec![0u8; 65_536];
        let u = UdpRepr { src_port: 1, dst_port: 2 };
        assert_eq!(u.emit(&mut big, Checksum::Kernel), Err(Error::TooLong { field: "UDP length", len: 65_536 }));
        assert_eq!(u.emit(&mut big[..65_535], Checksum::Kernel), Ok(()));
    }

    #[test]
    fn short_ihl_is_malformed() {
        let mut buf = [0u8; 40];
        buf[0] = 0x44;
        buf[3] = 40;
        assert_eq!(Ipv4Repr::parse(&Cursor::from_slice(&buf), 0), Err(Error::Malformed));
        buf[0] = 0x45;
        assert!(Ipv4Repr::parse(&Cursor::from_slice(&buf), 0).is_ok());
        buf[3] = 19;
        assert_eq!(Ipv4Repr::parse(&Cursor::from_slice(&buf), 0), Err(Error::Malformed), "total < header");
        buf[0] = 0x4f;
        buf[3] = 60;
        assert_eq!(Ipv4Repr::parse(&Cursor::from_slice(&buf), 0), Err(Error::Truncated), "options cut");
    }

    #[test]
    fn tcp_round_trip_with_mss() {
        let t = TcpRepr {
            src_port: 443,
            dst_port: 40000,
            seq: 7,
            ack: 9,
            flags: tcp_flags::SYN | tcp_flags::ACK,
            window: 1000,
            header_len: 28,
            mss: Some(1380),
        };
        let mut seg = [0u8; 31];
        t.emit(&mut seg, Checksum::Pseudo(v4pair())).unwrap();
        assert_eq!(TcpRepr::parse(&Cursor::from_slice(&seg), 0), Ok(t));
        let sum = checksum::finish(checksum::add(v4pair().pseudo_sum(IPPROTO_TCP, seg.len()), &seg));
        assert_eq!(sum, 0, "the checksum verifies");
        seg[12] = 4 << 4;
        assert_eq!(TcpRepr::parse(&Cursor::from_slice(&seg), 0), Err(Error::Malformed));
    }

    #[test]
    fn icmp_and_udp_checksums_verify() {
        let mut m = [0u8; 12];
        m[8..].copy_from_slice(&[1, 2, 3, 4]);
        IcmpRepr::echo_request(4, 0x1234, 5).emit(&mut m, Checksum::Plain).unwrap();
        assert_eq!(checksum::of(&m), 0);
        let r = IcmpRepr::parse(&Cursor::from_slice(&m), 0).unwrap();
        assert_eq!((r.icmp_type, r.echo_id(), r.rest_hi16()), (8, 0x1234, 5));
        let mut d = [0u8; 11];
        UdpRepr { src_port: 1, dst_port: 2 }.emit(&mut d, Checksum::Pseudo(v4pair())).unwrap();
        let sum = checksum::finish(checksum::add(v4pair().pseudo_sum(IPPROTO_UDP, d.len()), &d));
        assert_eq!(sum, 0);
        assert_eq!(UdpRepr::parse(&Cursor::from_slice(&d), 0), Ok((UdpRepr { src_port: 1, dst_port: 2 }, 11)));
    }
}
