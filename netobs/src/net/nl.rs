//! One netlink request, answered or timed out.
//!
//! Every host fact netobs asks the kernel for (routes, links, addresses,
//! conntrack, sock_diag) goes through [`request`]: a fresh socket in the
//! caller's network namespace, one message framed by netlink-packet-core,
//! and a deadline on the whole answer. The routing, netfilter and
//! sock_diag message crates share netlink-packet-core 0.9, so one
//! function serves them all. Sockets are blocking with `SO_RCVTIMEO` set
//! to what is left of the deadline: a request never waits longer than its
//! timeout, whoever calls it (a join worker, `explain`, a test).

use std::{
    fmt::Debug,
    os::fd::AsRawFd as _,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable,
};
use netlink_sys::{Socket, SocketAddr};

/// How long one netlink request may take by default. The kernel answers
/// a route or conntrack get in microseconds; 200 ms means it is stuck.
pub const TIMEOUT: Duration = Duration::from_millis(200);

/// Why a netlink request gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum NlError {
    /// Socket setup, send or receive failed.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// No (complete) answer before the deadline.
    #[error("{what}: no answer within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    /// The kernel answered with an error code (a positive errno, e.g.
    /// `ENOENT` for "no such entry").
    #[error("{what}: the kernel answered {}", std::io::Error::from_raw_os_error(*errno))]
    Kernel { what: &'static str, errno: i32 },
    /// The answer did not decode.
    #[error("{what}: undecodable answer: {detail}")]
    Decode { what: &'static str, detail: String },
}

impl NlError {
    /// True when the kernel said the thing asked for does not exist: a
    /// known "no", not a failed lookup.
    pub fn is_not_found(&self) -> bool {
        matches!(self, NlError::Kernel { errno, .. } if *errno == libc::ENOENT || *errno == libc::ESRCH)
    }
}

/// Single request (`NLM_F_REQUEST`), dump (`| NLM_F_DUMP`) or change
/// (`| NLM_F_ACK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One object by key: one answer message or an error.
    Get,
    /// Every object matching the request: messages until `NLMSG_DONE`.
    Dump,
    /// A change (set, delete): answered by an ACK or an error.
    Ack,
}

static SEQ: AtomicU32 = AtomicU32::new(1);

/// Serializes `msg` as the payload of a request with `kind`'s flags and
/// sequence number `seq`.
pub fn encode<T: NetlinkSerializable + Debug>(msg: T, kind: Kind, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = match kind {
        Kind::Get => NLM_F_REQUEST,
        Kind::Dump => NLM_F_REQUEST | NLM_F_DUMP,
        Kind::Ack => NLM_F_REQUEST | NLM_F_ACK,
    };
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf[..]);
    buf
}

/// What one datagram of answers said.
#[derive(Debug, PartialEq)]
pub enum Decoded<T> {
    /// More to come (a dump in progress): the messages so far.
    More(Vec<T>),
    /// The answer is complete.
    Done(Vec<T>),
}

/// Decodes one received datagram for request `seq`. Messages of other
/// sequence numbers are skipped; an error message ends the request.
pub fn decode<T: NetlinkDeserializable + Debug>(
    what: &'static str,
    buf: &[u8],
    seq: u32,
    kind: Kind,
) -> Result<Decoded<T>, NlError> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        let msg = NetlinkMessage::<T>::deserialize(&buf[offset..])
            .map_err(|e| NlError::Decode { what, detail: e.to_string() })?;
        let len = msg.header.length as usize;
        if msg.header.sequence_number == seq {
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => {
                    out.push(m);
                    if kind == Kind::Get {
                        return Ok(Decoded::Done(out));
                    }
                }
                NetlinkPayload::Done(_) => return Ok(Decoded::Done(out)),
                NetlinkPayload::Error(e) => match e.code {
                    // An ACK: nothing more will come.
                    None => return Ok(Decoded::Done(out)),
                    Some(code) => return Err(NlError::Kernel { what, errno: -code.get() }),
                },
                NetlinkPayload::Overrun(_) => {
                    return Err(NlError::Decode { what, detail: "receive buffer overrun".into() });
                }
                _ => {}
            }
        }
        // Messages are 4-byte aligned.
        let step = (len + 3) & !3;
        if step == 0 {
            break;
        }
        offset += step;
    }
    Ok(Decoded::More(out))
}

/// Sends `msg` on a fresh `protocol` socket and collects the answer, all
/// within `timeout`.
pub fn request<T>(what: &'static str, protocol: isize, msg: T, kind: Kind, timeout: Duration) -> Result<Vec<T>, NlError>
where
    T: NetlinkSerializable + NetlinkDeserializable + Debug,
{
    let io = |source| NlError::Io { what, source };
    let deadline = Instant::now() + timeout;
    let mut socket = Socket::new(protocol).map_err(io)?;
    socket.bind_auto().map_err(io)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(io)?;
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let buf = encode(msg, kind, seq);
    set_recv_timeout(&socket, timeout).map_err(io)?;
    socket.send(&buf, 0).map_err(io)?;

    let mut out = Vec::new();
    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NlError::Timeout { what, after: timeout });
        }
        set_recv_timeout(&socket, left).map_err(io)?;
        let n = match socket.recv(&mut &mut rx[..], 0) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN)) => {
                return Err(NlError::Timeout { what, after: timeout });
            }
            Err(e) => return Err(io(e)),
        };
        match decode::<T>(what, &rx[..n.min(rx.len())], seq, kind)? {
            Decoded::More(mut m) => out.append(&mut m),
            Decoded::Done(mut m) => {
                out.append(&mut m);
                return Ok(out);
            }
        }
    }
}

/// `SO_RCVTIMEO`, rounded up to a microsecond so that a tiny remainder
/// does not mean "block forever" (zero).
fn set_recv_timeout(socket: &Socket, d: Duration) -> std::io::Result<()> {
    let micros = d.as_micros().max(1);
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(micros / 1_000_000).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::try_from(micros % 1_000_000).unwrap_or(0),
    };
    // SAFETY: setsockopt reads a timeval of the size given from a valid pointer.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}
