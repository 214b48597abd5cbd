//! Seed scenarios from the field notes, shared by the integration tests and
//! `cargo xtask lab up <name>`.
//!
//! All scenarios are linear paths built by [`linear`]: node *i* and *i+1*
//! are joined by link *i+1* on `198.18.<i+1>.0/24` and `2001:db8:<i+1>::/64`.
//! On every link the client-side end gets `.1`/`::1` and the server-side end
//! `.254`/`::fe`, except the last link where the server is `.1`/`::1` and its
//! gateway `.254`/`::fe` (hosts are `.1`, their gateways `.254`). Interfaces
//! are `eth0` (towards the client) and `eth1` (towards the server) on
//! routers, `eth0` on hosts. Hop *n* (as traceroute counts) is `nodes[n]`.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result, bail};

use crate::{Chain, Lab, Link, Node, Reject};

/// Path MTU of the PMTU scenarios (the 1400-byte link).
pub const PMTU: u32 = 1400;

/// Server port whose TCP replies the `acl-reject` customer router rejects.
pub const ACL_PORT: u16 = 65000;

const SCENARIOS: &[(&str, &str)] = &[
    ("acl-reject", "client-rc-ro-server; rc rejects TCP from server port 65000 with ICMP 3/10 (v6: 1/1)"),
    ("pmtu-blackhole", "client-r1-r2-r3-server; r2->r3 MTU 1400, r2 drops the frag-needed/packet-too-big it sends"),
    ("pmtu-ok", "client-r1-r2-r3-server; r2->r3 MTU 1400, frag-needed/packet-too-big reach the client"),
    ("silent-drop", "client-r1-r2-r3-server; r3 drops TCP dport 443 and UDP dport 1024-65535, ICMP passes"),
    ("udp-filtered", "client-r1-r2-r3-server; r2 drops all forwarded UDP, ICMP and TCP pass"),
    ("icmp-ratelimit", "client-r1-r2-r3-server; r2 rate-limits the ICMP errors it sends to 2/s burst 2"),
    ("gateway-df", "src-gw-dst; gw's link to dst has MTU 1400, frag-needed is sent normally"),
    ("gateway-df-blackhole", "src-gw-dst; gw's link to dst has MTU 1400 and gw drops the frag-needed it sends"),
];

/// `(name, one-line description)` of every scenario.
pub fn names() -> &'static [(&'static str, &'static str)] {
    SCENARIOS
}

/// Builds a scenario by name.
pub fn build(name: &str) -> Result<ScenarioLab> {
    let five = ["client", "r1", "r2", "r3", "server"];
    let s = match name {
        "acl-reject" => {
            let s = linear(name, &["client", "rc", "ro", "server"], &[])?;
            let rc = s.node("rc")?;
            let sv4 = s.server_v4;
            let sv6 = s.server_v6;
            rc.fw_reject(Chain::Forward, &format!("ip saddr {sv4} tcp sport {ACL_PORT}"), Reject::HOST_PROHIBITED)?;
            rc.fw_reject(
                Chain::Forward,
                &format!("ip6 saddr {sv6} tcp sport {ACL_PORT}"),
                Reject::V6_ADMIN_PROHIBITED,
            )?;
            s
        }
        "pmtu-blackhole" | "pmtu-ok" => {
            // Link 3 (r2 -- r3) is hop 3's incoming link.
            let s = linear(name, &five, &[(3, PMTU)])?;
            if name == "pmtu-blackhole" {
                s.node("r2")?.fw_drop_frag_needed()?;
            }
            s
        }
        "silent-drop" => {
            let s = linear(name, &five, &[])?;
            let r3 = s.node("r3")?;
            r3.fw_drop(Chain::Forward, "tcp dport 443")?;
            r3.fw_drop(Chain::Forward, "udp dport 1024-65535")?;
            s
        }
        "udp-filtered" => {
            let s = linear(name, &five, &[])?;
            s.node("r2")?.fw_drop(Chain::Forward, "meta l4proto udp")?;
            s
        }
        "icmp-ratelimit" => {
            let s = linear(name, &five, &[])?;
            let r2 = s.node("r2")?;
            // Only the nft limit applies (all lab nodes already have this;
            // repeated here because it is the point of the scenario).
            r2.sysctl(&["net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0"])?;
            r2.fw_ratelimit_icmp_errors(2, 2)?;
            s
        }
        "gateway-df" | "gateway-df-blackhole" => {
            let s = linear(name, &["src", "gw", "dst"], &[(2, PMTU)])?;
            if name == "gateway-df-blackhole" {
                s.node("gw")?.fw_drop_frag_needed()?;
            }
            s
        }
        _ => {
            let valid: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
            bail!("unknown scenario {name:?}; valid: {}", valid.join(", "));
        }
    };
    Ok(s)
}

/// A built scenario: the lab plus handles to its nodes and addresses.
pub struct ScenarioLab {
    pub name: String,
    /// Owns the namespaces; dropping the `ScenarioLab` tears them down.
    pub lab: Lab,
    /// Nodes in path order, client first.
    pub nodes: Vec<Node>,
    /// `links[i]` joins `nodes[i]` (end `a`) and `nodes[i + 1]` (end `b`).
    pub links: Vec<Link>,
    pub client: Node,
    pub server: Node,
    pub client_v4: Ipv4Addr,
    pub server_v4: Ipv4Addr,
    pub client_v6: Ipv6Addr,
    pub server_v6: Ipv6Addr,
}

impl ScenarioLab {
    /// Node by name, e.g. `s.node("r2")`.
    pub fn node(&self, name: &str) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.name() == name)
            .with_context(|| format!("scenario {} has no node {name:?}", self.name))
    }

    /// Hop `n` as traceroute counts it from the client (1 = first router).
    pub fn hop(&self, n: usize) -> Result<&Node> {
        self.nodes.get(n).filter(|_| n > 0).with_context(|| format!("scenario {} has no hop {n}", self.name))
    }

    /// Address hop `n` uses for ICMP sent back to the client (its
    /// client-facing interface): what traceroute shows for that hop.
    pub fn hop_v4(&self, n: usize) -> Result<Ipv4Addr> {
        self.hop(n)?;
        self.links[n - 1].b.v4_or_err()
    }

    /// IPv6 counterpart of [`ScenarioLab::hop_v4`].
    pub fn hop_v6(&self, n: usize) -> Result<Ipv6Addr> {
        self.hop(n)?;
        self.links[n - 1].b.v6_or_err()
    }

    /// The link between two named nodes (either order).
    pub fn link(&self, a: &str, b: &str) -> Result<&Link> {
        self.links
            .iter()
            .find(|l| {
                let (x, y) = (l.a.node.name(), l.b.node.name());
                (x == a && y == b) || (x == b && y == a)
            })
            .with_context(|| format!("scenario {} has no link {a} -- {b}", self.name))
    }

    /// Nodes, links and firewall rules, for `lab up` and test failures.
    pub fn describe(&self) -> String {
        let mut s = format!("scenario {}\n{}", self.name, self.lab.describe());
        for n in &self.nodes {
            match n.fw_ruleset() {
                Ok(rules) if !rules.is_empty() => {
                    let _ = writeln!(s, "  nft on {}:", n.name());
                    for l in rules.lines().filter(|l| l.contains("counter")) {
                        let _ = writeln!(s, "    {}", l.trim());
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = writeln!(s, "  nft on {}: {e:#}", n.name());
                }
            }
        }
        s
    }
}

/// Builds a linear dual-stack path `nodes[0] -- ... -- nodes[last]` (first
/// and last are hosts, the rest routers) with the addressing described in
/// the module docs, default routes on the hosts and static routes on the
/// routers. `mtus` overrides the MTU of link `i` (1-based) on both ends.
pub fn linear(name: &str, nodes: &[&str], mtus: &[(usize, u32)]) -> Result<ScenarioLab> {
    if nodes.len() < 2 {
        bail!("a path needs at least two nodes");
    }
    if nodes.len() > 250 {
        bail!("a path may have at most 250 nodes");
    }
    let lab = Lab::new();
    let last = nodes.len() - 1;
    let handles = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| if i == 0 || i == last { lab.host(n) } else { lab.router(n) })
        .collect::<Result<Vec<_>>>()?;

    let mut links = Vec::with_capacity(last);
    for i in 1..=last {
        // Hosts are .1 and their gateways .254; between routers the
        // client-side end is .1.
        let (a, b) = if i == last { (254, 1) } else { (1, 254) };
        let mut builder = lab
            .link(&handles[i - 1], &handles[i])
            .v4(&format!("198.18.{i}.{a}/24"), &format!("198.18.{i}.{b}/24"))
            .v6(&format!("2001:db8:{i:x}::{a:x}/64"), &format!("2001:db8:{i:x}::{b:x}/64"));
        if let Some((_, mtu)) = mtus.iter().find(|(l, _)| *l == i) {
            builder = builder.mtu(*mtu);
        }
        links.push(builder.create()?);
    }

    // Next hops: towards the client through the `a` end of the node's left
    // link, towards the server through the `b` end of its right link.
    for (k, node) in handles.iter().enumerate() {
        let mut v4: Vec<(String, String)> = Vec::new();
        let mut v6: Vec<(String, String)> = Vec::new();
        let left = (k > 0).then(|| &links[k - 1].a);
        let right = (k < last).then(|| &links[k].b);
        if k == 0 || k == last {
            let gw = left.or(right).context("host without link")?;
            v4.push(("default".into(), gw.v4_or_err()?.to_string()));
            v6.push(("default".into(), gw.v6_or_err()?.to_string()));
        } else {
            for j in 1..=last {
                // Link j is directly connected to node k when j == k or j == k + 1.
                let via = if j < k {
                    left
                } else if j > k + 1 {
                    right
                } else {
                    None
                };
                if let Some(end) = via {
                    v4.push((format!("198.18.{j}.0/24"), end.v4_or_err()?.to_string()));
                    v6.push((format!("2001:db8:{j:x}::/64"), end.v6_or_err()?.to_string()));
                }
            }
        }
        let routes: Vec<(&str, &str)> = v4.iter().chain(v6.iter()).map(|(d, v)| (d.as_str(), v.as_str())).collect();
        node.routes(&routes)?;
    }

    let client = handles[0].clone();
    let server = handles[last].clone();
    Ok(ScenarioLab {
        name: name.to_string(),
        client_v4: links[0].a.v4_or_err()?,
        client_v6: links[0].a.v6_or_err()?,
        server_v4: links[last - 1].b.v4_or_err()?,
        server_v6: links[last - 1].b.v6_or_err()?,
        lab,
        nodes: handles,
        links,
        client,
        server,
    })
}
