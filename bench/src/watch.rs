//! `cargo xtask bench watch`: user space's side of a flood.
//!
//! 1. Drain + decode rate on one core: the kernel program fills the ring
//!    buffer (BPF_PROG_TEST_RUN on an ICMP error), then one thread drains,
//!    decodes, explains and aggregates; events per second for each stage.
//! 2. CPU used by `netobs watch` while 100k ICMP errors per second arrive
//!    (live frames into a veth), with default sampling and with every
//!    error sampled.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result};
use aya::{
    maps::RingBuf,
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp},
};
use netobs::{
    explain::{Aggregator, Finding, HostContext},
    kernel::{LoadOptions, events::drain, loader::load_program},
};
use netobs_common::{Config, Event};

use crate::{
    frames::{icmp_error_frame, xdp_md},
    netns,
    stats::median,
};

const EVENTS: u32 = 1_000_000;

pub fn run() -> Result<()> {
    netns::enter_private()?;
    netns::build_topology()?;
    drain_rate()?;
    cpu_under_flood()
}

fn drain_rate() -> Result<()> {
    let config = Config { events_per_sec: u32::MAX, burst: 2_000_000, ..Config::DEFAULT };
    let mut ebpf = netobs::kernel::load(&LoadOptions { config, ringbuf_bytes: 256 << 20, ..LoadOptions::default() })?;
    let mut ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("EVENTS map")?)?;
    netobs::kernel::stage::prepare(&mut ebpf)?;
    let frame = icmp_error_frame(56194);
    let ctx = xdp_md(frame.len(), netns::ifindex("v0")?);
    let host = HostContext::discover()?;

    println!(
        "\n## watch: user-space drain/decode on one core ({EVENTS} ICMP error events per round, 5 rounds, median)"
    );
    let (mut drain_rates, mut explain_rates) = (Vec::new(), Vec::new());
    let mut batch: Vec<Event> = Vec::with_capacity(EVENTS as usize);
    for _ in 0..5 {
        let p: &mut Xdp = load_program(&mut ebpf, "netobs_xdp")?;
        p.test_run(TestRunOptions {
            data_in: Some(&frame),
            ctx_in: Some(&ctx),
            repeat: EVENTS,
            ..TestRunOptions::new()
        })?;
        // The last partial batch of the flood, as `watch` does on its timer.
        netobs::kernel::stage::flush(&ebpf, std::time::Duration::ZERO)?;
        batch.clear();
        let t = Instant::now();
        let n = drain(&mut ring, &mut batch, usize::MAX).events;
        let drained = t.elapsed();
        anyhow::ensure!(n as u32 == EVENTS, "expected {EVENTS} events in the ring, drained {n}");
        drain_rates.push(n as f64 / drained.as_secs_f64());

        let mut agg = Aggregator::new(4096);
        let now = SystemTime::now();
        let t = Instant::now();
        for ev in &batch {
            if let Some(f) = Finding::from_event(ev, &host) {
                agg.ingest(f, now);
            }
        }
        explain_rates.push(n as f64 / t.elapsed().as_secs_f64());
    }
    let d = median(&drain_rates);
    let e = median(&explain_rates);
    println!("{:<44} {:>14}", "stage", "events/s");
    println!("{:<44} {:>14.0}", "ring buffer drain + decode (Event)", d);
    println!("{:<44} {:>14.0}", "explain + aggregate (Finding, LRU table)", e);
    println!("{:<44} {:>14.0}", "whole pipeline (1 / sum of per-event costs)", 1.0 / (1.0 / d + 1.0 / e));
    println!("goal >= 1,000,000 events/s for drain+decode: {}", if d >= 1e6 { "met" } else { "NOT met" });
    Ok(())
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/PID/stat")?;
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

fn cpu_under_flood() -> Result<()> {
    let netobs = std::env::var("NETOBS_BIN").unwrap_or_else(|_| "target/release/netobs".into());
    netns::sh(&["ethtool", "-K", "v1", "gro", "on"])?;
    let config = Config::DEFAULT;
    let mut generator = netobs::kernel::load(&LoadOptions { config, ringbuf_bytes: 4096, ..LoadOptions::default() })?;
    let v0 = netns::ifindex("v0")?;
    // Distinct client ports make distinct flows: the worst case for the table.
    let frames: Vec<Vec<u8>> = (0..64u16).map(|i| icmp_error_frame(40000 + i)).collect();
    const RATE: u32 = 100_000;
    const SECONDS: u64 = 5;
    // Each live-frames call has a fixed setup cost (~15 ms here): send in
    // batches big enough to reach the rate.
    const BATCH: u32 = 10_000;

    println!("\n## watch: CPU of `netobs watch -i v1` at {RATE} ICMP errors/s for {SECONDS} s (live frames into v1)");
    println!("{:<40} {:>12} {:>12} {:>10}", "sampling", "errors sent", "CPU %", "events");
    for (label, extra) in [
        ("default (1000 events/s/CPU)", vec![]),
        ("every error sampled", vec!["--events-per-sec", "1000000", "--burst", "100000"]),
        (
            "every error sampled, 8 MiB ring",
            vec!["--events-per-sec", "1000000", "--burst", "100000", "--ringbuf-kib", "8192"],
        ),
    ] {
        let child = Command::new(&netobs)
            .args(["watch", "-i", "v1", "--json", "--no-metrics", "--no-egress"])
            .args(&extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {netobs}"))?;
        // Read its output as it comes: a full pipe would stall it.
        let mut child = child;
        let mut stdout = child.stdout.take().context("child stdout")?;
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
            text
        });
        std::thread::sleep(Duration::from_millis(800));
        let cpu0 = cpu_seconds(child.id())?;
        let t0 = Instant::now();
        let mut sent = 0u64;
        let tx: &mut Xdp = load_program(&mut generator, "netobs_bench_tx")?;
        while t0.elapsed() < Duration::from_secs(SECONDS) {
            let frame = &frames[(sent / u64::from(BATCH)) as usize % frames.len()];
            let ctx = xdp_md(frame.len(), v0);
            tx.test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                repeat: BATCH,
                attrs: TestRunAttrs::new().xdp_live_frames(64),
                ..TestRunOptions::new()
            })?;
            sent += u64::from(BATCH);
            // Pace to RATE.
            let due = Duration::from_secs_f64(sent as f64 / f64::from(RATE));
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds(child.id())? - cpu0;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait()?;
        let text = reader.join().map_err(|_| anyhow::anyhow!("output reader panicked"))?;
        let events = text
            .lines()
            .rev()
            .find(|l| l.contains("\"type\":\"counters\""))
            .and_then(|l| l.split("\"events\":").nth(1))
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .unwrap_or("?")
            .to_string();
        println!("{label:<40} {sent:>12} {:>11.1}% {events:>10}", cpu / wall * 100.0);
        if std::env::var_os("NETOBS_BENCH_VERBOSE").is_some() {
            println!("{}", text.lines().rev().find(|l| l.contains("\"type\":\"counters\"")).unwrap_or(""));
        }
    }
    Ok(())
}
