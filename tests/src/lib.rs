//! Harness for the root-only end-to-end tests: find the real `netobs`
//! binary, run it inside lab namespaces, collect its JSON lines.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
pub use netobs_lab as lab;
use netobs_lab::Node;
use serde_json::Value;

pub mod tcpdump;

/// The netobs binary under test: `$NETOBS_BIN`, else the newest of
/// target/{release,debug}/netobs (xtask builds it before running tests).
pub fn netobs_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NETOBS_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let candidates = [target.join("debug/netobs"), target.join("release/netobs")];
    candidates
        .iter()
        .filter_map(|p| p.metadata().and_then(|m| m.modified()).ok().map(|t| (t, p.clone())))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| candidates[0].clone())
}

/// True when root; under CI=true a missing root is a failure, not a skip.
pub fn root_or_skip(test: &str) -> bool {
    netobs_lab::root_or_skip(test)
}

/// A `netobs watch --json` running inside a lab node.
pub struct Watch {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// What a finished watch printed.
#[derive(Debug)]
pub struct WatchOutput {
    pub status: ExitStatus,
    pub records: Vec<Value>,
    pub stderr: String,
}

impl Watch {
    /// Starts `netobs watch --json <args>` in `node` and waits until every
    /// interface reports attached (or the process dies).
    pub fn start(node: &Node, args: &[&str]) -> Result<Watch> {
        Watch::start_env(node, args, &[])
    }

    /// [`Watch::start`] with extra environment variables for netobs.
    pub fn start_env(node: &Node, args: &[&str], envs: &[(&str, &str)]) -> Result<Watch> {
        let mut cmd = node.command(netobs_bin().to_str().context("non-UTF-8 binary path")?);
        cmd.envs(envs.iter().copied());
        Watch::start_command(cmd, args, Duration::from_secs(30))
    }

    /// Runs `cmd` (netobs itself, or a wrapper such as `setpriv ... netobs`)
    /// with `watch --json <args>` appended, and waits up to `attach_within`
    /// until every interface reports attached (or the process dies).
    pub fn start_command(mut cmd: Command, args: &[&str], attach_within: Duration) -> Result<Watch> {
        cmd.arg("watch").arg("--json").args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().context("spawning netobs watch")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let mut w = Watch { child, lines, reader: Some(reader) };
        let expected = args.iter().filter(|a| **a == "-i").count().max(1);
        let start = Instant::now();
        loop {
            let attached = w.records().iter().filter(|r| r["type"] == "attach").count();
            if attached >= expected {
                return Ok(w);
            }
            if let Some(status) = w.child.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = w.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                bail!("netobs watch exited early ({status}): {err}");
            }
            if start.elapsed() > attach_within {
                bail!("netobs watch did not attach within {attach_within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Records printed so far.
    pub fn records(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until `pred` holds for some record, up to `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(r) = self.records().into_iter().find(|r| pred(r)) {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Sends SIGTERM and collects everything it printed.
    pub fn stop(self) -> Result<WatchOutput> {
        self.stop_with(libc::SIGTERM, Duration::from_secs(20))
    }

    /// Sends `sig` and collects everything it printed; fails when the
    /// process has not exited `within` that long.
    pub fn stop_with(mut self, sig: i32, within: Duration) -> Result<WatchOutput> {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if start.elapsed() > within {
                let _ = self.child.kill();
                bail!("netobs watch did not exit within {within:?} of signal {sig}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        Ok(WatchOutput { status, records: self.records(), stderr })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl WatchOutput {
    /// The last version of each finding (findings are re-emitted as their
    /// count grows), in first-seen order.
    pub fn findings(&self) -> Vec<Value> {
        let mut by_id: Vec<(u64, Value)> = Vec::new();
        for r in self.records.iter().filter(|r| r["type"] == "finding") {
            let id = r["id"].as_u64().unwrap_or(0);
            match by_id.iter_mut().find(|(i, _)| *i == id) {
                Some(slot) => slot.1 = r.clone(),
                None => by_id.push((id, r.clone())),
            }
        }
        by_id.into_iter().map(|(_, v)| v).collect()
    }

    /// The final kernel counters record.
    pub fn counters(&self) -> Option<&Value> {
        self.records.iter().rev().find(|r| r["type"] == "counters")
    }

    /// Count of ICMP errors of (type, code) received on `iface`.
    pub fn icmp_count(&self, iface: &str, icmp_type: u64, code: u64) -> u64 {
        self.counters()
            .and_then(|c| c["icmp"].as_array())
            .map(|rows| {
                rows.iter()
                    .filter(|r| {
                        r["iface"] == iface
                            && r["type"] == icmp_type
                            && r["code"] == code
                            && r["direction"] == "received"
                    })
                    .filter_map(|r| r["count"].as_u64())
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// Runs `netobs ARGS` in `node` to completion.
pub fn run_netobs(node: &Node, args: &[&str]) -> Result<std::process::Output> {
    let mut cmd = node.command(netobs_bin().to_str().context("non-UTF-8 binary path")?);
    cmd.args(args);
    cmd.output().context("running netobs")
}

/// `netobs` programs currently loaded in the kernel (by name), via bpftool.
pub fn loaded_netobs_programs() -> Result<Vec<String>> {
    let out = Command::new("bpftool").args(["-j", "prog", "show"]).output().context("running bpftool prog show")?;
    if !out.status.success() {
        bail!("bpftool prog show failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("parsing bpftool JSON")?;
    Ok(v.as_array()
        .map(|progs| {
            progs
                .iter()
                .filter_map(|p| p["name"].as_str())
                .filter(|n| n.starts_with("netobs_"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default())
}

/// The two-hop lab most `watch` tests provoke known ICMP errors in:
/// a (198.18.1.1) -- r -- b (198.18.2.1). r rejects UDP to port 7000 with
/// ICMP 3/13 (communication administratively prohibited); b has nothing on
/// UDP 9999, so it answers 3/3 (port unreachable).
pub struct TwoHop {
    pub lab: lab::Lab,
    pub a: Node,
    pub r: Node,
    pub b: Node,
}

/// Builds [`TwoHop`]; panics (failing the test) when the lab cannot be built.
pub fn two_hop_reject_lab() -> TwoHop {
    use lab::{Chain, Reject};
    let lab = lab::Lab::new();
    let a = lab.host("a").expect("host a");
    let r = lab.router("r").expect("router r");
    let b = lab.host("b").expect("host b");
    lab.link(&a, &r).v4("198.18.1.1/24", "198.18.1.254/24").names("eth0", "eth0").create().expect("link a-r");
    lab.link(&r, &b).v4("198.18.2.254/24", "198.18.2.1/24").names("eth1", "eth0").create().expect("link r-b");
    a.route("default", "198.18.1.254").expect("route on a");
    b.route("default", "198.18.2.254").expect("route on b");
    r.fw_reject(Chain::Forward, "udp dport 7000", Reject::ADMIN_PROHIBITED).expect("reject rule on r");
    TwoHop { lab, a, r, b }
}

/// A TCP listener on `node`, port `port` (IPv4, every address), that never
/// accepts and lives `secs` seconds: the kernel completes handshakes (or
/// answers SYNs with SYN-ACKs) by itself.
pub fn listener(node: &Node, port: u16, secs: u32) -> Result<lab::Spawned> {
    let code = format!(
        "import socket,time\nl=socket.socket()\nl.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         l.bind(('0.0.0.0',{port}))\nl.listen(16)\ntime.sleep({secs})"
    );
    node.spawn(&["python3", "-c", &code]).context("spawning a TCP listener")
}

/// A TCP server on `node`, port `port` (IPv4), that writes 1 MB to every
/// client; returns once it had half a second to bind.
pub fn download_server(node: &Node, port: u16) -> Result<lab::Spawned> {
    let code = format!(
        "import socket,threading\n\
         l=socket.socket()\nl.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         l.bind(('0.0.0.0',{port}))\nl.listen(64)\n\
         def serve(c):\n  c.settimeout(60)\n  try: c.sendall(b'x'*1000000)\n  except Exception: pass\n\
         while True:\n  c,_=l.accept()\n  threading.Thread(target=serve,args=(c,),daemon=True).start()\n"
    );
    let p = node.spawn(&["python3", "-c", &code]).context("spawning the download server")?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(p)
}
