//! Optional packet capture: a [`Wire`] wrapper that writes every frame it receives and sends
//! to a pcap stream (libpcap's classic format, Ethernet, microsecond stamps) that Wireshark and
//! tcpdump read. A worker's stack over `Capture::new(link, file, ..)` is captured; one that is
//! not pays nothing.
//!
//! A write error stops the capture (counted) and never the traffic.

use std::io::Write;
use std::time::{Instant, SystemTime};

use crate::wire::{Wire, WireFrame};

/// Bytes kept per frame.
const SNAPLEN: u32 = 65_535;

/// A link whose frames are also written to `W` in pcap format.
#[derive(Debug)]
pub struct Capture<L: Wire, W: Write> {
    inner: L,
    out: Option<W>,
    /// Wall-clock time at `origin`, for the stamps.
    wall: SystemTime,
    origin: Instant,
    now: Instant,
    /// Frames written.
    pub frames: u64,
    /// Write errors (the capture stopped at the first).
    pub errors: u64,
}

impl<L: Wire, W: Write> Capture<L, W> {
    /// Captures `inner`'s traffic into `out`, stamping frames with `wall` + the time since
    /// `now` (the stack's clock, passed in through [`Wire::tick`]).
    pub fn new(inner: L, mut out: W, wall: SystemTime, now: Instant) -> Capture<L, W> {
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic: µs stamps
        header.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&0i32.to_le_bytes()); // GMT offset
        header.extend_from_slice(&0u32.to_le_bytes()); // accuracy
        header.extend_from_slice(&SNAPLEN.to_le_bytes());
        header.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        let ok = out.write_all(&header).is_ok();
        Capture {
            inner,
            out: ok.then_some(out),
            wall,
            origin: now,
            now,
            frames: 0,
            errors: u64::from(!ok),
        }
    }

    /// The wrapped link.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    /// Stops capturing and returns the writer (flush it), if no write failed.
    pub fn finish(&mut self) -> Option<W> {
        self.out.take()
    }

    fn record(&mut self, frame: &[u8]) {
        let Some(out) = self.out.as_mut() else { return };
        let stamp = self.wall + self.now.saturating_duration_since(self.origin);
        let since_epoch = stamp.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let kept = len.min(SNAPLEN);
        let mut header = [0u8; 16];
        let secs = u32::try_from(since_epoch.as_secs()).unwrap_or(u32::MAX);
        header[0..4].copy_from_slice(&secs.to_le_bytes());
        header[4..8].copy_from_slice(&since_epoch.subsec_micros().to_le_bytes());
        header[8..12].copy_from_slice(&kept.to_le_bytes());
        header[12..16].copy_from_slice(&len.to_le_bytes());
        let body = &frame[..usize::try_from(kept).unwrap_or(frame.len())];
        if out.write_all(&header).and_then(|()| out.write_all(body)).is_ok() {
            self.frames += 1;
        } else {
            self.errors += 1;
            self.out = None;
        }
    }
}

impl<L: Wire, W: Write> Wire for Capture<L, W> {
    type Frame = L::Frame;

    fn frame_len_max(&self) -> usize {
        self.inner.frame_len_max()
    }

    fn receive(&mut self, out: &mut Vec<Self::Frame>, max: usize) -> usize {
        let first = out.len();
        let count = self.inner.receive(out, max);
        for frame in &out[first..] {
            self.record(frame.data());
        }
        count
    }

    fn alloc(&mut self) -> Option<Self::Frame> {
        self.inner.alloc()
    }

    fn send(&mut self, frames: &mut Vec<Self::Frame>) -> usize {
        if self.out.is_none() {
            return self.inner.send(frames);
        }
        // The link takes the first `sent` frames out of the vector: copy them before, record
        // only those after (the rest are retried, and recorded when they go).
        let copies: Vec<Vec<u8>> = frames.iter().map(|f| f.data().to_vec()).collect();
        let sent = self.inner.send(frames);
        for frame in &copies[..sent] {
            self.record(frame);
        }
        sent
    }

    fn recycle(&mut self, frames: &mut Vec<Self::Frame>) {
        self.inner.recycle(frames);
    }

    fn tick(&mut self, now: Instant) {
        self.now = now;
        self.inner.tick(now);
    }
}
