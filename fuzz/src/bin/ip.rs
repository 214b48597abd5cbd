//! fuzz-seeds: ip
//! The shared IP parser (`parse_ip_packet_l4`: a quote, or a packet) on
//! any bytes as IPv4 and as IPv6, against the oracle.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|packet: &[u8]| {
    netobs_fuzz::must(netobs_common::check::check_ip(packet, 4));
    netobs_fuzz::must(netobs_common::check::check_ip(packet, 6));
});
