//! Local TCP sockets through netlink sock_diag (what `ss -tan` shows), so a
//! quoted packet can be joined to the socket that sent it.

use std::net::IpAddr;

use anyhow::{Context as _, Result, bail};
use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::*,
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

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

/// Every TCP socket of this network namespace, IPv4 and IPv6.
pub fn tcp_sockets() -> Result<Vec<TcpSocket>> {
    let mut out = dump(AF_INET)?;
    out.extend(dump(AF_INET6)?);
    Ok(out)
}

/// A dual-stack socket shows IPv4 peers as `::ffff:a.b.c.d`; packets say
/// `a.b.c.d`.
fn unmap(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(a),
        v4 => v4,
    }
}

fn dump(family: u8) -> Result<Vec<TcpSocket>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).context("opening a sock_diag netlink socket")?;
    socket.bind_auto().context("binding the sock_diag socket")?;
    socket.connect(&SocketAddr::new(0, 0)).context("connecting the sock_diag socket")?;

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let socket_id = if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() };
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id,
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf[..]);
    socket.send(&buf[..], 0).context("sending the sock_diag dump request")?;

    let mut out = Vec::new();
    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let size = socket.recv(&mut &mut rx[..], 0).context("reading the sock_diag dump")?;
        let mut offset = 0;
        while offset < size {
            let msg = <NetlinkMessage<SockDiagMessage>>::deserialize(&rx[offset..size])
                .context("decoding a sock_diag message")?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    let id = &r.header.socket_id;
                    out.push(TcpSocket {
                        state: TcpState::from_raw(r.header.state),
                        local: unmap(id.source_address),
                        local_port: id.source_port,
                        remote: unmap(id.destination_address),
                        remote_port: id.destination_port,
                    });
                }
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => bail!("sock_diag dump failed: {e:?}"),
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_listener_and_a_connection() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let cport = c.local_addr().expect("addr").port();
        let socks = tcp_sockets().expect("sock_diag dump");
        assert!(socks.iter().any(|s| s.state == TcpState::Listen && s.local_port == port), "{socks:?}");
        assert!(
            socks.iter().any(|s| s.state == TcpState::Established && s.local_port == cport && s.remote_port == port),
            "{socks:?}"
        );
    }
}
