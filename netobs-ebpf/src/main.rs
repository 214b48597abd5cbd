//! netobs kernel programs. Thin on purpose: parsing lives in
//! `netobs-common` (shared with user space and host tests); this crate only
//! wires contexts to it, counts, samples and returns.
//!
//! Every program is an observer: XDP always returns `XDP_PASS`, TC always
//! `TC_ACT_UNSPEC` (continue with the next program / default action).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod classify;
#[cfg(target_arch = "bpf")]
mod clock;
#[cfg(target_arch = "bpf")]
mod emit;
#[cfg(target_arch = "bpf")]
mod fib;
#[cfg(target_arch = "bpf")]
mod flows;
#[cfg(target_arch = "bpf")]
mod foreign;
#[cfg(target_arch = "bpf")]
mod icmp_send;
#[cfg(target_arch = "bpf")]
mod kfree;
#[cfg(target_arch = "bpf")]
mod log;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod mem;
#[cfg(target_arch = "bpf")]
mod programs;
#[cfg(target_arch = "bpf")]
mod retrans;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // No panic is reachable (the parser only uses checked reads); this keeps
    // the linker happy. An infinite loop would be rejected by the verifier,
    // which is what we want should one ever become reachable.
    loop {}
}

/// Host builds (`cargo check --workspace`) compile to an empty binary.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
