//! DF-oversized detection through `bpf_fib_lookup`: would the kernel have to
//! drop this packet (and send frag-needed / Packet Too Big) because its
//! egress MTU is smaller?

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SKIP_NEIGH, bpf_fib_lookup as FibParams,
    },
    helpers::generated::bpf_fib_lookup,
};
use netobs_common::event::PacketInfo;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Egress interface and its MTU when `pkt` is too big to be forwarded.
///
/// One lookup, without a length and without neighbour resolution: the
/// kernel fills in the egress ifindex and (since the fib-lookup MTU output
/// change) the route's MTU in `mtu_result`, which we compare ourselves. The
/// skb flavour (TC) instead checks the skb itself and answers FRAG_NEEDED
/// with the ifindex set. Kernels that leave `mtu_result` empty get a second
/// lookup with the length, as before that change.
#[inline(always)]
pub fn too_big_for_egress<C: EbpfContext>(ctx: &C, ingress: u32, pkt: &PacketInfo) -> Option<(u32, u32)> {
    // SAFETY: an all-zero bpf_fib_lookup is a valid input.
    let mut p: FibParams = unsafe { core::mem::zeroed() };
    fill(&mut p, ingress, pkt);
    let size = core::mem::size_of::<FibParams>() as i32;
    // SAFETY: `p` is a valid, writable parameter block of the size we pass.
    let ret = unsafe { bpf_fib_lookup(ctx.as_ptr(), &mut p, size, BPF_FIB_LOOKUP_SKIP_NEIGH) };
    // SAFETY: the union holds mtu_result after a lookup.
    let mtu = unsafe { p.__bindgen_anon_1.mtu_result } as u32;
    if ret == BPF_FIB_LKUP_RET_FRAG_NEEDED as i64 {
        return Some((p.ifindex, mtu));
    }
    if ret != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        return None;
    }
    if mtu != 0 {
        return if u32::from(pkt.total_len) > mtu { Some((p.ifindex, mtu)) } else { None };
    }
    // Older kernel: ask again with the length; the egress is already known.
    let egress = p.ifindex;
    fill(&mut p, ingress, pkt);
    p.__bindgen_anon_1.tot_len = pkt.total_len;
    // SAFETY: as above.
    let ret = unsafe { bpf_fib_lookup(ctx.as_ptr(), &mut p, size, BPF_FIB_LOOKUP_SKIP_NEIGH) };
    if ret == BPF_FIB_LKUP_RET_FRAG_NEEDED as i64 {
        // SAFETY: as above.
        return Some((egress, unsafe { p.__bindgen_anon_1.mtu_result } as u32));
    }
    None
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
