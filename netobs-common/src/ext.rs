//! RFC 4884 multi-part ICMP messages: the extension structure some routers
//! append to time exceeded, destination unreachable and parameter problem,
//! with the two object classes operators care about: MPLS label stacks
//! (RFC 4950, what `traceroute -e` prints) and interface information
//! (RFC 5837: which interface of the router the probe arrived on).
//!
//! Why here and in this shape: the datapath only copies the raw extension
//! bytes into the event ([`capture`], verifier-bounded, shared with host
//! parsing so `read` and the kernel agree); everything else is host-side
//! decoding over byte slices. Each structure has a zero-copy view
//! (`new_checked`, then accessors that cannot panic) and a `Repr` (the
//! decoded values), as in smoltcp's `wire` module. No allocation, no panics.

#[cfg(not(target_arch = "bpf"))]
use crate::{
    cursor::Cursor,
    event::{Event, flags},
    parse::Outer,
};

/// The only extension version there is (RFC 4884 §7).
pub const VERSION: u8 = 2;
/// Extension header: version/reserved (2 bytes), checksum (2 bytes).
pub const HEADER_LEN: usize = 4;
/// Object header: length (2), class-num (1), c-type (1).
pub const OBJECT_HEADER_LEN: usize = 4;
/// ICMP header length: type, code, checksum, 4 bytes of "rest".
const ICMP_HEADER_LEN: usize = 8;
/// Where the extension starts in the pre-RFC 4884 ("non-compliant")
/// layout: the original datagram is exactly 128 bytes and the length field
/// is 0 (RFC 4884 §5.5; `traceroute -e` accepts it, and the MPLS routers of
/// the tcpdump corpus send it).
pub const COMPAT_OFFSET: usize = 128;
/// Most extension bytes one event carries from the kernel: one MPLS stack
/// of 30 entries, or an interface-information object with an IPv6 address,
/// a 64-byte name and an MTU plus a little more. What is longer is cut
/// (and decoded as far as it goes, marked cut).
pub const CARRY_MAX: usize = 128;
/// Words of [`CARRY_MAX`] (the kernel copies 4 bytes at a time: every
/// object is a multiple of 4 bytes long).
pub const CARRY_WORDS: usize = CARRY_MAX / 4;

/// Object classes (IANA "ICMP Extension Object Classes").
pub mod class {
    /// MPLS label stack (RFC 4950).
    pub const MPLS_STACK: u8 = 1;
    /// Interface information (RFC 5837).
    pub const INTERFACE_INFO: u8 = 2;
    /// Interface identification (RFC 8335, extended echo).
    pub const INTERFACE_ID: u8 = 3;
}

/// Why an extension structure (or one of its objects) could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the structure needs.
    Truncated,
    /// Version other than 2.
    BadVersion(u8),
    /// An object length below 4, not a multiple of 4, or past the end.
    BadObjectLength(u16),
    /// An interface name sub-object whose length is 0, not a multiple of
    /// 4 or past the object (RFC 5837 §4.3).
    BadNameLength(u8),
    /// An IP address sub-object with an address family other than IPv4 (1)
    /// or IPv6 (2).
    UnknownAfi(u16),
    /// A class/c-type this module decodes, but with the wrong c-type
    /// (MPLS: only 1 is defined).
    UnknownCType(u8),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated"),
            Error::BadVersion(v) => write!(f, "version {v}, not 2"),
            Error::BadObjectLength(l) => write!(f, "bad object length {l}"),
            Error::BadNameLength(l) => write!(f, "bad interface name length {l}"),
            Error::UnknownAfi(a) => write!(f, "unknown address family {a}"),
            Error::UnknownCType(c) => write!(f, "unknown c-type {c}"),
        }
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// The RFC 1071 checksum of `bytes` (an odd last byte padded with zero):
/// 0 when a structure with its checksum field in place is intact.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u32) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// How the extension was found in the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum Layout {
    /// The ICMP length field said where the original datagram ends.
    Rfc4884,
    /// Length field 0, extension at byte 128 of the quote (pre-RFC 4884).
    Compat,
}

/// The RFC 4884 length field of an ICMP message (`icmp` starts at the ICMP
/// header), in bytes: v4 types 3, 11, 12 count 32-bit words in byte 5,
/// v6 types 1 and 3 count 64-bit words in byte 4 (RFC 4884 §4.1, §5).
/// `None` for types without one or a message shorter than its header.
pub fn length_field(family: u8, icmp: &[u8]) -> Option<usize> {
    let t = *icmp.first()?;
    if icmp.len() < ICMP_HEADER_LEN {
        return None;
    }
    match (family, t) {
        (4, 3 | 11 | 12) => Some(icmp[5] as usize * 4),
        (6, 1 | 3) => Some(icmp[4] as usize * 8),
        _ => None,
    }
}

/// Where the extension structure starts in an ICMP message (`icmp` from
/// the ICMP header on, ending where the outer IP packet ends or where the
/// capture stopped: `complete` says which), and by which layout. `None`
/// when the message has none: a type without the length field, or no
/// version-2 header where the length field (with length 0: the
/// compatibility offset) points.
pub fn locate(family: u8, icmp: &[u8], complete: bool) -> Option<(usize, Layout)> {
    let len = length_field(family, icmp)?;
    if len != 0 {
        let at = ICMP_HEADER_LEN + len;
        let hdr = ExtHeader::new_checked(icmp.get(at..)?).ok()?;
        return (hdr.version() == VERSION).then_some((at, Layout::Rfc4884));
    }
    let at = ICMP_HEADER_LEN + COMPAT_OFFSET;
    let hdr = ExtHeader::new_checked(icmp.get(at..)?).ok()?;
    // Without the length field anything could sit at byte 128 (a long
    // quote): a version-2 header counts when its checksum holds (or is
    // unset), or cannot be checked because the capture was cut; as
    // tcpdump and `traceroute -e` decide.
    let plausible = hdr.checksum_field() == 0 || hdr.checksum_ok() || !complete;
    (hdr.version() == VERSION && plausible).then_some((at, Layout::Compat))
}

/// View of an extension structure: header, then objects to the end.
#[derive(Clone, Copy, Debug)]
pub struct ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ExtHeader<T> {
    /// Wraps `buffer` (the extension structure, to its end) after checking
    /// the header fits.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(ExtHeader { buffer })
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref().first().map_or(0, |b| b >> 4)
    }

    pub fn checksum_field(&self) -> u16 {
        be16(self.buffer.as_ref(), 2).unwrap_or(0)
    }

    /// The checksum covers the whole structure (RFC 4884 §7).
    pub fn checksum_ok(&self) -> bool {
        checksum(self.buffer.as_ref()) == 0
    }

    /// The objects after the header.
    pub fn objects(&self) -> Objects<'_> {
        Objects { rest: self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[]), failed: false }
    }
}

/// The checksum's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum ChecksumState {
    Correct,
    Wrong,
    /// Some of the structure was not carried: it cannot be checked.
    Unchecked,
}

/// The extension header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtHeaderRepr {
    pub version: u8,
    pub checksum: u16,
    pub checksum_state: ChecksumState,
}

impl ExtHeaderRepr {
    /// Decodes the header; `complete` says whether `view` holds the whole
    /// structure (else the checksum is not judged). Version 2 only.
    pub fn parse<T: AsRef<[u8]>>(view: &ExtHeader<T>, complete: bool) -> Result<Self, Error> {
        if view.version() != VERSION {
            return Err(Error::BadVersion(view.version()));
        }
        let checksum_state = match (complete, view.checksum_ok()) {
            (false, _) => ChecksumState::Unchecked,
            (true, true) => ChecksumState::Correct,
            (true, false) => ChecksumState::Wrong,
        };
        Ok(ExtHeaderRepr { version: view.version(), checksum: view.checksum_field(), checksum_state })
    }

    /// Writes a header with a zero checksum into `buf` (4 bytes); the caller
    /// fills the checksum over the finished structure with [`checksum`].
    pub fn emit_header(buf: &mut [u8]) -> Result<(), Error> {
        let h = buf.get_mut(..HEADER_LEN).ok_or(Error::Truncated)?;
        h.copy_from_slice(&[VERSION << 4, 0, 0, 0]);
        Ok(())
    }
}

/// View of one object: its header and payload.
#[derive(Clone, Copy, Debug)]
pub struct Object<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Object<T> {
    /// Wraps `buffer`, which starts at the object and may run past it
    /// (or stop short of its declared end: see [`Object::is_cut`]);
    /// checks that the declared length is sane.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        let len = be16(b, 0).ok_or(Error::Truncated)?;
        if b.len() < OBJECT_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if (len as usize) < OBJECT_HEADER_LEN || !len.is_multiple_of(4) {
            return Err(Error::BadObjectLength(len));
        }
        Ok(Object { buffer })
    }

    /// The object's declared length runs past the bytes there are.
    pub fn is_cut(&self) -> bool {
        self.buffer.as_ref().len() < self.length() as usize
    }

    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), 0).unwrap_or(0)
    }

    pub fn class_num(&self) -> u8 {
        self.buffer.as_ref().get(2).copied().unwrap_or(0)
    }

    pub fn c_type(&self) -> u8 {
        self.buffer.as_ref().get(3).copied().unwrap_or(0)
    }

    /// The bytes after the object header, to the object's end or the
    /// end of the bytes there are.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(OBJECT_HEADER_LEN..(self.length() as usize).min(b.len())).unwrap_or(&[])
    }
}

/// An object's header, decoded, with its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectRepr<'a> {
    pub class_num: u8,
    pub c_type: u8,
    /// Including the 4-byte object header.
    pub length: u16,
    /// To the object's end, or to the end of the bytes when it is cut.
    pub payload: &'a [u8],
    /// The declared length ran past the bytes: `payload` is partial.
    pub cut: bool,
}

impl<'a> ObjectRepr<'a> {
    pub fn parse(view: &Object<&'a [u8]>) -> Self {
        let b: &'a [u8] = view.buffer;
        ObjectRepr {
            class_num: view.class_num(),
            c_type: view.c_type(),
            length: view.length(),
            payload: b.get(OBJECT_HEADER_LEN..(view.length() as usize).min(b.len())).unwrap_or(&[]),
            cut: view.is_cut(),
        }
    }

    /// Writes the object header and payload at the start of `buf`; returns
    /// the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let total = OBJECT_HEADER_LEN + self.payload.len();
        let len = u16::try_from(total).map_err(|_| Error::BadObjectLength(u16::MAX))?;
        let out = buf.get_mut(..total).ok_or(Error::Truncated)?;
        out[..2].copy_from_slice(&len.to_be_bytes());
        out[2] = self.class_num;
        out[3] = self.c_type;
        out[OBJECT_HEADER_LEN..].copy_from_slice(self.payload);
        Ok(total)
    }
}

/// The objects of a structure, in order. Stops after the first error
/// (which it yields) or a cut object: a wrong object length hides where
/// the next one starts.
#[derive(Clone, Debug)]
pub struct Objects<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for Objects<'a> {
    type Item = Result<ObjectRepr<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match Object::new_checked(self.rest) {
            Ok(o) => {
                let repr = ObjectRepr::parse(&o);
                self.rest = self.rest.get(repr.length as usize..).unwrap_or(&[]);
                self.failed = repr.cut;
                Some(Ok(repr))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// View of one MPLS label stack entry (RFC 4950 §7, RFC 3032): label (20
/// bits), traffic class / EXP (3), bottom of stack (1), TTL (8).
#[derive(Clone, Copy, Debug)]
pub struct MplsEntry<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MplsEntry<T> {
    pub const LEN: usize = 4;

    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < Self::LEN {
            return Err(Error::Truncated);
        }
        Ok(MplsEntry { buffer })
    }

    fn word(&self) -> u32 {
        be32(self.buffer.as_ref(), 0).unwrap_or(0)
    }

    pub fn label(&self) -> u32 {
        self.word() >> 12
    }

    pub fn tc(&self) -> u8 {
        ((self.word() >> 9) & 0x7) as u8
    }

    pub fn bottom_of_stack(&self) -> bool {
        (self.word() >> 8) & 1 == 1
    }

    pub fn ttl(&self) -> u8 {
        (self.word() & 0xff) as u8
    }
}

/// An MPLS label stack entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
pub struct MplsEntryRepr {
    pub label: u32,
    /// Traffic class (the former EXP bits): `E=` in `traceroute -e`.
    pub tc: u8,
    /// Bottom of stack: `S=`.
    pub bottom: bool,
    pub ttl: u8,
}

impl MplsEntryRepr {
    pub fn parse<T: AsRef<[u8]>>(view: &MplsEntry<T>) -> Self {
        MplsEntryRepr { label: view.label(), tc: view.tc(), bottom: view.bottom_of_stack(), ttl: view.ttl() }
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Error> {
        let out = buf.get_mut(..4).ok_or(Error::Truncated)?;
        let w = ((self.label & 0xf_ffff) << 12)
            | ((self.tc as u32 & 7) << 9)
            | ((self.bottom as u32) << 8)
            | self.ttl as u32;
        out.copy_from_slice(&w.to_be_bytes());
        Ok(())
    }
}

/// The entries of an MPLS stack object (class 1, c-type 1). A trailing
/// partial entry cannot happen in a valid object (lengths are multiples
/// of 4) and is ignored.
pub fn mpls_stack<'a>(obj: &ObjectRepr<'a>) -> Result<impl Iterator<Item = MplsEntryRepr> + 'a, Error> {
    if obj.class_num != class::MPLS_STACK {
        return Err(Error::UnknownCType(obj.c_type));
    }
    if obj.c_type != 1 {
        return Err(Error::UnknownCType(obj.c_type));
    }
    let payload: &'a [u8] = obj.payload;
    Ok(payload.chunks_exact(4).filter_map(|c| MplsEntry::new_checked(c).ok()).map(|e| MplsEntryRepr::parse(&e)))
}

/// RFC 5837 §4.1: what the interface was to the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum IfRole {
    /// The interface the packet arrived on.
    Incoming,
    /// A sub-IP component (a member link) of the incoming interface.
    SubIp,
    /// The interface the packet would have left by.
    Outgoing,
    /// The next hop the packet would have been sent to.
    NextHop,
}

impl IfRole {
    pub fn from_bits(b: u8) -> IfRole {
        match b & 3 {
            0 => IfRole::Incoming,
            1 => IfRole::SubIp,
            2 => IfRole::Outgoing,
            _ => IfRole::NextHop,
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            IfRole::Incoming => "incoming interface",
            IfRole::SubIp => "incoming sub-IP component",
            IfRole::Outgoing => "outgoing interface",
            IfRole::NextHop => "next hop",
        }
    }
}

/// Bits of the interface-information c-type (RFC 5837 §4.1).
pub mod ifinfo {
    pub const IFINDEX: u8 = 0x08;
    pub const IPADDR: u8 = 0x04;
    pub const NAME: u8 = 0x02;
    pub const MTU: u8 = 0x01;
}

/// An interface address as the router sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfAddr {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// View of an interface-information object's payload (class 2).
#[derive(Clone, Copy, Debug)]
pub struct InterfaceInfo<T: AsRef<[u8]>> {
    buffer: T,
    c_type: u8,
}

impl<T: AsRef<[u8]>> InterfaceInfo<T> {
    /// Wraps the payload of a class-2 object with its c-type.
    pub fn new(buffer: T, c_type: u8) -> Self {
        InterfaceInfo { buffer, c_type }
    }

    pub fn role(&self) -> IfRole {
        IfRole::from_bits(self.c_type >> 6)
    }

    pub fn c_type(&self) -> u8 {
        self.c_type
    }

    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An interface-information object, decoded. The name borrows the packet
/// (UTF-8 per RFC 5837, not checked here; trailing NUL padding removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceInfoRepr<'a> {
    pub role: IfRole,
    pub if_index: Option<u32>,
    pub addr: Option<IfAddr>,
    pub name: Option<&'a [u8]>,
    pub mtu: Option<u32>,
}

impl<'a> InterfaceInfoRepr<'a> {
    /// Decodes the sub-objects the c-type announces, in the RFC's order:
    /// ifIndex, IP address, name, MTU.
    pub fn parse(view: &InterfaceInfo<&'a [u8]>) -> Result<Self, Error> {
        let b: &'a [u8] = view.buffer;
        let ct = view.c_type;
        let mut at = 0usize;
        let mut info = InterfaceInfoRepr { role: view.role(), if_index: None, addr: None, name: None, mtu: None };
        if ct & ifinfo::IFINDEX != 0 {
            info.if_index = Some(be32(b, at).ok_or(Error::Truncated)?);
            at += 4;
        }
        if ct & ifinfo::IPADDR != 0 {
            let afi = be16(b, at).ok_or(Error::Truncated)?;
            let a = at + 4;
            info.addr = Some(match afi {
                1 => {
                    let s = b.get(a..a + 4).ok_or(Error::Truncated)?;
                    at = a + 4;
                    IfAddr::V4([s[0], s[1], s[2], s[3]])
                }
                2 => {
                    let s = b.get(a..a + 16).ok_or(Error::Truncated)?;
                    let mut v = [0u8; 16];
                    v.copy_from_slice(s);
                    at = a + 16;
                    IfAddr::V6(v)
                }
                other => return Err(Error::UnknownAfi(other)),
            });
        }
        if ct & ifinfo::NAME != 0 {
            let len = *b.get(at).ok_or(Error::Truncated)?;
            if len == 0 || !len.is_multiple_of(4) || len > 64 {
                return Err(Error::BadNameLength(len));
            }
            let raw = b.get(at + 1..at + len as usize).ok_or(Error::Truncated)?;
            let end = raw.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
            info.name = raw.get(..end);
            at += len as usize;
        }
        if ct & ifinfo::MTU != 0 {
            info.mtu = Some(be32(b, at).ok_or(Error::Truncated)?);
        }
        Ok(info)
    }

    /// The c-type these fields need (role and the present sub-objects).
    pub fn c_type(&self) -> u8 {
        let role = match self.role {
            IfRole::Incoming => 0,
            IfRole::SubIp => 1,
            IfRole::Outgoing => 2,
            IfRole::NextHop => 3,
        };
        (role << 6)
            | if self.if_index.is_some() { ifinfo::IFINDEX } else { 0 }
            | if self.addr.is_some() { ifinfo::IPADDR } else { 0 }
            | if self.name.is_some() { ifinfo::NAME } else { 0 }
            | if self.mtu.is_some() { ifinfo::MTU } else { 0 }
    }

    /// Writes the payload (sub-objects, without the object header) into
    /// `buf`; returns its length. The name is NUL-padded to a multiple of 4.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut at = 0usize;
        let mut put = |bytes: &[u8], at: &mut usize| -> Result<(), Error> {
            let out = buf.get_mut(*at..*at + bytes.len()).ok_or(Error::Truncated)?;
            out.copy_from_slice(bytes);
            *at += bytes.len();
            Ok(())
        };
        if let Some(i) = self.if_index {
            put(&i.to_be_bytes(), &mut at)?;
        }
        match self.addr {
            Some(IfAddr::V4(a)) => {
                put(&[0, 1, 0, 0], &mut at)?;
                put(&a, &mut at)?;
            }
            Some(IfAddr::V6(a)) => {
                put(&[0, 2, 0, 0], &mut at)?;
                put(&a, &mut at)?;
            }
            None => {}
        }
        if let Some(n) = self.name {
            let len = (1 + n.len()).div_ceil(4) * 4;
            if len > 64 {
                return Err(Error::BadNameLength(len as u8));
            }
            put(&[len as u8], &mut at)?;
            put(n, &mut at)?;
            for _ in 1 + n.len()..len {
                put(&[0], &mut at)?;
            }
        }
        if let Some(m) = self.mtu {
            put(&m.to_be_bytes(), &mut at)?;
        }
        Ok(at)
    }
}

/// Copies the extension structure of the ICMP error in `ev` (parsed from
/// the ICMP header at `icmp_off`) into `ev.ext` / `ev.ext_len`, at most
/// [`CARRY_MAX`] bytes, never past the outer IP packet. Host parser only
/// (`read`, the tests): in the datapath this copy, even rewritten
/// branch-free around one `bpf_probe_read_kernel`, pushed the TC programs
/// past the verifier's 1M instructions, so kernel events carry the
/// RFC 4884 length and flag but no bytes (`EXT_EXAMINED` unset). The
/// version and checksum are judged later ([`locate`], [`ExtHeaderRepr`]).
#[cfg(not(target_arch = "bpf"))]
#[inline(always)]
pub fn capture(c: &Cursor, outer: &Outer, icmp_off: usize, ev: &mut Event) {
    ev.flags |= flags::EXT_EXAMINED;
    let types = if outer.family == 4 {
        ev.icmp_type == 3 || ev.icmp_type == 11 || ev.icmp_type == 12
    } else {
        ev.icmp_type == 1 || ev.icmp_type == 3
    };
    if !types {
        return;
    }
    let quote_off = icmp_off + ICMP_HEADER_LEN;
    // The length field is read again here rather than taken from
    // `ev.rfc4884_len`: a byte keeps the offset's bound small (at most
    // 2040) for the verifier's packet-range check.
    // Whole 4-byte reads, not `u8_at`: LLVM may turn a 1-byte bound check
    // into `end > p`, which gives the verifier a range of 0 bytes.
    let Some(hdr) = c.get::<[u8; 8]>(icmp_off) else { return };
    let (words, unit) = if outer.family == 4 { (hdr[5], 4) } else { (hdr[4], 8) };
    let at = quote_off + if words != 0 { words as usize * unit } else { COMPAT_OFFSET };
    // Only a version-2 header is an extension: a length field that does not
    // point at one (a sender that sets it without extensions, or garbage)
    // carries nothing.
    match c.get::<[u8; 4]>(at) {
        Some(v) if v[0] >> 4 == VERSION => {}
        _ => return,
    }
    // The outer packet's end: trailing bytes (Ethernet padding) are not
    // extension.
    let ip_end = outer.l3_off + outer.total_len as usize;
    if ip_end < at + HEADER_LEN {
        return;
    }
    let room = ip_end - at;
    let mut n = 0usize;
    for i in 0..CARRY_WORDS {
        if i * 4 + 4 > room {
            break;
        }
        let Some(w) = c.get::<[u8; 4]>(at + i * 4) else { break };
        ev.ext[i] = *w;
        n = i + 1;
    }
    if room > n * 4 {
        ev.flags |= flags::EXT_CUT;
    }
    ev.ext_len = (n * 4) as u16;
}

#[cfg(not(target_arch = "bpf"))]
impl Event {
    /// This event as the datapath writes it: without the extension bytes,
    /// which only the host parser copies (see `parse_icmp_error`). For
    /// comparing a host parse with the kernel's.
    pub fn as_datapath(&self) -> Event {
        let mut e = *self;
        e.ext = [[0; 4]; CARRY_WORDS];
        e.ext_len = 0;
        e.flags &= !(flags::EXT_CUT | flags::EXT_EXAMINED);
        e
    }

    /// The extension bytes the event carries (empty when none).
    pub fn ext_bytes(&self) -> &[u8] {
        self.ext.as_flattened().get(..self.ext_len as usize).unwrap_or(&[])
    }

    /// How the carried extension was found: RFC 4884 length field or the
    /// pre-RFC layout (length 0, byte 128). `None` when nothing was carried.
    pub fn ext_layout(&self) -> Option<Layout> {
        if self.ext_len == 0 {
            None
        } else if self.flags & flags::HAS_RFC4884 != 0 {
            Some(Layout::Rfc4884)
        } else {
            Some(Layout::Compat)
        }
    }

    /// Whether the extension structure went on past what the event holds
    /// (cut at [`CARRY_MAX`] bytes, or at the end of the captured bytes).
    pub fn ext_cut(&self) -> bool {
        self.flags & flags::EXT_CUT != 0
    }
}

/// An extension structure (header with a correct checksum, then the
/// objects `(class-num, c-type, payload)`), for tests and benchmarks.
#[cfg(feature = "craft")]
pub fn craft_structure(objects: &[(u8, u8, &[u8])]) -> std::vec::Vec<u8> {
    let mut b = std::vec![VERSION << 4, 0, 0, 0];
    for &(class_num, c_type, payload) in objects {
        let mut o = std::vec![0u8; OBJECT_HEADER_LEN + payload.len()];
        let obj = ObjectRepr { class_num, c_type, length: 0, payload, cut: false };
        if obj.emit(&mut o).is_ok() {
            b.extend_from_slice(&o);
        }
    }
    let c = checksum(&b);
    b[2..4].copy_from_slice(&c.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_icmp_error, parse_outer};
    use std::vec::Vec;

    /// The extension of frame 2 of tcpdump's mpls-traceroute.pcap: one MPLS
    /// entry, label 100704, tc 0, S, ttl 1, checksum 0xc55f.
    const CORPUS_MPLS: [u8; 12] = [0x20, 0x00, 0xc5, 0x5f, 0x00, 0x08, 0x01, 0x01, 0x18, 0x96, 0x01, 0x01];

    #[test]
    fn corpus_mpls_structure_decodes_and_checks() {
        let h = ExtHeader::new_checked(&CORPUS_MPLS[..]).unwrap();
        let r = ExtHeaderRepr::parse(&h, true).unwrap();
        assert_eq!(r, ExtHeaderRepr { version: 2, checksum: 0xc55f, checksum_state: ChecksumState::Correct });
        let objs: Vec<_> = h.objects().collect();
        assert_eq!(objs.len(), 1);
        let o = objs[0].unwrap();
        assert_eq!((o.class_num, o.c_type, o.length, o.cut), (1, 1, 8, false));
        let stack: Vec<_> = mpls_stack(&o).unwrap().collect();
        assert_eq!(stack, [MplsEntryRepr { label: 100704, tc: 0, bottom: true, ttl: 1 }]);
        let mut bad = CORPUS_MPLS;
        bad[11] = 2;
        let h = ExtHeader::new_checked(&bad[..]).unwrap();
        assert_eq!(ExtHeaderRepr::parse(&h, true).unwrap().checksum_state, ChecksumState::Wrong);
        assert_eq!(ExtHeaderRepr::parse(&h, false).unwrap().checksum_state, ChecksumState::Unchecked);
        bad[0] = 0x10;
        let h = ExtHeader::new_checked(&bad[..]).unwrap();
        assert_eq!(ExtHeaderRepr::parse(&h, true), Err(Error::BadVersion(1)));
        assert!(ExtHeader::new_checked(&bad[..3]).is_err());
    }

    #[test]
    fn mpls_entry_round_trips_every_field() {
        for e in [
            MplsEntryRepr { label: 0xf_ffff, tc: 7, bottom: true, ttl: 255 },
            MplsEntryRepr { label: 16, tc: 0, bottom: false, ttl: 1 },
            MplsEntryRepr { label: 0, tc: 5, bottom: true, ttl: 0 },
        ] {
            let mut b = [0u8; 4];
            e.emit(&mut b).unwrap();
            assert_eq!(MplsEntryRepr::parse(&MplsEntry::new_checked(&b[..]).unwrap()), e);
        }
        // label 16, E=0, S=1, T=1 on the wire: 0x00010101.
        let v = MplsEntry::new_checked(&[0x00, 0x01, 0x01, 0x01][..]).unwrap();
        assert_eq!((v.label(), v.tc(), v.bottom_of_stack(), v.ttl()), (16, 0, true, 1));
        assert!(MplsEntry::new_checked(&[0u8; 3][..]).is_err());
    }

    #[test]
    fn interface_info_sub_objects() {
        // RFC 5837 §4.1 example shape: ifIndex, IPv6 address, name, MTU;
        // outgoing role.
        let addr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let info = InterfaceInfoRepr {
            role: IfRole::Outgoing,
            if_index: Some(7),
            addr: Some(IfAddr::V6(addr)),
            name: Some(b"ens3"),
            mtu: Some(9000),
        };
        assert_eq!(info.c_type(), 0x80 | 0x0f);
        let mut buf = [0u8; 64];
        let n = info.emit(&mut buf).unwrap();
        assert_eq!(n, 4 + 20 + 8 + 4);
        // The name sub-object: length 8 (1 + 4 bytes padded), NUL-padded.
        assert_eq!(&buf[24..32], &[8, b'e', b'n', b's', b'3', 0, 0, 0]);
        let back = InterfaceInfoRepr::parse(&InterfaceInfo::new(&buf[..n], info.c_type())).unwrap();
        assert_eq!(back, info);
        // Each missing piece is reported, never read past.
        for cut in 0..n {
            let r = InterfaceInfoRepr::parse(&InterfaceInfo::new(&buf[..cut], info.c_type()));
            assert_eq!(r, Err(Error::Truncated), "cut at {cut}");
        }
        // Only the incoming role and an IPv4 address.
        let v4 = [0, 1, 0, 0, 198, 18, 2, 1];
        let r = InterfaceInfoRepr::parse(&InterfaceInfo::new(&v4[..], 0x04)).unwrap();
        assert_eq!(
            (r.role, r.addr, r.if_index, r.name, r.mtu),
            (IfRole::Incoming, Some(IfAddr::V4([198, 18, 2, 1])), None, None, None)
        );
        let bad_afi = [0, 3, 0, 0, 1, 2, 3, 4];
        assert_eq!(InterfaceInfoRepr::parse(&InterfaceInfo::new(&bad_afi[..], 0x04)), Err(Error::UnknownAfi(3)));
        for len in [0u8, 3, 68] {
            let mut name = [0u8; 72];
            name[0] = len;
            assert_eq!(InterfaceInfoRepr::parse(&InterfaceInfo::new(&name[..], 0x02)), Err(Error::BadNameLength(len)));
        }
    }

    #[test]
    fn objects_stop_at_a_bad_or_cut_object() {
        // Object of length 6 (RFC 8335 capture icmp_ext_oob_poc): not a
        // multiple of 4.
        let b = [0x20, 0x00, 0, 0, 0x00, 0x06, 0x02, 0x0c, 0x11, 0x22];
        let h = ExtHeader::new_checked(&b[..]).unwrap();
        let v: Vec<_> = h.objects().collect();
        assert_eq!(v, [Err(Error::BadObjectLength(6))]);
        // Length 8016 with 8 bytes there: one cut object, then nothing.
        let b = [0x20, 0x00, 0, 0, 0x1f, 0x50, 0x02, 0x02, 0x00, 0x54, 0x68, 0x00, 0x00, 0x08, 0x01, 0x01];
        let h = ExtHeader::new_checked(&b[..]).unwrap();
        let v: Vec<_> = h.objects().collect();
        assert_eq!(v.len(), 1);
        let o = v[0].unwrap();
        assert!(o.cut);
        assert_eq!(o.payload, &b[8..]);
        assert_eq!(InterfaceInfoRepr::parse(&InterfaceInfo::new(o.payload, o.c_type)), Err(Error::BadNameLength(0)));
    }

    /// An Ethernet + IPv4 ICMP error frame: `icmp_type`, length field
    /// `words` (32-bit), `quote_len` quote bytes (a UDP probe first),
    /// then `ext`, then `trailer` bytes outside the IP packet.
    fn frame(icmp_type: u8, words: u8, quote_len: usize, ext: &[u8], trailer: usize) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 0x08, 0x00]);
        let total = 20 + 8 + quote_len + ext.len();
        f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0, 0, 64, 1, 0, 0]);
        f.extend_from_slice(&[198, 18, 2, 1, 198, 18, 1, 1]);
        f.extend_from_slice(&[icmp_type, 0, 0, 0, 0, words, 0, 0]);
        let mut quote = std::vec![0u8; quote_len];
        let q: [u8; 28] = [
            0x45, 0, 0, 40, 0, 2, 0, 0, 1, 17, 0, 0, 198, 18, 1, 1, 198, 18, 5, 1, 0x82, 0x9b, 0x82, 0x9c, 0, 20, 0, 0,
        ];
        quote[..28].copy_from_slice(&q);
        f.extend_from_slice(&quote);
        f.extend_from_slice(ext);
        f.extend(core::iter::repeat_n(0xee, trailer));
        f
    }

    fn event_of(f: &[u8]) -> Event {
        let c = Cursor::from_slice(f);
        let outer = parse_outer(&c).unwrap();
        let mut ev = Event::default();
        parse_icmp_error(&c, &outer, &mut ev);
        ev
    }

    #[test]
    fn capture_takes_the_rfc4884_extension_and_stops_at_the_ip_end() {
        let f = frame(11, 32, 128, &CORPUS_MPLS, 6);
        let ev = event_of(&f);
        assert_eq!(ev.flags & flags::HAS_RFC4884, flags::HAS_RFC4884);
        assert_eq!(ev.rfc4884_len, 128);
        assert_eq!(ev.ext_bytes(), &CORPUS_MPLS, "Ethernet padding is not extension");
        assert_eq!(ev.ext_layout(), Some(Layout::Rfc4884));
        assert!(!ev.ext_cut());
        let icmp = &f[34..f.len() - 6];
        assert_eq!(locate(4, icmp, true), Some((136, Layout::Rfc4884)));
    }

    #[test]
    fn capture_takes_the_compat_layout_only_with_a_version_2_header() {
        let f = frame(11, 0, 128, &CORPUS_MPLS, 0);
        let ev = event_of(&f);
        assert_eq!(ev.flags & flags::HAS_RFC4884, 0);
        assert_eq!(ev.ext_bytes(), &CORPUS_MPLS);
        assert_eq!(ev.ext_layout(), Some(Layout::Compat));
        assert_eq!(locate(4, &f[34..], true), Some((136, Layout::Compat)));
        // A long quote with no header at byte 128: nothing.
        let f = frame(11, 0, 200, &[], 0);
        assert_eq!(event_of(&f).ext_len, 0);
        assert_eq!(locate(4, &f[34..], true), None);
        // A version-2 nibble whose checksum fails is a quote byte, unless
        // the capture was cut and it cannot be checked.
        let mut bad = CORPUS_MPLS;
        bad[3] ^= 0xff;
        let f = frame(11, 0, 128, &bad, 0);
        assert_eq!(locate(4, &f[34..], true), None);
        assert_eq!(locate(4, &f[34..], false), Some((136, Layout::Compat)));
        // Redirects and echo have no extension, whatever follows.
        assert_eq!(event_of(&frame(5, 32, 128, &CORPUS_MPLS, 0)).ext_len, 0);
        assert_eq!(length_field(4, &[0, 0, 0, 0, 0, 32, 0, 0]), None);
        assert_eq!(length_field(6, &[3, 0, 0, 0, 16, 0, 0, 0]), Some(128));
        assert_eq!(length_field(6, &[2, 0, 0, 0, 16, 0, 0, 0]), None);
    }

    #[test]
    fn capture_carries_at_most_carry_max_bytes_and_says_so() {
        let mut ext = std::vec![0u8; 4];
        ExtHeaderRepr::emit_header(&mut ext).unwrap();
        let payload = [0xabu8; 196];
        let mut o = [0u8; 200];
        ObjectRepr { class_num: 9, c_type: 1, length: 0, payload: &payload, cut: false }.emit(&mut o).unwrap();
        ext.extend_from_slice(&o);
        let f = frame(3, 32, 128, &ext, 0);
        let ev = event_of(&f);
        assert_eq!(ev.ext_len as usize, CARRY_MAX);
        assert_eq!(ev.ext_bytes(), &ext[..CARRY_MAX]);
        assert!(ev.ext_cut());
        // Exactly CARRY_MAX: not cut.
        let f = frame(3, 32, 128, &ext[..CARRY_MAX], 0);
        assert!(!event_of(&f).ext_cut());
        // A length field pointing past the packet: nothing copied.
        let f = frame(3, 64, 128, &CORPUS_MPLS, 0);
        assert_eq!(event_of(&f).ext_len, 0);
    }

    #[test]
    fn checksum_is_rfc1071() {
        assert_eq!(checksum(&[]), 0xffff);
        assert_eq!(checksum(&CORPUS_MPLS), 0);
        // Odd length: last byte padded.
        assert_eq!(checksum(&[0x12]), !0x1200);
    }
}
