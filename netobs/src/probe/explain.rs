//! `netobs explain`: every relevant probe at once, the kernel observer
//! counting ICMP errors on the egress interface meanwhile, then one verdict.
//!
//! Why the kernel view: a probe socket that hears nothing cannot tell "no
//! answer came" from "the answer reached this host and our own firewall
//! dropped it". The XDP observer sees every ICMP error on the wire before
//! netfilter, so the two are told apart.

use std::{
    cell::Cell,
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use netobs_common::Config;

use super::{
    Progress,
    packet::Proto,
    pmtu::{self, PmtuOptions},
    socket::Prober,
    tcp::{self, TcpState},
    trace::{self, TraceOptions, TraceResult},
    verdict::{self, Evidence, KernelView, RateTest, Verdict},
};
use crate::{
    kernel::{self, AttachMode, LoadOptions, Session},
    net,
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
    pub verdict: Verdict,
    pub evidence: Evidence,
    pub egress: Option<String>,
    pub probes_sent: u32,
    pub seconds: f64,
}

/// Loads the observer and attaches it to `iface` (ingress only: we want
/// the ICMP that arrives).
fn attach(iface: &str) -> Result<Session> {
    let opts = LoadOptions {
        config: Config { min_mtu: 0, ..Config::DEFAULT },
        ringbuf_bytes: 1 << 16,
        ..LoadOptions::default()
    };
    let ebpf = kernel::load(&opts)?;
    Session::attach(ebpf, &[iface.to_string()], AttachMode::Auto, false, false)
}

/// ICMP errors counted on `ifindex` so far: (all, time-exceeded,
/// unreachable, too-big).
fn icmp_counts(session: &Session, ifindex: u32) -> Result<(u64, u64, u64, u64)> {
    let c = kernel::counters::read(&session.ebpf).context("reading the kernel counters")?;
    let mut out = (0, 0, 0, 0);
    for (k, v) in &c.icmp {
        if k.ifindex != ifindex || k.hook == netobs_common::event::hook::TC_EGRESS {
            continue;
        }
        out.0 += v;
        match (k.family, k.icmp_type, k.icmp_code) {
            (4, 11, _) | (6, 3, _) => out.1 += v,
            (4, 3, 4) | (6, 2, _) => out.3 += v,
            (4, 3, _) | (6, 1, _) => out.2 += v,
            _ => {}
        }
    }
    Ok(out)
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
    let session = match (&iface, req.kernel) {
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
    let ifindex = session.as_ref().and_then(|s| s.attached.first()).map(|a| a.ifindex);
    let before = match (&session, ifindex) {
        (Some(s), Some(i)) => icmp_counts(s, i).ok(),
        _ => None,
    };

    let mut svc = Prober::open(req.target, req.proto, req.port, 1)?;
    let mut icmp = if req.proto != Proto::Icmp { Some(Prober::open(req.target, Proto::Icmp, 0, 2)?) } else { None };
    let mut tcpp =
        if req.proto == Proto::Tcp { Some(Prober::open(req.target, Proto::Tcp, req.port, 3)?) } else { None };
    let mut pm = Prober::open(req.target, Proto::Icmp, 0, 4)?;
    // Observer attached, raw sockets open: no capability is needed any more.
    crate::privilege::drop_to_or_warn(&[]);

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
    let (svc_trace, icmp_trace, tcp_res, pmtu_res) = tokio::join!(
        trace::run(&mut svc, &svc_opts, |_, s| {
            sent[0].set(s);
            show()
        }),
        async {
            match icmp.as_mut() {
                Some(p) => trace::run(p, &burst, |_, s| {
                    sent[1].set(s);
                    show()
                })
                .await
                .map(Some),
                None => Ok(None),
            }
        },
        async {
            match tcpp.as_mut() {
                Some(p) => tcp::run(p, 2, req.max_wait.min(Duration::from_secs(1)), initial_ttl).await.map(Some),
                None => Ok(None),
            }
        },
        pmtu::run(&mut pm, local_mtu, &popts, |s| {
            sent[2].set(s);
            show()
        }),
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

    let kernel_view = match (&session, ifindex, before, &iface) {
        (Some(s), Some(i), Some(b), Some(name)) => {
            // Answers still in flight when the last probe timed out.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let a = icmp_counts(s, i)?;
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
            Some(KernelView {
                iface: name.clone(),
                icmp_errors: a.0.saturating_sub(b.0),
                time_exceeded: a.1.saturating_sub(b.1),
                unreachable: a.2.saturating_sub(b.2),
                too_big: a.3.saturating_sub(b.3),
                matched_by_probes: matched,
            })
        }
        _ => None,
    };
    drop(session);
    progress.clear();

    let probes_sent = svc.probes_sent
        + icmp.as_ref().map_or(0, |p| p.probes_sent)
        + tcpp.as_ref().map_or(0, |p| p.probes_sent)
        + pm.probes_sent;
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
