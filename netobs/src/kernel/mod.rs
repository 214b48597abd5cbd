//! The kernel side seen from user space: load the embedded eBPF object,
//! attach it to interfaces, read its counters and drain its events.

pub mod attach;
pub(crate) mod btf;
pub mod counters;
pub mod events;
pub mod icmp_send;
pub mod loader;
pub mod stage;

pub use attach::{AttachMode, Attached, Hook, Session};
pub use counters::{CounterReader, Counters};
pub use loader::{LoadOptions, load};
