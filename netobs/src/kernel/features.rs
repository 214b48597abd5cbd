//! What this kernel offers netobs, probed once at start.
//!
//! Each feature is asked of the kernel itself (a tiny program loaded or
//! test-run, a map created, a query made) rather than read off `uname`:
//! distributions backport BPF features, and a version number says nothing
//! about a kernel built without them. The probes load nothing that stays:
//! every fd is closed before [`detect`] returns.
//!
//! netobs needs the BPF ring buffer (5.8) and `bpf_ktime_get_coarse_ns`
//! (5.11), which the packet programs call: without them it refuses to start
//! with one line ([`Features::require_minimum`]). Everything newer has a
//! fallback, reported as a note:
//!
//! | feature | since | without it |
//! | --- | --- | --- |
//! | `BPF_F_TEST_RUN_ON_CPU` for raw tracepoints | 5.10 | staged events wait for the next event on their CPU |
//! | XDP multi-buffer (frags) | 5.18 | jumbo links are observed with TC ingress |
//! | `BPF_FIB_LOOKUP_SKIP_NEIGH` | 6.3 | the DF check looks routes up without it |
//! | TCX | 6.6 | TC programs go on a clsact qdisc netobs creates (and removes) |
//! | BTF (`/sys/kernel/btf/vmlinux`) | | reported only |
//! | the kernel tick, measured ([`TickClock`]) | | the packet programs call the coarse-clock helper |

use std::{
    ffi::CStr,
    io,
    os::fd::{FromRawFd as _, OwnedFd},
    sync::OnceLock,
};

use anyhow::{Result, bail};
use aya::{
    maps::MapType,
    programs::{ProgramType, SchedClassifier, TcAttachType},
    sys::{BpfHelper, is_helper_supported, is_map_supported},
};

/// Environment variable that makes netobs behave as on a kernel without
/// TCX, so the clsact path can be tested on a new kernel. Not a setting.
pub const FORCE_LEGACY_TC_ENV: &str = "NETOBS_TEST_LEGACY_TC";

/// Oldest kernel netobs runs on, for the refusal line and the README.
pub const MINIMUM_KERNEL: &str = "5.11";

/// The answer of one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Support {
    Yes,
    No,
    /// The probe itself failed (for instance without CAP_BPF): neither
    /// assumed present nor a reason to refuse; the load says what is wrong.
    Unknown,
}

impl Support {
    fn from_probe(r: io::Result<bool>, what: &str) -> Support {
        match r {
            Ok(true) => Support::Yes,
            Ok(false) => Support::No,
            Err(e) => {
                log::debug!("probing {what}: {e}");
                Support::Unknown
            }
        }
    }

    pub fn is_yes(self) -> bool {
        self == Support::Yes
    }

    /// Absent for sure (an unknown answer is not a reason to fall back).
    pub fn is_no(self) -> bool {
        self == Support::No
    }
}

/// How the TC observers are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TcPath {
    /// TCX bpf_links at the head of the chain (6.6+).
    Tcx,
    /// cls_bpf filters on a clsact qdisc, at the highest priority.
    Clsact,
}

impl std::fmt::Display for TcPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TcPath::Tcx => "TCX, at the head",
            TcPath::Clsact => "clsact, priority 1",
        })
    }
}

/// What the kernel offers, as probed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Features {
    /// `uname -r`, for messages only.
    pub release: String,
    pub ringbuf: Support,
    pub coarse_clock: Support,
    pub test_run_on_cpu: Support,
    pub xdp_frags: Support,
    pub fib_skip_neigh: Support,
    pub tcx: Support,
    pub btf: Support,
    /// The kernel tick, for the packet programs' clock (`Config::tick_ns`);
    /// `None` when it could not be measured (they call the clock helper).
    pub tick_clock: Option<TickClock>,
    /// TCX ignored because of [`FORCE_LEGACY_TC_ENV`].
    pub legacy_tc_forced: bool,
}

static DETECTED: OnceLock<Features> = OnceLock::new();

/// Probes the kernel (once per process; later calls return the first answer).
pub fn detect() -> &'static Features {
    DETECTED.get_or_init(Features::probe)
}

impl Features {
    fn probe() -> Features {
        let legacy_tc_forced = std::env::var_os(FORCE_LEGACY_TC_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        Features {
            release: kernel_release(),
            ringbuf: Support::from_probe(is_map_supported(MapType::RingBuf).map_err(|e| e.io_error), "ring buffer"),
            coarse_clock: Support::from_probe(
                is_helper_supported(ProgramType::Xdp, BpfHelper::BPF_FUNC_ktime_get_coarse_ns)
                    .map_err(io::Error::other),
                "bpf_ktime_get_coarse_ns",
            ),
            test_run_on_cpu: Support::from_probe(probe::raw_tp_test_run_on_cpu(), "BPF_F_TEST_RUN_ON_CPU"),
            xdp_frags: Support::from_probe(probe::xdp_frags(), "XDP frags"),
            fib_skip_neigh: Support::from_probe(probe::fib_skip_neigh(), "BPF_FIB_LOOKUP_SKIP_NEIGH"),
            tcx: if legacy_tc_forced { Support::No } else { Support::from_probe(probe::tcx(), "TCX") },
            btf: if std::path::Path::new("/sys/kernel/btf/vmlinux").exists() { Support::Yes } else { Support::No },
            tick_clock: probe::tick_clock().unwrap_or_else(|e| {
                log::debug!("measuring the kernel tick: {e}");
                None
            }),
            legacy_tc_forced,
        }
    }

    /// Refuses kernels that lack what the packet programs cannot do without,
    /// in one line naming what is missing.
    pub fn require_minimum(&self) -> Result<()> {
        let mut missing = Vec::new();
        if self.ringbuf.is_no() {
            missing.push("the BPF ring buffer (5.8)");
        }
        if self.coarse_clock.is_no() {
            missing.push("bpf_ktime_get_coarse_ns (5.11)");
        }
        if !missing.is_empty() {
            bail!(
                "netobs needs Linux {MINIMUM_KERNEL} or newer; this kernel ({}) lacks {}",
                self.release,
                missing.join(" and ")
            );
        }
        Ok(())
    }

    /// TCX when the kernel has it; otherwise (or when unknown and TCX
    /// then fails, see attach) a clsact qdisc.
    pub fn tc_path(&self) -> TcPath {
        if self.tcx.is_no() { TcPath::Clsact } else { TcPath::Tcx }
    }

    /// One line per fallback in use, for stderr.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.legacy_tc_forced {
            notes.push(format!("{FORCE_LEGACY_TC_ENV} is set: TC observers use a clsact qdisc, not TCX"));
        } else if self.tcx.is_no() {
            notes.push(format!(
                "no TCX on this kernel ({}, needs 6.6): TC observers use a clsact qdisc, created if missing and removed on exit",
                self.release
            ));
        }
        if self.xdp_frags.is_no() {
            notes.push(
                "no XDP multi-buffer (frags, needs 5.18): interfaces XDP cannot take are observed with TC ingress"
                    .into(),
            );
        }
        if self.fib_skip_neigh.is_no() {
            notes.push("no BPF_FIB_LOOKUP_SKIP_NEIGH (needs 6.3): the DF check looks routes up without it".into());
        }
        if self.test_run_on_cpu.is_no() {
            notes.push(
                "no BPF_F_TEST_RUN_ON_CPU for raw tracepoints (needs 5.10): staged events wait for the next event on their CPU"
                    .into(),
            );
        }
        if self.btf.is_no() {
            notes.push("no kernel BTF (/sys/kernel/btf/vmlinux)".into());
        }
        if self.tick_clock.is_none() {
            notes.push("could not measure the kernel tick: the packet programs call the clock helper (slower)".into());
        }
        notes
    }

    /// One line saying which path each feature takes, for `-v` / the log.
    pub fn summary(&self) -> String {
        let s = |v: Support| match v {
            Support::Yes => "yes",
            Support::No => "no",
            Support::Unknown => "unknown",
        };
        format!(
            "kernel {}: TC via {}, XDP frags {}, fib SKIP_NEIGH {}, on-CPU flush {}, BTF {}, clock {}",
            self.release,
            self.tc_path(),
            s(self.xdp_frags),
            s(self.fib_skip_neigh),
            s(self.test_run_on_cpu),
            s(self.btf),
            match self.tick_clock {
                Some(t) => format!("jiffies (HZ {})", t.hz),
                None => "helper".into(),
            }
        )
    }
}

/// The kernel's tick as the packet programs use it: `jiffies * tick_ns +
/// offset_ns` reads as CLOCK_MONOTONIC_COARSE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TickClock {
    pub hz: u32,
    pub tick_ns: u32,
    /// Wrapping: jiffies start near 2^32, far ahead of the monotonic clock.
    pub offset_ns: u64,
}

/// Tick rates Linux is configured with (`CONFIG_HZ`).
const KNOWN_HZ: [u32; 7] = [100, 250, 300, 1000, 24, 48, 1200];

impl TickClock {
    /// From two (jiffies, coarse ns) samples of one kernel: the tick is
    /// the coarse clock's advance per jiffy, accepted only when it is a
    /// known `CONFIG_HZ` (within 2 %), so a sample pair that straddled
    /// an update cannot produce a wrong clock.
    pub fn from_samples(first: (u64, u64), last: (u64, u64)) -> Option<TickClock> {
        let jiffies = last.0.checked_sub(first.0).filter(|&j| j > 0)?;
        let per_jiffy = last.1.checked_sub(first.1)? as f64 / jiffies as f64;
        let hz = KNOWN_HZ.into_iter().find(|&hz| {
            let tick = 1e9 / f64::from(hz);
            (per_jiffy - tick).abs() <= tick * 0.02
        })?;
        let tick_ns = (1e9 / f64::from(hz)).round() as u32;
        Some(TickClock { hz, tick_ns, offset_ns: last.1.wrapping_sub(last.0.wrapping_mul(u64::from(tick_ns))) })
    }

    /// The clock the programs compute at `jiffies`.
    pub fn at(&self, jiffies: u64) -> u64 {
        jiffies.wrapping_mul(u64::from(self.tick_ns)).wrapping_add(self.offset_ns)
    }
}

fn kernel_release() -> String {
    // SAFETY: uname fills the zeroed struct; release is NUL-terminated.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    // SAFETY: a NUL-terminated array owned by `u`.
    unsafe { CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy().into_owned()
}

/// The probes that aya has no ready function for: hand-assembled programs
/// of a few instructions, loaded and test-run through bpf(2) directly.
mod probe {
    use super::*;

    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    const BPF_PROG_TYPE_XDP: u32 = 6;
    const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
    const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
    const BPF_F_TEST_RUN_ON_CPU: u32 = 1;
    const BPF_FIB_LOOKUP_SKIP_NEIGH: i32 = 1 << 2;
    const BPF_FUNC_FIB_LOOKUP: i32 = 69;
    const XDP_DROP: u32 = 1;
    const XDP_PASS: u32 = 2;

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Insn {
        code: u8,
        regs: u8,
        off: i16,
        imm: i32,
    }

    const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn { code, regs: dst | (src << 4), off, imm }
    }
    const fn mov_imm(dst: u8, imm: i32) -> Insn {
        insn(0xb7, dst, 0, 0, imm) // BPF_ALU64 | BPF_MOV | BPF_K
    }
    const fn mov_reg(dst: u8, src: u8) -> Insn {
        insn(0xbf, dst, src, 0, 0) // BPF_ALU64 | BPF_MOV | BPF_X
    }
    const EXIT: Insn = insn(0x95, 0, 0, 0, 0);

    /// `union bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type`.
    /// The kernel accepts a shorter attr and zero-fills the rest.
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoadAttr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }

    /// `union bpf_attr` for BPF_PROG_TEST_RUN, up to `batch_size`.
    #[repr(C)]
    #[derive(Default)]
    struct TestRunAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        _pad: u32,
    }

    fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
        // SAFETY: `attr` is a valid, initialised prefix of `union bpf_attr`
        // for `cmd`, and its size is passed along.
        let rc = unsafe {
            libc::syscall(libc::SYS_bpf, cmd, (attr as *mut T).cast::<libc::c_void>(), std::mem::size_of::<T>())
        };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
    }

    /// Loads `insns`; `Ok(None)` when the kernel rejects the request as
    /// unknown (EINVAL / E2BIG), which is what a missing feature looks like.
    fn load(prog_type: u32, prog_flags: u32, insns: &[Insn]) -> io::Result<Option<OwnedFd>> {
        static LICENSE: &CStr = c"GPL";
        let mut attr = ProgLoadAttr {
            prog_type,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            prog_flags,
            ..Default::default()
        };
        attr.prog_name[..11].copy_from_slice(b"netobs_prob");
        match sys_bpf(BPF_PROG_LOAD, &mut attr) {
            // SAFETY: a new fd the kernel just handed us.
            Ok(fd) => Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::E2BIG)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn test_run(attr: &mut TestRunAttr) -> io::Result<()> {
        sys_bpf(BPF_PROG_TEST_RUN, attr).map(|_| ())
    }

    fn raw_fd(fd: &OwnedFd) -> u32 {
        use std::os::fd::AsRawFd as _;
        fd.as_raw_fd() as u32
    }

    /// An XDP program flagged BPF_F_XDP_HAS_FRAGS loads (5.18+).
    pub(super) fn xdp_frags() -> io::Result<bool> {
        xdp_prog_flag_accepted(BPF_F_XDP_HAS_FRAGS)
    }

    pub(super) fn xdp_prog_flag_accepted(flag: u32) -> io::Result<bool> {
        Ok(load(BPF_PROG_TYPE_XDP, flag, &[mov_imm(0, XDP_PASS as i32), EXIT])?.is_some())
    }

    /// A raw tracepoint program test-runs pinned to CPU 0 (5.10+), which
    /// the stage flush needs.
    pub(super) fn raw_tp_test_run_on_cpu() -> io::Result<bool> {
        let Some(fd) = load(BPF_PROG_TYPE_RAW_TRACEPOINT, 0, &[mov_imm(0, 0), EXIT])? else { return Ok(false) };
        let mut attr = TestRunAttr { prog_fd: raw_fd(&fd), flags: BPF_F_TEST_RUN_ON_CPU, cpu: 0, ..Default::default() };
        match test_run(&mut attr) {
            Ok(()) => Ok(true),
            // ENOTSUPP (524): no test run for raw tracepoints at all.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(524) | Some(libc::EOPNOTSUPP)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `bpf_fib_lookup(ctx, params, 64, BPF_FIB_LOOKUP_SKIP_NEIGH)` from a
    /// test-run XDP program: older kernels answer -EINVAL for the unknown
    /// flag before looking anything up (6.3+ accept it). The lookup is for
    /// 0.0.0.0 out of `lo`, answered from this namespace's routes only.
    pub(super) fn fib_skip_neigh() -> io::Result<bool> {
        fib_flag_accepted(BPF_FIB_LOOKUP_SKIP_NEIGH)
    }

    pub(super) fn fib_flag_accepted(flag: i32) -> io::Result<bool> {
        let mut insns = vec![mov_reg(6, 1), mov_imm(1, 0)];
        // Zero the 64-byte struct bpf_fib_lookup at r10-64.
        for i in 1..=8i16 {
            insns.push(insn(0x7b, 10, 1, -8 * i, 0)); // *(u64 *)(r10 - 8i) = r1
        }
        insns.extend([
            insn(0x72, 10, 0, -64, libc::AF_INET), // family (u8 at 0)
            insn(0x62, 10, 0, -56, 1),             // ifindex (u32 at 8) = lo
            mov_reg(1, 6),
            mov_reg(2, 10),
            insn(0x07, 2, 0, 0, -64), // r2 += -64
            mov_imm(3, 64),
            mov_imm(4, flag),
            insn(0x85, 0, 0, 0, BPF_FUNC_FIB_LOOKUP),
            insn(0x55, 0, 0, 2, -libc::EINVAL), // if r0 != -EINVAL goto +2
            mov_imm(0, XDP_DROP as i32),
            EXIT,
            mov_imm(0, XDP_PASS as i32),
            EXIT,
        ]);
        let Some(fd) = load(BPF_PROG_TYPE_XDP, 0, &insns)? else {
            return Err(io::Error::other("the fib_lookup probe program was rejected"));
        };
        let frame = [0u8; 64];
        let mut attr = TestRunAttr {
            prog_fd: raw_fd(&fd),
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ..Default::default()
        };
        test_run(&mut attr)?;
        Ok(attr.retval == XDP_PASS)
    }

    /// Measures the kernel tick: a test-run XDP program writes
    /// `bpf_jiffies64()` and `bpf_ktime_get_coarse_ns()` into the frame,
    /// read back now and again once at least three ticks have passed
    /// (at most 200 ms).
    pub(super) fn tick_clock() -> io::Result<Option<TickClock>> {
        const BPF_FUNC_JIFFIES64: i32 = 118;
        const BPF_FUNC_KTIME_GET_COARSE_NS: i32 = 160;
        let insns = [
            insn(0x61, 6, 1, 0, 0),                  // r6 = ctx->data
            insn(0x61, 7, 1, 4, 0),                  // r7 = ctx->data_end
            mov_reg(2, 6),                           //
            insn(0x07, 2, 0, 0, 16),                 // r2 += 16
            insn(0x2d, 2, 7, 4, 0),                  // if r2 > r7 goto pass
            insn(0x85, 0, 0, 0, BPF_FUNC_JIFFIES64), //
            insn(0x7b, 6, 0, 0, 0),                  // *(u64 *)(r6 + 0) = r0
            insn(0x85, 0, 0, 0, BPF_FUNC_KTIME_GET_COARSE_NS),
            insn(0x7b, 6, 0, 8, 0), // *(u64 *)(r6 + 8) = r0
            mov_imm(0, XDP_PASS as i32),
            EXIT,
        ];
        let Some(fd) = load(BPF_PROG_TYPE_XDP, 0, &insns)? else { return Ok(None) };
        let sample = || -> io::Result<(u64, u64)> {
            let frame = [0u8; 64];
            let mut out = [0u8; 64];
            let mut attr = TestRunAttr {
                prog_fd: raw_fd(&fd),
                data_size_in: frame.len() as u32,
                data_in: frame.as_ptr() as u64,
                data_size_out: out.len() as u32,
                data_out: out.as_mut_ptr() as u64,
                repeat: 1,
                ..Default::default()
            };
            test_run(&mut attr)?;
            let word = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&out[at..at + 8]);
                u64::from_ne_bytes(b)
            };
            Ok((word(0), word(8)))
        };
        let first = sample()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
        loop {
            std::thread::sleep(std::time::Duration::from_millis(2));
            let last = sample()?;
            if last.0.wrapping_sub(first.0) >= 3 || std::time::Instant::now() >= deadline {
                return Ok(TickClock::from_samples(first, last));
            }
        }
    }

    /// BPF_PROG_QUERY for TCX ingress on `lo` (6.6+; older kernels do not
    /// know the attach type).
    pub(super) fn tcx() -> io::Result<bool> {
        match SchedClassifier::query_tcx("lo", TcAttachType::Ingress) {
            Ok(_) => Ok(true),
            Err(aya::programs::ProgramError::SyscallError(e))
                if matches!(e.io_error.raw_os_error(), Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)) =>
            {
                Ok(false)
            }
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_clock_is_a_known_hz_and_reads_as_the_coarse_clock() {
        // HZ 250: 3 jiffies, 12 ms of coarse clock.
        let j0 = (1u64 << 32) - 75_000;
        let t = TickClock::from_samples((j0, 5_000_000_000), (j0 + 3, 5_012_000_000)).expect("HZ 250");
        assert_eq!((t.hz, t.tick_ns), (250, 4_000_000));
        assert_eq!(t.at(j0 + 3), 5_012_000_000);
        assert_eq!(t.at(j0 + 4), 5_016_000_000);
        // HZ 1000 and 300 (a tick that is no whole number of ns).
        assert_eq!(TickClock::from_samples((10, 0), (20, 10_000_000)).map(|t| t.hz), Some(1000));
        assert_eq!(TickClock::from_samples((10, 0), (13, 10_000_000)).map(|t| t.tick_ns), Some(3_333_333));
        // No tick passed, time ran backwards, or a rate no kernel has.
        assert_eq!(TickClock::from_samples((10, 0), (10, 4_000_000)), None);
        assert_eq!(TickClock::from_samples((10, 8_000_000), (12, 0)), None);
        assert_eq!(TickClock::from_samples((10, 0), (12, 14_000_000)), None);
    }

    fn all(v: Support) -> Features {
        Features {
            release: "6.18.0".into(),
            ringbuf: v,
            coarse_clock: v,
            test_run_on_cpu: v,
            xdp_frags: v,
            fib_skip_neigh: v,
            tcx: v,
            btf: v,
            tick_clock: (!v.is_no()).then_some(TickClock { hz: 250, tick_ns: 4_000_000, offset_ns: 0 }),
            legacy_tc_forced: false,
        }
    }

    #[test]
    fn a_kernel_without_the_ring_buffer_is_refused_in_one_line() {
        let mut f = all(Support::Yes);
        f.release = "5.4.0".into();
        f.ringbuf = Support::No;
        f.coarse_clock = Support::No;
        let e = f.require_minimum().expect_err("must refuse").to_string();
        assert_eq!(
            e,
            "netobs needs Linux 5.11 or newer; this kernel (5.4.0) lacks the BPF ring buffer (5.8) and bpf_ktime_get_coarse_ns (5.11)"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn unknown_answers_do_not_refuse_or_fall_back() {
        let f = all(Support::Unknown);
        assert!(f.require_minimum().is_ok());
        assert_eq!(f.tc_path(), TcPath::Tcx);
        assert!(f.notes().is_empty(), "{:?}", f.notes());
    }

    #[test]
    fn every_fallback_is_noted() {
        let mut f = all(Support::No);
        f.ringbuf = Support::Yes;
        f.coarse_clock = Support::Yes;
        assert!(f.require_minimum().is_ok());
        assert_eq!(f.tc_path(), TcPath::Clsact);
        let notes = f.notes().join("\n");
        for needle in ["clsact", "frags", "SKIP_NEIGH", "TEST_RUN_ON_CPU", "BTF", "kernel tick"] {
            assert!(notes.contains(needle), "{needle} missing from {notes}");
        }
    }

    /// Root, or a skip; under CI=true a missing root is a failure.
    fn is_root() -> bool {
        // SAFETY: plain getter.
        let root = unsafe { libc::geteuid() == 0 };
        assert!(root || std::env::var("CI").map_or(true, |v| v != "true"), "CI=true: the probe tests need root");
        root
    }

    /// (major, minor) of the running kernel.
    fn kernel_at_least(major: u32, minor: u32) -> bool {
        let r = kernel_release();
        let mut parts = r.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
    }

    /// Runs the real probes on a kernel that has every feature (6.6+,
    /// such as the 6.18 these tests are developed on).
    #[test]
    fn probes_find_this_kernels_features_when_root() {
        if !is_root() || !kernel_at_least(6, 6) {
            eprintln!("skipped: needs root and Linux 6.6+");
            return;
        }
        let f = Features::probe();
        if std::env::var_os(FORCE_LEGACY_TC_ENV).is_none() {
            assert_eq!(f.tcx, Support::Yes);
        }
        assert_eq!(f.ringbuf, Support::Yes);
        assert_eq!(f.coarse_clock, Support::Yes);
        assert_eq!(f.test_run_on_cpu, Support::Yes);
        assert_eq!(f.xdp_frags, Support::Yes);
        assert_eq!(f.fib_skip_neigh, Support::Yes);
    }

    /// The probes can say no: a flag no kernel knows is refused the same
    /// way an old kernel refuses SKIP_NEIGH or frags.
    #[test]
    fn probes_report_unknown_flags_as_missing_when_root() {
        if !is_root() {
            eprintln!("skipped: not root");
            return;
        }
        assert!(!probe::fib_flag_accepted(1 << 30).expect("fib probe"));
        assert!(!probe::xdp_prog_flag_accepted(1 << 30).expect("prog flag probe"));
        if kernel_at_least(6, 3) {
            assert!(probe::fib_flag_accepted(1 << 2).expect("fib probe"));
        }
    }
}
