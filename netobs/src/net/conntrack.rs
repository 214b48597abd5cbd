//! Undoing NAT: which original flow does a translated packet belong to?
//!
//! An ICMP error that reaches a NAT gateway from outside quotes the packet
//! as it left, with the gateway's address in place of the client's. The
//! conntrack entry whose *reply* direction matches the quote names the
//! client. Asked of ctnetlink as one `IPCTNL_MSG_CT_GET` by reply tuple
//! (`NLM_F_REQUEST` only: the kernel hashes the tuple and answers with
//! that one entry; never a dump, whatever the table size).
//!
//! netlink-packet-netfilter 0.4 has the ctnetlink attributes this needs
//! (`CTA_TUPLE_ORIG`/`CTA_TUPLE_REPLY` with their IP and protocol tuples),
//! so nothing is hand-built here.

use std::{net::IpAddr, time::Duration};

use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
    conntrack::{ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple},
};
use netlink_sys::protocols::NETLINK_NETFILTER;

use super::nl::{self, Kind, NlError};

/// The original (pre-NAT) endpoints of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Original {
    pub src: IpAddr,
    pub src_port: Option<u16>,
    pub dst: IpAddr,
    pub dst_port: Option<u16>,
}

/// The transport protocols whose conntrack tuples are ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortProto {
    Tcp,
    Udp,
}

impl PortProto {
    /// "tcp" / "udp" as findings name them; other protocols have no ports
    /// to look up by.
    pub fn from_name(name: &str) -> Option<PortProto> {
        match name {
            "tcp" => Some(PortProto::Tcp),
            "udp" => Some(PortProto::Udp),
            _ => None,
        }
    }

    fn conntrack(self) -> Protocol {
        match self {
            PortProto::Tcp => Protocol::Tcp,
            PortProto::Udp => Protocol::Udp,
        }
    }
}

/// A packet that left this host as `src:sport -> dst:dport` (after NAT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    pub proto: PortProto,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

/// The `IPCTNL_MSG_CT_GET` for the entry whose reply direction is the
/// answer to `sent`: `dst:dport -> src:sport`.
pub fn get_by_reply_request(sent: &Sent) -> NetfilterMessage {
    let family = if sent.src.is_ipv4() { NetfilterProtoFamily::IPv4 } else { NetfilterProtoFamily::IPv6 };
    let reply = vec![
        Tuple::Ip(vec![IPTuple::SourceAddress(sent.dst), IPTuple::DestinationAddress(sent.src)]),
        Tuple::Proto(vec![
            ProtoTuple::Protocol(sent.proto.conntrack()),
            ProtoTuple::SourcePort(sent.dport),
            ProtoTuple::DestinationPort(sent.sport),
        ]),
    ];
    NetfilterMessage::new(
        NetfilterHeader::new(family, 0, 0),
        ConntrackMessage::Get(vec![ConntrackAttribute::CtaTupleReply(reply)]),
    )
}

/// The original-direction tuple of a conntrack entry message.
pub fn parse_original(msg: &NetfilterMessage) -> Option<Original> {
    let NetfilterMessageInner::Conntrack(ct) = &msg.inner else { return None };
    let attrs = match ct {
        ConntrackMessage::New(a) | ConntrackMessage::Get(a) => a,
        _ => return None,
    };
    let orig = attrs.iter().find_map(|a| if let ConntrackAttribute::CtaTupleOrig(t) = a { Some(t) } else { None })?;
    let (mut src, mut dst, mut sport, mut dport) = (None, None, None, None);
    for t in orig {
        match t {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(ps) => {
                for p in ps {
                    match p {
                        ProtoTuple::SourcePort(v) => sport = Some(*v),
                        ProtoTuple::DestinationPort(v) => dport = Some(*v),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(Original { src: src?, dst: dst?, src_port: sport, dst_port: dport })
}

/// Finds the conntrack entry for `sent` and returns its original tuple
/// when it differs from what was sent (the packet really was translated).
/// `Ok(None)`: no entry, or an entry that was not translated.
pub fn original_of(sent: &Sent, timeout: Duration) -> Result<Option<Original>, NlError> {
    const WHAT: &str = "conntrack get by reply tuple (IPCTNL_MSG_CT_GET)";
    let answers = match nl::request(WHAT, NETLINK_NETFILTER, get_by_reply_request(sent), Kind::Get, timeout) {
        Ok(a) => a,
        Err(e) if e.is_not_found() => return Ok(None),
        // No conntrack in this kernel or namespace: netfilter cannot have
        // NATed anything, a known "no".
        Err(NlError::Kernel { errno: libc::EOPNOTSUPP | libc::EPROTONOSUPPORT | libc::ENOSYS, .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let orig = answers.iter().find_map(parse_original);
    Ok(orig.filter(|o| o.src != sent.src || o.src_port != Some(sent.sport)))
}
