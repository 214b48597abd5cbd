//! Prometheus metrics and the small HTTP endpoint serving them (plus `/top`).
//!
//! Labels are bounded by construction: interface names, family, ICMP
//! type/code (at most 256 each), verdict, hook. Addresses and ports never
//! become labels; they are in `--json` and `/top`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, Result};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{
    explain::Finding,
    kernel::{Attached, Counters},
};
use netobs_common::{
    event::{DfCounterKey, IcmpCounterKey, stat},
    icmp,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IcmpLabels {
    iface: String,
    family: String,
    direction: String,
    r#type: String,
    code: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DfLabels {
    iface: String,
    egress: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttachLabels {
    iface: String,
    hook: String,
}

/// All metric families, and the last kernel snapshot to compute deltas.
pub struct Metrics {
    registry: Registry,
    icmp_errors: Family<IcmpLabels, Counter>,
    df_oversized: Family<DfLabels, Counter>,
    ptb_mtu: Histogram,
    hop_distance: Histogram,
    stats: BTreeMap<&'static str, Counter>,
    attached: Family<AttachLabels, Gauge>,
    findings_active: Gauge,
    findings_evicted: Counter,
    last: Counters,
    last_evicted: u64,
}

/// Kernel statistics exported as counters: (stat slot, metric name, help).
const STAT_METRICS: &[(u32, &str, &str)] = &[
    (stat::PACKETS, "packets_observed", "Packets the observers ran on"),
    (stat::FIB_LOOKUPS, "df_fib_lookups", "DF packets above the threshold that paid for a FIB lookup"),
    (stat::FIB_CACHE_HITS, "df_route_cache_hits", "DF packets above the threshold answered by the per-CPU route cache"),
    (stat::EVENTS, "events", "Events written to the ring buffer"),
    (stat::SAMPLED_OUT, "events_sampled_out", "Events held back by the per-CPU token bucket (still counted)"),
    (stat::RINGBUF_FULL, "ringbuf_lost", "Events lost because the ring buffer was full"),
    (stat::MALFORMED, "malformed_packets", "Packets too short or inconsistent to classify"),
    (stat::QUOTE_TRUNCATED, "quote_truncated", "Sampled ICMP errors whose quote stopped before the ports"),
    (stat::MAP_FULL, "counter_map_full", "Counter updates lost because a counter map was full"),
    (stat::EGRESS_FORWARDED, "egress_forwarded", "Forwarded packets at TC egress, counted but not classified"),
];

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("netobs");
        let icmp_errors = Family::<IcmpLabels, Counter>::default();
        registry.register(
            "icmp_errors",
            "ICMP/ICMPv6 errors, by interface, family, direction (received; sent by this host; generated = icmp:icmp_send tracepoint, host-wide, iface \"*\"), type, code and verdict",
            icmp_errors.clone(),
        );
        let df_oversized = Family::<DfLabels, Counter>::default();
        registry.register(
            "df_oversized_packets",
            "DF packets too big for their egress MTU, by ingress and egress interface",
            df_oversized.clone(),
        );
        let ptb_mtu = Histogram::new([
            576.0, 1024.0, 1280.0, 1380.0, 1400.0, 1420.0, 1450.0, 1460.0, 1480.0, 1492.0, 1500.0, 9000.0,
        ]);
        registry.register(
            "icmp_ptb_mtu_bytes",
            "MTU announced by frag-needed / Packet Too Big messages (sampled events)",
            ptb_mtu.clone(),
        );
        let hop_distance = Histogram::new((1..=16).map(f64::from).chain([20.0, 24.0, 32.0]));
        registry.register(
            "quoted_hop_distance",
            "Hop distance of ICMP error reporters (sampled events)",
            hop_distance.clone(),
        );
        let mut stats = BTreeMap::new();
        for &(slot, name, help) in STAT_METRICS {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            stats.insert(stat::NAMES[slot as usize], c);
        }
        let attached = Family::<AttachLabels, Gauge>::default();
        registry.register(
            "program_attached",
            "1 while an observer is attached, by interface and hook",
            attached.clone(),
        );
        let findings_active = Gauge::default();
        registry.register(
            "findings_active",
            "Distinct (flow, reporter, verdict) entries remembered",
            findings_active.clone(),
        );
        let findings_evicted = Counter::default();
        registry.register("findings_evicted", "Entries forgotten because the table was full", findings_evicted.clone());
        Metrics {
            registry,
            icmp_errors,
            df_oversized,
            ptb_mtu,
            hop_distance,
            stats,
            attached,
            findings_active,
            findings_evicted,
            last: Counters::default(),
            last_evicted: 0,
        }
    }

    pub fn set_attached(&self, a: &Attached, on: bool) {
        let v = i64::from(on);
        let hook = match a.ingress {
            crate::kernel::Hook::XdpNative => "xdp_native",
            crate::kernel::Hook::XdpSkb => "xdp_skb",
            crate::kernel::Hook::TcIngress => "tc_ingress",
        };
        self.attached.get_or_create(&AttachLabels { iface: a.iface.clone(), hook: hook.into() }).set(v);
        if a.egress {
            self.attached.get_or_create(&AttachLabels { iface: a.iface.clone(), hook: "tc_egress".into() }).set(v);
        }
    }

    /// Folds a new kernel snapshot in (as deltas from the previous one).
    pub fn update(&mut self, c: &Counters, ifname: impl Fn(u32) -> String, active: usize, evicted: u64) {
        for (k, &n) in &c.icmp {
            let before = self.last.icmp.get(k).copied().unwrap_or(0);
            if n > before {
                self.icmp_errors.get_or_create(&icmp_labels(k, &ifname)).inc_by(n - before);
            }
        }
        for (k, &n) in &c.df {
            let before = self.last.df.get(k).copied().unwrap_or(0);
            if n > before {
                self.df_oversized.get_or_create(&df_labels(k, &ifname)).inc_by(n - before);
            }
        }
        for (name, counter) in &self.stats {
            let now = c.stats.get(name).copied().unwrap_or(0);
            let before = self.last.stats.get(name).copied().unwrap_or(0);
            if now > before {
                counter.inc_by(now - before);
            }
        }
        self.findings_active.set(active as i64);
        if evicted > self.last_evicted {
            self.findings_evicted.inc_by(evicted - self.last_evicted);
            self.last_evicted = evicted;
        }
        self.last = c.clone();
    }

    /// Records what only sampled events know (MTUs, distances).
    pub fn observe(&self, f: &Finding) {
        if f.kind == "icmp_error" {
            if let Some(m) = f.mtu {
                self.ptb_mtu.observe(f64::from(m));
            }
            if let Some(d) = f.hops.as_ref().and_then(|h| h.distance) {
                self.hop_distance.observe(f64::from(d));
            }
        }
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        if prometheus_client::encoding::text::encode(&mut s, &self.registry).is_err() {
            s.clear();
        }
        s
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn icmp_labels(k: &IcmpCounterKey, ifname: &impl Fn(u32) -> String) -> IcmpLabels {
    IcmpLabels {
        iface: crate::output::json::counter_iface(k, ifname),
        family: if k.family == 6 { "ipv6" } else { "ipv4" }.into(),
        direction: crate::output::json::direction_name(k.hook).into(),
        r#type: k.icmp_type.to_string(),
        code: k.icmp_code.to_string(),
        verdict: icmp::meaning(k.family, k.icmp_type, k.icmp_code).verdict.as_str().into(),
    }
}

fn df_labels(k: &DfCounterKey, ifname: &impl Fn(u32) -> String) -> DfLabels {
    DfLabels { iface: ifname(k.ingress_ifindex), egress: ifname(k.egress_ifindex) }
}

/// What the HTTP thread serves.
#[derive(Default)]
pub struct Shared {
    pub metrics: Option<Metrics>,
    /// `/top` body (JSON), refreshed by the watch loop.
    pub top_json: String,
}

/// Binds `addr` now (so a busy port fails before anything is attached) and
/// serves `/metrics` and `/top` from a background thread.
pub fn serve(addr: SocketAddr, shared: Arc<Mutex<Shared>>) -> Result<()> {
    let server = tiny_http::Server::http(addr).map_err(|e| anyhow::anyhow!("{e}")).with_context(|| {
        format!("cannot serve metrics on {addr} (in use? pick another with --metrics-addr, or --no-metrics)")
    })?;
    std::thread::Builder::new()
        .name("netobs-metrics".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let (status, ctype, body) = {
                    let guard = match shared.lock() {
                        Ok(g) => g,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    match req.url() {
                        "/metrics" => (
                            200,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            guard.metrics.as_ref().map(Metrics::encode).unwrap_or_default(),
                        ),
                        "/top" => (200, "application/json", guard.top_json.clone()),
                        _ => (404, "text/plain", "netobs serves /metrics and /top\n".to_string()),
                    }
                };
                let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], ctype.as_bytes());
                let mut resp = tiny_http::Response::from_string(body).with_status_code(status);
                if let Ok(h) = header {
                    resp = resp.with_header(h);
                }
                let _ = req.respond(resp);
            }
        })
        .context("starting the metrics thread")?;
    Ok(())
}
