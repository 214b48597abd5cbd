//! Attaching the observers to interfaces, all or nothing.
//!
//! A [`Session`] owns the loaded object and every link it created. aya
//! detaches links when their program is dropped, and XDP/TCX links are
//! bpf_links that the kernel also removes when the process dies, so neither
//! an error half-way through nor a crash leaves a program behind.

use std::fmt;

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    programs::{ProgramError, SchedClassifier, Xdp, XdpMode, tc::TcAttachType},
};

use super::loader::load_program;

/// How to observe ingress traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Native XDP, then generic XDP, then TC ingress: the first that works.
    Auto,
    /// Native (driver) XDP only.
    Native,
    /// Generic (skb) XDP only.
    Skb,
    /// TC ingress only (no XDP).
    Tc,
}

/// Where an observer ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    XdpNative,
    XdpSkb,
    TcIngress,
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hook::XdpNative => "XDP (native)",
            Hook::XdpSkb => "XDP (generic/skb)",
            Hook::TcIngress => "TC ingress",
        })
    }
}

/// One interface netobs is attached to.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Attached {
    pub iface: String,
    pub ifindex: u32,
    pub ingress: Hook,
    /// A TC egress observer is attached too (ICMP errors this host sends).
    pub egress: bool,
    /// Why a fallback was taken, if one was.
    pub note: Option<String>,
}

/// The loaded object and everything attached from it. Dropping it detaches.
pub struct Session {
    pub ebpf: Ebpf,
    pub attached: Vec<Attached>,
}

pub const XDP_PROGRAM: &str = "netobs_xdp";
pub const TC_INGRESS_PROGRAM: &str = "netobs_tc_ingress";
pub const TC_EGRESS_PROGRAM: &str = "netobs_tc_egress";

/// Interface name -> index, or a clear error naming the interface.
pub fn ifindex(iface: &str) -> Result<u32> {
    let name = std::ffi::CString::new(iface).with_context(|| format!("bad interface name {iface:?}"))?;
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 {
        bail!("no such network interface: {iface} (see `ip -br link` for the interfaces of this network namespace)");
    }
    Ok(idx)
}

impl Session {
    /// Attaches to every interface in `ifaces` or to none: the interfaces are
    /// all resolved before anything is attached, and an error while
    /// attaching drops (detaches) what was attached so far.
    pub fn attach(mut ebpf: Ebpf, ifaces: &[String], mode: AttachMode, egress: bool, force: bool) -> Result<Session> {
        if ifaces.is_empty() {
            bail!("no interface to attach to: name one with -i IFACE, or use --all");
        }
        let resolved: Vec<(String, u32)> =
            ifaces.iter().map(|i| ifindex(i).map(|idx| (i.clone(), idx))).collect::<Result<_>>()?;
        // Verified before anything attaches: staged events must be flushable.
        super::stage::prepare(&mut ebpf)?;
        let mut attached = Vec::new();
        for (iface, idx) in resolved {
            let (ingress, note) = attach_ingress(&mut ebpf, &iface, mode, force)?;
            if egress {
                attach_tc(&mut ebpf, TC_EGRESS_PROGRAM, &iface, TcAttachType::Egress)
                    .with_context(|| format!("attaching the TC egress observer to {iface}"))?;
            }
            attached.push(Attached { iface, ifindex: idx, ingress, egress, note });
        }
        Ok(Session { ebpf, attached })
    }
}

fn attach_ingress(ebpf: &mut Ebpf, iface: &str, mode: AttachMode, force: bool) -> Result<(Hook, Option<String>)> {
    if mode == AttachMode::Tc {
        attach_tc(ebpf, TC_INGRESS_PROGRAM, iface, TcAttachType::Ingress)
            .with_context(|| format!("attaching the TC ingress observer to {iface}"))?;
        return Ok((Hook::TcIngress, None));
    }
    // Verify first: a verifier rejection is an error, never a reason to
    // fall back to another hook.
    load_program::<Xdp>(ebpf, XDP_PROGRAM)?;
    let candidates: &[(XdpMode, Hook)] = match mode {
        AttachMode::Native => &[(XdpMode::Driver, Hook::XdpNative)],
        AttachMode::Skb => &[(XdpMode::Skb, Hook::XdpSkb)],
        _ => &[(XdpMode::Driver, Hook::XdpNative), (XdpMode::Skb, Hook::XdpSkb)],
    };
    let mut last_err = None;
    for &(xdp_mode, hook) in candidates {
        match try_attach_xdp(ebpf, iface, xdp_mode) {
            Ok(()) => {
                let note = (hook == Hook::XdpSkb && mode == AttachMode::Auto)
                    .then(|| format!("{iface}: native XDP unavailable, using generic (skb) XDP"));
                return Ok((hook, note));
            }
            Err(e) if is_busy(&e) => {
                if !force {
                    bail!(
                        "{iface} already has an XDP program attached by someone else; netobs will not replace it. \
                         Use --xdp-mode tc to observe with TC alongside it, or --force to detach it"
                    );
                }
                force_detach_xdp(iface)?;
                try_attach_xdp(ebpf, iface, xdp_mode)
                    .with_context(|| format!("attaching XDP to {iface} after --force"))?;
                return Ok((hook, None));
            }
            Err(e) => {
                log::debug!("XDP {xdp_mode:?} on {iface} failed: {e}");
                last_err = Some((xdp_mode, e));
            }
        }
    }
    if mode == AttachMode::Auto {
        attach_tc(ebpf, TC_INGRESS_PROGRAM, iface, TcAttachType::Ingress)
            .with_context(|| format!("attaching the TC ingress observer to {iface} (XDP unavailable)"))?;
        return Ok((Hook::TcIngress, Some(format!("{iface}: XDP unavailable, observing with TC ingress"))));
    }
    match last_err {
        Some((xdp_mode, e)) => Err(anyhow::Error::new(e).context(format!(
            "attaching XDP ({xdp_mode:?}) to {iface}; try --xdp-mode auto to fall back to generic XDP or TC"
        ))),
        None => bail!("no XDP mode to try on {iface}"),
    }
}

fn try_attach_xdp(ebpf: &mut Ebpf, iface: &str, xdp_mode: XdpMode) -> Result<(), ProgramError> {
    let prog: &mut Xdp = ebpf.program_mut(XDP_PROGRAM).ok_or(ProgramError::NotLoaded)?.try_into()?;
    prog.attach(iface, xdp_mode).map(|_| ())
}

fn is_busy(e: &ProgramError) -> bool {
    let io = match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => None,
    };
    matches!(io, Some(libc::EBUSY) | Some(libc::EEXIST))
}

fn attach_tc(ebpf: &mut Ebpf, name: &str, iface: &str, at: TcAttachType) -> Result<()> {
    let prog: &mut SchedClassifier = load_program(ebpf, name)?;
    prog.attach(iface, at)?;
    Ok(())
}

/// `--force`: removes whatever XDP program is attached to `iface` through
/// netlink (`ip link set dev IFACE xdp off`). Programs attached through a
/// bpf_link cannot be removed this way; that error is reported as is.
fn force_detach_xdp(iface: &str) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args(["link", "set", "dev", iface, "xdpgeneric", "off", "xdpdrv", "off"])
        .output()
        .context("running `ip link set ... xdp off` for --force")?;
    if !out.status.success() {
        bail!(
            "--force could not detach the existing XDP program from {iface}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    log::warn!("--force: detached the existing XDP program from {iface}");
    Ok(())
}
