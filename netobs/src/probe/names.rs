//! Host names: reverse DNS of the hops a probe found, and forward lookups
//! of the host names given as targets, both through one resolver.
//!
//! The resolver is hickory's, configured from `/etc/resolv.conf` (and
//! `/etc/hosts`), the same files the system resolver reads; `ip netns
//! exec` bind-mounts `/etc/netns/NAME/resolv.conf` over it, so a namespace
//! can have its own. Why not the libc resolver: `getnameinfo` blocks a
//! thread per lookup and cannot be cancelled, so a silent resolver would
//! hold the trace hostage for its full timeout (5 s x attempts); here every
//! lookup is a task, all run at once, answers are cached for the run, and
//! [`Names::settle`] stops waiting at a deadline whatever the resolver does.
//! Reverse lookups never make a trace longer than the wait given (`1 s` by
//! default after the last probe answer); a hop whose name did not arrive in
//! time shows its address only, like one without a PTR record.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hickory_resolver::{
    TokioResolver,
    config::ResolverOpts,
    proto::rr::{Name, RData},
};
use tokio::task::JoinHandle;

use super::trace::TraceResult;

/// Longest wait for a forward lookup of a target name: a target without an
/// address cannot be probed, so this one is worth waiting for, but not
/// for the resolver's own 5 s x attempts.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Default bounded wait for reverse lookups after the last probe answer.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(1);

/// Builds the resolver from the system configuration. Each query gets
/// a short timeout of its own: the overall bound is [`Names::settle`]'s,
/// this only keeps a lost UDP answer from being waited for long.
fn system_resolver() -> Result<TokioResolver> {
    let mut b = TokioResolver::builder_tokio().context("reading /etc/resolv.conf")?;
    let opts: &mut ResolverOpts = b.options_mut();
    opts.timeout = Duration::from_millis(800);
    opts.attempts = 2;
    b.build().context("building the DNS resolver")
}

/// The name a PTR answer gives, without its trailing dot.
fn ptr_name(lookup: &hickory_resolver::lookup::Lookup) -> Option<String> {
    lookup.answers().iter().find_map(|r| match &r.data {
        RData::PTR(p) => {
            let s = p.0.to_utf8();
            let s = s.trim_end_matches('.');
            (!s.is_empty()).then(|| s.to_string())
        }
        _ => None,
    })
}

/// Reverse names of probe responders: started as addresses become known,
/// cached for the whole run, collected with a deadline.
pub struct Names {
    resolver: Option<TokioResolver>,
    /// Finished lookups: `None` = no name (NXDOMAIN, error or no PTR).
    cache: HashMap<IpAddr, Option<String>>,
    pending: HashMap<IpAddr, JoinHandle<Option<String>>>,
}

impl Names {
    /// A resolver for reverse lookups, or none with `reverse` false (`-n`).
    /// A system without a usable resolver configuration gets no names
    /// (logged), not an error: the trace itself does not need them.
    /// Must be called inside the tokio runtime that will run the lookups.
    pub fn new(reverse: bool) -> Names {
        let resolver = if reverse {
            match system_resolver() {
                Ok(r) => Some(r),
                Err(e) => {
                    log::warn!("no reverse DNS: {e:#}");
                    None
                }
            }
        } else {
            None
        };
        Names { resolver, cache: HashMap::new(), pending: HashMap::new() }
    }

    /// Starts a lookup for every address not yet known or asked for; all run
    /// in parallel.
    pub fn start(&mut self, addrs: impl IntoIterator<Item = IpAddr>) {
        let Some(resolver) = &self.resolver else { return };
        for addr in addrs {
            if self.cache.contains_key(&addr) || self.pending.contains_key(&addr) {
                continue;
            }
            let r = resolver.clone();
            let task = tokio::spawn(async move {
                match r.reverse_lookup(Name::from(addr)).await {
                    Ok(l) => ptr_name(&l),
                    Err(e) => {
                        log::debug!("reverse lookup of {addr}: {e}");
                        None
                    }
                }
            });
            self.pending.insert(addr, task);
        }
    }

    /// Every address of a trace's answers.
    pub fn start_trace(&mut self, t: &TraceResult) {
        let addrs: Vec<IpAddr> = t.hops.iter().flat_map(|h| h.addrs.iter().copied()).collect();
        self.start(addrs);
    }

    /// Moves finished lookups into the cache without waiting.
    pub async fn collect(&mut self) {
        let done: Vec<IpAddr> = self.pending.iter().filter(|(_, t)| t.is_finished()).map(|(a, _)| *a).collect();
        for addr in done {
            if let Some(task) = self.pending.remove(&addr) {
                self.cache.insert(addr, task.await.unwrap_or(None));
            }
        }
    }

    /// Waits for the pending lookups until `deadline` at the latest; those
    /// still running stay pending (a later `settle` may still get them).
    pub async fn settle(&mut self, deadline: Instant) {
        let addrs: Vec<IpAddr> = self.pending.keys().copied().collect();
        for addr in addrs {
            let Some(task) = self.pending.get_mut(&addr) else { continue };
            match tokio::time::timeout_at(deadline.into(), task).await {
                Ok(res) => {
                    self.pending.remove(&addr);
                    self.cache.insert(addr, res.unwrap_or(None));
                }
                // The deadline passed: every other task is out of time too.
                Err(_) => break,
            }
        }
        self.collect().await;
    }

    /// Stops every lookup still running (end of the run).
    pub fn abort(&mut self) {
        for (_, t) in self.pending.drain() {
            t.abort();
        }
    }

    /// The name of `addr`, if its lookup finished with one.
    pub fn name(&self, addr: IpAddr) -> Option<&str> {
        self.cache.get(&addr).and_then(|n| n.as_deref())
    }

    /// Fills the `name` of every answered probe of `t`.
    pub fn apply(&self, t: &mut TraceResult) {
        for p in t.hops.iter_mut().flat_map(|h| h.probes.iter_mut()) {
            p.name = p.from.and_then(|a| self.name(a)).map(str::to_string);
        }
    }

    /// Looks up names for a finished trace (all at once, at most `wait`) and
    /// fills them in.
    pub async fn resolve_trace(&mut self, t: &mut TraceResult, wait: Duration) {
        if self.resolver.is_none() {
            return;
        }
        self.start_trace(t);
        self.settle(Instant::now() + wait).await;
        self.abort();
        self.apply(t);
    }
}

/// Resolves a target: an address literal as it is, a host name through the
/// same resolver as the reverse lookups (`family` 4 or 6 picks one when
/// the name has both). Runs its own small runtime: the commands resolve
/// their target before they start one.
pub fn resolve_target(host: &str, family: Option<u8>) -> Result<IpAddr> {
    let trimmed = host.trim();
    let literal = trimmed.trim_start_matches('[').trim_end_matches(']');
    if literal.parse::<IpAddr>().is_ok() || trimmed.is_empty() {
        return super::resolve(host, family);
    }
    if trimmed.contains(':') || !trimmed.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        bail!("{trimmed:?} is neither an IP address nor a valid host name");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime for a DNS lookup")?;
    rt.block_on(async {
        let resolver = system_resolver()?;
        let lookup = tokio::time::timeout(FORWARD_TIMEOUT, resolver.lookup_ip(trimmed))
            .await
            .with_context(|| format!("cannot resolve host {trimmed:?}: no DNS answer within {FORWARD_TIMEOUT:?}"))?
            .with_context(|| format!("cannot resolve host {trimmed:?}"))?;
        lookup.iter().find(|a| family.is_none_or(|f| (f == 4) == a.is_ipv4())).with_context(|| {
            format!("host {trimmed:?} has no {} address", family.map_or("usable".into(), |f| format!("IPv{f}")))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_need_no_resolver() {
        assert_eq!(resolve_target("198.18.1.1", None).unwrap(), "198.18.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(resolve_target("[2001:db8::1]", Some(6)).unwrap(), "2001:db8::1".parse::<IpAddr>().unwrap());
        assert!(resolve_target("198.18.1.1", Some(6)).is_err());
        assert!(resolve_target("", None).is_err());
        assert!(resolve_target("bad name!", None).is_err());
    }

    #[test]
    fn ptr_names_lose_their_trailing_dot() {
        use hickory_resolver::proto::{
            op::Query,
            rr::{RecordType, rdata::PTR},
        };
        let q = Query::query(Name::from("198.18.1.254".parse::<IpAddr>().unwrap()), RecordType::PTR);
        let l = hickory_resolver::lookup::Lookup::from_rdata(q, RData::PTR(PTR(Name::from_ascii("r1.lab.").unwrap())));
        assert_eq!(ptr_name(&l).as_deref(), Some("r1.lab"));
    }
}
