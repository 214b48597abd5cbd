//! Arguments of the probe subcommands. Every probe needs root (or
//! CAP_NET_RAW; `explain` also CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON for its
//! kernel view). Each `--help` ends with its exit codes ([`crate::exit`]).
//! The probes print no colour, so NO_COLOR has nothing to switch off; the
//! progress line is drawn only on a terminal.

use clap::Args;

use super::packet::Proto;

/// Parses a wait like "250ms", "2s".
fn wait(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::cli::parse_duration(s)?;
    if d.is_zero() || d.as_secs() > 60 {
        return Err(format!("{s:?}: use a wait between 1ms and 60s"));
    }
    Ok(d)
}

/// Parses a TOS byte: decimal or 0x hex.
fn tos(s: &str) -> Result<u8, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u8::from_str_radix(h, 16),
        None => s.parse(),
    };
    v.map_err(|_| format!("{s:?}: a TOS byte is 0-255 (decimal or 0x hex)"))
}

/// `-4` / `-6`, shared by the commands that take a HOST.
#[derive(Debug, Args)]
pub struct FamilyArgs {
    /// Use IPv4 when HOST is a name with both families.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Use IPv6 when HOST is a name with both families.
    #[arg(short = '6')]
    pub ipv6: bool,
}

impl FamilyArgs {
    /// The family asked for, if any.
    pub fn family(&self) -> Option<u8> {
        super::family_flag(self.ipv4, self.ipv6)
    }
}

/// `netobs trace HOST`
///
/// Examples:
///   netobs trace 198.18.4.1                  UDP to port 33434, 1-3 probes per hop
///   netobs trace 2001:db8:4::1 --proto tcp --port 443
///   netobs trace example.net --proto icmp --json
#[derive(Debug, Args)]
#[command(
    after_help = concat!(
        "Examples:\n  netobs trace 198.18.4.1                     UDP to port 33434, 1-3 probes per hop\n  netobs trace 2001:db8:4::1 --proto tcp --port 443\n  netobs trace 198.18.4.1 --proto icmp --json\nNeeds root (or CAP_NET_RAW). Annotations: !H host, !N net, !P protocol unreachable, !X administratively prohibited, !F-<mtu> fragmentation needed, !V/!C precedence, !<n> other code.\n\n",
        crate::exit_help!("the destination was reached", "not reached (an ICMP error ended the trace, or silence)")
    )
)]
pub struct TraceArgs {
    /// Destination: an IPv4/IPv6 address or a host name (resolved once).
    pub host: String,

    /// Probe protocol. udp: classic traceroute (destination answers "port
    /// unreachable"); tcp: SYN to --port, follows the service's path and
    /// firewall rules; icmp: echo, least often filtered.
    #[arg(long, value_enum, default_value = "udp")]
    pub proto: Proto,

    /// Destination port, the same for every probe (Paris traceroute: one
    /// flow, so per-flow load balancers keep all probes on one path).
    /// Default: 33434 for udp, 80 for tcp.
    #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Highest TTL to probe.
    #[arg(short = 'm', long, default_value_t = 30, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub max_ttl: u8,

    /// Most probes per hop. One probe goes to every hop first; only a hop
    /// that stayed silent gets the rest (so `*` means no answer to all of
    /// them), unless --burst.
    #[arg(short, long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=10))]
    pub queries: u8,

    /// Send all --queries probes of every hop at once (per-hop RTT spread,
    /// and routers that rate-limit ICMP answer only part of the burst).
    #[arg(long)]
    pub burst: bool,

    /// Stop after this many silent hops past the last answering one.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=30))]
    pub gap: u8,

    /// Longest wait for an answer; once answers arrive the wait adapts to
    /// 3x the largest RTT seen (never below 250ms).
    #[arg(short, long, default_value = "3s", value_parser = wait)]
    pub wait: std::time::Duration,

    /// Multipath: trace N flow identities at once (source port; ICMP id;
    /// also the flow label on IPv6), Paris-style within each, and show per
    /// hop the distinct responders (ECMP branches) and which flows took them.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(2..=32), conflicts_with = "mtu")]
    pub flows: Option<u8>,

    /// TOS / traffic class byte of the probes (DSCP << 2 | ECN, e.g. 0xb8
    /// for EF): the quotes then show a box that clears or rewrites it.
    #[arg(long, default_value = "0", value_parser = tos)]
    pub tos: u8,

    /// Per-hop MTU: after the trace, probe every hop with DF at the full
    /// interface MTU and print `F=<size>` where it drops, with the router
    /// that announced it (as traceroute --mtu).
    #[arg(long)]
    pub mtu: bool,

    #[command(flatten)]
    pub family: FamilyArgs,

    /// Print JSON (schema: docs/probes-json.md) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `netobs pmtu HOST`
///
/// Examples:
///   netobs pmtu 198.18.4.1
///   netobs pmtu 2001:db8:4::1 --proto icmp --json
#[derive(Debug, Args)]
#[command(
    after_help = concat!(
        "Examples:\n  netobs pmtu 198.18.4.1\n  netobs pmtu 2001:db8:4::1 --proto icmp --json\nProbes the local MTU and the common MTUs (1500 1492 1480 1460 1450 1420 1400 1380 1280) at once, then any announced MTU, then bisects; a size that vanishes without frag-needed/Packet Too Big is a blackhole, located with TTL-limited big probes. Needs root (or CAP_NET_RAW).\n\n",
        crate::exit_help!("the path MTU was found", "a PMTU blackhole (or no size got through)")
    )
)]
pub struct PmtuArgs {
    /// Destination: an IPv4/IPv6 address or a host name.
    pub host: String,

    /// Probe protocol: udp to a closed port (answers are small port
    /// unreachables, whatever the probe size), icmp echo (answers are as big
    /// as the probe), or tcp SYN with padding to --port.
    #[arg(long, value_enum, default_value = "udp")]
    pub proto: Proto,

    /// Destination port for udp/tcp. Default: 33434 for udp, 80 for tcp.
    #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Longest wait for an answer (adapts to 3x the RTT once known).
    #[arg(short, long, default_value = "2s", value_parser = wait)]
    pub wait: std::time::Duration,

    /// Do not locate a blackhole with TTL-limited probes.
    #[arg(long)]
    pub no_locate: bool,

    #[command(flatten)]
    pub family: FamilyArgs,

    /// Print JSON (schema: docs/probes-json.md).
    #[arg(long)]
    pub json: bool,
}

/// `netobs tcp HOST:PORT`
///
/// Examples:
///   netobs tcp 198.18.4.1:443
///   netobs tcp [2001:db8:4::1]:22 --json
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n  netobs tcp 198.18.4.1:443\n  netobs tcp [2001:db8:4::1]:22 --json\n  netobs tcp 198.18.4.1:443 || alert        alert unless the port is open\nNeeds root (or CAP_NET_RAW).\n\n",
    crate::exit_help!("open (SYN-ACK)", "closed (RST), rejected (ICMP error) or silent")
))]
pub struct TcpArgs {
    /// Destination as HOST:PORT (IPv6 as [ADDR]:PORT).
    pub target: String,

    /// SYNs to send before calling it silent.
    #[arg(short, long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub attempts: u32,

    /// Wait per SYN.
    #[arg(short, long, default_value = "1s", value_parser = wait)]
    pub wait: std::time::Duration,

    /// Print JSON (schema: docs/probes-json.md).
    #[arg(long)]
    pub json: bool,
}

/// `netobs explain HOST`
///
/// Runs, at the same time: a trace with the service's protocol and port, an
/// ICMP echo trace for comparison, a TCP handshake check (tcp), a path-MTU
/// search, and netobs's own XDP observer on the egress interface counting
/// every ICMP error that arrives; then tests any hop that answered only part
/// of a burst for rate limiting. Prints one verdict with evidence.
///
/// Examples:
///   netobs explain 198.18.4.1 --port 443
///   netobs explain 198.18.4.1 --proto udp --port 53 --json
#[derive(Debug, Args)]
#[command(
    after_help = concat!(
        "Examples:\n  netobs explain 198.18.4.1 --port 443\n  netobs explain 198.18.4.1 --proto udp --port 53 --json\nVerdicts: reachable, rejected, unreachable, silently_dropped, udp_filtered, pmtu_blackhole, icmp_rate_limited, return_path, no_answer.\nNeeds root, or CAP_NET_RAW + CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON (CAP_NET_RAW only with --no-kernel).\n\n",
        crate::exit_help!("reachable, no problem found", "any other verdict (a problem was found)")
    )
)]
pub struct ExplainArgs {
    /// Destination: an IPv4/IPv6 address or a host name.
    pub host: String,

    /// Service port (default: 80 for tcp, 33434 for udp).
    #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// The service's protocol.
    #[arg(long, value_enum, default_value = "tcp")]
    pub proto: Proto,

    /// Highest TTL to probe.
    #[arg(short = 'm', long, default_value_t = 30, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub max_ttl: u8,

    /// Longest wait for an answer (adapts to 3x the RTT once known).
    #[arg(short, long, default_value = "2s", value_parser = wait)]
    pub wait: std::time::Duration,

    /// Do not load the kernel observer (no root-only BPF; less evidence).
    #[arg(long)]
    pub no_kernel: bool,

    #[command(flatten)]
    pub family: FamilyArgs,

    /// Print JSON (schema: docs/probes-json.md).
    #[arg(long)]
    pub json: bool,
}
