//! From evidence to one diagnosis: one rule per verdict over shared
//! evidence types, tried in a fixed priority order. Used by `explain` (and
//! meant for `watch --investigate`), so both say the same thing in the same
//! words.
//!
//! - [`evidence`]: the probe results ([`Evidence`]) and the facts derived
//!   from them once ([`Facts`]);
//! - [`rules`]: one small function per verdict, `fn(&Facts) -> Option<Diagnosis>`;
//! - [`words`]: the sentences.
//!
//! Priority ([`RULES`]), most specific first:
//! 1. [`rules::rejected`] - an explicit reject names its culprit;
//! 2. [`rules::pmtu_blackhole`] - explains "works for small, hangs for big"
//!    even though the destination answers;
//! 3. [`rules::return_path`] - the service dies, and the kernel saw answers
//!    to our probes that our sockets never got: lost on this host;
//! 4. [`rules::filtered`] - the service dies after hop N (ICMP going
//!    further makes it a filter);
//! 5. [`rules::rate_limited`] - a hop answers part of a burst but all of a
//!    spaced series, and the destination is reachable;
//! 6. [`rules::reachable`];
//! 7. otherwise [`rules::no_answer`].
//!
//! Next to the verdict come side findings the user needs whatever the
//! verdict is ([`SideFinding`]): a confirmed rate-limited hop and PTBs that
//! are not believed.

pub mod evidence;
pub(crate) mod rules;
pub(crate) mod words;

use std::net::IpAddr;

pub use evidence::{Evidence, Facts, KernelView, PtbSeen, RateTest, Reject};
use serde::Serialize;
pub use words::render;

use crate::explain::ptb::PtbSuspect;

/// The kinds of verdict (`kind` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Reachable,
    Rejected,
    Unreachable,
    SilentlyDropped,
    UdpFiltered,
    PmtuBlackhole,
    IcmpRateLimited,
    ReturnPath,
    NoAnswer,
}

impl Kind {
    /// Whether the verdict is a problem for the traffic: everything but a
    /// reachable destination, and a rate-limited hop on a reachable path
    /// (its `*` are not packet loss). `explain`'s exit code follows it.
    pub fn is_problem(self) -> bool {
        !matches!(self, Kind::Reachable | Kind::IcmpRateLimited)
    }
}

/// The one diagnosis `explain` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Diagnosis {
    pub kind: Kind,
    /// `kind.is_problem()`, for readers of the JSON.
    pub problem: bool,
    /// The first line, e.g. "REJECTED at hop 2 (198.18.2.254)".
    pub headline: String,
    /// The hop the verdict is about (rejecting hop, last answering hop
    /// before a drop, hop behind the narrow link, rate-limiting hop).
    pub hop: Option<u8>,
    pub addr: Option<IpAddr>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub icmp_words: Option<&'static str>,
    /// Path MTU when known.
    pub mtu: Option<u32>,
    /// Hops to the destination when it answered.
    pub dest_hop: Option<u8>,
    /// Burst answers (rate limiting): k of n.
    pub answered: Option<u32>,
    pub of: Option<u32>,
    /// Supporting facts, one per line.
    pub details: Vec<String>,
    /// What to do.
    pub recommendation: String,
    /// Which conclusions rest on the return path, and which do not.
    pub return_path: Vec<String>,
    /// Findings next to the verdict (rate-limited hop, PTBs not believed).
    pub findings: Vec<SideFinding>,
}

impl Diagnosis {
    pub(crate) fn new(kind: Kind, headline: String) -> Diagnosis {
        Diagnosis {
            kind,
            problem: kind.is_problem(),
            headline,
            hop: None,
            addr: None,
            icmp_type: None,
            icmp_code: None,
            icmp_words: None,
            mtu: None,
            dest_hop: None,
            answered: None,
            of: None,
            details: Vec::new(),
            recommendation: String::new(),
            return_path: Vec::new(),
            findings: Vec::new(),
        }
    }

    /// Whether a problem was found (exit code 1) or not (0).
    pub fn is_problem(&self) -> bool {
        self.kind.is_problem()
    }
}

/// Kinds of side finding (`findings[].kind` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A hop rate-limits the ICMP it generates: its `*` are not loss.
    IcmpRateLimited,
    /// A frag-needed / Packet Too Big that is flagged, not believed.
    PtbNotBelieved,
}

/// A finding next to the verdict.
#[derive(Clone, Debug, Serialize)]
pub struct SideFinding {
    pub kind: FindingKind,
    pub headline: String,
    pub hop: Option<u8>,
    pub addr: Option<IpAddr>,
    /// PTB: the MTU it announced.
    pub mtu: Option<u32>,
    /// PTB: why it is not believed.
    pub reasons: Vec<PtbSuspect>,
    pub details: Vec<String>,
}

/// A rule: the diagnosis when its verdict applies.
pub(crate) type Rule = fn(&Facts) -> Option<Diagnosis>;

/// The rules in priority order (see the module docs); the first that
/// applies wins, [`rules::no_answer`] when none does.
pub(crate) const RULES: &[Rule] = &[
    rules::rejected,
    rules::pmtu_blackhole,
    rules::return_path,
    rules::filtered,
    rules::rate_limited,
    rules::reachable,
];

/// Applies the rules to `e`.
pub fn decide(e: &Evidence) -> Diagnosis {
    let facts = Facts::new(e);
    let mut d = RULES.iter().find_map(|rule| rule(&facts)).unwrap_or_else(|| rules::no_answer(&facts));
    d.findings = rules::side_findings(&facts);
    d.details.push(facts.evidence_line.clone());
    d
}

#[cfg(test)]
mod tests;
