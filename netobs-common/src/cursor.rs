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

use crate::event::{CAPTURE_BYTES, CAPTURE_WORDS};

/// [`Cursor::copy_words`] copies from offsets below this (a power of two).
pub const CAPTURE_MAX_OFF: usize = 1 << 12;

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

    /// Copies the bytes from `off` on into `dst` as little-endian words,
    /// as many as are readable and fit ([`CAPTURE_BYTES`]); returns how
    /// many bytes that was. Words past them are left as they were.
    ///
    /// Why blocks of 64, 32, 16 and 8 bytes and then one overlapping word
    /// for the tail: each block costs one bounds check, so a copy of up to
    /// 120 bytes costs at most five, where a check per word costs fifteen
    /// (measured: the per-word loop cost as much as parsing the bytes).
    /// `off` must be under [`CAPTURE_MAX_OFF`] (a frame's IP header always
    /// is); offsets are masked with it so the verifier sees them bounded.
    #[inline(always)]
    pub fn copy_words(&self, off: usize, dst: &mut [u64; CAPTURE_WORDS]) -> usize {
        if off >= CAPTURE_MAX_OFF {
            return 0;
        }
        let mut at = 0;
        self.copy_block::<8>(off, &mut at, dst);
        self.copy_block::<4>(off, &mut at, dst);
        self.copy_block::<2>(off, &mut at, dst);
        self.copy_block::<1>(off, &mut at, dst);
        let avail = self.remaining_from(off);
        if at >= CAPTURE_BYTES || avail <= at || avail < 8 {
            return at;
        }
        // The last 1..=7 bytes: the word that ends at the end, shifted down
        // past the bytes already copied. Its offset is masked so the
        // compiler cannot fold the `- 8` into the load (a negative packet
        // offset, which the verifier refuses).
        let tail = avail - at;
        let last = (off + avail - 8) & (CAPTURE_MAX_OFF - 1);
        if let (Some(w), Some(d)) = (self.get::<[u8; 8]>(last), dst.get_mut(at / 8)) {
            *d = u64::from_le_bytes(*w) >> ((64 - 8 * tail) & 63);
            return avail;
        }
        at
    }

    /// One block of `W` words for [`Cursor::copy_words`] at `off + *at`, if
    /// it is all readable.
    #[inline(always)]
    fn copy_block<const W: usize>(&self, off: usize, at: &mut usize, dst: &mut [u64; CAPTURE_WORDS]) {
        if let Some(words) = self.get::<[[u8; 8]; W]>((off + *at) & (CAPTURE_MAX_OFF - 1)) {
            for (k, w) in words.iter().enumerate() {
                if let Some(d) = dst.get_mut(*at / 8 + k) {
                    *d = u64::from_le_bytes(*w);
                }
            }
            *at += W * 8;
        }
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
// SAFETY: arrays of byte arrays: alignment 1, no padding, no invalid values.
unsafe impl<const N: usize> Header for [[u8; 8]; N] {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

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

    /// Every length from nothing to past the capture, at two offsets: the
    /// words hold exactly the readable bytes, in order, and no more.
    #[test]
    fn copy_words_copies_what_is_readable_and_fits() {
        let bytes: Vec<u8> = (1..=200u8).collect();
        for off in [0usize, 14] {
            for len in 0..=(off + CAPTURE_BYTES + 9) {
                let c = Cursor::from_slice(&bytes[..len]);
                let mut words = [0u64; CAPTURE_WORDS];
                let n = c.copy_words(off, &mut words);
                let want = len.saturating_sub(off).min(CAPTURE_BYTES);
                // Fewer than 8 readable bytes are not worth a record.
                let want = if want < 8 { 0 } else { want };
                assert_eq!(n, want, "off {off} len {len}");
                let got: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                assert_eq!(&got[..n], &bytes[off..off + n], "off {off} len {len}");
                assert!(got[n.next_multiple_of(8)..].iter().all(|&b| b == 0), "nothing past the copy");
                if !n.is_multiple_of(8) {
                    assert!(got[n..n.next_multiple_of(8)].iter().all(|&b| b == 0), "tail word zero-filled");
                }
            }
        }
        // A limit stops the copy like the buffer's end does.
        let c = Cursor::from_slice(&bytes).limit_to(14 + 30);
        let mut words = [0u64; CAPTURE_WORDS];
        assert_eq!(c.copy_words(14, &mut words), 30);
        assert_eq!(Cursor::from_slice(&bytes).copy_words(CAPTURE_MAX_OFF, &mut words), 0);
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
