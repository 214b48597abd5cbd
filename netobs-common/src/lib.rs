//! Packet views and event records shared by the netobs eBPF programs and the
//! `netobs` binary.
//!
//! One parser for both sides: the code in [`parse`] runs inside the
//! verifier-checked XDP/TC programs and in host unit tests, so kernel and
//! user space never disagree on a byte. With the `user` feature the records
//! also implement `aya::Pod` and serde.
#![no_std]

#[cfg(any(feature = "user", feature = "craft", test))]
extern crate std;

#[cfg(feature = "craft")]
pub mod check;
pub mod counters;
#[cfg(feature = "craft")]
pub mod craft;
pub mod cursor;
pub mod event;
pub mod ext;
pub mod flows;
pub mod icmp;
pub mod icmp_send;
pub mod kfree;
pub mod parse;
#[cfg(any(feature = "user", feature = "craft", test))]
pub mod repr;
pub mod retrans;
pub mod sample;
pub mod wire;

#[cfg(feature = "user")]
pub mod user;

pub use cursor::Cursor;
pub use event::{Config, DfCounterKey, Event, IcmpCounterKey, PacketInfo};
