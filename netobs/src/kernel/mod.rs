//! The kernel side seen from user space: load the embedded eBPF object,
//! probe what the kernel offers, attach (beside other programs), follow
//! interfaces as they come and go, read counters and drain events.

pub mod attach;
pub(crate) mod btf;
pub mod counters;
pub mod drops;
pub mod events;
pub mod features;
pub mod hotplug;
pub mod icmp_send;
pub mod loader;
pub mod retrans;
mod rtnl;
pub mod snmp;
pub mod stage;

pub use attach::{AttachMode, AttachOptions, Attached, ForeignProgram, Hook, Session};
pub use counters::{CounterReader, Counters};
pub use features::{Features, Support, TcPath};
pub use loader::{LoadOptions, load};
