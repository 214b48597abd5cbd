//! Active probes: traceroute (UDP / TCP SYN / ICMP), path-MTU search, TCP
//! handshake check, and the `explain` verdict that joins them with the
//! kernel's view.
//!
//! - [`packet`]: probe bytes and reply parsing (pure, unit-tested);
//! - [`socket`]: raw sockets, sending and matching answers to probes;
//! - [`trace`], [`pmtu`], [`tcp`]: the three probe kinds;
//! - [`multipath`] (`trace --flows`), [`quote`] (middleboxes seen in the
//!   ICMP quote), [`hopmtu`] (`trace --mtu`): what `trace` adds;
//! - [`verdict`]: the rules that turn evidence into one verdict, now
//!   [`crate::verdict`] (re-exported here for existing callers);
//! - [`explain`]: runs everything at once next to the kernel observer.
//!
//! JSON output is documented in `docs/probes-json.md`; [`SCHEMA`] versions it.

pub mod cli;
pub mod explain;
pub mod hopmtu;
pub mod multipath;
pub mod names;
pub mod packet;
pub mod pmtu;
pub mod progress;
pub mod quote;
pub mod report;
pub mod socket;
pub mod tcp;
pub mod trace;
pub use crate::verdict;
pub use progress::Progress;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};

use anyhow::{Context as _, Result, bail};

/// Schema id of every probe JSON document.
pub const SCHEMA: &str = "netobs-probe/2";

/// Resolves HOST (an address, or a name via the system resolver) to one
/// address; `family` 4 or 6 picks one when a name has both.
pub fn resolve(host: &str, family: Option<u8>) -> Result<IpAddr> {
    let host = host.trim();
    if host.is_empty() {
        bail!("empty host: give an IPv4/IPv6 address or a host name");
    }
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return check_family(ip, family);
    }
    if host.contains(':') || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        bail!("{host:?} is neither an IP address nor a valid host name");
    }
    let addrs: Vec<IpAddr> = (host, 0u16)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve host {host:?}"))?
        .map(|a| a.ip())
        .collect();
    addrs.iter().copied().find(|a| family.is_none_or(|f| (f == 4) == a.is_ipv4())).with_context(|| {
        format!("host {host:?} has no {} address", family.map_or("usable".into(), |f| format!("IPv{f}")))
    })
}

fn check_family(ip: IpAddr, family: Option<u8>) -> Result<IpAddr> {
    match family {
        Some(4) if !ip.is_ipv4() => bail!("{ip} is not an IPv4 address (-4 given)"),
        Some(6) if !ip.is_ipv6() => bail!("{ip} is not an IPv6 address (-6 given)"),
        _ => Ok(ip),
    }
}

/// `-4` / `-6` flags to a family.
pub fn family_flag(v4: bool, v6: bool) -> Option<u8> {
    if v4 {
        Some(4)
    } else if v6 {
        Some(6)
    } else {
        None
    }
}

/// Parses `HOST:PORT` / `[V6]:PORT`.
pub fn parse_host_port(s: &str) -> Result<(String, u16)> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        if sa.port() == 0 {
            bail!("port 0 cannot be probed (use 1-65535)");
        }
        return Ok((sa.ip().to_string(), sa.port()));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        bail!("{s:?}: expected HOST:PORT (IPv6 as [ADDR]:PORT)");
    };
    if host.contains(':') && !host.starts_with('[') {
        bail!("{s:?}: write IPv6 addresses as [ADDR]:PORT");
    }
    let port: u16 = port.parse().with_context(|| format!("{port:?} is not a port number (1-65535)"))?;
    if port == 0 {
        bail!("port 0 cannot be probed (use 1-65535)");
    }
    Ok((host.to_string(), port))
}

/// The interface packets to `dst` leave through, and its MTU: asks the
/// kernel over rtnetlink (`RTM_GETROUTE`, the same FIB lookup the probes
/// will use, and what `ip route get` prints).
pub fn egress(dst: IpAddr) -> Result<(String, u32)> {
    let timeout = crate::net::nl::TIMEOUT;
    let route = crate::net::route::route_get(dst, timeout).with_context(|| format!("no route to {dst}"))?;
    let oif = route.oif.with_context(|| format!("the route to {dst} names no egress interface"))?;
    let link = crate::net::route::links(timeout)
        .context("listing interfaces")?
        .into_iter()
        .find(|l| l.index == oif)
        .with_context(|| format!("the route to {dst} leaves through interface {oif}, which is gone"))?;
    Ok((link.name, link.mtu.unwrap_or(1500)))
}

/// Wraps a result in the versioned JSON envelope.
pub fn json_doc<T: serde::Serialize>(kind: &str, v: &T) -> Result<String> {
    let mut val = serde_json::to_value(v).context("encoding JSON")?;
    if let serde_json::Value::Object(m) = &mut val {
        m.insert("schema".into(), SCHEMA.into());
        m.insert("type".into(), kind.into());
    }
    serde_json::to_string_pretty(&val).context("encoding JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parsing() {
        assert_eq!(resolve("198.18.1.1", None).unwrap(), "198.18.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(resolve("[2001:db8::1]", None).unwrap(), "2001:db8::1".parse::<IpAddr>().unwrap());
        assert!(resolve("198.18.1.1", Some(6)).is_err());
        assert!(resolve("not an ip!", None).is_err());
        assert!(resolve("", None).is_err());
        assert!(resolve("1.2.3.4.5:x", None).is_err());
    }

    #[test]
    fn host_port_parsing() {
        assert_eq!(parse_host_port("198.18.1.1:443").unwrap(), ("198.18.1.1".into(), 443));
        assert_eq!(parse_host_port("[2001:db8::1]:22").unwrap(), ("2001:db8::1".into(), 22));
        assert!(parse_host_port("198.18.1.1").is_err());
        assert!(parse_host_port("198.18.1.1:0").is_err());
        assert!(parse_host_port("198.18.1.1:70000").is_err());
        assert!(parse_host_port("2001:db8::1:22").is_err());
    }
}
