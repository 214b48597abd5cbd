//! The packet programs' clock: nanoseconds on CLOCK_MONOTONIC_COARSE's
//! scale, advancing once per kernel tick.
//!
//! Why not `bpf_ktime_get_coarse_ns`: that helper is two kernel function
//! calls, and on CPUs with return-stack mitigations (SRSO, retbleed) every
//! return is expensive; the datapath bench measured it at 12-14 ns of an
//! ICMP error's event. `bpf_jiffies64` is inlined by the verifier into one
//! load, and a tick is the coarse clock's resolution anyway. User space
//! supplies the tick length and the offset to the coarse clock
//! (`Config::tick_ns`, `Config::clock_offset_ns`); without them (0, the
//! probe failed) the helper is called, and the verifier drops the other
//! branch (a load-time constant).

use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns};

/// Now, in nanoseconds (tick resolution), for packet programs.
#[inline(always)]
pub fn now() -> u64 {
    match from_ticks() {
        Some(now) => now,
        // SAFETY: helper without preconditions.
        None => unsafe { bpf_ktime_get_coarse_ns() },
    }
}

/// [`now`] for tracing programs, which may not call the coarse-clock
/// helper: without a tick clock they read the precise one.
#[inline(always)]
pub fn now_in_tracing() -> u64 {
    match from_ticks() {
        Some(now) => now,
        // SAFETY: helper without preconditions.
        None => unsafe { bpf_ktime_get_ns() },
    }
}

#[inline(always)]
fn from_ticks() -> Option<u64> {
    let tick = crate::config!(tick_ns);
    if tick == 0 {
        return None;
    }
    // SAFETY: helper without preconditions (inlined by the verifier).
    let jiffies = unsafe { bpf_jiffies64() };
    Some(jiffies.wrapping_mul(tick as u64).wrapping_add(crate::config!(clock_offset_ns)))
}
