//! Blackholes noticed from absence: what this host's own TCP retransmits
//! when nothing comes back to say why.
//!
//! A PMTU blackhole sends no ICMP, so every ICMP-based explanation is
//! silent exactly when it matters most. The kernel's retransmission
//! tracepoints (`kernel::retrans`) count, per destination, full-size and
//! short data retransmissions, SYN and SYN-ACK retransmissions. This module
//! turns those counts into findings:
//!
//! - **suspected PMTU blackhole**: full-size segments to D are resent over
//!   and over without the connection making progress, while the handshake
//!   (small packets) got through, and no frag-needed / Packet Too Big for
//!   D was seen. "Without progress" is the kernel's own count of timeouts
//!   in a row for the same data (or, forwarded, the same segment again in
//!   a flow whose full-size segments never got through): congestion loss
//!   resends other holes while ACKs move, and does not add up to it.
//!   "Suspected": loss of only full-size segments looks the same from
//!   here; `watch --investigate` (or `netobs pmtu D`) confirms it.
//! - **silent drop toward D:port**: our SYNs are retransmitted, no answer
//!   and no ICMP error came back.
//! - **SYN-ACK retransmitted to D**: the peer's ACK never came. When an
//!   ICMP error rejected those SYN-ACKs (seed scenario 1), the finding says
//!   it agrees with that evidence and names the ICMP finding.
//!
//! On a gateway, `watch --forwarded-tcp` keeps per-flow state in the
//! kernel for the TCP it forwards (`netobs_common::flows`) and counts the
//! same three patterns, in the same shape; [`Source::Forwarded`] findings
//! come from those counts and say so in their words and in JSON
//! (`source`).
//!
//! Counts are judged over a window: an entry whose counts stop growing for
//! [`WINDOW`] starts again from zero, so a flow that lost three segments a
//! week ago does not add up with one that loses one today.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant, SystemTime},
};

use netobs_common::{
    icmp::Verdict,
    retrans::{RetransCounts, RetransKey, kind},
};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Aggregator, words::clock};
use crate::kernel::retrans::Retransmissions;

/// Counts that stop growing this long start again from zero.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Full-size retransmissions in the window before a blackhole is suspected.
pub(crate) const BLACKHOLE_MIN_FULL: u64 = 3;
/// Of those, how many resent data without progress in between.
pub(crate) const BLACKHOLE_MIN_STALLED: u64 = 2;
/// SYN retransmissions (no answer at all) before a silent drop is reported.
pub(crate) const SILENT_MIN_SYN: u64 = 2;
/// SYN-ACK retransmissions before they are reported.
pub(crate) const SYNACK_MIN: u64 = 2;

/// What a retransmission pattern suggests (`kind` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AbsenceKind {
    PmtuBlackholeSuspected,
    SilentDrop,
    SynackRetransmitted,
}

impl AbsenceKind {
    pub(crate) const ALL: [AbsenceKind; 3] =
        [AbsenceKind::PmtuBlackholeSuspected, AbsenceKind::SilentDrop, AbsenceKind::SynackRetransmitted];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AbsenceKind::PmtuBlackholeSuspected => "pmtu_blackhole_suspected",
            AbsenceKind::SilentDrop => "silent_drop",
            AbsenceKind::SynackRetransmitted => "synack_retransmitted",
        }
    }
}

/// Whose TCP retransmitted (`source` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Source {
    /// This host's own sockets (the `tcp_retransmit_*` tracepoints).
    LocalTcp,
    /// TCP this gateway forwards (flow state in the kernel).
    Forwarded,
}

impl Source {
    /// How the finding was inferred, for its details.
    fn how(self) -> String {
        match self {
            Source::LocalTcp => {
                "inferred from this host's own TCP (kernel tcp_retransmit_* tracepoints): nothing came back to say so"
                    .to_string()
            }
            Source::Forwarded => format!(
                "inferred from TCP this gateway forwards (flow state in the kernel, at most {} flows): \
                 the same segment passed here again, nothing came back to say why",
                netobs_common::flows::MAX_FLOWS
            ),
        }
    }
}

/// An ICMP finding that speaks for the same destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct IcmpAgreement {
    /// The `id` of the ICMP finding (`type: "finding"`).
    pub finding_id: u64,
    pub reporter: IpAddr,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub verdict: &'static str,
    pub count: u64,
}

/// One finding, as printed (JSON `type: "absence"`).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct AbsenceFinding {
    pub id: u64,
    pub kind: AbsenceKind,
    pub source: Source,
    pub family: u8,
    /// The destination our TCP retransmits to (forwarded: the receiver).
    pub remote: IpAddr,
    /// The service port: the remote one for SYNs, the local one otherwise.
    pub port: u16,
    /// This host's address (forwarded: the sender's, whose TCP resends).
    pub local: IpAddr,
    pub local_port: u16,
    pub remote_port: u16,
    /// In the window: full-size data retransmissions, or SYN / SYN-ACK
    /// retransmissions.
    pub retransmissions: u64,
    /// Data: shorter segments retransmitted in the window.
    pub small_retransmissions: u64,
    /// Data: full-size retransmissions that resent the same data.
    pub stalled: u64,
    pub mss: Option<u32>,
    pub largest_segment: Option<u32>,
    /// Data: bytes the connection got acknowledged (at the latest
    /// retransmission).
    pub bytes_acked: Option<u64>,
    /// An ICMP finding that agrees (SYN-ACKs rejected).
    pub icmp: Option<IcmpAgreement>,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    pub headline: String,
    pub details: Vec<String>,
    pub recommendation: String,
    /// A later line about a finding already printed (same id, grown
    /// counts): what the findings metric must not count again.
    #[serde(skip)]
    pub update: bool,
}

impl AbsenceFinding {
    /// A short stable key: "silent_drop 198.18.4.1:443" (the remote
    /// service), "pmtu_blackhole_suspected 198.18.1.1 from :5001" (our
    /// service).
    /// Forwarded: "silent_drop 198.18.4.1:443 forwarded",
    /// "pmtu_blackhole_suspected 198.18.1.1 from 198.18.4.1:5001".
    pub(crate) fn key(&self) -> String {
        match (self.kind, self.source) {
            (AbsenceKind::SilentDrop, Source::LocalTcp) => {
                format!("{} {}", self.kind.as_str(), super::words::endpoint(self.remote, Some(self.port)))
            }
            (AbsenceKind::SilentDrop, Source::Forwarded) => {
                format!("{} {} forwarded", self.kind.as_str(), super::words::endpoint(self.remote, Some(self.port)))
            }
            (_, Source::LocalTcp) => format!("{} {} from :{}", self.kind.as_str(), self.remote, self.port),
            (_, Source::Forwarded) => format!(
                "{} {} from {}",
                self.kind.as_str(),
                self.remote,
                super::words::endpoint(self.local, Some(self.port))
            ),
        }
    }

    pub(crate) fn json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or_else(|_| json!({}));
        v["schema"] = crate::output::json::SCHEMA.into();
        v["type"] = "absence".into();
        v["key"] = self.key().into();
        v["first_seen"] = humantime::format_rfc3339_seconds(self.first_seen).to_string().into();
        v["last_seen"] = humantime::format_rfc3339_seconds(self.last_seen).to_string().into();
        v["text"] = self.text().into();
        v
    }

    /// The terminal block.
    pub(crate) fn text(&self) -> String {
        let pad = "         ";
        let mut s = format!("{} {}", clock(self.last_seen), self.headline);
        for d in &self.details {
            s.push_str(&format!("\n{pad}{d}"));
        }
        s.push_str(&format!("\n{pad}fix: {}", self.recommendation));
        s
    }
}

/// What the ICMP side saw that matters here, gathered from the aggregator.
#[derive(Clone, Debug, Default)]
pub(crate) struct IcmpSeen {
    /// (ICMP finding id, flow destination, flow ports, verdict, reporter,
    /// type, code, count, TCP flags of the quoted packet).
    notes: Vec<IcmpNote>,
}

#[derive(Clone, Debug)]
struct IcmpNote {
    id: u64,
    dst: IpAddr,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    verdict: Verdict,
    reporter: IpAddr,
    icmp_type: u8,
    icmp_code: u8,
    count: u64,
    synack: bool,
}

impl IcmpSeen {
    /// The ICMP errors the aggregator remembers (bounded by its capacity).
    pub(crate) fn from_aggregator(agg: &mut Aggregator) -> IcmpSeen {
        let mut notes = Vec::new();
        agg.for_each_mut(|a| {
            let f = &a.finding;
            if f.kind != "icmp_error" {
                return;
            }
            let Some(fl) = &f.flow else { return };
            notes.push(IcmpNote {
                id: a.id,
                dst: fl.dst,
                src_port: fl.src_port,
                dst_port: fl.dst_port,
                verdict: f.verdict,
                reporter: f.reporter,
                icmp_type: f.icmp_type,
                icmp_code: f.icmp_code,
                count: a.count,
                synack: f.tcp_flags.as_deref() == Some("SYN-ACK"),
            });
        });
        IcmpSeen { notes }
    }

    fn agreement(n: &IcmpNote) -> IcmpAgreement {
        IcmpAgreement {
            finding_id: n.id,
            reporter: n.reporter,
            icmp_type: n.icmp_type,
            icmp_code: n.icmp_code,
            verdict: n.verdict.as_str(),
            count: n.count,
        }
    }

    /// A frag-needed / Packet Too Big quoting our packets to `dst`.
    fn too_big_toward(&self, dst: IpAddr) -> bool {
        self.notes.iter().any(|n| n.dst == dst && n.verdict == Verdict::FragNeeded)
    }

    /// Any ICMP error quoting our packets to `dst:port`.
    fn error_toward(&self, dst: IpAddr, port: u16) -> Option<IcmpAgreement> {
        self.notes.iter().find(|n| n.dst == dst && n.dst_port == Some(port)).map(Self::agreement)
    }

    /// An ICMP error quoting our SYN-ACKs from `lport` to `dst`.
    fn synack_rejected(&self, dst: IpAddr, lport: u16) -> Option<IcmpAgreement> {
        self.notes.iter().find(|n| n.dst == dst && n.src_port == Some(lport) && n.synack).map(Self::agreement)
    }
}

/// One kernel entry as judged so far.
#[derive(Clone, Debug)]
struct Tracked {
    /// Counts at the start of the window.
    base: RetransCounts,
    /// Last counts seen, and when they last grew.
    last: RetransCounts,
    grew_at: Instant,
    first_seen: SystemTime,
    /// Reported as (id, retransmissions then, when).
    reported: Option<(u64, u64, Instant)>,
}

/// The judge: fed the kernel counts once a second, says what is new.
pub(crate) struct Absence {
    source: Source,
    tracked: HashMap<RetransKey, Tracked>,
    next_id: u64,
    /// Shortest time between two lines about the same finding.
    interval: Duration,
}

/// Counts in the window.
fn delta(now: &RetransCounts, base: &RetransCounts) -> RetransCounts {
    RetransCounts {
        full: now.full.saturating_sub(base.full),
        small: now.small.saturating_sub(base.small),
        stalled: now.stalled.saturating_sub(base.stalled),
        ..*now
    }
}

impl Absence {
    /// Ids start far above the aggregator's, so an id names one record.
    const FIRST_ID: u64 = 1 << 40;

    /// The judge of this host's own retransmissions.
    pub(crate) fn new(interval: Duration) -> Absence {
        Absence { source: Source::LocalTcp, tracked: HashMap::new(), next_id: Self::FIRST_ID, interval }
    }

    /// The judge of the forwarded flows' counts (ids of their own range).
    pub(crate) fn forwarded(interval: Duration) -> Absence {
        Absence { source: Source::Forwarded, tracked: HashMap::new(), next_id: Self::FIRST_ID << 1, interval }
    }

    /// Nothing tracked: an empty read changes nothing.
    pub(crate) fn is_idle(&self) -> bool {
        self.tracked.is_empty()
    }

    /// Judges one read of the kernel map; returns findings that are new or
    /// grew (at most once per interval each).
    pub(crate) fn judge(
        &mut self,
        entries: &[Retransmissions],
        icmp: &IcmpSeen,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<AbsenceFinding> {
        // Entries the kernel evicted are forgotten here too: bounded by
        // the kernel map's size.
        self.tracked.retain(|k, _| entries.iter().any(|e| e.key == *k));
        let mut out = Vec::new();
        for e in entries {
            let t = self.tracked.entry(e.key).or_insert_with(|| Tracked {
                base: RetransCounts::default(),
                last: RetransCounts::default(),
                grew_at: now,
                first_seen: wall,
                reported: None,
            });
            let total = |c: &RetransCounts| c.full + c.small;
            if total(&e.counts) != total(&t.last) {
                t.last = e.counts;
                t.grew_at = now;
            } else if now.duration_since(t.grew_at) >= WINDOW {
                // Quiet for a window: start again.
                t.base = e.counts;
                t.reported = None;
                t.first_seen = wall;
                continue;
            }
            let d = delta(&e.counts, &t.base);
            let Some(mut f) = assess(e, &d, icmp, self.source) else { continue };
            match t.reported {
                None => {
                    f.id = self.next_id;
                    self.next_id += 1;
                }
                Some((id, n, at)) if d.full > n && now.duration_since(at) >= self.interval => {
                    f.id = id;
                    f.update = true;
                }
                Some(_) => continue,
            }
            t.reported = Some((f.id, d.full, now));
            f.first_seen = t.first_seen;
            f.last_seen = wall;
            out.push(f);
        }
        out
    }
}

/// The finding an entry's window counts make, if any.
fn assess(e: &Retransmissions, d: &RetransCounts, icmp: &IcmpSeen, src: Source) -> Option<AbsenceFinding> {
    let fam = e.key.family;
    let fwd = src == Source::Forwarded;
    let base = |kind: AbsenceKind, headline: String| AbsenceFinding {
        id: 0,
        kind,
        source: src,
        family: fam,
        remote: e.remote,
        port: e.key.port,
        local: e.local,
        local_port: e.counts.lport,
        remote_port: e.counts.rport,
        retransmissions: d.full,
        small_retransmissions: d.small,
        stalled: d.stalled,
        mss: (e.counts.mss > 0).then_some(e.counts.mss),
        largest_segment: (e.counts.max_len > 0).then_some(e.counts.max_len),
        bytes_acked: (e.key.kind == kind::DATA).then_some(e.counts.acked),
        icmp: None,
        first_seen: SystemTime::UNIX_EPOCH,
        last_seen: SystemTime::UNIX_EPOCH,
        headline,
        details: Vec::new(),
        recommendation: String::new(),
        update: false,
    };
    let too_big = if fam == 4 { "frag-needed" } else { "Packet Too Big" };
    let source = src.how();
    match e.key.kind {
        kind::DATA => {
            // Short segments lost as often as full-size ones: that is loss,
            // not a size limit.
            if d.full < BLACKHOLE_MIN_FULL || d.stalled < BLACKHOLE_MIN_STALLED || d.small * 4 > d.full {
                return None;
            }
            if icmp.too_big_toward(e.remote) {
                return None;
            }
            let mss = e.counts.mss;
            let headline = if fwd {
                format!(
                    "SUSPECTED PMTU BLACKHOLE toward {}: {} full-size retransmissions from {} passed this gateway (segments of {mss} bytes), no {too_big} seen",
                    e.remote,
                    d.full,
                    super::words::endpoint(e.local, Some(e.counts.lport))
                )
            } else {
                format!(
                    "SUSPECTED PMTU BLACKHOLE toward {}: {} full-size retransmissions (MSS {mss}), no {too_big} seen",
                    e.remote, d.full
                )
            };
            let mut f = base(AbsenceKind::PmtuBlackholeSuspected, headline);
            f.details.push(format!(
                "{} of them resent the same data (no progress in between); {} shorter segment(s) needed resending",
                d.stalled, d.small
            ));
            if fwd && e.counts.state == netobs_common::retrans::tcp_state::ESTABLISHED {
                f.details.push(format!(
                    "the handshake passed here both ways and the receiver's ACKs come through ({} data bytes acknowledged): small packets pass, segments of {} bytes do not",
                    e.counts.acked,
                    e.counts.max_len.max(mss)
                ));
            } else if e.counts.state == netobs_common::retrans::tcp_state::ESTABLISHED {
                f.details.push(format!(
                    "the handshake got through (connection established, {} bytes acknowledged): small packets pass, segments of {} bytes do not",
                    e.counts.acked,
                    e.counts.max_len.max(mss)
                ));
            }
            f.details.push(format!(
                "flow {} -> {} tcp; {source}",
                super::words::endpoint(e.local, Some(e.counts.lport)),
                super::words::endpoint(e.remote, Some(e.counts.rport))
            ));
            let icmp_name = if fam == 4 { "ICMP 3/4" } else { "ICMPv6 type 2" };
            f.recommendation = if fwd {
                format!(
                    "confirm with `netobs pmtu {}` from this gateway (or run watch with --investigate): it finds the path MTU and the narrow link; then clamp the MSS here (nft: tcp flags syn tcp option maxseg size set rt mtu) or permit {icmp_name} back to {}",
                    e.remote, e.local
                )
            } else {
                format!(
                    "confirm with `netobs pmtu {}` (or run watch with --investigate): it finds the path MTU and the narrow link; then clamp the MSS on the path or permit {icmp_name} back to this host",
                    e.remote
                )
            };
            Some(f)
        }
        kind::SYN => {
            if d.full < SILENT_MIN_SYN || icmp.error_toward(e.remote, e.key.port).is_some() {
                return None;
            }
            let to = super::words::endpoint(e.remote, Some(e.key.port));
            let through = if fwd { " passed this gateway" } else { "" };
            let mut f = base(
                AbsenceKind::SilentDrop,
                format!(
                    "SILENT DROP toward {to}: {} SYN retransmissions{through}, no answer and no ICMP error",
                    d.full
                ),
            );
            f.details.push(format!("neither a SYN-ACK, a RST nor an ICMP error came back; {source}"));
            f.recommendation = format!(
                "a firewall on the way drops TCP to port {} without rejecting it: `netobs explain {} --port {}` (or --investigate) finds after which hop",
                e.key.port, e.remote, e.key.port
            );
            Some(f)
        }
        kind::SYNACK => {
            if d.full < SYNACK_MIN {
                return None;
            }
            let agree = icmp.synack_rejected(e.remote, e.counts.lport);
            let to = super::words::endpoint(e.remote, Some(e.counts.rport));
            let headline = if fwd {
                format!(
                    "SYN-ACK RETRANSMITTED to {to} from {}: {} times through this gateway, the client's ACK never came back through it",
                    super::words::endpoint(e.local, Some(e.counts.lport)),
                    d.full
                )
            } else {
                format!(
                    "SYN-ACK RETRANSMITTED to {to} from :{}: {} times, the client's ACK never came",
                    e.counts.lport, d.full
                )
            };
            let mut f = base(AbsenceKind::SynackRetransmitted, headline);
            match &agree {
                Some(a) => {
                    f.details.push(format!(
                        "agrees with the ICMP evidence: {} answers our SYN-ACKs with ICMP {}/{} ({}, {} seen, finding {})",
                        a.reporter, a.icmp_type, a.icmp_code, a.verdict, a.count, a.finding_id
                    ));
                    f.recommendation =
                        format!("the ACL on or near {} rejects our SYN-ACKs on their way to the client", a.reporter);
                }
                None => {
                    f.details.push(format!("no ICMP error came back; {source}"));
                    f.recommendation = format!(
                        "our SYN-ACKs (or the client's ACKs) are dropped silently between here and {}: check filters on the return path",
                        e.remote
                    );
                }
            }
            f.icmp = agree;
            Some(f)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::{Finding, Flow};

    fn entry(kind: u8, port: u16, c: RetransCounts) -> Retransmissions {
        let remote: IpAddr = "198.18.1.1".parse().unwrap();
        let mut key = RetransKey { family: 4, kind, port, ..RetransKey::default() };
        key.addr[..4].copy_from_slice(&[198, 18, 1, 1]);
        Retransmissions { key, remote, local: "198.18.4.1".parse().unwrap(), counts: c }
    }

    fn data(full: u64, small: u64, stalled: u64) -> Retransmissions {
        entry(
            kind::DATA,
            5001,
            RetransCounts {
                full,
                small,
                stalled,
                mss: 1448,
                max_len: 1448,
                lport: 5001,
                rport: 40000,
                state: 1,
                ..Default::default()
            },
        )
    }

    fn judge(a: &mut Absence, e: &[Retransmissions], icmp: &IcmpSeen, t: Instant) -> Vec<AbsenceFinding> {
        a.judge(e, icmp, t, SystemTime::now())
    }

    #[test]
    fn full_size_retransmissions_without_progress_make_a_suspected_blackhole() {
        let mut a = Absence::new(Duration::from_secs(5));
        let t0 = Instant::now();
        let none = IcmpSeen::default();
        assert!(judge(&mut a, &[data(2, 0, 1)], &none, t0).is_empty(), "two are not enough");
        let f = judge(&mut a, &[data(4, 0, 3)], &none, t0 + Duration::from_secs(1));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, AbsenceKind::PmtuBlackholeSuspected);
        assert_eq!(
            f[0].headline,
            "SUSPECTED PMTU BLACKHOLE toward 198.18.1.1: 4 full-size retransmissions (MSS 1448), no frag-needed seen"
        );
        // Not again until it grows and an interval passed; then the same id.
        assert!(judge(&mut a, &[data(5, 0, 4)], &none, t0 + Duration::from_secs(2)).is_empty());
        let again = judge(&mut a, &[data(6, 0, 5)], &none, t0 + Duration::from_secs(7));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, f[0].id);
        assert!(!f[0].update && again[0].update, "the second line is an update of the first");
        // Quiet for a window: forgotten; it takes three new ones to report again.
        let later = t0 + Duration::from_secs(7) + WINDOW;
        assert!(judge(&mut a, &[data(6, 0, 5)], &none, later).is_empty());
        assert!(judge(&mut a, &[data(8, 0, 7)], &none, later + Duration::from_secs(1)).is_empty());
        let back = judge(&mut a, &[data(9, 0, 8)], &none, later + Duration::from_secs(2));
        assert_eq!(back.len(), 1);
        assert_ne!(back[0].id, f[0].id);
        assert!(!back[0].update, "a new window's finding is a new one");
    }

    #[test]
    fn forwarded_findings_say_where_they_come_from_and_keep_ids_apart() {
        let none = IcmpSeen::default();
        let t = Instant::now();
        let fwd = judge(&mut Absence::forwarded(Duration::ZERO), &[data(4, 0, 3)], &none, t);
        let local = judge(&mut Absence::new(Duration::ZERO), &[data(4, 0, 3)], &none, t);
        assert_eq!((fwd[0].source, local[0].source), (Source::Forwarded, Source::LocalTcp));
        assert_ne!(fwd[0].id, local[0].id, "one id names one record");
        assert_eq!(fwd[0].key(), "pmtu_blackhole_suspected 198.18.1.1 from 198.18.4.1:5001");
        assert_eq!(local[0].key(), "pmtu_blackhole_suspected 198.18.1.1 from :5001");
        assert!(fwd[0].headline.contains("from 198.18.4.1:5001 passed this gateway"), "{}", fwd[0].headline);
        assert!(fwd[0].text().contains("inferred from TCP this gateway forwards"), "{}", fwd[0].text());
        assert_eq!(fwd[0].json()["source"], "forwarded");
        assert_eq!(local[0].json()["source"], "local_tcp");
    }

    #[test]
    fn loss_of_small_segments_too_or_progress_is_no_blackhole() {
        let none = IcmpSeen::default();
        let t = Instant::now();
        assert!(judge(&mut Absence::new(Duration::ZERO), &[data(8, 4, 7)], &none, t).is_empty(), "small ones lost too");
        assert!(judge(&mut Absence::new(Duration::ZERO), &[data(8, 0, 0)], &none, t).is_empty(), "progress between");
    }

    fn icmp_with(verdict: Verdict, flags: Option<&str>, src_port: u16, dst_port: u16) -> IcmpSeen {
        let mut f = Finding::example();
        f.verdict = verdict;
        f.tcp_flags = flags.map(str::to_string);
        f.flow = Some(Flow {
            protocol: "tcp".into(),
            src: "198.18.4.1".parse().unwrap(),
            dst: "198.18.1.1".parse().unwrap(),
            src_port: Some(src_port),
            dst_port: Some(dst_port),
            echo_id: None,
        });
        let mut agg = Aggregator::new(16);
        agg.ingest(f, SystemTime::now());
        IcmpSeen::from_aggregator(&mut agg)
    }

    #[test]
    fn a_frag_needed_seen_for_the_destination_rules_the_suspicion_out() {
        let seen = icmp_with(Verdict::FragNeeded, None, 5001, 40000);
        assert!(judge(&mut Absence::new(Duration::ZERO), &[data(8, 0, 7)], &seen, Instant::now()).is_empty());
    }

    #[test]
    fn syn_retransmissions_without_any_answer_are_a_silent_drop() {
        let syn = |n| {
            entry(kind::SYN, 443, RetransCounts { full: n, lport: 40000, rport: 443, state: 2, ..Default::default() })
        };
        let none = IcmpSeen::default();
        let f = judge(&mut Absence::new(Duration::ZERO), &[syn(2)], &none, Instant::now());
        assert_eq!(f[0].kind, AbsenceKind::SilentDrop);
        assert!(
            f[0].headline.starts_with("SILENT DROP toward 198.18.1.1:443: 2 SYN retransmissions"),
            "{}",
            f[0].headline
        );
        assert_eq!(f[0].key(), "silent_drop 198.18.1.1:443");
        // An ICMP error about that flow: not silent (the ICMP finding says why).
        let rejected = icmp_with(Verdict::Rejected, Some("SYN"), 40000, 443);
        assert!(judge(&mut Absence::new(Duration::ZERO), &[syn(3)], &rejected, Instant::now()).is_empty());
    }

    #[test]
    fn synack_retransmissions_agree_with_the_icmp_rejection_when_there_is_one() {
        let synack = entry(
            kind::SYNACK,
            65000,
            RetransCounts { full: 2, lport: 65000, rport: 40000, state: 12, ..Default::default() },
        );
        let seen = icmp_with(Verdict::Rejected, Some("SYN-ACK"), 65000, 40000);
        let f = judge(&mut Absence::new(Duration::ZERO), std::slice::from_ref(&synack), &seen, Instant::now());
        let agree = f[0].icmp.as_ref().expect("agreement");
        assert_eq!(agree.verdict, "rejected");
        assert!(f[0].details[0].starts_with("agrees with the ICMP evidence"), "{:?}", f[0].details);
        let alone = judge(&mut Absence::new(Duration::ZERO), &[synack], &IcmpSeen::default(), Instant::now());
        assert!(alone[0].icmp.is_none());
        let j = alone[0].json();
        assert_eq!(j["type"], "absence");
        assert_eq!(j["kind"], "synack_retransmitted");
    }
}
