//! Frames and BPF_PROG_TEST_RUN contexts shared by the benchmarks.

use std::net::Ipv4Addr;

use netobs_common::craft::{Frame, Tcp};

/// A benchmark address literal.
pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
}

/// `struct xdp_md` for ctx_in: data, data_end, data_meta, ingress_ifindex,
/// rx_queue_index, egress_ifindex.
pub fn xdp_md(len: usize, ingress: u32) -> Vec<u8> {
    [0u32, len as u32, 0, ingress, 0, 0].iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// Field notes scenario 1 on the wire: ICMP 3/10 from 198.18.2.1 quoting
/// our SYN-ACK from :65000 to the client's `client_port`.
pub fn icmp_error_frame(client_port: u16) -> Vec<u8> {
    let quote =
        Frame::ipv4(v4("198.18.0.1"), v4("198.18.9.9")).ttl(62).tcp(Tcp::new(65000, client_port).syn_ack()).ip_bytes();
    Frame::ipv4(v4("198.18.2.1"), v4("198.18.0.1")).ttl(63).icmp_error(3, 10, &quote).bytes()
}
