//! Kernel-side diagnostics (aya-log) for cold paths only.
//!
//! The level is fixed at load (`Config::log_level`, also written to
//! aya-log's own `AYA_LOG_LEVEL`): every call site first reads that
//! constant, so with logging off (the default) the verifier removes the
//! call and the packet path pays nothing. When on, each kind of message is
//! rate-limited per CPU, since the packets that trigger them (malformed
//! ones) are attacker-controlled.

use aya_ebpf::{EbpfContext, helpers::bpf_ktime_get_coarse_ns as now_ns, macros::map, maps::PerCpuArray};

/// `aya_log_common::Level::Debug`.
const DEBUG: u32 = 4;
/// At most one message of a kind per CPU per this long.
const EVERY_NS: u64 = 1_000_000_000;

/// Message kinds (rate-limit slots).
mod kind {
    pub const MALFORMED: u32 = 0;
    pub const COUNT: u32 = 1;
}

/// Per-CPU time of the last message of each kind.
#[map]
static LOG_LAST: PerCpuArray<u64> = PerCpuArray::with_max_entries(kind::COUNT, 0);

/// True at most once per [`EVERY_NS`] per CPU for `kind`.
#[inline(always)]
fn due(kind: u32) -> bool {
    let Some(last) = LOG_LAST.get_ptr_mut(kind) else {
        return false;
    };
    // SAFETY: helper without preconditions; per-CPU slot.
    let (now, last) = unsafe { (now_ns(), &mut *last) };
    if *last != 0 && now.wrapping_sub(*last) < EVERY_NS {
        return false;
    }
    *last = now;
    true
}

/// A frame that claims to be IP but cannot be parsed (debug level).
#[inline(always)]
pub fn malformed<C: EbpfContext>(ctx: &C, ifindex: u32, hook: u8, linear_len: u32) {
    if crate::config!(log_level) < DEBUG || !due(kind::MALFORMED) {
        return;
    }
    aya_log_ebpf::debug!(
        ctx,
        "malformed IP frame on ifindex {} (hook {}), {} bytes linear; counted as malformed (at most one such message per CPU per second)",
        ifindex,
        hook,
        linear_len
    );
}
