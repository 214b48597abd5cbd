//! `kfree_skb`: the kernel dropped a packet, with a reason. For ICMP and
//! ICMPv6 errors this tells "the PTB reached this host, and this host
//! dropped it" (an nft INPUT rule, rp_filter, an XFRM policy, ...) and "this
//! host generated an error and dropped it on the way out", with the
//! kernel's own `skb_drop_reason`.
//!
//! A raw tracepoint attached by name, like `icmp_send`: no tracefs mount,
//! CAP_BPF + CAP_PERFMON suffice. It fires for every dropped packet of the
//! host, so the cheap test (is the reason one worth reporting) comes
//! first, then the namespace filter, then the packet reads. The skb is
//! read with `bpf_probe_read_kernel` at offsets user space took from the
//! running kernel's BTF ([`KfreeLayout`]): every read is of a fixed size
//! at a computed kernel address, so nothing here needs the verifier to
//! bound a packet pointer.

use crate::mem::{Aligned, read, read_aligned};
use aya_ebpf::{
    EbpfContext as _,
    helpers::bpf_ktime_get_ns,
    macros::{map, raw_tracepoint},
    maps::{Array, LruPerCpuHashMap, PerCpuArray},
    programs::RawTracePointContext,
};
use netobs_common::{
    kfree::{
        DropKey, DropSample, DropTotals, KfreeLayout, NETNS_UNKNOWN_INDEX, SAMPLE_ENTRIES, TOTAL_ENTRIES, direction,
        have, total_index,
    },
    parse::is_reported_icmp,
    wire::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, IcmpHdr, Ipv4Hdr, Ipv6Hdr},
};

/// Filled by user space before the program is attached.
#[map]
static KFREE_LAYOUT: Array<KfreeLayout> = Array::with_max_entries(1, 0);

/// Exact counts by (direction, family, reason slot): one entry, so user
/// space reads them all with one lookup.
#[map]
static DROP_TOTALS: PerCpuArray<DropTotals> = PerCpuArray::with_max_entries(1, 0);

/// The last message per [`DropKey`], per CPU; bounded (LRU).
#[map]
static DROP_SAMPLES: LruPerCpuHashMap<DropKey, DropSample> = LruPerCpuHashMap::with_max_entries(SAMPLE_ENTRIES, 0);

#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn netobs_kfree_skb(ctx: RawTracePointContext) -> i32 {
    on_kfree(&ctx);
    0
}

/// Tracepoint argument `n` (0..=3: `kfree_skb` has four). Context
/// accesses must be at constant offsets and through the unmodified
/// pointer, so all four are loaded (volatile: the compiler may not turn
/// them back into one load at a computed offset) and one is picked.
#[inline(always)]
fn arg(ctx: &RawTracePointContext, n: u32) -> u64 {
    let args = ctx.as_ptr() as *const u64;
    // SAFETY: a raw tracepoint's context is an array of its arguments,
    // and kfree_skb has four.
    let (a0, a1, a2, a3) = unsafe {
        (
            core::ptr::read_volatile(args),
            core::ptr::read_volatile(args.add(1)),
            core::ptr::read_volatile(args.add(2)),
            core::ptr::read_volatile(args.add(3)),
        )
    };
    match n {
        0 => a0,
        1 => a1,
        2 => a2,
        3 => a3,
        _ => 0,
    }
}

#[inline(always)]
fn bump_total(index: u32) {
    if let Some(t) = DROP_TOTALS.get_ptr_mut(0) {
        // SAFETY: this CPU's block, valid while the program runs; only this
        // CPU writes it.
        let i = index as usize & (TOTAL_ENTRIES as usize - 1);
        if let Some(c) = unsafe { &mut *t }.counts.get_mut(i) {
            *c += 1;
        }
    }
}

/// The skb's namespace, from its device, else from its socket (an error
/// this host generated has no device before routing). None: neither.
#[inline(always)]
fn netns_of(l: &KfreeLayout, skb: u64, dev: u64) -> Option<u32> {
    let net = if dev != 0 {
        read::<u64>(dev, l.dev_net)?
    } else {
        let sk = read::<u64>(skb, l.skb_sk).filter(|s| *s != 0)?;
        read::<u64>(sk, l.sk_net)?
    };
    if net == 0 {
        return None;
    }
    read::<u32>(net, l.net_inum)
}

#[inline(always)]
fn on_kfree(ctx: &RawTracePointContext) {
    let Some(l) = KFREE_LAYOUT.get(0) else { return };
    if l.ready == 0 {
        return;
    }
    let reason = arg(ctx, l.reason_arg) as u32;
    if reason == l.reason_not_specified || reason == l.reason_consumed || reason == l.reason_not_dropped {
        return;
    }
    let skb = arg(ctx, l.skb_arg);
    if skb == 0 {
        return;
    }
    // The outer IP header first: most dropped packets are not ICMP errors,
    // and for those this is the only packet read.
    let (Some(head), Some(nh)) = (read::<u64>(skb, l.skb_head), read::<u16>(skb, l.skb_network_header)) else {
        return;
    };
    if head == 0 || nh == 0xffff {
        return;
    }
    let ip = head + nh as u64;
    let Some(first) = read::<u8>(ip, 0) else { return };
    let mut s = Aligned(DropSample::default());
    let mut key = Aligned(DropKey::default());
    let icmp_at = match first >> 4 {
        4 => {
            let Some(h) = read_aligned::<Ipv4Hdr>(ip, 0) else { return };
            if h.protocol != IPPROTO_ICMP || h.flags_frag() & Ipv4Hdr::OFFSET_MASK != 0 || h.header_len() < 20 {
                return;
            }
            key.family = 4;
            for i in 0..4 {
                s.outer_src[i] = h.src[i];
                s.outer_dst[i] = h.dst[i];
            }
            ip + h.header_len() as u64
        }
        6 => {
            let Some(h) = read_aligned::<Ipv6Hdr>(ip, 0) else { return };
            // Extension headers in front of an ICMPv6 error are rare; not walked.
            if h.next_header != IPPROTO_ICMPV6 {
                return;
            }
            key.family = 6;
            s.outer_src = h.src;
            s.outer_dst = h.dst;
            ip + Ipv6Hdr::LEN as u64
        }
        _ => return,
    };
    let Some(icmp) = read_aligned::<IcmpHdr>(icmp_at, 0) else { return };
    if !is_reported_icmp(key.family, icmp.icmp_type) {
        return;
    }
    let dev = read::<u64>(skb, l.skb_dev).unwrap_or(0);
    if l.netns_inum != 0 {
        match netns_of(l, skb, dev) {
            Some(n) if n == l.netns_inum => {}
            Some(_) => return,
            None => {
                bump_total(NETNS_UNKNOWN_INDEX);
                return;
            }
        }
    }
    let iif = read::<i32>(skb, l.skb_iif).unwrap_or(0);
    key.direction = if iif > 0 { direction::INBOUND } else { direction::OUTBOUND };
    key.ifindex = if iif > 0 {
        iif as u32
    } else if dev != 0 {
        read::<i32>(dev, l.dev_ifindex).map(|i| i as u32).unwrap_or(0)
    } else {
        0
    };
    key.reason = reason;
    key.icmp_type = icmp.icmp_type;
    key.icmp_code = icmp.code;
    key.peer = if key.direction == direction::INBOUND { s.outer_src } else { s.outer_dst };
    bump_total(total_index(key.direction, key.family, reason));

    let r = icmp.rest;
    let quote = icmp_at + IcmpHdr::LEN as u64;
    if key.family == 4 {
        if icmp.icmp_type == 3 && icmp.code == 4 {
            s.mtu = u16::from_be_bytes([r[2], r[3]]) as u32;
        }
        if let Some(q) = read_aligned::<Ipv4Hdr>(quote, 0) {
            for i in 0..4 {
                s.quote_src[i] = q.src[i];
                s.quote_dst[i] = q.dst[i];
            }
            s.quote_protocol = q.protocol;
            s.quote_len = q.total_len();
            s.have = have::QUOTE;
            let first_fragment = q.flags_frag() & Ipv4Hdr::OFFSET_MASK == 0;
            if first_fragment
                && (q.protocol == IPPROTO_TCP || q.protocol == IPPROTO_UDP)
                && let Some(p) = read_aligned::<[u8; 4]>(quote, q.header_len() as u32)
            {
                s.quote_sport = u16::from_be_bytes([p[0], p[1]]);
                s.quote_dport = u16::from_be_bytes([p[2], p[3]]);
                s.have |= have::PORTS;
            }
        }
    } else {
        if icmp.icmp_type == 2 {
            s.mtu = u32::from_be_bytes(r);
        }
        if let Some(q) = read_aligned::<Ipv6Hdr>(quote, 0) {
            s.quote_src = q.src;
            s.quote_dst = q.dst;
            s.quote_protocol = q.next_header;
            s.quote_len = q.payload_len().saturating_add(Ipv6Hdr::LEN as u16);
            s.have = have::QUOTE;
            if (q.next_header == IPPROTO_TCP || q.next_header == IPPROTO_UDP)
                && let Some(p) = read_aligned::<[u8; 4]>(quote, Ipv6Hdr::LEN as u32)
            {
                s.quote_sport = u16::from_be_bytes([p[0], p[1]]);
                s.quote_dport = u16::from_be_bytes([p[2], p[3]]);
                s.have |= have::PORTS;
            }
        }
    }
    // SAFETY: helper without preconditions.
    s.last_ns = unsafe { bpf_ktime_get_ns() };
    match DROP_SAMPLES.get_ptr_mut(&*key) {
        Some(v) => {
            // SAFETY: this CPU's value of a per-CPU map, valid while the
            // program runs; only this CPU writes it.
            let v = unsafe { &mut *v };
            s.count = v.count + 1;
            *v = *s;
        }
        None => {
            s.count = 1;
            let _ = DROP_SAMPLES.insert(&*key, &*s, 0);
        }
    }
}
