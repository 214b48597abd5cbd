//! `cargo xtask bench probes`: netobs trace/pmtu against traceroute, mtr,
//! tracepath and scamper on one lab path.
//!
//! The path: client, routers r1..r9, server: the server is hop 10, and the
//! link into hop 4 has MTU 1400 with frag-needed sent normally. It is run
//! twice:
//! - "silent tail": hops 8, 9 and 10 (the server too) send no ICMP: the
//!   right answer is hops 1-7 at 198.18.n.254 and nothing after; this is
//!   what makes classic traceroute wait its full timeout up to 30 hops;
//! - "silent gap": hops 7-9 are silent, the server answers: hops 1-6, three
//!   `*`, the server at hop 10, path MTU 1400 (the PMTU tools run here,
//!   since a path MTU needs a destination that answers).
//!
//! Probes are counted on hop 1 with an nftables counter in prerouting
//! (every probe passes r1, whatever its TTL), so each tool is measured the
//! same way, whatever it says about itself.
//!
//! `netobs explain` runs on both paths too (task "verdict"): its wall time
//! next to `trace`'s, and whether its verdict is the right one (tail:
//! silently dropped after hop 7; gap: reachable with path MTU 1400).
//! A `--no-kernel` row shows the probes' share: the rest is loading and
//! verifying the XDP observer. `NETOBS_BASELINE_BIN=<older netobs>` adds the same rows for another
//! binary, to compare before and after a change; `BENCH_TOOLS=netobs`
//! (comma-separated substrings) keeps only the matching tools.

use std::{
    net::Ipv4Addr,
    path::Path,
    process::Output,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use netobs_lab::{Node, scenarios};

const HOPS: usize = 10;
const NARROW_LINK: usize = 4;
const PMTU: u32 = 1400;

struct Row {
    tool: String,
    path: &'static str,
    task: &'static str,
    probes: u64,
    seconds: f64,
    right: bool,
    note: String,
}

fn probes_counted(r1: &Node) -> Result<u64> {
    let text = r1.run_ok(&["nft", "list", "chain", "inet", "netobs", "bench"])?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("counter packets ")? + "counter packets ".len()..];
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum())
}

/// Hop number -> first IPv4 address on each output line that starts with
/// a hop number (traceroute, mtr --report, tracepath, scamper, netobs).
fn hops_in(text: &str) -> Vec<(usize, Option<Ipv4Addr>)> {
    let mut out: Vec<(usize, Option<Ipv4Addr>)> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let num: String = first.chars().take_while(|c| c.is_ascii_digit()).collect();
        let Ok(n) = num.parse::<usize>() else { continue };
        if num.is_empty() || n == 0 || n > 64 {
            continue;
        }
        let ip =
            line.split(|c: char| !(c.is_ascii_digit() || c == '.')).filter_map(|w| w.parse::<Ipv4Addr>().ok()).next();
        match out.iter_mut().find(|(h, _)| *h == n) {
            // Tools that print a hop twice (tracepath after a smaller MTU)
            // end with the hop's own answer: the last address wins.
            Some(slot) => {
                if ip.is_some() {
                    slot.1 = ip;
                }
            }
            None => out.push((n, ip)),
        }
    }
    out
}

/// Right hops: the non-silent ones answer from their addresses, silent
/// ones show nothing, hop 10 is the server unless it is silent.
fn right_hops(text: &str, server: Ipv4Addr, silent: &[usize]) -> (bool, String) {
    let hops = hops_in(text);
    let get = |n: usize| hops.iter().find(|(h, _)| *h == n).and_then(|(_, ip)| *ip);
    let mut wrong = Vec::new();
    for n in 1..HOPS {
        let want = (!silent.contains(&n)).then(|| Ipv4Addr::new(198, 18, n as u8, 254));
        if get(n) != want {
            wrong.push(format!("hop {n}: {:?}", get(n)));
        }
    }
    let want_dst = (!silent.contains(&HOPS)).then_some(server);
    if get(HOPS) != want_dst {
        wrong.push(format!("hop {HOPS}: {:?}", get(HOPS)));
    }
    (wrong.is_empty(), wrong.join(", "))
}

/// The MTU a tool printed: the last number after "pmtu" / "mtu" / "path MTU".
fn mtu_in(text: &str) -> Option<u32> {
    let lower = text.to_lowercase();
    let mut found = None;
    for (i, _) in lower.match_indices("mtu") {
        let rest = &lower[i + 3..];
        let digits: String =
            rest.trim_start_matches([' ', ':', '=', '[']).chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(v) = digits.parse::<u32>()
            && (68..=65535).contains(&v)
        {
            found = Some(v);
        }
    }
    found
}

fn measure(client: &Node, r1: &Node, argv: &[&str]) -> Result<(Output, u64, f64)> {
    let before = probes_counted(r1)?;
    let start = Instant::now();
    let out = client.run_unchecked(argv)?;
    let secs = start.elapsed().as_secs_f64();
    // Late probes still in flight.
    std::thread::sleep(Duration::from_millis(50));
    let after = probes_counted(r1)?;
    Ok((out, after.saturating_sub(before), secs))
}

/// `BENCH_TOOLS`: keep only tools whose name contains one of these.
fn wanted(tool: &str) -> bool {
    match std::env::var("BENCH_TOOLS") {
        Ok(v) if !v.trim().is_empty() => v.split(',').any(|w| tool.contains(w.trim())),
        _ => true,
    }
}

/// The verdict `netobs explain --json` printed: (kind, hop, mtu).
fn explain_verdict(stdout: &str) -> Option<(String, Option<u64>, Option<u64>)> {
    let v: serde_json::Value = serde_json::from_str(stdout).ok()?;
    let d = &v["verdict"];
    Some((d["kind"].as_str()?.to_string(), d["hop"].as_u64(), d["mtu"].as_u64()))
}

/// Whether an explain verdict is the right one on a path with `silent` hops.
fn right_verdict(silent: &[usize], kind: &str, hop: Option<u64>, mtu: Option<u64>) -> bool {
    if silent.contains(&HOPS) {
        let last = (1..HOPS).rev().find(|n| !silent.contains(n)).unwrap_or(0) as u64;
        kind == "silently_dropped" && hop == Some(last)
    } else {
        kind == "reachable" && mtu == Some(u64::from(PMTU))
    }
}

pub fn run(netobs_bin: &Path) -> Result<()> {
    let mut rows = bench_path(netobs_bin, &[8, 9, 10], "tail")?;
    rows.extend(bench_path(netobs_bin, &[7, 8, 9], "gap")?);
    rows.extend(bench_report(netobs_bin)?);
    println!("probe benchmark: {HOPS} hops, MTU {PMTU} into hop {NARROW_LINK}; probes counted on hop 1");
    println!("  path tail: hops 8-10 silent (server included); path gap: hops 7-9 silent, server answers");
    println!(
        "  path rlim: {REPORT_HOPS} hops, hop {LIMITED_HOP} rate-limits its time-exceeded (3/minute after 3), nothing lost"
    );
    println!("{:<28} {:<5} {:<7} {:>7} {:>9}  {:<6} note", "tool", "path", "task", "probes", "wall s", "right");
    for r in &rows {
        println!(
            "{:<28} {:<5} {:<7} {:>7} {:>9.2}  {:<6} {}",
            r.tool,
            r.path,
            r.task,
            r.probes,
            r.seconds,
            if r.right { "yes" } else { "NO" },
            r.note
        );
    }
    let find = |tool: &str, path: &str, task: &str| {
        rows.iter().find(|r| r.tool == tool && r.path == path && r.task == task).map(|r| (r.seconds, r.probes))
    };
    for path in ["tail", "gap"] {
        if let (Some((nt, _)), Some((tt, _))) =
            (find("netobs trace", path, "hops"), find("traceroute -n", path, "hops"))
        {
            println!(
                "path {path}: netobs trace wall time = {:.0}% of traceroute's (goal: <= 20%)",
                100.0 * nt / tt.max(1e-9)
            );
        }
    }
    if let (Some((_, np)), Some((_, tp))) = (find("netobs pmtu", "gap", "pmtu"), find("tracepath -n", "gap", "pmtu")) {
        println!("netobs pmtu probes = {np}, tracepath = {tp} (goal: no more than tracepath)");
    }
    if let (Some((nt, np)), Some((mt, mp))) =
        (find("netobs trace --report -c 10", "rlim", "report"), find("mtr --report -c 10", "rlim", "report"))
    {
        let tells = |tool: &str| rows.iter().any(|r| r.tool == tool && r.path == "rlim" && r.right);
        println!(
            "path rlim: netobs trace --report {nt:.2} s / {np} probes, mtr --report {mt:.2} s / {mp} probes; \
             rate limiting told apart from loss: netobs {}, mtr {}",
            if tells("netobs trace --report -c 10") { "yes" } else { "no" },
            if tells("mtr --report -c 10") { "yes" } else { "no" },
        );
    }
    if let Some((et, _)) = find("netobs explain", "tail", "verdict") {
        let right = rows.iter().any(|r| r.tool == "netobs explain" && r.path == "tail" && r.right);
        println!(
            "path tail: netobs explain {et:.2} s, verdict {} (goal: <= 2 s, silently dropped after hop 7)",
            if right { "right" } else { "WRONG" }
        );
    }
    Ok(())
}

/// Builds the path with `silent` hops and measures every tool on it.
fn bench_path(netobs_bin: &Path, silent: &[usize], label: &'static str) -> Result<Vec<Row>> {
    let mut names: Vec<String> = vec!["client".into()];
    names.extend((1..HOPS).map(|i| format!("r{i}")));
    names.push("server".into());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let s = scenarios::linear("bench-probes", &refs, &[(NARROW_LINK, PMTU)]).context("building the bench path")?;
    for &n in silent {
        let node = if n == HOPS { &s.server } else { s.hop(n)? };
        node.nft(
            "add rule inet netobs output meta l4proto { icmp, ipv6-icmp } drop\n\
             add rule inet netobs output tcp flags rst drop",
        )?;
    }
    let r1 = s.hop(1)?;
    r1.nft(&format!(
        "add chain inet netobs bench {{ type filter hook prerouting priority -300; policy accept; }}\n\
         add rule inet netobs bench ip saddr {} counter",
        s.client_v4
    ))?;
    let server = s.server_v4;
    let dst = server.to_string();
    let bin = netobs_bin.to_str().context("non-UTF-8 netobs path")?;
    let client = &s.client;
    // Forget PMTU state between tools: each starts from a cold cache.
    let flush = || client.run_unchecked(&["ip", "route", "flush", "cache"]);

    let traces: Vec<(String, Vec<&str>)> = vec![
        ("netobs trace".into(), vec![bin, "trace", "-n", &dst]),
        ("traceroute -n".into(), vec!["traceroute", "-n", &dst]),
        ("mtr -n --report -c 1".into(), vec!["mtr", "-n", "--report", "-c", "1", &dst]),
        ("tracepath -n".into(), vec!["tracepath", "-n", &dst]),
    ];
    let pmtus: Vec<(String, Vec<&str>)> = vec![
        ("netobs pmtu".into(), vec![bin, "pmtu", &dst]),
        ("tracepath -n".into(), vec!["tracepath", "-n", &dst]),
        ("scamper trace -M".into(), vec!["scamper", "-O", "text", "-c", "trace -M", "-i", &dst]),
    ];
    let mut rows = Vec::new();
    let baseline = std::env::var("NETOBS_BASELINE_BIN").ok();
    // `--no-kernel` shows what the probes cost without loading (verifying)
    // the XDP observer, which dominates on a loaded machine.
    let mut explains: Vec<(String, Vec<&str>)> = vec![
        ("netobs explain".into(), vec![bin, "explain", &dst, "--json"]),
        ("netobs explain --no-kernel".into(), vec![bin, "explain", &dst, "--json", "--no-kernel"]),
    ];
    if let Some(b) = &baseline {
        explains.push(("netobs explain (baseline)".into(), vec![b.as_str(), "explain", &dst, "--json"]));
    }
    for (tool, argv) in explains.iter().filter(|(t, _)| wanted(t)) {
        flush()?;
        let (out, probes, seconds) = measure(client, r1, argv)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (right, note) = match explain_verdict(&text) {
            Some((kind, hop, mtu)) => (
                right_verdict(silent, &kind, hop, mtu),
                format!(
                    "{kind}{}{}",
                    hop.map(|h| format!(" hop {h}")).unwrap_or_default(),
                    mtu.map(|m| format!(" mtu {m}")).unwrap_or_default()
                ),
            ),
            None => (false, format!("no verdict: {}", String::from_utf8_lossy(&out.stderr).trim())),
        };
        rows.push(Row { tool: tool.clone(), path: label, task: "verdict", probes, seconds, right, note });
    }
    for (tool, argv) in traces.iter().filter(|(t, _)| wanted(t)) {
        flush()?;
        let (out, probes, seconds) = measure(client, r1, argv)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            eprintln!("--- {tool}\n{text}");
        }
        let (right, note) = right_hops(&text, server, silent);
        if !out.status.success() && text.trim().is_empty() {
            rows.push(Row {
                tool: tool.clone(),
                path: label,
                task: "hops",
                probes,
                seconds,
                right: false,
                note: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
            continue;
        }
        rows.push(Row { tool: tool.clone(), path: label, task: "hops", probes, seconds, right, note });
    }
    if silent.contains(&HOPS) {
        return Ok(rows);
    }
    for (tool, argv) in pmtus.iter().filter(|(t, _)| wanted(t)) {
        flush()?;
        let (out, probes, seconds) = measure(client, r1, argv)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mtu = mtu_in(&text);
        let note = match mtu {
            Some(m) => format!("reports MTU {m}"),
            None => format!("no MTU in output {}", String::from_utf8_lossy(&out.stderr).trim()),
        };
        rows.push(Row {
            tool: tool.clone(),
            path: label,
            task: "pmtu",
            probes,
            seconds,
            right: mtu == Some(PMTU),
            note,
        });
    }
    Ok(rows)
}

const REPORT_HOPS: usize = 5;
const LIMITED_HOP: usize = 2;

/// One row of an mtr-style report: (hop, loss %, rest of the line).
fn report_rows(text: &str) -> Vec<(usize, f64, String)> {
    text.lines()
        .filter_map(|l| {
            let t = l.trim_start();
            let (num, rest) = t.split_once(".|--")?;
            let hop = num.trim().parse::<usize>().ok()?;
            let pct = rest.split_whitespace().find_map(|w| w.strip_suffix('%')?.parse::<f64>().ok())?;
            Some((hop, pct, rest.to_string()))
        })
        .collect()
}

/// Whether a report tells hop `LIMITED_HOP`'s rate limiting apart from
/// loss: that hop shows loss, is labelled as rate limiting, and the
/// destination (hop `REPORT_HOPS`) shows none. Returns (right, note).
fn judge_report(text: &str) -> (bool, String) {
    let rows = report_rows(text);
    let get = |n: usize| rows.iter().find(|(h, _, _)| *h == n);
    let (Some(lim), Some(dst)) = (get(LIMITED_HOP), get(REPORT_HOPS)) else {
        return (false, format!("no rows for hops {LIMITED_HOP} and {REPORT_HOPS}"));
    };
    let labelled = lim.2.to_lowercase().contains("rate limit");
    let note = format!(
        "hop {LIMITED_HOP} loss {:.0}%{}, destination loss {:.0}%",
        lim.1,
        if labelled { " labelled rate limiting" } else { " shown as loss" },
        dst.1
    );
    (lim.1 > 0.0 && labelled && dst.1 == 0.0, note)
}

/// The "rlim" path: `netobs trace --report -c 10` next to `mtr --report -c 10`.
fn bench_report(netobs_bin: &Path) -> Result<Vec<Row>> {
    let mut names: Vec<String> = vec!["client".into()];
    names.extend((1..REPORT_HOPS).map(|i| format!("r{i}")));
    names.push("server".into());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let s = scenarios::linear("bench-report", &refs, &[]).context("building the report bench path")?;
    s.hop(LIMITED_HOP)?.nft(
        "add rule inet netobs output icmp type time-exceeded limit rate over 3/minute burst 3 packets counter drop",
    )?;
    let r1 = s.hop(1)?;
    r1.nft(&format!(
        "add chain inet netobs bench {{ type filter hook prerouting priority -300; policy accept; }}\n\
         add rule inet netobs bench ip saddr {} counter",
        s.client_v4
    ))?;
    let dst = s.server_v4.to_string();
    let bin = netobs_bin.to_str().context("non-UTF-8 netobs path")?;
    let tools: Vec<(String, Vec<&str>)> = vec![
        ("netobs trace --report -c 10".into(), vec![bin, "trace", "-n", "--report", "-c", "10", &dst]),
        ("mtr --report -c 10".into(), vec!["mtr", "-n", "--report", "-c", "10", &dst]),
    ];
    let mut rows = Vec::new();
    for (tool, argv) in tools.iter().filter(|(t, _)| wanted(t)) {
        // Let the limiter's bucket refill between tools: both start alike.
        std::thread::sleep(Duration::from_secs(2));
        let (out, probes, seconds) = measure(&s.client, r1, argv)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            eprintln!("--- {tool}\n{text}");
        }
        let (right, note) = judge_report(&text);
        rows.push(Row { tool: tool.clone(), path: "rlim", task: "report", probes, seconds, right, note });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tool_outputs() {
        let tr = " 1  198.18.1.254  0.1 ms\n 7  * * *\n10  198.18.10.1  0.3 ms";
        let h = hops_in(tr);
        assert_eq!(h[0], (1, Some(Ipv4Addr::new(198, 18, 1, 254))));
        assert_eq!(h[1], (7, None));
        let mtr = "  1.|-- 198.18.1.254  0.0%     1    0.1";
        assert_eq!(hops_in(mtr)[0].1, Some(Ipv4Addr::new(198, 18, 1, 254)));
        assert_eq!(mtu_in(" 4:  198.18.3.254  0.1ms pmtu 1400\n     Resume: pmtu 1400 hops 10 back 10"), Some(1400));
        assert_eq!(mtu_in("  path MTU 1400\n"), Some(1400));
    }

    #[test]
    fn judges_reports() {
        let mtr = "HOST: c Loss%   Snt   Last   Avg  Best  Wrst StDev\n  1.|-- 198.18.1.254  0.0%    10    0.1   0.1   0.1   0.1   0.0\n  2.|-- 198.18.2.254 70.0%    10    0.1   0.1   0.1   0.1   0.0\n  5.|-- 198.18.5.1  0.0%    10    0.1   0.1   0.1   0.1   0.0";
        let (right, note) = judge_report(mtr);
        assert!(!right, "{note}");
        assert!(note.contains("hop 2 loss 70% shown as loss"), "{note}");
        let netobs = "  2.|-- 198.18.2.254   70.0%    10  0.1  0.1  0.1  0.1  0.0   ICMP rate limiting at this hop, not loss (later hops answer)\n  5.|-- 198.18.5.1   0.0%    10";
        assert!(judge_report(netobs).0);
    }
}
