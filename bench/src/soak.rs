//! `cargo xtask bench soak [--minutes N]`: `netobs watch` on a lab host
//! through a long spoofed ICMP-error flood, with ordinary traffic and one
//! real rejection, measured from outside.
//!
//! Topology: field notes scenario 1 (`acl-reject`: client - rc - ro -
//! server; rc rejects the server's SYN-ACKs from :65000 with ICMP 3/10).
//! `watch -i eth0` runs on the server. The flood enters the server's eth0
//! from the gateway ro (a packet socket on ro's eth1): random reporters in
//! 198.19.0.0/16, random codes, each quoting a SYN-ACK from the server's
//! listener, i.e. shaped like the real rejection except for the reporter.
//!
//! Three runs:
//! - A (the soak): warm-up, N minutes of flood at `--rate` (default 100k/s)
//!   with ping + a paced TCP stream, a real connection attempt rejected by
//!   rc in the middle of the flood, `/metrics` scraped every 100 ms from
//!   inside the namespace, VmRSS sampled every 500 ms; after the flood a
//!   marker error (ICMP 11/0 from 198.18.250.1) measures how far behind
//!   the drain is; `watch` then stops at its `--duration`.
//! - B: `--duration 6s` expiring while the flood goes on.
//! - C: SIGTERM in the middle of the flood.
//!
//! Nothing here asserts: it prints a table of figures and whether each
//! target is met.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    process::{Child, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use netobs_common::craft::Frame;
use netobs_lab::{ns_path, scenarios};
use serde_json::Value;

use crate::flood::{FloodSpec, PacketSocket, in_netns, mac_of};

/// Options from the command line.
pub struct Options {
    pub minutes: f64,
    pub rate: u32,
}

impl Options {
    /// `--minutes N` (default 2) and `--rate PPS` (default 100000).
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options { minutes: 2.0, rate: 100_000 };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let v = it.next().with_context(|| format!("{a} needs a value"))?;
            match a.as_str() {
                "--minutes" => o.minutes = v.parse().with_context(|| format!("--minutes {v}"))?,
                "--rate" => o.rate = v.parse().with_context(|| format!("--rate {v}"))?,
                other => bail!("unknown soak option {other} (use --minutes N, --rate PPS)"),
            }
        }
        if !(0.1..=600.0).contains(&o.minutes) || !(1..=1_000_000).contains(&o.rate) {
            bail!("--minutes must be within 0.1..=600 and --rate within 1..=1000000");
        }
        Ok(o)
    }
}

const REAL_REPORTER: &str = "198.18.2.1";
const MARKER_REPORTER: [u8; 4] = [198, 18, 250, 1];
const METRICS: &str = "127.0.0.1:9464";

/// A `netobs watch --json` in the server namespace: every stdout line with
/// the moment it arrived.
struct WatchProc {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    started: Instant,
    attached: Instant,
}

impl WatchProc {
    fn start(server: &netobs_lab::Node, bin: &str, extra: &[&str]) -> Result<WatchProc> {
        let mut cmd = server.command(bin);
        cmd.args(["watch", "--json", "-i", "eth0"]).args(extra).stdout(Stdio::piped()).stderr(Stdio::null());
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("starting {bin}"))?;
        let stdout = child.stdout.take().context("watch stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push((Instant::now(), line));
            }
        });
        let mut w = WatchProc { child, lines, reader: Some(reader), started, attached: started };
        loop {
            if let Some(t) = w.first(|l| l.contains("\"type\":\"attach\"")) {
                w.attached = t;
                return Ok(w);
            }
            if let Some(st) = w.child.try_wait()? {
                bail!("netobs watch exited before attaching ({st})");
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("netobs watch did not attach within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn first(&self, pred: impl Fn(&str) -> bool) -> Option<Instant> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(_, l)| pred(l)).map(|(t, _)| *t)
    }

    /// Waits for the process to exit by itself (up to `timeout`); the exit
    /// moment, or None when it had to be killed.
    fn wait_exit(&mut self, timeout: Duration) -> Result<Option<Instant>> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if self.child.try_wait()?.is_some() {
                return Ok(Some(Instant::now()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(None)
    }

    fn records(&mut self) -> Vec<(Instant, Value)> {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(t, l)| serde_json::from_str(l).ok().map(|v| (*t, v)))
            .collect()
    }
}

impl Drop for WatchProc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// VmRSS and VmHWM of a process, KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// One timed HTTP GET of /metrics (the caller's thread is in the server's
/// namespace). Err when it fails or takes over 5 s.
fn scrape() -> Result<Duration> {
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect_timeout(&METRICS.parse()?, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: netobs\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    if !body.starts_with(b"HTTP/1.1 200") {
        bail!("scrape answered {:?}", String::from_utf8_lossy(&body[..body.len().min(40)]));
    }
    Ok(t.elapsed())
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    if s.is_empty() {
        return Duration::ZERO;
    }
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

fn stat(counters: Option<&Value>, name: &str) -> u64 {
    counters.and_then(|c| c["stats"][name].as_u64()).unwrap_or(0)
}

struct Row {
    what: String,
    value: String,
    target: &'static str,
    met: Option<bool>,
}

fn row(what: impl Into<String>, value: impl Into<String>, target: &'static str, met: Option<bool>) -> Row {
    Row { what: what.into(), value: value.into(), target, met }
}

/// Random-key ingest into a full table of `cap` entries (every ingest
/// evicts), ns per ingest; and one report pass over the full table, µs.
fn table_costs(cap: usize) -> (f64, f64) {
    use netobs::explain::{Aggregator, Finding, HostContext};
    use netobs_common::{
        Event, PacketInfo,
        event::{have, kind},
    };
    let ctx = HostContext {
        local_addrs: ["198.18.3.1".parse().unwrap_or(std::net::IpAddr::from([0u8; 4]))].into_iter().collect(),
        initial_ttl_v4: 64,
        initial_ttl_v6: 64,
        ..HostContext::default()
    };
    let mut x = 0x2545_f491u64;
    let mut make = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        let mut ev = Event {
            kind: kind::ICMP_ERROR,
            outer_family: 4,
            icmp_type: 3,
            icmp_code: b[0] & 15,
            outer_ttl: 63,
            ..Default::default()
        };
        ev.outer_src[..4].copy_from_slice(&[198, 19, b[1], b[2]]);
        ev.inner = PacketInfo {
            family: 4,
            protocol: 6,
            ttl: 62,
            src_port: 65000,
            dst_port: u16::from_le_bytes([b[3], b[4]]),
            tcp_flags: 0x12,
            have: have::IP | have::PORTS | have::TCP_FLAGS,
            ..Default::default()
        };
        ev.inner.src[..4].copy_from_slice(&[198, 18, 3, 1]);
        ev.inner.dst[..4].copy_from_slice(&[198, 19, b[5], b[6]]);
        Finding::from_event(&ev, &ctx)
    };
    let mut agg = Aggregator::new(cap);
    let now = std::time::SystemTime::now();
    for _ in 0..cap {
        if let Some(f) = make() {
            agg.ingest(f, now);
        }
    }
    // Minimum of 5 rounds: on a shared machine the noise only adds time.
    let (mut ingest, mut due) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        // `cap` new keys: each evicts, and afterwards every entry is a
        // first sighting (the worst case for a report).
        let findings: Vec<_> = (0..cap.max(40_000)).filter_map(|_| make()).collect();
        let n = findings.len();
        let t = Instant::now();
        for f in findings {
            agg.ingest(f, now);
        }
        ingest = ingest.min(t.elapsed().as_secs_f64() * 1e9 / n as f64);
        let t = Instant::now();
        agg.due(Duration::from_secs(5), Instant::now());
        due = due.min(t.elapsed().as_secs_f64() * 1e6);
    }
    (ingest, due)
}

pub fn run(bin: &str, o: &Options) -> Result<()> {
    println!(
        "\n## soak: aggregation table under random keys (ingests into a full table, every one evicts; a report when every entry is a first sighting; best of 5)"
    );
    println!("{:<12} {:>14} {:>22}", "capacity", "ns / ingest", "report pass (µs)");
    for cap in [4096usize, 65_536, 262_144] {
        let (ingest, due) = table_costs(cap);
        println!("{cap:<12} {ingest:>14.0} {due:>22.0}");
    }
    let s = scenarios::build("acl-reject")?;
    let server = s.server.clone();
    let ro = s.node("ro")?.clone();
    let port = scenarios::ACL_PORT;
    // The listener whose SYN-ACKs rc rejects, and a sink for the ordinary
    // TCP stream.
    let _listener = server.spawn(&[
        "python3",
        "-c",
        &format!(
            "import socket,threading,time\nl=socket.socket()\nl.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\nl.bind(('0.0.0.0',{port}))\nl.listen(64)\nk=socket.socket()\nk.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\nk.bind(('0.0.0.0',9000))\nk.listen(4)\ndef sink(c):\n  while c.recv(65536): pass\nwhile True:\n  c,_=k.accept()\n  threading.Thread(target=sink,args=(c,),daemon=True).start()"
        ),
    ])?;
    std::thread::sleep(Duration::from_millis(300));
    let server_ns = ns_path(server.ns_name());
    let server_mac = in_netns(server_ns.clone(), || mac_of("eth0"))?;
    let sock = Arc::new(PacketSocket::open(ns_path(ro.ns_name()), "eth1", server_mac)?);
    let victim = s.server_v4;

    let flood_secs = (o.minutes * 60.0).round().max(6.0) as u64;
    let warmup = Duration::from_secs(8);
    let tail = Duration::from_secs(6);
    let duration = warmup + Duration::from_secs(flood_secs) + tail;
    println!(
        "\n## soak: `netobs watch` on a lab host, {flood_secs} s of spoofed ICMP errors at {} /s (random reporters and codes), ordinary traffic, one real rejection",
        o.rate
    );

    // ---- run A ---------------------------------------------------------
    let dur_arg = format!("{}s", duration.as_secs());
    let mut w = WatchProc::start(&server, bin, &["--duration", &dur_arg, "--metrics-addr", METRICS])?;
    let pid = w.child.id();
    println!("watch pid {pid}; run A: {} s ({} s flood)", duration.as_secs(), flood_secs);
    let mem: Arc<Mutex<Vec<(Instant, u64, u64)>>> = Arc::default();
    let stop_mem = Arc::new(AtomicBool::new(false));
    let mem_thread = {
        let (mem, stop) = (mem.clone(), stop_mem.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some((rss, hwm)) = memory_kib(pid) {
                    mem.lock().unwrap_or_else(|e| e.into_inner()).push((Instant::now(), rss, hwm));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    // Ordinary traffic: 200 pings/s of 1000 bytes and a ~4 MB/s TCP stream.
    let _ping = s.client.spawn(&["ping", "-q", "-i", "0.005", "-s", "1000", &victim.to_string()])?;
    let _stream = s.client.spawn(&[
        "python3",
        "-c",
        &format!(
            "import socket,time\ns=socket.create_connection(('{victim}',9000))\nb=b'x'*40000\nwhile True:\n  s.sendall(b)\n  time.sleep(0.01)"
        ),
    ])?;
    std::thread::sleep(warmup / 2);
    let idle = memory_kib(pid).map(|m| m.0).unwrap_or(0);
    std::thread::sleep(warmup / 2);

    let stop_flood = Arc::new(AtomicBool::new(false));
    let spec = FloodSpec {
        victim,
        victim_port: port,
        rate: o.rate,
        max_packets: u64::from(o.rate) * flood_secs,
        max_time: Duration::from_secs(flood_secs),
        one_reporter: false,
    };
    let flood_start = Instant::now();
    let flood = {
        let (sock, spec, stop) = (sock.clone(), spec.clone(), stop_flood.clone());
        std::thread::spawn(move || sock.flood(&spec, &stop))
    };
    let scrapes: Arc<Mutex<(Vec<Duration>, u64)>> = Arc::default();
    let stop_scrape = Arc::new(AtomicBool::new(false));
    let scraper = {
        let (scrapes, stop, ns) = (scrapes.clone(), stop_scrape.clone(), server_ns.clone());
        std::thread::spawn(move || {
            in_netns(ns, move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = scrape();
                    let mut g = scrapes.lock().unwrap_or_else(|e| e.into_inner());
                    match r {
                        Ok(d) => g.0.push(d),
                        Err(_) => g.1 += 1,
                    }
                    drop(g);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(())
            })
        })
    };
    // Warm-up of the table: a quarter of the flood (at most 30 s).
    let warm_at = Duration::from_secs((flood_secs / 4).clamp(3, 30));
    std::thread::sleep(warm_at);
    let warm_rss = memory_kib(pid).map(|m| m.0).unwrap_or(0);
    // The real rejection, in the middle of the flood: one connection
    // attempt whose SYN-ACKs (and their retransmits) rc rejects.
    let wait_mid = Duration::from_secs(flood_secs / 2).saturating_sub(flood_start.elapsed());
    std::thread::sleep(wait_mid);
    let real_at = Instant::now();
    let (real, real_port) = real_attempt(&s, port, 20)?;
    let sent = flood.join().map_err(|_| anyhow::anyhow!("flood thread panicked"))?;
    let flood_end = Instant::now();
    let end_rss = memory_kib(pid).map(|m| m.0).unwrap_or(0);
    stop_scrape.store(true, Ordering::Relaxed);
    let _ = scraper.join();
    // The marker: a new problem right after the flood. It is printed when
    // the drain has caught up with everything before it.
    std::thread::sleep(Duration::from_millis(100));
    let marker_sent = Instant::now();
    let quote = Frame::ipv4(victim, [198, 19, 250, 1].into()).ttl(1).udp(40000, 33434, 8).ip_bytes();
    let mut marker = Frame::ipv4(MARKER_REPORTER.into(), victim).ttl(60).icmp_error(11, 0, &quote).bytes();
    sock.address(&mut marker);
    sock.send_repeated(&marker, 3, Duration::from_millis(10));
    let hwm_end = memory_kib(pid).map(|m| m.1).unwrap_or(0);
    let deadline = w.attached + duration;
    let exit_a = w.wait_exit(duration + Duration::from_secs(120))?;
    stop_mem.store(true, Ordering::Relaxed);
    let _ = mem_thread.join();
    let recs = w.records();
    drop(real);

    // ---- figures from run A -------------------------------------------
    let counters = recs.iter().rev().find(|(_, r)| r["type"] == "counters").map(|(_, r)| r);
    let findings: Vec<&(Instant, Value)> = recs.iter().filter(|(_, r)| r["type"] == "finding").collect();
    let folds: Vec<&(Instant, Value)> = recs.iter().filter(|(_, r)| r["type"] == "folded").collect();
    let folded_total: u64 = folds.iter().filter_map(|(_, r)| r["findings"].as_u64()).sum();
    let real_line = findings.iter().find(|(_, r)| is_real_line(r, real_port)).map(|(t, _)| *t);
    let marker_line = findings.iter().find(|(_, r)| r["reporter"] == "198.18.250.1").map(|(t, _)| *t);
    // Lines about the flood's reporters after the flood (excluding what
    // watch writes on its way out, after its deadline).
    let last_flood_line = findings
        .iter()
        .filter(|(t, r)| r["reporter"].as_str().is_some_and(|a| a.starts_with("198.19.")) && *t < deadline)
        .map(|(t, _)| *t)
        .max();
    let flood_s = sent.elapsed.as_secs_f64();
    let mem = mem.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let warm_instant = flood_start + warm_at;
    let peak_after_warm = mem.iter().filter(|(t, _, _)| *t >= warm_instant).map(|m| m.1).max().unwrap_or(0);
    let growth = if warm_rss > 0 { (peak_after_warm as f64 - warm_rss as f64) / warm_rss as f64 * 100.0 } else { 0.0 };
    let (scr, scrape_failed) = scrapes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let p50 = percentile(&scr, 0.5);
    let p99 = percentile(&scr, 0.99);
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let after = |a: Option<Instant>, b: Instant| a.map(|a| a.saturating_duration_since(b));

    let mut rows = vec![
        row(
            "flood sent (errors/s)",
            format!("{} ({:.0}/s, {} failed)", sent.sent, sent.sent as f64 / flood_s, sent.failed),
            "",
            None,
        ),
        row(
            "ICMP errors counted / events (per s of flood)",
            format!(
                "{:.0} / {:.0}",
                stat(counters, "icmp_errors") as f64 / flood_s,
                stat(counters, "events") as f64 / flood_s
            ),
            "",
            None,
        ),
        row(
            "losses: sampled_out / ringbuf_full / map_full",
            format!(
                "{} / {} / {}",
                stat(counters, "sampled_out"),
                stat(counters, "ringbuf_full"),
                stat(counters, "map_full")
            ),
            "map_full 0",
            Some(stat(counters, "map_full") == 0),
        ),
        row("RSS idle (ordinary traffic only)", format!("{idle} KiB"), "", None),
        row("RSS after warm-up / end of flood", format!("{warm_rss} / {end_rss} KiB"), "", None),
        row("peak RSS after warm-up (VmHWM overall)", format!("{peak_after_warm} KiB ({hwm_end} KiB)"), "", None),
        row("memory growth after warm-up", format!("{growth:.1} %"), "< 5 %", Some(growth < 5.0)),
        row(
            "/metrics scrape p50 / p99 during flood",
            format!(
                "{:.1} / {:.1} ms ({} ok, {scrape_failed} failed)",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                scr.len()
            ),
            "p99 < 100 ms",
            Some(p99 < Duration::from_millis(100) && scrape_failed == 0 && !scr.is_empty()),
        ),
        // The target: reported during the flood. How soon is a
        // figure: against random spoofed reporters its first error gets an
        // event only when it finds a global token (`netobs_common::sample`),
        // else its SYN-ACK retransmit ~1 s later does.
        row(
            "real rejection (3/10 by 198.18.2.1): line after attempt",
            after(real_line, real_at).map(secs).unwrap_or_else(|| "never".into()),
            "reported, in the flood",
            Some(real_line.is_some_and(|t| t <= flood_end)),
        ),
        row(
            "finding lines / folded findings",
            format!(
                "{} ({} distinct) / {folded_total} in {} fold records",
                findings.len(),
                distinct_ids(&findings),
                folds.len()
            ),
            "",
            None,
        ),
        row(
            "marker after the flood: line after it was sent",
            after(marker_line, marker_sent).map(secs).unwrap_or_else(|| "never".into()),
            "< 1 s",
            Some(after(marker_line, marker_sent).is_some_and(|d| d < Duration::from_secs(1))),
        ),
        row(
            "last flood-reporter line after the flood's end",
            after(last_flood_line, flood_end).map(secs).unwrap_or_else(|| "before it".into()),
            "< 1 s",
            Some(after(last_flood_line, flood_end).is_none_or(|d| d < Duration::from_secs(1))),
        ),
        row(
            "run A: exit after --duration deadline",
            exit_a.map(|e| secs(e.saturating_duration_since(deadline))).unwrap_or_else(|| "killed".into()),
            "< 1 s",
            Some(exit_a.is_some_and(|e| e.saturating_duration_since(deadline) < Duration::from_secs(1))),
        ),
    ];

    // ---- run B: --duration expires under the flood ------------------------
    let (b_late, b_sent) = under_flood(&s.server, bin, &sock, &spec, Ending::Duration(Duration::from_secs(6)))?;
    rows.push(row(
        format!("run B: exit after --duration 6s, flood on ({b_sent} sent)"),
        b_late.map(secs).unwrap_or_else(|| "killed after 60 s".into()),
        "< 1 s",
        Some(b_late.is_some_and(|d| d < Duration::from_secs(1))),
    ));
    // ---- run C: SIGTERM under the flood ----------------------------------
    let (c_late, c_sent) = under_flood(&s.server, bin, &sock, &spec, Ending::Sigterm(Duration::from_secs(6)))?;
    rows.push(row(
        format!("run C: exit after SIGTERM, flood on ({c_sent} sent)"),
        c_late.map(secs).unwrap_or_else(|| "killed after 60 s".into()),
        "< 1 s",
        Some(c_late.is_some_and(|d| d < Duration::from_secs(1))),
    ));

    // ---- run D: a flood from one reporter, one real rejection ------------
    let d = one_reporter_flood(&s, bin, &sock, &spec, port)?;
    rows.push(row(
        format!("run D: one-reporter flood ({} sent): real line after attempt", d.1),
        d.0.map(secs).unwrap_or_else(|| "never".into()),
        "< 1 s, in the flood",
        Some(d.0.is_some_and(|l| l < Duration::from_secs(1))),
    ));

    let series: Vec<String> =
        mem.iter().step_by(10).map(|(t, rss, _)| format!("{:.0}s {rss}", (*t - w.attached).as_secs_f64())).collect();
    println!("run A VmRSS KiB every 5 s (since attach): {}", series.join(", "));
    let rejected_by_rc =
        s.node("rc")?.fw_packets(netobs_lab::Chain::Forward, &format!("tcp sport {port}")).unwrap_or(0);
    let real_count = findings
        .iter()
        .filter(|(_, r)| r["reporter"] == REAL_REPORTER && r["flow"]["dst_port"].as_u64() == Some(real_port))
        .filter_map(|(_, r)| r["count"].as_u64())
        .max()
        .unwrap_or(0);
    let first_real = findings.iter().find(|(_, r)| is_real_line(r, real_port));
    let confirmed = counters.and_then(|c| c["findings_confirmed"].as_u64()).unwrap_or(0);
    println!(
        "real rejection: rc rejected {rejected_by_rc} SYN-ACKs in all; the finding for the attempt counted {real_count} events; its first line: count {}, socket {}; folded first sightings confirmed by their socket: {confirmed}",
        first_real.map(|(_, r)| r["count"].to_string()).unwrap_or_else(|| "-".into()),
        first_real.map(|(_, r)| r["socket_state"].to_string()).unwrap_or_else(|| "-".into()),
    );
    println!("{:<58} {:>44}  {:<18} result", "figure", "value", "target");
    for r in &rows {
        let met = match r.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "",
        };
        println!("{:<58} {:>44}  {:<18} {met}", r.what, r.value, r.target);
    }
    let _ = w.started;
    Ok(())
}

fn distinct_ids(findings: &[&(Instant, Value)]) -> usize {
    let mut ids: Vec<u64> = findings.iter().filter_map(|(_, r)| r["id"].as_u64()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}

/// The real rejection: one connection attempt from the client (giving up
/// after `timeout_secs`) whose SYN-ACKs rc rejects with ICMP 3/10. The
/// running client and its port.
fn real_attempt(s: &scenarios::ScenarioLab, port: u16, timeout_secs: u32) -> Result<(netobs_lab::Spawned, u64)> {
    let victim = s.server_v4;
    let real = s.client.spawn(&[
        "python3",
        "-c",
        &format!(
            "import socket\ns=socket.socket()\ns.bind(('198.18.1.1',0))\nprint(s.getsockname()[1],flush=True)\ns.settimeout({timeout_secs})\ntry: s.connect(('{victim}',{port}))\nexcept Exception: pass"
        ),
    ])?;
    let mut line = String::new();
    if let Some(out) = real.take_stdout() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    Ok((real, line.trim().parse().unwrap_or(0)))
}

/// A finding about the real rejection of the attempt from `port`.
fn is_real_line(r: &Value, port: u64) -> bool {
    r["reporter"] == REAL_REPORTER && r["icmp_code"] == 10 && r["flow"]["dst_port"].as_u64() == Some(port)
}

/// Run D: the case for fair sampling. `watch` on the server, 20 s
/// of errors from one spoofed reporter at the soak's rate, and 8 s in one
/// real rejection from 198.18.2.1: how long after the attempt its line
/// came (None: no line during the flood), and how many errors were sent.
fn one_reporter_flood(
    s: &scenarios::ScenarioLab,
    bin: &str,
    sock: &Arc<PacketSocket>,
    spec: &FloodSpec,
    port: u16,
) -> Result<(Option<Duration>, u64)> {
    let mut w = WatchProc::start(&s.server, bin, &["--no-metrics", "--duration", "26s"])?;
    std::thread::sleep(Duration::from_secs(2));
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let (sock, stop) = (sock.clone(), stop.clone());
        let spec = FloodSpec {
            max_time: Duration::from_secs(20),
            max_packets: u64::from(spec.rate) * 20,
            one_reporter: true,
            ..spec.clone()
        };
        std::thread::spawn(move || sock.flood(&spec, &stop))
    };
    std::thread::sleep(Duration::from_secs(8));
    let real_at = Instant::now();
    let (real, real_port) = real_attempt(s, port, 10)?;
    let sent = flood.join().map_err(|_| anyhow::anyhow!("flood thread panicked"))?;
    let flood_end = Instant::now();
    stop.store(true, Ordering::Relaxed);
    w.wait_exit(Duration::from_secs(60))?;
    drop(real);
    let line = w
        .records()
        .iter()
        .find(|(_, r)| r["type"] == "finding" && is_real_line(r, real_port))
        .map(|(t, _)| *t)
        .filter(|t| *t <= flood_end);
    Ok((line.map(|t| t.saturating_duration_since(real_at)), sent.sent))
}

enum Ending {
    Duration(Duration),
    Sigterm(Duration),
}

/// Starts watch, floods until it exits (at most 60 s), and returns how late
/// it exited after its deadline / the signal, and how many errors were sent.
fn under_flood(
    server: &netobs_lab::Node,
    bin: &str,
    sock: &Arc<PacketSocket>,
    spec: &FloodSpec,
    ending: Ending,
) -> Result<(Option<Duration>, u64)> {
    let dur = match &ending {
        Ending::Duration(d) => Some(format!("{}s", d.as_secs())),
        Ending::Sigterm(_) => None,
    };
    let mut args = vec!["--no-metrics"];
    if let Some(d) = &dur {
        args.extend(["--duration", d.as_str()]);
    }
    let mut w = WatchProc::start(server, bin, &args)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let (sock, stop) = (sock.clone(), stop.clone());
        let spec = FloodSpec { max_time: Duration::from_secs(60), max_packets: u64::MAX, ..spec.clone() };
        std::thread::spawn(move || sock.flood(&spec, &stop))
    };
    let late = match ending {
        Ending::Duration(d) => {
            let deadline = w.attached + d;
            w.wait_exit(d + Duration::from_secs(60))?.map(|e| e.saturating_duration_since(deadline))
        }
        Ending::Sigterm(after) => {
            std::thread::sleep(after);
            let t = Instant::now();
            // SAFETY: signalling our own child.
            unsafe { libc::kill(w.child.id() as i32, libc::SIGTERM) };
            w.wait_exit(Duration::from_secs(60))?.map(|e| e.saturating_duration_since(t))
        }
    };
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().map_err(|_| anyhow::anyhow!("flood thread panicked"))?;
    Ok((late, sent.sent))
}
