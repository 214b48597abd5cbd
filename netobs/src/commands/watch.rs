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
    kernel::{self, LoadOptions, Session, counters, events::EventStream, stage},
    net,
    output::{json, metrics},
};

pub fn run(args: WatchArgs) -> Result<ExitCode> {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the tokio runtime")?;
    rt.block_on(watch(args))
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
    let mut ctx_refreshed = Instant::now();
    let mut agg = Aggregator::new(args.max_flows as usize);
    let mut ledger = Ledger::new(args.max_flows as usize);
    attach_icmp_send_tracepoint(&mut session.ebpf);
    let interval = Duration::from_secs(u64::from(args.update_interval));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut flush_tick = tokio::time::interval(stage::FLUSH_INTERVAL);
    let mut flush_warned = false;
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut batch: Vec<Event> = Vec::with_capacity(4096);

    loop {
        tokio::select! {
            r = events.next_batch(&mut batch, 4096) => {
                r?;
                ingest(&mut batch, &ctx, &mut agg, &mut ledger, &shared, &mut sink);
            }
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
                if ctx_refreshed.elapsed() > Duration::from_secs(10) {
                    if let Ok(c) = HostContext::discover() { ctx = c; }
                    ctx_refreshed = Instant::now();
                }
                report_due(&mut agg, &mut ledger, &ctx, interval, &mut sink);
                publish(&session, &ctx, &agg, &shared)?;
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
        }
    }

    // Whatever is still staged or in the ring buffer is part of the answer.
    if let Err(e) = stage::flush(&session.ebpf, Duration::ZERO) {
        log::warn!("{e:#}");
    }
    // Bounded: under a flood the ring never runs empty, and exit must not wait for it.
    let drain_until = Instant::now() + Duration::from_millis(250);
    while Instant::now() < drain_until && events.drain_now(&mut batch, 4096) > 0 {
        ingest(&mut batch, &ctx, &mut agg, &mut ledger, &shared, &mut sink);
    }
    // A last look at what went back, so the final lines are complete.
    report_due(&mut agg, &mut ledger, &ctx, Duration::ZERO, &mut sink);
    let snapshot = counters::read(&session.ebpf)?;
    let ifname = |i: u32| ctx.ifname(i);
    let mut counters = json::counters(&snapshot, ifname, agg.evicted);
    counters["findings_folded"] = agg.folded.into();
    sink.record(&counters);
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
        // New problems (and folded ones that repeat) are reported at once; other repeats wait for the interval.
        report_due(agg, ledger, ctx, Duration::from_secs(u64::MAX / 4), sink);
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
    for f in agg.take_folds(Instant::now(), interval.is_zero()) {
        sink.record(&json::folded(&f));
        sink.text(&words::folded(&f));
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
