//! Undoing NAT: which original flow does a translated packet belong to?
//!
//! An ICMP error that reaches a NAT gateway from outside quotes the packet
//! as it left, with the gateway's address in place of the client's. The
//! conntrack entry whose *reply* direction matches the quote names the
//! client. Looked up with the `conntrack` tool (conntrack-tools), once per
//! reported line, never per packet.

use std::{net::IpAddr, process::Command};

/// The original (pre-NAT) endpoints of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Original {
    pub src: IpAddr,
    pub src_port: Option<u16>,
    pub dst: IpAddr,
    pub dst_port: Option<u16>,
}

/// Finds the conntrack entry for a packet that left this host as
/// `src:sport -> dst:dport` (after NAT) and returns its original tuple, if
/// it differs (i.e. the packet really was translated).
pub fn original_of(
    protocol: &str,
    src: IpAddr,
    sport: Option<u16>,
    dst: IpAddr,
    dport: Option<u16>,
) -> Option<Original> {
    if !matches!(protocol, "tcp" | "udp") {
        return None;
    }
    let mut cmd = Command::new("conntrack");
    cmd.args(["-L", "-p", protocol, "--reply-src", &dst.to_string(), "--reply-dst", &src.to_string()]);
    if let (Some(sp), Some(dp)) = (sport, dport) {
        cmd.args(["--reply-port-src", &dp.to_string(), "--reply-port-dst", &sp.to_string()]);
    }
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?;
    let orig = parse_original(line)?;
    (orig.src != src || orig.src_port != sport).then_some(orig)
}

/// The first `src= dst= sport= dport=` group of a `conntrack -L` line.
pub fn parse_original(line: &str) -> Option<Original> {
    let field = |key: &str| line.split_whitespace().find_map(|w| w.strip_prefix(key)).map(str::to_string);
    Some(Original {
        src: field("src=")?.parse().ok()?,
        dst: field("dst=")?.parse().ok()?,
        src_port: field("sport=").and_then(|p| p.parse().ok()),
        dst_port: field("dport=").and_then(|p| p.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_original_direction() {
        let line = "tcp      6 118 SYN_SENT src=198.18.1.5 dst=198.18.3.1 sport=40000 dport=443 [UNREPLIED] \
                    src=198.18.3.1 dst=198.18.2.254 sport=443 dport=40000 mark=0 use=1";
        let o = parse_original(line).unwrap();
        assert_eq!(o.src, "198.18.1.5".parse::<IpAddr>().unwrap());
        assert_eq!(o.dst, "198.18.3.1".parse::<IpAddr>().unwrap());
        assert_eq!(o.src_port, Some(40000));
        assert_eq!(o.dst_port, Some(443));
        assert_eq!(parse_original("garbage"), None);
        assert_eq!(parse_original("src=not-an-ip dst=1.2.3.4"), None);
    }
}
