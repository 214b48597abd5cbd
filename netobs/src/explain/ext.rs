//! RFC 4884 extension objects of an ICMP error, decoded for findings,
//! JSON and trace hops: MPLS label stacks (RFC 4950) and interface
//! information (RFC 5837). The wire decoding is `netobs_common::ext`;
//! this is the owned, serialisable form and its words.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netobs_common::{
    Event,
    ext::{
        self, ChecksumState, ExtHeader, ExtHeaderRepr, IfAddr, IfRole, InterfaceInfo, InterfaceInfoRepr, Layout,
        MplsEntryRepr,
    },
};
use serde::Serialize;

/// The extension structure of one ICMP error (JSON `extensions`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Extensions {
    /// "rfc4884" (length field) or "compat" (length 0, byte 128).
    pub layout: Layout,
    pub version: u8,
    /// "correct", "wrong", or "unchecked" when only part was carried.
    pub checksum: ChecksumState,
    /// Every MPLS label stack entry, top of stack first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mpls: Vec<MplsEntryRepr>,
    /// Interface information objects, in message order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Objects of other classes: class, c-type and length only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<OtherObject>,
    /// Why decoding stopped early (a malformed object), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Only the first bytes were carried from the kernel
    /// (`netobs_common::ext::CARRY_MAX`): objects after them are missing.
    pub cut: bool,
    /// The error announced extensions (RFC 4884 length set) but the event
    /// came from the datapath, which does not copy them: nothing above is
    /// decoded.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub not_carried: bool,
}

/// RFC 5837 interface information, as the router sent it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub role: IfRole,
    pub ifindex: Option<u32>,
    pub address: Option<IpAddr>,
    pub name: Option<String>,
    pub mtu: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OtherObject {
    pub class: u8,
    pub c_type: u8,
    pub length: u16,
}

impl Extensions {
    /// Decodes an extension structure (`bytes` from its header on).
    /// `complete`: `bytes` runs to the structure's real end (else the
    /// checksum is not judged and the result is marked cut). `None` when
    /// there is no header.
    pub fn decode(bytes: &[u8], layout: Layout, complete: bool) -> Option<Extensions> {
        let view = ExtHeader::new_checked(bytes).ok()?;
        let mut out = Extensions {
            layout,
            version: view.version(),
            checksum: ChecksumState::Unchecked,
            mpls: Vec::new(),
            interfaces: Vec::new(),
            other: Vec::new(),
            error: None,
            cut: !complete,
            not_carried: false,
        };
        match ExtHeaderRepr::parse(&view, complete) {
            Ok(h) => out.checksum = h.checksum_state,
            Err(e) => {
                out.error = Some(e.to_string());
                return Some(out);
            }
        }
        for obj in view.objects() {
            let obj = match obj {
                Ok(o) => o,
                Err(e) => {
                    out.error = Some(e.to_string());
                    break;
                }
            };
            // A cut structure ends in a partial object: that is the cut,
            // not a malformed message (decoded as far as it goes).
            if obj.cut && complete {
                out.error = Some(format!("class {} object runs past the message", obj.class_num));
            }
            let decoded = match obj.class_num {
                ext::class::MPLS_STACK => ext::mpls_stack(&obj).map(|s| out.mpls.extend(s)),
                ext::class::INTERFACE_INFO => InterfaceInfoRepr::parse(&InterfaceInfo::new(obj.payload, obj.c_type))
                    .map(|i| {
                        out.interfaces.push(Interface {
                            role: i.role,
                            ifindex: i.if_index,
                            address: i.addr.map(|a| match a {
                                IfAddr::V4(v) => IpAddr::V4(Ipv4Addr::from(v)),
                                IfAddr::V6(v) => IpAddr::V6(Ipv6Addr::from(v)),
                            }),
                            name: i.name.map(|n| String::from_utf8_lossy(n).into_owned()),
                            mtu: i.mtu,
                        })
                    }),
                _ => {
                    out.other.push(OtherObject { class: obj.class_num, c_type: obj.c_type, length: obj.length });
                    Ok(())
                }
            };
            match decoded {
                Err(ext::Error::Truncated) if obj.cut => {}
                Err(e) => {
                    out.error = Some(format!("class {} c-type {}: {e}", obj.class_num, obj.c_type));
                    break;
                }
                Ok(()) => {}
            }
        }
        Some(out)
    }

    /// The extensions an event carried from the kernel (or host parse).
    ///
    /// The datapath takes the pre-RFC layout on the version nibble alone;
    /// as in [`ext::locate`], a whole structure there whose checksum is set
    /// and wrong is a long quote's byte 128, not an extension.
    pub fn from_event(ev: &Event) -> Option<Extensions> {
        use netobs_common::event::flags;
        if ev.ext_len == 0 && ev.flags & flags::HAS_RFC4884 != 0 && ev.flags & flags::EXT_EXAMINED == 0 {
            return Some(Extensions {
                layout: Layout::Rfc4884,
                version: 0,
                checksum: ChecksumState::Unchecked,
                mpls: Vec::new(),
                interfaces: Vec::new(),
                other: Vec::new(),
                error: None,
                cut: false,
                not_carried: true,
            });
        }
        // The datapath copies the bytes where an extension would be without
        // looking at them: only a version-2 header is one.
        if ev.ext_bytes().first().map(|b| b >> 4) != Some(netobs_common::ext::VERSION) {
            return None;
        }
        let e = Extensions::decode(ev.ext_bytes(), ev.ext_layout()?, !ev.ext_cut())?;
        let checksum_set = ev.ext_bytes().get(2..4).is_some_and(|c| c != [0, 0]);
        let not_one = e.layout == Layout::Compat && e.checksum == ChecksumState::Wrong && checksum_set;
        (!not_one).then_some(e)
    }

    /// The extensions of a whole ICMP message (`icmp` from the ICMP header
    /// to the end of the IP packet), as a probe reply has it.
    pub fn from_icmp(family: u8, icmp: &[u8]) -> Option<Extensions> {
        let (at, layout) = ext::locate(family, icmp, true)?;
        Extensions::decode(icmp.get(at..)?, layout, true)
    }

    /// A probe reply as the raw socket returns it: IPv4 with its header,
    /// ICMPv6 from the ICMP header on.
    pub fn from_reply(family: u8, data: &[u8]) -> Option<Extensions> {
        if family == 6 {
            return Extensions::from_icmp(6, data);
        }
        let ihl = usize::from(*data.first()? & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([*data.get(2)?, *data.get(3)?]));
        if *data.get(9)? != 1 || ihl < 20 {
            return None;
        }
        Extensions::from_icmp(4, data.get(ihl..total.clamp(ihl, data.len()))?)
    }

    /// "MPLS L=16,E=0,S=1,T=1; incoming interface eth1 (ifIndex 3,
    /// 198.18.2.1, MTU 1400)": what a finding says about them.
    pub fn words(&self) -> String {
        if self.not_carried {
            return "RFC 4884 extensions announced, not carried by the datapath (the eBPF verifier's limit): \
`netobs trace` or `netobs read` on a capture decodes MPLS labels and interface information"
                .to_string();
        }
        let mut parts = Vec::new();
        if !self.mpls.is_empty() {
            parts.push(format!("MPLS {}", mpls_words(&self.mpls)));
        }
        parts.extend(self.interfaces.iter().map(Interface::words));
        for o in &self.other {
            parts.push(format!("extension class {} c-type {} ({} bytes)", o.class, o.c_type, o.length));
        }
        if let Some(e) = &self.error {
            parts.push(format!("malformed extension: {e}"));
        }
        if self.cut {
            parts.push("(extension cut: more followed)".to_string());
        }
        parts.join("; ")
    }

    /// `traceroute -e`'s annotation: `<MPLS:L=16,E=0,S=1,T=1>`, and the
    /// interface information in our words.
    pub fn traceroute_words(&self) -> String {
        let mut s = String::new();
        if !self.mpls.is_empty() {
            s.push_str(&format!("<MPLS:{}>", mpls_words(&self.mpls)));
        }
        for i in &self.interfaces {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&format!("<{}>", i.words()));
        }
        s
    }
}

impl Interface {
    /// "incoming interface eth1 (ifIndex 3, 198.18.2.1, MTU 1400)".
    pub fn words(&self) -> String {
        let mut s = self.role.words().to_string();
        if let Some(n) = &self.name {
            s.push(' ');
            s.push_str(n);
        }
        let mut details = Vec::new();
        if let Some(i) = self.ifindex {
            details.push(format!("ifIndex {i}"));
        }
        if let Some(a) = self.address {
            details.push(a.to_string());
        }
        if let Some(m) = self.mtu {
            details.push(format!("MTU {m}"));
        }
        if !details.is_empty() {
            s.push_str(&format!(" ({})", details.join(", ")));
        }
        s
    }
}

/// `L=100704,E=0,S=1,T=1`, entries joined by `/`, as `traceroute -e`.
pub fn mpls_words(stack: &[MplsEntryRepr]) -> String {
    stack
        .iter()
        .map(|e| format!("L={},E={},S={},T={}", e.label, e.tc, u8::from(e.bottom), e.ttl))
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use netobs_common::ext::{ObjectRepr, checksum};

    /// Header + objects with a correct checksum.
    fn structure(objects: &[(u8, u8, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![0u8; 4];
        ExtHeaderRepr::emit_header(&mut b).unwrap();
        for (class_num, c_type, payload) in objects {
            let mut o = vec![0u8; 4 + payload.len()];
            ObjectRepr { class_num: *class_num, c_type: *c_type, length: 0, payload, cut: false }.emit(&mut o).unwrap();
            b.extend(o);
        }
        let c = checksum(&b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn mpls_and_interface_words() {
        let mut mpls = [0u8; 8];
        MplsEntryRepr { label: 16, tc: 0, bottom: false, ttl: 1 }.emit(&mut mpls[..4]).unwrap();
        MplsEntryRepr { label: 17, tc: 5, bottom: true, ttl: 1 }.emit(&mut mpls[4..]).unwrap();
        let info = InterfaceInfoRepr {
            role: IfRole::Incoming,
            if_index: Some(3),
            addr: Some(IfAddr::V4([198, 18, 2, 1])),
            name: Some(b"eth1"),
            mtu: Some(1400),
        };
        let mut p = [0u8; 64];
        let n = info.emit(&mut p).unwrap();
        let b = structure(&[(1, 1, mpls.to_vec()), (2, info.c_type(), p[..n].to_vec())]);
        let e = Extensions::decode(&b, Layout::Rfc4884, true).expect("decoded");
        assert_eq!(e.checksum, ChecksumState::Correct);
        assert_eq!(e.error, None);
        assert_eq!(
            e.words(),
            "MPLS L=16,E=0,S=0,T=1/L=17,E=5,S=1,T=1; incoming interface eth1 (ifIndex 3, 198.18.2.1, MTU 1400)"
        );
        assert_eq!(
            e.traceroute_words(),
            "<MPLS:L=16,E=0,S=0,T=1/L=17,E=5,S=1,T=1> <incoming interface eth1 (ifIndex 3, 198.18.2.1, MTU 1400)>"
        );
        let mut bad = b.clone();
        bad[2] ^= 1;
        assert_eq!(Extensions::decode(&bad, Layout::Rfc4884, true).unwrap().checksum, ChecksumState::Wrong);
        // Cut in the middle of the second object: the first still decodes.
        let cut = Extensions::decode(&b[..20], Layout::Rfc4884, false).unwrap();
        assert_eq!(cut.mpls.len(), 2);
        assert!(cut.interfaces.is_empty());
        assert_eq!(cut.error, None);
        assert!(cut.cut);
        assert_eq!(cut.checksum, ChecksumState::Unchecked);
    }

    /// Frame 2 of tcpdump's mpls-traceroute.pcap (tests/data/corpus, PPP
    /// header dropped): time exceeded from 10.5.0.1 with one MPLS entry in
    /// the pre-RFC 4884 layout. tcpdump prints "label 100704, tc 0, [S],
    /// ttl 1". Through the shared parser (what `watch` gets from the kernel
    /// and `read` from a capture) into a finding, its words and JSON.
    #[test]
    fn corpus_mpls_frame_becomes_a_finding_with_its_label() {
        const IP: &str = "450000a813964000ff014db10a0500010c0404040b00cd040000000045000028a54c00000111f76f0c0404040c010101a54b829b00140000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000002000c55f0008010118960101";
        let mut frame = vec![0u8, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 0x08, 0x00];
        frame.extend((0..IP.len()).step_by(2).map(|i| u8::from_str_radix(&IP[i..i + 2], 16).unwrap()));
        let c = netobs_common::Cursor::from_slice(&frame);
        let outer = netobs_common::parse::parse_outer(&c).unwrap();
        let mut ev = Event::default();
        netobs_common::parse::parse_icmp_error(&c, &outer, &mut ev);
        let f = crate::explain::Finding::from_event(&ev, &crate::explain::HostContext::default()).unwrap();
        let e = f.extensions.as_ref().expect("extensions");
        assert_eq!(e.mpls, [MplsEntryRepr { label: 100704, tc: 0, bottom: true, ttl: 1 }]);
        assert_eq!((e.layout, e.checksum, e.cut), (Layout::Compat, ChecksumState::Correct, false));
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["extensions"]["mpls"][0]["label"], 100704);
        assert_eq!(e.words(), "MPLS L=100704,E=0,S=1,T=1");
        // The pre-RFC layout with a wrong checksum is quote, not extension.
        let mut bogus = ev;
        bogus.ext[2][3] ^= 0xff;
        assert_eq!(Extensions::from_event(&bogus), None);
        // No extension: no key at all.
        let mut plain = ev;
        plain.ext_len = 0;
        let v =
            serde_json::to_value(crate::explain::Finding::from_event(&plain, &Default::default()).unwrap()).unwrap();
        assert!(v.get("extensions").is_none(), "{v}");
    }

    /// Probe replies as the raw sockets return them: IPv4 with its header
    /// (trailing bytes past the IP length ignored), ICMPv6 without.
    #[test]
    fn probe_replies_v4_and_v6() {
        let mut mpls = [0u8; 4];
        MplsEntryRepr { label: 299_776, tc: 0, bottom: true, ttl: 254 }.emit(&mut mpls).unwrap();
        let ext = structure(&[(1, 1, mpls.to_vec())]);
        let quote = [0x60u8; 128];
        // ICMPv6 time exceeded, length 16 64-bit words.
        let mut v6 = vec![3, 0, 0, 0, 16, 0, 0, 0];
        v6.extend_from_slice(&quote);
        v6.extend_from_slice(&ext);
        let e = Extensions::from_reply(6, &v6).expect("v6 extension");
        assert_eq!(e.layout, Layout::Rfc4884);
        assert_eq!(e.mpls[0].label, 299_776);
        assert_eq!(e.traceroute_words(), "<MPLS:L=299776,E=0,S=1,T=254>");
        // The same in ICMPv4 behind an IP header, with junk after the packet.
        let total = 20 + 8 + 128 + ext.len();
        let mut v4 =
            vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0, 0, 64, 1, 0, 0, 198, 18, 1, 254, 198, 18, 1, 1];
        v4.extend_from_slice(&[11, 0, 0, 0, 0, 32, 0, 0]);
        v4.extend_from_slice(&quote);
        v4.extend_from_slice(&ext);
        v4.extend_from_slice(&[0xff; 6]);
        assert_eq!(Extensions::from_reply(4, &v4), Some(e), "the same structure, found through the IPv4 header");
        // Not ICMP, or an echo reply: none.
        let mut udp = v4.clone();
        udp[9] = 17;
        assert_eq!(Extensions::from_reply(4, &udp), None);
        assert_eq!(Extensions::from_reply(6, &[129, 0, 0, 0, 0, 1, 0, 1]), None);
        assert_eq!(Extensions::from_reply(4, &[0x45]), None);
    }

    #[test]
    fn json_shape() {
        let mut mpls = [0u8; 4];
        MplsEntryRepr { label: 100704, tc: 0, bottom: true, ttl: 1 }.emit(&mut mpls).unwrap();
        let e = Extensions::decode(&structure(&[(1, 1, mpls.to_vec())]), Layout::Compat, true).unwrap();
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "layout": "compat", "version": 2, "checksum": "correct",
                "mpls": [{ "label": 100704, "tc": 0, "bottom": true, "ttl": 1 }],
                "cut": false,
            })
        );
    }
}
