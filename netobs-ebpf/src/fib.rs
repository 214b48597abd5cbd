//! DF-oversized detection through `bpf_fib_lookup`: would the kernel have to
//! drop this packet (and send frag-needed / Packet Too Big) because its
//! egress MTU is smaller?

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SKIP_NEIGH,
        bpf_fib_lookup as FibParams,
    },
    helpers::generated::bpf_fib_lookup,
};
use aya_ebpf::{macros::map, maps::PerCpuArray};
use netobs_common::event::{PacketInfo, stat};

use crate::maps::Stats;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Slots of the per-CPU route cache (a power of two).
const CACHE_SLOTS: u32 = 256;

/// One remembered FIB answer: for this flow arriving on `ingress`, the
/// egress and its MTU (0 when the kernel would not forward it: no route,
/// local delivery...). 64 bytes.
#[repr(C)]
pub struct CacheEntry {
    src: [u32; 4],
    dst: [u32; 4],
    ingress: u32,
    /// protocol << 24 | family.
    proto_family: u32,
    ports: u32,
    egress: u32,
    mtu: u32,
    _pad: u32,
    /// Coarse monotonic time the answer stops being used; 0 (the map's
    /// initial value) marks an empty slot.
    expires_ns: u64,
}

/// Per-CPU, direct-mapped cache of recent FIB answers, keyed by the flow.
///
/// Why: on this kind of machine one `bpf_fib_lookup` costs about 190 ns,
/// most of the DF-oversized path. The packets that need the check come in
/// flows (bulk TCP with DF over a jumbo link), so the same question repeats
/// at line rate. Per CPU, so no locking or sharing; keyed by the whole
/// 5-tuple and ingress, so policy routing and multipath hashing see the
/// same answer the kernel would give; entries expire after
/// `Config::fib_cache_ms`, which bounds how long a route or MTU change
/// goes unnoticed.
#[map]
pub static FIB_CACHE: PerCpuArray<CacheEntry> = PerCpuArray::with_max_entries(CACHE_SLOTS, 0);

/// Egress interface and its MTU when `pkt` is too big to be forwarded,
/// from the route cache when it has a fresh answer for this flow.
#[inline(always)]
pub fn too_big_for_egress<C: EbpfContext>(
    ctx: &C,
    st: Stats,
    now: u64,
    ingress: u32,
    pkt: &PacketInfo,
) -> Option<(u32, u32)> {
    let ttl_ms = crate::config!(fib_cache_ms);
    let src = words(&pkt.src);
    let dst = words(&pkt.dst);
    let proto_family = u32::from(pkt.protocol) << 24 | u32::from(pkt.family);
    let ports = u32::from(pkt.src_port) << 16 | u32::from(pkt.dst_port);
    let h = (src[0] ^ src[3] ^ dst[0] ^ dst[3] ^ ports ^ ingress ^ proto_family).wrapping_mul(0x9E37_79B1);
    let entry = if ttl_ms == 0 { None } else { FIB_CACHE.get_ptr_mut(h >> 24) };
    if let Some(e) = entry {
        // SAFETY: this CPU's slot; packet programs on one CPU do not nest.
        let e = unsafe { &*e };
        if e.expires_ns > now
            && e.proto_family == proto_family
            && e.ports == ports
            && e.ingress == ingress
            && e.dst == dst
            && e.src == src
        {
            st.add(stat::FIB_CACHE_HITS);
            return too_big(pkt, e.egress, e.mtu);
        }
    }
    st.add(stat::FIB_LOOKUPS);
    match lookup(ctx, ingress, pkt) {
        Answer::Route { egress, mtu } => {
            if let Some(e) = entry {
                // SAFETY: as above.
                let e = unsafe { &mut *e };
                e.src = src;
                e.dst = dst;
                e.ingress = ingress;
                e.proto_family = proto_family;
                e.ports = ports;
                e.egress = egress;
                e.mtu = mtu;
                e.expires_ns = now + u64::from(ttl_ms) * 1_000_000;
            }
            too_big(pkt, egress, mtu)
        }
        Answer::TooBig { egress, mtu } => Some((egress, mtu)),
        Answer::Fits => None,
        // Not cached: an error says nothing about the route, and caching
        // it as "not forwarded" would silence the check for the flow.
        Answer::Error => {
            st.add(stat::FIB_ERRORS);
            None
        }
    }
}

/// `Some((egress, mtu))` when the packet exceeds a known route MTU (0:
/// not forwarded, nothing to compare).
#[inline(always)]
fn too_big(pkt: &PacketInfo, egress: u32, mtu: u32) -> Option<(u32, u32)> {
    if mtu != 0 && u32::from(pkt.total_len) > mtu { Some((egress, mtu)) } else { None }
}

/// What the kernel says about forwarding `pkt`.
enum Answer {
    /// Forwarded out of `egress` whose route MTU is `mtu`; `mtu` 0 when the
    /// kernel would not forward it (no route, local delivery, blackhole...).
    /// The same for every packet of the flow: cacheable.
    Route {
        egress: u32,
        mtu: u32,
    },
    /// Older kernels, which report no route MTU: the verdict for this
    /// packet's length only.
    TooBig {
        egress: u32,
        mtu: u32,
    },
    Fits,
    /// The helper failed (a negative errno): nothing is known.
    Error,
}

/// One lookup, without a length and (kernel 6.3+) without neighbour
/// resolution: the kernel fills in the egress ifindex and (since the
/// fib-lookup MTU output change) the route's MTU in `mtu_result`, which we
/// compare ourselves. The skb flavour (TC) instead checks the skb itself
/// and answers FRAG_NEEDED with the ifindex and MTU set. Kernels that leave
/// `mtu_result` empty, and lookups that stop at an unresolved neighbour
/// (without `SKIP_NEIGH`), get a second lookup with the length, as before
/// that change.
///
/// `BPF_FIB_LOOKUP_SKIP_NEIGH` is passed when the loader found the kernel
/// has it (`Config::fib_skip_neigh`); older kernels reject the whole call
/// (-EINVAL), so a failed call is also retried without it.
#[inline(always)]
fn lookup<C: EbpfContext>(ctx: &C, ingress: u32, pkt: &PacketInfo) -> Answer {
    // An all-zero bpf_fib_lookup is a valid input.
    let mut slot = core::mem::MaybeUninit::<FibParams>::uninit();
    let p = crate::mem::zero_init(&mut slot);
    fill(p, ingress, pkt);
    let size = core::mem::size_of::<FibParams>() as i32;
    let mut flags = if crate::config!(fib_skip_neigh) != 0 { BPF_FIB_LOOKUP_SKIP_NEIGH } else { 0 };
    // SAFETY: `p` is a valid, writable parameter block of the size we pass.
    let mut ret = unsafe { bpf_fib_lookup(ctx.as_ptr(), &mut *p, size, flags) };
    if ret < 0 && flags != 0 {
        flags = 0;
        fill(p, ingress, pkt);
        // SAFETY: as above.
        ret = unsafe { bpf_fib_lookup(ctx.as_ptr(), &mut *p, size, flags) };
    }
    if ret < 0 {
        return Answer::Error;
    }
    // SAFETY: the union holds mtu_result after a lookup.
    let mtu = unsafe { p.__bindgen_anon_1.mtu_result } as u32;
    if ret == BPF_FIB_LKUP_RET_FRAG_NEEDED as i64 {
        return if mtu != 0 { Answer::Route { egress: p.ifindex, mtu } } else { Answer::Fits };
    }
    // NO_NEIGH (only without SKIP_NEIGH): routed, egress known, no MTU yet.
    let routed = ret == BPF_FIB_LKUP_RET_SUCCESS as i64 || ret == BPF_FIB_LKUP_RET_NO_NEIGH as i64;
    if !routed {
        return Answer::Route { egress: 0, mtu: 0 };
    }
    if mtu != 0 && ret == BPF_FIB_LKUP_RET_SUCCESS as i64 {
        return Answer::Route { egress: p.ifindex, mtu };
    }
    // Older kernel or no neighbour yet: ask again with the length; the
    // egress is already known. The length check comes before neighbour
    // resolution in the kernel, so FRAG_NEEDED is answered either way.
    let egress = p.ifindex;
    fill(p, ingress, pkt);
    p.__bindgen_anon_1.tot_len = pkt.total_len;
    // SAFETY: as above.
    let ret = unsafe { bpf_fib_lookup(ctx.as_ptr(), &mut *p, size, flags) };
    if ret == BPF_FIB_LKUP_RET_FRAG_NEEDED as i64 {
        // SAFETY: as above.
        return Answer::TooBig { egress, mtu: unsafe { p.__bindgen_anon_1.mtu_result } as u32 };
    }
    if ret < 0 {
        return Answer::Error;
    }
    Answer::Fits
}

#[inline(always)]
fn fill(p: &mut FibParams, ingress: u32, pkt: &PacketInfo) {
    p.__bindgen_anon_1.tot_len = 0;
    p.l4_protocol = pkt.protocol;
    p.sport = pkt.src_port.to_be();
    p.dport = pkt.dst_port.to_be();
    p.ifindex = ingress;
    if pkt.family == 4 {
        p.family = AF_INET;
        p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([pkt.src[0], pkt.src[1], pkt.src[2], pkt.src[3]]);
        p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([pkt.dst[0], pkt.dst[1], pkt.dst[2], pkt.dst[3]]);
    } else {
        p.family = AF_INET6;
        p.__bindgen_anon_3.ipv6_src = words(&pkt.src);
        p.__bindgen_anon_4.ipv6_dst = words(&pkt.dst);
    }
}

#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}
