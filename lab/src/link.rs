//! veth links between two nodes.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result, bail, ensure};

use crate::addr::{Cidr, check_iface_addr, first_v4, first_v6};
use crate::cmd;
use crate::node::{Node, addr_line};

/// Linux limit for interface names (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// Builder for a veth pair; see [`crate::Lab::link`].
///
/// ```no_run
/// # fn f(lab: &netobs_lab::Lab, a: &netobs_lab::Node, b: &netobs_lab::Node) -> anyhow::Result<()> {
/// let link = lab
///     .link(a, b)
///     .v4("198.18.1.1/24", "198.18.1.254/24")
///     .v6("2001:db8:1::1/64", "2001:db8:1::fe/64")
///     .mtu(1400)
///     .create()?;
/// # Ok(()) }
/// ```
#[must_use = "a LinkBuilder does nothing until .create() is called"]
pub struct LinkBuilder {
    a: Node,
    b: Node,
    a_if: Option<String>,
    b_if: Option<String>,
    a_addrs: Vec<String>,
    b_addrs: Vec<String>,
    a_mtu: Option<u32>,
    b_mtu: Option<u32>,
}

impl LinkBuilder {
    pub(crate) fn new(a: &Node, b: &Node) -> LinkBuilder {
        LinkBuilder {
            a: a.clone(),
            b: b.clone(),
            a_if: None,
            b_if: None,
            a_addrs: Vec::new(),
            b_addrs: Vec::new(),
            a_mtu: None,
            b_mtu: None,
        }
    }

    /// Adds one address per end (either family). Can be repeated.
    pub fn addr(mut self, a: &str, b: &str) -> Self {
        self.a_addrs.push(a.to_string());
        self.b_addrs.push(b.to_string());
        self
    }

    /// IPv4 addresses with prefix, e.g. `("198.18.1.1/24", "198.18.1.254/24")`.
    pub fn v4(self, a: &str, b: &str) -> Self {
        self.addr(a, b)
    }

    /// IPv6 addresses with prefix, e.g. `("2001:db8:1::1/64", "2001:db8:1::fe/64")`.
    pub fn v6(self, a: &str, b: &str) -> Self {
        self.addr(a, b)
    }

    /// Same MTU on both ends.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.a_mtu = Some(mtu);
        self.b_mtu = Some(mtu);
        self
    }

    /// MTU of the `a` end only (asymmetric links).
    pub fn mtu_a(mut self, mtu: u32) -> Self {
        self.a_mtu = Some(mtu);
        self
    }

    /// MTU of the `b` end only.
    pub fn mtu_b(mut self, mtu: u32) -> Self {
        self.b_mtu = Some(mtu);
        self
    }

    /// Interface names (default: the first free `ethN` in each node).
    pub fn names(mut self, a_if: &str, b_if: &str) -> Self {
        self.a_if = Some(a_if.to_string());
        self.b_if = Some(b_if.to_string());
        self
    }

    /// Creates the veth pair directly inside both namespaces (so names only
    /// need to be unique per namespace), configures MTU and addresses and
    /// brings both ends up. Three processes in total.
    pub fn create(self) -> Result<Link> {
        let what = format!("link {} -- {}", self.a.name(), self.b.name());
        self.create_inner().with_context(|| what)
    }

    fn create_inner(self) -> Result<Link> {
        ensure!(self.a.same_lab(&self.b), "nodes belong to different labs");
        ensure!(self.a.ns_name() != self.b.ns_name(), "cannot link a node to itself");
        let a_cidrs = parse_all(&self.a_addrs)?;
        let b_cidrs = parse_all(&self.b_addrs)?;
        for mtu in [self.a_mtu, self.b_mtu].into_iter().flatten() {
            // 1280 is the IPv6 minimum; veth accepts up to 64 KiB.
            ensure!((1280..=65535).contains(&mtu), "MTU {mtu} outside 1280..=65535");
        }
        let a_if = reserve_ifname(&self.a, self.a_if.as_deref())?;
        let b_if = match reserve_ifname(&self.b, self.b_if.as_deref()) {
            Ok(n) => n,
            Err(e) => {
                self.a.ifaces().retain(|n| n != &a_if);
                return Err(e);
            }
        };

        let shared = &self.a.shared;
        let mut args: Vec<String> = vec!["link".into(), "add".into(), a_if.clone()];
        args.extend(["index".into(), shared.take_ifindex().to_string()]);
        if let Some(m) = self.a_mtu {
            args.extend(["mtu".into(), m.to_string()]);
        }
        args.extend(["netns".into(), self.a.ns_name().into()]);
        args.extend(["type".into(), "veth".into(), "peer".into(), "name".into(), b_if.clone()]);
        args.extend(["index".into(), shared.take_ifindex().to_string()]);
        if let Some(m) = self.b_mtu {
            args.extend(["mtu".into(), m.to_string()]);
        }
        args.extend(["netns".into(), self.b.ns_name().into()]);
        cmd::checked(cmd::new("ip", &args), None)?;

        for (node, ifname, addrs) in [(&self.a, &a_if, &self.a_addrs), (&self.b, &b_if, &self.b_addrs)] {
            let mut lines = addrs.iter().map(|c| addr_line(ifname, c)).collect::<Result<Vec<_>>>()?;
            lines.push(format!("link set {ifname} up"));
            node.ip_batch(&lines)?;
        }

        let link = Link {
            a: LinkEnd { node: self.a, ifname: a_if, addrs: a_cidrs, mtu: self.a_mtu.unwrap_or(1500) },
            b: LinkEnd { node: self.b, ifname: b_if, addrs: b_cidrs, mtu: self.b_mtu.unwrap_or(1500) },
        };
        link.a.node.shared.state().links.push(link.summary());
        Ok(link)
    }
}

fn parse_all(addrs: &[String]) -> Result<Vec<Cidr>> {
    addrs.iter().map(|a| check_iface_addr(a)).collect()
}

/// Picks (or validates) an interface name and records it on the node.
fn reserve_ifname(node: &Node, wanted: Option<&str>) -> Result<String> {
    let mut ifaces = node.ifaces();
    let name = match wanted {
        Some(n) => {
            let valid = !n.is_empty()
                && n.len() <= MAX_IFNAME
                && n != "lo"
                && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !valid {
                bail!("invalid interface name {n:?} (1..={MAX_IFNAME} chars of [A-Za-z0-9-_.])");
            }
            if ifaces.iter().any(|i| i == n) {
                bail!("node {} already has an interface {n}", node.name());
            }
            n.to_string()
        }
        None => (0..).map(|i| format!("eth{i}")).find(|n| !ifaces.contains(n)).context("no free ethN name")?,
    };
    ifaces.push(name.clone());
    Ok(name)
}

/// One end of a [`Link`].
#[derive(Debug, Clone)]
pub struct LinkEnd {
    pub node: Node,
    pub ifname: String,
    /// Addresses configured on this end, in order (extras included).
    pub addrs: Vec<Cidr>,
    pub mtu: u32,
}

impl LinkEnd {
    pub fn ns_name(&self) -> &str {
        self.node.ns_name()
    }

    /// First IPv4 address of this end, without prefix.
    pub fn v4(&self) -> Option<Ipv4Addr> {
        first_v4(&self.addrs)
    }

    /// First IPv6 address of this end, without prefix.
    pub fn v6(&self) -> Option<Ipv6Addr> {
        first_v6(&self.addrs)
    }

    /// Like [`LinkEnd::v4`] but an error naming the link end when missing.
    pub fn v4_or_err(&self) -> Result<Ipv4Addr> {
        self.v4().with_context(|| format!("{}:{} has no IPv4 address", self.node.name(), self.ifname))
    }

    /// Like [`LinkEnd::v6`] but an error naming the link end when missing.
    pub fn v6_or_err(&self) -> Result<Ipv6Addr> {
        self.v6().with_context(|| format!("{}:{} has no IPv6 address", self.node.name(), self.ifname))
    }

    pub fn ifindex(&self) -> Result<u32> {
        self.node.ifindex(&self.ifname)
    }

    /// Adds another address to this end.
    pub fn add_addr(&mut self, cidr: &str) -> Result<()> {
        let c = check_iface_addr(cidr)?;
        self.node.add_addr(&self.ifname, cidr)?;
        self.addrs.push(c);
        Ok(())
    }

    /// Changes this end's MTU.
    pub fn set_mtu(&mut self, mtu: u32) -> Result<()> {
        self.node.set_mtu(&self.ifname, mtu)?;
        self.mtu = mtu;
        Ok(())
    }

    fn summary(&self) -> String {
        let addrs: Vec<String> = self.addrs.iter().map(|c| c.to_string()).collect();
        format!("{}:{} mtu {} [{}]", self.node.name(), self.ifname, self.mtu, addrs.join(" "))
    }
}

/// A veth pair between two nodes.
#[derive(Debug, Clone)]
pub struct Link {
    pub a: LinkEnd,
    pub b: LinkEnd,
}

impl Link {
    /// `client:eth0 mtu 1500 [198.18.1.1/24] <-> r1:eth0 mtu 1500 [...]`
    pub fn summary(&self) -> String {
        format!("{} <-> {}", self.a.summary(), self.b.summary())
    }

    /// The end that sits in `node` (by node name), if any.
    pub fn end(&self, node: &str) -> Option<&LinkEnd> {
        [&self.a, &self.b].into_iter().find(|e| e.node.name() == node)
    }
}
