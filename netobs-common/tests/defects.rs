//! The decoder defects a libFuzzer run found (issue 12, item 5), each
//! pinned: the frame that showed it, what the parser said before the fix,
//! and the oracle (`netobs_common::check`) agreeing with the parser now.

use std::net::{Ipv4Addr, Ipv6Addr};

use netobs_common::Cursor;
use netobs_common::check::{check_frame, check_ip, parse_frame};
use netobs_common::craft::{Frame, Tcp, cut};
use netobs_common::event::{flags, have};
use netobs_common::parse::{IcmpOutcome, walk_ipv6_ext};
use netobs_common::wire::{IPPROTO_DSTOPTS, IPPROTO_TCP, IPPROTO_UDP};

const R4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
const C4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const S4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
const R6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe);
const C6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const S6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);

fn event(frame: &[u8]) -> netobs_common::Event {
    let (_, icmp) = parse_frame(frame);
    let Some((r, ev)) = icmp else { panic!("not an ICMP frame: {frame:02x?}") };
    assert_eq!(r, IcmpOutcome::Error);
    ev
}

/// A frame-level quote of 28 bytes (IPv4 header + 8), then Ethernet
/// padding: the quote ends with the outer IP packet, not the frame.
#[test]
fn the_quote_ends_with_the_outer_ip_packet() {
    let inner = Frame::ipv4(C4, S4).tcp(Tcp::new(40000, 443).syn()).ip_bytes();
    let mut f = Frame::ipv4(R4, C4).icmp_error(3, 10, &cut(&inner, 28)).bytes();
    let ip_end = f.len();
    assert_eq!(event(&f).quote_len, 28);
    // 18 bytes of padding (what a NIC adds to reach 60+ bytes, or any
    // trailer): they used to be counted as quote (quote_len 46).
    f.extend_from_slice(&[0xee; 18]);
    let ev = event(&f);
    assert_eq!(ev.quote_len, 28, "padding is not quote");
    assert_eq!(ev.inner.have & have::PORTS, have::PORTS);
    check_frame(&f).unwrap();
    // A quote cut to 22 bytes, then padding that looks like ports: the
    // ports must not come from the padding (they used to: 0xeeee).
    let mut g = Frame::ipv4(R4, C4).icmp_error(3, 10, &cut(&inner, 22)).bytes();
    assert_eq!(g.len(), ip_end - 6);
    g.extend_from_slice(&[0xee; 24]);
    let ev = event(&g);
    assert_eq!(ev.quote_len, 22);
    assert_eq!(ev.inner.have & have::PORTS, 0, "ports read from the padding");
    assert_ne!(ev.flags & flags::QUOTE_TRUNCATED, 0);
    check_frame(&g).unwrap();
}

#[test]
fn an_icmpv6_quote_ends_with_the_payload_length() {
    let inner = Frame::ipv6(C6, S6).udp(40000, 33434, 10).ip_bytes();
    let mut f = Frame::ipv6(R6, C6).icmp_error(1, 4, &inner).bytes();
    f.extend_from_slice(&[0; 7]);
    assert_eq!(event(&f).quote_len as usize, inner.len());
    check_frame(&f).unwrap();
}

/// A destination-options header declaring 2 KiB (Hdr Ext Len 255) of
/// which 8 bytes are there: the walk used to call that complete and put
/// the transport header 2 KiB past the end.
#[test]
fn an_extension_header_longer_than_the_input_is_an_incomplete_walk() {
    let mut q = Frame::ipv6(C6, S6).dest_opts(0).udp(40000, 33434, 4).ip_bytes();
    q[40 + 1] = 255; // Hdr Ext Len: (255 + 1) * 8 = 2048 bytes
    let c = Cursor::from_slice(&q);
    let w = walk_ipv6_ext(&c, 40, IPPROTO_DSTOPTS);
    assert!(w.incomplete, "declared length runs past the input");
    assert_eq!(w.protocol, IPPROTO_DSTOPTS);
    assert!(w.l4_off <= q.len(), "transport offset {} past the end {}", w.l4_off, q.len());
    check_ip(&q, 6).unwrap();
    // In an ICMPv6 error the quote is flagged, not decoded from nowhere.
    let f = Frame::ipv6(R6, C6).icmp_error(1, 4, &q).bytes();
    let ev = event(&f);
    assert_ne!(ev.inner.have & have::EXT_WALK_INCOMPLETE, 0);
    assert_eq!(ev.inner.have & have::PORTS, 0);
    assert_ne!(ev.flags & flags::QUOTE_TRUNCATED, 0);
    check_frame(&f).unwrap();
    // The same header with its full length present walks to UDP.
    let ok = Frame::ipv6(C6, S6).dest_opts(3).udp(40000, 33434, 4).ip_bytes();
    let w = walk_ipv6_ext(&Cursor::from_slice(&ok), 40, IPPROTO_DSTOPTS);
    assert!(!w.incomplete);
    assert_eq!((w.protocol, w.l4_off), (IPPROTO_UDP, 40 + 32));
}

/// On the outer packet too: an extension header past the payload length
/// (in the padding) is not walked.
#[test]
fn the_outer_walk_stays_inside_the_payload_length() {
    let mut f = Frame::ipv6(R6, C6).dest_opts(0).tcp(Tcp::new(1, 2)).bytes();
    let l3 = 14;
    // Payload length 8: only the options header is in the packet.
    f[l3 + 4..l3 + 6].copy_from_slice(&8u16.to_be_bytes());
    let (outer, _) = parse_frame(&f);
    let o = outer.unwrap();
    assert_eq!((o.protocol, o.l4_off), (IPPROTO_TCP, l3 + 48));
    f[l3 + 4..l3 + 6].copy_from_slice(&4u16.to_be_bytes());
    let o = parse_frame(&f).0.unwrap();
    assert_eq!(o.protocol, IPPROTO_DSTOPTS, "the header is cut by the payload length");
    check_frame(&f).unwrap();
}

#[test]
fn lengths_that_do_not_fit_are_errors() {
    let big = Frame::ipv4(C4, S4).udp(1, 2, 65_536);
    assert!(big.try_bytes().is_err(), "a 65,564-byte IPv4 packet cannot be built");
    let fits = Frame::ipv4(C4, S4).udp(1, 2, 65_535 - 28);
    assert_eq!(fits.try_ip_bytes().unwrap().len(), 65_535);
    let v6 = Frame::ipv6(C6, S6).raw(59, &vec![0; 65_536]);
    assert!(v6.try_ip_bytes().is_err());
    let r = std::panic::catch_unwind(|| Frame::ipv4(C4, S4).udp(1, 2, 70_000).bytes());
    assert!(r.is_err(), "bytes() refuses loudly instead of cutting the length");
}
