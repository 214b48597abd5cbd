//! The join worker: a thread that runs netlink lookups, fed by a bounded
//! queue, and the reporter that holds findings until their joins are back.
//!
//! The drain only ever calls [`Reporter::due`] / [`Reporter::submit`],
//! which never block: a finding that needs no join is returned at once; a
//! finding that does is queued with `try_send`, and when the queue is full
//! it is returned at once with its facts marked unknown (counted as
//! `skipped`). The worker drops jobs that waited past their deadline
//! without asking the kernel (counted as `expired`), so under a flood the
//! backlog is bounded in time as well as in size.
//!
//! The reporter also *checks* first sightings the line budget folded: one
//! that quotes a local TCP flow is real if the kernel has that socket
//! (sock_diag by exact 4-tuple, a SYN-RECV request included), which no
//! spoofer inventing clients can fake (the listener, which the kernel's
//! lookup falls back to for any client of its port, does not count). A confirmed one comes back from
//! [`Reporter::joined`] like a joined finding and is printed at once;
//! the rest stay folded. Checks are bounded: [`CHECKS_PER_SEC`] a second
//! (a burst of [`CHECKS_IN_FLIGHT`]), at most [`CHECKS_IN_FLIGHT`] in the
//! worker's queue, each behind the ordinary joins' own queue room; a
//! folded entry over that budget simply stays folded (counted).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::SyncSender,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::{Joined, Lookup, Lookups, Needs, apply, icmp_back, needs, run};
use crate::{
    explain::{Aggregate, Aggregator, HostContext, Ledger},
    net::sockets::TcpState,
};

/// Folded first sightings checked against the host's sockets per second:
/// at ~25 µs a lookup, at most a tenth of the worker's core. On this
/// machine the kernel's own sampling (1000 events/s per CPU) stays below
/// it, so every folded sighting of a local TCP flow is checked.
pub(crate) const CHECKS_PER_SEC: f64 = 4000.0;
/// Checks waiting in the worker's queue at most (also the burst).
pub(crate) const CHECKS_IN_FLIGHT: usize = 256;

/// How the joins went, since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Findings queued for joins.
    pub queued: u64,
    /// Findings reported without joins because the queue was full.
    pub skipped: u64,
    /// Queued findings whose deadline passed before the worker got to them.
    pub expired: u64,
    /// Findings still waiting when the reporter finished.
    pub abandoned: u64,
    /// Folded first sightings checked against the host's sockets.
    pub checked: u64,
    /// Of those, confirmed (the quoted socket exists) and printed.
    pub confirmed: u64,
    /// Folded first sightings of local TCP flows left unchecked: over the
    /// check budget.
    pub unchecked: u64,
}

/// Process-wide totals of findings reported without their joins (skipped:
/// queue full; expired: waited past the deadline), for the metrics.
static SKIPPED: AtomicU64 = AtomicU64::new(0);
static EXPIRED: AtomicU64 = AtomicU64::new(0);

/// (skipped, expired) since start, over every reporter of this process.
#[allow(dead_code)] // exported by the metrics collector
pub(crate) fn totals() -> (u64, u64) {
    (SKIPPED.load(Ordering::Relaxed), EXPIRED.load(Ordering::Relaxed))
}

struct Job {
    id: u64,
    needs: Needs,
    deadline: Instant,
    /// A check of a folded first sighting: its other joins only run when
    /// its socket exists.
    check: bool,
}

struct Done {
    id: u64,
    joined: Joined,
    expired: bool,
    check: bool,
}

/// Does this answer confirm the quoted connection? Only a socket of that
/// very 4-tuple does: the kernel's lookup by tuple falls back to the
/// listener of the port, which answers for every client, spoofed or not.
fn confirms(socket: &Lookup<TcpState>) -> bool {
    matches!(socket, Lookup::Found(s) if *s != TcpState::Listen)
}

/// A check: the socket lookup first; only when the connection exists, the
/// other joins the finding needs (NAT is not asked: the socket is ours).
fn run_check(l: &dyn Lookups, n: &Needs) -> Joined {
    let Some(k) = n.socket else { return Joined::unknown(n) };
    let socket = Lookup::from_result(l.socket(&k));
    if !confirms(&socket) {
        return Joined { socket, nat: Lookup::NotAsked, pmtu: Lookup::NotAsked };
    }
    let pmtu = n.pmtu.map_or(Lookup::NotAsked, |d| Lookup::from_result(l.route_pmtu(d)));
    Joined { socket, nat: Lookup::NotAsked, pmtu }
}

/// Holds findings while their joins run; hands them back when done.
pub(crate) struct Reporter {
    jobs: Option<SyncSender<Job>>,
    done: UnboundedReceiver<Done>,
    /// By aggregate id: at most one job per entry.
    pending: HashMap<u64, (Aggregate, Needs)>,
    /// Folded first sightings being checked, by aggregate id (their
    /// snapshot at fold time); at most [`CHECKS_IN_FLIGHT`].
    checking: HashMap<u64, Aggregate>,
    /// Confirmed since the last [`Reporter::due`], to tell the aggregator.
    confirmed: Vec<Aggregate>,
    check_tokens: f64,
    check_refilled: Instant,
    /// Joins waiting or running at most (the queue also has room for the
    /// checks, which never take this room).
    capacity: usize,
    max_wait: Duration,
    stats: Stats,
}

impl Reporter {
    /// Starts the worker thread. At most `capacity` findings wait in its
    /// queue; a queued finding is joined only if the worker reaches it
    /// within `max_wait`.
    pub(crate) fn spawn(lookups: impl Lookups, capacity: usize, max_wait: Duration) -> Result<Reporter> {
        // Room for the checks on top: they never take the joins' room.
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(capacity.max(1) + CHECKS_IN_FLIGHT);
        let (done_tx, done) = unbounded_channel();
        std::thread::Builder::new()
            .name("netobs-join".into())
            .spawn(move || {
                // Ends when the reporter drops its sender (or is gone).
                while let Ok(job) = queue.recv() {
                    let expired = Instant::now() >= job.deadline;
                    let joined = match (expired, job.check) {
                        (true, _) => Joined::unknown(&job.needs),
                        (false, false) => run(&lookups, &job.needs),
                        (false, true) => run_check(&lookups, &job.needs),
                    };
                    if done_tx.send(Done { id: job.id, joined, expired, check: job.check }).is_err() {
                        break;
                    }
                }
            })
            .context("starting the join worker thread")?;
        Ok(Reporter {
            jobs: Some(jobs),
            done,
            pending: HashMap::new(),
            checking: HashMap::new(),
            confirmed: Vec::new(),
            check_tokens: CHECKS_IN_FLIGHT as f64,
            check_refilled: Instant::now(),
            capacity: capacity.max(1),
            max_wait,
            stats: Stats::default(),
        })
    }

    /// The entries of `agg` that are due for a report: those that need no
    /// host lookup are returned now, the others come back from
    /// [`Reporter::joined`]. Never blocks.
    pub(crate) fn due(
        &mut self,
        agg: &mut Aggregator,
        ledger: &mut Ledger,
        ctx: &HostContext,
        interval: Duration,
    ) -> Vec<Aggregate> {
        icmp_back(agg, ledger);
        let now = Instant::now();
        // Printed since the last report: no longer folded, and their
        // repeats follow the printed entries' cadence.
        for a in std::mem::take(&mut self.confirmed) {
            agg.confirm(&a, now);
        }
        self.refill_checks(now);
        let due = agg.due_folding(interval, now, &mut |a| self.check(a, ctx, now));
        due.into_iter().filter_map(|a| self.submit(a, ctx)).collect()
    }

    fn refill_checks(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.check_refilled).as_secs_f64();
        self.check_refilled = now;
        self.check_tokens = (self.check_tokens + dt * CHECKS_PER_SEC).min(CHECKS_IN_FLIGHT as f64);
    }

    /// Queues a check of a folded first sighting when it quotes a local TCP
    /// flow and the budget allows; otherwise it stays folded.
    fn check(&mut self, a: &Aggregate, ctx: &HostContext, now: Instant) {
        let n = needs(&a.finding, ctx);
        if n.socket.is_none() {
            return;
        }
        let Some(jobs) = &self.jobs else { return };
        if self.check_tokens < 1.0 || self.checking.len() >= CHECKS_IN_FLIGHT || self.checking.contains_key(&a.id) {
            self.stats.unchecked += 1;
            return;
        }
        match jobs.try_send(Job { id: a.id, needs: n, deadline: now + self.max_wait, check: true }) {
            Ok(()) => {
                self.check_tokens -= 1.0;
                self.stats.checked += 1;
                self.checking.insert(a.id, a.clone());
            }
            Err(_) => self.stats.unchecked += 1,
        }
    }

    /// Queues `a` for its joins, or returns it when it is ready now (no
    /// joins needed, or the queue is full: then its facts are unknown).
    pub(crate) fn submit(&mut self, mut a: Aggregate, ctx: &HostContext) -> Option<Aggregate> {
        let n = needs(&a.finding, ctx);
        if n.is_empty() {
            return Some(a);
        }
        // Already waiting for its joins (a repeat report of the same entry):
        // the newer snapshot takes its place, so lines never go back in time.
        if let Some(slot) = self.pending.get_mut(&a.id) {
            slot.0 = a;
            return None;
        }
        // Printed by way of its joins now: a check still under way would
        // only print it twice.
        self.checking.remove(&a.id);
        let Some(jobs) = &self.jobs else {
            apply(&mut a.finding, &Joined::unknown(&n));
            return Some(a);
        };
        let id = a.id;
        let room = if self.pending.len() < self.capacity { Ok(()) } else { Err(()) };
        match room.and_then(|()| {
            jobs.try_send(Job { id, needs: n, deadline: Instant::now() + self.max_wait, check: false }).map_err(|_| ())
        }) {
            Ok(()) => {
                self.stats.queued += 1;
                self.pending.insert(id, (a, n));
                None
            }
            Err(()) => {
                if self.stats.skipped == 0 {
                    log::warn!("host lookups cannot keep up; findings are reported without them (counted)");
                }
                self.stats.skipped += 1;
                SKIPPED.fetch_add(1, Ordering::Relaxed);
                apply(&mut a.finding, &Joined::unknown(&n));
                Some(a)
            }
        }
    }

    /// The next finding whose joins are done. Waits forever when nothing is
    /// pending; cancel-safe (for `select!`).
    pub(crate) async fn joined(&mut self) -> Aggregate {
        loop {
            let Some(d) = self.done.recv().await else {
                return std::future::pending().await;
            };
            if let Some(a) = self.take(d) {
                return a;
            }
        }
    }

    fn take(&mut self, d: Done) -> Option<Aggregate> {
        if d.check {
            let mut a = self.checking.remove(&d.id)?;
            if !confirms(&d.joined.socket) {
                return None;
            }
            self.stats.confirmed += 1;
            apply(&mut a.finding, &d.joined);
            a.reported_count = a.count;
            self.confirmed.push(a.clone());
            return Some(a);
        }
        let (mut a, _) = self.pending.remove(&d.id)?;
        if d.expired {
            self.stats.expired += 1;
            EXPIRED.fetch_add(1, Ordering::Relaxed);
        }
        apply(&mut a.finding, &d.joined);
        Some(a)
    }

    /// Findings waiting for their joins.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    /// Stops taking work and collects what is outstanding: joins that
    /// finish within `grace`, then the rest with their facts unknown.
    pub(crate) async fn finish(&mut self, grace: Duration) -> Vec<Aggregate> {
        self.jobs = None;
        // Unfinished checks: those entries stay folded.
        self.checking.clear();
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + grace;
        while !self.pending.is_empty() {
            match tokio::time::timeout_at(deadline, self.done.recv()).await {
                Ok(Some(d)) => out.extend(self.take(d)),
                Ok(None) | Err(_) => break,
            }
        }
        let mut rest: Vec<(u64, (Aggregate, Needs))> = self.pending.drain().collect();
        rest.sort_by_key(|(id, _)| *id);
        self.stats.abandoned += rest.len() as u64;
        out.extend(rest.into_iter().map(|(_, (mut a, n))| {
            apply(&mut a.finding, &Joined::unknown(&n));
            a
        }));
        out
    }
}
