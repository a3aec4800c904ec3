//! What the stack needs from packet I/O, and nothing of `link` or `host-dp`: batched receive,
//! transmit buffers, batched send with backpressure. `host-dp` implements it for every packet
//! backend; [`MemoryWire`] is the test double (two stacks joined in memory).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// A frame buffer owned by the caller until handed back.
pub trait WireFrame {
    /// The frame's bytes (its current length).
    fn data(&self) -> &[u8];
    /// The frame's bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Sets the length; false if it exceeds the buffer.
    fn set_len(&mut self, len: usize) -> bool;
}

/// Ethernet frames in and out of one queue.
pub trait Wire {
    /// The frame type.
    type Frame: WireFrame;
    /// Largest frame, Ethernet header included.
    fn frame_len_max(&self) -> usize;
    /// Appends up to `max` received frames to `out`; returns how many.
    fn receive(&mut self, out: &mut Vec<Self::Frame>, max: usize) -> usize;
    /// A transmit buffer of `frame_len_max` bytes, or `None` when none is free.
    fn alloc(&mut self) -> Option<Self::Frame>;
    /// Sends `frames` in order; the accepted ones leave the vector, the rest stay (the queue is
    /// full: try again later). Returns how many were accepted.
    fn send(&mut self, frames: &mut Vec<Self::Frame>) -> usize;
    /// Takes back frames that were received, once read.
    fn recycle(&mut self, frames: &mut Vec<Self::Frame>) {
        frames.clear();
    }
    /// The stack's clock, before each receive (for links that emulate time, e.g. a delay).
    fn tick(&mut self, _now: std::time::Instant) {}
}

impl WireFrame for Vec<u8> {
    fn data(&self) -> &[u8] {
        self
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self
    }
    fn set_len(&mut self, len: usize) -> bool {
        self.resize(len, 0);
        true
    }
}

type Queue = Arc<Mutex<VecDeque<Vec<u8>>>>;

/// One end of an in-memory Ethernet wire: what one end sends, the other receives, in order,
/// up to `capacity` frames in flight per direction (then `send` pushes back).
#[derive(Debug)]
pub struct MemoryWire {
    inbox: Queue,
    outbox: Queue,
    capacity: usize,
    frame_len_max: usize,
}

impl MemoryWire {
    /// Two joined ends.
    pub fn pair(capacity: usize, frame_len_max: usize) -> (MemoryWire, MemoryWire) {
        let (a, b): (Queue, Queue) = (Arc::default(), Arc::default());
        let end = |inbox: &Queue, outbox: &Queue| MemoryWire {
            inbox: inbox.clone(),
            outbox: outbox.clone(),
            capacity,
            frame_len_max,
        };
        (end(&a, &b), end(&b, &a))
    }
}

impl Wire for MemoryWire {
    type Frame = Vec<u8>;

    fn frame_len_max(&self) -> usize {
        self.frame_len_max
    }

    fn receive(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> usize {
        let mut inbox = self.inbox.lock().expect("wire");
        let count = max.min(inbox.len());
        out.extend(inbox.drain(..count));
        count
    }

    fn alloc(&mut self) -> Option<Vec<u8>> {
        Some(vec![0; self.frame_len_max])
    }

    fn send(&mut self, frames: &mut Vec<Vec<u8>>) -> usize {
        let mut outbox = self.outbox.lock().expect("wire");
        let count = frames.len().min(self.capacity.saturating_sub(outbox.len()));
        outbox.extend(frames.drain(..count));
        count
    }
}
