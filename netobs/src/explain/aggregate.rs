//! Aggregation: one entry per (flow, reporter, verdict), with counts and
//! first/last seen, in a bounded LRU table so no traffic pattern can grow
//! memory without limit; and the line budget that keeps a flood of spoofed
//! ICMP errors from becoming a flood of lines.
//!
//! # Which lines are printed under a flood (the fold rule)
//!
//! ICMP errors are trivially spoofed: a flood with random reporters makes
//! every event a new entry. Lines are budgeted per bucket, a bucket being
//! (verdict, interface), so random codes or reporters cannot multiply the
//! budget:
//!
//! - **First sightings**: at most [`LinePolicy::new_per_sec`] new entries
//!   per second per bucket are printed at once. When more arrive, the ones
//!   with more evidence go first (higher count, then a quote whose two hop
//!   estimates agree, then the oldest); the rest are *folded*: remembered in
//!   the table (so `/top`, the counters and a later repeat still see them),
//!   counted in the bucket's fold, not printed.
//! - **Repeats**: an entry whose count grew since it was printed or folded
//!   is evidence that it is real. A spoofed random reporter almost never
//!   sends the same (reporter, code, flow) twice, a real rejection does
//!   (TCP retransmits the rejected SYN or SYN-ACK within a second). A folded
//!   entry that repeats is printed by the next report (the drain reports
//!   after every batch with news), from a second budget,
//!   [`LinePolicy::repeat_per_sec`] per bucket, largest growth first. Updates
//!   of printed entries (once per `--update-interval`) share that budget;
//!   what does not fit waits for the next report, nothing is dropped.
//!   A first sighting that repeated before its first report (its events
//!   came in one drain batch) has the same evidence, so when the
//!   first-sighting budget is spent it draws on this budget instead of
//!   being folded: a new problem right after a flood is not lost to the
//!   tokens the flood spent.
//! - **Confirmed first sightings**: a folded first sighting can still be
//!   shown to be real by the host itself. `due_folding` hands each folded
//!   entry to its caller; the join reporter (`crate::join`) asks sock_diag,
//!   at a bounded rate, whether the local TCP socket it quotes exists (a
//!   spoofer that invents clients quotes sockets that do not), and
//!   [`Aggregator::confirm`] turns a confirmed one into a printed entry and
//!   takes it back out of its fold (unless that fold was already written).
//! - **Fold records**: every [`LinePolicy::fold_window`] a bucket that folded
//!   anything prints one line saying how many entries, events and reporters
//!   it folded and which ICMP codes they carried; on exit the last ones are
//!   flushed.
//!
//! The cost is flat: the table and the buckets are bounded ([`FOLD_CODES`],
//! [`FOLD_REPORTERS`] cap what a fold remembers), `ingest` is O(1) (LRU
//! lookup or push, which evicts the least recently seen entry in O(1)), the
//! drain's report after a batch visits only the entries `ingest` flagged
//! (new ones, first repeats of folded ones), and the 1 s tick's report is
//! one pass over the table.

use std::{
    collections::{BTreeMap, HashSet},
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
    /// Count at the time it was last reported (or folded).
    pub reported_count: u64,
    /// When it was last printed; `None` while it was never printed.
    pub last_reported: Option<Instant>,
    /// Its first sighting did not fit the line budget and was folded.
    pub folded: bool,
    /// While folded: the fold window it was counted in and the events it
    /// added there, so [`Aggregator::confirm`] can take it back out.
    pub folded_in: Option<(u64, u64)>,
}

impl Aggregate {
    /// Evidence that the entry is real, for choosing among first sightings:
    /// repeats first, then a quote whose two hop estimates agree.
    fn evidence(&self) -> (u64, bool) {
        (self.count, self.finding.hops.as_ref().and_then(|h| h.agree) == Some(true))
    }
}

/// How many lines a flood may cost; see the module docs.
#[derive(Clone, Copy, Debug)]
pub struct LinePolicy {
    /// First sightings printed per second per (verdict, interface).
    pub new_per_sec: u32,
    /// Repeats and updates printed per second per (verdict, interface).
    pub repeat_per_sec: u32,
    /// How often a bucket that folded something says so.
    pub fold_window: Duration,
}

impl Default for LinePolicy {
    fn default() -> Self {
        LinePolicy { new_per_sec: 5, repeat_per_sec: 20, fold_window: Duration::from_secs(10) }
    }
}

/// At most this many distinct (family, type, code) are itemised per fold;
/// the rest are summed as "other codes".
pub const FOLD_CODES: usize = 16;
/// Distinct reporters are counted exactly up to this many per fold.
pub const FOLD_REPORTERS: usize = 4096;

/// A line budget bucket: one verdict on one interface.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketKey {
    pub verdict: Verdict,
    pub iface: String,
}

impl BucketKey {
    fn of(f: &Finding) -> BucketKey {
        BucketKey { verdict: f.verdict, iface: f.iface.clone() }
    }
}

/// What one bucket folded during one window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fold {
    pub bucket: BucketKey,
    /// Entries (distinct problems) whose first sighting was not printed.
    pub findings: u64,
    /// Events those entries held when they were folded.
    pub events: u64,
    /// Distinct reporters among them, counted up to [`FOLD_REPORTERS`].
    pub reporters: u64,
    /// `reporters` hit [`FOLD_REPORTERS`]: there were at least that many.
    pub reporters_capped: bool,
    /// Entries by (family, ICMP type, code), largest first, at most
    /// [`FOLD_CODES`]; `other_codes` counts the entries of the rest.
    pub codes: Vec<((u8, u8, u8), u64)>,
    pub other_codes: u64,
    pub since: SystemTime,
    pub until: SystemTime,
}

/// Budget and fold state of one bucket. Bounded: a few counters, at most
/// [`FOLD_CODES`] code rows and [`FOLD_REPORTERS`] addresses.
#[derive(Debug)]
struct Bucket {
    /// Generation of the current fold window (one more per [`Bucket::take`]).
    window: u64,
    new_tokens: f64,
    repeat_tokens: f64,
    refilled: Instant,
    window_start: Instant,
    since: SystemTime,
    findings: u64,
    events: u64,
    reporters: HashSet<IpAddr>,
    reporters_capped: bool,
    codes: BTreeMap<(u8, u8, u8), u64>,
    other_codes: u64,
}

impl Bucket {
    fn new(p: &LinePolicy, now: Instant) -> Bucket {
        Bucket {
            window: 0,
            new_tokens: f64::from(p.new_per_sec),
            repeat_tokens: f64::from(p.repeat_per_sec),
            refilled: now,
            window_start: now,
            since: SystemTime::now(),
            findings: 0,
            events: 0,
            reporters: HashSet::new(),
            reporters_capped: false,
            codes: BTreeMap::new(),
            other_codes: 0,
        }
    }

    /// Token buckets: `per_sec` a second, at most one second's worth.
    fn refill(&mut self, p: &LinePolicy, now: Instant) {
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.new_tokens = (self.new_tokens + dt * f64::from(p.new_per_sec)).min(f64::from(p.new_per_sec));
        self.repeat_tokens = (self.repeat_tokens + dt * f64::from(p.repeat_per_sec)).min(f64::from(p.repeat_per_sec));
    }

    /// Undoes [`Bucket::fold`] of an entry of this window that turned out
    /// to be real (its reporter stays in the distinct-reporter count: the
    /// set cannot tell whether another folded entry had the same one).
    fn unfold(&mut self, a: &Aggregate, events: u64) {
        self.findings = self.findings.saturating_sub(1);
        self.events = self.events.saturating_sub(events);
        let code = (a.finding.family, a.finding.icmp_type, a.finding.icmp_code);
        match self.codes.get_mut(&code) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.codes.remove(&code);
            }
            None => self.other_codes = self.other_codes.saturating_sub(1),
        }
    }

    fn fold(&mut self, a: &Aggregate) {
        if self.findings == 0 {
            self.since = a.first_seen;
        }
        self.findings += 1;
        self.events += a.count;
        if self.reporters.len() < FOLD_REPORTERS {
            self.reporters.insert(a.finding.reporter);
        } else if !self.reporters.contains(&a.finding.reporter) {
            self.reporters_capped = true;
        }
        let code = (a.finding.family, a.finding.icmp_type, a.finding.icmp_code);
        let room = self.codes.len() < FOLD_CODES;
        match self.codes.get_mut(&code) {
            Some(n) => *n += 1,
            None if room => {
                self.codes.insert(code, 1);
            }
            None => self.other_codes += 1,
        }
    }

    /// The fold of the window that ends now, and a fresh window.
    fn take(&mut self, bucket: &BucketKey, now: Instant) -> Option<Fold> {
        self.window_start = now;
        self.window += 1;
        if self.findings == 0 {
            return None;
        }
        let mut codes: Vec<((u8, u8, u8), u64)> = std::mem::take(&mut self.codes).into_iter().collect();
        codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let fold = Fold {
            bucket: bucket.clone(),
            findings: self.findings,
            events: self.events,
            reporters: self.reporters.len() as u64,
            reporters_capped: self.reporters_capped,
            codes,
            other_codes: self.other_codes,
            since: self.since,
            until: SystemTime::now(),
        };
        self.findings = 0;
        self.events = 0;
        self.reporters = HashSet::new();
        self.reporters_capped = false;
        self.other_codes = 0;
        Some(fold)
    }
}

/// Which budget a due entry draws on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Candidate {
    /// Never printed nor folded.
    Fresh,
    /// Grew since it was printed (and `interval` passed) or folded.
    Repeat,
}

/// Order within a bucket, smallest first: more evidence (count, or growth
/// for repeats), then agreeing hop estimates, then the oldest entry.
type Rank = (std::cmp::Reverse<u64>, std::cmp::Reverse<bool>, u64);

fn candidate(a: &Aggregate, interval: Duration, now: Instant) -> Option<(Candidate, Rank)> {
    use std::cmp::Reverse;
    if a.count <= a.reported_count {
        return None;
    }
    if a.reported_count == 0 && !a.folded {
        let (count, agree) = a.evidence();
        return Some((Candidate::Fresh, (Reverse(count), Reverse(agree), a.id)));
    }
    a.last_reported
        .is_none_or(|t| now.saturating_duration_since(t) >= interval)
        .then_some((Candidate::Repeat, repeat_rank(a)))
}

/// Rank among repeats: growth since the last report (or fold), then the
/// oldest entry.
fn repeat_rank(a: &Aggregate) -> Rank {
    use std::cmp::Reverse;
    (Reverse(a.count - a.reported_count), Reverse(false), a.id)
}

/// A first sighting that repeated before its first report (two events
/// in one drain batch: a SYN-ACK and its retransmit, say) has the same
/// evidence as a folded entry that repeats, so when the first-sighting
/// budget is spent it may still draw on the repeat budget.
fn repeated_already(a: &Aggregate) -> bool {
    a.count >= 2
}

/// Spends each bucket's tokens on its best candidates; returns, per
/// bucket, the rank of the first candidate that does not fit (None: all fit).
fn cutoffs(lists: &mut [Vec<Rank>], buckets: &mut [(BucketKey, Bucket)], kind: Candidate) -> Vec<Option<Rank>> {
    lists
        .iter_mut()
        .zip(buckets.iter_mut())
        .map(|(c, (_, b))| {
            let tokens = if kind == Candidate::Fresh { &mut b.new_tokens } else { &mut b.repeat_tokens };
            let n = (tokens.max(0.0).floor() as usize).min(c.len());
            *tokens -= n as f64;
            (n < c.len()).then(|| *c.select_nth_unstable(n).1)
        })
        .collect()
}

/// Index of `f`'s bucket, created on first use (no allocation otherwise).
fn bucket_ix(buckets: &mut Vec<(BucketKey, Bucket)>, f: &Finding, policy: &LinePolicy, now: Instant) -> usize {
    if let Some(i) = buckets.iter().position(|(k, _)| k.verdict == f.verdict && k.iface == f.iface) {
        return i;
    }
    buckets.push((BucketKey::of(f), Bucket::new(policy, now)));
    buckets.len() - 1
}

/// The bounded table.
pub struct Aggregator {
    table: LruCache<Key, Aggregate>,
    next_id: u64,
    /// Entries forgotten because the table was full.
    pub evicted: u64,
    policy: LinePolicy,
    /// A handful: verdicts times observed interfaces.
    buckets: Vec<(BucketKey, Bucket)>,
    /// First sightings folded since start (all buckets).
    pub folded: u64,
    /// Keys `ingest` flagged for the next report (new entries, first
    /// repeats of folded ones); at most the table's capacity.
    flagged: Vec<Key>,
    /// More were flagged than that: the next report scans the table.
    flagged_overflow: bool,
}

/// A report interval at least this long asks only for news (see
/// [`Aggregator::due`]).
pub const NEWS_ONLY: Duration = Duration::from_secs(86_400);

impl Aggregator {
    pub fn new(capacity: usize) -> Aggregator {
        Aggregator::with_policy(capacity, LinePolicy::default())
    }

    pub fn with_policy(capacity: usize, policy: LinePolicy) -> Aggregator {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Aggregator {
            table: LruCache::new(cap),
            next_id: 1,
            evicted: 0,
            policy,
            buckets: Vec::new(),
            folded: 0,
            flagged: Vec::new(),
            flagged_overflow: false,
        }
    }

    /// Adds one finding. Returns true when it wants a report now: it starts
    /// a new entry, or it is the first repeat of a folded one (evidence of
    /// a real problem, see the module docs). O(1): an LRU lookup, or a push
    /// that evicts the least recently seen entry.
    pub fn ingest(&mut self, finding: Finding, now: SystemTime) -> bool {
        let key = Key::of(&finding);
        if let Some(agg) = self.table.get_mut(&key) {
            agg.count += 1;
            agg.last_seen = now;
            agg.finding = finding;
            let wants = agg.folded && agg.last_reported.is_none() && agg.count == agg.reported_count + 1;
            if wants {
                self.flag(key);
            }
            return wants;
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
            folded: false,
            folded_in: None,
        };
        self.flag(key.clone());
        if self.table.push(key, agg).is_some_and(|(_, old)| old.id != id) {
            self.evicted += 1;
        }
        true
    }

    fn flag(&mut self, key: Key) {
        if self.flagged.len() < self.table.cap().get() {
            self.flagged.push(key);
        } else {
            self.flagged_overflow = true;
        }
    }

    /// Entries to print now, within the line budget (module docs): first
    /// sightings, folded entries that repeated, and printed entries that
    /// changed and were not printed within `interval`. Marks them reported;
    /// first sightings over the budget are folded. `Duration::ZERO` is the
    /// last report on exit: every changed entry is due, and the budget still
    /// holds (what does not fit is folded and flushed by
    /// [`Aggregator::take_folds`]). An `interval` of [`NEWS_ONLY`] or more
    /// (the drain's call after a batch) can only find news, so it visits
    /// just the entries `ingest` flagged: O(news), not O(table).
    pub fn due(&mut self, interval: Duration, now: Instant) -> Vec<Aggregate> {
        self.due_folding(interval, now, &mut |_| {})
    }

    /// [`Aggregator::due`], handing every first sighting it folds to
    /// `on_fold` (to be checked, and perhaps [`confirm`](Self::confirm)ed).
    pub fn due_folding(
        &mut self,
        interval: Duration,
        now: Instant,
        on_fold: &mut dyn FnMut(&Aggregate),
    ) -> Vec<Aggregate> {
        let last = interval.is_zero();
        let policy = self.policy;
        for (_, b) in &mut self.buckets {
            b.refill(&policy, now);
        }
        // The drain asks after every batch with news (an "infinite"
        // interval): then only what `ingest` flagged can be due, and only
        // that is visited. A finite interval (the 1 s tick) scans the table.
        let news_only = !last && !self.flagged_overflow && interval >= NEWS_ONLY;
        let flagged = std::mem::take(&mut self.flagged);
        self.flagged_overflow = false;
        let Aggregator { table, buckets, folded: total_folded, .. } = self;

        // Pass 1: the rank of every candidate, per bucket and kind. Pass 2
        // compares each entry with its bucket's cutoff (the rank of the
        // first one that does not fit), so nothing is cloned or hashed but
        // what is printed.
        let mut fresh: Vec<Vec<Rank>> = Vec::new();
        let mut repeats: Vec<Vec<Rank>> = Vec::new();
        // First sightings that already repeated: (bucket, rank as a first
        // sighting, rank as a repeat), for the ones the fresh budget misses.
        let mut repeated_fresh: Vec<(usize, Rank, Rank)> = Vec::new();
        let mut rank = |a: &Aggregate| {
            let Some((kind, rank)) = candidate(a, interval, now) else { return };
            let ix = bucket_ix(buckets, &a.finding, &policy, now);
            if kind == Candidate::Fresh && repeated_already(a) {
                repeated_fresh.push((ix, rank, repeat_rank(a)));
            }
            let lists = if kind == Candidate::Fresh { &mut fresh } else { &mut repeats };
            if lists.len() <= ix {
                lists.resize_with(ix + 1, Vec::new);
            }
            lists[ix].push(rank);
        };
        if news_only {
            flagged.iter().filter_map(|k| table.peek(k)).for_each(&mut rank);
        } else {
            table.iter().for_each(|(_, a)| rank(a));
        }
        let fits =
            |cuts: &[Option<Rank>], ix: usize, rank: &Rank| cuts.get(ix).is_none_or(|c| c.is_none_or(|c| *rank < c));
        let fresh_cut = cutoffs(&mut fresh, buckets, Candidate::Fresh);
        for (ix, as_fresh, as_repeat) in repeated_fresh {
            if !fits(&fresh_cut, ix, &as_fresh) {
                if repeats.len() <= ix {
                    repeats.resize_with(ix + 1, Vec::new);
                }
                repeats[ix].push(as_repeat);
            }
        }
        let repeat_cut = cutoffs(&mut repeats, buckets, Candidate::Repeat);

        let mut out = Vec::new();
        let mut folded = 0;
        let mut settle = |a: &mut Aggregate| {
            let Some((kind, rank)) = candidate(a, interval, now) else { return };
            let ix = bucket_ix(buckets, &a.finding, &policy, now);
            let (cuts, fold_rest) = match kind {
                Candidate::Fresh => (&fresh_cut, true),
                // Over the budget: wait for the next report; on exit, the
                // never-printed ones are folded, printed ones keep their line.
                Candidate::Repeat => (&repeat_cut, last),
            };
            let fits_as_repeat =
                || kind == Candidate::Fresh && repeated_already(a) && fits(&repeat_cut, ix, &repeat_rank(a));
            if fits(cuts, ix, &rank) || fits_as_repeat() {
                a.reported_count = a.count;
                a.last_reported = Some(now);
                out.push(a.clone());
            } else if fold_rest && a.last_reported.is_none() {
                // Each entry is folded (and counted) once; a folded entry
                // that grew but did not fit the exit report stays as it was.
                let first = !a.folded;
                if first {
                    buckets[ix].1.fold(a);
                    folded += 1;
                    a.folded = true;
                    a.folded_in = Some((buckets[ix].1.window, a.count));
                }
                a.reported_count = a.count;
                if first {
                    on_fold(a);
                }
            }
        };
        if news_only {
            for k in &flagged {
                if let Some(a) = table.peek_mut(k) {
                    settle(a);
                }
            }
        } else {
            table.iter_mut().for_each(|(_, a)| settle(a));
        }
        *total_folded += folded;
        out.sort_by_key(|a| a.id);
        out
    }

    /// A folded entry was shown to be real (its snapshot `printed`, taken
    /// when it was folded, is being printed now): from now on it is a
    /// printed entry, with the usual update cadence, and it leaves its fold
    /// if that fold's record has not been written yet. Returns false (and
    /// changes nothing) when the entry is gone from the table or is no
    /// longer a folded, never printed one.
    pub fn confirm(&mut self, printed: &Aggregate, now: Instant) -> bool {
        let key = Key::of(&printed.finding);
        let Aggregator { table, buckets, folded: total_folded, .. } = self;
        let Some(a) = table.peek_mut(&key).filter(|a| a.id == printed.id && a.folded && a.last_reported.is_none())
        else {
            return false;
        };
        if let Some((window, events)) = a.folded_in.take()
            && let Some((_, b)) =
                buckets.iter_mut().find(|(k, _)| k.verdict == a.finding.verdict && k.iface == a.finding.iface)
            && b.window == window
        {
            b.unfold(a, events);
            *total_folded = total_folded.saturating_sub(1);
        }
        a.folded = false;
        a.last_reported = Some(now);
        a.reported_count = a.reported_count.max(printed.count);
        true
    }

    /// Folds whose window ended (all of them when `flush`, on exit), in
    /// bucket order. A bucket with nothing folded says nothing.
    pub fn take_folds(&mut self, now: Instant, flush: bool) -> Vec<Fold> {
        let window = self.policy.fold_window;
        let mut out: Vec<Fold> = self
            .buckets
            .iter_mut()
            .filter(|(_, b)| flush || now.saturating_duration_since(b.window_start) >= window)
            .filter_map(|(k, b)| b.take(k, now))
            .collect();
        out.sort_by(|a, b| a.bucket.cmp(&b.bucket));
        out
    }

    /// The `n` entries with the highest counts (a partial sort: only `n`
    /// are cloned).
    pub fn top(&self, n: usize) -> Vec<Aggregate> {
        let mut all: Vec<&Aggregate> = self.table.iter().map(|(_, a)| a).collect();
        let order = |a: &&Aggregate, b: &&Aggregate| b.count.cmp(&a.count).then(a.id.cmp(&b.id));
        if n < all.len() {
            all.select_nth_unstable_by(n, order);
            all.truncate(n);
        }
        all.sort_by(order);
        all.into_iter().cloned().collect()
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

    fn finding(port: u16) -> Finding {
        let mut f = Finding::example();
        if let Some(fl) = &mut f.flow {
            fl.dst_port = Some(port);
        }
        f
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

    /// A spoofed one-off: its own reporter and client port.
    fn spoofed(i: u32) -> Finding {
        let mut f = finding((i % 60000) as u16);
        f.reporter = IpAddr::from([198, 19, (i >> 8) as u8, i as u8]);
        f
    }

    #[test]
    fn a_flood_of_first_sightings_is_budgeted_and_folded() {
        let mut agg = Aggregator::new(4096);
        let t0 = Instant::now();
        let now = SystemTime::now();
        for i in 0..1000 {
            agg.ingest(spoofed(i), now);
        }
        let printed = agg.due(Duration::from_secs(5), t0);
        assert_eq!(printed.len(), 5, "one second's budget of first sightings");
        assert_eq!(agg.folded, 995);
        // Nothing more is printed for them, and the fold says so once its window ends.
        assert!(agg.due(Duration::from_secs(5), t0 + Duration::from_millis(500)).is_empty());
        assert!(agg.take_folds(t0 + Duration::from_secs(1), false).is_empty(), "window not over yet");
        let folds = agg.take_folds(t0 + Duration::from_secs(10), false);
        assert_eq!(folds.len(), 1);
        assert_eq!(folds[0].findings, 995);
        assert_eq!(folds[0].events, 995);
        assert_eq!(folds[0].reporters, 995);
        assert_eq!(folds[0].codes, vec![((4, 3, 10), 995)]);
        assert_eq!(folds[0].bucket, BucketKey { verdict: Verdict::Rejected, iface: "eth0".into() });
        assert!(agg.take_folds(t0 + Duration::from_secs(30), true).is_empty(), "nothing new folded");
        // The budget refills: a second later, new problems print again.
        agg.ingest(spoofed(5000), now);
        assert_eq!(agg.due(Duration::from_secs(5), t0 + Duration::from_secs(2)).len(), 1);
    }

    #[test]
    fn budgets_are_per_verdict_and_interface() {
        let mut agg = Aggregator::new(4096);
        let t0 = Instant::now();
        let now = SystemTime::now();
        for i in 0..100 {
            let mut f = spoofed(i);
            if i % 2 == 0 {
                f.verdict = Verdict::Unreachable;
                f.icmp_code = 1;
            }
            agg.ingest(f, now);
        }
        let mut other_if = spoofed(7777);
        other_if.iface = "eth1".into();
        agg.ingest(other_if, now);
        let printed = agg.due(Duration::from_secs(5), t0);
        assert_eq!(printed.len(), 11, "5 + 5 on eth0, 1 on eth1");
        assert!(printed.iter().any(|a| a.finding.iface == "eth1"));
    }

    #[test]
    fn a_repeated_rejection_is_printed_during_a_flood() {
        let mut agg = Aggregator::new(4096);
        let t0 = Instant::now();
        let now = SystemTime::now();
        for i in 0..200 {
            agg.ingest(spoofed(i), now);
        }
        // The real one arrives after the budget is spent: folded at first...
        let real = finding(56194);
        agg.ingest(real.clone(), now);
        let first = agg.due(Duration::from_secs(5), t0);
        assert!(first.iter().all(|a| a.finding.reporter != real.reporter), "folded with the flood");
        for i in 200..400 {
            agg.ingest(spoofed(i), now);
        }
        // ... its retransmit is evidence: it asks for a report, and is
        // printed by it, ahead of the flood's new one-offs.
        assert!(agg.ingest(real.clone(), now), "a folded entry's first repeat wants a report");
        assert!(!agg.ingest(spoofed(0), now), "a printed entry's repeat waits for the interval");
        for i in 400..600 {
            agg.ingest(spoofed(i), now);
        }
        let next = agg.due(Duration::from_secs(5), t0 + Duration::from_millis(100));
        let line = next.iter().find(|a| a.finding.reporter == real.reporter).expect("the real rejection's line");
        assert_eq!(line.count, 2);
        assert!(next.len() <= 1 + 1, "spoofed first sightings still wait for tokens: {}", next.len());
        // It keeps its usual update cadence afterwards.
        agg.ingest(real.clone(), now);
        assert!(agg.due(Duration::from_secs(5), t0 + Duration::from_secs(1)).iter().all(|a| a.id != line.id));
        let later = agg.due(Duration::from_secs(5), t0 + Duration::from_secs(6));
        assert!(later.iter().any(|a| a.id == line.id && a.count == 3));
    }

    #[test]
    fn a_problem_that_repeats_before_its_first_report_is_printed_after_a_flood() {
        let mut agg = Aggregator::new(4096);
        let t0 = Instant::now();
        let now = SystemTime::now();
        for i in 0..200 {
            agg.ingest(spoofed(i), now);
        }
        assert_eq!(agg.due(NEWS_ONLY, t0).len(), 5, "the flood spent the first-sighting budget");
        // Right after the flood (less than one token back), a new problem
        // arrives three times in one batch: it is printed, not folded.
        let real = finding(56194);
        for _ in 0..3 {
            agg.ingest(real.clone(), now);
        }
        agg.ingest(spoofed(9999), now);
        let next = agg.due(NEWS_ONLY, t0 + Duration::from_millis(100));
        assert_eq!(next.len(), 1, "only the repeated one: {next:?}");
        assert_eq!((next[0].finding.reporter, next[0].count), (real.reporter, 3));
        assert_eq!(agg.folded, 195 + 1, "the one-off is folded as before");
        // It drew on the repeat budget (20 a second): 19 more fit, then none.
        for i in 0..30u32 {
            let mut f = spoofed(20_000 + i);
            f.reporter = IpAddr::from([198, 18, 100, i as u8]);
            agg.ingest(f.clone(), now);
            agg.ingest(f, now);
        }
        assert_eq!(agg.due(NEWS_ONLY, t0 + Duration::from_millis(100)).len(), 19);
    }

    #[test]
    fn first_sightings_with_more_evidence_go_first() {
        let mut agg = Aggregator::new(4096);
        let t0 = Instant::now();
        let now = SystemTime::now();
        for i in 0..50 {
            agg.ingest(spoofed(i), now);
        }
        let real = finding(56194);
        for _ in 0..3 {
            agg.ingest(real.clone(), now);
        }
        let printed = agg.due(Duration::from_secs(5), t0);
        assert_eq!(printed.len(), 5);
        assert!(printed.iter().any(|a| a.finding.reporter == real.reporter && a.count == 3));
    }

    #[test]
    fn exit_report_keeps_the_budget_and_folds_the_rest() {
        let mut agg = Aggregator::new(4096);
        let t0 = Instant::now();
        let now = SystemTime::now();
        for i in 0..100 {
            agg.ingest(spoofed(i), now);
        }
        assert_eq!(agg.due(Duration::ZERO, t0).len(), 5);
        let folds = agg.take_folds(t0, true);
        assert_eq!(folds.iter().map(|f| f.findings).sum::<u64>(), 95);
    }

    #[test]
    fn the_drain_report_visits_only_news_and_agrees_with_a_scan() {
        let mut agg = Aggregator::new(4096);
        let t0 = Instant::now();
        let now = SystemTime::now();
        for i in 0..100 {
            agg.ingest(spoofed(i), now);
        }
        assert_eq!(agg.due(NEWS_ONLY, t0).len(), 5);
        assert_eq!(agg.folded, 95);
        // A printed entry's repeat is no news; a folded entry's first repeat is.
        assert!(!agg.ingest(spoofed(0), now));
        assert!(agg.ingest(spoofed(50), now));
        let news = agg.due(NEWS_ONLY, t0 + Duration::from_millis(10));
        assert_eq!(news.iter().map(|a| a.finding.reporter).collect::<Vec<_>>(), vec![spoofed(50).reporter]);
        assert!(agg.due(NEWS_ONLY, t0 + Duration::from_millis(20)).is_empty(), "nothing flagged since");
        // The tick's scan still finds the printed entry that grew.
        let tick = agg.due(Duration::from_secs(5), t0 + Duration::from_secs(6));
        assert_eq!(tick.iter().map(|a| a.finding.reporter).collect::<Vec<_>>(), vec![spoofed(0).reporter]);
    }

    #[test]
    fn flagging_more_than_the_table_holds_falls_back_to_a_scan() {
        let mut agg = Aggregator::new(16);
        let t0 = Instant::now();
        let now = SystemTime::now();
        for i in 0..1000 {
            agg.ingest(spoofed(i), now);
        }
        assert_eq!(agg.due(NEWS_ONLY, t0).len(), 5);
        assert_eq!(agg.folded, 11, "the 16 remembered entries, 5 printed");
    }

    #[test]
    fn an_entry_is_folded_once() {
        let mut agg = Aggregator::new(4096);
        let t0 = Instant::now();
        let now = SystemTime::now();
        for i in 0..100 {
            agg.ingest(spoofed(i), now);
        }
        agg.due(Duration::from_secs(5), t0);
        // Every folded one repeats, more than the exit budget can print.
        for i in 0..100 {
            agg.ingest(spoofed(i), now);
        }
        assert_eq!(agg.due(Duration::ZERO, t0).len(), 20, "the repeat budget");
        let folds = agg.take_folds(t0, true);
        assert_eq!(folds.iter().map(|f| f.findings).sum::<u64>(), 95);
        assert_eq!(agg.folded, 95);
    }

    #[test]
    fn fold_memory_is_capped() {
        let mut agg = Aggregator::new(100_000);
        let t0 = Instant::now();
        let now = SystemTime::now();
        for i in 0..(FOLD_REPORTERS as u32 + 500) {
            let mut f = spoofed(i);
            f.reporter = IpAddr::from(std::net::Ipv6Addr::from(u128::from(i) | (0x2001_0db8u128 << 96)));
            f.icmp_code = (i % 256) as u8;
            agg.ingest(f, now);
        }
        agg.due(Duration::from_secs(5), t0);
        let folds = agg.take_folds(t0, true);
        assert_eq!(folds.len(), 1);
        let f = &folds[0];
        assert_eq!(f.reporters, FOLD_REPORTERS as u64);
        assert!(f.reporters_capped);
        assert_eq!(f.codes.len(), FOLD_CODES);
        assert_eq!(f.codes.iter().map(|c| c.1).sum::<u64>() + f.other_codes, f.findings);
    }

    #[test]
    fn random_keys_stay_within_capacity() {
        let mut agg = Aggregator::new(64);
        let now = SystemTime::now();
        let mut x = 0x1234_5678u32;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut f = spoofed(x);
            f.icmp_code = (x >> 24) as u8;
            agg.ingest(f, now);
            assert!(agg.len() <= 64);
        }
        assert_eq!(agg.len(), 64);
        assert!(agg.evicted >= 100_000 - 64 - 1000, "nearly every random key is new: {}", agg.evicted);
        let top = agg.top(10);
        assert_eq!(top.len(), 10);
        assert!(top.windows(2).all(|w| w[0].count >= w[1].count));
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
