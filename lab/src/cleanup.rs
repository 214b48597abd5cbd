//! Making sure labs never outlive the run that created them.
//!
//! Three layers: `Drop for Lab` (normal exit and panics, since unwinding runs
//! destructors), a process-wide registry plus [`install_signal_cleanup`] for
//! Ctrl-C / SIGTERM (which skip destructors), and [`cleanup_stale`] for
//! everything else (SIGKILL, crashes, `lab up` labs).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use anyhow::{Context, Result, bail};

use crate::NS_PREFIX;

/// Where `ip netns add` bind-mounts named namespaces (iproute2's
/// `NETNS_RUN_DIR`).
pub(crate) const NETNS_DIR: &str = "/var/run/netns";

/// Namespaces and background pids owned by live `Lab`s of this process; read
/// by the signal-cleanup thread, which cannot rely on destructors.
#[derive(Default)]
struct Registry {
    namespaces: BTreeSet<String>,
    pids: BTreeSet<u32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { namespaces: BTreeSet::new(), pids: BTreeSet::new() });

fn registry() -> MutexGuard<'static, Registry> {
    // A panic while holding the lock leaves plain sets behind, still valid.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn register_ns(ns: &str) {
    registry().namespaces.insert(ns.to_string());
}

pub(crate) fn unregister_ns(ns: &str) {
    registry().namespaces.remove(ns);
}

pub(crate) fn register_pid(pid: u32) {
    registry().pids.insert(pid);
}

pub(crate) fn unregister_pid(pid: u32) {
    registry().pids.remove(&pid);
}

/// Deletes a named namespace exactly like `ip netns del`: lazily unmount the
/// bind mount and remove the file. Done natively so teardown costs no process
/// spawn and works from the signal thread. The kernel frees the namespace
/// (and the veths in it) once no process or mount references it any more.
pub(crate) fn delete_ns(ns: &str) -> Result<()> {
    let path = Path::new(NETNS_DIR).join(ns);
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .with_context(|| format!("namespace name {ns:?} contains NUL"))?;
    // SAFETY: c_path is a valid NUL-terminated string for the duration of the call.
    let rc = unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        // EINVAL: not a mount point any more (half-deleted); still unlink.
        if err.raw_os_error() != Some(libc::EINVAL) {
            if err.raw_os_error() == Some(libc::ENOENT) {
                return Ok(());
            }
            return Err(err).with_context(|| format!("umount2({}) (ip netns del {ns})", path.display()));
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("unlink({}) (ip netns del {ns})", path.display())),
    }
}

/// Pids of processes whose network namespace is one of `namespaces`, found by
/// comparing `/proc/PID/ns/net` with the bind-mounted namespace files. Used
/// to kill stragglers (e.g. from a crashed run) that would otherwise keep a
/// deleted namespace and its veths alive.
pub(crate) fn pids_in(namespaces: &[String]) -> Vec<u32> {
    let wanted: BTreeSet<(u64, u64)> = namespaces
        .iter()
        .filter_map(|ns| std::fs::metadata(Path::new(NETNS_DIR).join(ns)).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| wanted.contains(&(m.dev(), m.ino())))
        })
        .collect()
}

fn kill(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Kills every process inside `namespaces` and deletes them; returns the
/// first error but always attempts all of them.
pub(crate) fn destroy(namespaces: &[String]) -> Result<()> {
    for pid in pids_in(namespaces) {
        kill(pid, libc::SIGKILL);
    }
    let mut first_err = None;
    for ns in namespaces {
        if let Err(e) = delete_ns(ns) {
            first_err.get_or_insert(e);
        }
        unregister_ns(ns);
    }
    first_err.map_or(Ok(()), Err)
}

/// Names of all lab namespaces currently present (any process, any run),
/// sorted. This is what `cargo xtask lab list` shows.
pub fn list_namespaces() -> Result<Vec<String>> {
    list_with_prefix(NS_PREFIX)
}

fn list_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let dir = match std::fs::read_dir(NETNS_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {NETNS_DIR}")),
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    Ok(names)
}

/// Deletes every namespace whose name starts with [`NS_PREFIX`] (killing the
/// processes still inside) and returns the names removed. Meant for
/// `lab down` after a crashed run; note it also removes the labs of tests
/// running concurrently, so don't call it from tests.
pub fn cleanup_stale() -> Result<Vec<String>> {
    cleanup_prefix(NS_PREFIX)
}

/// Deletes the namespaces of one lab, given its id ([`crate::Lab::id`]),
/// e.g. a lab left behind by `lab up`. Returns the names removed.
pub fn cleanup_lab(lab_id: &str) -> Result<Vec<String>> {
    if lab_id.is_empty() || lab_id.contains('/') {
        bail!("invalid lab id {lab_id:?}");
    }
    cleanup_prefix(&format!("{NS_PREFIX}{lab_id}-"))
}

fn cleanup_prefix(prefix: &str) -> Result<Vec<String>> {
    let names = list_with_prefix(prefix)?;
    destroy(&names).with_context(|| format!("removing namespaces {names:?}"))?;
    Ok(names)
}

/// Everything registered by this process: kill background pids, then delete
/// namespaces. Runs on the signal thread.
fn cleanup_registered() {
    let (pids, namespaces) = {
        let reg = registry();
        (reg.pids.iter().copied().collect::<Vec<_>>(), reg.namespaces.iter().cloned().collect::<Vec<_>>())
    };
    for pid in pids {
        kill(pid, libc::SIGKILL);
    }
    if let Err(e) = destroy(&namespaces) {
        eprintln!("netobs-lab: cleanup after signal: {e:#}");
    }
}

/// Write end of the self-pipe; the handler only does `write(2)` on it, which
/// is async-signal-safe, and the real work happens on a normal thread.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);
static INSTALL: Once = Once::new();

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write(2) on a valid fd with a 1-byte stack buffer is
        // async-signal-safe; errors are ignored (nothing else is allowed here).
        unsafe {
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
}

/// Installs SIGINT/SIGTERM handlers that delete every namespace created by
/// this process (and kill its background processes), then exit with status
/// `128 + signal` (130 for Ctrl-C, 143 for SIGTERM). Idempotent.
///
/// Uses a self-pipe rather than `sigwait` so that it works no matter which
/// threads exist or what their signal masks are; the handler itself only
/// writes one byte.
pub fn install_signal_cleanup() -> Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| result = install_inner());
    result
}

fn install_inner() -> Result<()> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe2 for signal cleanup");
    }
    let [read_fd, write_fd] = fds;
    SIGNAL_PIPE.store(write_fd, Ordering::Relaxed);
    std::thread::Builder::new()
        .name("netobs-lab-signal".into())
        .spawn(move || {
            let mut byte = 0u8;
            loop {
                // SAFETY: reading 1 byte into a valid stack buffer.
                let n = unsafe { libc::read(read_fd, (&mut byte as *mut u8).cast(), 1) };
                if n == 1 {
                    break;
                }
                if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return; // pipe broken: nothing sensible left to do
            }
            eprintln!("netobs-lab: caught signal {byte}, removing lab namespaces");
            cleanup_registered();
            std::process::exit(128 + i32::from(byte));
        })
        .context("spawning signal cleanup thread")?;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data; zeroed is a valid initial state,
        // and on_signal is an async-signal-safe extern "C" fn.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("sigaction({sig})"));
        }
    }
    Ok(())
}

/// Path of a namespace's bind mount, for callers that want to `setns(2)`.
pub fn ns_path(ns: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(ns)
}
