//! Where explanations go: the terminal, JSON lines, Prometheus.

pub mod json;
pub mod metrics;
pub(crate) mod sink;
