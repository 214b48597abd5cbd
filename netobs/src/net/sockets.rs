//! Local TCP sockets through netlink sock_diag, asked narrowly: the
//! listeners only (the kernel filters by state and walks only its
//! listening hash), or the one socket of an exact 4-tuple (a lookup in the
//! established hash, half-open SYN-RECV requests included). Never the
//! whole table: on a busy server that is hundreds of thousands of sockets.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::*,
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

use super::nl::{self, Kind, NlError};

/// TCP states netobs talks about; the rest are `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TcpState {
    Listen,
    SynSent,
    SynRecv,
    Established,
    Other,
}

impl TcpState {
    fn from_raw(s: u8) -> TcpState {
        match s {
            TCP_LISTEN => TcpState::Listen,
            TCP_SYN_SENT => TcpState::SynSent,
            TCP_SYN_RECV => TcpState::SynRecv,
            TCP_ESTABLISHED => TcpState::Established,
            _ => TcpState::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynRecv => "SYN-RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::Other => "other",
        }
    }
}

/// One local TCP socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    pub state: TcpState,
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
}

/// A dual-stack socket shows IPv4 peers as `::ffff:a.b.c.d`; packets say
/// `a.b.c.d`.
fn unmap(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(a),
        v4 => v4,
    }
}

fn family_of(a: IpAddr) -> u8 {
    if a.is_ipv4() { AF_INET } else { AF_INET6 }
}

/// The dump request for TCP sockets of `family` in `states` only.
pub fn by_state_request(family: u8, states: StateFlags) -> SockDiagMessage {
    let socket_id = if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() };
    SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::empty(),
        states,
        socket_id,
    })
}

/// The single-socket request for `local:lport <-> remote:rport`. The
/// cookie is `INET_DIAG_NOCOOKIE` (all ones): "any socket with this
/// tuple"; a zero cookie would only match a socket whose cookie is 0.
pub fn by_tuple_request(local: IpAddr, lport: u16, remote: IpAddr, rport: u16) -> SockDiagMessage {
    let family = family_of(local);
    SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::empty(),
        states: StateFlags::all(),
        socket_id: SocketId {
            source_port: lport,
            destination_port: rport,
            source_address: local,
            destination_address: remote,
            interface_id: 0,
            cookie: [0xff; 8],
        },
    })
}

/// Reads a sock_diag answer.
pub fn parse_socket(msg: &SockDiagMessage) -> Option<TcpSocket> {
    let SockDiagMessage::InetResponse(r) = msg else { return None };
    let id = &r.header.socket_id;
    Some(TcpSocket {
        state: TcpState::from_raw(r.header.state),
        local: unmap(id.source_address),
        local_port: id.source_port,
        remote: unmap(id.destination_address),
        remote_port: id.destination_port,
    })
}

/// TCP sockets in `states`, both families, within `timeout`.
fn by_state(states: StateFlags, timeout: Duration) -> Result<Vec<TcpSocket>, NlError> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    for family in [AF_INET, AF_INET6] {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let answers = nl::request(
            "listing TCP sockets by state (sock_diag)",
            NETLINK_SOCK_DIAG,
            by_state_request(family, states.clone()),
            Kind::Dump,
            left,
        )?;
        out.extend(answers.iter().filter_map(parse_socket));
    }
    Ok(out)
}

/// Listening TCP sockets (both families). The kernel filters by state and
/// walks only its listening hash.
pub fn listeners(timeout: Duration) -> Result<Vec<TcpSocket>, NlError> {
    by_state(StateFlags::LISTEN, timeout)
}

/// The local TCP socket of exactly `local:lport <-> remote:rport`, if
/// there is one (a half-open connection shows as SYN-RECV).
pub fn lookup(
    local: IpAddr,
    lport: u16,
    remote: IpAddr,
    rport: u16,
    timeout: Duration,
) -> Result<Option<TcpSocket>, NlError> {
    let req = by_tuple_request(local, lport, remote, rport);
    match nl::request("looking up one TCP socket (sock_diag)", NETLINK_SOCK_DIAG, req, Kind::Get, timeout) {
        Ok(answers) => Ok(answers.iter().find_map(parse_socket)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_listeners_and_one_connection_by_tuple() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let cport = c.local_addr().expect("addr").port();
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");

        let ls = listeners(nl::TIMEOUT).expect("sock_diag listeners");
        assert!(ls.iter().any(|s| s.local_port == port), "{ls:?}");
        assert!(ls.iter().all(|s| s.state == TcpState::Listen), "only listeners come back: {ls:?}");

        let s = lookup(lo, cport, lo, port, nl::TIMEOUT).expect("sock_diag lookup").expect("the client socket");
        assert_eq!(s.state, TcpState::Established);
        assert_eq!((s.local_port, s.remote_port), (cport, port));
        // A tuple nobody uses: a known "no socket", not an error.
        assert_eq!(lookup(lo, cport, lo, port.wrapping_add(1).max(1), nl::TIMEOUT).expect("lookup"), None);
    }
}
