//! `netobs explain`: every relevant probe at once, the kernel observer
//! counting ICMP errors on the egress interface meanwhile, then one verdict.
//!
//! Why the kernel view: a probe socket that hears nothing cannot tell "no
//! answer came" from "the answer reached this host and our own firewall
//! dropped it". The XDP observer sees every ICMP error on the wire before
//! netfilter, so the two are told apart. Only errors that quote one of
//! netobs's own probe flows speak for that: on a busy interface most ICMP
//! errors belong to other traffic. Those per-flow counts come from the
//! observer's sampled events (its counters have no flows), so the text
//! says when sampling held some back; frag-needed / Packet Too Big among
//! them are judged (`explain::ptb`) and flagged when not believable.
//!
//! Early stops: the TCP check and the PMTU search run beside the traces,
//! and stop as soon as a trace shows their destination does not answer
//! (see `run`), so a silent path costs the trace's time, not every
//! timeout of every probe kind.

use std::{
    cell::Cell,
    collections::HashSet,
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use netobs_common::{
    Config, Event,
    event::{flags, have, hook, kind, stat},
};
use tokio::sync::watch;

use super::{
    Progress,
    packet::{Flow, Proto},
    pmtu::{self, PmtuOptions},
    socket::Prober,
    tcp::{self, TcpState},
    trace::{self, TraceOptions, TraceResult},
};
use crate::{
    explain::{ptb::judge_ptb, words::endpoint},
    kernel::{self, AttachMode, AttachOptions, LoadOptions, Session, counters::Counters, events::EventStream},
    net,
    verdict::{self, Diagnosis, Evidence, KernelView, PtbSeen, RateTest},
};

/// What `explain` was asked.
#[derive(Clone, Debug)]
pub struct Request {
    pub target: IpAddr,
    pub proto: Proto,
    pub port: u16,
    pub max_ttl: u8,
    pub max_wait: Duration,
    pub kernel: bool,
    pub progress: bool,
}

/// The verdict and everything behind it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub verdict: Diagnosis,
    pub evidence: Evidence,
    pub egress: Option<String>,
    pub probes_sent: u32,
    pub seconds: f64,
}

/// Sampling for `explain`'s own short run: generous, so the per-flow
/// counts (which come from sampled events) are complete unless the
/// interface is flooded; `not_sampled` says when they are not.
const EXPLAIN_EVENTS_PER_SEC: u32 = 20_000;
const EXPLAIN_BURST: u32 = 4_000;

/// Loads the observer and attaches it to `iface` (ingress only: we want
/// the ICMP that arrives), with its event stream.
fn attach(iface: &str) -> Result<(Session, EventStream)> {
    let config = Config { min_mtu: 0, events_per_sec: EXPLAIN_EVENTS_PER_SEC, burst: EXPLAIN_BURST, ..Config::DEFAULT };
    let opts = LoadOptions { config, ringbuf_bytes: 1 << 20, ..LoadOptions::default() };
    let ebpf = kernel::load(&opts)?;
    let mut session = Session::attach(
        ebpf,
        &[iface.to_string()],
        AttachOptions { mode: AttachMode::Auto, egress: false, force: false, forwarded_tcp: false },
    )?;
    let events = EventStream::new(&mut session.ebpf)?;
    Ok((session, events))
}

/// Exact counts of ICMP errors that arrived on one interface, and the
/// events the kernel did not record.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    all: u64,
    time_exceeded: u64,
    unreachable: u64,
    too_big: u64,
    not_sampled: u64,
}

fn icmp_counts(c: &Counters, ifindex: u32) -> Counts {
    let mut out = Counts { not_sampled: c.stat(stat::SAMPLED_OUT) + c.stat(stat::RINGBUF_FULL), ..Counts::default() };
    for (k, v) in &c.icmp {
        if k.ifindex != ifindex || k.hook == hook::TC_EGRESS {
            continue;
        }
        out.all += v;
        match (k.family, k.icmp_type, k.icmp_code) {
            (4, 11, _) | (6, 3, _) => out.time_exceeded += v,
            (4, 3, 4) | (6, 2, _) => out.too_big += v,
            (4, 3, _) | (6, 1, _) => out.unreachable += v,
            _ => {}
        }
    }
    out
}

/// One of our probe flows and the tokens of the probes whose answers its
/// sockets received.
struct OurFlow {
    flow: Flow,
    answered: HashSet<u16>,
}

/// Whether the packet an ICMP error quotes belongs to `f`: same addresses,
/// protocol, and ports (ICMP echo: identifier). A quote cut before the
/// ports matches on addresses and protocol alone.
fn quotes_flow(ev: &Event, f: &Flow) -> bool {
    let q = &ev.inner;
    if q.have & have::IP == 0 {
        return false;
    }
    if q.src_ip() != f.src || q.dst_ip() != f.dst || q.protocol != f.proto.number(f.family()) {
        return false;
    }
    if q.have & have::PORTS == 0 {
        return true;
    }
    match f.proto {
        Proto::Icmp => q.have & have::ECHO != 0 && q.src_port == f.icmp_id,
        Proto::Udp | Proto::Tcp => q.src_port == f.src_port && q.dst_port == f.dst_port,
    }
}

/// The probe token the quote carries (see `packet.rs`: the IPv4 id; for
/// IPv6 the TCP sequence or the echo sequence). IPv6 UDP probes carry it in
/// the payload, which the event does not keep: `None`.
fn token_of(ev: &Event, f: &Flow) -> Option<u16> {
    let q = &ev.inner;
    if f.family() == 4 {
        return Some(q.ip_id as u16);
    }
    if q.have & have::SEQ == 0 {
        return None;
    }
    match f.proto {
        Proto::Tcp => Some(q.seq.wrapping_sub(f.seq_base) as u16),
        Proto::Icmp => Some(q.seq as u16),
        Proto::Udp => None,
    }
}

/// The quoted packet in words, "198.18.1.1:40404 -> 198.18.4.1:443 tcp".
fn quoted_words(ev: &Event) -> String {
    let q = &ev.inner;
    if q.have & have::IP == 0 {
        return "(quote too short to name the flow)".into();
    }
    let ports = q.have & have::PORTS != 0 && q.have & have::ECHO == 0;
    format!(
        "{} -> {} {}",
        endpoint(q.src_ip(), ports.then_some(q.src_port)),
        endpoint(q.dst_ip(), ports.then_some(q.dst_port)),
        crate::explain::finding::protocol_name(q.protocol)
    )
}

/// Sorts the sampled events of the run into ours / foreign, finds the
/// ones whose probe no socket heard back from (lost on this host), and
/// judges every frag-needed / Packet Too Big among them.
fn classify_events(events: &[Event], ifindex: u32, flows: &[OurFlow], view: &mut KernelView) {
    for ev in events {
        if ev.kind != kind::ICMP_ERROR || ev.ifindex != ifindex || ev.hook == hook::TC_EGRESS {
            continue;
        }
        let mine: Vec<&OurFlow> = flows.iter().filter(|o| quotes_flow(ev, &o.flow)).collect();
        let ours = !mine.is_empty();
        if ours {
            view.ours += 1;
            let tokens: Vec<(u16, &OurFlow)> =
                mine.iter().filter_map(|o| token_of(ev, &o.flow).map(|t| (t, *o))).collect();
            if tokens.is_empty() {
                view.untracked += 1;
            } else if !tokens.iter().any(|(t, o)| o.answered.contains(t)) {
                view.lost += 1;
            }
        } else {
            view.foreign += 1;
        }
        let fam = if ev.outer_family == 6 { 6 } else { 4 };
        let too_big = (fam == 4 && ev.icmp_type == 3 && ev.icmp_code == 4) || (fam == 6 && ev.icmp_type == 2);
        if !too_big || ev.flags & flags::HAS_MTU == 0 {
            continue;
        }
        let quoted_len = (ev.inner.have & have::IP != 0).then_some(ev.inner.total_len);
        let quoted = quoted_words(ev);
        let from = ev.outer_src_ip();
        if let Some(p) = view.ptbs.iter_mut().find(|p| p.from == from && p.mtu == ev.mtu && p.quoted == quoted) {
            p.count += 1;
        } else if view.ptbs.len() < KernelView::MAX_PTBS {
            view.ptbs.push(PtbSeen {
                from,
                mtu: ev.mtu,
                quoted_len,
                quoted,
                ours,
                judgement: judge_ptb(fam, ev.mtu, quoted_len, Some(ours)),
                count: 1,
            });
        }
    }
}

/// Completes once `rx` says the evidence is decided, and not before
/// `not_before`; never if the sender goes away without saying so.
async fn decided(mut rx: watch::Receiver<bool>, not_before: Instant) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep_until(not_before.into()).await;
}

/// Shortest time a probe kind runs before an early stop: answers from a
/// destination farther than the traces went still have this long.
const EARLY_STOP_FLOOR: Duration = Duration::from_millis(250);

fn evidence_tcp_stopped(t: &Option<tcp::TcpResult>) -> bool {
    t.as_ref().is_some_and(|t| t.stopped_early)
}

/// ICMP errors a trace got.
fn errors_in(t: &TraceResult) -> u64 {
    t.hops.iter().flat_map(|h| &h.probes).filter(|p| p.icmp_type.is_some()).count() as u64
}

/// A hop that answered part of its probes while a later hop answered:
/// a rate-limit candidate.
fn rate_candidate(traces: &[&TraceResult]) -> Option<(u8, Option<IpAddr>)> {
    for t in traces {
        let last = t.reached_at.or(t.last_answering).unwrap_or(0);
        for h in &t.hops {
            if h.ttl < last && h.answered > 0 && h.answered < h.sent && t.reached_at != Some(h.ttl) {
                return Some((h.ttl, h.addr()));
            }
        }
    }
    None
}

/// Burst of TTL-limited probes to one hop, then a few spaced ones.
async fn rate_test(prober: &mut Prober, hop: u8, addr: Option<IpAddr>, wait: Duration) -> Result<RateTest> {
    const BURST: u32 = 8;
    const SPACED: u32 = 3;
    const SPACING: Duration = Duration::from_millis(600);
    // Let the hop's token bucket refill after the traces.
    tokio::time::sleep(SPACING).await;
    let mut tokens = Vec::new();
    for _ in 0..BURST {
        tokens.push(prober.send(hop, prober.flow.min_size(), false)?.token);
    }
    let fam = prober.flow.family();
    let mut burst_answered = 0;
    let deadline = Instant::now() + wait;
    while burst_answered < BURST {
        let Some(a) = prober.recv(deadline).await? else { break };
        if tokens.contains(&a.reply.token) && a.reply.is_time_exceeded(fam) {
            burst_answered += 1;
        }
    }
    let mut spaced_answered = 0;
    for _ in 0..SPACED {
        tokio::time::sleep(SPACING).await;
        let s = prober.send(hop, prober.flow.min_size(), false)?;
        let deadline = Instant::now() + wait;
        while let Some(a) = prober.recv(deadline).await? {
            if a.reply.token == s.token {
                spaced_answered += 1;
                break;
            }
        }
    }
    Ok(RateTest {
        hop,
        addr,
        burst_sent: BURST,
        burst_answered,
        spaced_sent: SPACED,
        spaced_answered,
        spacing_ms: SPACING.as_millis() as u64,
    })
}

/// Runs everything and decides.
pub async fn run(req: &Request) -> Result<Report> {
    let start = Instant::now();
    let progress = Progress::new(req.progress);
    let fam = if req.target.is_ipv4() { 4 } else { 6 };
    let initial_ttl = net::initial_ttl(fam);
    let (iface, local_mtu) = match super::egress(req.target) {
        Ok((i, m)) => (Some(i), m),
        Err(e) => return Err(e),
    };

    // Kernel observer first, so it sees every answer.
    let mut kernel_note = None;
    let observer = match (&iface, req.kernel) {
        (Some(i), true) => match attach(i) {
            Ok(s) => Some(s),
            Err(e) => {
                kernel_note = Some(format!("{e:#}"));
                None
            }
        },
        (_, false) => {
            kernel_note = Some("disabled with --no-kernel".into());
            None
        }
        (None, true) => None,
    };
    let ifindex = observer.as_ref().and_then(|(s, _)| s.attached.first()).map(|a| a.ifindex);
    let before = match (&observer, ifindex) {
        (Some((s, _)), Some(i)) => kernel::counters::read(&s.ebpf).ok().map(|c| icmp_counts(&c, i)),
        _ => None,
    };

    let mut svc = Prober::open(req.target, req.proto, req.port, 1)?;
    let mut icmp = if req.proto != Proto::Icmp { Some(Prober::open(req.target, Proto::Icmp, 0, 2)?) } else { None };
    let mut tcpp =
        if req.proto == Proto::Tcp { Some(Prober::open(req.target, Proto::Tcp, req.port, 3)?) } else { None };
    let mut pm = Prober::open(req.target, Proto::Icmp, 0, 4)?;
    // Observer attached, raw sockets open: nothing is needed any more but
    // CAP_NET_ADMIN while an observer is attached (a clsact filter of the
    // pre-6.6 TC path is removed over netlink on the way out).
    let keep = if observer.is_some() { vec![caps::Capability::CAP_NET_ADMIN] } else { Vec::new() };
    crate::privilege::drop_to_or_warn(&keep);

    let topts = TraceOptions { max_ttl: req.max_ttl, max_wait: req.max_wait, initial_ttl, ..TraceOptions::default() };
    // The trace the rate-limit test builds on (ICMP echo, or the service
    // trace when that is ICMP already) sends whole bursts per TTL: a hop
    // that rate-limits its errors answers only part of one.
    let burst = TraceOptions { burst: true, ..topts };
    let svc_opts = if icmp.is_none() { burst } else { topts };
    let popts = PmtuOptions { max_wait: req.max_wait, initial_ttl, locate: false, ..PmtuOptions::default() };
    let sent = [Cell::new(0u32), Cell::new(0), Cell::new(0)];
    let show = || {
        let n: u32 = sent.iter().map(Cell::get).sum();
        progress.show(&format!("explain {}: {n} probes sent, {:.1} s", req.target, start.elapsed().as_secs_f64()));
    };
    // Early stops: once the service trace has carried the service's own
    // packets past the last answering hop without an answer from the
    // destination, the TCP check's further SYNs cannot change the verdict;
    // once the ICMP echo trace ends before the destination, the PMTU
    // search (ICMP echo too) cannot confirm any size. Both then stop.
    let probes_start = Instant::now();
    let (svc_silent_tx, svc_silent) = watch::channel(false);
    let (echo_silent_tx, echo_silent) = watch::channel(false);
    let echo_is_service = icmp.is_none();
    let (svc_trace, icmp_trace, tcp_res, pmtu_res) = tokio::join!(
        async {
            let t = trace::run(&mut svc, &svc_opts, |_, s| {
                sent[0].set(s);
                show()
            })
            .await;
            if let Ok(t) = &t
                && t.reached_at.is_none()
            {
                let _ = svc_silent_tx.send(true);
                if echo_is_service {
                    let _ = echo_silent_tx.send(true);
                }
            }
            t
        },
        async {
            match icmp.as_mut() {
                Some(p) => {
                    let t = trace::run(p, &burst, |_, s| {
                        sent[1].set(s);
                        show()
                    })
                    .await;
                    if let Ok(t) = &t
                        && t.reached_at.is_none()
                    {
                        let _ = echo_silent_tx.send(true);
                    }
                    t.map(Some)
                }
                None => Ok(None),
            }
        },
        async {
            match tcpp.as_mut() {
                Some(p) => tcp::run_until(
                    p,
                    2,
                    req.max_wait.min(Duration::from_secs(1)),
                    initial_ttl,
                    decided(svc_silent.clone(), probes_start + EARLY_STOP_FLOOR),
                )
                .await
                .map(Some),
                None => Ok(None),
            }
        },
        pmtu::run_until(
            &mut pm,
            local_mtu,
            &popts,
            |s| {
                sent[2].set(s);
                show()
            },
            decided(echo_silent.clone(), probes_start + EARLY_STOP_FLOOR),
        ),
    );
    let svc_trace = svc_trace?;
    let icmp_trace = icmp_trace?;
    let tcp_res = tcp_res?;
    let mut pmtu_res = pmtu_res?;

    // Locate a blackhole now that the traces know how far the destination is.
    let dest = svc_trace.reached_at.or(icmp_trace.as_ref().and_then(|t| t.reached_at));
    if let Some(d) = dest.or(pmtu_res.dest_hops)
        && let Some(bh) = pmtu_res.blackhole.as_mut()
    {
        progress.show(&format!("explain {}: locating the narrow link", req.target));
        let mut max_rtt = None;
        let lopts = PmtuOptions { locate: true, ..popts };
        pmtu::locate(&mut pm, bh, d, &lopts, &mut max_rtt).await?;
        pmtu_res.probes_sent = pm.probes_sent;
        pmtu_res.dest_hops = Some(d);
    }

    // Rate limiting: only when something answered part of a burst.
    let mut traces: Vec<&TraceResult> = vec![&svc_trace];
    if let Some(t) = &icmp_trace {
        traces.push(t);
    }
    let rate = match rate_candidate(&traces) {
        Some((hop, addr)) => {
            progress.show(&format!("explain {}: testing hop {hop} for ICMP rate limiting", req.target));
            let p = icmp.as_mut().unwrap_or(&mut svc);
            Some(rate_test(p, hop, addr, req.max_wait.min(Duration::from_millis(500))).await?)
        }
        None => None,
    };

    let kernel_view = match (observer, ifindex, before, &iface) {
        (Some((session, mut events)), Some(i), Some(b), Some(name)) => {
            // Answers still in flight when the last probe timed out (read
            // now, so a late answer is not taken for one this host
            // dropped), and events a CPU still holds in its stage.
            let until = Instant::now() + Duration::from_millis(50);
            let (d1, d2, d3, d4) = tokio::join!(
                svc.drain_late(until),
                async {
                    match icmp.as_mut() {
                        Some(p) => p.drain_late(until).await,
                        None => Ok(()),
                    }
                },
                async {
                    match tcpp.as_mut() {
                        Some(p) => p.drain_late(until).await,
                        None => Ok(()),
                    }
                },
                pm.drain_late(until),
            );
            d1.and(d2).and(d3).and(d4)?;
            let mut flows = vec![
                OurFlow { flow: svc.flow, answered: std::mem::take(&mut svc.answered) },
                OurFlow { flow: pm.flow, answered: std::mem::take(&mut pm.answered) },
            ];
            for p in [icmp.as_mut(), tcpp.as_mut()].into_iter().flatten() {
                flows.push(OurFlow { flow: p.flow, answered: std::mem::take(&mut p.answered) });
            }
            if let Err(e) = kernel::stage::flush(&session.ebpf, Duration::ZERO) {
                log::debug!("flushing staged events: {e:#}");
            }
            let a = icmp_counts(&kernel::counters::read(&session.ebpf).context("reading the kernel counters")?, i);
            let mut seen = Vec::new();
            while events.drain_now(&mut seen, 4096) > 0 {}
            let matched = errors_in(&svc_trace)
                + icmp_trace.as_ref().map_or(0, errors_in)
                + tcp_res.as_ref().map_or(0, |t| u64::from(t.state == TcpState::Icmp))
                + pmtu_res
                    .steps
                    .iter()
                    .filter(|s| !matches!(s.outcome, pmtu::Outcome::Ok | pmtu::Outcome::Silent))
                    .count() as u64
                + pmtu_res
                    .blackhole
                    .as_ref()
                    .map_or(0, |b| b.locate.iter().map(|h| u64::from(h.big) + u64::from(h.small)).sum())
                + rate.as_ref().map_or(0, |r| u64::from(r.burst_answered + r.spaced_answered));
            let mut view = KernelView {
                iface: name.clone(),
                icmp_errors: a.all.saturating_sub(b.all),
                time_exceeded: a.time_exceeded.saturating_sub(b.time_exceeded),
                unreachable: a.unreachable.saturating_sub(b.unreachable),
                too_big: a.too_big.saturating_sub(b.too_big),
                matched_by_probes: matched,
                not_sampled: a.not_sampled.saturating_sub(b.not_sampled),
                ..KernelView::default()
            };
            classify_events(&seen, i, &flows, &mut view);
            drop(session);
            Some(view)
        }
        _ => None,
    };
    progress.clear();

    let probes_sent = svc.probes_sent
        + icmp.as_ref().map_or(0, |p| p.probes_sent)
        + tcpp.as_ref().map_or(0, |p| p.probes_sent)
        + pm.probes_sent;
    let mut stopped_early = Vec::new();
    if evidence_tcp_stopped(&tcp_res) {
        stopped_early.push("tcp: the service trace ended before the destination, so no second SYN".to_string());
    }
    if pmtu_res.stopped_early {
        stopped_early.push("pmtu: the ICMP echo trace ended before the destination".to_string());
    }
    let evidence = Evidence {
        target: req.target,
        proto: req.proto,
        port: (req.proto != Proto::Icmp).then_some(req.port),
        service: Some(svc_trace),
        icmp: icmp_trace,
        tcp: tcp_res,
        pmtu: Some(pmtu_res),
        rate,
        kernel: kernel_view,
        kernel_note,
        stopped_early,
    };
    let mut v = verdict::decide(&evidence);
    let seconds = start.elapsed().as_secs_f64();
    if let Some(last) = v.details.last_mut()
        && last.starts_with("evidence:")
    {
        *last = last.replacen("evidence: ", &format!("evidence: {seconds:.1} s, "), 1);
    }
    Ok(Report { verdict: v, evidence, egress: iface, probes_sent, seconds })
}

#[cfg(test)]
mod tests {
    use netobs_common::PacketInfo;

    use super::*;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut s = [0u8; 16];
        s[..4].copy_from_slice(&a);
        s
    }

    fn our_flow() -> Flow {
        Flow {
            src: "198.18.1.1".parse().unwrap(),
            dst: "198.18.4.1".parse().unwrap(),
            proto: Proto::Tcp,
            src_port: 40000,
            dst_port: 443,
            icmp_id: 0,
            seq_base: 0,
        }
    }

    /// An ICMP error on ifindex 7 from 198.18.2.254 quoting a TCP packet
    /// 198.18.1.1:`sport` -> 198.18.4.1:443.
    fn error(t: u8, c: u8, sport: u16) -> Event {
        Event {
            kind: kind::ICMP_ERROR,
            ifindex: 7,
            outer_family: 4,
            icmp_type: t,
            icmp_code: c,
            outer_src: v4([198, 18, 2, 254]),
            outer_dst: v4([198, 18, 1, 1]),
            inner: PacketInfo {
                family: 4,
                src: v4([198, 18, 1, 1]),
                dst: v4([198, 18, 4, 1]),
                protocol: 6,
                src_port: sport,
                dst_port: 443,
                total_len: 1500,
                have: have::IP | have::PORTS,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn ours(answered: &[u16]) -> [OurFlow; 1] {
        [OurFlow { flow: our_flow(), answered: answered.iter().copied().collect() }]
    }

    #[test]
    fn only_errors_quoting_our_flows_are_ours() {
        let flows = ours(&[]);
        let mut view = KernelView::default();
        let other_iface = Event { ifindex: 8, ..error(11, 0, 40000) };
        let mut quote_cut = error(11, 0, 1);
        quote_cut.inner.have = have::IP;
        let events = [error(11, 0, 40000), error(3, 3, 40001), other_iface, quote_cut];
        classify_events(&events, 7, &flows, &mut view);
        // Ours: the matching flow, and the quote too short for ports.
        assert_eq!((view.ours, view.foreign), (2, 1));
        assert!(view.ptbs.is_empty());
    }

    #[test]
    fn an_answer_no_socket_received_is_lost_here() {
        let with_id = |id: u32| {
            let mut e = error(11, 0, 40000);
            e.inner.ip_id = id;
            e
        };
        let mut view = KernelView::default();
        classify_events(&[with_id(5), with_id(6), with_id(7)], 7, &ours(&[5, 7]), &mut view);
        assert_eq!((view.ours, view.lost, view.untracked), (3, 1, 0));
    }

    #[test]
    fn ptbs_are_judged_deduplicated_and_bounded() {
        let flows = ours(&[]);
        let mut view = KernelView::default();
        let ptb = |mtu: u32, sport: u16| Event { flags: flags::HAS_MTU, mtu, ..error(3, 4, sport) };
        let mut events = vec![ptb(1400, 40000), ptb(9000, 40404), ptb(9000, 40404)];
        // A flood of distinct forged ones.
        events.extend((0..100).map(|i| ptb(9000, 1000 + i)));
        classify_events(&events, 7, &flows, &mut view);
        assert_eq!(view.ptbs.len(), KernelView::MAX_PTBS);
        let ours = &view.ptbs[0];
        assert!(ours.ours && ours.judgement.believable(), "{ours:?}");
        let forged = &view.ptbs[1];
        assert_eq!(forged.count, 2);
        assert!(!forged.ours);
        assert_eq!(
            forged.judgement.reasons,
            vec![crate::explain::ptb::PtbSuspect::MtuNotSmaller, crate::explain::ptb::PtbSuspect::UnknownFlow]
        );
        assert_eq!(forged.quoted, "198.18.1.1:40404 -> 198.18.4.1:443 tcp");
    }
}
