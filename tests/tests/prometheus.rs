//! What a real Prometheus makes of netobs: a Prometheus server (the Debian
//! `prometheus` package) scrapes `netobs watch` in a lab, and its HTTP API
//! must report exactly the ICMP errors the lab produced; every PromQL
//! expression of the dashboard and the alert rules must evaluate; promtool
//! must find a real scrape and the rules clean; the deployment manifests
//! must hold only the capabilities netobs needs.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use netobs_e2e::{
    TwoHop, Watch,
    lab::{Chain, Node},
    root_or_skip, two_hop_reject_lab,
};
use serde_json::Value;

/// The repository root (tests/ is one level down).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".."))
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// True when `tool` runs; otherwise skip (a failure under CI=true).
fn have(test: &str, tool: &str, probe: &[&str]) -> bool {
    if Command::new(tool).args(probe).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok() {
        return true;
    }
    assert!(!ci(), "{test}: {tool} missing under CI=true; `cargo xtask setup` installs it");
    eprintln!("SKIP {test}: {tool} is not installed (cargo xtask setup)");
    false
}

/// Runs python3 `code` with `args`, in `node` or on the host, and returns
/// stdout. The test's own helpers (HTTP GETs in a namespace, YAML to JSON).
fn py(node: Option<&Node>, code: &str, args: &[&str]) -> String {
    let mut argv = vec!["python3", "-c", code];
    argv.extend_from_slice(args);
    let out = match node {
        Some(n) => n.run(&argv).expect("python3 in the lab"),
        None => Command::new("python3").args(&argv[1..]).output().expect("python3"),
    };
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// GET `url` from inside `node`: (status, body).
fn http_get(node: &Node, url: &str, accept: &str) -> (u16, String) {
    let code = "import sys,urllib.request,urllib.error\n\
req=urllib.request.Request(sys.argv[1], headers={'Accept': sys.argv[2]} if sys.argv[2] else {})\n\
try:\n    r=urllib.request.urlopen(req, timeout=10); print(r.status); sys.stdout.write(r.read().decode())\n\
except urllib.error.HTTPError as e:\n    print(e.code); sys.stdout.write(e.read().decode())\n\
except Exception as e:\n    print(0); sys.stdout.write(str(e))\n";
    let out = py(Some(node), code, &[url, accept]);
    let (status, body) = out.split_once('\n').unwrap_or((out.as_str(), ""));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// One instant query through the server's HTTP API (the whole response).
fn query(node: &Node, expr: &str) -> Value {
    let code = "import sys,urllib.request,urllib.parse,urllib.error\n\
u='http://127.0.0.1:9090/api/v1/query?'+urllib.parse.urlencode({'query':sys.argv[1]})\n\
try:\n    sys.stdout.write(urllib.request.urlopen(u, timeout=10).read().decode())\n\
except urllib.error.HTTPError as e:\n    sys.stdout.write(e.read().decode())\n";
    let out = py(Some(node), code, &[expr]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{expr}: not JSON ({e}): {out}"))
}

/// The single value of an instant vector query, if it has exactly one
/// series.
fn scalar(node: &Node, expr: &str) -> Option<f64> {
    let r = query(node, expr);
    let v = r["data"]["result"].as_array()?;
    if v.len() != 1 {
        return None;
    }
    v[0]["value"][1].as_str()?.parse().ok()
}

fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `OutDestUnreachs` of a node's ICMP statistics (what its kernel sent).
fn dest_unreachs_sent(node: &Node) -> u64 {
    let snmp = node.run_ok(&["cat", "/proc/net/snmp"]).expect("/proc/net/snmp");
    let mut icmp = snmp.lines().filter(|l| l.starts_with("Icmp:"));
    let (Some(names), Some(values)) = (icmp.next(), icmp.next()) else { panic!("no Icmp lines in {snmp}") };
    let i = names.split_whitespace().position(|n| n == "OutDestUnreachs").expect("OutDestUnreachs");
    values.split_whitespace().nth(i).and_then(|v| v.parse().ok()).expect("a number")
}

/// Every PromQL expression of the alert rules (YAML, read with python3-yaml).
fn rule_exprs() -> Vec<(String, String)> {
    let code = "import sys,json,yaml\nd=yaml.safe_load(open(sys.argv[1]))\n\
print(json.dumps([[r.get('alert') or r.get('record'), r['expr']] for g in d['groups'] for r in g['rules']]))";
    let path = repo().join("deploy/prometheus/netobs.rules.yml");
    let out = py(None, code, &[path.to_str().expect("UTF-8 path")]);
    serde_json::from_str(&out).expect("rule list")
}

/// Every PromQL expression of the Grafana dashboard, with its variables
/// as Grafana would fill them for "all hosts".
fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/netobs.json")).expect("dashboard");
    let d: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("expr").replace("$instance", ".+").replace("$__rate_interval", "1m");
            out.push((p["title"].as_str().unwrap_or("").to_string(), expr));
        }
    }
    out
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netobs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn a_real_prometheus_scrapes_exactly_what_the_lab_produced() {
    let test = "a_real_prometheus_scrapes_exactly_what_the_lab_produced";
    if !root_or_skip(test) || !have(test, "prometheus", &["--version"]) || !have(test, "promtool", &["--version"]) {
        return;
    }
    // a -- r -- b: r rejects UDP to 7000 (3/13), b has nothing on 9999 (3/3).
    let TwoHop { lab, a, r, b } = two_hop_reject_lab();

    let w = Watch::start(&a, &["-i", "eth0", "--metrics-addr", "127.0.0.1:9464"]).unwrap();

    // Prometheus beside it, in a's namespace: 1 s scrapes, the real rules.
    let dir = tmpdir("prometheus");
    let rules = repo().join("deploy/prometheus/netobs.rules.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: netobs\n    static_configs:\n      - targets: ['127.0.0.1:9464']\n",
        rules.display()
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut cmd = a.command("prometheus");
    cmd.arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg("--web.listen-address=127.0.0.1:9090")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    let server = a.spawn_command(cmd).unwrap();
    let prom_log = || std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    poll("Prometheus to become ready", Duration::from_secs(60), || {
        if let Ok(Some(s)) = server.try_wait() {
            panic!("prometheus exited ({s}):\n{}", prom_log());
        }
        (http_get(&a, "http://127.0.0.1:9090/-/ready", "").0 == 200).then_some(())
    });
    poll("the netobs target to be up", Duration::from_secs(30), || {
        (scalar(&a, "up{job=\"netobs\"}") == Some(1.0)).then_some(())
    });

    // The lab produces a known number of each error; the producers' own
    // counters say how many were really sent.
    let unreach_before = dest_unreachs_sent(&b);
    py(
        Some(&a),
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(5): s.sendto(b'x',('198.18.2.1',9999)); time.sleep(0.05)\nfor i in range(4): s.sendto(b'x',('198.18.2.1',7000)); time.sleep(0.05)",
        &[],
    );
    let sent_by_b = dest_unreachs_sent(&b) - unreach_before;
    let rejected_by_r = r.fw_packets(Chain::Forward, "udp dport 7000").unwrap();
    assert_eq!((sent_by_b, rejected_by_r), (5, 4), "the lab produced other numbers than asked");
    let produced_at = SystemTime::now();

    // Two scrapes after the last error.
    poll("two scrapes after the traffic", Duration::from_secs(30), || {
        let secs = produced_at.elapsed().map(|d| d.as_secs()).unwrap_or(0);
        (secs >= 1 && scalar(&a, &format!("count_over_time(up{{job=\"netobs\"}}[{secs}s])")) >= Some(2.0)).then_some(())
    });
    let sel = |t: u8, c: u8| {
        format!(
            "netobs_icmp_errors_total{{job=\"netobs\",iface=\"eth0\",family=\"ipv4\",direction=\"received\",type=\"{t}\",code=\"{c}\"}}"
        )
    };
    // Poll: the errors may still be in flight to XDP at the first scrape.
    let port_unreach =
        poll("3/3 to reach 5", Duration::from_secs(15), || scalar(&a, &sel(3, 3)).filter(|v| *v >= sent_by_b as f64));
    let admin = poll("3/13 to reach 4", Duration::from_secs(15), || {
        scalar(&a, &sel(3, 13)).filter(|v| *v >= rejected_by_r as f64)
    });
    assert_eq!(port_unreach, sent_by_b as f64, "port unreachable: Prometheus vs b's kernel");
    assert_eq!(admin, rejected_by_r as f64, "admin prohibited: Prometheus vs r's nft counter");
    let verdicts = query(&a, "sum by (verdict) (netobs_icmp_errors_total{job=\"netobs\",direction=\"received\"})");
    let by_verdict: Vec<(String, String)> = verdicts["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|s| {
            (
                s["metric"]["verdict"].as_str().unwrap_or("").to_string(),
                s["value"][1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(by_verdict.contains(&("rejected".into(), "4".into())), "{by_verdict:?}");
    assert!(by_verdict.contains(&("unreachable".into(), "5".into())), "{by_verdict:?}");
    assert_eq!(scalar(&a, "netobs_program_attached{job=\"netobs\",iface=\"eth0\",hook=\"xdp_native\"}"), Some(1.0));
    let health = http_get(&a, "http://127.0.0.1:9464/healthz", "");
    assert_eq!(health.0, 200, "{health:?}");
    let top = http_get(&a, "http://127.0.0.1:9464/top", "");
    let top: Value = serde_json::from_str(&top.1).expect("/top is JSON");
    assert!(top.as_array().is_some_and(|t| t.iter().any(|f| f["reporter"] == "198.18.1.254")), "{top}");

    // Every expression of the dashboard and of the alert rules evaluates.
    let mut exprs = dashboard_exprs();
    let rules_exprs = rule_exprs();
    assert!(exprs.len() >= 20 && rules_exprs.len() >= 5, "{exprs:?} {rules_exprs:?}");
    exprs.extend(rules_exprs);
    for (what, expr) in &exprs {
        let r = query(&a, expr);
        assert_eq!(r["status"], "success", "{what}: {expr}\n{r}");
    }
    // ... and the dashboard shows the rejection the lab provoked.
    let rejected_panel = dashboard_exprs()
        .into_iter()
        .find(|(t, _)| t.starts_with("Rejections"))
        .map(|(_, e)| e.replace("rate(", "increase(").replace("[1m]", "[5m]"))
        .expect("rejections panel");
    let r = query(&a, &rejected_panel);
    assert!(r["data"]["result"].as_array().is_some_and(|v| v.iter().any(|s| s["metric"]["code"] == "13")), "{r}");
    // The server loaded the rules and evaluated each without error.
    let rules = poll("every rule evaluated", Duration::from_secs(20), || {
        let (status, body) = http_get(&a, "http://127.0.0.1:9090/api/v1/rules", "");
        let v: Value = serde_json::from_str(&body).ok()?;
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (status == 200 && !rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown")).then_some(rules)
    });
    for r in &rules {
        assert_eq!(r["health"], "ok", "rule {} failed: {}", r["name"], r["lastError"]);
    }

    // promtool on a real scrape (Prometheus text, what curl gets).
    let (status, scrape) = http_get(&a, "http://127.0.0.1:9464/metrics", "");
    assert_eq!(status, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let complaints = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && complaints.trim().is_empty(), "promtool check metrics:\n{complaints}\n{scrape}");
    assert!(!scrape.contains("198.18."), "no address in a label");
    // What Prometheus itself got was OpenMetrics.
    let (_, om) = http_get(&a, "http://127.0.0.1:9464/metrics", "application/openmetrics-text;version=1.0.0");
    assert!(om.trim_end().ends_with("# EOF"), "{om}");

    // What a scrape costs, for the record (docs/fleet.md).
    let took = scalar(&a, "max_over_time(scrape_duration_seconds{job=\"netobs\"}[1m])");
    let samples = scalar(&a, "scrape_samples_scraped{job=\"netobs\"}");
    eprintln!("netobs scrape: {samples:?} samples, slowest of the last minute {took:?} s");
    // Resident memory of this (nearly idle) watch, for the record.
    let status = std::fs::read_to_string(format!("/proc/{}/status", w.pid())).unwrap_or_default();
    if let Some(rss) = status.lines().find(|l| l.starts_with("VmRSS:")) {
        eprintln!("netobs watch (idle, 1 interface, Prometheus scraping every 1 s): {rss}");
    }

    let out = w.stop().unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    // The exit counters agree with what Prometheus saw.
    assert_eq!(out.icmp_count("eth0", 3, 3), sent_by_b);
    assert_eq!(out.icmp_count("eth0", 3, 13), rejected_by_r);
    server.kill();
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let test = "alert_rules_pass_promtool_check_and_their_unit_tests";
    if !have(test, "promtool", &["--version"]) {
        return;
    }
    let dir = repo().join("deploy/prometheus");
    let check =
        Command::new("promtool").args(["check", "rules", "netobs.rules.yml"]).current_dir(&dir).output().unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let t =
        Command::new("promtool").args(["test", "rules", "netobs.rules.test.yml"]).current_dir(&dir).output().unwrap();
    assert!(t.status.success(), "{}{}", String::from_utf8_lossy(&t.stdout), String::from_utf8_lossy(&t.stderr));
    // Each alert the issue asks for has a unit test.
    let tests = std::fs::read_to_string(dir.join("netobs.rules.test.yml")).unwrap();
    for alert in [
        "NetobsNewRejectingReporter",
        "NetobsSuspectedPmtuBlackhole",
        "NetobsRingBufferLoss",
        "NetobsInterfaceDetached",
        "NetobsDown",
    ] {
        assert!(tests.contains(&format!("alertname: {alert}")), "no unit test for {alert}");
    }
}

#[test]
fn kubernetes_manifests_hold_only_the_needed_capabilities() {
    let test = "kubernetes_manifests_hold_only_the_needed_capabilities";
    if !have(test, "python3", &["-c", "import yaml"]) {
        return;
    }
    let k8s = repo().join("deploy/kubernetes");
    let code =
        "import sys,json,yaml\nprint(json.dumps([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]))";
    let files: Vec<String> = ["namespace.yaml", "daemonset.yaml", "podmonitor.yaml", "prometheusrule.yaml"]
        .iter()
        .map(|f| k8s.join(f).display().to_string())
        .collect();
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let docs: Vec<Value> = serde_json::from_str(&py(None, code, &args)).expect("manifests");
    let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").expect("a DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let mut add: Vec<&str> = sc["capabilities"]["add"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    add.sort_unstable();
    assert_eq!(add, ["BPF", "NET_ADMIN", "PERFMON"]);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(c["resources"]["limits"]["memory"].is_string() && c["resources"]["limits"]["cpu"].is_string());
    let ann = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert!(docs.iter().any(|d| d["kind"] == "PodMonitor"));
    // The PrometheusRule carries exactly the rules promtool tested.
    let rule = docs.iter().find(|d| d["kind"] == "PrometheusRule").expect("a PrometheusRule");
    let rules_file = repo().join("deploy/prometheus/netobs.rules.yml");
    let rules: Value = serde_json::from_str(&py(
        None,
        "import sys,json,yaml\nprint(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        &[rules_file.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(rule["spec"], rules, "run deploy/kubernetes/gen-prometheusrule.py");
}
