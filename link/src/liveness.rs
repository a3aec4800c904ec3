//! Heartbeats and the watchdog that reads them.
//!
//! Each side owns a heartbeat line *in the peer's memory* (a posted write) holding a counter,
//! its epoch and a state. The peer polls that line locally. Liveness is judged by whether the
//! counter *changes* within a timeout measured on the observer's own clock: nothing depends on
//! the two sides' clocks agreeing (they are two system images).
//!
//! Line words: 0 counter, 1 epoch, 2 state (0 never started, 1 running, 2 closed).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::clock::MonoNanos;
use crate::proto::Epoch;
use crate::region::Region;

const STATE_RUNNING: u64 = 1;
const STATE_CLOSED: u64 = 2;

/// Heartbeat interval and peer timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessConfig {
    /// How often a side bumps its heartbeat.
    pub heartbeat_interval_ns: u64,
    /// Silence after which the peer is declared dead. Must exceed the interval plus the
    /// longest stall the peer may legitimately have (VM steal time, a sleeping idle loop).
    pub peer_timeout_ns: u64,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig { heartbeat_interval_ns: 100_000, peer_timeout_ns: 10_000_000 }
    }
}

/// Our own heartbeat, written into the peer's memory.
#[derive(Debug)]
pub struct Heartbeat {
    region: Arc<Region>,
    line: usize,
    counter: u64,
    last_beat: MonoNanos,
    interval_ns: u64,
}

impl Heartbeat {
    /// Starts beating on `line` under `epoch`.
    pub fn start(
        region: Arc<Region>,
        line: usize,
        epoch: Epoch,
        interval_ns: u64,
        now: MonoNanos,
    ) -> Heartbeat {
        let words = region.words(line, 3);
        words[1].store(u64::from(epoch.0), Ordering::Relaxed);
        words[2].store(STATE_RUNNING, Ordering::Relaxed);
        // Release: a watcher that sees the counter move also sees epoch and state.
        words[0].store(1, Ordering::Release);
        Heartbeat { region, line, counter: 1, last_beat: now, interval_ns }
    }

    /// Bumps the counter if an interval has passed since the last bump. Cheap to call often.
    #[inline]
    pub fn beat(&mut self, now: MonoNanos) {
        if now.since(self.last_beat) >= self.interval_ns {
            self.counter += 1;
            self.region.word(self.line).store(self.counter, Ordering::Release);
            self.last_beat = now;
        }
    }

    /// Announces an orderly shutdown: the peer sees `Closed` at once, not after a timeout.
    pub fn close(&mut self) {
        self.region.word(self.line + 16).store(STATE_CLOSED, Ordering::Release);
        self.counter += 1;
        self.region.word(self.line).store(self.counter, Ordering::Release);
    }
}

/// What the watchdog concluded about the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerStatus {
    /// Not heard yet, still within the timeout.
    Starting,
    /// Beating, under this epoch.
    Alive(Epoch),
    /// Closed in order.
    Closed,
    /// Silent for longer than the timeout: crashed, hung or gone.
    Dead {
        /// How long it has been silent.
        silent_ns: u64,
    },
}

/// The watchdog over the peer's heartbeat line (in our memory).
#[derive(Debug)]
pub struct PeerWatch {
    region: Arc<Region>,
    line: usize,
    timeout_ns: u64,
    last_counter: u64,
    last_change: MonoNanos,
    last_check: MonoNanos,
}

impl PeerWatch {
    /// Watches `line`; the peer has `timeout_ns` from `now` to show a first beat.
    pub fn new(region: Arc<Region>, line: usize, timeout_ns: u64, now: MonoNanos) -> PeerWatch {
        assert!(timeout_ns > 0, "a zero timeout declares every peer dead");
        let last_counter = region.word(line).load(Ordering::Acquire);
        PeerWatch { region, line, timeout_ns, last_counter, last_change: now, last_check: now }
    }

    /// Reads the peer's line (local memory) and judges it at `now`.
    ///
    /// Call it more often than every `timeout / 2`. A longer gap between two checks means
    /// *we* were not running (descheduled, VM steal, stopped in a debugger), and whatever
    /// stalled us may have stalled the peer too; so the silence clock restarts rather than
    /// blaming the peer for our own stall.
    #[inline]
    pub fn check(&mut self, now: MonoNanos) -> PeerStatus {
        if now.since(self.last_check) > self.timeout_ns / 2 {
            self.last_change = now;
        }
        self.last_check = now;
        let words = self.region.words(self.line, 3);
        // Acquire pairs with the peer's Release counter store.
        let counter = words[0].load(Ordering::Acquire);
        if counter != self.last_counter {
            self.last_counter = counter;
            self.last_change = now;
        }
        match words[2].load(Ordering::Relaxed) {
            STATE_CLOSED => return PeerStatus::Closed,
            STATE_RUNNING if now.since(self.last_change) < self.timeout_ns => {
                let epoch = u32::try_from(words[1].load(Ordering::Relaxed)).unwrap_or(u32::MAX);
                return PeerStatus::Alive(Epoch(epoch));
            }
            _ => {}
        }
        let silent_ns = now.since(self.last_change);
        if silent_ns < self.timeout_ns {
            PeerStatus::Starting
        } else {
            PeerStatus::Dead { silent_ns }
        }
    }

    /// The configured timeout.
    pub fn timeout_ns(&self) -> u64 {
        self.timeout_ns
    }
}

/// Both halves: our heartbeat and the watch over the peer's.
#[derive(Debug)]
pub struct Liveness {
    /// Ours.
    pub heartbeat: Heartbeat,
    /// Theirs.
    pub peer: PeerWatch,
}

impl Liveness {
    /// Beats if due and checks the peer: call from the polling loop.
    #[inline]
    pub fn tick(&mut self, now: MonoNanos) -> PeerStatus {
        self.heartbeat.beat(now);
        self.peer.check(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(now: MonoNanos) -> (Heartbeat, PeerWatch) {
        let region = Arc::new(Region::heap(64).unwrap());
        let beat = Heartbeat::start(region.clone(), 0, Epoch(5), 100, now);
        (beat, PeerWatch::new(region, 0, 1_000, now))
    }

    #[test]
    fn beating_peer_is_alive_and_silent_peer_dies_after_timeout() {
        let (mut beat, mut watch) = pair(MonoNanos(0));
        for t in (0..10_000).step_by(50) {
            beat.beat(MonoNanos(t));
            assert_eq!(watch.check(MonoNanos(t)), PeerStatus::Alive(Epoch(5)), "at {t}");
        }
        // The peer stops at t = 9_950; its last bump was at 9_900.
        assert_eq!(watch.check(MonoNanos(10_400)), PeerStatus::Alive(Epoch(5)));
        assert_eq!(watch.check(MonoNanos(10_850)), PeerStatus::Alive(Epoch(5)));
        assert_eq!(watch.check(MonoNanos(10_950)), PeerStatus::Dead { silent_ns: 1_050 });
        beat.beat(MonoNanos(11_000));
        assert_eq!(watch.check(MonoNanos(11_000)), PeerStatus::Alive(Epoch(5)), "revived");
    }

    #[test]
    fn peer_that_never_starts_dies_after_timeout() {
        let region = Arc::new(Region::heap(64).unwrap());
        let mut watch = PeerWatch::new(region, 0, 1_000, MonoNanos(0));
        assert_eq!(watch.check(MonoNanos(400)), PeerStatus::Starting);
        assert_eq!(watch.check(MonoNanos(800)), PeerStatus::Starting);
        assert_eq!(watch.check(MonoNanos(1_000)), PeerStatus::Dead { silent_ns: 1_000 });
    }

    #[test]
    fn our_own_stall_is_not_blamed_on_the_peer() {
        let (mut beat, mut watch) = pair(MonoNanos(0));
        beat.beat(MonoNanos(100));
        assert_eq!(watch.check(MonoNanos(100)), PeerStatus::Alive(Epoch(5)));
        // We stall for 5 timeouts (and so did the peer): no verdict on waking up ...
        assert_eq!(watch.check(MonoNanos(5_100)), PeerStatus::Alive(Epoch(5)));
        // ... but a peer that stays silent while we run is declared dead a timeout later.
        for t in (5_400..6_100).step_by(300) {
            assert_eq!(watch.check(MonoNanos(t)), PeerStatus::Alive(Epoch(5)), "at {t}");
        }
        assert!(matches!(watch.check(MonoNanos(6_200)), PeerStatus::Dead { .. }));
    }

    #[test]
    fn orderly_close_is_seen_at_once() {
        let (mut beat, mut watch) = pair(MonoNanos(0));
        beat.close();
        assert_eq!(watch.check(MonoNanos(1)), PeerStatus::Closed);
    }
}
