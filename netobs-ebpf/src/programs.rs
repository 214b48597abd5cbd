//! Program entry points.

use aya_ebpf::{
    EbpfContext as _,
    bindings::xdp_action,
    helpers::generated::bpf_xdp_get_buff_len,
    macros::{classifier, raw_tracepoint, xdp},
    programs::{RawTracePointContext, TcContext, XdpContext},
};
use netobs_common::{
    cursor::Cursor,
    event::{hook, stat},
    parse::{parse_outer, tc_needs_pull},
};

use crate::maps::Stats;

use crate::classify::{Packet, observe};

/// `TC_ACT_UNSPEC`: for TCX "next program", for cls_bpf "default action".
const TC_CONTINUE: i32 = -1;
/// Bytes of an skb made linear before parsing: outer headers plus a quote
/// with its transport header and room for options / extension headers.
const TC_PULL_BYTES: u32 = 256;

impl Packet for XdpContext {
    #[inline(always)]
    fn frame_len(&self) -> u32 {
        // SAFETY: the program's own context. Counts every buffer of a
        // multi-buffer (jumbo) frame, where data_end ends the first one.
        unsafe { bpf_xdp_get_buff_len(self.as_ptr() as *mut _) as u32 }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.ingress_ifindex() as u32
    }
}

impl Packet for TcContext {
    #[inline(always)]
    fn frame_len(&self) -> u32 {
        self.len()
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: the context pointer is valid for the program's duration.
        unsafe { (*self.skb.skb).ifindex }
    }
}

/// XDP ingress observer: counts and samples ICMP errors and DF-oversized
/// packets, always passes the frame on.
///
/// A multi-buffer ("frags") program, so native XDP also attaches to links
/// whose MTU does not fit a page (jumbo frames); without it the kernel
/// refuses native mode there and only generic XDP, which linearises every
/// packet, is left. Headers and quotes are parsed from the first buffer;
/// the DF check takes the frame's whole length.
#[xdp(frags)]
#[inline(always)] // into the macro's entry point: no BPF-to-BPF call per packet
pub fn netobs_xdp(ctx: XdpContext) -> u32 {
    observe(&ctx, ctx.data(), ctx.data_end(), hook::XDP);
    xdp_action::XDP_PASS
}

/// An XDP program that does nothing: the benchmark's baseline.
#[xdp(frags)]
pub fn netobs_baseline(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// A TC program that does nothing: the benchmark's TC baseline.
#[classifier]
pub fn netobs_tc_baseline(_ctx: TcContext) -> i32 {
    TC_CONTINUE
}

/// TC ingress: the same classification where XDP cannot attach.
#[classifier]
#[inline(always)] // into the macro's entry point: no BPF-to-BPF call per packet
pub fn netobs_tc_ingress(ctx: TcContext) -> i32 {
    tc_observe(&ctx, hook::TC_INGRESS);
    TC_CONTINUE
}

/// TC egress: ICMP errors this host sends, and locally sent DF packets
/// above the configured path MTU. Forwarded packets are only counted.
#[classifier]
#[inline(always)] // into the macro's entry point: no BPF-to-BPF call per packet
pub fn netobs_tc_egress(ctx: TcContext) -> i32 {
    tc_observe(&ctx, hook::TC_EGRESS);
    TC_CONTINUE
}

#[inline(always)]
fn tc_observe(ctx: &TcContext, hook: u8) {
    // SAFETY: the context pointer is valid for the program's duration.
    let skb = unsafe { &*ctx.skb.skb };
    // Egress reports what this host sends: its own packets carry the
    // sending socket (for ICMP errors, the kernel's ICMP socket); packets
    // it forwards carry none. Decided before anything else, so forwarded
    // traffic never pays for a pull.
    // SAFETY: reading the `sk` member of the context's union.
    if hook == hook::TC_EGRESS && unsafe { skb.__bindgen_anon_2.sk }.is_null() {
        let st = Stats::this_cpu();
        st.add(stat::PACKETS);
        st.add(stat::EGRESS_FORWARDED);
        return;
    }
    let len = ctx.len();
    let want = if len < TC_PULL_BYTES { len } else { TC_PULL_BYTES };
    if ctx.data_end() - ctx.data() < want as usize {
        // Only what can matter is made linear: an ICMP error needs its
        // quote, a DF candidate its ports; ordinary traffic is classified
        // from what is already linear.
        let threshold = if hook == hook::TC_EGRESS { crate::config!(egress_path_mtu) } else { crate::config!(min_mtu) };
        // SAFETY: [data, data_end) is the linear part of the skb.
        let linear = unsafe { Cursor::from_raw(ctx.data(), ctx.data_end()) };
        if tc_needs_pull(&parse_outer(&linear), threshold) {
            // Best effort: a failed pull leaves a shorter quote, which the
            // parser reports as truncated.
            let _ = ctx.pull_data(want);
        }
    }
    observe(ctx, ctx.data(), ctx.data_end(), hook);
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
