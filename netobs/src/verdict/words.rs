//! The sentences of a diagnosis: shared by every rule, and by anything
//! else that reports a verdict (`watch --investigate`), so the same fact is
//! always said the same way.

use std::net::IpAddr;

use super::{Diagnosis, FindingKind, evidence::Evidence, evidence::RateTest};
use crate::probe::packet::Proto;

/// "hop 2 (198.18.2.254)".
pub fn at(hop: Option<u8>, addr: Option<IpAddr>) -> String {
    match (hop, addr) {
        (Some(h), Some(a)) => format!("hop {h} ({a})"),
        (Some(h), None) => format!("hop {h}"),
        (None, Some(a)) => a.to_string(),
        (None, None) => "an unknown hop".into(),
    }
}

/// "TCP to port 443", "ICMP echo".
pub fn service(proto: Proto, port: Option<u16>) -> String {
    match (proto, port) {
        (Proto::Icmp, _) => "ICMP echo".into(),
        (p, Some(port)) => format!("{} to port {port}", p.as_str().to_uppercase()),
        (p, None) => p.as_str().to_uppercase(),
    }
}

/// The too-big message of a family, in words.
pub fn too_big(family: u8) -> &'static str {
    if family == 4 { "fragmentation needed (ICMP 3/4)" } else { "Packet Too Big (ICMPv6 2)" }
}

/// The TCP MSS that fits a path MTU: minus the IP (20 / 40) and TCP (20)
/// headers.
pub fn mss_for(mtu: u32, family: u8) -> u32 {
    mtu.saturating_sub(if family == 4 { 40 } else { 60 })
}

/// "RATE-LIMITED ICMP at hop 2 (198.18.2.254), destination reachable (hop
/// 4): this is not packet loss".
pub fn rate_limit_headline(r: &RateTest, dest: Option<u8>) -> String {
    let reach = match dest {
        Some(d) => format!(", destination reachable (hop {d})"),
        None => String::new(),
    };
    format!("RATE-LIMITED ICMP at {}{reach}: this is not packet loss", at(Some(r.hop), r.addr))
}

/// "hop 2 answered 3 of 8 probes in a burst, 3 of 3 spaced 600 ms apart".
pub fn rate_limit_counts(r: &RateTest) -> String {
    format!(
        "hop {} answered {} of {} probes in a burst, {} of {} spaced {} ms apart",
        r.hop, r.burst_answered, r.burst_sent, r.spaced_answered, r.spaced_sent, r.spacing_ms
    )
}

/// What a confirmed rate limit means.
pub fn rate_limit_meaning(r: &RateTest) -> String {
    format!(
        "-> hop {} rate-limits the ICMP it generates (like `ip icmp rate-limit unreachable` or Linux icmp_ratelimit); its `*` are not packet loss",
        r.hop
    )
}

/// "PTB NOT BELIEVED: 198.18.1.254 announced MTU 9000 (...): why".
pub fn ptb_headline(family: u8, from: IpAddr, mtu: u32, why: &str) -> String {
    let msg = if family == 4 { "frag-needed" } else { "Packet Too Big" };
    format!("PTB NOT BELIEVED: {msg} from {from} announcing MTU {mtu}: {why}; no MTU or MSS advice comes from it")
}

/// The evidence line (probes sent, what the kernel counted).
pub fn evidence_line(e: &Evidence) -> String {
    let probes: u32 = e.service.as_ref().map_or(0, |t| t.probes_sent)
        + e.icmp.as_ref().map_or(0, |t| t.probes_sent)
        + e.tcp.as_ref().map_or(0, |t| t.syns_sent)
        + e.pmtu.as_ref().map_or(0, |p| p.probes_sent)
        + e.rate.as_ref().map_or(0, |r| r.burst_sent + r.spaced_sent);
    let kernel = match (&e.kernel, &e.kernel_note) {
        (Some(k), _) => {
            let sampled = if k.not_sampled > 0 {
                format!("; {} more were counted but not sampled, so per-flow counts are lower bounds", k.not_sampled)
            } else {
                String::new()
            };
            format!(
                "; kernel counted {} ICMP errors on {} ({} time-exceeded, {} unreachable, {} frag-needed/too-big), of which the sampled events show {} quoting netobs's probes and {} other flows{sampled}",
                k.icmp_errors, k.iface, k.time_exceeded, k.unreachable, k.too_big, k.ours, k.foreign
            )
        }
        (None, Some(n)) => format!("; no kernel view ({n})"),
        (None, None) => String::new(),
    };
    let early = if e.stopped_early.is_empty() {
        String::new()
    } else {
        format!("; stopped early: {}", e.stopped_early.join(", "))
    };
    format!("evidence: {probes} probes{kernel}{early}")
}

/// Text block for the terminal.
pub fn render(v: &Diagnosis) -> String {
    let mut s = format!("{}\n", v.headline);
    for d in &v.details {
        s.push_str(&format!("  {d}\n"));
    }
    if !v.recommendation.is_empty() {
        s.push_str(&format!("  fix: {}\n", v.recommendation));
    }
    for r in &v.return_path {
        s.push_str(&format!("  return path: {r}\n"));
    }
    for f in &v.findings {
        // The headline already is the rate-limit finding: not twice.
        if f.kind == FindingKind::IcmpRateLimited && v.kind == super::Kind::IcmpRateLimited {
            continue;
        }
        s.push_str(&format!("{}\n", f.headline));
        for d in &f.details {
            s.push_str(&format!("  {d}\n"));
        }
    }
    s
}
