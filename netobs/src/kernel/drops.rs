//! Attaching and reading the `kfree_skb` observer: ICMP and ICMPv6 errors
//! this host's kernel dropped, with the kernel's own drop reason ("the PTB
//! reached this host, and this host dropped it: NETFILTER_DROP").
//!
//! Everything kernel-specific comes from the running kernel's BTF: the
//! tracepoint's argument positions (`btf_trace_kfree_skb`), the `sk_buff`,
//! `net_device`, `sock` and `net` field offsets, and the reason names
//! (`enum skb_drop_reason`, which gains and reorders values between
//! releases). Like `icmp_send`, the tracepoint is host-wide: the program
//! counts only skbs whose device (or, before routing, socket) belongs to
//! this process's network namespace; one with neither is counted apart
//! as "namespace unknown", never as ours.
//!
//! Optional: without it `watch` still sees the error arrive (XDP) but not
//! that this host dropped it, and says so once at start.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray, PerCpuHashMap},
    programs::RawTracePoint,
};
use netobs_common::kfree::{
    DROP_SAMPLES_MAP, DROP_TOTALS_MAP, DropKey, DropSample, DropTotals, KfreeLayout, LAYOUT_MAP, NETNS_UNKNOWN_INDEX,
    PROGRAM, REASON_SLOTS, direction, have, total_index,
};
use serde::Serialize;

use super::{
    btf::{ArgType, Btf},
    loader::load_program,
};

/// The tracepoint, by its kernel name.
pub const TRACEPOINT: &str = "kfree_skb";

/// Where the dropped error was going.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// It arrived on an interface (for this host, or to be forwarded).
    Inbound,
    /// This host generated it.
    Outbound,
}

impl Direction {
    fn from_raw(d: u8) -> Direction {
        if d == direction::INBOUND { Direction::Inbound } else { Direction::Outbound }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// The running kernel's `skb_drop_reason` names, without the
/// `SKB_DROP_REASON_` prefix (`NETFILTER_DROP`).
#[derive(Clone, Debug, Default)]
pub struct Reasons {
    names: HashMap<u32, String>,
}

impl Reasons {
    pub(crate) fn from_btf(btf: &Btf) -> Result<Reasons> {
        let values = btf.enum_values("skb_drop_reason")?;
        Ok(Reasons::from_values(&values))
    }

    fn from_values(values: &[(String, u64)]) -> Reasons {
        let names = values
            .iter()
            .filter_map(|(n, v)| {
                let short = n.strip_prefix("SKB_DROP_REASON_").or_else(|| n.strip_prefix("SKB_")).unwrap_or(n);
                Some((u32::try_from(*v).ok()?, short.to_string()))
            })
            .collect();
        Reasons { names }
    }

    /// The value of `SKB_DROP_REASON_<short>` (or `SKB_<short>`).
    fn value(&self, short: &str) -> Option<u32> {
        self.names.iter().find(|(_, n)| n.as_str() == short).map(|(v, _)| *v)
    }

    /// The name of reason `r`; a number this kernel's BTF does not name
    /// (a subsystem's reason: high 16 bits set) says so.
    pub fn name(&self, r: u32) -> String {
        match self.names.get(&r) {
            Some(n) => n.clone(),
            None if r >> 16 != 0 => format!("subsystem {} reason {}", r >> 16, r & 0xffff),
            None => format!("reason {r}"),
        }
    }
}

/// Argument positions, offsets and reason numbers for the program, from
/// the kernel's BTF, checked for the sizes the program reads.
pub(crate) fn layout(btf: &Btf, reasons: &Reasons, netns_inum: u32) -> Result<KfreeLayout> {
    let field = |st: &str, path: &str, size: u32| -> Result<u32> {
        let (off, got) = btf.offset_of(st, path)?;
        if got != size {
            bail!("{st}.{path} is {got} bytes in this kernel, expected {size}");
        }
        Ok(off)
    };
    let args = btf.tracepoint_args(TRACEPOINT)?;
    let position = |want: &ArgType| -> Result<u32> {
        let i =
            args.iter().position(|a| a == want).with_context(|| format!("{TRACEPOINT} has no {want:?} argument"))?;
        // The program reads args[0..=3] (constant context offsets).
        if i > 3 {
            bail!("{TRACEPOINT}'s {want:?} is argument {i}; the program reads the first four");
        }
        Ok(i as u32)
    };
    let reason = |short: &str| reasons.value(short).with_context(|| format!("this kernel has no drop reason {short}"));
    Ok(KfreeLayout {
        ready: 1,
        netns_inum,
        skb_arg: position(&ArgType::StructPtr("sk_buff".into()))?,
        reason_arg: position(&ArgType::Enum("skb_drop_reason".into()))?,
        reason_not_dropped: reason("NOT_DROPPED_YET")?,
        reason_consumed: reason("CONSUMED")?,
        reason_not_specified: reason("NOT_SPECIFIED")?,
        skb_head: field("sk_buff", "head", 8)?,
        skb_network_header: field("sk_buff", "network_header", 2)?,
        skb_dev: field("sk_buff", "dev", 8)?,
        skb_sk: field("sk_buff", "sk", 8)?,
        skb_iif: field("sk_buff", "skb_iif", 4)?,
        dev_net: field("net_device", "nd_net.net", 8)?,
        dev_ifindex: field("net_device", "ifindex", 4)?,
        sk_net: field("sock", "__sk_common.skc_net.net", 8)?,
        net_inum: field("net", "ns.inum", 4)?,
    })
}

/// What is lost without the observer (the note `watch` prints).
const LOST: &str =
    "an ICMP error this host drops (its own firewall, rp_filter, ...) is not told from one that never arrived";

/// Fills the layout map and attaches the program; the link lives as long
/// as `ebpf`. Returns the reason names for [`DropWatch`].
pub fn attach(ebpf: &mut Ebpf) -> Result<Reasons> {
    let (layout, reasons) = Btf::from_sys_fs()
        .and_then(|btf| {
            let reasons = Reasons::from_btf(&btf)?;
            Ok((layout(&btf, &reasons, super::icmp_send::netns_inum()?)?, reasons))
        })
        .with_context(|| format!("the {TRACEPOINT} tracepoint is unavailable; {LOST}"))?;
    let mut map: Array<&mut MapData, KfreeLayout> =
        Array::try_from(ebpf.map_mut(LAYOUT_MAP).with_context(|| format!("{LAYOUT_MAP} map missing"))?)
            .with_context(|| format!("{LAYOUT_MAP} map type"))?;
    map.set(0, layout, 0).with_context(|| format!("writing {LAYOUT_MAP}"))?;
    let prog: &mut RawTracePoint = load_program(ebpf, PROGRAM)?;
    prog.attach(TRACEPOINT).with_context(|| format!("attaching the {TRACEPOINT} raw tracepoint; {LOST}"))?;
    Ok(reasons)
}

/// The packet a dropped error quotes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Quoted {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// Its length (IPv4 total length, IPv6 payload + 40).
    pub len: u16,
}

/// ICMP errors of one kind this host dropped (one [`DropKey`]): what a
/// line and an `icmp_dropped` record say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IcmpDrop {
    pub direction: Direction,
    pub family: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// The kernel's reason name (from its BTF), e.g. `NETFILTER_DROP`.
    pub reason: String,
    /// Its number on this kernel.
    pub reason_code: u32,
    /// Interface it arrived on (inbound) or was leaving by (0: none yet).
    pub ifindex: u32,
    /// Who sent the error (inbound) or whom it was for (outbound).
    pub peer: IpAddr,
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
    /// Announced MTU of a frag-needed / Packet Too Big.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
    /// Dropped since the last report of this kind.
    pub new: u64,
    /// Dropped since `watch` started (exact while the kind stays in the
    /// bounded sample table; the totals by reason are always exact).
    pub count: u64,
}

fn ip(family: u8, b: [u8; 16]) -> IpAddr {
    if family == 6 { IpAddr::V6(Ipv6Addr::from(b)) } else { IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])) }
}

impl IcmpDrop {
    fn from_sample(k: &DropKey, s: &DropSample, count: u64, new: u64, reasons: &Reasons) -> IcmpDrop {
        let too_big = (k.family == 4 && k.icmp_type == 3 && k.icmp_code == 4) || (k.family == 6 && k.icmp_type == 2);
        IcmpDrop {
            direction: Direction::from_raw(k.direction),
            family: k.family,
            icmp_type: k.icmp_type,
            icmp_code: k.icmp_code,
            reason: reasons.name(k.reason),
            reason_code: k.reason,
            ifindex: k.ifindex,
            peer: ip(k.family, k.peer),
            outer_src: ip(k.family, s.outer_src),
            outer_dst: ip(k.family, s.outer_dst),
            mtu: too_big.then_some(s.mtu),
            quoted: (s.have & have::QUOTE != 0).then(|| {
                let ports = s.have & have::PORTS != 0;
                Quoted {
                    src: ip(k.family, s.quote_src),
                    dst: ip(k.family, s.quote_dst),
                    protocol: s.quote_protocol,
                    src_port: ports.then_some(s.quote_sport),
                    dst_port: ports.then_some(s.quote_dport),
                    len: s.quote_len,
                }
            }),
            new,
            count,
        }
    }
}

/// Exact drop counts by (direction, family, reason name).
pub type Totals = HashMap<(Direction, u8, String), u64>;

/// Polls the observer's maps and reports what changed: a new kind at
/// once, a kind that keeps being dropped at most once per `repeat_after`.
/// Keeps one entry per key the kernel still remembers: bounded by the
/// map's size.
pub struct DropWatch {
    reasons: Reasons,
    /// Count at the last report of each kind, and when that was.
    seen: HashMap<DropKey, (u64, Instant)>,
}

impl DropWatch {
    pub fn new(reasons: Reasons) -> DropWatch {
        DropWatch { reasons, seen: HashMap::new() }
    }

    /// The kinds whose count grew since their last report and are due
    /// (new, or last reported `repeat_after` ago or longer; a zero
    /// duration reports everything that grew).
    pub fn poll(&mut self, ebpf: &Ebpf, now: Instant, repeat_after: Duration) -> Result<Vec<IcmpDrop>> {
        let map: PerCpuHashMap<&MapData, DropKey, DropSample> =
            PerCpuHashMap::try_from(ebpf.map(DROP_SAMPLES_MAP).with_context(|| format!("{DROP_SAMPLES_MAP} missing"))?)
                .with_context(|| format!("{DROP_SAMPLES_MAP} map type"))?;
        let mut seen = HashMap::with_capacity(self.seen.len());
        let mut out = Vec::new();
        for entry in map.iter() {
            // An entry evicted while we iterate ends the walk early; the
            // rest is seen next time.
            let Ok((key, per_cpu)) = entry else { break };
            let count: u64 = per_cpu.iter().map(|s| s.count).sum();
            let Some(last) = per_cpu.iter().max_by_key(|s| s.last_ns).copied() else { continue };
            let state = match self.seen.get(&key).copied() {
                // Fewer than reported: evicted and seen again, all new.
                Some((reported, at)) if count >= reported => {
                    let due = count > reported && now.saturating_duration_since(at) >= repeat_after;
                    if due {
                        out.push(IcmpDrop::from_sample(&key, &last, count, count - reported, &self.reasons));
                        (count, now)
                    } else {
                        (reported, at)
                    }
                }
                _ => {
                    out.push(IcmpDrop::from_sample(&key, &last, count, count, &self.reasons));
                    (count, now)
                }
            };
            seen.insert(key, state);
        }
        self.seen = seen;
        Ok(out)
    }

    /// Exact counts by (direction, family, reason), and how many dropped
    /// errors had no namespace to tell (not counted as ours).
    pub fn totals(&self, ebpf: &Ebpf) -> Result<(Totals, u64)> {
        let map: PerCpuArray<&MapData, DropTotals> =
            PerCpuArray::try_from(ebpf.map(DROP_TOTALS_MAP).with_context(|| format!("{DROP_TOTALS_MAP} missing"))?)
                .with_context(|| format!("{DROP_TOTALS_MAP} map type"))?;
        let per_cpu = map.get(&0, 0).with_context(|| format!("reading {DROP_TOTALS_MAP}"))?;
        let sum = |i: u32| -> u64 { per_cpu.iter().map(|t| t.counts.get(i as usize).copied().unwrap_or(0)).sum() };
        let mut totals = Totals::new();
        for d in [direction::INBOUND, direction::OUTBOUND] {
            for family in [4u8, 6] {
                for r in 0..REASON_SLOTS {
                    let n = sum(total_index(d, family, r));
                    if n > 0 {
                        let name = if r == REASON_SLOTS - 1 { "other".to_string() } else { self.reasons.name(r) };
                        *totals.entry((Direction::from_raw(d), family, name)).or_default() += n;
                    }
                }
            }
        }
        Ok((totals, sum(NETNS_UNKNOWN_INDEX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons() -> Reasons {
        Reasons::from_values(&[
            ("SKB_NOT_DROPPED_YET".into(), 0),
            ("SKB_CONSUMED".into(), 1),
            ("SKB_DROP_REASON_NOT_SPECIFIED".into(), 2),
            ("SKB_DROP_REASON_NETFILTER_DROP".into(), 11),
        ])
    }

    #[test]
    fn reason_names_come_from_the_enum_without_its_prefix() {
        let r = reasons();
        assert_eq!(r.name(11), "NETFILTER_DROP");
        assert_eq!(r.value("CONSUMED"), Some(1));
        assert_eq!(r.value("NOT_SPECIFIED"), Some(2));
        assert_eq!(r.name(99), "reason 99");
        assert_eq!(r.name(0x0002_0005), "subsystem 2 reason 5");
    }

    #[test]
    fn a_sample_becomes_a_drop_with_its_quote() {
        let mut k = DropKey { reason: 11, ifindex: 3, family: 4, direction: direction::INBOUND, ..Default::default() };
        k.icmp_type = 3;
        k.icmp_code = 4;
        k.peer[..4].copy_from_slice(&[198, 18, 2, 254]);
        let mut s = DropSample {
            mtu: 1400,
            have: have::QUOTE | have::PORTS,
            quote_protocol: 6,
            quote_len: 1500,
            ..Default::default()
        };
        s.outer_src = k.peer;
        s.quote_src[..4].copy_from_slice(&[198, 18, 1, 1]);
        s.quote_dst[..4].copy_from_slice(&[198, 18, 3, 1]);
        s.quote_sport = 80;
        s.quote_dport = 40000;
        let d = IcmpDrop::from_sample(&k, &s, 5, 2, &reasons());
        assert_eq!(d.reason, "NETFILTER_DROP");
        assert_eq!(d.direction, Direction::Inbound);
        assert_eq!(d.peer, "198.18.2.254".parse::<IpAddr>().unwrap());
        assert_eq!(d.mtu, Some(1400));
        let q = d.quoted.unwrap();
        assert_eq!((q.src_port, q.dst_port, q.len), (Some(80), Some(40000), 1500));
        assert_eq!((d.count, d.new), (5, 2));
        // Not a too-big message: no MTU.
        k.icmp_code = 3;
        assert_eq!(IcmpDrop::from_sample(&k, &s, 1, 1, &reasons()).mtu, None);
    }

    #[test]
    fn layout_of_the_running_kernel() {
        let Ok(btf) = Btf::from_sys_fs() else { return };
        let r = Reasons::from_btf(&btf).unwrap();
        let l = layout(&btf, &r, 7).unwrap();
        assert_eq!((l.ready, l.netns_inum), (1, 7));
        assert_ne!(l.skb_arg, l.reason_arg);
        assert_ne!(l.reason_consumed, l.reason_not_specified);
        assert_ne!(l.skb_iif, l.skb_dev);
        assert_eq!(r.name(r.value("NETFILTER_DROP").unwrap()), "NETFILTER_DROP");
    }
}
