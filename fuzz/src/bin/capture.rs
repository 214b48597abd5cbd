//! fuzz-seeds: capture
//! `netobs read`'s capture path on any bytes: the pcap/pcapng reader, the
//! link-type decapsulation (Ethernet, SLL, SLL2, raw IP, PPP, loopback)
//! and the frame classification, with every decapsulated frame also
//! checked against the shared parser's oracle. Bounded like `read`: a
//! damaged record ends the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netobs_fuzz::{
    frame,
    linktype::{Link, as_ethernet, classify},
    pcap::Capture,
};

fuzz_target!(|data: &[u8]| {
    let Ok(mut cap) = Capture::open(Box::new(std::io::Cursor::new(data.to_vec()))) else {
        return;
    };
    let mut scratch = Vec::new();
    for _ in 0..4096 {
        let Some(Ok(rec)) = cap.next_record() else { break };
        let (link, bytes, wire_len) = (rec.link, rec.data.to_vec(), rec.wire_len);
        if let Link::Ip { l3, ethertype, way } = classify(link, &bytes) {
            let eth = as_ethernet(link, &bytes, l3, ethertype, &mut scratch);
            let _ = frame::classify(eth, u64::from(wire_len), 1, way);
            netobs_fuzz::must(netobs_common::check::check_frame(eth));
        }
    }
});
