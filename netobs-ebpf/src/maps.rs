//! Maps and load-time configuration shared by all programs in the object.

use aya_ebpf::{
    Global,
    macros::map,
    maps::{PerCpuArray, PerCpuHashMap, RingBuf},
};
use netobs_common::event::{Config, DfCounterKey, EventStage, IcmpCounterKey, TokenBucket, stat};

/// Set by the loader (`EbpfLoader::override_global`), read as a constant.
#[unsafe(no_mangle)]
pub static CONFIG: Global<Config> = Global::new(Config::DEFAULT);

/// Global per-CPU statistics, indexed by `netobs_common::event::stat`.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// ICMP errors by (ifindex, family, type, code, hook).
#[map]
pub static ICMP_COUNTERS: PerCpuHashMap<IcmpCounterKey, u64> = PerCpuHashMap::with_max_entries(4096, 0);

/// DF-oversized packets by (ingress, egress) interface.
#[map]
pub static DF_COUNTERS: PerCpuHashMap<DfCounterKey, u64> = PerCpuHashMap::with_max_entries(1024, 0);

/// Sampled event details for user space. Size can be overridden at load.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Per-CPU staging area in front of `EVENTS` (see [`EventStage`]).
#[map]
pub static STAGE: PerCpuArray<EventStage> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU token bucket bounding events per second.
#[map]
pub static BUCKET: PerCpuArray<TokenBucket> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn bump(slot: u32) {
    bump_by(slot, 1);
}

const BPF_NOEXIST: u64 = 1;

/// Adds one to a per-CPU hash counter, creating it when missing. A full map
/// is counted, never ignored.
#[inline(always)]
pub fn bump_key<K>(map: &PerCpuHashMap<K, u64>, key: &K) {
    match map.get_ptr_mut(key) {
        // SAFETY: per-CPU value.
        Some(p) => unsafe { *p += 1 },
        None => {
            if map.insert(key, 1u64, BPF_NOEXIST).is_err() {
                // Either another program on this CPU created it in between
                // (impossible: per-CPU and not preemptible) or the map is full.
                bump(stat::MAP_FULL);
            }
        }
    }
}

/// One token per event; tokens are kept in units of 1e-9 event so the
/// refill needs no division: `elapsed_ns * rate` nano-tokens.
#[inline(always)]
pub fn take_token(now: u64) -> bool {
    let cfg = CONFIG.load();
    if cfg.events_per_sec == 0 {
        return false;
    }
    let Some(b) = BUCKET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: per-CPU slot.
    let b = unsafe { &mut *b };
    const ONE: u64 = 1_000_000_000;
    let cap = cfg.burst.max(1) as u64 * ONE;
    // Programs read the coarse or the precise monotonic clock; the coarse
    // one can lag by a jiffy, so never let time run backwards.
    let elapsed = now.saturating_sub(b.last_ns);
    if now > b.last_ns {
        b.last_ns = now;
    }
    // Cap elapsed so the product cannot overflow (rate < 2^32, 2^31 ns ~ 2 s).
    let elapsed = if elapsed > (1 << 31) { 1 << 31 } else { elapsed };
    let mut tokens = b.tokens + elapsed * cfg.events_per_sec as u64;
    if tokens > cap {
        tokens = cap;
    }
    if tokens >= ONE {
        b.tokens = tokens - ONE;
        true
    } else {
        b.tokens = tokens;
        false
    }
}

/// Adds `n` to a global statistics slot.
#[inline(always)]
pub fn bump_by(slot: u32, n: u64) {
    if let Some(p) = STATS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe { *p += n };
    }
}

/// Look at the ring's fill level once per this many events per CPU.
const CHECK_EVERY: u64 = 64;
/// Bytes of unread events that justify waking user space up.
const WAKEUP_BYTES: u64 = 64 * 1024;

/// Submit flags for `n` events about to be written (the caller counts them
/// in `stat::EVENTS` once they are).
///
/// The reader is woken only once a batch has piled up: a wakeup per event
/// (the kernel's default whenever the reader has caught up) costs
/// microseconds under a flood. Asking the ring how much is unread reads the
/// reader's cache line, so that is done only every [`CHECK_EVERY`] events
/// on this CPU. And a CPU forces a wakeup only once per reader position:
/// until the reader has moved, another wakeup (an inter-processor interrupt,
/// microseconds in a VM) cannot make it faster. User space also polls on a
/// short timer, so a lone event waits at most that long.
#[inline(always)]
pub fn submit_flags(n: u64, stage: &mut EventStage) -> u64 {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_CONS_POS, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
    let Some(p) = STATS.get_ptr(stat::EVENTS) else {
        return BPF_RB_NO_WAKEUP as u64;
    };
    // SAFETY: per-CPU slot, only this CPU writes it.
    let before = unsafe { *p };
    if before / CHECK_EVERY == (before + n) / CHECK_EVERY || EVENTS.query(BPF_RB_AVAIL_DATA as u64) < WAKEUP_BYTES {
        return BPF_RB_NO_WAKEUP as u64;
    }
    // Stored plus one, so the zeroed initial value matches no position.
    let cons = EVENTS.query(BPF_RB_CONS_POS as u64).wrapping_add(1);
    if cons == stage.woken_at_cons {
        return BPF_RB_NO_WAKEUP as u64;
    }
    stage.woken_at_cons = cons;
    BPF_RB_FORCE_WAKEUP as u64
}
