//! Test fixtures, not part of netobs: programs that stand in for "someone
//! else's" XDP and TC programs (a DDoS filter, Cilium) in the coexistence
//! tests (`tests/tests/coexist.rs`). netobs never loads them; the tests
//! load them from the same embedded object with aya and attach them
//! themselves. Their names deliberately do not start with `netobs_`, so
//! they count as foreign everywhere (notes, leftover checks).

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, xdp_action},
    macros::{classifier, map, xdp},
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
};

/// `FOREIGN_COUNTS[XDP_SEEN]`: frames `foreign_xdp_ok` saw;
/// `FOREIGN_COUNTS[ICMP_DROPPED]`: packets `foreign_tc_drop` dropped.
#[map]
static FOREIGN_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

const XDP_SEEN: u32 = 0;
const ICMP_DROPPED: u32 = 1;
/// `TC_ACT_UNSPEC`: the next program / default action decides.
const TC_NEXT: i32 = -1;
const ETH_P_IP: u16 = 0x0800;
const IPPROTO_ICMP: u8 = 1;

#[inline(always)]
fn count(slot: u32) {
    if let Some(p) = FOREIGN_COUNTS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe { *p += 1 };
    }
}

/// Counts every frame and passes it: a foreign XDP program holding the slot.
#[xdp]
pub fn foreign_xdp_ok(_ctx: XdpContext) -> u32 {
    count(XDP_SEEN);
    xdp_action::XDP_PASS
}

/// Drops every IPv4 ICMP packet (and counts it); everything else goes on.
#[classifier]
pub fn foreign_tc_drop(ctx: TcContext) -> i32 {
    let Ok(ethertype) = ctx.load::<u16>(12) else { return TC_NEXT };
    if u16::from_be(ethertype) != ETH_P_IP {
        return TC_NEXT;
    }
    match ctx.load::<u8>(14 + 9) {
        Ok(IPPROTO_ICMP) => {
            count(ICMP_DROPPED);
            TC_ACT_SHOT as i32
        }
        _ => TC_NEXT,
    }
}
