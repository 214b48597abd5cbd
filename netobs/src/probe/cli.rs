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

/// traceroute's `-z`: a plain number above 10 is milliseconds, else
/// seconds (fractions allowed); "50ms" and "0.2s" work too. 0 = no pause.
fn send_wait(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let d = match t.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 10.0 => std::time::Duration::from_secs_f64(n / 1000.0),
        Ok(n) if n.is_finite() && n >= 0.0 => std::time::Duration::from_secs_f64(n),
        Ok(_) => return Err(format!("{s:?}: the send wait cannot be negative")),
        Err(_) => crate::cli::parse_duration(t)?,
    };
    if d.as_secs() > 10 {
        return Err(format!("{s:?}: use a send wait of at most 10s"));
    }
    Ok(d)
}

/// `--interval` of `--report`: at least 10 ms, at most an hour.
fn interval(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::cli::parse_duration(s)?;
    if d.as_millis() < 10 || d.as_secs() > 3600 {
        return Err(format!("{s:?}: use an interval between 10ms and 1h"));
    }
    Ok(d)
}

/// `--dns-wait`: how long reverse names may delay the output.
fn dns_wait(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::cli::parse_duration(s)?;
    if d.as_secs() > 30 {
        return Err(format!("{s:?}: use a DNS wait of at most 30s"));
    }
    Ok(d)
}

/// `netobs trace HOST`
#[derive(Debug, Args)]
#[command(
    after_help = concat!(
        "Examples (one per feature):\n",
        "  netobs trace 198.18.4.1                     UDP to port 33434, names of the hops by reverse DNS\n",
        "  netobs trace -n 198.18.4.1                  addresses only, no DNS\n",
        "  netobs trace -T -p 443 2001:db8:4::1        TCP SYN to 443 (-I icmp echo, -U udp)\n",
        "  netobs trace -f 3 -m 10 198.18.4.1          start at TTL 3, stop at 10\n",
        "  netobs trace -s 198.18.1.1 -i eth0 198.18.4.1   from this source address, out of eth0\n",
        "  netobs trace -z 50 198.18.4.1               50 ms between probes (for routers that punish bursts)\n",
        "  netobs trace --burst -q 5 198.18.4.1        5 probes per hop at once (rate limiting shows up)\n",
        "  netobs trace --flows 8 198.18.4.1           ECMP: 8 flows, each hop's branches and which flows took them\n",
        "  netobs trace --mtu 198.18.4.1               per-hop MTU: F=1400 where it drops, and who announced it\n",
        "  netobs trace -T --tos 0xb8 198.18.4.1       NAT, DSCP/ECN rewrite, MSS clamp, TTL reset, from the ICMP quotes\n",
        "  netobs trace --report -c 10 198.18.4.1      mtr-style table: Loss%, Snt, Last, Avg, Best, Wrst, StDev\n",
        "  netobs trace --live 198.18.4.1              the same table redrawn every cycle until Ctrl-C\n",
        "  netobs trace --json 198.18.4.1              JSON (docs/probes-json.md)\n",
        "Needs root (or CAP_NET_RAW). Annotations: !H host, !N net, !P protocol unreachable, !X administratively prohibited, !F-<mtu> fragmentation needed, !V/!C precedence, !<n> other code. In --report, loss at a hop that later hops do not show is labelled ICMP rate limiting at that hop, not packet loss.\n\n",
        crate::exit_help!("the destination was reached", "not reached (an ICMP error ended the trace, or silence)")
    )
)]
pub struct TraceArgs {
    /// Destination: an IPv4/IPv6 address or a host name (resolved once,
    /// through /etc/resolv.conf like the hop names).
    pub host: String,

    /// Probe protocol. udp: classic traceroute (destination answers "port
    /// unreachable"); tcp: SYN to --port, follows the service's path and
    /// firewall rules; icmp: echo, least often filtered.
    #[arg(long, value_enum, default_value = "udp")]
    pub proto: Proto,

    /// ICMP echo probes (traceroute -I; same as --proto icmp).
    #[arg(short = 'I', long = "icmp", conflicts_with_all = ["proto", "tcp", "udp"])]
    pub icmp: bool,

    /// TCP SYN probes (traceroute -T; same as --proto tcp).
    #[arg(short = 'T', long = "tcp", conflicts_with_all = ["proto", "udp"])]
    pub tcp: bool,

    /// UDP probes (traceroute -U; the default).
    #[arg(short = 'U', long = "udp", conflicts_with_all = ["proto"])]
    pub udp: bool,

    /// Destination port, the same for every probe (Paris traceroute: one
    /// flow, so per-flow load balancers keep all probes on one path).
    /// Default: 33434 for udp, 80 for tcp.
    #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// First TTL to probe (traceroute -f): skip hops known to be fine.
    #[arg(short = 'f', long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub first_ttl: u8,

    /// Highest TTL to probe.
    #[arg(short = 'm', long, default_value_t = 30, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub max_ttl: u8,

    /// Source address of the probes (traceroute -s): one of this host's.
    #[arg(short = 's', long, value_name = "ADDR", conflicts_with = "flows")]
    pub source: Option<std::net::IpAddr>,

    /// Send and listen through this interface only (traceroute -i).
    #[arg(short = 'i', long = "interface", value_name = "IFACE", conflicts_with = "flows")]
    pub interface: Option<String>,

    /// Most probes per hop. One probe goes to every hop first; only a hop
    /// that stayed silent gets the rest (so `*` means no answer to all of
    /// them), unless --burst.
    #[arg(short, long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=10))]
    pub queries: u8,

    /// Send all --queries probes of every hop at once (per-hop RTT spread,
    /// and routers that rate-limit ICMP answer only part of the burst).
    #[arg(long)]
    pub burst: bool,

    /// Pause between probes (traceroute -z): a number above 10 is
    /// milliseconds, else seconds; or "50ms". Default: none.
    #[arg(short = 'z', long, value_name = "WAIT", default_value = "0", value_parser = send_wait)]
    pub sendwait: std::time::Duration,

    /// Stop after this many silent hops past the last answering one.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=30))]
    pub gap: u8,

    /// Longest wait for an answer; once answers arrive the wait adapts to
    /// 3x the largest RTT seen (never below 250ms).
    #[arg(short, long, default_value = "3s", value_parser = wait)]
    pub wait: std::time::Duration,

    /// Print addresses only: no reverse DNS (traceroute -n, mtr -n).
    #[arg(short = 'n', long = "numeric")]
    pub numeric: bool,

    /// Longest the reverse names may delay the output after the last probe
    /// answer; a name not in by then is left out (the address stays).
    #[arg(long, value_name = "WAIT", default_value = "1s", value_parser = dns_wait)]
    pub dns_wait: std::time::Duration,

    /// mtr-style report: --count cycles of one probe per hop, then per hop
    /// Snt, Loss%, Last, Avg, Best, Wrst and StDev. Loss that later hops do
    /// not show is labelled ICMP rate limiting at that hop.
    #[arg(short = 'r', long, conflicts_with_all = ["burst", "flows", "mtu"])]
    pub report: bool,

    /// Cycles of --report (mtr -c); with --live, stop after them.
    #[arg(short = 'c', long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub count: Option<u32>,

    /// Time from one --report cycle to the next (mtr -i).
    #[arg(long, default_value = "1s", value_parser = interval)]
    pub interval: std::time::Duration,

    /// --report redrawn in place after every cycle until Ctrl-C (or
    /// --count cycles); on a non-terminal only the final table is printed.
    #[arg(long, conflicts_with_all = ["json", "burst", "flows", "mtu"])]
    pub live: bool,

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

impl TraceArgs {
    /// The protocol from `--proto` or `-I` / `-T` / `-U`.
    pub fn protocol(&self) -> Proto {
        if self.icmp {
            Proto::Icmp
        } else if self.tcp {
            Proto::Tcp
        } else if self.udp {
            Proto::Udp
        } else {
            self.proto
        }
    }

    /// The report cycles: `-c` (10 when --report is given without it, as
    /// mtr's default), none with --live alone (until Ctrl-C).
    pub fn cycles(&self) -> Option<u32> {
        match (self.count, self.live) {
            (Some(c), _) => Some(c),
            (None, true) => None,
            (None, false) => Some(10),
        }
    }
}

/// `netobs pmtu HOST`
#[derive(Debug, Args)]
#[command(
    after_help = concat!(
        "Examples (one per feature):\n",
        "  netobs pmtu 198.18.4.1                      path MTU, who announced it, blackhole located by TTL\n",
        "  netobs pmtu 2001:db8:4::1 --proto icmp      echo probes (answers as big as the probe)\n",
        "  netobs pmtu 198.18.4.1 --proto tcp -p 443   SYN probes padded to size, to a service port\n",
        "  netobs pmtu 198.18.4.1 --no-locate          no TTL-limited search for the blackhole\n",
        "  netobs pmtu 198.18.4.1 --json               JSON (docs/probes-json.md)\n",
        "Probes the local MTU and the common MTUs (1500 1492 1480 1460 1450 1420 1400 1380 1280) at once, then any announced MTU, then bisects; a size that vanishes without frag-needed/Packet Too Big is a blackhole, located with TTL-limited big probes. Needs root (or CAP_NET_RAW).\n\n",
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
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples (one per feature):\n",
    "  netobs tcp 198.18.4.1:443                  SYN-ACK, RST, ICMP error (from whom) or silence\n",
    "  netobs tcp 198.18.4.1 --port 443           the same, port as an option like the other commands\n",
    "  netobs tcp -6 server.example:22            IPv6 when the name has both families\n",
    "  netobs tcp [2001:db8:4::1]:22 --json       JSON (docs/probes-json.md)\n",
    "  netobs tcp 198.18.4.1:443 || alert         alert unless the port is open\n",
    "Needs root (or CAP_NET_RAW).\n\n",
    crate::exit_help!("open (SYN-ACK)", "closed (RST), rejected (ICMP error) or silent")
))]
pub struct TcpArgs {
    /// Destination as HOST:PORT (IPv6 as [ADDR]:PORT), or HOST with --port.
    pub target: String,

    /// Destination port, when TARGET has none.
    #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// SYNs to send before calling it silent.
    #[arg(short, long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub attempts: u32,

    /// Wait per SYN.
    #[arg(short, long, default_value = "1s", value_parser = wait)]
    pub wait: std::time::Duration,

    #[command(flatten)]
    pub family: FamilyArgs,

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
#[derive(Debug, Args)]
#[command(
    after_help = concat!(
        "Examples (one per feature):\n",
        "  netobs explain 198.18.4.1 --port 443        TCP service: traces, handshake, PMTU and the kernel view, one verdict\n",
        "  netobs explain 198.18.4.1 --proto udp -p 53 UDP service\n",
        "  netobs explain 198.18.4.1 --no-kernel       probes only (CAP_NET_RAW, no BPF)\n",
        "  netobs explain 198.18.4.1 --json            JSON (docs/probes-json.md)\n",
        "Verdicts: reachable, rejected, unreachable, silently_dropped, udp_filtered, pmtu_blackhole, icmp_rate_limited, return_path, no_answer.\nNeeds root, or CAP_NET_RAW + CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON (CAP_NET_RAW only with --no-kernel).\n\n",
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn trace(args: &[&str]) -> Result<TraceArgs, clap::Error> {
        let mut argv = vec!["netobs", "trace"];
        argv.extend(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Trace(t) => Ok(t),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn send_wait_is_tracerouters() {
        assert_eq!(send_wait("50").unwrap(), Duration::from_millis(50));
        assert_eq!(send_wait("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(send_wait("2").unwrap(), Duration::from_secs(2));
        assert_eq!(send_wait("0").unwrap(), Duration::ZERO);
        assert_eq!(send_wait("50ms").unwrap(), Duration::from_millis(50));
        assert!(send_wait("-1").is_err());
        assert!(send_wait("11s").is_err());
        assert!(send_wait("soon").is_err());
    }

    #[test]
    fn traceroute_flags_parse() {
        let t = trace(&["-n", "-f", "3", "-T", "-s", "198.18.1.1", "-i", "eth0", "-z", "20", "198.18.4.1"]).unwrap();
        assert!(t.numeric);
        assert_eq!(t.first_ttl, 3);
        assert_eq!(t.protocol(), Proto::Tcp);
        assert_eq!(t.source, Some("198.18.1.1".parse().unwrap()));
        assert_eq!(t.interface.as_deref(), Some("eth0"));
        assert_eq!(t.sendwait, Duration::from_millis(20));
        assert_eq!(trace(&["-I", "h"]).unwrap().protocol(), Proto::Icmp);
        assert_eq!(trace(&["-U", "h"]).unwrap().protocol(), Proto::Udp);
        assert_eq!(trace(&["--proto", "icmp", "h"]).unwrap().protocol(), Proto::Icmp);
        assert_eq!(trace(&["h"]).unwrap().protocol(), Proto::Udp);
        assert!(trace(&["-I", "-T", "h"]).is_err());
        assert!(trace(&["-T", "--proto", "udp", "h"]).is_err());
        assert!(trace(&["-f", "0", "h"]).is_err());
        assert!(trace(&["--live", "--json", "h"]).is_err());
    }

    #[test]
    fn report_cycles() {
        assert_eq!(trace(&["--report", "h"]).unwrap().cycles(), Some(10));
        assert_eq!(trace(&["-r", "-c", "3", "h"]).unwrap().cycles(), Some(3));
        assert_eq!(trace(&["--live", "h"]).unwrap().cycles(), None);
        assert_eq!(trace(&["--live", "-c", "5", "h"]).unwrap().cycles(), Some(5));
        assert!(trace(&["--report", "--burst", "h"]).is_err());
        assert!(trace(&["--report", "--interval", "1ms", "h"]).is_err());
    }
}
