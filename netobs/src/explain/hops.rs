//! Hop distance from TTLs.
//!
//! Two independent estimates:
//! - the *quoted* TTL: the reporter quotes our packet as it received it
//!   (after its own decrement when it was forwarding). Sent 64, quoted 62:
//!   two routers decremented it, so the reporter is the second hop;
//! - the *outer* TTL of the ICMP message itself: the reporter sent it with
//!   an initial TTL (64, 128 or 255 in practice) and each router on the
//!   way back decremented it. Arrived with 63 from a 64 start: one router
//!   in between, so the reporter is two hops away.
//!
//! The first rests on the forward path, the second on the return path;
//! when they disagree the paths differ (or a middlebox rewrites TTLs).

use netobs_common::{Event, event::have, icmp};

/// What the TTLs say about the reporter's distance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HopEstimate {
    /// TTL in the quoted packet, as the reporter saw it.
    pub quoted_ttl: Option<u8>,
    /// TTL the quoted packet was sent with (ours, or inferred 64/128/255
    /// for traffic we only forward).
    pub sent_ttl: Option<u8>,
    /// `sent_ttl` is a guess (the packet was not sent by this host).
    pub sent_ttl_inferred: bool,
    /// TTL the ICMP message arrived with.
    pub outer_ttl: u8,
    /// The initial TTL the reporter most likely used (64/128/255).
    pub reporter_initial_ttl: u8,
    /// Distance from the quoted TTL (forward path).
    pub by_quote: Option<u8>,
    /// Distance from the outer TTL (return path).
    pub by_outer: Option<u8>,
    /// Best estimate of the reporter's distance from this host, in hops.
    pub distance: Option<u8>,
    /// Both estimates exist and agree.
    pub agree: Option<bool>,
}

/// Did the reporter decrement the TTL before quoting the packet? Linux (and
/// most routers) check the MTU and the route *before* decrementing, and
/// filter forwarded packets *after*: a frag-needed / Packet Too Big or a
/// "no route" quotes the TTL as it arrived, an ACL reject in the forward
/// path quotes it one lower.
pub fn reporter_decremented(family: u8, icmp_type: u8, code: u8) -> bool {
    !matches!((family, icmp_type, code), (4, 3, 4) | (4, 3, 0) | (4, 3, 6) | (6, 2, _) | (6, 1, 0))
}

/// The usual initial TTLs: the smallest one at or above `ttl`.
pub fn infer_initial_ttl(ttl: u8) -> u8 {
    match ttl {
        0..=64 => 64,
        65..=128 => 128,
        _ => 255,
    }
}

/// Hops a reply travelled, from the TTL it arrived with: its sender most
/// likely started at 64, 128 or 255, and each router on the way back
/// decremented it once. Arrived with 63: one router between, two hops.
pub fn hops_from_arrival_ttl(ttl: u8) -> Option<u8> {
    (infer_initial_ttl(ttl) - ttl).checked_add(1)
}

/// Estimates the reporter's distance for an ICMP error event.
///
/// `local_origin`: the quoted packet was sent by this host, with
/// `local_initial_ttl`. `reporter_is_destination`: the reporter is the
/// quoted packet's destination (it did not forward, so did not decrement).
pub fn estimate(ev: &Event, local_origin: bool, local_initial_ttl: u8, reporter_is_destination: bool) -> HopEstimate {
    let reporter_initial = infer_initial_ttl(ev.outer_ttl);
    let by_outer = hops_from_arrival_ttl(ev.outer_ttl);
    let mut est = HopEstimate {
        outer_ttl: ev.outer_ttl,
        reporter_initial_ttl: reporter_initial,
        by_outer,
        ..HopEstimate::default()
    };
    let has_ip = ev.inner.have & have::IP != 0;
    // A time-exceeded quote carries the TTL that ran out, chosen by the
    // sender: it says nothing about distance.
    let ttl_expired = (ev.outer_family == 4 && ev.icmp_type == icmp::v4::TIME_EXCEEDED)
        || (ev.outer_family == 6 && ev.icmp_type == icmp::v6::TIME_EXCEEDED);
    if has_ip {
        let q = ev.inner.ttl;
        est.quoted_ttl = Some(q);
        let sent = if local_origin { local_initial_ttl } else { infer_initial_ttl(q) };
        est.sent_ttl = Some(sent);
        est.sent_ttl_inferred = !local_origin;
        if !ttl_expired && q <= sent {
            let decrements = sent - q;
            let own = !reporter_is_destination && reporter_decremented(ev.outer_family, ev.icmp_type, ev.icmp_code);
            est.by_quote = if own { Some(decrements) } else { decrements.checked_add(1) };
        }
    }
    // For forwarded traffic the quote measures the distance from the
    // original sender, not from us: only the outer TTL speaks for us.
    est.distance = if local_origin { est.by_quote.or(by_outer) } else { by_outer };
    if local_origin && let (Some(a), Some(b)) = (est.by_quote, by_outer) {
        est.agree = Some(a == b);
    }
    est
}

#[cfg(test)]
mod tests {
    use super::*;
    use netobs_common::PacketInfo;

    /// An ICMP error; type 3 means 3/10 (an ACL reject in the forward path).
    fn ev(icmp_type: u8, outer_ttl: u8, quoted_ttl: u8) -> Event {
        Event {
            outer_family: 4,
            icmp_type,
            icmp_code: if icmp_type == 3 { 10 } else { 0 },
            outer_ttl,
            inner: PacketInfo { ttl: quoted_ttl, have: have::IP, family: 4, ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn field_notes_scenario_one() {
        // Sent 64, quoted 62, ICMP arrived with 63: two hops, both agree.
        let e = estimate(&ev(3, 63, 62), true, 64, false);
        assert_eq!(e.by_quote, Some(2));
        assert_eq!(e.by_outer, Some(2));
        assert_eq!(e.distance, Some(2));
        assert_eq!(e.agree, Some(true));
    }

    #[test]
    fn destination_reporter_did_not_decrement() {
        // Port unreachable from the destination three hops away: it received
        // our packet with TTL 62 (two routers) and answers from 64 -> 62.
        let e = estimate(&ev(3, 62, 62), true, 64, true);
        assert_eq!(e.by_quote, Some(3));
        assert_eq!(e.by_outer, Some(3));
        assert_eq!(e.agree, Some(true));
    }

    #[test]
    fn asymmetric_paths_disagree() {
        let e = estimate(&ev(3, 250, 62), true, 64, false);
        assert_eq!(e.reporter_initial_ttl, 255);
        assert_eq!(e.by_outer, Some(6));
        assert_eq!(e.by_quote, Some(2));
        assert_eq!(e.agree, Some(false));
        assert_eq!(e.distance, Some(2));
    }

    #[test]
    fn frag_needed_is_sent_before_the_decrement() {
        // Hop 2 cannot forward into a small link: it quotes TTL 63 (only
        // hop 1 decremented) and its ICMP arrives with 63.
        let e = estimate(&ev(3, 63, 63), true, 64, false);
        let mut e4 = ev(3, 63, 63);
        e4.icmp_code = 4;
        let f = estimate(&e4, true, 64, false);
        assert_eq!(e.by_quote, Some(1), "an ACL reject in the forward path decrements first");
        assert_eq!(f.by_quote, Some(2));
        assert_eq!(f.agree, Some(true));
    }

    #[test]
    fn time_exceeded_quote_is_not_a_distance() {
        let e = estimate(&ev(11, 62, 1), true, 64, false);
        assert_eq!(e.by_quote, None);
        assert_eq!(e.distance, Some(3));
    }

    #[test]
    fn forwarded_traffic_uses_the_outer_ttl() {
        let e = estimate(&ev(3, 63, 120), false, 64, false);
        assert_eq!(e.sent_ttl, Some(128));
        assert!(e.sent_ttl_inferred);
        assert_eq!(e.by_quote, Some(8));
        assert_eq!(e.distance, Some(2));
        assert_eq!(e.agree, None);
    }

    #[test]
    fn quoted_ttl_above_sent_gives_no_quote_estimate() {
        let e = estimate(&ev(3, 63, 100), true, 64, false);
        assert_eq!(e.by_quote, None);
        assert_eq!(e.distance, Some(2));
    }
}
