//! JSON-lines records. The schema is documented in docs/json-schema.md and
//! versioned by the `schema` field: additions keep the version, renames or
//! removals bump it.

use serde_json::{Value, json};

use crate::{
    explain::{Aggregate, aggregate::Fold, words},
    kernel::{Attached, Counters, Features},
};
use netobs_common::{event::hook, icmp};

/// Schema identifier carried by every record.
pub const SCHEMA: &str = "netobs/1";

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `{"type":"attach", ...}`: one per interface, at start and whenever
/// `--all` attaches one that appeared. Says which path each observer took
/// (`tc`: "tcx" or "clsact"), the program holding XDP if netobs stayed
/// beside one, and what the kernel offers.
pub fn attach(a: &Attached, kernel: &Features) -> Value {
    json!({
        "schema": SCHEMA, "type": "attach",
        "iface": a.iface, "ifindex": a.ifindex, "ingress": a.ingress, "egress": a.egress, "note": a.note,
        "tc": a.tc, "clsact_created": a.clsact_created, "xdp_holder": a.xdp_holder, "kernel": kernel,
    })
}

/// `{"type":"detach", ...}`: `reason` is "exit" for the final record, or
/// "vanished" when `--all` forgets an interface that went away.
pub fn detach(ifaces: &[String], reason: &str) -> Value {
    json!({ "schema": SCHEMA, "type": "detach", "ifaces": ifaces, "reason": reason })
}

/// `{"type":"finding", ...}`: an aggregated explanation, re-emitted when
/// its count changes (at most once per update interval).
pub fn finding(a: &Aggregate) -> Value {
    let mut v = serde_json::to_value(&a.finding).unwrap_or_else(|e| json!({ "encode_error": e.to_string() }));
    if let Value::Object(m) = &mut v {
        m.insert("schema".into(), SCHEMA.into());
        m.insert("type".into(), "finding".into());
        m.insert("id".into(), a.id.into());
        m.insert("count".into(), a.count.into());
        m.insert("first_seen".into(), rfc3339(a.first_seen).into());
        m.insert("last_seen".into(), rfc3339(a.last_seen).into());
        m.insert("text".into(), words::sentence(a).into());
        m.insert("advice".into(), words::advice(&a.finding).into());
    }
    v
}

/// `{"type":"folded", ...}`: first sightings of one (verdict, interface)
/// that did not fit the line budget during one window (see
/// `explain::aggregate`); they stay in the table, `/top` and the counters.
pub fn folded(f: &Fold) -> Value {
    let codes: Vec<Value> = f
        .codes
        .iter()
        .map(|((family, t, c), n)| json!({ "family": family, "type": t, "code": c, "findings": n }))
        .collect();
    json!({
        "schema": SCHEMA, "type": "folded",
        "verdict": f.bucket.verdict.as_str(), "iface": f.bucket.iface,
        "findings": f.findings, "events": f.events,
        "reporters": f.reporters, "reporters_capped": f.reporters_capped,
        "codes": codes, "other_codes": f.other_codes,
        "since": rfc3339(f.since), "until": rfc3339(f.until),
        "text": words::folded(f),
    })
}

/// "received", "sent" (TC egress) or "generated" (icmp_send tracepoint).
pub fn direction_name(h: u8) -> &'static str {
    match h {
        hook::TC_EGRESS => "sent",
        hook::ICMP_SEND_TRACEPOINT => "generated",
        _ => "received",
    }
}

/// The interface a counter row belongs to; the host-wide icmp_send
/// tracepoint has none and is labelled "*".
pub fn counter_iface(k: &netobs_common::IcmpCounterKey, ifname: impl Fn(u32) -> String) -> String {
    if k.hook == hook::ICMP_SEND_TRACEPOINT { "*".to_string() } else { ifname(k.ifindex) }
}

fn hook_name(h: u8) -> &'static str {
    match h {
        hook::XDP => "xdp",
        hook::TC_INGRESS => "tc_ingress",
        hook::TC_EGRESS => "tc_egress",
        hook::ICMP_SEND_TRACEPOINT => "icmp_send_tracepoint",
        _ => "unknown",
    }
}

/// `{"type":"counters", ...}`: kernel counters, summed over CPUs.
pub fn counters(c: &Counters, ifname: impl Fn(u32) -> String, evicted: u64) -> Value {
    let icmp: Vec<Value> = c
        .icmp
        .iter()
        .map(|(k, n)| {
            let m = icmp::meaning(k.family, k.icmp_type, k.icmp_code);
            json!({
                "iface": counter_iface(k, &ifname),
                "family": k.family, "type": k.icmp_type, "code": k.icmp_code,
                "hook": hook_name(k.hook), "direction": direction_name(k.hook),
                "verdict": m.verdict.as_str(), "name": m.name, "count": n,
            })
        })
        .collect();
    let df: Vec<Value> = c
        .df
        .iter()
        .map(|(k, n)| json!({ "ingress": ifname(k.ingress_ifindex), "egress": ifname(k.egress_ifindex), "count": n }))
        .collect();
    json!({
        "schema": SCHEMA, "type": "counters",
        "stats": c.stats, "icmp": icmp, "df_oversized": df, "findings_evicted": evicted,
    })
}
