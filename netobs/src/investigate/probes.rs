//! Which probes a trigger runs, and the verdict they lead to: the same
//! probes, rules and words as `explain` (`crate::verdict`), only fewer
//! of them, within the investigation's allotment.
//!
//! - a rejection or a silent drop: the TCP handshake check on the flow's
//!   port, a trace with the flow's protocol and port, and an ICMP echo
//!   trace to compare with;
//! - frag-needed / Packet Too Big, DF-oversized traffic, a suspected
//!   blackhole: an ICMP trace (how far the destination is), then the PMTU
//!   search with its TTL-limited location of the narrow link;
//! - SYN-ACKs retransmitted, or return traffic rejected (the port is the
//!   peer's, nothing listens there): an ICMP trace toward the peer.

use std::{net::IpAddr, time::Duration};

use anyhow::Result;

use super::{Trigger, TriggerKind, budget::Gate};
use crate::{
    net,
    probe::{
        self,
        packet::Proto,
        pmtu::{self, PmtuOptions},
        socket::Prober,
        tcp,
        trace::{self, TraceOptions},
    },
    verdict::{self, Diagnosis, Evidence},
};

/// Longest wait for one answer: investigations must end quickly.
const MAX_WAIT: Duration = Duration::from_secs(1);
/// Trace depth of an investigation.
const MAX_TTL: u8 = 16;

/// What a trigger probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Plan {
    /// TCP check + trace on the flow's port (UDP: the trace only).
    Service,
    /// ICMP trace + PMTU search with location.
    Pmtu,
    /// ICMP trace only.
    Trace,
}

impl Plan {
    /// A service plan needs a TCP or UDP port to probe; without one (or for
    /// return traffic, whose port is the peer's ephemeral one) a trace is
    /// what can be learnt.
    pub(crate) fn of(t: &Trigger) -> Plan {
        match t.kind {
            TriggerKind::Rejection | TriggerKind::SilentDrop if t.port.is_some() && t.proto != Proto::Icmp => {
                Plan::Service
            }
            TriggerKind::TooBig | TriggerKind::DfOversized | TriggerKind::SuspectedBlackhole => Plan::Pmtu,
            _ => Plan::Trace,
        }
    }

    /// Names of the probes, for the record.
    pub(crate) fn probes(self, proto: Proto) -> &'static [&'static str] {
        match (self, proto) {
            (Plan::Service, Proto::Tcp) => &["tcp", "trace", "trace_icmp"],
            (Plan::Service, _) => &["trace", "trace_icmp"],
            (Plan::Pmtu, _) => &["trace", "pmtu"],
            (Plan::Trace, _) => &["trace"],
        }
    }
}

fn open(target: IpAddr, proto: Proto, port: u16, salt: u32, gate: &Gate) -> Result<Prober> {
    let mut p = Prober::open(target, proto, port, salt)?;
    p.gate = Some(gate.for_prober());
    Ok(p)
}

/// Runs the plan toward the trigger's destination and decides.
pub(crate) async fn run(t: &Trigger, gate: &Gate) -> Result<(Diagnosis, Evidence)> {
    let fam = if t.dst.is_ipv4() { 4 } else { 6 };
    let initial_ttl = net::initial_ttl(fam);
    let topts = TraceOptions {
        max_ttl: MAX_TTL,
        queries: 1,
        gap: 2,
        max_wait: MAX_WAIT,
        initial_ttl,
        ..TraceOptions::default()
    };
    let plan = Plan::of(t);
    let mut e = Evidence {
        target: t.dst,
        proto: Proto::Icmp,
        port: None,
        service: None,
        icmp: None,
        tcp: None,
        pmtu: None,
        rate: None,
        kernel: None,
        kernel_note: Some("watch --investigate: the ICMP errors are watch's own findings".into()),
        stopped_early: Vec::new(),
    };
    match (plan, t.port) {
        (Plan::Service, Some(port)) => {
            e.proto = t.proto;
            e.port = Some(port);
            if t.proto == Proto::Tcp {
                let mut p = open(t.dst, Proto::Tcp, port, 11, gate)?;
                e.tcp = Some(tcp::run(&mut p, 2, MAX_WAIT, initial_ttl).await?);
            }
            let mut p = open(t.dst, t.proto, port, 12, gate)?;
            e.service = Some(trace::run(&mut p, &topts, |_, _| {}).await?);
            // ICMP echo for comparison: a filter of the service only lets
            // it further (the rules tell "filtered" from "nothing passes").
            let mut p = open(t.dst, Proto::Icmp, 0, 16, gate)?;
            e.icmp = Some(trace::run(&mut p, &topts, |_, _| {}).await?);
        }
        (Plan::Pmtu, _) => {
            let mut p = open(t.dst, Proto::Icmp, 0, 13, gate)?;
            let tr = trace::run(&mut p, &topts, |_, _| {}).await?;
            let dest = tr.reached_at;
            e.service = Some(tr);
            let (_, local_mtu) = probe::egress(t.dst)?;
            let popts = PmtuOptions {
                max_wait: MAX_WAIT,
                initial_ttl,
                locate: true,
                dest_hops: dest,
                ..PmtuOptions::default()
            };
            let mut pm = open(t.dst, Proto::Icmp, 0, 14, gate)?;
            e.pmtu = Some(pmtu::run(&mut pm, local_mtu, &popts, |_| {}).await?);
        }
        _ => {
            let mut p = open(t.dst, Proto::Icmp, 0, 15, gate)?;
            e.service = Some(trace::run(&mut p, &topts, |_, _| {}).await?);
        }
    }
    Ok((verdict::decide(&e), e))
}
