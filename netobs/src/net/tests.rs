//! Netlink requests and answers against bytes captured from the kernel
//! (6.18, in a lab namespace): the requests were sent by a Python
//! AF_NETLINK client and accepted, the answers are what came back.

use std::net::IpAddr;

use netlink_packet_netfilter::NetfilterMessage;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_sock_diag::{SockDiagMessage, inet::StateFlags};

use super::{
    conntrack::{self, Original, PortProto, Sent},
    nl::{self, Decoded, Kind, NlError},
    route, sockets,
};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// `ip route get 198.18.4.1` after a frag-needed announced MTU 1400:
/// `cache expires 599sec mtu 1400`.
const ROUTE_CACHED: &str = "7c0000001800000007000000a33f000002200000fe0000010002000008000f00fe00000008000100c6120401\
     080004006400000008000700c612010108000500c61201fe0c0008000800020078050000080019000000000024000c00\
     020000001700000014ea00000000000000000000000000000000000000000000";
/// `ip route get 198.18.1.254` (on-link, nothing cached).
const ROUTE_PLAIN: &str = "680000001800000007000000e93f000002200000fe0000010002000008000f00fe00000008000100c61201fe\
     080004006400000008000700c6120101080019000000000024000c00020000000000000000000000000000000000000000\
     0000000000000000000000";

#[test]
fn route_get_request_is_what_ip_route_get_sends() {
    let bytes = nl::encode(RouteNetlinkMessage::GetRoute(route::route_get_request(ip("198.18.4.1"))), Kind::Get, 7);
    // nlmsghdr (RTM_GETROUTE, NLM_F_REQUEST, seq 7), rtmsg (AF_INET,
    // dst_len 32, no RTM_F_FIB_MATCH), RTA_DST 198.18.4.1.
    assert_eq!(bytes, hex("24000000 1a00 0100 07000000 00000000 02200000 00000000 00000000 08000100 c6120401"));
    let v6 = nl::encode(RouteNetlinkMessage::GetRoute(route::route_get_request(ip("2001:db8:4::1"))), Kind::Get, 1);
    assert_eq!(v6[16], 10, "AF_INET6");
    assert_eq!(v6[17], 128, "full-length destination prefix");
}

#[test]
fn route_cache_mtu_is_read_from_the_answer() {
    let Decoded::Done(msgs) =
        nl::decode::<RouteNetlinkMessage>("t", &hex(ROUTE_CACHED), 7, Kind::Get).expect("decodes")
    else {
        panic!("a get is answered by one message")
    };
    let RouteNetlinkMessage::NewRoute(r) = &msgs[0] else { panic!("{msgs:?}") };
    let got = route::parse_route_get(r);
    assert_eq!(got, route::RouteGet { mtu: Some(1400), oif: Some(100), cloned: true });

    let Decoded::Done(msgs) = nl::decode::<RouteNetlinkMessage>("t", &hex(ROUTE_PLAIN), 7, Kind::Get).expect("decodes")
    else {
        panic!()
    };
    let RouteNetlinkMessage::NewRoute(r) = &msgs[0] else { panic!("{msgs:?}") };
    assert_eq!(route::parse_route_get(r).mtu, None, "no cached PMTU: no mtu");
    // An answer for another request is not ours.
    assert_eq!(
        nl::decode::<RouteNetlinkMessage>("t", &hex(ROUTE_PLAIN), 8, Kind::Get).expect("decodes"),
        Decoded::More(vec![])
    );
}

fn sent() -> Sent {
    Sent { proto: PortProto::Udp, src: ip("198.18.1.1"), sport: 40000, dst: ip("198.18.4.1"), dport: 9999 }
}

#[test]
fn conntrack_get_asks_for_the_reply_tuple_only() {
    let bytes = nl::encode(conntrack::get_by_reply_request(&sent()), Kind::Get, 9);
    // IPCTNL_MSG_CT_GET (subsys 1, msg 1), NLM_F_REQUEST only (no dump),
    // nfgenmsg AF_INET, CTA_TUPLE_REPLY { IP 198.18.4.1 -> 198.18.1.1,
    // PROTO udp 9999 -> 40000 }: the bytes the kernel accepted.
    assert_eq!(
        bytes,
        hex("48000000 0101 0100 09000000 00000000 02000000 \
             34000280 14000180 08000100c6120401 08000200c6120101 \
             1c000280 0500010011000000 06000200270f0000 060003009c400000")
    );
}

/// The kernel's answer to the request above: an IPCTNL_MSG_CT_NEW with
/// the original tuple 198.18.1.1:40000 -> 198.18.4.1:9999 first.
const CT_ANSWER: &str = "a400000000010200090000008045000002000000340001801400018008000100c612010108000200c612040\
     11c0002800500010011000000060002009c40000006000300270f0000340002801400018008000100c612040108000200c61\
     201011c000280050001001100000006000200270f0000060003009c4000000800030000000008080008000000000008000c0\
     0c373a2d408000b00000000020800070000000017";
/// The same request for a tuple with no entry: NLMSG_ERROR -ENOENT.
const CT_ENOENT: &str = "5c000000020000000a00000080450000feffffff48000000010101000a0000000000000002000000340002801\
     400018008000100c612040108000200c61201011c000280050001001100000006000200270f0000060003009c410000";

#[test]
fn conntrack_answer_names_the_original_tuple() {
    let Decoded::Done(msgs) = nl::decode::<NetfilterMessage>("t", &hex(CT_ANSWER), 9, Kind::Get).expect("decodes")
    else {
        panic!()
    };
    let o = conntrack::parse_original(&msgs[0]).expect("original tuple");
    assert_eq!(
        o,
        Original { src: ip("198.18.1.1"), src_port: Some(40000), dst: ip("198.18.4.1"), dst_port: Some(9999) }
    );

    let err = nl::decode::<NetfilterMessage>("t", &hex(CT_ENOENT), 10, Kind::Get).expect_err("an error answer");
    assert!(matches!(err, NlError::Kernel { errno, .. } if errno == libc::ENOENT), "{err:?}");
    assert!(err.is_not_found());
    assert!(!NlError::Timeout { what: "t", after: nl::TIMEOUT }.is_not_found());
}

#[test]
fn sock_diag_requests_are_targeted() {
    // One socket by exact tuple, NLM_F_REQUEST only, INET_DIAG_NOCOOKIE.
    let one = nl::encode(sockets::by_tuple_request(ip("198.18.1.1"), 41000, ip("198.18.1.1"), 65000), Kind::Get, 5);
    assert_eq!(
        one,
        hex("48000000 1400 0100 05000000 00000000 02060000 fe0f0000 a028fde8 \
             c6120101000000000000000000000000 c6120101000000000000000000000000 00000000 ffffffffffffffff")
    );
    // Listeners: a dump, but the kernel filters by state (TCPF_LISTEN).
    let listen = nl::encode(sockets::by_state_request(2, StateFlags::LISTEN), Kind::Dump, 6);
    assert_eq!(&listen[4..8], &hex("1400 0103")[..], "SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST|NLM_F_DUMP");
    assert_eq!(&listen[20..24], &hex("00040000")[..], "states: LISTEN only");
}

/// Answer to the exact-tuple request: ESTABLISHED 198.18.1.1:41000 ->
/// 198.18.1.1:65000.
const SD_ONE: &str = "7c0000001400000005000000d547000002010000a028fde8c6120101000000000000000000000000c6120101000\
     0000000000000000000000000000019110000000000000000000000000000000000000000000084550200050008000000000008000f0\
     0000000000c00150001000000000000000600160052000000";
/// One message of the listener dump: LISTEN on :65000.
const SD_LISTEN: &str = "7c0000001400020006000000d5470000020a0000fde80000c612010100000000000000000000000000000000\
     000000000000000000000000000000001a110000000000000000000001000000040000000000000083550200050008000000000008000f0\
     0000000000c00150001000000000000000600160052000000";

#[test]
fn sock_diag_answers_decode() {
    let Decoded::Done(msgs) = nl::decode::<SockDiagMessage>("t", &hex(SD_ONE), 5, Kind::Get).expect("decodes") else {
        panic!()
    };
    let s = sockets::parse_socket(&msgs[0]).expect("a socket");
    assert_eq!(s.state, sockets::TcpState::Established);
    assert_eq!((s.local, s.local_port, s.remote, s.remote_port), (ip("198.18.1.1"), 41000, ip("198.18.1.1"), 65000));

    let Decoded::More(msgs) = nl::decode::<SockDiagMessage>("t", &hex(SD_LISTEN), 6, Kind::Dump).expect("decodes")
    else {
        panic!("a dump goes on until NLMSG_DONE")
    };
    let s = sockets::parse_socket(&msgs[0]).expect("a socket");
    assert_eq!((s.state, s.local_port), (sockets::TcpState::Listen, 65000));
    // A truncated datagram is an error, not a panic.
    assert!(nl::decode::<SockDiagMessage>("t", &hex(SD_LISTEN)[..30], 6, Kind::Dump).is_err());
}

#[test]
fn links_and_addresses_come_from_this_namespace() {
    let links = route::links(nl::TIMEOUT).expect("RTM_GETLINK dump");
    let lo = links.iter().find(|l| l.name == "lo").expect("lo is in every namespace");
    assert_eq!(lo.index, 1);
    assert!(lo.mtu.is_some());
    let addrs = route::addresses(nl::TIMEOUT).expect("RTM_GETADDR dump");
    assert!(addrs.contains(&ip("127.0.0.1")), "{addrs:?}");
}
