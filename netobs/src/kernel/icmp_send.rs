//! Attaching the `icmp_send` observer: which IPv4 ICMP errors this host's
//! kernel generated (compared with TC egress, whether they left).
//!
//! A raw tracepoint attached by name: unlike the `icmp:icmp_send` trace
//! event it needs no tracefs mount, which an unprivileged process cannot
//! make, so `watch` as a service with CAP_BPF + CAP_PERFMON keeps it. The
//! program reads the skb at offsets taken here from the running kernel's
//! BTF, and counts only errors about packets of this network namespace
//! (the skb's device's namespace, compared by inode number).
//!
//! Optional: without it netobs cannot tell "dropped by our own firewall"
//! from "never generated", and the caller says so.

use std::os::unix::fs::MetadataExt as _;

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{Array, MapData},
    programs::RawTracePoint,
};
use netobs_common::icmp_send::{IcmpSendLayout, LAYOUT_MAP, PROGRAM};

use super::{btf::Btf, loader::load_program};

/// The tracepoint, by its kernel name.
pub const TRACEPOINT: &str = "icmp_send";

/// The offsets the program reads, from the kernel's BTF, checked for the
/// sizes the program assumes.
pub fn layout(btf: &Btf, netns_inum: u32) -> Result<IcmpSendLayout> {
    let field = |st: &str, path: &str, size: u32| -> Result<u32> {
        let (off, got) = btf.offset_of(st, path)?;
        if got != size {
            anyhow::bail!("{st}.{path} is {got} bytes in this kernel, expected {size}");
        }
        Ok(off)
    };
    Ok(IcmpSendLayout {
        ready: 1,
        netns_inum,
        skb_head: field("sk_buff", "head", 8)?,
        skb_network_header: field("sk_buff", "network_header", 2)?,
        skb_dev: field("sk_buff", "dev", 8)?,
        dev_net: field("net_device", "nd_net.net", 8)?,
        net_inum: field("net", "ns.inum", 4)?,
        _reserved: 0,
    })
}

/// Inode number of this process's network namespace.
pub fn netns_inum() -> Result<u32> {
    let ino = std::fs::metadata("/proc/self/ns/net").context("stat /proc/self/ns/net")?.ino();
    u32::try_from(ino).context("network namespace inode does not fit 32 bits")
}

/// Fills the layout map and attaches the program; the link lives as long
/// as `ebpf`. The error says what is lost.
pub fn attach(ebpf: &mut Ebpf) -> Result<()> {
    let lost = "ICMP errors this host generates are only seen when they leave an interface \
                (a frag-needed dropped by this host's own firewall is not told from one never generated)";
    let layout = Btf::from_sys_fs()
        .and_then(|btf| layout(&btf, netns_inum()?))
        .with_context(|| format!("the icmp_send tracepoint is unavailable; {lost}"))?;
    let mut map: Array<&mut MapData, IcmpSendLayout> =
        Array::try_from(ebpf.map_mut(LAYOUT_MAP).with_context(|| format!("{LAYOUT_MAP} map missing"))?)
            .with_context(|| format!("{LAYOUT_MAP} map type"))?;
    map.set(0, layout, 0).with_context(|| format!("writing {LAYOUT_MAP}"))?;
    let prog: &mut RawTracePoint = load_program(ebpf, PROGRAM)?;
    prog.attach(TRACEPOINT).with_context(|| format!("attaching the {TRACEPOINT} raw tracepoint; {lost}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_the_running_kernel() {
        let Ok(btf) = Btf::from_sys_fs() else { return };
        let l = layout(&btf, 7).unwrap();
        assert_eq!(l.ready, 1);
        assert_eq!(l.netns_inum, 7);
        // Distinct fields at distinct offsets.
        assert_ne!(l.skb_head, l.skb_network_header);
        assert_ne!(l.skb_dev, l.skb_head);
        assert!(netns_inum().unwrap() > 0);
    }
}
