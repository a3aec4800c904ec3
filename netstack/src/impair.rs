//! The impairment layer: a [`Wire`] wrapper that loses, duplicates, reorders and delays frames
//! on receive and on send, from a seeded generator, so a failing run replays exactly. netem
//! is not available in this kernel; this works on every backend, and on the in-memory wire.
//!
//! Time comes from [`Wire::tick`], which the stack calls with its `now` before each receive:
//! a delayed frame is held until `now` passes its due time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::wire::{Wire, WireFrame};

/// What to do to frames, in each direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Probability a frame is lost.
    pub loss: f64,
    /// Probability a frame is delivered twice.
    pub duplicate: f64,
    /// Probability a frame is held back and delivered after the next one.
    pub reorder: f64,
    /// Delay added to every received frame.
    pub delay: Duration,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment { loss: 0.0, duplicate: 0.0, reorder: 0.0, delay: Duration::ZERO, seed: 1 }
    }
}

/// Counters of what was done.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImpairStats {
    /// Frames lost.
    pub lost: u64,
    /// Frames duplicated.
    pub duplicated: u64,
    /// Frames reordered.
    pub reordered: u64,
}

/// A link with impairments on both directions.
#[derive(Debug)]
pub struct Impaired<L: Wire> {
    inner: L,
    config: Impairment,
    state: u64,
    now: Option<Instant>,
    /// Received frames waiting out their delay (due time, frame), in order.
    delayed: VecDeque<(Instant, L::Frame)>,
    /// A received frame held back to swap with the next.
    held_rx: Option<L::Frame>,
    scratch: Vec<L::Frame>,
    /// What was done.
    pub stats: ImpairStats,
}

impl<L: Wire> Impaired<L> {
    /// Wraps `inner`. Probabilities are clamped to 0..=1.
    pub fn new(inner: L, config: Impairment) -> Impaired<L> {
        let clamp = |p: f64| if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        let config = Impairment {
            loss: clamp(config.loss),
            duplicate: clamp(config.duplicate),
            reorder: clamp(config.reorder),
            ..config
        };
        Impaired {
            inner,
            state: config.seed | 1,
            config,
            now: None,
            delayed: VecDeque::new(),
            held_rx: None,
            scratch: Vec::new(),
            stats: ImpairStats::default(),
        }
    }

    /// The wrapped link.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    /// A uniform draw in [0, 1) (xorshift64*; quality is plenty for impairments).
    fn draw(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let value = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        value as f64 / (1u64 << 53) as f64
    }

    /// A copy of `frame` in a fresh buffer of the inner link (for duplicates).
    fn copy(&mut self, frame: &L::Frame) -> Option<L::Frame> {
        let mut copy = self.inner.alloc()?;
        if !copy.set_len(frame.data().len()) {
            return None;
        }
        copy.data_mut().copy_from_slice(frame.data());
        Some(copy)
    }

    /// Applies loss, duplication and reordering to `frames` in place.
    fn impair(&mut self, frames: &mut Vec<L::Frame>, held: &mut Option<L::Frame>) {
        let mut out = Vec::with_capacity(frames.len() + 2);
        for frame in frames.drain(..) {
            if self.draw() < self.config.loss {
                self.stats.lost += 1;
                continue;
            }
            if self.draw() < self.config.duplicate
                && let Some(copy) = self.copy(&frame)
            {
                self.stats.duplicated += 1;
                out.push(copy);
            }
            if held.is_none() && self.draw() < self.config.reorder {
                self.stats.reordered += 1;
                *held = Some(frame);
                continue;
            }
            out.push(frame);
            if let Some(earlier) = held.take() {
                out.push(earlier); // delivered after the one that overtook it
            }
        }
        *frames = out;
    }
}

impl<L: Wire> Wire for Impaired<L> {
    type Frame = L::Frame;

    fn frame_len_max(&self) -> usize {
        self.inner.frame_len_max()
    }

    fn tick(&mut self, now: Instant) {
        self.now = Some(now);
        self.inner.tick(now);
    }

    fn receive(&mut self, out: &mut Vec<Self::Frame>, max: usize) -> usize {
        let now = self.now.unwrap_or_else(Instant::now);
        let mut fresh = std::mem::take(&mut self.scratch);
        self.inner.receive(&mut fresh, max);
        let mut held = self.held_rx.take();
        let quiet = fresh.is_empty();
        self.impair(&mut fresh, &mut held);
        // A held frame waits for one that overtakes it, but never across a quiet poll: the
        // last frame of a burst must not wait for traffic that may never come.
        match held {
            Some(frame) if quiet => fresh.push(frame),
            other => self.held_rx = other,
        }
        let due = now + self.config.delay;
        self.delayed.extend(fresh.drain(..).map(|frame| (due, frame)));
        self.scratch = fresh;
        let start = out.len();
        while out.len() - start < max {
            match self.delayed.front() {
                Some((due, _)) if *due <= now => {
                    out.push(self.delayed.pop_front().expect("peeked").1);
                }
                _ => break,
            }
        }
        out.len() - start
    }

    fn alloc(&mut self) -> Option<Self::Frame> {
        self.inner.alloc()
    }

    fn send(&mut self, frames: &mut Vec<Self::Frame>) -> usize {
        let offered = frames.len();
        let mut held = None;
        self.impair(frames, &mut held);
        frames.extend(held); // no frame waits across calls on the way out
        let lost = offered.saturating_sub(frames.len());
        (lost + self.inner.send(frames)).min(offered)
    }

    fn recycle(&mut self, frames: &mut Vec<Self::Frame>) {
        self.inner.recycle(frames);
    }
}
