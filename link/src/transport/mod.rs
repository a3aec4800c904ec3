//! Transports: how the two ends of a channel come to share a region.
//!
//! - `heap` ([`heap_pair`]): both ends in one process (tests, the on-host mode).
//! - `memfd` ([`Listener`] / [`connect`]): the app connects to `ipu-cp` over a Unix socket and
//!   sends a `Hello`; `ipu-cp` checks the peer with `SO_PEERCRED`, checks the ABI version and
//!   the requested shape, creates a memfd, formats it and returns it with `SCM_RIGHTS` in a
//!   `HelloAck`. Both sides refuse an ABI mismatch by name. The socket stays open for the
//!   session's life; its hang-up is a second liveness signal beside the heartbeats.
//!
//! The PCIe emulation is a property of the channel (`ChannelConfig::delay_ns`), so it works
//! the same over every transport.

mod client;
mod server;
mod wire;

pub use crate::channel::heap_pair;
pub use client::{ConnectError, Connection, connect, connect_tier};
pub use server::{AcceptPolicy, BindError, HandshakeError, Incoming, Listener, Session};
pub use wire::peer_hung_up;
