//! Topologies and middleboxes for the tracer tests (`trace --flows`, the
//! quote comparison, `trace --mtu`): an ECMP diamond, and nft rules that
//! rewrite what a middlebox rewrites. Each rule set lives in its own nft
//! table, apart from the `inet netobs` firewall table, so the two never
//! interfere.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result, bail};

use crate::{Lab, Node, scenarios::ScenarioLab};

/// Two equal-cost paths between `r1` and `r3`:
///
/// ```text
///                  .2.254 r2a .4.1
///  client --- r1 <                  > r3 --- server
///  .1.1   .1.254   .3.254 r2b .5.1   .6.254  .6.1
/// ```
///
/// Link *n* is `198.18.n.0/24` and `2001:db8:n::/64`. `r1` reaches the
/// server's link through both `r2a` and `r2b` (one multipath route per
/// family) and hashes flows with L4 (`fib_multipath_hash_policy=1`) for
/// IPv4; [`Diamond::v6_hash_policy`] picks the IPv6 one. `r3` and the
/// branches route back through `r2a` only. Hop 2 answers from `r2a`'s or
/// `r2b`'s client-facing address, depending on the flow.
pub struct Diamond {
    pub lab: Lab,
    pub client: Node,
    pub r1: Node,
    pub r2a: Node,
    pub r2b: Node,
    pub r3: Node,
    pub server: Node,
    pub server_v4: Ipv4Addr,
    pub server_v6: Ipv6Addr,
    /// What hop 2 answers from on each branch (`r2a`, `r2b`).
    pub branch_v4: [Ipv4Addr; 2],
    pub branch_v6: [Ipv6Addr; 2],
}

impl Diamond {
    /// Sets `r1`'s IPv6 multipath hash: 0 hashes addresses, flow label and
    /// next header; 1 hashes the 5-tuple.
    pub fn v6_hash_policy(&self, policy: u8) -> Result<()> {
        if policy > 1 {
            bail!("IPv6 multipath hash policy {policy}: use 0 (L3 + flow label) or 1 (L4)");
        }
        self.r1.sysctl(&[&format!("net.ipv6.fib_multipath_hash_policy={policy}")])
    }
}

/// Builds the [`Diamond`].
pub fn ecmp_diamond() -> Result<Diamond> {
    let lab = Lab::new();
    let client = lab.host("client")?;
    let r1 = lab.router("r1")?;
    let r2a = lab.router("r2a")?;
    let r2b = lab.router("r2b")?;
    let r3 = lab.router("r3")?;
    let server = lab.host("server")?;
    let link = |a: &Node, b: &Node, n: u8, ha: u8, hb: u8| {
        lab.link(a, b)
            .v4(&format!("198.18.{n}.{ha}/24"), &format!("198.18.{n}.{hb}/24"))
            .v6(&format!("2001:db8:{n:x}::{ha:x}/64"), &format!("2001:db8:{n:x}::{hb:x}/64"))
            .create()
    };
    link(&client, &r1, 1, 1, 254)?;
    link(&r1, &r2a, 2, 1, 254)?;
    link(&r1, &r2b, 3, 1, 254)?;
    link(&r2a, &r3, 4, 1, 254)?;
    link(&r2b, &r3, 5, 1, 254)?;
    link(&r3, &server, 6, 254, 1)?;
    client.routes(&[("default", "198.18.1.254"), ("default", "2001:db8:1::fe")])?;
    server.routes(&[("default", "198.18.6.254"), ("default", "2001:db8:6::fe")])?;
    r1.routes(&[
        ("198.18.4.0/24", "198.18.2.254"),
        ("198.18.5.0/24", "198.18.3.254"),
        ("2001:db8:4::/64", "2001:db8:2::fe"),
        ("2001:db8:5::/64", "2001:db8:3::fe"),
    ])?;
    // The two equal-cost next hops (addresses checked above by `link`).
    r1.ip_batch(&[
        "route add 198.18.6.0/24 nexthop via 198.18.2.254 nexthop via 198.18.3.254",
        "route add 2001:db8:6::/64 nexthop via 2001:db8:2::fe nexthop via 2001:db8:3::fe",
    ])
    .context("adding r1's multipath routes")?;
    r1.sysctl(&["net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1"])?;
    for (r, up, down) in [(&r2a, "2", "4"), (&r2b, "3", "5")] {
        r.routes(&[
            ("198.18.1.0/24", &format!("198.18.{up}.1")),
            ("198.18.6.0/24", &format!("198.18.{down}.254")),
            ("2001:db8:1::/64", &format!("2001:db8:{up}::1")),
            ("2001:db8:6::/64", &format!("2001:db8:{down}::fe")),
        ])?;
    }
    r3.routes(&[
        ("198.18.1.0/24", "198.18.4.1"),
        ("198.18.2.0/24", "198.18.4.1"),
        ("198.18.3.0/24", "198.18.5.1"),
        ("2001:db8:1::/64", "2001:db8:4::1"),
        ("2001:db8:2::/64", "2001:db8:4::1"),
        ("2001:db8:3::/64", "2001:db8:5::1"),
    ])?;
    Ok(Diamond {
        lab,
        client,
        r1,
        r2a,
        r2b,
        r3,
        server,
        server_v4: Ipv4Addr::new(198, 18, 6, 1),
        server_v6: "2001:db8:6::1".parse().context("parsing the server address")?,
        branch_v4: [Ipv4Addr::new(198, 18, 2, 254), Ipv4Addr::new(198, 18, 3, 254)],
        branch_v6: [
            "2001:db8:2::fe".parse().context("parsing a branch address")?,
            "2001:db8:3::fe".parse().context("parsing a branch address")?,
        ],
    })
}

fn check_public(public: Ipv4Addr) -> Result<()> {
    if !crate::is_lab_addr(public.into()) {
        bail!("{public} is not a lab address (198.18.0.0/15)");
    }
    Ok(())
}

/// Makes hop `hop` of a linear scenario a stateless NAT, the way many
/// carrier and cloud NATs behave: it rewrites the client's source address
/// to `public` on the way out (postrouting) and `public` back to the
/// client on the way in (prerouting), with conntrack off (`notrack`), so
/// the packets quoted inside ICMP errors coming back are *not* translated.
/// The routers past it learn a route to `public` pointing back at it.
pub fn stateless_snat(s: &ScenarioLab, hop: usize, public: Ipv4Addr) -> Result<()> {
    check_public(public)?;
    let r = s.hop(hop)?;
    let client = s.client_v4;
    r.nft(&format!(
        "add table ip nobs_snat\n\
         add chain ip nobs_snat prerouting {{ type filter hook prerouting priority -300; policy accept; }}\n\
         add chain ip nobs_snat output {{ type filter hook output priority -300; policy accept; }}\n\
         add chain ip nobs_snat postrouting {{ type filter hook postrouting priority 100; policy accept; }}\n\
         add rule ip nobs_snat prerouting notrack\n\
         add rule ip nobs_snat output notrack\n\
         add rule ip nobs_snat prerouting ip daddr {public} counter ip daddr set {client}\n\
         add rule ip nobs_snat postrouting ip saddr {client} counter ip saddr set {public}"
    ))?;
    for k in hop + 1..s.nodes.len() - 1 {
        let back = s.links[k - 1].a.v4_or_err()?;
        s.nodes[k].route(&format!("{public}/32"), &back.to_string())?;
    }
    Ok(())
}

/// Makes hop `hop` of a linear scenario masquerade (conntrack NAT) what it
/// forwards towards the server: conntrack translates the quotes of the
/// ICMP errors it forwards back, so they show the client's own address.
pub fn masquerade(s: &ScenarioLab, hop: usize) -> Result<()> {
    let r = s.hop(hop)?;
    let out = &s.links[hop].a.ifname;
    r.nft(&format!(
        "add table ip nobs_masq\n\
         add chain ip nobs_masq postrouting {{ type nat hook postrouting priority 100; policy accept; }}\n\
         add rule ip nobs_masq postrouting oifname \"{out}\" counter masquerade"
    ))
}

/// Makes `node` set DSCP `dscp` (an nft name such as `cs1`, `af21`, `ef`)
/// on everything it forwards, both families.
pub fn rewrite_dscp(node: &Node, dscp: &str) -> Result<()> {
    if !dscp.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!("{dscp:?} is not a DSCP name or number");
    }
    node.nft(&format!(
        "add table inet nobs_dscp\n\
         add chain inet nobs_dscp forwarded {{ type filter hook forward priority 0; policy accept; }}\n\
         add rule inet nobs_dscp forwarded meta nfproto ipv4 counter ip dscp set {dscp}\n\
         add rule inet nobs_dscp forwarded meta nfproto ipv6 counter ip6 dscp set {dscp}"
    ))
}

/// Makes `node` clamp the MSS option of every TCP SYN it forwards to `mss`.
pub fn clamp_mss(node: &Node, mss: u16) -> Result<()> {
    node.nft(&format!(
        "add table inet nobs_mss\n\
         add chain inet nobs_mss forwarded {{ type filter hook forward priority 0; policy accept; }}\n\
         add rule inet nobs_mss forwarded tcp flags syn counter tcp option maxseg size set {mss}"
    ))
}

/// Packets counted by the `counter` rules of nft table `family table` on
/// `node` (to prove a middlebox rule fired).
pub fn table_packets(node: &Node, family: &str, table: &str) -> Result<u64> {
    let out = node.run_ok(&["nft", "list", "table", family, table])?;
    Ok(out
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(3)
        .filter(|w| w[0] == "counter" && w[1] == "packets")
        .filter_map(|w| w[2].parse::<u64>().ok())
        .sum())
}
