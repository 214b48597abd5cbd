//! `cargo xtask lab up|down|list`: field-notes topologies to explore by hand.

use anyhow::Result;
use clap::Subcommand;
use netobs_lab::scenarios;

#[derive(Subcommand)]
pub enum LabCmd {
    /// Build a scenario and leave it running.
    Up {
        /// Scenario name (see `lab list`).
        scenario: String,
    },
    /// Remove labs: one by id, or every netobs lab namespace (also what a
    /// crashed run left behind).
    Down {
        /// Lab id printed by `lab up` (default: all).
        id: Option<String>,
    },
    /// List the scenarios and the labs that are up.
    List,
}

pub fn run(cmd: LabCmd) -> Result<()> {
    match cmd {
        LabCmd::Up { scenario } => {
            let mut s = scenarios::build(&scenario)?;
            println!("{}", s.describe());
            s.lab.keep();
            println!("\nlab {} is up. Explore it with, e.g.:", s.lab.id());
            println!("  ip netns exec {} ping -c1 {}", s.client.ns_name(), s.server_v4);
            println!("  ip netns exec {} target/debug/netobs watch -i eth0", s.server.ns_name());
            println!("Remove it with: cargo xtask lab down {}", s.lab.id());
            Ok(())
        }
        LabCmd::Down { id } => {
            let removed = match id {
                Some(id) => netobs_lab::cleanup_lab(&id)?,
                None => netobs_lab::cleanup_stale()?,
            };
            if removed.is_empty() {
                println!("no lab namespaces to remove");
            }
            for ns in removed {
                println!("removed {ns}");
            }
            Ok(())
        }
        LabCmd::List => {
            println!("scenarios:");
            for (name, what) in scenarios::names() {
                println!("  {name:<22} {what}");
            }
            let up: Vec<String> =
                netobs_lab::list_namespaces()?.into_iter().filter(|n| n.starts_with(netobs_lab::NS_PREFIX)).collect();
            println!("\nlab namespaces up: {}", if up.is_empty() { "none".to_string() } else { up.join(" ") });
            Ok(())
        }
    }
}
