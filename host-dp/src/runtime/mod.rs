//! The host runtime: N pinned worker threads that poll async tasks, kernel-bypass style (they
//! spin on memory and never block across cores; idle workers back off to a bounded sleep).
//!
//! This is the *local* mode: one shared, bounded run queue in arrival order (centralized
//! FIFO), with an optional time slice after which [`preempt_point`] yields (cooperative
//! preemption). The offloaded and on-host modes, where `ipu-cp`'s scheduling policy decides
//! through `link`, build on these same workers and tasks.
//!
//! Invariants: a task is in the run queue at most once (its `queued` flag), is polled by at
//! most one worker at a time (its future sits behind a `try_lock`: a worker that finds it
//! busy re-queues it instead of waiting), and is dropped right after it completes.

mod join;
mod task;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle as ThreadHandle;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

pub use join::JoinHandle;
use task::Task;

/// How to build a runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Worker threads.
    pub workers: usize,
    /// CPU for each worker (same length as `workers`), or none to leave placement to the OS.
    pub cpus: Option<Vec<usize>>,
    /// Most tasks alive at once (the run queue's bound).
    pub tasks_max: usize,
    /// Time slice after which [`preempt_point`] yields; 0: never (run to completion).
    pub slice_ns: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { workers: 1, cpus: None, tasks_max: 1 << 16, slice_ns: 0 }
    }
}

/// Why a runtime could not start or a task could not be spawned.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The config is out of bounds.
    #[error("invalid runtime config: {0}")]
    Config(&'static str),
    /// A worker thread could not start or be pinned.
    #[error("worker {worker}: {source}")]
    Worker {
        /// Which worker.
        worker: usize,
        /// Why.
        source: std::io::Error,
    },
    /// `tasks_max` tasks are alive: spawn later (backpressure, nothing was lost).
    #[error("task limit reached")]
    Full,
}

pub(crate) struct Shared {
    queue: ArrayQueue<Arc<Task>>,
    stop: AtomicBool,
    alive: AtomicU64,
    next_id: AtomicU64,
    preemptions: AtomicU64,
    slice_ns: u64,
}

impl Shared {
    /// Queues a task that is not queued yet. Never fails: at most `tasks_max` tasks exist and
    /// each is queued at most once.
    fn enqueue(&self, task: Arc<Task>) {
        if task.mark_queued() {
            let pushed = self.queue.push(task);
            debug_assert!(pushed.is_ok(), "run queue holds every live task");
        }
    }
}

/// A running runtime. Dropping it stops the workers (tasks still queued are dropped).
pub struct Runtime {
    shared: Arc<Shared>,
    workers: Vec<ThreadHandle<()>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("workers", &self.workers.len()).finish()
    }
}

impl Runtime {
    /// Starts the workers.
    pub fn start(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        if config.workers == 0 || config.tasks_max == 0 {
            return Err(RuntimeError::Config("need at least one worker and one task"));
        }
        if config.cpus.as_ref().is_some_and(|cpus| cpus.len() != config.workers) {
            return Err(RuntimeError::Config("cpus must name one CPU per worker"));
        }
        let shared = Arc::new(Shared {
            queue: ArrayQueue::new(config.tasks_max),
            stop: AtomicBool::new(false),
            alive: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
            slice_ns: config.slice_ns,
        });
        let mut workers = Vec::with_capacity(config.workers);
        for worker in 0..config.workers {
            let cpu = config.cpus.as_ref().map(|cpus| cpus[worker]);
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("wave-worker-{worker}"))
                .spawn(move || worker_loop(&shared, cpu))
                .map_err(|source| RuntimeError::Worker { worker, source })?;
            workers.push(handle);
        }
        Ok(Runtime { shared, workers })
    }

    /// Spawns a task; its output arrives through the handle.
    pub fn spawn<F>(&self, future: F) -> Result<JoinHandle<F::Output>, RuntimeError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_on(&self.shared, future)
    }

    /// Yields at preempt points so far.
    pub fn preemptions(&self) -> u64 {
        self.shared.preemptions.load(Ordering::Relaxed)
    }

    /// Tasks spawned and not finished.
    pub fn tasks_alive(&self) -> u64 {
        self.shared.alive.load(Ordering::Acquire)
    }
}

fn spawn_on<F>(shared: &Arc<Shared>, future: F) -> Result<JoinHandle<F::Output>, RuntimeError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let capacity = shared.queue.capacity() as u64;
    // Reserve a slot first, so the queue can always take every live task.
    if shared.alive.fetch_add(1, Ordering::AcqRel) >= capacity {
        shared.alive.fetch_sub(1, Ordering::AcqRel);
        return Err(RuntimeError::Full);
    }
    let (handle, completer) = join::pair();
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let task = Task::new(id, shared.clone(), async move { completer.complete(future.await) });
    shared.enqueue(task);
    Ok(handle)
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        while self.shared.queue.pop().is_some() {} // drop what never ran
    }
}

fn worker_loop(shared: &Arc<Shared>, cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        let mut set = nix::sched::CpuSet::new();
        let pinned = set
            .set(cpu)
            .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set));
        assert!(pinned.is_ok(), "cannot pin worker to CPU {cpu}");
    }
    let mut idle_polls = 0u32;
    while !shared.stop.load(Ordering::Acquire) {
        let Some(task) = shared.queue.pop() else {
            idle_polls = idle_polls.saturating_add(1);
            backoff(idle_polls);
            continue;
        };
        idle_polls = 0;
        task::run(&task, shared);
    }
}

/// Spin, then yield, then sleep at most 50 µs: idle workers leave a 2-vCPU machine usable.
fn backoff(idle_polls: u32) {
    if idle_polls < 1_000 {
        std::hint::spin_loop();
    } else if idle_polls < 1_100 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// A point where a long-running task offers the CPU: yields once if the task has run longer
/// than the runtime's time slice, otherwise returns at once.
pub async fn preempt_point() {
    if task::slice_expired() {
        YieldNow { yielded: false }.await;
    }
}

/// Returns `Pending` once (after waking itself), so the task goes to the back of the queue.
struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.yielded {
            return std::task::Poll::Ready(());
        }
        self.yielded = true;
        task::note_preempted();
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

#[cfg(test)]
mod tests;
