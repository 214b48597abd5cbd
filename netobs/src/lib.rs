//! netobs: explains why traffic vanishes.
//!
//! - [`kernel`]: load, attach, count and drain the eBPF observers.
//! - [`explain`]: where ICMP errors become explanations (verdicts, hop
//!   distance, flow direction, aggregation).
//! - [`probe`]: active probes (traceroute, path MTU, TCP handshake) and the
//!   `explain` verdict that joins them with the kernel's view.
//! - [`verdict`]: one rule per verdict over shared evidence (used by
//!   `explain`, meant for `watch --investigate`).
//! - [`capture`]: `netobs read`, capture files through the same parser and explanations.
//! - [`output`]: terminal, JSON lines and Prometheus.
//! - [`commands`]: one module per subcommand, wiring the above together.
//! - [`exit`]: the exit codes scripts branch on.

pub mod capture;
pub mod cli;
pub mod commands;
pub mod exit;
pub mod explain;
pub(crate) mod health;
pub(crate) mod join;
pub mod kernel;
pub mod net;
pub mod output;
pub(crate) mod privilege;
pub mod probe;
pub mod verdict;
