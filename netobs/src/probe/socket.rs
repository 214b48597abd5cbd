//! Raw sockets: sending probes with a chosen TTL, size and DF bit, and
//! receiving whatever answers them.
//!
//! Why raw sockets and not `IP_RECVERR` on ordinary ones: a connected UDP
//! socket would let the kernel pick the IP id and would apply its cached
//! path MTU (refusing or fragmenting big DF probes); a raw socket lets us
//! write the IPv4 header (IP id = probe token, DF exactly as asked) and
//! receive every ICMP error, echo reply, SYN-ACK and RST addressed to us,
//! with the TTL it arrived with. Sending needs CAP_NET_RAW.
//!
//! Path MTU: IPv4 sockets use `IP_PMTUDISC_PROBE` and IPv6 ones
//! `IPV6_PMTUDISC_PROBE` + `IPV6_DONTFRAG`, so the kernel sends DF probes up
//! to the interface MTU whatever it has cached for the destination (the
//! cache is exactly what a PMTU search must not trust).

use std::{
    collections::{HashMap, HashSet},
    io,
    mem::MaybeUninit,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use socket2::{Domain, MaybeUninitSlice, MsgHdrMut, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::packet::{self, Flow, Proto, Reply, ReplyKind};

/// The source address the kernel would use towards `dst` (a route lookup
/// without sending anything: connect a UDP socket and read its name).
pub fn source_for(dst: IpAddr) -> Result<IpAddr> {
    let bind: SocketAddr =
        if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().context("parsing a wildcard address")?;
    let s = UdpSocket::bind(bind).context("creating a UDP socket for the route lookup")?;
    s.connect(SocketAddr::new(dst, 9))
        .with_context(|| format!("no route to {dst} (is there a route in this network namespace?)"))?;
    Ok(s.local_addr().context("reading the chosen source address")?.ip())
}

/// Where probes leave from: traceroute's `-s` (source address) and `-i`
/// (interface). The default is what the routing table picks.
#[derive(Clone, Debug, Default)]
pub struct Bind {
    pub source: Option<IpAddr>,
    pub iface: Option<String>,
}

fn bind_device(s: &Socket, iface: Option<&str>) -> Result<()> {
    if let Some(i) = iface {
        s.bind_device(Some(i.as_bytes())).with_context(|| format!("binding to interface {i:?}"))?;
    }
    Ok(())
}

/// The source address towards `dst` for `bind`: `-s` as given (checked
/// to be an address of this host, of the right family), else the route
/// lookup of [`source_for`], through `-i` when given.
pub fn source_with(dst: IpAddr, bind: &Bind) -> Result<IpAddr> {
    if let Some(src) = bind.source {
        if src.is_ipv4() != dst.is_ipv4() {
            bail!("source address {src} and destination {dst} are of different families");
        }
        let domain = if src.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
        let s = Socket::new(domain, Type::DGRAM, None).context("creating a UDP socket to check the source")?;
        s.bind(&SockAddr::from(SocketAddr::new(src, 0)))
            .with_context(|| format!("source address {src} is not an address of this host"))?;
        return Ok(src);
    }
    let Some(iface) = bind.iface.as_deref() else { return source_for(dst) };
    let domain = if dst.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, Type::DGRAM, None).context("creating a UDP socket for the route lookup")?;
    bind_device(&s, Some(iface))?;
    s.connect(&SockAddr::from(SocketAddr::new(dst, 9)))
        .with_context(|| format!("no route to {dst} through interface {iface:?}"))?;
    s.local_addr().ok().and_then(|a| a.as_socket()).map(|a| a.ip()).context("reading the chosen source address")
}

/// One probe in flight (or answered).
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub token: u16,
    pub ttl: u8,
    /// Total IP length.
    pub size: usize,
    pub at: Instant,
}

/// A reply matched to its probe.
#[derive(Clone, Debug)]
pub struct Answer {
    pub reply: Reply,
    pub probe: Sent,
    pub rtt: Duration,
    /// RFC 4884 extension objects of an ICMP error reply.
    pub ext: Option<crate::explain::ext::Extensions>,
}

/// Sends the probes of one [`Flow`] and receives what answers them.
pub struct Prober {
    pub flow: Flow,
    send: Socket,
    icmp: AsyncFd<Socket>,
    tcp: Option<AsyncFd<Socket>>,
    /// Keeps our source port bound so no other socket of this host uses it
    /// while we probe (and answers to us never reach someone else).
    _reserved: Option<Socket>,
    next_token: u16,
    sent: HashMap<u16, Sent>,
    /// Tokens of the probes whose answer reached this prober (whoever
    /// asked for it): what `explain` compares with what the kernel saw.
    pub answered: HashSet<u16>,
    /// Probes sent so far.
    pub probes_sent: u32,
    /// Asked before every probe; an error refuses it (`watch --investigate`
    /// holds its probe budget and packet rate here).
    pub gate: Option<Box<dyn FnMut() -> Result<()> + Send>>,
    buf: Vec<MaybeUninit<u8>>,
    tcp_buf: Vec<MaybeUninit<u8>>,
    /// Which buffer holds the last datagram that matched, and its length:
    /// [`Prober::last_datagram`] (the quote check reads the whole quote).
    last: (bool, usize),
    /// IPv6 flow label of every probe, when set ([`Prober::set_flow_label`]).
    flow_label: Option<u32>,
    /// TOS / traffic class byte of every probe ([`Prober::set_tos`]).
    tos: u8,
}

fn setsockopt_int(s: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: plain setsockopt with a pointer to a live c_int.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn raw(domain: Domain, proto: i32) -> Result<Socket> {
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(proto))).map_err(|e| {
        if e.kind() == io::ErrorKind::PermissionDenied {
            anyhow::anyhow!("raw sockets need root or CAP_NET_RAW ({e})")
        } else {
            anyhow::Error::new(e).context("creating a raw socket")
        }
    })?;
    s.set_nonblocking(true).context("making a raw socket non-blocking")?;
    Ok(s)
}

fn recv_socket(domain: Domain, proto: i32) -> Result<AsyncFd<Socket>> {
    let s = raw(domain, proto)?;
    // Raw sockets get every ICMP packet of the host; a big buffer keeps a
    // burst of answers from being dropped while we are busy.
    let _ = s.set_recv_buffer_size(1 << 20);
    if domain == Domain::IPV6 {
        s.set_recv_hoplimit_v6(true).context("IPV6_RECVHOPLIMIT")?;
    }
    // SAFETY: the socket owns its fd, which stays open and the same for
    // as long as the AsyncFd (which owns the socket) lives.
    unsafe { AsyncFd::register(s) }.map_err(|e| anyhow::anyhow!("registering a raw socket with tokio: {}", e))
}

/// A per-process, per-call value for ICMP ids and TCP sequence bases: two
/// netobs runs side by side must not take each other's answers.
fn unique(salt: u32) -> u32 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16) ^ salt.wrapping_mul(0x9e37_79b9)
}

impl Prober {
    /// Opens the sockets for probes of `proto` to `dst` (`dst_port` for UDP
    /// and TCP). `salt` makes concurrent probers in one process distinct.
    pub fn open(dst: IpAddr, proto: Proto, dst_port: u16, salt: u32) -> Result<Prober> {
        Prober::open_with(dst, proto, dst_port, salt, &Bind::default())
    }

    /// [`Prober::open`] from a chosen source address and/or interface.
    pub fn open_with(dst: IpAddr, proto: Proto, dst_port: u16, salt: u32, bind: &Bind) -> Result<Prober> {
        let src = source_with(dst, bind)?;
        let iface = bind.iface.as_deref();
        let domain = if dst.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
        let v4 = dst.is_ipv4();
        let (reserved, src_port) = match proto {
            Proto::Icmp => (None, 0),
            Proto::Udp | Proto::Tcp => {
                let ty = if proto == Proto::Udp { Type::DGRAM } else { Type::STREAM };
                let s = Socket::new(domain, ty, None).context("reserving a source port")?;
                s.bind(&SockAddr::from(SocketAddr::new(src, 0))).context("reserving a source port")?;
                let port = s
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .map(|a| a.port())
                    .context("reading the reserved source port")?;
                (Some(s), port)
            }
        };
        let u = unique(salt);
        let flow = Flow {
            src,
            dst,
            proto,
            src_port,
            dst_port: if proto == Proto::Icmp { 0 } else { dst_port },
            icmp_id: (u >> 3) as u16,
            seq_base: u.rotate_left(7),
        };
        let send = if v4 {
            // IPPROTO_RAW implies IP_HDRINCL: we write the IP header.
            let s = raw(domain, libc::IPPROTO_RAW)?;
            setsockopt_int(&s, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE)
                .context("IP_MTU_DISCOVER")?;
            s
        } else {
            let s = raw(domain, i32::from(proto.number(6)))?;
            s.bind(&SockAddr::from(SocketAddr::new(src, 0))).context("binding the IPv6 probe socket")?;
            let csum_off = match proto {
                Proto::Udp => Some(6),
                Proto::Tcp => Some(16),
                Proto::Icmp => None, // the kernel always does ICMPv6
            };
            if let Some(off) = csum_off {
                setsockopt_int(&s, libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM, off).context("IPV6_CHECKSUM")?;
            }
            setsockopt_int(&s, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_PMTUDISC_PROBE)
                .context("IPV6_MTU_DISCOVER")?;
            setsockopt_int(&s, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1).context("IPV6_DONTFRAG")?;
            s
        };
        let icmp = recv_socket(domain, if v4 { libc::IPPROTO_ICMP } else { libc::IPPROTO_ICMPV6 })?;
        let tcp = if proto == Proto::Tcp { Some(recv_socket(domain, libc::IPPROTO_TCP)?) } else { None };
        bind_device(&send, iface)?;
        bind_device(icmp.get_ref(), iface)?;
        if let Some(t) = &tcp {
            bind_device(t.get_ref(), iface)?;
        }
        Ok(Prober {
            flow,
            send,
            icmp,
            tcp,
            _reserved: reserved,
            next_token: (u as u16) | 1,
            sent: HashMap::new(),
            answered: HashSet::new(),
            probes_sent: 0,
            gate: None,
            buf: vec![MaybeUninit::uninit(); 65536],
            tcp_buf: vec![MaybeUninit::uninit(); 65536],
            last: (false, 0),
            flow_label: None,
            tos: 0,
        })
    }

    /// Sends one probe of `size` bytes (IP header included) with `ttl`.
    /// IPv4 probes carry DF when `df`; IPv6 ones are never fragmented.
    pub fn send(&mut self, ttl: u8, size: usize, df: bool) -> Result<Sent> {
        if let Some(gate) = self.gate.as_mut() {
            gate()?;
        }
        let mut token = self.next_token;
        // 0 is avoided: for IP id 0 the kernel substitutes its own value.
        if token == 0 {
            token = 1;
        }
        self.next_token = token.wrapping_add(1);
        let dst = match (self.flow.dst, self.flow_label) {
            (IpAddr::V6(d), Some(label)) => SockAddr::from(std::net::SocketAddrV6::new(d, 0, label, 0)),
            (d, _) => SockAddr::from(SocketAddr::new(d, 0)),
        };
        let res = if self.flow.dst.is_ipv4() {
            let mut p = packet::try_ipv4_packet(&self.flow, token, ttl, size, df)?;
            if self.tos != 0 {
                // TOS is byte 1 of the IPv4 header; the header checksum is
                // recomputed over the changed header.
                p[1] = self.tos;
                netobs_common::repr::Ipv4Repr::fill_checksum(&mut p[..20]);
            }
            self.send.send_to(&p, &dst)
        } else {
            self.send.set_unicast_hops_v6(u32::from(ttl)).context("IPV6_UNICAST_HOPS")?;
            let p = packet::try_transport(&self.flow, token, size)?;
            self.send.send_to(&p, &dst)
        };
        match res {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                bail!("a {size}-byte probe is bigger than the local interface MTU toward {}", self.flow.dst)
            }
            Err(e) => return Err(e).with_context(|| format!("sending a probe to {}", self.flow.dst)),
        }
        let s = Sent { token, ttl, size: size.max(self.flow.min_size()), at: Instant::now() };
        self.sent.insert(token, s);
        self.probes_sent += 1;
        Ok(s)
    }

    /// Gives every IPv6 probe this flow label (20 bits), so balancers that
    /// hash the label (Linux's default IPv6 multipath hash) see one flow
    /// per label (`trace --flows`). Without it the kernel picks the label.
    pub fn set_flow_label(&mut self, label: u32) -> Result<()> {
        if self.flow.dst.is_ipv6() {
            setsockopt_int(&self.send, libc::IPPROTO_IPV6, libc::IPV6_FLOWINFO_SEND, 1)
                .context("IPV6_FLOWINFO_SEND")?;
            self.flow_label = Some(label & 0x000f_ffff);
        }
        Ok(())
    }

    /// Sends every probe with this TOS (IPv4) / traffic class (IPv6) byte,
    /// DSCP << 2 | ECN, so a box that clears or rewrites it shows in the
    /// quotes (`trace --tos`).
    pub fn set_tos(&mut self, tos: u8) -> Result<()> {
        if self.flow.dst.is_ipv6() {
            setsockopt_int(&self.send, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, i32::from(tos)).context("IPV6_TCLASS")?;
        }
        self.tos = tos;
        Ok(())
    }

    /// The TOS / traffic class byte the probes carry.
    pub fn tos(&self) -> u8 {
        self.tos
    }

    /// The IPv6 flow label the probes carry, when this prober sets one.
    pub fn flow_label(&self) -> Option<u32> {
        self.flow_label
    }

    /// The bytes of the last datagram [`Prober::recv`] returned (IPv4: from
    /// the IP header; IPv6: from the ICMPv6 or TCP header), for readers
    /// that need more than [`Reply`] keeps, like the quote comparison.
    pub fn last_datagram(&self) -> &[u8] {
        let (is_tcp, n) = self.last;
        let src = if is_tcp { &self.tcp_buf } else { &self.buf };
        // SAFETY: recvmsg initialised the first `n` bytes of that buffer
        // (`n` is 0 before the first datagram).
        unsafe { std::slice::from_raw_parts(src.as_ptr().cast::<u8>(), n.min(src.len())) }
    }

    /// The probe a token belongs to.
    pub fn probe(&self, token: u16) -> Option<Sent> {
        self.sent.get(&token).copied()
    }

    /// Waits until `deadline` for the next reply to one of our probes.
    /// `None` at the deadline.
    pub async fn recv(&mut self, deadline: Instant) -> Result<Option<Answer>> {
        loop {
            let got = tokio::time::timeout_at(deadline.into(), self.recv_raw()).await;
            let Ok(res) = got else { return Ok(None) };
            let Some((mut reply, ext)) = res? else { continue };
            if matches!(reply.kind, ReplyKind::SynAck { .. } | ReplyKind::Rst) {
                // ack = seq + 1 + payload: find the SYN it acknowledges.
                let hdr = self.flow.header_len();
                let Some(t) = self
                    .sent
                    .values()
                    .find(|s| s.token.wrapping_add(s.size.saturating_sub(hdr) as u16) == reply.token)
                    .map(|s| s.token)
                else {
                    continue;
                };
                reply.token = t;
            }
            let Some(probe) = self.sent.get(&reply.token).copied() else { continue };
            self.answered.insert(reply.token);
            let rtt = Instant::now().saturating_duration_since(probe.at);
            return Ok(Some(Answer { reply, probe, rtt, ext }));
        }
    }

    /// Reads every answer that is already queued (late answers nobody
    /// waited for any more), so [`Prober::answered`] knows them too.
    pub async fn drain_late(&mut self, until: Instant) -> Result<()> {
        while self.recv(until).await?.is_some() {}
        Ok(())
    }

    /// Reads one packet from whichever socket is ready; `Some` if it
    /// concerns our flow.
    async fn recv_raw(&mut self) -> Result<Option<(Reply, Option<crate::explain::ext::Extensions>)>> {
        let flow = self.flow;
        let (buf, tcp_buf) = (&mut self.buf, &mut self.tcp_buf);
        let (is_tcp, n, from, hops) = match &self.tcp {
            Some(tcp) => tokio::select! {
                r = read_ready(&self.icmp, buf) => { let (n, f, h) = r?; (false, n, f, h) }
                r = read_ready(tcp, tcp_buf) => { let (n, f, h) = r?; (true, n, f, h) }
            },
            None => {
                let (n, f, h) = read_ready(&self.icmp, buf).await?;
                (false, n, f, h)
            }
        };
        self.last = (is_tcp, n);
        let src = if is_tcp { &self.tcp_buf } else { &self.buf };
        // SAFETY: recvmsg initialised the first `n` bytes of that buffer.
        let data: &[u8] = unsafe { std::slice::from_raw_parts(src.as_ptr().cast::<u8>(), n.min(src.len())) };
        let reply = match (flow.dst, from) {
            (IpAddr::V4(_), _) => packet::parse_ipv4(&flow, data),
            (IpAddr::V6(_), Some(from)) if is_tcp => packet::parse_tcp(&flow, data, from, hops.unwrap_or(0)),
            (IpAddr::V6(_), Some(from)) => packet::parse_icmp(&flow, data, from, hops.unwrap_or(0)),
            _ => None,
        };
        let family = if flow.dst.is_ipv4() { 4 } else { 6 };
        Ok(reply.map(|r| {
            let ext = matches!(r.kind, ReplyKind::IcmpError { .. })
                .then(|| crate::explain::ext::Extensions::from_reply(family, data))
                .flatten();
            (r, ext)
        }))
    }
}

/// Waits for `fd` to be readable and reads one datagram: (length, sender,
/// IPv6 hop limit from the control message).
async fn read_ready(fd: &AsyncFd<Socket>, buf: &mut [MaybeUninit<u8>]) -> Result<(usize, Option<IpAddr>, Option<u8>)> {
    loop {
        let mut guard = fd.readable().await.context("waiting for a raw socket")?;
        match guard.try_io(|inner| recv_with_hoplimit(inner.get_ref(), buf)) {
            Ok(res) => return res.context("reading a raw socket"),
            Err(_would_block) => continue,
        }
    }
}

fn recv_with_hoplimit(s: &Socket, buf: &mut [MaybeUninit<u8>]) -> io::Result<(usize, Option<IpAddr>, Option<u8>)> {
    let mut addr = SockAddr::from(SocketAddr::from(([0u8; 16], 0)));
    let mut control = [MaybeUninit::<u8>::uninit(); 64];
    let mut bufs = [MaybeUninitSlice::new(buf)];
    let mut msg = MsgHdrMut::new().with_addr(&mut addr).with_buffers(&mut bufs).with_control(&mut control);
    let n = s.recvmsg(&mut msg, 0)?;
    let clen = msg.control_len();
    // SAFETY: the kernel initialised `clen` bytes of the control buffer.
    let cbytes: &[u8] = unsafe { std::slice::from_raw_parts(control.as_ptr().cast::<u8>(), clen.min(control.len())) };
    Ok((n, addr.as_socket().map(|a| a.ip()), hoplimit_from_cmsg(cbytes)))
}

/// Finds IPV6_HOPLIMIT in a control buffer (Linux `cmsghdr` layout:
/// `size_t len; int level; int type;` then data, each aligned to size_t).
fn hoplimit_from_cmsg(mut c: &[u8]) -> Option<u8> {
    const W: usize = std::mem::size_of::<usize>();
    let hdr = W + 8;
    while c.len() >= hdr {
        let len = usize::from_ne_bytes(c[..W].try_into().ok()?);
        let level = i32::from_ne_bytes(c[W..W + 4].try_into().ok()?);
        let ty = i32::from_ne_bytes(c[W + 4..W + 8].try_into().ok()?);
        if len < hdr || len > c.len() {
            return None;
        }
        if level == libc::IPPROTO_IPV6 && ty == libc::IPV6_HOPLIMIT && len >= hdr + 4 {
            let v = i32::from_ne_bytes(c[hdr..hdr + 4].try_into().ok()?);
            return u8::try_from(v).ok();
        }
        let next = len.div_ceil(W) * W;
        c = c.get(next..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmsg_hoplimit() {
        const W: usize = std::mem::size_of::<usize>();
        let mut c = Vec::new();
        c.extend_from_slice(&(W + 12).to_ne_bytes());
        c.extend_from_slice(&libc::IPPROTO_IPV6.to_ne_bytes());
        c.extend_from_slice(&libc::IPV6_HOPLIMIT.to_ne_bytes());
        c.extend_from_slice(&62i32.to_ne_bytes());
        c.resize(c.len().div_ceil(W) * W, 0);
        assert_eq!(hoplimit_from_cmsg(&c), Some(62));
        assert_eq!(hoplimit_from_cmsg(&c[..W]), None);
        assert_eq!(hoplimit_from_cmsg(&[]), None);
    }
}
