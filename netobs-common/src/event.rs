//! Records shared by the kernel programs and user space: ring-buffer events,
//! map keys, global statistics slots and load-time configuration.
//!
//! All are `#[repr(C)]` with explicit padding fields so their layout is the
//! same on both sides (checked by the `const` assertions below).

/// What an [`Event`] reports.
pub mod kind {
    /// An ICMP or ICMPv6 error (or redirect) arrived on an interface.
    pub const ICMP_ERROR: u8 = 1;
    /// A DF-set IPv4 or an IPv6 packet too big for its egress MTU was seen.
    pub const DF_OVERSIZED: u8 = 2;
    /// This host itself sent an ICMP error (TC egress; errors it only
    /// forwards are not reported there).
    pub const ICMP_SENT: u8 = 3;
    /// The kernel generated an ICMP error (`icmp:icmp_send` tracepoint,
    /// IPv4): it may still be dropped by this host's own firewall before it
    /// reaches an interface.
    pub const ICMP_GENERATED: u8 = 4;
    /// Datapath records only, never an [`Event`](super::Event) user space
    /// hands on: an ICMP error's bytes ([`IcmpCapture`](super::IcmpCapture)),
    /// decoded by user space into [`ICMP_ERROR`] (or [`ICMP_SENT`] at egress).
    pub const ICMP_CAPTURE: u8 = 5;
}

/// Which program saw the packet.
pub mod hook {
    pub const XDP: u8 = 1;
    pub const TC_INGRESS: u8 = 2;
    pub const TC_EGRESS: u8 = 3;
    /// The `icmp:icmp_send` tracepoint (no interface: ifindex 0).
    pub const ICMP_SEND_TRACEPOINT: u8 = 4;
}

/// Bits of [`PacketInfo::have`]: which fields the (possibly truncated) quote
/// actually contained. A field whose bit is clear is zero and means nothing.
pub mod have {
    /// The full fixed IP header (addresses, protocol, TTL, length, id).
    pub const IP: u16 = 1 << 0;
    /// Source and destination ports (TCP/UDP) or echo id/sequence (ICMP).
    pub const PORTS: u16 = 1 << 1;
    /// TCP sequence number / ICMP echo sequence.
    pub const SEQ: u16 = 1 << 2;
    /// TCP flags (needs 14 bytes of TCP header).
    pub const TCP_FLAGS: u16 = 1 << 3;
    /// The quoted packet is a non-first fragment: no transport header.
    pub const LATER_FRAGMENT: u16 = 1 << 4;
    /// IPv4 options were present in the quoted header.
    pub const IP_OPTIONS: u16 = 1 << 5;
    /// IPv6 extension headers were walked to reach the transport header.
    pub const EXT_HEADERS: u16 = 1 << 6;
    /// The quoted transport protocol was ICMP echo (ports hold id / 0).
    pub const ECHO: u16 = 1 << 7;
    /// The IPv6 extension-header walk gave up (too many / truncated).
    pub const EXT_WALK_INCOMPLETE: u16 = 1 << 8;
}

/// Bits of [`Event::flags`].
pub mod flags {
    /// The ICMP message announced an MTU (v4 3/4, v6 Packet Too Big).
    pub const HAS_MTU: u8 = 1 << 0;
    /// A redirect gateway is present.
    pub const HAS_GATEWAY: u8 = 1 << 1;
    /// A parameter-problem pointer is present.
    pub const HAS_POINTER: u8 = 1 << 2;
    /// The RFC 4884 length field was non-zero (extension objects follow).
    pub const HAS_RFC4884: u8 = 1 << 3;
    /// The quote stopped before what names the flow: no IP header, an
    /// IPv6 extension-header walk that did not finish, no TCP/UDP ports, or
    /// (other protocols) fewer than the 8 transport bytes RFC 792 promises.
    /// Never set for a quoted later fragment (it has no transport header).
    pub const QUOTE_TRUNCATED: u8 = 1 << 4;
    /// The RFC 4884 extension structure went on past the bytes carried in
    /// [`Event::ext`](super::Event::ext) (more than
    /// [`CARRY_MAX`](crate::ext::CARRY_MAX), or past the frame's first
    /// buffer).
    pub const EXT_CUT: u8 = 1 << 5;
    /// The parser looked for RFC 4884 extension bytes ([`Event::ext`]):
    /// the host parser does, the datapath does not (verifier limits), so a
    /// kernel event with HAS_RFC4884 says the objects were not carried.
    pub const EXT_EXAMINED: u8 = 1 << 6;
    /// The datapath copied fewer bytes of the message than it had
    /// ([`CAPTURE_BYTES`](super::CAPTURE_BYTES)), and what names the flow
    /// lay past them: the missing fields are netobs's cut, not the
    /// reporter's ([`QUOTE_TRUNCATED`] is then clear).
    pub const CAPTURE_CUT: u8 = 1 << 7;
}

/// The packet an event is about: for an ICMP error the quoted (offending)
/// packet, for a DF-oversized event the packet itself. 56 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketInfo {
    /// Source address; IPv4 in the first 4 bytes, the rest zero.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// TCP/UDP ports; for ICMP echo `src_port` holds the identifier.
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP sequence number or ICMP echo sequence.
    pub seq: u32,
    /// IPv4 identification, or the IPv6 fragment id when there was one.
    pub ip_id: u32,
    /// IPv4 total length, or IPv6 payload length + 40.
    pub total_len: u16,
    /// IPv4 flags+offset as on the wire; IPv6: offset<<3 | M flag.
    pub frag: u16,
    /// 4 or 6 (0 when no IP header was present).
    pub family: u8,
    /// Transport protocol (TCP 6, UDP 17, ICMP 1, ICMPv6 58, ...).
    pub protocol: u8,
    /// TTL / hop limit as it was when the reporter received the packet.
    pub ttl: u8,
    pub tcp_flags: u8,
    /// [`have`] bits.
    pub have: u16,
    pub _pad: u16,
}

/// One event: 144 bytes in the datapath ([`DATAPATH_EVENT_LEN`], the
/// ring-buffer record), 272 on the host, which adds the RFC 4884 bytes
/// ([`Event::ext`]).
///
/// The extension bytes are copied by the host parser only (`read`, the
/// tests: see `parse::parse_icmp_error`), so the datapath's event has no
/// room for them: zeroing and copying 128 bytes it never fills cost the
/// ICMP-error path about 70 ns a packet (kernel average 176 ns with
/// them, 108 without, `cargo xtask bench datapath`). User space reads the
/// datapath's records into host events with empty extension bytes
/// ([`Event::from_record`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// The packet programs' clock (`netobs-ebpf` `clock.rs`): CLOCK_MONOTONIC_COARSE,
    /// to a kernel tick; 0 in host parsing.
    pub ts_ns: u64,
    /// Interface the packet was seen on.
    pub ifindex: u32,
    /// [`kind`] value.
    pub kind: u8,
    /// [`hook`] value.
    pub hook: u8,
    /// ICMP type and code (ICMPv6 numbering for family 6).
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Outer header: who sent the ICMP error, to whom, with what TTL.
    pub outer_src: [u8; 16],
    pub outer_dst: [u8; 16],
    pub outer_family: u8,
    pub outer_ttl: u8,
    /// Number of VLAN tags in front of the IP header.
    pub vlan_depth: u8,
    /// [`flags`] bits.
    pub flags: u8,
    /// Announced MTU (frag-needed / Packet Too Big), or the egress MTU of a
    /// DF-oversized packet.
    pub mtu: u32,
    /// Parameter-problem pointer, or the egress ifindex of a DF-oversized
    /// packet.
    pub aux: u32,
    /// RFC 4884 "length of original datagram" field, in bytes.
    pub rfc4884_len: u16,
    /// Bytes of the quoted packet present in the message (after the ICMP
    /// header), capped at 65535.
    pub quote_len: u16,
    /// Redirect gateway (v4 in the first 4 bytes) / ICMPv6 redirect target.
    pub gateway: [u8; 16],
    /// Length of the whole outer packet from the IP header on.
    pub outer_len: u32,
    /// Bytes of [`Event::ext`] that hold extension data (multiple of 4).
    pub ext_len: u16,
    pub _pad: u16,
    pub inner: PacketInfo,
    /// The RFC 4884 extension structure (header and objects) of an ICMP
    /// error, its first [`ext_len`](Event::ext_len) bytes: filled when the
    /// length field is set ([`flags::HAS_RFC4884`]) or a version-2 header
    /// sits at the pre-RFC offset 128 (see [`crate::ext::capture`]). 4-byte
    /// words. Host only: never in the datapath's record.
    #[cfg(not(target_arch = "bpf"))]
    pub ext: [[u8; 4]; crate::ext::CARRY_WORDS],
}

/// Bytes of the datapath's event: [`Event`] up to its host-only
/// extension bytes.
pub const DATAPATH_EVENT_LEN: usize = 144;

/// Words of an ICMP error an [`IcmpCapture`] carries.
pub const CAPTURE_WORDS: usize = 15;
/// Bytes of an ICMP error an [`IcmpCapture`] carries, from the IP header
/// on: 120, enough for the outer header, the ICMP header and a quote that
/// names its flow (IPv4 with options on both headers: 20 + 40 + 8 + 20 +
/// 40 + 14 = 142 is the rare case that does not fit; IPv6 with two
/// extension headers in the quote: 40 + 8 + 40 + 16 + 14 = 118 does).
pub const CAPTURE_BYTES: usize = CAPTURE_WORDS * 8;

/// An ICMP error as the datapath writes it: its bytes, which user space
/// parses with the same [`crate::parse::parse_icmp_error`] the host tests
/// run (`netobs_common::parse::decode_icmp_capture`).
///
/// Why bytes and not a parsed [`Event`]: the datapath pays for every
/// instruction of every error, user space only for the sampled ones.
/// Copying at most 120 bytes in five bounds-checked blocks costs less than
/// parsing them (A/B, `netobs-bench profile ICMP 120`: kernel average 83
/// against 89 ns an event), and takes the quote parser out of the
/// verifier's walk (netobs_xdp: 382k instructions verified, now 62k). It has an [`Event`]'s size and its first 14 bytes (time,
/// interface, kind, hook), so the two share the stage's slots and the ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IcmpCapture {
    pub ts_ns: u64,
    pub ifindex: u32,
    /// [`kind::ICMP_CAPTURE`].
    pub kind: u8,
    pub hook: u8,
    pub vlan_depth: u8,
    pub _pad: u8,
    /// Bytes of the IP packet from its header on that the datapath could
    /// read (its first buffer, up to the IP length), capped at 65535.
    pub avail: u16,
    /// Of those, bytes in [`IcmpCapture::bytes`] (at most [`CAPTURE_BYTES`]).
    pub captured: u16,
    pub _pad2: u32,
    /// The packet from its IP header on, as little-endian words.
    pub bytes: [u64; CAPTURE_WORDS],
}

impl Event {
    /// This slot seen as an [`IcmpCapture`], for the datapath to fill.
    #[inline(always)]
    pub fn capture_mut(&mut self) -> &mut IcmpCapture {
        // SAFETY: both are repr(C) plain integers with alignment 8, an
        // IcmpCapture is no larger than an Event (asserted below), and any
        // bytes are valid for either; the borrow is exclusive.
        unsafe { &mut *(self as *mut Event).cast::<IcmpCapture>() }
    }
}

/// Bytes of an [`IcmpCapture`] before its copy of the packet.
pub const CAPTURE_HEADER_LEN: usize = core::mem::offset_of!(IcmpCapture, bytes);

impl IcmpCapture {
    /// The words before the copy (time, interface, kind, lengths), for the
    /// datapath to zero: the copy's words are all written or never sent.
    #[inline(always)]
    pub fn header_mut(&mut self) -> &mut [u64; CAPTURE_HEADER_LEN / 8] {
        // SAFETY: the struct starts with CAPTURE_HEADER_LEN bytes of plain
        // integers (asserted below), alignment 8, and any bytes are valid
        // for them; the borrow is exclusive.
        unsafe { &mut *(self as *mut IcmpCapture).cast::<[u64; CAPTURE_HEADER_LEN / 8]>() }
    }

    /// Bytes of the datapath's record of a capture with `captured` bytes
    /// copied: its header and the words the copy filled (the last one
    /// zero-padded). The rest of the struct is never written out: for the
    /// usual error (a 28-byte quote, or a whole SYN-ACK) that is 80 or 96
    /// bytes instead of 144, a third less to zero and to copy into the
    /// ring, and more events in the same ring. `captured` past
    /// [`CAPTURE_BYTES`] (no datapath writes that) counts as full.
    #[inline(always)]
    pub fn record_len(captured: u16) -> usize {
        let words = (captured as usize).div_ceil(8);
        CAPTURE_HEADER_LEN + 8 * if words > CAPTURE_WORDS { CAPTURE_WORDS } else { words }
    }
}

/// Bytes of the datapath record that starts with this kind (the byte at
/// [`Event::kind`]'s offset) and, for a capture, this `captured` count:
/// [`IcmpCapture::record_len`], or a whole [`DATAPATH_EVENT_LEN`] event.
#[inline(always)]
pub fn record_len(kind: u8, captured: u16) -> usize {
    if kind == kind::ICMP_CAPTURE { IcmpCapture::record_len(captured) } else { DATAPATH_EVENT_LEN }
}

/// An ICMP error counter as user space reads it back from the bounded
/// arrays (see [`crate::counters`]): `ifindex` is
/// [`crate::counters::OTHER_IFINDEX`] for interfaces without a slot,
/// `icmp_code` [`crate::counters::OTHER_CODE`] for codes beyond the known
/// ones of the type. 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IcmpCounterKey {
    pub ifindex: u32,
    pub family: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// [`hook`] value: errors seen arriving (XDP / TC ingress) or sent (egress).
    pub hook: u8,
}

/// A DF-oversized counter as user space reads it back (ifindexes as in
/// [`IcmpCounterKey`]). 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DfCounterKey {
    pub ingress_ifindex: u32,
    pub egress_ifindex: u32,
}

/// Slots of the per-CPU global statistics array.
pub mod stat {
    /// Every packet the program ran on.
    pub const PACKETS: u32 = 0;
    pub const IPV4: u32 = 1;
    pub const IPV6: u32 = 2;
    /// ICMP/ICMPv6 errors recognised (all types counted in the counter map).
    pub const ICMP_ERRORS: u32 = 3;
    /// Non-error ICMP (echo, ND, ...): seen and passed.
    pub const ICMP_OTHER: u32 = 4;
    /// Packets above the smallest-MTU threshold that paid for a FIB lookup.
    pub const FIB_LOOKUPS: u32 = 5;
    /// DF-oversized packets found.
    pub const DF_OVERSIZED: u32 = 6;
    /// Events written to the ring buffer.
    pub const EVENTS: u32 = 7;
    /// Events held back by the per-CPU token bucket.
    pub const SAMPLED_OUT: u32 = 8;
    /// Ring buffer full: reservation failed.
    pub const RINGBUF_FULL: u32 = 9;
    /// Packets too short / malformed to classify (counted, passed).
    pub const MALFORMED: u32 = 10;
    /// Sampled ICMP errors whose quote was cut before the transport ports.
    /// Counted by user space, which parses the datapath's copies
    /// ([`IcmpCapture`]); the kernel's slot stays 0 and
    /// `netobs::kernel::CounterReader` adds user space's count to it.
    pub const QUOTE_TRUNCATED: u32 = 11;
    /// Counter map full: an update failed.
    pub const MAP_FULL: u32 = 12;
    /// Packets above the smallest-MTU threshold answered from the per-CPU
    /// route cache instead of a FIB lookup.
    pub const FIB_CACHE_HITS: u32 = 13;
    /// Packets at TC egress that this host forwards rather than sends (no
    /// local socket): left alone, since egress reports what the host
    /// itself sends; forwarded traffic is seen where it arrives.
    pub const EGRESS_FORWARDED: u32 = 14;
    /// FIB lookups the kernel answered with an error (for instance
    /// `BPF_FIB_LOOKUP_SKIP_NEIGH` on kernels before 6.3, after the retry
    /// without it): never cached, the packet is not checked.
    pub const FIB_ERRORS: u32 = 15;
    /// Number of slots.
    pub const COUNT: u32 = 16;

    /// Names for user space, indexed by slot.
    pub const NAMES: [&str; COUNT as usize] = [
        "packets",
        "ipv4",
        "ipv6",
        "icmp_errors",
        "icmp_other",
        "fib_lookups",
        "df_oversized",
        "events",
        "sampled_out",
        "ringbuf_full",
        "malformed",
        "quote_truncated",
        "map_full",
        "fib_cache_hits",
        "egress_forwarded",
        "fib_errors",
    ];
}

/// The global statistics of one CPU: `counts[slot]` for each [`stat`]
/// slot, one block of [`StatsByCpu`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatBlock {
    pub counts: [u64; stat::COUNT as usize],
}

// SAFETY: a repr(C) array of plain integers.
#[cfg(feature = "user")]
unsafe impl aya::Pod for StatBlock {}

/// CPUs with a [`StatBlock`] of their own in [`StatsByCpu`] (a power of
/// two). A CPU numbered higher shares the block of its number modulo this:
/// its counts still add up in the sums, only increments racing on the
/// shared block can be lost.
pub const STATS_CPUS: usize = 1024;

/// Every CPU's statistics, indexed by CPU number: the eBPF object's
/// zero-initialised global (its `.bss` section, [`STATS_MAP`] to user
/// space). A program finds its CPU's block by address (the CPU number is
/// one inlined load) instead of a per-CPU map lookup, the one map access
/// every packet used to pay. A block is two cache lines long (128 bytes),
/// so neighbouring CPUs share at most the line where two blocks meet.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StatsByCpu {
    pub cpus: [StatBlock; STATS_CPUS],
}

impl StatsByCpu {
    pub const ZERO: StatsByCpu = StatsByCpu { cpus: [StatBlock { counts: [0; stat::COUNT as usize] }; STATS_CPUS] };

    /// Each slot summed over all CPUs.
    pub fn sum(&self) -> [u64; stat::COUNT as usize] {
        let mut out = [0u64; stat::COUNT as usize];
        for block in &self.cpus {
            out.iter_mut().zip(block.counts.iter()).for_each(|(s, v)| *s = s.wrapping_add(*v));
        }
        out
    }
}

/// The map user space reads [`StatsByCpu`] from: the object's `.bss`.
pub const STATS_MAP: &str = ".bss";

const _: () = assert!(STATS_CPUS.is_power_of_two() && core::mem::size_of::<StatBlock>().is_multiple_of(64));

// SAFETY: a repr(C) array of plain integers.
#[cfg(feature = "user")]
unsafe impl aya::Pod for StatsByCpu {}

/// Load-time settings, written into the program's `.rodata` by the loader so
/// the verifier sees constants. 48 bytes, no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Packets at or below this length never pay for a FIB lookup: the
    /// smallest MTU among the host's interfaces. 0 disables the DF check.
    pub min_mtu: u32,
    /// Token-bucket refill rate, events per second per CPU (0: no events).
    pub events_per_sec: u32,
    /// Token-bucket depth (events).
    pub burst: u32,
    /// Egress (TC): locally sent DF packets longer than this are reported as
    /// DF-oversized. 0 disables.
    pub egress_path_mtu: u32,
    /// Events a CPU stages before writing them to the ring buffer as one
    /// record (1..=[`STAGE_EVENTS`]; 1 writes every event on its own). See
    /// [`EventStage`].
    pub event_batch: u32,
    /// How long (ms) a CPU reuses a FIB answer for the same flow before
    /// asking again (0: every candidate pays for a lookup). Bounds how long
    /// a route or MTU change goes unnoticed.
    pub fib_cache_ms: u32,
    /// Seed of the reporter hash that picks a fair-sampling bucket
    /// ([`crate::sample::reporter_bucket`]); random per load.
    pub sample_seed: u32,
    /// 1: FIB lookups pass `BPF_FIB_LOOKUP_SKIP_NEIGH` (kernel 6.3+). 0: they
    /// do without it (older kernels reject the flag) and treat "no
    /// neighbour" as a route. A lookup that fails with the flag is retried
    /// without it either way.
    pub fib_skip_neigh: u32,
    /// Kernel-side diagnostics (aya-log) at this level or more severe: 0
    /// off, 1 error .. 5 trace (`aya_log_common::Level`). Read before any
    /// log call, so with 0 the verifier drops the call sites.
    pub log_level: u32,
    /// Nanoseconds per kernel tick (jiffy), measured by user space at load
    /// (`netobs::kernel::features::tick_clock`). Not 0: the packet programs
    /// read time as `jiffies * tick_ns + clock_offset_ns`, an inlined load,
    /// instead of calling the coarse-clock helper (two function calls, each
    /// return paying for the CPU's speculation mitigations). 0: they call it.
    pub tick_ns: u32,
    /// CLOCK_MONOTONIC_COARSE minus `jiffies * tick_ns` (wrapping), so the
    /// tick clock reads as the coarse clock does. Jiffies are derived from
    /// the monotonic clock, so the offset does not drift.
    pub clock_offset_ns: u64,
}

impl Config {
    pub const DEFAULT: Config = Config {
        min_mtu: 1500,
        events_per_sec: 1000,
        burst: 200,
        egress_path_mtu: 0,
        event_batch: STAGE_EVENTS as u32,
        fib_cache_ms: 1000,
        sample_seed: 0,
        fib_skip_neigh: 1,
        log_level: 0,
        tick_ns: 0,
        clock_offset_ns: 0,
    };
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Token-bucket state (the arithmetic is in [`crate::sample`]).
pub use crate::sample::TokenBucket;

/// Most events one CPU stages before writing them out together. 64: a
/// ring-buffer record costs a lock and cache lines the reader also
/// touches, about 60-75 ns in this VM (`cargo xtask bench datapath`, "one
/// record per event") and a profile put about 200 ns on the call that
/// writes a batch; spread over 64 events instead of 32 it measured 2 ns an
/// event less (`bench profile ICMP`, A/B). The stage grows to 9.4 KB per
/// CPU; a batch still goes out once it is `STAGE_MAX_AGE_NS` old.
pub const STAGE_EVENTS: usize = 64;

/// Staged events become stale after this long: the next event on the CPU
/// writes them out, and user space asks the CPU to (`netobs::kernel::stage`).
pub const STAGE_MAX_AGE_NS: u64 = 10_000_000;

/// Per-CPU staging area in front of the ring buffer.
///
/// Why: on a flood, a ring-buffer reservation per event costs a locked
/// instruction and a cache-line handover to the reader for every event.
/// Under a flood, events are instead written into this per-CPU area (hot in
/// the CPU's own cache) and copied to the ring as one record of up to
/// [`STAGE_EVENTS`] events. A lone event (the first in a clock tick on its
/// CPU) skips the stage and goes out at once, so quiet periods see no
/// added delay; a partial batch left at the end of a flood is written by
/// the next event on that CPU or by user space's periodic flush.
///
/// Ring-buffer records therefore hold one or more whole events, each as
/// long as [`record_len`] says: a DF or tracepoint [`Event`] is
/// [`DATAPATH_EVENT_LEN`] bytes, an ICMP error's [`IcmpCapture`] only its
/// header and the words it copied. So the stage is bytes, not slots: each
/// event is written at `fill`, and `fill` moves on by its length.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventStage {
    /// How many programs on this CPU are inside the stage right now: 0 or
    /// 1, or 2 while a program that interrupted the owner (a packet program
    /// interrupting user space's flush, say) writes through the spare slot.
    pub busy: u32,
    /// Events waiting in `area[..fill]`.
    pub count: u32,
    /// Byte offset in `area` of the event being written: `fill`, or
    /// [`STAGE_SPARE_AT`] for a nested writer (kept here, not in a
    /// register, so the verifier sees the same state for the owner and a
    /// nested writer).
    pub at: u32,
    /// Bytes of the staged events, `area[..fill]` (a multiple of 8).
    pub fill: u32,
    /// Coarse monotonic time of the first staged event.
    pub first_ns: u64,
    /// Coarse monotonic time of the last event this CPU emitted.
    pub last_ns: u64,
    /// Ring-buffer consumer position plus one when this CPU last forced a
    /// wakeup: no second wakeup until the reader has moved.
    pub woken_at_cons: u64,
    /// The batch (events at 8-byte aligned offsets below
    /// [`STAGE_SPARE_AT`], room for [`STAGE_EVENTS`] whole events), then
    /// the spare slot at [`STAGE_SPARE_AT`] an interrupting program fills
    /// and writes out at once.
    pub area: [u64; STAGE_AREA_BYTES / 8],
    /// This CPU's token buckets ([`crate::sample`]): here, not in a map of
    /// their own, so an event's token and its slot cost one map lookup.
    pub buckets: crate::sample::Buckets,
}

/// Offset of [`EventStage`]'s spare slot; also where the batch must end.
pub const STAGE_SPARE_AT: usize = STAGE_EVENTS * DATAPATH_EVENT_LEN;
/// Bytes of [`EventStage::area`]: the batch and the spare slot.
pub const STAGE_AREA_BYTES: usize = STAGE_SPARE_AT + DATAPATH_EVENT_LEN;
/// An event may start at `fill` only up to here: a whole event then still
/// ends by [`STAGE_SPARE_AT`]; past it the batch is written out first.
pub const STAGE_LAST_AT: usize = STAGE_SPARE_AT - DATAPATH_EVENT_LEN;

const _: () = {
    assert!(
        core::mem::size_of::<EventStage>()
            == 40 + DATAPATH_EVENT_LEN * (STAGE_EVENTS + 1) + core::mem::size_of::<crate::sample::Buckets>()
    );
    assert!(core::mem::size_of::<PacketInfo>() == 56);
    assert!(core::mem::size_of::<IcmpCapture>() == DATAPATH_EVENT_LEN);
    assert!(core::mem::align_of::<IcmpCapture>() == core::mem::align_of::<Event>());
    assert!(core::mem::offset_of!(IcmpCapture, ts_ns) == core::mem::offset_of!(Event, ts_ns));
    assert!(core::mem::offset_of!(IcmpCapture, ifindex) == core::mem::offset_of!(Event, ifindex));
    assert!(core::mem::offset_of!(IcmpCapture, kind) == core::mem::offset_of!(Event, kind));
    assert!(core::mem::offset_of!(IcmpCapture, hook) == core::mem::offset_of!(Event, hook));
    assert!(CAPTURE_HEADER_LEN == 24 && CAPTURE_HEADER_LEN + CAPTURE_BYTES == DATAPATH_EVENT_LEN);
    #[cfg(target_arch = "bpf")]
    assert!(core::mem::size_of::<Event>() == DATAPATH_EVENT_LEN);
    #[cfg(not(target_arch = "bpf"))]
    assert!(
        core::mem::offset_of!(Event, ext) == DATAPATH_EVENT_LEN
            && core::mem::size_of::<Event>() == DATAPATH_EVENT_LEN + crate::ext::CARRY_MAX
    );
    assert!(core::mem::size_of::<IcmpCounterKey>() == 8);
    assert!(core::mem::size_of::<DfCounterKey>() == 8);
    assert!(core::mem::size_of::<Config>() == 48);
    assert!(core::mem::size_of::<TokenBucket>() == 16);
};
