//! Forwarded TCP, judged from the packets a gateway passes: the same three
//! absences the retransmission tracepoints show for local TCP
//! ([`crate::retrans`]), inferred where no socket exists.
//!
//! A gateway has no `tcp_sock` for the traffic it forwards, so the kernel's
//! `tcp_retransmit_*` tracepoints never fire for it. What it does see is
//! every segment of both directions (when it routes both): a sender
//! resending data whose sequence range already passed is a
//! retransmission, and the receiver's ACKs say whether the connection
//! progresses. The TC ingress program `netobs_flows` keeps, per flow,
//! just enough to tell ([`FlowState`], 72 bytes) in an LRU hash of
//! [`MAX_FLOWS`] entries, and adds what it infers to a second LRU map of
//! [`crate::retrans::RetransCounts`] keyed like the tracepoints' own
//! ([`FORWARDED_MAP`]), so user space judges both with the same rules.
//!
//! What is inferred, and how it can be wrong:
//! - A **retransmission** is a segment of two or more payload bytes whose
//!   whole range lies before the highest sequence already seen in that
//!   direction (a one-byte keepalive or window probe is not counted). A
//!   segment that took another path the first time and this one now looks
//!   like one; asymmetric routing hides the ACKs and every resend looks
//!   stalled. Both directions must pass this gateway.
//! - **Full-size** means at least as long as the longest segment seen in
//!   that direction: the gateway never saw the MSS option the receiver
//!   will honour after a clamp, only the segments.
//! - A retransmission is **stalled** (the blackhole's mark) when it
//!   resends the very segment the previous one of that direction resent,
//!   the receiver's ACK has not passed it, and no full-size segment of that
//!   direction was ever acknowledged. Loss from congestion resends other
//!   holes in turn while the ACK moves, and full-size segments get
//!   through between losses; a blackhole resends the head again and again
//!   and lets no full-size segment through. A path that shrinks in the
//!   middle of a flow is therefore seen in the flows that start after it,
//!   not in the one it cut.
//! - A **SYN retransmission** is a SYN with the sequence number of an
//!   earlier one, while no SYN-ACK came the other way; a **SYN-ACK
//!   retransmission** likewise, while no ACK of it came.
//! - Counts are plain increments on the flow's entry: two CPUs updating
//!   one flow in the same instant may lose one (only ever an undercount).

use crate::{
    cursor::Cursor,
    parse::{Outer, put_v4, put_v6},
    wire::{IPPROTO_TCP, Ipv4Hdr, Ipv6Hdr, TcpHdr},
};

/// The per-flow state map ([`FlowKey`] -> [`FlowState`]).
pub const FLOWS_MAP: &str = "FLOWS";
/// What the flows add up to, per destination (the shape of
/// [`crate::retrans::MAP`]: `RetransKey` -> `RetransCounts`).
pub const FORWARDED_MAP: &str = "FORWARDED";
/// The TC ingress program that keeps them.
pub const PROGRAM: &str = "netobs_flows";
/// Flows remembered at once; the least recently seen is forgotten first.
pub const MAX_FLOWS: u32 = 16384;
/// Destinations in [`FORWARDED_MAP`].
pub const MAX_DESTINATIONS: u32 = 4096;

/// TCP flag bits (RFC 9293).
pub mod tcp {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// One TCP segment as the flow tracker needs it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub family: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// Payload bytes (IP length minus the IP and TCP headers).
    pub payload: u32,
}

/// Fills `s` with the TCP segment at `outer.l4_off`, addresses from the
/// IP header at `outer.l3_off`. False (and `s` partly written) for
/// anything else, a later fragment, or a header that is cut short or
/// claims more than the IP length. In place, not returned: the eBPF
/// program keeps it in a per-CPU scratch slot, off its 512-byte stack.
#[inline(always)]
pub fn segment(c: &Cursor, outer: &Outer, s: &mut Segment) -> bool {
    if outer.protocol != IPPROTO_TCP || outer.later_fragment {
        return false;
    }
    let Some(h) = c.get::<TcpHdr>(outer.l4_off) else { return false };
    let bytes: &[u8; 20] = crate::wire::as_bytes(h);
    let tcp_len = u32::from(bytes[12] >> 4) * 4;
    let headers = (outer.l4_off - outer.l3_off) as u32 + tcp_len;
    if tcp_len < 20 || headers > outer.total_len {
        return false;
    }
    s.family = outer.family;
    s.src_port = u16::from_be_bytes(h.source);
    s.dst_port = u16::from_be_bytes(h.dest);
    s.seq = u32::from_be_bytes(h.seq);
    s.ack = u32::from_be_bytes(h.ack_seq);
    s.flags = bytes[13];
    s.payload = outer.total_len - headers;
    // Word copies (see `parse::put_v6`): a slice copy may become a
    // memcpy call, which BPF runs byte by byte.
    if outer.family == 4 {
        let Some(ip) = c.get::<Ipv4Hdr>(outer.l3_off) else { return false };
        put_v6(&mut s.src, &[0; 16]);
        put_v6(&mut s.dst, &[0; 16]);
        put_v4(&mut s.src, &ip.src);
        put_v4(&mut s.dst, &ip.dst);
    } else {
        let Some(ip) = c.get::<Ipv6Hdr>(outer.l3_off) else { return false };
        put_v6(&mut s.src, &ip.src);
        put_v6(&mut s.dst, &ip.dst);
    }
    true
}

/// A flow, the same key for both directions: endpoint `a` is the one
/// that sorts first (address, then port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub a: [u8; 16],
    pub b: [u8; 16],
    pub a_port: u16,
    pub b_port: u16,
    pub family: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

/// Writes the flow's key into `k`; returns the direction of `s` in it
/// (0: from `a`, 1: from `b`).
#[inline(always)]
pub fn flow_key(s: &Segment, k: &mut FlowKey) -> usize {
    // Lexicographic order of (address, port), byte by byte: no slice
    // comparison (a memcmp call) in the eBPF program.
    let mut order = 0i8;
    for i in 0..16 {
        if order == 0 && s.src[i] != s.dst[i] {
            order = if s.src[i] < s.dst[i] { -1 } else { 1 };
        }
    }
    if order == 0 {
        order = if s.src_port <= s.dst_port { -1 } else { 1 };
    }
    k.family = s.family;
    k._pad = [0; 3];
    let dir = if order < 0 { 0 } else { 1 };
    for i in 0..16 {
        k.a[i] = if dir == 0 { s.src[i] } else { s.dst[i] };
        k.b[i] = if dir == 0 { s.dst[i] } else { s.src[i] };
    }
    k.a_port = if dir == 0 { s.src_port } else { s.dst_port };
    k.b_port = if dir == 0 { s.dst_port } else { s.src_port };
    dir
}

/// [`Half::flags`].
pub mod half {
    /// `next_seq` and `base_seq` hold values.
    pub const SEQ: u8 = 1 << 0;
    /// `acked` holds a value.
    pub const ACKED: u8 = 1 << 1;
    /// A SYN was seen; `syn_seq` is its sequence number.
    pub const SYN: u8 = 1 << 2;
    /// A SYN-ACK was seen; `syn_seq` is its sequence number.
    pub const SYNACK: u8 = 1 << 3;
    /// `full_end` holds a value.
    pub const FULL: u8 = 1 << 4;
    /// The peer acknowledged past `full_end`: a full-size segment got through.
    pub const DELIVERED: u8 = 1 << 5;
    /// `resent_seq` holds a value.
    pub const RESENT: u8 = 1 << 6;
}

/// What one direction of a flow sent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Half {
    /// Highest sequence number sent so far, plus one (the next new byte).
    pub next_seq: u32,
    /// First sequence number seen (the SYN's plus one when it was seen):
    /// the reference for "bytes acknowledged".
    pub base_seq: u32,
    /// Highest acknowledgement number this direction sent.
    pub acked: u32,
    /// Longest payload this direction sent: the segment size in use.
    pub max_len: u32,
    /// Sequence number of this direction's SYN or SYN-ACK.
    pub syn_seq: u32,
    /// End of the first segment sent at the current `max_len`: once the
    /// peer acknowledges it, segments of that size get through.
    pub full_end: u32,
    /// Start of the latest retransmitted segment.
    pub resent_seq: u32,
    /// [`half`] bits.
    pub flags: u8,
    pub _pad: [u8; 3],
}

/// Both directions of one flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    pub half: [Half; 2],
    /// `bpf_ktime_get_coarse_ns` of the latest segment.
    pub last_ns: u64,
}

const _: () = assert!(core::mem::size_of::<Half>() == 32);
const _: () = assert!(core::mem::size_of::<FlowState>() == 72);

/// What one segment says about its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Nothing worth counting (new data, an ACK, a first SYN).
    Nothing,
    /// A SYN sent again, nothing answered the first.
    SynAgain,
    /// A SYN-ACK sent again, its ACK never came.
    SynAckAgain,
    /// Data sent again.
    DataAgain {
        /// Payload bytes of the resent segment.
        len: u32,
        /// The longest segment of that direction (what "full-size" means).
        segment_size: u32,
        /// Bytes the receiver acknowledged, counted from the first sequence
        /// number seen; 0 when no ACK of it passed.
        acked: u32,
        /// The receiver ACKs at all (the handshake or earlier data got
        /// through).
        receiver_acks: bool,
        /// The same segment as this direction's previous retransmission,
        /// still unacknowledged, in a flow whose full-size segments never
        /// got through (see the module's notes).
        stalled: bool,
    },
}

/// `a` is before `b` in sequence space (RFC 9293's modular comparison).
#[inline(always)]
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl FlowState {
    /// Updates the flow with segment `s` sent in direction `dir` (0 or 1)
    /// and says what it shows.
    #[inline(always)]
    pub fn update(&mut self, dir: usize, s: &Segment) -> Seen {
        let (me, peer) = if dir == 0 { (0, 1) } else { (1, 0) };
        let syn = s.flags & tcp::SYN != 0;
        let ack = s.flags & tcp::ACK != 0;
        if s.flags & tcp::RST != 0 {
            return Seen::Nothing;
        }
        if ack {
            let h = &mut self.half[me];
            if h.flags & half::ACKED == 0 || before(h.acked, s.ack) {
                h.acked = s.ack;
            }
            h.flags |= half::ACKED;
            let p = &mut self.half[peer];
            if p.flags & half::FULL != 0 && !before(s.ack, p.full_end) {
                p.flags |= half::DELIVERED;
            }
        }
        if syn {
            return self.on_syn(me, peer, s, ack);
        }
        // A FIN takes one sequence number; keepalives and window probes
        // (one byte, or none) are not data worth judging.
        let end = s.seq.wrapping_add(s.payload).wrapping_add(u32::from(s.flags & tcp::FIN));
        let h = &mut self.half[me];
        if h.flags & half::SEQ == 0 {
            h.next_seq = end;
            h.base_seq = s.seq;
            h.max_len = s.payload;
            h.flags |= half::SEQ;
            return Seen::Nothing;
        }
        if s.payload > h.max_len {
            // A larger size than any before: whether it gets through is
            // open again.
            h.max_len = s.payload;
            h.flags &= !(half::FULL | half::DELIVERED);
        }
        if before(h.next_seq, end) {
            h.next_seq = end;
            if s.payload >= 2 && s.payload == h.max_len && h.flags & half::FULL == 0 {
                h.full_end = end;
                h.flags |= half::FULL;
            }
            return Seen::Nothing;
        }
        if s.payload < 2 {
            return Seen::Nothing;
        }
        let again = h.flags & half::RESENT != 0 && h.resent_seq == s.seq;
        let never_delivered = h.flags & half::DELIVERED == 0;
        h.resent_seq = s.seq;
        h.flags |= half::RESENT;
        let (base, segment_size) = (h.base_seq, h.max_len);
        let p = &self.half[peer];
        let receiver_acks = p.flags & half::ACKED != 0;
        let acked = if receiver_acks && before(base, p.acked) { p.acked.wrapping_sub(base) } else { 0 };
        let unacked = !receiver_acks || !before(s.seq, p.acked);
        let stalled = again && unacked && never_delivered;
        Seen::DataAgain { len: s.payload, segment_size, acked, receiver_acks, stalled }
    }

    #[inline(always)]
    fn on_syn(&mut self, me: usize, peer: usize, s: &Segment, ack: bool) -> Seen {
        let bit = if ack { half::SYNACK } else { half::SYN };
        let peer_answered = if ack {
            // The SYN-ACK's ACK: the peer acknowledged our SYN-ACK's sequence.
            let p = &self.half[peer];
            p.flags & half::ACKED != 0 && before(s.seq, p.acked)
        } else {
            self.half[peer].flags & (half::SYNACK | half::SEQ) != 0
        };
        let h = &mut self.half[me];
        let again = h.flags & bit != 0 && h.syn_seq == s.seq;
        h.flags |= bit | half::SEQ;
        h.syn_seq = s.seq;
        h.next_seq = s.seq.wrapping_add(1);
        h.base_seq = s.seq.wrapping_add(1);
        match (again && !peer_answered, ack) {
            (true, false) => Seen::SynAgain,
            (true, true) => Seen::SynAckAgain,
            _ => Seen::Nothing,
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integer fields and arrays only, no padding (sizes
    // asserted above).
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowState {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(from_client: bool, flags: u8, seq: u32, ack: u32, payload: u32) -> Segment {
        let c = [198, 18, 1, 1];
        let s = [198, 18, 4, 1];
        let mut g = Segment { family: 4, seq, ack, flags, payload, ..Segment::default() };
        let (src, dst, sp, dp) = if from_client { (c, s, 40000, 5001) } else { (s, c, 5001, 40000) };
        g.src[..4].copy_from_slice(&src);
        g.dst[..4].copy_from_slice(&dst);
        g.src_port = sp;
        g.dst_port = dp;
        g
    }

    /// Feeds segments to one flow; returns what each showed.
    fn feed(st: &mut FlowState, segs: &[Segment]) -> std::vec::Vec<Seen> {
        segs.iter()
            .map(|s| {
                let dir = flow_key(s, &mut FlowKey::default());
                st.update(dir, s)
            })
            .collect()
    }

    #[test]
    fn both_directions_share_one_key() {
        let a = seg(true, tcp::ACK, 1, 1, 0);
        let b = seg(false, tcp::ACK, 1, 1, 0);
        let (mut ka, mut kb) = (FlowKey::default(), FlowKey::default());
        let da = flow_key(&a, &mut ka);
        let db = flow_key(&b, &mut kb);
        assert_eq!(ka, kb);
        assert_ne!(da, db);
        assert_eq!(ka.a_port, 40000, "198.18.1.1 sorts first");
    }

    #[test]
    fn a_full_size_segment_sent_again_is_a_retransmission_small_new_data_is_not() {
        let mut st = FlowState::default();
        let (c, s) = (1000u32, 9000u32);
        let seen = feed(
            &mut st,
            &[
                seg(true, tcp::SYN, c, 0, 0),
                seg(false, tcp::SYN | tcp::ACK, s, c + 1, 0),
                seg(true, tcp::ACK, c + 1, s + 1, 0),
                seg(false, tcp::ACK, s + 1, c + 1, 100),
                seg(true, tcp::ACK, c + 1, s + 101, 0),
                seg(false, tcp::ACK, s + 101, c + 1, 1448),
                seg(false, tcp::ACK, s + 1549, c + 1, 1448),
                // The first full-size one again: the client never acked it.
                seg(false, tcp::ACK, s + 101, c + 1, 1448),
            ],
        );
        assert!(seen[..7].iter().all(|x| *x == Seen::Nothing), "{seen:?}");
        assert_eq!(
            seen[7],
            Seen::DataAgain { len: 1448, segment_size: 1448, acked: 100, receiver_acks: true, stalled: false }
        );
    }

    /// What each segment's retransmission showed as `stalled` (None: not a
    /// retransmission).
    fn stalls(seen: &[Seen]) -> std::vec::Vec<Option<bool>> {
        seen.iter()
            .map(|x| match x {
                Seen::DataAgain { stalled, .. } => Some(*stalled),
                _ => None,
            })
            .collect()
    }

    /// The segment size of the downloads below.
    const MSS: u32 = 1448;
    /// The client's sequence number after its SYN.
    const CLIENT: u32 = 1001;

    /// The start of a download: handshake, then a 100-byte response header
    /// the client acknowledges. Returns the flow and the sequence number of
    /// the first full-size data segment.
    fn download() -> (FlowState, u32) {
        let mut st = FlowState::default();
        let (c, s) = (CLIENT, 9000u32);
        feed(
            &mut st,
            &[
                seg(true, tcp::SYN, c - 1, 0, 0),
                seg(false, tcp::SYN | tcp::ACK, s, c, 0),
                seg(true, tcp::ACK, c, s + 1, 0),
                seg(false, tcp::ACK, s + 1, c, 100),
                seg(true, tcp::ACK, c, s + 101, 0),
            ],
        );
        (st, s + 101)
    }

    /// The server's `i`-th full-size segment from `first`.
    fn data(first: u32, i: u32) -> Segment {
        seg(false, tcp::ACK, first + i * MSS, CLIENT, MSS)
    }

    /// The client acknowledging everything before `seq`.
    fn ack(seq: u32) -> Segment {
        seg(true, tcp::ACK, CLIENT, seq, 0)
    }

    #[test]
    fn a_blackhole_resends_its_head_and_stalls() {
        let (mut st, d) = download();
        let seen = feed(
            &mut st,
            &[
                data(d, 0),
                data(d, 1),
                // Nothing of it arrives; the timer resends the head, again
                // and again, and the client's ACKs (a window update) stay.
                data(d, 0),
                ack(d),
                data(d, 0),
                data(d, 0),
            ],
        );
        assert_eq!(stalls(&seen), [None, None, Some(false), None, Some(true), Some(true)]);
    }

    #[test]
    fn congestion_loss_after_full_size_segments_got_through_does_not_stall() {
        let (mut st, d) = download();
        let mut segs: std::vec::Vec<Segment> = (0..8).map(|i| data(d, i)).collect();
        // The first two arrive and are acknowledged, the rest is lost in
        // bursts: recovery resends each hole in turn under one ACK, and one
        // hole twice (its first resend was lost too).
        segs.push(ack(d + 2 * MSS));
        segs.extend([2, 3, 3, 5, 5, 5].map(|i| data(d, i)));
        let seen = feed(&mut st, &segs);
        assert!(stalls(&seen).iter().flatten().all(|s| !s), "{seen:?}");
        assert_eq!(stalls(&seen).iter().flatten().count(), 6);
    }

    #[test]
    fn recovery_of_a_lost_first_flight_resends_other_holes_and_does_not_stall() {
        let (mut st, d) = download();
        // No full-size segment acknowledged yet: holes resent one by one
        // under the same ACK are not the same segment again.
        let segs: std::vec::Vec<Segment> = (0..6).chain(0..6).map(|i| data(d, i)).collect();
        let seen = feed(&mut st, &segs);
        assert_eq!(stalls(&seen).iter().flatten().count(), 6, "{seen:?}");
        assert_eq!(stalls(&seen).iter().flatten().filter(|s| **s).count(), 0, "{seen:?}");
        // The same hole again right away is a stall; once the ACK passed
        // full-size segments, it no longer is.
        let seen = feed(&mut st, &[data(d, 5)]);
        assert_eq!(stalls(&seen), [Some(true)]);
        let seen = feed(&mut st, &[ack(d + 5 * MSS), data(d, 5)]);
        assert_eq!(stalls(&seen), [None, Some(false)], "a full-size segment was acknowledged");
    }

    #[test]
    fn keepalives_and_sequence_wrap_are_not_retransmissions() {
        let mut st = FlowState::default();
        let s = u32::MAX - 100;
        let seen = feed(
            &mut st,
            &[
                seg(false, tcp::ACK, s, 1, 1000),
                // Wraps past zero: new data.
                seg(false, tcp::ACK, s.wrapping_add(1000), 1, 1000),
                // A keepalive: one old byte.
                seg(false, tcp::ACK, s.wrapping_add(1999), 1, 1),
            ],
        );
        assert_eq!(seen, [Seen::Nothing, Seen::Nothing, Seen::Nothing]);
    }

    #[test]
    fn an_unanswered_syn_sent_again_and_an_answered_one() {
        let mut st = FlowState::default();
        let seen = feed(&mut st, &[seg(true, tcp::SYN, 7, 0, 0), seg(true, tcp::SYN, 7, 0, 0)]);
        assert_eq!(seen[1], Seen::SynAgain);
        // A SYN-ACK came back: the client resending its SYN is not silence.
        let mut st = FlowState::default();
        let seen = feed(
            &mut st,
            &[seg(true, tcp::SYN, 7, 0, 0), seg(false, tcp::SYN | tcp::ACK, 50, 8, 0), seg(true, tcp::SYN, 7, 0, 0)],
        );
        assert_eq!(seen[2], Seen::Nothing);
        // A new connection on the same ports (another ISN) is no retransmission.
        let mut st = FlowState::default();
        let seen = feed(&mut st, &[seg(true, tcp::SYN, 7, 0, 0), seg(true, tcp::SYN, 99, 0, 0)]);
        assert_eq!(seen[1], Seen::Nothing);
    }

    #[test]
    fn a_synack_sent_again_counts_until_its_ack_passes() {
        let mut st = FlowState::default();
        let sa = seg(false, tcp::SYN | tcp::ACK, 50, 8, 0);
        let seen = feed(&mut st, &[seg(true, tcp::SYN, 7, 0, 0), sa, sa]);
        assert_eq!(seen[2], Seen::SynAckAgain);
        let seen = feed(&mut st, &[seg(true, tcp::ACK, 8, 51, 0), sa]);
        assert_eq!(seen[1], Seen::Nothing, "the client acked the SYN-ACK");
    }

    #[test]
    fn segments_that_do_not_fit_their_ip_length_are_refused() {
        use crate::parse::parse_outer;
        // Ethernet + IPv4 (total 40) + TCP claiming a 60-byte header.
        let mut f = [0u8; 14 + 40];
        f[12] = 0x08;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f[14 + 9] = IPPROTO_TCP;
        f[34 + 12] = 15 << 4;
        let c = Cursor::from_slice(&f);
        let outer = parse_outer(&c).unwrap();
        let mut s = Segment::default();
        assert!(!segment(&c, &outer, &mut s));
        f[34 + 12] = 5 << 4;
        f[26..34].copy_from_slice(&[198, 18, 1, 1, 198, 18, 4, 1]);
        f[34..36].copy_from_slice(&40000u16.to_be_bytes());
        f[47] = tcp::SYN;
        let c = Cursor::from_slice(&f);
        assert!(segment(&c, &outer, &mut s));
        assert_eq!((s.payload, s.src_port, s.flags, &s.dst[..4]), (0, 40000, tcp::SYN, &[198, 18, 4, 1][..]));
    }
}
