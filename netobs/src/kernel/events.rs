//! Draining the event ring buffer from tokio.
//!
//! Nothing here ends `watch`: a failed poll is counted as a transient
//! `ring_poll` error (see `health`), logged at most once a second, and the
//! next poll comes after [`POLL_INTERVAL`] as usual, so a persistent
//! failure costs one wakeup per interval, not a busy loop.

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};

use crate::health::{self, Op};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use netobs_common::{Event, event::flags};
use tokio::io::unix::AsyncFd;

/// Longest a sampled event waits in the ring buffer before user space looks.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// The ring buffer, registered with the tokio reactor.
pub struct EventStream {
    fd: AsyncFd<RingBuf<MapData>>,
    /// Records that were not a whole number of events (should never
    /// happen): counted.
    pub short_records: u64,
    /// Events whose bytes did not decode (an ICMP error copy that does not
    /// parse: no datapath of ours writes one): counted, not passed on.
    pub undecodable_events: u64,
    /// Sampled ICMP errors whose quote stopped before naming the flow: the
    /// `quote_truncated` statistic. Counted here, where the datapath's
    /// bytes are parsed (`IcmpCapture`); [`CounterReader`] adds it to the
    /// kernel's statistics.
    ///
    /// [`CounterReader`]: super::CounterReader
    quote_truncated: Arc<AtomicU64>,
}

impl EventStream {
    /// Takes the `EVENTS` map out of the object.
    pub fn new(ebpf: &mut aya::Ebpf) -> Result<EventStream> {
        let map = ebpf.take_map("EVENTS").context("EVENTS ring buffer missing from the object")?;
        let ring = RingBuf::try_from(map).context("EVENTS is not a ring buffer")?;
        // SAFETY: the ring buffer owns its map fd, which stays open and the
        // same for as long as the RingBuf (now owned by the AsyncFd) lives.
        let fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("registering the ring buffer with tokio: {}", e))?;
        Ok(EventStream { fd, short_records: 0, undecodable_events: 0, quote_truncated: Arc::default() })
    }

    /// Waits until events are available, then appends up to `max` of them to
    /// `out`. Returns how many were appended.
    ///
    /// The programs wake us only once a batch has piled up (a wakeup per
    /// event is too expensive under a flood), so we also look every
    /// [`POLL_INTERVAL`]: a lone event waits at most that long. Poll
    /// errors are counted and retried, never returned.
    pub async fn next_batch(&mut self, out: &mut Vec<Event>, max: usize) -> usize {
        loop {
            let n = self.drain_counted(out, max);
            if n > 0 {
                return n;
            }
            match tokio::time::timeout(POLL_INTERVAL, self.fd.readable_mut()).await {
                Ok(Ok(mut guard)) => guard.clear_ready(),
                Ok(Err(e)) => {
                    health::transient(Op::RingPoll, &anyhow::Error::new(e).context("polling the ring buffer"));
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Err(_elapsed) => {}
            }
        }
    }

    /// Appends whatever is available now, without waiting.
    pub fn drain_now(&mut self, out: &mut Vec<Event>, max: usize) -> usize {
        self.drain_counted(out, max)
    }

    /// The count of truncated quotes this stream has decoded, shared.
    pub fn quote_truncated(&self) -> Arc<AtomicU64> {
        self.quote_truncated.clone()
    }

    /// [`drain`], counting what did not decode and the truncated quotes
    /// among the new events.
    fn drain_counted(&mut self, out: &mut Vec<Event>, max: usize) -> usize {
        let before = out.len();
        let d = drain(self.fd.get_mut(), out, max);
        self.short_records += d.short_records;
        self.undecodable_events += d.undecodable;
        let truncated = out.get(before..).unwrap_or_default().iter().filter(|e| e.flags & flags::QUOTE_TRUNCATED != 0);
        self.quote_truncated.fetch_add(truncated.count() as u64, Ordering::Relaxed);
        d.events
    }
}

/// What one [`drain`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Events decoded and appended.
    pub events: usize,
    /// Records that were not a whole number of events.
    pub short_records: u64,
    /// Events whose bytes did not decode ([`Event::from_bytes`]).
    pub undecodable: u64,
}

/// Decodes records until at least `max` events are in `out` or the ring is
/// empty. A record holds one event or a CPU's staged batch.
pub fn drain(ring: &mut RingBuf<MapData>, out: &mut Vec<Event>, max: usize) -> Drained {
    let mut d = Drained::default();
    while d.events < max {
        let Some(item) = ring.next() else { break };
        match Event::from_record(&item) {
            Some(events) => {
                for ev in events {
                    match ev {
                        Some(ev) => {
                            out.push(ev);
                            d.events += 1;
                        }
                        None => d.undecodable += 1,
                    }
                }
            }
            None => d.short_records += 1,
        }
    }
    d
}
