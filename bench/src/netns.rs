//! A private, unnamed network namespace for the benchmark process: it
//! vanishes with the process, so nothing can be left behind.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// Moves this (single-threaded) process into a new network namespace.
pub fn enter_private() -> Result<()> {
    // SAFETY: plain syscall; called before any thread is spawned.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).context("unshare(CLONE_NEWNET)");
    }
    sh(&["ip", "link", "set", "lo", "up"])
}

/// Runs a command (in the current namespace); fails loudly.
pub fn sh(argv: &[&str]) -> Result<()> {
    let out = Command::new(argv[0]).args(&argv[1..]).output().with_context(|| format!("running {argv:?}"))?;
    if !out.status.success() {
        bail!("{argv:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// ifindex of an interface in this namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .or_else(|_| {
            let out = Command::new("ip").args(["-o", "link", "show", name]).output()?;
            Ok::<_, std::io::Error>(
                String::from_utf8_lossy(&out.stdout).split(':').next().unwrap_or("").trim().to_string(),
            )
        })
        .with_context(|| format!("ifindex of {name}"))?;
    s.trim().parse().with_context(|| format!("ifindex of {name}: {s:?}"))
}

/// The benchmark topology: v0 (ingress, 198.18.0.1/24, MTU 9000) <-> v1
/// (peer, 198.18.0.2/24); `out0` (198.18.1.1/24, MTU 1500) is the egress
/// for 198.18.9.0/24 via 198.18.1.2. Forwarding on.
pub fn build_topology() -> Result<()> {
    sh(&["ip", "link", "add", "name", "v0", "mtu", "9000", "type", "veth", "peer", "name", "v1", "mtu", "9000"])?;
    sh(&["ip", "link", "add", "name", "out0", "type", "veth", "peer", "name", "out1"])?;
    sh(&["ip", "addr", "add", "198.18.0.1/24", "dev", "v0"])?;
    sh(&["ip", "addr", "add", "198.18.1.1/24", "dev", "out0"])?;
    for dev in ["v0", "v1", "out0", "out1"] {
        sh(&["ip", "link", "set", dev, "up"])?;
    }
    sh(&["ip", "route", "add", "198.18.9.0/24", "via", "198.18.1.2", "dev", "out0"])?;
    sh(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    Ok(())
}
