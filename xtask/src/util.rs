//! Small helpers: running commands loudly, privileges, paths.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// The workspace root (xtask lives in `<root>/xtask`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Prints and runs a command; fails with its status.
pub fn run_loud(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", show(cmd));
    let status = cmd.status().with_context(|| format!("starting {}", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// A command line as a shell would show it.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            s.push_str(&format!(" '{a}'"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// `cargo` of the toolchain running xtask.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Builds netobs (the build script compiles the eBPF object) and returns
/// the binary's path.
pub fn build_netobs(release: bool) -> Result<PathBuf> {
    let mut c = cargo();
    c.args(["build", "-p", "netobs"]);
    if release {
        c.arg("--release");
    }
    run_loud(&mut c).context("building netobs (if the eBPF build failed, `cargo xtask setup` installs its tools)")?;
    Ok(target_dir().join(if release { "release" } else { "debug" }).join("netobs"))
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// A command for `bin args` with the privileges netobs needs: as is when
/// root, through `sudo -E` when sudo exists, else a clear error.
pub fn privileged(bin: &Path, args: &[String]) -> Result<Command> {
    if is_root() {
        let mut c = Command::new(bin);
        c.args(args);
        return Ok(c);
    }
    if which("sudo").is_some() {
        let mut c = Command::new("sudo");
        c.arg("-E").arg(bin).args(args);
        return Ok(c);
    }
    bail!("netobs needs root (eBPF, raw sockets, network namespaces) and there is no sudo here: run this as root")
}

/// Finds a program on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}
