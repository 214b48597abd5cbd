//! Prometheus metrics: what a scrape sees, and the cheap handle the watch
//! loop updates.
//!
//! Two rules shape this module:
//!
//! - **The kernel counters are read at scrape time**, by [`KernelCollector`]
//!   over its own [`CounterReader`] (duplicated map descriptors). Nothing is
//!   mirrored by the event loop, so a scrape during a flood reports what the
//!   kernel counted just now, however far behind the drain is.
//! - **The loop only hands over short, cheap updates** through [`Recorder`]:
//!   a histogram observation or a gauge store per sampled finding, an
//!   `Arc<str>` swap for `/top`, one atomic store for the heartbeat. A scrape
//!   never takes a lock the loop holds while it works.
//!
//! Labels are bounded by construction: interface (`iface`, `egress`),
//! `family`, `direction`, ICMP `type`/`code`, `verdict`, `hook`, `op`,
//! `reason` (three PTB suspects, or the running kernel's drop reasons: a
//! fixed enum of about 130), `limit` (three rate-limit counters).
//! Addresses and ports never become labels; they are in `--json` and `/top`.
//! `docs/fleet.md` computes the series budget these labels allow.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::IpAddr,
    num::NonZeroUsize,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime},
};

use anyhow::Result;
use lru::LruCache;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::Registry,
};

use crate::{
    explain::{Finding, ptb::PtbSuspect},
    health::{self, Op},
    kernel::{
        Attached, CounterReader, Counters, Hook,
        counters::{OTHER_CODE, OTHER_IFACE},
    },
};
use netobs_common::{
    event::{DfCounterKey, IcmpCounterKey, stat},
    icmp::{self, Verdict},
};

/// Every family is `netobs_<name>`.
pub(crate) const PREFIX: &str = "netobs";

/// How long the event loop may go without a heartbeat before `/healthz`
/// answers 503. The loop beats once a second; ten missed beats is a loop
/// that is stuck (a blocking call, a livelock), not a slow one.
pub(crate) const HEALTH_STALE_MS: u64 = 10_000;

/// Distinct reporters remembered for `netobs_new_reporters_total`: a
/// reporter forgotten (least recently seen first) counts as new again.
const REPORTERS_REMEMBERED: usize = 4096;

/// Kernel statistics exported as counters: (stat slot, name, help). The
/// encoder appends `_total`. Slots left out are sums of the labelled
/// families (`icmp_errors`, `df_oversized`) or plain packet-mix counts
/// (`ipv4`, `ipv6`, `icmp_other`) that the JSON `counters` record carries.
const STAT_METRICS: &[(u32, &str, &str)] = &[
    (stat::PACKETS, "packets_observed", "Packets the observers ran on (every hook, every interface)"),
    (stat::FIB_LOOKUPS, "df_fib_lookups", "DF packets above the size threshold that paid for a FIB lookup"),
    (
        stat::FIB_CACHE_HITS,
        "df_route_cache_hits",
        "DF packets above the size threshold answered by the per-CPU route cache instead of a FIB lookup",
    ),
    (stat::EVENTS, "events", "Events written to the ring buffer (sampled in detail)"),
    (stat::SAMPLED_OUT, "events_sampled_out", "Events held back by the per-CPU token bucket (still counted)"),
    (stat::RINGBUF_FULL, "ringbuf_lost", "Events lost because the ring buffer was full (the counters still have them)"),
    (stat::MALFORMED, "malformed_packets", "Packets too short or inconsistent to classify (passed untouched)"),
    (stat::QUOTE_TRUNCATED, "quote_truncated", "Sampled ICMP errors whose quote stopped before the transport ports"),
    (
        stat::MAP_FULL,
        "kernel_map_full",
        "Counter updates the kernel could not make (the counters are fixed-size arrays now, so this stays 0)",
    ),
    (
        stat::FIB_ERRORS,
        "df_fib_errors",
        "FIB lookups the kernel answered with an error: the DF packet was not checked against its egress MTU",
    ),
    (
        stat::EGRESS_FORWARDED,
        "egress_forwarded_packets",
        "Forwarded packets seen at TC egress: counted, not classified (egress reports what this host sends)",
    ),
];

const HELP_ICMP: &str = "ICMP/ICMPv6 errors counted by the kernel, by interface, family, direction \
(received; sent by this host at TC egress; generated = icmp:icmp_send tracepoint, host-wide, iface \"*\"), \
type, code and verdict";
const HELP_DF: &str = "DF packets too big for their egress MTU, by ingress (iface) and egress interface";

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct IcmpLabels {
    iface: String,
    family: &'static str,
    direction: &'static str,
    r#type: String,
    code: String,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct DfLabels {
    iface: String,
    egress: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttachLabels {
    iface: String,
    hook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
}

/// A dropped ICMP error: `reason` is a name of the running kernel's
/// `enum skb_drop_reason` (about 130 values) or "other".
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    direction: &'static str,
    family: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvestigationLabels {
    trigger: &'static str,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// Where the kernel counters come from at scrape time: the real maps, or a
/// fixed snapshot in unit tests.
pub(crate) trait CounterSource: Send + Sync + 'static {
    fn read(&self) -> Result<Counters>;
}

impl CounterSource for CounterReader {
    fn read(&self) -> Result<Counters> {
        CounterReader::read(self)
    }
}

/// Interface names for labels, resolved at scrape time and remembered, so
/// a counter keeps its label after its interface is renamed or vanishes
/// (a new label would start a new series, and its rate would restart).
#[derive(Debug, Default)]
struct IfNames {
    known: Mutex<HashMap<u32, String>>,
}

impl IfNames {
    /// The names of `wanted`, asking the kernel once if one is unknown.
    fn resolve(&self, wanted: impl Iterator<Item = u32>) -> HashMap<u32, String> {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let mut fresh = None;
        for i in wanted {
            if known.contains_key(&i) {
                continue;
            }
            if i == OTHER_IFACE {
                // The kernel's slot for interfaces without one of their own.
                known.insert(i, "other".to_string());
                continue;
            }
            let names = fresh.get_or_insert_with(crate::net::interface_names);
            known.insert(i, names.get(&i).cloned().unwrap_or_else(|| format!("if{i}")));
        }
        known.clone()
    }
}

/// Reads the kernel counter maps on every scrape (the prometheus-client
/// [`Collector`] hook). A failed read is a transient `map_read` error: the
/// kernel families are left without samples for that scrape and the next
/// scrape tries again.
struct KernelCollector<S> {
    source: S,
    names: IfNames,
}

impl<S> fmt::Debug for KernelCollector<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelCollector").finish_non_exhaustive()
    }
}

impl<S: CounterSource> Collector for KernelCollector<S> {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let snapshot = match self.source.read() {
            Ok(c) => Some(c),
            Err(e) => {
                health::transient(Op::MapRead, &e);
                None
            }
        };
        let empty = Counters::default();
        let c = snapshot.as_ref().unwrap_or(&empty);
        let ifindexes =
            c.icmp.keys().map(|k| k.ifindex).chain(c.df.keys().flat_map(|k| [k.ingress_ifindex, k.egress_ifindex]));
        let names = self.names.resolve(ifindexes);
        let ifname = |i: u32| names.get(&i).cloned().unwrap_or_else(|| format!("if{i}"));

        // Keys that share a label set are summed: XDP and TC ingress on one
        // interface are both "received", and a renamed interface or the
        // "other" slot can name two ifindexes alike. One label set must
        // appear once in a scrape, or Prometheus rejects the whole scrape.
        let mut icmp: BTreeMap<IcmpLabels, u64> = BTreeMap::new();
        for (k, n) in &c.icmp {
            *icmp.entry(icmp_labels(k, &ifname)).or_default() += n;
        }
        let mut df: BTreeMap<DfLabels, u64> = BTreeMap::new();
        for (k, n) in &c.df {
            *df.entry(df_labels(k, &ifname)).or_default() += n;
        }
        let mut m = enc.encode_descriptor("icmp_errors", HELP_ICMP, None, MetricType::Counter)?;
        for (labels, n) in &icmp {
            ConstCounter::new(*n).encode(m.encode_family(labels)?)?;
        }
        let mut m = enc.encode_descriptor("df_oversized_packets", HELP_DF, None, MetricType::Counter)?;
        for (labels, n) in &df {
            ConstCounter::new(*n).encode(m.encode_family(labels)?)?;
        }
        for &(slot, name, help) in STAT_METRICS {
            let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            if snapshot.is_some() {
                ConstCounter::new(c.stat(slot)).encode(m)?;
            }
        }
        Ok(())
    }
}

/// What only the process knows, computed at scrape time: transient errors
/// (`health`), findings forgotten, heartbeat age, build and start time.
#[derive(Debug)]
struct ProcessCollector {
    live: Arc<Live>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let mut m = enc.encode_descriptor(
            "transient_errors",
            "Transient errors survived (logged, retried), by operation",
            None,
            MetricType::Counter,
        )?;
        for op in Op::ALL {
            ConstCounter::new(health::count(op)).encode(m.encode_family(&OpLabels { op: op.as_str() })?)?;
        }
        let m = enc.encode_descriptor(
            "findings_evicted",
            "Findings forgotten because --max-flows was reached (their counts stay in the kernel families)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.live.findings_evicted.load(Ordering::Relaxed)).encode(m)?;
        let m = enc.encode_descriptor(
            "event_loop_lag_seconds",
            "Seconds since the watch event loop last beat (it beats every second; /healthz fails past 10)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.live.heartbeat.age_ms() as f64 / 1000.0).encode(m)?;
        let m = enc.encode_descriptor(
            "start_time_seconds",
            "When this netobs process started, in seconds since the Unix epoch",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.live.started_unix).encode(m)?;
        let mut m = enc.encode_descriptor(
            "build_info",
            "Always 1; the labels name the running version and its git commit",
            None,
            MetricType::Gauge,
        )?;
        let build = BuildLabels { version: env!("CARGO_PKG_VERSION"), commit: crate::cli::GIT_COMMIT };
        ConstGauge::new(1i64).encode(m.encode_family(&build)?)?;
        Ok(())
    }
}

/// The event loop's heartbeat: milliseconds since `base`, stored once a
/// beat (one relaxed atomic store; no lock).
#[derive(Debug)]
pub(crate) struct Heartbeat {
    base: Instant,
    last_ms: AtomicU64,
}

impl Heartbeat {
    fn new() -> Heartbeat {
        // An hour in the past, so "a beat N ms ago" is representable from
        // the start (tests stall it that way).
        let now = Instant::now();
        let base = now.checked_sub(std::time::Duration::from_secs(3600)).unwrap_or(now);
        Heartbeat { base, last_ms: AtomicU64::new(0) }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn beat(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Pretends the last beat was `ms` ago.
    #[cfg(test)]
    pub(crate) fn stall(&self, ms: u64) {
        self.last_ms.store(self.now_ms().saturating_sub(ms), Ordering::Relaxed);
    }

    /// Milliseconds since the last beat.
    pub(crate) fn age_ms(&self) -> u64 {
        self.now_ms().saturating_sub(self.last_ms.load(Ordering::Relaxed))
    }
}

/// State both sides touch, each access short: atomics, the prometheus-client
/// metrics (each behind its own brief lock), and the `/top` body pointer.
#[derive(Debug)]
pub(crate) struct Live {
    ptb_mtu: Histogram,
    hop_distance: Histogram,
    attached: Family<AttachLabels, Gauge>,
    findings_active: Gauge,
    new_reporters: Family<VerdictLabels, Counter>,
    icmp_dropped: Family<DropLabels, Counter>,
    icmp_dropped_netns_unknown: Counter,
    icmp_rate_limited: Family<LimitLabels, Counter>,
    ptb_suspect: Family<ReasonLabels, Counter>,
    ptb_mtu_zero: Counter,
    absence: Family<KindLabels, Counter>,
    investigations: Family<InvestigationLabels, Counter>,
    findings_evicted: AtomicU64,
    pub(crate) heartbeat: Heartbeat,
    started_unix: f64,
    /// `/top`: a JSON array of finding records, replaced whole by the loop.
    top: Mutex<Arc<str>>,
}

impl Live {
    /// The current `/top` body (an `Arc` clone under a lock held for
    /// nanoseconds).
    pub(crate) fn top(&self) -> Arc<str> {
        self.top.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The registry a scrape encodes. Shared (`Arc`) with the HTTP server.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) live: Arc<Live>,
}

/// Which text format a scrape gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// OpenMetrics 1.0 (what a Prometheus server asks for first).
    OpenMetrics,
    /// Prometheus text 0.0.4 (curl, `promtool check metrics`, old scrapers).
    PrometheusText,
}

impl Format {
    /// From a request's `Accept` header: OpenMetrics only when asked for.
    pub(crate) fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::PrometheusText,
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

impl Metrics {
    /// Every family, with the kernel counters read from `source` at scrape
    /// time. Returns the shared registry and the loop's handle on it.
    pub(crate) fn new(source: impl CounterSource) -> (Arc<Metrics>, Recorder) {
        let started_unix =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let live = Arc::new(Live {
            ptb_mtu: Histogram::new([
                576.0, 1024.0, 1280.0, 1380.0, 1400.0, 1420.0, 1450.0, 1460.0, 1480.0, 1492.0, 1500.0, 9000.0,
            ]),
            hop_distance: Histogram::new((1..=16).map(f64::from).chain([20.0, 24.0, 32.0])),
            attached: Family::default(),
            findings_active: Gauge::default(),
            new_reporters: Family::default(),
            icmp_dropped: Family::default(),
            icmp_dropped_netns_unknown: Counter::default(),
            icmp_rate_limited: Family::default(),
            ptb_suspect: Family::default(),
            ptb_mtu_zero: Counter::default(),
            absence: Family::default(),
            investigations: Family::default(),
            findings_evicted: AtomicU64::new(0),
            heartbeat: Heartbeat::new(),
            started_unix,
            top: Mutex::new(Arc::from("[]")),
        });
        live.heartbeat.beat();
        // Counters exist from the start at 0: a series that first appears
        // at 1 loses that first increase to rate() and increase().
        for v in Verdict::ALL {
            live.new_reporters.get_or_create(&VerdictLabels { verdict: v.as_str() }).inc_by(0);
        }
        for k in crate::explain::absence::AbsenceKind::ALL {
            live.absence.get_or_create(&KindLabels { kind: k.as_str() }).inc_by(0);
        }

        let mut registry = Registry::with_prefix(PREFIX);
        registry.register_collector(Box::new(KernelCollector { source, names: IfNames::default() }));
        registry.register(
            "icmp_ptb_mtu_bytes",
            "MTU announced by received frag-needed / Packet Too Big messages (sampled events)",
            live.ptb_mtu.clone(),
        );
        registry.register(
            "quoted_hop_distance",
            "Hop distance of the reporters of received ICMP errors (sampled events)",
            live.hop_distance.clone(),
        );
        registry.register(
            "program_attached",
            "1 while an observer is attached, 0 once it was detached, by interface and hook",
            live.attached.clone(),
        );
        registry.register(
            "findings_active",
            "Distinct (flow, reporter, verdict) findings remembered now",
            live.findings_active.clone(),
        );
        registry.register(
            "new_reporters",
            "Reporters of received ICMP errors not seen before (or forgotten since), by verdict",
            live.new_reporters.clone(),
        );
        for r in [PtbSuspect::MtuNotSmaller, PtbSuspect::MtuBelowMinimum, PtbSuspect::UnknownFlow] {
            live.ptb_suspect.get_or_create(&ReasonLabels { reason: ptb_reason(r) }).inc_by(0);
        }
        registry.register(
            "icmp_ptb_suspect",
            "Received frag-needed / Packet Too Big not believed (impossible MTU, or quoting a flow this host never sent), \
by reason (sampled events); kept out of icmp_ptb_mtu_bytes",
            live.ptb_suspect.clone(),
        );
        registry.register(
            "icmp_ptb_mtu_zero",
            "Received frag-needed announcing MTU 0 (routers before RFC 1191; sampled events); kept out of icmp_ptb_mtu_bytes",
            live.ptb_mtu_zero.clone(),
        );
        registry.register(
            "icmp_dropped",
            "ICMP/ICMPv6 errors this host's kernel dropped (kfree_skb tracepoint, this network namespace), by direction \
(inbound: arrived on an interface; outbound: generated here), family and drop reason (names from the kernel's BTF)",
            live.icmp_dropped.clone(),
        );
        registry.register(
            "icmp_dropped_netns_unknown",
            "Dropped ICMP errors whose network namespace could not be told (no device, no socket): not counted as this namespace's",
            live.icmp_dropped_netns_unknown.clone(),
        );
        registry.register(
            "icmp_rate_limited",
            "ICMP errors this host should have sent but suppressed since watch started (/proc/net/snmp OutRateLimitGlobal: \
icmp_msgs_per_sec, OutRateLimitHost: icmp_ratelimit; /proc/net/snmp6 Icmp6OutRateLimitHost), by limit",
            live.icmp_rate_limited.clone(),
        );
        registry.register(
            "retransmission_findings",
            "Findings made from this host's own TCP retransmissions (no ICMP came back), by kind; each once, not its update lines",
            live.absence.clone(),
        );
        registry.register(
            "investigations",
            "watch --investigate runs, by trigger and verdict (skipped_budget, skipped_queue, failed when none)",
            live.investigations.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector { live: live.clone() }));
        let recorder = Recorder { live: live.clone(), reporters: LruCache::new(reporters_cap()) };
        (Arc::new(Metrics { registry, live }), recorder)
    }

    /// One scrape: the kernel maps are read now.
    pub(crate) fn encode(&self, format: Format) -> String {
        let mut s = String::with_capacity(16 * 1024);
        let r = match format {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut s, &self.registry),
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::encode(&mut s, &self.registry),
        };
        if let Err(e) = r {
            health::transient(Op::Output, &format_args!("encoding metrics: {e}"));
        }
        s
    }
}

/// Hands back to the kernel the heap that loading and attaching used and
/// freed (parsing the eBPF object and the kernel's BTF): glibc keeps freed
/// memory in its arenas otherwise, and an idle `watch` would stay at its
/// start-up peak for months. Called once, before the event loop.
pub(crate) fn release_setup_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free pages; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn reporters_cap() -> NonZeroUsize {
    NonZeroUsize::new(REPORTERS_REMEMBERED).unwrap_or(NonZeroUsize::MIN)
}

/// The event loop's handle: cheap updates only (see the module doc).
pub(crate) struct Recorder {
    live: Arc<Live>,
    /// Reporters seen, for `new_reporters`; touched by the loop only.
    reporters: LruCache<(IpAddr, Verdict), ()>,
}

impl Recorder {
    /// The loop is alive (call at least once a second).
    pub(crate) fn beat(&self) {
        self.live.heartbeat.beat();
    }

    /// An observer attached (`on`) or detached from `a`'s interface.
    pub(crate) fn set_attached(&self, a: &Attached, on: bool) {
        let v = i64::from(on);
        self.live.attached.get_or_create(&AttachLabels { iface: a.iface.clone(), hook: hook_name(a.ingress) }).set(v);
        if a.egress {
            self.live.attached.get_or_create(&AttachLabels { iface: a.iface.clone(), hook: "tc_egress" }).set(v);
        }
    }

    /// What only sampled events know: MTUs, distances, new reporters.
    pub(crate) fn observe(&mut self, f: &Finding) {
        if f.kind != "icmp_error" {
            return;
        }
        // A PTB not believed, or one with MTU 0, would put a number in the
        // histogram that no path has (MTU 0 landed in the 576 bucket).
        match (f.ptb_suspect, f.mtu) {
            (Some(r), _) => {
                self.live.ptb_suspect.get_or_create(&ReasonLabels { reason: ptb_reason(r) }).inc();
            }
            (None, Some(0)) => {
                self.live.ptb_mtu_zero.inc();
            }
            (None, Some(m)) => self.live.ptb_mtu.observe(f64::from(m)),
            (None, None) => {}
        }
        if let Some(d) = f.hops.as_ref().and_then(|h| h.distance) {
            self.live.hop_distance.observe(f64::from(d));
        }
        self.note_reporter(f.reporter, f.verdict);
    }

    /// Counts `reporter` in `new_reporters` unless it is remembered with
    /// this verdict already. True when it was new.
    fn note_reporter(&mut self, reporter: IpAddr, verdict: Verdict) -> bool {
        let new = self.reporters.put((reporter, verdict), ()).is_none();
        if new {
            self.live.new_reporters.get_or_create(&VerdictLabels { verdict: verdict.as_str() }).inc();
        }
        new
    }

    /// The `kfree_skb` observer's exact totals (absolute since start).
    pub(crate) fn icmp_dropped(&self, totals: &crate::kernel::drops::Totals, netns_unknown: u64) {
        for ((direction, family, reason), n) in totals {
            let labels = DropLabels {
                direction: direction.as_str(),
                family: if *family == 6 { "ipv6" } else { "ipv4" },
                reason: reason.clone(),
            };
            set_counter(&self.live.icmp_dropped.get_or_create(&labels), *n);
        }
        set_counter(&self.live.icmp_dropped_netns_unknown, netns_unknown);
    }

    /// Rate-limited ICMP errors since start, by counter.
    pub(crate) fn icmp_rate_limited(&self, total: &crate::kernel::snmp::RateLimitCounts) {
        for (limit, n) in [("global", total.global), ("host", total.host), ("host_v6", total.host6)] {
            if let Some(n) = n {
                set_counter(&self.live.icmp_rate_limited.get_or_create(&LimitLabels { limit }), n);
            }
        }
    }

    /// A retransmission finding was reported.
    pub(crate) fn absence(&self, kind: &'static str) {
        self.live.absence.get_or_create(&KindLabels { kind }).inc();
    }

    /// An investigation ended (or was skipped).
    pub(crate) fn investigation(&self, trigger: &'static str, verdict: &str) {
        self.live.investigations.get_or_create(&InvestigationLabels { trigger, verdict: verdict.to_string() }).inc();
    }

    /// The aggregator's size and how many entries it forgot so far.
    pub(crate) fn findings(&self, active: usize, evicted: u64) {
        self.live.findings_active.set(i64::try_from(active).unwrap_or(i64::MAX));
        self.live.findings_evicted.store(evicted, Ordering::Relaxed);
    }

    /// Replaces the `/top` body (already serialised by the loop: a pointer
    /// swap under the lock, never serialisation).
    pub(crate) fn set_top(&self, json: String) {
        *self.live.top.lock().unwrap_or_else(|e| e.into_inner()) = Arc::from(json);
    }
}

/// Raises a counter to `total` (counts handed over as absolute values).
fn set_counter(c: &Counter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

fn ptb_reason(r: PtbSuspect) -> &'static str {
    match r {
        PtbSuspect::MtuNotSmaller => "mtu_not_smaller",
        PtbSuspect::MtuBelowMinimum => "mtu_below_minimum",
        PtbSuspect::UnknownFlow => "unknown_flow",
    }
}

fn hook_name(h: Hook) -> &'static str {
    match h {
        Hook::XdpNative => "xdp_native",
        Hook::XdpSkb => "xdp_skb",
        Hook::TcIngress => "tc_ingress",
    }
}

fn icmp_labels(k: &IcmpCounterKey, ifname: &impl Fn(u32) -> String) -> IcmpLabels {
    IcmpLabels {
        iface: crate::output::json::counter_iface(k, ifname),
        family: if k.family == 6 { "ipv6" } else { "ipv4" },
        direction: crate::output::json::direction_name(k.hook),
        r#type: k.icmp_type.to_string(),
        // The kernel folds codes no RFC defines for the type into one
        // counter: a spoofed flood with random codes is one series.
        code: if k.icmp_code == OTHER_CODE { "other".to_string() } else { k.icmp_code.to_string() },
        verdict: icmp::meaning(k.family, k.icmp_type, k.icmp_code).verdict.as_str(),
    }
}

fn df_labels(k: &DfCounterKey, ifname: &impl Fn(u32) -> String) -> DfLabels {
    DfLabels { iface: ifname(k.ingress_ifindex), egress: ifname(k.egress_ifindex) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netobs_common::event::hook;

    /// A fixed snapshot, or an error, as the maps would give.
    struct Fixed(Option<Counters>);

    impl CounterSource for Fixed {
        fn read(&self) -> Result<Counters> {
            self.0.clone().ok_or_else(|| anyhow::anyhow!("map read failed (test)"))
        }
    }

    fn snapshot() -> Counters {
        let mut c = Counters::default();
        for (slot, name) in stat::NAMES.iter().enumerate() {
            c.stats.insert(name, 100 + slot as u64);
        }
        // ifindex 1 is lo in every namespace, so its name resolves.
        let k = IcmpCounterKey { ifindex: 1, family: 4, icmp_type: 3, icmp_code: 13, hook: hook::XDP };
        c.icmp.insert(k, 7);
        let sent = IcmpCounterKey { ifindex: 1, family: 6, icmp_type: 2, icmp_code: 0, hook: hook::TC_EGRESS };
        c.icmp.insert(sent, 2);
        let generated =
            IcmpCounterKey { ifindex: 0, family: 4, icmp_type: 3, icmp_code: 4, hook: hook::ICMP_SEND_TRACEPOINT };
        c.icmp.insert(generated, 3);
        // TC ingress beside XDP on the same interface: the same labels.
        let tc = IcmpCounterKey { ifindex: 1, family: 4, icmp_type: 3, icmp_code: 13, hook: hook::TC_INGRESS };
        c.icmp.insert(tc, 1);
        // A spoofed code on an interface without a slot.
        let other =
            IcmpCounterKey { ifindex: OTHER_IFACE, family: 4, icmp_type: 3, icmp_code: OTHER_CODE, hook: hook::XDP };
        c.icmp.insert(other, 11);
        c.df.insert(DfCounterKey { ingress_ifindex: 1, egress_ifindex: 999_999 }, 5);
        c
    }

    fn sample<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next())
    }

    #[test]
    fn ptb_suspects_and_mtu_zero_are_counted_apart_from_the_histogram() {
        let (m, mut rec) = Metrics::new(Fixed(Some(snapshot())));
        let ptb = Finding {
            verdict: Verdict::FragNeeded,
            icmp_type: 3,
            icmp_code: 4,
            mtu: Some(9000),
            ptb_suspect: Some(PtbSuspect::MtuNotSmaller),
            ..Finding::example()
        };
        rec.observe(&ptb);
        rec.observe(&Finding { mtu: Some(0), ptb_suspect: None, ..ptb.clone() });
        rec.observe(&Finding { mtu: Some(1400), ptb_suspect: None, ..ptb.clone() });
        let text = m.encode(Format::PrometheusText);
        assert_eq!(sample(&text, "netobs_icmp_ptb_suspect_total{reason=\"mtu_not_smaller\"}"), Some("1"), "{text}");
        assert_eq!(sample(&text, "netobs_icmp_ptb_suspect_total{reason=\"unknown_flow\"}"), Some("0"), "{text}");
        assert_eq!(sample(&text, "netobs_icmp_ptb_mtu_zero_total"), Some("1"), "{text}");
        // Only the believable, non-zero MTU is in the histogram.
        assert_eq!(sample(&text, "netobs_icmp_ptb_mtu_bytes_count"), Some("1"), "{text}");
        assert_eq!(sample(&text, "netobs_icmp_ptb_mtu_bytes_sum"), Some("1400.0"), "{text}");
    }

    #[test]
    fn drops_and_rate_limits_are_exported_as_absolute_totals() {
        use crate::kernel::{drops::Direction, snmp::RateLimitCounts};
        let (m, rec) = Metrics::new(Fixed(Some(snapshot())));
        let mut t = crate::kernel::drops::Totals::new();
        t.insert((Direction::Inbound, 4, "NETFILTER_DROP".to_string()), 3);
        rec.icmp_dropped(&t, 0);
        t.insert((Direction::Inbound, 4, "NETFILTER_DROP".to_string()), 5);
        rec.icmp_dropped(&t, 1);
        rec.icmp_rate_limited(&RateLimitCounts { global: Some(0), host: Some(7), host6: None });
        let text = m.encode(Format::PrometheusText);
        let dropped = "netobs_icmp_dropped_total{direction=\"inbound\",family=\"ipv4\",reason=\"NETFILTER_DROP\"}";
        assert_eq!(sample(&text, dropped), Some("5"), "{text}");
        assert_eq!(sample(&text, "netobs_icmp_dropped_netns_unknown_total"), Some("1"), "{text}");
        assert_eq!(sample(&text, "netobs_icmp_rate_limited_total{limit=\"host\"}"), Some("7"), "{text}");
        assert!(!text.contains("limit=\"host_v6\""), "no such counter on this kernel: {text}");
    }

    #[test]
    fn kernel_counters_are_read_at_scrape_time_with_bounded_labels() {
        let (m, _rec) = Metrics::new(Fixed(Some(snapshot())));
        let text = m.encode(Format::PrometheusText);
        let line = text
            .lines()
            .find(|l| l.starts_with("netobs_icmp_errors_total{") && l.contains("code=\"13\""))
            .unwrap_or_else(|| panic!("{text}"));
        assert_eq!(
            line,
            "netobs_icmp_errors_total{iface=\"lo\",family=\"ipv4\",direction=\"received\",type=\"3\",code=\"13\",verdict=\"rejected\"} 8",
            "XDP and TC ingress summed into one series"
        );
        assert_eq!(text.lines().filter(|l| l.contains("code=\"13\"")).count(), 1, "{text}");
        assert!(
            text.contains("{iface=\"other\",family=\"ipv4\",direction=\"received\",type=\"3\",code=\"other\",verdict=\"unreachable\"} 11"),
            "{text}"
        );
        assert!(text.contains("direction=\"sent\",type=\"2\",code=\"0\",verdict=\"frag_needed\"} 2"), "{text}");
        assert!(text.contains("{iface=\"*\",family=\"ipv4\",direction=\"generated\",type=\"3\",code=\"4\""), "{text}");
        // A vanished egress interface keeps a stable, bounded label.
        assert!(text.contains("netobs_df_oversized_packets_total{iface=\"lo\",egress=\"if999999\"} 5"), "{text}");
        let lost = 100 + stat::RINGBUF_FULL as u64;
        assert_eq!(sample(&text, "netobs_ringbuf_lost_total "), Some(lost.to_string().as_str()));
        let full = 100 + stat::MAP_FULL as u64;
        assert_eq!(sample(&text, "netobs_kernel_map_full_total "), Some(full.to_string().as_str()));
        assert!(!text.contains("counter_map_full"), "no type in a name");
    }

    #[test]
    fn every_family_has_help_a_type_and_one_prefix() {
        let (m, rec) = Metrics::new(Fixed(Some(snapshot())));
        rec.set_attached(
            &Attached {
                iface: "eth0".into(),
                ifindex: 2,
                ingress: Hook::XdpNative,
                egress: true,
                tc: None,
                clsact_created: false,
                xdp_holder: None,
                note: None,
            },
            true,
        );
        let text = m.encode(Format::PrometheusText);
        let mut helps = std::collections::BTreeSet::new();
        let mut types = std::collections::BTreeMap::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                assert!(!help.trim().is_empty(), "empty help for {name}");
                helps.insert(name.to_string());
            } else if let Some(rest) = l.strip_prefix("# TYPE ") {
                let (name, t) = rest.split_once(' ').unwrap_or((rest, ""));
                types.insert(name.to_string(), t.to_string());
            }
        }
        assert!(helps.len() >= 20, "{helps:?}");
        for (name, t) in &types {
            assert!(helps.contains(name), "{name} has no help");
            assert!(name.starts_with("netobs_") && !name.starts_with("netobs_netobs"), "{name}");
            assert_eq!(t == "counter", name.ends_with("_total"), "{name} is a {t}");
            for ty in ["counter", "gauge", "histogram", "summary"] {
                assert!(!name.contains(&format!("_{ty}_")), "{name} names its type");
            }
        }
        // No label set twice: Prometheus would reject the whole scrape.
        let mut seen = std::collections::BTreeSet::new();
        for l in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let series = l.rsplit_once(' ').map_or(l, |(s, _)| s);
            assert!(seen.insert(series.to_string()), "duplicate series {series}");
        }
        // Every sample belongs to a described family.
        for l in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let name = l.split(['{', ' ']).next().unwrap_or("");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|t| t == "histogram")))
                .unwrap_or(name);
            assert!(types.contains_key(family), "sample {name} has no TYPE line");
        }
        for op in Op::ALL {
            assert!(text.contains(&format!("netobs_transient_errors_total{{op=\"{}\"}}", op.as_str())), "{op:?}");
        }
        assert!(text.contains("netobs_program_attached{iface=\"eth0\",hook=\"tc_egress\"} 1"), "{text}");
        assert!(text.contains("netobs_new_reporters_total{verdict=\"rejected\"} 0"), "{text}");
        assert!(text.contains(&format!("commit=\"{}\"", crate::cli::GIT_COMMIT)), "{text}");
    }

    #[test]
    fn openmetrics_for_prometheus_and_0_0_4_for_the_rest() {
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("*/*")), Format::PrometheusText);
        assert_eq!(Format::negotiate(None), Format::PrometheusText);
        let (m, _rec) = Metrics::new(Fixed(Some(snapshot())));
        let om = m.encode(Format::OpenMetrics);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# TYPE netobs_icmp_errors counter"), "{om}");
        assert!(om.contains("netobs_icmp_errors_total{iface=\"lo\""), "{om}");
    }

    #[test]
    fn a_failed_map_read_is_counted_and_the_scrape_still_answers() {
        let before = health::count(Op::MapRead);
        let (m, _rec) = Metrics::new(Fixed(None));
        let text = m.encode(Format::PrometheusText);
        assert_eq!(health::count(Op::MapRead), before + 1);
        assert!(text.contains("# HELP netobs_icmp_errors_total"), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("netobs_packets_observed_total ")), "no made-up zero: {text}");
        assert!(text.contains("netobs_transient_errors_total{op=\"map_read\"}"), "{text}");
    }

    #[test]
    fn heartbeat_top_and_new_reporters() {
        let (m, mut rec) = Metrics::new(Fixed(Some(Counters::default())));
        assert!(m.live.heartbeat.age_ms() < HEALTH_STALE_MS);
        rec.set_top("[{\"id\":1}]".into());
        assert_eq!(&*m.live.top(), "[{\"id\":1}]");
        rec.findings(3, 9);
        let text = m.encode(Format::PrometheusText);
        assert!(text.contains("netobs_findings_active 3"), "{text}");
        assert!(text.contains("netobs_findings_evicted_total 9"), "{text}");
        assert!(text.contains("netobs_event_loop_lag_seconds "), "{text}");
        // Same reporter twice: new once. Another verdict or reporter: new.
        let a: IpAddr = "198.18.2.1".parse().unwrap();
        let b: IpAddr = "198.18.2.2".parse().unwrap();
        assert!(rec.note_reporter(a, Verdict::Rejected));
        assert!(!rec.note_reporter(a, Verdict::Rejected));
        assert!(rec.note_reporter(a, Verdict::Unreachable));
        assert!(rec.note_reporter(b, Verdict::Rejected));
        let text = m.encode(Format::PrometheusText);
        assert!(text.contains("netobs_new_reporters_total{verdict=\"rejected\"} 2"), "{text}");
        assert!(text.contains("netobs_new_reporters_total{verdict=\"unreachable\"} 1"), "{text}");
    }
}
