//! Networking on the host: packet I/O ports as stack links, and the multi-worker data plane
//! whose connection control is the control plane's.
//!
//! - [`PortWire`]: any [`crate::io::PacketIo`] queue as a [`netstack::Wire`], so one smoltcp
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
pub use plane::{NetWorker, Plane, PlaneConfig, PlaneStats, SharedWire, WorkerWire};
pub use port::{PortFrame, PortWire};
pub use sockets::{NetRuntime, TcpListener, TcpStream, UdpSocket};
