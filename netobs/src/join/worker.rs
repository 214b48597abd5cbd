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

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{SyncSender, TrySendError},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::{Joined, Lookups, Needs, apply, icmp_back, needs, run};
use crate::explain::{Aggregate, Aggregator, HostContext, Ledger};

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
}

struct Done {
    id: u64,
    joined: Joined,
    expired: bool,
}

/// Holds findings while their joins run; hands them back when done.
pub(crate) struct Reporter {
    jobs: Option<SyncSender<Job>>,
    done: UnboundedReceiver<Done>,
    /// By aggregate id: at most one job per entry.
    pending: HashMap<u64, (Aggregate, Needs)>,
    max_wait: Duration,
    stats: Stats,
}

impl Reporter {
    /// Starts the worker thread. At most `capacity` findings wait in its
    /// queue; a queued finding is joined only if the worker reaches it
    /// within `max_wait`.
    pub(crate) fn spawn(lookups: impl Lookups, capacity: usize, max_wait: Duration) -> Result<Reporter> {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(capacity.max(1));
        let (done_tx, done) = unbounded_channel();
        std::thread::Builder::new()
            .name("netobs-join".into())
            .spawn(move || {
                // Ends when the reporter drops its sender (or is gone).
                while let Ok(job) = queue.recv() {
                    let expired = Instant::now() >= job.deadline;
                    let joined = if expired { Joined::unknown(&job.needs) } else { run(&lookups, &job.needs) };
                    if done_tx.send(Done { id: job.id, joined, expired }).is_err() {
                        break;
                    }
                }
            })
            .context("starting the join worker thread")?;
        Ok(Reporter { jobs: Some(jobs), done, pending: HashMap::new(), max_wait, stats: Stats::default() })
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
        agg.due(interval, Instant::now()).into_iter().filter_map(|a| self.submit(a, ctx)).collect()
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
        let Some(jobs) = &self.jobs else {
            apply(&mut a.finding, &Joined::unknown(&n));
            return Some(a);
        };
        let id = a.id;
        match jobs.try_send(Job { id, needs: n, deadline: Instant::now() + self.max_wait }) {
            Ok(()) => {
                self.stats.queued += 1;
                self.pending.insert(id, (a, n));
                None
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
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
