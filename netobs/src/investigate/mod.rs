//! `watch --investigate`: each new finding runs the matching probe toward
//! the affected destination, and the result is reported as a record of its
//! own, with `explain`'s rules and words.
//!
//! Sending probes is the operator's decision, hence opt-in. What keeps it
//! polite:
//!
//! - **only destinations seen in real traffic**: a trigger carries the
//!   destination of the finding's flow; this host's own addresses,
//!   loopback, multicast, broadcast and unspecified addresses are never
//!   probed;
//! - **a cooldown per destination** (`--probe-cooldown`), remembered for at
//!   most [`MAX_REMEMBERED`] destinations;
//! - **`--probe-budget` probes a minute overall**, never faster than
//!   [`budget::MAX_PPS`] packets a second (see [`budget`]);
//! - **one investigation at a time, off the watch loop**: on a thread of
//!   its own with its own runtime, fed by a bounded queue. The loop only
//!   hands triggers over and picks results up once a second; it never
//!   waits for a probe, and SIGTERM does not wait for one either.
//!
//! The [`Tick`] helper is all `watch` calls: it reads the retransmission
//! counts, reports what they suggest ([`crate::explain::absence`]), offers
//! new findings to the investigator and prints finished investigations.

mod budget;
mod probes;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::mpsc,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    explain::{
        Aggregator, HostContext,
        absence::{Absence, AbsenceFinding, AbsenceKind, IcmpSeen},
    },
    health::{self, Op},
    kernel::retrans::{RetransReader, Retransmissions},
    output::{metrics::Recorder, sink::Sink},
    probe::packet::Proto,
    verdict::{self, Diagnosis, Evidence},
};

pub(crate) use probes::Plan;

/// Destinations whose cooldown is remembered; beyond it new ones are not
/// probed until old ones expire.
pub(crate) const MAX_REMEMBERED: usize = 4096;
/// Triggers waiting for the investigation thread; more are dropped
/// (counted in the metric as `skipped_queue`).
const QUEUE: usize = 8;

/// What made an investigation start (`trigger` in JSON, metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TriggerKind {
    Rejection,
    TooBig,
    DfOversized,
    SuspectedBlackhole,
    SilentDrop,
    SynackRetransmitted,
}

impl TriggerKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Rejection => "rejection",
            TriggerKind::TooBig => "too_big",
            TriggerKind::DfOversized => "df_oversized",
            TriggerKind::SuspectedBlackhole => "suspected_blackhole",
            TriggerKind::SilentDrop => "silent_drop",
            TriggerKind::SynackRetransmitted => "synack_retransmitted",
        }
    }
}

/// One finding to investigate.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Trigger {
    pub kind: TriggerKind,
    /// The record it came from: "finding" (ICMP / DF) or "absence".
    pub record: &'static str,
    /// That record's `id`.
    pub id: u64,
    /// That record's key in words.
    pub key: String,
    pub dst: IpAddr,
    #[serde(skip)]
    pub proto: Proto,
    pub port: Option<u16>,
}

impl Trigger {
    /// The trigger of an ICMP or DF finding, if it calls for probing.
    pub(crate) fn of_finding(a: &crate::explain::Aggregate) -> Option<Trigger> {
        use netobs_common::icmp::Verdict;
        let f = &a.finding;
        let fl = f.flow.as_ref()?;
        // An error this host sent itself is about someone else's traffic.
        if f.direction == crate::explain::Direction::SentByUs {
            return None;
        }
        let kind = match (f.kind, f.verdict) {
            ("df_oversized", _) => TriggerKind::DfOversized,
            ("icmp_error", Verdict::FragNeeded) => TriggerKind::TooBig,
            ("icmp_error", Verdict::Rejected | Verdict::Unreachable) => TriggerKind::Rejection,
            _ => return None,
        };
        // Return traffic goes to the peer's ephemeral port: nothing to
        // check there, a trace toward the peer is what helps.
        let proto = match fl.protocol.as_str() {
            _ if f.direction == crate::explain::Direction::Return => Proto::Icmp,
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => Proto::Icmp,
        };
        let port = if proto == Proto::Icmp { None } else { fl.dst_port };
        Some(Trigger {
            kind,
            record: "finding",
            id: a.id,
            key: format!("{} {}", f.verdict.as_str(), crate::explain::words::endpoint(fl.dst, fl.dst_port)),
            dst: fl.dst,
            proto,
            port,
        })
    }

    /// The trigger of a retransmission finding.
    pub(crate) fn of_absence(f: &AbsenceFinding) -> Trigger {
        let kind = match f.kind {
            AbsenceKind::PmtuBlackholeSuspected => TriggerKind::SuspectedBlackhole,
            AbsenceKind::SilentDrop => TriggerKind::SilentDrop,
            AbsenceKind::SynackRetransmitted => TriggerKind::SynackRetransmitted,
        };
        Trigger {
            kind,
            record: "absence",
            id: f.id,
            key: f.key(),
            dst: f.remote,
            proto: Proto::Tcp,
            port: Some(f.port),
        }
    }
}

/// How an investigation ended (`status` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Done,
    /// Not started: the minute's budget was spent.
    SkippedBudget,
    /// A probe failed (or the allotment ran out mid-way).
    Failed,
}

/// A finished investigation.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub id: u64,
    pub trigger: Trigger,
    pub plan: Plan,
    pub status: Status,
    pub verdict: Option<Diagnosis>,
    pub evidence: Option<Evidence>,
    pub error: Option<String>,
    pub probes_sent: u32,
    pub budget_left: u32,
    pub seconds: f64,
    pub at: SystemTime,
}

impl Outcome {
    /// The metric's verdict label: the diagnosis kind, or why there is none.
    pub(crate) fn verdict_label(&self) -> String {
        match (&self.verdict, self.status) {
            (Some(v), _) => {
                serde_json::to_value(v.kind).ok().and_then(|k| k.as_str().map(str::to_string)).unwrap_or_default()
            }
            (None, Status::SkippedBudget) => "skipped_budget".into(),
            (None, _) => "failed".into(),
        }
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "schema": crate::output::json::SCHEMA,
            "type": "investigation",
            "id": self.id,
            "time": humantime::format_rfc3339_seconds(self.at).to_string(),
            "trigger": self.trigger.kind,
            "trigger_record": self.trigger.record,
            "trigger_id": self.trigger.id,
            "trigger_key": self.trigger.key,
            "target": self.trigger.dst,
            "port": self.trigger.port,
            "plan": self.plan,
            "probes": self.plan.probes(self.trigger.proto),
            "status": self.status,
            "error": self.error,
            "probes_sent": self.probes_sent,
            "budget_left": self.budget_left,
            "seconds": self.seconds,
            "verdict": self.verdict,
            "evidence": self.evidence,
            "text": self.text(),
        })
    }

    /// The terminal block: what triggered it, then `explain`'s words.
    pub(crate) fn text(&self) -> String {
        let head = format!(
            "{} INVESTIGATED {} ({} {}): {} probe(s), {:.1} s",
            crate::explain::words::clock(self.at),
            self.trigger.key,
            self.trigger.record,
            self.trigger.id,
            self.probes_sent,
            self.seconds
        );
        match (&self.verdict, self.status) {
            (Some(v), _) => format!("{head}\n{}", verdict::render(v).trim_end()),
            (None, Status::SkippedBudget) => format!("{head}\n  not probed: the probe budget of this minute is spent"),
            (None, _) => format!("{head}\n  failed: {}", self.error.as_deref().unwrap_or("?")),
        }
    }
}

/// `--investigate` settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    pub budget: u32,
    pub cooldown: Duration,
}

/// Destinations probed recently: one investigation per destination per
/// cooldown, at most [`MAX_REMEMBERED`] remembered.
#[derive(Debug)]
struct Cooldown {
    every: Duration,
    probed: HashMap<IpAddr, Instant>,
}

impl Cooldown {
    fn new(every: Duration) -> Cooldown {
        Cooldown { every, probed: HashMap::new() }
    }

    /// Whether `dst` may be probed now (not until `start` says it was).
    fn allows(&mut self, dst: IpAddr, now: Instant) -> bool {
        let every = self.every;
        self.probed.retain(|_, at| now.saturating_duration_since(*at) < every);
        !self.probed.contains_key(&dst) && self.probed.len() < MAX_REMEMBERED
    }

    fn start(&mut self, dst: IpAddr, now: Instant) {
        self.probed.insert(dst, now);
    }
}

/// The watch loop's handle on the investigation thread.
pub(crate) struct Investigator {
    jobs: mpsc::SyncSender<(u64, Trigger)>,
    done: mpsc::Receiver<Outcome>,
    cooldown: Cooldown,
    next_id: u64,
    /// Highest aggregate id already considered (ids only grow).
    seen_findings: u64,
    pub(crate) dropped: u64,
}

/// Whether an address may be probed at all.
fn probeable(a: IpAddr, ctx: &HostContext) -> bool {
    let special = match a {
        IpAddr::V4(v) => v.is_loopback() || v.is_multicast() || v.is_broadcast() || v.is_unspecified(),
        IpAddr::V6(v) => v.is_loopback() || v.is_multicast() || v.is_unspecified(),
    };
    !special && !ctx.is_local(&a)
}

impl Investigator {
    /// Starts the investigation thread. Needs CAP_NET_RAW now and later
    /// (each investigation opens its raw sockets): see [`keep`].
    pub(crate) fn start(opts: Options) -> Result<Investigator> {
        crate::privilege::check("watch --investigate", &[caps::Capability::CAP_NET_RAW])?;
        let (jobs, rx) = mpsc::sync_channel::<(u64, Trigger)>(QUEUE);
        let (tx, done) = mpsc::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the investigation runtime")?;
        std::thread::Builder::new()
            .name("investigate".into())
            .spawn(move || {
                let mut budget = budget::Budget::new(opts.budget);
                // Ends when the watch loop drops its sender (or its receiver).
                while let Ok((id, trigger)) = rx.recv() {
                    let out = rt.block_on(investigate(id, trigger, &mut budget));
                    if tx.send(out).is_err() {
                        return;
                    }
                }
            })
            .context("starting the investigation thread")?;
        Ok(Investigator {
            jobs,
            done,
            cooldown: Cooldown::new(opts.cooldown),
            next_id: 1 << 41,
            seen_findings: 0,
            dropped: 0,
        })
    }

    /// Queues an investigation unless the destination may not be probed or
    /// is cooling down. Never waits. False when the queue was full and the
    /// trigger was dropped.
    pub(crate) fn offer(&mut self, t: Trigger, ctx: &HostContext, now: Instant) -> bool {
        if !probeable(t.dst, ctx) {
            return true;
        }
        if !self.cooldown.allows(t.dst, now) {
            return true;
        }
        let dst = t.dst;
        match self.jobs.try_send((self.next_id, t)) {
            Ok(()) => {
                self.next_id += 1;
                self.cooldown.start(dst, now);
                true
            }
            Err(_) => {
                self.dropped += 1;
                false
            }
        }
    }

    /// Offers the ICMP / DF findings the aggregator made since last time;
    /// returns the kinds of the triggers dropped on a full queue.
    fn offer_findings(&mut self, agg: &mut Aggregator, ctx: &HostContext, now: Instant) -> Vec<TriggerKind> {
        let mut dropped = Vec::new();
        let mut fresh = Vec::new();
        let seen = self.seen_findings;
        agg.for_each_mut(|a| {
            if a.id > seen {
                fresh.push((a.id, Trigger::of_finding(a)));
            }
        });
        fresh.sort_by_key(|(id, _)| *id);
        for (id, t) in fresh {
            self.seen_findings = self.seen_findings.max(id);
            if let Some(t) = t {
                let kind = t.kind;
                if !self.offer(t, ctx, now) {
                    dropped.push(kind);
                }
            }
        }
        dropped
    }
}

/// The capabilities `watch` keeps after attaching: `base`, plus
/// CAP_NET_RAW for the probes when investigating.
pub(crate) fn keep(mut base: Vec<caps::Capability>, investigate: bool) -> Vec<caps::Capability> {
    if investigate && !base.contains(&caps::Capability::CAP_NET_RAW) {
        base.push(caps::Capability::CAP_NET_RAW);
    }
    base
}

/// Runs one investigation within the budget (on the investigation thread).
async fn investigate(id: u64, trigger: Trigger, budget: &mut budget::Budget) -> Outcome {
    let start = Instant::now();
    let plan = Plan::of(&trigger);
    let mut out = Outcome {
        id,
        trigger,
        plan,
        status: Status::SkippedBudget,
        verdict: None,
        evidence: None,
        error: None,
        probes_sent: 0,
        budget_left: 0,
        seconds: 0.0,
        at: SystemTime::now(),
    };
    let Some(cap) = budget.allot(start) else {
        out.budget_left = budget.left(start);
        return out;
    };
    let gate = budget::Gate::new(cap);
    match probes::run(&out.trigger, &gate).await {
        Ok((v, e)) => {
            out.status = Status::Done;
            out.verdict = Some(v);
            out.evidence = Some(e);
        }
        Err(e) => {
            out.status = Status::Failed;
            out.error = Some(format!("{e:#}"));
        }
    }
    let end = Instant::now();
    out.probes_sent = gate.sent();
    budget.book(end, out.probes_sent);
    out.budget_left = budget.left(end);
    out.seconds = end.duration_since(start).as_secs_f64();
    out.at = SystemTime::now();
    out
}

/// What `watch` holds for closing the loop: the retransmission reader and
/// its judge (when the tracepoints attached), the investigator (with
/// `--investigate`).
pub(crate) struct Tick {
    pub retrans: Option<RetransReader>,
    pub absence: Absence,
    /// `--forwarded-tcp`: the forwarded flows' counts and their judge.
    pub forwarded: Option<(RetransReader, Absence)>,
    pub investigator: Option<Investigator>,
}

impl Tick {
    /// Once a second from the watch loop: judge the retransmission
    /// counts, report and offer what is new, print finished investigations.
    /// Map reads and channel polls only; never a probe.
    pub(crate) fn run(&mut self, agg: &mut Aggregator, ctx: &HostContext, sink: &mut Sink, rec: &Recorder) {
        let now = Instant::now();
        if let Some(r) = &self.retrans {
            Self::judge(r, &mut self.absence, agg, ctx, sink, rec, &mut self.investigator, now, |_| true);
        }
        if let Some((r, judge)) = &mut self.forwarded {
            // Flows to or from this host are its own TCP, which the
            // tracepoints see with more certainty.
            let forwarded = |e: &Retransmissions| !ctx.is_local(&e.remote) && !ctx.is_local(&e.local);
            Self::judge(r, judge, agg, ctx, sink, rec, &mut self.investigator, now, forwarded);
        }
        let Some(i) = &mut self.investigator else { return };
        for kind in i.offer_findings(agg, ctx, now) {
            rec.investigation(kind.as_str(), "skipped_queue");
        }
        while let Ok(o) = i.done.try_recv() {
            sink.record(&o.json());
            sink.text(&o.text());
            rec.investigation(o.trigger.kind.as_str(), &o.verdict_label());
        }
    }

    /// Reads one counts map, judges it, reports and offers what is new.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        r: &RetransReader,
        judge: &mut Absence,
        agg: &mut Aggregator,
        ctx: &HostContext,
        sink: &mut Sink,
        rec: &Recorder,
        investigator: &mut Option<Investigator>,
        now: Instant,
        keep: impl Fn(&Retransmissions) -> bool,
    ) {
        let mut entries = match r.read() {
            Ok(entries) => entries,
            Err(e) => return health::transient(Op::MapRead, &e),
        };
        entries.retain(|e| keep(e));
        if entries.is_empty() && judge.is_idle() {
            return;
        }
        let icmp = IcmpSeen::from_aggregator(agg);
        for f in judge.judge(&entries, &icmp, now, SystemTime::now()) {
            sink.record(&f.json());
            sink.text(&f.text());
            // The metric counts findings, not their update lines.
            if !f.update {
                rec.absence(f.kind.as_str());
            }
            if let Some(i) = investigator {
                let t = Trigger::of_absence(&f);
                let kind = t.kind;
                if !i.offer(t, ctx, now) {
                    rec.investigation(kind.as_str(), "skipped_queue");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use netobs_common::icmp::Verdict;

    use super::*;
    use crate::explain::Finding;

    fn aggregate(f: Finding) -> crate::explain::Aggregate {
        let mut agg = Aggregator::new(4);
        agg.ingest(f, SystemTime::now());
        agg.top(1).remove(0)
    }

    #[test]
    fn findings_choose_their_probes() {
        // The fixture: a 3/10 rejecting our SYN-ACK to 198.18.1.1:40000
        // (return traffic: the port is the client's, so a trace).
        let t = Trigger::of_finding(&aggregate(Finding::example())).unwrap();
        assert_eq!((t.kind, t.record, t.proto, t.port), (TriggerKind::Rejection, "finding", Proto::Icmp, None));
        assert_eq!(t.dst.to_string(), "198.18.1.1");
        assert_eq!(Plan::of(&t), Plan::Trace);
        let out = Finding { direction: crate::explain::Direction::Outgoing, ..Finding::example() };
        let t = Trigger::of_finding(&aggregate(out)).unwrap();
        assert_eq!((t.proto, t.port), (Proto::Tcp, Some(40000)));
        assert_eq!(Plan::of(&t).probes(t.proto), ["tcp", "trace", "trace_icmp"]);
        let ours = Finding { direction: crate::explain::Direction::SentByUs, ..Finding::example() };
        assert!(Trigger::of_finding(&aggregate(ours)).is_none(), "our own reject is not probed");
        let ptb =
            Trigger::of_finding(&aggregate(Finding { verdict: Verdict::FragNeeded, ..Finding::example() })).unwrap();
        assert_eq!(Plan::of(&ptb), Plan::Pmtu);
        let ttl = Finding { verdict: Verdict::TtlExpired, ..Finding::example() };
        assert!(Trigger::of_finding(&aggregate(ttl)).is_none(), "someone's traceroute is not a problem to probe");
        let df = Finding { kind: "df_oversized", verdict: Verdict::DfOversized, ..Finding::example() };
        assert_eq!(Trigger::of_finding(&aggregate(df)).unwrap().kind, TriggerKind::DfOversized);
        let no_flow = Finding { flow: None, ..Finding::example() };
        assert!(Trigger::of_finding(&aggregate(no_flow)).is_none(), "no destination, nothing to probe");
    }

    #[test]
    fn one_investigation_per_destination_per_cooldown() {
        let mut c = Cooldown::new(Duration::from_secs(300));
        let (a, b): (IpAddr, IpAddr) = ("198.18.1.1".parse().unwrap(), "198.18.1.2".parse().unwrap());
        let t0 = Instant::now();
        assert!(c.allows(a, t0));
        c.start(a, t0);
        assert!(!c.allows(a, t0 + Duration::from_secs(299)));
        assert!(c.allows(b, t0 + Duration::from_secs(1)), "another destination is not held back");
        assert!(c.allows(a, t0 + Duration::from_secs(300)));
        // Bounded: a flood of destinations stops at MAX_REMEMBERED.
        let mut c = Cooldown::new(Duration::from_secs(300));
        for i in 0..MAX_REMEMBERED as u32 {
            c.start(IpAddr::V4((0xc612_0000 + i).into()), t0);
        }
        assert!(!c.allows(b, t0), "full: nothing new until old ones expire");
        assert!(c.allows(b, t0 + Duration::from_secs(300)));
    }

    #[test]
    fn only_real_remote_destinations_are_probed() {
        let ctx = HostContext::default();
        assert!(probeable("198.18.1.1".parse().unwrap(), &ctx));
        for a in ["127.0.0.1", "224.0.0.1", "255.255.255.255", "0.0.0.0", "::1", "ff02::1"] {
            assert!(!probeable(a.parse().unwrap(), &ctx), "{a}");
        }
    }

    #[test]
    fn an_outcome_record_links_its_trigger_and_says_why_nothing_was_sent() {
        let t = Trigger {
            kind: TriggerKind::SilentDrop,
            record: "absence",
            id: 7,
            key: "silent_drop 198.18.4.1:443".into(),
            dst: "198.18.4.1".parse().unwrap(),
            proto: Proto::Tcp,
            port: Some(443),
        };
        let o = Outcome {
            id: 1,
            trigger: t,
            plan: Plan::Service,
            status: Status::SkippedBudget,
            verdict: None,
            evidence: None,
            error: None,
            probes_sent: 0,
            budget_left: 3,
            seconds: 0.0,
            at: SystemTime::now(),
        };
        let j = o.json();
        assert_eq!(j["type"], "investigation");
        assert_eq!(
            (j["trigger"].as_str(), j["trigger_record"].as_str(), j["trigger_id"].as_u64()),
            (Some("silent_drop"), Some("absence"), Some(7))
        );
        assert_eq!(j["status"], "skipped_budget");
        assert_eq!(o.verdict_label(), "skipped_budget");
        assert!(j["text"].as_str().unwrap().contains("probe budget"), "{j}");
    }
}
