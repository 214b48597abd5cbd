//! Where ICMP errors become explanations.
//!
//! A kernel [`Event`](netobs_common::Event) says "reporter R sent ICMP t/c
//! quoting packet P". This module turns it into a [`Finding`]: which flow
//! and direction P belongs to, how far away R is (from two independent
//! TTLs), what the code means in words and what to do about it, and
//! aggregates findings per (flow, reporter, verdict) so a flood becomes one
//! line with a count.

pub mod aggregate;
pub mod context;
pub mod drops;
pub mod finding;
pub mod hops;
pub mod ledger;
pub mod ptb;
pub mod words;

pub use aggregate::{Aggregate, Aggregator};
pub use context::HostContext;
pub use finding::{Direction, Fact, Finding, Flow};
pub use hops::HopEstimate;
pub use ledger::{IcmpBack, Ledger};
