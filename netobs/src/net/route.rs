//! rtnetlink: one route lookup, the link and address tables.
//!
//! All answers are for the caller's network namespace: the netlink socket
//! is opened in it (unlike /sys/class/net, which shows the namespace sysfs
//! was mounted in, not ours after `nsenter --net`).

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
    link::{LinkAttribute, LinkMessage},
    route::{RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric},
};
use netlink_sys::protocols::NETLINK_ROUTE;

use super::nl::{self, Kind, NlError};

/// What `ip route get DST` says about one destination, as far as netobs
/// cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteGet {
    /// `RTAX_MTU` of the answer: the path MTU the route cache holds after
    /// a frag-needed / Packet Too Big was accepted (or an MTU configured on
    /// the route itself), `None` when the route carries none.
    pub mtu: Option<u32>,
    /// The egress interface.
    pub oif: Option<u32>,
    /// `RTM_F_CLONED`: the answer is the resolved (cached) route, not the
    /// FIB entry.
    pub cloned: bool,
}

/// The `RTM_GETROUTE` request `ip route get DST` sends: one destination,
/// a full-length prefix, no `RTM_F_FIB_MATCH` (so the kernel answers with
/// the resolved route, nexthop exceptions and their PMTU included) and
/// `NLM_F_REQUEST` only, no dump.
pub fn route_get_request(dst: IpAddr) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let (family, len) = match dst {
        IpAddr::V4(_) => (AddressFamily::Inet, 32),
        IpAddr::V6(_) => (AddressFamily::Inet6, 128),
    };
    msg.header.address_family = family;
    msg.header.destination_prefix_length = len;
    msg.attributes.push(RouteAttribute::Destination(RouteAddress::from(dst)));
    msg
}

/// Reads the parts of a `RTM_NEWROUTE` answer netobs uses.
pub fn parse_route_get(msg: &RouteMessage) -> RouteGet {
    let mut out = RouteGet { mtu: None, oif: None, cloned: msg.header.flags.contains(RouteFlags::Cloned) };
    for a in &msg.attributes {
        match a {
            RouteAttribute::Metrics(metrics) => {
                out.mtu = metrics.iter().find_map(|m| if let RouteMetric::Mtu(v) = m { Some(*v) } else { None });
            }
            RouteAttribute::Oif(i) => out.oif = Some(*i),
            _ => {}
        }
    }
    out
}

/// Looks up the route to `dst` (what `ip route get DST` prints).
pub fn route_get(dst: IpAddr, timeout: Duration) -> Result<RouteGet, NlError> {
    let answers = nl::request(
        "route lookup (RTM_GETROUTE)",
        NETLINK_ROUTE,
        RouteNetlinkMessage::GetRoute(route_get_request(dst)),
        Kind::Get,
        timeout,
    )?;
    answers
        .iter()
        .find_map(|m| if let RouteNetlinkMessage::NewRoute(r) = m { Some(parse_route_get(r)) } else { None })
        .ok_or(NlError::Decode { what: "route lookup (RTM_GETROUTE)", detail: "no route in the answer".into() })
}

/// One network interface of this namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: Option<u32>,
}

/// Reads a `RTM_NEWLINK` message.
pub fn parse_link(msg: &LinkMessage) -> Option<Link> {
    let name =
        msg.attributes.iter().find_map(|a| if let LinkAttribute::IfName(n) = a { Some(n.clone()) } else { None })?;
    let mtu = msg.attributes.iter().find_map(|a| if let LinkAttribute::Mtu(m) = a { Some(*m) } else { None });
    Some(Link { index: msg.header.index, name, mtu })
}

/// Every interface of this namespace (an `RTM_GETLINK` dump).
pub fn links(timeout: Duration) -> Result<Vec<Link>, NlError> {
    let answers = nl::request(
        "listing interfaces (RTM_GETLINK)",
        NETLINK_ROUTE,
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        Kind::Dump,
        timeout,
    )?;
    Ok(answers
        .iter()
        .filter_map(|m| if let RouteNetlinkMessage::NewLink(l) = m { parse_link(l) } else { None })
        .collect())
}

/// The local address of a `RTM_NEWADDR` message: `IFA_LOCAL` when present
/// (on point-to-point links `IFA_ADDRESS` is the peer), else `IFA_ADDRESS`.
pub fn parse_address(msg: &AddressMessage) -> Option<IpAddr> {
    let local = msg.attributes.iter().find_map(|a| if let AddressAttribute::Local(ip) = a { Some(*ip) } else { None });
    local.or_else(|| {
        msg.attributes.iter().find_map(|a| if let AddressAttribute::Address(ip) = a { Some(*ip) } else { None })
    })
}

/// Every address configured in this namespace, both families (an
/// `RTM_GETADDR` dump).
pub fn addresses(timeout: Duration) -> Result<Vec<IpAddr>, NlError> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut req = AddressMessage::default();
        req.header.family = family;
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let answers = nl::request(
            "listing addresses (RTM_GETADDR)",
            NETLINK_ROUTE,
            RouteNetlinkMessage::GetAddress(req),
            Kind::Dump,
            left,
        )?;
        out.extend(
            answers
                .iter()
                .filter_map(|m| if let RouteNetlinkMessage::NewAddress(a) = m { parse_address(a) } else { None }),
        );
    }
    Ok(out)
}
