//! `link`: the contract and the channel between a host (`host-dp`) and its control plane
//! (`ipu-cp`), standing in for the PCIe link between a host and an IPU.
//!
//! Layers, bottom up:
//! - [`proto`]: 64-byte records (events up, decisions down, handshake), parsed and emitted
//!   through checked views; the only contract between the two sides, versioned by
//!   [`proto::ABI_VERSION`].
//! - [`region`]: a shared byte region (heap or memfd) exposed only as atomic words.
//! - [`ring`]: bounded SPSC rings of records; [`txn`]: prestage slots with claim / commit /
//!   retract; [`liveness`]: heartbeats and a watchdog. All three take time as an argument.
//! - [`layout`] and [`channel`]: where each ring, slot set and heartbeat lives, and the two
//!   ends built over a region; [`transport`]: how the ends come to share it.
//! - [`tier_table`]: the tier service's page-state table, which the host shares at the
//!   handshake and the policy reads, read-only, once per epoch.
//!
//! What it must never do: read the peer's memory on a hot path (each side polls only lines in
//! its own memory; every hop is a posted write into the consumer's memory), trust bytes the
//! peer wrote before copying and parsing them, block, or allocate after setup. It depends on
//! no other crate of the workspace.

pub mod channel;
pub mod clock;
pub mod layout;
pub mod liveness;
pub mod proto;
pub mod region;
pub mod ring;
pub mod tier_table;
pub mod transport;
pub mod txn;

pub use channel::{CpEnd, CpWorker, HostEnd, HostWorker};
pub use clock::MonoNanos;
pub use layout::{ChannelConfig, Layout};
pub use liveness::{LivenessConfig, PeerStatus};
pub use proto::{ABI_VERSION, Message, Record};
