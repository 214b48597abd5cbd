//! Code generation flags for the eBPF object (bpf-linker does the codegen).
//!
//! `allows-misaligned-mem-access` (LLVM 22): without it LLVM splits every
//! load or store it cannot prove aligned into single bytes, and the packet
//! headers are byte arrays, so a 4-byte address became four loads, three
//! shifts and three ors, and its copy into an event four byte stores
//! (about 490 of them in the ICMP-error path alone). The verifier allows
//! misaligned packet and map-value access on architectures with efficient
//! unaligned access (x86-64, arm64); stack accesses stay aligned (LLVM
//! aligns stack slots to their use), which the datapath tests check by
//! loading every program.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("bpf") {
        // Stack values that LLVM copies with word stores must sit on
        // aligned slots (`mem::Aligned`, field order of stack structs):
        // the verifier refuses a misaligned stack access, and
        // `verifier_accepts_every_program` loads every program to check.
        println!("cargo:rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
    }
}
