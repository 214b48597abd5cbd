//! Facts about this host's network namespace: local addresses, interface
//! names and MTUs, initial TTLs.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use anyhow::{Context as _, Result};

/// Addresses configured on this namespace's interfaces (an `RTM_GETADDR`
/// dump).
pub fn local_addresses() -> Result<HashSet<IpAddr>> {
    Ok(route::addresses(nl::TIMEOUT).context("reading this namespace's addresses")?.into_iter().collect())
}

/// Names of this namespace's interfaces except loopback, sorted.
pub fn interfaces() -> Result<Vec<String>> {
    let mut names: Vec<String> = route::links(nl::TIMEOUT)
        .context("listing this namespace's interfaces")?
        .into_iter()
        .map(|l| l.name)
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    Ok(names)
}

/// Interface index -> name for this namespace (loopback included), asked
/// of the kernel over rtnetlink rather than read from /sys/class/net:
/// sysfs shows the namespace it was mounted in, which is not ours after
/// `nsenter --net`. A failed dump is logged and gives an empty map (names
/// then print as `ifN`).
pub fn interface_names() -> HashMap<u32, String> {
    match route::links(nl::TIMEOUT) {
        Ok(links) => links.into_iter().map(|l| (l.index, l.name)).collect(),
        Err(e) => {
            log::warn!("interface names unknown: {e}");
            HashMap::new()
        }
    }
}

/// MTU of an interface of this namespace, `None` when there is no such
/// interface (or the kernel did not answer).
pub fn mtu(iface: &str) -> Option<u32> {
    route::links(nl::TIMEOUT).ok()?.into_iter().find(|l| l.name == iface)?.mtu
}

/// The smallest MTU among this namespace's interfaces except lo: packets at
/// or below it cannot be too big for any egress.
pub fn smallest_mtu() -> Option<u32> {
    route::links(nl::TIMEOUT).ok()?.into_iter().filter(|l| l.name != "lo").filter_map(|l| l.mtu).min()
}

/// The TTL / hop limit this host puts on packets it originates.
pub fn initial_ttl(family: u8) -> u8 {
    let path =
        if family == 4 { "/proc/sys/net/ipv4/ip_default_ttl" } else { "/proc/sys/net/ipv6/conf/default/hop_limit" };
    read_u32(path).and_then(|v| u8::try_from(v).ok()).unwrap_or(64)
}

fn read_u32(path: &str) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads a sysctl-style file, trimmed.
pub fn read_sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

pub mod conntrack;
pub mod nl;
pub mod route;
pub mod sockets;

/// Local TCP ports in LISTEN state (both families), from a sock_diag query
/// for listeners only.
pub fn listening_tcp_ports() -> Result<HashSet<u16>> {
    Ok(sockets::listeners(nl::TIMEOUT)
        .context("listing listening TCP sockets")?
        .into_iter()
        .map(|s| s.local_port)
        .collect())
}

/// The path MTU the kernel's route cache holds for `dst` (what `ip route
/// get` prints as `mtu N` after a frag-needed / Packet Too Big was
/// accepted): `Ok(None)` when the route carries none.
pub fn cached_pmtu(dst: IpAddr, timeout: std::time::Duration) -> Result<Option<u32>, nl::NlError> {
    Ok(route::route_get(dst, timeout)?.mtu)
}

#[cfg(test)]
mod tests;
