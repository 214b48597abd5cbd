//! The few rtnetlink requests attaching needs, synchronous and bounded.
//!
//! Who holds an interface's XDP slot, removing that program for `--force`,
//! and the clsact qdisc netobs creates on kernels without TCX. They are
//! spoken here directly (netlink-packet-route messages, sent through the
//! one request helper [`crate::net::nl::request`]) rather than by spawning
//! `ip` or `tc`: the product never needs iproute2. Every request waits at
//! most [`TIMEOUT`] for its answer, so a stuck netlink socket can delay an
//! attach but never hang `watch`.

use std::{io, time::Duration};

use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached},
    tc::{TcAttribute, TcFilterBpfOption, TcHandle, TcMessage, TcOption},
};
use netlink_sys::protocols::NETLINK_ROUTE;

use crate::net::nl::{self, Kind, NlError};

/// Longest wait for one netlink answer.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(3);

/// `XDP_FLAGS_SKB_MODE`, `XDP_FLAGS_DRV_MODE`, `XDP_FLAGS_HW_MODE` (if_link.h).
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_HW_MODE: u32 = 1 << 3;

/// The clsact qdisc's own handle, `ffff:0`.
pub(crate) const CLSACT_HANDLE: TcHandle = TcHandle { major: 0xffff, minor: 0 };

/// What is in an interface's XDP slot, as the kernel reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct XdpSlot {
    /// Program attached in native (driver) mode.
    pub(crate) driver: Option<u32>,
    /// Program attached in generic (skb) mode.
    pub(crate) skb: Option<u32>,
    /// Program offloaded to the NIC.
    pub(crate) hw: Option<u32>,
}

impl XdpSlot {
    /// The program id to name in a note (native first: it is what runs first).
    pub(crate) fn holder(&self) -> Option<u32> {
        self.driver.or(self.skb).or(self.hw)
    }

    /// `(mode flag, program id)` of every occupied mode.
    pub(crate) fn occupied(&self) -> impl Iterator<Item = (u32, u32)> {
        [(XDP_FLAGS_DRV_MODE, self.driver), (XDP_FLAGS_SKB_MODE, self.skb), (XDP_FLAGS_HW_MODE, self.hw)]
            .into_iter()
            .filter_map(|(flag, id)| id.map(|id| (flag, id)))
    }

    fn from_attrs(attrs: &[LinkXdp]) -> XdpSlot {
        let mut slot = XdpSlot::default();
        let mut attached = XdpAttached::None;
        let mut prog_id = None;
        for a in attrs {
            match a {
                LinkXdp::Attached(m) => attached = *m,
                LinkXdp::ProgId(id) if *id != 0 => prog_id = Some(*id),
                LinkXdp::DrvProgId(id) if *id != 0 => slot.driver = Some(*id),
                LinkXdp::SkbProgId(id) if *id != 0 => slot.skb = Some(*id),
                LinkXdp::HwProgId(id) if *id != 0 => slot.hw = Some(*id),
                _ => {}
            }
        }
        // With a single program the kernel only sends IFLA_XDP_PROG_ID and
        // the mode; the per-mode ids come with XDP_ATTACHED_MULTI.
        if let Some(id) = prog_id {
            match attached {
                XdpAttached::Driver => slot.driver = slot.driver.or(Some(id)),
                XdpAttached::SocketBuffer => slot.skb = slot.skb.or(Some(id)),
                XdpAttached::Hardware => slot.hw = slot.hw.or(Some(id)),
                _ => {}
            }
        }
        slot
    }
}

/// A cls_bpf filter on a clsact qdisc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BpfFilter {
    /// The name given at attach (`TCA_BPF_NAME`).
    pub(crate) name: String,
    pub(crate) prog_id: u32,
    pub(crate) priority: u16,
    pub(crate) handle: u32,
}

/// One rtnetlink request; failures keep the errno callers branch on
/// (EBUSY for a bpf_link holder, ENOENT/ENODEV for a qdisc already gone).
fn request(what: &'static str, msg: RouteNetlinkMessage, kind: Kind) -> io::Result<Vec<RouteNetlinkMessage>> {
    nl::request(what, NETLINK_ROUTE, msg, kind, TIMEOUT).map_err(|e| match e {
        NlError::Kernel { errno, .. } => io::Error::from_raw_os_error(errno),
        NlError::Io { source, .. } => source,
        NlError::Timeout { .. } => io::Error::new(io::ErrorKind::TimedOut, e.to_string()),
        NlError::Decode { .. } => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    })
}

/// The XDP programs attached to `ifindex` (`RTM_GETLINK`, `IFLA_XDP`).
pub(crate) fn xdp_slot(ifindex: u32) -> io::Result<XdpSlot> {
    let mut link = LinkMessage::default();
    link.header.index = ifindex;
    let answers = request("reading the XDP slot", RouteNetlinkMessage::GetLink(link), Kind::Get)?;
    let slot = answers
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) if l.header.index == ifindex => Some(l),
            _ => None,
        })
        .flat_map(|l| l.attributes.iter())
        .find_map(|a| match a {
            LinkAttribute::Xdp(x) => Some(XdpSlot::from_attrs(x)),
            _ => None,
        });
    Ok(slot.unwrap_or_default())
}

/// Removes the XDP program attached in `mode_flag` (`IFLA_XDP_FD` -1).
/// A program held by a bpf_link cannot be removed this way: the kernel
/// answers EBUSY, which is returned as is.
pub(crate) fn detach_xdp(ifindex: u32, mode_flag: u32) -> io::Result<()> {
    let mut link = LinkMessage::default();
    link.header.index = ifindex;
    link.attributes.push(LinkAttribute::Xdp(vec![LinkXdp::Fd(-1), LinkXdp::Flags(mode_flag)]));
    request("detaching an XDP program", RouteNetlinkMessage::SetLink(link), Kind::Ack).map(|_| ())
}

/// Deletes the clsact qdisc of `ifindex` (`RTM_DELQDISC`, kind "clsact",
/// so an `ingress` qdisc sharing the handle is never touched).
pub(crate) fn delete_clsact(ifindex: u32) -> io::Result<()> {
    let mut tc = TcMessage::with_index(ifindex as i32);
    tc.header.parent = TcHandle::CLSACT;
    tc.header.handle = CLSACT_HANDLE;
    tc.attributes.push(TcAttribute::Kind("clsact".to_string()));
    request("deleting the clsact qdisc", RouteNetlinkMessage::DelQueueDiscipline(tc), Kind::Ack).map(|_| ())
}

/// The cls_bpf filters on `ifindex`'s clsact `minor` (ingress/egress).
pub(crate) fn clsact_bpf_filters(ifindex: u32, minor: u16) -> io::Result<Vec<BpfFilter>> {
    let mut tc = TcMessage::with_index(ifindex as i32);
    tc.header.parent = TcHandle { major: 0xffff, minor };
    let answers = request("listing clsact filters", RouteNetlinkMessage::GetTrafficFilter(tc), Kind::Dump)?;
    let mut out = Vec::new();
    for m in answers {
        let RouteNetlinkMessage::NewTrafficFilter(f) = m else { continue };
        let (mut name, mut prog_id) = (None, None);
        for a in &f.attributes {
            if let TcAttribute::Options(opts) = a {
                for o in opts {
                    match o {
                        TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => name = Some(n.clone()),
                        TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => prog_id = Some(*id),
                        _ => {}
                    }
                }
            }
        }
        if let (Some(name), Some(prog_id)) = (name, prog_id) {
            let handle = (u32::from(f.header.handle.major) << 16) | u32::from(f.header.handle.minor);
            out.push(BpfFilter { name, prog_id, priority: (f.header.info >> 16) as u16, handle });
        }
    }
    Ok(out)
}

/// How many TC filters hang off the clsact qdisc of `ifindex` (ingress
/// and egress): a qdisc someone else has since used is not ours to delete.
pub(crate) fn clsact_filters(ifindex: u32) -> io::Result<usize> {
    let mut n = 0;
    for minor in [TcHandle::MIN_INGRESS, TcHandle::MIN_EGRESS] {
        let mut tc = TcMessage::with_index(ifindex as i32);
        tc.header.parent = TcHandle { major: 0xffff, minor };
        let answers = request("listing clsact filters", RouteNetlinkMessage::GetTrafficFilter(tc), Kind::Dump)?;
        n += answers.iter().filter(|m| matches!(m, RouteNetlinkMessage::NewTrafficFilter(_))).count();
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_program_is_placed_by_its_mode() {
        let s = XdpSlot::from_attrs(&[LinkXdp::Attached(XdpAttached::SocketBuffer), LinkXdp::ProgId(42)]);
        assert_eq!(s, XdpSlot { driver: None, skb: Some(42), hw: None });
        assert_eq!(s.holder(), Some(42));
        assert_eq!(s.occupied().collect::<Vec<_>>(), vec![(XDP_FLAGS_SKB_MODE, 42)]);
    }

    #[test]
    fn multi_attach_lists_every_mode_and_names_native_first() {
        let s = XdpSlot::from_attrs(&[
            LinkXdp::Attached(XdpAttached::Multiple),
            LinkXdp::ProgId(0),
            LinkXdp::DrvProgId(7),
            LinkXdp::HwProgId(9),
        ]);
        assert_eq!(s.holder(), Some(7));
        assert_eq!(s.occupied().collect::<Vec<_>>(), vec![(XDP_FLAGS_DRV_MODE, 7), (XDP_FLAGS_HW_MODE, 9)]);
    }

    #[test]
    fn empty_slot_has_no_holder() {
        let s = XdpSlot::from_attrs(&[LinkXdp::Attached(XdpAttached::None)]);
        assert_eq!(s.holder(), None);
        assert_eq!(s.occupied().count(), 0);
    }
}
