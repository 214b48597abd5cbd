//! Arguments of the probe subcommands.

use clap::Args;

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Destination host (IPv4 or IPv6 address).
    pub host: String,
}

#[derive(Debug, Args)]
pub struct PmtuArgs {
    /// Destination host (IPv4 or IPv6 address).
    pub host: String,
}

#[derive(Debug, Args)]
pub struct TcpArgs {
    /// Destination as HOST:PORT.
    pub target: String,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Destination host (IPv4 or IPv6 address).
    pub host: String,
}
