//! fuzz-seeds: icmp_error
//! Structured ICMP errors: the fuzzer picks the family, type, code, the 4
//! type-specific bytes, VLAN tags, trailing padding and the quoted bytes;
//! the frame around them is well formed, so every input reaches the quote
//! parser (a flat byte fuzzer mostly fails at the outer header).
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use netobs_common::craft::Frame;

fuzz_target!(|input: &[u8]| {
    let [sel, icmp_type, code, r0, r1, r2, r3, pad, quote @ ..] = input else { return };
    let v6 = sel & 1 != 0;
    let mut f = if v6 {
        Frame::ipv6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe), Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1))
    } else {
        Frame::ipv4(Ipv4Addr::new(198, 18, 0, 254), Ipv4Addr::new(198, 18, 1, 1))
    };
    // Mostly reported error types, sometimes anything.
    let t = if sel & 2 != 0 {
        *icmp_type
    } else if v6 {
        [1u8, 2, 3, 4, 137][usize::from(*icmp_type) % 5]
    } else {
        [3u8, 4, 5, 11, 12][usize::from(*icmp_type) % 5]
    };
    if sel & 4 != 0 {
        f = f.vlan(100);
    }
    if sel & 8 != 0 {
        f = f.qinq(10, 20);
    }
    if sel & 16 != 0 {
        f = f.ttl(*pad);
    }
    let Ok(mut bytes) = f.icmp_error(t, *code, quote).rest([*r0, *r1, *r2, *r3]).try_bytes() else { return };
    // Ethernet padding / trailers after the IP packet.
    bytes.extend(std::iter::repeat_n(*pad, usize::from(*pad % 64)));
    netobs_fuzz::must(netobs_common::check::check_frame(&bytes));
});
