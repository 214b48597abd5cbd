//! The probe budget: `--probe-budget` probes in any minute, overall, and
//! never faster than [`MAX_PPS`] packets a second.
//!
//! Investigations run one at a time. Each takes an allotment (at most
//! [`MAX_PER_INVESTIGATION`], at most what the last minute left) before it
//! sends anything; every probe passes a gate on that allotment
//! ([`Gate::pass`], through `Prober::gate`), which refuses the probe past
//! it and paces the rest. When the investigation ends, what it really sent
//! is booked at its end time, so each probe is counted for a full minute
//! after it left.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The budget's window.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Fastest probe rate, whatever the budget.
pub(crate) const MAX_PPS: u32 = 50;
/// Most probes one investigation may send.
pub(crate) const MAX_PER_INVESTIGATION: u32 = 40;
/// Fewer left than this: not worth starting (a trace alone needs a few).
pub(crate) const MIN_TO_START: u32 = 8;

/// The probe budget `--probe-budget` refused.
#[derive(Debug, thiserror::Error)]
#[error("the probe budget of this investigation is spent ({0} probes)")]
pub(crate) struct Spent(pub u32);

/// Probes booked in the last minute.
#[derive(Debug)]
pub(crate) struct Budget {
    per_minute: u32,
    booked: VecDeque<(Instant, u32)>,
}

impl Budget {
    pub(crate) fn new(per_minute: u32) -> Budget {
        Budget { per_minute, booked: VecDeque::new() }
    }

    /// Probes still allowed in the window ending `now`.
    pub(crate) fn left(&mut self, now: Instant) -> u32 {
        while self.booked.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) >= WINDOW) {
            self.booked.pop_front();
        }
        let used: u32 = self.booked.iter().map(|(_, n)| *n).sum();
        self.per_minute.saturating_sub(used)
    }

    /// An allotment for one investigation, or None when too little is left.
    pub(crate) fn allot(&mut self, now: Instant) -> Option<u32> {
        let left = self.left(now);
        (left >= MIN_TO_START.min(self.per_minute) && left > 0).then(|| left.min(MAX_PER_INVESTIGATION))
    }

    /// Books what an investigation sent, at the time it ended.
    pub(crate) fn book(&mut self, end: Instant, sent: u32) {
        if sent > 0 {
            self.booked.push_back((end, sent));
        }
    }
}

/// The gate every probe of one investigation passes.
#[derive(Clone, Debug)]
pub(crate) struct Gate {
    inner: Arc<Mutex<GateState>>,
}

#[derive(Debug)]
struct GateState {
    cap: u32,
    sent: u32,
    last: Option<Instant>,
}

impl Gate {
    pub(crate) fn new(cap: u32) -> Gate {
        Gate { inner: Arc::new(Mutex::new(GateState { cap, sent: 0, last: None })) }
    }

    /// Lets one probe go, after waiting for the packet rate; refuses it
    /// past the allotment. Runs on the investigation thread, so the wait
    /// blocks nothing but the investigation.
    pub(crate) fn pass(&self) -> Result<(), Spent> {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if s.sent >= s.cap {
            return Err(Spent(s.cap));
        }
        let gap = Duration::from_secs(1) / MAX_PPS;
        if let Some(last) = s.last {
            let due = last + gap;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        s.last = Some(Instant::now());
        s.sent += 1;
        Ok(())
    }

    /// Probes let through so far.
    pub(crate) fn sent(&self) -> u32 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).sent
    }

    /// The closure a `Prober` calls before each probe.
    pub(crate) fn for_prober(&self) -> Box<dyn FnMut() -> anyhow::Result<()> + Send> {
        let g = self.clone();
        Box::new(move || g.pass().map_err(anyhow::Error::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_counts_what_was_sent_for_a_minute_after_it_ended() {
        let t0 = Instant::now();
        let mut b = Budget::new(30);
        assert_eq!(b.allot(t0), Some(30));
        b.book(t0, 26);
        assert_eq!(b.left(t0), 4);
        assert_eq!(b.allot(t0), None, "4 left is too little to start");
        assert_eq!(b.allot(t0 + WINDOW - Duration::from_millis(1)), None);
        assert_eq!(b.allot(t0 + WINDOW), Some(30));
        let mut big = Budget::new(1000);
        assert_eq!(big.allot(t0), Some(MAX_PER_INVESTIGATION));
        let mut tiny = Budget::new(3);
        assert_eq!(tiny.allot(t0), Some(3), "a budget below the minimum still allows its own size");
    }

    #[test]
    fn the_gate_refuses_past_its_cap_and_paces() {
        let g = Gate::new(3);
        let start = Instant::now();
        for _ in 0..3 {
            g.pass().unwrap();
        }
        assert!(g.pass().is_err());
        assert_eq!(g.sent(), 3);
        assert!(start.elapsed() >= 2 * (Duration::from_secs(1) / MAX_PPS));
    }
}
