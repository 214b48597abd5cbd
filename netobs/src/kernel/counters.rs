//! Reading the per-CPU counters: summed over CPUs, one snapshot at a time.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, PerCpuHashMap},
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

/// Reads all counter maps of a loaded object.
pub fn read(ebpf: &Ebpf) -> Result<Counters> {
    let mut c = Counters::default();
    let stats: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(ebpf.map("STATS").context("STATS map missing")?).context("STATS map type")?;
    for slot in 0..stat::COUNT {
        let v = stats.get(&slot, 0).with_context(|| format!("reading STATS[{slot}]"))?;
        c.stats.insert(stat::NAMES[slot as usize], v.iter().sum());
    }
    let icmp: PerCpuHashMap<&MapData, IcmpCounterKey, u64> =
        PerCpuHashMap::try_from(ebpf.map("ICMP_COUNTERS").context("ICMP_COUNTERS map missing")?)
            .context("ICMP_COUNTERS map type")?;
    for item in icmp.iter() {
        let (k, v) = item.context("iterating ICMP_COUNTERS")?;
        c.icmp.insert(k, v.iter().sum());
    }
    let df: PerCpuHashMap<&MapData, DfCounterKey, u64> =
        PerCpuHashMap::try_from(ebpf.map("DF_COUNTERS").context("DF_COUNTERS map missing")?)
            .context("DF_COUNTERS map type")?;
    for item in df.iter() {
        let (k, v) = item.context("iterating DF_COUNTERS")?;
        c.df.insert(k, v.iter().sum());
    }
    Ok(c)
}
