//! Address policy. The lab must never be able to originate traffic towards
//! real networks, so every address or prefix it configures has to lie in the
//! benchmarking range 198.18.0.0/15 (RFC 2544) or the documentation range
//! 2001:db8::/32 (RFC 3849). Checking here, at the single place addresses
//! enter the lab, turns a typo like `192.168.1.1` into an error instead of a
//! route that could leak.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result, bail, ensure};

/// Whether `ip` is inside 198.18.0.0/15 or 2001:db8::/32.
pub fn is_lab_addr(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 198 && (o[1] & 0xfe) == 18
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0x2001 && s[1] == 0x0db8
        }
    }
}

/// An interface address with prefix length, e.g. `198.18.1.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` (prefix mandatory: interface addresses without
    /// one would silently become /32 or /128 host routes).
    pub fn parse(s: &str) -> Result<Cidr> {
        let (a, p) =
            s.split_once('/').with_context(|| format!("`{s}`: expected ADDRESS/PREFIX, e.g. 198.18.1.1/24"))?;
        let addr: IpAddr = a.parse().with_context(|| format!("`{s}`: `{a}` is not an IP address"))?;
        let prefix: u8 = p.parse().with_context(|| format!("`{s}`: `{p}` is not a prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        ensure!(prefix <= max, "`{s}`: prefix length {prefix} > {max}");
        Ok(Cidr { addr, prefix })
    }

    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Validates an interface address: well formed and inside the lab ranges.
pub(crate) fn check_iface_addr(s: &str) -> Result<Cidr> {
    let c = Cidr::parse(s)?;
    ensure!(is_lab_addr(c.addr), "`{s}` is outside the lab ranges 198.18.0.0/15 and 2001:db8::/32");
    Ok(c)
}

/// Validates a route: `via` must be a lab address and `dest` either
/// `default` or a lab prefix (or single lab address) of the same family.
/// Returns whether the route is IPv6 and the destination as `ip` wants it.
pub(crate) fn check_route(dest: &str, via: &str) -> Result<(bool, String)> {
    let gw: IpAddr = via.parse().with_context(|| format!("route gateway `{via}` is not an IP address"))?;
    ensure!(is_lab_addr(gw), "route gateway `{via}` is outside the lab ranges 198.18.0.0/15 and 2001:db8::/32");
    let v6 = gw.is_ipv6();
    if dest == "default" {
        // Spelled out so the line also works inside `ip -batch`, where `-6`
        // cannot be given per line.
        return Ok((v6, if v6 { "::/0" } else { "0.0.0.0/0" }.to_string()));
    }
    let (net, prefix) = match dest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (dest, None),
    };
    let net: IpAddr =
        net.parse().with_context(|| format!("route destination `{dest}` is not `default` or a prefix"))?;
    if net.is_ipv6() != v6 {
        bail!("route `{dest}` via `{via}` mixes IPv4 and IPv6");
    }
    let min_prefix = if v6 { 32 } else { 15 };
    let prefix: u8 = match prefix {
        Some(p) => p.parse().with_context(|| format!("route destination `{dest}`: bad prefix length"))?,
        None => {
            if v6 {
                128
            } else {
                32
            }
        }
    };
    ensure!(
        is_lab_addr(net) && prefix >= min_prefix,
        "route destination `{dest}` is not inside 198.18.0.0/15 or 2001:db8::/32 \
         (use `default` for a default route)"
    );
    Ok((v6, dest.to_string()))
}

/// The first IPv4 address among `cidrs`, without prefix.
pub(crate) fn first_v4(cidrs: &[Cidr]) -> Option<Ipv4Addr> {
    cidrs.iter().find_map(|c| match c.addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    })
}

/// The first IPv6 address among `cidrs`, without prefix.
pub(crate) fn first_v6(cidrs: &[Cidr]) -> Option<Ipv6Addr> {
    cidrs.iter().find_map(|c| match c.addr {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        for ok in ["198.18.0.1", "198.19.255.254", "2001:db8::1", "2001:db8:ffff::1"] {
            assert!(is_lab_addr(ok.parse().unwrap()), "{ok}");
        }
        for bad in ["198.17.0.1", "198.20.0.1", "10.0.0.1", "2001:db9::1", "fe80::1"] {
            assert!(!is_lab_addr(bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn iface_addr_checks() {
        assert!(check_iface_addr("198.18.1.1/24").is_ok());
        assert!(check_iface_addr("2001:db8:1::1/64").is_ok());
        assert!(check_iface_addr("198.18.1.1").is_err());
        assert!(check_iface_addr("192.168.1.1/24").is_err());
        assert!(check_iface_addr("198.18.1.1/33").is_err());
    }

    #[test]
    fn route_checks() {
        assert_eq!(check_route("default", "198.18.1.254").unwrap(), (false, "0.0.0.0/0".into()));
        assert_eq!(check_route("default", "2001:db8:1::fe").unwrap(), (true, "::/0".into()));
        assert!(check_route("198.18.3.0/24", "198.18.2.2").is_ok());
        assert!(check_route("198.18.0.0/15", "198.18.2.2").is_ok());
        assert!(check_route("198.16.0.0/13", "198.18.2.2").is_err());
        assert!(check_route("10.0.0.0/8", "198.18.2.2").is_err());
        assert!(check_route("198.18.3.0/24", "10.0.0.1").is_err());
        assert!(check_route("2001:db8:3::/64", "198.18.2.2").is_err());
    }
}
