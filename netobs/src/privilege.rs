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
//! - CAP_PERFMON: tracing programs (the `icmp_send` raw tracepoint reads
//!   kernel memory; the stage flush is a raw tracepoint program too);
//! - CAP_NET_ADMIN: attach XDP / TC to interfaces, and conntrack (nfnetlink
//!   refuses every request without it) for the NAT join;
//! - CAP_NET_RAW: the probes' raw sockets.
//!
//! Once the kernel objects exist and the sockets are open, [`drop_to`]
//! keeps only what the rest of the run still uses (in every thread): maps,
//! ring buffer, the stage flush (BPF_PROG_TEST_RUN) and links are used
//! through descriptors already held, which needs no capability (checked:
//! an unprivileged `watch` keeps reading, flushing and detaching with
//! CAP_NET_ADMIN alone). The ambient and inheritable sets are cleared and
//! `no_new_privs` is set, so nothing netobs runs inherits more; the
//! bounding set is reduced too when the process may do that (CAP_SETPCAP,
//! i.e. when started as root).

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
/// (nfnetlink refuses every request without it). With `--all`, everything
/// attaching needs, because an interface that appears later may need a
/// program not verified yet (TC ingress where XDP fails), and loading one
/// takes CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON. The rest of the run works
/// through descriptors already held.
pub(crate) fn after_attach(all: bool) -> Vec<Capability> {
    if all { KERNEL.to_vec() } else { vec![Capability::CAP_NET_ADMIN] }
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
/// permitted sets of **every thread**, clears the ambient and inheritable
/// sets, sets `no_new_privs`, and reduces the bounding set where allowed
/// (CAP_SETPCAP). Idempotent.
///
/// Capabilities are per thread in Linux, and by the time the kernel
/// objects exist a runtime worker (the metrics server) and maybe pool
/// threads are running with everything the process started with. So this
/// thread applies the change, then every other thread is asked to apply
/// it too with a signal whose handler makes only the raw syscalls (the
/// way glibc broadcasts setuid), and the result is checked thread by
/// thread in /proc/self/task.
pub(crate) fn drop_to(keep: &[Capability]) -> Result<()> {
    let permitted = caps::read(None, CapSet::Permitted).context("reading the permitted capabilities")?;
    let kept: caps::CapsHashSet = permitted.iter().copied().filter(|c| keep.contains(c)).collect();
    let mask = kept.iter().fold(0u64, |m, c| m | c.bitmask());
    allthreads::apply(mask)?;
    log::info!("capabilities after setup: {}", if kept.is_empty() { "none".into() } else { names(&sorted(&kept)) });
    Ok(())
}

/// The raw, async-signal-safe part of [`drop_to`] and its broadcast.
mod allthreads {
    use std::{
        sync::atomic::{AtomicU64, Ordering},
        time::{Duration, Instant},
    };

    use anyhow::{Context as _, Result, bail};

    /// The effective/permitted set every thread is to keep.
    static MASK: AtomicU64 = AtomicU64::new(0);

    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }

    const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    /// Beyond the last capability any kernel knows (40 in 6.x).
    const LAST_CAP: u32 = 63;

    /// Applies `mask` to the calling thread, with syscalls only (it runs
    /// in a signal handler). Returns whether capset succeeded.
    fn apply_here(mask: u64) -> bool {
        // SAFETY: prctl/capset with plain integers and valid pointers.
        unsafe {
            // Bounding set first, while CAP_SETPCAP may still be held;
            // EPERM without it and EINVAL past the kernel's last
            // capability are expected and ignored.
            for cap in 0..=LAST_CAP {
                if mask & (1 << cap) == 0 {
                    libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
                }
            }
            libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0);
            let mut hdr = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
            let data = [
                CapData { effective: mask as u32, permitted: mask as u32, inheritable: 0 },
                CapData { effective: (mask >> 32) as u32, permitted: (mask >> 32) as u32, inheritable: 0 },
            ];
            let ok = libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) == 0;
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            ok
        }
    }

    extern "C" fn on_signal(_: libc::c_int) {
        apply_here(MASK.load(Ordering::SeqCst));
    }

    /// The signal used for the broadcast: one glibc leaves to applications
    /// and nothing in netobs uses.
    fn signal() -> libc::c_int {
        libc::SIGRTMAX() - 3
    }

    /// (effective, permitted) of thread `tid` of this process.
    fn thread_caps(tid: &str) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
        let field = |name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        };
        Some((field("CapEff:")?, field("CapPrm:")?))
    }

    /// Threads holding more than `mask`.
    fn over(mask: u64) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc/self/task").context("listing /proc/self/task")? {
            let name = entry.context("listing /proc/self/task")?.file_name();
            let Some(tid) = name.to_str() else { continue };
            if let Some((eff, prm)) = thread_caps(tid)
                && (eff | prm) & !mask != 0
                && let Ok(t) = tid.parse()
            {
                out.push(t);
            }
        }
        Ok(out)
    }

    pub(super) fn apply(mask: u64) -> Result<()> {
        MASK.store(mask, Ordering::SeqCst);
        // SAFETY: installs a handler that only makes raw syscalls; it stays
        // installed, so a late signal can never take the default action.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(signal(), &sa, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error()).context("installing the capability-drop handler");
            }
        }
        if !apply_here(mask) {
            return Err(std::io::Error::last_os_error()).context("reducing this thread's capabilities (capset)");
        }
        // SAFETY: plain syscalls.
        let (pid, me) = unsafe { (libc::getpid(), libc::syscall(libc::SYS_gettid) as i32) };
        let start = Instant::now();
        loop {
            let left = over(mask)?;
            if left.is_empty() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(2) {
                bail!("threads {left:?} still hold capabilities after 2 s");
            }
            for tid in left.into_iter().filter(|t| *t != me) {
                // SAFETY: tgkill to a thread of our own process.
                unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal()) };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
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
