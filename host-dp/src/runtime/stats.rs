//! The runtime's counters: atomics the workers bump, and a copy read at one moment.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one runtime (relaxed; read any time).
#[derive(Debug, Default)]
pub struct RuntimeStats {
    /// Yields at preempt points.
    pub preemptions: AtomicU64,
    /// Decisions applied.
    pub committed: AtomicU64,
    /// Decisions refused because the task had changed since (never applied).
    pub stale: AtomicU64,
    /// Decisions refused as invalid (unknown task, another worker, bad record).
    pub rejected: AtomicU64,
    /// Task runs taken from the local queue.
    pub local_runs: AtomicU64,
    /// Events sent to the agent.
    pub events: AtomicU64,
    /// Switches to local scheduling after the agent was lost.
    pub fallbacks: AtomicU64,
    /// Agents attached again after a fallback.
    pub reattaches: AtomicU64,
    /// Nanoseconds workers spent on scheduling work (choosing, committing, reporting), summed
    /// over workers; measured under an agent only.
    pub sched_ns: AtomicU64,
}

/// A copy of a runtime's counters at one moment ([`RuntimeStats`], read).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SchedCounters {
    /// Yields at preempt points.
    pub preemptions: u64,
    /// Decisions applied.
    pub committed: u64,
    /// Decisions refused because the task had changed since.
    pub stale: u64,
    /// Decisions refused as invalid.
    pub rejected: u64,
    /// Task runs taken from the local queue.
    pub local_runs: u64,
    /// Events sent to the agent.
    pub events: u64,
    /// Switches to local scheduling after the agent was lost.
    pub fallbacks: u64,
    /// Agents attached again after a fallback.
    pub reattaches: u64,
    /// Nanoseconds workers spent on scheduling work.
    pub sched_ns: u64,
}

impl RuntimeStats {
    /// The counters now.
    pub fn read(&self) -> SchedCounters {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SchedCounters {
            preemptions: get(&self.preemptions),
            committed: get(&self.committed),
            stale: get(&self.stale),
            rejected: get(&self.rejected),
            local_runs: get(&self.local_runs),
            events: get(&self.events),
            fallbacks: get(&self.fallbacks),
            reattaches: get(&self.reattaches),
            sched_ns: get(&self.sched_ns),
        }
    }

    pub(super) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}
