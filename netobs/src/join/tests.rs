use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Instant, SystemTime},
};

use netobs_common::icmp::Verdict;

use super::*;
use crate::explain::{Aggregate, Direction};

/// Answers after `delay`, counting calls; `fail` makes every lookup time out.
struct Fake {
    delay: Duration,
    fail: bool,
    socket: Option<TcpState>,
    nat: Option<Original>,
    pmtu: Option<u32>,
    /// When set, `socket` answers only for this local port; for the others
    /// the listener answers, as the kernel's lookup by tuple does.
    only_port: Option<u16>,
    calls: Arc<AtomicUsize>,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            delay: Duration::ZERO,
            fail: false,
            socket: None,
            nat: None,
            pmtu: None,
            only_port: None,
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }
    fn answer<T>(&self, v: Option<T>) -> Result<Option<T>, NlError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        if self.fail { Err(NlError::Timeout { what: "fake", after: self.delay }) } else { Ok(v) }
    }
}

impl Lookups for Fake {
    fn socket(&self, k: &SocketKey) -> Result<Option<TcpState>, NlError> {
        match self.only_port {
            Some(p) if p != k.lport => self.answer(Some(TcpState::Listen)),
            _ => self.answer(self.socket),
        }
    }
    fn nat_original(&self, _: &Sent) -> Result<Option<Original>, NlError> {
        self.answer(self.nat)
    }
    fn route_pmtu(&self, _: IpAddr) -> Result<Option<u32>, NlError> {
        self.answer(self.pmtu)
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn ctx() -> HostContext {
    HostContext { local_addrs: [ip("198.18.2.254")].into_iter().collect(), listeners_known: true, ..Default::default() }
}

fn finding(verdict: Verdict, protocol: &str, src: &str, sport: u16) -> Finding {
    Finding {
        verdict,
        icmp_code: if verdict == Verdict::FragNeeded { 4 } else { 13 },
        icmp_name: "",
        annotation: "",
        to: ip(src),
        iface: "eth1".into(),
        direction: Direction::Outgoing,
        flow: Some(Flow {
            protocol: protocol.into(),
            src: ip(src),
            dst: ip("198.18.3.1"),
            src_port: Some(sport),
            dst_port: Some(443),
            echo_id: None,
        }),
        tcp_flags: None,
        mtu: Some(1400),
        packet_len: Some(1500),
        ..Finding::example()
    }
}

fn aggregate(f: Finding, id: u64) -> Aggregate {
    let now = SystemTime::now();
    Aggregate {
        id,
        finding: f,
        count: 1,
        first_seen: now,
        last_seen: now,
        reported_count: 1,
        last_reported: None,
        folded: false,
        folded_in: None,
    }
}

#[test]
fn needs_follow_the_flow() {
    let c = ctx();
    let tcp = needs(&finding(Verdict::Rejected, "tcp", "198.18.2.254", 40000), &c);
    assert_eq!(
        tcp.socket,
        Some(SocketKey { local: ip("198.18.2.254"), lport: 40000, remote: ip("198.18.3.1"), rport: 443 })
    );
    assert_eq!(tcp.nat.map(|s| (s.proto, s.sport, s.dport)), Some((PortProto::Tcp, 40000, 443)));
    assert_eq!(tcp.pmtu, None);

    let udp_big = needs(&finding(Verdict::FragNeeded, "udp", "198.18.2.254", 5000), &c);
    assert_eq!(udp_big.socket, None, "no TCP socket to look up for UDP");
    assert!(udp_big.nat.is_some());
    assert_eq!(udp_big.pmtu, Some(ip("198.18.3.1")));

    // Not from one of our addresses: nothing of ours to look up.
    assert!(needs(&finding(Verdict::Rejected, "tcp", "198.18.9.9", 40000), &c).is_empty());
    let mut df = finding(Verdict::DfOversized, "tcp", "198.18.2.254", 40000);
    df.kind = "df_oversized";
    let n = needs(&df, &c);
    assert!(n.nat.is_none() && n.pmtu.is_none());
}

#[test]
fn nat_is_asked_only_without_a_local_socket() {
    let c = ctx();
    let f = finding(Verdict::Rejected, "tcp", "198.18.2.254", 40000);
    let n = needs(&f, &c);
    let original =
        Original { src: ip("198.18.1.5"), src_port: Some(51000), dst: ip("198.18.3.1"), dst_port: Some(443) };

    let mut l = Fake::new();
    l.socket = Some(TcpState::SynSent);
    l.nat = Some(original);
    let j = run(&l, &n);
    assert_eq!(j.socket, Lookup::Found(TcpState::SynSent));
    assert_eq!(j.nat, Lookup::NotAsked, "our own socket: not NATed");
    assert_eq!(l.calls.load(Ordering::SeqCst), 1);

    l.socket = None;
    let j = run(&l, &n);
    assert_eq!(j.nat, Lookup::Found(original));
    let mut f2 = f.clone();
    apply(&mut f2, &j);
    assert_eq!(f2.direction, Direction::Forwarded);
    assert_eq!(f2.nat_original.as_ref().map(|o| o.src), Some(ip("198.18.1.5")));
    assert_eq!(f2.nat_original.as_ref().map(|o| o.protocol.as_str()), Some("tcp"));
    assert!(f2.unknown.is_empty());
}

#[test]
fn failed_lookups_leave_the_facts_unknown_and_are_counted() {
    let before = health::count(Op::Netlink);
    let mut l = Fake::new();
    l.fail = true;
    let mut f = finding(Verdict::FragNeeded, "tcp", "198.18.2.254", 40000);
    let j = run(&l, &needs(&f, &ctx()));
    assert_eq!((j.socket, j.nat, j.pmtu), (Lookup::Unknown, Lookup::Unknown, Lookup::Unknown));
    assert!(health::count(Op::Netlink) - before >= 3);
    apply(&mut f, &j);
    assert_eq!(f.unknown, vec![Fact::SocketState, Fact::NatOriginal, Fact::PmtuCache]);
    assert_eq!(f.direction, Direction::Outgoing);
    assert_eq!(f.pmtu_cached, None);
    // The words do not claim what is not known.
    let advice = crate::explain::words::advice(&f);
    assert!(!advice.contains("ignored the announcement"), "{advice}");
    assert!(advice.contains("not known"), "{advice}");
    let block = crate::explain::words::block(&aggregate(f, 1), false);
    assert!(block.contains("not known (host lookup failed, timed out or skipped under load)"), "{block}");
}

#[test]
fn known_absence_is_not_unknown() {
    let l = Fake::new();
    let mut f = finding(Verdict::FragNeeded, "udp", "198.18.2.254", 5000);
    let j = run(&l, &needs(&f, &ctx()));
    assert_eq!(j.pmtu, Lookup::Absent);
    apply(&mut f, &j);
    assert!(f.unknown.is_empty());
    assert!(crate::explain::words::advice(&f).contains("holds no path MTU"));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn submitting_never_waits_and_the_queue_is_bounded() {
    runtime().block_on(async {
        let mut l = Fake::new();
        l.delay = Duration::from_millis(150);
        l.pmtu = Some(1400);
        let calls = l.calls.clone();
        let mut r = Reporter::spawn(l, 4, Duration::from_secs(30)).expect("worker");
        let c = ctx();
        let t = Instant::now();
        let mut ready = Vec::new();
        for i in 0..100 {
            let f = finding(Verdict::FragNeeded, "udp", "198.18.2.254", 1000 + i);
            ready.extend(r.submit(aggregate(f, u64::from(i)), &c));
        }
        // 100 submissions against a 150 ms lookup: no waiting.
        assert!(t.elapsed() < Duration::from_millis(100), "submit waited {:?}", t.elapsed());
        let s = r.stats();
        // 4 in the queue, perhaps 1 taken by the worker already.
        assert!((4..=5).contains(&s.queued), "{s:?}");
        assert_eq!(s.skipped, 100 - s.queued);
        assert_eq!(ready.len() as u64, s.skipped);
        assert!(super::totals().0 >= s.skipped, "process totals include this reporter's skips");
        assert!(ready.iter().all(|a| a.finding.unknown == vec![Fact::NatOriginal, Fact::PmtuCache]));
        // A finding that needs no lookup is ready at once.
        let other = finding(Verdict::Rejected, "udp", "198.18.9.9", 1);
        assert!(r.submit(aggregate(other, 999), &c).is_some());

        let mut joined = Vec::new();
        while joined.len() < s.queued as usize {
            let a = tokio::time::timeout(Duration::from_secs(10), r.joined()).await.expect("joins come back");
            joined.push(a);
        }
        assert!(joined.iter().all(|a| a.finding.pmtu_cached == Some(1400) && a.finding.unknown.is_empty()));
        assert_eq!(r.pending(), 0);
        // Two lookups (conntrack, route) per queued UDP finding.
        assert_eq!(calls.load(Ordering::SeqCst) as u64, 2 * s.queued);
    });
}

#[test]
fn stale_jobs_are_not_looked_up_and_finish_is_bounded() {
    runtime().block_on(async {
        let mut l = Fake::new();
        l.delay = Duration::from_millis(300);
        l.pmtu = Some(1400);
        let calls = l.calls.clone();
        let mut r = Reporter::spawn(l, 64, Duration::from_millis(100)).expect("worker");
        let c = ctx();
        for i in 0..10 {
            let f = finding(Verdict::FragNeeded, "udp", "198.18.2.254", 2000 + i);
            assert!(r.submit(aggregate(f, u64::from(i)), &c).is_none());
        }
        let mut got = Vec::new();
        while got.len() < 10 {
            got.push(tokio::time::timeout(Duration::from_secs(10), r.joined()).await.expect("answers"));
        }
        // The first job ran (two lookups); the rest waited past 100 ms behind it.
        assert!(calls.load(Ordering::SeqCst) <= 4, "{} lookups", calls.load(Ordering::SeqCst));
        assert!(r.stats().expired >= 8, "{:?}", r.stats());
        assert!(got.iter().filter(|a| a.finding.unknown.contains(&Fact::PmtuCache)).count() >= 8);

        // At exit, outstanding joins get the grace period, no more.
        for i in 0..5 {
            let f = finding(Verdict::FragNeeded, "udp", "198.18.2.254", 3000 + i);
            assert!(r.submit(aggregate(f, 100 + u64::from(i)), &c).is_none());
        }
        let t = Instant::now();
        let rest = r.finish(Duration::from_millis(50)).await;
        assert!(t.elapsed() < Duration::from_millis(250), "finish took {:?}", t.elapsed());
        assert_eq!(rest.len(), 5, "every pending finding is handed back");
        assert!(r.stats().abandoned >= 4, "{:?}", r.stats());
    });
}

#[test]
fn a_repeat_report_replaces_the_waiting_snapshot() {
    runtime().block_on(async {
        let mut l = Fake::new();
        l.delay = Duration::from_millis(100);
        l.pmtu = Some(1400);
        let mut r = Reporter::spawn(l, 8, Duration::from_secs(30)).expect("worker");
        let c = ctx();
        let f = finding(Verdict::FragNeeded, "udp", "198.18.2.254", 4000);
        assert!(r.submit(aggregate(f.clone(), 7), &c).is_none());
        let mut newer = aggregate(f, 7);
        newer.count = 5;
        assert!(r.submit(newer, &c).is_none(), "joined with the first");
        assert_eq!(r.pending(), 1);
        assert_eq!(r.stats().queued, 1, "one job per entry");
        let a = tokio::time::timeout(Duration::from_secs(10), r.joined()).await.expect("joined");
        assert_eq!((a.id, a.count, a.finding.pmtu_cached), (7, 5, Some(1400)));
        assert_eq!(r.pending(), 0);
    });
}

/// A spoofed-looking first sighting of a local TCP flow (client port `sport`).
fn tcp_sighting(sport: u16) -> Finding {
    finding(Verdict::Rejected, "tcp", "198.18.2.254", sport)
}

/// Everything that comes back from the worker until it stays quiet.
async fn drain(r: &mut Reporter) -> Vec<Aggregate> {
    let mut got = Vec::new();
    while let Ok(a) = tokio::time::timeout(Duration::from_millis(500), r.joined()).await {
        got.push(a);
    }
    got
}

#[test]
fn a_folded_sighting_whose_socket_exists_is_printed_and_the_rest_stay_folded() {
    runtime().block_on(async {
        let mut l = Fake::new();
        l.socket = Some(TcpState::SynRecv);
        l.only_port = Some(56194);
        let mut r = Reporter::spawn(l, 64, Duration::from_secs(30)).expect("worker");
        let c = ctx();
        let (mut agg, mut ledger) = (Aggregator::new(4096), Ledger::new(64));
        let now = SystemTime::now();
        for i in 0..100 {
            agg.ingest(tcp_sighting(10_000 + i), now);
        }
        // The real one arrives once, after the flood took the line budget.
        agg.ingest(tcp_sighting(56194), now);
        let ready = r.due(&mut agg, &mut ledger, &c, crate::explain::aggregate::NEWS_ONLY);
        assert!(ready.is_empty(), "every line here needs its socket joined first");
        assert_eq!(agg.folded, 96, "5 printed, the rest folded");
        assert_eq!(r.stats().checked, 96, "every folded sighting of a local TCP flow is checked");

        let got = drain(&mut r).await;
        let real: Vec<&Aggregate> =
            got.iter().filter(|a| a.finding.flow.as_ref().and_then(|f| f.src_port) == Some(56194)).collect();
        assert_eq!(real.len(), 1, "the real one is printed from its first sighting: {got:?}");
        assert_eq!(real[0].finding.socket_state, Some("SYN-RECV"));
        assert_eq!(real[0].count, 1);
        assert_eq!(got.len(), 5 + 1, "the budget's 5 and the confirmed one; no spoofed sighting confirmed");
        assert_eq!((r.stats().confirmed, r.stats().unchecked), (1, 0));

        // The aggregator learns at the next report: the real one leaves its
        // fold (the fold records still add up), and its retransmit is an
        // update on the printed entry's cadence, not a second first line.
        assert!(r.due(&mut agg, &mut ledger, &c, crate::explain::aggregate::NEWS_ONLY).is_empty());
        assert_eq!(agg.folded, 95);
        assert!(!agg.ingest(tcp_sighting(56194), now), "a printed entry's repeat waits for the interval");
        let folds = agg.take_folds(Instant::now(), true);
        assert_eq!(folds.iter().map(|f| f.findings).sum::<u64>(), 95);
        assert_eq!(folds.iter().map(|f| f.events).sum::<u64>(), 95);
    });
}

#[test]
fn checks_are_bounded_and_leave_the_rest_folded() {
    runtime().block_on(async {
        let mut l = Fake::new();
        l.delay = Duration::from_millis(1);
        let calls = l.calls.clone();
        let mut r = Reporter::spawn(l, 64, Duration::from_secs(30)).expect("worker");
        let c = ctx();
        let (mut agg, mut ledger) = (Aggregator::new(8192), Ledger::new(64));
        let now = SystemTime::now();
        for i in 0..1000 {
            agg.ingest(tcp_sighting(10_000 + i), now);
        }
        let t = Instant::now();
        r.due(&mut agg, &mut ledger, &c, crate::explain::aggregate::NEWS_ONLY);
        assert!(t.elapsed() < Duration::from_millis(200), "queuing checks never waits: {:?}", t.elapsed());
        let s = r.stats();
        assert_eq!(s.checked, super::worker::CHECKS_IN_FLIGHT as u64, "{s:?}");
        assert_eq!(s.checked + s.unchecked, 995, "{s:?}");
        let got = drain(&mut r).await;
        assert_eq!(got.len(), 5, "only the budget's lines: no socket, nothing confirmed");
        assert_eq!(agg.folded, 995);
        // One socket lookup per check, plus the printed ones' joins.
        assert!(calls.load(Ordering::SeqCst) <= super::worker::CHECKS_IN_FLIGHT + 5 * 2);
    });
}
