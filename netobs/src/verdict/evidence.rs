//! What the rules look at: the raw probe results ([`Evidence`], printed as
//! `evidence` in JSON) and the facts derived from them once ([`Facts`]), so
//! each rule reads a fact instead of re-deriving it from the traces.

use std::net::IpAddr;

use netobs_common::icmp;
use serde::Serialize;

use crate::{
    explain::ptb::PtbJudgement,
    probe::{
        packet::Proto,
        pmtu::{Blackhole, PmtuResult},
        tcp::{TcpResult, TcpState},
        trace::TraceResult,
    },
};

/// Result of the burst-then-spaced test on one hop.
#[derive(Clone, Debug, Serialize)]
pub struct RateTest {
    pub hop: u8,
    pub addr: Option<IpAddr>,
    pub burst_sent: u32,
    pub burst_answered: u32,
    pub spaced_sent: u32,
    pub spaced_answered: u32,
    pub spacing_ms: u64,
}

impl RateTest {
    /// Part of a burst lost, every spaced probe answered: the hop limits
    /// the rate of the ICMP it generates, it does not lose packets.
    pub fn confirms_rate_limit(&self) -> bool {
        self.burst_answered < self.burst_sent && self.spaced_sent > 0 && self.spaced_answered == self.spaced_sent
    }
}

/// A frag-needed / Packet Too Big the kernel observer saw arrive during the
/// run, judged (see [`crate::explain::ptb`]).
#[derive(Clone, Debug, Serialize)]
pub struct PtbSeen {
    pub from: IpAddr,
    pub mtu: u32,
    /// IP total length of the packet it quotes.
    pub quoted_len: Option<u16>,
    /// The quoted packet, "src -> dst proto".
    pub quoted: String,
    /// It quotes one of netobs's own probe flows.
    pub ours: bool,
    #[serde(flatten)]
    pub judgement: PtbJudgement,
    /// Sampled events of this (reporter, MTU, flow).
    pub count: u64,
}

/// What the kernel observer saw on the egress interface while the probes
/// ran.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KernelView {
    pub iface: String,
    /// All ICMP/ICMPv6 errors that arrived on the interface (exact counters).
    pub icmp_errors: u64,
    pub time_exceeded: u64,
    pub unreachable: u64,
    pub too_big: u64,
    /// ICMP errors our probe sockets matched to our probes.
    pub matched_by_probes: u64,
    /// ICMP errors (sampled events) quoting one of netobs's own probe
    /// flows: the only ones that speak for the return path of the probes.
    pub ours: u64,
    /// Of `ours`: errors for probes whose answer no probe socket received,
    /// late answers included: the answer reached the interface and this
    /// host dropped it (matched per probe token).
    pub lost: u64,
    /// Of `ours`: errors whose probe token the event does not carry (IPv6
    /// UDP probes keep it in the payload); for these only the counts
    /// (`ours` against `matched_by_probes`) can speak.
    pub untracked: u64,
    /// Sampled ICMP errors quoting other flows (unrelated traffic).
    pub foreign: u64,
    /// Events the kernel did not record (token bucket or full ring) during
    /// the run: when non-zero, `ours` and `foreign` are lower bounds.
    pub not_sampled: u64,
    /// Frag-needed / Packet Too Big seen (at most [`KernelView::MAX_PTBS`]
    /// distinct ones).
    pub ptbs: Vec<PtbSeen>,
}

impl KernelView {
    /// Distinct PTBs kept: a flood of forged ones must not grow the report.
    pub const MAX_PTBS: usize = 16;

    /// "12" or "at least 12 (sampled)": counts from events say so.
    pub fn sampled_count(&self, n: u64) -> String {
        if self.not_sampled > 0 { format!("at least {n} (events are sampled)") } else { n.to_string() }
    }
}

/// Everything `explain` gathered.
#[derive(Clone, Debug, Serialize)]
pub struct Evidence {
    pub target: IpAddr,
    pub proto: Proto,
    pub port: Option<u16>,
    /// Trace with the service's protocol and port.
    pub service: Option<TraceResult>,
    /// Trace with ICMP echo (for comparison).
    pub icmp: Option<TraceResult>,
    pub tcp: Option<TcpResult>,
    pub pmtu: Option<PmtuResult>,
    pub rate: Option<RateTest>,
    pub kernel: Option<KernelView>,
    /// Why the kernel view is missing, if it is.
    pub kernel_note: Option<String>,
    /// Probes that were cut short because the verdict was already decided
    /// (e.g. "tcp: both traces ended before the destination"), so a reader
    /// knows why they say less.
    #[serde(default)]
    pub stopped_early: Vec<String>,
}

/// A reject / unreachable from a router (or a reject from the destination)
/// quoting our service probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reject {
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub from: IpAddr,
    pub hop: Option<u8>,
    /// Probes that drew this answer.
    pub count: u32,
}

/// Facts derived once from the [`Evidence`]; every rule reads these.
pub struct Facts<'a> {
    pub e: &'a Evidence,
    pub family: u8,
    /// The service in words ("TCP to port 443", "ICMP echo").
    pub service: String,
    /// Hop where the destination answered, from any probe.
    pub dest_hop: Option<u8>,
    /// The service protocol itself got an answer from the destination.
    pub service_reached: bool,
    pub reject: Option<Reject>,
    /// A PMTU blackhole that survived its confirmation (no too-big at all,
    /// the boundary size lost at least twice).
    pub blackhole: Option<&'a Blackhole>,
    /// A hop whose rate test confirmed rate limiting.
    pub rate_limit: Option<&'a RateTest>,
    /// The ICMP echo trace got further than the service trace.
    pub icmp_further: Option<&'a TraceResult>,
    /// The kernel saw ICMP errors answering our probes that no probe socket
    /// received: answers reach the interface and are lost on this host.
    pub lost_locally: Option<&'a KernelView>,
    /// The evidence line (probes, kernel counts).
    pub evidence_line: String,
}

impl<'a> Facts<'a> {
    pub fn new(e: &'a Evidence) -> Facts<'a> {
        let family = if e.target.is_ipv4() { 4 } else { 6 };
        let service_reached = e.service.as_ref().is_some_and(|t| t.reached_at.is_some())
            || e.tcp.as_ref().is_some_and(|t| matches!(t.state, TcpState::Open | TcpState::Closed));
        let last = e.service.as_ref().and_then(|s| s.last_answering);
        let icmp_further =
            e.icmp.as_ref().filter(|i| i.reached_at.is_some() || i.last_answering.unwrap_or(0) > last.unwrap_or(0));
        Facts {
            e,
            family,
            service: super::words::service(e.proto, e.port),
            dest_hop: dest_hop(e),
            service_reached,
            reject: find_reject(e, family),
            blackhole: e
                .pmtu
                .as_ref()
                .and_then(|p| p.blackhole.as_ref())
                .filter(|b| b.too_big_seen == 0 && b.lost_probes >= 2),
            rate_limit: e.rate.as_ref().filter(|r| r.confirms_rate_limit()),
            icmp_further,
            lost_locally: e.kernel.as_ref().filter(|k| k.lost > 0 || (k.untracked > 0 && k.ours > k.matched_by_probes)),
            evidence_line: super::words::evidence_line(e),
        }
    }

    /// Where `addr` answered as a hop, in either trace.
    pub fn hop_of(&self, addr: IpAddr) -> Option<u8> {
        let e = self.e;
        e.service.as_ref().and_then(|t| t.hop_of(addr)).or_else(|| e.icmp.as_ref().and_then(|t| t.hop_of(addr)))
    }

    /// Who answered at `ttl`, in either trace.
    pub fn addr_at(&self, ttl: u8) -> Option<IpAddr> {
        let e = self.e;
        e.service
            .as_ref()
            .and_then(|t| t.hop(ttl))
            .and_then(|h| h.addr())
            .or_else(|| e.icmp.as_ref().and_then(|t| t.hop(ttl)).and_then(|h| h.addr()))
    }
}

/// The hop where the destination answered, from any probe.
fn dest_hop(e: &Evidence) -> Option<u8> {
    e.service
        .as_ref()
        .and_then(|t| t.reached_at)
        .or_else(|| e.icmp.as_ref().and_then(|t| t.reached_at))
        .or_else(|| e.pmtu.as_ref().and_then(|p| p.dest_hops))
}

fn hop_of(e: &Evidence, addr: IpAddr) -> Option<u8> {
    e.service.as_ref().and_then(|t| t.hop_of(addr)).or_else(|| e.icmp.as_ref().and_then(|t| t.hop_of(addr)))
}

/// A reject / unreachable from a router (not the destination), or a reject
/// from the destination itself, quoting our service probes. The TCP check
/// speaks first: its SYN went with TTL 64, like real traffic.
fn find_reject(e: &Evidence, family: u8) -> Option<Reject> {
    if let Some(t) = e.tcp.as_ref().filter(|t| t.state == TcpState::Icmp)
        && let Some(i) = &t.icmp
        && (i.from != e.target || icmp::meaning(family, i.icmp_type, i.code).verdict == icmp::Verdict::Rejected)
    {
        return Some(Reject {
            icmp_type: i.icmp_type,
            icmp_code: i.code,
            from: i.from,
            hop: hop_of(e, i.from).or(i.hop_by_quote),
            count: e.service.as_ref().map_or(0, |s| count_errors(s, i.from)) + 1,
        });
    }
    let s = e.service.as_ref()?;
    for h in &s.hops {
        for p in &h.probes {
            let (Some(from), Some(t), Some(c)) = (p.from, p.icmp_type, p.icmp_code) else { continue };
            if p.reply != "unreachable" {
                continue;
            }
            if from != e.target || icmp::meaning(family, t, c).verdict == icmp::Verdict::Rejected {
                return Some(Reject {
                    icmp_type: t,
                    icmp_code: c,
                    from,
                    hop: hop_of(e, from).or(Some(h.ttl)),
                    count: count_errors(s, from),
                });
            }
        }
    }
    None
}

fn count_errors(t: &TraceResult, from: IpAddr) -> u32 {
    t.hops.iter().flat_map(|h| &h.probes).filter(|p| p.from == Some(from) && p.reply == "unreachable").count() as u32
}
