//! Time as a value. Ring, txn and liveness logic never read a clock: callers pass `now` in, so
//! tests drive them with a fake clock. [`MonoNanos::now`] is the one place that reads the
//! system clock; both processes of a link share `CLOCK_MONOTONIC`, which is what makes the
//! emulated PCIe delay (a visibility time stamped by the producer) meaningful.

use nix::time::{ClockId, clock_gettime};

/// Nanoseconds on the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MonoNanos(pub u64);

impl MonoNanos {
    /// Reads `CLOCK_MONOTONIC` (a vDSO call, ~20 ns).
    #[inline]
    pub fn now() -> MonoNanos {
        let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always there");
        let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
        let nanos = u64::try_from(ts.tv_nsec()).unwrap_or(0);
        MonoNanos(secs * 1_000_000_000 + nanos)
    }

    /// `self + ns`, saturating.
    #[inline]
    pub fn plus_ns(self, ns: u64) -> MonoNanos {
        MonoNanos(self.0.saturating_add(ns))
    }

    /// Nanoseconds from `earlier` to `self`, zero if `earlier` is later.
    #[inline]
    pub fn since(self, earlier: MonoNanos) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
