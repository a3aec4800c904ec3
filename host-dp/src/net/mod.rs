//! Networking on the host: packet I/O ports as stack links, and the multi-worker data plane
//! whose connection control is the control plane's.
//!
//! - [`PortLink`]: any [`crate::io::PacketIo`] queue as a [`netstack::Link`], so one smoltcp
//!   stack runs over DPDK, AF_PACKET or the shared-memory wire alike.
//! - [`control`]: the flow table and the mechanism that applies the control plane's
//!   admissions (prestaged tokens, requests, port leases, neighbours, routes), with a local
//!   fallback.
//! - [`plane`]: one stack per worker behind one port, frames steered by the flow table.
//! - [`sockets`]: the stacks driven by the runtime's workers, and async `TcpListener` /
//!   `TcpStream` for its tasks.

mod any;
pub mod control;
pub mod plane;
mod port;
mod ports;
pub mod sockets;

pub use any::{AnyFrame, AnyPort, Tagged};
pub use control::{ConnControl, ControlConfig, ControlStats};
pub use plane::{NetWorker, Plane, PlaneConfig, PlaneStats, SharedLink, WorkerLink};
pub use port::{PortFrame, PortLink};
pub use sockets::{NetRuntime, TcpListener, TcpStream, UdpSocket};
