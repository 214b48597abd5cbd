//! Attaching the TCP retransmission observer and reading what it counted
//! (see `netobs_common::retrans` for why: a blackhole makes no ICMP, but
//! this host's own TCP retransmits into it).
//!
//! Two raw tracepoints attached by name (`tcp_retransmit_skb`,
//! `tcp_retransmit_synack`): like `icmp_send`, no tracefs mount and no
//! CAP_SYS_ADMIN, offsets from the running kernel's BTF, and only sockets
//! of this network namespace are counted. They see local TCP only: on a
//! gateway that forwards traffic there is no socket, and nothing is
//! inferred from them there.
//!
//! Optional: without them `watch` still reports every ICMP error, it only
//! cannot notice what never comes back, and says so once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
    programs::RawTracePoint,
};
use netobs_common::retrans::{LAYOUT_MAP, MAP, PROGRAM_SKB, PROGRAM_SYNACK, RetransCounts, RetransKey, RetransLayout};

use super::{btf::Btf, icmp_send::netns_inum, loader::load_program};

/// The tracepoints, by their kernel names.
pub const TRACEPOINT_SKB: &str = "tcp_retransmit_skb";
pub const TRACEPOINT_SYNACK: &str = "tcp_retransmit_synack";

/// The offsets the programs read, from the kernel's BTF, checked for the
/// sizes they assume. IPv6 members missing from the BTF (IPv6 compiled
/// out) are marked absent, not an error.
pub fn layout(btf: &Btf, netns_inum: u32) -> Result<RetransLayout> {
    let field = |st: &str, path: &str, size: u32| -> Result<u32> {
        let (off, got) = btf.offset_of(st, path)?;
        if got != size {
            anyhow::bail!("{st}.{path} is {got} bytes in this kernel, expected {size}");
        }
        Ok(off)
    };
    // The programs read a socket's and a request socket's addresses at the
    // same offsets: both must start with their sock_common.
    for (st, m) in [("sock", "__sk_common"), ("request_sock", "__req_common")] {
        let (off, _) = btf.offset_of(st, m)?;
        if off != 0 {
            anyhow::bail!("{st}.{m} is at offset {off} in this kernel, expected 0");
        }
    }
    let sc = "sock_common";
    Ok(RetransLayout {
        ready: 1,
        netns_inum,
        skc_family: field(sc, "skc_family", 2)?,
        skc_state: field(sc, "skc_state", 1)?,
        skc_daddr: field(sc, "skc_daddr", 4)?,
        skc_rcv_saddr: field(sc, "skc_rcv_saddr", 4)?,
        skc_dport: field(sc, "skc_dport", 2)?,
        skc_num: field(sc, "skc_num", 2)?,
        skc_v6_daddr: field(sc, "skc_v6_daddr", 16).unwrap_or(u32::MAX),
        skc_v6_rcv_saddr: field(sc, "skc_v6_rcv_saddr", 16).unwrap_or(u32::MAX),
        skc_net: field(sc, "skc_net.net", 8)?,
        net_inum: field("net", "ns.inum", 4)?,
        tp_mss_cache: field("tcp_sock", "mss_cache", 4)?,
        tp_bytes_acked: field("tcp_sock", "bytes_acked", 8)?,
        skb_len: field("sk_buff", "len", 4)?,
        // Without it, "stalled" falls back to "the same acknowledged byte
        // count as the previous retransmission", which congestion loss
        // (several holes resent under one ACK) can meet too.
        icsk_retransmits: field("inet_connection_sock", "icsk_retransmits", 1).unwrap_or(u32::MAX),
    })
}

/// What is lost without the observer, for the note `watch` prints.
const LOST: &str = "retransmissions of this host's TCP are not watched \
                    (a PMTU blackhole or a silent drop that sends no ICMP goes unnoticed)";

/// Fills the layout map, attaches both programs and takes the counts map;
/// the links live as long as `ebpf`.
pub fn attach(ebpf: &mut Ebpf) -> Result<RetransReader> {
    let layout = Btf::from_sys_fs()
        .and_then(|btf| layout(&btf, netns_inum()?))
        .with_context(|| format!("the TCP retransmission tracepoints are unavailable; {LOST}"))?;
    let mut map: Array<&mut MapData, RetransLayout> =
        Array::try_from(ebpf.map_mut(LAYOUT_MAP).with_context(|| format!("{LAYOUT_MAP} map missing"))?)
            .with_context(|| format!("{LAYOUT_MAP} map type"))?;
    map.set(0, layout, 0).with_context(|| format!("writing {LAYOUT_MAP}"))?;
    for (prog, tp) in [(PROGRAM_SKB, TRACEPOINT_SKB), (PROGRAM_SYNACK, TRACEPOINT_SYNACK)] {
        let p: &mut RawTracePoint = load_program(ebpf, prog)?;
        p.attach(tp).with_context(|| format!("attaching the {tp} raw tracepoint; {LOST}"))?;
    }
    RetransReader::take(ebpf, MAP)
}

/// One destination's counts, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retransmissions {
    pub key: RetransKey,
    pub remote: IpAddr,
    pub local: IpAddr,
    pub counts: RetransCounts,
}

/// An address as the programs store it (IPv4 in the first four bytes).
pub fn addr(family: u8, b: &[u8; 16]) -> IpAddr {
    if family == 6 { IpAddr::V6(Ipv6Addr::from(*b)) } else { IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])) }
}

/// The counts map, owned (taken out of the object): the tracepoints'
/// [`MAP`], or the forwarded flows' (`netobs_common::flows::FORWARDED_MAP`),
/// which has the same shape.
pub struct RetransReader {
    map: HashMap<MapData, RetransKey, RetransCounts>,
    name: &'static str,
}

impl RetransReader {
    /// Takes map `name` out of the object.
    pub fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<RetransReader> {
        let counts = ebpf.take_map(name).with_context(|| format!("{name} map missing"))?;
        Ok(RetransReader { map: HashMap::try_from(counts).with_context(|| format!("{name} map type"))?, name })
    }

    /// Every destination with its counts (at most
    /// `netobs_common::retrans::MAX_DESTINATIONS`). An entry evicted
    /// between listing and reading is skipped.
    pub fn read(&self) -> Result<Vec<Retransmissions>> {
        let mut out = Vec::new();
        for item in self.map.iter() {
            match item {
                Ok((key, counts)) => out.push(Retransmissions {
                    key,
                    remote: addr(key.family, &key.addr),
                    local: addr(key.family, &counts.local),
                    counts,
                }),
                Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(e).with_context(|| format!("reading the {} map", self.name)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_the_running_kernel() {
        let Ok(btf) = Btf::from_sys_fs() else { return };
        let l = layout(&btf, 9).unwrap();
        assert_eq!((l.ready, l.netns_inum), (1, 9));
        // daddr and rcv_saddr are the two halves of skc_addrpair.
        assert_eq!(l.skc_rcv_saddr, l.skc_daddr + 4);
        assert_eq!(l.skc_num, l.skc_dport + 2);
        assert_ne!(l.skc_v6_daddr, u32::MAX, "this kernel has IPv6");
        assert!(l.tp_mss_cache > l.skc_net && l.tp_bytes_acked > l.skc_net, "tcp_sock members lie past sock_common");
        // tcp_sock begins with inet_connection_sock.
        assert!(l.icsk_retransmits > l.skc_net && l.icsk_retransmits < l.tp_mss_cache, "{l:?}");
    }

    #[test]
    fn addresses_as_the_programs_store_them() {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&[198, 18, 1, 1]);
        assert_eq!(addr(4, &b), "198.18.1.1".parse::<IpAddr>().unwrap());
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(addr(6, &v6.octets()), IpAddr::V6(v6));
    }
}
