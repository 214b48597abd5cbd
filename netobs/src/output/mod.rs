//! Where explanations go: the terminal, JSON lines, Prometheus.

pub(crate) mod http;
pub mod json;
pub(crate) mod metrics;
pub(crate) mod sink;
