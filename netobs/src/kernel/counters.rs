//! Reading the per-CPU counters: summed over CPUs, one snapshot at a time.
//!
//! A [`CounterReader`] holds its own handles on the counter maps (duplicated
//! file descriptors), so it can live beside the [`aya::Ebpf`] that owns the
//! programs: a metrics collector reads at scrape time while the event loop
//! keeps the object.

use std::{collections::BTreeMap, os::fd::AsFd as _};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{Map, MapData, PerCpuArray, PerCpuHashMap},
};
use netobs_common::event::{DfCounterKey, IcmpCounterKey, stat};

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
    stats: PerCpuArray<MapData, u64>,
    icmp: PerCpuHashMap<MapData, IcmpCounterKey, u64>,
    df: PerCpuHashMap<MapData, DfCounterKey, u64>,
}

/// A second handle on the map `name` of `ebpf` (a duplicated descriptor).
fn dup_map(ebpf: &Ebpf, name: &str) -> Result<Map> {
    let map = ebpf.map(name).with_context(|| format!("{name} map missing from the eBPF object"))?;
    let data = match map {
        Map::PerCpuArray(d) | Map::PerCpuHashMap(d) | Map::Array(d) | Map::HashMap(d) => d,
        _ => anyhow::bail!("{name} map has an unexpected type"),
    };
    let fd = data.fd().as_fd().try_clone_to_owned().with_context(|| format!("duplicating the {name} map descriptor"))?;
    let data = MapData::from_fd(fd).with_context(|| format!("opening the {name} map"))?;
    Map::from_map_data(data).with_context(|| format!("opening the {name} map"))
}

impl CounterReader {
    /// Opens the counter maps of `ebpf` (which keeps its own handles).
    pub fn new(ebpf: &Ebpf) -> Result<CounterReader> {
        Ok(CounterReader {
            stats: PerCpuArray::try_from(dup_map(ebpf, "STATS")?).context("STATS map type")?,
            icmp: PerCpuHashMap::try_from(dup_map(ebpf, "ICMP_COUNTERS")?).context("ICMP_COUNTERS map type")?,
            df: PerCpuHashMap::try_from(dup_map(ebpf, "DF_COUNTERS")?).context("DF_COUNTERS map type")?,
        })
    }

    /// One snapshot, summed over CPUs.
    pub fn read(&self) -> Result<Counters> {
        let mut c = Counters::default();
        for slot in 0..stat::COUNT {
            let v = self.stats.get(&slot, 0).with_context(|| format!("reading STATS[{slot}]"))?;
            c.stats.insert(stat::NAMES[slot as usize], v.iter().sum());
        }
        for item in self.icmp.iter() {
            let (k, v) = item.context("iterating ICMP_COUNTERS")?;
            c.icmp.insert(k, v.iter().sum());
        }
        for item in self.df.iter() {
            let (k, v) = item.context("iterating DF_COUNTERS")?;
            c.df.insert(k, v.iter().sum());
        }
        Ok(c)
    }
}

/// Reads all counter maps of a loaded object once.
pub fn read(ebpf: &Ebpf) -> Result<Counters> {
    CounterReader::new(ebpf)?.read()
}
