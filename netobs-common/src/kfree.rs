//! What the `kfree_skb` raw tracepoint program and user space share: which
//! ICMP errors this host's kernel freed with a drop reason ("the PTB
//! reached this host, and this host dropped it").
//!
//! The tracepoint is `trace_kfree_skb(skb, location, reason, rx_sk)`,
//! fired for every packet the kernel drops, in every namespace. The
//! argument positions, the `sk_buff` field offsets and the numbers of the
//! reasons that are not drops (`SKB_CONSUMED`, `..._NOT_SPECIFIED`) are
//! taken from the running kernel's BTF by user space and written into the
//! one-entry [`LAYOUT_MAP`] before the program is attached: the
//! `skb_drop_reason` enum is not stable across kernels.
//!
//! Two maps come back: [`DROP_TOTALS_MAP`], exact per-CPU counts by
//! (direction, family, reason slot) that no flood can fill, and
//! [`DROP_SAMPLES_MAP`], a bounded LRU of the last message per
//! ([`DropKey`]) with its ICMP header and quote (the details a line needs).

/// Name of the map holding the [`KfreeLayout`].
pub const LAYOUT_MAP: &str = "KFREE_LAYOUT";
/// Name of the one-entry per-CPU array of [`DropTotals`] (one map read
/// gives every count).
pub const DROP_TOTALS_MAP: &str = "DROP_TOTALS";
/// Name of the per-CPU LRU hash of [`DropKey`] -> [`DropSample`].
pub const DROP_SAMPLES_MAP: &str = "DROP_SAMPLES";
/// Name of the program.
pub const PROGRAM: &str = "netobs_kfree_skb";

/// Distinct (key) drops remembered with details; older ones are evicted
/// (their counts stay exact in the totals).
pub const SAMPLE_ENTRIES: u32 = 1024;
/// Reason slots per (direction, family); reasons at or above the last slot
/// (subsystem reasons carry high bits) share it.
pub const REASON_SLOTS: u32 = 256;
/// Index of the "namespace could not be told" counter in the totals (an
/// skb with neither a device nor a socket: not counted as ours).
pub const NETNS_UNKNOWN_INDEX: u32 = 4 * REASON_SLOTS;
/// Entries of the totals array: a power of two above
/// [`NETNS_UNKNOWN_INDEX`], so the program bounds an index with a mask
/// the verifier follows.
pub const TOTAL_ENTRIES: u32 = 2 * 4 * REASON_SLOTS;

const _: () = assert!(TOTAL_ENTRIES.is_power_of_two() && NETNS_UNKNOWN_INDEX < TOTAL_ENTRIES);

/// [`DropKey::direction`] values.
pub mod direction {
    /// The error arrived on an interface (`skb_iif` set): received or
    /// being forwarded, and dropped here.
    pub const INBOUND: u8 = 0;
    /// No input interface: this host generated the error and dropped it on
    /// its way out.
    pub const OUTBOUND: u8 = 1;
}

/// Index into the totals array for (direction, family, reason).
#[inline(always)]
pub fn total_index(direction: u8, family: u8, reason: u32) -> u32 {
    let fam = if family == 6 { 1 } else { 0 };
    let slot = if reason >= REASON_SLOTS { REASON_SLOTS - 1 } else { reason };
    ((direction as u32 & 1) * 2 + fam) * REASON_SLOTS + slot
}

/// Exact counts of reported drops, indexed by [`total_index`] (and
/// [`NETNS_UNKNOWN_INDEX`]). One per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropTotals {
    pub counts: [u64; TOTAL_ENTRIES as usize],
}

/// Byte offsets into kernel structures, argument positions, reason
/// numbers, and the namespace filter. 64 bytes, no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KfreeLayout {
    /// 1 once user space filled it in; until then the program does nothing.
    pub ready: u32,
    /// Inode number of the network namespace to count. 0: every namespace.
    pub netns_inum: u32,
    /// Raw tracepoint argument holding the skb / the drop reason.
    pub skb_arg: u32,
    pub reason_arg: u32,
    /// `SKB_NOT_DROPPED_YET`, `SKB_CONSUMED`, `SKB_DROP_REASON_NOT_SPECIFIED`:
    /// not reported (the last is every `kfree_skb()` without a reason).
    pub reason_not_dropped: u32,
    pub reason_consumed: u32,
    pub reason_not_specified: u32,
    /// `sk_buff.head` (pointer).
    pub skb_head: u32,
    /// `sk_buff.network_header` (u16, offset from `head`).
    pub skb_network_header: u32,
    /// `sk_buff.dev` (pointer to `struct net_device`).
    pub skb_dev: u32,
    /// `sk_buff.sk` (pointer to `struct sock`): the namespace when the skb
    /// has no device yet (an error this host generated, dropped at OUTPUT).
    pub skb_sk: u32,
    /// `sk_buff.skb_iif` (int): the interface it arrived on, 0 if generated.
    pub skb_iif: u32,
    /// `net_device.nd_net.net` (pointer to `struct net`).
    pub dev_net: u32,
    /// `net_device.ifindex` (int).
    pub dev_ifindex: u32,
    /// `sock.__sk_common.skc_net.net` (pointer to `struct net`).
    pub sk_net: u32,
    /// `net.ns.inum` (u32).
    pub net_inum: u32,
}

const _: () = assert!(core::mem::size_of::<KfreeLayout>() == 64);

/// What one sample is about. 28 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DropKey {
    /// The kernel's `skb_drop_reason` number (names from BTF).
    pub reason: u32,
    /// Interface it arrived on (inbound) or its device (outbound, 0 when
    /// it had none yet).
    pub ifindex: u32,
    /// The other end: who sent the error (inbound), to whom it was
    /// addressed (outbound). IPv4 in the first 4 bytes.
    pub peer: [u8; 16],
    /// 4 or 6.
    pub family: u8,
    /// [`direction`] value.
    pub direction: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

const _: () = assert!(core::mem::size_of::<DropKey>() == 28);

/// Bits of [`DropSample::have`].
pub mod have {
    /// The quoted IP header was read (quote_src/dst/protocol).
    pub const QUOTE: u8 = 1 << 0;
    /// The quoted TCP/UDP ports were read.
    pub const PORTS: u8 = 1 << 1;
}

/// The last message of one [`DropKey`] on one CPU, and how many. 96 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropSample {
    /// Messages of this key dropped on this CPU.
    pub count: u64,
    /// `bpf_ktime_get_ns()` of the last one.
    pub last_ns: u64,
    /// Outer header of the error.
    pub outer_src: [u8; 16],
    pub outer_dst: [u8; 16],
    /// The packet the error quotes.
    pub quote_src: [u8; 16],
    pub quote_dst: [u8; 16],
    /// Announced MTU (frag-needed / Packet Too Big), else 0.
    pub mtu: u32,
    pub quote_sport: u16,
    pub quote_dport: u16,
    /// IPv4 total length / IPv6 payload + 40 of the quoted packet.
    pub quote_len: u16,
    pub quote_protocol: u8,
    /// [`have`] bits.
    pub have: u8,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<DropSample>() == 96);

#[cfg(feature = "user")]
// SAFETY: repr(C), integer fields and byte arrays only, no padding (sizes
// asserted above).
unsafe impl aya::Pod for KfreeLayout {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for DropKey {}
#[cfg(feature = "user")]
// SAFETY: a repr(C) array of u64.
unsafe impl aya::Pod for DropTotals {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for DropSample {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_indexes_are_distinct_and_in_range() {
        let mut seen = std::collections::BTreeSet::new();
        for d in [direction::INBOUND, direction::OUTBOUND] {
            for f in [4, 6] {
                for r in 0..REASON_SLOTS {
                    let i = total_index(d, f, r);
                    assert!(i < NETNS_UNKNOWN_INDEX);
                    assert!(seen.insert(i));
                }
            }
        }
        // Subsystem reasons (high bits) share the last slot.
        assert_eq!(total_index(1, 6, 0x0001_0003), total_index(1, 6, REASON_SLOTS - 1));
    }
}
