//! TCP retransmissions of this host's own connections, counted per
//! destination: what a PMTU blackhole, a silent drop or an unanswered
//! SYN-ACK leaves behind when no ICMP error comes back at all.
//!
//! Raw tracepoints attached by name (no tracefs mount, so an unprivileged
//! `watch` with CAP_BPF + CAP_PERFMON keeps them), like `icmp_send`: the
//! arguments are the tracepoints' own (`tcp_retransmit_skb(sk, skb, err)`,
//! `tcp_retransmit_synack(sk, req)`), and the structures are read with
//! `bpf_probe_read_kernel` at offsets user space took from the running
//! kernel's BTF ([`RetransLayout`]). Host-wide tracepoints: only sockets of
//! this network namespace are counted.
//!
//! Bounded: one LRU hash entry per (destination, kind, port); a scan of
//! many destinations evicts the least recently retransmitted to.

use crate::mem::Aligned;
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{map, raw_tracepoint},
    maps::{Array, LruHashMap},
    programs::RawTracePointContext,
};
use netobs_common::retrans::{MAX_DESTINATIONS, RetransCounts, RetransKey, RetransLayout, kind, tcp_state};

/// Filled by user space before the programs are attached.
#[map]
static RETRANS_LAYOUT: Array<RetransLayout> = Array::with_max_entries(1, 0);

/// Per-destination counts, read by user space once a second.
#[map]
static RETRANS: LruHashMap<RetransKey, RetransCounts> = LruHashMap::with_max_entries(MAX_DESTINATIONS, 0);

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const BPF_NOEXIST: u64 = 1;
/// [`RetransLayout`] offset meaning "not in this kernel".
const ABSENT: u32 = u32::MAX;

#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn netobs_retrans(ctx: RawTracePointContext) -> i32 {
    on_retransmit_skb(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "tcp_retransmit_synack")]
pub fn netobs_synack(ctx: RawTracePointContext) -> i32 {
    on_retransmit_synack(&ctx);
    0
}

/// [`crate::mem::read`] of a member whose offset may be [`ABSENT`].
#[inline(always)]
fn read<T>(base: u64, off: u32) -> Option<T> {
    if off == ABSENT {
        return None;
    }
    crate::mem::read(base, off)
}

/// Whether the socket belongs to the namespace `watch` runs in.
#[inline(always)]
fn in_our_netns(l: &RetransLayout, sk: u64) -> bool {
    if l.netns_inum == 0 {
        return true;
    }
    let Some(net) = read::<u64>(sk, l.skc_net).filter(|n| *n != 0) else { return false };
    read::<u32>(net, l.net_inum) == Some(l.netns_inum)
}

/// A socket's peer and local address (IPv4 in the first four bytes).
#[derive(Clone, Copy, Default)]
struct Addrs {
    remote: [u8; 16],
    local: [u8; 16],
    family: u8,
}

/// The remote and local addresses of a `sock_common` (a socket or a
/// request socket); IPv4-mapped IPv6 addresses become IPv4, as the peer
/// sees them. On an aligned slot (see [`Aligned`]).
#[inline(always)]
fn addresses(l: &RetransLayout, sk: u64) -> Option<Aligned<Addrs>> {
    let family = read::<u16>(sk, l.skc_family)?;
    let mut a = Aligned(Addrs::default());
    if family == AF_INET6 {
        let r = read::<Aligned<[u8; 16]>>(sk, l.skc_v6_daddr)?;
        let mapped =
            r[0] | r[1] | r[2] | r[3] | r[4] | r[5] | r[6] | r[7] | r[8] | r[9] == 0 && r[10] == 0xff && r[11] == 0xff;
        if !mapped {
            let lo = read::<Aligned<[u8; 16]>>(sk, l.skc_v6_rcv_saddr).unwrap_or_default();
            a.remote = *r;
            a.local = *lo;
            a.family = 6;
            return Some(a);
        }
    } else if family != AF_INET {
        return None;
    }
    let r = read::<Aligned<[u8; 4]>>(sk, l.skc_daddr)?;
    let lo = read::<Aligned<[u8; 4]>>(sk, l.skc_rcv_saddr).unwrap_or_default();
    for i in 0..4 {
        a.remote[i] = r[i];
        a.local[i] = lo[i];
    }
    a.family = 4;
    Some(a)
}

/// What one retransmission adds to its destination's entry.
///
/// Laid out so every field and every pair of neighbours LLVM may merge
/// into one word store starts on its own alignment: with misaligned
/// access allowed, two zeroed `u32`s at a 4-mod-8 offset became one
/// misaligned 8-byte stack store, which the verifier refuses.
#[repr(C)]
pub(crate) struct Retransmission {
    pub(crate) acked: u64,
    pub(crate) local: [u8; 16],
    pub(crate) key: RetransKey,
    pub(crate) lport: u16,
    pub(crate) rport: u16,
    /// Payload bytes (data only).
    pub(crate) len: u32,
    pub(crate) mss: u32,
    pub(crate) state: u8,
    pub(crate) stall: Stall,
}

/// How a data retransmission is judged stalled (no progress since the
/// previous one).
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stall {
    /// Stalled when the connection's acknowledged bytes did not move since
    /// the destination's previous retransmission (the tracepoints, on a
    /// kernel whose BTF lacks `icsk_retransmits`).
    ByAcked,
    /// Known to be stalled, or not (the kernel's timeout count, or the
    /// flow tracker's "same segment again", see `netobs_common::flows`).
    /// Fieldless: a payload left undefined in the other variant made LLVM
    /// store an unset register, which the verifier refuses.
    Yes,
    No,
}

impl Stall {
    #[inline(always)]
    pub(crate) fn known(stalled: bool) -> Stall {
        if stalled { Stall::Yes } else { Stall::No }
    }
}

/// Adds `r` to its destination's entry in `map` (this module's
/// [`RETRANS`], or the forwarded flows' `FORWARDED`).
#[inline(always)]
pub(crate) fn record(map: &LruHashMap<RetransKey, RetransCounts>, r: &Retransmission) {
    let full = r.key.kind != kind::DATA || (r.mss > 0 && r.len >= r.mss);
    let small = r.key.kind == kind::DATA && r.len > 0 && !full;
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(v) = map.get_ptr_mut(&r.key) {
        // SAFETY: the entry stays valid while the program runs (RCU).
        // Plain increments (this target has no atomic fetch-add in core):
        // two CPUs retransmitting to one destination in the same instant
        // may lose one count, only ever an undercount; the rest is
        // "latest wins".
        unsafe {
            let stalled = full
                && r.key.kind == kind::DATA
                && match r.stall {
                    Stall::ByAcked => (*v).acked == r.acked,
                    Stall::Yes => true,
                    Stall::No => false,
                };
            if full {
                (*v).full += 1;
            }
            if small {
                (*v).small += 1;
            }
            if stalled {
                (*v).stalled += 1;
            }
            (*v).acked = r.acked;
            (*v).last_ns = now;
            (*v).mss = r.mss;
            if r.len > (*v).max_len {
                (*v).max_len = r.len;
            }
            for i in 0..16 {
                (*v).local[i] = r.local[i];
            }
            (*v).lport = r.lport;
            (*v).rport = r.rport;
            (*v).state = r.state;
        }
        return;
    }
    let v = RetransCounts {
        full: full as u64,
        small: small as u64,
        stalled: (full && r.stall == Stall::Yes) as u64,
        acked: r.acked,
        first_ns: now,
        last_ns: now,
        mss: r.mss,
        max_len: r.len,
        local: r.local,
        lport: r.lport,
        rport: r.rport,
        state: r.state,
        _pad: [0; 3],
    };
    // Another CPU may have made the entry meanwhile: its count stands,
    // this one is lost (rare, and only ever an undercount).
    let _ = map.insert(&r.key, &v, BPF_NOEXIST);
}

#[inline(always)]
fn on_retransmit_skb(ctx: &RawTracePointContext) {
    let Some(l) = RETRANS_LAYOUT.get(0) else { return };
    if l.ready == 0 {
        return;
    }
    let sk: u64 = ctx.arg(0);
    let skb: u64 = ctx.arg(1);
    let err: u64 = ctx.arg(2);
    // A retransmission that failed locally (no memory, queue busy) never
    // reached the wire.
    if sk == 0 || skb == 0 || err as i32 != 0 || !in_our_netns(l, sk) {
        return;
    }
    let Some(state) = read::<u8>(sk, l.skc_state) else { return };
    let Some(a) = addresses(l, sk) else { return };
    let (family, remote, local) = (a.family, a.remote, a.local);
    let lport = read::<u16>(sk, l.skc_num).unwrap_or(0);
    let rport = u16::from_be(read::<u16>(sk, l.skc_dport).unwrap_or(0));
    let syn = state == tcp_state::SYN_SENT;
    let key = RetransKey {
        addr: remote,
        family,
        kind: if syn { kind::SYN } else { kind::DATA },
        port: if syn { rport } else { lport },
    };
    record(
        &RETRANS,
        &Retransmission {
            key,
            local,
            lport,
            rport,
            state,
            len: if syn { 0 } else { read::<u32>(skb, l.skb_len).unwrap_or(0) },
            mss: read::<u32>(sk, l.tp_mss_cache).unwrap_or(0),
            acked: read::<u64>(sk, l.tp_bytes_acked).unwrap_or(0),
            // The timer's second resend of the same data in a row (it
            // counts before it resends): the same data again without
            // progress. Recovery from congestion resends under ACKs that
            // move, and so stays at 0 or 1.
            stall: match read::<u8>(sk, l.icsk_retransmits) {
                Some(n) => Stall::known(n >= 2),
                None => Stall::ByAcked,
            },
        },
    );
}

#[inline(always)]
fn on_retransmit_synack(ctx: &RawTracePointContext) {
    let Some(l) = RETRANS_LAYOUT.get(0) else { return };
    if l.ready == 0 {
        return;
    }
    let listener: u64 = ctx.arg(0);
    let req: u64 = ctx.arg(1);
    if listener == 0 || req == 0 || !in_our_netns(l, listener) {
        return;
    }
    let Some(a) = addresses(l, req) else { return };
    let (family, remote, local) = (a.family, a.remote, a.local);
    let lport = read::<u16>(req, l.skc_num).unwrap_or(0);
    let rport = u16::from_be(read::<u16>(req, l.skc_dport).unwrap_or(0));
    record(
        &RETRANS,
        &Retransmission {
            key: RetransKey { addr: remote, family, kind: kind::SYNACK, port: lport },
            local,
            lport,
            rport,
            state: tcp_state::NEW_SYN_RECV,
            len: 0,
            mss: 0,
            acked: 0,
            stall: Stall::No,
        },
    );
}
