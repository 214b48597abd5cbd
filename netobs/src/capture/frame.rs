//! One captured frame through the shared parser: what the XDP program
//! would count and which event it would write (`classify::observe` in
//! netobs-ebpf, the ICMP part: a capture has no egress route to check DF
//! packets against).

use netobs_common::{
    Cursor, Event,
    event::{hook, kind},
    parse::{IcmpOutcome, Skip, is_reported_icmp, parse_icmp_error, parse_outer},
    wire::{IPPROTO_ICMP, IPPROTO_ICMPV6, IcmpHdr},
};

use super::linktype::Way;

/// Why a frame was counted as malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Malformed {
    /// The capture record says more bytes were captured than were on the
    /// wire.
    Record,
    /// The link-layer header is cut short.
    LinkHeader,
    /// The IP header is cut short or inconsistent (the datapath's
    /// `malformed` counter).
    IpHeader,
    /// An ICMP packet whose header is cut short (the datapath counts it as
    /// malformed too).
    IcmpHeader,
    /// The IP header claims more bytes than the frame had on the wire:
    /// the kernel would drop it before routing (`ip_rcv`, `ipv6_rcv`). The
    /// datapath does not check (it sees the frame first) and still reports
    /// an ICMP error in it, and so does `read`.
    IpLengthBeyondFrame,
    /// The IP length ends before the packet's own headers do (IPv4
    /// options, IPv6 extension headers, the ICMP header): the bytes read as
    /// those headers are padding or garbage after the packet. Not checked
    /// by the datapath either.
    HeadersBeyondIpLength,
    /// The frame was far longer on the wire than its IP packet: more than
    /// Ethernet's minimum-size padding and a trailer ([`TRAILER_SLACK`])
    /// explain. (An IPv6 payload length of 0, a jumbogram or BIG TCP, is
    /// not judged.)
    FrameBeyondIpLength,
}

/// Bytes a frame may carry after its IP packet beyond the padding to
/// Ethernet's 46-byte minimum payload: an FCS, a switch's trailer.
pub const TRAILER_SLACK: u64 = 64;

impl Malformed {
    pub const ALL: [Malformed; 7] = [
        Malformed::Record,
        Malformed::LinkHeader,
        Malformed::IpHeader,
        Malformed::IcmpHeader,
        Malformed::IpLengthBeyondFrame,
        Malformed::HeadersBeyondIpLength,
        Malformed::FrameBeyondIpLength,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Malformed::Record => "record",
            Malformed::LinkHeader => "link_header",
            Malformed::IpHeader => "ip_header",
            Malformed::IcmpHeader => "icmp_header",
            Malformed::IpLengthBeyondFrame => "ip_length_beyond_frame",
            Malformed::HeadersBeyondIpLength => "headers_beyond_ip_length",
            Malformed::FrameBeyondIpLength => "frame_beyond_ip_length",
        }
    }
}

/// What the datapath would make of one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not IPv4/IPv6.
    NotIp,
    /// Counted as malformed, nothing else.
    Malformed(Malformed),
    /// IP, but not an ICMP error (ordinary traffic, echo, ND).
    Ip { icmp_other: bool },
    /// An ICMP error: the event the datapath would write (all but the
    /// timestamp).
    IcmpError { ev: Box<Event> },
}

/// Classifies `eth` (an Ethernet frame, see `linktype::as_ethernet`):
/// what the datapath would do, and (second) what the kernel's own
/// length checks would find wrong with the frame where the datapath does
/// not look. `wire_l3` is how many bytes from the network header on the
/// frame had on the wire (more than `eth` holds when the snapshot length
/// cut it).
pub fn classify(eth: &[u8], wire_l3: u64, ifindex: u32, way: Way) -> (Outcome, Option<Malformed>) {
    let c = Cursor::from_slice(eth);
    let outer = match parse_outer(&c) {
        Ok(o) => o,
        Err(Skip::NotIp) => return (Outcome::NotIp, None),
        Err(Skip::Malformed) => return (Outcome::Malformed(Malformed::IpHeader), None),
    };
    let ip_len = u64::from(outer.total_len);
    let headers = (outer.l4_off - outer.l3_off) as u64;
    let icmp = if outer.family == 4 { IPPROTO_ICMP } else { IPPROTO_ICMPV6 };
    let is_icmp = outer.protocol == icmp && !outer.later_fragment;
    let need = headers + if is_icmp { IcmpHdr::LEN as u64 } else { 0 };
    let host_check = if ip_len > wire_l3 {
        Some(Malformed::IpLengthBeyondFrame)
    } else if need > ip_len {
        Some(Malformed::HeadersBeyondIpLength)
    } else if wire_l3 > ip_len.max(46) + TRAILER_SLACK && !(outer.family == 6 && ip_len == 40) {
        Some(Malformed::FrameBeyondIpLength)
    } else {
        None
    };
    if !is_icmp {
        return (Outcome::Ip { icmp_other: false }, host_check);
    }
    // An ICMP header past the IP length: the shared parser (bounded by the
    // IP length, as the datapath is) refuses it, so it is malformed, not
    // only a host-side remark.
    if need > ip_len {
        return (Outcome::Malformed(Malformed::HeadersBeyondIpLength), None);
    }
    let Some(h) = c.get::<IcmpHdr>(outer.l4_off) else {
        return (Outcome::Malformed(Malformed::IcmpHeader), None);
    };
    if !is_reported_icmp(outer.family, h.icmp_type) {
        return (Outcome::Ip { icmp_other: true }, host_check);
    }
    let mut ev = Box::<Event>::default();
    // Cannot be Truncated or NotError: both were checked above.
    if parse_icmp_error(&c, &outer, &mut ev) != IcmpOutcome::Error {
        return (Outcome::Malformed(Malformed::IcmpHeader), None);
    }
    ev.ifindex = ifindex;
    ev.hook = if way == Way::Out { hook::TC_EGRESS } else { hook::XDP };
    if way == Way::Out {
        ev.kind = kind::ICMP_SENT;
    }
    (Outcome::IcmpError { ev }, host_check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netobs_common::event::flags;

    /// Ethernet + IPv4 ICMP 3/10 from 198.18.2.1 quoting a SYN-ACK of ours.
    fn reject() -> Vec<u8> {
        let mut quote = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 62, 6, 0, 0, 198, 18, 1, 254, 198, 18, 9, 9];
        quote.extend_from_slice(&[0xfd, 0xe8, 0xdb, 0x82, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x12, 0, 0, 0, 0, 0, 0]);
        let total = (20 + 8 + quote.len()) as u16;
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 63, 1, 0, 0, 198, 18, 2, 1, 198, 18, 1, 254]);
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[3, 10, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&quote);
        f
    }

    #[test]
    fn an_icmp_error_becomes_the_datapath_event() {
        let f = reject();
        let wire = (f.len() - 14) as u64;
        let (Outcome::IcmpError { ev }, also) = classify(&f, wire, 1, Way::Unknown) else { panic!("icmp error") };
        assert_eq!(also, None);
        assert_eq!((ev.kind, ev.icmp_type, ev.icmp_code, ev.outer_ttl), (kind::ICMP_ERROR, 3, 10, 63));
        assert_eq!((ev.inner.src_port, ev.inner.dst_port, ev.inner.tcp_flags), (65000, 56194, 0x12));
        assert_eq!(ev.flags & flags::QUOTE_TRUNCATED, 0);
        let (Outcome::IcmpError { ev }, _) = classify(&f, wire, 1, Way::Out) else { panic!("icmp error") };
        assert_eq!((ev.kind, ev.hook), (kind::ICMP_SENT, hook::TC_EGRESS));
    }

    #[test]
    fn cut_and_lying_frames_are_malformed() {
        let f = reject();
        let wire = (f.len() - 14) as u64;
        assert_eq!(classify(&f[..30], wire, 1, Way::Unknown).0, Outcome::Malformed(Malformed::IpHeader));
        assert_eq!(classify(&f[..36], wire, 1, Way::Unknown).0, Outcome::Malformed(Malformed::IcmpHeader));
        // Shorter on the wire than the IP header claims.
        let (Outcome::IcmpError { .. }, also) = classify(&f, wire - 1, 1, Way::Unknown) else {
            panic!("still an error")
        };
        assert_eq!(also, Some(Malformed::IpLengthBeyondFrame));
        // An IP length that ends inside the ICMP header: the rest is padding.
        let mut short = f.clone();
        short[16..18].copy_from_slice(&23u16.to_be_bytes());
        // (The shared parser now bounds everything by the IP length, so it
        // may already refuse the ICMP header; either way it is malformed.)
        let r = classify(&short, wire, 1, Way::Unknown);
        assert!(matches!(r, (Outcome::Malformed(_), _) | (_, Some(Malformed::HeadersBeyondIpLength))), "{:?}", r.1);
        // Padding and a trailer are fine; 200 KiB after a 68-byte packet is not.
        assert_eq!(classify(&f, 46 + TRAILER_SLACK, 1, Way::Unknown).1, None);
        assert_eq!(classify(&f, 262_144, 1, Way::Unknown).1, Some(Malformed::FrameBeyondIpLength));
        // Cut by the snapshot length only: the quote is truncated, not malformed.
        let (Outcome::IcmpError { ev }, also) = classify(&f[..14 + 28 + 10], wire, 1, Way::Unknown) else {
            panic!("icmp error")
        };
        assert_eq!(also, None);
        assert_ne!(ev.flags & flags::QUOTE_TRUNCATED, 0);
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(classify(&arp, wire, 1, Way::Unknown).0, Outcome::NotIp);
    }
}
