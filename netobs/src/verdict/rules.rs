//! One rule per verdict. Each reads [`Facts`] and returns its diagnosis when
//! its verdict applies; [`super::RULES`] fixes the order they are tried in.
//! The evidence line is appended by [`super::decide`], not by the rules.

use netobs_common::icmp;

use super::{Diagnosis, FindingKind, Kind, SideFinding, evidence::Facts, words};
use crate::probe::{packet::Proto, tcp::TcpState};

/// Rejected / unreachable at a hop: an ICMP error quoting our service probes.
pub fn rejected(f: &Facts) -> Option<Diagnosis> {
    let r = f.reject?;
    let (fam, svc, e) = (f.family, &f.service, f.e);
    let m = icmp::meaning(fam, r.icmp_type, r.icmp_code);
    let port_unreachable = (fam == 4 && r.icmp_code == 3) || (fam == 6 && r.icmp_code == 4);
    let kind =
        if m.verdict == icmp::Verdict::Rejected || port_unreachable { Kind::Rejected } else { Kind::Unreachable };
    let word = if kind == Kind::Rejected { "REJECTED" } else { "UNREACHABLE" };
    let from = r.from;
    let mut v = Diagnosis::new(kind, format!("{word} at {}: {svc} to {}", words::at(r.hop, Some(from)), e.target));
    v.hop = r.hop;
    v.addr = Some(from);
    v.icmp_type = Some(r.icmp_type);
    v.icmp_code = Some(r.icmp_code);
    v.icmp_words = Some(m.name);
    let icmpname = if fam == 4 { "ICMP" } else { "ICMPv6" };
    v.details.push(format!(
        "{from} answers {icmpname} {}/{} {} {}: {}",
        r.icmp_type, r.icmp_code, m.name, m.annotation, m.hint
    ));
    if let Some(i) = e.tcp.as_ref().and_then(|t| t.icmp.as_ref())
        && let (Some(q), Some(h)) = (i.quoted_ttl, i.hop_by_quote)
    {
        v.details.push(format!(
            "the SYN it quotes had TTL {q} when rejected: {h} router(s) decremented it; the ICMP arrived with TTL {} ({} hop(s) back)",
            i.reply_ttl,
            i.hop_by_return.map(|x| x.to_string()).unwrap_or_else(|| "?".into())
        ));
    }
    v.details.push(format!("{} probe(s) drew this answer", r.count));
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
    Some(v)
}

/// PMTU blackhole: DF probes above a size vanish and no too-big came back.
pub fn pmtu_blackhole(f: &Facts) -> Option<Diagnosis> {
    let b = f.blackhole?;
    let (fam, e, dest) = (f.family, f.e, f.dest_hop);
    let hop = b.hop;
    let prev = b.last_big_hop.or(hop.map(|h| h.saturating_sub(1)));
    let prev_addr = b.last_big_addr.or(prev.and_then(|p| f.addr_at(p)));
    let hop_addr = b.hop_addr.or(hop.and_then(|h| f.addr_at(h))).or(if hop == dest { Some(e.target) } else { None });
    let mut v = Diagnosis::new(
        Kind::PmtuBlackhole,
        format!("PMTU BLACKHOLE between {} and {}", words::at(prev, prev_addr), words::at(hop, hop_addr)),
    );
    v.hop = hop;
    v.addr = hop_addr;
    v.mtu = Some(b.largest_ok);
    v.dest_hop = dest;
    let toobig = words::too_big(fam);
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
            words::at(prev, prev_addr),
            b.largest_ok
        ));
    }
    if let Some(TcpState::Open | TcpState::Closed) = e.tcp.as_ref().map(|t| t.state) {
        v.details.push("TCP: the handshake works (small packets); transfers stall after it".into());
    }
    if let Some(k) = &e.kernel {
        v.details.push(format!("kernel saw {} frag-needed/too-big on {} during the run", k.too_big, k.iface));
    }
    v.recommendation = format!(
        "clamp TCP MSS to {} on the path (e.g. iptables/nft TCPMSS), or permit {} back to senders",
        words::mss_for(b.largest_ok, fam),
        if fam == 4 { "ICMP 3/4" } else { "ICMPv6 type 2" }
    );
    v.return_path.push(format!(
        "\"no {toobig} seen\" rests on the return path: the router in front of the narrow link may send it and something drops it on the way back; for the sender the effect is the same"
    ));
    v.return_path.push("the location does not: the hops before the narrow link answered the big probes".into());
    Some(v)
}

/// The service dies, ICMP echo does not get further, and the kernel saw
/// ICMP errors answering our own probes that our sockets never received
/// (matched per probe, late answers included): the answers reach the
/// interface and this host drops them. Only errors that
/// quote our probe flows count: on a busy interface, other traffic's
/// errors say nothing about our probes.
pub fn return_path(f: &Facts) -> Option<Diagnosis> {
    let s = f.e.service.as_ref()?;
    if f.service_reached || f.icmp_further.is_some() {
        return None;
    }
    let k = f.lost_locally?;
    let last = s.last_answering;
    let mut v = Diagnosis::new(
        Kind::ReturnPath,
        format!("RETURN PATH: answers reach this host's interface {} but not netobs", k.iface),
    );
    v.hop = last;
    v.addr = last.and_then(|l| s.hop(l)).and_then(|h| h.addr());
    v.details.push(format!(
        "the kernel saw {} ICMP errors quoting netobs's own probes arrive on {}, {} of them answering probes no probe socket ever heard back from (the sockets got {} answers in all): a local firewall (INPUT) drops them",
        k.sampled_count(k.ours),
        k.iface,
        k.sampled_count(k.lost),
        k.matched_by_probes
    ));
    v.recommendation = "check this host's firewall (nft list ruleset / iptables -L INPUT) for ICMP drops".into();
    v.return_path
        .push("rests on the return path by construction: the answers exist, they are lost on the last step".into());
    Some(v)
}

/// The service protocol gets no answer past hop N: a silent drop, or a UDP
/// filter when ICMP echo gets further.
pub fn filtered(f: &Facts) -> Option<Diagnosis> {
    let s = f.e.service.as_ref()?;
    if f.service_reached {
        return None;
    }
    let (svc, e) = (&f.service, f.e);
    let last = s.last_answering;
    let last_addr = last.and_then(|l| s.hop(l)).and_then(|h| h.addr());
    let n = last.unwrap_or(0);
    let (kind, word) = match (f.icmp_further.is_some(), e.proto) {
        (true, Proto::Udp) => (Kind::UdpFiltered, "UDP FILTERED"),
        _ => (Kind::SilentlyDropped, "SILENT DROP"),
    };
    let where_ = if kind == Kind::UdpFiltered {
        format!("at {}", words::at(last, last_addr))
    } else {
        format!("after {}", words::at(last, last_addr))
    };
    let mut v = Diagnosis::new(kind, format!("{word} {where_}: {svc} gets no answer past hop {n}"));
    v.hop = last;
    v.addr = last_addr;
    v.dest_hop = f.dest_hop;
    if let Some(i) = f.icmp_further {
        match i.reached_at {
            Some(d) => v.details.push(format!("ICMP echo reaches {} (hop {d}): the path exists", e.target)),
            None => v.details.push(format!("ICMP echo gets answers up to hop {}", i.last_answering.unwrap_or(0))),
        }
        v.details.push(format!(
            "-> a firewall on hop {n} (when forwarding) or hop {} (on arrival) drops {svc} without rejecting",
            n + 1
        ));
        v.recommendation = format!("allow {svc} on the firewall at or just after {}", words::at(last, last_addr));
        v.return_path.push(format!(
            "does not rest on the return path: hop {n} answered, and hops past it answer ICMP echo probes, so their answers can reach us"
        ));
    } else {
        v.details.push(format!("ICMP echo stops at the same point: everything vanishes after hop {n}"));
        v.recommendation = format!(
            "check the device after {} (routing, firewall); run from the other side too: the return path may be broken",
            words::at(last, last_addr)
        );
        v.return_path.push(format!(
            "rests partly on the return path: hops past {n} may be receiving the probes with their answers lost on the way back"
        ));
        if let Some(k) = &e.kernel
            && k.foreign > 0
        {
            v.details.push(format!(
                "{} other ICMP errors on {} quote flows that are not netobs's probes: unrelated traffic, not counted as lost answers",
                k.sampled_count(k.foreign),
                k.iface
            ));
        }
    }
    if let Some(t) = &e.tcp
        && t.state == TcpState::Silent
    {
        v.details.push(format!("TCP: {} SYNs to port {} went unanswered ({:.1} s)", t.syns_sent, t.port, t.seconds));
    }
    Some(v)
}

/// Rate-limited ICMP at a hop on a path whose destination answers.
pub fn rate_limited(f: &Facts) -> Option<Diagnosis> {
    let r = f.rate_limit?;
    let dest = f.dest_hop;
    let mut v = Diagnosis::new(Kind::IcmpRateLimited, words::rate_limit_headline(r, dest));
    v.hop = Some(r.hop);
    v.addr = r.addr;
    v.answered = Some(r.burst_answered);
    v.of = Some(r.burst_sent);
    v.dest_hop = dest;
    v.details.push(words::rate_limit_counts(r));
    v.details.push(words::rate_limit_meaning(r));
    if let Some(d) = dest {
        v.details.push(format!("the destination is reachable (hop {d}); later hops answer"));
    }
    v.recommendation = "nothing to fix for traffic; read `*` at this hop as rate limiting, and expect PMTUD/traceroute to be slow through it".into();
    v.return_path.push("does not rest on the return path: the same hop answers every spaced probe".into());
    Some(v)
}

/// The destination (or the service) answered.
pub fn reachable(f: &Facts) -> Option<Diagnosis> {
    if f.dest_hop.is_none() && !f.service_reached {
        return None;
    }
    let e = f.e;
    let mut v = Diagnosis::new(
        Kind::Reachable,
        format!(
            "REACHABLE: {} reaches {}{}",
            f.service,
            e.target,
            f.dest_hop.map(|d| format!(" at hop {d}")).unwrap_or_default()
        ),
    );
    v.recommendation = "nothing on the path explains a failure; look at the application or the server".into();
    v.return_path.push("does not rest on the return path alone: answers from the destination came back".into());
    v.dest_hop = f.dest_hop;
    path_details(f, &mut v);
    Some(v)
}

/// Nothing answered at all.
pub fn no_answer(f: &Facts) -> Diagnosis {
    let mut v = Diagnosis::new(Kind::NoAnswer, format!("NO ANSWER: nothing answers probes to {}", f.e.target));
    v.recommendation = "check the first hop and this host's routing and firewall".into();
    v.return_path.push("rests on the return path: answers may exist and be lost on their way back".into());
    v.dest_hop = f.dest_hop;
    path_details(f, &mut v);
    v
}

/// What the TCP check, the PMTU search and the rate test found, for the
/// verdicts that have nothing more specific to say.
fn path_details(f: &Facts, v: &mut Diagnosis) {
    let e = f.e;
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
        for a in p.announcements.iter().filter(|a| a.judgement.believable()) {
            v.details.push(format!(
                "{} announced MTU {}{} (frag-needed / too-big arrive: PMTUD works)",
                a.from,
                a.mtu,
                a.hop.map(|h| format!(" at hop {h}")).unwrap_or_default()
            ));
        }
    }
    if let Some(r) = &e.rate {
        v.details.push(words::rate_limit_counts(r));
    }
}

/// Findings next to whatever the verdict is: a confirmed rate-limited hop
/// (the user must not read its `*` as loss), and every PTB that is not
/// believed (so no advice comes from it, and the user knows why).
pub fn side_findings(f: &Facts) -> Vec<SideFinding> {
    let mut out = Vec::new();
    if let Some(r) = f.rate_limit {
        out.push(SideFinding {
            kind: FindingKind::IcmpRateLimited,
            headline: words::rate_limit_headline(r, f.dest_hop),
            hop: Some(r.hop),
            addr: r.addr,
            mtu: None,
            reasons: Vec::new(),
            details: vec![words::rate_limit_counts(r), words::rate_limit_meaning(r)],
        });
    }
    if let Some(p) = &f.e.pmtu {
        for a in p.announcements.iter().filter(|a| !a.judgement.believable()) {
            let why = a.judgement.words(f.family, a.mtu, a.quoted_len);
            out.push(SideFinding {
                kind: FindingKind::PtbNotBelieved,
                headline: words::ptb_headline(f.family, a.from, a.mtu, &why),
                hop: a.hop,
                addr: Some(a.from),
                mtu: Some(a.mtu),
                reasons: a.judgement.reasons.clone(),
                details: vec![format!(
                    "it answered netobs's own PMTU probes of {:?} bytes; the search ignored it",
                    a.probe_sizes
                )],
            });
        }
    }
    if let Some(k) = &f.e.kernel {
        // A PTB answering our PMTU probes is seen by both; say it once.
        let reported = |p: &&crate::verdict::PtbSeen| {
            p.ours
                && f.e.pmtu.as_ref().is_some_and(|m| m.announcements.iter().any(|a| a.from == p.from && a.mtu == p.mtu))
        };
        for p in k.ptbs.iter().filter(|p| !p.judgement.believable()).filter(|p| !reported(p)) {
            let why = p.judgement.words(f.family, p.mtu, p.quoted_len);
            out.push(SideFinding {
                kind: FindingKind::PtbNotBelieved,
                headline: words::ptb_headline(f.family, p.from, p.mtu, &why),
                hop: p.from.eq(&f.e.target).then_some(f.dest_hop).flatten().or_else(|| f.hop_of(p.from)),
                addr: Some(p.from),
                mtu: Some(p.mtu),
                reasons: p.judgement.reasons.clone(),
                details: vec![format!(
                    "the kernel saw {} such message(s) on {} quoting {}",
                    k.sampled_count(p.count),
                    k.iface,
                    p.quoted
                )],
            });
        }
    }
    out
}
