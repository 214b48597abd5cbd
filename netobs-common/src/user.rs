//! User-space extras: `aya::Pod` so the records can cross maps and ring
//! buffers, and address helpers.

use crate::event::{
    Config, DfCounterKey, Event, EventStage, IcmpCapture, IcmpCounterKey, PacketInfo, TokenBucket, kind, record_len,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// SAFETY: all are repr(C), padding-free (asserted in event.rs) plain data.
unsafe impl aya::Pod for Event {}
unsafe impl aya::Pod for IcmpCapture {}
unsafe impl aya::Pod for PacketInfo {}
unsafe impl aya::Pod for IcmpCounterKey {}
unsafe impl aya::Pod for DfCounterKey {}
unsafe impl aya::Pod for Config {}
unsafe impl aya::Pod for TokenBucket {}
unsafe impl aya::Pod for EventStage {}

/// Reads a 16-byte address slot as the given family (4: first 4 bytes).
pub fn addr(family: u8, raw: &[u8; 16]) -> IpAddr {
    if family == 4 {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*raw))
    }
}

/// Where every datapath record keeps its kind, and a capture its length.
const KIND_AT: usize = core::mem::offset_of!(Event, kind);
const CAPTURED_AT: usize = core::mem::offset_of!(IcmpCapture, captured);

/// Bytes of the datapath event at the start of `bytes` ([`record_len`]),
/// when they hold at least that many; `None` otherwise.
fn record_len_at(bytes: &[u8]) -> Option<usize> {
    let kind = *bytes.get(KIND_AT)?;
    let captured = bytes.get(CAPTURED_AT..CAPTURED_AT + 2)?;
    let len = record_len(kind, u16::from_ne_bytes([captured[0], captured[1]]));
    (bytes.len() >= len).then_some(len)
}

/// Copies `src` over the first bytes of `dst` (a datapath record into its
/// host type, whose tail the datapath does not write); nothing when `src`
/// is longer than `T`.
fn overwrite_prefix<T: aya::Pod>(dst: &mut T, src: &[u8]) {
    if src.len() > core::mem::size_of::<T>() {
        return;
    }
    // SAFETY: `T: Pod` is plain data valid for any bytes, `dst` has room
    // for `src` (checked), and the two cannot overlap (`dst` is borrowed
    // mutably).
    unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), (dst as *mut T).cast::<u8>(), src.len()) };
}

impl Event {
    /// Decodes one datapath event from the start of `bytes`, with empty
    /// extension bytes; `None` when too short. An ICMP error's bytes
    /// ([`IcmpCapture`], as long as [`IcmpCapture::record_len`] says) are
    /// parsed here, by the same parser the host tests run; `None` when
    /// they do not parse.
    pub fn from_bytes(bytes: &[u8]) -> Option<Event> {
        let len = record_len_at(bytes)?;
        let datapath = bytes.get(..len)?;
        if datapath.get(KIND_AT) == Some(&kind::ICMP_CAPTURE) {
            let mut cap = IcmpCapture::default();
            overwrite_prefix(&mut cap, datapath);
            return crate::parse::decode_icmp_capture(&cap);
        }
        let mut ev = Event::default();
        overwrite_prefix(&mut ev, datapath);
        Some(ev)
    }

    /// Decodes a ring-buffer record: one event, or a batch of events
    /// written out of a CPU's [`EventStage`], each as long as
    /// [`record_len`] says. `None` when the record is empty or its events'
    /// lengths do not add up to it; an item is `None` when its bytes do not
    /// decode ([`Event::from_bytes`]), for the caller to count.
    pub fn from_record(bytes: &[u8]) -> Option<impl Iterator<Item = Option<Event>> + '_> {
        let mut at = 0;
        while at < bytes.len() {
            at += record_len_at(bytes.get(at..)?)?;
        }
        if bytes.is_empty() || at != bytes.len() {
            return None;
        }
        let mut rest = bytes;
        Some(core::iter::from_fn(move || {
            let len = record_len_at(rest)?;
            let (event, tail) = rest.split_at_checked(len)?;
            rest = tail;
            Some(Event::from_bytes(event))
        }))
    }

    pub fn outer_src_ip(&self) -> IpAddr {
        addr(self.outer_family, &self.outer_src)
    }
    pub fn outer_dst_ip(&self) -> IpAddr {
        addr(self.outer_family, &self.outer_dst)
    }
    pub fn gateway_ip(&self) -> IpAddr {
        addr(self.outer_family, &self.gateway)
    }
}

impl PacketInfo {
    pub fn src_ip(&self) -> IpAddr {
        addr(self.family, &self.src)
    }
    pub fn dst_ip(&self) -> IpAddr {
        addr(self.family, &self.dst)
    }
}
