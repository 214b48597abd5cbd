//! Findings in words: the sentences an operator reads.

use std::{fmt::Write as _, net::IpAddr, time::SystemTime};

use netobs_common::icmp::Verdict;

use super::{
    IcmpBack,
    aggregate::{Aggregate, Fold},
    finding::{Direction, Fact, Finding, Flow},
};

/// `addr:port`, with brackets for IPv6.
pub fn endpoint(addr: IpAddr, port: Option<u16>) -> String {
    match (addr, port) {
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    }
}

/// "198.18.3.1:65000 -> 198.18.1.1:56194 tcp SYN-ACK".
pub fn flow_words(flow: &Flow, tcp_flags: Option<&str>) -> String {
    let mut s =
        format!("{} -> {} {}", endpoint(flow.src, flow.src_port), endpoint(flow.dst, flow.dst_port), flow.protocol);
    if let Some(f) = tcp_flags {
        let _ = write!(s, " {f}");
    }
    if let Some(id) = flow.echo_id {
        let _ = write!(s, " echo id {id}");
    }
    s
}

/// ", NATed from client 198.18.1.5:40000" when conntrack undid a NAT.
fn nat_words(f: &Finding) -> String {
    f.nat_original
        .as_ref()
        .map(|o| format!(" (NAT of client {} -> {})", endpoint(o.src, o.src_port), endpoint(o.dst, o.dst_port)))
        .unwrap_or_default()
}

/// What the lost packets were, singular or plural ("SYN-ACK", "SYN-ACKs").
fn what(f: &Finding, count: u64) -> String {
    let plural = what_plural(f);
    if count == 1 { plural.strip_suffix('s').map(str::to_string).unwrap_or(plural) } else { plural }
}

/// The verb for a verdict's count line ("rejected", "too big").
fn outcome_verb(f: &Finding) -> &'static str {
    match f.verdict {
        Verdict::Rejected => "rejected",
        Verdict::Unreachable => "unreachable",
        Verdict::FragNeeded | Verdict::DfOversized => "too big",
        Verdict::TtlExpired => "expired",
        Verdict::Redirect => "redirected",
        _ => "reported",
    }
}

/// What the lost packets were, in the plural ("SYN-ACKs", "packets").
fn what_plural(f: &Finding) -> String {
    match (f.tcp_flags.as_deref(), f.flow.as_ref().map(|fl| fl.protocol.as_str())) {
        (Some("SYN-ACK"), _) => "SYN-ACKs".into(),
        (Some("SYN"), _) => "SYNs".into(),
        (Some("RST"), _) => "RSTs".into(),
        (_, Some("tcp")) => "TCP segments".into(),
        (_, Some("udp")) => "UDP datagrams".into(),
        (_, Some("icmp")) | (_, Some("ipv6-icmp")) => "ICMP echo packets".into(),
        _ => "packets".into(),
    }
}

/// Clock time (UTC) of a SystemTime, "15:31:31".
pub fn clock(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.get(11..19).unwrap_or(&s).to_string()
}

/// The verdict's headline word.
pub fn headline(v: Verdict) -> &'static str {
    match v {
        Verdict::Rejected => "REJECTED",
        Verdict::Unreachable => "UNREACHABLE",
        Verdict::FragNeeded => "TOO BIG",
        Verdict::TtlExpired => "TTL EXPIRED",
        Verdict::ReassemblyTimeout => "REASSEMBLY",
        Verdict::Redirect => "REDIRECT",
        Verdict::ParameterProblem => "BAD HEADER",
        Verdict::SourceQuench => "QUENCH",
        Verdict::DfOversized => "DF TOO BIG",
        Verdict::Other => "ICMP",
    }
}

/// The hop-distance clause: "2 hops away (quoted TTL 62, sent 64; ICMP
/// arrived TTL 63)", with a warning when the two estimates disagree.
pub fn distance_words(f: &Finding) -> String {
    let Some(h) = &f.hops else { return String::new() };
    let mut s = match h.distance {
        Some(1) => "1 hop away".to_string(),
        Some(d) => format!("{d} hops away"),
        None => "at an unknown distance".to_string(),
    };
    let mut parts = Vec::new();
    if let (Some(q), Some(sent)) = (h.quoted_ttl, h.sent_ttl)
        && h.by_quote.is_some()
    {
        let guess = if h.sent_ttl_inferred { " (guessed)" } else { "" };
        parts.push(format!("quoted TTL {q}, sent {sent}{guess}"));
    }
    parts.push(format!("ICMP arrived TTL {}", h.outer_ttl));
    let _ = write!(s, " ({})", parts.join("; "));
    if h.agree == Some(false) {
        let _ = write!(
            s,
            "; the forward path says {} hops, the return path {}: the paths differ or a middlebox rewrites TTLs",
            h.by_quote.unwrap_or(0),
            h.by_outer.unwrap_or(0)
        );
    }
    s
}

/// The TCP MSS that fits a path MTU: minus the IP (20 / 40) and TCP (20)
/// headers.
fn mss_for(mtu: u32, family: u8) -> u32 {
    mtu.saturating_sub(if family == 4 { 40 } else { 60 })
}

/// The "why and what to do" sentence for a finding.
pub fn advice(f: &Finding) -> String {
    let reporter = f.reporter;
    let what = what_plural(f);
    let dst = f.flow.as_ref().map(|fl| fl.dst);
    let dst_s = dst.map(|d| d.to_string()).unwrap_or_else(|| "the destination".into());
    match f.verdict {
        Verdict::Rejected => {
            let consequence = match f.direction {
                Direction::Return => " on their way to the client. The client sees a timeout".to_string(),
                Direction::Outgoing => {
                    format!(" to {dst_s}. Our connections fail with 'no route to host' / 'permission denied'")
                }
                Direction::Forwarded => {
                    let client =
                        f.nat_original.as_ref().or(f.flow.as_ref()).map(|fl| fl.src.to_string()).unwrap_or_default();
                    format!(" from client {client} to {dst_s}, which we route")
                }
                _ => String::new(),
            };
            format!(
                "an ACL/firewall on or near {reporter} rejects our {what}{consequence}. Fix: the rule on {reporter} (or allow this flow)"
            )
        }
        Verdict::Unreachable => match (f.family, f.icmp_code) {
            (4, 3) | (6, 4) => format!(
                "{reporter} is up but nothing listens on that UDP port{}",
                f.flow.as_ref().and_then(|fl| fl.dst_port).map(|p| format!(" ({p})")).unwrap_or_default()
            ),
            (4, 0) | (4, 6) | (6, 0) => {
                format!("{reporter} has no route to {dst_s}: check routing on or after {reporter}")
            }
            (4, 1) | (4, 7) | (6, 3) => {
                format!(
                    "{reporter} cannot reach {dst_s} on its last link (ARP / neighbour discovery fails): the host is down or the address is wrong"
                )
            }
            (4, 2) => format!("{dst_s} does not speak this IP protocol"),
            _ => format!("{reporter} says {dst_s} is unreachable: {}", f.hint),
        },
        Verdict::FragNeeded => {
            let mtu = f.mtu.unwrap_or(0);
            let len = f.packet_len.map(|l| format!("{l}-byte ")).unwrap_or_default();
            if let Some(why) = f.ptb_suspect {
                format!(
                    "NOT BELIEVED: {}; forged or broken, so no MTU or MSS advice comes from it (a forged frag-needed can force fragmentation)",
                    why.words(f.family, mtu, f.packet_len)
                )
            } else if mtu == 0 {
                format!(
                    "{reporter} cannot forward {len}packets with DF set and did not say its MTU (pre-RFC 1191 router)"
                )
            } else {
                let mss = mss_for(mtu, f.family);
                let cache_unknown = f.unknown.contains(&Fact::PmtuCache);
                let cache = match (f.direction, f.pmtu_cached) {
                    (Direction::Outgoing | Direction::Return, _) if cache_unknown => {
                        format!(". Whether our route cache took it is not known: the route lookup for {dst_s} failed")
                    }
                    (Direction::Outgoing | Direction::Return, Some(c)) if c <= mtu => {
                        format!(". Our route cache took it: path MTU to {dst_s} is now {c}")
                    }
                    (Direction::Outgoing | Direction::Return, Some(c)) => {
                        format!(
                            ". Our route cache still says MTU {c} for {dst_s}: the kernel did not accept the announcement"
                        )
                    }
                    (Direction::Outgoing | Direction::Return, None) => format!(
                        ". Our route cache holds no path MTU for {dst_s}: the kernel ignored the announcement (check net.ipv4.ip_no_pmtu_disc / min_pmtu) and our big packets keep vanishing"
                    ),
                    _ => String::new(),
                };
                format!(
                    "{reporter} cannot forward {len}packets with DF set: its next link has MTU {mtu}. Senders must send at most {mtu} bytes (TCP MSS {mss}); if this message is filtered on the way back, that is a PMTU blackhole{cache}"
                )
            }
        }
        Verdict::TtlExpired => {
            let looks_like_probe =
                f.flow.as_ref().and_then(|fl| fl.dst_port).is_some_and(|p| (33434..=33534).contains(&p));
            let quoted_low = f.hops.as_ref().and_then(|h| h.quoted_ttl).is_some_and(|q| q <= 1);
            let near = f.hops.as_ref().and_then(|h| h.distance).unwrap_or(0);
            if f.flow.as_ref().is_some_and(|fl| fl.protocol == "tcp") && quoted_low && !looks_like_probe {
                format!(
                    "the TTL of ordinary TCP traffic ran out at {reporter}, only {near} hops away: a routing loop is likely (packets leave with TTL 64 or more); check the routes on and around {reporter}"
                )
            } else {
                format!(
                    "the TTL ran out at {reporter}: a traceroute hop, or a routing loop when it keeps happening to ordinary traffic"
                )
            }
        }
        Verdict::ReassemblyTimeout => {
            format!("{reporter} gave up reassembling our fragments: some fragments are lost on the way")
        }
        Verdict::Redirect => format!(
            "{reporter} says a better first hop for {dst_s} is {}",
            f.gateway.map(|g| g.to_string()).unwrap_or_else(|| "another router".into())
        ),
        Verdict::ParameterProblem => format!(
            "{reporter} rejected a header field{}",
            f.pointer.map(|p| format!(" at byte {p}")).unwrap_or_default()
        ),
        Verdict::SourceQuench => {
            format!("{reporter} sent a (deprecated) source quench: an old device signalling congestion")
        }
        Verdict::DfOversized => {
            let mtu = f.mtu.unwrap_or(0);
            let mss = mss_for(mtu, f.family);
            let src = f.flow.as_ref().map(|fl| fl.src.to_string()).unwrap_or_else(|| f.reporter.to_string());
            let msg = if f.family == 4 { "frag-needed (ICMP 3/4)" } else { "Packet Too Big (ICMPv6 2)" };
            // Each claim only from what was observed (see `Ledger`): no
            // egress observer means "none left" is unknown, no icmp_send
            // tracepoint means "none generated" is.
            let back = match f.icmp_back {
                Some(IcmpBack { sent: Some(n), .. }) if n > 0 => format!(
                    "{n} {msg} went back to {src} ({n} seen leaving); if {src} still sends big packets, the ICMP is lost further upstream"
                ),
                Some(IcmpBack { generated: Some(g), sent: Some(0) }) if g > 0 => format!(
                    "the kernel generated {g} {msg} for {src} but none left this host: its own firewall (nft/iptables output) drops them. That is a PMTU blackhole made here: allow ICMP type 3 code 4 out, or clamp TCP MSS to {mss}"
                ),
                Some(IcmpBack { generated: Some(g), sent: None }) if g > 0 => format!(
                    "the kernel generated {g} {msg} for {src}; whether they left is not known (no egress observer: --no-egress). If {src} keeps sending big packets, clamp TCP MSS to {mss} here"
                ),
                Some(IcmpBack { generated: Some(0), .. }) => format!(
                    "no {msg} was generated for {src} (ICMP rate limit, or the packets were dropped before routing): the sender never learns the MTU. Clamp TCP MSS to {mss} here or raise the MTU"
                ),
                Some(IcmpBack { generated: None, sent: None }) => format!(
                    "netobs cannot see whether a {msg} went back to {src} (no egress observer{}); clamp TCP MSS to {mss} here or raise the MTU if {src} keeps sending big packets",
                    if f.family == 4 { ", no icmp_send tracepoint" } else { "" }
                ),
                Some(IcmpBack { generated: None, sent: Some(_) }) if f.family == 4 => format!(
                    "no {msg} was seen leaving towards {src}, and without the icmp_send tracepoint netobs cannot tell whether this host generated one: if it is filtered, that is a PMTU blackhole; clamp TCP MSS to {mss} here or raise the MTU"
                ),
                _ => format!(
                    "no {msg} was seen leaving towards {src}: if it is filtered, that is a PMTU blackhole; clamp TCP MSS to {mss} here or raise the MTU"
                ),
            };
            format!(
                "{}-byte DF packets from {src} cannot leave through {} (MTU {mtu}): this gateway drops them. {back}",
                f.packet_len.unwrap_or(0),
                f.egress_iface.as_deref().unwrap_or("the egress")
            )
        }
        Verdict::Other => f.hint.to_string(),
    }
}

/// The one-line summary used in JSON (`text`) and logs.
pub fn sentence(a: &Aggregate) -> String {
    let f = &a.finding;
    let flow = f
        .flow
        .as_ref()
        .map(|fl| format!("{} {}{}", f.direction.words(), flow_words(fl, f.tcp_flags.as_deref()), nat_words(f)))
        .unwrap_or_else(|| format!("{} (quote too short to name the flow)", f.direction.words()));
    if f.kind == "df_oversized" {
        return format!(
            "{}: {flow}; {} {}, first {}, last {}",
            headline(f.verdict),
            a.count,
            if a.count == 1 { "packet" } else { "packets" },
            clock(a.first_seen),
            clock(a.last_seen)
        );
    }
    let dist = distance_words(f);
    format!(
        "{} {flow} by {}{}{}, ICMP {}/{} {}: {}; {} since {}",
        headline(f.verdict),
        f.reporter,
        if dist.is_empty() { "" } else { ", " },
        dist,
        f.icmp_type,
        f.icmp_code,
        f.icmp_name,
        advice(f),
        a.count,
        clock(a.first_seen)
    )
}

/// The multi-line terminal block.
pub fn block(a: &Aggregate, color: bool) -> String {
    let f = &a.finding;
    let (bold, red, reset) = if color { ("\x1b[1m", "\x1b[31m", "\x1b[0m") } else { ("", "", "") };
    let mut s = String::new();
    let flow = f
        .flow
        .as_ref()
        .map(|fl| format!("{}{}", flow_words(fl, f.tcp_flags.as_deref()), nat_words(f)))
        .unwrap_or_else(|| "(quote too short to name the flow)".into());
    let _ = writeln!(
        s,
        "{} {red}{bold}{:<11}{reset} {} {flow}",
        clock(a.last_seen),
        headline(f.verdict),
        f.direction.words()
    );
    let pad = "         ";
    if f.kind == "df_oversized" {
        let _ = writeln!(s, "{pad}on {} -> egress {}", f.iface, f.egress_iface.as_deref().unwrap_or("?"));
    } else {
        let _ = writeln!(s, "{pad}by {}, {} (seen on {})", f.reporter, distance_words(f), f.iface);
        let ann = if f.annotation.is_empty() { String::new() } else { format!(" [{}]", f.annotation) };
        let mtu = f.mtu.map(|m| format!(" (MTU {m})")).unwrap_or_default();
        let _ = writeln!(s, "{pad}ICMP {}/{} {}{mtu}{ann}", f.icmp_type, f.icmp_code, f.icmp_name);
    }
    let _ = writeln!(s, "{pad}{}.", advice(f));
    let sock = match (f.socket_state, f.flow.as_ref().and_then(|fl| fl.src_port)) {
        (Some(st), Some(port)) => format!(" (connection in {st} on :{port})"),
        (Some(st), None) => format!(" (connection in {st})"),
        _ => String::new(),
    };
    let _ = write!(
        s,
        "{pad}{} {} {}, first {}, last {}{sock}",
        a.count,
        what(f, a.count),
        outcome_verb(f),
        clock(a.first_seen),
        clock(a.last_seen)
    );
    if !f.unknown.is_empty() {
        let facts: Vec<&str> = f.unknown.iter().map(|u| u.words()).collect();
        let _ =
            write!(s, "\n{pad}not known (host lookup failed, timed out or skipped under load): {}", facts.join(", "));
    }
    s
}

/// 13842 -> "13,842".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The line for what a (verdict, interface) bucket folded: "… and 13,842
/// more REJECTED findings on eth0 from 13,842 reporters in the last 10 s
/// (ICMP 3/10 ×9,001, 3/13 ×4,841), folded; see /top or --json".
pub fn folded(f: &Fold) -> String {
    let secs = f.until.duration_since(f.since).map(|d| d.as_secs()).unwrap_or(0).max(1);
    let reporters = format!("{}{}", thousands(f.reporters), if f.reporters_capped { "+" } else { "" });
    let mut codes: Vec<String> = f
        .codes
        .iter()
        .take(4)
        .map(|((family, t, c), n)| {
            let v6 = if *family == 6 { "v6 " } else { "" };
            format!("{v6}{t}/{c} \u{d7}{}", thousands(*n))
        })
        .collect();
    let rest = f.codes.len().saturating_sub(4) as u64 + u64::from(f.other_codes > 0);
    if rest > 0 {
        codes.push(format!("+{rest} other codes"));
    }
    format!(
        "\u{2026} and {} more {} {} on {} from {reporters} {} in the last {secs} s (ICMP {}), folded; see /top or --json",
        thousands(f.findings),
        headline(f.bucket.verdict),
        if f.findings == 1 { "finding" } else { "findings" },
        f.bucket.iface,
        if f.reporters == 1 { "reporter" } else { "reporters" },
        codes.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::aggregate::BucketKey;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(13_842), "13,842");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn fold_line_names_count_codes_and_where_to_look() {
        let since = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        let f = Fold {
            bucket: BucketKey { verdict: Verdict::Unreachable, iface: "eth0".into() },
            findings: 13_842,
            events: 14_000,
            reporters: 4096,
            reporters_capped: true,
            codes: vec![((4, 3, 1), 9000), ((4, 3, 3), 4000), ((4, 3, 0), 500), ((4, 3, 2), 300), ((6, 1, 3), 42)],
            other_codes: 0,
            since,
            until: since + std::time::Duration::from_secs(10),
        };
        let s = folded(&f);
        assert_eq!(
            s,
            "\u{2026} and 13,842 more UNREACHABLE findings on eth0 from 4,096+ reporters in the last 10 s (ICMP 3/1 \u{d7}9,000, 3/3 \u{d7}4,000, 3/0 \u{d7}500, 3/2 \u{d7}300, +1 other codes), folded; see /top or --json"
        );
    }
}
