//! Facts about this host's network namespace: local addresses, interface
//! names and MTUs, initial TTLs.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use anyhow::{Context as _, Result};

/// Addresses configured on this namespace's interfaces.
pub fn local_addresses() -> Result<HashSet<IpAddr>> {
    let mut out = HashSet::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getifaddrs");
    }
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: list node from getifaddrs.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr of the family it says.
            let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
            if family == libc::AF_INET {
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.insert(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()));
            } else if family == libc::AF_INET6 {
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.insert(IpAddr::from(sin6.sin6_addr.s6_addr));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: allocated by getifaddrs above.
    unsafe { libc::freeifaddrs(ifap) };
    Ok(out)
}

/// Names of this namespace's interfaces except loopback, sorted.
pub fn interfaces() -> Result<Vec<String>> {
    let mut names: Vec<String> = interface_index()?.into_values().filter(|n| n != "lo").collect();
    names.sort();
    Ok(names)
}

/// Interface index -> name for this namespace (loopback included).
pub fn interface_names() -> HashMap<u32, String> {
    interface_index().unwrap_or_default()
}

/// Index -> name of every interface, asked of the kernel (netlink, through
/// `if_nameindex`) rather than read from /sys/class/net: sysfs shows the
/// namespace it was mounted in, which is not ours after `nsenter --net`.
fn interface_index() -> Result<HashMap<u32, String>> {
    // SAFETY: if_nameindex returns an array ended by a zero entry, freed below.
    let list = unsafe { libc::if_nameindex() };
    if list.is_null() {
        return Err(std::io::Error::last_os_error()).context("listing interfaces (if_nameindex)");
    }
    let mut out = HashMap::new();
    let mut cur = list;
    loop {
        // SAFETY: within the array, up to and including its end marker.
        let entry = unsafe { &*cur };
        if entry.if_index == 0 || entry.if_name.is_null() {
            break;
        }
        // SAFETY: a NUL-terminated name owned by the array.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.if_name) }.to_string_lossy().into_owned();
        out.insert(entry.if_index, name);
        // SAFETY: the end marker has not been reached.
        cur = unsafe { cur.add(1) };
    }
    // SAFETY: allocated by if_nameindex above.
    unsafe { libc::if_freenameindex(list) };
    Ok(out)
}

/// MTU of an interface (SIOCGIFMTU, answered for this namespace).
pub fn mtu(iface: &str) -> Option<u32> {
    let name = iface.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &b) in req.ifr_name.iter_mut().zip(name) {
        *dst = b as libc::c_char;
    }
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).ok()?;
    use std::os::fd::AsRawFd as _;
    // SAFETY: SIOCGIFMTU reads ifr_name and writes ifr_mtu of a valid ifreq.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
    if rc != 0 {
        return None;
    }
    // SAFETY: the kernel filled the mtu member of the union.
    u32::try_from(unsafe { req.ifr_ifru.ifru_mtu }).ok()
}

/// The smallest MTU among this namespace's interfaces except lo: packets at
/// or below it cannot be too big for any egress.
pub fn smallest_mtu() -> Option<u32> {
    interfaces().ok()?.iter().filter_map(|n| mtu(n)).min()
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
pub mod sockets;

/// Local TCP ports in LISTEN state (both families).
pub fn listening_tcp_ports() -> Result<HashSet<u16>> {
    Ok(sockets::tcp_sockets()?
        .into_iter()
        .filter(|s| s.state == sockets::TcpState::Listen)
        .map(|s| s.local_port)
        .collect())
}

/// The path MTU the kernel's route cache holds for `dst` (what `ip route
/// get` prints as `mtu N` after a frag-needed / Packet Too Big was
/// accepted), or `None`.
pub fn cached_pmtu(dst: std::net::IpAddr) -> Option<u32> {
    let out = std::process::Command::new("ip").args(["-o", "route", "get", &dst.to_string()]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    parse_route_mtu(&String::from_utf8_lossy(&out.stdout))
}

/// `... cache expires 598sec mtu 1400` -> 1400.
pub fn parse_route_mtu(line: &str) -> Option<u32> {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == "mtu" {
            return words.next().and_then(|v| v.parse().ok());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_mtu() {
        assert_eq!(
            parse_route_mtu(
                "198.18.3.1 via 198.18.1.254 dev eth0 src 198.18.1.1 uid 0 \\    cache expires 597sec mtu 1400"
            ),
            Some(1400)
        );
        assert_eq!(parse_route_mtu("198.18.3.1 via 198.18.1.254 dev eth0 src 198.18.1.1 uid 0 \\    cache"), None);
        assert_eq!(parse_route_mtu("mtu"), None);
        assert_eq!(parse_route_mtu("mtu lock 1280"), None);
    }
}
