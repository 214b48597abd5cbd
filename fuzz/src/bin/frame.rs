//! fuzz-seeds: frame
//! The shared frame parser (`parse_outer` + `parse_icmp_error`, what the
//! XDP/TC programs run) on any bytes, checked field by field against the
//! slice-based oracle in `netobs_common::check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    netobs_fuzz::must(netobs_common::check::check_frame(frame));
});
