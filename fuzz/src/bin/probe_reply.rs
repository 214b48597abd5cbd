//! fuzz-seeds: probe_reply
//! `probe/packet.rs`: what a raw socket hands the prober (an IPv4 packet,
//! an ICMPv6 message, a TCP segment). The flow is taken from the input's
//! own quote, so matching replies are common, and every reply returned
//! must say what the raw bytes say: sender, TTLs, token, MTU.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use netobs_common::check::expected_ip;
use netobs_fuzz::packet::{Flow, Proto, Reply, ReplyKind, parse_icmp, parse_ipv4, parse_tcp};

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// A flow that the quote in `msg` (an ICMP message) would match.
fn flow_for(msg: &[u8], family: u8, proto: Proto) -> Flow {
    let quote = msg.get(8..).unwrap_or(&[]);
    let (q, _) = expected_ip(quote, family);
    let dst = if family == 4 {
        IpAddr::V4(Ipv4Addr::new(q.dst[0], q.dst[1], q.dst[2], q.dst[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(q.dst))
    };
    let src = if family == 4 { IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)) } else { IpAddr::V6(Ipv6Addr::LOCALHOST) };
    Flow { src, dst, proto, src_port: q.src_port, dst_port: q.dst_port, icmp_id: q.src_port, seq_base: 0x1000_0000 }
}

fn check_icmp_reply(r: &Reply, msg: &[u8], family: u8, flow: &Flow) {
    match r.kind {
        ReplyKind::EchoReply => {
            assert_eq!(Some(r.token), be16(msg, 6), "echo token is the sequence");
            assert_eq!(r.from, flow.dst);
        }
        ReplyKind::IcmpError { icmp_type, code } => {
            assert_eq!((icmp_type, code), (msg[0], msg[1]));
            let quote = &msg[8..];
            let (q, l4) = expected_ip(quote, family);
            assert_eq!(r.quoted_ttl, Some(q.ttl));
            assert_eq!(r.quoted_len, Some(q.total_len));
            let token = match (family, flow.proto) {
                (4, _) => Some(q.ip_id as u16),
                (_, Proto::Tcp) => Some(q.seq.wrapping_sub(flow.seq_base) as u16),
                (_, Proto::Icmp) => Some(q.seq as u16),
                (_, Proto::Udp) => l4.and_then(|o| be16(quote, o + 8)),
            };
            assert_eq!(Some(r.token), token, "token from the raw quote");
            let mtu = match (family, icmp_type, code) {
                (4, 3, 4) => be16(msg, 6).map(u32::from),
                (6, 2, _) => Some(u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]])),
                _ => None,
            };
            assert_eq!(r.mtu, mtu);
        }
        ReplyKind::SynAck { .. } | ReplyKind::Rst => panic!("an ICMP message parsed as TCP"),
    }
}

fuzz_target!(|input: &[u8]| {
    let [sel, data @ ..] = input else { return };
    let proto = [Proto::Udp, Proto::Tcp, Proto::Icmp][usize::from(*sel % 3)];
    if sel & 0x10 == 0 {
        // IPv4, header first.
        let ihl = data.first().map_or(0, |b| usize::from(b & 15) * 4);
        let body_at = ihl.max(20);
        let msg = data.get(body_at..).unwrap_or(&[]);
        let flow = flow_for(msg, 4, proto);
        if let Some(r) = parse_ipv4(&flow, data) {
            assert!(data[0] >> 4 == 4 && ihl >= 20, "accepted a bad IPv4 header");
            let total = usize::from(be16(data, 2).unwrap_or(0));
            assert!(total >= ihl, "accepted a total length below the header");
            let body = &data[ihl..data.len().min(total)];
            assert_eq!(r.from, IpAddr::V4(Ipv4Addr::new(data[12], data[13], data[14], data[15])));
            assert_eq!(r.outer_ttl, data[8]);
            match r.kind {
                ReplyKind::SynAck { .. } | ReplyKind::Rst => assert_eq!(data[9], 6),
                _ => {
                    assert_eq!(data[9], 1);
                    check_icmp_reply(&r, body, 4, &flow);
                }
            }
        }
    } else if sel & 0x20 == 0 {
        // ICMPv6 message, as an ICMPv6 raw socket returns it.
        let flow = flow_for(data, 6, proto);
        if let Some(r) = parse_icmp(&flow, data, flow.dst, 7) {
            assert_eq!(r.outer_ttl, 7);
            check_icmp_reply(&r, data, 6, &flow);
        }
    } else {
        // A TCP segment from the destination.
        let flow = Flow {
            src: IpAddr::V6(Ipv6Addr::LOCALHOST),
            dst: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            proto: Proto::Tcp,
            src_port: be16(data, 2).unwrap_or(0),
            dst_port: be16(data, 0).unwrap_or(0),
            icmp_id: 0,
            seq_base: 7,
        };
        if let Some(r) = parse_tcp(&flow, data, flow.dst, 1) {
            let flags = data[13];
            let ack = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
            assert_eq!(r.token, ack.wrapping_sub(8) as u16);
            assert!(usize::from(data[12] >> 4) * 4 >= 20);
            match r.kind {
                ReplyKind::Rst => assert_ne!(flags & 4, 0),
                ReplyKind::SynAck { .. } => assert_eq!(flags & 0x12, 0x12),
                _ => panic!("a TCP segment parsed as ICMP"),
            }
        }
    }
});
