//! Shared pieces of the fuzz targets in `src/bin/` (one file per target).
//!
//! The probe-reply parser lives in the `netobs` binary crate, whose build
//! runs the eBPF build; the fuzz targets take `probe/packet.rs` by path
//! instead (it depends only on `netobs-common`, serde, clap and thiserror).

// `netobs read`'s capture path: the pcap/pcapng reader, the link-type
// decapsulation and the frame classification, by path like `packet` (they
// depend only on netobs-common and pcap-file, and name each other as
// `super::linktype`, hence the crate root).
#[path = "../../netobs/src/capture/frame.rs"]
#[allow(dead_code, clippy::all)]
pub mod frame;
#[path = "../../netobs/src/capture/linktype.rs"]
#[allow(dead_code, clippy::all)]
pub mod linktype;
#[path = "../../netobs/src/capture/pcap.rs"]
#[allow(dead_code, clippy::all)]
pub mod pcap;

#[path = "../../netobs/src/probe/packet.rs"]
#[allow(dead_code, clippy::all)]
pub mod packet;

/// Runs `check` and panics with its message: libFuzzer records the input
/// as a crash, with the disagreement in the log.
pub fn must(check: Result<(), String>) {
    if let Err(e) = check {
        panic!("invariant broken: {e}");
    }
}
