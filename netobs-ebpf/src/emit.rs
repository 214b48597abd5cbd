//! Getting a sampled event to user space: the token bucket decides whether
//! it is written at all; it is filled in this CPU's [`EventStage`] and goes
//! to the ring buffer at once (a lone event) or batched (under a flood).

use aya_ebpf::bindings::BPF_RB_NO_WAKEUP;
use netobs_common::event::{
    DATAPATH_EVENT_LEN, Event, EventStage, IcmpCapture, STAGE_AREA_BYTES, STAGE_EVENTS, STAGE_LAST_AT,
    STAGE_MAX_AGE_NS, STAGE_SPARE_AT, record_len, stat,
};

use crate::maps::{EVENTS, STAGE, Stats, submit_flags, take_fair_token, take_token};

/// An event being written. From [`begin`]; hand it back to [`finish`].
///
/// Deliberately holds no slot number or nesting depth: those live in the
/// stage, so the verifier's state while `fill` runs is the same whether we
/// own the stage or interrupted its owner, and it walks the fill code once.
pub struct Pending {
    stage: *mut EventStage,
    now: u64,
    st: Stats,
}

/// Samples one event at time `now`: takes a token and returns a zeroed,
/// time-stamped event to fill, or `None` (counted: sampled out). Call
/// [`finish`] right after filling.
///
/// The event is always built in the stage (memory only this CPU touches),
/// never in the ring buffer itself, so a half-written record is never
/// visible to the reader. (`begin`/`finish` rather than a closure: a
/// closure this large is not inlined, and an outlined fill turns its copies
/// into byte loops.)
#[inline(always)]
pub fn begin(now: u64) -> Option<(&'static mut Event, Pending)> {
    let st = Stats::this_cpu();
    let stage = this_stage(st)?;
    // SAFETY: this CPU's stage; the borrow ends here.
    if !take_token(unsafe { &mut (*stage).buckets }, now) {
        st.add(stat::SAMPLED_OUT);
        return None;
    }
    stage_event::<true>(stage, now, st)
}

/// [`begin`] for an event about a packet from one reporter (or sender):
/// it also needs a token from one of that reporter's fair-sampling buckets
/// (`hash`, from `netobs_common::sample::source_hash`), so one reporter's
/// flood cannot take every token. A refusal is counted in `st`, the
/// caller's statistics block (no second lookup).
///
/// The hash is computed by the caller even when the global bucket will
/// refuse: measured, a hash computed only past the global bucket saved
/// nothing under a flood and cost the event path 8-12 ns (its inputs stay
/// live across the bucket arithmetic).
#[inline(always)]
pub fn begin_fair(now: u64, hash: u32, st: Stats) -> Option<(&'static mut Event, Pending)> {
    begin_fair_zeroing::<true>(now, hash, st)
}

/// [`begin_fair`] for an ICMP error's [`IcmpCapture`]: only its header is
/// zeroed, since only the header and the words the copy fills are written
/// out ([`IcmpCapture::record_len`]); the caller must fill it with
/// `netobs_common::parse::capture_icmp`.
#[inline(always)]
pub fn begin_capture(now: u64, hash: u32, st: Stats) -> Option<(&'static mut IcmpCapture, Pending)> {
    let (ev, pending) = begin_fair_zeroing::<false>(now, hash, st)?;
    Some((ev.capture_mut(), pending))
}

/// [`begin_fair`], zeroing the slot whole or only a capture's header
/// ([`stage_event`]).
#[inline(always)]
fn begin_fair_zeroing<const WHOLE: bool>(now: u64, hash: u32, st: Stats) -> Option<(&'static mut Event, Pending)> {
    let stage = this_stage(st)?;
    // SAFETY: this CPU's stage; the borrow ends here.
    if !take_fair_token(unsafe { &mut (*stage).buckets }, now, hash) {
        st.add(stat::SAMPLED_OUT);
        return None;
    }
    stage_event::<WHOLE>(stage, now, st)
}

/// This CPU's stage: one map lookup for the tokens and the slot.
#[inline(always)]
fn this_stage(st: Stats) -> Option<*mut EventStage> {
    let stage = STAGE.get_ptr_mut(0);
    if stage.is_none() {
        // Cannot happen (index 0 of a 1-entry array); counted if it does.
        st.add(stat::RINGBUF_FULL);
    }
    stage
}

/// A time-stamped slot of the stage at `stage_ptr`, for a caller that has
/// taken the token: zeroed whole (`WHOLE`), or only an [`IcmpCapture`]'s
/// header (the rest is either filled or never written out).
#[inline(always)]
fn stage_event<const WHOLE: bool>(
    stage_ptr: *mut EventStage,
    now: u64,
    st: Stats,
) -> Option<(&'static mut Event, Pending)> {
    // SAFETY: this CPU's value. A program that interrupts us on this CPU
    // sees `busy` and uses the spare slot; other CPUs have their own.
    let stage = unsafe { &mut *stage_ptr };
    let depth = stage.busy;
    if depth >= 2 {
        // A third level of nesting: no such context exists; counted anyway.
        st.add(stat::RINGBUF_FULL);
        return None;
    }
    stage.busy = depth + 1;
    if depth == 0 {
        if stage.count as usize >= STAGE_EVENTS || stage.fill as usize > STAGE_LAST_AT {
            flush(stage, st);
        }
        stage.at = stage.fill;
    } else {
        stage.at = STAGE_SPARE_AT as u32;
    }
    // SAFETY: a plain read of our own field; volatile so the offset comes
    // back from memory as an unknown number and both paths meet here.
    let at = unsafe { core::ptr::read_volatile(&stage.at) } as usize;
    let Some(ev) = event_at(stage, at) else {
        stage.busy = depth;
        return None;
    };
    if WHOLE {
        crate::mem::zero(ev);
    } else {
        crate::mem::zero(ev.capture_mut().header_mut());
    }
    ev.ts_ns = now;
    // SAFETY: the slot stays valid (map memory) and ours until `finish`
    // clears `busy`; nothing else on this CPU writes it meanwhile.
    let ev = unsafe { &mut *(ev as *mut Event) };
    Some((ev, Pending { stage: stage_ptr, now, st }))
}

/// The event-sized slot at byte `at` of the stage's area: `None` unless it
/// is 8-aligned and lies wholly inside (a batch offset up to
/// [`STAGE_LAST_AT`], or the spare slot).
#[inline(always)]
fn event_at(stage: &mut EventStage, at: usize) -> Option<&mut Event> {
    if at > STAGE_SPARE_AT || !at.is_multiple_of(8) {
        return None;
    }
    let word = stage.area.get_mut(at / 8)?;
    // SAFETY: `at + DATAPATH_EVENT_LEN <= STAGE_AREA_BYTES` (checked above,
    // asserted below), the area is 8-aligned map memory of plain words,
    // and an Event is plain data valid for any bytes; the borrow is the
    // stage's.
    Some(unsafe { &mut *(word as *mut u64).cast::<Event>() })
}

const _: () = assert!(STAGE_SPARE_AT + DATAPATH_EVENT_LEN <= STAGE_AREA_BYTES);

/// Bytes of the event in the slot at `at`, as it goes out
/// ([`record_len`], never more than [`DATAPATH_EVENT_LEN`]): known only
/// once it is filled.
#[inline(always)]
fn written_len(stage: &mut EventStage, at: usize) -> usize {
    match event_at(stage, at) {
        Some(ev) => record_len(ev.kind, ev.capture_mut().captured),
        None => DATAPATH_EVENT_LEN,
    }
}

/// Sends the filled event on: at once (a lone event, or one written
/// through the spare slot) or with the next batch.
#[inline(always)]
pub fn finish(p: Pending) {
    // SAFETY: from `begin`; we still hold `busy`.
    let stage = unsafe { &mut *p.stage };
    let nested = stage.busy >= 2;
    if nested {
        let len = written_len(stage, STAGE_SPARE_AT);
        write(stage, STAGE_SPARE_AT, len, 1, BPF_RB_NO_WAKEUP as u64, p.st);
        stage.busy = 1;
    } else {
        let at = stage.at as usize;
        let len = written_len(stage, at);
        batch_or_write(stage, at, len, p.now, p.st);
        stage.busy = 0;
    }
}

/// The owner's event is at `at`, `len` bytes: write it (and anything
/// staged before it) out now, or leave it for a batch.
#[inline(always)]
fn batch_or_write(stage: &mut EventStage, at: usize, len: usize, now: u64, st: Stats) {
    // The first event in a clock tick on this CPU is not part of a flood:
    // it goes out at once, so quiet periods see no delay.
    let first = stage.count == 0;
    let lone = first && now != stage.last_ns;
    stage.last_ns = now;
    if first {
        stage.first_ns = now;
    }
    stage.count += 1;
    stage.fill = (at + len) as u32;
    let batch = crate::config!(event_batch);
    if lone || stage.count >= batch || now.wrapping_sub(stage.first_ns) >= STAGE_MAX_AGE_NS {
        flush(stage, st);
    }
}

/// Writes the staged events as one ring-buffer record and empties the stage.
/// The caller holds `busy`.
#[inline(always)]
fn flush(stage: &mut EventStage, st: Stats) {
    let (n, len) = (stage.count as usize, stage.fill as usize);
    stage.count = 0;
    stage.fill = 0;
    if n == 0 || n > STAGE_EVENTS || len == 0 || len > STAGE_SPARE_AT {
        return;
    }
    let flags = submit_flags(n as u64, stage, st);
    write(stage, 0, len, n, flags, st);
}

/// Copies the `len` bytes at `at` of the stage's area (`n` events) into the
/// ring buffer as one record.
///
/// The size is a variable the verifier must see bounded, so it is masked
/// rather than trusted from the caller's check (a bound checked on one
/// register does not always survive the compiler's register choices); the
/// spare slot (`at` past the batch) always goes out alone.
#[inline(always)]
fn write(stage: &EventStage, at: usize, len: usize, n: usize, flags: u64, st: Stats) {
    /// A mask that bounds a batch's length for the verifier.
    const BATCH_MASK: usize = STAGE_SPARE_AT.next_power_of_two() - 1;
    const { assert!(STAGE_AREA_BYTES.is_multiple_of(8)) };
    // SAFETY: the area is plain words; seen as its bytes for the copy.
    let area: &[u8; STAGE_AREA_BYTES] = unsafe { &*stage.area.as_ptr().cast::<[u8; STAGE_AREA_BYTES]>() };
    let result = if at == 0 {
        // 1..=BATCH_MASK + 1 bytes, as the verifier can see it; the slice
        // says more.
        let len = (len.wrapping_sub(1) & BATCH_MASK) + 1;
        match area.get(..len) {
            Some(bytes) => EVENTS.output::<[u8]>(bytes, flags),
            None => return,
        }
    } else {
        let len = (len.wrapping_sub(1) & 255) + 1;
        match area.get(STAGE_SPARE_AT..STAGE_SPARE_AT + len) {
            Some(bytes) => EVENTS.output::<[u8]>(bytes, flags),
            None => return,
        }
    };
    match result {
        Ok(()) => st.add_n(stat::EVENTS, n as u64),
        Err(_) => st.add_n(stat::RINGBUF_FULL, n as u64),
    }
}

/// User space's periodic flush (run on a chosen CPU through
/// BPF_PROG_TEST_RUN): writes out a partial batch left at the end of a
/// flood. Leaves the stage alone if it interrupted a program using it.
#[inline(always)]
pub fn flush_this_cpu() {
    let Some(stage) = STAGE.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's value; see `emit`.
    let stage = unsafe { &mut *stage };
    if stage.busy != 0 {
        return;
    }
    stage.busy = 1;
    flush(stage, Stats::this_cpu());
    stage.busy = 0;
}
