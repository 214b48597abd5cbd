//! Shared pieces of the fuzz targets in `src/bin/` (one file per target).
//!
//! The probe-reply parser lives in the `netobs` binary crate, whose build
//! runs the eBPF build; the fuzz targets take `probe/packet.rs` by path
//! instead (it depends only on `netobs-common`, serde, clap and thiserror).

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
