//! Attaching the observers to interfaces, all or nothing, beside whatever
//! else runs there.
//!
//! A [`Session`] owns the loaded object and, per interface, every link it
//! created. Each interface is attached completely or not at all: an error
//! half-way drops (detaches) what that interface got so far, including a
//! clsact qdisc netobs created for it.
//!
//! netobs is an observer, so it never takes a slot from anyone:
//! - XDP has one slot per mode. When someone holds it, `--xdp-mode auto`
//!   observes through TC ingress instead and says which program holds XDP
//!   (its id and name). Only `--force` removes that program.
//! - TC programs go at the *head* of the chain (TCX `LinkOrder::first()`,
//!   or priority 1 on a clsact qdisc) and return TC_ACT_UNSPEC ("next"), so
//!   an earlier program that drops or redirects cannot hide packets from
//!   netobs, and every program after it still runs and decides.
//!
//! XDP and TCX attachments are bpf_links the kernel removes when the
//! process dies. On kernels without TCX the clsact filters are not: they
//! are removed on every exit path (drop), but a SIGKILL leaves them.

use std::fmt;

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    programs::{
        LinkOrder, ProgramError, SchedClassifier, Xdp, XdpMode,
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcAttachType},
        xdp::XdpLink,
    },
};

use super::{
    features::{self, Features, TcPath},
    loader::load_program,
    rtnl,
};

/// How to observe ingress traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Native XDP, then generic XDP, then TC ingress: the first that works.
    /// When another program holds XDP, TC ingress beside it.
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

/// A program netobs found on an interface and left alone.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ForeignProgram {
    pub id: u32,
    pub name: String,
}

impl fmt::Display for ForeignProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "program {} (id {})", self.name, self.id)
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
    /// How the TC observers (ingress when `ingress` is TC, and egress) are
    /// attached; `None` when no TC program is.
    pub tc: Option<TcPath>,
    /// netobs created the clsact qdisc (and removes it on exit).
    pub clsact_created: bool,
    /// The program holding this interface's XDP slot, which netobs stayed
    /// beside (or, with `--force`, removed).
    pub xdp_holder: Option<ForeignProgram>,
    /// Why a fallback was taken, if one was.
    pub note: Option<String>,
}

pub const XDP_PROGRAM: &str = "netobs_xdp";
pub const TC_INGRESS_PROGRAM: &str = "netobs_tc_ingress";
pub const TC_EGRESS_PROGRAM: &str = "netobs_tc_egress";

/// cls_bpf priority used on clsact: the lowest number runs first.
const CLSACT_PRIORITY: u16 = 1;

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

/// What to attach, kept for interfaces attached after start.
#[derive(Clone, Copy, Debug)]
pub struct AttachOptions {
    pub mode: AttachMode,
    /// TC egress: the ICMP errors this host sends, its DF packets.
    pub egress: bool,
    /// Replace a foreign XDP program.
    pub force: bool,
    /// The forwarded-TCP flow tracker at TC ingress (`--forwarded-tcp`).
    pub forwarded_tcp: bool,
}

/// Everything one interface got. Dropping it detaches all of it, then
/// removes the clsact qdisc if netobs created it and nobody else uses it.
struct IfaceLinks {
    ifindex: u32,
    iface: String,
    xdp: Option<XdpLink>,
    tc: Vec<SchedClassifierLink>,
    clsact_created: bool,
    /// The interface is gone: nothing left to remove.
    vanished: bool,
}

impl IfaceLinks {
    fn new(iface: &str, ifindex: u32) -> IfaceLinks {
        IfaceLinks {
            ifindex,
            iface: iface.to_string(),
            xdp: None,
            tc: Vec::new(),
            clsact_created: false,
            vanished: false,
        }
    }
}

impl Drop for IfaceLinks {
    fn drop(&mut self) {
        self.xdp.take();
        self.tc.clear();
        // A vanished device took its qdisc with it; a recycled ifindex
        // must not lose the new device's.
        if self.clsact_created && !self.vanished {
            remove_created_clsact(&self.iface, self.ifindex);
        }
    }
}

/// Deletes a clsact qdisc netobs created, unless filters it did not put
/// there hang off it now (netobs's own are detached by then).
fn remove_created_clsact(iface: &str, ifindex: u32) {
    let r = (|| {
        let others = rtnl::clsact_filters(ifindex)?;
        if others > 0 {
            log::warn!(
                "{iface}: leaving the clsact qdisc netobs created: {others} filter(s) of other programs use it now"
            );
            return Ok(());
        }
        rtnl::delete_clsact(ifindex)
    })();
    match r {
        Ok(()) => log::debug!("{iface}: removed the clsact qdisc netobs created"),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENODEV) | Some(libc::ENOENT)) => {}
        Err(e) => log::warn!("{iface}: could not remove the clsact qdisc netobs created: {e}"),
    }
}

/// The loaded object and everything attached from it. Dropping it detaches.
pub struct Session {
    /// Declared first so links are detached before the object is dropped.
    links: Vec<IfaceLinks>,
    pub ebpf: Ebpf,
    pub attached: Vec<Attached>,
    /// What the kernel offers, probed before attaching.
    pub features: Features,
    opts: AttachOptions,
}

impl Session {
    /// Attaches to every interface in `ifaces` or to none: the interfaces are
    /// all resolved before anything is attached, and an error while
    /// attaching drops (detaches) what was attached so far.
    pub fn attach(mut ebpf: Ebpf, ifaces: &[String], opts: AttachOptions) -> Result<Session> {
        if ifaces.is_empty() {
            bail!("no interface to attach to: name one with -i IFACE, or use --all");
        }
        let features = features::detect().clone();
        features.require_minimum()?;
        let resolved: Vec<(String, u32)> =
            ifaces.iter().map(|i| ifindex(i).map(|idx| (i.clone(), idx))).collect::<Result<_>>()?;
        // Verified before anything attaches: staged events must be flushable.
        super::stage::prepare(&mut ebpf)?;
        let mut session = Session { links: Vec::new(), ebpf, attached: Vec::new(), features, opts };
        for (iface, idx) in resolved {
            session.attach_resolved(&iface, idx)?;
        }
        Ok(session)
    }

    /// Attaches one more interface after start (it appeared later), all or
    /// nothing. Attaching one that is already attached is a no-op (`None`).
    pub fn attach_iface(&mut self, iface: &str) -> Result<Option<&Attached>> {
        let idx = ifindex(iface)?;
        if self.attached.iter().any(|a| a.ifindex == idx) {
            return Ok(None);
        }
        // Interfaces listed at load have counter slots; one that appeared
        // later gets the next free one (or counts as "other interface").
        super::counters::assign_iface_slots(&mut self.ebpf, [idx])
            .with_context(|| format!("giving {iface} a counter slot"))?;
        self.attach_resolved(iface, idx)?;
        Ok(self.attached.last())
    }

    /// Forgets (and detaches from) interface `ifindex`. `vanished` says the
    /// interface is gone, so there is nothing left to remove in the kernel.
    pub fn detach_iface(&mut self, ifindex: u32, vanished: bool) -> Option<Attached> {
        let pos = self.attached.iter().position(|a| a.ifindex == ifindex)?;
        if let Some(lpos) = self.links.iter().position(|l| l.ifindex == ifindex) {
            let mut links = self.links.remove(lpos);
            links.vanished = vanished;
            drop(links);
        }
        Some(self.attached.remove(pos))
    }

    fn attach_resolved(&mut self, iface: &str, idx: u32) -> Result<()> {
        let mut links = IfaceLinks::new(iface, idx);
        let mut notes = Vec::new();
        let (ingress, xdp_holder) =
            attach_ingress(&mut self.ebpf, &self.features, iface, idx, self.opts, &mut links, &mut notes)?;
        if self.opts.egress {
            attach_tc(
                &mut self.ebpf,
                &self.features,
                TC_EGRESS_PROGRAM,
                iface,
                TcAttachType::Egress,
                &mut links,
                &mut notes,
            )
            .with_context(|| format!("attaching the TC egress observer to {iface}"))?;
        }
        if self.opts.forwarded_tcp {
            attach_tc(
                &mut self.ebpf,
                &self.features,
                netobs_common::flows::PROGRAM,
                iface,
                TcAttachType::Ingress,
                &mut links,
                &mut notes,
            )
            .with_context(|| format!("attaching the forwarded-TCP flow tracker to {iface}"))?;
        }
        let tc = (!links.tc.is_empty()).then(|| self.features.tc_path());
        self.attached.push(Attached {
            iface: iface.to_string(),
            ifindex: idx,
            ingress,
            egress: self.opts.egress,
            tc,
            clsact_created: links.clsact_created,
            xdp_holder,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
        });
        self.links.push(links);
        Ok(())
    }
}

/// Looks a program up by id among the loaded ones, for its name.
fn describe_program(id: u32) -> ForeignProgram {
    let name = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_string))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "(unnamed)".to_string());
    ForeignProgram { id, name }
}

/// The program in `ifindex`'s XDP slot, if any. A failed query is logged
/// and treated as "free": the attach itself then tells.
fn xdp_holder(iface: &str, ifindex: u32) -> Option<(super::rtnl::XdpSlot, ForeignProgram)> {
    match rtnl::xdp_slot(ifindex) {
        Ok(slot) => slot.holder().map(|id| (slot, describe_program(id))),
        Err(e) => {
            log::debug!("{iface}: could not read the XDP slot over netlink: {e}");
            None
        }
    }
}

fn attach_ingress(
    ebpf: &mut Ebpf,
    features: &Features,
    iface: &str,
    idx: u32,
    opts: AttachOptions,
    links: &mut IfaceLinks,
    notes: &mut Vec<String>,
) -> Result<(Hook, Option<ForeignProgram>)> {
    let mode = opts.mode;
    let tc_ingress = |ebpf: &mut Ebpf, links: &mut IfaceLinks, notes: &mut Vec<String>, why: &str| {
        attach_tc(ebpf, features, TC_INGRESS_PROGRAM, iface, TcAttachType::Ingress, links, notes)
            .with_context(|| format!("attaching the TC ingress observer to {iface}{why}"))
            .map(|()| Hook::TcIngress)
    };
    if mode == AttachMode::Tc {
        return Ok((tc_ingress(ebpf, links, notes, "")?, None));
    }
    let mut holder = None;
    if let Some((slot, prog)) = xdp_holder(iface, idx) {
        if opts.force {
            force_detach_xdp(iface, idx, &slot, &prog)?;
            notes.push(format!("{iface}: --force detached {prog} from XDP"));
            holder = Some(prog);
        } else if mode == AttachMode::Auto {
            let hook = tc_ingress(ebpf, links, notes, " (XDP is taken)")?;
            notes.push(format!(
                "{iface}: XDP is held by {prog}; observing with TC ingress at the head of the chain, beside it"
            ));
            return Ok((hook, Some(prog)));
        } else {
            bail!(
                "{iface} already has an XDP program attached ({prog}); netobs will not replace it. \
                 Use --xdp-mode auto to observe with TC beside it, or --force to detach it"
            );
        }
    }
    // Verify first: a verifier rejection is an error, never a reason to
    // fall back to another hook. The one exception is a kernel known to
    // lack multi-buffer XDP, which the XDP program is built for.
    if let Err(e) = load_program::<Xdp>(ebpf, XDP_PROGRAM) {
        if mode == AttachMode::Auto && features.xdp_frags.is_no() {
            log::debug!("{e:#}");
            let hook = tc_ingress(ebpf, links, notes, " (no multi-buffer XDP)")?;
            notes.push(format!("{iface}: this kernel has no multi-buffer XDP (5.18+), observing with TC ingress"));
            return Ok((hook, holder));
        }
        return Err(e);
    }
    let candidates: &[(XdpMode, Hook)] = match mode {
        AttachMode::Native => &[(XdpMode::Driver, Hook::XdpNative)],
        AttachMode::Skb => &[(XdpMode::Skb, Hook::XdpSkb)],
        _ => &[(XdpMode::Driver, Hook::XdpNative), (XdpMode::Skb, Hook::XdpSkb)],
    };
    let mut last_err = None;
    for &(xdp_mode, hook) in candidates {
        match try_attach_xdp(ebpf, idx, xdp_mode) {
            Ok(link) => {
                links.xdp = Some(link);
                if hook == Hook::XdpSkb && mode == AttachMode::Auto {
                    notes.push(format!("{iface}: native XDP unavailable, using generic (skb) XDP"));
                }
                return Ok((hook, holder));
            }
            Err(e) if is_busy(&e) => {
                // Taken between our look and our attach: the same answer as above.
                let prog = xdp_holder(iface, idx).map(|(_, p)| p);
                let who = prog.as_ref().map_or_else(|| "another program".to_string(), ToString::to_string);
                if mode == AttachMode::Auto && !opts.force {
                    let hook = tc_ingress(ebpf, links, notes, " (XDP is taken)")?;
                    notes.push(format!(
                        "{iface}: XDP is held by {who}; observing with TC ingress at the head of the chain, beside it"
                    ));
                    return Ok((hook, prog));
                }
                return Err(anyhow::Error::new(e).context(format!(
                    "{iface} already has an XDP program attached ({who}); netobs will not replace it"
                )));
            }
            Err(e) => {
                log::debug!("XDP {xdp_mode:?} on {iface} failed: {e}");
                last_err = Some((xdp_mode, e));
            }
        }
    }
    if mode == AttachMode::Auto {
        let hook = tc_ingress(ebpf, links, notes, " (XDP unavailable)")?;
        notes.push(format!("{iface}: XDP unavailable, observing with TC ingress"));
        return Ok((hook, holder));
    }
    match last_err {
        Some((xdp_mode, e)) => Err(anyhow::Error::new(e).context(format!(
            "attaching XDP ({xdp_mode:?}) to {iface}; try --xdp-mode auto to fall back to generic XDP or TC"
        ))),
        None => bail!("no XDP mode to try on {iface}"),
    }
}

fn try_attach_xdp(ebpf: &mut Ebpf, idx: u32, xdp_mode: XdpMode) -> Result<XdpLink, ProgramError> {
    let prog: &mut Xdp = ebpf.program_mut(XDP_PROGRAM).ok_or(ProgramError::NotLoaded)?.try_into()?;
    let id = prog.attach_to_if_index(idx, xdp_mode)?;
    prog.take_link(id)
}

fn is_busy(e: &ProgramError) -> bool {
    let io = match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        ProgramError::NetlinkError(n) => n.raw_os_error(),
        _ => None,
    };
    matches!(io, Some(libc::EBUSY) | Some(libc::EEXIST))
}

/// Attaches TC program `name` at the head of `iface`'s `at` chain: a TCX
/// link first in line, or on kernels without TCX a priority-1 cls_bpf
/// filter on a clsact qdisc (created when missing).
fn attach_tc(
    ebpf: &mut Ebpf,
    features: &Features,
    name: &str,
    iface: &str,
    at: TcAttachType,
    links: &mut IfaceLinks,
    notes: &mut Vec<String>,
) -> Result<()> {
    let prog: &mut SchedClassifier = load_program(ebpf, name)?;
    let id = match features.tc_path() {
        TcPath::Tcx => prog
            .attach_with_options(iface, at, TcAttachOptions::TcxOrder(LinkOrder::first()))
            .with_context(|| format!("attaching {name} through TCX at the head of {iface}"))?,
        TcPath::Clsact => {
            if !links.clsact_created {
                match tc::qdisc_add_clsact(iface) {
                    Ok(()) => links.clsact_created = true,
                    Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(e).with_context(|| format!("creating a clsact qdisc on {iface}")),
                }
            }
            if !links.clsact_created {
                remove_stale_filters(iface, links.ifindex, at, name, notes);
            }
            let head = NlOptions { priority: CLSACT_PRIORITY, ..NlOptions::default() };
            match prog.attach_with_options(iface, at, TcAttachOptions::Netlink(head)) {
                Ok(id) => id,
                Err(e) => {
                    // Priority 1 is held by another kind of filter: take the
                    // kernel's choice, which is still ahead of existing ones
                    // when it can be, and say so.
                    log::debug!("{iface}: cls_bpf at priority {CLSACT_PRIORITY}: {e}");
                    let id = prog
                        .attach_with_options(iface, at, TcAttachOptions::Netlink(NlOptions::default()))
                        .with_context(|| format!("attaching {name} to the clsact qdisc of {iface}"))?;
                    notes.push(format!(
                        "{iface}: priority {CLSACT_PRIORITY} on clsact is taken; {name} may run after other filters"
                    ));
                    id
                }
            }
        }
    };
    links.tc.push(prog.take_link(id)?);
    Ok(())
}

/// cls_bpf filters outlive a killed process (they are not bpf_links), so
/// a restart removes the `name` filters an earlier netobs left on `iface`.
/// A filter whose program still shares its maps with a loaded
/// `netobs_flush` belongs to a netobs that is running: it stays.
fn remove_stale_filters(iface: &str, idx: u32, at: TcAttachType, name: &str, notes: &mut Vec<String>) {
    use rtnetlink::packet_route::tc::TcHandle as NlHandle;
    let minor = match at {
        TcAttachType::Ingress => NlHandle::MIN_INGRESS,
        TcAttachType::Egress => NlHandle::MIN_EGRESS,
        TcAttachType::Custom(_) => return,
    };
    let filters = match rtnl::clsact_bpf_filters(idx, minor) {
        Ok(f) => f,
        Err(e) => {
            log::debug!("{iface}: listing clsact filters: {e}");
            return;
        }
    };
    let mut removed = 0;
    for f in filters.iter().filter(|f| f.name == name) {
        if belongs_to_live_netobs(f.prog_id) {
            notes.push(format!("{iface}: another running netobs has {name} attached here too"));
            continue;
        }
        match SchedClassifierLink::attached(iface, at, f.priority, tc::TcHandle::from(f.handle), None) {
            // Dropping the link handle detaches the filter.
            Ok(link) => {
                drop(link);
                removed += 1;
            }
            Err(e) => log::debug!("{iface}: removing a stale {name} filter: {e}"),
        }
    }
    if removed > 0 {
        notes.push(format!("{iface}: removed {removed} {name} filter(s) left by an earlier netobs"));
    }
}

fn belongs_to_live_netobs(prog_id: u32) -> bool {
    let progs: Vec<aya::programs::ProgramInfo> = aya::programs::loaded_programs().filter_map(Result::ok).collect();
    let maps_of = |p: &aya::programs::ProgramInfo| p.map_ids().ok().flatten().unwrap_or_default();
    let Some(filter_maps) = progs.iter().find(|p| p.id() == prog_id).map(maps_of) else { return false };
    progs
        .iter()
        .filter(|p| p.name_as_str() == Some(super::stage::FLUSH_PROGRAM))
        .any(|p| maps_of(p).iter().any(|m| filter_maps.contains(m)))
}

/// `--force`: removes the XDP program(s) in `iface`'s slot through netlink
/// (`IFLA_XDP` with fd -1, per mode). A program held by a bpf_link cannot
/// be removed by anyone but its owner; that is an error naming it.
fn force_detach_xdp(iface: &str, idx: u32, slot: &super::rtnl::XdpSlot, prog: &ForeignProgram) -> Result<()> {
    for (flag, id) in slot.occupied() {
        match rtnl::detach_xdp(idx, flag) {
            Ok(()) => log::warn!("--force: detached XDP program id {id} from {iface}"),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => bail!(
                "--force cannot detach {prog} from {iface}: it is attached through a bpf_link, which only its owner can release"
            ),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("--force could not detach the XDP program id {id} from {iface}"));
            }
        }
    }
    Ok(())
}
