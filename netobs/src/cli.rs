//! Command-line interface. `--help` is written for operators: every option
//! says what it is for and what the default means.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::kernel::AttachMode;

/// The git commit this binary was built from (netobs/build.rs; "unknown"
/// outside a git checkout unless `NETOBS_GIT_COMMIT` was set at build time).
pub const GIT_COMMIT: &str = env!("NETOBS_GIT_COMMIT");

/// Boolean flags read from `NETOBS_*` variables: empty, 0, no, off, false
/// (any case) are false, anything else true, as shell-style files expect.
fn bool_env() -> clap::builder::FalseyValueParser {
    clap::builder::FalseyValueParser::new()
}

/// `netobs --version`: the crate version and the commit.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("NETOBS_GIT_COMMIT"), ")");

/// Explains why traffic vanishes: which hop rejects or drops it, and why.
///
/// netobs watches every ICMP/ICMPv6 error with an XDP program (no capture
/// filter to get wrong), joins each one to the flow it quotes and says who
/// rejected what, how far away, and what to do. It also runs active probes
/// (traceroute, path-MTU search, TCP handshake) and turns them into one
/// verdict.
#[derive(Debug, Parser)]
#[command(name = "netobs", version = VERSION, propagate_version = true, max_term_width = 100, after_help = crate::exit::HELP)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn log_level(&self) -> &'static str {
        match self.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch interfaces and explain every ICMP error and DF-oversized packet.
    ///
    /// Attaches an XDP observer (TC where XDP is unavailable) to each
    /// interface plus a TC egress observer, prints one line per (flow,
    /// reporter, verdict) with counts, serves Prometheus metrics, and
    /// detaches cleanly on Ctrl-C / SIGTERM.
    ///
    /// What never comes back is inferred from this host's own TCP (kernel
    /// retransmission tracepoints): full-size segments resent without
    /// progress while no frag-needed arrived (suspected PMTU blackhole),
    /// SYNs resent with no answer (silent drop), SYN-ACKs resent (and
    /// whether an ICMP error rejected them). This needs local TCP
    /// connections: forwarded traffic on a gateway has no socket, and
    /// nothing is inferred for it.
    ///
    /// Example: netobs watch -i eth0 --json
    #[command(
        after_help = "Exit status:\n  0  stopped as asked (Ctrl-C, SIGTERM, --duration, or its output pipe was closed)\n  2  could not start: usage error, missing capability, unknown interface\n  3  failed while running (kernel or I/O error)"
    )]
    Watch(WatchArgs),
    /// Explain the ICMP errors in a capture file (pcap or pcapng), as `watch` would have.
    ///
    /// Every frame goes through the parser the XDP program runs, and every
    /// ICMP error becomes the same finding, words and JSON as in `watch`
    /// (hop distance, aggregation, line budget), with the capture's
    /// timestamps as the clock. Link types: Ethernet, Linux cooked (SLL,
    /// SLL2), raw IP, PPP, BSD loopback. Ends with a table by ICMP type,
    /// code and reporter. Frames cut by the snapshot length are read as far
    /// as they go; malformed frames are counted, never fatal.
    ///
    /// Without --local, each ICMP error's destination is taken to be the
    /// capturing host (tcpdump on the host that received them). A capture
    /// has no live host to ask, so the socket state, the conntrack original
    /// and the route-cache PMTU that `watch` adds are missing; the summary
    /// says which findings would have had them.
    ///
    /// Examples:
    ///   tcpdump -i eth0 -w /tmp/gw.pcap icmp or icmp6   (at 3 am)
    ///   netobs read /tmp/gw.pcap                        (later, anywhere)
    ///   netobs read --json --frames /tmp/gw.pcap | jq 'select(.type=="frame")'
    ///   tcpdump -i any -U -w - | netobs read -          (from a pipe, as it happens)
    ///   sudo netobs read --kernel /tmp/gw.pcap          (also through the real XDP program)
    #[command(
        verbatim_doc_comment,
        after_help = "Exit status:\n  0  read to its end (malformed frames are counted, not errors); with --kernel, the datapath agreed on every frame\n  1  the capture ends inside a record or at a damaged one (what came before is reported), or --kernel found a disagreement\n  2  could not read: no such file, not a pcap/pcapng capture, --kernel without root\n  3  failed while running (an I/O or kernel error)"
    )]
    Read(ReadArgs),
    /// Traceroute with a stable flow (Paris style), all TTLs in flight at once.
    Trace(crate::probe::cli::TraceArgs),
    /// Path-MTU discovery with DF probes, with blackhole detection.
    Pmtu(crate::probe::cli::PmtuArgs),
    /// TCP handshake check: SYN-ACK, RST, ICMP (from whom) or silence.
    Tcp(crate::probe::cli::TcpArgs),
    /// Run the relevant probes and the kernel watch together; print one verdict.
    Explain(crate::probe::cli::ExplainArgs),
    /// Print shell completions on stdout (`cargo xtask install` uses it).
    #[command(hide = true)]
    Completions(crate::commands::generate::CompletionsArgs),
    /// Print the man page (roff) of netobs or of one subcommand on stdout.
    #[command(hide = true)]
    Man(crate::commands::generate::ManArgs),
}

/// When to colour terminal output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Interface to observe (repeat for several).
    #[arg(
        short = 'i',
        long = "iface",
        value_name = "IFACE",
        required_unless_present = "all",
        env = "NETOBS_IFACE",
        value_delimiter = ','
    )]
    pub ifaces: Vec<String>,

    /// Observe every interface of this network namespace except lo.
    #[arg(long, conflicts_with = "ifaces", value_parser = bool_env(), env = "NETOBS_ALL")]
    pub all: bool,

    /// How to observe ingress: auto tries native XDP, then generic XDP, then TC.
    #[arg(long, value_enum, default_value = "auto", env = "NETOBS_XDP_MODE")]
    pub xdp_mode: AttachMode,

    /// Do not attach the TC egress observer (ICMP errors this host sends,
    /// locally sent oversized DF packets).
    #[arg(long, value_parser = bool_env(), env = "NETOBS_NO_EGRESS")]
    pub no_egress: bool,

    /// Detach an XDP program someone else attached instead of refusing.
    #[arg(long, value_parser = bool_env(), env = "NETOBS_FORCE")]
    pub force: bool,

    /// On a gateway: also notice blackholes and silent drops in the TCP it
    /// forwards (no socket of its own to retransmit), from per-flow state
    /// kept in the kernel: full-size segments passing again without the
    /// receiver's ACKs moving, SYNs resent with nothing coming back,
    /// SYN-ACKs resent without their ACK. Watch every interface the flows
    /// cross (both directions must pass here). Costs a hash lookup per TCP
    /// segment at TC ingress; at most 16384 flows, least recent forgotten.
    #[arg(long, value_parser = bool_env(), env = "NETOBS_FORWARDED_TCP")]
    pub forwarded_tcp: bool,

    /// Print JSON lines (schema: docs/json-schema.md) instead of text.
    #[arg(long, value_parser = bool_env(), env = "NETOBS_JSON")]
    pub json: bool,

    /// Serve Prometheus metrics and /top on this address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464", env = "NETOBS_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,

    /// Do not serve metrics.
    #[arg(long, conflicts_with = "metrics_addr", value_parser = bool_env(), env = "NETOBS_NO_METRICS")]
    pub no_metrics: bool,

    /// Stop after this long (e.g. 30s, 5m); default: until Ctrl-C / SIGTERM.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Events per second per CPU the kernel may sample in detail; beyond
    /// that it only counts (the sampled-out count is reported).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=10_000_000), env = "NETOBS_EVENTS_PER_SEC")]
    pub events_per_sec: u32,

    /// Burst of events the kernel may sample at once, per CPU.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "NETOBS_BURST")]
    pub burst: u32,

    /// DF packets longer than this pay for a FIB lookup to check their
    /// egress MTU. Default: the smallest MTU among this namespace's
    /// interfaces. 0 disables the DF-oversized check.
    #[arg(long, value_name = "BYTES", env = "NETOBS_DF_THRESHOLD")]
    pub df_threshold: Option<u32>,

    /// How long each CPU reuses a FIB answer for the same flow in the
    /// DF check (a lookup costs about 190 ns; flows repeat it at line
    /// rate). A route or MTU change is seen within this time. 0: a lookup
    /// for every packet.
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=3_600_000), env = "NETOBS_ROUTE_CACHE_MS")]
    pub route_cache_ms: u32,

    /// Egress: report locally sent DF packets longer than this (a known
    /// path MTU). 0 (default) disables.
    #[arg(long, value_name = "BYTES", default_value_t = 0, env = "NETOBS_EGRESS_PATH_MTU")]
    pub egress_path_mtu: u32,

    /// Most flows/reporters remembered at once (least recently seen are
    /// forgotten first; their counts stay in the metrics).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(16..=10_000_000), env = "NETOBS_MAX_FLOWS")]
    pub max_flows: u32,

    /// Ring buffer size in KiB (rounded up to a power of two). An ICMP
    /// error's event is 24 bytes plus its copy of the error (at most 144
    /// bytes in all, 80-112 for most), a DF event 144 (plus an 8-byte
    /// header per record of up to 64 events), so the default 2 MiB holds
    /// about 14,000 to 26,000 of them between two drains.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(4..=1_048_576), env = "NETOBS_RINGBUF_KIB")]
    pub ringbuf_kib: u32,

    /// Kernel-side diagnostics (cold paths only, rate-limited in the
    /// kernel), fixed at load; off costs nothing per packet.
    #[arg(long, value_enum, default_value = "off", env = "NETOBS_EBPF_LOG_LEVEL")]
    pub ebpf_log_level: crate::kernel::loader::EbpfLogLevel,

    /// Seconds between updated lines for a flow that keeps failing.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=3600), env = "NETOBS_UPDATE_INTERVAL")]
    pub update_interval: u32,

    /// Colour the terminal output.
    #[arg(long, value_enum, default_value = "auto", env = "NETOBS_COLOR")]
    pub color: Color,

    /// Also write every JSON line to this file.
    #[arg(long, value_name = "FILE", env = "NETOBS_JSON_FILE")]
    pub json_file: Option<PathBuf>,

    /// Probe what watch finds: each new rejection, frag-needed / Packet Too
    /// Big, DF-oversized flow, suspected blackhole or silent drop runs the
    /// matching probe (TCP check, trace, or PMTU search with the location of
    /// the narrow link) toward that destination, and prints an
    /// `investigation` record with explain's verdict. Only destinations
    /// seen in real traffic are probed. Needs CAP_NET_RAW too.
    #[arg(long, value_parser = bool_env(), env = "NETOBS_INVESTIGATE")]
    pub investigate: bool,

    /// --investigate: most probes sent in any minute, all investigations
    /// together (never faster than 50 a second).
    #[arg(long, value_name = "N", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=6000), env = "NETOBS_PROBE_BUDGET")]
    pub probe_budget: u32,

    /// --investigate: shortest time between two investigations toward the
    /// same destination.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, env = "NETOBS_PROBE_COOLDOWN")]
    pub probe_cooldown: Duration,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The capture (pcap or pcapng); `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Print JSON lines (schema: docs/json-schema.md) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Also one `frame` record per ICMP error and per malformed frame,
    /// numbered as tcpdump's `-#` numbers them (JSON only).
    #[arg(long, requires = "json")]
    pub frames: bool,

    /// An address of the host the capture was taken on (repeat for
    /// several). Decides which traffic was "ours" (outgoing or return)
    /// and which only forwarded. Default: each error's destination.
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub local: Vec<std::net::IpAddr>,

    /// Say findings were seen on this interface (default: the name the
    /// pcapng capture gives, else the file name).
    #[arg(long, value_name = "NAME")]
    pub iface: Option<String>,

    /// TTL / hop limit the capturing host sends with (Linux: 64).
    #[arg(long, value_name = "TTL", default_value_t = 64)]
    pub initial_ttl: u8,

    /// Also run every frame through the real XDP program
    /// (BPF_PROG_TEST_RUN) and print where it disagrees with this parser.
    /// Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON).
    #[arg(long)]
    pub kernel: bool,

    /// Seconds of capture time between updated lines for a flow that keeps
    /// failing (as `watch --update-interval`).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub update_interval: u32,

    /// Most flows/reporters remembered at once (as `watch --max-flows`).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(16..=10_000_000))]
    pub max_flows: u32,

    /// Show a progress bar on stderr: auto does for files above 32 MiB
    /// when stderr is a terminal.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: Color,

    /// Colour the terminal output.
    #[arg(long, value_enum, default_value = "auto", env = "NETOBS_COLOR")]
    pub color: Color,
}

/// Parses "250ms", "30s", "5m", "1h" or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration (try 30s, 500ms, 5m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (use ms, s, m or h)")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
