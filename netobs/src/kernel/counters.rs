//! Reading the per-CPU counters: summed over CPUs, one snapshot at a time.
//!
//! The programs count in fixed-size per-CPU arrays (interface slot x hook x
//! ICMP class, see `netobs_common::counters`), which nothing a packet says
//! can fill. This module gives interfaces their slots and turns the arrays
//! back into the keyed maps of [`Counters`]: an interface without a slot
//! reads as `OTHER_IFINDEX`, a code beyond the known ones of its type as
//! `OTHER_CODE`.
//!
//! A [`CounterReader`] holds its own handles on the counter maps (duplicated
//! file descriptors), so it can live beside the [`aya::Ebpf`] that owns the
//! programs: a metrics collector reads at scrape time while the event loop
//! keeps the object.

use std::{
    collections::BTreeMap,
    os::fd::AsFd as _,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{Array, Map, MapData, PerCpuArray},
};
use netobs_common::{
    counters::{
        DfSlotCounters, ICMP_CLASSES, IFACE_SLOTS, IcmpSlotCounters, IfaceTable, OTHER_IFINDEX, OTHER_SLOT, class_key,
    },
    event::{DfCounterKey, IcmpCounterKey, StatsByCpu, stat},
};

pub use netobs_common::counters::{OTHER_CODE, OTHER_IFINDEX as OTHER_IFACE};

/// Map names in the eBPF object.
const STATS: &str = netobs_common::event::STATS_MAP;
const ICMP_COUNTERS: &str = "ICMP_COUNTERS";
const DF_COUNTERS: &str = "DF_COUNTERS";
const IFACES: &str = netobs_common::counters::IFACES_MAP;

/// One snapshot of everything the programs counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Global statistics by name (see `netobs_common::event::stat`).
    pub stats: BTreeMap<&'static str, u64>,
    #[serde(skip)]
    pub icmp: BTreeMap<IcmpCounterKey, u64>,
    #[serde(skip)]
    pub df: BTreeMap<DfCounterKey, u64>,
}

impl Counters {
    pub fn stat(&self, slot: u32) -> u64 {
        stat::NAMES.get(slot as usize).and_then(|n| self.stats.get(n)).copied().unwrap_or(0)
    }
}

/// Own handles on the counter maps of a loaded object; `Send + Sync`, so a
/// scrape can read them from another task.
pub struct CounterReader {
    stats: Array<MapData, StatsByCpu>,
    icmp: PerCpuArray<MapData, IcmpSlotCounters>,
    df: PerCpuArray<MapData, DfSlotCounters>,
    ifaces: Array<MapData, IfaceTable>,
    /// The `quote_truncated` statistic, counted where user space parses the
    /// datapath's ICMP bytes ([`super::EventStream::quote_truncated`]).
    quote_truncated: Option<Arc<AtomicU64>>,
}

/// A second handle on the map `name` of `ebpf` (a duplicated descriptor).
fn dup_map(ebpf: &Ebpf, name: &str) -> Result<Map> {
    let map = ebpf.map(name).with_context(|| format!("{name} map missing from the eBPF object"))?;
    let data = match map {
        Map::PerCpuArray(d) | Map::PerCpuHashMap(d) | Map::Array(d) | Map::HashMap(d) => d,
        _ => anyhow::bail!("{name} map has an unexpected type"),
    };
    let fd =
        data.fd().as_fd().try_clone_to_owned().with_context(|| format!("duplicating the {name} map descriptor"))?;
    let data = MapData::from_fd(fd).with_context(|| format!("opening the {name} map"))?;
    Map::from_map_data(data).with_context(|| format!("opening the {name} map"))
}

impl CounterReader {
    /// Opens the counter maps of `ebpf` (which keeps its own handles).
    pub fn new(ebpf: &Ebpf) -> Result<CounterReader> {
        Ok(CounterReader {
            stats: Array::try_from(dup_map(ebpf, STATS)?).context("statistics map type")?,
            icmp: PerCpuArray::try_from(dup_map(ebpf, ICMP_COUNTERS)?).context("ICMP_COUNTERS map type")?,
            df: PerCpuArray::try_from(dup_map(ebpf, DF_COUNTERS)?).context("DF_COUNTERS map type")?,
            ifaces: Array::try_from(dup_map(ebpf, IFACES)?).context("interface-slot table map type")?,
            quote_truncated: None,
        })
    }

    /// Reports `quote_truncated` from `count` (an event stream's), since the
    /// kernel copies ICMP errors and cannot tell.
    pub fn with_quote_truncated(mut self, count: Arc<AtomicU64>) -> CounterReader {
        self.quote_truncated = Some(count);
        self
    }

    /// One snapshot, summed over CPUs.
    pub fn read(&self) -> Result<Counters> {
        let mut c = Counters::default();
        let totals = read_stats(&self.stats)?;
        for (name, n) in stat::NAMES.iter().zip(totals) {
            c.stats.insert(name, n);
        }
        if let (Some(count), Some(name)) = (&self.quote_truncated, stat::NAMES.get(stat::QUOTE_TRUNCATED as usize)) {
            *c.stats.entry(name).or_default() += count.load(Ordering::Relaxed);
        }
        let mut table = self.ifaces.get(&0, 0).context("reading the interface slots")?;
        if table.ifindex_of[OTHER_SLOT as usize] != OTHER_IFINDEX {
            table = IfaceTable::EMPTY; // never initialised: everything is "other"
        }
        // Only slots in use (and "other") can hold counts: one read each.
        for slot in (0..IFACE_SLOTS).filter(|&s| s == OTHER_SLOT as usize || table.ifindex(s) != OTHER_IFINDEX) {
            let ifindex = table.ifindex(slot);
            let idx = slot as u32;
            let per_cpu = self.icmp.get(&idx, 0).with_context(|| format!("reading ICMP_COUNTERS[{slot}]"))?;
            for (i, n) in sum(per_cpu.iter().map(|b| &b.counts[..])).into_iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let (family, icmp_type, icmp_code) = class_key((i % ICMP_CLASSES) as u32);
                let hook = (i / ICMP_CLASSES) as u8 + 1;
                *c.icmp.entry(IcmpCounterKey { ifindex, family, icmp_type, icmp_code, hook }).or_default() += n;
            }
            let per_cpu = self.df.get(&idx, 0).with_context(|| format!("reading DF_COUNTERS[{slot}]"))?;
            for (egress, n) in sum(per_cpu.iter().map(|r| &r.counts[..])).into_iter().enumerate() {
                if n != 0 {
                    let key = DfCounterKey { ingress_ifindex: ifindex, egress_ifindex: table.ifindex(egress) };
                    *c.df.entry(key).or_default() += n;
                }
            }
        }
        Ok(c)
    }
}

/// Element-wise sum of equally long per-CPU rows.
fn sum<'a>(rows: impl Iterator<Item = &'a [u64]>) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    for row in rows {
        if out.is_empty() {
            out = row.to_vec();
        } else {
            out.iter_mut().zip(row).for_each(|(a, b)| *a = a.wrapping_add(*b));
        }
    }
    out
}

/// The statistics summed over CPUs, read from `map` (the object's
/// [`StatsByCpu`] global). A sync function, so the 128 KiB value lives on
/// a stack only while it is summed.
pub fn read_stats<T: std::borrow::Borrow<MapData>>(map: &Array<T, StatsByCpu>) -> Result<[u64; stat::COUNT as usize]> {
    Ok(map.get(&0, 0).context("reading the statistics")?.sum())
}

/// Reads all counter maps of a loaded object once.
pub fn read(ebpf: &Ebpf) -> Result<Counters> {
    CounterReader::new(ebpf)?.read()
}

/// Gives each of `ifindexes` a counter slot (in order, keeping slots
/// already given). Interfaces beyond the slots count as "other"
/// (`OTHER_IFACE`); returns how many have a slot.
pub fn assign_iface_slots(ebpf: &mut Ebpf, ifindexes: impl IntoIterator<Item = u32>) -> Result<usize> {
    let mut map: Array<&mut MapData, IfaceTable> = Array::try_from(
        ebpf.map_mut(IFACES).context("the interface-slot table (.data) is missing from the eBPF object")?,
    )
    .context("interface-slot table map type")?;
    let mut table = map.get(&0, 0).context("reading the interface slots")?;
    // A fresh map is all zeroes, which would read as "every slot is
    // ifindex 0": start from the empty table.
    if table.ifindex_of[OTHER_SLOT as usize] != OTHER_IFINDEX {
        table = IfaceTable::EMPTY;
    }
    let mut with_slot = 0;
    let mut without = Vec::new();
    for ifindex in ifindexes {
        match table.assign(ifindex) {
            Some(_) => with_slot += 1,
            None => without.push(ifindex),
        }
    }
    map.set(0, table, 0).context("writing the interface slots")?;
    if !without.is_empty() {
        log::debug!("no counter slot for ifindexes {without:?}: counted as interface \"other\"");
    }
    Ok(with_slot)
}
