//! The rules on hand-made evidence: no network.

use std::net::IpAddr;

use super::*;
use crate::{
    explain::ptb::{PtbSuspect, judge_ptb},
    probe::{
        packet::Proto,
        pmtu::{Announcement, Blackhole, PmtuResult},
        tcp::{IcmpAnswer, TcpResult, TcpState},
        trace::{Hop, ProbeResult, TraceResult},
    },
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn answer(from: &str, reply: &'static str, t: Option<u8>, c: Option<u8>) -> ProbeResult {
    ProbeResult {
        from: Some(ip(from)),
        name: None,
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
        quote: None,
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
        middleboxes: Vec::new(),
        mtu: None,
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
        stopped_early: Vec::new(),
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
        stopped_early: false,
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
    e.kernel = Some(KernelView {
        iface: "eth0".into(),
        icmp_errors: 9,
        ours: 9,
        lost: 7,
        matched_by_probes: 2,
        ..Default::default()
    });
    assert_eq!(decide(&e).kind, Kind::ReturnPath);
}

#[test]
fn blackhole_beats_reachable() {
    let mut e = base(Proto::Tcp);
    e.service = Some(trace(Proto::Tcp, vec![te(1), te(2), te(3), answer("198.18.4.1", "rst", None, None)], Some(4)));
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
        stopped_early: false,
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
    e.service = Some(trace(Proto::Tcp, vec![te(1), te(2), te(3), answer("198.18.4.1", "rst", None, None)], Some(4)));
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

/// A busy interface: the kernel saw many ICMP errors, but none quote our
/// probes. That says nothing about our return path.
#[test]
fn unrelated_icmp_errors_do_not_make_a_return_path_verdict() {
    let mut e = base(Proto::Udp);
    e.service = Some(trace(Proto::Udp, vec![te(1), silent(), silent()], None));
    e.icmp = Some(trace(Proto::Icmp, vec![te(1), silent(), silent()], None));
    e.kernel = Some(KernelView {
        iface: "eth0".into(),
        icmp_errors: 500,
        matched_by_probes: 2,
        ours: 2,
        foreign: 498,
        ..Default::default()
    });
    let v = decide(&e);
    assert_eq!(v.kind, Kind::SilentlyDropped, "{v:#?}");
    assert!(v.details.iter().any(|d| d.contains("498 other ICMP errors")), "{:#?}", v.details);
    // The same counts with sampling on: the text says the count is sampled.
    if let Some(k) = e.kernel.as_mut() {
        k.not_sampled = 40;
    }
    let v = decide(&e);
    assert!(v.details.iter().any(|d| d.contains("at least 498 (events are sampled)")), "{:#?}", v.details);
    assert!(v.details.last().is_some_and(|d| d.contains("not sampled")), "{:#?}", v.details);
}

fn rate_test(burst_answered: u32, spaced_answered: u32) -> RateTest {
    RateTest {
        hop: 2,
        addr: Some(ip("198.18.2.254")),
        burst_sent: 8,
        burst_answered,
        spaced_sent: 3,
        spaced_answered,
        spacing_ms: 600,
    }
}

/// A rate-limited hop on a reachable path is the headline, not a problem,
/// and a first-class finding.
#[test]
fn rate_limit_on_a_reachable_path_is_a_finding() {
    let mut e = base(Proto::Tcp);
    e.service = Some(trace(Proto::Tcp, vec![te(1), te(2), te(3), answer("198.18.4.1", "rst", None, None)], Some(4)));
    e.rate = Some(rate_test(3, 3));
    let v = decide(&e);
    assert_eq!(v.kind, Kind::IcmpRateLimited);
    assert!(!v.is_problem());
    assert!(v.headline.contains("destination reachable (hop 4): this is not packet loss"), "{}", v.headline);
    let f: Vec<_> = v.findings.iter().filter(|f| f.kind == FindingKind::IcmpRateLimited).collect();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].hop, Some(2));
    // Behind a higher-priority verdict it stays a finding.
    e.pmtu = Some(blackhole_pmtu(&e));
    let v = decide(&e);
    assert_eq!(v.kind, Kind::PmtuBlackhole);
    assert!(v.is_problem());
    assert!(v.findings.iter().any(|f| f.kind == FindingKind::IcmpRateLimited));
    // Not confirmed (lost when spaced too): no finding.
    e.rate = Some(rate_test(3, 1));
    assert!(decide(&e).findings.is_empty());
}

fn blackhole_pmtu(e: &Evidence) -> PmtuResult {
    PmtuResult {
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
        stopped_early: false,
    }
}

/// A bogus PTB that answered our own PMTU probe: flagged, no MTU from it.
#[test]
fn bogus_announcement_is_a_finding_not_a_path_mtu() {
    let mut e = base(Proto::Tcp);
    e.service = Some(trace(Proto::Tcp, vec![te(1), te(2), te(3), answer("198.18.4.1", "rst", None, None)], Some(4)));
    let from = ip("198.18.2.254");
    e.pmtu = Some(PmtuResult {
        announcements: vec![Announcement {
            from,
            mtu: 9000,
            hop: Some(2),
            probe_sizes: vec![1500],
            quoted_len: Some(1500),
            judgement: judge_ptb(4, 9000, Some(1500), Some(true)),
        }],
        blackhole: None,
        pmtu: Some(1500),
        ..blackhole_pmtu(&e)
    });
    let v = decide(&e);
    assert_eq!(v.kind, Kind::Reachable);
    assert_eq!(v.mtu, Some(1500));
    assert!(!v.details.iter().any(|d| d.contains("9000")), "{:#?}", v.details);
    assert!(!v.recommendation.contains("MSS"));
    let f = v.findings.iter().find(|f| f.kind == FindingKind::PtbNotBelieved).expect("a PTB finding");
    assert_eq!(f.mtu, Some(9000));
    assert!(f.headline.contains("9000 for a 1500-byte packet"), "{}", f.headline);
}

/// A forged PTB the kernel saw, quoting a flow we never sent.
#[test]
fn forged_ptb_seen_by_the_kernel_is_flagged() {
    let mut e = base(Proto::Tcp);
    e.service = Some(trace(Proto::Tcp, vec![te(1), te(2), te(3), answer("198.18.4.1", "rst", None, None)], Some(4)));
    e.kernel = Some(KernelView {
        iface: "eth0".into(),
        icmp_errors: 5,
        too_big: 5,
        foreign: 5,
        ptbs: vec![PtbSeen {
            from: ip("198.18.1.254"),
            mtu: 9000,
            quoted_len: Some(1500),
            quoted: "198.18.1.1:40404 -> 198.18.4.1:443 tcp".into(),
            ours: false,
            judgement: judge_ptb(4, 9000, Some(1500), Some(false)),
            count: 5,
        }],
        ..Default::default()
    });
    let v = decide(&e);
    assert_eq!(v.kind, Kind::Reachable);
    let f = v.findings.iter().find(|f| f.kind == FindingKind::PtbNotBelieved).expect("a PTB finding");
    assert_eq!(f.reasons, vec![PtbSuspect::MtuNotSmaller, PtbSuspect::UnknownFlow]);
    assert!(f.headline.contains("never sent"), "{}", f.headline);
    let text = render(&v);
    assert!(text.contains("PTB NOT BELIEVED"), "{text}");
}

#[test]
fn only_reachable_and_rate_limited_are_not_problems() {
    for k in [
        Kind::Rejected,
        Kind::Unreachable,
        Kind::SilentlyDropped,
        Kind::UdpFiltered,
        Kind::PmtuBlackhole,
        Kind::ReturnPath,
        Kind::NoAnswer,
    ] {
        assert!(k.is_problem(), "{k:?}");
    }
    assert!(!Kind::Reachable.is_problem());
    assert!(!Kind::IcmpRateLimited.is_problem());
}

/// A bogus PTB answering our own PMTU probe is seen by the prober and by
/// the kernel: one finding, not two.
#[test]
fn a_bogus_ptb_seen_twice_is_one_finding() {
    let mut e = base(Proto::Tcp);
    e.service = Some(trace(Proto::Tcp, vec![te(1), te(2), te(3), answer("198.18.4.1", "rst", None, None)], Some(4)));
    let from = ip("198.18.2.254");
    let judgement = judge_ptb(4, 9000, Some(1500), Some(true));
    e.pmtu = Some(PmtuResult {
        announcements: vec![Announcement {
            from,
            mtu: 9000,
            hop: Some(2),
            probe_sizes: vec![1500],
            quoted_len: Some(1500),
            judgement: judgement.clone(),
        }],
        blackhole: None,
        pmtu: Some(1500),
        ..blackhole_pmtu(&e)
    });
    e.kernel = Some(KernelView {
        iface: "eth0".into(),
        ptbs: vec![PtbSeen {
            from,
            mtu: 9000,
            quoted_len: Some(1500),
            quoted: "ours".into(),
            ours: true,
            judgement,
            count: 1,
        }],
        ..Default::default()
    });
    let n = decide(&e).findings.iter().filter(|f| f.kind == FindingKind::PtbNotBelieved).count();
    assert_eq!(n, 1);
}
