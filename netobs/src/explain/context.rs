//! What this host knows that the packet does not say: its own addresses,
//! the TTL it sends with, interface names, and which ports it listens on.
//! All read over netlink for the caller's network namespace.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use anyhow::Result;

/// Host facts used to explain events; refreshed now and then.
#[derive(Clone, Debug, Default)]
pub struct HostContext {
    pub local_addrs: HashSet<IpAddr>,
    pub initial_ttl_v4: u8,
    pub initial_ttl_v6: u8,
    pub ifnames: HashMap<u32, String>,
    /// Local listening TCP ports (a sock_diag query for listeners only),
    /// for "return traffic".
    pub listening_tcp: HashSet<u16>,
    /// False when the listener query failed: an empty `listening_tcp` then
    /// means "unknown", not "none", and findings say so.
    pub listeners_known: bool,
}

impl HostContext {
    /// Reads the current namespace's facts. The local addresses are
    /// required (every direction depends on them); a failed listener or
    /// interface query is logged and recorded as unknown.
    pub fn discover() -> Result<HostContext> {
        let (listening_tcp, listeners_known) = match crate::net::listening_tcp_ports() {
            Ok(ports) => (ports, true),
            Err(e) => {
                log::warn!("{e:#}: listening ports unknown until the next refresh");
                (HashSet::new(), false)
            }
        };
        Ok(HostContext {
            local_addrs: crate::net::local_addresses()?,
            initial_ttl_v4: crate::net::initial_ttl(4),
            initial_ttl_v6: crate::net::initial_ttl(6),
            ifnames: crate::net::interface_names(),
            listening_tcp,
            listeners_known,
        })
    }

    pub fn is_local(&self, addr: &IpAddr) -> bool {
        self.local_addrs.contains(addr)
    }

    pub fn initial_ttl(&self, family: u8) -> u8 {
        if family == 4 { self.initial_ttl_v4 } else { self.initial_ttl_v6 }
    }

    /// The interface's name; the kernel's "no counter slot" bucket
    /// ([`netobs_common::counters::OTHER_IFINDEX`]) is `other`.
    pub fn ifname(&self, ifindex: u32) -> String {
        if ifindex == netobs_common::counters::OTHER_IFINDEX {
            return "other".to_string();
        }
        self.ifnames.get(&ifindex).cloned().unwrap_or_else(|| format!("if{ifindex}"))
    }
}

#[cfg(test)]
mod tests {
    use netobs_common::{
        Event, PacketInfo,
        event::{have, kind},
    };

    use super::*;
    use crate::explain::{Direction, Fact, Finding};

    /// A TCP data segment from our 198.18.1.254:8080, rejected by 198.18.2.1.
    fn rejected_data_segment() -> Event {
        let mut outer_src = [0u8; 16];
        outer_src[..4].copy_from_slice(&[198, 18, 2, 1]);
        let mut inner_src = [0u8; 16];
        inner_src[..4].copy_from_slice(&[198, 18, 1, 254]);
        Event {
            kind: kind::ICMP_ERROR,
            outer_family: 4,
            icmp_type: 3,
            icmp_code: 13,
            outer_src,
            outer_ttl: 63,
            inner: PacketInfo {
                family: 4,
                src: inner_src,
                protocol: 6,
                ttl: 63,
                src_port: 8080,
                dst_port: 50000,
                tcp_flags: 0x18,
                have: have::IP | have::PORTS | have::TCP_FLAGS,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn ctx(listeners: Option<&[u16]>) -> HostContext {
        HostContext {
            local_addrs: ["198.18.1.254".parse().expect("ip")].into_iter().collect(),
            initial_ttl_v4: 64,
            initial_ttl_v6: 64,
            listening_tcp: listeners.unwrap_or_default().iter().copied().collect(),
            listeners_known: listeners.is_some(),
            ..HostContext::default()
        }
    }

    #[test]
    fn unknown_listeners_are_said_not_guessed() {
        let ev = rejected_data_segment();
        let known_listener = Finding::from_event(&ev, &ctx(Some(&[8080]))).expect("finding");
        assert_eq!(known_listener.direction, Direction::Return);
        assert!(known_listener.unknown.is_empty());

        let known_none = Finding::from_event(&ev, &ctx(Some(&[]))).expect("finding");
        assert_eq!(known_none.direction, Direction::Outgoing);
        assert!(known_none.unknown.is_empty());

        // The listener query failed: "outgoing" is only a guess, and says so.
        let unknown = Finding::from_event(&ev, &ctx(None)).expect("finding");
        assert_eq!(unknown.unknown, vec![Fact::Listeners]);
        let json = serde_json::to_value(&unknown).expect("json");
        assert_eq!(json["unknown"], serde_json::json!(["listeners"]));
    }

    #[test]
    fn discovers_this_namespace() {
        let c = HostContext::discover().expect("netlink answers in our own namespace");
        assert!(c.is_local(&"127.0.0.1".parse().expect("ip")), "{:?}", c.local_addrs);
        assert!(c.listeners_known, "the listener query works here");
        assert_eq!(c.ifname(1), "lo");
    }
}
