//! Program entry points.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, raw_tracepoint, xdp},
    programs::{RawTracePointContext, TcContext, XdpContext},
};
use netobs_common::event::{hook, stat};

use crate::maps::bump;

use crate::classify::observe;

/// `TC_ACT_UNSPEC`: for TCX "next program", for cls_bpf "default action".
const TC_CONTINUE: i32 = -1;
/// Bytes of an skb made linear before parsing: outer headers plus a quote
/// with its transport header and room for options / extension headers.
const TC_PULL_BYTES: u32 = 256;

/// XDP ingress observer: counts and samples ICMP errors and DF-oversized
/// packets, always passes the frame on.
#[xdp]
pub fn netobs_xdp(ctx: XdpContext) -> u32 {
    observe(&ctx, ctx.data(), ctx.data_end(), ctx.ingress_ifindex() as u32, hook::XDP);
    xdp_action::XDP_PASS
}

/// An XDP program that does nothing: the benchmark's baseline.
#[xdp]
pub fn netobs_baseline(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// TC ingress: the same classification where XDP cannot attach.
#[classifier]
pub fn netobs_tc_ingress(ctx: TcContext) -> i32 {
    tc_observe(&ctx, hook::TC_INGRESS);
    TC_CONTINUE
}

/// TC egress: ICMP errors this host sends, and locally sent DF packets
/// above the configured path MTU. Forwarded packets are only counted.
#[classifier]
pub fn netobs_tc_egress(ctx: TcContext) -> i32 {
    tc_observe(&ctx, hook::TC_EGRESS);
    TC_CONTINUE
}

#[inline(always)]
fn tc_observe(ctx: &TcContext, hook: u8) {
    let len = ctx.len();
    let want = if len < TC_PULL_BYTES { len } else { TC_PULL_BYTES };
    if ctx.data_end() - ctx.data() < want as usize {
        // Best effort: a failed pull leaves a shorter quote, which the
        // parser reports as truncated.
        let _ = ctx.pull_data(want);
    }
    // SAFETY: the context pointer is valid for the program's duration.
    let skb = unsafe { &*ctx.skb.skb };
    // Egress reports what this host sends: its own packets carry the
    // sending socket (for ICMP errors, the kernel's ICMP socket); packets
    // it forwards carry none.
    // SAFETY: reading the `sk` member of the context's union.
    if hook == hook::TC_EGRESS && unsafe { skb.__bindgen_anon_2.sk }.is_null() {
        bump(stat::PACKETS);
        bump(stat::EGRESS_FORWARDED);
        return;
    }
    observe(ctx, ctx.data(), ctx.data_end(), skb.ifindex, hook);
}

/// Never attached: user space runs it on a chosen CPU (BPF_PROG_TEST_RUN
/// with BPF_F_TEST_RUN_ON_CPU) to write out events that CPU staged at the
/// end of a flood (see `netobs_common::event::EventStage`).
#[raw_tracepoint]
pub fn netobs_flush(_ctx: RawTracePointContext) -> i32 {
    crate::emit::flush_this_cpu();
    0
}

/// Benchmark traffic generator (never attached by netobs): run through
/// BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES, it transmits the test
/// frame out of the context's ingress interface.
#[xdp]
pub fn netobs_bench_tx(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}
