//! `host-dp`: the host library applications link. It owns the *mechanisms* of Wave's host
//! side; decisions come from a policy (in `ipu-cp`, offloaded or on-host) through `link`.
//!
//! Today it holds packet I/O ([`io`]): one contract, [`io::PacketIo`], and its backends:
//! the shared-memory wire ([`io::shm`], always built), DPDK (`io::dpdk`, cargo feature `dpdk`).
//! [`runtime`] runs async tasks on pinned polling workers (local FIFO mode, cooperative
//! preemption); the offloaded scheduling mechanism and the control endpoint join next.
//!
//! It must never: block a worker across cores, allocate on the data path after set-up, or
//! silently drop a frame (backpressure is reported, oversize frames are refused).

pub mod io;
pub mod runtime;
