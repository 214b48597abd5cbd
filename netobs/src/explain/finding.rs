//! One kernel event, explained.

use std::net::IpAddr;

use netobs_common::{
    Event,
    event::{flags, have, kind},
    icmp::{self, Meaning, Verdict},
    wire::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
};

use super::{context::HostContext, hops};

/// Which way the affected traffic was going, from this host's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// We sent it as a client (or the flow has no listener here).
    Outgoing,
    /// Our answer to someone who connected to us (a SYN-ACK, or from a
    /// port we listen on).
    Return,
    /// Neither end is this host: we only route it.
    Forwarded,
    /// This host itself sent the ICMP error (seen on egress).
    SentByUs,
    /// A DF packet this gateway cannot forward (egress MTU too small).
    Oversized,
}

impl Direction {
    pub fn words(self) -> &'static str {
        match self {
            Direction::Outgoing => "outgoing traffic",
            Direction::Return => "return traffic",
            Direction::Forwarded => "forwarded traffic",
            Direction::SentByUs => "traffic we answered with an ICMP error",
            Direction::Oversized => "forwarded DF traffic",
        }
    }
}

/// A host fact a join could not establish (its netlink lookup failed or
/// timed out, or it was skipped under load). The words then say nothing
/// that depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fact {
    /// Whether this host listens on the quoted source port (it decides
    /// "return" versus "outgoing" for anything but a SYN-ACK).
    Listeners,
    /// The local TCP socket of the flow and its state.
    SocketState,
    /// The pre-NAT flow (conntrack).
    NatOriginal,
    /// The path MTU our route cache holds for the destination.
    PmtuCache,
}

impl Fact {
    pub fn words(self) -> &'static str {
        match self {
            Fact::Listeners => "whether we listen on that port",
            Fact::SocketState => "the local socket's state",
            Fact::NatOriginal => "whether this host NATed the flow",
            Fact::PmtuCache => "what our route cache holds",
        }
    }
}

/// The flow a quoted packet belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Flow {
    /// "tcp", "udp", "icmp", "ipv6-icmp" or the protocol number.
    pub protocol: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// For ICMP echo: identifier (in `src_port`'s place) and sequence.
    pub echo_id: Option<u16>,
}

/// One explained event.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Finding {
    /// "icmp_error", "icmp_sent" or "df_oversized".
    pub kind: &'static str,
    pub verdict: Verdict,
    pub family: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// RFC name of the type/code.
    pub icmp_name: &'static str,
    /// What it usually means.
    pub hint: &'static str,
    /// Linux traceroute annotation (!X, !H, ...), empty when none.
    pub annotation: &'static str,
    /// Who sent the ICMP error (DF-oversized: the packet's source).
    pub reporter: IpAddr,
    /// To whom it was sent.
    pub to: IpAddr,
    /// Interface it was seen on.
    pub iface: String,
    pub direction: Direction,
    /// The flow of the quoted (or oversized) packet, when the quote had it.
    pub flow: Option<Flow>,
    /// TCP flags of the quoted packet in words ("SYN-ACK"), when present.
    pub tcp_flags: Option<String>,
    pub hops: Option<hops::HopEstimate>,
    /// Announced MTU (frag-needed / Packet Too Big) or the egress MTU.
    pub mtu: Option<u32>,
    /// Length of the quoted / oversized packet (its IP total length).
    pub packet_len: Option<u16>,
    pub gateway: Option<IpAddr>,
    pub pointer: Option<u32>,
    /// DF-oversized: the egress interface that is too small.
    pub egress_iface: Option<String>,
    /// The quote stopped before the transport ports.
    pub quote_truncated: bool,
    /// The datapath's copy of the message (120 bytes) ended before the
    /// quote's transport header: ports or TCP flags are missing because of
    /// netobs, not the reporter (`flags::CAPTURE_CUT`).
    pub capture_cut: bool,
    /// The local TCP socket the flow belongs to, with its state.
    pub socket_state: Option<&'static str>,
    /// DF-oversized: the frag-needed this host generated / sent back.
    pub icmp_back: Option<super::IcmpBack>,
    /// Frag-needed about our own traffic: the PMTU our route cache now
    /// holds for the destination (`None`: it holds none).
    pub pmtu_cached: Option<u32>,
    /// The flow before NAT, when the quoted packet was translated by this
    /// host (conntrack): the client that is really affected.
    pub nat_original: Option<Flow>,
    /// Facts the joins could not establish.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<Fact>,
    /// Frag-needed / Packet Too Big that is not believed, and why (see
    /// [`super::ptb`]): no MTU or MSS advice comes from it.
    pub ptb_suspect: Option<super::ptb::PtbSuspect>,
    /// RFC 4884 extension objects the error carried (MPLS labels,
    /// interface information); absent when it carried none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions: Option<super::ext::Extensions>,
}

/// Protocol name as `ip`/`ss` print it.
pub fn protocol_name(p: u8) -> String {
    match p {
        IPPROTO_TCP => "tcp".into(),
        IPPROTO_UDP => "udp".into(),
        IPPROTO_ICMP => "icmp".into(),
        IPPROTO_ICMPV6 => "ipv6-icmp".into(),
        other => other.to_string(),
    }
}

/// TCP flags in the usual words.
pub fn tcp_flags_words(f: u8) -> String {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const RST: u8 = 0x04;
    const FIN: u8 = 0x01;
    const PSH: u8 = 0x08;
    match f & (SYN | ACK | RST | FIN) {
        x if x == SYN | ACK => "SYN-ACK".into(),
        SYN => "SYN".into(),
        x if x & RST != 0 => "RST".into(),
        x if x & FIN != 0 => "FIN".into(),
        ACK if f & PSH != 0 => "data".into(),
        ACK => "ACK".into(),
        _ => format!("flags 0x{f:02x}"),
    }
}

impl Finding {
    /// Explains one event. Returns `None` for records of an unknown kind.
    pub fn from_event(ev: &Event, ctx: &HostContext) -> Option<Finding> {
        let family = if ev.outer_family == 6 { 6 } else { 4 };
        let p = &ev.inner;
        let has_ip = p.have & have::IP != 0;
        let flow = has_ip.then(|| {
            let ports = p.have & have::PORTS != 0;
            let echo = p.have & have::ECHO != 0;
            Flow {
                protocol: protocol_name(p.protocol),
                src: p.src_ip(),
                dst: p.dst_ip(),
                src_port: (ports && !echo).then_some(p.src_port),
                dst_port: (ports && !echo).then_some(p.dst_port),
                echo_id: echo.then_some(p.src_port),
            }
        });
        let tcp_flags =
            (p.protocol == IPPROTO_TCP && p.have & have::TCP_FLAGS != 0).then(|| tcp_flags_words(p.tcp_flags));
        let iface = ctx.ifname(ev.ifindex);
        let packet_len = has_ip.then_some(p.total_len);

        if ev.kind == kind::DF_OVERSIZED {
            return Some(Finding {
                kind: "df_oversized",
                verdict: Verdict::DfOversized,
                family,
                icmp_type: 0,
                icmp_code: 0,
                icmp_name: "",
                hint: "a DF packet is bigger than its egress MTU: the kernel drops it and should send frag-needed / Packet Too Big to its source",
                annotation: "",
                reporter: ev.outer_src_ip(),
                to: ev.outer_dst_ip(),
                iface,
                direction: Direction::Oversized,
                flow,
                tcp_flags,
                hops: None,
                mtu: Some(ev.mtu),
                packet_len,
                gateway: None,
                pointer: None,
                egress_iface: Some(ctx.ifname(ev.aux)),
                quote_truncated: false,
                capture_cut: false,
                socket_state: None,
                icmp_back: None,
                pmtu_cached: None,
                nat_original: None,
                unknown: Vec::new(),
                ptb_suspect: None,
                extensions: None,
            });
        }
        if ev.kind != kind::ICMP_ERROR && ev.kind != kind::ICMP_SENT {
            return None;
        }
        // TC egress also sees ICMP errors we only route; those are explained
        // where they arrive, not again as "sent by us".
        if ev.kind == kind::ICMP_SENT && !ctx.is_local(&ev.outer_src_ip()) {
            return None;
        }
        let Meaning { verdict, name, hint, annotation } = icmp::meaning(family, ev.icmp_type, ev.icmp_code);
        let reporter = ev.outer_src_ip();
        let local_origin = has_ip && ctx.is_local(&p.src_ip());
        let mut unknown = Vec::new();
        let direction = if ev.kind == kind::ICMP_SENT {
            Direction::SentByUs
        } else if !has_ip {
            Direction::Outgoing
        } else if local_origin {
            let is_synack = p.protocol == IPPROTO_TCP && p.have & have::TCP_FLAGS != 0 && p.tcp_flags & 0x12 == 0x12;
            let from_listener = p.protocol == IPPROTO_TCP && ctx.listening_tcp.contains(&p.src_port);
            if !is_synack && p.protocol == IPPROTO_TCP && !ctx.listeners_known {
                unknown.push(Fact::Listeners);
            }
            if is_synack || from_listener { Direction::Return } else { Direction::Outgoing }
        } else {
            // Not sent by us: routed through us (or, when we are the quoted
            // destination, someone else's packet to us was reported).
            Direction::Forwarded
        };
        // Only the announced MTU can be judged here; whether the quoted
        // flow is one this host sent is for the joins to say.
        let mtu = (ev.flags & flags::HAS_MTU != 0).then_some(ev.mtu);
        let ptb_suspect = match (verdict, mtu) {
            (Verdict::FragNeeded, Some(m)) => super::ptb::judge_ptb(family, m, packet_len, None).first(),
            _ => None,
        };
        let hops = (ev.kind == kind::ICMP_ERROR).then(|| {
            let reporter_is_destination = has_ip && reporter == p.dst_ip();
            hops::estimate(ev, local_origin, ctx.initial_ttl(family), reporter_is_destination)
        });
        Some(Finding {
            kind: if ev.kind == kind::ICMP_SENT { "icmp_sent" } else { "icmp_error" },
            verdict,
            family,
            icmp_type: ev.icmp_type,
            icmp_code: ev.icmp_code,
            icmp_name: name,
            hint,
            annotation,
            reporter,
            to: ev.outer_dst_ip(),
            iface,
            direction,
            flow,
            tcp_flags,
            hops,
            mtu,
            packet_len,
            gateway: (ev.flags & flags::HAS_GATEWAY != 0).then(|| ev.gateway_ip()),
            pointer: (ev.flags & flags::HAS_POINTER != 0).then_some(ev.aux),
            egress_iface: None,
            quote_truncated: ev.flags & flags::QUOTE_TRUNCATED != 0,
            capture_cut: ev.flags & flags::CAPTURE_CUT != 0,
            socket_state: None,
            icmp_back: None,
            pmtu_cached: None,
            nat_original: None,
            unknown,
            ptb_suspect,
            extensions: super::ext::Extensions::from_event(ev),
        })
    }

    /// The quoted packet was NATed by this host on behalf of `original`'s
    /// client: the traffic is forwarded, and only the outer TTL speaks for
    /// the reporter's distance from us.
    pub fn set_nat_original(&mut self, original: Flow) {
        self.direction = Direction::Forwarded;
        if let Some(h) = &mut self.hops {
            h.distance = h.by_outer;
            h.agree = None;
        }
        self.nat_original = Some(original);
    }
}

#[cfg(test)]
impl Finding {
    /// The fixture unit tests start from (and vary with struct update
    /// syntax): a received ICMP 3/10 rejecting our SYN-ACK
    /// 198.18.3.1:65000 -> 198.18.1.1:40000, no join done yet.
    pub(crate) fn example() -> Finding {
        Finding {
            kind: "icmp_error",
            verdict: Verdict::Rejected,
            family: 4,
            icmp_type: 3,
            icmp_code: 10,
            icmp_name: "host administratively prohibited",
            hint: "",
            annotation: "!X",
            reporter: "198.18.2.1".parse().unwrap(),
            to: "198.18.3.1".parse().unwrap(),
            iface: "eth0".into(),
            direction: Direction::Return,
            flow: Some(Flow {
                protocol: "tcp".into(),
                src: "198.18.3.1".parse().unwrap(),
                dst: "198.18.1.1".parse().unwrap(),
                src_port: Some(65000),
                dst_port: Some(40000),
                echo_id: None,
            }),
            tcp_flags: Some("SYN-ACK".into()),
            hops: None,
            mtu: None,
            packet_len: None,
            gateway: None,
            pointer: None,
            egress_iface: None,
            quote_truncated: false,
            capture_cut: false,
            socket_state: None,
            icmp_back: None,
            pmtu_cached: None,
            nat_original: None,
            unknown: Vec::new(),
            ptb_suspect: None,
            extensions: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netobs_common::PacketInfo;

    fn ctx() -> HostContext {
        HostContext {
            local_addrs: ["198.18.1.254".parse().unwrap()].into_iter().collect(),
            initial_ttl_v4: 64,
            initial_ttl_v6: 64,
            listeners_known: true,
            ..HostContext::default()
        }
    }

    fn sent_from(src: [u8; 4]) -> Event {
        let mut outer_src = [0u8; 16];
        outer_src[..4].copy_from_slice(&src);
        Event {
            kind: kind::ICMP_SENT,
            outer_family: 4,
            icmp_type: 3,
            icmp_code: 4,
            outer_src,
            inner: PacketInfo { family: 4, have: have::IP, ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn only_errors_we_originate_count_as_sent_by_us() {
        let ours = Finding::from_event(&sent_from([198, 18, 1, 254]), &ctx()).expect("ours");
        assert_eq!(ours.direction, Direction::SentByUs);
        assert_eq!(ours.kind, "icmp_sent");
        assert!(Finding::from_event(&sent_from([198, 18, 7, 7]), &ctx()).is_none(), "a routed error is not ours");
    }

    #[test]
    fn a_frag_needed_announcing_more_than_the_packet_is_suspect() {
        let mut ev = sent_from([198, 18, 2, 1]);
        ev.kind = kind::ICMP_ERROR;
        ev.flags = flags::HAS_MTU;
        ev.mtu = 9000;
        ev.inner.total_len = 1500;
        let f = Finding::from_event(&ev, &ctx()).expect("finding");
        assert_eq!(f.ptb_suspect, Some(super::super::ptb::PtbSuspect::MtuNotSmaller));
        assert!(super::super::words::advice(&f).contains("NOT BELIEVED"), "{}", super::super::words::advice(&f));
        assert!(!super::super::words::advice(&f).contains("TCP MSS"), "no MSS figure from a bogus PTB");
        // MTU 0 (pre-RFC 1191 router) is legal.
        ev.mtu = 0;
        assert_eq!(Finding::from_event(&ev, &ctx()).expect("finding").ptb_suspect, None);
        ev.mtu = 1400;
        assert_eq!(Finding::from_event(&ev, &ctx()).expect("finding").ptb_suspect, None);
    }

    /// A quote the datapath's copy cut is not blamed on the reporter: the
    /// finding says whose cut it was.
    #[test]
    fn a_cut_copy_is_told_apart_from_a_truncated_quote() {
        let mut ev = sent_from([198, 18, 2, 1]);
        ev.kind = kind::ICMP_ERROR;
        ev.flags = flags::CAPTURE_CUT;
        let f = Finding::from_event(&ev, &ctx()).expect("finding");
        assert!(f.capture_cut && !f.quote_truncated);
        ev.flags = flags::QUOTE_TRUNCATED;
        let f = Finding::from_event(&ev, &ctx()).expect("finding");
        assert!(!f.capture_cut && f.quote_truncated);
    }

    #[test]
    fn synack_from_us_is_return_traffic() {
        let mut ev = sent_from([198, 18, 2, 1]);
        ev.kind = kind::ICMP_ERROR;
        ev.icmp_code = 10;
        ev.outer_ttl = 63;
        ev.inner = PacketInfo {
            family: 4,
            src: ev.outer_src,
            protocol: 6,
            ttl: 62,
            src_port: 65000,
            dst_port: 56194,
            tcp_flags: 0x12,
            have: have::IP | have::PORTS | have::TCP_FLAGS,
            ..Default::default()
        };
        ev.inner.src[..4].copy_from_slice(&[198, 18, 1, 254]);
        let f = Finding::from_event(&ev, &ctx()).expect("finding");
        assert_eq!(f.direction, Direction::Return);
        assert_eq!(f.tcp_flags.as_deref(), Some("SYN-ACK"));
        assert_eq!(f.verdict, Verdict::Rejected);
        assert_eq!(f.hops.and_then(|h| h.distance), Some(2));
    }
}
