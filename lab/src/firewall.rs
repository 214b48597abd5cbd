//! nftables helpers. Each node gets one `inet netobs` table (both families)
//! with `input`, `forward` and `output` base chains at priority 0 and policy
//! accept, created on first use. Rules carry a `counter` so tests can prove
//! that a rule (and not something else) made the traffic disappear.
//!
//! Locally generated ICMP errors (time-exceeded, frag-needed, packet-too-big,
//! and the ones produced by `reject`) traverse the `output` hook, which is
//! why filtering "what a router says" is done in `output`.

use std::sync::atomic::Ordering;

use anyhow::{Context, Result};

use crate::cmd;
use crate::node::Node;

/// Base chains of the `inet netobs` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    Input,
    Forward,
    Output,
}

impl Chain {
    pub fn as_str(self) -> &'static str {
        match self {
            Chain::Input => "input",
            Chain::Forward => "forward",
            Chain::Output => "output",
        }
    }
}

/// What a `reject` rule answers with. nftables always uses ICMP type 3
/// (IPv4 destination unreachable) / ICMPv6 type 1; only the code is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// ICMPv4 destination unreachable with this code (IPv4 packets only).
    Icmp(u8),
    /// ICMPv6 destination unreachable with this code (IPv6 packets only).
    Icmpv6(u8),
    /// Family-independent code (`icmpx`): `port-unreachable`,
    /// `admin-prohibited`, `no-route` or `host-unreachable`.
    Icmpx(&'static str),
    /// TCP RST.
    TcpReset,
}

impl Reject {
    pub const NET_UNREACHABLE: Reject = Reject::Icmp(0);
    pub const HOST_UNREACHABLE: Reject = Reject::Icmp(1);
    pub const PROT_UNREACHABLE: Reject = Reject::Icmp(2);
    pub const PORT_UNREACHABLE: Reject = Reject::Icmp(3);
    pub const NET_PROHIBITED: Reject = Reject::Icmp(9);
    /// Code 10, "host administratively prohibited" (the field-notes ACL).
    pub const HOST_PROHIBITED: Reject = Reject::Icmp(10);
    pub const ADMIN_PROHIBITED: Reject = Reject::Icmp(13);
    pub const V6_NO_ROUTE: Reject = Reject::Icmpv6(0);
    pub const V6_ADMIN_PROHIBITED: Reject = Reject::Icmpv6(1);
    pub const V6_ADDR_UNREACHABLE: Reject = Reject::Icmpv6(3);
    pub const V6_PORT_UNREACHABLE: Reject = Reject::Icmpv6(4);

    /// The nft statement, e.g. `reject with icmp 10`.
    pub fn statement(self) -> String {
        match self {
            Reject::Icmp(code) => format!("reject with icmp {code}"),
            Reject::Icmpv6(code) => format!("reject with icmpv6 {code}"),
            Reject::Icmpx(code) => format!("reject with icmpx {code}"),
            Reject::TcpReset => "reject with tcp reset".to_string(),
        }
    }
}

const TABLE_SETUP: &str = "\
add table inet netobs
add chain inet netobs input { type filter hook input priority 0; policy accept; }
add chain inet netobs forward { type filter hook forward priority 0; policy accept; }
add chain inet netobs output { type filter hook output priority 0; policy accept; }
";

impl Node {
    /// Runs an nft script (one or more commands, one per line) in the
    /// namespace via `nft -f -`, after making sure the `inet netobs` table
    /// exists. The raw escape hatch:
    /// `node.nft("add rule inet netobs forward tcp dport 22 drop")`.
    pub fn nft(&self, script: &str) -> Result<()> {
        let script = if self.inner.fw_ready.load(Ordering::Acquire) {
            format!("{script}\n")
        } else {
            format!("{TABLE_SETUP}{script}\n")
        };
        let mut c = self.command("nft");
        c.args(["-f", "-"]);
        cmd::checked(c, Some(&script)).with_context(|| format!("nft on node {}", self.name()))?;
        self.inner.fw_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Appends `rule` (match expressions + statements) to a chain.
    pub fn nft_rule(&self, chain: Chain, rule: &str) -> Result<()> {
        self.nft(&format!("add rule inet netobs {} {rule}", chain.as_str()))
    }

    /// Rejects packets matching `matches` (nft expressions, may be empty)
    /// with the given ICMP code, e.g.
    /// `r.fw_reject(Chain::Forward, "ip saddr 198.18.3.1 tcp sport 65000", Reject::HOST_PROHIBITED)`.
    pub fn fw_reject(&self, chain: Chain, matches: &str, with: Reject) -> Result<()> {
        self.nft_rule(chain, &format!("{matches} counter {}", with.statement()))
    }

    /// Silently drops packets matching `matches`.
    pub fn fw_drop(&self, chain: Chain, matches: &str) -> Result<()> {
        self.nft_rule(chain, &format!("{matches} counter drop"))
    }

    /// Forwards packets matching `matches` with random loss: one in
    /// `one_in` is dropped (nft `numgen random`), as on a congested link.
    pub fn fw_lose_one_in(&self, matches: &str, one_in: u32) -> Result<()> {
        self.fw_drop(Chain::Forward, &format!("{matches} numgen random mod {one_in} == 0"))
    }

    /// Packets [`fw_lose_one_in`](Self::fw_lose_one_in) dropped.
    pub fn fw_lost(&self) -> Result<u64> {
        self.fw_packets(Chain::Forward, "numgen random")
    }

    /// Drops ICMPv4 of a type (and optionally code), by nft name or number,
    /// e.g. `("destination-unreachable", Some("frag-needed"))`.
    pub fn fw_drop_icmp(&self, chain: Chain, icmp_type: &str, code: Option<&str>) -> Result<()> {
        let code = code.map(|c| format!(" icmp code {c}")).unwrap_or_default();
        self.fw_drop(chain, &format!("icmp type {icmp_type}{code}"))
    }

    /// Drops ICMPv6 of a type (and optionally code), e.g. `("packet-too-big", None)`.
    pub fn fw_drop_icmpv6(&self, chain: Chain, icmp_type: &str, code: Option<&str>) -> Result<()> {
        let code = code.map(|c| format!(" icmpv6 code {c}")).unwrap_or_default();
        self.fw_drop(chain, &format!("icmpv6 type {icmp_type}{code}"))
    }

    /// Makes this node a PMTU black hole: the ICMP "fragmentation needed"
    /// (3/4) and ICMPv6 "packet too big" it generates are dropped in output.
    pub fn fw_drop_frag_needed(&self) -> Result<()> {
        self.nft(
            "add rule inet netobs output icmp type destination-unreachable icmp code frag-needed counter drop\n\
             add rule inet netobs output icmpv6 type packet-too-big counter drop",
        )
    }

    /// Rate-limits the ICMP errors this node generates (time-exceeded and
    /// destination-unreachable, both families; frag-needed is a
    /// destination-unreachable code so it is included) to `per_second`
    /// with `burst` packets; excess is dropped in output.
    pub fn fw_ratelimit_icmp_errors(&self, per_second: u32, burst: u32) -> Result<()> {
        let limit = format!("limit rate over {per_second}/second burst {burst} packets");
        self.nft(&format!(
            "add rule inet netobs output icmp type {{ destination-unreachable, time-exceeded }} {limit} counter drop\n\
             add rule inet netobs output icmpv6 type {{ destination-unreachable, time-exceeded }} {limit} counter drop"
        ))
    }

    /// Removes all rules from a chain (the table stays).
    pub fn fw_flush(&self, chain: Chain) -> Result<()> {
        self.nft(&format!("flush chain inet netobs {}", chain.as_str()))
    }

    /// `nft list table inet netobs` (with counters), for assertions and
    /// failure messages; empty if no rule was ever added.
    pub fn fw_ruleset(&self) -> Result<String> {
        if !self.inner.fw_ready.load(Ordering::Acquire) {
            return Ok(String::new());
        }
        self.run_ok(&["nft", "list", "table", "inet", "netobs"])
    }

    /// Sum of the packet counters of the rules in `chain` whose text
    /// contains `needle`; proves a specific rule fired.
    pub fn fw_packets(&self, chain: Chain, needle: &str) -> Result<u64> {
        if !self.inner.fw_ready.load(Ordering::Acquire) {
            return Ok(0);
        }
        let text = self.run_ok(&["nft", "list", "chain", "inet", "netobs", chain.as_str()])?;
        Ok(text
            .lines()
            .filter(|l| l.contains(needle))
            .filter_map(|l| {
                let rest = &l[l.find("counter packets ")? + "counter packets ".len()..];
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum())
    }
}
