//! `cargo xtask bench read`: `netobs read` against `tcpdump -r -n` on the
//! same large capture, in frames per second.
//!
//! The capture is written here by repeating real frames: the corpus's
//! Ethernet AFS capture (tests/data/corpus/tcpdump/afs.pcap: UDP, with
//! 25 ICMP port-unreachables among its 601 frames) and field-notes
//! scenario 1's ICMP 3/10 rejection of a SYN-ACK, one every 50 frames,
//! client ports varying so aggregation has flows to keep apart. Time
//! advances 10 µs per frame. Each tool reads the file 5 times, output to
//! /dev/null; the median wall time counts. The file is read once before
//! timing so both find it in the page cache.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{frames::icmp_error_frame, stats::median};

/// Frames in the benchmark capture.
const FRAMES: usize = 1_000_000;
const ROUNDS: usize = 5;

/// The Ethernet frames of a little-endian microsecond pcap file.
fn pcap_frames(bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    if bytes.len() < 24 || bytes[..4] != [0xd4, 0xc3, 0xb2, 0xa1] || bytes[20] != 1 {
        bail!("expected a little-endian Ethernet pcap");
    }
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let incl = u32::from_le_bytes([bytes[off + 8], bytes[off + 9], bytes[off + 10], bytes[off + 11]]) as usize;
        let data = bytes.get(off + 16..off + 16 + incl).context("record past the end")?;
        out.push(data.to_vec());
        off += 16 + incl;
    }
    Ok(out)
}

/// Writes the benchmark capture; returns how many of its frames are ICMP errors.
fn write_capture(path: &Path) -> Result<usize> {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/corpus/tcpdump/afs.pcap");
    let afs = pcap_frames(&std::fs::read(&corpus).with_context(|| format!("reading {}", corpus.display()))?)?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).context("creating the capture")?);
    w.write_all(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0])?;
    w.write_all(&65535u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())?;
    let mut errors = 0;
    for i in 0..FRAMES {
        let lab;
        let frame: &[u8] = if i % 50 == 49 {
            lab = icmp_error_frame(40000 + (i / 50 % 2000) as u16);
            errors += 1;
            &lab
        } else {
            let f = &afs[i % afs.len()];
            if f.len() > 34 && f[12..14] == [8, 0] && f[23] == 1 && f[34] == 3 {
                errors += 1;
            }
            f
        };
        let us = 1_700_000_000_000_000u64 + i as u64 * 10;
        w.write_all(&((us / 1_000_000) as u32).to_le_bytes())?;
        w.write_all(&((us % 1_000_000) as u32).to_le_bytes())?;
        w.write_all(&(frame.len() as u32).to_le_bytes())?;
        w.write_all(&(frame.len() as u32).to_le_bytes())?;
        w.write_all(frame)?;
    }
    w.flush()?;
    Ok(errors)
}

/// Median seconds of `cmd` over [`ROUNDS`] runs, stdout to /dev/null.
fn time(mut make: impl FnMut() -> Command) -> Result<f64> {
    let mut secs = Vec::new();
    for _ in 0..ROUNDS {
        let mut c = make();
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let t = Instant::now();
        let status = c.status().with_context(|| format!("running {c:?}"))?;
        let elapsed = t.elapsed().as_secs_f64();
        if !status.success() {
            bail!("{c:?} failed: {status}");
        }
        secs.push(elapsed);
    }
    Ok(median(&secs))
}

pub fn run(netobs: &Path) -> Result<()> {
    let path = std::env::temp_dir().join(format!("netobs-bench-read-{}.pcap", std::process::id()));
    let errors = write_capture(&path)?;
    let size = std::fs::metadata(&path)?.len();
    // Warm the page cache.
    let _ = std::fs::read(&path)?;
    println!(
        "\n## read: frames/s on one {FRAMES}-frame capture ({:.1} MiB, {errors} ICMP errors; {ROUNDS} runs, median wall time, output to /dev/null)",
        size as f64 / (1 << 20) as f64
    );
    println!("| tool | s | frames/s | vs tcpdump |");
    println!("| --- | ---: | ---: | ---: |");
    let tcpdump = time(|| {
        let mut c = Command::new("tcpdump");
        c.args(["-r"]).arg(&path).arg("-n");
        c
    })?;
    let rows: Vec<(&str, Vec<&str>)> = vec![
        ("netobs read", vec![]),
        ("netobs read --json", vec!["--json"]),
        ("netobs read --json --frames", vec!["--json", "--frames"]),
    ];
    println!("| tcpdump -r FILE -n | {tcpdump:.2} | {:.0} | 1.00 |", FRAMES as f64 / tcpdump);
    for (name, args) in rows {
        let t = time(|| {
            let mut c = Command::new(netobs);
            c.arg("read").args(&args).arg(&path);
            c
        })?;
        println!("| {name} | {t:.2} | {:.0} | {:.2} |", FRAMES as f64 / t, tcpdump / t);
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}
