//! smoltcp's `Device` over a [`Wire`], with batching at our layer (smoltcp has no batch API):
//! one receive burst fills a queue that `receive` hands out frame by frame; frames smoltcp
//! writes collect in a pending vector sent in one burst after each poll. When the link pushes
//! back, `transmit` says no (smoltcp keeps the data in its socket buffers) instead of dropping.

use std::collections::VecDeque;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::wire::{Wire, WireFrame};

/// Counters of one device.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeviceStats {
    /// Frames received from the link.
    pub rx_frames: u64,
    /// Frames sent on the link.
    pub tx_frames: u64,
    /// Frames smoltcp wrote that could not get a buffer (dropped; TCP retransmits).
    pub tx_no_buffer: u64,
    /// Times transmit said "not now" because the link pushed back.
    pub tx_backpressure: u64,
}

pub(crate) struct WireDevice<L: Wire> {
    pub(crate) link: L,
    rx: VecDeque<L::Frame>,
    rx_burst: usize,
    received: Vec<L::Frame>,
    read: Vec<L::Frame>,
    pending: Vec<L::Frame>,
    pending_max: usize,
    pub(crate) stats: DeviceStats,
}

impl<L: Wire> WireDevice<L> {
    pub(crate) fn new(link: L, burst: usize) -> WireDevice<L> {
        let burst = burst.max(1);
        WireDevice {
            link,
            rx: VecDeque::with_capacity(burst),
            rx_burst: burst,
            received: Vec::with_capacity(burst),
            read: Vec::with_capacity(burst),
            pending: Vec::with_capacity(burst * 4),
            pending_max: burst * 4,
            stats: DeviceStats::default(),
        }
    }

    /// Pulls one receive burst if the queue ran dry. Returns frames queued.
    pub(crate) fn fill(&mut self) -> usize {
        if self.rx.is_empty() {
            let count = self.link.receive(&mut self.received, self.rx_burst);
            self.stats.rx_frames += count as u64;
            self.rx.extend(self.received.drain(..));
        }
        self.rx.len()
    }

    /// Sends what smoltcp wrote and returns read frames to the link.
    pub(crate) fn flush(&mut self) {
        if !self.pending.is_empty() {
            let sent = self.link.send(&mut self.pending);
            self.stats.tx_frames += sent as u64;
        }
        if !self.read.is_empty() {
            self.link.recycle(&mut self.read);
        }
    }

    /// The frame `receive` hands out next, if any.
    pub(crate) fn front(&self) -> Option<&[u8]> {
        self.rx.front().map(WireFrame::data)
    }

    pub(crate) fn has_pending_tx(&self) -> bool {
        !self.pending.is_empty()
    }
}

pub(crate) struct Rx<'a, F> {
    frame: F,
    read: &'a mut Vec<F>,
}

impl<F: WireFrame> phy::RxToken for Rx<'_, F> {
    fn consume<R, G: FnOnce(&[u8]) -> R>(self, f: G) -> R {
        let result = f(self.frame.data());
        self.read.push(self.frame);
        result
    }
}

pub(crate) struct Tx<'a, L: Wire> {
    link: &'a mut L,
    pending: &'a mut Vec<L::Frame>,
    stats: &'a mut DeviceStats,
}

impl<L: Wire> phy::TxToken for Tx<'_, L> {
    fn consume<R, G: FnOnce(&mut [u8]) -> R>(self, len: usize, f: G) -> R {
        let frame = self.link.alloc().and_then(|mut frame| frame.set_len(len).then_some(frame));
        match frame {
            Some(mut frame) => {
                let result = f(frame.data_mut());
                self.pending.push(frame);
                result
            }
            None => {
                // No buffer: smoltcp must still build the frame; it is dropped and counted,
                // and TCP's retransmission covers it.
                self.stats.tx_no_buffer += 1;
                let mut scratch = vec![0; len];
                f(&mut scratch)
            }
        }
    }
}

impl<L: Wire> phy::Device for WireDevice<L> {
    type RxToken<'a>
        = Rx<'a, L::Frame>
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<'a, L>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        let rx = Rx { frame, read: &mut self.read };
        let tx = Tx { link: &mut self.link, pending: &mut self.pending, stats: &mut self.stats };
        Some((rx, tx))
    }

    fn transmit(&mut self, _: Instant) -> Option<Self::TxToken<'_>> {
        if self.pending.len() >= self.pending_max {
            self.stats.tx_backpressure += 1;
            return None;
        }
        Some(Tx { link: &mut self.link, pending: &mut self.pending, stats: &mut self.stats })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.link.frame_len_max();
        caps.max_burst_size = Some(self.rx_burst);
        caps
    }
}
