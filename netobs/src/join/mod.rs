//! Joins: what the host knows about a finding's flow, asked of the kernel
//! over netlink, off the drain path and with timeouts.
//!
//! A finding about a flow this host sent may need three facts the packet
//! does not carry: the local TCP socket and its state ("connection in
//! SYN-RECV on :65000"), the pre-NAT client (conntrack) when the socket is
//! not ours, and the path MTU our route cache took from a frag-needed.
//! [`needs`] says which a finding needs; a [`Lookups`] answers them (the
//! real one is [`Netlink`]); [`Reporter`] runs them on a worker thread fed
//! by a bounded queue, so the ring-buffer drain never waits on I/O, and
//! hands each finding back once its joins are done, failed or timed out.
//! A fact that could not be established is recorded in
//! [`Finding::unknown`] and the words say nothing that depends on it.
//!
//! Used by `watch`; a future `read` (pcap) and `--investigate` call the
//! same [`Reporter`] with their own [`Lookups`].

mod worker;

use std::{net::IpAddr, time::Duration};

use futures::FutureExt as _;

#[allow(unused_imports)] // `totals` is for the metrics collector
pub(crate) use worker::{Reporter, totals};

use crate::{
    explain::{Aggregator, Fact, Finding, Flow, HostContext, Ledger},
    health::{self, Op},
    net::{
        self,
        conntrack::{Original, PortProto, Sent},
        nl::NlError,
        sockets::TcpState,
    },
};

/// How long one netlink lookup may take.
pub(crate) const LOOKUP_TIMEOUT: Duration = net::nl::TIMEOUT;
/// Findings that may wait for the join worker; more are reported without
/// joins (counted).
pub(crate) const QUEUE_CAPACITY: usize = 256;
/// A queued finding the worker has not reached within this long is
/// reported without its joins: a backlog delays lines by at most this
/// (plus one job's lookups).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(1);
/// At exit, how long outstanding joins may still finish.
pub(crate) const FINISH_GRACE: Duration = Duration::from_millis(200);

/// Re-reads the [`HostContext`] now and then on a blocking thread, so the
/// netlink dumps behind it never run on the drain's thread.
pub(crate) struct Refresh {
    every: Duration,
    last: std::time::Instant,
    running: Option<tokio::task::JoinHandle<anyhow::Result<HostContext>>>,
}

impl Refresh {
    pub(crate) fn new(every: Duration) -> Refresh {
        Refresh { every, last: std::time::Instant::now(), running: None }
    }

    /// Takes a finished refresh into `ctx` and starts the next when due.
    /// Never waits. A failed refresh is logged and counted; `ctx` keeps
    /// the previous facts.
    pub(crate) fn poll(&mut self, ctx: &mut HostContext) {
        if let Some(h) = self.running.take_if(|h| h.is_finished()) {
            match h.now_or_never() {
                Some(Ok(Ok(c))) => *ctx = c,
                Some(Ok(Err(e))) => health::transient(Op::Netlink, &format!("refreshing the host context: {e:#}")),
                Some(Err(e)) => health::transient(Op::Netlink, &format!("refreshing the host context: {e}")),
                None => {}
            }
        }
        if self.running.is_none() && self.last.elapsed() >= self.every {
            self.last = std::time::Instant::now();
            self.running = Some(tokio::task::spawn_blocking(HostContext::discover));
        }
    }
}

/// The outcome of one lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup<T> {
    /// Not asked (the finding does not need it).
    NotAsked,
    /// The kernel answered with this.
    Found(T),
    /// The kernel answered "none".
    Absent,
    /// The lookup failed, timed out or was skipped.
    Unknown,
}

impl<T> Lookup<T> {
    fn unknown_if(asked: bool) -> Lookup<T> {
        if asked { Lookup::Unknown } else { Lookup::NotAsked }
    }

    fn from_result(r: Result<Option<T>, NlError>) -> Lookup<T> {
        match r {
            Ok(Some(v)) => Lookup::Found(v),
            Ok(None) => Lookup::Absent,
            Err(e) => {
                health::transient(Op::Netlink, &e);
                Lookup::Unknown
            }
        }
    }
}

/// The exact 4-tuple of a local TCP socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SocketKey {
    pub local: IpAddr,
    pub lport: u16,
    pub remote: IpAddr,
    pub rport: u16,
}

/// What one finding needs from the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Needs {
    /// A locally sent TCP flow: its socket.
    pub socket: Option<SocketKey>,
    /// A quoted packet from one of our addresses: NATed for a client? (Only
    /// asked when no local socket owns the flow.)
    pub nat: Option<Sent>,
    /// Frag-needed / Packet Too Big for our own traffic: our route cache.
    pub pmtu: Option<IpAddr>,
}

impl Needs {
    pub(crate) fn is_empty(&self) -> bool {
        self.socket.is_none() && self.nat.is_none() && self.pmtu.is_none()
    }
}

/// Which joins `f` needs, given what this host is.
pub(crate) fn needs(f: &Finding, ctx: &HostContext) -> Needs {
    let mut n = Needs::default();
    let Some(flow) = &f.flow else { return n };
    if !ctx.is_local(&flow.src) {
        return n;
    }
    let ports = flow.src_port.zip(flow.dst_port);
    if flow.protocol == "tcp"
        && let Some((sp, dp)) = ports
    {
        n.socket = Some(SocketKey { local: flow.src, lport: sp, remote: flow.dst, rport: dp });
    }
    if f.kind == "icmp_error"
        && let (Some(proto), Some((sport, dport))) = (PortProto::from_name(&flow.protocol), ports)
    {
        n.nat = Some(Sent { proto, src: flow.src, sport, dst: flow.dst, dport });
    }
    if f.kind == "icmp_error" && f.verdict == netobs_common::icmp::Verdict::FragNeeded {
        n.pmtu = Some(flow.dst);
    }
    n
}

/// The answers for one finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Joined {
    pub socket: Lookup<TcpState>,
    pub nat: Lookup<Original>,
    pub pmtu: Lookup<u32>,
}

impl Joined {
    /// Every asked lookup unknown (skipped, or out of time).
    pub(crate) fn unknown(n: &Needs) -> Joined {
        Joined {
            socket: Lookup::unknown_if(n.socket.is_some()),
            nat: Lookup::unknown_if(n.nat.is_some()),
            pmtu: Lookup::unknown_if(n.pmtu.is_some()),
        }
    }
}

/// The host lookups the joins need: netlink in production, a fake in tests.
/// Each call must return within its own timeout.
pub(crate) trait Lookups: Send + 'static {
    fn socket(&self, k: &SocketKey) -> Result<Option<TcpState>, NlError>;
    fn nat_original(&self, sent: &Sent) -> Result<Option<Original>, NlError>;
    fn route_pmtu(&self, dst: IpAddr) -> Result<Option<u32>, NlError>;
}

/// The kernel's answers: sock_diag by exact tuple, ctnetlink get by reply
/// tuple, RTM_GETROUTE for one destination; each within `timeout`.
pub(crate) struct Netlink {
    pub timeout: Duration,
}

impl Lookups for Netlink {
    fn socket(&self, k: &SocketKey) -> Result<Option<TcpState>, NlError> {
        Ok(net::sockets::lookup(k.local, k.lport, k.remote, k.rport, self.timeout)?.map(|s| s.state))
    }
    fn nat_original(&self, sent: &Sent) -> Result<Option<Original>, NlError> {
        net::conntrack::original_of(sent, self.timeout)
    }
    fn route_pmtu(&self, dst: IpAddr) -> Result<Option<u32>, NlError> {
        net::cached_pmtu(dst, self.timeout)
    }
}

/// Runs the lookups `n` asks for. NAT is only asked when no local socket
/// owns the flow (a socket means we sent it ourselves).
pub(crate) fn run(l: &dyn Lookups, n: &Needs) -> Joined {
    let socket = n.socket.map_or(Lookup::NotAsked, |k| Lookup::from_result(l.socket(&k)));
    let nat = match (n.nat, socket) {
        (Some(_), Lookup::Found(_)) | (None, _) => Lookup::NotAsked,
        (Some(s), _) => Lookup::from_result(l.nat_original(&s)),
    };
    let pmtu = n.pmtu.map_or(Lookup::NotAsked, |d| Lookup::from_result(l.route_pmtu(d)));
    Joined { socket, nat, pmtu }
}

/// Writes the answers into the finding.
pub(crate) fn apply(f: &mut Finding, j: &Joined) {
    match j.socket {
        Lookup::Found(s) => f.socket_state = Some(s.as_str()),
        Lookup::Unknown => f.unknown.push(Fact::SocketState),
        Lookup::NotAsked | Lookup::Absent => {}
    }
    match j.nat {
        Lookup::Found(o) => {
            let protocol = f.flow.as_ref().map(|fl| fl.protocol.clone()).unwrap_or_default();
            f.set_nat_original(Flow {
                protocol,
                src: o.src,
                dst: o.dst,
                src_port: o.src_port,
                dst_port: o.dst_port,
                echo_id: None,
            });
        }
        Lookup::Unknown => f.unknown.push(Fact::NatOriginal),
        Lookup::NotAsked | Lookup::Absent => {}
    }
    match j.pmtu {
        Lookup::Found(m) => f.pmtu_cached = Some(m),
        Lookup::Absent => f.pmtu_cached = None,
        Lookup::Unknown => f.unknown.push(Fact::PmtuCache),
        Lookup::NotAsked => {}
    }
}

/// Fills in, for DF-oversized entries, what went back to the sender (the
/// in-memory ledger: no I/O, so it runs inline).
pub(crate) fn icmp_back(agg: &mut Aggregator, ledger: &mut Ledger) {
    agg.for_each_mut(|a| {
        if a.finding.kind == "df_oversized"
            && let Some(fl) = &a.finding.flow
        {
            a.finding.icmp_back = Some(ledger.lookup(fl.src, fl.dst));
        }
    });
}

#[cfg(test)]
mod tests;
