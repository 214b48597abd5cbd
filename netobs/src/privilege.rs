//! Capabilities: checked up front, dropped once they are used.
//!
//! Every command knows which capabilities it needs ([`needs`]) and checks
//! them before it touches the kernel, so a missing one is one line naming
//! it and how to grant it (exit 2), instead of an EPERM from deep inside a
//! map creation. Root passes the same check: a root process in a
//! container without CAP_BPF gets the same clear line.
//!
//! What each needs and why:
//! - CAP_BPF: create the maps and load the programs;
//! - CAP_PERFMON: programs that read kernel memory (the `icmp_send` BTF
//!   tracepoint) and pointer arithmetic in the packet programs;
//! - CAP_NET_ADMIN: attach XDP / TC to interfaces, and conntrack (nfnetlink
//!   refuses every request without it) for the NAT join;
//! - CAP_NET_RAW: the probes' raw sockets.
//!
//! Once the kernel objects exist and the sockets are open, [`drop_to`]
//! keeps only what the rest of the run still uses: maps, ring buffer, the
//! stage flush (BPF_PROG_TEST_RUN) and links are used through descriptors
//! already held, which needs no capability. The ambient and inheritable
//! sets are cleared and `no_new_privs` is set, so nothing netobs runs
//! inherits more; the bounding set is reduced too when the process may do
//! that (CAP_SETPCAP, i.e. when started as root).

use std::fmt;

use anyhow::{Context as _, Result};
use caps::{CapSet, Capability};

/// The capabilities of a BPF observer.
pub(crate) const KERNEL: [Capability; 3] = [Capability::CAP_BPF, Capability::CAP_NET_ADMIN, Capability::CAP_PERFMON];

/// A command started without a capability it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub command: &'static str,
    pub missing: Vec<Capability>,
    pub needed: Vec<Capability>,
}

fn names(caps: &[Capability]) -> String {
    caps.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exe = std::env::current_exe().ok().map(|p| p.display().to_string()).unwrap_or_else(|| "netobs".into());
        let setcap = self.needed.iter().map(|c| c.to_string().to_lowercase()).collect::<Vec<_>>().join(",");
        let ambient = self.needed.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" ");
        write!(f, "netobs {} needs {}", self.command, names(&self.needed))?;
        if self.missing != self.needed {
            write!(f, " (missing: {})", names(&self.missing))?;
        }
        write!(
            f,
            ": run it as root, or grant them with `setcap {setcap}=ep {exe}` or AmbientCapabilities={ambient} in its systemd unit"
        )
    }
}

impl std::error::Error for Missing {}

/// What `command` needs. `kernel`: it loads the eBPF observer; `raw`: it
/// opens raw sockets.
pub(crate) fn needs(kernel: bool, raw: bool) -> Vec<Capability> {
    let mut v = Vec::new();
    if kernel {
        v.extend(KERNEL);
    }
    if raw {
        v.push(Capability::CAP_NET_RAW);
    }
    v
}

/// What `watch` keeps once attached: CAP_NET_ADMIN for the conntrack join
/// (nfnetlink) and, with `--all`, CAP_BPF too, to attach to interfaces
/// that appear later. The rest of the run works through descriptors.
pub(crate) fn after_attach(all: bool) -> Vec<Capability> {
    if all { vec![Capability::CAP_NET_ADMIN, Capability::CAP_BPF] } else { vec![Capability::CAP_NET_ADMIN] }
}

/// Which of `needed` are not in `effective`.
fn missing_from(effective: &caps::CapsHashSet, needed: &[Capability]) -> Vec<Capability> {
    needed.iter().copied().filter(|c| !effective.contains(c)).collect()
}

/// Checks that every capability in `needed` is effective now.
pub(crate) fn check(command: &'static str, needed: &[Capability]) -> Result<(), Missing> {
    let effective = match caps::read(None, CapSet::Effective) {
        Ok(e) => e,
        Err(e) => {
            // Cannot tell (no capget?): let the kernel decide.
            log::debug!("reading the effective capabilities: {e}");
            return Ok(());
        }
    };
    let missing = missing_from(&effective, needed);
    if missing.is_empty() { Ok(()) } else { Err(Missing { command, missing, needed: needed.to_vec() }) }
}

/// Keeps only `keep` (those of them the process has) in the effective and
/// permitted sets, clears the ambient and inheritable sets, sets
/// `no_new_privs`, and reduces the bounding set when allowed. Idempotent.
pub(crate) fn drop_to(keep: &[Capability]) -> Result<()> {
    // The bounding set first: dropping from it needs CAP_SETPCAP, which
    // goes away below. Only root normally holds it; without it the
    // bounding set stays (no_new_privs still stops any gain on exec).
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        let bounding = caps::read(None, CapSet::Bounding).context("reading the bounding capability set")?;
        for c in bounding.iter().filter(|c| !keep.contains(c)) {
            caps::drop(None, CapSet::Bounding, *c).with_context(|| format!("dropping {c} from the bounding set"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).context("clearing the ambient capabilities")?;
    caps::clear(None, CapSet::Inheritable).context("clearing the inheritable capabilities")?;
    let permitted = caps::read(None, CapSet::Permitted).context("reading the permitted capabilities")?;
    let kept: caps::CapsHashSet = permitted.iter().copied().filter(|c| keep.contains(c)).collect();
    // Effective must stay a subset of permitted: shrink it first.
    caps::set(None, CapSet::Effective, &kept).context("reducing the effective capabilities")?;
    caps::set(None, CapSet::Permitted, &kept).context("reducing the permitted capabilities")?;
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setting no_new_privs");
    }
    log::info!("capabilities after setup: {}", if kept.is_empty() { "none".into() } else { names(&sorted(&kept)) });
    Ok(())
}

fn sorted(set: &caps::CapsHashSet) -> Vec<Capability> {
    let mut v: Vec<Capability> = set.iter().copied().collect();
    v.sort_by_key(|c| c.index());
    v
}

/// [`drop_to`], where a failure only costs least privilege, never the run:
/// logged.
pub(crate) fn drop_to_or_warn(keep: &[Capability]) {
    if let Err(e) = drop_to(keep) {
        log::warn!("could not drop capabilities no longer needed: {e:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_one_line_naming_what_is_missing_and_how_to_grant_it() {
        let m = Missing {
            command: "watch",
            missing: vec![Capability::CAP_BPF, Capability::CAP_PERFMON],
            needed: KERNEL.to_vec(),
        };
        let s = m.to_string();
        assert!(!s.contains('\n'), "{s}");
        assert!(
            s.starts_with("netobs watch needs CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON (missing: CAP_BPF, CAP_PERFMON): "),
            "{s}"
        );
        assert!(s.contains("setcap cap_bpf,cap_net_admin,cap_perfmon=ep"), "{s}");
        assert!(s.contains("AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON"), "{s}");
    }

    #[test]
    fn missing_is_computed_against_the_effective_set() {
        let have: caps::CapsHashSet = [Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW].into_iter().collect();
        assert_eq!(missing_from(&have, &needs(true, true)), vec![Capability::CAP_BPF, Capability::CAP_PERFMON]);
        assert!(missing_from(&have, &needs(false, true)).is_empty());
        assert!(needs(false, false).is_empty());
    }
}
