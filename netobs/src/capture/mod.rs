//! `netobs read`: a capture file through the same parser as the datapath
//! and the same explanations as `watch`.
//!
//! Each record is reduced to an Ethernet frame ([`linktype`]), classified
//! by the shared parser exactly as the XDP program would ([`frame`]), and
//! every ICMP error becomes a [`Finding`] aggregated, budgeted and worded
//! as in `watch`, with the capture's timestamps as the clock: a line is
//! printed at the moment of the capture `watch` would have printed it
//! (new entries at once, repeats every `--update-interval`), and the
//! final lines carry the counts. `--kernel` ([`kernel`]) also runs the
//! real XDP program on every frame and reports any disagreement.
//!
//! What a capture cannot give: the joins `watch` does on the live host
//! (the local socket's state, the conntrack original of a NATed flow, the
//! path MTU in the route cache). `read` counts which findings would have
//! had them and says so once, at the end.

pub mod frame;
pub mod kernel;
pub mod linktype;
pub mod pcap;

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Result;
use netobs_common::icmp;
use serde_json::{Value, json};

use crate::{
    explain::{Aggregator, Finding, HostContext, aggregate::NEWS_ONLY, words},
    join,
    output::{json as records, sink::Sink},
};

use self::{
    frame::{Malformed, Outcome},
    linktype::{Link, Way},
    pcap::{Capture, CaptureError, Record},
};

/// Reporter rows the summary table keeps; beyond, a (type, code) row
/// "other reporters" takes the counts, so a spoofed flood in a capture
/// cannot grow it without bound.
pub const TABLE_ROWS: usize = 10_000;

/// How `read` explains what it finds.
#[derive(Clone, Debug)]
pub struct Options {
    /// The capturing host's addresses. Empty: each ICMP error's
    /// destination is taken to be the capturing host (its source, for an
    /// error the capture marks as sent).
    pub local: Vec<IpAddr>,
    /// TTL / hop limit the capturing host sends with.
    pub initial_ttl: u8,
    /// As `watch --update-interval`, in capture time.
    pub update_interval: Duration,
    pub max_flows: usize,
    /// One `frame` record per ICMP error and per malformed frame.
    pub frames: bool,
    /// The capture's name (the file name, or "stdin"): the `read`
    /// record's `file`, and the interface name of a capture that does not
    /// name its own.
    pub label: String,
    /// The interface name every finding says it was seen on, whatever the
    /// capture says (`--iface`).
    pub iface: Option<String>,
}

/// How far the capture could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    Complete,
    /// Ends inside a record.
    CutShort,
    /// A record that cannot be parsed (the error), at frame n.
    Damaged(String),
}

/// What was in the capture, frame by frame.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub frames: u64,
    pub bytes: u64,
    pub ip: u64,
    pub not_ip: u64,
    /// Frames of a link type `read` does not decode, by link type.
    pub unsupported: BTreeMap<String, u64>,
    pub icmp_errors: u64,
    pub icmp_other: u64,
    pub malformed: BTreeMap<Malformed, u64>,
    /// Frames the snapshot length cut (fewer bytes captured than on the wire).
    pub cut_by_snaplen: u64,
    /// ICMP errors whose quote stops before what names the flow.
    pub quote_truncated: u64,
    pub first: Option<SystemTime>,
    pub last: Option<SystemTime>,
}

impl Stats {
    pub fn malformed_total(&self) -> u64 {
        self.malformed.values().sum()
    }
}

/// Key of the summary table: family, type, code, reporter (`None`: the
/// "other reporters" row once [`TABLE_ROWS`] is reached).
type Row = (u8, u8, u8, Option<IpAddr>);

/// The record-by-record pipeline.
pub struct Replay {
    opts: Options,
    ctx: HostContext,
    agg: Aggregator,
    /// The capture clock as an `Instant`, for the line budget: `base` is
    /// the first record's time, `now` never goes back (captures merged out
    /// of order).
    base: Instant,
    now: Instant,
    last_tick: Instant,
    pub stats: Stats,
    table: HashMap<Row, u64>,
    scratch: Vec<u8>,
    /// Live joins a host lookup would have run, by fact.
    missing: BTreeMap<&'static str, u64>,
    pub kernel: Option<kernel::KernelCheck>,
}

impl Replay {
    pub fn new(opts: Options, kernel: Option<kernel::KernelCheck>) -> Replay {
        let ctx = HostContext {
            local_addrs: opts.local.iter().copied().collect(),
            initial_ttl_v4: opts.initial_ttl,
            initial_ttl_v6: opts.initial_ttl,
            ..HostContext::default()
        };
        let now = Instant::now();
        Replay {
            agg: Aggregator::new(opts.max_flows),
            opts,
            ctx,
            base: now,
            now,
            last_tick: now,
            stats: Stats::default(),
            table: HashMap::new(),
            scratch: Vec::with_capacity(2048),
            missing: BTreeMap::new(),
            kernel,
        }
    }

    /// The capture's time as the aggregator's clock.
    fn clock(&mut self, ts: SystemTime) -> Instant {
        let first = *self.stats.first.get_or_insert(ts);
        self.stats.last = Some(self.stats.last.map_or(ts, |l| l.max(ts)));
        let t = self.base + ts.duration_since(first).unwrap_or_default();
        self.now = self.now.max(t);
        self.now
    }

    /// One record of `capture` (frame number `number`, counting from 1 as
    /// tcpdump's `-#` does).
    pub(crate) fn record(&mut self, rec: &Record<'_>, number: u64, sink: &mut Sink) -> Result<()> {
        let now = self.clock(rec.ts);
        if now.saturating_duration_since(self.last_tick) >= Duration::from_secs(1) {
            // watch's 1 s tick: repeats due by the update interval, folds.
            self.last_tick = now;
            for a in self.agg.due(self.opts.update_interval, now) {
                sink.aggregate(&a);
            }
            self.folds(sink, false);
        }
        self.stats.frames += 1;
        self.stats.bytes += rec.data.len() as u64;
        let link = rec.link;
        let ifindex = rec.iface as u32 + 1;
        if !self.ctx.ifnames.contains_key(&ifindex) {
            let name = match (&self.opts.iface, rec.name) {
                (Some(n), _) => n.clone(),
                (None, Some(n)) => n.to_string(),
                (None, None) if rec.iface == 0 => self.opts.label.clone(),
                (None, None) => format!("{}#{}", self.opts.label, rec.iface),
            };
            self.ctx.ifnames.insert(ifindex, name);
        }
        if (rec.data.len() as u64) > u64::from(rec.wire_len) {
            return self.malformed(Malformed::Record, number, rec, sink);
        }
        if (rec.data.len() as u64) < u64::from(rec.wire_len) {
            self.stats.cut_by_snaplen += 1;
        }
        let (l3, ethertype, link_way) = match linktype::classify(link, rec.data) {
            Link::Ip { l3, ethertype, way } => (l3, ethertype, way),
            Link::NotIp => {
                self.stats.not_ip += 1;
                return Ok(());
            }
            Link::Short => return self.malformed(Malformed::LinkHeader, number, rec, sink),
            Link::Unsupported => {
                *self.stats.unsupported.entry(link.name()).or_default() += 1;
                return Ok(());
            }
        };
        let way = if rec.way != Way::Unknown { rec.way } else { link_way };
        let wire_l3 = u64::from(rec.wire_len).saturating_sub(l3 as u64);
        let mut scratch = std::mem::take(&mut self.scratch);
        let eth = linktype::as_ethernet(link, rec.data, l3, ethertype, &mut scratch);
        let (outcome, host_check) = frame::classify(eth, wire_l3, ifindex, way);
        if let Some(k) = &mut self.kernel {
            k.check(number, eth, &outcome)?;
        }
        self.scratch = scratch;
        if let Some(m) = host_check {
            *self.stats.malformed.entry(m).or_default() += 1;
            if self.opts.frames && !matches!(outcome, Outcome::IcmpError { .. }) {
                sink.record(&frame_record(number, rec, Some(m), None));
            }
        }
        match outcome {
            Outcome::NotIp => self.stats.not_ip += 1,
            Outcome::Malformed(m) => return self.malformed(m, number, rec, sink),
            Outcome::Ip { icmp_other } => {
                self.stats.ip += 1;
                self.stats.icmp_other += u64::from(icmp_other);
            }
            Outcome::IcmpError { ev } => {
                self.stats.ip += 1;
                self.stats.icmp_errors += 1;
                if ev.flags & netobs_common::event::flags::QUOTE_TRUNCATED != 0 {
                    self.stats.quote_truncated += 1;
                }
                self.count_row(&ev);
                if self.opts.local.is_empty() {
                    let host = if way == Way::Out { ev.outer_src_ip() } else { ev.outer_dst_ip() };
                    self.ctx.local_addrs.insert(host);
                }
                let Some(f) = Finding::from_event(&ev, &self.ctx) else { return Ok(()) };
                if self.opts.frames {
                    sink.record(&frame_record(number, rec, host_check, Some(&f)));
                }
                if self.agg.ingest(f, rec.ts) {
                    for a in self.agg.due(NEWS_ONLY, now) {
                        sink.aggregate(&a);
                    }
                }
            }
        }
        Ok(())
    }

    fn malformed(&mut self, m: Malformed, number: u64, rec: &Record<'_>, sink: &mut Sink) -> Result<()> {
        *self.stats.malformed.entry(m).or_default() += 1;
        if self.opts.frames {
            sink.record(&frame_record(number, rec, Some(m), None));
        }
        Ok(())
    }

    fn count_row(&mut self, ev: &netobs_common::Event) {
        let (f, t, c) = (if ev.outer_family == 6 { 6 } else { 4 }, ev.icmp_type, ev.icmp_code);
        let key = (f, t, c, Some(ev.outer_src_ip()));
        if let Some(n) = self.table.get_mut(&key) {
            *n += 1;
        } else if self.table.len() < TABLE_ROWS {
            self.table.insert(key, 1);
        } else {
            *self.table.entry((f, t, c, None)).or_default() += 1;
        }
    }

    fn folds(&mut self, sink: &mut Sink, last: bool) {
        for mut f in self.agg.take_folds(self.now, last) {
            // A fold's window ends now: the capture's now, not the wall clock's.
            if let Some(t) = self.stats.last {
                f.until = t.max(f.since);
            }
            sink.record(&records::folded(&f));
            sink.text(&words::folded(&f));
        }
    }

    /// The last lines (every changed entry, the open folds), then what a
    /// live join would have added.
    pub(crate) fn finish(&mut self, sink: &mut Sink) {
        for a in self.agg.due(Duration::ZERO, self.now) {
            sink.aggregate(&a);
        }
        self.folds(sink, true);
        let ctx = &self.ctx;
        let missing = &mut self.missing;
        self.agg.for_each_mut(|a| {
            let n = join::needs(&a.finding, ctx);
            for (asked, name) in [
                (n.socket.is_some(), "socket_state"),
                (n.nat.is_some(), "nat_original"),
                (n.pmtu.is_some(), "pmtu_cache"),
            ] {
                if asked {
                    *missing.entry(name).or_default() += 1;
                }
            }
        });
    }

    /// The summary table rows, largest count first.
    pub fn rows(&self) -> Vec<(Row, u64)> {
        let mut rows: Vec<(Row, u64)> = self.table.iter().map(|(k, n)| (*k, *n)).collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        rows
    }

    /// One sentence on the joins a live `watch` would have run (`None`
    /// when no finding needed one).
    pub fn live_join_note(&self) -> Option<String> {
        if self.missing.is_empty() {
            return None;
        }
        let words = |name: &str| match name {
            "socket_state" => "the local socket's state (sock_diag)",
            "nat_original" => "the pre-NAT client (conntrack)",
            _ => "the path MTU our route cache took",
        };
        let parts: Vec<String> = self
            .missing
            .iter()
            .map(|(name, n)| format!("{} for {n} {}", words(name), if *n == 1 { "finding" } else { "findings" }))
            .collect();
        Some(format!(
            "a capture has no live host to ask: `watch` on the capturing host would also have looked up {}",
            parts.join(", ")
        ))
    }

    /// The `{"type":"read"}` record: counts, the summary table, the end.
    pub fn summary_record(&self, capture: &Capture, end: &End) -> Value {
        let s = &self.stats;
        let malformed: serde_json::Map<String, Value> = Malformed::ALL
            .iter()
            .map(|m| (m.name().to_string(), s.malformed.get(m).copied().unwrap_or(0).into()))
            .collect();
        let table: Vec<Value> = self
            .rows()
            .iter()
            .map(|((family, t, c, reporter), n)| {
                json!({
                    "family": family, "type": t, "code": c, "name": icmp::meaning(*family, *t, *c).name,
                    "reporter": reporter, "count": n,
                })
            })
            .collect();
        let links: Vec<String> = capture.ifaces.iter().map(|i| i.link.name()).collect();
        json!({
            "schema": records::SCHEMA, "type": "read",
            "file": self.opts.label, "format": capture.format.name(), "link_types": links,
            "frames": s.frames, "bytes": s.bytes, "ip": s.ip, "not_ip": s.not_ip,
            "unsupported_link": s.unsupported,
            "icmp_errors": s.icmp_errors, "icmp_other": s.icmp_other,
            "malformed": s.malformed_total(), "malformed_by": malformed,
            "cut_by_snaplen": s.cut_by_snaplen, "quote_truncated": s.quote_truncated,
            "first": s.first.map(rfc3339), "last": s.last.map(rfc3339),
            "end": match end { End::Complete => "complete".to_string(), End::CutShort => "cut_short".into(), End::Damaged(_) => "damaged".into() },
            "damage": match end { End::Damaged(e) => Some(e.clone()), _ => None },
            "table": table,
            "live_joins_missing": self.missing,
            "kernel": self.kernel.as_ref().map(|k| k.summary()),
        })
    }

    /// The summary for a terminal.
    pub fn summary_text(&self, capture: &Capture, end: &End) -> String {
        use std::fmt::Write as _;
        let s = &self.stats;
        let mut out = String::new();
        let links: Vec<String> = capture.ifaces.iter().map(|i| i.link.name()).collect();
        let _ = writeln!(
            out,
            "\n{} ({}, {}): {} frames, {} IP, {} ICMP errors, {} malformed, {} cut by the snapshot length, {} quotes too short to name the flow",
            self.opts.label,
            capture.format.name(),
            links.join("+"),
            words::thousands(s.frames),
            words::thousands(s.ip),
            words::thousands(s.icmp_errors),
            words::thousands(s.malformed_total()),
            words::thousands(s.cut_by_snaplen),
            words::thousands(s.quote_truncated),
        );
        if s.malformed_total() > 0 {
            let by: Vec<String> = s.malformed.iter().map(|(m, n)| format!("{} {n}", m.name())).collect();
            let _ = writeln!(out, "malformed: {}", by.join(", "));
        }
        for (link, n) in &s.unsupported {
            let _ = writeln!(out, "{n} frames of link type {link} were not decoded (not supported)");
        }
        match end {
            End::Complete => {}
            End::CutShort => {
                let _ = writeln!(out, "the capture ends inside a record: it was cut short");
            }
            End::Damaged(e) => {
                let _ = writeln!(out, "reading stopped at a damaged record: {e}");
            }
        }
        let rows = self.rows();
        if !rows.is_empty() {
            let _ = writeln!(out, "\n{:<10} {:<44} {:<40} {:>9}", "ICMP", "meaning", "reporter", "count");
            for ((family, t, c, reporter), n) in rows.iter().take(50) {
                let v6 = if *family == 6 { "v6 " } else { "" };
                let r = reporter.map_or_else(|| "(other reporters)".to_string(), |r| r.to_string());
                let _ = writeln!(
                    out,
                    "{:<10} {:<44} {:<40} {:>9}",
                    format!("{v6}{t}/{c}"),
                    icmp::meaning(*family, *t, *c).name,
                    r,
                    words::thousands(*n)
                );
            }
            if rows.len() > 50 {
                let _ = writeln!(out, "... {} more rows (--json has them all)", rows.len() - 50);
            }
        }
        out
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// `{"type":"frame"}`: one ICMP error or malformed frame, by its number in
/// the capture (tcpdump's `-#`), with the finding it gave.
fn frame_record(number: u64, rec: &Record<'_>, malformed: Option<Malformed>, f: Option<&Finding>) -> Value {
    json!({
        "schema": records::SCHEMA, "type": "frame", "frame": number, "ts": rfc3339(rec.ts),
        "captured_len": rec.data.len(), "wire_len": rec.wire_len,
        "malformed": malformed.map(Malformed::name),
        "finding": f.map(|f| serde_json::to_value(f).unwrap_or(Value::Null)),
    })
}

/// Reads `capture` to its end (or its first damaged record) through
/// `replay`. `progress` is called every few thousand records.
pub(crate) fn run(
    capture: &mut Capture,
    replay: &mut Replay,
    sink: &mut Sink,
    mut progress: impl FnMut(u64),
) -> Result<End> {
    let mut number = 0u64;
    loop {
        let rec = match capture.next_record() {
            None => return Ok(End::Complete),
            Some(Ok(r)) => r,
            Some(Err(CaptureError::CutShort)) => return Ok(End::CutShort),
            Some(Err(CaptureError::Io(e))) => return Err(anyhow::Error::new(e).context("reading the capture")),
            Some(Err(e)) => return Ok(End::Damaged(format!("after frame {number}: {e}"))),
        };
        number += 1;
        replay.record(&rec, number, sink)?;
        if number.is_multiple_of(4096) {
            progress(number);
        }
        if sink.is_closed() {
            return Ok(End::Complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay() -> Replay {
        Replay::new(
            Options {
                local: Vec::new(),
                initial_ttl: 64,
                update_interval: Duration::from_secs(5),
                max_flows: 64,
                frames: false,
                label: "t.pcap".into(),
                iface: None,
            },
            None,
        )
    }

    #[test]
    fn the_capture_clock_never_goes_back() {
        let mut r = replay();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let a = r.clock(t0 + Duration::from_secs(3));
        let b = r.clock(t0 + Duration::from_secs(1)); // merged out of order
        let c = r.clock(t0 + Duration::from_secs(10));
        assert_eq!(b, a);
        assert_eq!(c.duration_since(a), Duration::from_secs(7));
        assert_eq!(r.stats.first, Some(t0 + Duration::from_secs(3)));
        assert_eq!(r.stats.last, Some(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn the_summary_table_is_bounded_by_an_other_reporters_row() {
        let mut r = replay();
        let mut ev = netobs_common::Event { outer_family: 4, icmp_type: 3, icmp_code: 10, ..Default::default() };
        for i in 0..(TABLE_ROWS as u32 + 5) {
            ev.outer_src[..4].copy_from_slice(&(0xc612_0000u32 + i).to_be_bytes());
            r.count_row(&ev);
        }
        ev.outer_src[..4].copy_from_slice(&0xc612_0000u32.to_be_bytes());
        r.count_row(&ev); // a known reporter keeps its own row
        let rows = r.rows();
        assert_eq!(rows.len(), TABLE_ROWS + 1);
        assert_eq!(rows.iter().find(|(k, _)| k.3.is_none()).map(|(_, n)| *n), Some(5));
        assert_eq!((rows[0].0.3, rows[0].1), (None, 5), "largest first: {:?}", &rows[..2]);
        assert_eq!((rows[1].0.3, rows[1].1), ("198.18.0.0".parse().ok(), 2), "{:?}", &rows[..2]);
    }
}
