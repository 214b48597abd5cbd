//! Builds the eBPF object (netobs-ebpf, nightly + bpf-linker) and leaves it
//! in OUT_DIR for `include_bytes_aligned!`. `cargo xtask setup` installs
//! what this needs; the error below says so when it is missing.
//!
//! Also records the git commit for `netobs --version` and
//! `netobs_build_info` (`NETOBS_GIT_COMMIT`): from the environment when a
//! packager sets it, else from `git`, else "unknown" (a source tarball).

use std::{path::Path, process::Command};

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root = Path::new(&manifest_dir).parent().ok_or_else(|| anyhow!("netobs/ has no parent"))?;
    git_commit(root);
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

/// Sets `NETOBS_GIT_COMMIT` and asks cargo to rerun when HEAD moves. Never
/// fails the build: a checkout without git (or without .git) says "unknown".
fn git_commit(root: &Path) {
    println!("cargo:rerun-if-env-changed=NETOBS_GIT_COMMIT");
    if let Ok(c) = std::env::var("NETOBS_GIT_COMMIT")
        && !c.trim().is_empty()
    {
        println!("cargo:rustc-env=NETOBS_GIT_COMMIT={}", c.trim());
        return;
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").arg("-C").arg(root).args(args).output().ok()?;
        let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !s.is_empty()).then_some(s)
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=NETOBS_GIT_COMMIT={commit}");
    // HEAD (a worktree has its own), the branch it points to, and
    // packed-refs: a commit or a checkout changes one of them.
    for p in ["HEAD", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", p]) {
            watch(&path);
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &branch])
    {
        watch(&path);
    }
}

/// A missing file would make cargo rerun this script on every build.
fn watch(path: &str) {
    if Path::new(path).exists() {
        println!("cargo:rerun-if-changed={path}");
    }
}
