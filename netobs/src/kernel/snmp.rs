//! "This host is the silent hop": the kernel's own ICMP rate-limit
//! counters, read from `/proc/net/snmp` (`Icmp: ... OutRateLimitGlobal
//! OutRateLimitHost`) and `/proc/net/snmp6` (`Icmp6OutRateLimitHost`).
//!
//! Linux suppresses the time-exceeded and unreachable messages it should
//! send once `net.ipv4.icmp_msgs_per_sec` / `icmp_msgs_burst` (host-wide:
//! OutRateLimitGlobal) or `net.ipv4.icmp_ratelimit` per destination for the
//! types in `icmp_ratemask` (OutRateLimitHost; IPv6:
//! `net.ipv6.icmp.ratelimit`) are exceeded; frag-needed is exempt. A
//! traceroute through such a gateway shows `* * *` at its hop although
//! nothing was lost. `/proc/net` is the reading process's namespace, so
//! these are the counts of the namespace `watch` runs in.

use anyhow::{Context as _, Result};
use serde::Serialize;

const SNMP: &str = "/proc/net/snmp";
const SNMP6: &str = "/proc/net/snmp6";

/// The counters (None: this kernel does not have it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RateLimitCounts {
    /// `Icmp: OutRateLimitGlobal` (icmp_msgs_per_sec / icmp_msgs_burst).
    pub global: Option<u64>,
    /// `Icmp: OutRateLimitHost` (icmp_ratelimit / icmp_ratemask).
    pub host: Option<u64>,
    /// `Icmp6OutRateLimitHost` (net.ipv6.icmp.ratelimit).
    pub host6: Option<u64>,
}

impl RateLimitCounts {
    /// This namespace's counters now.
    pub fn read() -> Result<RateLimitCounts> {
        let snmp = std::fs::read_to_string(SNMP).with_context(|| format!("reading {SNMP}"))?;
        // IPv6 may be disabled: then there is no file and no v6 counter.
        let snmp6 = std::fs::read_to_string(SNMP6).unwrap_or_default();
        Ok(RateLimitCounts::parse(&snmp, &snmp6))
    }

    /// From the two files' text.
    pub fn parse(snmp: &str, snmp6: &str) -> RateLimitCounts {
        RateLimitCounts {
            global: snmp_field(snmp, "Icmp", "OutRateLimitGlobal"),
            host: snmp_field(snmp, "Icmp", "OutRateLimitHost"),
            host6: snmp6
                .lines()
                .filter_map(|l| l.split_once(char::is_whitespace))
                .find(|(k, _)| *k == "Icmp6OutRateLimitHost")
                .and_then(|(_, v)| v.trim().parse().ok()),
        }
    }

    /// Whether the kernel has any of them.
    pub fn any(&self) -> bool {
        self.global.is_some() || self.host.is_some() || self.host6.is_some()
    }

    /// `self - earlier`, counter by counter (a counter that went backwards,
    /// which a namespace's counters never do, counts as 0).
    fn since(&self, earlier: &RateLimitCounts) -> RateLimitCounts {
        let d = |a: Option<u64>, b: Option<u64>| a.map(|a| a.saturating_sub(b.unwrap_or(0)));
        RateLimitCounts {
            global: d(self.global, earlier.global),
            host: d(self.host, earlier.host),
            host6: d(self.host6, earlier.host6),
        }
    }

    /// All of them together.
    pub fn sum(&self) -> u64 {
        self.global.unwrap_or(0) + self.host.unwrap_or(0) + self.host6.unwrap_or(0)
    }
}

/// `/proc/net/snmp` holds pairs of lines, a header (`Icmp: InMsgs ...`)
/// and its values (`Icmp: 12 ...`).
fn snmp_field(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.split_whitespace().next() == Some(prefix.as_str()));
    while let (Some(head), Some(vals)) = (lines.next(), lines.next()) {
        if let Some(i) = head.split_whitespace().position(|f| f == name) {
            return vals.split_whitespace().nth(i).and_then(|v| v.parse().ok());
        }
    }
    None
}

/// The sysctls that set the limits, as this namespace has them (None:
/// not readable here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RateLimitSysctls {
    /// `net.ipv4.icmp_ratelimit`: ms between errors to one destination.
    pub icmp_ratelimit: Option<u64>,
    /// `net.ipv4.icmp_ratemask`: which types that limit applies to.
    pub icmp_ratemask: Option<u64>,
    /// `net.ipv4.icmp_msgs_per_sec` / `icmp_msgs_burst`: host-wide.
    pub icmp_msgs_per_sec: Option<u64>,
    pub icmp_msgs_burst: Option<u64>,
    /// `net.ipv6.icmp.ratelimit`: ms between ICMPv6 errors to one destination.
    pub ipv6_icmp_ratelimit: Option<u64>,
}

impl RateLimitSysctls {
    pub fn read() -> RateLimitSysctls {
        let get = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse().ok());
        RateLimitSysctls {
            icmp_ratelimit: get("/proc/sys/net/ipv4/icmp_ratelimit"),
            icmp_ratemask: get("/proc/sys/net/ipv4/icmp_ratemask"),
            icmp_msgs_per_sec: get("/proc/sys/net/ipv4/icmp_msgs_per_sec"),
            icmp_msgs_burst: get("/proc/sys/net/ipv4/icmp_msgs_burst"),
            ipv6_icmp_ratelimit: get("/proc/sys/net/ipv6/icmp/ratelimit"),
        }
    }
}

/// Errors this host suppressed since the last report, and since `watch`
/// started: what an `icmp_rate_limited` record says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimited {
    /// Since the last report.
    pub new: RateLimitCounts,
    /// Since `watch` started.
    pub total: RateLimitCounts,
    /// The limits now.
    pub sysctls: RateLimitSysctls,
}

/// Follows the counters from a baseline taken at start.
pub struct RateLimitWatch {
    baseline: RateLimitCounts,
    last: RateLimitCounts,
}

impl RateLimitWatch {
    /// Takes the baseline now; None (with the reason) when this kernel has
    /// none of the counters.
    pub fn start() -> Result<RateLimitWatch> {
        let now = RateLimitCounts::read()?;
        if !now.any() {
            anyhow::bail!("this kernel has no ICMP rate-limit counters (OutRateLimitGlobal/Host, Linux 6.0+)");
        }
        Ok(RateLimitWatch { baseline: now, last: now })
    }

    /// What was suppressed since the last call, if anything.
    pub fn poll(&mut self) -> Result<Option<RateLimited>> {
        let now = RateLimitCounts::read()?;
        Ok(self.advance(now, RateLimitSysctls::read))
    }

    fn advance(&mut self, now: RateLimitCounts, sysctls: impl FnOnce() -> RateLimitSysctls) -> Option<RateLimited> {
        let new = now.since(&self.last);
        self.last = now;
        (new.sum() > 0).then(|| RateLimited { new, total: now.since(&self.baseline), sysctls: sysctls() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP_TEXT: &str = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
Icmp: InMsgs InErrors OutMsgs OutRateLimitGlobal OutRateLimitHost OutTimeExcds\n\
Icmp: 9 0 30 2 17 5\n\
IcmpMsg: InType3\nIcmpMsg: 2\n";

    #[test]
    fn counters_by_name_not_position() {
        let c = RateLimitCounts::parse(SNMP_TEXT, "Icmp6InMsgs    4\nIcmp6OutRateLimitHost           \t6\n");
        assert_eq!(c, RateLimitCounts { global: Some(2), host: Some(17), host6: Some(6) });
        assert_eq!(c.sum(), 25);
        let old = RateLimitCounts::parse("Icmp: InMsgs\nIcmp: 3\n", "");
        assert_eq!(old, RateLimitCounts::default());
        assert!(!old.any());
    }

    #[test]
    fn deltas_since_the_last_report_and_since_start() {
        let base = RateLimitCounts { global: Some(1), host: Some(10), host6: Some(0) };
        let mut w = RateLimitWatch { baseline: base, last: base };
        assert_eq!(w.advance(base, RateLimitSysctls::default), None, "nothing new, no report");
        let r = w.advance(RateLimitCounts { global: Some(1), host: Some(14), host6: Some(0) }, || RateLimitSysctls {
            icmp_ratelimit: Some(1000),
            ..Default::default()
        });
        let r = r.expect("4 suppressed");
        assert_eq!(r.new.host, Some(4));
        assert_eq!(r.total.sum(), 4);
        assert_eq!(r.sysctls.icmp_ratelimit, Some(1000));
        let r =
            w.advance(RateLimitCounts { global: Some(3), host: Some(15), host6: Some(0) }, Default::default).unwrap();
        assert_eq!((r.new.sum(), r.total.sum()), (3, 7));
    }

    #[test]
    fn this_kernel_has_the_counters() {
        let Ok(c) = RateLimitCounts::read() else { return };
        assert!(c.global.is_some() && c.host.is_some(), "{c:?}");
    }
}
