//! A bounds-checked view over packet bytes that the BPF verifier accepts.
//!
//! The kernel hands an XDP or TC program two raw pointers, `data` and
//! `data_end`; the verifier only lets the program read `[p, p + n)` after it
//! has seen a comparison `p + n <= data_end` on the *pointer*. Slices cannot be
//! used there. [`Cursor`] wraps the two addresses and performs exactly that
//! comparison before it hands out a reference, so the same parsing code runs
//! in the verifier-checked program and, over a `&[u8]`, in host unit tests.

use core::marker::PhantomData;
use core::mem::size_of;

/// A fixed-layout header made only of bytes (`align_of == 1`), so a reference
/// to it may point anywhere in the packet.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain only `u8` / `[u8; N]` fields and
/// have no padding: any byte pattern is a valid value.
pub unsafe trait Header: Sized {}

/// Start and end address of the readable packet bytes, and how far into
/// them a read may go ([`Cursor::limit_to`]).
#[derive(Clone, Copy)]
pub struct Cursor<'a> {
    start: usize,
    end: usize,
    /// Offset past which nothing is read, whatever the buffer holds: the
    /// end of an IP packet inside a padded frame. Kept as a plain offset,
    /// not an address: the verifier only learns a packet range from a
    /// comparison with `data_end`, so `end` stays that pointer and this is
    /// a second, scalar check.
    limit: usize,
    _bytes: PhantomData<&'a [u8]>,
}

impl<'a> Cursor<'a> {
    /// Wraps the `data` / `data_end` pair the kernel gives a program.
    ///
    /// # Safety
    /// `[start, end)` must be readable for `'a`.
    #[inline(always)]
    pub unsafe fn from_raw(start: usize, end: usize) -> Self {
        Cursor { start, end, limit: usize::MAX, _bytes: PhantomData }
    }

    /// Wraps host memory (tests, user space decoding of raw captures).
    #[inline(always)]
    pub fn from_slice(bytes: &'a [u8]) -> Self {
        let start = bytes.as_ptr() as usize;
        Cursor { start, end: start + bytes.len(), limit: usize::MAX, _bytes: PhantomData }
    }

    /// Number of readable bytes.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The header `T` at byte offset `off`, or `None` when it does not fit.
    ///
    /// The check is written as a pointer comparison against `end` on purpose:
    /// that is the form the verifier turns into a packet range. Offsets come
    /// from bounded header fields (at most a few KiB), so the additions cannot
    /// overflow.
    #[inline(always)]
    pub fn get<T: Header>(&self, off: usize) -> Option<&'a T> {
        if off + size_of::<T>() > self.limit {
            return None;
        }
        let at = self.start + off;
        if at + size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: `[at, at + size_of::<T>())` lies inside `[start, end)`, which
        // the constructor promised is readable; `T: Header` has alignment 1 and
        // accepts any byte pattern.
        Some(unsafe { &*(at as *const T) })
    }

    /// One byte at `off`.
    #[inline(always)]
    pub fn u8_at(&self, off: usize) -> Option<u8> {
        self.get::<[u8; 1]>(off).map(|b| b[0])
    }

    /// How many bytes are readable from `off` on (0 when `off` is past the
    /// end or the limit).
    #[inline(always)]
    pub fn remaining_from(&self, off: usize) -> usize {
        let at = self.start + off;
        let in_buffer = self.end.saturating_sub(at);
        let in_limit = self.limit.saturating_sub(off);
        if in_buffer < in_limit { in_buffer } else { in_limit }
    }

    /// The same bytes, readable only up to offset `len` (from the same
    /// start): what lies past an IP packet's own length (Ethernet padding,
    /// trailing garbage) is not part of it. A limit never widens the view.
    #[inline(always)]
    pub fn limit_to(&self, len: usize) -> Cursor<'a> {
        let limit = if len < self.limit { len } else { self.limit };
        Cursor { start: self.start, end: self.end, limit, _bytes: PhantomData }
    }

    /// The offset reads stop at: the buffer's end or the limit, whichever
    /// comes first.
    #[inline(always)]
    pub fn end_offset(&self) -> usize {
        let len = self.end - self.start;
        if len < self.limit { len } else { self.limit }
    }
}

// SAFETY: byte arrays have alignment 1 and no invalid values.
unsafe impl<const N: usize> Header for [u8; N] {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_checks_the_end() {
        let bytes = [1u8, 2, 3, 4];
        let c = Cursor::from_slice(&bytes);
        assert_eq!(c.get::<[u8; 4]>(0), Some(&[1, 2, 3, 4]));
        assert_eq!(c.get::<[u8; 2]>(2), Some(&[3, 4]));
        assert_eq!(c.get::<[u8; 2]>(3), None);
        assert_eq!(c.get::<[u8; 5]>(0), None);
        assert_eq!(c.u8_at(4), None);
        assert_eq!(c.remaining_from(1), 3);
        assert_eq!(c.remaining_from(9), 0);
    }

    #[test]
    fn a_limit_hides_the_bytes_past_it() {
        let bytes = [1u8, 2, 3, 4, 5, 6];
        let c = Cursor::from_slice(&bytes).limit_to(4);
        assert_eq!(c.get::<[u8; 4]>(0), Some(&[1, 2, 3, 4]));
        assert_eq!(c.get::<[u8; 2]>(3), None, "crosses the limit though the buffer has it");
        assert_eq!(c.u8_at(4), None);
        assert_eq!(c.remaining_from(1), 3);
        assert_eq!(c.remaining_from(5), 0);
        assert_eq!(c.end_offset(), 4);
        assert_eq!(c.limit_to(10).end_offset(), 4, "a limit never widens");
        assert_eq!(Cursor::from_slice(&bytes).limit_to(100).end_offset(), 6);
    }
}
