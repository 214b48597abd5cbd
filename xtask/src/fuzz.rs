//! `cargo xtask fuzz`: libFuzzer (cargo-fuzz, on the installed nightly)
//! over every target in `fuzz/src/bin/`, seeded from the tcpdump corpus.
//!
//! Seeds: every frame of `../shared/corpus/tcpdump/*.pcap*` (pcap and
//! pcapng; Ethernet, Linux SLL/SLL2, raw IP, PPP, BSD loopback), cut into
//! the shape each target takes. A target says which shape in a line of its
//! own file, `//! fuzz-seeds: KIND`, so adding a target is one file:
//! - `frame`: Ethernet frames (other link types get an Ethernet header);
//! - `ip`: the IP packets;
//! - `icmp_error`: the structured input of `icmp_error.rs` built from each
//!   ICMP error found (selector, type, code, 4 bytes, padding, quote);
//! - `probe_reply`: a selector byte, then an IPv4 packet or an ICMPv6
//!   message, as a raw socket returns them;
//! - `capture`: the capture files themselves, whole.
//!
//! Each target runs `--runs N` executions (default 1 M; the bench-style
//! run is `--runs 10000000`) and the execution counts libFuzzer reports
//! are printed per target. A crash fails the task and names the input
//! saved under `fuzz/artifacts/`.

use std::{
    collections::BTreeSet,
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use pcap_file::{
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
};

use crate::{setup, util};

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Executions per target (libFuzzer `-runs`).
    #[arg(long, default_value_t = 1_000_000)]
    pub runs: u64,
    /// Only these targets (file names in fuzz/src/bin without `.rs`).
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Capture files to seed from (default: shared/corpus/tcpdump beside
    /// the checkout or one of its parents).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// libFuzzer's sanitizer: `address` (the default, catches memory
    /// errors in the unsafe cursor) or `none` (2-3 times the executions).
    #[arg(long, default_value = "address")]
    pub sanitizer: String,
    /// Run the targets at once instead of one after the other.
    #[arg(long)]
    pub parallel: bool,
    /// Longest input libFuzzer makes, in bytes.
    #[arg(long, default_value_t = 4096)]
    pub max_len: usize,
}

/// How a target wants its seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SeedKind {
    Frame,
    Ip,
    IcmpError,
    ProbeReply,
    Capture,
}

impl SeedKind {
    fn parse(s: &str) -> Option<SeedKind> {
        Some(match s {
            "frame" => SeedKind::Frame,
            "ip" => SeedKind::Ip,
            "icmp_error" => SeedKind::IcmpError,
            "probe_reply" => SeedKind::ProbeReply,
            "capture" => SeedKind::Capture,
            _ => return None,
        })
    }
}

struct Target {
    name: String,
    seeds: SeedKind,
}

/// The targets: every `fuzz/src/bin/*.rs`, with its `fuzz-seeds:` line.
fn targets(fuzz_dir: &Path) -> Result<Vec<Target>> {
    let dir = fuzz_dir.join("src/bin");
    let mut out = Vec::new();
    for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let name = path.file_stem().and_then(|s| s.to_str()).context("non-UTF-8 target name")?.to_string();
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let kind = text
            .lines()
            .find_map(|l| l.trim_start_matches("//!").trim().strip_prefix("fuzz-seeds:").map(str::trim))
            .with_context(|| format!("{}: no `//! fuzz-seeds: KIND` line", path.display()))?;
        let seeds = SeedKind::parse(kind).with_context(|| format!("{}: unknown seed kind {kind:?}", path.display()))?;
        out.push(Target { name, seeds });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One captured packet, reduced to its IP packet.
struct Packet {
    ip: Vec<u8>,
}

/// The IP packet inside a frame of link type `linktype` (tcpdump's
/// LINKTYPE_ numbers), if there is one.
fn ip_of(linktype: u32, d: &[u8]) -> Option<Vec<u8>> {
    let be16 = |at: usize| d.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let (off, ethertype) = match linktype {
        // Ethernet, with up to two VLAN tags.
        1 => {
            let mut off = 12;
            let mut et = be16(off)?;
            while et == 0x8100 || et == 0x88a8 {
                off += 4;
                et = be16(off)?;
            }
            (off + 2, Some(et))
        }
        // Linux cooked v1: protocol at 14; v2: at 0, header 20 bytes.
        113 => (16, be16(14)),
        276 => (20, be16(0)),
        // Raw IP (101, and 12 on some systems), IPv4 (228), IPv6 (229).
        101 | 12 | 228 | 229 => (0, None),
        // PPP (9) and PPP in HDLC framing (50): optional FF 03, protocol.
        9 | 50 => {
            let off = if d.starts_with(&[0xff, 0x03]) { 2 } else { 0 };
            let proto = be16(off)?;
            let et = match proto {
                0x0021 => 0x0800,
                0x0057 => 0x86dd,
                _ => return None,
            };
            (off + 2, Some(et))
        }
        // BSD loopback / NULL: a 4-byte address family.
        0 | 108 => (4, None),
        _ => return None,
    };
    let ip = d.get(off..)?;
    let v = ip.first()? >> 4;
    match ethertype {
        Some(0x0800) if v == 4 => Some(ip.to_vec()),
        Some(0x86dd) if v == 6 => Some(ip.to_vec()),
        None if v == 4 || v == 6 => Some(ip.to_vec()),
        _ => None,
    }
}

/// Every packet of a pcap or pcapng file (by its magic number).
fn read_capture(path: &Path) -> Result<Vec<Packet>> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut r = PcapNgReader::new(&bytes[..]).with_context(|| format!("{}: pcapng header", path.display()))?;
        let mut links: Vec<u32> = Vec::new();
        // A damaged block ends the file: these captures are made to be
        // damaged, and what came before is still a seed.
        while let Some(Ok(block)) = r.next_block() {
            match block {
                Block::InterfaceDescription(idb) => links.push(u32::from(idb.linktype)),
                Block::EnhancedPacket(p) => {
                    let link = links.get(p.interface_id as usize).copied().unwrap_or(1);
                    out.extend(ip_of(link, &p.data).map(|ip| Packet { ip }));
                }
                Block::SimplePacket(p) => {
                    let link = links.first().copied().unwrap_or(1);
                    out.extend(ip_of(link, &p.data).map(|ip| Packet { ip }));
                }
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(&bytes[..]).with_context(|| format!("{}: pcap header", path.display()))?;
        let link = u32::from(r.header().datalink);
        while let Some(Ok(p)) = r.next_packet() {
            out.extend(ip_of(link, &p.data).map(|ip| Packet { ip }));
        }
    }
    Ok(out)
}

fn ethernet(ip: &[u8]) -> Vec<u8> {
    let et: u16 = if ip.first().is_some_and(|b| b >> 4 == 6) { 0x86dd } else { 0x0800 };
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    f.extend_from_slice(&et.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// The ICMP message of an IP packet without options/extension headers
/// (enough for seeds): (family, message).
fn icmp_message(ip: &[u8]) -> Option<(u8, &[u8])> {
    match ip.first()? >> 4 {
        4 => {
            let hl = usize::from(ip[0] & 15) * 4;
            (*ip.get(9)? == 1 && hl >= 20).then(|| ip.get(hl..)).flatten().map(|m| (4, m))
        }
        6 => (*ip.get(6)? == 58).then(|| ip.get(40..)).flatten().map(|m| (6, m)),
        _ => None,
    }
}

/// The seeds of `kind` from `packets` (and the capture files).
fn seeds(kind: SeedKind, packets: &[Packet], files: &[PathBuf]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    match kind {
        SeedKind::Frame => out.extend(packets.iter().map(|p| ethernet(&p.ip))),
        SeedKind::Ip => out.extend(packets.iter().map(|p| p.ip.clone())),
        SeedKind::IcmpError => {
            for p in packets {
                let Some((family, m)) = icmp_message(&p.ip) else { continue };
                let [t, code, _, _, r0, r1, r2, r3, quote @ ..] = m else { continue };
                // Selector bit 0: IPv6; bit 1: the type as is.
                let sel = u8::from(family == 6) | 2;
                let mut s = vec![sel, *t, *code, *r0, *r1, *r2, *r3, 0];
                s.extend_from_slice(quote);
                out.push(s);
            }
        }
        SeedKind::ProbeReply => {
            for p in packets {
                match p.ip.first().map(|b| b >> 4) {
                    Some(4) => {
                        for proto in 0..3u8 {
                            let mut s = vec![proto];
                            s.extend_from_slice(&p.ip);
                            out.push(s);
                        }
                    }
                    Some(6) => {
                        if let Some((_, m)) = icmp_message(&p.ip) {
                            for proto in 0..3u8 {
                                let mut s = vec![0x10 | proto];
                                s.extend_from_slice(m);
                                out.push(s);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        SeedKind::Capture => {
            for f in files {
                out.push(fs::read(f).with_context(|| format!("reading {}", f.display()))?);
            }
        }
    }
    Ok(out)
}

/// A stable file name for a seed (FNV-1a of its bytes).
fn seed_name(b: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in b {
        h = (h ^ u64::from(*x)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("seed-{h:016x}")
}

/// The execution count libFuzzer prints at the end ("Done N runs in S
/// second(s)").
/// `cargo +nightly fuzz` in `fuzz/`, with its own target directory (a
/// `CARGO_TARGET_DIR` meant for the workspace would mix sanitizer builds
/// into it).
fn fuzz_cargo(fuzz_dir: &Path, _args: &FuzzArgs) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(fuzz_dir).env_remove("CARGO_TARGET_DIR").args(["+nightly", "fuzz"]);
    c
}

fn done_runs(log: &str) -> Option<(u64, u64)> {
    let line = log.lines().rev().find(|l| l.starts_with("Done ") && l.contains(" runs in "))?;
    let mut w = line.split_whitespace();
    let runs = w.nth(1)?.parse().ok()?;
    let secs = w.nth(2)?.parse().ok()?;
    Some((runs, secs))
}

/// `shared/corpus/tcpdump` beside the checkout (`../shared`), or beside
/// one of its parents (a worktree under `wt/`).
fn default_corpus(root: &Path) -> Result<PathBuf> {
    root.ancestors()
        .skip(1)
        .map(|a| a.join("shared/corpus/tcpdump"))
        .find(|p| p.is_dir())
        .with_context(|| format!("no shared/corpus/tcpdump beside {} or its parents: pass --corpus", root.display()))
}

pub fn run(args: &FuzzArgs) -> Result<()> {
    setup::ensure_cargo_fuzz()?;
    let root = util::root();
    let fuzz_dir = root.join("fuzz");
    let corpus_dir = match &args.corpus {
        Some(c) => c.clone(),
        None => default_corpus(&root)?,
    };
    let mut files: Vec<PathBuf> = fs::read_dir(&corpus_dir)
        .with_context(|| format!("reading the seed corpus {}", corpus_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(".pcap")))
        .collect();
    files.sort();
    let mut packets = Vec::new();
    for f in &files {
        match read_capture(f) {
            Ok(p) => packets.extend(p),
            // A capture too damaged to open is still a `capture` seed.
            Err(e) => eprintln!("xtask: fuzz: {e:#}"),
        }
    }
    eprintln!("xtask: fuzz: {} packets from {} captures in {}", packets.len(), files.len(), corpus_dir.display());
    let all = targets(&fuzz_dir)?;
    let chosen: Vec<&Target> =
        all.iter().filter(|t| args.targets.is_empty() || args.targets.iter().any(|n| n == &t.name)).collect();
    if chosen.is_empty() {
        bail!("no such fuzz target; there are: {}", all.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", "));
    }
    let logs = fuzz_dir.join("corpus");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    // Build once, up front: parallel `cargo fuzz run`s would race for the
    // build lock, and a build error is clearer alone.
    let mut build = fuzz_cargo(&fuzz_dir, args);
    build.args(["build", "-O", "--sanitizer", args.sanitizer.as_str()]);
    util::run_loud(&mut build).context("building the fuzz targets")?;
    let mut running = Vec::new();
    for t in chosen {
        let dir = logs.join(&t.name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut names = BTreeSet::new();
        for s in seeds(t.seeds, &packets, &files)? {
            let name = seed_name(&s);
            if names.insert(name.clone()) {
                fs::write(dir.join(&name), &s).with_context(|| format!("writing a seed in {}", dir.display()))?;
            }
        }
        eprintln!("xtask: fuzz {}: {} seeds ({:?}), {} runs", t.name, names.len(), t.seeds, args.runs);
        let log_path = logs.join(format!("{}.log", t.name));
        let log = fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut c = fuzz_cargo(&fuzz_dir, args);
        c.args(["run", "-O", "--sanitizer", args.sanitizer.as_str(), &t.name])
            .arg(&dir)
            .arg("--")
            .arg(format!("-runs={}", args.runs))
            .arg(format!("-max_len={}", args.max_len))
            .arg("-print_final_stats=1")
            .stdout(std::process::Stdio::null())
            .stderr(log);
        let child = c.spawn().with_context(|| format!("running cargo fuzz for {}", t.name))?;
        running.push((t.name.clone(), log_path, child, Instant::now()));
        if !args.parallel {
            // One at a time: wait here.
            if let Some(last) = running.last_mut() {
                last.2.wait().with_context(|| format!("waiting for {}", last.0))?;
            }
        }
    }
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for (name, log_path, mut child, started) in running {
        let status = child.wait().with_context(|| format!("waiting for {name}"))?;
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        if !status.success() {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            failed.push(format!(
                "fuzz target {name} failed ({status}); log {}:\n{}",
                log_path.display(),
                tail.join("\n")
            ));
            continue;
        }
        let (runs, secs) = done_runs(&log).unwrap_or((0, 0));
        results.push((name, runs, secs, started.elapsed().as_secs()));
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("\n"));
    }
    println!("{:<14} {:>12} {:>10} {:>10}", "target", "executions", "fuzz s", "total s");
    for (name, runs, secs, total) in &results {
        println!("{name:<14} {runs:>12} {secs:>10} {total:>10}");
    }
    println!("no crash, no broken invariant in {} executions", results.iter().map(|r| r.1).sum::<u64>());
    Ok(())
}
