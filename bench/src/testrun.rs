//! `cargo xtask bench testrun`: 1 M random and mutated frames through
//! BPF_PROG_TEST_RUN of `netobs_xdp`, each compared with the host parser.
//!
//! Seeds: the fuzz corpus of the `frame` target (`fuzz/corpus/frame`,
//! written by `cargo xtask fuzz` from the tcpdump captures, plus what
//! libFuzzer found interesting) when it exists, and crafted ICMP errors of
//! every kind. Each frame is a seed mutated (bytes flipped, length fields
//! rewritten, cut, padded) or random bytes. Frames go in batches: the
//! counter deltas (packets, IPv4/IPv6, malformed, ICMP errors / other,
//! truncated quotes, events) and the ring-buffer events of a batch must
//! equal what `netobs_common::parse` says of the same bytes; a batch that
//! differs is replayed frame by frame to name the frames. The DF check is
//! off (`min_mtu` 0): no FIB lookup, so the host model needs no routes.
//! Not a timed test: it prints the count and the disagreements.

use std::{collections::BTreeMap, path::Path, time::Duration, time::Instant};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{MapData, RingBuf},
    programs::{TestRun, TestRunOptions, Xdp},
};
use netobs::kernel::{self, LoadOptions, counters::CounterReader, events, loader::load_program, stage};
use netobs_common::{
    Config, Cursor, Event,
    check::check_frame,
    craft::{Frame, Tcp, cut},
    event::{IcmpCapture, flags, hook, stat},
    parse::{IcmpOutcome, Skip, capture_icmp, decode_icmp_capture, parse_icmp_error, parse_outer},
};

use crate::frames::v4;

const FRAMES: u64 = 1_000_000;
const BATCH: usize = 2048;
const XDP_PASS: u32 = 2;
/// Test runs without a context see the loopback of the namespace.
const LO: u32 = 1;
/// The STATS slots the comparison covers (the others belong to the DF
/// path, which is off, or to user space).
const SLOTS: [u32; 7] =
    [stat::PACKETS, stat::IPV4, stat::IPV6, stat::ICMP_ERRORS, stat::ICMP_OTHER, stat::EVENTS, stat::MALFORMED];

/// xorshift64*: reproducible, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// What the host parser says of one frame: counted slots and the event.
#[derive(Default, Clone, PartialEq, Eq, Debug)]
struct Model {
    stats: BTreeMap<u32, u64>,
    events: Vec<Event>,
}

fn model(frame: &[u8], into: &mut Model) {
    let mut bump = |s: u32| *into.stats.entry(s).or_default() += 1;
    bump(stat::PACKETS);
    let c = Cursor::from_slice(frame);
    let outer = match parse_outer(&c) {
        Ok(o) => o,
        Err(Skip::NotIp) => return,
        Err(Skip::Malformed) => {
            bump(stat::MALFORMED);
            return;
        }
    };
    bump(if outer.family == 4 { stat::IPV4 } else { stat::IPV6 });
    let icmp = if outer.family == 4 { 1 } else { 58 };
    if outer.protocol != icmp || outer.later_fragment {
        return;
    }
    let mut ev = Event::default();
    match parse_icmp_error(&c, &outer, &mut ev) {
        IcmpOutcome::Truncated => bump(stat::MALFORMED),
        IcmpOutcome::NotError => bump(stat::ICMP_OTHER),
        IcmpOutcome::Error => {
            bump(stat::ICMP_ERRORS);
            bump(stat::EVENTS);
            ev.ifindex = LO;
            ev.hook = hook::XDP;
            // The datapath copies the message, user space parses the copy:
            // the same event unless the copy cut the quote's transport.
            let mut cap = IcmpCapture { ifindex: LO, hook: hook::XDP, ..IcmpCapture::default() };
            capture_icmp(&c, &outer, &mut cap);
            match decode_icmp_capture(&cap) {
                Some(d) if d.flags & flags::CAPTURE_CUT != 0 => into.events.push(d),
                // As the datapath writes it: no RFC 4884 bytes (and no
                // EXT_EXAMINED), which only the host parser copies.
                _ => into.events.push(ev.as_datapath()),
            }
        }
    }
}

struct Kernel {
    ebpf: Ebpf,
    counters: CounterReader,
    ring: RingBuf<MapData>,
}

impl Kernel {
    fn new() -> Result<Kernel> {
        let config = Config {
            min_mtu: 0,
            egress_path_mtu: 0,
            events_per_sec: 100_000_000,
            burst: 10_000_000,
            fib_cache_ms: 0,
            ..Config::DEFAULT
        };
        let mut ebpf = kernel::load(&LoadOptions { config, ringbuf_bytes: 1 << 24, ..LoadOptions::default() })?;
        load_program::<Xdp>(&mut ebpf, "netobs_xdp")?;
        stage::prepare(&mut ebpf)?;
        let counters = CounterReader::new(&ebpf)?;
        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("EVENTS map missing")?)?;
        Ok(Kernel { ebpf, counters, ring })
    }

    /// Runs every frame once; what the counters and the ring buffer say.
    fn run(&mut self, frames: &[Vec<u8>]) -> Result<Model> {
        let before = self.counters.read()?;
        let prog: &Xdp = self.ebpf.program("netobs_xdp").context("netobs_xdp missing")?.try_into()?;
        for f in frames {
            let opts = TestRunOptions { data_in: Some(f), repeat: 1, ..TestRunOptions::new() };
            let r = prog.test_run(opts).with_context(|| format!("test run on {} bytes", f.len()))?;
            if r.return_value != XDP_PASS {
                bail!("netobs_xdp returned {} on {:02x?}", r.return_value, f);
            }
        }
        stage::flush(&self.ebpf, Duration::ZERO)?;
        let after = self.counters.read()?;
        let mut m = Model::default();
        for s in SLOTS {
            let name = stat::NAMES[s as usize];
            let d = after.stats.get(name).copied().unwrap_or(0) - before.stats.get(name).copied().unwrap_or(0);
            if d != 0 {
                m.stats.insert(s, d);
            }
        }
        let drained = events::drain(&mut self.ring, &mut m.events, usize::MAX);
        if drained.short_records != 0 || drained.undecodable != 0 {
            bail!("ring buffer: {drained:?} (short records or events that did not decode)");
        }
        for ev in &mut m.events {
            ev.ts_ns = 0;
        }
        Ok(m)
    }
}

/// Crafted seeds: an error of each kind, both families, with VLAN tags,
/// options, extension headers, cut quotes and padding.
fn crafted() -> Vec<Vec<u8>> {
    let (r, c, s) = (v4("198.18.0.254"), v4("198.18.1.1"), v4("198.18.2.1"));
    let (r6, c6, s6) = (
        "2001:db8::fe".parse().unwrap_or(std::net::Ipv6Addr::LOCALHOST),
        "2001:db8:1::1".parse().unwrap_or(std::net::Ipv6Addr::LOCALHOST),
        "2001:db8:2::1".parse().unwrap_or(std::net::Ipv6Addr::LOCALHOST),
    );
    let q4 = Frame::ipv4(c, s).ttl(1).tcp(Tcp::new(40000, 443).syn()).ip_bytes();
    let q4o = Frame::ipv4(c, s).ihl(8).udp(40000, 33434, 12).ip_bytes();
    let q6 = Frame::ipv6(c6, s6).udp(40000, 33434, 12).ip_bytes();
    let q6x = Frame::ipv6(c6, s6).hop_by_hop(0).dest_opts(1).fragment(0, true, 9).tcp(Tcp::new(1, 2)).ip_bytes();
    let mut out = Vec::new();
    for (t, code) in [(3u8, 10u8), (3, 4), (3, 3), (11, 0), (12, 0), (5, 1), (4, 0), (0, 0), (8, 0)] {
        out.push(Frame::ipv4(r, c).icmp_error(t, code, &q4).mtu(1400).bytes());
        out.push(Frame::ipv4(r, c).vlan(7).icmp_error(t, code, &cut(&q4o, 30)).bytes());
    }
    for (t, code) in [(1u8, 1u8), (1, 4), (2, 0), (3, 0), (4, 1), (128, 0)] {
        out.push(Frame::ipv6(r6, c6).icmp_error(t, code, &q6).mtu(1280).bytes());
        out.push(Frame::ipv6(r6, c6).qinq(1, 2).icmp_error(t, code, &q6x).bytes());
    }
    out.push(Frame::ipv6(r6, c6).icmpv6_redirect(r6, s6, Some(&q6)).bytes());
    out.push(Frame::ipv4(c, s).df().tcp(Tcp::new(1, 2).payload_len(100)).bytes());
    out
}

/// The seeds in `dir` (one frame per file), if it exists.
fn corpus(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter(|b| b.len() >= 14 && b.len() <= 3000)
        .collect()
}

/// A frame from a seed: mutated 7 times in 8, random otherwise. XDP test
/// runs take 14 to ~3500 bytes.
fn frame(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(8) == 0 {
        let n = 14 + rng.below(200);
        let mut f: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        // Mostly IP ethertypes, or random bytes would all be "not IP".
        let et: [u8; 2] = [[0x08, 0x00], [0x86, 0xdd], [0x81, 0x00], [f[12], f[13]]][rng.below(4)];
        f[12..14].copy_from_slice(&et);
        return f;
    }
    let mut f = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 | 1 => {
                let i = rng.below(f.len());
                f[i] ^= 1 << rng.below(8);
            }
            2 => {
                let i = rng.below(f.len());
                f[i] = rng.next() as u8;
            }
            3 => {
                // A length or header-length field: IPv4 total length /
                // IHL, IPv6 payload length, ext-header lengths, RFC 4884.
                let at = [14, 16, 17, 18, 19, 14 + 4, 14 + 5, 14 + 41, 14 + 40 + 5, 14 + 20 + 5, 14 + 40 + 4];
                let i = at[rng.below(at.len())];
                if i < f.len() {
                    f[i] = rng.next() as u8;
                }
            }
            4 => {
                let keep = 14 + rng.below(f.len().saturating_sub(13));
                f.truncate(keep);
            }
            _ => {
                let pad = rng.below(64);
                f.extend((0..pad).map(|_| rng.next() as u8));
            }
        }
    }
    if f.len() < 14 {
        f.resize(14, 0);
    }
    f
}

/// Runs `n` frames (default 1 M) and reports the disagreements.
pub fn run(n: Option<u64>) -> Result<()> {
    let n = n.unwrap_or(FRAMES);
    // One CPU: the per-CPU event stages then flush in run order.
    // SAFETY: a zeroed cpu_set_t is valid; CPU 0 always exists.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    let mut k = Kernel::new()?;
    let mut seeds = crafted();
    let from_corpus = corpus(Path::new("fuzz/corpus/frame"));
    println!("testrun: {} crafted seeds, {} from fuzz/corpus/frame", seeds.len(), from_corpus.len());
    seeds.extend(from_corpus);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let started = Instant::now();
    let (mut done, mut differ, mut oracle_fail, mut events, mut order_only) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut shown = Vec::new();
    while done < n {
        let batch: Vec<Vec<u8>> = (0..BATCH.min((n - done) as usize)).map(|_| frame(&mut rng, &seeds)).collect();
        let mut want = Model::default();
        for f in &batch {
            model(f, &mut want);
            if let Err(e) = check_frame(f) {
                oracle_fail += 1;
                if shown.len() < 5 {
                    shown.push(format!("oracle: {e}\n  frame {f:02x?}"));
                }
            }
        }
        let got = k.run(&batch)?;
        events += got.events.len() as u64;
        if got != want {
            // Replay one by one to name the frames.
            let before = differ;
            for f in &batch {
                let mut w = Model::default();
                model(f, &mut w);
                let g = k.run(std::slice::from_ref(f))?;
                if g != w {
                    differ += 1;
                    if shown.len() < 10 {
                        shown.push(format!("kernel {g:?}\n  host {w:?}\n  frame {f:02x?}"));
                    }
                }
            }
            if differ == before {
                // Same frames, same events, another order.
                order_only += 1;
            }
        }
        done += batch.len() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "testrun: {done} frames through netobs_xdp in {secs:.1} s ({:.0}/s), {events} events; \
         {differ} differ from the host parser, {oracle_fail} break the oracle, \
         {order_only} batches differ only in event order",
        done as f64 / secs
    );
    for s in &shown {
        println!("  {s}");
    }
    if differ != 0 || oracle_fail != 0 {
        bail!("{differ} kernel/host disagreements, {oracle_fail} oracle failures");
    }
    Ok(())
}
