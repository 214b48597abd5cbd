//! Multipath traces (`trace --flows N`), as Dublin traceroute and scamper's
//! tracelb show them.
//!
//! A per-flow load balancer (Linux multipath routing with an L4 hash, ECMP
//! in most routers) sends every packet of one flow the same way and
//! spreads flows over its next hops. One Paris trace keeps its flow
//! constant, so it sees exactly one of the paths; N traces with N flow
//! identities, each Paris-style on its own, see up to N. The identities
//! differ in what balancers hash: the source port (UDP / TCP; each flow
//! reserves its own), the ICMP identifier (and with it the checksum, which
//! some balancers hash as if it were ports), and on IPv6 also the flow
//! label, which Linux hashes by default. Each hop then lists its distinct
//! responders (the branches) and which flows reached each one.
//!
//! The N traces run at the same time, so `--flows 8` takes about as long as
//! one trace. With random identities, a hop with two equal branches is
//! missed by all of N flows with probability 2 / 2^N (8 flows: 0.8 %).

use std::{cell::Cell, collections::BTreeMap, net::IpAddr, time::Instant};

use anyhow::Result;
use serde::Serialize;

use super::{
    packet::Proto,
    quote::PathChange,
    socket::Prober,
    trace::{self, TraceOptions, TraceResult},
};

/// One flow identity.
#[derive(Clone, Debug, Serialize)]
pub struct FlowPath {
    pub flow: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_label: Option<u32>,
    pub reached_at: Option<u8>,
    pub stop: &'static str,
    /// First responder per TTL (`null`: silent), from the trace's first TTL.
    pub path: Vec<Option<IpAddr>>,
    pub probes_sent: u32,
}

/// One responder at a hop.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Branch {
    pub addr: IpAddr,
    /// Flows that reached it (indexes into `flows`).
    pub flows: Vec<usize>,
    /// Smallest RTT any of them measured.
    pub rtt_ms: Option<f64>,
}

/// One TTL across all flows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MultiHop {
    pub ttl: u8,
    pub branches: Vec<Branch>,
    /// Flows that probed this TTL and got no answer.
    pub silent: Vec<usize>,
}

/// A finished multipath trace.
#[derive(Clone, Debug, Serialize)]
pub struct MultipathResult {
    pub target: IpAddr,
    pub source: IpAddr,
    pub proto: Proto,
    pub dst_port: Option<u16>,
    pub flows: Vec<FlowPath>,
    pub hops: Vec<MultiHop>,
    /// Most branches at any hop (1: a single path).
    pub max_branches: usize,
    /// First TTL with more than one branch.
    pub diverges_at: Option<u8>,
    /// Flows that reached the destination.
    pub reached_by: usize,
    /// Changes middleboxes made (see [`super::quote`]), over all flows.
    pub middleboxes: Vec<PathChange>,
    pub probes_sent: u32,
    pub seconds: f64,
}

/// A distinct, non-zero 20-bit flow label for flow `i`.
fn flow_label(i: usize, salt: u32) -> u32 {
    let v = (salt ^ (i as u32 + 1).wrapping_mul(0x9e37_79b1)) & 0x000f_ffff;
    if v == 0 { 1 } else { v }
}

/// Runs `n` Paris traces to `target` at once, each with its own flow.
pub async fn run(
    target: IpAddr,
    proto: Proto,
    port: u16,
    n: u8,
    opts: &TraceOptions,
    mut progress: impl FnMut(u32),
) -> Result<MultipathResult> {
    let start = Instant::now();
    let salt = std::process::id();
    let mut probers = Vec::with_capacity(usize::from(n));
    for i in 0..usize::from(n) {
        let mut p = Prober::open(target, proto, port, i as u32 + 1)?;
        if target.is_ipv6() {
            p.set_flow_label(flow_label(i, salt))?;
        }
        probers.push(p);
    }
    crate::privilege::drop_to_or_warn(&[]);
    let sent: Vec<Cell<u32>> = (0..probers.len()).map(|_| Cell::new(0)).collect();
    let progress = std::cell::RefCell::new(&mut progress);
    let traces = futures::future::join_all(probers.iter_mut().enumerate().map(|(i, p)| {
        let (sent, progress) = (&sent, &progress);
        async move {
            trace::run(p, opts, |_, s| {
                sent[i].set(s);
                let total: u32 = sent.iter().map(Cell::get).sum();
                (progress.borrow_mut())(total);
            })
            .await
        }
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<TraceResult>>>()?;
    let ids: Vec<(Option<u16>, Option<u16>, Option<u32>)> = probers
        .iter()
        .map(|p| {
            let icmp = p.flow.proto == Proto::Icmp;
            ((!icmp).then_some(p.flow.src_port), icmp.then_some(p.flow.icmp_id), p.flow_label())
        })
        .collect();
    let mut r = merge(&traces, &ids);
    r.seconds = start.elapsed().as_secs_f64();
    Ok(r)
}

/// Joins the per-flow traces (pure: unit-tested). `ids[i]` is flow i's
/// (source port, ICMP id, flow label).
fn merge(traces: &[TraceResult], ids: &[(Option<u16>, Option<u16>, Option<u32>)]) -> MultipathResult {
    let mut by_ttl: BTreeMap<u8, MultiHop> = BTreeMap::new();
    let mut flows = Vec::with_capacity(traces.len());
    let mut middleboxes: Vec<PathChange> = Vec::new();
    for (i, t) in traces.iter().enumerate() {
        for h in &t.hops {
            let mh = by_ttl.entry(h.ttl).or_insert_with(|| MultiHop {
                ttl: h.ttl,
                branches: Vec::new(),
                silent: Vec::new(),
            });
            if h.addrs.is_empty() {
                mh.silent.push(i);
            }
            for &a in &h.addrs {
                let rtt = h.probes.iter().filter(|p| p.from == Some(a)).filter_map(|p| p.rtt_ms).reduce(f64::min);
                match mh.branches.iter_mut().find(|b| b.addr == a) {
                    Some(b) => {
                        b.flows.push(i);
                        b.rtt_ms = match (b.rtt_ms, rtt) {
                            (Some(x), Some(y)) => Some(x.min(y)),
                            (x, y) => x.or(y),
                        };
                    }
                    None => mh.branches.push(Branch { addr: a, flows: vec![i], rtt_ms: rtt }),
                }
            }
        }
        for c in &t.middleboxes {
            if !middleboxes.iter().any(|m| m.field == c.field && m.quoted == c.quoted && m.first_hop == c.first_hop) {
                middleboxes.push(c.clone());
            }
        }
        let (src_port, icmp_id, flow_label) = ids.get(i).copied().unwrap_or_default();
        flows.push(FlowPath {
            flow: i,
            src_port,
            icmp_id,
            flow_label,
            reached_at: t.reached_at,
            stop: t.stop,
            path: t.hops.iter().map(|h| h.addr()).collect(),
            probes_sent: t.probes_sent,
        });
    }
    let mut hops: Vec<MultiHop> = by_ttl.into_values().collect();
    for h in &mut hops {
        // Most-travelled branch first.
        h.branches.sort_by(|a, b| b.flows.len().cmp(&a.flows.len()).then(a.addr.cmp(&b.addr)));
    }
    let first = traces.first();
    MultipathResult {
        target: first.map_or(IpAddr::from([0, 0, 0, 0]), |t| t.target),
        source: first.map_or(IpAddr::from([0, 0, 0, 0]), |t| t.source),
        proto: first.map_or(Proto::Udp, |t| t.proto),
        dst_port: first.and_then(|t| t.dst_port),
        max_branches: hops.iter().map(|h| h.branches.len()).max().unwrap_or(0),
        diverges_at: hops.iter().find(|h| h.branches.len() > 1).map(|h| h.ttl),
        reached_by: traces.iter().filter(|t| t.reached_at.is_some()).count(),
        probes_sent: traces.iter().map(|t| t.probes_sent).sum(),
        seconds: traces.iter().map(|t| t.seconds).fold(0.0, f64::max),
        flows,
        hops,
        middleboxes,
    }
}

/// "0-3 5 7" for a sorted list of flow indexes.
fn ranges(v: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if j > i { format!("{}-{}", v[i], v[j]) } else { v[i].to_string() });
        i = j + 1;
    }
    out.join(" ")
}

/// Text: one line per branch, with the flows that took it.
pub fn render(r: &MultipathResult) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let port = r.dst_port.map(|p| format!("/{p}")).unwrap_or_default();
    let n = r.flows.len();
    let _ = writeln!(
        s,
        "multipath trace to {} ({}{port} from {}), {n} flows, Paris within each flow",
        r.target,
        r.proto.as_str(),
        r.source
    );
    let ids: Vec<String> = r
        .flows
        .iter()
        .map(|f| {
            let mut id = match (f.src_port, f.icmp_id) {
                (Some(p), _) => format!("{}:sport {p}", f.flow),
                (None, Some(i)) => format!("{}:id {i}", f.flow),
                _ => f.flow.to_string(),
            };
            if let Some(l) = f.flow_label {
                let _ = write!(id, " label 0x{l:05x}");
            }
            id
        })
        .collect();
    let _ = writeln!(s, "flows: {}", ids.join(", "));
    for h in &r.hops {
        let mut first = true;
        for b in &h.branches {
            let lead = if first { format!("{:>2}", h.ttl) } else { "  ".to_string() };
            first = false;
            let rtt = b.rtt_ms.map(|r| format!("{r:.3} ms")).unwrap_or_default();
            let who = if b.flows.len() == n { format!("all {n} flows") } else { format!("flows {}", ranges(&b.flows)) };
            let _ = writeln!(s, "{lead}  {:<39} {rtt:>10}  {who}", b.addr.to_string());
        }
        if !h.silent.is_empty() {
            let lead = if first { format!("{:>2}", h.ttl) } else { "  ".to_string() };
            let _ = writeln!(s, "{lead}  {:<39} {:>10}  flows {}", "*", "", ranges(&h.silent));
        }
    }
    for c in &r.middleboxes {
        let _ = writeln!(s, "{}", c.words());
    }
    let branches = match r.diverges_at {
        Some(d) => format!("paths diverge at hop {d}, up to {} branches per hop", r.max_branches),
        None => "one path (no hop with more than one responder)".to_string(),
    };
    let _ = writeln!(
        s,
        "{} reached by {}/{n} flows; {branches}; {} probes in {:.2} s",
        r.target, r.reached_by, r.probes_sent, r.seconds
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::trace::{Hop, ProbeResult};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn probe(from: Option<&str>) -> ProbeResult {
        ProbeResult {
            from: from.map(ip),
            name: None,
            rtt_ms: from.map(|_| 1.0),
            icmp_type: Some(11),
            icmp_code: Some(0),
            reply: if from.is_some() { "time_exceeded" } else { "none" },
            words: None,
            annotation: String::new(),
            quoted_ttl: None,
            reply_ttl: None,
            return_hops: None,
            mtu: None,
            quote: None,
        }
    }

    fn trace(path: &[Option<&str>]) -> TraceResult {
        TraceResult {
            target: ip("198.18.6.1"),
            source: ip("198.18.1.1"),
            proto: Proto::Udp,
            dst_port: Some(33434),
            src_port: Some(40000),
            hops: path
                .iter()
                .enumerate()
                .map(|(i, a)| Hop {
                    ttl: i as u8 + 1,
                    probes: vec![probe(*a)],
                    addrs: a.map(ip).into_iter().collect(),
                    sent: 1,
                    answered: u32::from(a.is_some()),
                })
                .collect(),
            reached_at: Some(path.len() as u8),
            last_answering: Some(path.len() as u8),
            stop: "reached",
            probes_sent: path.len() as u32,
            seconds: 0.1,
            middleboxes: Vec::new(),
            mtu: None,
        }
    }

    #[test]
    fn branches_and_the_flows_that_took_them() {
        let a = [Some("198.18.1.254"), Some("198.18.2.2"), Some("198.18.4.2"), Some("198.18.6.1")];
        let b = [Some("198.18.1.254"), Some("198.18.3.2"), Some("198.18.5.2"), Some("198.18.6.1")];
        let c = [Some("198.18.1.254"), None, Some("198.18.4.2"), Some("198.18.6.1")];
        let traces = vec![trace(&a), trace(&b), trace(&a), trace(&c)];
        let ids: Vec<_> = (0..4).map(|i| (Some(40000 + i as u16), None, None)).collect();
        let r = merge(&traces, &ids);
        assert_eq!(r.hops.len(), 4);
        assert_eq!(r.hops[0].branches.len(), 1);
        assert_eq!(r.hops[0].branches[0].flows, vec![0, 1, 2, 3]);
        assert_eq!(r.hops[1].branches.len(), 2);
        assert_eq!(r.hops[1].branches[0].addr, ip("198.18.2.2"));
        assert_eq!(r.hops[1].branches[0].flows, vec![0, 2]);
        assert_eq!(r.hops[1].branches[1].flows, vec![1]);
        assert_eq!(r.hops[1].silent, vec![3]);
        assert_eq!(r.hops[2].branches[0].flows, vec![0, 2, 3]);
        assert_eq!((r.max_branches, r.diverges_at, r.reached_by), (2, Some(2), 4));
        assert_eq!(r.flows[1].path[1], Some(ip("198.18.3.2")));
        let text = render(&r);
        assert!(text.contains("flows 0 2"), "{text}");
        assert!(text.contains("all 4 flows"), "{text}");
        assert!(text.contains("paths diverge at hop 2"), "{text}");
    }

    #[test]
    fn flow_ranges_and_labels() {
        assert_eq!(ranges(&[0, 1, 2, 3, 5, 7, 8]), "0-3 5 7-8");
        assert_eq!(ranges(&[]), "");
        let labels: std::collections::HashSet<u32> = (0..64).map(|i| flow_label(i, 1234)).collect();
        assert_eq!(labels.len(), 64);
        assert!(labels.iter().all(|&l| l != 0 && l <= 0xfffff));
    }
}
