//! Which packets get an event: fair token buckets with two choices.
//!
//! Why fair: one token bucket per CPU is first come, first served, so a
//! flood from one reporter (or one sender of DF packets) takes every token
//! and a real rejection from anyone else gets no event. Here each event
//! needs a token from two buckets:
//!
//! - one of its **reporter's two buckets** ("two choices"), picked from
//!   [`FAIR_BUCKETS`] by a seeded hash of the reporter's address
//!   ([`reporter_buckets`]); each refills at 1/[`FAIR_SHARE`] of the
//!   configured rate, so one reporter can never take more than two shares.
//!   Two choices: a flood from one reporter drains its own two buckets,
//!   and another reporter shares both only with probability (2/64)^2;
//! - the **global bucket**, at the configured rate and burst: the cap on
//!   what user space has to read.
//!
//! A flood from one reporter (or a few) therefore leaves the global bucket
//! most of its tokens and every other reporter's buckets full. A flood of
//! spoofed random reporters leaves the reporters' buckets full too (the
//! global bucket is asked first, and a refusal there touches no reporter's
//! bucket) and makes the global bucket the only limit: every error, the
//! real one included, then gets an event when it finds a global token,
//! about the configured rate over the flood's.
//! Nothing in a blind spoof's packet tells it from the real one (a pool of
//! spoofed sources repeats as a real reporter does), so the real
//! rejection's later errors and the counters carry it; user space confirms
//! its flow against the host's sockets. The seed is random per load, so a
//! flooder cannot aim at the buckets of a reporter it wants to hide.
//!
//! Plain functions: the programs and host tests run the same arithmetic.

use crate::cursor::Cursor;
use crate::parse::Outer;
use crate::wire::{Ipv4Hdr, Ipv6Hdr};

/// Per-reporter buckets per CPU (a power of two).
pub const FAIR_BUCKETS: u32 = 64;
/// One bucket refills at 1/FAIR_SHARE of the configured rate and burst; a
/// reporter has two, so it gets at most 1/8.
pub const FAIR_SHARE: u32 = 16;

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
        if !self.refill(now, rate, burst) {
            return false;
        }
        self.consume();
        true
    }

    /// The refill half of [`take`](Self::take): true when a token is
    /// there, left in place for [`consume`](Self::consume).
    #[inline(always)]
    pub fn refill(&mut self, now: u64, rate: u32, burst: u32) -> bool {
        if rate == 0 {
            return false;
        }
        // The same clock tick as the last refill (most events of a burst:
        // the clock is coarse): nothing to add, nothing to store.
        if now == self.last_ns && now != 0 {
            return self.tokens >= TOKEN;
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
        self.tokens = tokens;
        tokens >= TOKEN
    }

    /// Takes the token [`refill`](Self::refill) found.
    #[inline(always)]
    pub fn consume(&mut self) {
        self.tokens -= TOKEN;
    }
}

/// One CPU's buckets, in one map value so an event's tokens cost one map
/// lookup: the global bucket and the reporters' buckets.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Buckets {
    pub global: TokenBucket,
    pub fair: [TokenBucket; FAIR_BUCKETS as usize],
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

/// The seeded 32-bit hash of a reporter (an IPv4 address in the first 4
/// bytes, the rest zero, or an IPv6 address). Its top 12 bits pick the
/// fair buckets ([`buckets_of`]).
#[inline(always)]
pub fn reporter_hash(addr: &[u8; 16], seed: u32) -> u32 {
    let w = |i: usize| u32::from_ne_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]]);
    hash_words([w(0), w(4), w(8), w(12)], seed)
}

/// The two fair buckets of a reporter.
#[inline(always)]
pub fn reporter_buckets(addr: &[u8; 16], seed: u32) -> [u32; 2] {
    buckets_of(reporter_hash(addr, seed))
}

/// The two fair buckets of a source hash: its top 6 bits, and the next 6
/// (moved off the first when they are the same).
#[inline(always)]
pub fn buckets_of(hash: u32) -> [u32; 2] {
    let bits = FAIR_BUCKETS.trailing_zeros();
    let first = hash >> (32 - bits);
    let second = (hash >> (32 - 2 * bits)) & (FAIR_BUCKETS - 1);
    [first, if second == first { second ^ 1 } else { second }]
}

/// The hash of the outer packet's source: the reporter of an ICMP error,
/// the sender of a DF packet. 0 when the header is cut short (the parser
/// has already checked it, so this does not happen).
#[inline(always)]
pub fn source_hash(c: &Cursor, outer: &Outer, seed: u32) -> u32 {
    if outer.family == 4 {
        match c.get::<Ipv4Hdr>(outer.l3_off) {
            Some(ip) => hash_words([u32::from_ne_bytes(ip.src), 0, 0, 0], seed),
            None => 0,
        }
    } else {
        match c.get::<Ipv6Hdr>(outer.l3_off) {
            Some(ip) => reporter_hash(&ip.src, seed),
            None => 0,
        }
    }
}

/// [`reporter_hash`] of an address as four native-endian words:
/// multiply-xor per word, then murmur3's finaliser so every input bit
/// reaches every output bit.
#[inline(always)]
pub fn hash_words(w: [u32; 4], seed: u32) -> u32 {
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
    h
}

impl Buckets {
    /// The sampling decision for one event from a source of hash `hash`
    /// (see [`source_hash`]): a token from the global bucket and from one
    /// of the source's two fair buckets, or none.
    ///
    /// The global bucket is asked first: under a flood past the configured
    /// rate it is what refuses, so most errors of a flood pay for one
    /// refill and a compare, not for two more buckets (the datapath
    /// bench's "flood past the rate" row). The fair buckets are left alone
    /// then; a refill is linear and capped, so catching up later leaves
    /// them as a refill now would.
    #[inline(always)]
    pub fn take_fair(&mut self, now: u64, rate: u32, burst: u32, hash: u32) -> bool {
        if !self.global.refill(now, rate, burst) {
            return false;
        }
        let [first, second] = buckets_of(hash);
        let (fr, fb) = (fair_rate(rate), fair_burst(burst));
        let mut got = match self.fair.get_mut(first as usize) {
            Some(a) => a.take(now, fr, fb),
            None => false,
        };
        if !got && let Some(b) = self.fair.get_mut(second as usize) {
            got = b.take(now, fr, fb);
        }
        if got {
            self.global.consume();
        }
        got
    }
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
    fn shares_are_never_zero_for_a_nonzero_rate() {
        assert_eq!(fair_rate(1000), 62);
        assert_eq!(fair_rate(3), 1);
        assert_eq!(fair_rate(0), 0);
        assert_eq!(fair_burst(200), 12);
        assert_eq!(fair_burst(1), 1);
    }

    #[test]
    fn reporters_spread_over_buckets_and_the_seed_moves_them() {
        let mut hits = [0u32; FAIR_BUCKETS as usize];
        for i in 0..(FAIR_BUCKETS * 64) {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&(0xC612_0000u32 + i).to_be_bytes());
            let [first, second] = reporter_buckets(&a, 1);
            assert_ne!(first, second);
            hits[first as usize] += 1;
        }
        // Every bucket used, none holding more than 3x its share.
        assert!(hits.iter().all(|&n| n > 0 && n < 3 * 64), "{hits:?}");
        let a = [198, 18, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let moved = (0..32).filter(|&s| reporter_buckets(&a, s) != reporter_buckets(&a, 0)).count();
        assert!(moved > 16, "the seed hardly changes the bucket ({moved}/32)");
    }

    /// The policy the programs run ([`Buckets::take_fair`], as
    /// `netobs-ebpf` `maps::take_fair_token` calls it), on plain memory.
    struct Sampler {
        buckets: Buckets,
        rate: u32,
        burst: u32,
    }

    impl Sampler {
        fn new(rate: u32, burst: u32) -> Sampler {
            let buckets =
                Buckets { global: TokenBucket::default(), fair: [TokenBucket::default(); FAIR_BUCKETS as usize] };
            Sampler { buckets, rate, burst }
        }

        fn take(&mut self, hash: u32, now: u64) -> bool {
            self.buckets.take_fair(now, self.rate, self.burst, hash)
        }
    }

    #[test]
    fn a_flood_past_the_rate_is_refused_before_the_reporters_buckets() {
        let mut s = Sampler::new(10, 1);
        let hash = 0x1234_5678;
        assert!(s.take(hash, SEC), "a new bucket starts full");
        // The global bucket is empty: refused, no reporter's bucket touched.
        let fair = s.buckets.fair;
        for i in 0..1000 {
            assert!(!s.take(hash, SEC + i));
        }
        assert_eq!(s.buckets.fair, fair);
        // A tenth of a second later the global token is back; the first
        // reporter bucket (1 token/s) is still short, the second is not.
        assert!(s.take(hash, SEC + SEC / 10));
        let [first, second] = buckets_of(hash);
        assert_eq!(s.buckets.fair[first as usize].last_ns, SEC + SEC / 10, "caught up when asked");
        assert!(s.buckets.fair[second as usize].tokens < TOKEN, "the second bucket's token was taken");
        assert!(!s.take(hash, SEC + SEC / 10), "and the global bucket is empty again");
    }

    fn v4(a: u32) -> [u8; 16] {
        let mut w = [0u8; 16];
        w[..4].copy_from_slice(&a.to_be_bytes());
        w
    }

    /// A flood from one reporter takes at most its two shares; another
    /// reporter still gets its event at once.
    #[test]
    fn a_flood_from_one_reporter_leaves_tokens_for_others() {
        let mut s = Sampler::new(1000, 200);
        let flooder = reporter_hash(&v4(0xC612_0909), 7);
        let [fa, fb] = buckets_of(flooder);
        // Even a reporter sharing one of the flooder's buckets.
        let mut real = 0xC612_0201;
        while !buckets_of(reporter_hash(&v4(real), 7)).contains(&fa)
            || buckets_of(reporter_hash(&v4(real), 7)).contains(&fb)
        {
            real += 1;
        }
        let start = 10 * SEC;
        let mut flood_events = 0;
        // One second of a 100k/s flood, one packet every 10 us.
        for i in 0..100_000u64 {
            flood_events += s.take(flooder, start + i * 10_000) as u32;
        }
        let share = fair_burst(200) + fair_rate(1000) + 1;
        assert!(flood_events <= 2 * share + share, "{flood_events}");
        assert!(s.take(reporter_hash(&v4(real), 7), start + SEC), "the real one got no token");
    }

    /// A flood of random spoofed reporters: the reporters' buckets stay
    /// full (the global bucket refuses first), the global bucket is the
    /// limit, and the flood gets no more than the configured rate and burst.
    #[test]
    fn a_random_reporter_flood_gets_the_global_rate_only() {
        let mut s = Sampler::new(1000, 200);
        let mut x: u32 = 0x1234_5678;
        let start = 10 * SEC;
        let mut events = 0u32;
        // 2 s at 100k/s, spoofed reporters in 198.19.0.0/16.
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            events += s.take(reporter_hash(&v4(0xC613_0000 | (x & 0xffff)), 7), start + i * 10_000) as u32;
        }
        assert!((2000..=2000 + 200 + 1).contains(&events), "{events}");
        assert!(s.buckets.fair.iter().all(|b| b.tokens >= TOKEN), "a reporter's bucket ran dry: {:?}", s.buckets.fair);
    }

    #[test]
    fn two_choices_are_distinct_buckets() {
        for h in [0u32, 1, u32::MAX, 0xFC00_0000, 0x03F0_0000, 0xFFF0_0000] {
            let [a, b] = buckets_of(h);
            assert!(a < FAIR_BUCKETS && b < FAIR_BUCKETS && a != b, "{h:#x}: {a} {b}");
        }
    }
}
