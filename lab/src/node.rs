//! Nodes (one network namespace each) and running commands inside them.

use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::addr::{check_iface_addr, check_route};
use crate::{Shared, cleanup, cmd};

/// Whether a node forwards packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Host,
    Router,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Host => "host",
            NodeKind::Router => "router",
        }
    }
}

/// Sysctls applied to every node before any interface exists, so that new
/// veths inherit them through `conf.default`:
/// * no DAD: IPv6 addresses are usable immediately instead of ~1 s later;
/// * no reverse-path filtering: asymmetric test paths must not be dropped;
/// * TTL 64 pinned, since tests assert on quoted/received TTLs;
/// * kernel ICMP rate limits off, so traceroute-style tests are deterministic
///   (the `icmp-ratelimit` scenario uses nftables for a controlled limit):
///   the per-destination limit (`icmp_ratelimit`, `icmp.ratelimit`) and the
///   namespace's global one (`icmp_msgs_per_sec`, 1000/s with a burst of
///   50, which also covers ICMPv6 errors): a trace of several flows at once
///   can ask one router for more than 50 errors in a burst.
const COMMON_SYSCTLS: &[&str] = &[
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv4.ip_default_ttl=64",
    "net.ipv4.icmp_ratelimit=0",
    "net.ipv6.icmp.ratelimit=0",
    "net.ipv4.icmp_msgs_per_sec=1000000",
    "net.ipv4.icmp_msgs_burst=1000000",
];

const ROUTER_SYSCTLS: &[&str] = &["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"];

pub(crate) struct NodeInner {
    pub(crate) name: String,
    pub(crate) ns: String,
    pub(crate) kind: NodeKind,
    /// Interfaces created by the lab in this namespace, for `ethN` allocation.
    pub(crate) ifaces: Mutex<Vec<String>>,
    /// Whether the `inet netobs` table and its chains exist yet.
    pub(crate) fw_ready: AtomicBool,
}

/// Handle to a namespace in a [`crate::Lab`]. Cheap to clone; valid until the
/// lab is dropped (afterwards commands fail because the namespace is gone).
#[derive(Clone)]
pub struct Node {
    pub(crate) shared: Arc<Shared>,
    pub(crate) inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.name)
            .field("ns", &self.inner.ns)
            .field("kind", &self.inner.kind)
            .finish()
    }
}

impl Node {
    pub(crate) fn from_inner(shared: Arc<Shared>, inner: Arc<NodeInner>) -> Node {
        Node { shared, inner }
    }

    pub(crate) fn create(shared: Arc<Shared>, name: &str, ns: &str, kind: NodeKind) -> Result<Node> {
        cmd::checked(cmd::new("ip", &["netns", "add", ns]), None).with_context(|| format!("creating node {name}"))?;
        // Registered before configuring it, so a failure below still gets the
        // namespace removed by teardown / signal cleanup.
        cleanup::register_ns(ns);
        let inner = Arc::new(NodeInner {
            name: name.to_string(),
            ns: ns.to_string(),
            kind,
            ifaces: Mutex::new(Vec::new()),
            fw_ready: AtomicBool::new(false),
        });
        shared.state().nodes.push(inner.clone());
        let node = Node { shared, inner };

        let mut settings: Vec<&str> = COMMON_SYSCTLS.to_vec();
        if kind == NodeKind::Router {
            settings.extend_from_slice(ROUTER_SYSCTLS);
        }
        let mut argv = vec!["sysctl", "-qw"];
        argv.extend(settings);
        node.run(&argv).with_context(|| format!("configuring node {name}"))?;
        node.ip(&["link", "set", "lo", "up"]).with_context(|| format!("configuring node {name}"))?;
        Ok(node)
    }

    /// Node name within the lab (e.g. `client`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Network namespace name (e.g. `nobs-3f2a1-0-client`).
    pub fn ns_name(&self) -> &str {
        &self.inner.ns
    }

    pub fn kind(&self) -> NodeKind {
        self.inner.kind
    }

    pub fn is_router(&self) -> bool {
        self.inner.kind == NodeKind::Router
    }

    /// Interfaces the lab created in this node, in creation order.
    pub fn interfaces(&self) -> Vec<String> {
        self.ifaces().clone()
    }

    pub(crate) fn ifaces(&self) -> MutexGuard<'_, Vec<String>> {
        self.inner.ifaces.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn same_lab(&self, other: &Node) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// `ip netns exec NS program`, ready for more args / stdio setup.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns_name(), program]);
        c
    }

    fn argv_command(&self, argv: &[&str]) -> Result<Command> {
        let Some((program, args)) = argv.split_first() else {
            bail!("node {}: empty command", self.name());
        };
        let mut c = self.command(program);
        c.args(args);
        Ok(c)
    }

    /// Runs `argv` in the namespace; a non-zero exit is an error carrying the
    /// command line, exit status, stderr and stdout.
    pub fn run(&self, argv: &[&str]) -> Result<Output> {
        cmd::checked(self.argv_command(argv)?, None)
    }

    /// Like [`Node::run`] but returns stdout as a string.
    pub fn run_ok(&self, argv: &[&str]) -> Result<String> {
        let out = self.run(argv)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `argv` without checking the exit status: for commands expected to
    /// fail, e.g. a ping that must go unanswered.
    pub fn run_unchecked(&self, argv: &[&str]) -> Result<Output> {
        cmd::output(self.argv_command(argv)?, None)
    }

    /// Runs a `sh -c` script in the namespace (checked like [`Node::run`]).
    pub fn sh(&self, script: &str) -> Result<Output> {
        self.run(&["sh", "-c", script])
    }

    /// Starts `argv` in the background with stdout/stderr piped. The process
    /// is killed and reaped when the lab is torn down.
    pub fn spawn(&self, argv: &[&str]) -> Result<Spawned> {
        let mut c = self.argv_command(argv)?;
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        self.spawn_command(c)
    }

    /// Starts a caller-prepared command (normally from [`Node::command`]) in
    /// the background, registered with the lab like [`Node::spawn`].
    pub fn spawn_command(&self, mut c: Command) -> Result<Spawned> {
        let desc = cmd::render(&c);
        let child = c.spawn().with_context(|| format!("cannot start `{desc}`"))?;
        let slot = Arc::new(ChildSlot { pid: child.id(), desc, child: Mutex::new(Some(child)) });
        cleanup::register_pid(slot.pid);
        self.shared.state().children.push(slot.clone());
        Ok(Spawned { slot })
    }

    /// `ip -n NS args...` (checked).
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut c = cmd::new("ip", &["-n", self.ns_name()]);
        c.args(args);
        cmd::checked(c, None)
    }

    /// Feeds `lines` to `ip -n NS -batch -`: one process for many changes.
    /// Stops at the first failing line (the error shows the whole batch).
    pub fn ip_batch<S: AsRef<str>>(&self, lines: &[S]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let script: String = lines.iter().map(|l| format!("{}\n", l.as_ref())).collect();
        cmd::checked(cmd::new("ip", &["-n", self.ns_name(), "-batch", "-"]), Some(&script))?;
        Ok(())
    }

    /// Sets sysctls in the namespace, e.g. `node.sysctl(&["net.ipv4.icmp_ratelimit=1000"])`.
    pub fn sysctl(&self, settings: &[&str]) -> Result<()> {
        let mut argv = vec!["sysctl", "-qw"];
        argv.extend_from_slice(settings);
        self.run(&argv)?;
        Ok(())
    }

    /// Interface index of `ifname` inside this namespace.
    pub fn ifindex(&self, ifname: &str) -> Result<u32> {
        let out = self.ip(&["-o", "link", "show", "dev", ifname])?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("node {}: cannot parse ifindex of {ifname} from {text:?}", self.name()))
    }

    /// Adds another address (lab ranges only) to one of this node's interfaces.
    pub fn add_addr(&self, ifname: &str, cidr: &str) -> Result<()> {
        self.ip_batch(&[addr_line(ifname, cidr)?])
    }

    /// Changes an interface MTU.
    pub fn set_mtu(&self, ifname: &str, mtu: u32) -> Result<()> {
        self.ip(&["link", "set", "dev", ifname, "mtu", &mtu.to_string()])?;
        Ok(())
    }

    /// Adds a static route; `dest` is `default` or a lab prefix, the family
    /// follows `via` (`node.route("default", "2001:db8:1::fe")` is IPv6).
    pub fn route(&self, dest: &str, via: &str) -> Result<()> {
        self.routes(&[(dest, via)])
    }

    /// Adds several routes with a single `ip -batch`.
    pub fn routes(&self, routes: &[(&str, &str)]) -> Result<()> {
        let lines = routes
            .iter()
            .map(|(dest, via)| {
                let (_, dest) = check_route(dest, via).with_context(|| format!("node {}: bad route", self.name()))?;
                Ok(format!("route add {dest} via {via}"))
            })
            .collect::<Result<Vec<_>>>()?;
        self.ip_batch(&lines).with_context(|| format!("adding routes on node {}", self.name()))
    }
}

/// The `ip addr add` batch line for a validated lab address. `nodad` is
/// belt and braces next to `accept_dad=0`.
pub(crate) fn addr_line(ifname: &str, cidr: &str) -> Result<String> {
    let c = check_iface_addr(cidr)?;
    Ok(if c.is_ipv6() { format!("addr add {c} dev {ifname} nodad") } else { format!("addr add {c} dev {ifname}") })
}

/// A background process owned by the lab.
pub(crate) struct ChildSlot {
    pub(crate) pid: u32,
    desc: String,
    /// `None` once reaped (by the owner or by teardown).
    child: Mutex<Option<Child>>,
}

impl ChildSlot {
    fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn kill_and_reap(&self) {
        if let Some(mut child) = self.lock().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        cleanup::unregister_pid(self.pid);
    }
}

/// Handle to a process started with [`Node::spawn`]. Dropping the handle does
/// not stop the process; lab teardown (or [`Spawned::kill`]/[`Spawned::finish`]) does.
pub struct Spawned {
    slot: Arc<ChildSlot>,
}

impl Spawned {
    pub fn pid(&self) -> u32 {
        self.slot.pid
    }

    /// The command line, for messages.
    pub fn describe(&self) -> &str {
        &self.slot.desc
    }

    /// Takes the stdout pipe, e.g. to wait for a "ready" line.
    pub fn take_stdout(&self) -> Option<ChildStdout> {
        self.slot.lock().as_mut().and_then(|c| c.stdout.take())
    }

    pub fn take_stderr(&self) -> Option<ChildStderr> {
        self.slot.lock().as_mut().and_then(|c| c.stderr.take())
    }

    /// Sends a signal (e.g. `libc::SIGTERM` so tcpdump flushes).
    pub fn signal(&self, sig: i32) -> Result<()> {
        let pid = i32::try_from(self.slot.pid).context("pid out of range")?;
        if self.slot.lock().is_none() {
            bail!("`{}` already reaped", self.slot.desc);
        }
        // SAFETY: kill(2) has no memory-safety preconditions; the child is not
        // reaped yet (checked above), so the pid cannot have been recycled.
        if unsafe { libc::kill(pid, sig) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("kill({pid}, {sig}) for `{}`", self.slot.desc));
        }
        Ok(())
    }

    /// Exit status if the process has ended.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        let mut guard = self.slot.lock();
        let Some(child) = guard.as_mut() else {
            bail!("`{}` already reaped", self.slot.desc);
        };
        let st = child.try_wait().with_context(|| format!("waiting for `{}`", self.slot.desc))?;
        if st.is_some() {
            cleanup::unregister_pid(self.slot.pid);
        }
        Ok(st)
    }

    /// Waits up to `timeout` for the process to end.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(Some(st));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the process politely (SIGTERM, then SIGKILL after `grace`) and
    /// returns its exit status and whatever output was not taken.
    pub fn finish(&self, grace: Duration) -> Result<Output> {
        let Some(mut child) = self.slot.lock().take() else {
            bail!("`{}` already reaped", self.slot.desc);
        };
        let desc = &self.slot.desc;
        if child.try_wait().ok().flatten().is_none() {
            if let Ok(pid) = i32::try_from(self.slot.pid) {
                // SAFETY: not reaped yet, so the pid still belongs to the child.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            let deadline = Instant::now() + grace;
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
        }
        let out = child.wait_with_output().with_context(|| format!("collecting output of `{desc}`"));
        cleanup::unregister_pid(self.slot.pid);
        out
    }

    /// Waits for the process to end by itself (up to `timeout`, then it is
    /// killed) and returns its output; for one-shot background jobs.
    pub fn wait_output(&self, timeout: Duration) -> Result<Output> {
        self.wait_timeout(timeout)?;
        self.finish(Duration::ZERO)
    }

    /// SIGKILL and reap.
    pub fn kill(&self) {
        self.slot.kill_and_reap();
    }
}
