//! The packet I/O contract: batched receive and transmit of Ethernet frames per queue, with
//! explicit buffer ownership and backpressure.
//!
//! Ownership, the one rule: a frame buffer always has exactly one owner.
//! - [`PacketIo::alloc`] lends the caller empty transmit buffers from the backend's pool.
//! - [`PacketIo::tx_burst`] takes frames from the *front* of the caller's vector; each accepted
//!   frame now belongs to the device and leaves the vector, and the frames it could not take
//!   stay where they were. Fewer taken than offered is backpressure, never a silent drop.
//! - [`PacketIo::rx_burst`] appends received frames to the caller's vector; they belong to the
//!   caller, and dropping one returns its buffer to wherever it came from. No backend copies a
//!   frame behind the caller's back: what a buffer holds is where the device put it.
//!
//! Frames are whole Ethernet frames without the FCS, at most
//! [`Capabilities::frame_len_max`] bytes. A longer frame is refused with
//! [`IoError::FrameTooLong`]: by [`Frame::set_len`] when its buffer cannot hold it, and in
//! any case by `tx_burst`, which keeps it (and everything after it in the batch) unsent. A
//! buffer may be larger than the port's limit (a DPDK mbuf knows its room, not its port's
//! MTU, as with `rte_pktmbuf_append`).

pub mod shm;
pub mod uring;

#[cfg(feature = "dpdk")]
pub mod dpdk;

/// A queue of a port: one per worker, typically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(pub u16);

/// What a port can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Longest frame accepted for transmit and delivered on receive (Ethernet header +
    /// payload, no FCS): 1514 for a 1500-byte MTU.
    pub frame_len_max: usize,
    /// Receive queues.
    pub rx_queues: u16,
    /// Transmit queues.
    pub tx_queues: u16,
    /// The device verifies IPv4/TCP/UDP checksums on receive.
    pub rx_checksum_offload: bool,
    /// The device fills IPv4/TCP/UDP checksums on transmit.
    pub tx_checksum_offload: bool,
    /// Most frames one burst call moves.
    pub burst_max: usize,
}

/// A frame buffer lent by a backend.
pub trait Frame {
    /// The frame's bytes.
    fn data(&self) -> &[u8];
    /// The frame's bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Sets the frame length (bytes beyond the old length are whatever the buffer held).
    /// Refuses lengths above the buffer's room, leaving the frame as it was; a length within
    /// the room but above the port's `frame_len_max` is refused by `tx_burst` instead.
    fn set_len(&mut self, len: usize) -> Result<(), IoError>;
    /// Current length.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// True for a zero-length frame.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a packet I/O call failed. Hot-path errors: small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    /// A frame exceeds the port's frame length limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The queue does not exist on this port.
    #[error("queue {0} does not exist")]
    NoSuchQueue(u16),
    /// The peer or device sent something that violates the backend's protocol (counted and
    /// dropped; the frame, if any, is lost only when the peer broke the protocol).
    #[error("malformed descriptor from the peer")]
    Malformed,
    /// The device or kernel reported an error (errno).
    #[error("device error: errno {0}")]
    Device(i32),
}

/// A port's packet I/O, driven by polling.
pub trait PacketIo {
    /// The buffers this backend lends.
    type Frame: Frame;

    /// What the port can do.
    fn capabilities(&self) -> Capabilities;

    /// Appends up to `count` empty transmit buffers (length 0) to `out`; returns how many.
    /// Fewer than asked means the pool is exhausted until frames come back.
    fn alloc(&mut self, out: &mut Vec<Self::Frame>, count: usize) -> usize;

    /// Appends up to `max` received frames of `queue` to `out`; returns how many.
    fn rx_burst(
        &mut self,
        queue: QueueId,
        out: &mut Vec<Self::Frame>,
        max: usize,
    ) -> Result<usize, IoError>;

    /// Transmits frames from the front of `frames` on `queue`, removing those accepted; returns
    /// how many. Frames left in `frames` were not sent (backpressure): retry them later.
    fn tx_burst(&mut self, queue: QueueId, frames: &mut Vec<Self::Frame>)
    -> Result<usize, IoError>;

    /// Returns every frame in `frames` (received, or not sent) to its buffer pool at once,
    /// leaving `frames` empty. The default drops them one by one; backends with a batched
    /// free (DPDK's `rte_pktmbuf_free_bulk`) override it.
    fn free_batch(&mut self, frames: &mut Vec<Self::Frame>) {
        frames.clear();
    }
}

/// Checks a queue index against a count.
#[inline]
pub(crate) fn check_queue(queue: QueueId, count: u16) -> Result<usize, IoError> {
    if queue.0 < count { Ok(usize::from(queue.0)) } else { Err(IoError::NoSuchQueue(queue.0)) }
}
