//! `watch --all` follows interfaces: ones that appear later are attached,
//! vanished ones forgotten.
//!
//! The kernel announces every link change on the rtnetlink `RTNLGRP_LINK`
//! group. [`LinkEvents`] subscribes *before* the interfaces are listed, so
//! one created in between is not missed (its announcement for an interface
//! already attached is simply ignored). A failed attach is a transient
//! error (counted, logged, never fatal); the next announcement for that
//! interface (there are several as it comes up) tries again.

use futures::StreamExt as _;
use rtnetlink::{
    MulticastGroup,
    packet_core::{NetlinkMessage, NetlinkPayload},
    packet_route::{
        RouteNetlinkMessage,
        link::{LinkAttribute, LinkFlags, LinkMessage},
    },
    sys::SocketAddr,
};

use super::{Attached, Session};
use crate::health::{self, Op};

/// A change to this namespace's interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkChange {
    /// A link exists (new, or changed state): attach it unless it is.
    Appeared { iface: String, ifindex: u32 },
    /// A link is gone (deleted or moved to another namespace).
    Vanished { ifindex: u32 },
}

impl LinkChange {
    /// What a link announcement means for `--all` (lo is never observed).
    fn from_message(msg: &RouteNetlinkMessage) -> Option<LinkChange> {
        let link_name = |l: &LinkMessage| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
        };
        match msg {
            RouteNetlinkMessage::NewLink(l) if !l.header.flags.contains(LinkFlags::Loopback) => {
                link_name(l).map(|iface| LinkChange::Appeared { iface, ifindex: l.header.index })
            }
            RouteNetlinkMessage::DelLink(l) => Some(LinkChange::Vanished { ifindex: l.header.index }),
            _ => None,
        }
    }
}

type Messages = futures::channel::mpsc::UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

/// Link announcements, as a stream that never ends: if the subscription
/// breaks, that is counted once and `--all` stops following (what is
/// attached stays attached).
pub struct LinkEvents {
    rx: Option<Messages>,
}

impl LinkEvents {
    /// Subscribes to `RTNLGRP_LINK`. Must run inside the tokio runtime.
    pub fn subscribe() -> anyhow::Result<LinkEvents> {
        use anyhow::Context as _;
        let (conn, _handle, rx) = rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
            .context("subscribing to link announcements (rtnetlink RTNLGRP_LINK)")?;
        tokio::spawn(conn);
        Ok(LinkEvents { rx: Some(rx) })
    }

    /// A stream that never yields: `watch` without `--all`.
    pub fn none() -> LinkEvents {
        LinkEvents { rx: None }
    }

    /// The next change; pending forever once the subscription is gone.
    pub async fn next(&mut self) -> LinkChange {
        loop {
            let Some(rx) = &mut self.rx else { return std::future::pending().await };
            match rx.next().await {
                Some((msg, _)) => {
                    if let NetlinkPayload::InnerMessage(m) = &msg.payload
                        && let Some(change) = LinkChange::from_message(m)
                    {
                        return change;
                    }
                }
                None => {
                    health::transient(
                        Op::Attach,
                        &"the link announcement subscription ended; --all no longer follows new interfaces",
                    );
                    self.rx = None;
                }
            }
        }
    }
}

/// What [`apply`] did.
#[derive(Clone, Debug)]
pub enum Applied {
    Attached(Attached),
    Detached(Attached),
}

/// Attaches an interface that appeared, forgets one that vanished. Failures
/// are transient errors: counted, logged, never fatal.
pub fn apply(session: &mut Session, change: LinkChange) -> Option<Applied> {
    match change {
        LinkChange::Appeared { iface, ifindex } => {
            if session.attached.iter().any(|a| a.ifindex == ifindex) {
                return None;
            }
            match session.attach_iface(&iface) {
                Ok(a) => a.cloned().map(Applied::Attached),
                Err(e) => {
                    health::transient(Op::Attach, &format!("attaching {iface}, which appeared: {e:#}"));
                    None
                }
            }
        }
        LinkChange::Vanished { ifindex } => session.detach_iface(ifindex, true).map(Applied::Detached),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, flags: LinkFlags) -> LinkMessage {
        let mut l = LinkMessage::default();
        l.header.index = index;
        l.header.flags = flags;
        l.attributes.push(LinkAttribute::IfName(name.into()));
        l
    }

    #[test]
    fn new_links_appear_and_deleted_ones_vanish() {
        let veth = link(7, "veth7", LinkFlags::Up);
        assert_eq!(
            LinkChange::from_message(&RouteNetlinkMessage::NewLink(veth.clone())),
            Some(LinkChange::Appeared { iface: "veth7".into(), ifindex: 7 })
        );
        assert_eq!(
            LinkChange::from_message(&RouteNetlinkMessage::DelLink(veth)),
            Some(LinkChange::Vanished { ifindex: 7 })
        );
    }

    #[test]
    fn loopback_and_other_messages_are_ignored() {
        let lo = link(1, "lo", LinkFlags::Loopback | LinkFlags::Up);
        assert_eq!(LinkChange::from_message(&RouteNetlinkMessage::NewLink(lo)), None);
        assert_eq!(LinkChange::from_message(&RouteNetlinkMessage::GetLink(LinkMessage::default())), None);
    }
}
