//! Wire formats: one `#[repr(C)]` byte-array struct per header.
//!
//! The IP, UDP and TCP layouts are network-types' (the crate aya programs
//! share: UDP and TCP as is, IPv4 and IPv6 under the field names every
//! program already uses, checked offset by offset); Ethernet and VLAN are ours because network-types declares their
//! ethertype as a `u16` (alignment 2: a reference at an odd offset, as a
//! fuzzer or a capture gives, would be undefined behaviour), and ICMP is
//! ours because network-types' ICMP views lack time exceeded and ICMPv6
//! unreachable.
//!
//! Each struct *is* the table of field offsets for its header; accessors
//! decode big-endian fields. A reference to one of these is only ever obtained
//! through [`crate::cursor::Cursor::get`], which has already proved the whole
//! header is inside the packet, so no accessor can fail or panic.

use crate::cursor::Header;

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_DSTOPTS: u8 = 60;

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

#[inline(always)]
fn be32(b: [u8; 4]) -> u32 {
    u32::from_be_bytes(b)
}

/// Ethernet II header (14 bytes).
#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ethertype: [u8; 2],
}
impl EthHdr {
    pub const LEN: usize = 14;
    #[inline(always)]
    pub fn ethertype(&self) -> u16 {
        be16(self.ethertype)
    }
}

/// 802.1Q / 802.1ad tag, as it follows the outer ethertype (4 bytes).
#[repr(C)]
pub struct VlanHdr {
    pub tci: [u8; 2],
    pub ethertype: [u8; 2],
}
impl VlanHdr {
    pub const LEN: usize = 4;
    #[inline(always)]
    pub fn ethertype(&self) -> u16 {
        be16(self.ethertype)
    }
}

/// IPv4 header without options (20 bytes; `header_len()` says how long it
/// really is). Field for field network-types' `ip::Ipv4Hdr` (asserted
/// below, and [`Ipv4Hdr::as_network_types`] views one as the other); the
/// names are ours because every program and probe already reads them.
#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub total_len: [u8; 2],
    pub id: [u8; 2],
    pub flags_frag: [u8; 2],
    pub ttl: u8,
    pub protocol: u8,
    pub checksum: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}
impl Ipv4Hdr {
    pub const LEN: usize = 20;
    pub const FLAG_DF: u16 = 0x4000;
    pub const FLAG_MF: u16 = 0x2000;
    pub const OFFSET_MASK: u16 = 0x1fff;
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.version_ihl >> 4
    }
    /// Version 4 with a header length of at least 20 bytes (IHL 5..=15):
    /// `version_ihl` in 0x45..=0x4f, one comparison.
    #[inline(always)]
    pub fn is_v4_with_header(&self) -> bool {
        self.version_ihl.wrapping_sub(0x45) <= 0x0a
    }
    /// Header length in bytes (IHL * 4, 0..=60).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        ((self.version_ihl & 0x0f) as usize) * 4
    }
    #[inline(always)]
    pub fn total_len(&self) -> u16 {
        be16(self.total_len)
    }
    #[inline(always)]
    pub fn id(&self) -> u16 {
        be16(self.id)
    }
    #[inline(always)]
    pub fn flags_frag(&self) -> u16 {
        be16(self.flags_frag)
    }
    #[inline(always)]
    pub fn dont_fragment(&self) -> bool {
        self.flags_frag() & Self::FLAG_DF != 0
    }
    /// Fragment offset in 8-byte units.
    #[inline(always)]
    pub fn frag_offset(&self) -> u16 {
        self.flags_frag() & Self::OFFSET_MASK
    }
}

/// IPv6 fixed header (40 bytes): network-types' `ip::Ipv6Hdr` layout
/// under our field names, as for [`Ipv4Hdr`].
#[repr(C)]
pub struct Ipv6Hdr {
    pub version_tc_flow: [u8; 4],
    pub payload_len: [u8; 2],
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}
impl Ipv6Hdr {
    pub const LEN: usize = 40;
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.version_tc_flow[0] >> 4
    }
    #[inline(always)]
    pub fn payload_len(&self) -> u16 {
        be16(self.payload_len)
    }
}

/// TCP header without options (20 bytes): network-types' layout as is.
pub use network_types::tcp::TcpHdr;
/// UDP header (8 bytes): network-types' layout as is.
pub use network_types::udp::UdpHdr;

/// The first 8 bytes every IPv6 extension header shares (hop-by-hop,
/// routing, destination options: length in 8-byte units after the first 8;
/// fragment: fixed 8 bytes).
#[repr(C)]
pub struct Ipv6ExtHdr {
    pub next_header: u8,
    pub hdr_ext_len: u8,
    pub data: [u8; 6],
}
impl Ipv6ExtHdr {
    pub const LEN: usize = 8;
    /// Bytes this header occupies when it is *not* a fragment header.
    #[inline(always)]
    pub fn options_len(&self) -> usize {
        (self.hdr_ext_len as usize + 1) * 8
    }
    /// Fragment header view of the same bytes: offset (8-byte units), M flag.
    #[inline(always)]
    pub fn frag_offset_and_more(&self) -> (u16, bool) {
        let v = be16([self.data[0], self.data[1]]);
        (v >> 3, v & 1 != 0)
    }
    /// Fragment identification (fragment header only).
    #[inline(always)]
    pub fn frag_id(&self) -> u32 {
        be32([self.data[2], self.data[3], self.data[4], self.data[5]])
    }
}

/// ICMP / ICMPv6 header: type, code, checksum and the 4 type-specific bytes.
#[repr(C)]
pub struct IcmpHdr {
    pub icmp_type: u8,
    pub code: u8,
    pub checksum: [u8; 2],
    pub rest: [u8; 4],
}
impl IcmpHdr {
    pub const LEN: usize = 8;
    #[inline(always)]
    pub fn rest_u32(&self) -> u32 {
        be32(self.rest)
    }
    /// Bytes 6-7 (RFC 1191 next-hop MTU; echo sequence).
    #[inline(always)]
    pub fn rest_hi16(&self) -> u16 {
        be16([self.rest[2], self.rest[3]])
    }
    /// Bytes 4-5 (echo identifier).
    #[inline(always)]
    pub fn rest_lo16(&self) -> u16 {
        be16([self.rest[0], self.rest[1]])
    }
}

/// The first 8 bytes of a transport header: all RFC 792 promises to quote.
/// TCP/UDP: ports; TCP: sequence number; ICMP echo: id and sequence.
#[repr(C)]
pub struct L4Head {
    pub b: [u8; 8],
}
impl L4Head {
    pub const LEN: usize = 8;
    #[inline(always)]
    pub fn src_port(&self) -> u16 {
        be16([self.b[0], self.b[1]])
    }
    #[inline(always)]
    pub fn dst_port(&self) -> u16 {
        be16([self.b[2], self.b[3]])
    }
    #[inline(always)]
    pub fn tcp_seq(&self) -> u32 {
        be32([self.b[4], self.b[5], self.b[6], self.b[7]])
    }
    #[inline(always)]
    pub fn echo_id(&self) -> u16 {
        be16([self.b[4], self.b[5]])
    }
    #[inline(always)]
    pub fn echo_seq(&self) -> u16 {
        be16([self.b[6], self.b[7]])
    }
}

/// ICMPv6 Redirect body after the 8-byte ICMP header's first 4 bytes:
/// target (the better first hop) and destination (RFC 4861 4.5).
#[repr(C)]
pub struct Icmpv6RedirectBody {
    pub target: [u8; 16],
    pub destination: [u8; 16],
}
impl Icmpv6RedirectBody {
    pub const LEN: usize = 32;
}

/// Neighbour-discovery option header (type, length in 8-byte units).
#[repr(C)]
pub struct NdOptHdr {
    pub opt_type: u8,
    pub len: u8,
    pub reserved: [u8; 6],
}
impl NdOptHdr {
    pub const LEN: usize = 8;
    /// ND option 4: Redirected Header; the quoted packet follows the 8 bytes.
    pub const REDIRECTED_HEADER: u8 = 4;
}

impl Ipv4Hdr {
    /// The same bytes as network-types' view (setters, typed protocol).
    #[inline(always)]
    pub fn as_network_types(&self) -> &network_types::ip::Ipv4Hdr {
        // SAFETY: identical size and field offsets (asserted below), both
        // made of bytes only (alignment 1, any bit pattern valid).
        unsafe { &*(self as *const Ipv4Hdr).cast::<network_types::ip::Ipv4Hdr>() }
    }
}

impl Ipv6Hdr {
    /// The same bytes as network-types' view.
    #[inline(always)]
    pub fn as_network_types(&self) -> &network_types::ip::Ipv6Hdr {
        // SAFETY: as for `Ipv4Hdr::as_network_types`.
        unsafe { &*(self as *const Ipv6Hdr).cast::<network_types::ip::Ipv6Hdr>() }
    }
}

/// The bytes of a header view (host code that wants them by offset).
#[inline(always)]
pub fn as_bytes<T: Header, const N: usize>(h: &T) -> &[u8; N] {
    const { assert!(core::mem::size_of::<T>() == N) };
    // SAFETY: `T: Header` is N bytes of `u8`-only fields without padding
    // (alignment 1), so it is a valid `[u8; N]`, borrowed for as long.
    unsafe { &*(h as *const T).cast::<[u8; N]>() }
}

// SAFETY: all fields are u8 / [u8; N]; repr(C) without padding.
unsafe impl Header for EthHdr {}
unsafe impl Header for VlanHdr {}
unsafe impl Header for Ipv4Hdr {}
unsafe impl Header for Ipv6Hdr {}
unsafe impl Header for UdpHdr {}
unsafe impl Header for TcpHdr {}
unsafe impl Header for Ipv6ExtHdr {}
unsafe impl Header for IcmpHdr {}
unsafe impl Header for L4Head {}
unsafe impl Header for Icmpv6RedirectBody {}
unsafe impl Header for NdOptHdr {}

const _: () = {
    assert!(core::mem::size_of::<EthHdr>() == EthHdr::LEN);
    assert!(core::mem::size_of::<VlanHdr>() == VlanHdr::LEN);
    assert!(core::mem::size_of::<Ipv4Hdr>() == Ipv4Hdr::LEN);
    assert!(core::mem::size_of::<Ipv6Hdr>() == Ipv6Hdr::LEN);
    assert!(core::mem::size_of::<UdpHdr>() == 8);
    assert!(core::mem::size_of::<TcpHdr>() == 20);
    // Our IP views are network-types' layouts, field for field.
    use core::mem::{offset_of, size_of};
    use network_types::ip::{Ipv4Hdr as N4, Ipv6Hdr as N6};
    assert!(size_of::<Ipv4Hdr>() == size_of::<N4>() && size_of::<Ipv6Hdr>() == size_of::<N6>());
    assert!(offset_of!(Ipv4Hdr, version_ihl) == offset_of!(N4, vihl));
    assert!(offset_of!(Ipv4Hdr, tos) == offset_of!(N4, tos));
    assert!(offset_of!(Ipv4Hdr, total_len) == offset_of!(N4, tot_len));
    assert!(offset_of!(Ipv4Hdr, id) == offset_of!(N4, id));
    assert!(offset_of!(Ipv4Hdr, flags_frag) == offset_of!(N4, frags));
    assert!(offset_of!(Ipv4Hdr, ttl) == offset_of!(N4, ttl));
    assert!(offset_of!(Ipv4Hdr, protocol) == offset_of!(N4, proto));
    assert!(offset_of!(Ipv4Hdr, checksum) == offset_of!(N4, check));
    assert!(offset_of!(Ipv4Hdr, src) == offset_of!(N4, src_addr));
    assert!(offset_of!(Ipv4Hdr, dst) == offset_of!(N4, dst_addr));
    assert!(offset_of!(Ipv6Hdr, version_tc_flow) == offset_of!(N6, vcf));
    assert!(offset_of!(Ipv6Hdr, payload_len) == offset_of!(N6, payload_len));
    assert!(offset_of!(Ipv6Hdr, next_header) == offset_of!(N6, next_hdr));
    assert!(offset_of!(Ipv6Hdr, hop_limit) == offset_of!(N6, hop_limit));
    assert!(offset_of!(Ipv6Hdr, src) == offset_of!(N6, src_addr));
    assert!(offset_of!(Ipv6Hdr, dst) == offset_of!(N6, dst_addr));
    // `Header` needs alignment 1: the views may sit at any offset.
    assert!(core::mem::align_of::<Ipv4Hdr>() == 1);
    assert!(core::mem::align_of::<Ipv6Hdr>() == 1);
    assert!(core::mem::align_of::<UdpHdr>() == 1);
    assert!(core::mem::align_of::<TcpHdr>() == 1);
    assert!(core::mem::size_of::<Ipv6ExtHdr>() == Ipv6ExtHdr::LEN);
    assert!(core::mem::size_of::<IcmpHdr>() == IcmpHdr::LEN);
    assert!(core::mem::size_of::<L4Head>() == L4Head::LEN);
    assert!(core::mem::size_of::<NdOptHdr>() == NdOptHdr::LEN);
};
