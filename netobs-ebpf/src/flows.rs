//! Forwarded TCP on a gateway: per-flow state in the kernel, and what it
//! shows added up per destination in the shape the retransmission
//! tracepoints use (see `netobs_common::flows` for what is inferred).
//!
//! A TC ingress program of its own, attached only with `watch
//! --forwarded-tcp`: it costs a hash lookup per TCP segment, which the
//! main observers never pay, and its verification stays apart from
//! theirs.

use aya_ebpf::{
    helpers::bpf_ktime_get_coarse_ns as now_ns,
    macros::{classifier, map},
    maps::{LruHashMap, PerCpuArray},
    programs::TcContext,
};
use netobs_common::{
    cursor::Cursor,
    flows::{FlowKey, FlowState, MAX_DESTINATIONS, MAX_FLOWS, Seen, Segment, flow_key, segment},
    parse::parse_outer,
    retrans::{RetransCounts, RetransKey, kind, tcp_state},
};

use crate::retrans::{Retransmission, Stall, record};

/// Per-flow state: both directions of one TCP connection.
#[map]
static FLOWS: LruHashMap<FlowKey, FlowState> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

/// What the flows showed, per destination (read by user space once a second).
#[map]
static FORWARDED: LruHashMap<RetransKey, RetransCounts> = LruHashMap::with_max_entries(MAX_DESTINATIONS, 0);

/// The segment, its flow's key and a zeroed state to insert: kept here,
/// not on the 512-byte stack.
#[repr(C)]
pub struct Scratch {
    seg: Segment,
    key: FlowKey,
    /// Never written: the state of a flow seen for the first time.
    fresh: FlowState,
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// `TC_ACT_UNSPEC`: the next program (TCX) or the default action decides.
const TC_CONTINUE: i32 = -1;
/// Bytes made linear when the headers are not: Ethernet, two VLAN tags,
/// IPv6 and a TCP header with options.
const PULL_BYTES: u32 = 128;
const BPF_NOEXIST: u64 = 1;

#[classifier]
pub fn netobs_flows(ctx: TcContext) -> i32 {
    observe(&ctx);
    TC_CONTINUE
}

#[inline(always)]
fn observe(ctx: &TcContext) {
    let len = ctx.len();
    let want = if len < PULL_BYTES { len } else { PULL_BYTES };
    if ctx.data_end() - ctx.data() < want as usize {
        // Best effort: without the headers the segment is not counted.
        let _ = ctx.pull_data(want);
    }
    // SAFETY: [data, data_end) is the linear part of the skb.
    let c = unsafe { Cursor::from_raw(ctx.data(), ctx.data_end()) };
    let Ok(outer) = parse_outer(&c) else { return };
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's slot, used by this program only, which does not
    // nest on one CPU.
    let scratch = unsafe { &mut *scratch };
    if !segment(&c, &outer, &mut scratch.seg) {
        return;
    }
    let s = &scratch.seg;
    let dir = flow_key(s, &mut scratch.key);
    let key = &scratch.key;
    let st = match FLOWS.get_ptr_mut(key) {
        Some(st) => st,
        None => {
            let _ = FLOWS.insert(key, &scratch.fresh, BPF_NOEXIST);
            match FLOWS.get_ptr_mut(key) {
                Some(st) => st,
                None => return,
            }
        }
    };
    // SAFETY: the entry stays valid while the program runs (RCU); a
    // concurrent update of the same flow can only lose a count.
    let seen = unsafe {
        (*st).last_ns = now_ns();
        (*st).update(dir, s)
    };
    let (kind, port, state, len, mss, acked, stalled) = match seen {
        Seen::Nothing => return,
        Seen::SynAgain => (kind::SYN, s.dst_port, tcp_state::SYN_SENT, 0, 0, 0, false),
        Seen::SynAckAgain => (kind::SYNACK, s.src_port, tcp_state::NEW_SYN_RECV, 0, 0, 0, false),
        Seen::DataAgain { len, segment_size, acked, receiver_acks, stalled } => {
            let state = if receiver_acks { tcp_state::ESTABLISHED } else { tcp_state::SYN_SENT };
            (kind::DATA, s.src_port, state, len, segment_size, acked as u64, stalled)
        }
    };
    // Keyed like the tracepoints': the receiver, and the service port (the
    // sender's for data and SYN-ACKs, the receiver's for SYNs); "local" is
    // the sender here, the host whose TCP resends.
    record(
        &FORWARDED,
        &Retransmission {
            key: RetransKey { addr: s.dst, family: s.family, kind, port },
            local: s.src,
            lport: s.src_port,
            rport: s.dst_port,
            state,
            len,
            mss,
            acked,
            stall: Stall::known(stalled),
        },
    );
}
