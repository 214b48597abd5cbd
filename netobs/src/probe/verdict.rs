//! From probe results to one verdict: pure rules over [`Evidence`], so
//! every rule is unit-tested without a network.
//!
//! Order matters, most specific first: an explicit reject names its
//! culprit; a PMTU blackhole explains "works for small, hangs for big"
//! even though the destination answers; a protocol that dies after hop N
//! while ICMP goes further is a filter; a hop that answers part of a burst
//! but all of a spaced series is rate limiting; otherwise the destination
//! answered (reachable) or nothing did.

use std::net::IpAddr;

use netobs_common::icmp;
use serde::Serialize;

use super::{
    packet::Proto,
    pmtu::PmtuResult,
    tcp::{TcpResult, TcpState},
    trace::TraceResult,
};

/// The kinds of verdict (`kind` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Reachable,
    Rejected,
    Unreachable,
    SilentlyDropped,
    UdpFiltered,
    PmtuBlackhole,
    IcmpRateLimited,
    ReturnPath,
    NoAnswer,
}

/// Result of the burst-then-spaced test on one hop.
#[derive(Clone, Debug, Serialize)]
pub struct RateTest {
    pub hop: u8,
    pub addr: Option<IpAddr>,
    pub burst_sent: u32,
    pub burst_answered: u32,
    pub spaced_sent: u32,
    pub spaced_answered: u32,
    pub spacing_ms: u64,
}

/// What the kernel observer counted on the egress interface while the
/// probes ran.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KernelView {
    pub iface: String,
    /// All ICMP/ICMPv6 errors that arrived on the interface (XDP).
    pub icmp_errors: u64,
    pub time_exceeded: u64,
    pub unreachable: u64,
    pub too_big: u64,
    /// ICMP errors our probe sockets matched to our probes.
    pub matched_by_probes: u64,
}

/// Everything `explain` gathered.
#[derive(Clone, Debug, Serialize)]
pub struct Evidence {
    pub target: IpAddr,
    pub proto: Proto,
    pub port: Option<u16>,
    /// Trace with the service's protocol and port.
    pub service: Option<TraceResult>,
    /// Trace with ICMP echo (for comparison).
    pub icmp: Option<TraceResult>,
    pub tcp: Option<TcpResult>,
    pub pmtu: Option<PmtuResult>,
    pub rate: Option<RateTest>,
    pub kernel: Option<KernelView>,
    /// Why the kernel view is missing, if it is.
    pub kernel_note: Option<String>,
}

/// The one verdict `explain` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub kind: Kind,
    /// The first line, e.g. "REJECTED at hop 2 (198.18.2.254)".
    pub headline: String,
    /// The hop the verdict is about (rejecting hop, last answering hop
    /// before a drop, hop behind the narrow link, rate-limiting hop).
    pub hop: Option<u8>,
    pub addr: Option<IpAddr>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub icmp_words: Option<&'static str>,
    /// Path MTU when known.
    pub mtu: Option<u32>,
    /// Hops to the destination when it answered.
    pub dest_hop: Option<u8>,
    /// Burst answers (rate limiting): k of n.
    pub answered: Option<u32>,
    pub of: Option<u32>,
    /// Supporting facts, one per line.
    pub details: Vec<String>,
    /// What to do.
    pub recommendation: String,
    /// Which conclusions rest on the return path, and which do not.
    pub return_path: Vec<String>,
}

impl Verdict {
    fn new(kind: Kind, headline: String) -> Verdict {
        Verdict {
            kind,
            headline,
            hop: None,
            addr: None,
            icmp_type: None,
            icmp_code: None,
            icmp_words: None,
            mtu: None,
            dest_hop: None,
            answered: None,
            of: None,
            details: Vec::new(),
            recommendation: String::new(),
            return_path: Vec::new(),
        }
    }
}

fn at(hop: Option<u8>, addr: Option<IpAddr>) -> String {
    match (hop, addr) {
        (Some(h), Some(a)) => format!("hop {h} ({a})"),
        (Some(h), None) => format!("hop {h}"),
        (None, Some(a)) => a.to_string(),
        (None, None) => "an unknown hop".into(),
    }
}

fn service_words(e: &Evidence) -> String {
    match (e.proto, e.port) {
        (Proto::Icmp, _) => "ICMP echo".into(),
        (p, Some(port)) => format!("{} to port {port}", p.as_str().to_uppercase()),
        (p, None) => p.as_str().to_uppercase(),
    }
}

/// The hop where the destination answered, from any probe.
fn dest_hop(e: &Evidence) -> Option<u8> {
    e.service
        .as_ref()
        .and_then(|t| t.reached_at)
        .or_else(|| e.icmp.as_ref().and_then(|t| t.reached_at))
        .or_else(|| e.pmtu.as_ref().and_then(|p| p.dest_hops))
}

/// Where `addr` answered as a hop, in either trace.
fn hop_of(e: &Evidence, addr: IpAddr) -> Option<u8> {
    e.service.as_ref().and_then(|t| t.hop_of(addr)).or_else(|| e.icmp.as_ref().and_then(|t| t.hop_of(addr)))
}

fn addr_at(e: &Evidence, ttl: u8) -> Option<IpAddr> {
    e.service
        .as_ref()
        .and_then(|t| t.hop(ttl))
        .and_then(|h| h.addr())
        .or_else(|| e.icmp.as_ref().and_then(|t| t.hop(ttl)).and_then(|h| h.addr()))
}

fn evidence_line(e: &Evidence) -> String {
    let probes: u32 = e.service.as_ref().map_or(0, |t| t.probes_sent)
        + e.icmp.as_ref().map_or(0, |t| t.probes_sent)
        + e.tcp.as_ref().map_or(0, |t| t.syns_sent)
        + e.pmtu.as_ref().map_or(0, |p| p.probes_sent)
        + e.rate.as_ref().map_or(0, |r| r.burst_sent + r.spaced_sent);
    let kernel = match (&e.kernel, &e.kernel_note) {
        (Some(k), _) => format!(
            "; kernel saw {} ICMP errors on {} ({} time-exceeded, {} unreachable, {} frag-needed/too-big)",
            k.icmp_errors, k.iface, k.time_exceeded, k.unreachable, k.too_big
        ),
        (None, Some(n)) => format!("; no kernel view ({n})"),
        (None, None) => String::new(),
    };
    format!("evidence: {probes} probes{kernel}")
}

/// A reject / unreachable from a router (not the destination) quoting
/// our service probes: (type, code, from, hop, count).
fn find_reject(e: &Evidence) -> Option<(u8, u8, IpAddr, Option<u8>, u32)> {
    let fam = if e.target.is_ipv4() { 4 } else { 6 };
    if let Some(t) = e.tcp.as_ref().filter(|t| t.state == TcpState::Icmp)
        && let Some(i) = &t.icmp
        && (i.from != e.target || icmp::meaning(fam, i.icmp_type, i.code).verdict == icmp::Verdict::Rejected)
    {
        let hop = hop_of(e, i.from).or(i.hop_by_quote);
        let count = e.service.as_ref().map_or(0, |s| count_errors(s, i.from)) + 1;
        return Some((i.icmp_type, i.code, i.from, hop, count));
    }
    let s = e.service.as_ref()?;
    for h in &s.hops {
        for p in &h.probes {
            let (Some(from), Some(t), Some(c)) = (p.from, p.icmp_type, p.icmp_code) else { continue };
            if p.reply != "unreachable" {
                continue;
            }
            let m = icmp::meaning(fam, t, c);
            if from != e.target || m.verdict == icmp::Verdict::Rejected {
                return Some((t, c, from, hop_of(e, from).or(Some(h.ttl)), count_errors(s, from)));
            }
        }
    }
    None
}

fn count_errors(t: &TraceResult, from: IpAddr) -> u32 {
    t.hops.iter().flat_map(|h| &h.probes).filter(|p| p.from == Some(from) && p.reply == "unreachable").count() as u32
}

/// Applies the rules.
pub fn decide(e: &Evidence) -> Verdict {
    let fam = if e.target.is_ipv4() { 4 } else { 6 };
    let svc = service_words(e);
    let dest = dest_hop(e);
    let evidence = evidence_line(e);

    // 1. Rejected / unreachable at a hop.
    if let Some((t, c, from, hop, count)) = find_reject(e) {
        let m = icmp::meaning(fam, t, c);
        let kind = if m.verdict == icmp::Verdict::Rejected || (fam == 4 && c == 3) || (fam == 6 && c == 4) {
            Kind::Rejected
        } else {
            Kind::Unreachable
        };
        let word = if kind == Kind::Rejected { "REJECTED" } else { "UNREACHABLE" };
        let mut v = Verdict::new(kind, format!("{word} at {} : {svc} to {}", at(hop, Some(from)), e.target));
        v.headline = v.headline.replace(" : ", ": ");
        v.hop = hop;
        v.addr = Some(from);
        v.icmp_type = Some(t);
        v.icmp_code = Some(c);
        v.icmp_words = Some(m.name);
        let icmpname = if fam == 4 { "ICMP" } else { "ICMPv6" };
        v.details.push(format!("{from} answers {icmpname} {t}/{c} {} {}: {}", m.name, m.annotation, m.hint));
        if let Some(i) = e.tcp.as_ref().and_then(|t| t.icmp.as_ref())
            && let (Some(q), Some(h)) = (i.quoted_ttl, i.hop_by_quote)
        {
            v.details.push(format!(
                    "the SYN it quotes had TTL {q} when rejected: {h} router(s) decremented it; the ICMP arrived with TTL {} ({} hop(s) back)",
                    i.reply_ttl,
                    i.hop_by_return.map(|x| x.to_string()).unwrap_or_else(|| "?".into())
                ));
        }
        v.details.push(format!("{count} probe(s) drew this answer"));
        if let Some(d) = e.icmp.as_ref().and_then(|t| t.reached_at) {
            v.details.push(format!("ICMP echo reaches {} at hop {d}: only {svc} is refused", e.target));
        }
        v.recommendation = if kind == Kind::Rejected {
            format!("fix the ACL/firewall on or near {from} (it rejects {svc}), or ask its owner to")
        } else {
            format!("check routing at {from}: {}", m.hint)
        };
        v.return_path.push(format!(
            "does not rest on the return path: the reject came back, so {from} can reach us; the refusal is on the way to {}",
            e.target
        ));
        v.details.push(evidence);
        return v;
    }

    // 2. PMTU blackhole.
    if let Some(b) =
        e.pmtu.as_ref().and_then(|p| p.blackhole.as_ref()).filter(|b| b.too_big_seen == 0 && b.lost_probes >= 2)
    {
        let hop = b.hop;
        let prev = b.last_big_hop.or(hop.map(|h| h.saturating_sub(1)));
        let prev_addr = b.last_big_addr.or(prev.and_then(|p| addr_at(e, p)));
        let hop_addr =
            b.hop_addr.or(hop.and_then(|h| addr_at(e, h))).or(if hop == dest { Some(e.target) } else { None });
        let mut v = Verdict::new(
            Kind::PmtuBlackhole,
            format!("PMTU BLACKHOLE between {} and {}", at(prev, prev_addr), at(hop, hop_addr)),
        );
        v.hop = hop;
        v.addr = hop_addr;
        v.mtu = Some(b.largest_ok);
        v.dest_hop = dest;
        let (toobig, hdr) =
            if fam == 4 { ("fragmentation needed (ICMP 3/4)", 40) } else { ("Packet Too Big (ICMPv6 2)", 60) };
        v.details.push(format!(
            "path MTU {}: DF probes of {} bytes reach {}, {} and larger vanish",
            b.largest_ok, b.largest_ok, e.target, b.smallest_lost
        ));
        v.details.push(format!(
            "no {toobig} came back for any of the large probes ({} lost at {} bytes)",
            b.lost_probes, b.smallest_lost
        ));
        if let Some(h) = hop {
            v.details.push(format!(
                "TTL-limited {}-byte probes still draw time-exceeded from {}, not from hop {h}, which answers small ones -> the link into hop {h} has MTU {} and its {toobig} is lost",
                b.locate_size,
                at(prev, prev_addr),
                b.largest_ok
            ));
        }
        match e.tcp.as_ref().map(|t| t.state) {
            Some(TcpState::Open) | Some(TcpState::Closed) => {
                v.details.push("TCP: the handshake works (small packets); transfers stall after it".into())
            }
            _ => {}
        }
        if let Some(k) = &e.kernel {
            v.details.push(format!("kernel saw {} frag-needed/too-big on {} during the run", k.too_big, k.iface));
        }
        v.recommendation = format!(
            "clamp TCP MSS to {} on the path (e.g. iptables/nft TCPMSS), or permit {} back to senders",
            b.largest_ok.saturating_sub(hdr),
            if fam == 4 { "ICMP 3/4" } else { "ICMPv6 type 2" }
        );
        v.return_path.push(format!(
            "\"no {toobig} seen\" rests on the return path: the router in front of the narrow link may send it and something drops it on the way back; for the sender the effect is the same"
        ));
        v.return_path.push("the location does not: the hops before the narrow link answered the big probes".into());
        v.details.push(evidence);
        return v;
    }

    // 3. The service protocol dies after hop N.
    let svc_reached = e.service.as_ref().is_some_and(|t| t.reached_at.is_some())
        || e.tcp.as_ref().is_some_and(|t| matches!(t.state, TcpState::Open | TcpState::Closed));
    if let (false, Some(s)) = (svc_reached, e.service.as_ref()) {
        let last = s.last_answering;
        let last_addr = last.and_then(|l| s.hop(l)).and_then(|h| h.addr());
        let icmp_further =
            e.icmp.as_ref().filter(|i| i.reached_at.is_some() || i.last_answering.unwrap_or(0) > last.unwrap_or(0));
        let kernel_extra = e.kernel.as_ref().filter(|k| k.icmp_errors > k.matched_by_probes);
        let n = last.unwrap_or(0);
        if let (None, Some(k)) = (icmp_further, kernel_extra) {
            let mut v = Verdict::new(
                Kind::ReturnPath,
                format!("RETURN PATH: answers reach this host's interface {} but not netobs", k.iface),
            );
            v.hop = last;
            v.addr = last_addr;
            v.details.push(format!(
                "the kernel counted {} ICMP errors arriving on {} while probe sockets matched {}: a local firewall (INPUT) drops them",
                k.icmp_errors, k.iface, k.matched_by_probes
            ));
            v.recommendation =
                "check this host's firewall (nft list ruleset / iptables -L INPUT) for ICMP drops".into();
            v.return_path.push(
                "rests on the return path by construction: the answers exist, they are lost on the last step".into(),
            );
            v.details.push(evidence);
            return v;
        }
        let (kind, word) = match (icmp_further.is_some(), e.proto) {
            (true, Proto::Udp) => (Kind::UdpFiltered, "UDP FILTERED"),
            _ => (Kind::SilentlyDropped, "SILENT DROP"),
        };
        let where_ = if kind == Kind::UdpFiltered {
            format!("at {}", at(last, last_addr))
        } else {
            format!("after {}", at(last, last_addr))
        };
        let mut v = Verdict::new(kind, format!("{word} {where_}: {svc} gets no answer past hop {n}"));
        v.hop = last;
        v.addr = last_addr;
        v.dest_hop = dest;
        if let Some(i) = icmp_further {
            match i.reached_at {
                Some(d) => v.details.push(format!("ICMP echo reaches {} (hop {d}): the path exists", e.target)),
                None => v.details.push(format!("ICMP echo gets answers up to hop {}", i.last_answering.unwrap_or(0))),
            }
            v.details.push(format!(
                "-> a firewall on hop {n} (when forwarding) or hop {} (on arrival) drops {svc} without rejecting",
                n + 1
            ));
            v.recommendation = format!("allow {svc} on the firewall at or just after {}", at(last, last_addr));
            v.return_path.push(format!(
                "does not rest on the return path: hop {n} answered, and hops past it answer ICMP echo probes, so their answers can reach us"
            ));
        } else {
            v.details.push(format!("ICMP echo stops at the same point: everything vanishes after hop {n}"));
            v.recommendation = format!(
                "check the device after {} (routing, firewall); run from the other side too: the return path may be broken",
                at(last, last_addr)
            );
            v.return_path.push(format!(
                "rests partly on the return path: hops past {n} may be receiving the probes with their answers lost on the way back"
            ));
        }
        if let Some(t) = &e.tcp
            && t.state == TcpState::Silent
        {
            v.details
                .push(format!("TCP: {} SYNs to port {} went unanswered ({:.1} s)", t.syns_sent, t.port, t.seconds));
        }
        v.details.push(evidence);
        return v;
    }

    // 4. Rate-limited ICMP at a hop.
    if let Some(r) = e
        .rate
        .as_ref()
        .filter(|r| r.burst_answered < r.burst_sent && r.spaced_answered == r.spaced_sent && r.spaced_sent > 0)
    {
        let mut v = Verdict::new(
            Kind::IcmpRateLimited,
            format!(
                "RATE-LIMITED ICMP at {}: answered {} of {} probes in a burst, {} of {} spaced {} ms apart",
                at(Some(r.hop), r.addr),
                r.burst_answered,
                r.burst_sent,
                r.spaced_answered,
                r.spaced_sent,
                r.spacing_ms
            ),
        );
        v.hop = Some(r.hop);
        v.addr = r.addr;
        v.answered = Some(r.burst_answered);
        v.of = Some(r.burst_sent);
        v.dest_hop = dest;
        v.details.push(format!(
            "-> hop {} rate-limits the ICMP it generates (like `ip icmp rate-limit unreachable` or Linux icmp_ratelimit); this is not packet loss",
            r.hop
        ));
        if let Some(d) = dest {
            v.details.push(format!("the destination is reachable (hop {d}); later hops answer"));
        }
        v.recommendation = "nothing to fix for traffic; read `*` at this hop as rate limiting, and expect PMTUD/traceroute to be slow through it".into();
        v.return_path.push("does not rest on the return path: the same hop answers every spaced probe".into());
        v.details.push(evidence);
        return v;
    }

    // 5. Reachable.
    let reached = dest.is_some() || svc_reached;
    let mut v = if reached {
        let mut v = Verdict::new(
            Kind::Reachable,
            format!(
                "REACHABLE: {svc} reaches {}{}",
                e.target,
                dest.map(|d| format!(" at hop {d}")).unwrap_or_default()
            ),
        );
        v.recommendation = "nothing on the path explains a failure; look at the application or the server".into();
        v.return_path.push("does not rest on the return path alone: answers from the destination came back".into());
        v
    } else {
        let mut v = Verdict::new(Kind::NoAnswer, format!("NO ANSWER: nothing answers probes to {}", e.target));
        v.recommendation = "check the first hop and this host's routing and firewall".into();
        v.return_path.push("rests on the return path: answers may exist and be lost on their way back".into());
        v
    };
    v.dest_hop = dest;
    if let Some(t) = &e.tcp {
        match t.state {
            TcpState::Open => v.details.push(format!(
                "TCP port {} open (SYN-ACK){}",
                t.port,
                t.mss.map(|m| format!(", MSS {m}")).unwrap_or_default()
            )),
            TcpState::Closed => v.details.push(format!("TCP port {} closed (RST from the destination)", t.port)),
            _ => {}
        }
    }
    if let Some(p) = &e.pmtu {
        if let Some(m) = p.pmtu {
            v.mtu = Some(m);
            v.details.push(format!("path MTU {m}"));
        }
        for a in &p.announcements {
            v.details.push(format!(
                "{} announced MTU {}{} (frag-needed / too-big arrive: PMTUD works)",
                a.from,
                a.mtu,
                a.hop.map(|h| format!(" at hop {h}")).unwrap_or_default()
            ));
        }
    }
    if let Some(r) = &e.rate {
        v.details.push(format!(
            "hop {} answered {} of {} burst probes and {} of {} spaced ones",
            r.hop, r.burst_answered, r.burst_sent, r.spaced_answered, r.spaced_sent
        ));
    }
    v.details.push(evidence);
    v
}

/// Text block for the terminal.
pub fn render(v: &Verdict) -> String {
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
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{
        pmtu::Blackhole,
        tcp::IcmpAnswer,
        trace::{Hop, ProbeResult},
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn answer(from: &str, reply: &'static str, t: Option<u8>, c: Option<u8>) -> ProbeResult {
        ProbeResult {
            from: Some(ip(from)),
            rtt_ms: Some(0.1),
            icmp_type: t,
            icmp_code: c,
            reply,
            words: None,
            annotation: String::new(),
            quoted_ttl: None,
            reply_ttl: Some(63),
            return_hops: Some(2),
            mtu: None,
        }
    }

    fn silent() -> ProbeResult {
        ProbeResult {
            from: None,
            rtt_ms: None,
            reply: "none",
            reply_ttl: None,
            return_hops: None,
            ..answer("0.0.0.0", "none", None, None)
        }
    }

    /// A trace whose hop i (1-based) answers with `hops[i-1]`.
    fn trace(proto: Proto, hops: Vec<ProbeResult>, reached: Option<u8>) -> TraceResult {
        let last = hops.iter().rposition(|p| p.from.is_some()).map(|i| i as u8 + 1);
        TraceResult {
            target: ip("198.18.4.1"),
            source: ip("198.18.1.1"),
            proto,
            dst_port: None,
            src_port: None,
            hops: hops
                .into_iter()
                .enumerate()
                .map(|(i, p)| Hop {
                    ttl: i as u8 + 1,
                    addrs: p.from.into_iter().collect(),
                    answered: p.from.is_some() as u32,
                    sent: 1,
                    probes: vec![p],
                })
                .collect(),
            reached_at: reached,
            last_answering: last,
            stop: "gap",
            probes_sent: 10,
            seconds: 0.5,
        }
    }

    fn te(n: u8) -> ProbeResult {
        answer(&format!("198.18.{n}.254"), "time_exceeded", Some(11), Some(0))
    }

    fn base(proto: Proto) -> Evidence {
        Evidence {
            target: ip("198.18.4.1"),
            proto,
            port: Some(443),
            service: None,
            icmp: None,
            tcp: None,
            pmtu: None,
            rate: None,
            kernel: None,
            kernel_note: None,
        }
    }

    fn icmp_full() -> TraceResult {
        trace(Proto::Icmp, vec![te(1), te(2), te(3), answer("198.18.4.1", "echo_reply", None, None)], Some(4))
    }

    #[test]
    fn reject_names_hop_and_code() {
        let mut e = base(Proto::Tcp);
        e.service =
            Some(trace(Proto::Tcp, vec![te(1), te(2), answer("198.18.2.254", "unreachable", Some(3), Some(10))], None));
        e.tcp = Some(TcpResult {
            target: e.target,
            port: 443,
            source: ip("198.18.1.1"),
            state: TcpState::Icmp,
            mss: None,
            rtt_ms: Some(0.1),
            icmp: Some(IcmpAnswer {
                from: ip("198.18.2.254"),
                icmp_type: 3,
                code: 10,
                words: "host administratively prohibited",
                hint: "",
                annotation: "!X",
                verdict: "rejected",
                quoted_ttl: Some(62),
                reply_ttl: 63,
                hop_by_quote: Some(2),
                hop_by_return: Some(2),
            }),
            return_hops: None,
            syns_sent: 1,
            seconds: 0.1,
        });
        let v = decide(&e);
        assert_eq!(v.kind, Kind::Rejected);
        assert_eq!(v.hop, Some(2));
        assert_eq!(v.icmp_code, Some(10));
        assert!(v.headline.contains("198.18.2.254"), "{}", v.headline);
        assert!(!v.return_path.is_empty());
    }

    #[test]
    fn silent_drop_after_last_answering_hop() {
        let mut e = base(Proto::Tcp);
        e.service = Some(trace(Proto::Tcp, vec![te(1), te(2), silent(), silent()], None));
        e.icmp = Some(icmp_full());
        let v = decide(&e);
        assert_eq!(v.kind, Kind::SilentlyDropped);
        assert_eq!(v.hop, Some(2));
        assert_eq!(v.dest_hop, Some(4));
    }

    #[test]
    fn udp_filtered_when_icmp_passes() {
        let mut e = base(Proto::Udp);
        e.service = Some(trace(Proto::Udp, vec![te(1), te(2), silent(), silent()], None));
        e.icmp = Some(icmp_full());
        let v = decide(&e);
        assert_eq!(v.kind, Kind::UdpFiltered);
        assert_eq!(v.hop, Some(2));
    }

    #[test]
    fn everything_silent_rests_on_return_path() {
        let mut e = base(Proto::Udp);
        e.service = Some(trace(Proto::Udp, vec![te(1), silent(), silent()], None));
        e.icmp = Some(trace(Proto::Icmp, vec![te(1), silent(), silent()], None));
        let v = decide(&e);
        assert_eq!(v.kind, Kind::SilentlyDropped);
        assert!(v.return_path[0].contains("rests partly"));
        // With the kernel seeing answers the sockets did not get: local drop.
        e.kernel =
            Some(KernelView { iface: "eth0".into(), icmp_errors: 9, matched_by_probes: 2, ..Default::default() });
        assert_eq!(decide(&e).kind, Kind::ReturnPath);
    }

    #[test]
    fn blackhole_beats_reachable() {
        let mut e = base(Proto::Tcp);
        e.service =
            Some(trace(Proto::Tcp, vec![te(1), te(2), te(3), answer("198.18.4.1", "rst", None, None)], Some(4)));
        e.pmtu = Some(PmtuResult {
            target: e.target,
            source: ip("198.18.1.1"),
            proto: Proto::Icmp,
            local_mtu: 1500,
            pmtu: Some(1400),
            announcements: vec![],
            blackhole: Some(Blackhole {
                largest_ok: 1400,
                smallest_lost: 1401,
                too_big_seen: 0,
                lost_probes: 2,
                hop: Some(3),
                hop_addr: Some(ip("198.18.3.254")),
                last_big_hop: Some(2),
                last_big_addr: Some(ip("198.18.2.254")),
                locate_size: 1401,
                locate: vec![],
            }),
            dest_hops: Some(4),
            steps: vec![],
            probes_sent: 20,
            seconds: 1.0,
        });
        let v = decide(&e);
        assert_eq!(v.kind, Kind::PmtuBlackhole);
        assert_eq!(v.mtu, Some(1400));
        assert_eq!(v.hop, Some(3));
        assert!(v.recommendation.contains("1360"));
        assert!(v.headline.contains("hop 2") && v.headline.contains("hop 3"), "{}", v.headline);
    }

    #[test]
    fn rate_limit_needs_spaced_answers() {
        let mut e = base(Proto::Tcp);
        e.service =
            Some(trace(Proto::Tcp, vec![te(1), te(2), te(3), answer("198.18.4.1", "rst", None, None)], Some(4)));
        e.rate = Some(RateTest {
            hop: 2,
            addr: Some(ip("198.18.2.254")),
            burst_sent: 8,
            burst_answered: 2,
            spaced_sent: 3,
            spaced_answered: 3,
            spacing_ms: 600,
        });
        let v = decide(&e);
        assert_eq!(v.kind, Kind::IcmpRateLimited);
        assert_eq!((v.hop, v.answered, v.of), (Some(2), Some(2), Some(8)));
        // Loss also when spaced: not (only) rate limiting.
        if let Some(r) = e.rate.as_mut() {
            r.spaced_answered = 1;
        }
        assert_eq!(decide(&e).kind, Kind::Reachable);
    }

    #[test]
    fn port_unreachable_from_destination_is_reachable() {
        let mut e = base(Proto::Udp);
        e.service = Some(trace(
            Proto::Udp,
            vec![te(1), te(2), te(3), answer("198.18.4.1", "unreachable", Some(3), Some(3))],
            Some(4),
        ));
        let v = decide(&e);
        assert_eq!(v.kind, Kind::Reachable);
        assert_eq!(v.dest_hop, Some(4));
    }
}
