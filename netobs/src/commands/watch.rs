//! `netobs watch`: attach, drain, explain, export; detach on the way out.

use std::{
    io::{IsTerminal as _, Write as _},
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result};
use netobs_common::{Config, Event, event::stat};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cli::{Color, WatchArgs},
    explain::{Aggregate, Aggregator, Finding, HostContext, Ledger, words},
    join::{self, Reporter},
    kernel::{self, LoadOptions, Session, counters, events::EventStream, stage},
    net,
    output::{json, metrics},
};

/// How often the host context (addresses, listeners, names) is re-read.
const CONTEXT_REFRESH: Duration = Duration::from_secs(10);
/// Longest the ring is drained after the loop ends (a flood never empties
/// it). With [`FINAL_REPORT`] and [`join::FINISH_GRACE`] this keeps the
/// way out (a signal, the deadline) under a second at any load.
const FINAL_DRAIN: Duration = Duration::from_millis(150);
/// Longest the final lines are printed for.
const FINAL_REPORT: Duration = Duration::from_millis(250);

pub fn run(args: WatchArgs) -> Result<ExitCode> {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the tokio runtime")?;
    let r = rt.block_on(watch(args));
    // A host-context refresh may still be on a blocking thread; its netlink
    // requests end by their own timeouts, but the way out does not wait.
    rt.shutdown_timeout(Duration::from_millis(50));
    r
}

/// Where lines go: stdout (text or JSON), and optionally a JSON file.
struct Sink {
    json: bool,
    color: bool,
    file: Option<std::fs::File>,
}

impl Sink {
    fn record(&mut self, v: &serde_json::Value) {
        if self.json {
            println!("{v}");
        }
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{v}");
        }
    }
    fn text(&self, s: &str) {
        if !self.json {
            println!("{s}");
        }
    }
    fn aggregate(&mut self, a: &Aggregate) {
        self.record(&json::finding(a));
        self.text(&words::block(a, self.color));
    }
}

async fn watch(args: WatchArgs) -> Result<ExitCode> {
    let ifaces = if args.all { net::interfaces()? } else { args.ifaces.clone() };
    // Resolve names before loading anything: a typo is the most common error.
    for i in &ifaces {
        kernel::attach::ifindex(i)?;
    }
    let color = match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let file = match &args.json_file {
        Some(p) => Some(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => None,
    };
    let mut sink = Sink { json: args.json, color, file };

    let shared = Arc::new(Mutex::new(metrics::Shared::default()));
    if !args.no_metrics {
        metrics::serve(args.metrics_addr, shared.clone())?;
    }

    let config = Config {
        min_mtu: args.df_threshold.unwrap_or_else(|| net::smallest_mtu().unwrap_or(1500)),
        events_per_sec: args.events_per_sec,
        burst: args.burst,
        egress_path_mtu: args.egress_path_mtu,
        fib_cache_ms: args.route_cache_ms,
        ..Config::DEFAULT
    };
    let ebpf = kernel::load(&LoadOptions { config, ringbuf_bytes: args.ringbuf_kib.saturating_mul(1024) })?;
    let mut session = Session::attach(ebpf, &ifaces, args.xdp_mode, !args.no_egress, args.force)?;
    let mut events = EventStream::new(&mut session.ebpf)?;

    let m = metrics::Metrics::new();
    for a in &session.attached {
        m.set_attached(a, true);
        sink.record(&json::attach(a));
        let egress = if a.egress { " + TC egress" } else { "" };
        if !sink.json {
            eprintln!("netobs: watching {} with {}{egress}", a.iface, a.ingress);
        }
        if let Some(note) = &a.note {
            eprintln!("netobs: note: {note}");
        }
    }
    if !sink.json {
        eprintln!(
            "netobs: DF packets above {} bytes are checked against their egress MTU; Ctrl-C to stop",
            config.min_mtu
        );
    }
    shared.lock().map(|mut g| g.metrics = Some(m)).ok();

    let mut ctx = HostContext::discover()?;
    let mut refresh = join::Refresh::new(CONTEXT_REFRESH);
    let mut agg = Aggregator::new(args.max_flows as usize);
    let mut ledger = Ledger::new(args.max_flows as usize);
    // Host lookups (sockets, conntrack, route cache) run on their own
    // thread: the drain below never waits on netlink.
    let mut reporter =
        Reporter::spawn(join::Netlink { timeout: join::LOOKUP_TIMEOUT }, join::QUEUE_CAPACITY, join::MAX_WAIT)?;
    attach_icmp_send_tracepoint(&mut session.ebpf);
    let interval = Duration::from_secs(u64::from(args.update_interval));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut flush_tick = tokio::time::interval(stage::FLUSH_INTERVAL);
    let mut flush_warned = false;
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut batch: Vec<Event> = Vec::with_capacity(4096);

    loop {
        tokio::select! {
            // Signals and the deadline first, then the timers: a flood keeps
            // the ring ready all the time and must neither delay the way
            // out nor starve the reports.
            biased;
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
            _ = flush_tick.tick() => {
                // A partial batch left on a CPU at the end of a flood.
                if let Err(e) = stage::flush(&session.ebpf, stage::FLUSH_MIN_AGE)
                    && !flush_warned
                {
                    log::warn!("{e:#} (staged events then wait for the next event on their CPU)");
                    flush_warned = true;
                }
            }
            _ = tick.tick() => {
                refresh.poll(&mut ctx);
                for a in reporter.due(&mut agg, &mut ledger, &ctx, interval) {
                    sink.aggregate(&a);
                }
                publish(&session, &ctx, &agg, &shared)?;
            }
            a = reporter.joined() => sink.aggregate(&a),
            r = events.next_batch(&mut batch, 4096) => {
                r?;
                ingest(&mut batch, &ctx, &mut agg, &mut ledger, &shared, &mut reporter, &mut sink);
            }
        }
    }

    // Whatever is still staged or in the ring buffer is part of the
    // answer, within a bounded time: under a flood the ring never empties.
    if let Err(e) = stage::flush(&session.ebpf, Duration::ZERO) {
        log::warn!("{e:#}");
    }
    let last_drain = Instant::now();
    while last_drain.elapsed() < FINAL_DRAIN && events.drain_now(&mut batch, 4096) > 0 {
        ingest(&mut batch, &ctx, &mut agg, &mut ledger, &shared, &mut reporter, &mut sink);
    }
    // A last look at what went back, so the final lines are complete; under
    // a flood, as many as fit in the time left (the counters below have
    // every count).
    let report_by = Instant::now() + FINAL_REPORT;
    let mut not_reprinted = 0u64;
    for a in reporter.due(&mut agg, &mut ledger, &ctx, Duration::ZERO) {
        if Instant::now() < report_by {
            sink.aggregate(&a);
        } else {
            not_reprinted += 1;
        }
    }
    if not_reprinted > 0 {
        log::warn!("{not_reprinted} findings changed since their last line and were not printed again (out of time)");
    }
    for a in reporter.finish(join::FINISH_GRACE).await {
        sink.aggregate(&a);
    }
    let js = reporter.stats();
    if js.skipped + js.expired + js.abandoned > 0 {
        log::warn!(
            "{} findings reported without host lookups ({} skipped: queue full, {} waited too long, {} at exit)",
            js.skipped + js.expired + js.abandoned,
            js.skipped,
            js.expired,
            js.abandoned
        );
    }
    let snapshot = counters::read(&session.ebpf)?;
    let ifname = |i: u32| ctx.ifname(i);
    sink.record(&json::counters(&snapshot, ifname, agg.evicted));
    if !sink.json {
        eprintln!("{}", summary(&snapshot));
    }
    if events.short_records > 0 {
        log::warn!("{} ring-buffer records were shorter than an event and were skipped", events.short_records);
    }
    let detached: Vec<String> = session.attached.iter().map(|a| a.iface.clone()).collect();
    drop(events);
    drop(session);
    sink.record(&serde_json::json!({ "schema": json::SCHEMA, "type": "detach", "ifaces": detached }));
    if !sink.json {
        eprintln!("netobs: detached from {}", detached.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn ingest(
    batch: &mut Vec<Event>,
    ctx: &HostContext,
    agg: &mut Aggregator,
    ledger: &mut Ledger,
    shared: &Arc<Mutex<metrics::Shared>>,
    reporter: &mut Reporter,
    sink: &mut Sink,
) {
    let now = SystemTime::now();
    batch.iter().for_each(|ev| ledger.record(ev));
    let mut findings: Vec<Finding> = batch.drain(..).filter_map(|ev| Finding::from_event(&ev, ctx)).collect();
    if let Ok(g) = shared.lock()
        && let Some(m) = &g.metrics
    {
        findings.iter().for_each(|f| m.observe(f));
    }
    let mut new_entries = false;
    for f in findings.drain(..) {
        new_entries |= agg.ingest(f, now);
    }
    if new_entries {
        // New problems are reported at once (after their joins); repeats
        // wait for the interval.
        for a in reporter.due(agg, ledger, ctx, Duration::from_secs(u64::MAX / 4)) {
            sink.aggregate(&a);
        }
    }
}

/// Attaches `icmp:icmp_send` (which ICMP errors the kernel generated).
/// Optional: without it netobs cannot tell "dropped by our own firewall"
/// from "never generated", and says so.
fn attach_icmp_send_tracepoint(ebpf: &mut aya::Ebpf) {
    let attach = |ebpf: &mut aya::Ebpf| {
        kernel::loader::load_program::<aya::programs::TracePoint>(ebpf, "netobs_icmp_send")
            .and_then(|p| p.attach("icmp", "icmp_send").map_err(anyhow::Error::from))
    };
    // aya looks for tracefs once: make sure it is there before the first try.
    crate::net::mount_tracefs();
    let r = attach(ebpf);
    if let Err(e) = r {
        eprintln!(
            "netobs: note: the icmp:icmp_send tracepoint is unavailable ({e:#}); ICMP errors this host generates are only seen when they leave an interface"
        );
    }
}

fn publish(session: &Session, ctx: &HostContext, agg: &Aggregator, shared: &Arc<Mutex<metrics::Shared>>) -> Result<()> {
    let snapshot = counters::read(&session.ebpf)?;
    let top: Vec<serde_json::Value> = agg.top(20).iter().map(json::finding).collect();
    if let Ok(mut g) = shared.lock() {
        if let Some(m) = &mut g.metrics {
            m.update(&snapshot, |i| ctx.ifname(i), agg.len(), agg.evicted);
        }
        g.top_json = serde_json::Value::Array(top).to_string();
    }
    Ok(())
}

fn summary(c: &kernel::Counters) -> String {
    format!(
        "netobs: {} packets observed, {} ICMP errors, {} DF-oversized, {} events ({} sampled out, {} lost to a full ring buffer, {} malformed)",
        c.stat(stat::PACKETS),
        c.stat(stat::ICMP_ERRORS),
        c.stat(stat::DF_OVERSIZED),
        c.stat(stat::EVENTS),
        c.stat(stat::SAMPLED_OUT),
        c.stat(stat::RINGBUF_FULL),
        c.stat(stat::MALFORMED),
    )
}
