//! Network-namespace labs for netobs: hosts and routers (one network
//! namespace each), veth links with per-end MTUs and dual-stack addresses,
//! static routes, nftables firewall rules, and helpers to run commands inside.
//!
//! Shared by the root-only integration tests and `cargo xtask lab up|down|list`.
//!
//! Safety rules baked into the API:
//! * only addresses in 198.18.0.0/15 and 2001:db8::/32 are accepted for
//!   interfaces and routes, and only inside namespaces the lab created;
//! * every namespace is named `nobs-<labid>-<node>` so parallel tests never
//!   collide and leftovers are easy to find ([`cleanup_stale`]);
//! * a [`Lab`] tears everything down on drop (also while unwinding from a
//!   panic); [`install_signal_cleanup`] covers Ctrl-C.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let lab = netobs_lab::Lab::new();
//! let client = lab.host("client")?;
//! let r1 = lab.router("r1")?;
//! let server = lab.host("server")?;
//! lab.link(&client, &r1).v4("198.18.1.1/24", "198.18.1.254/24").create()?;
//! lab.link(&r1, &server).v4("198.18.2.254/24", "198.18.2.1/24").mtu(1400).create()?;
//! client.route("default", "198.18.1.254")?;
//! server.route("default", "198.18.2.254")?;
//! client.run(&["ping", "-c1", "-W1", "198.18.2.1"])?;
//! # Ok(()) }
//! ```

mod addr;
mod cleanup;
mod cmd;
mod firewall;
mod link;
mod node;
pub mod scenarios;
#[cfg(test)]
mod tests;
pub mod tracer;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Result, bail};

pub use addr::{Cidr, is_lab_addr};
pub use cleanup::{cleanup_lab, cleanup_stale, install_signal_cleanup, list_namespaces, ns_path};
pub use firewall::{Chain, Reject};
pub use link::{Link, LinkBuilder, LinkEnd};
pub use node::{Node, NodeKind, Spawned};

/// Prefix of every namespace a lab creates; [`cleanup_stale`] removes
/// everything carrying it.
pub const NS_PREFIX: &str = "nobs-";

/// Longest node name accepted; keeps namespace names short and readable in
/// `ip netns list`.
pub const MAX_NODE_NAME: usize = 16;

/// A set of namespaces, links and background processes that is torn down as
/// a unit when dropped (unless [`Lab::keep`] was called).
pub struct Lab {
    shared: Arc<Shared>,
}

/// State shared between the lab and its node handles. Holds no `Node`s (only
/// their inner data), so there is no reference cycle.
pub(crate) struct Shared {
    id: String,
    keep: AtomicBool,
    /// Next explicit ifindex for veth ends, see [`Shared::take_ifindex`].
    next_ifindex: AtomicU32,
    state: Mutex<LabState>,
}

#[derive(Default)]
pub(crate) struct LabState {
    pub(crate) nodes: Vec<Arc<node::NodeInner>>,
    /// Human-readable link records for [`Lab::describe`].
    pub(crate) links: Vec<String>,
    pub(crate) children: Vec<Arc<node::ChildSlot>>,
}

/// First ifindex handed out to veth ends.
const FIRST_IFINDEX: u32 = 100;

impl Shared {
    /// Explicit, lab-unique ifindex for a new veth end. Without it both ends
    /// of a pair between two fresh namespaces typically get the same ifindex
    /// (2), the kernel then treats the carrier change as non-urgent and
    /// delays it by up to a second (linkwatch), and IPv6 addresses stay
    /// tentative meanwhile: the first ping of a test gets lost. Distinct
    /// indexes make linkwatch act at once.
    pub(crate) fn take_ifindex(&self) -> u32 {
        self.next_ifindex.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, LabState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Lab {
    /// A new, empty lab with a process-unique id (`<pid hex>-<counter hex>`).
    ///
    /// Ids already present in `/var/run/netns` (e.g. a `lab up` lab whose pid
    /// got recycled) are skipped, so an old persistent lab is never adopted.
    pub fn new() -> Lab {
        let pid = std::process::id();
        let existing = list_namespaces().unwrap_or_default();
        let id = loop {
            let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
            let id = format!("{pid:x}-{n:x}");
            let prefix = format!("{NS_PREFIX}{id}-");
            if !existing.iter().any(|ns| ns.starts_with(&prefix)) {
                break id;
            }
        };
        Lab {
            shared: Arc::new(Shared {
                id,
                keep: AtomicBool::new(false),
                next_ifindex: AtomicU32::new(FIRST_IFINDEX),
                state: Mutex::new(LabState::default()),
            }),
        }
    }

    /// The lab id embedded in every namespace name (`nobs-<id>-<node>`);
    /// pass it to [`cleanup_lab`] to remove a kept lab.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Creates an end host: forwarding off.
    pub fn host(&self, name: &str) -> Result<Node> {
        self.add_node(name, NodeKind::Host)
    }

    /// Creates a router: IPv4 and IPv6 forwarding on.
    pub fn router(&self, name: &str) -> Result<Node> {
        self.add_node(name, NodeKind::Router)
    }

    fn add_node(&self, name: &str, kind: NodeKind) -> Result<Node> {
        check_node_name(name)?;
        if self.node(name).is_some() {
            bail!("lab {}: node {name:?} already exists", self.id());
        }
        let ns = format!("{NS_PREFIX}{}-{name}", self.id());
        node::Node::create(self.shared.clone(), name, &ns, kind)
    }

    /// Starts a veth link between `a` and `b`; see [`LinkBuilder`].
    pub fn link(&self, a: &Node, b: &Node) -> LinkBuilder {
        LinkBuilder::new(a, b)
    }

    /// Shorthand for a single-stack IPv4 link with default MTU:
    /// `lab.connect(&a, "198.18.1.1/24", &b, "198.18.1.254/24")`.
    pub fn connect(&self, a: &Node, a_addr: &str, b: &Node, b_addr: &str) -> Result<Link> {
        self.link(a, b).addr(a_addr, b_addr).create()
    }

    /// Looks a node up by name.
    pub fn node(&self, name: &str) -> Option<Node> {
        let st = self.shared.state();
        st.nodes.iter().find(|n| n.name == name).map(|inner| Node::from_inner(self.shared.clone(), inner.clone()))
    }

    /// All nodes in creation order.
    pub fn nodes(&self) -> Vec<Node> {
        let st = self.shared.state();
        st.nodes.iter().map(|inner| Node::from_inner(self.shared.clone(), inner.clone())).collect()
    }

    /// Namespace names of all nodes, in creation order.
    pub fn namespaces(&self) -> Vec<String> {
        self.shared.state().nodes.iter().map(|n| n.ns.clone()).collect()
    }

    /// Multi-line summary of nodes and links, for `lab up` and test failures.
    pub fn describe(&self) -> String {
        let st = self.shared.state();
        let mut s = format!("lab {}\n", self.id());
        for n in &st.nodes {
            let _ = writeln!(s, "  {:<7} {:<10} netns {}", n.kind.as_str(), n.name, n.ns);
        }
        for l in &st.links {
            let _ = writeln!(s, "  link {l}");
        }
        s
    }

    /// Disables teardown on drop and forgets the namespaces for signal
    /// cleanup, so the lab survives this process (`cargo xtask lab up`).
    /// Background processes spawned so far are left running.
    pub fn keep(&mut self) {
        self.shared.keep.store(true, Ordering::SeqCst);
        let st = self.shared.state();
        for n in &st.nodes {
            cleanup::unregister_ns(&n.ns);
        }
        for c in &st.children {
            cleanup::unregister_pid(c.pid);
        }
    }

    /// Consumes the lab without tearing it down; returns its namespace names.
    pub fn into_persistent(mut self) -> Vec<String> {
        self.keep();
        self.namespaces()
    }

    /// Explicit teardown that reports errors (drop only prints them).
    pub fn teardown(self) -> Result<()> {
        self.teardown_inner()
    }

    fn teardown_inner(&self) -> Result<()> {
        if self.shared.keep.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (children, namespaces) = {
            let mut st = self.shared.state();
            let children = std::mem::take(&mut st.children);
            let ns: Vec<String> = st.nodes.iter().map(|n| n.ns.clone()).collect();
            (children, ns)
        };
        // Background processes first: they may hold sockets in the namespaces
        // and would keep them (and their veths) alive after deletion.
        for c in children {
            c.kill_and_reap();
        }
        // Mark as done so a later drop is a no-op.
        self.shared.keep.store(true, Ordering::SeqCst);
        cleanup::destroy(&namespaces)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown_inner() {
            eprintln!("netobs-lab: teardown of lab {} failed: {e:#}", self.id());
        }
    }
}

fn check_node_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if !ok {
        bail!("invalid node name {name:?}: use 1..={MAX_NODE_NAME} chars of [a-z0-9-], not starting with '-'");
    }
    Ok(())
}

/// For root-only tests: returns `true` when running as root. Otherwise, with
/// `CI=true` it panics (a CI job that silently skips every lab test would be
/// green but worthless); locally it prints a skip notice and returns `false`.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test}: lab tests need root (CI=true, refusing to skip); run with sudo");
    }
    eprintln!("SKIP {test}: lab tests need root");
    false
}
