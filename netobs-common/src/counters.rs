//! The kernel's counter layout: a fixed key space that can never be full.
//!
//! Why: ICMP errors are trivially spoofed. A per-CPU hash keyed by what the
//! packet says (interface, family, type, code) fills up under a flood with
//! random codes, and from then on real errors are not counted (MAP_FULL).
//! Here every key is an index into per-CPU arrays sized at build time:
//!
//! - an **ICMP class**: one per (family, type, code) netobs knows, plus one
//!   "other code" class per type, so a random code still lands somewhere
//!   and keeps its family and type ([`icmp_class`]);
//! - a **hook** (XDP, TC ingress, TC egress, tracepoint);
//! - an **interface slot**: user space gives each interface of the
//!   namespace a slot when it loads the programs ([`IfaceTable`]); any
//!   other interface counts in slot [`OTHER_SLOT`].
//!
//! User space turns the arrays back into `(ifindex, family, type, code,
//! hook)` keys. Codes beyond the known ones come back as [`OTHER_CODE`],
//! interfaces without a slot as [`OTHER_IFINDEX`].

/// Interface slots (slot 0 is "any other interface").
pub const IFACE_SLOTS: usize = 64;
/// The slot of every interface user space did not assign one.
pub const OTHER_SLOT: u32 = 0;
/// Entries of the direct-mapped ifindex -> slot table (a power of two).
pub const IFACE_TABLE: usize = 1024;
/// The map user space writes the [`IfaceTable`] through: the eBPF object's
/// writable-data section, whose one value is the table (the programs read
/// it as a global, by address, without a map lookup).
pub const IFACES_MAP: &str = ".data";

/// Hooks counted apart (`event::hook` values 1..=4).
pub const HOOK_SLOTS: usize = 4;
/// ICMP classes per hook (the known ones, their "other code" buckets and
/// a spare, rounded up to a power of two).
pub const ICMP_CLASSES: usize = 64;
/// Counters per interface slot in the ICMP counter array.
pub const ICMP_PER_SLOT: usize = HOOK_SLOTS * ICMP_CLASSES;

/// Decoded code of an error whose code is none of the known ones for its
/// type (the "other code" class). 255 is no defined code of any type.
pub const OTHER_CODE: u8 = 255;
/// Decoded ifindex of the "other interface" slot (no real ifindex).
pub const OTHER_IFINDEX: u32 = u32::MAX;
/// The class an unreported (family, type) would fall into. The programs
/// count only reported types, so it stays zero; decoded as family 0.
pub const UNKNOWN_CLASS: u32 = (ICMP_CLASSES - 1) as u32;

/// (family, type, number of known codes 0..n). Order fixes the class
/// numbers; each type takes n + 1 classes (the last: other codes).
const TYPES: [(u8, u8, u8); 10] = [
    // v4: unreachable 0-15, source quench, redirect 0-3, time exceeded
    // 0-1, parameter problem 0-2.
    (4, 3, 16),
    (4, 4, 1),
    (4, 5, 4),
    (4, 11, 2),
    (4, 12, 3),
    // v6: unreachable 0-8 (RFC 4443, 6550, 8883), packet too big, time
    // exceeded 0-1, parameter problem 0-10 (RFC 4443, 7112, 8883),
    // redirect.
    (6, 1, 9),
    (6, 2, 1),
    (6, 3, 2),
    (6, 4, 11),
    (6, 137, 1),
];

/// First class of each entry of [`TYPES`].
const fn bases() -> [u32; 10] {
    let mut out = [0u32; 10];
    let mut i = 1;
    while i < TYPES.len() {
        out[i] = out[i - 1] + TYPES[i - 1].2 as u32 + 1;
        i += 1;
    }
    out
}
const BASES: [u32; 10] = bases();
const _: () = assert!(BASES[9] + (TYPES[9].2 as u32) < UNKNOWN_CLASS);

/// The class of an ICMP error: `base(type) + min(code, known codes)`.
/// Branches only (no table walk), so it costs a few instructions in the
/// kernel.
#[inline(always)]
pub fn icmp_class(family: u8, icmp_type: u8, code: u8) -> u32 {
    let i = match (family, icmp_type) {
        (4, 3) => 0,
        (4, 4) => 1,
        (4, 5) => 2,
        (4, 11) => 3,
        (4, 12) => 4,
        (6, 1) => 5,
        (6, 2) => 6,
        (6, 3) => 7,
        (6, 4) => 8,
        (6, 137) => 9,
        _ => return UNKNOWN_CLASS,
    };
    let known = TYPES[i].2;
    BASES[i] + if code < known { code } else { known } as u32
}

/// (family, type, code) of a class; the "other code" class of a type
/// gives [`OTHER_CODE`], [`UNKNOWN_CLASS`] and the spares `(0, 255, 255)`.
pub fn class_key(class: u32) -> (u8, u8, u8) {
    for (i, &(family, t, known)) in TYPES.iter().enumerate() {
        let base = BASES[i];
        if class >= base && class <= base + known as u32 {
            let code = class - base;
            return (family, t, if code == known as u32 { OTHER_CODE } else { code as u8 });
        }
    }
    (0, 255, OTHER_CODE)
}

/// Index of the hook's block in an interface slot's counters.
#[inline(always)]
pub fn hook_index(hook: u8) -> usize {
    (hook.wrapping_sub(1) as usize) & (HOOK_SLOTS - 1)
}

/// Index of one counter in an [`IcmpSlotCounters`].
#[inline(always)]
pub fn icmp_index(hook: u8, class: u32) -> usize {
    hook_index(hook) * ICMP_CLASSES + (class as usize & (ICMP_CLASSES - 1))
}

/// One interface slot's ICMP counters, `[hook][class]`. 2 KiB.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IcmpSlotCounters {
    pub counts: [u64; ICMP_PER_SLOT],
}

/// One ingress slot's DF-oversized counters, by egress slot. 512 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DfSlotCounters {
    pub counts: [u64; IFACE_SLOTS],
}

/// ifindex -> slot, and back. Written by user space only (the programs
/// never insert), so nothing a packet says can grow it.
///
/// `by_index[ifindex % IFACE_TABLE]` holds `ifindex << 32 | slot` for an
/// interface with a slot; the programs check the ifindex, so an interface
/// whose entry is taken by another (same index modulo the table) counts in
/// [`OTHER_SLOT`]. `ifindex_of[slot]` is for user space's decoding.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IfaceTable {
    pub by_index: [u64; IFACE_TABLE],
    /// Slot -> ifindex; [`OTHER_IFINDEX`] for slot 0 and free slots.
    pub ifindex_of: [u32; IFACE_SLOTS],
}

impl IfaceTable {
    /// No interface has a slot.
    pub const EMPTY: IfaceTable = IfaceTable { by_index: [0; IFACE_TABLE], ifindex_of: [OTHER_IFINDEX; IFACE_SLOTS] };

    /// The slot of `ifindex` ([`OTHER_SLOT`] without one).
    #[inline(always)]
    pub fn slot(&self, ifindex: u32) -> u32 {
        slot_in(&self.by_index, ifindex)
    }

    /// Gives `ifindex` a slot unless it has one. `None` when every slot
    /// is taken or its table entry holds another interface: it then
    /// counts as "other interface".
    pub fn assign(&mut self, ifindex: u32) -> Option<u32> {
        let have = self.slot(ifindex);
        if have != OTHER_SLOT {
            return Some(have);
        }
        let entry = ifindex as usize & (IFACE_TABLE - 1);
        if self.by_index[entry] as u32 != OTHER_SLOT {
            return None;
        }
        let free = (1..IFACE_SLOTS).find(|&s| self.ifindex_of[s] == OTHER_IFINDEX)?;
        self.ifindex_of[free] = ifindex;
        self.by_index[entry] = (ifindex as u64) << 32 | free as u64;
        Some(free as u32)
    }

    /// The ifindex a slot stands for ([`OTHER_IFINDEX`] for slot 0).
    pub fn ifindex(&self, slot: usize) -> u32 {
        if slot == OTHER_SLOT as usize {
            OTHER_IFINDEX
        } else {
            self.ifindex_of.get(slot).copied().unwrap_or(OTHER_IFINDEX)
        }
    }
}

/// The slot lookup on the table's first half alone (what the programs read).
#[inline(always)]
pub fn slot_in(by_index: &[u64; IFACE_TABLE], ifindex: u32) -> u32 {
    slot_of_entry(by_index[ifindex as usize & (IFACE_TABLE - 1)], ifindex)
}

/// The slot an `IfaceTable::by_index` entry `e` gives `ifindex`: its own
/// if the entry is `ifindex`'s, else [`OTHER_SLOT`].
#[inline(always)]
pub fn slot_of_entry(e: u64, ifindex: u32) -> u32 {
    if (e >> 32) as u32 == ifindex { (e as u32) & (IFACE_SLOTS as u32 - 1) } else { OTHER_SLOT }
}

// SAFETY: repr(C) arrays of plain integers, no padding (asserted below).
#[cfg(feature = "user")]
unsafe impl aya::Pod for IcmpSlotCounters {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for DfSlotCounters {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for IfaceTable {}

const _: () = {
    assert!(IFACE_TABLE.is_power_of_two() && IFACE_SLOTS.is_power_of_two() && ICMP_CLASSES.is_power_of_two());
    assert!(core::mem::size_of::<IcmpSlotCounters>() == 8 * ICMP_PER_SLOT);
    assert!(core::mem::size_of::<IfaceTable>() == 8 * IFACE_TABLE + 4 * IFACE_SLOTS);
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::is_reported_icmp;

    /// Every (family, type, code) of a reported type has a class that
    /// decodes back to itself, or to the type's "other code" class; no two
    /// types share a class.
    #[test]
    fn every_reported_error_has_a_class_that_decodes_back() {
        for family in [4u8, 6] {
            for t in 0..=255u8 {
                if !is_reported_icmp(family, t) {
                    continue;
                }
                for code in 0..=255u8 {
                    let c = icmp_class(family, t, code);
                    assert_ne!(c, UNKNOWN_CLASS, "{family} {t}/{code}");
                    assert!((c as usize) < ICMP_CLASSES);
                    let (f, tt, cc) = class_key(c);
                    assert_eq!((f, tt), (family, t), "class {c}");
                    assert!(cc == code || cc == OTHER_CODE, "{family} {t}/{code} -> {cc}");
                }
            }
        }
    }

    #[test]
    fn known_codes_are_exact_and_the_rest_share_one_bucket() {
        assert_eq!(class_key(icmp_class(4, 3, 10)), (4, 3, 10));
        assert_eq!(class_key(icmp_class(4, 3, 15)), (4, 3, 15));
        assert_eq!(class_key(icmp_class(4, 3, 16)), (4, 3, OTHER_CODE));
        assert_eq!(icmp_class(4, 3, 16), icmp_class(4, 3, 200));
        assert_eq!(class_key(icmp_class(6, 2, 0)), (6, 2, 0));
        assert_eq!(class_key(icmp_class(6, 2, 7)), (6, 2, OTHER_CODE));
        assert_eq!(class_key(icmp_class(6, 1, 8)), (6, 1, 8));
        assert_eq!(icmp_class(4, 0, 0), UNKNOWN_CLASS);
        assert_eq!(class_key(UNKNOWN_CLASS), (0, 255, OTHER_CODE));
    }

    #[test]
    fn classes_are_distinct_per_known_code() {
        let mut seen = [false; ICMP_CLASSES];
        for (family, t, known) in TYPES {
            for code in 0..=known {
                let c = icmp_class(family, t, code) as usize;
                assert!(!seen[c], "class {c} used twice");
                seen[c] = true;
            }
        }
    }

    #[test]
    fn hooks_and_classes_index_inside_a_slot() {
        for hook in 1..=4u8 {
            for class in 0..ICMP_CLASSES as u32 {
                assert!(icmp_index(hook, class) < ICMP_PER_SLOT);
            }
        }
        assert_ne!(icmp_index(1, 5), icmp_index(2, 5));
    }

    #[test]
    fn iface_slots_are_assigned_once_and_bounded() {
        let mut t = IfaceTable::EMPTY;
        assert_eq!(t.slot(7), OTHER_SLOT);
        let s = t.assign(7).unwrap();
        assert_ne!(s, OTHER_SLOT);
        assert_eq!(t.assign(7), Some(s));
        assert_eq!(t.slot(7), s);
        assert_eq!(t.ifindex(s as usize), 7);
        // Same table entry, other interface: "other".
        assert_eq!(t.assign(7 + IFACE_TABLE as u32), None);
        assert_eq!(t.slot(7 + IFACE_TABLE as u32), OTHER_SLOT);
        // ifindex 0 (the tracepoint's "no interface") gets a slot too.
        let z = t.assign(0).unwrap();
        assert_eq!(t.slot(0), z);
        // Never more than IFACE_SLOTS - 1 interfaces.
        let assigned = (100..300u32).filter_map(|i| t.assign(i)).count();
        assert_eq!(assigned, IFACE_SLOTS - 1 - 2);
        assert_eq!(t.slot(299), OTHER_SLOT);
        assert_eq!(t.ifindex(0), OTHER_IFINDEX);
    }

    #[test]
    fn unassigned_zero_entries_mean_other() {
        let t = IfaceTable::EMPTY;
        assert_eq!(t.slot(0), OTHER_SLOT);
        assert_eq!(t.slot(u32::MAX), OTHER_SLOT);
    }
}
