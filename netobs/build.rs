//! Builds the eBPF object (netobs-ebpf, nightly + bpf-linker) and leaves it
//! in OUT_DIR for `include_bytes_aligned!`. `cargo xtask setup` installs
//! what this needs; the error below says so when it is missing.

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir).parent().ok_or_else(|| anyhow!("netobs/ has no parent"))?;
    let ebpf_dir = root.join("netobs-ebpf");
    let common_dir = root.join("netobs-common");
    // aya-build watches the eBPF crate; the shared parser changes it too.
    println!("cargo:rerun-if-changed={}", common_dir.display());
    let ebpf_dir = ebpf_dir.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "netobs-ebpf", root_dir: ebpf_dir, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
    .context("building the eBPF programs failed; run `cargo xtask setup` (nightly rust-src and bpf-linker) and retry")
}
