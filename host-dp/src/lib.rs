//! `host-dp`: the host library applications link. It owns the *mechanisms* of Wave's host
//! side; decisions come from a policy (in `ipu-cp`, offloaded or on-host) through `link`.
//!
//! - [`io`]: packet I/O, one contract ([`io::PacketIo`]) and its backends: the shared-memory
//!   wire ([`io::shm`]), AF_PACKET with io_uring ([`io::uring`]), DPDK (`io::dpdk`, cargo
//!   feature `dpdk`).
//! - [`net`]: any packet I/O queue as a [`netstack::Wire`], so the per-worker TCP/IP stack
//!   runs over every backend.
//! - [`runtime`]: async tasks on pinned polling workers, scheduled locally or by an agent
//!   (`ipu-cp`, offloaded or on-host) through `link`, with fallback when the agent is lost.
//! - [`tier`]: a `memmgr` arena's tiering mechanism, driven by the tier policy over `link`.
//! - [`host`]: the front door, [`Host::builder`]: one config, every part started and wired.
//! - `hyper` (cargo feature `hyper`): hyper's executor and timer on the runtime.
//!
//! It must never: block a worker across cores, allocate on the data path after set-up, or
//! silently drop a frame (backpressure is reported, oversize frames are refused).

pub mod host;
#[cfg(feature = "hyper")]
pub mod hyper;
pub mod io;
pub mod net;
pub mod runtime;
pub mod tier;

pub use host::{Host, HostBuilder, HostConfig, HostError, HostHandle, ServiceMode};
