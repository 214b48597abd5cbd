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

    pub fn ifname(&self, ifindex: u32) -> String {
        self.ifnames.get(&ifindex).cloned().unwrap_or_else(|| format!("if{ifindex}"))
    }
}
