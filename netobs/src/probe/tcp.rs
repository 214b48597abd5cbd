//! TCP handshake check with a raw SYN.
//!
//! Why raw and not `connect()`: a raw SYN tells apart every outcome a
//! connect() folds into "timeout" or "refused" (which router sent which ICMP
//! error, quoting which TTL), and the SYN-ACK's MSS option is read as the
//! server announced it, not as the kernel clamped it with its own PMTU.
//! (Our kernel answers the SYN-ACK with a RST since no socket owns it, the
//! same as `nmap -sS` or `traceroute -T`.)

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::Result;
use netobs_common::icmp;
use serde::Serialize;

use super::{packet::ReplyKind, socket::Prober};
use crate::explain::hops::hops_from_arrival_ttl;

/// How the handshake went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpState {
    /// SYN-ACK: something listens.
    Open,
    /// RST from the destination: reachable, nothing listens (or a
    /// firewall on the destination resets).
    Closed,
    /// An ICMP error came back instead.
    Icmp,
    /// Nothing came back.
    Silent,
}

/// The ICMP error a SYN drew.
#[derive(Clone, Debug, Serialize)]
pub struct IcmpAnswer {
    pub from: IpAddr,
    pub icmp_type: u8,
    pub code: u8,
    pub words: &'static str,
    pub hint: &'static str,
    pub annotation: &'static str,
    /// Broad class ("rejected", "unreachable", ...).
    pub verdict: &'static str,
    pub quoted_ttl: Option<u8>,
    pub reply_ttl: u8,
    /// Hop of the reporter from the quoted TTL (forward path): a router
    /// that rejects while forwarding has already decremented it.
    pub hop_by_quote: Option<u8>,
    /// Hop from the reply's own TTL (return path).
    pub hop_by_return: Option<u8>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TcpResult {
    pub target: IpAddr,
    pub port: u16,
    pub source: IpAddr,
    pub state: TcpState,
    /// MSS option of the SYN-ACK.
    pub mss: Option<u16>,
    pub rtt_ms: Option<f64>,
    pub icmp: Option<IcmpAnswer>,
    /// Hops to the destination from the answer's TTL (return path).
    pub return_hops: Option<u8>,
    pub syns_sent: u32,
    pub seconds: f64,
    /// The check gave up before its last attempt because other evidence
    /// already showed no answer was coming (`explain`).
    pub stopped_early: bool,
}

/// Sends up to `attempts` SYNs, `wait` apart, and reports the first answer.
pub async fn run(prober: &mut Prober, attempts: u32, wait: Duration, initial_ttl: u8) -> Result<TcpResult> {
    run_until(prober, attempts, wait, initial_ttl, std::future::pending()).await
}

/// [`run`], but gives up (as silent) as soon as `give_up` completes: the
/// caller knows from other evidence that no answer is coming (`explain`:
/// the service trace already carried SYNs past the last answering hop and
/// none was answered), so waiting out every attempt would decide nothing.
pub async fn run_until(
    prober: &mut Prober,
    attempts: u32,
    wait: Duration,
    initial_ttl: u8,
    give_up: impl std::future::Future<Output = ()>,
) -> Result<TcpResult> {
    let start = Instant::now();
    let fam = prober.flow.family();
    let mut found = None;
    let mut stopped_early = false;
    tokio::pin!(give_up);
    for _ in 0..attempts.max(1) {
        let s = prober.send(initial_ttl, prober.flow.min_size(), true)?;
        tokio::select! {
            got = prober.recv(s.at + wait) => {
                if let Some(a) = got? {
                    found = Some(a);
                    break;
                }
            }
            () = &mut give_up => {
                stopped_early = true;
                break;
            }
        }
    }
    let mut r = TcpResult {
        target: prober.flow.dst,
        port: prober.flow.dst_port,
        source: prober.flow.src,
        state: TcpState::Silent,
        mss: None,
        rtt_ms: None,
        icmp: None,
        return_hops: None,
        syns_sent: prober.probes_sent,
        seconds: 0.0,
        stopped_early,
    };
    if let Some(a) = found {
        let reply = a.reply;
        r.rtt_ms = Some(a.rtt.as_secs_f64() * 1000.0);
        let back = hops_from_arrival_ttl(reply.outer_ttl);
        match reply.kind {
            ReplyKind::SynAck { mss } => {
                r.state = TcpState::Open;
                r.mss = mss;
                r.return_hops = back;
            }
            ReplyKind::Rst => {
                r.state = TcpState::Closed;
                r.return_hops = back;
            }
            ReplyKind::IcmpError { icmp_type, code } => {
                let m = icmp::meaning(fam, icmp_type, code);
                let from_dst = reply.from == prober.flow.dst;
                let by_quote = reply
                    .quoted_ttl
                    .and_then(|q| initial_ttl.checked_sub(q))
                    .map(|d| if from_dst { d + 1 } else { d.max(1) });
                r.state = TcpState::Icmp;
                r.icmp = Some(IcmpAnswer {
                    from: reply.from,
                    icmp_type,
                    code,
                    words: m.name,
                    hint: m.hint,
                    annotation: m.annotation,
                    verdict: m.verdict.as_str(),
                    quoted_ttl: reply.quoted_ttl,
                    reply_ttl: reply.outer_ttl,
                    hop_by_quote: by_quote,
                    hop_by_return: back,
                });
            }
            ReplyKind::EchoReply => {}
        }
    }
    r.syns_sent = prober.probes_sent;
    r.seconds = start.elapsed().as_secs_f64();
    Ok(r)
}

pub fn render(r: &TcpResult) -> String {
    let head = format!("tcp {} from {}", crate::explain::words::endpoint(r.target, Some(r.port)), r.source);
    let rtt = r.rtt_ms.map(|v| format!(" in {v:.3} ms")).unwrap_or_default();
    let body = match r.state {
        TcpState::Open => format!(
            "OPEN: SYN-ACK{rtt}{}",
            r.mss.map(|m| format!(", MSS {m} announced")).unwrap_or_else(|| ", no MSS option".into())
        ),
        TcpState::Closed => format!("CLOSED: RST{rtt} from the destination (reachable, nothing listens on {})", r.port),
        TcpState::Icmp => match &r.icmp {
            Some(i) => format!(
                "ICMP {}/{} {} {}from {}{}{rtt}: {}",
                i.icmp_type,
                i.code,
                i.words,
                if i.annotation.is_empty() { String::new() } else { format!("({}) ", i.annotation) },
                i.from,
                i.hop_by_quote
                    .map(|h| format!(" at hop {h} (quoted TTL {})", i.quoted_ttl.unwrap_or(0)))
                    .unwrap_or_default(),
                i.hint
            ),
            None => "ICMP error".into(),
        },
        TcpState::Silent => {
            format!("SILENT: no answer to {} SYNs in {:.1} s (dropped without a reject)", r.syns_sent, r.seconds)
        }
    };
    format!("{head}\n  {body}\n")
}
