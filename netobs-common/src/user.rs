//! User-space extras: `aya::Pod` so the records can cross maps and ring
//! buffers, and address helpers.

use crate::event::{
    Config, DATAPATH_EVENT_LEN, DfCounterKey, Event, EventStage, IcmpCapture, IcmpCounterKey, PacketInfo, TokenBucket,
    kind,
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
    /// Decodes one datapath event ([`DATAPATH_EVENT_LEN`] bytes) from the
    /// start of `bytes`, with empty extension bytes; `None` when too short.
    /// An ICMP error's bytes ([`IcmpCapture`]) are parsed here, by the
    /// same parser the host tests run; `None` when they do not parse.
    pub fn from_bytes(bytes: &[u8]) -> Option<Event> {
        let datapath = bytes.get(..DATAPATH_EVENT_LEN)?;
        if *datapath.get(core::mem::offset_of!(Event, kind))? == kind::ICMP_CAPTURE {
            let mut cap = IcmpCapture::default();
            overwrite_prefix(&mut cap, datapath);
            return crate::parse::decode_icmp_capture(&cap);
        }
        let mut ev = Event::default();
        overwrite_prefix(&mut ev, datapath);
        Some(ev)
    }

    /// Decodes a ring-buffer record: one event, or a batch of whole events
    /// written out of a CPU's [`EventStage`]. `None` when the record is
    /// empty or not a whole number of events; an item is `None` when its
    /// bytes do not decode ([`Event::from_bytes`]), for the caller to count.
    pub fn from_record(bytes: &[u8]) -> Option<impl Iterator<Item = Option<Event>> + '_> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(DATAPATH_EVENT_LEN) {
            return None;
        }
        Some(bytes.chunks_exact(DATAPATH_EVENT_LEN).map(Event::from_bytes))
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
