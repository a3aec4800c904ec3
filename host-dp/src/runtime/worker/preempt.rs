//! Preempt points: where a running task offers the CPU. Under an agent a preempt point is
//! also where the worker hears from it while a task runs: a preemption aimed at the task, a
//! tick owed to the policy, decisions read ahead (prefetching), and new arrivals from the
//! ingress, so they reach the scheduler without waiting for the task to end.

use std::time::Instant;

use link::MonoNanos;
use link::proto::Barrier;

use super::{Ctx, Origin, SLICE, nanos, poll_ingress, with_ctx};
use crate::runtime::{RuntimeStats, Scheduler};

impl Ctx {
    /// At a preempt point of the running task: tick, look for a preemption, and (with
    /// prefetching) read decisions ahead. True: yield now.
    fn at_preempt_point(&mut self, now: Instant) -> bool {
        let (tick_ns, prefetch) = (self.options.tick_ns, self.options.prefetch);
        let Some(running) = self.running.as_mut() else { return false };
        if running.origin == Origin::Local || self.shared.scheduler() != Scheduler::Agent {
            return false;
        }
        let tick = tick_ns > 0 && nanos(now - running.last_tick) >= tick_ns;
        let report = (running.task, Barrier(running.seq), nanos(now - running.started));
        if tick {
            running.last_tick = now;
        }
        self.now = MonoNanos::now();
        if tick {
            self.report_worker(Some((report.0, report.1)), report.2);
            self.flush_overflow();
        }
        if prefetch || tick {
            self.read_decisions();
        }
        self.running.as_ref().is_some_and(|r| r.preempt)
    }
}

/// A point where a long-running task offers the CPU. It yields if the task used up its time
/// slice or the agent asked to preempt it; otherwise it returns at once. Off a worker thread
/// it does nothing.
pub async fn preempt_point() {
    let Some((started, slice_ns)) = SLICE.get() else { return };
    poll_ingress();
    let now = Instant::now();
    let expired = slice_ns > 0 && nanos(now - started) >= slice_ns;
    let asked = !expired && with_ctx(|ctx| ctx.at_preempt_point(now)) == Some(true);
    if expired || asked {
        YieldNow { yielded: false }.await;
    }
}

/// Returns `Pending` once (after waking itself), so the task goes back to be scheduled.
struct YieldNow {
    yielded: bool,
}

impl std::future::Future for YieldNow {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.yielded {
            return std::task::Poll::Ready(());
        }
        self.yielded = true;
        let counted = with_ctx(|ctx| RuntimeStats::add(&ctx.shared.stats.preemptions, 1));
        debug_assert!(
            counted.is_some(),
            "preempt points run on workers, outside the loop's borrow"
        );
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}
