//! `cargo xtask setup`: the toolchain and packages netobs needs, installed
//! idempotently. Each step says what it checks, what it does, and on
//! failure which command to run to retry it by hand.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::util::{is_root, run_loud, which};

/// Debian packages: the lab (iproute2, nftables, iptables, ethtool,
/// conntrack, procps), traffic and inspection tools (ping, tcpdump,
/// bpftool, python3 for test traffic), the peers `cargo xtask bench
/// probes` compares against, and what the deployment tests run: a real
/// Prometheus server (the `prometheus` package brings `promtool`),
/// `systemd-analyze` (package `systemd`) and python3-yaml for the manifests.
pub const PACKAGES: &[&str] = &[
    "iproute2",
    "nftables",
    "iptables",
    "iputils-ping",
    "tcpdump",
    "traceroute",
    "iputils-tracepath",
    "mtr-tiny",
    // dnsmasq's binary without the system service (the tests start their
    // own inside a lab namespace, serving PTR records for trace names).
    "dnsmasq-base",
    "scamper",
    "bpftool",
    "ethtool",
    "conntrack",
    // Test traffic helpers run inside lab namespaces, and sysctl for the lab.
    "python3",
    "procps",
    // deploy/: `promtool check|test`, a Prometheus server in the lab,
    // `systemd-analyze verify`, the Kubernetes manifest checks.
    "prometheus",
    "systemd",
    "python3-yaml",
];

/// bpf-linker release built against the nightly's LLVM.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Runs every step; with `check` only reports.
pub fn run(check: bool) -> Result<()> {
    let mut missing = Vec::new();
    step("Debian packages", || packages(check), &mut missing)?;
    step("nightly rust-src", || rust_src(check), &mut missing)?;
    step("bpf-linker", || bpf_linker(check), &mut missing)?;
    step("cargo-fuzz", || cargo_fuzz(check), &mut missing)?;
    if check && !missing.is_empty() {
        bail!("missing: {} (run `cargo xtask setup`)", missing.join(", "));
    }
    eprintln!("xtask: setup complete");
    Ok(())
}

/// Quietly checks, and runs the full setup only when something is missing.
pub fn ensure() -> Result<()> {
    let ok = packages(true).map(|m| m.is_empty()).unwrap_or(false)
        && rust_src(true).map(|m| m.is_empty()).unwrap_or(false)
        && bpf_linker(true).map(|m| m.is_empty()).unwrap_or(false);
    if ok {
        return Ok(());
    }
    eprintln!("xtask: something is missing; running `cargo xtask setup` first");
    run(false)
}

/// `cargo xtask fuzz` needs cargo-fuzz (the other tasks do not, so
/// [`ensure`] leaves it out).
pub fn ensure_cargo_fuzz() -> Result<()> {
    rust_src(false)?;
    cargo_fuzz(false).map(|_| ())
}

/// cargo-fuzz from the crates registry (`--locked`: its own lock file).
fn cargo_fuzz(check: bool) -> Result<Vec<String>> {
    let bin = cargo_home().join("bin").join("cargo-fuzz");
    let works = Command::new(&bin).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if works {
        eprintln!("xtask:   {} works", bin.display());
        return Ok(Vec::new());
    }
    eprintln!("xtask:   cargo-fuzz is missing");
    if check {
        return Ok(vec!["cargo-fuzz".into()]);
    }
    run_loud(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
        .context("installing cargo-fuzz (retry with: cargo install cargo-fuzz --locked)")?;
    Ok(Vec::new())
}

fn step(name: &str, f: impl FnOnce() -> Result<Vec<String>>, missing: &mut Vec<String>) -> Result<()> {
    eprintln!("xtask: setup step: {name}");
    match f() {
        Ok(m) => {
            missing.extend(m);
            Ok(())
        }
        Err(e) => Err(e.context(format!("setup step '{name}' failed"))),
    }
}

fn packages(check: bool) -> Result<Vec<String>> {
    let missing: Vec<String> = PACKAGES
        .iter()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .map(|p| p.to_string())
        .collect();
    if missing.is_empty() {
        eprintln!("xtask:   all {} packages installed", PACKAGES.len());
        return Ok(missing);
    }
    eprintln!("xtask:   missing packages: {}", missing.join(" "));
    if check {
        return Ok(missing);
    }
    let retry = format!("apt-get update && apt-get install -y --no-install-recommends {}", missing.join(" "));
    let (prog, pre): (&str, Vec<&str>) = if is_root() {
        ("apt-get", vec![])
    } else if which("sudo").is_some() {
        ("sudo", vec!["apt-get"])
    } else {
        bail!("installing packages needs root (no sudo here); as root run: {retry}");
    };
    let apt = |args: &[&str]| {
        let mut c = Command::new(prog);
        c.args(&pre).args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run_loud(&mut apt(&["update", "-q"])).with_context(|| format!("retry with: {retry}"))?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    run_loud(&mut install).with_context(|| format!("retry with: {retry}"))?;
    Ok(Vec::new())
}

fn rust_src(check: bool) -> Result<Vec<String>> {
    let out = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("running rustup (is rustup installed?)")?;
    if !out.status.success() {
        bail!(
            "the nightly toolchain is not installed ({}); retry with: rustup toolchain install nightly --component rust-src",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask:   rust-src installed for nightly");
        return Ok(Vec::new());
    }
    if check {
        return Ok(vec!["rust-src".into()]);
    }
    run_loud(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
        .context("retry with: rustup component add rust-src --toolchain nightly")?;
    Ok(Vec::new())
}

/// Facts about the nightly toolchain that bpf-linker must match.
struct Nightly {
    sysroot: PathBuf,
    llvm_major: String,
    /// `rustc -vV` commit-hash: a new nightly means a new libLLVM file.
    commit: String,
}

fn nightly() -> Result<Nightly> {
    let vv = Command::new("rustc").args(["+nightly", "-vV"]).output().context("running rustc +nightly -vV")?;
    if !vv.status.success() {
        bail!("rustc +nightly -vV failed: {}", String::from_utf8_lossy(&vv.stderr).trim());
    }
    let text = String::from_utf8_lossy(&vv.stdout).into_owned();
    let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
    let llvm = field("LLVM version:").context("rustc +nightly -vV printed no LLVM version")?;
    let llvm_major = llvm.split('.').next().unwrap_or("").to_string();
    if llvm_major.is_empty() || !llvm_major.chars().all(|c| c.is_ascii_digit()) {
        bail!("cannot read the LLVM major from {llvm:?}");
    }
    let sysroot =
        Command::new("rustc").args(["+nightly", "--print", "sysroot"]).output().context("rustc --print sysroot")?;
    Ok(Nightly {
        sysroot: PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim()),
        llvm_major,
        commit: field("commit-hash:").unwrap_or_default(),
    })
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo"))
}

/// Where the LLVM prefix (two symlinks to the nightly's libLLVM) lives. It
/// must outlive the build: bpf-linker's RUNPATH points at it.
fn llvm_prefix(n: &Nightly) -> PathBuf {
    cargo_home().join("netobs-llvm").join(format!("llvm-{}-{}", n.llvm_major, &n.commit[..n.commit.len().min(12)]))
}

fn stamp_path() -> PathBuf {
    cargo_home().join("netobs-llvm").join("bpf-linker.stamp")
}

fn bpf_linker(check: bool) -> Result<Vec<String>> {
    let n = nightly()?;
    let want_stamp = format!("bpf-linker {BPF_LINKER_VERSION} llvm-{} nightly {}", n.llvm_major, n.commit);
    let bin = cargo_home().join("bin").join("bpf-linker");
    let works = Command::new(&bin).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    let stamp_ok = std::fs::read_to_string(stamp_path()).map(|s| s.trim() == want_stamp).unwrap_or(false);
    if works && stamp_ok {
        eprintln!("xtask:   {} works ({want_stamp})", bin.display());
        return Ok(Vec::new());
    }
    eprintln!(
        "xtask:   bpf-linker {} (needs one built against the nightly's LLVM {})",
        if works { "was built for another nightly" } else { "is missing" },
        n.llvm_major
    );
    if check {
        return Ok(vec!["bpf-linker".into()]);
    }
    let lib = find_libllvm(&n.sysroot.join("lib"))?;
    let prefix = llvm_prefix(&n);
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib).with_context(|| format!("creating {}", prefix_lib.display()))?;
    let file_name = lib.file_name().context("libLLVM has no file name")?;
    for link in [prefix_lib.join("libLLVM.so"), prefix_lib.join(file_name)] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link).with_context(|| format!("linking {}", link.display()))?;
    }
    let feature = format!("llvm-{}", n.llvm_major);
    let mut install = Command::new("cargo");
    install
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--force",
            "--no-default-features",
            "--features",
            &feature,
        ])
        .env("LLVM_PREFIX", &prefix);
    let retry = format!(
        "LLVM_PREFIX={} cargo install bpf-linker --version {BPF_LINKER_VERSION} --force --no-default-features --features {feature}",
        prefix.display()
    );
    run_loud(&mut install).with_context(|| format!("retry with: {retry}"))?;
    std::fs::write(stamp_path(), &want_stamp).context("writing the bpf-linker stamp")?;
    Ok(Vec::new())
}

/// The nightly's own libLLVM (`libLLVM.so.<major>...-rust-...`).
fn find_libllvm(dir: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    // bpf-linker's NEEDED entry is the versioned `libLLVM.so.<ver>-rust-...`.
    if let Some(name) = names.iter().find(|n| n.starts_with("libLLVM.so.")) {
        return Ok(dir.join(name));
    }
    bail!("no libLLVM shared library in {} (the nightly should ship one)", dir.display())
}
