//! Loading the eBPF object that `build.rs` compiled and embedded.

use anyhow::{Context as _, Result};
use aya::{Ebpf, EbpfLoader};
use netobs_common::Config;

/// The eBPF object built from `netobs-ebpf` by `build.rs`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netobs"));

/// Load-time settings.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Written into the object's `CONFIG` global before verification.
    pub config: Config,
    /// Ring buffer size in bytes (a power of two multiple of the page size).
    pub ringbuf_bytes: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { config: Config::DEFAULT, ringbuf_bytes: 1 << 20 }
    }
}

/// Loads the object: creates the maps and relocates globals. Programs are
/// verified later, when attached (or explicitly with [`load_program`]).
pub fn load(opts: &LoadOptions) -> Result<Ebpf> {
    raise_memlock_limit();
    let bytes = opts.ringbuf_bytes.max(4096).next_power_of_two();
    EbpfLoader::new()
        .override_global("CONFIG", &opts.config, true)
        .map_max_entries("EVENTS", bytes)
        .load(OBJECT)
        .context("loading the netobs eBPF object failed (netobs needs root, or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON)")
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
