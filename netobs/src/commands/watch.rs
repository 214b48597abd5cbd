//! `netobs watch`: attach, drain, explain, export; detach on the way out.

use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result};
use netobs_common::{Config, Event, event::stat};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cli::WatchArgs,
    explain::{Aggregator, Finding, HostContext, Ledger},
    health::{self, Op},
    kernel::{self, LoadOptions, Session, counters, events::EventStream, stage},
    net,
    output::{
        json, metrics,
        sink::{self, Sink},
    },
    privilege,
};

pub fn run(args: WatchArgs) -> Result<ExitCode> {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the tokio runtime")?;
    rt.block_on(watch(args))
}

async fn watch(args: WatchArgs) -> Result<ExitCode> {
    let ifaces = if args.all { net::interfaces()? } else { args.ifaces.clone() };
    // Resolve names before loading anything: a typo is the most common error.
    for i in &ifaces {
        kernel::attach::ifindex(i).map_err(crate::exit::usage)?;
    }
    privilege::check("watch", &privilege::KERNEL)?;
    let mut sink = Sink::new(args.json, sink::color_for_stdout(args.color), args.json_file.as_deref())?;

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
    if let Err(e) = kernel::icmp_send::attach(&mut session.ebpf) {
        sink::note(&format!("netobs: note: {e:#}"));
    }
    privilege::drop_to_or_warn(&privilege::after_attach(args.all));

    let m = metrics::Metrics::new();
    for a in &session.attached {
        m.set_attached(a, true);
        sink.record(&json::attach(a));
        let egress = if a.egress { " + TC egress" } else { "" };
        if !sink.json {
            sink::note(&format!("netobs: watching {} with {}{egress}", a.iface, a.ingress));
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
    shared.lock().map(|mut g| g.metrics = Some(m)).ok();

    let mut ctx = HostContext::discover()?;
    let mut ctx_refreshed = Instant::now();
    let mut agg = Aggregator::new(args.max_flows as usize);
    let mut ledger = Ledger::new(args.max_flows as usize);
    let interval = Duration::from_secs(u64::from(args.update_interval));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut flush_tick = tokio::time::interval(stage::FLUSH_INTERVAL);
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut batch: Vec<Event> = Vec::with_capacity(4096);

    loop {
        tokio::select! {
            _ = events.next_batch(&mut batch, 4096) => {
                ingest(&mut batch, &ctx, &mut agg, &mut ledger, &shared, &mut sink);
            }
            _ = flush_tick.tick() => {
                // A partial batch left on a CPU at the end of a flood.
                if let Err(e) = stage::flush(&session.ebpf, stage::FLUSH_MIN_AGE) {
                    health::transient(Op::StageFlush, &e);
                }
            }
            _ = tick.tick() => {
                if ctx_refreshed.elapsed() > Duration::from_secs(10) {
                    if let Ok(c) = HostContext::discover() { ctx = c; }
                    ctx_refreshed = Instant::now();
                }
                report_due(&mut agg, &mut ledger, &ctx, interval, &mut sink);
                if let Err(e) = publish(&session, &ctx, &agg, &shared) {
                    health::transient(Op::MapRead, &e);
                }
            }
            _ = sighup.recv() => sink.reopen(),
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
        }
        if sink.is_closed() {
            break;
        }
    }

    // Whatever is still staged or in the ring buffer is part of the answer.
    if let Err(e) = stage::flush(&session.ebpf, Duration::ZERO) {
        log::warn!("{e:#}");
    }
    while events.drain_now(&mut batch, 4096) > 0 {
        ingest(&mut batch, &ctx, &mut agg, &mut ledger, &shared, &mut sink);
    }
    // A last look at what went back, so the final lines are complete.
    report_due(&mut agg, &mut ledger, &ctx, Duration::ZERO, &mut sink);
    match counters::read(&session.ebpf) {
        Ok(snapshot) => {
            sink.record(&json::counters(&snapshot, |i: u32| ctx.ifname(i), agg.evicted));
            if !sink.json {
                sink::note(&summary(&snapshot));
            }
        }
        Err(e) => health::transient(Op::MapRead, &e),
    }
    if events.short_records > 0 {
        log::warn!("{} ring-buffer records were shorter than an event and were skipped", events.short_records);
    }
    let detached: Vec<String> = session.attached.iter().map(|a| a.iface.clone()).collect();
    drop(events);
    drop(session);
    sink.record(&serde_json::json!({ "schema": json::SCHEMA, "type": "detach", "ifaces": detached }));
    if !sink.json {
        sink::note(&format!("netobs: detached from {}", detached.join(", ")));
    }
    Ok(ExitCode::SUCCESS)
}

fn ingest(
    batch: &mut Vec<Event>,
    ctx: &HostContext,
    agg: &mut Aggregator,
    ledger: &mut Ledger,
    shared: &Arc<Mutex<metrics::Shared>>,
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
        // New problems are reported at once; repeats wait for the interval.
        report_due(agg, ledger, ctx, Duration::from_secs(u64::MAX / 4), sink);
    }
}

/// Fills in, for DF-oversized entries, what went back to the sender.
fn join_ledger(agg: &mut Aggregator, ledger: &mut Ledger) {
    agg.for_each_mut(|a| {
        if a.finding.kind == "df_oversized"
            && let Some(fl) = &a.finding.flow
        {
            a.finding.icmp_back = Some(ledger.lookup(fl.src, fl.dst));
        }
    });
}

/// A quoted packet from one of our addresses with no local socket behind
/// it: was it NATed for a client behind us? Then that client is affected.
fn attach_nat_original(f: &mut Finding, ctx: &HostContext) {
    let Some(flow) = f.flow.clone() else { return };
    if f.kind != "icmp_error" || !ctx.is_local(&flow.src) {
        return;
    }
    if let Some(o) = net::conntrack::original_of(&flow.protocol, flow.src, flow.src_port, flow.dst, flow.dst_port) {
        f.set_nat_original(crate::explain::Flow {
            protocol: flow.protocol.clone(),
            src: o.src,
            dst: o.dst,
            src_port: o.src_port,
            dst_port: o.dst_port,
            echo_id: None,
        });
    }
}

/// For a frag-needed / Packet Too Big about our own traffic: did our route
/// cache take the announced MTU?
fn attach_pmtu_cache(f: &mut Finding, ctx: &HostContext) {
    if f.kind != "icmp_error" || f.verdict != netobs_common::icmp::Verdict::FragNeeded {
        return;
    }
    if let Some(flow) = f.flow.as_ref().filter(|fl| ctx.is_local(&fl.src)) {
        f.pmtu_cached = net::cached_pmtu(flow.dst);
    }
}

/// Joins a locally sent TCP flow to its socket: "connection in SYN-RECV".
/// `sockets` is dumped at most once per report, and only when a line needs it.
fn attach_socket_state(f: &mut Finding, ctx: &HostContext, sockets: &mut Option<Vec<net::sockets::TcpSocket>>) {
    let Some(flow) = &f.flow else { return };
    if flow.protocol != "tcp" || !ctx.is_local(&flow.src) {
        return;
    }
    let (Some(sp), Some(dp)) = (flow.src_port, flow.dst_port) else { return };
    let socks = sockets.get_or_insert_with(|| net::sockets::tcp_sockets().unwrap_or_default());
    f.socket_state = socks
        .iter()
        .find(|s| s.local_port == sp && s.remote_port == dp && s.remote == flow.dst)
        .map(|s| s.state.as_str());
}

/// Prints the entries that are due. The joins that ask the kernel (sockets,
/// route cache) run here, never per event: a flood of errors costs table
/// updates, not netlink dumps; the socket table is dumped once per report.
fn report_due(agg: &mut Aggregator, ledger: &mut Ledger, ctx: &HostContext, interval: Duration, sink: &mut Sink) {
    join_ledger(agg, ledger);
    let mut sockets = None;
    for mut a in agg.due(interval, Instant::now()) {
        attach_socket_state(&mut a.finding, ctx, &mut sockets);
        if a.finding.socket_state.is_none() {
            attach_nat_original(&mut a.finding, ctx);
        }
        attach_pmtu_cache(&mut a.finding, ctx);
        sink.aggregate(&a);
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
