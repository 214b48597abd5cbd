//! Zeroing without `memset`, aligned stack slots, and reading kernel
//! memory from the tracing programs.
//!
//! A plain `mem::zeroed()` or `write_bytes` of more than a few words may
//! compile to a call of the object's own `memset`, which BPF runs as a byte
//! loop: 144 iterations for an event, about 100 ns. Volatile word stores
//! cannot be turned back into that call.

/// Zeroes `*v` with word stores. `T` must be plain data whose size is a
/// multiple of 4 and alignment at least 4 (checked at compile time).
#[inline(always)]
pub fn zero<T>(v: &mut T) {
    // SAFETY: a valid, writable T.
    unsafe { zero_ptr(v as *mut T) }
}

/// Zeroes `slot` in place and returns it initialised (plain data is valid
/// when zero). In place: moving a `T` out would bring the `memset` back.
#[inline(always)]
pub fn zero_init<T>(slot: &mut core::mem::MaybeUninit<T>) -> &mut T {
    // SAFETY: the slot is valid for writes of T; after zeroing every byte,
    // a plain-data T is initialised.
    unsafe {
        zero_ptr(slot.as_mut_ptr());
        slot.assume_init_mut()
    }
}

/// # Safety
/// `p` must be valid for writes of `T`, and `T` plain data.
#[inline(always)]
unsafe fn zero_ptr<T>(p: *mut T) {
    const { assert!(core::mem::size_of::<T>().is_multiple_of(4) && core::mem::align_of::<T>() >= 4) };
    if core::mem::size_of::<T>().is_multiple_of(8) && core::mem::align_of::<T>() >= 8 {
        let p = p.cast::<u64>();
        for i in 0..core::mem::size_of::<T>() / 8 {
            // SAFETY: in bounds and aligned (checked above).
            unsafe { core::ptr::write_volatile(p.add(i), 0) };
        }
    } else {
        let p = p.cast::<u32>();
        for i in 0..core::mem::size_of::<T>() / 4 {
            // SAFETY: as above, in 4-byte words.
            unsafe { core::ptr::write_volatile(p.add(i), 0) };
        }
    }
}

/// A value kept on an 8-aligned stack slot. The object is built with
/// misaligned access allowed (netobs-ebpf/build.rs): LLVM then copies and
/// zeroes byte arrays and 4-aligned structs with word stores, which the
/// verifier accepts on packets and maps but never on a misaligned stack
/// slot. Headers read with `bpf_probe_read_kernel` and structs built on
/// the stack go in one of these.
#[repr(C, align(8))]
#[derive(Clone, Copy, Default)]
pub struct Aligned<T>(pub T);

impl<T> core::ops::Deref for Aligned<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> core::ops::DerefMut for Aligned<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// Reads a `T` at `base + off` in kernel memory; None if it faults.
#[inline(always)]
pub fn read<T>(base: u64, off: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly.
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel((base + off as u64) as *const T) }.ok()
}

/// [`read`] of a header onto an 8-aligned stack slot (see [`Aligned`]).
#[inline(always)]
pub fn read_aligned<T>(base: u64, off: u32) -> Option<Aligned<T>> {
    read::<Aligned<T>>(base, off)
}
