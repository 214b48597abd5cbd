//! Which packets get an event: fair token buckets.
//!
//! Why fair: one token bucket per CPU is first come, first served, so a
//! flood from one reporter (or one sender of DF packets) takes every token
//! and a real rejection from anyone else gets no event. Here each event
//! needs a token from two buckets:
//!
//! - its **reporter's bucket**, one of [`FAIR_BUCKETS`] chosen by a seeded
//!   hash of the reporter's address ([`reporter_bucket`]); each refills at
//!   1/[`FAIR_SHARE`] of the configured rate, so one reporter can never
//!   take more than that share;
//! - the **global bucket**, at the configured rate and burst: the cap on
//!   what user space has to read.
//!
//! A flood from one reporter (or a few) therefore leaves the global bucket
//! most of its tokens and every other reporter's bucket full. A flood of
//! spoofed random reporters drains every bucket; a real reporter then gets
//! its proportional share of its own bucket (and is still counted, always).
//! The seed is random per load, so a flooder cannot aim at the bucket of a
//! reporter it wants to hide.
//!
//! Plain functions: the programs and host tests run the same arithmetic.

use crate::cursor::Cursor;
use crate::parse::Outer;
use crate::wire::{Ipv4Hdr, Ipv6Hdr};

/// Per-reporter buckets per CPU (a power of two).
pub const FAIR_BUCKETS: u32 = 64;
/// One reporter gets at most 1/FAIR_SHARE of the configured rate and burst.
pub const FAIR_SHARE: u32 = 8;

/// Tokens are kept in units of 1e-9 event, so a refill is `elapsed_ns *
/// rate` with no division.
pub const TOKEN: u64 = 1_000_000_000;

/// Token-bucket state. 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucket {
    /// Nano-tokens.
    pub tokens: u64,
    /// Clock of the last refill.
    pub last_ns: u64,
}

impl TokenBucket {
    /// Refills for the time since the last call (a new bucket starts full)
    /// and takes one token if there is one. `rate` tokens per second, at
    /// most `burst` (at least 1) banked.
    #[inline(always)]
    pub fn take(&mut self, now: u64, rate: u32, burst: u32) -> bool {
        if rate == 0 {
            return false;
        }
        let cap = (if burst == 0 { 1 } else { burst }) as u64 * TOKEN;
        // Programs read the coarse or the precise monotonic clock; the
        // coarse one can lag by a jiffy, so never let time run backwards.
        // The first call sees the map's zeroed state: start full.
        let fresh = self.last_ns == 0;
        let elapsed = now.saturating_sub(self.last_ns);
        if now > self.last_ns {
            self.last_ns = now;
        }
        // Cap elapsed so the product cannot overflow (rate < 2^32, 2^31 ns
        // ~ 2 s, more than any bucket needs to fill).
        let elapsed = if elapsed > (1 << 31) { 1 << 31 } else { elapsed };
        let mut tokens = self.tokens + elapsed * rate as u64;
        if fresh {
            tokens = cap;
        }
        if tokens > cap {
            tokens = cap;
        }
        if tokens >= TOKEN {
            self.tokens = tokens - TOKEN;
            true
        } else {
            self.tokens = tokens;
            false
        }
    }

    /// Gives back a token taken by [`take`](Self::take) (the other bucket
    /// said no): a refused event costs the reporter nothing.
    #[inline(always)]
    pub fn refund(&mut self) {
        self.tokens += TOKEN;
    }
}

/// Rate of one reporter's bucket: a share of the configured rate, at least 1.
#[inline(always)]
pub fn fair_rate(events_per_sec: u32) -> u32 {
    let r = events_per_sec / FAIR_SHARE;
    if r == 0 && events_per_sec != 0 { 1 } else { r }
}

/// Depth of one reporter's bucket: a share of the burst, at least 1.
#[inline(always)]
pub fn fair_burst(burst: u32) -> u32 {
    let b = burst / FAIR_SHARE;
    if b == 0 { 1 } else { b }
}

/// The bucket of a reporter (an IPv4 address in the first 4 bytes, the rest
/// zero, or an IPv6 address): a seeded hash of its words.
#[inline(always)]
pub fn reporter_bucket(addr: &[u8; 16], seed: u32) -> u32 {
    let w = |i: usize| u32::from_ne_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]]);
    bucket_of_words([w(0), w(4), w(8), w(12)], seed)
}

/// The bucket of the outer packet's source: the reporter of an ICMP error,
/// the sender of a DF packet. Bucket 0 when the header is cut short (the
/// parser has already checked it, so this does not happen).
#[inline(always)]
pub fn source_bucket(c: &Cursor, outer: &Outer, seed: u32) -> u32 {
    if outer.family == 4 {
        match c.get::<Ipv4Hdr>(outer.l3_off) {
            Some(ip) => bucket_of_words([u32::from_ne_bytes(ip.src), 0, 0, 0], seed),
            None => 0,
        }
    } else {
        match c.get::<Ipv6Hdr>(outer.l3_off) {
            Some(ip) => reporter_bucket(&ip.src, seed),
            None => 0,
        }
    }
}

/// [`reporter_bucket`] of an address as four native-endian words:
/// multiply-xor per word, then murmur3's finaliser so every input bit
/// reaches the top bits, which pick the bucket.
#[inline(always)]
pub fn bucket_of_words(w: [u32; 4], seed: u32) -> u32 {
    let mut h = seed ^ 0x9E37_79B9;
    h = (h ^ w[0]).wrapping_mul(0x85EB_CA6B).rotate_left(13);
    h = (h ^ w[1]).wrapping_mul(0xC2B2_AE35).rotate_left(13);
    h = (h ^ w[2]).wrapping_mul(0x85EB_CA6B).rotate_left(13);
    h ^= w[3];
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^= h >> 16;
    h >> (32 - FAIR_BUCKETS.trailing_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_new_bucket_starts_full_and_empties_after_burst() {
        let mut b = TokenBucket::default();
        let now = 10 * SEC;
        let got = (0..10).filter(|_| b.take(now, 2, 3)).count();
        assert_eq!(got, 3);
        // Half a second at 2/s: one more.
        assert!(b.take(now + SEC / 2, 2, 3));
        assert!(!b.take(now + SEC / 2, 2, 3));
    }

    #[test]
    fn a_slow_bucket_starts_full_too() {
        let mut b = TokenBucket::default();
        // A real monotonic clock: far past the 2 s refill cap.
        let got = (0..10).filter(|_| b.take(3600 * SEC, 1, 5)).count();
        assert_eq!(got, 5);
    }

    #[test]
    fn rate_zero_never_samples_and_time_never_runs_backwards() {
        let mut b = TokenBucket::default();
        assert!(!b.take(SEC, 0, 10));
        let mut b = TokenBucket::default();
        assert!(b.take(5 * SEC, 1, 1));
        assert!(!b.take(4 * SEC, 1, 1), "an earlier clock must not refill");
        assert_eq!(b.last_ns, 5 * SEC);
    }

    #[test]
    fn refund_gives_the_token_back() {
        let mut b = TokenBucket::default();
        assert!(b.take(SEC, 1, 1));
        assert!(!b.take(SEC, 1, 1));
        b.refund();
        assert!(b.take(SEC, 1, 1));
    }

    #[test]
    fn shares_are_never_zero_for_a_nonzero_rate() {
        assert_eq!(fair_rate(1000), 125);
        assert_eq!(fair_rate(3), 1);
        assert_eq!(fair_rate(0), 0);
        assert_eq!(fair_burst(200), 25);
        assert_eq!(fair_burst(1), 1);
    }

    #[test]
    fn reporters_spread_over_buckets_and_the_seed_moves_them() {
        let mut hits = [0u32; FAIR_BUCKETS as usize];
        for i in 0..(FAIR_BUCKETS * 64) {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&(0xC612_0000u32 + i).to_be_bytes());
            hits[reporter_bucket(&a, 1) as usize] += 1;
        }
        // Every bucket used, none holding more than 3x its share.
        assert!(hits.iter().all(|&n| n > 0 && n < 3 * 64), "{hits:?}");
        let a = [198, 18, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let moved = (0..32).filter(|&s| reporter_bucket(&a, s) != reporter_bucket(&a, 0)).count();
        assert!(moved > 16, "the seed hardly changes the bucket ({moved}/32)");
    }

    /// The policy the programs run: a flood from one reporter takes at most
    /// its share; another reporter still gets its event at once.
    #[test]
    fn a_flood_from_one_reporter_leaves_tokens_for_others() {
        let (rate, burst) = (1000, 200);
        let mut global = TokenBucket::default();
        let mut fair = [TokenBucket::default(); FAIR_BUCKETS as usize];
        let take = |global: &mut TokenBucket, fair: &mut [TokenBucket], bucket: u32, now: u64| {
            let f = &mut fair[bucket as usize];
            if !f.take(now, fair_rate(rate), fair_burst(burst)) {
                return false;
            }
            if !global.take(now, rate, burst) {
                f.refund();
                return false;
            }
            true
        };
        let flooder = reporter_bucket(&[198, 18, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 7);
        let mut real = [198, 18, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        while reporter_bucket(&real, 7) == flooder {
            real[3] += 1;
        }
        let start = 10 * SEC;
        let mut flood_events = 0;
        // One second of a 100k/s flood, one packet every 10 us.
        for i in 0..100_000u64 {
            flood_events += take(&mut global, &mut fair, flooder, start + i * 10_000) as u32;
        }
        assert!(flood_events <= fair_burst(burst) + fair_rate(rate) + 1, "{flood_events}");
        assert!(take(&mut global, &mut fair, reporter_bucket(&real, 7), start + SEC), "the real one got no token");
    }
}
