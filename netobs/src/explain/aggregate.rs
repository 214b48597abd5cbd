//! Aggregation: one entry per (flow, reporter, verdict), with counts and
//! first/last seen, in a bounded LRU table so no traffic pattern can grow
//! memory without limit.

use std::{
    net::IpAddr,
    num::NonZeroUsize,
    time::{Duration, Instant, SystemTime},
};

use lru::LruCache;
use netobs_common::icmp::Verdict;

use super::finding::{Direction, Finding};

/// A flow as an aggregation key: protocol, src, dst, ports, echo id.
pub type FlowKey = (String, IpAddr, IpAddr, Option<u16>, Option<u16>, Option<u16>);

/// What makes two findings "the same problem".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub kind: &'static str,
    pub verdict: Verdict,
    pub reporter: IpAddr,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub direction: Direction,
    pub flow: Option<FlowKey>,
}

impl Key {
    pub fn of(f: &Finding) -> Key {
        Key {
            kind: f.kind,
            verdict: f.verdict,
            reporter: f.reporter,
            icmp_type: f.icmp_type,
            icmp_code: f.icmp_code,
            direction: f.direction,
            flow: f.flow.as_ref().map(|fl| (fl.protocol.clone(), fl.src, fl.dst, fl.src_port, fl.dst_port, fl.echo_id)),
        }
    }
}

/// A finding with its history.
#[derive(Clone, Debug)]
pub struct Aggregate {
    /// Stable id for this entry while it stays in the table.
    pub id: u64,
    /// The most recent finding (its details may improve: a later quote may
    /// be longer than the first).
    pub finding: Finding,
    pub count: u64,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    /// Count at the time it was last reported.
    pub reported_count: u64,
    pub last_reported: Option<Instant>,
}

/// The bounded table.
pub struct Aggregator {
    table: LruCache<Key, Aggregate>,
    next_id: u64,
    /// Entries forgotten because the table was full.
    pub evicted: u64,
}

impl Aggregator {
    pub fn new(capacity: usize) -> Aggregator {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Aggregator { table: LruCache::new(cap), next_id: 1, evicted: 0 }
    }

    /// Adds one finding. Returns true when it starts a new entry.
    pub fn ingest(&mut self, finding: Finding, now: SystemTime) -> bool {
        let key = Key::of(&finding);
        if let Some(agg) = self.table.get_mut(&key) {
            agg.count += 1;
            agg.last_seen = now;
            agg.finding = finding;
            return false;
        }
        let id = self.next_id;
        self.next_id += 1;
        let agg = Aggregate {
            id,
            finding,
            count: 1,
            first_seen: now,
            last_seen: now,
            reported_count: 0,
            last_reported: None,
        };
        if self.table.push(key, agg).is_some_and(|(_, old)| old.id != id) {
            self.evicted += 1;
        }
        true
    }

    /// Entries that changed since they were last reported and were not
    /// reported within `interval` (new entries are always due). Marks them
    /// reported.
    pub fn due(&mut self, interval: Duration, now: Instant) -> Vec<Aggregate> {
        let mut out = Vec::new();
        for (_, agg) in self.table.iter_mut() {
            let changed = agg.count > agg.reported_count;
            let quiet_long_enough = agg.last_reported.is_none_or(|t| now.duration_since(t) >= interval);
            if changed && quiet_long_enough {
                agg.reported_count = agg.count;
                agg.last_reported = Some(now);
                out.push(agg.clone());
            }
        }
        out.sort_by_key(|a| a.id);
        out
    }

    /// The `n` entries with the highest counts.
    pub fn top(&self, n: usize) -> Vec<Aggregate> {
        let mut all: Vec<Aggregate> = self.table.iter().map(|(_, a)| a.clone()).collect();
        all.sort_by(|a, b| b.count.cmp(&a.count).then(a.id.cmp(&b.id)));
        all.truncate(n);
        all
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Lets `f` refresh every entry (e.g. join late-arriving facts).
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut Aggregate)) {
        for (_, a) in self.table.iter_mut() {
            f(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::finding::Flow;

    fn finding(port: u16) -> Finding {
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
                dst_port: Some(port),
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
            socket_state: None,
            icmp_back: None,
            pmtu_cached: None,
            nat_original: None,
            unknown: Vec::new(),
        }
    }

    #[test]
    fn same_flow_aggregates_and_reports_once_per_interval() {
        let mut agg = Aggregator::new(16);
        let t0 = Instant::now();
        let now = SystemTime::now();
        assert!(agg.ingest(finding(50000), now));
        assert!(!agg.ingest(finding(50000), now));
        assert!(agg.ingest(finding(50001), now));
        let due = agg.due(Duration::from_secs(5), t0);
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].count, 2);
        agg.ingest(finding(50000), now);
        assert!(agg.due(Duration::from_secs(5), t0 + Duration::from_secs(1)).is_empty());
        let later = agg.due(Duration::from_secs(5), t0 + Duration::from_secs(6));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].count, 3);
        assert!(agg.due(Duration::ZERO, t0 + Duration::from_secs(7)).is_empty());
    }

    #[test]
    fn table_is_bounded() {
        let mut agg = Aggregator::new(16);
        let now = SystemTime::now();
        for port in 0..1000u16 {
            agg.ingest(finding(port), now);
        }
        assert_eq!(agg.len(), 16);
        assert_eq!(agg.evicted, 1000 - 16);
        assert_eq!(agg.top(3).len(), 3);
    }
}
