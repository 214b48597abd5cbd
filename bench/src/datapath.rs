//! `cargo xtask bench datapath`: what netobs costs per packet.
//!
//! All cases run side by side in one process through BPF_PROG_TEST_RUN
//! ([`REPEAT`] repeats per round, several rounds, median), timing the
//! syscall ourselves for sub-nanosecond resolution, against an empty XDP
//! program.
//! Then live frames (BPF_F_TEST_XDP_LIVE_FRAMES) into a veth: packets per
//! second with nothing, an empty program, and netobs attached.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{MapData, RingBuf},
    programs::{SchedClassifier, TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use netobs::kernel::{LoadOptions, counters, loader::load_program};
use netobs_common::{
    Config,
    craft::{Frame, Tcp},
    event::stat,
};

use crate::{
    frames::{icmp_error_frame, v4, xdp_md},
    netns,
    stats::median,
};

/// Runs per BPF_PROG_TEST_RUN call. Each XDP test run also swaps the
/// program into the XDP dispatcher and back, and that waits for an RCU
/// grace period (`bpf_dispatcher_change_prog` -> `synchronize_rcu`; seen in
/// `perf record -e sched:sched_switch -g`): some 12-16 ms a call on this
/// VM, spent idle, in whole clock ticks. Over 1M runs that added 12-16 ns
/// to every packet's syscall-timed figure and made them move in 4 ns steps;
/// over 4M it is 3-4 ns, in steps of 1. (The kernel's own average leaves
/// it out; TC test runs have no dispatcher.)
const REPEAT: u32 = 4_000_000;
const ROUNDS: usize = 9;
const LIVE_FRAMES: u32 = 2_000_000;
const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC (-1) as the test run reports it.
const TC_CONTINUE: u32 = u32::MAX;

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    /// Target: (max ratio over empty, or max extra ns) / absolute ns.
    target: Target,
}

enum Target {
    /// Within `ratio` of the empty program or under `extra_ns` more.
    Relative { ratio: f64, extra_ns: f64 },
    /// Under `ns` per packet.
    Absolute { ns: f64 },
}

fn cases() -> Vec<Case> {
    let tcp64 = Frame::ipv4(v4("198.18.0.2"), v4("198.18.9.9")).tcp(Tcp::new(40000, 443).syn().payload_len(10)).bytes();
    let tcp1500 = Frame::ipv4(v4("198.18.0.2"), v4("198.18.9.9"))
        .df()
        .tcp(Tcp::new(40000, 443).flags(0x10).payload_len(1460))
        .bytes();
    let icmp = icmp_error_frame(56194);
    let df_big = Frame::ipv4(v4("198.18.0.2"), v4("198.18.9.9"))
        .df()
        .tcp(Tcp::new(40000, 443).flags(0x10).payload_len(1960))
        .bytes();
    vec![
        Case { name: "64-byte TCP", frame: tcp64, target: Target::Relative { ratio: 1.5, extra_ns: 5.0 } },
        Case {
            name: "1500-byte DF TCP (= MTU)",
            frame: tcp1500,
            target: Target::Relative { ratio: 1.5, extra_ns: 5.0 },
        },
        Case { name: "ICMP 3/10 error (event)", frame: icmp, target: Target::Absolute { ns: 100.0 } },
        Case { name: "2000-byte DF > MTU (fib)", frame: df_big, target: Target::Absolute { ns: 250.0 } },
    ]
}

/// ns per run of `prog` on `frame`: (median of our own syscall timing,
/// median of the kernel's reported average). A drainer thread consumes the
/// ring buffer meanwhile, as `netobs watch` does, so event writes land in
/// warm memory instead of an ever-growing buffer.
fn time_prog(ebpf: &mut Ebpf, prog: &str, frame: &[u8], ctx: &[u8]) -> Result<(f64, f64)> {
    let (ours, kernel) = rounds(ebpf, &[prog], frame, Some(ctx), false)?.remove(0);
    Ok((median(&ours), median(&kernel)))
}

/// The empty program `base` and `prog` on `frame`, round by round in
/// turn (so a noisy moment of this shared VM hits both alike): ((syscall,
/// kernel) for `base`, (syscall, kernel) for `prog`), medians. XDP (`tc`
/// false, with an `xdp_md`) or a TC classifier on an skb (`tc` true; the
/// kernel builds the skb, linear, with its test socket attached, so egress
/// sees a locally sent packet).
fn time_pair(
    ebpf: &mut Ebpf,
    base: &str,
    prog: &str,
    frame: &[u8],
    ctx: Option<&[u8]>,
    tc: bool,
) -> Result<((f64, f64), (f64, f64))> {
    let mut r = rounds(ebpf, &[base, prog], frame, ctx, tc)?.into_iter().map(|(o, k)| (median(&o), median(&k)));
    let (Some(b), Some(p)) = (r.next(), r.next()) else { anyhow::bail!("no rounds") };
    Ok((b, p))
}

/// [`ROUNDS`] rounds of each program in `progs`, interleaved: per program
/// (syscall ns per run, kernel average ns) of every round.
fn rounds(
    ebpf: &mut Ebpf,
    progs: &[&str],
    frame: &[u8],
    ctx: Option<&[u8]>,
    tc: bool,
) -> Result<Vec<(Vec<f64>, Vec<f64>)>> {
    let mut out = vec![(Vec::new(), Vec::new()); progs.len()];
    for _ in 0..ROUNDS {
        for (prog, (ours, kernel)) in progs.iter().zip(&mut out) {
            let opts = TestRunOptions { data_in: Some(frame), ctx_in: ctx, repeat: REPEAT, ..TestRunOptions::new() };
            let t = Instant::now();
            let r = if tc {
                load_program::<SchedClassifier>(ebpf, prog)?.test_run(opts)
            } else {
                load_program::<Xdp>(ebpf, prog)?.test_run(opts)
            }
            .with_context(|| format!("BPF_PROG_TEST_RUN of {prog}"))?;
            let elapsed = t.elapsed();
            let want = if tc { TC_CONTINUE } else { XDP_PASS };
            anyhow::ensure!(r.return_value == want, "{prog} returned {} instead of {want}", r.return_value);
            ours.push(elapsed.as_nanos() as f64 / f64::from(REPEAT));
            kernel.push(r.duration.as_nanos() as f64);
        }
    }
    Ok(out)
}

/// Consumes the ring buffer on another thread until dropped.
struct Drainer {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl Drainer {
    fn start(ring: RingBuf<MapData>) -> Drainer {
        Drainer::start_all(vec![ring])
    }

    /// One thread for several rings (two spinning drainers would share
    /// their CPU and disturb each other).
    fn start_all(mut rings: Vec<RingBuf<MapData>>) -> Drainer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            // The drainer gets its own CPU so it never steals cycles from
            // the measured program (which runs on CPU 0, see `run`).
            pin_to_cpu(1);
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let mut got = 0;
                for ring in &mut rings {
                    while ring.next().is_some() {
                        got += 1;
                    }
                }
                n += got;
                if got == 0 {
                    std::hint::spin_loop();
                }
            }
            n
        });
        Drainer { stop, handle: Some(handle) }
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Pins the calling thread to `cpu` (best effort; a 1-CPU machine keeps
/// running unpinned).
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity on this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

pub fn run() -> Result<()> {
    netns::enter_private()?;
    // The measured BPF_PROG_TEST_RUN calls run on CPU 0, the ring-buffer
    // drainer on CPU 1: neither disturbs the other's timing.
    pin_to_cpu(0);
    netns::build_topology()?;
    let v0 = netns::ifindex("v0")?;

    let config = Config { min_mtu: 1500, events_per_sec: u32::MAX, burst: 1_000_000, ..Config::DEFAULT };
    // The ring buffer is the size `watch` uses by default: its size decides
    // how much of it stays in the caches, which the event rows measure
    // (8 MiB read 5 ns an event more than the 2 MiB default).
    let mut ebpf = netobs::kernel::load(&LoadOptions { config, forwarded_tcp: true, ..LoadOptions::default() })?;
    let _drainer = Drainer::start(RingBuf::try_from(ebpf.take_map("EVENTS").context("EVENTS map")?)?);

    println!(
        "\n## datapath: ns/packet via BPF_PROG_TEST_RUN ({REPEAT} repeats x {ROUNDS} rounds, empty and netobs in turn, median; syscall timed by us; ring buffer drained by a second thread)"
    );
    println!("{:<28} {:>10} {:>10} {:>7} {:>8}  {:<26} met", "case", "empty ns", "netobs ns", "ratio", "+ns", "target");
    let mut all_met = true;
    for case in cases() {
        let ctx = xdp_md(case.frame.len(), v0);
        let before = counters::read(&ebpf)?;
        let ((empty, empty_kernel_ns), (ours, kernel_ns)) =
            time_pair(&mut ebpf, "netobs_baseline", "netobs_xdp", &case.frame, Some(&ctx), false)?;
        let after = counters::read(&ebpf)?;
        let delta = |slot| after.stat(slot) - before.stat(slot);
        let (target, met) = match case.target {
            Target::Relative { ratio, extra_ns } => {
                (format!("<= {ratio}x or < +{extra_ns} ns"), ours / empty <= ratio || ours - empty < extra_ns)
            }
            Target::Absolute { ns } => (format!("< {ns} ns"), ours < ns),
        };
        all_met &= met;
        println!(
            "{:<28} {:>10.2} {:>10.2} {:>7.2} {:>8.2}  {:<26} {}   (kernel avg {kernel_ns:.0} ns, empty {empty_kernel_ns:.0}; events {}, ring full {}, fib lookups {}, df {})",
            case.name,
            empty,
            ours,
            ours / empty,
            ours - empty,
            target,
            if met { "yes" } else { "NO" },
            delta(stat::EVENTS),
            delta(stat::RINGBUF_FULL),
            delta(stat::FIB_LOOKUPS),
            delta(stat::DF_OVERSIZED),
        );
    }
    all_met &= tc_cases(&mut ebpf)?;
    println!("all datapath targets met: {}", if all_met { "yes" } else { "NO" });

    // The same two slow paths reading time through the clock helper (what
    // a kernel whose tick could not be measured gets), written one event
    // per record (what a lone event costs: the first in a clock tick on its
    // CPU is never staged), without the route cache (a new flow every
    // packet), with sampling off (what counting alone costs), and with
    // the token bucket empty (what each error of a flood past the rate
    // costs: counted, hashed, refused a token).
    let base = LoadOptions { config, ..LoadOptions::default() };
    let with = |config: Config| LoadOptions { config, ..base.clone() };
    for (variant, label) in [
        (LoadOptions { helper_clock: true, ..base.clone() }, "(clock helper, not the tick clock)"),
        (with(Config { event_batch: 1, ..config }), "(one record per event, no staging)"),
        (with(Config { fib_cache_ms: 0, ..config }), "(route cache off: a FIB lookup per packet)"),
        (
            LoadOptions { helper_clock: true, ..with(Config { fib_cache_ms: 0, event_batch: 1, ..config }) },
            "(none of the three: the old path)",
        ),
        (with(Config { events_per_sec: 0, ..config }), "(sampling off: counted, no event)"),
        (with(Config { events_per_sec: 1, burst: 1, ..config }), "(a flood past the rate: sampled out)"),
    ] {
        let mut other = netobs::kernel::load(&variant)?;
        let _drainer = Drainer::start(RingBuf::try_from(other.take_map("EVENTS").context("EVENTS map")?)?);
        for case in cases().into_iter().skip(2) {
            let ctx = xdp_md(case.frame.len(), v0);
            let ((empty, empty_kernel_ns), (ours, kernel_ns)) =
                time_pair(&mut other, "netobs_baseline", "netobs_xdp", &case.frame, Some(&ctx), false)?;
            println!(
                "{:<28} {:>10.2} {:>10.2} {:>7.2} {:>8.2}  {label} (kernel avg {kernel_ns:.0} ns, empty {empty_kernel_ns:.0})",
                case.name,
                empty,
                ours,
                ours / empty,
                ours - empty
            );
        }
    }

    live_frames(&mut ebpf, v0)?;
    verifier_stats(&mut ebpf)?;
    Ok(())
}

/// Runs the first case whose name contains `case` through `netobs_xdp` for
/// `secs` seconds on CPU 0 (ring drained on CPU 1), printing the kernel's
/// average per round, so a sampling profiler can attribute the time. With
/// `NETOBS_AB_OBJECT` naming another build of the eBPF object, rounds
/// alternate between the two and both medians are printed: an A/B
/// comparison within one run, as the figures drift between runs.
/// `NETOBS_SAMPLING_OFF` measures the counting-only path,
/// `NETOBS_SAMPLED_OUT` a flood past the rate (one event a second),
/// `NETOBS_RING_KIB` another ring size.
pub fn profile(case: &str, secs: u64) -> Result<()> {
    netns::enter_private()?;
    pin_to_cpu(0);
    netns::build_topology()?;
    let v0 = netns::ifindex("v0")?;
    let mut config = Config { min_mtu: 1500, events_per_sec: u32::MAX, burst: 1_000_000, ..Config::DEFAULT };
    if std::env::var_os("NETOBS_SAMPLING_OFF").is_some() {
        config.events_per_sec = 0;
    }
    if std::env::var_os("NETOBS_SAMPLED_OUT").is_some() {
        (config.events_per_sec, config.burst) = (1, 1);
    }
    let ringbuf_bytes = std::env::var("NETOBS_RING_KIB")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .map_or(LoadOptions::default().ringbuf_bytes, |k| k << 10);
    let opts = LoadOptions { config, ringbuf_bytes, ..LoadOptions::default() };
    let other = match std::env::var_os("NETOBS_AB_OBJECT") {
        Some(path) => Some(std::fs::read(&path).with_context(|| format!("reading {}", path.to_string_lossy()))?),
        None => None,
    };
    let mut builds = vec![("this build", netobs::kernel::load(&opts)?)];
    if let Some(object) = &other {
        builds.push(("NETOBS_AB_OBJECT", netobs::kernel::loader::load_object(&opts, object)?));
    }
    let mut rings = Vec::new();
    for (_, ebpf) in &mut builds {
        rings.push(RingBuf::try_from(ebpf.take_map("EVENTS").context("EVENTS map")?)?);
    }
    let _drainer = Drainer::start_all(rings);
    let case = cases().into_iter().find(|c| c.name.contains(case)).context("no such case")?;
    let ctx = xdp_md(case.frame.len(), v0);
    println!("profiling {:?} for {secs} s", case.name);
    let mut figures = vec![(Vec::new(), Vec::new()); builds.len()];
    let end = Instant::now() + std::time::Duration::from_secs(secs);
    while Instant::now() < end {
        for ((label, ebpf), (ours, kernel)) in builds.iter_mut().zip(&mut figures) {
            let (o, k) = time_prog(ebpf, "netobs_xdp", &case.frame, &ctx)?;
            println!("{label:<18} {o:.1} ns (kernel avg {k:.0})");
            ours.push(o);
            kernel.push(k);
        }
    }
    for ((label, _), (ours, kernel)) in builds.iter().zip(&figures) {
        println!("median {label:<18} {:.1} ns (kernel avg {:.1}), {} rounds", median(ours), median(kernel), ours.len());
    }
    Ok(())
}

/// Ordinary TCP through the TC programs, next to an empty classifier.
/// Returns whether every target was met.
fn tc_cases(ebpf: &mut Ebpf) -> Result<bool> {
    let mut all_met = true;
    for case in cases().into_iter().take(2) {
        for (hook, prog) in [
            ("TC ingress", "netobs_tc_ingress"),
            ("TC egress", "netobs_tc_egress"),
            ("flow tracker", netobs_common::flows::PROGRAM),
        ] {
            let before = counters::read(ebpf)?;
            let ((empty, empty_kernel_ns), (ours, kernel_ns)) =
                time_pair(ebpf, "netobs_tc_baseline", prog, &case.frame, None, true)?;
            let after = counters::read(ebpf)?;
            let Target::Relative { ratio, extra_ns } = case.target else { continue };
            let met = ours / empty <= ratio || ours - empty < extra_ns;
            if prog == netobs_common::flows::PROGRAM {
                // Opt-in (--forwarded-tcp), so no target; the same segment
                // over and over is its worst case: every run after the
                // first is a retransmission, recorded per destination.
                println!(
                    "{:<28} {:>10.2} {:>10.2} {:>7.2} {:>8.2}  {:<26} -     (kernel avg {kernel_ns:.0} ns, empty {empty_kernel_ns:.0}; the same segment again: a retransmission each time)",
                    format!("{} {hook}", case.name.trim_end_matches(" (= MTU)")),
                    empty,
                    ours,
                    ours / empty,
                    ours - empty,
                    "opt-in, no target",
                );
                continue;
            }
            all_met &= met;
            let name = format!("{} {hook}", case.name.trim_end_matches(" (= MTU)"));
            println!(
                "{:<28} {:>10.2} {:>10.2} {:>7.2} {:>8.2}  {:<26} {}   (kernel avg {kernel_ns:.0} ns, empty {empty_kernel_ns:.0}; packets {})",
                name,
                empty,
                ours,
                ours / empty,
                ours - empty,
                format!("<= {ratio}x or < +{extra_ns} ns"),
                if met { "yes" } else { "NO" },
                after.stat(stat::PACKETS) - before.stat(stat::PACKETS),
            );
        }
    }
    // The flow tracker's common case: a segment that only updates its
    // flow (an ACK; new data is the same work), nothing recorded.
    let ack = Frame::ipv4(v4("198.18.0.2"), v4("198.18.9.9")).tcp(Tcp::new(40001, 443).flags(0x10)).bytes();
    let ((empty, empty_kernel_ns), (ours, kernel_ns)) =
        time_pair(ebpf, "netobs_tc_baseline", netobs_common::flows::PROGRAM, &ack, None, true)?;
    println!(
        "{:<28} {:>10.2} {:>10.2} {:>7.2} {:>8.2}  {:<26} -     (kernel avg {kernel_ns:.0} ns, empty {empty_kernel_ns:.0}; a flow update, nothing recorded)",
        "TCP ACK flow tracker",
        empty,
        ours,
        ours / empty,
        ours - empty,
        "opt-in, no target",
    );
    Ok(all_met)
}

/// Live frames from v0 into v1: pps with nothing on v1 (GRO on, as the
/// kernel needs for veth without XDP), the empty program, and netobs.
fn live_frames(ebpf: &mut Ebpf, v0: u32) -> Result<()> {
    // Native XDP on veth needs an MTU that fits a page.
    netns::sh(&["ip", "link", "set", "v0", "mtu", "1500"])?;
    netns::sh(&["ip", "link", "set", "v1", "mtu", "1500"])?;
    netns::sh(&["ethtool", "-K", "v1", "gro", "on"])?;
    let frame = Frame::ipv4(v4("198.18.0.2"), v4("198.18.9.9")).tcp(Tcp::new(40000, 443).syn().payload_len(10)).bytes();
    let ctx = xdp_md(frame.len(), v0);
    println!("\n## live frames: {LIVE_FRAMES} x {}-byte frames XDP_TX'ed out of v0 into its veth peer v1", frame.len());
    println!("{:<30} {:>12} {:>10}", "v1 receive side", "Mpps", "vs none");
    let mut base = None;
    for (label, prog) in
        [("no XDP (GRO on)", None), ("empty XDP program", Some("netobs_baseline")), ("netobs XDP", Some("netobs_xdp"))]
    {
        let link = match prog {
            Some(name) => {
                let p: &mut Xdp = load_program(ebpf, name)?;
                Some((name, p.attach("v1", XdpMode::Driver).with_context(|| format!("attaching {name} to v1"))?))
            }
            None => None,
        };
        let mut samples = Vec::new();
        for _ in 0..3 {
            let tx: &mut Xdp = load_program(ebpf, "netobs_bench_tx")?;
            let t = Instant::now();
            tx.test_run(TestRunOptions {
                data_in: Some(&frame),
                ctx_in: Some(&ctx),
                repeat: LIVE_FRAMES,
                attrs: TestRunAttrs::new().xdp_live_frames(64),
                ..TestRunOptions::new()
            })
            .context("live-frames test run")?;
            samples.push(f64::from(LIVE_FRAMES) / t.elapsed().as_secs_f64() / 1e6);
        }
        let mpps = median(&samples);
        let b = *base.get_or_insert(mpps);
        println!("{label:<30} {mpps:>12.2} {:>9.0}%", mpps / b * 100.0);
        if let Some((name, id)) = link {
            let p: &mut Xdp = ebpf.program_mut(name).context("program")?.try_into()?;
            p.detach(id)?;
        }
    }
    Ok(())
}

/// Instruction counts (kernel) and stack use (from the object's code).
fn verifier_stats(ebpf: &mut Ebpf) -> Result<()> {
    let stacks = stack_use(netobs::kernel::loader::OBJECT)?;
    println!("\n## verifier: every program loads (no warnings); size and stack");
    println!("{:<22} {:>12} {:>15} {:>12}", "program", "xlated insns", "verified insns", "stack bytes");
    for name in [
        "netobs_xdp",
        "netobs_tc_ingress",
        "netobs_tc_egress",
        "netobs_icmp_send",
        "netobs_flush",
        "netobs_baseline",
        "netobs_tc_baseline",
        netobs_common::flows::PROGRAM,
    ] {
        let info = match name {
            "netobs_tc_ingress" | "netobs_tc_egress" | "netobs_tc_baseline" | netobs_common::flows::PROGRAM => {
                load_program::<aya::programs::SchedClassifier>(ebpf, name)?.info()?
            }
            "netobs_icmp_send" | "netobs_flush" => load_program::<aya::programs::RawTracePoint>(ebpf, name)?.info()?,
            _ => load_program::<Xdp>(ebpf, name)?.info()?,
        };
        println!(
            "{name:<22} {:>12} {:>15} {:>12}",
            info.size_translated().map(|b| (b / 8).to_string()).unwrap_or_else(|| "?".into()),
            info.verified_instruction_count().map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
            stacks.iter().find(|(n, _)| n == name).map(|(_, s)| s.to_string()).unwrap_or_else(|| "?".into()),
        );
    }
    Ok(())
}

/// Deepest r10-relative stack slot per program symbol (all helpers are
/// inlined, so one function is the whole program).
fn stack_use(obj: &[u8]) -> Result<Vec<(String, i64)>> {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
    let file = object::File::parse(obj).context("parsing the eBPF object")?;
    let mut out = Vec::new();
    for sym in file.symbols() {
        let Ok(name) = sym.name() else { continue };
        if !name.starts_with("netobs_") || sym.size() == 0 {
            continue;
        }
        let Some(idx) = sym.section_index() else { continue };
        let section = file.section_by_index(idx)?;
        let data = section.data()?;
        let start = sym.address() as usize;
        let end = (start + sym.size() as usize).min(data.len());
        let code = data.get(start..end).unwrap_or(&[]);
        let mut depth = 0i64;
        let mut prev_mov_r10: Option<u8> = None;
        for insn in code.chunks_exact(8) {
            let op = insn[0];
            let dst = insn[1] & 0x0f;
            let src = insn[1] >> 4;
            let off = i64::from(i16::from_le_bytes([insn[2], insn[3]]));
            let imm = i64::from(i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]));
            let class = op & 7;
            let base = match class {
                1 => Some(src),     // LDX
                2 | 3 => Some(dst), // ST, STX
                _ => None,
            };
            if base == Some(10) && off < 0 {
                depth = depth.max(-off);
            }
            if op == 0x07 && prev_mov_r10 == Some(dst) && imm < 0 {
                depth = depth.max(-imm);
            }
            prev_mov_r10 = (op == 0xbf && src == 10).then_some(dst);
        }
        out.push((name.to_string(), depth));
    }
    Ok(out)
}
