//! The words and records for what this host itself loses: ICMP errors it
//! dropped (`kfree_skb` with a drop reason, [`crate::kernel::drops`]) and
//! errors it should have sent but rate-limited ([`crate::kernel::snmp`]).
//! Both make this host the place where path-MTU discovery or a traceroute
//! breaks, so both name the host and what to change on it.

use std::time::{Duration, Instant};

use aya::Ebpf;
use serde_json::{Value, json};

use crate::{
    health::{self, Op},
    kernel::{
        drops::{self as kdrops, Direction, DropWatch, IcmpDrop},
        snmp::{RateLimitSysctls, RateLimitWatch, RateLimited},
    },
    output::{json::SCHEMA, metrics::Recorder},
};

/// What `watch` follows about its own host's losses: the `kfree_skb`
/// observer (if it attached) and the rate-limit counters (if the kernel
/// has them). `watch` only wires it: [`HostLosses::tick`] every second,
/// [`HostLosses::finish`] at exit.
pub(crate) struct HostLosses {
    drops: Option<DropWatch>,
    rate: Option<RateLimitWatch>,
    /// Rate-limit reports at most once per interval (the counters move
    /// every second while a traceroute runs).
    rate_every: Duration,
    rate_next: Instant,
}

/// Lines about dropped ICMP errors per second at most: a spoofed flood of
/// errors that this host's firewall drops has a new peer in every packet.
/// The rest is folded into one line; the totals by reason stay exact.
pub const MAX_DROP_LINES: usize = 8;

/// A record and its line, for the sink.
pub(crate) type Report = (Value, String);

impl HostLosses {
    /// Attaches the `kfree_skb` observer and takes the rate-limit
    /// baseline; what is unavailable comes back as notes (never an error:
    /// both are optional).
    pub(crate) fn start(ebpf: &mut Ebpf, rate_every: Duration) -> (HostLosses, Vec<String>) {
        let mut notes = Vec::new();
        let drops = kdrops::attach(ebpf).map(DropWatch::new).map_err(|e| notes.push(format!("{e:#}"))).ok();
        let rate = RateLimitWatch::start()
            .map_err(|e| notes.push(format!("{e:#}; this host's own ICMP rate limiting is not reported")))
            .ok();
        (HostLosses { drops, rate, rate_every, rate_next: Instant::now() + rate_every }, notes)
    }

    /// New drops (every call) and rate limiting (once per interval);
    /// updates the metrics. A failed read is a transient error.
    pub(crate) fn tick(&mut self, ebpf: &Ebpf, ifname: impl Fn(u32) -> String, rec: &Recorder) -> Vec<Report> {
        self.tick_with(ebpf, ifname, rec, self.rate_every)
    }

    fn tick_with(
        &mut self,
        ebpf: &Ebpf,
        ifname: impl Fn(u32) -> String,
        rec: &Recorder,
        repeat_after: Duration,
    ) -> Vec<Report> {
        let mut out = Vec::new();
        if let Some(d) = &mut self.drops {
            match d.poll(ebpf, Instant::now(), repeat_after) {
                Ok(drops) => out.extend(drop_reports(drops, &ifname)),
                Err(e) => health::transient(Op::MapRead, &e),
            }
            match d.totals(ebpf) {
                Ok((totals, unknown)) => rec.icmp_dropped(&totals, unknown),
                Err(e) => health::transient(Op::MapRead, &e),
            }
        }
        if Instant::now() >= self.rate_next {
            self.rate_next = Instant::now() + self.rate_every;
            out.extend(self.rate_report(rec));
        }
        out
    }

    fn rate_report(&mut self, rec: &Recorder) -> Option<Report> {
        let r = self.rate.as_mut()?;
        match r.poll() {
            Ok(Some(r)) => {
                rec.icmp_rate_limited(&r.total);
                Some((rate_limited_record(&r), rate_limited(&r)))
            }
            Ok(None) => None,
            Err(e) => {
                health::transient(Op::MapRead, &e);
                None
            }
        }
    }

    /// The last word at exit: drops and rate limiting not reported yet.
    pub(crate) fn finish(&mut self, ebpf: &Ebpf, ifname: impl Fn(u32) -> String, rec: &Recorder) -> Vec<Report> {
        self.rate_next = Instant::now();
        self.tick_with(ebpf, ifname, rec, Duration::ZERO)
    }
}

/// The largest [`MAX_DROP_LINES`] kinds get a line each; the rest one
/// `icmp_dropped_folded` line.
fn drop_reports(mut drops: Vec<IcmpDrop>, ifname: &impl Fn(u32) -> String) -> Vec<Report> {
    drops.sort_by_key(|d| std::cmp::Reverse(d.new));
    let folded = drops.split_off(drops.len().min(MAX_DROP_LINES));
    let mut out: Vec<Report> = drops
        .iter()
        .map(|x| {
            let iface = if x.ifindex == 0 { String::new() } else { ifname(x.ifindex) };
            (dropped_record(x, &iface), dropped(x, &iface))
        })
        .collect();
    if !folded.is_empty() {
        let messages: u64 = folded.iter().map(|d| d.new).sum();
        let text = format!(
            "… and {} more kinds of ICMP errors dropped by this host ({messages} messages), folded; \
the totals by reason are in netobs_icmp_dropped_total",
            folded.len()
        );
        let v = json!({
            "schema": SCHEMA, "type": "icmp_dropped_folded",
            "kinds": folded.len(), "messages": messages, "text": text,
        });
        out.push((v, text));
    }
    out
}

/// Short name of an ICMP message, as operators say it.
fn message(family: u8, t: u8, c: u8) -> String {
    match (family, t, c) {
        (4, 3, 4) => "frag-needed (ICMP 3/4)".into(),
        (6, 2, _) => "Packet Too Big (ICMPv6 2)".into(),
        (4, 11, _) | (6, 3, _) => format!("time exceeded (ICMP{} {t}/{c})", if family == 6 { "v6" } else { "" }),
        _ => {
            let m = netobs_common::icmp::meaning(family, t, c);
            format!("{} (ICMP{} {t}/{c})", m.name, if family == 6 { "v6" } else { "" })
        }
    }
}

fn too_big(d: &IcmpDrop) -> bool {
    (d.family == 4 && d.icmp_type == 3 && d.icmp_code == 4) || (d.family == 6 && d.icmp_type == 2)
}

/// "frag-needed from R arrived on e0 and was dropped by this host:
/// NETFILTER_DROP", with what it quoted and what it costs.
pub fn dropped(d: &IcmpDrop, iface: &str) -> String {
    let msg = message(d.family, d.icmp_type, d.icmp_code);
    let mtu = d.mtu.map(|m| format!(" (MTU {m})")).unwrap_or_default();
    let about = d
        .quoted
        .as_ref()
        .map(|q| match (q.src_port, q.dst_port) {
            (Some(s), Some(p)) => format!(" about {}:{s} -> {}:{p}", fmt_ip(q.src), fmt_ip(q.dst)),
            _ => format!(" about {} -> {}", q.src, q.dst),
        })
        .unwrap_or_default();
    let times = if d.count == 1 { "1 time".to_string() } else { format!("{} times", d.count) };
    match d.direction {
        Direction::Inbound => {
            let cost = if too_big(d) {
                "the sender never learns the path MTU: a PMTU blackhole made here. Allow ICMP 3/4 (ICMPv6 2) in, or clamp TCP MSS"
            } else {
                "the socket (or, forwarded, the host) it is for never hears of it: a timeout instead of an error"
            };
            format!(
                "{msg}{mtu} from {} arrived on {iface} and was dropped by this host: {}{about} ({times}); {cost}",
                d.peer, d.reason
            )
        }
        Direction::Outbound => {
            let cost = if too_big(d) {
                "the sender never learns the path MTU: a PMTU blackhole made here. Allow ICMP 3/4 (ICMPv6 2) out, or clamp TCP MSS"
            } else {
                "the sender sees silence instead of an error"
            };
            let via = if iface.is_empty() { String::new() } else { format!(" on {iface}") };
            format!(
                "this host generated {msg}{mtu} for {} and dropped it{via} before it left: {}{about} ({times}); {cost}",
                d.peer, d.reason
            )
        }
    }
}

fn fmt_ip(a: std::net::IpAddr) -> String {
    if a.is_ipv6() { format!("[{a}]") } else { a.to_string() }
}

/// `{"type":"icmp_dropped", ...}`: one kind of dropped ICMP error, re-emitted
/// as its count grows (at most once a second).
pub fn dropped_record(d: &IcmpDrop, iface: &str) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or_else(|e| json!({ "encode_error": e.to_string() }));
    if let Value::Object(m) = &mut v {
        m.insert("schema".into(), SCHEMA.into());
        m.insert("type".into(), "icmp_dropped".into());
        m.insert("iface".into(), iface.into());
        m.insert("text".into(), dropped(d, iface).into());
    }
    v
}

/// Which sysctls set the limit that suppressed what, in words.
fn limits(r: &RateLimited) -> String {
    let s: &RateLimitSysctls = &r.sysctls;
    let val = |v: Option<u64>, unit: &str| v.map(|v| format!(" = {v}{unit}")).unwrap_or_default();
    let mut parts = Vec::new();
    if r.total.host.unwrap_or(0) > 0 {
        parts.push(format!(
            "net.ipv4.icmp_ratelimit{} per destination, for the types in net.ipv4.icmp_ratemask{}",
            val(s.icmp_ratelimit, " ms"),
            val(s.icmp_ratemask, "")
        ));
    }
    if r.total.global.unwrap_or(0) > 0 {
        parts.push(format!(
            "net.ipv4.icmp_msgs_per_sec{} / icmp_msgs_burst{} host-wide",
            val(s.icmp_msgs_per_sec, ""),
            val(s.icmp_msgs_burst, "")
        ));
    }
    if r.total.host6.unwrap_or(0) > 0 {
        parts.push(format!("net.ipv6.icmp.ratelimit{} per destination", val(s.ipv6_icmp_ratelimit, " ms")));
    }
    parts.join("; ")
}

/// "this gateway rate-limited N ICMP errors it should have sent
/// (net.ipv4.icmp_ratelimit / net.ipv4.icmp_msgs_per_sec)".
pub fn rate_limited(r: &RateLimited) -> String {
    let n = r.total.sum();
    let new = r.new.sum();
    format!(
        "this gateway rate-limited {n} ICMP error{} it should have sent ({new} in the last interval; {}): \
traceroutes through it show silent hops and senders miss unreachables, although nothing was lost. \
Raise the limit if that matters (Linux never rate-limits frag-needed)",
        if n == 1 { "" } else { "s" },
        limits(r)
    )
}

/// `{"type":"icmp_rate_limited", ...}`.
pub fn rate_limited_record(r: &RateLimited) -> Value {
    json!({
        "schema": SCHEMA, "type": "icmp_rate_limited",
        "rate_limited": r.total.sum(), "new": r.new.sum(),
        "total": r.total, "delta": r.new, "sysctls": r.sysctls,
        "text": rate_limited(r),
    })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::kernel::{drops::Quoted, snmp::RateLimitCounts};

    fn drop(direction: Direction) -> IcmpDrop {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        IcmpDrop {
            direction,
            family: 4,
            icmp_type: 3,
            icmp_code: 4,
            reason: "NETFILTER_DROP".into(),
            reason_code: 11,
            ifindex: 2,
            peer: ip("198.18.2.254"),
            outer_src: ip("198.18.2.254"),
            outer_dst: ip("198.18.1.1"),
            mtu: Some(1400),
            quoted: Some(Quoted {
                src: ip("198.18.1.1"),
                dst: ip("198.18.3.1"),
                protocol: 6,
                src_port: Some(80),
                dst_port: Some(40000),
                len: 1500,
            }),
            new: 1,
            count: 3,
        }
    }

    #[test]
    fn an_inbound_ptb_dropped_here_says_so_with_the_reason() {
        let s = dropped(&drop(Direction::Inbound), "eth0");
        assert!(
            s.starts_with("frag-needed (ICMP 3/4) (MTU 1400) from 198.18.2.254 arrived on eth0 and was dropped by this host: NETFILTER_DROP"),
            "{s}"
        );
        assert!(s.contains("198.18.1.1:80 -> 198.18.3.1:40000"), "{s}");
        assert!(s.contains("3 times") && s.contains("Allow ICMP 3/4"), "{s}");
        let v = dropped_record(&drop(Direction::Inbound), "eth0");
        assert_eq!(v["type"], "icmp_dropped");
        assert_eq!(v["direction"], "inbound");
        assert_eq!(v["reason"], "NETFILTER_DROP");
        assert_eq!(v["quoted"]["dst_port"], 40000);
    }

    #[test]
    fn an_outbound_error_is_one_this_host_generated() {
        let mut d = drop(Direction::Outbound);
        d.icmp_type = 11;
        d.icmp_code = 0;
        d.mtu = None;
        let s = dropped(&d, "");
        assert!(
            s.starts_with(
                "this host generated time exceeded (ICMP 11/0) for 198.18.2.254 and dropped it before it left"
            ),
            "{s}"
        );
        assert!(s.contains("sees silence"), "{s}");
    }

    #[test]
    fn a_flood_of_kinds_is_folded_into_one_line() {
        let many: Vec<IcmpDrop> = (0..20u8)
            .map(|i| IcmpDrop {
                peer: IpAddr::from([198, 18, 9, i]),
                new: u64::from(i) + 1,
                ..drop(Direction::Inbound)
            })
            .collect();
        let out = drop_reports(many, &|_| "eth0".to_string());
        assert_eq!(out.len(), MAX_DROP_LINES + 1);
        // The largest kinds get their own lines.
        assert_eq!(out[0].0["peer"], "198.18.9.19");
        let fold = &out[MAX_DROP_LINES].0;
        assert_eq!(fold["type"], "icmp_dropped_folded");
        assert_eq!(fold["kinds"], 12);
        assert_eq!(fold["messages"], (1..=12).sum::<u64>());
    }

    #[test]
    fn rate_limit_names_the_sysctl_of_the_counter_that_moved() {
        let r = RateLimited {
            new: RateLimitCounts { global: Some(0), host: Some(4), host6: Some(0) },
            total: RateLimitCounts { global: Some(0), host: Some(9), host6: Some(0) },
            sysctls: RateLimitSysctls { icmp_ratelimit: Some(1000), icmp_ratemask: Some(6168), ..Default::default() },
        };
        let s = rate_limited(&r);
        assert!(
            s.starts_with("this gateway rate-limited 9 ICMP errors it should have sent (4 in the last interval"),
            "{s}"
        );
        assert!(s.contains("net.ipv4.icmp_ratelimit = 1000 ms per destination"), "{s}");
        assert!(!s.contains("icmp_msgs_per_sec"), "the global counter did not move: {s}");
        let v = rate_limited_record(&r);
        assert_eq!(v["rate_limited"], 9);
        assert_eq!(v["total"]["host"], 9);
        assert_eq!(v["sysctls"]["icmp_ratelimit"], 1000);
    }
}
