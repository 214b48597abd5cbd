//! RFC 4884 extensions of tcpdump's own test captures, checked against
//! what tcpdump printed for them (`tests/data/corpus/*.out`, copied from
//! tcpdump's test suite with its LICENSE): MPLS labels (RFC 4950) and
//! interface information (RFC 5837). Both the host-side decoder
//! (`ext::locate` + views) and the datapath's copy into the event
//! (`ext::capture`, run here over the same bytes) are checked.

// Test-only helpers outside #[test] functions: a failed expectation is a
// failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{collections::BTreeMap, path::PathBuf};

use netobs_common::{
    Cursor, Event,
    event::flags,
    ext::{self, ChecksumState, ExtHeader, ExtHeaderRepr, IfAddr, IfRole, InterfaceInfo, InterfaceInfoRepr, Layout},
    parse::{IcmpOutcome, parse_icmp_error, parse_outer},
};
use pcap_file::{DataLink, pcap::PcapReader};

fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/corpus").join(name)
}

/// Every frame of a pcap file with its link type.
fn frames(name: &str) -> (DataLink, Vec<Vec<u8>>) {
    let f = std::fs::File::open(corpus(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut r = PcapReader::new(f).expect("pcap header");
    let link = r.header().datalink;
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.expect("pcap record").data.into_owned());
    }
    (link, out)
}

/// The IPv4 packet of a PPP (4-byte header, protocol 0x0021) or Ethernet
/// frame; `None` for anything else (the MPLS-encapsulated probes).
fn ipv4(link: DataLink, frame: &[u8]) -> Option<&[u8]> {
    match link {
        DataLink::PPP if frame.get(2..4) == Some(&[0x00, 0x21]) => frame.get(4..),
        DataLink::ETHERNET if frame.get(12..14) == Some(&[0x08, 0x00]) => frame.get(14..),
        _ => None,
    }
}

/// The ICMP message of an IPv4 packet, to the end of the IP packet (or
/// of the capture: `complete` false).
fn icmp(ip: &[u8]) -> Option<(&[u8], bool)> {
    if ip.get(9) != Some(&1) {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let complete = total <= ip.len();
    Some((ip.get(ihl..total.min(ip.len()))?, complete))
}

/// The same IPv4 packet behind an Ethernet header, as XDP sees it.
fn as_ethernet(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 0x08, 0x00];
    f.extend_from_slice(ip);
    f
}

fn datapath_event(ip: &[u8]) -> Event {
    let f = as_ethernet(ip);
    let c = Cursor::from_slice(&f);
    let outer = parse_outer(&c).expect("outer");
    let mut ev = Event::default();
    assert_eq!(parse_icmp_error(&c, &outer, &mut ev), IcmpOutcome::Error);
    ev
}

/// tcpdump's records: packet number -> its lines (the first one holds
/// the number and time stamp).
fn tcpdump(name: &str) -> BTreeMap<usize, Vec<String>> {
    let text = std::fs::read_to_string(corpus(name)).expect("tcpdump output");
    let mut out: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut current = 0;
    for line in text.lines() {
        let t = line.trim_start();
        let num = t.split_whitespace().next().and_then(|w| w.parse::<usize>().ok());
        // A record starts with "   N  2004-06-14 ...".
        if let Some(n) =
            num.filter(|_| line.starts_with(' ') && t.split_whitespace().nth(1).is_some_and(|w| w.contains('-')))
        {
            current = n;
        }
        out.entry(current).or_default().push(t.to_string());
    }
    out
}

/// (label, tc, S, ttl) of tcpdump's "label 100704, tc 0, [S], ttl 1".
fn tcpdump_label(line: &str) -> (u32, u8, bool, u8) {
    let field = |key: &str| -> u32 {
        let at = line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len();
        line[at..].split(|c: char| !c.is_ascii_digit()).next().and_then(|d| d.parse().ok()).expect("number")
    };
    (field("label "), field("tc ") as u8, line.contains("[S]"), field("ttl ") as u8)
}

/// Decodes the MPLS entries of one extension structure.
fn labels(bytes: &[u8]) -> Vec<(u32, u8, bool, u8)> {
    let h = ExtHeader::new_checked(bytes).expect("header");
    let mut out = Vec::new();
    for o in h.objects() {
        let o = o.expect("object");
        if o.class_num == ext::class::MPLS_STACK {
            out.extend(ext::mpls_stack(&o).expect("c-type 1").map(|e| (e.label, e.tc, e.bottom, e.ttl)));
        }
    }
    out
}

#[test]
fn mpls_traceroute_labels_match_tcpdump() {
    let (link, frames) = frames("mpls-traceroute.pcap");
    let printed = tcpdump("mpls-traceroute-v.out");
    let mut checked = 0;
    for (i, frame) in frames.iter().enumerate() {
        let record = &printed[&(i + 1)];
        let expected: Vec<_> = record.iter().filter(|l| l.starts_with("label ")).map(|l| tcpdump_label(l)).collect();
        let Some((msg, complete)) = ipv4(link, frame).and_then(icmp) else {
            assert!(!record.iter().any(|l| l.contains("Multi-Part")), "frame {} is not ICMP", i + 1);
            continue;
        };
        assert!(complete);
        let announced = record.iter().any(|l| l.contains("Multi-Part extension"));
        let Some((at, layout)) = ext::locate(4, msg, true) else {
            assert!(!announced, "frame {}: tcpdump found an extension, we did not", i + 1);
            assert_eq!(datapath_event(ipv4(link, frame).unwrap()).ext_len, 0);
            continue;
        };
        assert!(announced, "frame {}: we found an extension, tcpdump did not", i + 1);
        // These routers send the pre-RFC 4884 layout: length 0, byte 128.
        assert_eq!((at, layout), (8 + 128, Layout::Compat), "frame {}", i + 1);
        let header = ExtHeaderRepr::parse(&ExtHeader::new_checked(&msg[at..]).unwrap(), true).unwrap();
        assert_eq!(header.version, 2);
        let cksum = format!("checksum 0x{:04x} (correct)", header.checksum);
        assert!(record.iter().any(|l| l.contains(&cksum)), "frame {}: {cksum} not in {record:?}", i + 1);
        assert_eq!(header.checksum_state, ChecksumState::Correct);
        assert!(!expected.is_empty(), "frame {}: tcpdump printed labels", i + 1);
        assert_eq!(labels(&msg[at..]), expected, "frame {}", i + 1);

        // The datapath copy carries the same bytes.
        let ev = datapath_event(ipv4(link, frame).unwrap());
        assert_eq!(ev.ext_layout(), Some(Layout::Compat));
        assert!(!ev.ext_cut());
        assert_eq!(ev.ext_bytes(), &msg[at..], "frame {}", i + 1);
        assert_eq!(labels(ev.ext_bytes()), expected);
        checked += 1;
    }
    // 12 time exceeded with labels: 100704 (frames 2-6), 102672 (8-12) ...
    let announced = printed.values().filter(|r| r.iter().any(|l| l.contains("Multi-Part extension"))).count();
    assert_eq!(checked, announced);
    assert!(checked >= 6, "{checked}");
}

#[test]
fn rfc5837_interface_information_matches_tcpdump() {
    let (link, frames) = frames("icmp-rfc5837.pcap");
    let printed = tcpdump("icmp-rfc5837.out");
    let record = &printed[&1];
    let after = |prefix: &str| -> String {
        record.iter().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("{prefix}")).trim().to_string()
    };
    assert_eq!(frames.len(), 1);
    let ip = ipv4(link, &frames[0]).expect("ipv4");
    let (msg, complete) = icmp(ip).expect("icmp");
    let (at, layout) = ext::locate(4, msg, complete).expect("extension");
    assert_eq!(layout, Layout::Compat);
    let h = ExtHeader::new_checked(&msg[at..]).unwrap();
    let header = ExtHeaderRepr::parse(&h, complete).unwrap();
    assert!(record.iter().any(|l| l.contains(&format!("checksum 0x{:04x} (correct)", header.checksum))));
    let objects: Vec<_> = h.objects().map(|o| o.expect("object")).collect();
    assert_eq!(objects.len(), 1);
    let o = objects[0];
    assert!(record.iter().any(|l| l.starts_with(&format!(
        "Interface Information Object ({}), Class-Type: {}, length {}",
        o.class_num, o.c_type, o.length
    ))));
    let info = InterfaceInfoRepr::parse(&InterfaceInfo::new(o.payload, o.c_type)).expect("interface info");
    assert_eq!(after("Interface Role:"), "Incoming IP Interface");
    assert_eq!(info.role, IfRole::Incoming);
    assert_eq!(info.if_index.map(|i| i.to_string()), Some(after("Interface Index:")));
    let addr = match info.addr {
        Some(IfAddr::V4(a)) => std::net::Ipv4Addr::from(a).to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(addr, after("IP Address sub-object:"));
    // "Interface Name, length 64: NAME"
    let name_line = after("Interface Name, length ");
    let (len, name) = name_line.split_once(": ").expect("name");
    assert_eq!(len, "64");
    assert_eq!(std::str::from_utf8(info.name.expect("name")).unwrap(), name);
    assert_eq!(info.mtu, None);

    // 84 bytes: the event carries all of it.
    let ev = datapath_event(ip);
    assert_eq!(ev.ext_bytes(), &msg[at..]);
    assert!(!ev.ext_cut());
}

#[test]
fn name_length_zero_is_reported_invalid_like_tcpdump_and_never_read_past() {
    let (link, frames) = frames("icmp_inft_name_length_zero.pcap");
    let printed = tcpdump("icmp_inft_name_length_zero.out");
    assert!(printed[&1].iter().any(|l| l.contains("Interface Name [length 0] (invalid)")));
    let ip = ipv4(link, &frames[0]).expect("ipv4");
    // The IP header claims 33008 bytes; 236 were captured.
    let (msg, complete) = icmp(ip).expect("icmp");
    assert!(!complete);
    let (at, layout) = ext::locate(4, msg, complete).expect("tcpdump decodes it too");
    assert_eq!(layout, Layout::Compat);
    let h = ExtHeader::new_checked(&msg[at..]).unwrap();
    let header = ExtHeaderRepr::parse(&h, complete).unwrap();
    assert_eq!(header.checksum_state, ChecksumState::Unchecked);
    let objects: Vec<_> = h.objects().collect();
    assert_eq!(objects.len(), 1, "a cut object ends the walk");
    let o = objects[0].expect("object header");
    assert!(printed[&1].iter().any(|l| l.contains(&format!("Class-Type: {}, length {}", o.c_type, o.length))));
    assert!(o.cut);
    let r = InterfaceInfoRepr::parse(&InterfaceInfo::new(o.payload, o.c_type));
    assert_eq!(r, Err(ext::Error::BadNameLength(0)));
    assert_eq!(InterfaceInfo::new(o.payload, o.c_type).role(), IfRole::Incoming);

    // The datapath stops at the captured bytes (whole 4-byte words) and
    // says the rest is missing.
    let ev = datapath_event(ip);
    let rest = &msg[at..];
    assert_eq!(ev.ext_len as usize, rest.len() / 4 * 4);
    assert_eq!(ev.ext_bytes(), &rest[..ev.ext_len as usize]);
    assert!(ev.flags & flags::EXT_CUT != 0);
}

#[test]
fn extended_echo_objects_are_not_icmp_error_extensions() {
    // RFC 8335 extended echo request (type 42) with a malformed object of
    // length 6: tcpdump decodes its object; it is no ICMP error, so no
    // extension is located, and its object length is rejected when
    // decoded on purpose.
    let (link, frames) = frames("icmp_ext_oob_poc.pcap");
    let ip = ipv4(link, &frames[0]).expect("ipv4");
    let (msg, _) = icmp(ip).expect("icmp");
    assert_eq!(msg[0], 42);
    assert_eq!(ext::locate(4, msg, true), None);
    let f = as_ethernet(ip);
    let c = Cursor::from_slice(&f);
    let outer = parse_outer(&c).expect("outer");
    let mut ev = Event::default();
    assert_eq!(parse_icmp_error(&c, &outer, &mut ev), IcmpOutcome::NotError);
    assert_eq!(ev.ext_len, 0);
    let h = ExtHeader::new_checked(&msg[8..]).unwrap();
    assert_eq!(h.objects().collect::<Vec<_>>(), [Err(ext::Error::BadObjectLength(6))]);
}
