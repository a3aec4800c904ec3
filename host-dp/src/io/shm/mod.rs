//! The shared-memory wire: two endpoints joined by rings in one shared region, like memif. It
//! moves frames between two network stacks on one machine (threads or processes) without a
//! NIC or the kernel: the fastest honest "link" for tests and benchmarks.
//!
//! Per direction, the sending endpoint owns a pool of fixed-size buffers. Sending posts a
//! descriptor `(buffer, length)` on the direction's descriptor ring; the receiver lends the
//! buffer to its caller as a frame, and dropping that frame posts the buffer index back on
//! the direction's return ring. Only indices move: frames are never copied, except when a
//! caller transmits a frame it *received* (forwarding), which is copied into one of the
//! sender's own buffers.
//!
//! Unsafe code: this file turns buffer indices into byte slices of the shared region. The
//! proof is the ownership protocol: a buffer index is always in exactly one place (the
//! sender's free list, a frame, the descriptor ring, or the return ring), and only the holder
//! of a frame touches its bytes. The peer is trusted to follow the protocol (it is the other
//! end of our own wire); descriptors naming out-of-range buffers or lengths are still
//! refused and counted rather than followed.

mod ring;

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use link::region::{Region, RegionError};

use super::{Capabilities, Frame, IoError, PacketIo, QueueId, check_queue};
use ring::{WordConsumer, WordProducer, WordRing};

/// `header.magic`: "WAVEWIRE".
const MAGIC: u64 = u64::from_le_bytes(*b"WAVEWIRE");

/// The shape of a wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireConfig {
    /// Buffers per direction (a power of two, 2..=65536).
    pub buffers: u32,
    /// Bytes per buffer (a multiple of 64, 128..=65536).
    pub buffer_size: u32,
    /// Longest frame, at most `buffer_size`.
    pub frame_len_max: u32,
}

impl Default for WireConfig {
    fn default() -> Self {
        WireConfig { buffers: 1024, buffer_size: 2048, frame_len_max: 1514 }
    }
}

/// Why a wire could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The config is out of bounds.
    #[error("invalid wire config: {0}")]
    Config(&'static str),
    /// The region could not be created.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The region is not a formatted wire, or has another shape.
    #[error("region is not a wire of this shape")]
    NotAWire,
}

/// Which end of the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Transmits on direction 0, receives on direction 1.
    A,
    /// Transmits on direction 1, receives on direction 0.
    B,
}

#[derive(Debug, Clone, Copy)]
struct Direction {
    descriptors: WordRing,
    returns: WordRing,
    buffers_offset: usize,
}

#[derive(Debug, Clone, Copy)]
struct Layout {
    config: WireConfig,
    directions: [Direction; 2],
    total_len: usize,
}

impl Layout {
    fn new(config: WireConfig) -> Result<Layout, WireError> {
        let WireConfig { buffers, buffer_size, frame_len_max } = config;
        if !buffers.is_power_of_two() || !(2..=65_536).contains(&buffers) {
            return Err(WireError::Config("buffers must be a power of two in 2..=65536"));
        }
        if !buffer_size.is_multiple_of(64) || !(128..=65_536).contains(&buffer_size) {
            return Err(WireError::Config("buffer_size must be a multiple of 64 in 128..=65536"));
        }
        if frame_len_max == 0 || frame_len_max > buffer_size {
            return Err(WireError::Config("frame_len_max must be 1..=buffer_size"));
        }
        let mut offset = 64; // header line
        let mut direction = || {
            let descriptors = WordRing::at(offset, buffers);
            offset += WordRing::bytes(buffers);
            let returns = WordRing::at(offset, buffers);
            offset += WordRing::bytes(buffers);
            let buffers_offset = offset;
            offset += buffers as usize * buffer_size as usize;
            Direction { descriptors, returns, buffers_offset }
        };
        let directions = [direction(), direction()];
        Ok(Layout { config, directions, total_len: offset.next_multiple_of(4096) })
    }

    fn format(&self, region: &Region) {
        let words = region.words(0, 4);
        words[1].store(u64::from(self.config.buffers), Ordering::Relaxed);
        words[2].store(u64::from(self.config.buffer_size), Ordering::Relaxed);
        words[3].store(u64::from(self.config.frame_len_max), Ordering::Relaxed);
        words[0].store(MAGIC, Ordering::Release);
    }

    fn read(region: &Region) -> Result<Layout, WireError> {
        let words = region.words(0, 4);
        if words[0].load(Ordering::Acquire) != MAGIC {
            return Err(WireError::NotAWire);
        }
        let field = |i: usize| u32::try_from(words[i].load(Ordering::Relaxed));
        let config = WireConfig {
            buffers: field(1).map_err(|_| WireError::NotAWire)?,
            buffer_size: field(2).map_err(|_| WireError::NotAWire)?,
            frame_len_max: field(3).map_err(|_| WireError::NotAWire)?,
        };
        let layout = Layout::new(config)?;
        if region.len() < layout.total_len {
            return Err(WireError::NotAWire);
        }
        Ok(layout)
    }
}

/// A formatted wire region, to share between the two endpoints (threads or processes).
pub fn create(config: WireConfig, memfd: bool) -> Result<Arc<Region>, WireError> {
    let layout = Layout::new(config)?;
    let region = if memfd {
        Region::memfd(c"wave-wire", layout.total_len)?
    } else {
        Region::heap(layout.total_len)?
    };
    layout.format(&region);
    Ok(Arc::new(region))
}

/// State shared by an endpoint and the frames it lent out (same thread: `Rc`).
struct Inner {
    region: Arc<Region>,
    config: WireConfig,
    tx: Direction,
    rx: Direction,
    /// Our transmit buffers not in use.
    free: RefCell<Vec<u32>>,
    /// We produce the rx direction's return ring (received buffers go back to the peer).
    returns: RefCell<WordProducer>,
    malformed: Cell<u64>,
}

impl Inner {
    fn buffer(&self, direction: &Direction, index: u32) -> NonNull<u8> {
        let size = self.config.buffer_size as usize;
        let offset = direction.buffers_offset + index as usize * size;
        self.region.byte_range(offset, size).cast()
    }
}

/// One end of a wire: a single-queue port.
pub struct ShmPort {
    inner: Rc<Inner>,
    descriptors_out: WordProducer,
    descriptors_in: WordConsumer,
    returns_in: WordConsumer,
}

impl std::fmt::Debug for ShmPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmPort").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl ShmPort {
    /// Attaches `side` of a wire made by [`create`] (or received from another process). Each
    /// side may be attached once.
    pub fn attach(region: Arc<Region>, side: Side) -> Result<ShmPort, WireError> {
        let layout = Layout::read(&region)?;
        let (tx, rx) = match side {
            Side::A => (layout.directions[0], layout.directions[1]),
            Side::B => (layout.directions[1], layout.directions[0]),
        };
        let free = (0..layout.config.buffers).rev().collect();
        let inner = Rc::new(Inner {
            config: layout.config,
            tx,
            rx,
            free: RefCell::new(free),
            returns: RefCell::new(WordProducer::new(region.clone(), rx.returns)),
            malformed: Cell::new(0),
            region: region.clone(),
        });
        Ok(ShmPort {
            descriptors_out: WordProducer::new(region.clone(), tx.descriptors),
            descriptors_in: WordConsumer::new(region.clone(), rx.descriptors),
            returns_in: WordConsumer::new(region, tx.returns),
            inner,
        })
    }

    /// True while no frame this port lent is alive (the port holds the only `Rc` on its
    /// state).
    pub fn lends_nothing(&self) -> bool {
        Rc::strong_count(&self.inner) == 1 && Rc::weak_count(&self.inner) == 0
    }

    /// Descriptors from the peer that were refused (bad buffer index or length).
    pub fn malformed_count(&self) -> u64 {
        self.inner.malformed.get()
    }

    /// Takes buffers the peer has finished with back into the free list.
    fn reclaim(&mut self) {
        let mut free = self.inner.free.borrow_mut();
        let buffers = self.inner.config.buffers;
        while let Some(word) = self.returns_in.pop() {
            match u32::try_from(word) {
                Ok(index) if index < buffers => free.push(index),
                _ => self.inner.malformed.set(self.inner.malformed.get() + 1),
            }
        }
        self.returns_in.release();
    }

    fn local_frame(&self, index: u32) -> ShmFrame {
        let data = self.inner.buffer(&self.inner.tx, index);
        ShmFrame { inner: self.inner.clone(), index, len: 0, data, origin: Origin::Local }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// One of our transmit buffers.
    Local,
    /// A buffer of the peer's, received.
    Peer,
}

/// A buffer of the wire, lent to the caller. Dropping it returns the buffer.
pub struct ShmFrame {
    inner: Rc<Inner>,
    index: u32,
    len: u32,
    data: NonNull<u8>,
    origin: Origin,
}

impl std::fmt::Debug for ShmFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmFrame").field("index", &self.index).field("len", &self.len).finish()
    }
}

impl Frame for ShmFrame {
    #[inline]
    fn data(&self) -> &[u8] {
        // SAFETY: `data` points at this frame's buffer of `buffer_size` bytes in a region the
        // frame keeps alive (`inner.region`); `len <= buffer_size` (set_len); the ownership
        // protocol (module docs) gives this frame exclusive use of the buffer while it lives.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.len as usize) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes this the only reference into the buffer.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.len as usize) }
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> Result<(), IoError> {
        let max = self.inner.config.frame_len_max as usize;
        if len > max {
            return Err(IoError::FrameTooLong { len, max });
        }
        self.len = u32::try_from(len).expect("bounded by frame_len_max");
        Ok(())
    }
}

impl Drop for ShmFrame {
    fn drop(&mut self) {
        match self.origin {
            Origin::Local => self.inner.free.borrow_mut().push(self.index),
            Origin::Peer => {
                let mut returns = self.inner.returns.borrow_mut();
                // The return ring holds every buffer of the direction, so it never fills.
                let pushed = returns.push(u64::from(self.index));
                debug_assert!(pushed, "return ring full: more buffers out than exist");
                returns.publish();
            }
        }
    }
}

impl PacketIo for ShmPort {
    type Frame = ShmFrame;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            frame_len_max: self.inner.config.frame_len_max as usize,
            rx_queues: 1,
            tx_queues: 1,
            rx_checksum_offload: false,
            tx_checksum_offload: false,
            burst_max: self.inner.config.buffers as usize,
        }
    }

    fn alloc(&mut self, out: &mut Vec<ShmFrame>, count: usize) -> usize {
        if self.inner.free.borrow().len() < count {
            self.reclaim();
        }
        let mut given = 0;
        while given < count {
            let Some(index) = self.inner.free.borrow_mut().pop() else { break };
            out.push(self.local_frame(index));
            given += 1;
        }
        given
    }

    fn rx_burst(
        &mut self,
        queue: QueueId,
        out: &mut Vec<ShmFrame>,
        max: usize,
    ) -> Result<usize, IoError> {
        check_queue(queue, 1)?;
        let (buffers, size) = (self.inner.config.buffers, self.inner.config.buffer_size);
        let mut received = 0;
        while received < max {
            let Some(word) = self.descriptors_in.pop() else { break };
            let (index, len) = ((word & 0xffff_ffff) as u32, (word >> 32) as u32);
            if index >= buffers || len > size {
                self.inner.malformed.set(self.inner.malformed.get() + 1);
                continue;
            }
            let data = self.inner.buffer(&self.inner.rx, index);
            out.push(ShmFrame {
                inner: self.inner.clone(),
                index,
                len,
                data,
                origin: Origin::Peer,
            });
            received += 1;
        }
        self.descriptors_in.release();
        Ok(received)
    }

    fn tx_burst(&mut self, queue: QueueId, frames: &mut Vec<ShmFrame>) -> Result<usize, IoError> {
        check_queue(queue, 1)?;
        let max = self.inner.config.frame_len_max as usize;
        let mut sent = 0;
        let mut result = Ok(());
        for frame in frames.iter() {
            if frame.len() > max {
                result = Err(IoError::FrameTooLong { len: frame.len(), max });
                break;
            }
            if frame.origin == Origin::Peer {
                break; // forwarded frames are copied below, one by one
            }
            if !self.descriptors_out.push((u64::from(frame.len) << 32) | u64::from(frame.index)) {
                break; // ring full: backpressure
            }
            sent += 1;
        }
        self.descriptors_out.publish();
        for frame in frames.drain(..sent) {
            std::mem::forget(frame); // ownership moved to the peer with the descriptor
        }
        if result.is_ok() && sent == 0 && frames.first().is_some_and(|f| f.origin == Origin::Peer) {
            return self.forward_one(frames);
        }
        result.map(|()| sent)
    }
}

impl ShmPort {
    /// Transmits a received frame by copying it into one of our buffers (the peer's buffer
    /// cannot travel back on our descriptor ring).
    fn forward_one(&mut self, frames: &mut Vec<ShmFrame>) -> Result<usize, IoError> {
        let mut copy = Vec::with_capacity(1);
        if self.alloc(&mut copy, 1) == 0 {
            return Ok(0); // no buffer: backpressure
        }
        let len = frames[0].len();
        copy[0].set_len(len)?;
        copy[0].data_mut().copy_from_slice(frames[0].data());
        let sent = self.tx_burst(QueueId(0), &mut copy)?;
        if sent == 1 {
            frames.remove(0); // dropping the received frame returns it to the peer
        }
        Ok(sent)
    }
}
