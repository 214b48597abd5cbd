//! `read --kernel`: every frame through the real XDP program
//! (BPF_PROG_TEST_RUN on the embedded object), compared with what the
//! host build of the parser made of it.
//!
//! Why: the host and the datapath share one parser, but only the
//! verifier-checked build is what runs on the gateway; this shows, for a
//! user's own capture, exactly what the datapath would have said. The
//! program is loaded with sampling wide open (no event is held back by
//! the token buckets), events written one per record (no staging), and the
//! DF check off (a capture has no egress routes to look up). For each
//! frame the kernel's `malformed` counter and its event are compared with
//! the host's outcome; the timestamp, the interface and the hook are not
//! compared (the test run has its own).

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{Array, MapData, RingBuf},
    programs::{TestRun, TestRunOptions, Xdp},
};
use netobs_common::{
    Config, Event,
    event::{STATS_MAP, StatsByCpu, hook, kind, stat},
};
use serde_json::{Value, json};

use super::frame::{Malformed, Outcome};
use crate::{
    kernel::{self, LoadOptions, events, loader::load_program},
    output::sink,
    privilege,
};

/// At most this many disagreements are printed one by one (all are counted).
const PRINT_MAX: u64 = 20;

/// The loaded program and what it has said so far.
pub struct KernelCheck {
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
    /// Frames the program ran on.
    pub run: u64,
    /// Frames the kernel refused to test-run (too long for one XDP buffer).
    pub not_run: u64,
    /// Frames on which kernel and host agreed.
    pub agreed: u64,
    pub disagreed: u64,
    /// ICMP errors the kernel sampled out anyway (not a disagreement).
    pub sampled_out: u64,
    events: Vec<Event>,
}

impl KernelCheck {
    /// Loads and verifies the XDP program. Needs root (CAP_BPF,
    /// CAP_NET_ADMIN, CAP_PERFMON): a clear error otherwise.
    pub fn new() -> Result<KernelCheck> {
        privilege::check("read --kernel", &privilege::KERNEL)?;
        kernel::features::detect().require_minimum()?;
        let config = Config {
            min_mtu: 0,
            events_per_sec: 10_000_000,
            burst: 1_000_000,
            event_batch: 1,
            fib_cache_ms: 0,
            ..Config::DEFAULT
        };
        let mut ebpf = kernel::load(&LoadOptions { config, ringbuf_bytes: 1 << 20, ..LoadOptions::default() })?;
        load_program::<Xdp>(&mut ebpf, "netobs_xdp")?;
        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("EVENTS ring buffer missing from the object")?)
            .context("EVENTS is not a ring buffer")?;
        Ok(KernelCheck { ebpf, ring, run: 0, not_run: 0, agreed: 0, disagreed: 0, sampled_out: 0, events: Vec::new() })
    }

    fn stats(&self) -> Result<[u64; stat::COUNT as usize]> {
        let map = self.ebpf.map(STATS_MAP).context("statistics map missing from the object")?;
        let stats: Array<&MapData, StatsByCpu> = Array::try_from(map).context("statistics map type")?;
        crate::kernel::counters::read_stats(&stats)
    }

    /// Runs the program on `eth` (frame `number`) and compares with `host`.
    /// A disagreement is printed on stderr (the first [`PRINT_MAX`]) and
    /// counted.
    pub fn check(&mut self, number: u64, eth: &[u8], host: &Outcome) -> Result<()> {
        let before = self.stats()?;
        let prog = self.ebpf.program("netobs_xdp").context("netobs_xdp missing from the object")?;
        let prog: &Xdp = prog.try_into().context("netobs_xdp is not an XDP program")?;
        let opts = TestRunOptions { data_in: Some(eth), repeat: 1, ..TestRunOptions::new() };
        if prog.test_run(opts).is_err() {
            // EINVAL: longer than one XDP buffer holds, or shorter than
            // Ethernet; the datapath would have seen it in pieces.
            self.not_run += 1;
            return Ok(());
        }
        self.run += 1;
        let after = self.stats()?;
        let delta = |slot: u32| after[slot as usize].wrapping_sub(before[slot as usize]);
        self.events.clear();
        let drained = events::drain(&mut self.ring, &mut self.events, 64);
        let mut diffs = Vec::new();
        if drained.short_records != 0 {
            diffs.push(format!("{} ring-buffer records were not whole events", drained.short_records));
        }
        if drained.undecodable != 0 {
            diffs.push(format!("{} events did not decode", drained.undecodable));
        }
        let host_malformed = matches!(
            host,
            Outcome::Malformed(Malformed::IpHeader | Malformed::IcmpHeader | Malformed::HeadersBeyondIpLength)
        );
        if host_malformed != (delta(stat::MALFORMED) > 0) {
            diffs.push(format!(
                "malformed: host {host_malformed}, kernel counted {} (kernel icmp_errors +{})",
                delta(stat::MALFORMED),
                delta(stat::ICMP_ERRORS)
            ));
        }
        match (host, self.events.as_slice()) {
            (Outcome::IcmpError { .. }, []) if delta(stat::SAMPLED_OUT) > 0 => self.sampled_out += 1,
            (Outcome::IcmpError { ev, .. }, [k]) => diffs.extend(event_diff(ev, k)),
            (Outcome::IcmpError { .. }, evs) => {
                diffs.push(format!("host: one ICMP error event, kernel: {} events", evs.len()));
            }
            (_, []) => {}
            (_, evs) => diffs.push(format!("host: no event ({host:?}), kernel: {} events: {:?}", evs.len(), evs[0])),
        }
        if diffs.is_empty() {
            self.agreed += 1;
        } else {
            self.disagreed += 1;
            if self.disagreed <= PRINT_MAX {
                sink::note(&format!("netobs: kernel and host disagree on frame {number}: {}", diffs.join("; ")));
            } else if self.disagreed == PRINT_MAX + 1 {
                sink::note("netobs: more disagreements are only counted");
            }
        }
        Ok(())
    }

    /// For the `read` record.
    pub fn summary(&self) -> Value {
        json!({
            "run": self.run, "not_run": self.not_run, "agreed": self.agreed,
            "disagreed": self.disagreed, "sampled_out": self.sampled_out,
        })
    }
}

/// The fields of two events that differ, ignoring what the test run sets
/// itself (timestamp, interface, hook) and the direction the capture's
/// link header gave the host (a test run is always XDP, received).
fn event_diff(host: &Event, kernel: &Event) -> Vec<String> {
    let mut h = host.as_datapath();
    let mut k = *kernel;
    for e in [&mut h, &mut k] {
        e.ts_ns = 0;
        e.ifindex = 0;
        e.hook = hook::XDP;
        if e.kind == kind::ICMP_SENT {
            e.kind = kind::ICMP_ERROR;
        }
    }
    if h == k {
        return Vec::new();
    }
    let mut out = Vec::new();
    macro_rules! cmp {
        ($($f:ident).+) => {
            if h.$($f).+ != k.$($f).+ {
                out.push(format!(concat!(stringify!($($f).+), ": host {:?}, kernel {:?}"), h.$($f).+, k.$($f).+));
            }
        };
    }
    cmp!(kind);
    cmp!(icmp_type);
    cmp!(icmp_code);
    cmp!(outer_src);
    cmp!(outer_dst);
    cmp!(outer_family);
    cmp!(outer_ttl);
    cmp!(vlan_depth);
    cmp!(flags);
    cmp!(mtu);
    cmp!(aux);
    cmp!(rfc4884_len);
    cmp!(quote_len);
    cmp!(gateway);
    cmp!(outer_len);
    cmp!(inner);
    if out.is_empty() {
        out.push("events differ".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_test_run_sets_itself_is_ignored() {
        let host = Event { kind: kind::ICMP_SENT, hook: hook::TC_EGRESS, ifindex: 3, icmp_type: 3, ..Event::default() };
        let kernel =
            Event { kind: kind::ICMP_ERROR, hook: hook::XDP, ifindex: 1, ts_ns: 9, icmp_type: 3, ..Event::default() };
        assert!(event_diff(&host, &kernel).is_empty());
        let other = Event { icmp_code: 4, quote_len: 28, ..kernel };
        let d = event_diff(&host, &other);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("icmp_code: host 0, kernel 4"), "{d:?}");
    }
}
