//! `trace --report -c N`: mtr's statistics (Snt, Loss%, Last, Avg, Best,
//! Wrst, StDev per hop), with one thing mtr leaves to the reader.
//!
//! Every cycle is one Paris trace with one probe per TTL (all TTLs at
//! once, same flow as the other cycles), then a pause until the next
//! `interval`. Hop statistics are counted over the cycles that probed that
//! TTL; the destination's row counts a cycle as answered when the
//! destination answered at its TTL or later (a cycle whose destination
//! probe was lost probes farther TTLs, which the destination answers too).
//!
//! **Rate limiting is not loss.** A router that forwards every packet but
//! limits the ICMP errors it *originates* (Linux `icmp_ratelimit`, a
//! control-plane policer) shows loss at its own row that no later row
//! shows: the probes it "lost" went through, since the hops behind it
//! answered them. Readers of mtr take that for packet loss (mtr#145,
//! mtr#239). Here such a row is labelled [`LossKind::RateLimited`]: its
//! loss above the smallest loss of any later answering row is ICMP rate
//! limiting at that hop. Loss that carries on to the last row is
//! [`LossKind::Loss`], starting at the first row that has it.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::Result;
use serde::Serialize;

use super::{
    names::Names,
    packet::Proto,
    socket::Prober,
    trace::{self, TraceOptions, TraceResult},
};

/// Knobs of a report run.
#[derive(Clone, Copy, Debug)]
pub struct ReportOptions {
    /// Cycles to run; `None`: until Ctrl-C (`--live`).
    pub cycles: Option<u32>,
    /// From the start of one cycle to the start of the next (mtr's `-i`).
    pub interval: Duration,
    /// The per-cycle trace (its `queries` and `burst` are overridden: one
    /// probe per TTL per cycle).
    pub trace: TraceOptions,
}

/// How a hop's loss reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// No probe lost.
    None,
    /// Lost probes that later hops lose too (or the destination's own loss).
    Loss,
    /// Loss that later hops do not show: this hop limits the ICMP errors it
    /// sends; the packets themselves went through.
    RateLimited,
    /// Never answered while later hops did: it forwards but sends no ICMP
    /// (filtered or disabled), which is not loss either.
    Silent,
}

impl LossKind {
    fn words(self) -> &'static str {
        match self {
            LossKind::None => "",
            LossKind::Loss => "packet loss",
            LossKind::RateLimited => "ICMP rate limiting at this hop, not loss (later hops answer)",
            LossKind::Silent => "sends no ICMP, forwards (later hops answer)",
        }
    }
}

/// One row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct HopStats {
    pub ttl: u8,
    /// Responders, first seen first (more than one: ECMP or a route change).
    pub addrs: Vec<IpAddr>,
    /// Reverse name of the first responder (null: none, `-n`, or too slow).
    pub name: Option<String>,
    /// Snt: probes sent to this hop (one per cycle).
    pub sent: u32,
    pub received: u32,
    /// Loss%: `100 * (sent - received) / sent`.
    pub loss_pct: f64,
    pub loss: LossKind,
    /// For `rate_limited`: the part of `loss_pct` that is rate limiting
    /// (the rest, if any, is loss that later hops show too).
    pub rate_limited_pct: Option<f64>,
    pub last_ms: Option<f64>,
    pub avg_ms: Option<f64>,
    pub best_ms: Option<f64>,
    pub worst_ms: Option<f64>,
    /// Sample standard deviation of the RTTs (mtr's StDev); 0 with one.
    pub stdev_ms: Option<f64>,
}

/// A report so far (after every cycle) or finished.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub target: IpAddr,
    pub target_name: Option<String>,
    pub source: IpAddr,
    pub proto: Proto,
    pub dst_port: Option<u16>,
    pub src_port: Option<u16>,
    /// Cycles completed.
    pub cycles: u32,
    pub interval_ms: f64,
    pub hops: Vec<HopStats>,
    /// TTL of the destination (the lowest at which it answered).
    pub reached_at: Option<u8>,
    /// Hops labelled `rate_limited`.
    pub rate_limited_hops: Vec<u8>,
    /// Cut short by Ctrl-C before `cycles` were done.
    pub interrupted: bool,
    pub probes_sent: u32,
    pub seconds: f64,
}

#[derive(Default)]
struct Row {
    sent: u32,
    rtts: Vec<f64>,
    last: Option<f64>,
    addrs: Vec<IpAddr>,
}

/// Turns the cycles' traces into rows.
fn rows(cycles: &[TraceResult]) -> (BTreeMap<u8, Row>, Option<u8>) {
    let dest = cycles.iter().filter_map(|c| c.reached_at).min();
    let mut rows: BTreeMap<u8, Row> = BTreeMap::new();
    for c in cycles {
        for h in &c.hops {
            if dest.is_some_and(|d| h.ttl > d) {
                continue;
            }
            let row = rows.entry(h.ttl).or_default();
            if h.ttl == dest.unwrap_or(0) {
                continue; // the destination row is counted below
            }
            row.sent += h.sent.min(1);
            if let Some(rtt) = h.probes.iter().find(|p| p.from.is_some()).and_then(|p| p.rtt_ms) {
                row.rtts.push(rtt);
                row.last = Some(rtt);
            }
            for a in &h.addrs {
                if !row.addrs.contains(a) {
                    row.addrs.push(*a);
                }
            }
        }
        if let Some(d) = dest {
            let row = rows.entry(d).or_default();
            if c.hops.iter().any(|h| h.ttl == d && h.sent > 0) {
                row.sent += 1;
                // The destination's answer at its TTL or, when that was
                // lost, at a farther one.
                let answer = c.reached_at.and_then(|_| {
                    c.hops.iter().filter(|h| h.ttl >= d).flat_map(|h| h.probes.iter()).find(|p| p.from.is_some())
                });
                if let Some(p) = answer {
                    if let Some(rtt) = p.rtt_ms {
                        row.rtts.push(rtt);
                        row.last = Some(rtt);
                    }
                    if let Some(f) = p.from
                        && !row.addrs.contains(&f)
                    {
                        row.addrs.push(f);
                    }
                }
            }
        }
    }
    (rows, dest)
}

fn stats(rtts: &[f64]) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
    if rtts.is_empty() {
        return (None, None, None, None);
    }
    let n = rtts.len() as f64;
    let avg = rtts.iter().sum::<f64>() / n;
    let best = rtts.iter().copied().fold(f64::INFINITY, f64::min);
    let worst = rtts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sd =
        if rtts.len() < 2 { 0.0 } else { (rtts.iter().map(|r| (r - avg).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() };
    (Some(avg), Some(best), Some(worst), Some(sd))
}

/// Labels each row's loss: see the module docs.
fn classify(hops: &mut [HopStats]) {
    let n = hops.len();
    for i in 0..n {
        if hops[i].sent == 0 || hops[i].received == hops[i].sent {
            hops[i].loss = LossKind::None;
            continue;
        }
        // The smallest loss among later rows that answered at all: what
        // really got lost on the way past this hop.
        let later = hops[i + 1..].iter().filter(|h| h.received > 0 && h.sent > 0).map(|h| h.loss_pct).reduce(f64::min);
        hops[i].loss = match later {
            None => LossKind::Loss,
            Some(_) if hops[i].received == 0 => LossKind::Silent,
            Some(l) if hops[i].loss_pct > l + f64::EPSILON => {
                hops[i].rate_limited_pct = Some(hops[i].loss_pct - l);
                LossKind::RateLimited
            }
            Some(_) => LossKind::Loss,
        };
    }
}

/// Builds the report from the cycles so far.
pub fn build(cycles: &[TraceResult], opts: &ReportOptions, names: &Names, started: Instant) -> Option<Report> {
    let first = cycles.first()?;
    let (rows, dest) = rows(cycles);
    let mut hops: Vec<HopStats> = rows
        .into_iter()
        .map(|(ttl, r)| {
            let received = r.rtts.len() as u32;
            let (avg, best, worst, sd) = stats(&r.rtts);
            let loss_pct =
                if r.sent == 0 { 0.0 } else { 100.0 * f64::from(r.sent - received.min(r.sent)) / f64::from(r.sent) };
            HopStats {
                ttl,
                name: r.addrs.first().and_then(|a| names.name(*a)).map(str::to_string),
                addrs: r.addrs,
                sent: r.sent,
                received,
                loss_pct,
                loss: LossKind::None,
                rate_limited_pct: None,
                last_ms: r.last,
                avg_ms: avg,
                best_ms: best,
                worst_ms: worst,
                stdev_ms: sd,
            }
        })
        .collect();
    classify(&mut hops);
    let rate_limited_hops = hops.iter().filter(|h| h.loss == LossKind::RateLimited).map(|h| h.ttl).collect();
    Some(Report {
        target: first.target,
        target_name: names.name(first.target).map(str::to_string),
        source: first.source,
        proto: first.proto,
        dst_port: first.dst_port,
        src_port: first.src_port,
        cycles: cycles.len() as u32,
        interval_ms: opts.interval.as_secs_f64() * 1000.0,
        hops,
        reached_at: dest,
        rate_limited_hops,
        interrupted: false,
        probes_sent: cycles.iter().map(|c| c.probes_sent).max().unwrap_or(0),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs the cycles. `on_cycle` gets the report after every cycle (the
/// live table, the progress line). Ctrl-C ends the run early with what
/// was gathered (`interrupted`). Reverse lookups of new responders start
/// after each cycle and run while the next cycles probe; at the end they
/// get at most `name_wait` more.
pub async fn run(
    prober: &mut Prober,
    opts: &ReportOptions,
    names: &mut Names,
    name_wait: Duration,
    mut on_cycle: impl FnMut(&Report),
) -> Result<Option<Report>> {
    let started = Instant::now();
    let mut topts = opts.trace;
    topts.queries = 1;
    topts.burst = false;
    let mut cycles: Vec<TraceResult> = Vec::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    names.start([prober.flow.dst]);
    loop {
        let cycle_start = Instant::now();
        let t = tokio::select! {
            t = trace::run(prober, &topts, |_, _| {}) => t?,
            _ = &mut ctrl_c => { interrupted = true; break; }
        };
        names.start_trace(&t);
        names.collect().await;
        // Once the destination's distance is known, later cycles probe no
        // farther (the first one's window overshoots by up to `gap` TTLs).
        if let Some(d) = t.reached_at {
            topts.max_ttl = topts.max_ttl.min(d.max(topts.first_ttl));
        }
        cycles.push(t);
        if let Some(r) = build(&cycles, opts, names, started) {
            on_cycle(&r);
        }
        if opts.cycles.is_some_and(|n| cycles.len() as u32 >= n) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until((cycle_start + opts.interval).into()) => {}
            _ = &mut ctrl_c => { interrupted = true; break; }
        }
    }
    if !interrupted {
        names.settle(Instant::now() + name_wait).await;
    }
    names.abort();
    let mut r = build(&cycles, opts, names, started);
    if let Some(r) = &mut r {
        r.interrupted = interrupted;
        r.probes_sent = prober.probes_sent;
    }
    Ok(r)
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

fn host(addr: IpAddr, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{n} ({addr})"),
        None => addr.to_string(),
    }
}

/// mtr's `--report` table, plus a note on every row whose loss is not loss.
pub fn render(r: &Report, names: Option<&Names>) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let port = r.dst_port.map(|p| format!("/{p}")).unwrap_or_default();
    let _ = writeln!(
        s,
        "report to {} ({}{port}, Paris flow from {}), {} cycle{} every {:.2} s{}",
        host(r.target, r.target_name.as_deref()),
        r.proto.as_str(),
        r.source,
        r.cycles,
        if r.cycles == 1 { "" } else { "s" },
        r.interval_ms / 1000.0,
        if r.interrupted { ", interrupted" } else { "" }
    );
    let width = r
        .hops
        .iter()
        .map(|h| h.addrs.first().map_or(3, |a| host(*a, h.name.as_deref()).len()))
        .max()
        .unwrap_or(3)
        .max(4);
    let _ = writeln!(s, "HOST: {:<width$}  Loss%   Snt   Last    Avg   Best   Wrst  StDev", "", width = width + 4);
    for h in &r.hops {
        let who = h.addrs.first().map_or_else(|| "???".into(), |a| host(*a, h.name.as_deref()));
        let mut line = format!(
            "{:>3}.|-- {:<width$}  {:>5.1}%  {:>4}  {:>5}  {:>5}  {:>5}  {:>5}  {:>5}",
            h.ttl,
            who,
            h.loss_pct,
            h.sent,
            ms(h.last_ms),
            ms(h.avg_ms),
            ms(h.best_ms),
            ms(h.worst_ms),
            ms(h.stdev_ms),
        );
        match (h.loss, h.rate_limited_pct) {
            (LossKind::None, _) => {}
            (LossKind::RateLimited, Some(p)) if p + f64::EPSILON < h.loss_pct => {
                let _ = write!(line, "   {:.0}% of it {}", p, h.loss.words());
            }
            (k, _) => {
                let _ = write!(line, "   {}", k.words());
            }
        }
        let _ = writeln!(s, "{}", line.trim_end());
        for a in h.addrs.iter().skip(1) {
            let _ = writeln!(s, "    |   {}", host(*a, names.and_then(|n| n.name(*a))));
        }
    }
    let end = match r.reached_at {
        Some(d) => format!("destination at hop {d}"),
        None => "destination not reached".to_string(),
    };
    let _ = writeln!(s, "{end}; {} probes in {:.2} s", r.probes_sent, r.seconds);
    s
}

/// Redraws the table in place on a terminal (`--live`): cursor home, clear,
/// table; `running` adds the Ctrl-C hint. Errors writing to the terminal
/// end nothing: the next cycle tries again.
pub fn redraw(r: &Report, running: bool) {
    use std::io::Write as _;

    use crossterm::{
        cursor::MoveTo,
        queue,
        terminal::{Clear, ClearType},
    };
    let mut out = std::io::stdout();
    let _ = queue!(out, MoveTo(0, 0), Clear(ClearType::All));
    let _ = out.write_all(render(r, None).as_bytes());
    if running {
        let _ = writeln!(out, "\n(Ctrl-C to stop)");
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::trace::{Hop, ProbeResult};

    fn probe(from: Option<&str>, rtt: f64) -> ProbeResult {
        ProbeResult {
            from: from.map(|f| f.parse().unwrap()),
            name: None,
            rtt_ms: from.map(|_| rtt),
            icmp_type: None,
            icmp_code: None,
            reply: if from.is_some() { "time_exceeded" } else { "none" },
            words: None,
            annotation: String::new(),
            quoted_ttl: None,
            reply_ttl: None,
            return_hops: None,
            mtu: None,
            quote: None,
        }
    }

    /// One cycle: `answers[i]` is hop i+1's responder (None = silent);
    /// the last one is the destination.
    fn cycle(answers: &[Option<&str>], rtt: f64) -> TraceResult {
        let target: IpAddr = "198.18.4.1".parse().unwrap();
        let hops: Vec<Hop> = answers
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let p = probe(*a, rtt * (i + 1) as f64);
                Hop {
                    ttl: i as u8 + 1,
                    addrs: p.from.into_iter().collect(),
                    answered: u32::from(p.from.is_some()),
                    probes: vec![p],
                    sent: 1,
                }
            })
            .collect();
        let reached = answers.iter().position(|a| a.is_some_and(|a| a == "198.18.4.1")).map(|i| i as u8 + 1);
        TraceResult {
            target,
            source: "198.18.1.1".parse().unwrap(),
            proto: Proto::Udp,
            dst_port: Some(33434),
            src_port: Some(40000),
            hops,
            reached_at: reached,
            last_answering: reached,
            stop: "reached",
            probes_sent: answers.len() as u32,
            seconds: 0.01,
            middleboxes: Vec::new(),
            mtu: None,
        }
    }

    fn opts() -> ReportOptions {
        ReportOptions { cycles: Some(10), interval: Duration::from_millis(100), trace: TraceOptions::default() }
    }

    const R1: Option<&str> = Some("198.18.1.254");
    const R2: Option<&str> = Some("198.18.2.254");
    const R3: Option<&str> = Some("198.18.3.254");
    const DST: Option<&str> = Some("198.18.4.1");

    #[test]
    fn loss_only_at_one_hop_is_rate_limiting() {
        // Hop 2 answers 3 of 10; hops 3 and the destination all 10.
        let cycles: Vec<TraceResult> =
            (0..10).map(|i| cycle(&[R1, if i < 3 { R2 } else { None }, R3, DST], 1.0 + i as f64)).collect();
        let names = Names::new(false);
        let r = build(&cycles, &opts(), &names, Instant::now()).unwrap();
        assert_eq!(r.hops.len(), 4);
        let h2 = &r.hops[1];
        assert_eq!((h2.sent, h2.received), (10, 3));
        assert!((h2.loss_pct - 70.0).abs() < 1e-9);
        assert_eq!(h2.loss, LossKind::RateLimited);
        assert_eq!(h2.rate_limited_pct, Some(70.0));
        assert_eq!(r.rate_limited_hops, vec![2]);
        let d = &r.hops[3];
        assert_eq!((d.sent, d.received, d.loss), (10, 10, LossKind::None));
        assert_eq!(d.loss_pct, 0.0);
        let text = render(&r, None);
        assert!(text.contains("ICMP rate limiting at this hop, not loss"), "{text}");
    }

    #[test]
    fn loss_that_carries_on_is_loss() {
        // From hop 2 on, 2 of 10 cycles die: real loss, at hop 2 first.
        let cycles: Vec<TraceResult> = (0..10)
            .map(|i| if i < 2 { cycle(&[R1, None, None, None], 1.0) } else { cycle(&[R1, R2, R3, DST], 1.0) })
            .collect();
        let names = Names::new(false);
        let r = build(&cycles, &opts(), &names, Instant::now()).unwrap();
        assert_eq!(r.hops[0].loss, LossKind::None);
        for h in &r.hops[1..] {
            assert_eq!(h.loss, LossKind::Loss, "hop {}", h.ttl);
            assert!((h.loss_pct - 20.0).abs() < 1e-9);
        }
        assert!(r.rate_limited_hops.is_empty());
    }

    #[test]
    fn silent_router_is_not_loss_and_stats_are_mtrs() {
        let rtts = [1.0, 2.0, 3.0, 4.0];
        let cycles: Vec<TraceResult> = rtts.iter().map(|r| cycle(&[R1, None, DST], *r)).collect();
        let names = Names::new(false);
        let r = build(&cycles, &opts(), &names, Instant::now()).unwrap();
        assert_eq!(r.hops[1].loss, LossKind::Silent);
        let h1 = &r.hops[0];
        assert_eq!(h1.last_ms, Some(4.0));
        assert_eq!(h1.best_ms, Some(1.0));
        assert_eq!(h1.worst_ms, Some(4.0));
        assert_eq!(h1.avg_ms, Some(2.5));
        // Sample standard deviation of 1, 2, 3, 4.
        assert!((h1.stdev_ms.unwrap() - 1.290_994_448_735_805_6).abs() < 1e-9);
        assert_eq!(r.reached_at, Some(3));
    }

    #[test]
    fn a_lost_destination_answer_is_found_at_a_farther_ttl() {
        // Cycle 2's destination probe at TTL 3 was lost, its TTL 4 probe answered.
        let cycles = vec![cycle(&[R1, R2, DST], 1.0), cycle(&[R1, R2, None, DST], 1.0)];
        let names = Names::new(false);
        let r = build(&cycles, &opts(), &names, Instant::now()).unwrap();
        assert_eq!(r.hops.len(), 3, "rows past the destination are dropped");
        assert_eq!((r.hops[2].sent, r.hops[2].received), (2, 2));
    }
}
