//! Events a CPU staged at the end of a flood: asking it to write them out.
//!
//! Under a flood each CPU batches events in its `STAGE` entry (see
//! `netobs_common::event::EventStage`); the next event on that CPU writes
//! a batch out. When the flood stops, the last partial batch would wait
//! for that next event, so user space looks at the stages on a timer and
//! runs the `netobs_flush` program on every CPU holding old events.

use std::time::Duration;

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
    programs::{RawTracePoint, RawTracePointRunOptions, TestRun as _},
};
use netobs_common::event::EventStage;

use super::loader::load_program;

/// The program that writes out the stage of the CPU it runs on.
pub const FLUSH_PROGRAM: &str = "netobs_flush";

/// How often `netobs watch` looks at the stages.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// Staged events younger than this are left to the kernel's own batching.
pub const FLUSH_MIN_AGE: Duration = Duration::from_millis(20);

/// Verifies the flush program so [`flush`] can run it.
pub fn prepare(ebpf: &mut Ebpf) -> Result<()> {
    load_program::<RawTracePoint>(ebpf, FLUSH_PROGRAM).map(|_| ())
}

/// Has every CPU whose oldest staged event is at least `min_age` old write
/// its stage to the ring buffer. Returns how many CPUs were asked.
pub fn flush(ebpf: &Ebpf, min_age: Duration) -> Result<usize> {
    let stages: PerCpuArray<&MapData, EventStage> =
        PerCpuArray::try_from(ebpf.map("STAGE").context("STAGE map missing")?).context("STAGE map type")?;
    let values = stages.get(&0, 0).context("reading the per-CPU event stages")?;
    let now = coarse_monotonic_ns();
    let min_age = u64::try_from(min_age.as_nanos()).unwrap_or(u64::MAX);
    let mut asked = 0;
    for (cpu, stage) in values.iter().enumerate() {
        if stage.count == 0 || now.saturating_sub(stage.first_ns) < min_age {
            continue;
        }
        let prog: &RawTracePoint = ebpf
            .program(FLUSH_PROGRAM)
            .context("netobs_flush missing from the eBPF object")?
            .try_into()
            .context("netobs_flush has an unexpected type")?;
        let cpu = u32::try_from(cpu).context("CPU number")?;
        prog.test_run(RawTracePointRunOptions { cpu: Some(cpu), ..RawTracePointRunOptions::new() })
            .with_context(|| format!("running {FLUSH_PROGRAM} on CPU {cpu} (call stage::prepare first)"))?;
        asked += 1;
    }
    Ok(asked)
}

/// CLOCK_MONOTONIC_COARSE, the clock the packet programs stamp events with.
fn coarse_monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid clock id and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}
