//! `netobs watch`: attach, drain, explain, export; detach on the way out.

use std::{
    process::ExitCode,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result};
use netobs_common::{Config, Event, event::stat};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cli::WatchArgs,
    explain::{Aggregator, Finding, HostContext, Ledger, absence::Absence, drops::HostLosses, words},
    health::{self, Op},
    investigate,
    join::{self, Reporter},
    kernel::{self, AttachOptions, LoadOptions, Session, events::EventStream, hotplug, stage},
    net,
    output::{
        http, json, metrics,
        sink::{self, Sink},
    },
    privilege,
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
    // The event loop runs on this thread (block_on); the metrics server on
    // the one worker, so a scrape never waits for the loop.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let r = rt.block_on(watch(args));
    // A host-context refresh may still be on a blocking thread; its netlink
    // requests end by their own timeouts, but the way out does not wait.
    rt.shutdown_timeout(Duration::from_millis(50));
    r
}

async fn watch(args: WatchArgs) -> Result<ExitCode> {
    // Subscribed before listing, so an interface created in between is seen.
    let mut hotplug = if args.all { hotplug::LinkEvents::subscribe()? } else { hotplug::LinkEvents::none() };
    let ifaces = if args.all { net::interfaces()? } else { args.ifaces.clone() };
    // Resolve names before loading anything: a typo is the most common error.
    for i in &ifaces {
        kernel::attach::ifindex(i).map_err(crate::exit::usage)?;
    }
    privilege::check("watch", &privilege::KERNEL)?;
    let mut sink = Sink::new(args.json, sink::color_for_stdout(args.color), args.json_file.as_deref())
        .map_err(crate::exit::usage)?;

    let listener = if args.no_metrics { None } else { Some(http::bind(args.metrics_addr).await?) };

    let config = Config {
        min_mtu: args.df_threshold.unwrap_or_else(|| net::smallest_mtu().unwrap_or(1500)),
        events_per_sec: args.events_per_sec,
        burst: args.burst,
        egress_path_mtu: args.egress_path_mtu,
        fib_cache_ms: args.route_cache_ms,
        ..Config::DEFAULT
    };
    // One clear line on a kernel that is too old, before a confusing load error.
    kernel::features::detect().require_minimum()?;
    let ebpf = kernel::load(&LoadOptions {
        config,
        ringbuf_bytes: args.ringbuf_kib.saturating_mul(1024),
        ebpf_log_level: args.ebpf_log_level,
        forwarded_tcp: args.forwarded_tcp,
        ..LoadOptions::default()
    })?;
    let mut session = Session::attach(
        ebpf,
        &ifaces,
        AttachOptions {
            mode: args.xdp_mode,
            egress: !args.no_egress,
            force: args.force,
            forwarded_tcp: args.forwarded_tcp,
        },
    )?;
    let _ebpf_logger = kernel::loader::start_ebpf_logger(&mut session.ebpf, args.ebpf_log_level)?;
    let mut events = EventStream::new(&mut session.ebpf)?;
    let generated_seen =
        kernel::icmp_send::attach(&mut session.ebpf).map_err(|e| sink::note(&format!("netobs: note: {e:#}"))).is_ok();
    // Dropped ICMP errors (kfree_skb) and the rate-limit baseline, before
    // the attach records: what follows them is counted.
    let (mut losses, notes) =
        HostLosses::start(&mut session.ebpf, Duration::from_secs(u64::from(args.update_interval)));
    notes.iter().for_each(|n| sink::note(&format!("netobs: note: {n}")));
    let retrans = kernel::retrans::attach(&mut session.ebpf).map_err(|e| sink::note(&format!("netobs: note: {e:#}")));
    let investigator = args
        .investigate
        .then(|| {
            investigate::Investigator::start(investigate::Options {
                budget: args.probe_budget,
                cooldown: args.probe_cooldown,
            })
        })
        .transpose()?;
    privilege::drop_to_or_warn(&investigate::keep(privilege::after_attach(args.all), args.investigate));

    let reader = || kernel::CounterReader::new(&session.ebpf).map(|r| r.with_quote_truncated(events.quote_truncated()));
    let (metrics, mut rec) = metrics::Metrics::new(reader()?);
    let exit_counters = reader()?;
    if let Some(l) = listener {
        http::spawn(l, metrics);
    }
    for note in session.features.notes() {
        sink::note(&format!("netobs: note: {note}"));
    }
    if !sink.json {
        sink::note(&format!("netobs: {}", session.features.summary()));
    }
    for a in &session.attached {
        rec.set_attached(a, true);
        sink.record(&json::attach(a, &session.features));
        let egress = if a.egress { " + TC egress" } else { "" };
        if !sink.json {
            let via = a.tc.map(|t| format!(" (TC via {t})")).unwrap_or_default();
            sink::note(&format!("netobs: watching {} with {}{egress}{via}", a.iface, a.ingress));
        }
        if let Some(note) = &a.note {
            sink::note(&format!("netobs: note: {note}"));
        }
    }
    if !sink.json {
        sink::note(&format!(
            "netobs: DF packets above {} bytes are checked against their egress MTU; Ctrl-C to stop",
            config.min_mtu
        ));
    }

    let mut ctx = HostContext::discover()?;
    let mut refresh = join::Refresh::new(CONTEXT_REFRESH);
    let mut agg = Aggregator::new(args.max_flows as usize);
    let egress_everywhere = !args.no_egress && session.attached.iter().all(|a| a.egress);
    let mut ledger = Ledger::new(args.max_flows as usize).observing(generated_seen, egress_everywhere);
    // Host lookups (sockets, conntrack, route cache) run on their own
    // thread: the drain below never waits on netlink.
    let mut reporter =
        Reporter::spawn(join::Netlink { timeout: join::LOOKUP_TIMEOUT }, join::QUEUE_CAPACITY, join::MAX_WAIT)?;
    let interval = Duration::from_secs(u64::from(args.update_interval));
    let forwarded = args
        .forwarded_tcp
        .then(|| kernel::retrans::RetransReader::take(&mut session.ebpf, netobs_common::flows::FORWARDED_MAP))
        .transpose()?
        .map(|r| (r, Absence::forwarded(interval)));
    let mut closing =
        investigate::Tick { retrans: retrans.ok(), absence: Absence::new(interval), forwarded, investigator };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut flush_tick = tokio::time::interval(stage::FLUSH_INTERVAL);
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut batch: Vec<Event> = Vec::with_capacity(4096);
    metrics::release_setup_memory();

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
                if let Err(e) = stage::flush(&session.ebpf, stage::FLUSH_MIN_AGE) {
                    health::transient(Op::StageFlush, &e);
                }
            }
            _ = tick.tick() => {
                refresh.poll(&mut ctx);
                for a in reporter.due(&mut agg, &mut ledger, &ctx, interval) {
                    sink.aggregate(&a);
                }
                emit_folds(&mut agg, &mut sink, false);
                losses.tick(&session.ebpf, |i| ctx.ifname(i), &rec).iter().for_each(|(v, t)| {
                    sink.record(v);
                    sink.text(t);
                });
                closing.run(&mut agg, &ctx, &mut sink, &rec);
                publish(&agg, &rec);
            }
            _ = sighup.recv() => sink.reopen(),
            change = hotplug.next() => {
                if let Some(done) = hotplug::apply(&mut session, change) {
                    report_hotplug(&done, &session, &rec, &mut sink);
                }
            }
            a = reporter.joined() => sink.aggregate(&a),
            _ = events.next_batch(&mut batch, 4096) => {
                ingest(&mut batch, &ctx, &mut agg, &mut ledger, &mut rec, &mut reporter, &mut sink);
            }
        }
        if sink.is_closed() {
            break;
        }
    }

    // Whatever is still staged or in the ring buffer is part of the
    // answer, within a bounded time: under a flood the ring never empties.
    if let Err(e) = stage::flush(&session.ebpf, Duration::ZERO) {
        log::warn!("{e:#}");
    }
    let last_drain = Instant::now();
    while last_drain.elapsed() < FINAL_DRAIN && events.drain_now(&mut batch, 4096) > 0 {
        ingest(&mut batch, &ctx, &mut agg, &mut ledger, &mut rec, &mut reporter, &mut sink);
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
    emit_folds(&mut agg, &mut sink, true);
    losses.finish(&session.ebpf, |i| ctx.ifname(i), &rec).iter().for_each(|(v, t)| {
        sink.record(v);
        sink.text(t);
    });
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
    match exit_counters.read() {
        Ok(snapshot) => {
            let mut counters = json::counters(&snapshot, |i: u32| ctx.ifname(i), agg.evicted);
            counters["findings_folded"] = agg.folded.into();
            counters["findings_confirmed"] = js.confirmed.into();
            counters["findings_checked"] = js.checked.into();
            counters["findings_unchecked"] = js.unchecked.into();
            sink.record(&counters);
            if !sink.json {
                sink::note(&summary(&snapshot));
            }
        }
        Err(e) => health::transient(Op::MapRead, &e),
    }
    if events.short_records > 0 {
        log::warn!("{} ring-buffer records were shorter than an event and were skipped", events.short_records);
    }
    if events.undecodable_events > 0 {
        log::warn!("{} events from the datapath did not decode and were skipped", events.undecodable_events);
    }
    let detached: Vec<String> = session.attached.iter().map(|a| a.iface.clone()).collect();
    drop(events);
    drop(session);
    sink.record(&json::detach(&detached, "exit"));
    if !sink.json {
        sink::note(&format!("netobs: detached from {}", detached.join(", ")));
    }
    Ok(ExitCode::SUCCESS)
}

/// An interface `--all` attached or forgot after start: JSON, stderr, metrics.
fn report_hotplug(done: &hotplug::Applied, session: &Session, rec: &metrics::Recorder, sink: &mut Sink) {
    let (a, on) = match done {
        hotplug::Applied::Attached(a) => (a, true),
        hotplug::Applied::Detached(a) => (a, false),
    };
    rec.set_attached(a, on);
    if on {
        sink.record(&json::attach(a, &session.features));
        sink::note(&format!(
            "netobs: {} appeared: watching it with {}{}",
            a.iface,
            a.ingress,
            a.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
        ));
    } else {
        sink.record(&json::detach(std::slice::from_ref(&a.iface), "vanished"));
        sink::note(&format!("netobs: {} vanished: forgotten", a.iface));
    }
}

fn ingest(
    batch: &mut Vec<Event>,
    ctx: &HostContext,
    agg: &mut Aggregator,
    ledger: &mut Ledger,
    rec: &mut metrics::Recorder,
    reporter: &mut Reporter,
    sink: &mut Sink,
) {
    let now = SystemTime::now();
    batch.iter().for_each(|ev| ledger.record(ev));
    let mut findings: Vec<Finding> = batch.drain(..).filter_map(|ev| Finding::from_event(&ev, ctx)).collect();
    findings.iter().for_each(|f| rec.observe(f));
    let mut new_entries = false;
    for f in findings.drain(..) {
        new_entries |= agg.ingest(f, now);
    }
    if new_entries {
        // New problems (and folded ones that repeat) are reported at once,
        // after their joins; other repeats wait for the interval.
        for a in reporter.due(agg, ledger, ctx, Duration::from_secs(u64::MAX / 4)) {
            sink.aggregate(&a);
        }
    }
}

/// Writes what the line budget folded (see `Aggregator::take_folds`);
/// `last` flushes every open fold at exit.
fn emit_folds(agg: &mut Aggregator, sink: &mut Sink, last: bool) {
    for f in agg.take_folds(Instant::now(), last) {
        sink.record(&json::folded(&f));
        sink.text(&words::folded(&f));
    }
}

/// Hands the HTTP side what only the loop knows (the kernel counters are
/// read by the scrape itself): a heartbeat, the top findings already
/// serialised, the table's size.
fn publish(agg: &Aggregator, rec: &metrics::Recorder) {
    rec.beat();
    let top: Vec<serde_json::Value> = agg.top(20).iter().map(json::finding).collect();
    rec.set_top(serde_json::Value::Array(top).to_string());
    rec.findings(agg.len(), agg.evicted);
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
