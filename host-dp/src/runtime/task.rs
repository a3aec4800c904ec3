//! A task: its future behind a `try_lock`, a `queued` flag that keeps it in the run queue at
//! most once, and a waker (`std::task::Wake`) that queues it again.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::Instant;

use super::Shared;

type BoxedFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(crate) struct Task {
    /// Spawn order; for tracing and, later, the task id reported to the agent.
    #[expect(dead_code, reason = "reported to the agent once the offloaded mode lands")]
    id: u64,
    shared: Arc<Shared>,
    queued: AtomicBool,
    /// `None` once finished.
    future: Mutex<Option<BoxedFuture>>,
}

impl Task {
    pub(super) fn new(
        id: u64,
        shared: Arc<Shared>,
        future: impl Future<Output = ()> + Send + 'static,
    ) -> Arc<Task> {
        Arc::new(Task {
            id,
            shared,
            queued: AtomicBool::new(false),
            future: Mutex::new(Some(Box::pin(future))),
        })
    }

    /// Marks the task queued; false if it already was (then it must not be pushed again).
    pub(super) fn mark_queued(&self) -> bool {
        // AcqRel: pairs with the worker's Release clear before polling.
        !self.queued.swap(true, Ordering::AcqRel)
    }
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        let shared = self.shared.clone();
        shared.enqueue(self);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.enqueue(self.clone());
    }
}

thread_local! {
    /// When the task this worker polls started its current run, and the runtime's slice.
    static SLICE: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
    static PREEMPTED: Cell<u64> = const { Cell::new(0) };
}

/// Polls `task` once on this worker.
pub(super) fn run(task: &Arc<Task>, shared: &Shared) {
    // Release: a wake that sees `false` after this re-queues the task, so a wake during the
    // poll below is never lost.
    task.queued.store(false, Ordering::Release);
    let Ok(mut slot) = task.future.try_lock() else {
        // Another worker is still polling it (it was woken meanwhile): let that poll finish
        // and come back to it, rather than wait on another core.
        shared.enqueue(task.clone());
        return;
    };
    let Some(future) = slot.as_mut() else { return }; // finished already
    let waker = Waker::from(task.clone());
    let mut cx = Context::from_waker(&waker);
    // The clock is read only when a time slice is configured.
    if shared.slice_ns > 0 {
        SLICE.set(Some((Instant::now(), shared.slice_ns)));
    }
    let done = future.as_mut().poll(&mut cx).is_ready();
    SLICE.set(None);
    shared.preemptions.fetch_add(PREEMPTED.take(), Ordering::Relaxed);
    if done {
        *slot = None;
        shared.alive.fetch_sub(1, Ordering::AcqRel);
    }
}

/// True when the task running on this thread has used up its time slice.
pub(super) fn slice_expired() -> bool {
    SLICE.get().is_some_and(|(start, slice_ns)| {
        slice_ns > 0 && start.elapsed().as_nanos() >= u128::from(slice_ns)
    })
}

/// Counts a yield at a preempt point.
pub(super) fn note_preempted() {
    PREEMPTED.set(PREEMPTED.get() + 1);
}
