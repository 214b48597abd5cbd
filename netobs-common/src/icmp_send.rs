//! What the `icmp_send` raw tracepoint program must know about the running
//! kernel: where the fields it reads sit in `struct sk_buff` and friends
//! (read from the kernel's BTF by user space, which writes them into the
//! one-entry `ICMP_SEND_LAYOUT` map before attaching), and which network
//! namespace to count.
//!
//! The tracepoint is `trace_icmp_send(skb, type, code)`, fired for every
//! IPv4 ICMP error the kernel generates, in every namespace.

/// Name of the map holding the [`IcmpSendLayout`].
pub const LAYOUT_MAP: &str = "ICMP_SEND_LAYOUT";

/// Name of the program.
pub const PROGRAM: &str = "netobs_icmp_send";

/// Byte offsets into kernel structures, plus the namespace filter. 32
/// bytes, no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IcmpSendLayout {
    /// 1 once user space filled it in; until then the program does nothing.
    pub ready: u32,
    /// Inode number of the network namespace to count (what
    /// `stat /proc/self/ns/net` calls st_ino). 0: every namespace.
    pub netns_inum: u32,
    /// `sk_buff.head` (pointer).
    pub skb_head: u32,
    /// `sk_buff.network_header` (u16, offset from `head`).
    pub skb_network_header: u32,
    /// `sk_buff.dev` (pointer to `struct net_device`).
    pub skb_dev: u32,
    /// `net_device.nd_net.net` (pointer to `struct net`).
    pub dev_net: u32,
    /// `net.ns.inum` (u32).
    pub net_inum: u32,
    pub _reserved: u32,
}

const _: () = assert!(core::mem::size_of::<IcmpSendLayout>() == 32);

#[cfg(feature = "user")]
// SAFETY: repr(C), only u32 fields, no padding.
unsafe impl aya::Pod for IcmpSendLayout {}
