//! ICMP and ICMPv6 numbers, and what they mean in words.
//!
//! The words are the product: they end up in explanations, JSON and metric
//! labels, so they live here, next to the numbers, for both sides to share.

/// ICMP for IPv4 (RFC 792, 1191, 1812).
pub mod v4 {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACH: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;

    /// Destination-unreachable codes.
    pub mod unreach {
        pub const NET: u8 = 0;
        pub const HOST: u8 = 1;
        pub const PROTOCOL: u8 = 2;
        pub const PORT: u8 = 3;
        pub const FRAG_NEEDED: u8 = 4;
        pub const SOURCE_ROUTE_FAILED: u8 = 5;
        pub const NET_UNKNOWN: u8 = 6;
        pub const HOST_UNKNOWN: u8 = 7;
        pub const HOST_ISOLATED: u8 = 8;
        pub const NET_PROHIBITED: u8 = 9;
        pub const HOST_PROHIBITED: u8 = 10;
        pub const NET_UNREACH_TOS: u8 = 11;
        pub const HOST_UNREACH_TOS: u8 = 12;
        pub const ADMIN_PROHIBITED: u8 = 13;
        pub const HOST_PRECEDENCE: u8 = 14;
        pub const PRECEDENCE_CUTOFF: u8 = 15;
    }
}

/// ICMPv6 (RFC 4443, 4861).
pub mod v6 {
    pub const DEST_UNREACH: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const REDIRECT: u8 = 137;

    pub mod unreach {
        pub const NO_ROUTE: u8 = 0;
        pub const ADMIN_PROHIBITED: u8 = 1;
        pub const BEYOND_SCOPE: u8 = 2;
        pub const ADDRESS: u8 = 3;
        pub const PORT: u8 = 4;
        pub const POLICY_FAIL: u8 = 5;
        pub const REJECT_ROUTE: u8 = 6;
    }
}

/// The broad class an ICMP error falls in: what an operator does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum Verdict {
    /// An ACL or firewall rejected the packet (admin prohibited).
    Rejected,
    /// No route / host down / nothing listening / protocol not supported.
    Unreachable,
    /// The packet is too big for a link and may not be fragmented.
    FragNeeded,
    /// TTL / hop limit ran out (traceroute, or a routing loop).
    TtlExpired,
    /// Fragment reassembly timed out at the destination.
    ReassemblyTimeout,
    /// A router told us to use another gateway.
    Redirect,
    /// A header field was malformed or unsupported.
    ParameterProblem,
    /// Deprecated congestion signal.
    SourceQuench,
    /// A DF packet on this gateway is bigger than its egress MTU.
    DfOversized,
    /// Anything else.
    Other,
}

impl Verdict {
    pub const ALL: [Verdict; 10] = [
        Verdict::Rejected,
        Verdict::Unreachable,
        Verdict::FragNeeded,
        Verdict::TtlExpired,
        Verdict::ReassemblyTimeout,
        Verdict::Redirect,
        Verdict::ParameterProblem,
        Verdict::SourceQuench,
        Verdict::DfOversized,
        Verdict::Other,
    ];

    /// Stable snake_case name (JSON, metric label).
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Rejected => "rejected",
            Verdict::Unreachable => "unreachable",
            Verdict::FragNeeded => "frag_needed",
            Verdict::TtlExpired => "ttl_expired",
            Verdict::ReassemblyTimeout => "reassembly_timeout",
            Verdict::Redirect => "redirect",
            Verdict::ParameterProblem => "parameter_problem",
            Verdict::SourceQuench => "source_quench",
            Verdict::DfOversized => "df_oversized",
            Verdict::Other => "other",
        }
    }
}

/// Everything we say about one (family, type, code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meaning {
    pub verdict: Verdict,
    /// The RFC name, e.g. "host administratively prohibited".
    pub name: &'static str,
    /// What it usually means in practice.
    pub hint: &'static str,
    /// Linux traceroute annotation (`!X`, `!H`, ...), "" when none.
    pub annotation: &'static str,
}

const fn m(verdict: Verdict, name: &'static str, hint: &'static str, annotation: &'static str) -> Meaning {
    Meaning { verdict, name, hint, annotation }
}

const ACL: &str = "an ACL or firewall rejects it";

/// The meaning of an ICMP (family 4) or ICMPv6 (family 6) type/code.
pub const fn meaning(family: u8, icmp_type: u8, code: u8) -> Meaning {
    use Verdict::*;
    if family == 4 {
        match (icmp_type, code) {
            (3, 0) => m(Unreachable, "net unreachable", "a router has no route to the destination network", "!N"),
            (3, 1) => m(
                Unreachable,
                "host unreachable",
                "the last router cannot reach the host (ARP fails: host down or wrong address)",
                "!H",
            ),
            (3, 2) => m(Unreachable, "protocol unreachable", "the destination does not speak this IP protocol", "!P"),
            (3, 3) => {
                m(Unreachable, "port unreachable", "the destination is up but nothing listens on the port (UDP)", "")
            }
            (3, 4) => m(
                FragNeeded,
                "fragmentation needed and DF set",
                "a link on the path has a smaller MTU; the sender must send smaller packets",
                "!F",
            ),
            (3, 5) => m(Unreachable, "source route failed", "a source-routed packet could not follow its route", "!S"),
            (3, 6) => m(Unreachable, "destination network unknown", "the network is not known to a router", "!N"),
            (3, 7) => m(Unreachable, "destination host unknown", "the host is not known to the last router", "!H"),
            (3, 8) => m(Unreachable, "source host isolated", "obsolete: the source is cut off", "!<8>"),
            (3, 9) => m(Rejected, "net administratively prohibited", ACL, "!X"),
            (3, 10) => m(Rejected, "host administratively prohibited", ACL, "!X"),
            (3, 11) => m(Unreachable, "net unreachable for TOS", "no route for this type of service", "!<11>"),
            (3, 12) => {
                m(Unreachable, "host unreachable for TOS", "no route to the host for this type of service", "!<12>")
            }
            (3, 13) => m(Rejected, "communication administratively prohibited", ACL, "!X"),
            (3, 14) => m(
                Rejected,
                "host precedence violation",
                "the IP precedence is not allowed for this source/destination",
                "!V",
            ),
            (3, 15) => m(Rejected, "precedence cutoff in effect", "the network requires a higher IP precedence", "!C"),
            (3, _) => m(
                Unreachable,
                "destination unreachable (unknown code)",
                "an unreachable with a code outside RFC 792/1812",
                "!?",
            ),
            (4, _) => m(
                SourceQuench,
                "source quench",
                "deprecated congestion signal (RFC 6633); usually a very old device",
                "",
            ),
            (5, 0) => m(Redirect, "redirect for network", "a router says another gateway on our link is better", ""),
            (5, 1) => m(Redirect, "redirect for host", "a router says another gateway on our link is better", ""),
            (5, _) => m(Redirect, "redirect", "a router says another gateway on our link is better", ""),
            (11, 0) => m(
                TtlExpired,
                "TTL exceeded in transit",
                "the TTL ran out: a traceroute hop, or a routing loop when unexpected",
                "",
            ),
            (11, 1) => m(
                ReassemblyTimeout,
                "fragment reassembly time exceeded",
                "fragments were lost on the way: the receiver gave up reassembling",
                "",
            ),
            (11, _) => m(TtlExpired, "time exceeded", "the TTL ran out", ""),
            (12, 0) => m(
                ParameterProblem,
                "parameter problem (pointer indicates the error)",
                "a header field was rejected",
                "",
            ),
            (12, 1) => m(
                ParameterProblem,
                "parameter problem: missing required option",
                "a required IP option was missing",
                "",
            ),
            (12, 2) => m(ParameterProblem, "parameter problem: bad length", "the header length was wrong", ""),
            (12, _) => m(ParameterProblem, "parameter problem", "a header field was rejected", ""),
            _ => m(Other, "other ICMP", "", ""),
        }
    } else {
        match (icmp_type, code) {
            (1, 0) => m(Unreachable, "no route to destination", "a router has no route to the destination", "!N"),
            (1, 1) => m(Rejected, "communication with destination administratively prohibited", ACL, "!X"),
            (1, 2) => m(
                Unreachable,
                "beyond scope of source address",
                "the source address's scope does not reach the destination",
                "!S",
            ),
            (1, 3) => m(
                Unreachable,
                "address unreachable",
                "the last router cannot reach the host (neighbour discovery fails)",
                "!H",
            ),
            (1, 4) => {
                m(Unreachable, "port unreachable", "the destination is up but nothing listens on the port (UDP)", "")
            }
            (1, 5) => m(
                Rejected,
                "source address failed ingress/egress policy",
                "a policy filter rejects our source address",
                "!X",
            ),
            (1, 6) => {
                m(Rejected, "reject route to destination", "a reject route (or firewall) refuses the destination", "!X")
            }
            (1, _) => m(Unreachable, "destination unreachable (unknown code)", "", "!?"),
            (2, _) => m(
                FragNeeded,
                "packet too big",
                "a link on the path has a smaller MTU; the sender must send smaller packets",
                "!F",
            ),
            (3, 0) => m(
                TtlExpired,
                "hop limit exceeded in transit",
                "the hop limit ran out: a traceroute hop, or a routing loop when unexpected",
                "",
            ),
            (3, 1) => m(ReassemblyTimeout, "fragment reassembly time exceeded", "fragments were lost on the way", ""),
            (3, _) => m(TtlExpired, "time exceeded", "", ""),
            (4, 0) => m(ParameterProblem, "erroneous header field", "a header field was rejected", ""),
            (4, 1) => m(
                ParameterProblem,
                "unrecognized next header",
                "an extension header or protocol was not understood",
                "",
            ),
            (4, 2) => m(ParameterProblem, "unrecognized IPv6 option", "an option was not understood", ""),
            (4, _) => m(ParameterProblem, "parameter problem", "", ""),
            (137, _) => m(Redirect, "redirect", "a router says another first hop is better", ""),
            _ => m(Other, "other ICMPv6", "", ""),
        }
    }
}
