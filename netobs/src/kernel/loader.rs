//! Loading the eBPF object that `build.rs` compiled and embedded.

use anyhow::{Context as _, Result};
use aya::{Ebpf, EbpfLoader};
use netobs_common::{Config, flows};

/// The eBPF object built from `netobs-ebpf` by `build.rs`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netobs-ebpf"));

/// Kernel-side diagnostics (aya-log), fixed at load. Cold paths only (a
/// malformed packet, at most one message per CPU per second); off by
/// default, and then the verifier removes every call site.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum EbpfLogLevel {
    #[default]
    Off,
    Error,
    Warn,
    Info,
    Debug,
}

impl EbpfLogLevel {
    /// `aya_log_common::Level` numbering (0: off).
    fn as_u8(self) -> u8 {
        match self {
            EbpfLogLevel::Off => 0,
            EbpfLogLevel::Error => 1,
            EbpfLogLevel::Warn => 2,
            EbpfLogLevel::Info => 3,
            EbpfLogLevel::Debug => 4,
        }
    }
}

/// Load-time settings.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Written into the object's `CONFIG` global before verification.
    /// A `sample_seed` of 0 is replaced by a random one (tests fix one to
    /// know which reporters share a bucket), `fib_skip_neigh` 1 by what
    /// this kernel supports, `log_level` by `ebpf_log_level`.
    pub config: Config,
    /// Ring buffer size in bytes (a power of two multiple of the page size).
    pub ringbuf_bytes: u32,
    /// Kernel-side diagnostics level.
    pub ebpf_log_level: EbpfLogLevel,
    /// Size the forwarded-TCP flow maps for use (`--forwarded-tcp`);
    /// otherwise they get one entry each, not megabytes of kernel memory
    /// for a program that is never attached.
    pub forwarded_tcp: bool,
    /// Read time with the clock helper even when the kernel tick is known
    /// (what a kernel whose tick could not be measured gets; tests load
    /// this fallback to verify it).
    pub helper_clock: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            config: Config::DEFAULT,
            ringbuf_bytes: 1 << 21,
            ebpf_log_level: EbpfLogLevel::Off,
            forwarded_tcp: false,
            helper_clock: false,
        }
    }
}

/// Loads the object: creates the maps, relocates globals and gives every
/// interface of this network namespace (and ifindex 0, the tracepoint's
/// "no interface") a counter slot. Programs are verified later, when
/// attached (or explicitly with [`load_program`]).
pub fn load(opts: &LoadOptions) -> Result<Ebpf> {
    load_object(opts, OBJECT)
}

/// [`load`] of another build of the object (the datapath bench compares
/// two builds side by side).
pub fn load_object(opts: &LoadOptions, object: &[u8]) -> Result<Ebpf> {
    raise_memlock_limit();
    let bytes = opts.ringbuf_bytes.max(4096).next_power_of_two();
    let level = opts.ebpf_log_level.as_u8();
    let features = super::features::detect();
    let tick = features.tick_clock.filter(|_| !opts.helper_clock);
    let config = Config {
        sample_seed: if opts.config.sample_seed != 0 { opts.config.sample_seed } else { random_seed() },
        // Asked of the kernel itself (a test-run lookup with the flag), not read
        // off the version: distributions backport. When the probe cannot
        // tell, the flag stays on; the datapath retries a lookup that fails
        // with it, so a wrong guess costs one call, never the DF check.
        fib_skip_neigh: u32::from(opts.config.fib_skip_neigh != 0 && !features.fib_skip_neigh.is_no()),
        log_level: u32::from(level),
        // Measured at start (`features::TickClock`); without it the
        // programs call the clock helper.
        tick_ns: tick.map_or(0, |t| t.tick_ns),
        clock_offset_ns: tick.map_or(0, |t| t.offset_ns),
        ..opts.config
    };
    let mut loader = EbpfLoader::new();
    loader
        .override_global("CONFIG", &config, true)
        .override_global(aya_log::LEVEL, &level, true)
        .map_max_entries("EVENTS", bytes);
    if !opts.forwarded_tcp {
        loader.map_max_entries(flows::FLOWS_MAP, 1).map_max_entries(flows::FORWARDED_MAP, 1);
    }
    let mut ebpf = loader.load(object).context(
        "loading the netobs eBPF object failed (netobs needs root, or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON)",
    )?;
    let mut ifindexes: Vec<u32> = crate::net::interface_names().into_keys().collect();
    ifindexes.sort_unstable();
    super::counters::assign_iface_slots(&mut ebpf, std::iter::once(0).chain(ifindexes))?;
    Ok(ebpf)
}

/// Starts forwarding kernel-side log records to the `log` crate, on a
/// tokio task, when `level` is not off (`None` then: nothing to read).
/// Dropping the handle's task stops it.
pub fn start_ebpf_logger(ebpf: &mut Ebpf, level: EbpfLogLevel) -> Result<Option<tokio::task::JoinHandle<()>>> {
    if level == EbpfLogLevel::Off {
        return Ok(None);
    }
    let logger = aya_log::EbpfLogger::init(ebpf).context("starting the kernel-side logger (aya-log)")?;
    // SAFETY: the logger owns its ring buffer's fd, which stays open and
    // the same for as long as the logger (now owned by the AsyncFd) lives.
    let mut fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the kernel-side logger with tokio: {e}"))?;
    Ok(Some(tokio::spawn(async move {
        loop {
            match fd.readable_mut().await {
                Ok(mut guard) => {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                Err(e) => {
                    log::warn!("kernel-side logger stopped: {e}");
                    return;
                }
            }
        }
    })))
}

/// A seed for the fair-sampling hash, so a flooder cannot compute which
/// reporters share a bucket. Falls back to the clock.
fn random_seed() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: valid buffer of the given length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 4 && b != [0; 4] {
        return u32::from_ne_bytes(b);
    }
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0x5eed)
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones use
/// the memory cgroup and ignore it. Raising it is harmless either way.
fn raise_memlock_limit() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid pointer.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
    if ret != 0 {
        log::debug!("could not raise RLIMIT_MEMLOCK: {}", std::io::Error::last_os_error());
    }
}

/// Runs the verifier on the program `name` and returns it typed as `T`.
pub fn load_program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T>
where
    T: Loadable,
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf.program_mut(name).with_context(|| format!("program {name} is missing from the eBPF object"))?;
    let prog: &mut T = prog.try_into().with_context(|| format!("program {name} has an unexpected type"))?;
    prog.load_once().with_context(|| format!("the kernel verifier rejected program {name}"))?;
    Ok(prog)
}

/// Programs that can be loaded (verified) at most once.
pub trait Loadable {
    fn load_once(&mut self) -> Result<(), aya::programs::ProgramError>;
}

macro_rules! loadable {
    ($t:ty) => {
        impl Loadable for $t {
            fn load_once(&mut self) -> Result<(), aya::programs::ProgramError> {
                if self.fd().is_ok() {
                    return Ok(());
                }
                self.load()
            }
        }
    };
}
loadable!(aya::programs::Xdp);
loadable!(aya::programs::SchedClassifier);
loadable!(aya::programs::TracePoint);
loadable!(aya::programs::RawTracePoint);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_follow_aya_log_numbering() {
        assert_eq!(EbpfLogLevel::Off.as_u8(), 0);
        assert_eq!(EbpfLogLevel::Debug.as_u8(), 4);
        assert!(EbpfLogLevel::Debug > EbpfLogLevel::Error);
    }
}
