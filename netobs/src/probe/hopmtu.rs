//! Per-hop MTU for `trace --mtu`, as `traceroute --mtu` prints it.
//!
//! After the trace, every hop gets a DF probe at the full local MTU, all
//! at once. Routers check the TTL before the MTU, so a hop before a narrow
//! link answers time exceeded; the router in front of the narrow link
//! answers the probes that must cross it with "fragmentation needed" (or
//! Packet Too Big) announcing the link's MTU. Those hops, and every one
//! past them, are probed again at the announced size, until each hop has
//! answered (or stayed silent `queries` times). The first hop reached at a
//! smaller size than the one before it gets `F=<size>` in the output, with
//! the router that announced it; the announcer's hop comes from the TTL it
//! quoted (it has not decremented yet: hop = sent TTL - quoted + 1).
//!
//! The rounds reuse `pmtu`'s burst and its judgement of each answer (a
//! "too big" that cannot be right is recorded, not believed). A size that
//! vanishes without any "too big" is a blackhole: `netobs pmtu` finds and
//! locates those; here that hop just shows no size.

use std::{collections::BTreeMap, net::IpAddr};

use anyhow::Result;
use serde::Serialize;

use super::{
    pmtu::{self, Outcome, PmtuOptions},
    socket::Prober,
};

/// Most probing rounds: one per MTU drop on the path plus retries.
const MAX_ROUNDS: u32 = 12;

/// One hop's MTU.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MtuHop {
    pub ttl: u8,
    /// Largest DF probe size that reached this hop; absent when no size drew
    /// an answer.
    pub size: Option<u32>,
    /// `F=<size>`: set on the first hop and where the size drops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f: Option<u32>,
    /// Who announced the smaller MTU that `f` shows, and at which hop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announced_by: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announcer_hop: Option<u8>,
}

/// A "too big" answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MtuAnnouncement {
    pub from: IpAddr,
    pub mtu: u32,
    pub hop: Option<u8>,
    /// False for one that cannot be right (MTU not below the probe, or
    /// below the protocol minimum): the search ignored it.
    pub believed: bool,
}

/// The per-hop MTU of a trace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HopMtu {
    /// Size of the first probes: the egress interface's MTU.
    pub local_mtu: u32,
    pub hops: Vec<MtuHop>,
    pub announcements: Vec<MtuAnnouncement>,
    /// Size that reached the last hop probed (the destination when the
    /// trace reached it).
    pub path_mtu: Option<u32>,
    pub probes_sent: u32,
}

impl HopMtu {
    /// ` F=1400 (announced by 198.18.2.254, hop 2)` for the hop line.
    pub fn hop_note(&self, ttl: u8) -> String {
        let Some(h) = self.hops.iter().find(|h| h.ttl == ttl) else { return String::new() };
        match (h.f, h.announced_by) {
            (Some(f), Some(by)) => match h.announcer_hop {
                Some(hop) => format!(" F={f} (announced by {by}, hop {hop})"),
                None => format!(" F={f} (announced by {by})"),
            },
            (Some(f), None) => format!(" F={f}"),
            _ => String::new(),
        }
    }

    /// One line: where the MTU drops.
    pub fn summary(&self) -> String {
        let drops: Vec<String> = self
            .hops
            .iter()
            .filter(|h| h.announced_by.is_some())
            .filter_map(|h| {
                let by = h.announced_by?;
                let at = h.announcer_hop.map(|a| format!(", hop {a}")).unwrap_or_default();
                Some(format!("{} at hop {} (announced by {by}{at})", h.f?, h.ttl))
            })
            .collect();
        let pmtu = self.path_mtu.map_or("unknown".to_string(), |p| p.to_string());
        let ignored = self.announcements.iter().filter(|a| !a.believed).count();
        let ignored =
            if ignored > 0 { format!("; {ignored} implausible frag-needed/too-big ignored") } else { String::new() };
        let n = self.probes_sent;
        if drops.is_empty() {
            format!("MTU: {pmtu} on the whole path (DF probes of {} bytes){ignored}; {n} DF probes", self.local_mtu)
        } else {
            format!("MTU: {} -> {}; path MTU {pmtu}{ignored}; {n} DF probes", self.local_mtu, drops.join(", "))
        }
    }
}

/// Probes `ttls` (the hops of a finished trace, ascending) with DF probes
/// from `local_mtu` down, as described in the module docs.
pub async fn run(prober: &mut Prober, ttls: &[u8], local_mtu: u32, opts: &PmtuOptions, queries: u8) -> Result<HopMtu> {
    let before = prober.probes_sent;
    let min_size = prober.flow.min_size() as u32;
    let mut size: BTreeMap<u8, u32> = ttls.iter().map(|&t| (t, local_mtu.max(min_size))).collect();
    // ttl -> size that drew an answer (None: silent `queries` times).
    let mut done: BTreeMap<u8, Option<u32>> = BTreeMap::new();
    let mut silent: BTreeMap<u8, u8> = BTreeMap::new();
    let mut announcements: Vec<MtuAnnouncement> = Vec::new();
    let mut max_rtt = None;
    for _ in 0..MAX_ROUNDS {
        let probes: Vec<(u8, u32)> =
            size.iter().filter(|(t, _)| !done.contains_key(t)).map(|(&t, &s)| (t, s)).collect();
        if probes.is_empty() {
            break;
        }
        let answers = pmtu::burst(prober, &probes, opts, &mut max_rtt).await?;
        for (&(ttl, sz), a) in probes.iter().zip(&answers) {
            let o = pmtu::outcome(prober, a);
            match o {
                Outcome::TooBig { mtu, from } | Outcome::BogusTooBig { mtu, from } => {
                    let believed = matches!(o, Outcome::TooBig { .. }) && mtu < sz && mtu >= min_size;
                    let hop =
                        a.as_ref().and_then(|a| a.reply.quoted_ttl).and_then(|q| ttl.checked_sub(q)).map(|d| d + 1);
                    if !announcements.iter().any(|x| x.from == from && x.mtu == mtu) {
                        announcements.push(MtuAnnouncement { from, mtu, hop, believed });
                    }
                    if believed {
                        // Every probe that crosses that link is too big too.
                        for (_, s) in size.range_mut(ttl..) {
                            *s = (*s).min(mtu);
                        }
                    } else {
                        done.insert(ttl, None);
                    }
                }
                Outcome::Silent => {
                    let n = silent.entry(ttl).or_default();
                    *n += 1;
                    if *n >= queries.max(1) {
                        done.insert(ttl, None);
                    }
                }
                // Time exceeded, the destination's answer, or another
                // error from that hop: this size got there.
                Outcome::Ok | Outcome::Error { .. } => {
                    done.insert(ttl, Some(sz));
                }
            }
        }
    }
    Ok(build(ttls, &done, &announcements, local_mtu, prober.probes_sent - before))
}

/// The result from what each TTL drew (pure: unit-tested).
fn build(
    ttls: &[u8],
    done: &BTreeMap<u8, Option<u32>>,
    announcements: &[MtuAnnouncement],
    local_mtu: u32,
    probes_sent: u32,
) -> HopMtu {
    let mut hops = Vec::with_capacity(ttls.len());
    let mut prev: Option<u32> = None;
    for &ttl in ttls {
        let sz = done.get(&ttl).copied().flatten();
        let mut h = MtuHop { ttl, size: sz, f: None, announced_by: None, announcer_hop: None };
        if let Some(s) = sz {
            let first = prev.is_none();
            if first || prev.is_some_and(|p| s < p) {
                h.f = Some(s);
            }
            // The announcement of exactly this size, from before this hop.
            if s < prev.unwrap_or(local_mtu)
                && let Some(a) = announcements
                    .iter()
                    .filter(|a| a.believed && a.mtu == s && a.hop.is_none_or(|x| x < ttl))
                    .min_by_key(|a| a.hop)
            {
                h.announced_by = Some(a.from);
                h.announcer_hop = a.hop;
            }
            prev = Some(s);
        }
        hops.push(h);
    }
    let path_mtu = hops.iter().rev().find_map(|h| h.size);
    HopMtu { local_mtu, hops, announcements: announcements.to_vec(), path_mtu, probes_sent }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn f_at_the_first_hop_behind_the_narrow_link() {
        let done: BTreeMap<u8, Option<u32>> =
            [(1, Some(1500)), (2, Some(1500)), (3, Some(1400)), (4, Some(1400))].into_iter().collect();
        let ann = vec![MtuAnnouncement { from: ip("198.18.2.254"), mtu: 1400, hop: Some(2), believed: true }];
        let m = build(&[1, 2, 3, 4], &done, &ann, 1500, 6);
        assert_eq!(m.hops[0].f, Some(1500));
        assert_eq!(m.hops[1].f, None);
        assert_eq!(m.hops[2].f, Some(1400));
        assert_eq!(m.hops[2].announced_by, Some(ip("198.18.2.254")));
        assert_eq!(m.hops[2].announcer_hop, Some(2));
        assert_eq!(m.hops[3].f, None);
        assert_eq!(m.path_mtu, Some(1400));
        assert_eq!(m.hop_note(1), " F=1500");
        assert_eq!(m.hop_note(3), " F=1400 (announced by 198.18.2.254, hop 2)");
        assert_eq!(m.hop_note(4), "");
        assert_eq!(
            m.summary(),
            "MTU: 1500 -> 1400 at hop 3 (announced by 198.18.2.254, hop 2); path MTU 1400; 6 DF probes"
        );
    }

    #[test]
    fn no_drop_and_silent_hops() {
        let done: BTreeMap<u8, Option<u32>> = [(1, Some(1500)), (2, None), (3, Some(1500))].into_iter().collect();
        let ann = vec![MtuAnnouncement { from: ip("198.18.9.9"), mtu: 9000, hop: Some(1), believed: false }];
        let m = build(&[1, 2, 3], &done, &ann, 1500, 4);
        assert_eq!(m.hops[1].size, None);
        assert_eq!(m.hops[2].f, None);
        assert!(m.hops.iter().all(|h| h.announced_by.is_none()));
        assert_eq!(
            m.summary(),
            "MTU: 1500 on the whole path (DF probes of 1500 bytes); 1 implausible frag-needed/too-big ignored; 4 DF probes"
        );
    }
}
