//! `cargo xtask run` with no arguments: field-notes scenario 1 in a lab,
//! with netobs watching the server, so a newcomer sees the product work
//! without a network of their own.

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{Context as _, Result};
use netobs_lab::scenarios;

pub fn run(netobs: &Path) -> Result<()> {
    if !crate::util::is_root() {
        anyhow::bail!("the demo builds network namespaces and attaches eBPF: run it as root");
    }
    netobs_lab::install_signal_cleanup()?;
    let s = scenarios::build("acl-reject")?;
    println!("== netobs demo: field notes, scenario 1 (a remote ACL rejects our return traffic)");
    println!(
        "   client {} -> customer router (rejects the server's SYN-ACKs with ICMP 3/10) -> our router -> server {}:{}",
        s.client_v4,
        s.server_v4,
        scenarios::ACL_PORT
    );
    println!("   netobs watches the server's eth0; the client then tries to connect.\n");

    let xtask = std::env::current_exe().context("locating xtask")?;
    let xtask = xtask.to_str().context("non-UTF-8 path")?;
    let port = scenarios::ACL_PORT.to_string();
    let _listener = s.server.spawn(&[xtask, "lab-tool", "listen", "--port", &port, "--seconds", "30"])?;

    // netobs writes straight to our stdout, so its own `--color auto`
    // colours a terminal and leaves pipes and CI logs plain (NO_COLOR too).
    let mut watch = s.server.command(netobs.to_str().context("non-UTF-8 path")?);
    watch
        .args(["watch", "-i", "eth0", "--no-metrics", "--update-interval", "2"])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let mut watch = watch.spawn().context("starting netobs watch")?;
    std::thread::sleep(Duration::from_millis(1500));

    let target = format!("{}:{}", s.server_v4, scenarios::ACL_PORT);
    println!("-- client: connecting to {target} (3 s timeout)...");
    let out = s.client.run_ok(&[xtask, "lab-tool", "connect", &target, "--timeout", "4"])?;
    println!("-- client: {}", out.trim());
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(watch.id() as i32, libc::SIGTERM) };
    let status = watch.wait().context("waiting for netobs")?;
    println!("\n== netobs exited ({status}); the lab is torn down now.");
    Ok(())
}
