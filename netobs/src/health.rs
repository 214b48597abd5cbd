//! Transient errors of a long-running `watch`: logged, counted, retried.
//!
//! A daemon left running for months meets failed map reads, interrupted
//! polls, netlink timeouts and full pipes. None of them may end it; each is
//! counted here (exported as `netobs_transient_errors_total{op}`) and logged
//! at most once per second per kind, so a flood of one error cannot flood
//! the log either.

// Wired in by the watch loop, the netlink joins and the metrics collector.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// What was being done when a transient error happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Reading a counter map.
    MapRead,
    /// Polling or reading the ring buffer.
    RingPoll,
    /// Running the stage flush program.
    StageFlush,
    /// A netlink request (routes, links, conntrack, sock_diag) failed or timed out.
    Netlink,
    /// Writing an output line (other than a closed pipe, which ends quietly).
    Output,
    /// Attaching to or detaching from an interface that appeared or vanished.
    Attach,
}

impl Op {
    pub(crate) const ALL: [Op; 6] = [Op::MapRead, Op::RingPoll, Op::StageFlush, Op::Netlink, Op::Output, Op::Attach];

    /// The metric label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::MapRead => "map_read",
            Op::RingPoll => "ring_poll",
            Op::StageFlush => "stage_flush",
            Op::Netlink => "netlink",
            Op::Output => "output",
            Op::Attach => "attach",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

static COUNTS: [AtomicU64; Op::ALL.len()] = [const { AtomicU64::new(0) }; Op::ALL.len()];
static LAST_LOG_SEC: [AtomicU64; Op::ALL.len()] = [const { AtomicU64::new(0) }; Op::ALL.len()];

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Records a transient error: counted always, logged at most once a second
/// per kind (with the running count, so nothing is hidden).
pub(crate) fn transient(op: Op, err: &dyn std::fmt::Display) {
    let n = COUNTS[op.index()].fetch_add(1, Ordering::Relaxed) + 1;
    let now = now_secs();
    let last = LAST_LOG_SEC[op.index()].swap(now, Ordering::Relaxed);
    if last != now {
        log::warn!("transient {} error (will retry; {n} so far): {err:#}", op.as_str());
    }
}

/// How many transient errors of kind `op` happened since start.
pub(crate) fn count(op: Op) -> u64 {
    COUNTS[op.index()].load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_error_per_kind() {
        let before_poll = count(Op::RingPoll);
        let before_netlink = count(Op::Netlink);
        for _ in 0..3 {
            transient(Op::RingPoll, &"EINTR");
        }
        transient(Op::Netlink, &"timeout");
        assert_eq!(count(Op::RingPoll) - before_poll, 3);
        assert_eq!(count(Op::Netlink) - before_netlink, 1);
        let labels: Vec<&str> = Op::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(labels.len(), 6);
        assert!(labels.iter().all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }
}
