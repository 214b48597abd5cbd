//! `icmp_send`: the kernel generated an IPv4 ICMP error. Compared with what
//! TC egress sees, this tells "never generated" from "generated but dropped
//! by this host's own firewall".
//!
//! A raw tracepoint, attached by name (BPF_RAW_TRACEPOINT_OPEN): no tracefs
//! mount is needed, so it works for an unprivileged `watch` holding
//! CAP_BPF + CAP_PERFMON. Its arguments are `trace_icmp_send`'s own
//! (`skb, type, code`); the skb's fields are read with
//! `bpf_probe_read_kernel` at offsets user space took from the running
//! kernel's BTF ([`IcmpSendLayout`]). The tracepoint is host-wide: only
//! errors whose skb belongs to a device of this network namespace are
//! counted.

use crate::mem::{Aligned, read, read_aligned};
use aya_ebpf::{
    macros::{map, raw_tracepoint},
    maps::Array,
    programs::RawTracePointContext,
};
use netobs_common::{
    event::{IcmpCounterKey, have, hook, kind},
    icmp_send::IcmpSendLayout,
    parse::is_reported_icmp,
    wire::Ipv4Hdr,
};

use crate::{
    emit,
    maps::{ICMP_COUNTERS, bump_key},
};

/// Filled by user space before the program is attached.
#[map]
static ICMP_SEND_LAYOUT: Array<IcmpSendLayout> = Array::with_max_entries(1, 0);

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

#[raw_tracepoint(tracepoint = "icmp_send")]
pub fn netobs_icmp_send(ctx: RawTracePointContext) -> i32 {
    on_icmp_send(&ctx);
    0
}

/// Whether the skb's device is in the namespace `watch` runs in.
#[inline(always)]
fn in_our_netns(l: &IcmpSendLayout, skb: u64) -> bool {
    if l.netns_inum == 0 {
        return true;
    }
    let Some(dev) = read::<u64>(skb, l.skb_dev).filter(|d| *d != 0) else { return false };
    let Some(net) = read::<u64>(dev, l.dev_net).filter(|n| *n != 0) else { return false };
    read::<u32>(net, l.net_inum) == Some(l.netns_inum)
}

#[inline(always)]
fn on_icmp_send(ctx: &RawTracePointContext) {
    let Some(l) = ICMP_SEND_LAYOUT.get(0) else { return };
    if l.ready == 0 {
        return;
    }
    let skb: u64 = ctx.arg(0);
    let t: u64 = ctx.arg(1);
    let code: u64 = ctx.arg(2);
    let (t, code) = (t as u8, code as u8);
    if skb == 0 || !is_reported_icmp(4, t) || !in_our_netns(l, skb) {
        return;
    }
    let key = IcmpCounterKey { ifindex: 0, family: 4, icmp_type: t, icmp_code: code, hook: hook::ICMP_SEND_TRACEPOINT };
    bump_key(&ICMP_COUNTERS, &key);
    // The packet programs' clock: this event shares their token bucket.
    let now = crate::clock::now_in_tracing();
    if let Some((ev, pending)) = emit::begin(now) {
        ev.kind = kind::ICMP_GENERATED;
        ev.hook = hook::ICMP_SEND_TRACEPOINT;
        ev.icmp_type = t;
        ev.icmp_code = code;
        ev.outer_family = 4;
        ev.inner.family = 4;
        // The offending packet's IPv4 header: what the error will quote.
        let ip = match (read::<u64>(skb, l.skb_head), read::<u16>(skb, l.skb_network_header)) {
            (Some(head), Some(nh)) if head != 0 => {
                read_aligned::<Ipv4Hdr>(head + nh as u64, 0).map(|h| (head + nh as u64, h))
            }
            _ => None,
        };
        if let Some((at, Aligned(h))) = &ip {
            let at = *at;
            // Element by element: a slice copy may become a memcpy call.
            for i in 0..4 {
                ev.inner.src[i] = h.src[i];
                ev.inner.dst[i] = h.dst[i];
            }
            ev.inner.protocol = h.protocol;
            ev.inner.ttl = h.ttl;
            ev.inner.total_len = h.total_len();
            ev.inner.ip_id = h.id() as u32;
            ev.inner.frag = h.flags_frag();
            ev.inner.have = have::IP;
            let first_fragment = h.flags_frag() & Ipv4Hdr::OFFSET_MASK == 0;
            if first_fragment
                && (h.protocol == IPPROTO_TCP || h.protocol == IPPROTO_UDP)
                && let Some(p) = &read_aligned::<[u8; 4]>(at, h.header_len() as u32)
            {
                let p = &p.0;
                ev.inner.src_port = u16::from_be_bytes([p[0], p[1]]);
                ev.inner.dst_port = u16::from_be_bytes([p[2], p[3]]);
                ev.inner.have |= have::PORTS;
            }
        }
        emit::finish(pending);
    }
}
