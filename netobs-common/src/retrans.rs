//! What the TCP retransmission observer shares between kernel and user
//! space: the layout of the kernel structures it reads (from BTF, written
//! by user space before attaching) and the per-destination counts it keeps.
//!
//! A PMTU blackhole makes no ICMP at all: the only trace it leaves on the
//! sender is its own TCP retransmitting full-size segments. The kernel's
//! `tcp:tcp_retransmit_skb` (`sk, skb, err`) and `tcp:tcp_retransmit_synack`
//! (`sk, req`) tracepoints say exactly that, for local TCP only. Counts are
//! per (destination, kind, port) in an LRU hash of [`MAX_DESTINATIONS`]
//! entries: a scan of many destinations forgets the oldest, it cannot grow
//! the map.

/// The per-destination counts ([`RetransKey`] -> [`RetransCounts`]).
pub const MAP: &str = "RETRANS";
/// The one-entry map holding the [`RetransLayout`].
pub const LAYOUT_MAP: &str = "RETRANS_LAYOUT";
/// The program on `tcp_retransmit_skb` (data and SYN retransmissions).
pub const PROGRAM_SKB: &str = "netobs_retrans";
/// The program on `tcp_retransmit_synack`.
pub const PROGRAM_SYNACK: &str = "netobs_synack";
/// Entries of [`MAP`].
pub const MAX_DESTINATIONS: u32 = 4096;

/// [`RetransKey::kind`].
pub mod kind {
    /// A data segment of an established connection.
    pub const DATA: u8 = 1;
    /// A SYN of a connection this host opens (socket in SYN-SENT).
    pub const SYN: u8 = 2;
    /// A SYN-ACK of a connection this host accepts.
    pub const SYNACK: u8 = 3;
}

/// TCP states (`include/net/tcp_states.h`).
pub mod tcp_state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const NEW_SYN_RECV: u8 = 12;
}

/// Byte offsets into kernel structures, plus the namespace filter. A
/// `u32::MAX` offset means "not in this kernel" (IPv6 compiled out): the
/// program skips what needs it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetransLayout {
    /// 1 once user space filled it in; until then the programs do nothing.
    pub ready: u32,
    /// Network namespace to count (inode number); 0: every namespace.
    pub netns_inum: u32,
    /// `sock_common` members (at offset 0 of both `sock` and `request_sock`).
    pub skc_family: u32,
    pub skc_state: u32,
    pub skc_daddr: u32,
    pub skc_rcv_saddr: u32,
    pub skc_dport: u32,
    pub skc_num: u32,
    pub skc_v6_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    /// `sock_common.skc_net.net` (pointer to `struct net`).
    pub skc_net: u32,
    /// `net.ns.inum`.
    pub net_inum: u32,
    /// `tcp_sock.mss_cache` (u32): the current send MSS.
    pub tp_mss_cache: u32,
    /// `tcp_sock.bytes_acked` (u64): progress of the connection.
    pub tp_bytes_acked: u32,
    /// `sk_buff.len` (u32): payload bytes of the retransmitted segment.
    pub skb_len: u32,
    /// `inet_connection_sock.icsk_retransmits` (u8): retransmission
    /// timeouts in a row without progress (reset by an ACK of new data).
    pub icsk_retransmits: u32,
}

const _: () = assert!(core::mem::size_of::<RetransLayout>() == 64);

/// One destination: address (IPv4 in the first four bytes), family (4 or
/// 6), [`kind`], and a port: the local port for data and SYN-ACKs (the
/// service), the remote one for SYNs (the service we try to reach).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RetransKey {
    pub addr: [u8; 16],
    pub family: u8,
    pub kind: u8,
    pub port: u16,
}

const _: () = assert!(core::mem::size_of::<RetransKey>() == 20);

/// What the kernel counted for one [`RetransKey`] since the entry was made.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetransCounts {
    /// Data: retransmissions of at least one MSS. SYN / SYN-ACK: every
    /// retransmission.
    pub full: u64,
    /// Data: retransmissions shorter than the MSS (and not empty).
    pub small: u64,
    /// Data: full-size retransmissions of data an earlier one already
    /// resent, with no progress in between (local TCP: a second timeout in
    /// a row, `icsk_retransmits` of 2 or more; forwarded: the same segment
    /// again, see [`crate::flows`]). Congestion loss resends other holes
    /// while ACKs move; a blackhole resends its head, timeout after timeout.
    pub stalled: u64,
    /// `bytes_acked` of the connection at the latest retransmission.
    pub acked: u64,
    /// `bpf_ktime_get_ns` of the first and the latest retransmission.
    pub first_ns: u64,
    pub last_ns: u64,
    /// The connection's MSS and the longest retransmitted segment.
    pub mss: u32,
    pub max_len: u32,
    /// Local address and ports of the latest retransmission.
    pub local: [u8; 16],
    pub lport: u16,
    pub rport: u16,
    /// TCP state of the socket at the latest retransmission.
    pub state: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<RetransCounts>() == 80);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integer fields and arrays only, no padding (sizes
    // asserted above).
    unsafe impl aya::Pod for super::RetransLayout {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RetransKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RetransCounts {}
}
