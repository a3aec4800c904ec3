//! The bridge from packet I/O to the network stack: any [`PacketIo`] queue is a
//! [`netstack::Wire`], so one smoltcp stack per worker runs over DPDK, AF_PACKET or the
//! shared-memory wire alike.

use netstack::{Wire, WireFrame};

use crate::io::{Frame, PacketIo, QueueId};

/// A backend's frame, seen by the stack.
#[derive(Debug)]
pub struct PortFrame<F>(F);

impl<F: Frame> WireFrame for PortFrame<F> {
    fn data(&self) -> &[u8] {
        self.0.data()
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self.0.data_mut()
    }
    fn set_len(&mut self, len: usize) -> bool {
        self.0.set_len(len).is_ok()
    }
}

/// One queue of a packet I/O port, as the stack's link.
#[derive(Debug)]
pub struct PortWire<P: PacketIo> {
    port: P,
    queue: QueueId,
    frame_len_max: usize,
    /// Transmit buffers allocated ahead, handed out one at a time.
    spare: Vec<P::Frame>,
    scratch: Vec<P::Frame>,
    /// Receive or transmit errors of the port (the frames stay with the caller).
    pub errors: u64,
}

/// Transmit buffers allocated per refill.
const SPARE_BATCH: usize = 32;

impl<P: PacketIo> PortWire<P> {
    /// Queue `queue` of `port`.
    pub fn new(port: P, queue: QueueId) -> PortWire<P> {
        let frame_len_max = port.capabilities().frame_len_max;
        PortWire {
            port,
            queue,
            frame_len_max,
            spare: Vec::with_capacity(SPARE_BATCH),
            scratch: Vec::with_capacity(SPARE_BATCH * 4),
            errors: 0,
        }
    }

    /// The port.
    pub fn port(&self) -> &P {
        &self.port
    }
}

impl<P: PacketIo> Wire for PortWire<P> {
    type Frame = PortFrame<P::Frame>;

    fn frame_len_max(&self) -> usize {
        self.frame_len_max
    }

    fn receive(&mut self, out: &mut Vec<Self::Frame>, max: usize) -> usize {
        self.scratch.clear();
        match self.port.rx_burst(self.queue, &mut self.scratch, max) {
            Ok(count) => {
                out.extend(self.scratch.drain(..).map(PortFrame));
                count
            }
            Err(_) => {
                self.errors += 1;
                0
            }
        }
    }

    fn alloc(&mut self) -> Option<Self::Frame> {
        if self.spare.is_empty() {
            self.port.alloc(&mut self.spare, SPARE_BATCH);
        }
        self.spare.pop().map(PortFrame)
    }

    fn send(&mut self, frames: &mut Vec<Self::Frame>) -> usize {
        self.scratch.clear();
        self.scratch.extend(frames.drain(..).map(|PortFrame(frame)| frame));
        let sent = match self.port.tx_burst(self.queue, &mut self.scratch) {
            Ok(sent) => sent,
            Err(_) => {
                self.errors += 1;
                0
            }
        };
        // What the port did not take stays, in order, for the next try.
        frames.extend(self.scratch.drain(..).map(PortFrame));
        sent
    }

    fn recycle(&mut self, frames: &mut Vec<Self::Frame>) {
        self.scratch.clear();
        self.scratch.extend(frames.drain(..).map(|PortFrame(frame)| frame));
        self.port.free_batch(&mut self.scratch);
    }
}
