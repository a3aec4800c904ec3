//! `netstack`: Wave's TCP/IP data plane, one stack per worker.
//!
//! smoltcp is the protocol engine (a dependency, not a fork); this crate wraps it for a
//! kernel-bypass server: a [`Wire`] trait for packet I/O (batched, with backpressure; `host-dp`
//! implements it for its backends), a TCP socket API by handle with an accept backlog (smoltcp
//! has none) and RPC defaults (Nagle and delayed ACK off, overridable per connection), UDP
//! sockets, an impairment layer, pcap capture, and what flow steering needs (`steer`). It
//! knows nothing of `link` or the control plane: `host-dp` translates between them.
//!
//! smoltcp scans its socket set linearly for every segment and on every egress pass; the stack
//! gives each connection a set of its own and routes frames by flow, so a request costs the
//! same with ten connections or ten thousand (`conns`). Gaps that remain, documented rather
//! than patched: no SACK; RTT samples in milliseconds; TCP over IP fragments is not routed to
//! its connection (it gets a RST: TCP peers send whole segments); one `Interface` per thread,
//! so multi-core means one stack per queue with the NIC (or the control plane) keeping a flow
//! on its queue. Version choice:
//! `docs/adr/0005-smoltcp-version.md`.

#![forbid(unsafe_code)]

mod backlog;
mod capture;
mod close;
mod conns;
mod device;
mod error;
mod impair;
mod poll;
mod stack;
pub mod steer;
mod udp;
pub mod wire;

pub use capture::Capture;
pub use device::DeviceStats;
pub use error::NetError;
pub use impair::{ImpairStats, Impaired, Impairment};
pub use stack::{Conn, ConnState, Stack, StackConfig, StackStats};
pub use udp::UdpSock;
pub use wire::{MemoryWire, Wire, WireFrame};
