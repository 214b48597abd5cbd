//! Traceroute with a stable flow, all TTLs in flight at once.
//!
//! The first round sends one probe to every TTL of a window at once; the
//! window grows as answers arrive (up to `gap` TTLs past the highest hop
//! that answered, like scamper's gap limit), so a path whose tail is silent
//! costs `gap` extra TTLs, not `max_ttl`. A TTL whose probes all stayed
//! silent is probed again, with the rest of its `queries` at once, as soon
//! as its wait runs out: an answering hop costs one probe, a silent one
//! `queries` (so `*` still means "asked `queries` times"). With `burst`,
//! every query of a TTL goes out together in the first round instead: a
//! router that rate-limits its ICMP then shows up as a hop that answers
//! only part of a burst, which `explain` confirms.
//!
//! Each probe waits an adaptive time: ten times the RTT of a farther hop
//! that already answered (traceroute's "near" rule), else three times the
//! largest RTT seen so far (at least `min_wait`), or `max_wait` while
//! nothing has answered yet.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::Result;
use netobs_common::icmp;
use serde::Serialize;

use super::{
    hopmtu,
    packet::{Proto, ReplyKind},
    quote,
    socket::{Answer, Prober},
};
use crate::explain::hops::hops_from_arrival_ttl;

/// Shortest wait under the "near" rule: scheduling jitter on a busy host
/// is larger than a LAN RTT.
const NEAR_FLOOR: Duration = Duration::from_millis(10);

/// Knobs of one trace.
#[derive(Clone, Copy, Debug)]
pub struct TraceOptions {
    pub first_ttl: u8,
    pub max_ttl: u8,
    /// Most probes per TTL: one first, the rest only if it stayed silent
    /// (all at once with `burst`).
    pub queries: u8,
    /// Send all `queries` of a TTL in the first round (rate-limit detection).
    pub burst: bool,
    /// Stop this many silent TTLs past the highest answering one.
    pub gap: u8,
    pub min_wait: Duration,
    pub max_wait: Duration,
    /// TTL / hop limit this host uses for its own packets (to turn quoted
    /// TTLs into distances).
    pub initial_ttl: u8,
    /// Pause between two probes (traceroute's `-z`), for routers and
    /// firewalls that punish bursts; zero sends each round at once.
    pub send_wait: Duration,
    /// TOS / traffic class byte of the probes (0: unmarked); a marked
    /// probe lets the quotes show a box that clears it.
    pub tos: u8,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            first_ttl: 1,
            max_ttl: 30,
            queries: 3,
            burst: false,
            gap: 5,
            min_wait: Duration::from_millis(250),
            max_wait: Duration::from_secs(3),
            initial_ttl: 64,
            send_wait: Duration::ZERO,
            tos: 0,
        }
    }
}

/// One probe's fate.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeResult {
    /// Who answered; absent for a silent probe (`*`).
    pub from: Option<IpAddr>,
    /// Reverse DNS name of `from` (null: none, `-n`, or not in time).
    pub name: Option<String>,
    pub rtt_ms: Option<f64>,
    /// ICMP type/code of the answer (absent for echo replies / TCP).
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// What answered: "time_exceeded", "unreachable", "echo_reply",
    /// "syn_ack", "rst", "too_big", "other_icmp"; "none" when silent.
    pub reply: &'static str,
    /// ICMP meaning in words.
    pub words: Option<&'static str>,
    /// Linux traceroute annotation (!X, !H, !N, !F-1400, ...), "" if none.
    pub annotation: String,
    /// TTL of our probe when the reporter got it (as quoted).
    pub quoted_ttl: Option<u8>,
    /// TTL the answer arrived with.
    pub reply_ttl: Option<u8>,
    /// Hops the answer travelled back (from its TTL, assuming the
    /// reporter started at 64, 128 or 255): compare with the hop number
    /// to spot asymmetric return paths.
    pub return_hops: Option<u8>,
    pub mtu: Option<u32>,
    /// The quoted probe compared with the probe as sent (ICMP errors only):
    /// what middleboxes changed ([`super::quote`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote: Option<quote::QuoteCheck>,
}

/// One TTL.
#[derive(Clone, Debug, Serialize)]
pub struct Hop {
    pub ttl: u8,
    pub probes: Vec<ProbeResult>,
    /// Distinct answering addresses, in order of first answer.
    pub addrs: Vec<IpAddr>,
    pub sent: u32,
    pub answered: u32,
}

impl Hop {
    /// First address that answered at this TTL.
    pub fn addr(&self) -> Option<IpAddr> {
        self.addrs.first().copied()
    }

    /// The first non-time-exceeded ICMP error at this hop (a reject or an
    /// unreachable), with its type/code.
    pub fn error(&self) -> Option<&ProbeResult> {
        self.probes.iter().find(|p| matches!(p.reply, "unreachable" | "too_big" | "other_icmp"))
    }
}

/// A finished trace.
#[derive(Clone, Debug, Serialize)]
pub struct TraceResult {
    pub target: IpAddr,
    pub source: IpAddr,
    pub proto: Proto,
    /// Destination port (UDP/TCP), constant for the whole trace.
    pub dst_port: Option<u16>,
    pub src_port: Option<u16>,
    pub hops: Vec<Hop>,
    /// TTL at which the destination itself answered.
    pub reached_at: Option<u8>,
    /// Highest TTL that drew any answer.
    pub last_answering: Option<u8>,
    /// Why the trace ended: "reached", "unreachable" (an ICMP error ended
    /// it, like traceroute's !X), "gap" (too many silent hops), "max_ttl".
    pub stop: &'static str,
    pub probes_sent: u32,
    pub seconds: f64,
    /// Changes middleboxes made to the probes, each at the first hop whose
    /// quote shows it ([`super::quote`]).
    pub middleboxes: Vec<quote::PathChange>,
    /// Per-hop MTU (`--mtu`, [`super::hopmtu`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<hopmtu::HopMtu>,
}

impl TraceResult {
    pub fn hop(&self, ttl: u8) -> Option<&Hop> {
        self.hops.iter().find(|h| h.ttl == ttl)
    }

    /// The TTL at which `addr` first answered.
    pub fn hop_of(&self, addr: IpAddr) -> Option<u8> {
        self.hops.iter().find(|h| h.addrs.contains(&addr)).map(|h| h.ttl)
    }
}

fn reply_name(family: u8, kind: ReplyKind) -> &'static str {
    match kind {
        ReplyKind::EchoReply => "echo_reply",
        ReplyKind::SynAck { .. } => "syn_ack",
        ReplyKind::Rst => "rst",
        ReplyKind::IcmpError { icmp_type, code } => match (family, icmp_type, code) {
            (4, 11, _) | (6, 3, _) => "time_exceeded",
            (4, 3, 4) | (6, 2, _) => "too_big",
            (4, 3, _) | (6, 1, _) => "unreachable",
            _ => "other_icmp",
        },
    }
}

/// Turns an answer into a [`ProbeResult`].
pub fn describe(family: u8, a: &Answer) -> ProbeResult {
    let r = &a.reply;
    let (icmp_type, icmp_code, words, annotation) = match r.kind {
        ReplyKind::IcmpError { icmp_type, code } => {
            let m = icmp::meaning(family, icmp_type, code);
            let ann = match (m.annotation, r.mtu) {
                ("!F", Some(mtu)) => format!("!F-{mtu}"),
                ("!?", _) => format!("!<{code}>"),
                (a, _) => a.to_string(),
            };
            (Some(icmp_type), Some(code), Some(m.name), ann)
        }
        _ => (None, None, None, String::new()),
    };
    let return_hops = hops_from_arrival_ttl(r.outer_ttl);
    ProbeResult {
        from: Some(r.from),
        name: None,
        rtt_ms: Some(a.rtt.as_secs_f64() * 1000.0),
        icmp_type,
        icmp_code,
        reply: reply_name(family, r.kind),
        words,
        annotation,
        quoted_ttl: r.quoted_ttl,
        reply_ttl: Some(r.outer_ttl),
        return_hops,
        mtu: r.mtu,
        quote: None,
    }
}

fn silent() -> ProbeResult {
    ProbeResult {
        from: None,
        name: None,
        rtt_ms: None,
        icmp_type: None,
        icmp_code: None,
        reply: "none",
        words: None,
        annotation: String::new(),
        quoted_ttl: None,
        reply_ttl: None,
        return_hops: None,
        mtu: None,
        quote: None,
    }
}

/// Waits until `wait` has passed since the previous send (`-z`).
async fn pace(last: &mut Option<Instant>, wait: Duration) {
    if wait.is_zero() {
        return;
    }
    if let Some(l) = *last {
        tokio::time::sleep_until((l + wait).into()).await;
    }
    *last = Some(Instant::now());
}

/// Runs a trace with `prober` (whose flow fixes protocol and ports).
/// `progress` is called after every answer or timeout with (answered, sent).
pub async fn run(prober: &mut Prober, opts: &TraceOptions, mut progress: impl FnMut(u32, u32)) -> Result<TraceResult> {
    let start = Instant::now();
    if opts.tos != prober.tos() {
        prober.set_tos(opts.tos)?;
    }
    let family = prober.flow.family();
    let first = opts.first_ttl.max(1);
    let max_ttl = opts.max_ttl.max(first);
    let queries = opts.queries.max(1);
    let first_round = if opts.burst { queries } else { 1 };
    // token -> ttl of probes still waiting.
    let mut pending: BTreeMap<u16, (u8, Instant)> = BTreeMap::new();
    let mut results: BTreeMap<u8, Vec<ProbeResult>> = BTreeMap::new();
    let mut sent_per_ttl: BTreeMap<u8, u32> = BTreeMap::new();
    let mut max_rtt: Option<Duration> = None;
    let mut rtt_by_ttl: BTreeMap<u8, Duration> = BTreeMap::new();
    let mut reached: Option<u8> = None;
    let mut terminal: Option<u8> = None;
    let mut highest_answer: Option<u8> = None;
    let mut highest_sent = first - 1;
    let mut answered = 0u32;
    let mut last_send: Option<Instant> = None;
    let initial_window = opts.gap.saturating_add(3).max(1);
    let mut want = first.saturating_add(initial_window - 1).min(max_ttl);

    loop {
        // The window: up to `gap` past the highest answer, never past the
        // destination or an ICMP error that ended the path.
        if let Some(h) = highest_answer {
            want = want.max(h.saturating_add(opts.gap).min(max_ttl));
        }
        if let Some(stop) = reached.or(terminal) {
            want = want.min(stop);
        }
        while highest_sent < want {
            highest_sent += 1;
            for _ in 0..first_round {
                pace(&mut last_send, opts.send_wait).await;
                let s = prober.send(highest_sent, prober.flow.min_size(), false)?;
                pending.insert(s.token, (highest_sent, s.at));
                *sent_per_ttl.entry(highest_sent).or_default() += 1;
            }
        }
        // Re-probe TTLs that stayed silent (nothing pending, nothing
        // answered), up to `queries`, before the end of the path.
        let stop_at = reached.or(terminal).unwrap_or(u8::MAX);
        let retry: Vec<(u8, u32)> = sent_per_ttl
            .iter()
            .filter(|(ttl, sent)| {
                **ttl < stop_at
                    && **sent < u32::from(queries)
                    && !results.get(ttl).is_some_and(|r| r.iter().any(|p| p.from.is_some()))
                    && !pending.values().any(|(t, _)| t == *ttl)
            })
            .map(|(ttl, sent)| (*ttl, u32::from(queries) - *sent))
            .collect();
        for (ttl, n) in retry {
            for _ in 0..n {
                pace(&mut last_send, opts.send_wait).await;
                let s = prober.send(ttl, prober.flow.min_size(), false)?;
                pending.insert(s.token, (ttl, s.at));
                *sent_per_ttl.entry(ttl).or_default() += 1;
            }
        }
        // Probes past the end no longer matter.
        if let Some(stop) = reached.or(terminal) {
            pending.retain(|_, (ttl, _)| *ttl <= stop);
        }
        let base = match max_rtt {
            Some(r) => (r * 3).clamp(opts.min_wait, opts.max_wait),
            None => opts.max_wait,
        };
        // traceroute's "near" rule: once a farther hop has answered, a
        // probe to a nearer hop that is still silent gets 10x that hop's
        // RTT, not the full wait: its answer, if any, would be back by then.
        let wait_for = |ttl: u8| match rtt_by_ttl.range(ttl + 1..).map(|(_, r)| *r).max() {
            Some(r) => (r * 10).clamp(NEAR_FLOOR, base),
            None => base,
        };
        let Some(deadline) = pending.values().map(|(ttl, at)| *at + wait_for(*ttl)).min() else { break };
        match prober.recv(deadline).await? {
            Some(a) => {
                let Some((ttl, _)) = pending.remove(&a.reply.token) else { continue };
                answered += 1;
                max_rtt = Some(max_rtt.map_or(a.rtt, |m| m.max(a.rtt)));
                let e = rtt_by_ttl.entry(ttl).or_insert(a.rtt);
                *e = (*e).max(a.rtt);
                highest_answer = Some(highest_answer.map_or(ttl, |h| h.max(ttl)));
                let mut res = describe(family, &a);
                let how = quote::SentAs { flow_label: prober.flow_label(), tos: prober.tos() };
                res.quote = quote::check(&prober.flow, how, &a.probe, prober.last_datagram());
                if a.reply.from_destination(&prober.flow) {
                    reached = Some(reached.map_or(ttl, |r| r.min(ttl)));
                } else if !matches!(res.reply, "time_exceeded") {
                    terminal = Some(terminal.map_or(ttl, |t| t.min(ttl)));
                }
                results.entry(ttl).or_default().push(res);
            }
            None => {
                let now = Instant::now();
                let expired: Vec<u16> =
                    pending.iter().filter(|(_, (ttl, at))| *at + wait_for(*ttl) <= now).map(|(t, _)| *t).collect();
                for t in expired {
                    if let Some((ttl, _)) = pending.remove(&t) {
                        results.entry(ttl).or_default().push(silent());
                    }
                }
            }
        }
        progress(answered, prober.probes_sent);
    }

    let end = reached.or(terminal).unwrap_or(highest_sent).min(highest_sent);
    let hops: Vec<Hop> = (first..=end)
        .map(|ttl| {
            let mut probes = results.remove(&ttl).unwrap_or_default();
            let sent = sent_per_ttl.get(&ttl).copied().unwrap_or(0);
            // Probes cancelled because the path ended earlier count as silent.
            while (probes.len() as u32) < sent {
                probes.push(silent());
            }
            // Answers first, in RTT order, then the silent ones: like traceroute.
            probes.sort_by(|a, b| {
                let ka = a.rtt_ms.unwrap_or(f64::INFINITY);
                let kb = b.rtt_ms.unwrap_or(f64::INFINITY);
                ka.total_cmp(&kb)
            });
            let mut addrs = Vec::new();
            for p in &probes {
                if let Some(f) = p.from
                    && !addrs.contains(&f)
                {
                    addrs.push(f);
                }
            }
            let answered = probes.iter().filter(|p| p.from.is_some()).count() as u32;
            Hop { ttl, probes, addrs, sent, answered }
        })
        .collect();
    let stop = if reached.is_some() {
        "reached"
    } else if terminal.is_some() {
        "unreachable"
    } else if highest_sent >= max_ttl {
        "max_ttl"
    } else {
        "gap"
    };
    let middleboxes = quote::summarize(&hops);
    Ok(TraceResult {
        target: prober.flow.dst,
        source: prober.flow.src,
        proto: prober.flow.proto,
        dst_port: (prober.flow.proto != Proto::Icmp).then_some(prober.flow.dst_port),
        src_port: (prober.flow.proto != Proto::Icmp).then_some(prober.flow.src_port),
        hops,
        reached_at: reached,
        last_answering: highest_answer,
        stop,
        probes_sent: prober.probes_sent,
        seconds: start.elapsed().as_secs_f64(),
        middleboxes,
        mtu: None,
    })
}

/// Traceroute-style text.
pub fn render(t: &TraceResult) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let port = t.dst_port.map(|p| format!("/{p}")).unwrap_or_default();
    let _ = writeln!(
        s,
        "trace to {} ({}{port}, Paris flow from {}{}), all TTLs at once",
        t.target,
        t.proto.as_str(),
        t.source,
        t.src_port.map(|p| format!(":{p}")).unwrap_or_default()
    );
    for h in &t.hops {
        let mut line = format!("{:>2}  ", h.ttl);
        let mut last_from: Option<IpAddr> = None;
        let mut notes: Vec<String> = Vec::new();
        for p in &h.probes {
            match (p.from, p.rtt_ms) {
                (Some(f), Some(rtt)) => {
                    if last_from != Some(f) {
                        match &p.name {
                            Some(n) => {
                                let _ = write!(line, "{n} ({f})  ");
                            }
                            None => {
                                let _ = write!(line, "{f}  ");
                            }
                        }
                        last_from = Some(f);
                    }
                    let _ = write!(line, "{rtt:.3} ms");
                    if !p.annotation.is_empty() {
                        let _ = write!(line, " {}", p.annotation);
                    }
                    line.push_str("  ");
                    if let (Some(w), Some(ty), Some(code)) = (p.words, p.icmp_type, p.icmp_code)
                        && p.reply != "time_exceeded"
                    {
                        let n = format!("ICMP {ty}/{code} {w}");
                        if !notes.contains(&n) {
                            notes.push(n);
                        }
                    }
                }
                _ => line.push_str("*  "),
            }
        }
        let line = format!("{}{}", line.trim_end(), path_notes(t, h.ttl));
        if notes.is_empty() {
            let _ = writeln!(s, "{line}");
        } else {
            let _ = writeln!(s, "{line}   ({})", notes.join("; "));
        }
    }
    let end = match (t.reached_at, t.stop) {
        (Some(h), _) => format!("reached {} at hop {h}", t.target),
        (None, "unreachable") => "stopped: an ICMP error ended the path".to_string(),
        (None, "gap") => format!(
            "not reached: no answer past hop {}",
            t.last_answering.map(|h| h.to_string()).unwrap_or_else(|| "0".into())
        ),
        _ => "not reached within the TTL limit".to_string(),
    };
    for c in &t.middleboxes {
        let _ = writeln!(s, "{}", c.words());
    }
    if let Some(m) = &t.mtu {
        let _ = writeln!(s, "{}", m.summary());
    }
    let _ = writeln!(s, "{end}; {} probes in {:.2} s", t.probes_sent, t.seconds);
    s
}

/// What the hop line of `ttl` gets from `--mtu` (`F=1400`) and from the
/// quote comparison (`[NAT src=...]`).
fn path_notes(t: &TraceResult, ttl: u8) -> String {
    let mtu = t.mtu.as_ref().map(|m| m.hop_note(ttl)).unwrap_or_default();
    format!("{mtu}{}", quote::hop_notes(&t.middleboxes, ttl))
}
