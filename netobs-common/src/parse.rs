//! Classification of one frame: the code the XDP/TC programs run and the
//! host tests run on the same bytes.
//!
//! Every loop is bounded by a constant and every read goes through
//! [`Cursor::get`], so the verifier can follow it; nothing here can panic.

use crate::cursor::Cursor;
use crate::event::{Event, IcmpCapture, PacketInfo, flags, have, kind};
use crate::icmp;
use crate::wire::*;

/// At most this many VLAN tags are skipped (802.1ad outer + 802.1Q inner).
pub const MAX_VLAN_TAGS: usize = 2;
/// At most this many IPv6 extension headers are walked before giving up.
pub const MAX_IPV6_EXT_HEADERS: usize = 4;
/// At most this many ND options are walked looking for a redirected header.
pub const MAX_ND_OPTIONS: usize = 4;

/// Why a frame was not classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Not IPv4/IPv6 (ARP, LLDP, ...): passed without counting.
    NotIp,
    /// Claims to be IP but is cut short or inconsistent: counted as malformed.
    Malformed,
}

/// The outer network header of a frame, reduced to what the fast path needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outer {
    /// 4 or 6.
    pub family: u8,
    pub vlan_depth: u8,
    /// TTL / hop limit.
    pub ttl: u8,
    /// Transport protocol after any IPv6 extension headers.
    pub protocol: u8,
    /// Offset of the IP header in the frame.
    pub l3_off: usize,
    /// Offset of the transport header in the frame.
    pub l4_off: usize,
    /// IPv4 total length; IPv6 payload length + 40.
    pub total_len: u32,
    /// IPv4 DF flag; always true for IPv6 (routers never fragment it).
    pub dont_fragment: bool,
    /// A non-first fragment: no transport header to look at.
    pub later_fragment: bool,
}

/// Skips Ethernet and up to [`MAX_VLAN_TAGS`] tags. Returns the ethertype
/// and the offset of the network header.
#[inline(always)]
pub fn parse_ethernet(c: &Cursor) -> Result<(u16, usize, u8), Skip> {
    let eth = c.get::<EthHdr>(0).ok_or(Skip::Malformed)?;
    let mut ethertype = eth.ethertype();
    let mut off = EthHdr::LEN;
    let mut depth = 0u8;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let tag = c.get::<VlanHdr>(off).ok_or(Skip::Malformed)?;
        ethertype = tag.ethertype();
        off += VlanHdr::LEN;
        depth += 1;
    }
    Ok((ethertype, off, depth))
}

/// Parses the outer headers of an Ethernet frame.
#[inline(always)]
pub fn parse_outer(c: &Cursor) -> Result<Outer, Skip> {
    let (ethertype, l3_off, vlan_depth) = parse_ethernet(c)?;
    match ethertype {
        ETH_P_IPV4 => parse_outer_v4(c, l3_off, vlan_depth),
        ETH_P_IPV6 => parse_outer_v6(c, l3_off, vlan_depth),
        _ => Err(Skip::NotIp),
    }
}

/// [`parse_outer`] for a packet that starts at its IP header (`l3_off`),
/// of the family its version nibble names: what user space does with an
/// [`IcmpCapture`]'s bytes.
#[inline(always)]
pub fn parse_outer_ip(c: &Cursor, l3_off: usize, vlan_depth: u8) -> Result<Outer, Skip> {
    match c.u8_at(l3_off).map(|b| b >> 4) {
        Some(4) => parse_outer_v4(c, l3_off, vlan_depth),
        Some(6) => parse_outer_v6(c, l3_off, vlan_depth),
        _ => Err(Skip::Malformed),
    }
}

#[inline(always)]
fn parse_outer_v4(c: &Cursor, l3_off: usize, vlan_depth: u8) -> Result<Outer, Skip> {
    let ip = c.get::<Ipv4Hdr>(l3_off).ok_or(Skip::Malformed)?;
    let hlen = ip.header_len();
    if ip.version() != 4 || hlen < Ipv4Hdr::LEN {
        return Err(Skip::Malformed);
    }
    Ok(Outer {
        family: 4,
        vlan_depth,
        ttl: ip.ttl,
        protocol: ip.protocol,
        l3_off,
        l4_off: l3_off + hlen,
        total_len: ip.total_len() as u32,
        dont_fragment: ip.dont_fragment(),
        later_fragment: ip.frag_offset() != 0,
    })
}

#[inline(always)]
fn parse_outer_v6(c: &Cursor, l3_off: usize, vlan_depth: u8) -> Result<Outer, Skip> {
    let ip = c.get::<Ipv6Hdr>(l3_off).ok_or(Skip::Malformed)?;
    if ip.version() != 6 {
        return Err(Skip::Malformed);
    }
    // Extension headers belong to the packet: none is read past its
    // payload length (Ethernet padding is not a header).
    let total_len = ip.payload_len() as u32 + Ipv6Hdr::LEN as u32;
    let in_packet = c.limit_to(l3_off + total_len as usize);
    let walk = walk_ipv6_ext(&in_packet, l3_off + Ipv6Hdr::LEN, ip.next_header);
    Ok(Outer {
        family: 6,
        vlan_depth,
        ttl: ip.hop_limit,
        protocol: walk.protocol,
        l3_off,
        l4_off: walk.l4_off,
        total_len,
        dont_fragment: true,
        later_fragment: walk.later_fragment,
    })
}

/// Result of walking IPv6 extension headers.
#[derive(Clone, Copy, Debug)]
pub struct ExtWalk {
    pub protocol: u8,
    pub l4_off: usize,
    pub later_fragment: bool,
    /// A fragment header was crossed: (offset<<3 | M, identification).
    pub fragment: Option<(u16, u32)>,
    /// The walk stopped on a truncated header or after too many headers;
    /// `protocol` is then the last next-header value seen.
    pub incomplete: bool,
    pub crossed_any: bool,
}

/// Walks at most [`MAX_IPV6_EXT_HEADERS`] extension headers from `off`.
#[inline(always)]
pub fn walk_ipv6_ext(c: &Cursor, mut off: usize, mut nh: u8) -> ExtWalk {
    let mut walk = ExtWalk {
        protocol: nh,
        l4_off: off,
        later_fragment: false,
        fragment: None,
        incomplete: false,
        crossed_any: false,
    };
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if !is_ipv6_ext(nh) {
            walk.protocol = nh;
            walk.l4_off = off;
            return walk;
        }
        let Some(ext) = c.get::<Ipv6ExtHdr>(off) else {
            walk.protocol = nh;
            walk.l4_off = off;
            walk.incomplete = true;
            return walk;
        };
        walk.crossed_any = true;
        if nh == IPPROTO_FRAGMENT {
            let (frag_off, more) = ext.frag_offset_and_more();
            walk.fragment = Some(((frag_off << 3) | more as u16, ext.frag_id()));
            off += Ipv6ExtHdr::LEN;
            nh = ext.next_header;
            if frag_off != 0 {
                walk.protocol = nh;
                walk.l4_off = off;
                walk.later_fragment = true;
                return walk;
            }
        } else {
            // The whole header must be there, not just its first 8 bytes:
            // a length that runs past the input is a cut-short walk, and
            // the transport offset stays at this header (never past the end).
            let len = ext.options_len();
            if c.u8_at(off + len - 1).is_none() {
                walk.protocol = nh;
                walk.l4_off = off;
                walk.incomplete = true;
                return walk;
            }
            off += len;
            nh = ext.next_header;
        }
    }
    walk.protocol = nh;
    walk.l4_off = off;
    walk.incomplete = is_ipv6_ext(nh);
    walk
}

#[inline(always)]
fn is_ipv6_ext(nh: u8) -> bool {
    nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS || nh == IPPROTO_FRAGMENT
}

/// Outcome of looking at an ICMP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpOutcome {
    /// An error (or redirect): `ev` is filled in.
    Error,
    /// Echo, neighbour discovery, ...: nothing to report.
    NotError,
    /// The ICMP header itself is cut short.
    Truncated,
}

/// Is this ICMP type an error netobs reports (v4: 3, 4, 5, 11, 12;
/// v6: 1, 2, 3, 4 and redirect 137)?
#[inline(always)]
pub fn is_reported_icmp(family: u8, icmp_type: u8) -> bool {
    if family == 4 { matches!(icmp_type, 3 | 4 | 5 | 11 | 12) } else { matches!(icmp_type, 1 | 2 | 3 | 4 | 137) }
}

/// The frame's bytes up to the end of its outer IP packet: Ethernet
/// padding and anything after the packet are neither ICMP body nor quote.
#[inline(always)]
fn ip_packet<'a>(c: &Cursor<'a>, outer: &Outer) -> Cursor<'a> {
    c.limit_to(outer.l3_off + outer.total_len as usize)
}

/// The ICMP header of the frame, if it lies inside the outer IP packet:
/// one past the IP length is not there (the kernel trims the packet to
/// its IP length before ICMP sees it). The programs decide "error or not"
/// on this, and [`parse_icmp_error`] reads the same bytes.
#[inline(always)]
pub fn icmp_header<'a>(c: &Cursor<'a>, outer: &Outer) -> Option<&'a IcmpHdr> {
    ip_packet(c, outer).get::<IcmpHdr>(outer.l4_off)
}

/// Fills `ev` (all but `ts_ns`, `ifindex`, `hook`) from the ICMP error at
/// `outer.l4_off`. `ev` must be zeroed by the caller.
#[inline(always)]
pub fn parse_icmp_error(c: &Cursor, outer: &Outer, ev: &mut Event) -> IcmpOutcome {
    // The ICMP message ends where the outer IP packet does.
    let full = c;
    let c = &ip_packet(c, outer);
    let off = outer.l4_off;
    let Some(icmp) = c.get::<IcmpHdr>(off) else {
        return IcmpOutcome::Truncated;
    };
    if !is_reported_icmp(outer.family, icmp.icmp_type) {
        return IcmpOutcome::NotError;
    }
    ev.kind = kind::ICMP_ERROR;
    ev.icmp_type = icmp.icmp_type;
    ev.icmp_code = icmp.code;
    ev.outer_family = outer.family;
    ev.outer_ttl = outer.ttl;
    ev.vlan_depth = outer.vlan_depth;
    ev.outer_len = outer.total_len;
    copy_outer_addrs(full, outer, ev);

    let mut quote_off = off + IcmpHdr::LEN;
    if outer.family == 4 {
        match icmp.icmp_type {
            icmp::v4::DEST_UNREACH => {
                if icmp.code == icmp::v4::unreach::FRAG_NEEDED {
                    ev.mtu = icmp.rest_hi16() as u32;
                    ev.flags |= flags::HAS_MTU;
                }
                set_rfc4884(ev, icmp.rest[1] as u16 * 4);
            }
            icmp::v4::TIME_EXCEEDED => set_rfc4884(ev, icmp.rest[1] as u16 * 4),
            icmp::v4::PARAM_PROBLEM => {
                ev.aux = icmp.rest[0] as u32;
                ev.flags |= flags::HAS_POINTER;
                set_rfc4884(ev, icmp.rest[1] as u16 * 4);
            }
            icmp::v4::REDIRECT => {
                put_v4(&mut ev.gateway, &icmp.rest);
                ev.flags |= flags::HAS_GATEWAY;
            }
            _ => {}
        }
    } else {
        match icmp.icmp_type {
            icmp::v6::PACKET_TOO_BIG => {
                ev.mtu = icmp.rest_u32();
                ev.flags |= flags::HAS_MTU;
            }
            icmp::v6::DEST_UNREACH | icmp::v6::TIME_EXCEEDED => {
                set_rfc4884(ev, icmp.rest[0] as u16 * 8);
            }
            icmp::v6::PARAM_PROBLEM => {
                ev.aux = icmp.rest_u32();
                ev.flags |= flags::HAS_POINTER;
            }
            icmp::v6::REDIRECT => {
                let Some(body) = c.get::<Icmpv6RedirectBody>(quote_off) else {
                    ev.flags |= flags::QUOTE_TRUNCATED;
                    return IcmpOutcome::Error;
                };
                put_v6(&mut ev.gateway, &body.target);
                ev.flags |= flags::HAS_GATEWAY;
                match find_redirected_header(c, quote_off + Icmpv6RedirectBody::LEN) {
                    Some(at) => quote_off = at,
                    None => {
                        // No quote: still name the redirected destination.
                        put_v6(&mut ev.inner.dst, &body.destination);
                        ev.inner.family = 6;
                        ev.flags |= flags::QUOTE_TRUNCATED;
                        return IcmpOutcome::Error;
                    }
                }
            }
            _ => {}
        }
    }
    let remaining = c.remaining_from(quote_off);
    ev.quote_len = if remaining > 0xffff { 0xffff } else { remaining as u16 };
    let truncated = match parse_ip_packet_l4(c, quote_off, outer.family, &mut ev.inner) {
        // A later fragment has no transport header to miss; anything else
        // without a reachable transport header (no IP header, extension
        // walk cut short) lost it.
        None => ev.inner.have & have::LATER_FRAGMENT == 0,
        // TCP/UDP: the ports (what the flow is named by); any other
        // protocol (ICMP, GRE, ESP, SCTP...): the 8 bytes RFC 792 promises.
        Some(l4_off) => {
            let p = ev.inner.protocol;
            let need = if p == IPPROTO_TCP || p == IPPROTO_UDP { 4 } else { L4Head::LEN };
            c.remaining_from(l4_off) < need
        }
    };
    if truncated {
        ev.flags |= flags::QUOTE_TRUNCATED;
    }
    // The RFC 4884 bytes are copied by the host parser only (`read`, the
    // tests): in the datapath, even a branch-free copy at the end of every
    // ICMP-error path pushed the TC programs past the verifier's 1M
    // instructions. The kernel's event keeps HAS_RFC4884 and the length,
    // and the finding says the objects were not carried.
    #[cfg(not(target_arch = "bpf"))]
    crate::ext::capture(c, outer, off, ev);
    IcmpOutcome::Error
}

/// The datapath's half of an ICMP error's event: copies the message from
/// its IP header on into `cap` (all but `ts_ns`, `ifindex`, `hook`), for
/// user space to parse ([`decode_icmp_capture`]). `outer` is the frame's
/// [`parse_outer`], and the ICMP header lies inside it ([`icmp_header`]).
#[inline(always)]
pub fn capture_icmp(c: &Cursor, outer: &Outer, cap: &mut IcmpCapture) {
    // As in parse_icmp_error: the message ends where its IP packet does.
    let c = ip_packet(c, outer);
    let avail = c.remaining_from(outer.l3_off);
    cap.kind = kind::ICMP_CAPTURE;
    cap.vlan_depth = outer.vlan_depth;
    cap.avail = if avail > 0xffff { 0xffff } else { avail as u16 };
    cap.captured = c.copy_words(outer.l3_off, &mut cap.bytes) as u16;
}

/// User space's half: the [`Event`] that [`parse_icmp_error`] makes of the
/// frame `cap` was copied from, as the datapath would have written it (no
/// RFC 4884 bytes: see [`IcmpCapture`]). `None` when the bytes are not an
/// ICMP error (a record no datapath of ours writes).
///
/// The parse sees only the captured bytes, so two things are put right
/// from what the datapath had: the quote's length, and a quote the
/// capture (not the reporter) cut short ([`flags::CAPTURE_CUT`]).
#[cfg(not(target_arch = "bpf"))]
pub fn decode_icmp_capture(cap: &IcmpCapture) -> Option<Event> {
    let mut bytes = [0u8; crate::event::CAPTURE_BYTES];
    for (chunk, w) in bytes.chunks_exact_mut(8).zip(cap.bytes) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    let c = Cursor::from_slice(bytes.get(..cap.captured as usize)?);
    let outer = parse_outer_ip(&c, 0, cap.vlan_depth).ok()?;
    let mut ev = Event::default();
    if parse_icmp_error(&c, &outer, &mut ev) != IcmpOutcome::Error {
        return None;
    }
    let mut ev = ev.as_datapath();
    ev.ts_ns = cap.ts_ns;
    ev.ifindex = cap.ifindex;
    ev.hook = cap.hook;
    if cap.hook == crate::event::hook::TC_EGRESS {
        ev.kind = kind::ICMP_SENT;
    }
    let uncopied = cap.avail.saturating_sub(cap.captured);
    if uncopied > 0 {
        if ev.quote_len != 0 {
            ev.quote_len = ev.quote_len.saturating_add(uncopied);
        }
        // The fields past the copy are the last ones the parser reads: the
        // transport's (TCP flags are 14 bytes in, the last of all).
        let tcp_cut = ev.inner.protocol == IPPROTO_TCP
            && ev.inner.have & (have::LATER_FRAGMENT | have::EXT_WALK_INCOMPLETE | have::TCP_FLAGS) == 0;
        if ev.flags & flags::QUOTE_TRUNCATED != 0 || tcp_cut {
            ev.flags = (ev.flags & !flags::QUOTE_TRUNCATED) | flags::CAPTURE_CUT;
        }
    }
    Some(ev)
}

#[inline(always)]
fn set_rfc4884(ev: &mut Event, len_bytes: u16) {
    if len_bytes != 0 {
        ev.rfc4884_len = len_bytes;
        ev.flags |= flags::HAS_RFC4884;
    }
}

#[inline(always)]
fn copy_outer_addrs(c: &Cursor, outer: &Outer, ev: &mut Event) {
    if outer.family == 4 {
        if let Some(ip) = c.get::<Ipv4Hdr>(outer.l3_off) {
            put_v4(&mut ev.outer_src, &ip.src);
            put_v4(&mut ev.outer_dst, &ip.dst);
        }
    } else if let Some(ip) = c.get::<Ipv6Hdr>(outer.l3_off) {
        put_v6(&mut ev.outer_src, &ip.src);
        put_v6(&mut ev.outer_dst, &ip.dst);
    }
}

/// Finds ND option 4 (Redirected Header) among at most [`MAX_ND_OPTIONS`]
/// options from `off`; returns the offset of the quoted packet.
#[inline(always)]
fn find_redirected_header(c: &Cursor, mut off: usize) -> Option<usize> {
    for _ in 0..MAX_ND_OPTIONS {
        let opt = c.get::<NdOptHdr>(off)?;
        if opt.len == 0 {
            return None;
        }
        if opt.opt_type == NdOptHdr::REDIRECTED_HEADER {
            return Some(off + NdOptHdr::LEN);
        }
        off += opt.len as usize * 8;
    }
    None
}

/// Parses an IP packet (a quote, or the packet itself) at `off` into
/// `info`, taking whatever is there: each field present sets its
/// [`have`] bit. `family` is what the packet must be (4 or 6).
#[inline(always)]
pub fn parse_ip_packet(c: &Cursor, off: usize, family: u8, info: &mut PacketInfo) {
    let _ = parse_ip_packet_l4(c, off, family, info);
}

/// [`parse_ip_packet`], returning the offset of the transport header when
/// one is expected there: the IP header was present, the packet is not a
/// later fragment and the IPv6 extension-header walk completed.
#[inline(always)]
pub fn parse_ip_packet_l4(c: &Cursor, off: usize, family: u8, info: &mut PacketInfo) -> Option<usize> {
    let l4_off;
    if family == 4 {
        let ip = c.get::<Ipv4Hdr>(off)?;
        let hlen = ip.header_len();
        if ip.version() != 4 || hlen < Ipv4Hdr::LEN {
            return None;
        }
        info.family = 4;
        put_v4(&mut info.src, &ip.src);
        put_v4(&mut info.dst, &ip.dst);
        info.protocol = ip.protocol;
        info.ttl = ip.ttl;
        info.total_len = ip.total_len();
        info.ip_id = ip.id() as u32;
        info.frag = ip.flags_frag();
        info.have |= have::IP;
        if hlen > Ipv4Hdr::LEN {
            info.have |= have::IP_OPTIONS;
        }
        if ip.frag_offset() != 0 {
            info.have |= have::LATER_FRAGMENT;
            return None;
        }
        l4_off = off + hlen;
    } else {
        let ip = c.get::<Ipv6Hdr>(off)?;
        if ip.version() != 6 {
            return None;
        }
        info.family = 6;
        put_v6(&mut info.src, &ip.src);
        put_v6(&mut info.dst, &ip.dst);
        info.ttl = ip.hop_limit;
        info.total_len = ip.payload_len().saturating_add(Ipv6Hdr::LEN as u16);
        info.have |= have::IP;
        let walk = walk_ipv6_ext(c, off + Ipv6Hdr::LEN, ip.next_header);
        info.protocol = walk.protocol;
        if walk.crossed_any {
            info.have |= have::EXT_HEADERS;
        }
        if let Some((frag, id)) = walk.fragment {
            info.frag = frag;
            info.ip_id = id;
        }
        if walk.later_fragment {
            info.have |= have::LATER_FRAGMENT;
            return None;
        }
        if walk.incomplete {
            info.have |= have::EXT_WALK_INCOMPLETE;
            return None;
        }
        l4_off = walk.l4_off;
    }
    parse_l4_head(c, l4_off, info);
    Some(l4_off)
}

#[inline(always)]
fn parse_l4_head(c: &Cursor, off: usize, info: &mut PacketInfo) {
    let proto = info.protocol;
    if proto == IPPROTO_TCP || proto == IPPROTO_UDP {
        if let Some(p) = c.get::<[u8; 4]>(off) {
            info.src_port = u16::from_be_bytes([p[0], p[1]]);
            info.dst_port = u16::from_be_bytes([p[2], p[3]]);
            info.have |= have::PORTS;
        }
        if proto == IPPROTO_TCP {
            if let Some(h) = c.get::<L4Head>(off) {
                info.seq = h.tcp_seq();
                info.have |= have::SEQ;
            }
            if let Some(f) = c.u8_at(off + 13) {
                info.tcp_flags = f;
                info.have |= have::TCP_FLAGS;
            }
        }
    } else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
        && let Some(h) = c.get::<L4Head>(off)
    {
        let t = h.b[0];
        let echo = if proto == IPPROTO_ICMP {
            t == icmp::v4::ECHO_REQUEST || t == icmp::v4::ECHO_REPLY
        } else {
            t == icmp::v6::ECHO_REQUEST || t == icmp::v6::ECHO_REPLY
        };
        if echo {
            info.src_port = h.echo_id();
            info.seq = h.echo_seq() as u32;
            info.have |= have::PORTS | have::SEQ | have::ECHO;
        }
    }
}

/// Should this packet pay for a FIB lookup to see whether it is too big for
/// its egress? Only DF (or IPv6) packets longer than `min_mtu`.
#[inline(always)]
pub fn is_df_candidate(outer: &Outer, min_mtu: u32) -> bool {
    min_mtu != 0 && outer.dont_fragment && outer.total_len > min_mtu
}

/// The fast path: is this an untagged IPv4 frame that needs no more than
/// counting (not ICMP, not a DF candidate above `df_threshold`)? Decided
/// from four header bytes, before [`parse_outer`] builds an [`Outer`];
/// exactly the frames for which the full classification would only count
/// `packets` and `ipv4` (a later fragment changes nothing here: it is
/// neither an ICMP error to us nor, once not a candidate, checked).
#[inline(always)]
pub fn is_ordinary_v4(c: &Cursor, df_threshold: u32) -> bool {
    // The IP header's bounds first: a frame too short for it is not
    // ordinary either way, and the Ethernet header's check then folds in.
    let Some(ip) = c.get::<Ipv4Hdr>(EthHdr::LEN) else {
        return false;
    };
    let Some(eth) = c.get::<EthHdr>(0) else {
        return false;
    };
    if eth.ethertype() != ETH_P_IPV4 || !ip.is_v4_with_header() || ip.protocol == IPPROTO_ICMP {
        return false;
    }
    !(df_threshold != 0 && ip.dont_fragment() && ip.total_len() as u32 > df_threshold)
}

/// Is the IP length the header claims really in the frame? `frame_len` is
/// the whole frame: every buffer of a multi-buffer XDP frame
/// (`bpf_xdp_get_buff_len`), the skb's length at TC. The kernel drops a
/// packet shorter than its IP length before routing it (`ip_rcv`,
/// `ipv6_rcv`), so such a packet is never DF-oversized, whatever it claims.
#[inline(always)]
pub fn ip_len_in_frame(outer: &Outer, frame_len: u32) -> bool {
    outer.l3_off as u32 + outer.total_len <= frame_len
}

/// Must a TC program make more of the skb linear before classifying it?
/// Decided from what is already linear (`parsed`: [`parse_outer`] on the
/// linear part), so ordinary traffic never pays for a pull (a head copy):
/// only ICMP (a possible error, whose quote is needed), DF candidates
/// above `df_threshold` (their ports name the flow), and frames whose
/// headers are not linear yet.
#[inline(always)]
pub fn tc_needs_pull(parsed: &Result<Outer, Skip>, df_threshold: u32) -> bool {
    match parsed {
        Ok(outer) => {
            let icmp = if outer.family == 4 { IPPROTO_ICMP } else { IPPROTO_ICMPV6 };
            (outer.protocol == icmp && !outer.later_fragment) || is_df_candidate(outer, df_threshold)
        }
        Err(Skip::Malformed) => true,
        Err(Skip::NotIp) => false,
    }
}

/// Stores an IPv4 address in the first 4 bytes of a 16-byte slot, as one
/// 4-byte word (no slice ranges: keeps bounds-check panics out of the eBPF
/// object). A byte-wise copy stays four loads and four stores in BPF; the
/// eBPF object is built with misaligned access allowed, so a word is one
/// load and one store (see netobs-ebpf/build.rs).
#[inline(always)]
pub(crate) fn put_v4(dst: &mut [u8; 16], src: &[u8; 4]) {
    if let Some(d) = dst.first_chunk_mut::<4>() {
        *d = u32::from_ne_bytes(*src).to_ne_bytes();
    }
}

/// Copies an IPv6 address as two 8-byte words. A plain `*dst = *src` is a
/// `memcpy`, which BPF expands by the (byte) alignment of the arrays:
/// sixteen loads and stores.
#[inline(always)]
pub(crate) fn put_v6(dst: &mut [u8; 16], src: &[u8; 16]) {
    let (Some(lo), Some(hi)) = (src.first_chunk::<8>(), src.last_chunk::<8>()) else { return };
    let (lo, hi) = (u64::from_ne_bytes(*lo), u64::from_ne_bytes(*hi));
    if let Some(d) = dst.first_chunk_mut::<8>() {
        *d = lo.to_ne_bytes();
    }
    if let Some(d) = dst.last_chunk_mut::<8>() {
        *d = hi.to_ne_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 header (no options), protocol `proto`, IP length
    /// `total_len`, DF set; `extra` bytes of payload actually present.
    fn v4(proto: u8, total_len: u16, extra: usize) -> std::vec::Vec<u8> {
        let mut f = std::vec![0u8; 14 + 20 + extra];
        f[12..14].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&total_len.to_be_bytes());
        f[20] = 0x40; // DF
        f[22] = 64;
        f[23] = proto;
        f
    }

    #[test]
    fn tc_pulls_only_icmp_df_candidates_and_unparsed_headers() {
        let tcp_small = v4(IPPROTO_TCP, 60, 40);
        let tcp_big = v4(IPPROTO_TCP, 1500, 40);
        let icmp = v4(IPPROTO_ICMP, 56, 8);
        let cut = &tcp_small[..20]; // IP header not linear yet
        let pull = |f: &[u8], thr| tc_needs_pull(&parse_outer(&Cursor::from_slice(f)), thr);
        assert!(!pull(&tcp_small, 1500), "ordinary TCP must not pay for a pull");
        assert!(!pull(&tcp_big, 1500), "1500 is not above a 1500 threshold");
        assert!(pull(&tcp_big, 1400), "a DF candidate needs its ports");
        assert!(!pull(&tcp_big, 0), "threshold 0 disables the DF check");
        assert!(pull(&icmp, 1500), "ICMP may be an error: its quote is needed");
        assert!(pull(cut, 1500), "headers not linear yet");
        let mut arp = tcp_small.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(!pull(&arp, 1500));
    }

    #[test]
    fn the_fast_path_takes_only_frames_the_full_path_would_only_count() {
        let fast = |f: &[u8], thr| is_ordinary_v4(&Cursor::from_slice(f), thr);
        assert!(fast(&v4(IPPROTO_TCP, 60, 40), 1500));
        assert!(fast(&v4(IPPROTO_TCP, 1500, 1480), 1500), "at the threshold: not a candidate");
        assert!(!fast(&v4(IPPROTO_TCP, 1501, 1481), 1500), "a DF candidate");
        assert!(fast(&v4(IPPROTO_TCP, 9000, 40), 0), "DF check off");
        assert!(!fast(&v4(IPPROTO_ICMP, 56, 36), 1500), "ICMP may be an error");
        let mut bad = v4(IPPROTO_TCP, 60, 40);
        bad[14] = 0x44;
        assert!(!fast(&bad, 1500), "malformed: counted as such by the full path");
        let mut v6 = v4(IPPROTO_TCP, 60, 40);
        v6[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
        assert!(!fast(&v6, 1500));
        assert!(!fast(&v4(IPPROTO_TCP, 60, 40)[..30], 1500), "cut short");
        let mut no_df = v4(IPPROTO_TCP, 1600, 1580);
        no_df[20] = 0;
        assert!(fast(&no_df, 1500), "may be fragmented: not a candidate");
    }

    #[test]
    fn the_ip_length_must_be_in_the_frame() {
        let f = v4(IPPROTO_TCP, 1500, 1480);
        let outer = parse_outer(&Cursor::from_slice(&f[..64])).unwrap();
        // Only the first buffer is linear; the whole frame counts.
        assert!(ip_len_in_frame(&outer, f.len() as u32));
        assert!(!ip_len_in_frame(&outer, f.len() as u32 - 1), "a truncated packet is dropped, never forwarded");
        assert!(ip_len_in_frame(&outer, 9014), "padding beyond the IP length is fine");
    }
}
