//! Path-MTU search with DF probes, blackhole detection and localisation.
//!
//! 1. One burst of DF probes at the local MTU and every common MTU below it
//!    (Ethernet 1500, PPPoE 1492, tunnels 1480/1460/1450/1420/1400, the
//!    IPv6 minimum 1280, ...): most real path MTUs are one of these, so
//!    one round trip usually brackets the answer.
//! 2. Every MTU a router announces (frag-needed / Packet Too Big) that was
//!    not probed yet is probed next: announced values are exact.
//! 3. Whatever is left between the largest size that arrived and the
//!    smallest that did not is bisected; the smallest lost size is sent a
//!    second time before it is believed (one lost probe is not a blackhole).
//! 4. If that smallest lost size vanished without any frag-needed, it is a
//!    blackhole: TTL-limited probes of that size go out to every hop next to
//!    small ones. Hops before the narrow link still answer the big probes
//!    with time-exceeded (routers check the TTL before the MTU); the first hop
//!    that answers small probes but not big ones sits behind the narrow link.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::Result;
use serde::Serialize;

use super::{
    packet::{Proto, ReplyKind},
    socket::{Answer, Prober},
};
use crate::explain::ptb::{PtbJudgement, judge_ptb};

/// Common link MTUs, largest first.
pub const COMMON_MTUS: [u32; 16] =
    [9000, 4352, 1500, 1492, 1480, 1460, 1450, 1420, 1400, 1380, 1280, 1006, 576, 552, 296, 68];

/// Below this a first round does not go: smaller sizes are probed only if
/// nothing at or above it arrives.
const FIRST_ROUND_FLOOR: u32 = 1280;

/// What one probe size drew.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The destination answered: the size fits the path.
    Ok,
    /// A router said "too big" and announced `mtu`.
    TooBig { mtu: u32, from: IpAddr },
    /// A "too big" that cannot be right (see [`crate::explain::ptb`]): it
    /// is recorded, not believed, and the search learns nothing from it.
    BogusTooBig { mtu: u32, from: IpAddr },
    /// Some other ICMP error (e.g. a reject): the size says nothing.
    Error { from: IpAddr, icmp_type: u8, code: u8 },
    /// No answer.
    Silent,
}

/// The search state: every size probed so far and what it drew.
#[derive(Clone, Debug, Default)]
pub struct Search {
    pub local_mtu: u32,
    pub min_size: u32,
    /// Last outcome per size and how many probes of it went unanswered.
    pub results: BTreeMap<u32, (Outcome, u32)>,
}

/// What the search wants next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Probe(Vec<u32>),
    Done,
}

impl Search {
    pub fn new(local_mtu: u32, min_size: u32) -> Search {
        Search { local_mtu, min_size, results: BTreeMap::new() }
    }

    /// The first burst: the local MTU and every common MTU from it down to
    /// 1280.
    pub fn first_round(&self) -> Vec<u32> {
        let mut v = vec![self.local_mtu];
        v.extend(COMMON_MTUS.iter().copied().filter(|&m| m < self.local_mtu && m >= FIRST_ROUND_FLOOR));
        v.retain(|&m| m >= self.min_size);
        v
    }

    /// Records what a size drew.
    pub fn record(&mut self, size: u32, o: Outcome) {
        let e = self.results.entry(size).or_insert((o, 0));
        if o == Outcome::Silent {
            e.1 += 1;
            // A later silence does not undo an earlier answer.
            if e.0 != Outcome::Ok {
                e.0 = o;
            }
        } else {
            e.0 = o;
        }
    }

    /// Largest size that reached the destination.
    pub fn largest_ok(&self) -> Option<u32> {
        self.results.iter().rev().find(|(_, (o, _))| *o == Outcome::Ok).map(|(s, _)| *s)
    }

    /// Smallest size above the largest OK one that did not arrive.
    pub fn smallest_lost(&self) -> Option<(u32, Outcome, u32)> {
        let lo = self.largest_ok().unwrap_or(0);
        self.results.range(lo + 1..).find(|(_, (o, _))| *o != Outcome::Ok).map(|(s, (o, n))| (*s, *o, *n))
    }

    pub fn next(&self) -> Next {
        let Some(lo) = self.largest_ok() else {
            // Nothing arrived: try the smaller common sizes once.
            let smaller: Vec<u32> = COMMON_MTUS
                .iter()
                .copied()
                .filter(|&m| m < FIRST_ROUND_FLOOR && m >= self.min_size && !self.results.contains_key(&m))
                .collect();
            return if smaller.is_empty() { Next::Done } else { Next::Probe(smaller) };
        };
        let Some((hi, hi_outcome, silent_count)) = self.smallest_lost() else { return Next::Done };
        // Announced MTUs we have not tried yet.
        let announced: Vec<u32> = self
            .results
            .values()
            .filter_map(|(o, _)| match o {
                Outcome::TooBig { mtu, .. } => Some(*mtu),
                _ => None,
            })
            .filter(|&m| m > lo && m < hi && m >= self.min_size && !self.results.contains_key(&m))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !announced.is_empty() {
            return Next::Probe(announced);
        }
        // The smallest lost size was answered "too big" announcing exactly
        // the largest size that arrived: the MTU is known, nothing to bisect.
        if matches!(hi_outcome, Outcome::TooBig { mtu, .. } if mtu == lo) {
            return Next::Done;
        }
        if hi > lo + 1 {
            return Next::Probe(vec![lo + (hi - lo) / 2]);
        }
        // Bracketed exactly. A silent boundary gets a second chance.
        if hi_outcome == Outcome::Silent && silent_count < 2 {
            return Next::Probe(vec![hi]);
        }
        Next::Done
    }
}

/// Who announced a smaller MTU.
#[derive(Clone, Debug, Serialize)]
pub struct Announcement {
    pub from: IpAddr,
    pub mtu: u32,
    /// Hop of the announcer, from the TTL it quoted (routers check the MTU
    /// before decrementing, so quoted = sent - (hop - 1)).
    pub hop: Option<u8>,
    /// Probe sizes it answered with this value.
    pub probe_sizes: Vec<u32>,
    /// Length of our probe as it quoted it.
    pub quoted_len: Option<u16>,
    /// Whether it is believed (`reasons` empty) and why not.
    #[serde(flatten)]
    pub judgement: PtbJudgement,
}

/// Where a blackhole is.
#[derive(Clone, Debug, Serialize)]
pub struct Blackhole {
    pub largest_ok: u32,
    pub smallest_lost: u32,
    /// Frag-needed / Packet Too Big messages received for sizes up to and
    /// including `smallest_lost` (0 is what makes it a blackhole).
    pub too_big_seen: u32,
    /// Probes of `smallest_lost` bytes that vanished.
    pub lost_probes: u32,
    /// First hop that answers small TTL-limited probes but not big ones:
    /// the narrow link leads into it.
    pub hop: Option<u8>,
    pub hop_addr: Option<IpAddr>,
    /// Last hop that still answered big probes.
    pub last_big_hop: Option<u8>,
    pub last_big_addr: Option<IpAddr>,
    /// Size of the TTL-limited big probes.
    pub locate_size: u32,
    /// Per TTL: did the big / small probe draw an answer.
    pub locate: Vec<LocateHop>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LocateHop {
    pub ttl: u8,
    pub big: bool,
    pub small: bool,
    pub addr: Option<IpAddr>,
}

/// One probe of the search.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub size: u32,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub rtt_ms: Option<f64>,
}

/// A finished PMTU search.
#[derive(Clone, Debug, Serialize)]
pub struct PmtuResult {
    pub target: IpAddr,
    pub source: IpAddr,
    pub proto: Proto,
    pub local_mtu: u32,
    /// Path MTU: the largest DF packet that reached the destination.
    pub pmtu: Option<u32>,
    pub announcements: Vec<Announcement>,
    pub blackhole: Option<Blackhole>,
    /// Hops to the destination (from the quoted TTL of its answers).
    pub dest_hops: Option<u8>,
    pub steps: Vec<Step>,
    pub probes_sent: u32,
    pub seconds: f64,
    /// The search ended early because other evidence showed the
    /// destination does not answer (`explain`).
    pub stopped_early: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct PmtuOptions {
    pub min_wait: Duration,
    pub max_wait: Duration,
    pub initial_ttl: u8,
    /// Locate a blackhole with TTL-limited probes.
    pub locate: bool,
    /// Hops to the destination if known (e.g. from a trace).
    pub dest_hops: Option<u8>,
}

impl Default for PmtuOptions {
    fn default() -> Self {
        PmtuOptions {
            min_wait: Duration::from_millis(250),
            max_wait: Duration::from_secs(2),
            initial_ttl: 64,
            locate: true,
            dest_hops: None,
        }
    }
}

/// Sends a burst and collects answers per probe token until each probe
/// has answered or timed out (adaptive wait).
pub(crate) async fn burst(
    prober: &mut Prober,
    probes: &[(u8, u32)],
    opts: &PmtuOptions,
    max_rtt: &mut Option<Duration>,
) -> Result<Vec<Option<Answer>>> {
    let never = std::future::pending::<()>();
    tokio::pin!(never);
    Ok(burst_until(prober, probes, opts, max_rtt, &mut never).await?.0)
}

/// [`burst`] that stops waiting when `give_up` completes; the flag says it
/// did (then `give_up` must not be polled again).
async fn burst_until<F: std::future::Future<Output = ()>>(
    prober: &mut Prober,
    probes: &[(u8, u32)],
    opts: &PmtuOptions,
    max_rtt: &mut Option<Duration>,
    give_up: &mut std::pin::Pin<&mut F>,
) -> Result<(Vec<Option<Answer>>, bool)> {
    let mut tokens = Vec::with_capacity(probes.len());
    for &(ttl, size) in probes {
        tokens.push(prober.send(ttl, size as usize, true)?.token);
    }
    let mut out: Vec<Option<Answer>> = vec![None; probes.len()];
    let start = Instant::now();
    loop {
        let waiting = out.iter().filter(|a| a.is_none()).count();
        if waiting == 0 {
            break;
        }
        let wait = max_rtt.map_or(opts.max_wait, |r| (r * 3).clamp(opts.min_wait, opts.max_wait));
        let got = tokio::select! {
            got = prober.recv(start + wait) => got?,
            () = give_up.as_mut() => return Ok((out, true)),
        };
        let Some(a) = got else { break };
        if let Some(i) = tokens.iter().position(|t| *t == a.reply.token)
            && out[i].is_none()
        {
            *max_rtt = Some(max_rtt.map_or(a.rtt, |m| m.max(a.rtt)));
            out[i] = Some(a);
        }
    }
    Ok((out, false))
}

pub(crate) fn outcome(prober: &Prober, a: &Option<Answer>) -> Outcome {
    let Some(a) = a else { return Outcome::Silent };
    let fam = prober.flow.family();
    let r = &a.reply;
    if r.from_destination(&prober.flow) && !r.is_too_big(fam) {
        return Outcome::Ok;
    }
    match r.kind {
        ReplyKind::IcmpError { .. } if r.is_too_big(fam) => {
            let mtu = r.mtu.unwrap_or(0);
            // It quotes our probe (the prober matched it), so only the MTU
            // can be wrong.
            if judge_ptb(fam, mtu, r.quoted_len, Some(true)).believable() {
                Outcome::TooBig { mtu, from: r.from }
            } else {
                Outcome::BogusTooBig { mtu, from: r.from }
            }
        }
        ReplyKind::IcmpError { icmp_type, code } => Outcome::Error { from: r.from, icmp_type, code },
        _ => Outcome::Ok,
    }
}

/// Runs the search with `prober` (UDP to a closed port, ICMP echo, or TCP
/// SYN: anything the destination answers).
pub async fn run(
    prober: &mut Prober,
    local_mtu: u32,
    opts: &PmtuOptions,
    progress: impl FnMut(u32),
) -> Result<PmtuResult> {
    run_until(prober, local_mtu, opts, progress, std::future::pending()).await
}

/// [`run`], but the search ends as soon as `give_up` completes: the caller
/// knows the destination does not answer these probes (`explain`: its ICMP
/// echo trace ended before the destination), so no size can be confirmed
/// and waiting out the rounds would decide nothing.
pub async fn run_until(
    prober: &mut Prober,
    local_mtu: u32,
    opts: &PmtuOptions,
    mut progress: impl FnMut(u32),
    give_up: impl std::future::Future<Output = ()>,
) -> Result<PmtuResult> {
    tokio::pin!(give_up);
    let mut stopped_early = false;
    let start = Instant::now();
    let min_size = prober.flow.min_size() as u32;
    let ttl = opts.initial_ttl;
    let mut search = Search::new(local_mtu, min_size);
    let mut steps = Vec::new();
    let mut announcements: Vec<Announcement> = Vec::new();
    let mut dest_hops = opts.dest_hops;
    let mut max_rtt = None;
    let mut sizes = search.first_round();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let probes: Vec<(u8, u32)> = sizes.iter().map(|&s| (ttl, s)).collect();
        let (answers, gave_up) = burst_until(prober, &probes, opts, &mut max_rtt, &mut give_up).await?;
        if gave_up {
            stopped_early = true;
            break;
        }
        for (&size, a) in sizes.iter().zip(&answers) {
            let o = outcome(prober, a);
            if let (Outcome::Ok, Some(a)) = (o, a) {
                // The destination quotes our TTL as it arrived (UDP port
                // unreachable): hops = decrements + 1.
                if dest_hops.is_none() {
                    dest_hops = a.reply.quoted_ttl.and_then(|q| ttl.checked_sub(q)).map(|d| d + 1);
                }
            }
            if let (Outcome::TooBig { mtu, from } | Outcome::BogusTooBig { mtu, from }, Some(a)) = (o, a) {
                let hop = a.reply.quoted_ttl.and_then(|q| ttl.checked_sub(q)).map(|d| d + 1);
                match announcements.iter_mut().find(|x| x.from == from && x.mtu == mtu) {
                    Some(x) => x.probe_sizes.push(size),
                    None => announcements.push(Announcement {
                        from,
                        mtu,
                        hop,
                        probe_sizes: vec![size],
                        quoted_len: a.reply.quoted_len,
                        judgement: judge_ptb(prober.flow.family(), mtu, a.reply.quoted_len, Some(true)),
                    }),
                }
            }
            steps.push(Step { size, outcome: o, rtt_ms: a.as_ref().map(|a| a.rtt.as_secs_f64() * 1000.0) });
            search.record(size, o);
        }
        progress(prober.probes_sent);
        match search.next() {
            Next::Probe(next) if rounds < 24 => sizes = next,
            _ => break,
        }
    }
    let pmtu = search.largest_ok();
    let mut blackhole = None;
    // A search cut short has not confirmed its boundary: no blackhole claim.
    if let (false, Some(lo), Some((hi, Outcome::Silent, lost))) = (stopped_early, pmtu, search.smallest_lost()) {
        let too_big_seen =
            search.results.range(..=hi).filter(|(_, (o, _))| matches!(o, Outcome::TooBig { .. })).count() as u32;
        let mut bh = Blackhole {
            largest_ok: lo,
            smallest_lost: hi,
            too_big_seen,
            lost_probes: lost,
            hop: None,
            hop_addr: None,
            last_big_hop: None,
            last_big_addr: None,
            locate_size: hi,
            locate: Vec::new(),
        };
        if opts.locate
            && let Some(d) = dest_hops
        {
            locate(prober, &mut bh, d, opts, &mut max_rtt).await?;
        }
        blackhole = Some(bh);
    }
    announcements.sort_by_key(|a| std::cmp::Reverse(a.mtu));
    Ok(PmtuResult {
        target: prober.flow.dst,
        source: prober.flow.src,
        proto: prober.flow.proto,
        local_mtu,
        pmtu,
        announcements,
        blackhole,
        dest_hops,
        steps,
        probes_sent: prober.probes_sent,
        seconds: start.elapsed().as_secs_f64(),
        stopped_early,
    })
}

/// TTL-limited big and small probes to every hop before the destination.
pub async fn locate(
    prober: &mut Prober,
    bh: &mut Blackhole,
    dest: u8,
    opts: &PmtuOptions,
    max_rtt: &mut Option<Duration>,
) -> Result<()> {
    let small = prober.flow.min_size() as u32;
    let mut probes = Vec::new();
    for ttl in 1..dest {
        probes.push((ttl, bh.locate_size));
        probes.push((ttl, small));
    }
    let answers = burst(prober, &probes, opts, max_rtt).await?;
    let fam = prober.flow.family();
    let answered = |a: &Option<Answer>| a.as_ref().is_some_and(|a| a.reply.is_time_exceeded(fam));
    for (i, ttl) in (1..dest).enumerate() {
        let big = &answers[2 * i];
        let sm = &answers[2 * i + 1];
        let addr = sm.as_ref().or(big.as_ref()).map(|a| a.reply.from);
        bh.locate.push(LocateHop { ttl, big: answered(big), small: answered(sm), addr });
    }
    locate_from(bh, dest);
    Ok(())
}

/// Pure part of [`locate`]: the first hop answering small but not big
/// probes; if every hop answers big probes, the narrow link is the last one,
/// into the destination.
pub fn locate_from(bh: &mut Blackhole, dest: u8) {
    let mut last_big: Option<&LocateHop> = None;
    let mut found = None;
    for h in &bh.locate {
        if h.big {
            last_big = Some(h);
        } else if h.small {
            found = Some((h.ttl, h.addr));
            break;
        }
    }
    let (hop, addr) = found.unwrap_or((dest, None));
    bh.hop = Some(hop);
    bh.hop_addr = addr;
    let prev = bh.locate.iter().rfind(|h| h.ttl < hop && h.big).or(last_big);
    bh.last_big_hop = prev.map(|h| h.ttl);
    bh.last_big_addr = prev.and_then(|h| h.addr);
}

/// Human-readable summary.
pub fn render(r: &PmtuResult) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "path MTU to {} ({} DF probes from {}, local MTU {})",
        r.target,
        r.proto.as_str(),
        r.source,
        r.local_mtu
    );
    match r.pmtu {
        Some(p) => {
            let _ =
                writeln!(s, "  path MTU {p}{}", if p == r.local_mtu { " (no smaller link on the path)" } else { "" });
        }
        None => {
            let _ = writeln!(s, "  no probe size drew an answer from {}: it does not answer these probes", r.target);
        }
    }
    for a in &r.announcements {
        let annotation = if r.target.is_ipv4() { "ICMP 3/4 fragmentation needed" } else { "ICMPv6 2 packet too big" };
        let doubt = if a.judgement.believable() {
            String::new()
        } else {
            format!(
                ": NOT BELIEVED, {}",
                a.judgement.words(if r.target.is_ipv4() { 4 } else { 6 }, a.mtu, a.quoted_len)
            )
        };
        let _ = writeln!(
            s,
            "  {} announced MTU {} ({annotation}){} for {} probe(s){doubt}",
            a.from,
            a.mtu,
            a.hop.map(|h| format!(", hop {h}")).unwrap_or_default(),
            a.probe_sizes.len()
        );
    }
    if let Some(b) = &r.blackhole {
        let _ = writeln!(
            s,
            "  BLACKHOLE: {} bytes arrive, {} and larger vanish ({} probes of {} lost), {} too-big messages came back",
            b.largest_ok, b.smallest_lost, b.lost_probes, b.smallest_lost, b.too_big_seen
        );
        if let Some(h) = b.hop {
            let _ = writeln!(
                s,
                "  located: TTL-limited {}-byte probes draw time-exceeded up to hop {}{}, not from hop {h}{}: the link into hop {h} is narrower",
                b.locate_size,
                b.last_big_hop.map(|h| h.to_string()).unwrap_or_else(|| "0".into()),
                b.last_big_addr.map(|a| format!(" ({a})")).unwrap_or_default(),
                b.hop_addr.map(|a| format!(" ({a})")).unwrap_or_default(),
            );
        }
        let hdr = if r.target.is_ipv4() { 40 } else { 60 };
        let icmp = if r.target.is_ipv4() { "ICMP 3/4" } else { "ICMPv6 type 2" };
        let _ = writeln!(
            s,
            "  fix: clamp TCP MSS to {} on the path, or let {icmp} through back to the sender",
            b.largest_ok.saturating_sub(hdr)
        );
    }
    let _ = writeln!(s, "  {} probes in {:.2} s", r.probes_sent, r.seconds);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> IpAddr {
        "198.18.2.254".parse().unwrap()
    }

    /// Drives a search against a simulated path: sizes up to `pmtu` arrive;
    /// larger ones draw too-big(announce) when `announce` is set, else vanish.
    fn simulate(local: u32, pmtu: u32, announce: bool) -> (Search, Vec<Vec<u32>>) {
        let mut s = Search::new(local, 30);
        let mut rounds = vec![s.first_round()];
        loop {
            let sizes = rounds.last().cloned().unwrap_or_default();
            for sz in sizes {
                let o = if sz <= pmtu {
                    Outcome::Ok
                } else if announce {
                    Outcome::TooBig { mtu: pmtu, from: from() }
                } else {
                    Outcome::Silent
                };
                s.record(sz, o);
            }
            match s.next() {
                Next::Probe(v) => rounds.push(v),
                Next::Done => break,
            }
            assert!(rounds.len() < 30, "search does not converge");
        }
        (s, rounds)
    }

    #[test]
    fn first_round_is_the_common_table() {
        let s = Search::new(1500, 30);
        assert_eq!(s.first_round(), vec![1500, 1492, 1480, 1460, 1450, 1420, 1400, 1380, 1280]);
        let s = Search::new(9000, 30);
        assert_eq!(s.first_round()[..3], [9000, 4352, 1500]);
    }

    #[test]
    fn table_hit_needs_one_round_plus_confirmation() {
        let (s, rounds) = simulate(1500, 1400, false);
        assert_eq!(s.largest_ok(), Some(1400));
        // 1400 and 1420 bracket; bisect 1401..1419, then retry the boundary.
        let (hi, o, n) = s.smallest_lost().unwrap();
        assert_eq!((hi, o, n), (1401, Outcome::Silent, 2));
        let probes: usize = rounds.iter().map(|r| r.len()).sum();
        assert!(probes <= 16, "{probes} probes: {rounds:?}");
    }

    #[test]
    fn announced_mtu_is_probed_directly() {
        let (s, rounds) = simulate(1500, 1414, true);
        assert_eq!(s.largest_ok(), Some(1414));
        assert_eq!(rounds[1], vec![1414]);
        assert_eq!(rounds.len(), 2);
    }

    #[test]
    fn odd_blackhole_is_bisected_exactly() {
        for pmtu in [1281, 1337, 1499, 1000] {
            let (s, _) = simulate(1500, pmtu, false);
            assert_eq!(s.largest_ok(), Some(pmtu));
            assert_eq!(s.smallest_lost().map(|x| x.0), Some(pmtu + 1));
        }
    }

    #[test]
    fn clean_path_is_one_round() {
        let (s, rounds) = simulate(1500, 1500, false);
        assert_eq!(s.largest_ok(), Some(1500));
        assert_eq!(rounds.len(), 1);
    }

    #[test]
    fn a_late_loss_does_not_undo_an_answer() {
        let mut s = Search::new(1500, 30);
        s.record(1400, Outcome::Ok);
        s.record(1400, Outcome::Silent);
        assert_eq!(s.largest_ok(), Some(1400));
    }

    #[test]
    fn locating_the_narrow_link() {
        let a =
            |ttl, big, small| LocateHop { ttl, big, small, addr: Some(format!("198.18.{ttl}.254").parse().unwrap()) };
        let mut bh = Blackhole {
            largest_ok: 1400,
            smallest_lost: 1401,
            too_big_seen: 0,
            lost_probes: 2,
            hop: None,
            hop_addr: None,
            last_big_hop: None,
            last_big_addr: None,
            locate_size: 1401,
            locate: vec![a(1, true, true), a(2, true, true), a(3, false, true)],
        };
        locate_from(&mut bh, 4);
        assert_eq!(bh.hop, Some(3));
        assert_eq!(bh.last_big_hop, Some(2));
        // Every hop answers big probes: the last link is the narrow one.
        bh.locate = vec![a(1, true, true), a(2, true, true), a(3, true, true)];
        locate_from(&mut bh, 4);
        assert_eq!(bh.hop, Some(4));
        assert_eq!(bh.last_big_hop, Some(3));
    }
}
