//! Maps and load-time configuration shared by all programs in the object.
//!
//! Every map a packet can make the programs write is an array of a size
//! fixed here: nothing an attacker sends can fill one (see
//! `netobs_common::counters`).

use aya_ebpf::{
    Global,
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use netobs_common::{
    counters::{
        DfSlotCounters, IFACE_SLOTS, IFACE_TABLE, IcmpSlotCounters, IfaceTable, icmp_class, icmp_index, slot_of_entry,
    },
    event::{Config, DfCounterKey, EventStage, IcmpCounterKey, STATS_CPUS, StatBlock, StatsByCpu, stat},
    sample::Buckets,
};

/// Set by the loader (`EbpfLoader::override_global`), read as a constant.
/// Read one field at a time with [`config!`](crate::config), not with
/// `CONFIG.load()`.
#[unsafe(no_mangle)]
pub static CONFIG: Global<Config> = Global::new(Config::DEFAULT);

/// The [`Config`] inside [`CONFIG`], for [`config!`](crate::config).
#[inline(always)]
pub fn config_ptr() -> *const Config {
    // `Global` is `repr(transparent)` over the (initialised) value.
    (&raw const CONFIG).cast::<Config>()
}

/// One field of [`CONFIG`]: `config!(min_mtu)`.
///
/// Why not `CONFIG.load()`: that is a volatile read of the whole 48-byte
/// struct, a load per field the JIT emits every time even when one field is used
/// (the verifier knows each value, but does not delete the loads), and the
/// ICMP path asked four times. A volatile read of the one field is one
/// load, and the verifier still sees the constant (a read-only map) and
/// prunes what it disables.
#[macro_export]
macro_rules! config {
    ($field:ident) => {
        // SAFETY: a valid, initialised static; one of its fields, read as is.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*$crate::maps::config_ptr()).$field)) }
    };
}

/// Global statistics, a block per CPU (slots `netobs_common::event::stat`).
/// The object's only zero-initialised global, so its `.bss` section is
/// this and nothing else (user space reads it as one value).
#[unsafe(no_mangle)]
pub static mut STATS: StatsByCpu = StatsByCpu::ZERO;

/// ICMP errors: one entry per interface slot, `[hook][class]` inside.
#[map]
pub static ICMP_COUNTERS: PerCpuArray<IcmpSlotCounters> = PerCpuArray::with_max_entries(IFACE_SLOTS as u32, 0);

/// DF-oversized packets: one entry per ingress slot, by egress slot inside.
#[map]
pub static DF_COUNTERS: PerCpuArray<DfSlotCounters> = PerCpuArray::with_max_entries(IFACE_SLOTS as u32, 0);

/// ifindex -> interface slot, written by user space (at load, and when an
/// interface is attached later). A global rather than a map: the program
/// reaches it by address, with no lookup and no null check, on every slow
/// path. It is the object's only writable global, so its section is the
/// one-entry array user space knows as [`IFACES_MAP`](netobs_common::counters::IFACES_MAP).
#[unsafe(no_mangle)]
pub static mut IFACES: IfaceTable = IfaceTable::EMPTY;

/// Sampled event details for user space. Size can be overridden at load.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 21, 0);

/// Per-CPU staging area in front of `EVENTS` (see [`EventStage`]).
#[map]
pub static STAGE: PerCpuArray<EventStage> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's statistics block, found once per packet and handed down
/// (finding it again would read the CPU number again, a helper call as
/// far as the compiler knows).
#[derive(Clone, Copy)]
pub struct Stats(*mut StatBlock);

impl Stats {
    /// This CPU's block: the CPU number (a single load once the verifier
    /// inlines the helper) indexes [`STATS`].
    #[inline(always)]
    pub fn this_cpu() -> Stats {
        // SAFETY: the helper has no preconditions.
        let cpu = unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() } as usize & (STATS_CPUS - 1);
        // SAFETY: in bounds (masked); only a pointer is formed here.
        Stats(unsafe { (&raw mut STATS.cpus).cast::<StatBlock>().add(cpu) })
    }

    /// Adds one to a statistics slot.
    #[inline(always)]
    pub fn add(self, slot: u32) {
        self.add_n(slot, 1);
    }

    /// Adds `n` to a statistics slot.
    #[inline(always)]
    pub fn add_n(self, slot: u32, n: u64) {
        // SAFETY: this CPU's value, valid while the program runs; only this
        // CPU writes it, and no reference to it outlives this statement.
        if let Some(c) = unsafe { &mut *self.0 }.counts.get_mut(slot as usize) {
            *c += n;
        }
    }

    /// The count in a statistics slot (0 for a slot that does not exist).
    #[inline(always)]
    pub fn count(self, slot: u32) -> u64 {
        // SAFETY: as in `add_n`; a plain read.
        unsafe { &*self.0 }.counts.get(slot as usize).copied().unwrap_or(0)
    }
}

/// The interface slot of `ifindex` (`OTHER_SLOT` when it has none).
#[inline(always)]
pub fn iface_slot(ifindex: u32) -> u32 {
    // SAFETY: a valid static; the entry is read as is (volatile: user space
    // writes it, and a link-time optimiser that saw no store would fold it).
    let entry =
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!(IFACES.by_index[ifindex as usize & (IFACE_TABLE - 1)])) };
    slot_of_entry(entry, ifindex)
}

/// A counter array a key can be counted in. Never fails: every key has a
/// place (possibly an "other" bucket).
pub trait CountIn<K> {
    fn count(&self, key: &K);
}

impl CountIn<IcmpCounterKey> for PerCpuArray<IcmpSlotCounters> {
    #[inline(always)]
    fn count(&self, k: &IcmpCounterKey) {
        let class = icmp_class(k.family, k.icmp_type, k.icmp_code);
        if let Some(p) = self.get_ptr_mut(iface_slot(k.ifindex)) {
            // SAFETY: this CPU's value; packet programs on one CPU do not nest.
            let block = unsafe { &mut *p };
            if let Some(c) = block.counts.get_mut(icmp_index(k.hook, class)) {
                *c += 1;
            }
        }
    }
}

impl CountIn<DfCounterKey> for PerCpuArray<DfSlotCounters> {
    #[inline(always)]
    fn count(&self, k: &DfCounterKey) {
        let egress = iface_slot(k.egress_ifindex) as usize & (IFACE_SLOTS - 1);
        if let Some(p) = self.get_ptr_mut(iface_slot(k.ingress_ifindex)) {
            // SAFETY: as above.
            let row = unsafe { &mut *p };
            if let Some(c) = row.counts.get_mut(egress) {
                *c += 1;
            }
        }
    }
}

/// Adds one to the counter of `key` in `map`.
#[inline(always)]
pub fn bump_key<K, M: CountIn<K>>(map: &M, key: &K) {
    map.count(key);
}

/// Takes a token from the global bucket only (events no reporter sends,
/// such as the tracepoint's).
#[inline(always)]
pub fn take_token(buckets: &mut Buckets, now: u64) -> bool {
    buckets.global.take(now, crate::config!(events_per_sec), crate::config!(burst))
}

/// Takes a token for an event about a packet from a source whose hash is
/// `hash` (`netobs_common::sample::source_hash`): [`Buckets::take_fair`]
/// at the configured rate and burst.
#[inline(always)]
pub fn take_fair_token(buckets: &mut Buckets, now: u64, hash: u32) -> bool {
    buckets.take_fair(now, crate::config!(events_per_sec), crate::config!(burst), hash)
}

/// Look at the ring's fill level once per this many events per CPU.
const CHECK_EVERY: u64 = 64;
/// Bytes of unread events that justify waking user space up.
const WAKEUP_BYTES: u64 = 64 * 1024;

/// Submit flags for `n` events about to be written (the caller counts them
/// in `stat::EVENTS` once they are).
///
/// The reader is woken only once a batch has piled up: a wakeup per event
/// (the kernel's default whenever the reader has caught up) costs
/// microseconds under a flood. Asking the ring how much is unread reads the
/// reader's cache line, so that is done only every [`CHECK_EVERY`] events
/// on this CPU. And a CPU forces a wakeup only once per reader position:
/// until the reader has moved, another wakeup (an inter-processor interrupt,
/// microseconds in a VM) cannot make it faster. User space also polls on a
/// short timer, so a lone event waits at most that long.
#[inline(always)]
pub fn submit_flags(n: u64, stage: &mut EventStage, st: Stats) -> u64 {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_CONS_POS, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
    let before = st.count(stat::EVENTS);
    if before / CHECK_EVERY == (before + n) / CHECK_EVERY || EVENTS.query(BPF_RB_AVAIL_DATA as u64) < WAKEUP_BYTES {
        return BPF_RB_NO_WAKEUP as u64;
    }
    // Stored plus one, so the zeroed initial value matches no position.
    let cons = EVENTS.query(BPF_RB_CONS_POS as u64).wrapping_add(1);
    if cons == stage.woken_at_cons {
        return BPF_RB_NO_WAKEUP as u64;
    }
    stage.woken_at_cons = cons;
    BPF_RB_FORCE_WAKEUP as u64
}
