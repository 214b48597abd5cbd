//! Active probes: traceroute (UDP / TCP SYN / ICMP), path-MTU search, TCP
//! handshake check, and the `explain` verdict that joins them with the
//! kernel's view.

pub mod cli;
