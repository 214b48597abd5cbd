//! Link-layer headers of captured frames, reduced to what the shared
//! parser reads: an Ethernet frame.
//!
//! Why Ethernet: the parser in `netobs-common` (the one the XDP program
//! runs) starts at an Ethernet header, and `--kernel` hands the very same
//! bytes to the real program through BPF_PROG_TEST_RUN, which for XDP needs
//! one too. A frame of another link type is rewritten as zero MAC
//! addresses + the ethertype of its network protocol + the network packet,
//! so every link type goes through one parser, byte for byte the one the
//! datapath runs. Ethernet frames are used as they are (no copy).

use netobs_common::wire::{ETH_P_IPV4, ETH_P_IPV6};

/// The link types `read` decodes (tcpdump's `LINKTYPE_*` numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113): `tcpdump -i any` before libpcap 1.10.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): `tcpdump -i any` since libpcap 1.10.
    LinuxSll2,
    /// LINKTYPE_RAW (101, and DLT_RAW 12 / 14 as some systems write it):
    /// the IP version nibble says which.
    Raw,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// LINKTYPE_PPP (9) and LINKTYPE_PPP_HDLC (50): point-to-point links,
    /// where the corpus's MPLS and RFC 5837 captures come from.
    Ppp,
    /// LINKTYPE_NULL (0, host byte order) and LINKTYPE_LOOP (108, network
    /// order): BSD loopback, a 4-byte address family.
    Null,
    /// Anything else: counted, not decoded.
    Other(u32),
}

impl LinkType {
    /// `n` as a pcap header or pcapng IDB holds it: the upper bits carry
    /// the FCS length (libpcap's `LT_LINKTYPE` masks them off).
    pub fn from_number(n: u32) -> LinkType {
        match n & 0x03ff_ffff {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            101 | 12 | 14 => LinkType::Raw,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            9 | 50 => LinkType::Ppp,
            0 | 108 => LinkType::Null,
            other => LinkType::Other(other),
        }
    }

    /// The name tcpdump prints (`link-type EN10MB`), lower-cased for JSON.
    pub fn name(self) -> String {
        match self {
            LinkType::Ethernet => "ethernet".into(),
            LinkType::LinuxSll => "linux_sll".into(),
            LinkType::LinuxSll2 => "linux_sll2".into(),
            LinkType::Raw => "raw".into(),
            LinkType::Ipv4 => "ipv4".into(),
            LinkType::Ipv6 => "ipv6".into(),
            LinkType::Ppp => "ppp".into(),
            LinkType::Null => "null".into(),
            LinkType::Other(n) => format!("linktype_{n}"),
        }
    }
}

/// Which way a frame went, when the link header or the capture says so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Way {
    #[default]
    Unknown,
    In,
    /// Sent by the capturing host (SLL packet type 4, pcapng outbound).
    Out,
}

/// What the link header said.
#[derive(Debug, PartialEq, Eq)]
pub enum Link {
    /// An IP packet: `l3` is the offset of the network header in the
    /// captured bytes, `ethertype` its protocol (IPv4, IPv6 or a VLAN tag).
    Ip { l3: usize, ethertype: u16, way: Way },
    /// Not IP (ARP, LCP, MPLS over PPP, ...): passed over, like the
    /// datapath passes it.
    NotIp,
    /// The link header itself is cut short: malformed.
    Short,
    /// A link type `read` does not decode.
    Unsupported,
}

const SLL_LEN: usize = 16;
const SLL2_LEN: usize = 20;
/// `PACKET_OUTGOING`: sent by this host.
const PACKET_OUTGOING: u16 = 4;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The IP version nibble as an ethertype; `None` for anything else.
fn by_version(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at)? >> 4 {
        4 => Some(ETH_P_IPV4),
        6 => Some(ETH_P_IPV6),
        _ => None,
    }
}

/// Reads the link header of `data` (captured bytes).
pub fn classify(link: LinkType, data: &[u8]) -> Link {
    match link {
        LinkType::Ethernet => {
            let Some(ethertype) = be16(data, 12) else { return Link::Short };
            Link::Ip { l3: 14, ethertype, way: Way::Unknown }
        }
        LinkType::LinuxSll => {
            let (Some(pkttype), Some(ethertype)) = (be16(data, 0), be16(data, 14)) else { return Link::Short };
            let way = if pkttype == PACKET_OUTGOING { Way::Out } else { Way::In };
            Link::Ip { l3: SLL_LEN, ethertype, way }
        }
        LinkType::LinuxSll2 => {
            if data.len() < SLL2_LEN {
                return Link::Short;
            }
            let Some(ethertype) = be16(data, 0) else { return Link::Short };
            let way = if u16::from(data[10]) == PACKET_OUTGOING { Way::Out } else { Way::In };
            Link::Ip { l3: SLL2_LEN, ethertype, way }
        }
        LinkType::Raw => match by_version(data, 0) {
            Some(ethertype) => Link::Ip { l3: 0, ethertype, way: Way::Unknown },
            None if data.is_empty() => Link::Short,
            None => Link::NotIp,
        },
        LinkType::Ipv4 => Link::Ip { l3: 0, ethertype: ETH_P_IPV4, way: Way::Unknown },
        LinkType::Ipv6 => Link::Ip { l3: 0, ethertype: ETH_P_IPV6, way: Way::Unknown },
        LinkType::Ppp => ppp(data),
        LinkType::Null => {
            let Some(b) = data.get(..4) else { return Link::Short };
            // The family is in the capturing host's byte order (NULL) or
            // network order (LOOP): either way one end holds it.
            let family = if b[0] == 0 && b[1] == 0 { u32::from(b[3]) | u32::from(b[2]) << 8 } else { u32::from(b[0]) };
            match family {
                2 => Link::Ip { l3: 4, ethertype: ETH_P_IPV4, way: Way::Unknown },
                // AF_INET6 on the BSDs (24), FreeBSD (28), macOS (30).
                24 | 28 | 30 => Link::Ip { l3: 4, ethertype: ETH_P_IPV6, way: Way::Unknown },
                _ => Link::NotIp,
            }
        }
        LinkType::Other(_) => Link::Unsupported,
    }
}

/// PPP in HDLC-like framing (RFC 1662): address 0xff, control 0x03, then
/// the protocol; address/control and the protocol's high byte may be
/// compressed away (ACFC, PFC: an odd first byte is a 1-byte protocol).
fn ppp(data: &[u8]) -> Link {
    let mut off = 0;
    if data.first() == Some(&0xff) && data.get(1) == Some(&0x03) {
        off = 2;
    }
    let Some(&first) = data.get(off) else { return Link::Short };
    let (proto, len) = if first & 1 == 1 {
        (u16::from(first), 1)
    } else {
        let Some(p) = be16(data, off) else { return Link::Short };
        (p, 2)
    };
    match proto {
        PPP_IPV4 => Link::Ip { l3: off + len, ethertype: ETH_P_IPV4, way: Way::Unknown },
        PPP_IPV6 => Link::Ip { l3: off + len, ethertype: ETH_P_IPV6, way: Way::Unknown },
        _ => Link::NotIp,
    }
}

/// The frame the shared parser reads: `data` itself for Ethernet, else
/// the network packet behind a synthetic Ethernet header, written into
/// `scratch`.
pub fn as_ethernet<'a>(
    link: LinkType,
    data: &'a [u8],
    l3: usize,
    ethertype: u16,
    scratch: &'a mut Vec<u8>,
) -> &'a [u8] {
    if link == LinkType::Ethernet {
        return data;
    }
    scratch.clear();
    scratch.extend_from_slice(&[0u8; 12]);
    scratch.extend_from_slice(&ethertype.to_be_bytes());
    scratch.extend_from_slice(data.get(l3..).unwrap_or_default());
    scratch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppp_with_and_without_address_control_and_compressed_protocol() {
        let ip = [0x45u8, 0, 0, 20];
        let full = [&[0xff, 0x03, 0x00, 0x21][..], &ip].concat();
        assert_eq!(ppp(&full), Link::Ip { l3: 4, ethertype: ETH_P_IPV4, way: Way::Unknown });
        let acfc = [&[0x00, 0x57][..], &ip].concat();
        assert_eq!(ppp(&acfc), Link::Ip { l3: 2, ethertype: ETH_P_IPV6, way: Way::Unknown });
        let pfc = [&[0x21][..], &ip].concat();
        assert_eq!(ppp(&pfc), Link::Ip { l3: 1, ethertype: ETH_P_IPV4, way: Way::Unknown });
        assert_eq!(ppp(&[0xff, 0x03, 0xc0, 0x21]), Link::NotIp, "LCP");
        assert_eq!(ppp(&[0xff, 0x03, 0x00]), Link::Short);
    }

    #[test]
    fn sll_and_sll2_say_which_way_and_what_follows() {
        let mut sll = vec![0u8; 16];
        sll[1] = 4; // outgoing
        sll[14..16].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
        assert_eq!(classify(LinkType::LinuxSll, &sll), Link::Ip { l3: 16, ethertype: ETH_P_IPV6, way: Way::Out });
        assert_eq!(classify(LinkType::LinuxSll, &sll[..15]), Link::Short);
        let mut sll2 = vec![0u8; 20];
        sll2[0..2].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
        assert_eq!(classify(LinkType::LinuxSll2, &sll2), Link::Ip { l3: 20, ethertype: ETH_P_IPV4, way: Way::In });
        assert_eq!(classify(LinkType::LinuxSll2, &sll2[..19]), Link::Short);
    }

    #[test]
    fn raw_ip_goes_by_the_version_and_is_rewritten_as_ethernet() {
        let v6 = [0x60u8, 0, 0, 0];
        let Link::Ip { l3, ethertype, .. } = classify(LinkType::Raw, &v6) else { panic!("ip") };
        assert_eq!(ethertype, ETH_P_IPV6);
        let mut scratch = Vec::new();
        let eth = as_ethernet(LinkType::Raw, &v6, l3, ethertype, &mut scratch);
        assert_eq!(&eth[12..14], &ETH_P_IPV6.to_be_bytes());
        assert_eq!(&eth[14..], &v6);
        assert_eq!(classify(LinkType::Raw, &[0x20]), Link::NotIp);
        assert_eq!(classify(LinkType::Other(107), &v6), Link::Unsupported);
        assert_eq!(LinkType::from_number(9), LinkType::Ppp);
        assert_eq!(LinkType::from_number(50), LinkType::Ppp);
        assert_eq!(LinkType::from_number(0x3000_00e5), LinkType::Ipv6, "FCS bits are not the link type");
    }

    #[test]
    fn bsd_loopback_in_either_byte_order() {
        assert!(matches!(classify(LinkType::Null, &[2, 0, 0, 0, 0x45]), Link::Ip { ethertype: ETH_P_IPV4, .. }));
        assert!(matches!(classify(LinkType::Null, &[0, 0, 0, 30, 0x60]), Link::Ip { ethertype: ETH_P_IPV6, .. }));
        assert_eq!(classify(LinkType::Null, &[2, 0]), Link::Short);
    }
}
