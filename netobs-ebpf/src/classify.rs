//! The one observation routine every packet program runs: parse with
//! `netobs-common`, count, sample an event, never alter the packet.

use aya_ebpf::EbpfContext;
use netobs_common::{
    cursor::Cursor,
    event::{DfCounterKey, IcmpCounterKey, PacketInfo, flags, hook, kind, stat},
    parse::{
        Outer, Skip, capture_icmp, icmp_header, ip_len_in_frame, is_df_candidate, is_ordinary_v4, is_reported_icmp,
        parse_ip_packet, parse_outer,
    },
    sample::source_hash,
    wire::{IPPROTO_ICMP, IPPROTO_ICMPV6},
};

use crate::{
    emit, fib,
    maps::{DF_COUNTERS, ICMP_COUNTERS, Stats, bump_key},
};

/// A packet program's context: what `observe` needs beyond the linear data.
pub trait Packet: EbpfContext {
    /// Length of the whole frame, every buffer of it (the first buffer,
    /// `[data, data_end)`, may hold only the headers). Asked only for DF
    /// candidates: it can cost a helper call.
    fn frame_len(&self) -> u32;
    /// The interface the packet is on. Asked only past the ordinary-packet
    /// test: for XDP it is three dependent loads (rxq, device, ifindex).
    fn ifindex(&self) -> u32;
}

/// Observes the frame whose first (or only) buffer is `[start, end)`,
/// seen by `hook`.
#[inline(always)]
pub fn observe<C: Packet>(ctx: &C, start: usize, end: usize, hook: u8) {
    // SAFETY: the kernel guarantees [data, data_end) is the packet.
    let c = unsafe { Cursor::from_raw(start, end) };
    // The DF threshold: at egress the configured path MTU (locally sent
    // packets), elsewhere the smallest MTU (the FIB decides the rest).
    let df_threshold = if hook == hook::TC_EGRESS { crate::config!(egress_path_mtu) } else { crate::config!(min_mtu) };
    // This CPU's statistics, found once for everything the packet counts
    // and handed down (each lookup of them would also be a helper call
    // the compiler must save registers around).
    let st = Stats::this_cpu();
    // Most packets: counted from four header bytes, nothing else to do.
    if is_ordinary_v4(&c, df_threshold) {
        st.add(stat::PACKETS);
        st.add(stat::IPV4);
        return;
    }
    st.add(stat::PACKETS);
    let ifindex = ctx.ifindex();
    let outer = match parse_outer(&c) {
        Ok(outer) => outer,
        Err(Skip::NotIp) => return,
        Err(Skip::Malformed) => {
            st.add(stat::MALFORMED);
            crate::log::malformed(ctx, ifindex, hook, end.wrapping_sub(start) as u32);
            return;
        }
    };
    st.add(if outer.family == 4 { stat::IPV4 } else { stat::IPV6 });
    let icmp_proto = if outer.family == 4 { IPPROTO_ICMP } else { IPPROTO_ICMPV6 };
    // ICMP errors stop here; other ICMP (a DF echo of a path-MTU test) is
    // checked for size like any other packet.
    if outer.protocol == icmp_proto && !outer.later_fragment && on_icmp(&c, &outer, ifindex, hook, st) {
        return;
    }
    if hook == hook::TC_EGRESS {
        if is_df_candidate(&outer, df_threshold) && ip_len_in_frame(&outer, ctx.frame_len()) {
            let now = crate::clock::now();
            on_df_oversized(&c, &outer, st, now, ifindex, hook, ifindex, df_threshold);
        }
    } else if outer.vlan_depth == 0
        && !outer.later_fragment
        && is_df_candidate(&outer, df_threshold)
        && ip_len_in_frame(&outer, ctx.frame_len())
    {
        on_df_candidate(ctx, &c, &outer, st, ifindex, hook);
    }
}

/// Counts and samples an ICMP error. Returns false for other ICMP (echo,
/// neighbour discovery), which the caller treats as ordinary traffic.
#[inline(always)]
fn on_icmp(c: &Cursor, outer: &Outer, ifindex: u32, hook: u8, st: Stats) -> bool {
    let Some(h) = icmp_header(c, outer) else {
        st.add(stat::MALFORMED);
        return true;
    };
    if !is_reported_icmp(outer.family, h.icmp_type) {
        st.add(stat::ICMP_OTHER);
        return false;
    }
    st.add(stat::ICMP_ERRORS);
    let key = IcmpCounterKey { ifindex, family: outer.family, icmp_type: h.icmp_type, icmp_code: h.code, hook };
    bump_key(&ICMP_COUNTERS, &key);

    // Sampling off (a load-time constant: the verifier drops the rest):
    // no clock read, no hash, no bucket.
    if crate::config!(events_per_sec) == 0 {
        st.add(stat::SAMPLED_OUT);
        return true;
    }
    // Tick resolution is enough for a token bucket (see `clock`).
    let now = crate::clock::now();
    let hash = source_hash(c, outer, crate::config!(sample_seed));
    let Some((cap, pending)) = emit::begin_capture(now, hash, st) else {
        return true;
    };
    // The bytes, not a parse: user space parses the sampled ones
    // (`IcmpCapture` says why), and counts truncated quotes.
    capture_icmp(c, outer, cap);
    cap.ifindex = ifindex;
    cap.hook = hook;
    emit::finish(pending);
    true
}

#[inline(always)]
fn on_df_candidate<C: EbpfContext>(ctx: &C, c: &Cursor, outer: &Outer, st: Stats, ifindex: u32, hook: u8) {
    let mut slot = core::mem::MaybeUninit::<PacketInfo>::uninit();
    let pkt = crate::mem::zero_init(&mut slot);
    parse_ip_packet(c, outer.l3_off, outer.family, pkt);
    // The route lookup reads the flow back from memory: without the
    // barrier the compiler forwards every byte the parse stored as a value
    // of its own, each in a stack slot (the program's stack went from 296
    // to 504 of the verifier's 512 bytes, and the DF path 25 ns slower).
    let pkt = core::hint::black_box(pkt);
    let now = crate::clock::now();
    if let Some((egress, mtu)) = fib::too_big_for_egress(ctx, st, now, ifindex, pkt) {
        on_df_oversized(c, outer, st, now, ifindex, hook, egress, mtu);
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)] // two call sites, both inlined
fn on_df_oversized(c: &Cursor, outer: &Outer, st: Stats, now: u64, ifindex: u32, hook: u8, egress: u32, mtu: u32) {
    st.add(stat::DF_OVERSIZED);
    bump_key(&DF_COUNTERS, &DfCounterKey { ingress_ifindex: ifindex, egress_ifindex: egress });
    // Fair per sender: one bulk DF flow cannot starve another's event.
    let hash = source_hash(c, outer, crate::config!(sample_seed));
    let Some((ev, pending)) = emit::begin_fair(now, hash, st) else {
        return;
    };
    ev.ifindex = ifindex;
    ev.hook = hook;
    ev.kind = kind::DF_OVERSIZED;
    ev.outer_family = outer.family;
    ev.outer_ttl = outer.ttl;
    ev.outer_len = outer.total_len;
    ev.mtu = mtu;
    ev.aux = egress;
    ev.flags = flags::HAS_MTU;
    parse_ip_packet(c, outer.l3_off, outer.family, &mut ev.inner);
    ev.outer_src = ev.inner.src;
    ev.outer_dst = ev.inner.dst;
    emit::finish(pending);
}
