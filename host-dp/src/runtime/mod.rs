//! The host runtime: N pinned worker threads that poll async tasks, kernel-bypass style (they
//! spin on memory and never block across cores; idle workers back off to a bounded sleep).
//!
//! Who decides which task runs where:
//! - **local** ([`Runtime::start`]): the workers share one bounded run queue in arrival order
//!   (centralized FIFO), with an optional time slice after which [`preempt_point`] yields;
//! - **agent** ([`Runtime::start_with_agent`]): a scheduling policy in `ipu-cp` (offloaded,
//!   over memfd) or in an agent thread of this process (on-host, heap transport) decides. The
//!   workers report task and worker events through `link` and run what the agent's decisions
//!   name, from their decision rings and prestage slots, after checking each decision's
//!   barrier; a stale one is counted and never applied. If the agent dies, the runtime falls
//!   back to local scheduling within its liveness bound, and returns to the agent when a new
//!   one can be attached.
//!
//! Invariants: a task runs only after a compare-and-swap from QUEUED at its current sequence
//! (see `task.rs`), so it runs on one worker at a time and never after it finished, whatever
//! mix of decisions, local queueing and mode switches led there; it is in the local queue at
//! most once; and it is dropped right after it completes.

mod agent;
mod join;
mod local;
mod registry;
mod stats;
mod task;
mod timer;
mod worker;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle as ThreadHandle;

use link::liveness::Heartbeat;
use link::proto::TaskChange;
use link::ring::Producer;
use link::{HostWorker, MonoNanos};

pub use agent::{AgentChannel, AgentOptions, LinkRefused, Reattach};
pub use join::JoinHandle;
pub use local::LocalPolicy;
use registry::Registry;
pub use stats::{RuntimeStats, SchedCounters};
use task::Task;
pub use timer::{Sleep, sleep, sleep_until};
pub use worker::preempt_point;

/// How to build a runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Worker threads.
    pub workers: usize,
    /// CPU for each worker (same length as `workers`), or none to leave placement to the OS.
    pub cpus: Option<Vec<usize>>,
    /// Most tasks alive at once.
    pub tasks_max: usize,
    /// Time slice of local scheduling after which [`preempt_point`] yields; 0: never. (Under
    /// an agent, each decision carries its own slice.)
    pub slice_ns: u64,
    /// Idle workers spin and never sleep: for dedicated cores, where a sleep would cost the
    /// next arrival its length. Off: spin for 2 ms of idleness, yield until 4 ms, then sleep
    /// 50 µs at a time.
    pub spin_when_idle: bool,
    /// How tasks are queued when no agent decides (local mode and fallback).
    pub local_policy: LocalPolicy,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            workers: 1,
            cpus: None,
            tasks_max: 1 << 16,
            slice_ns: 0,
            spin_when_idle: false,
            local_policy: LocalPolicy::SharedFifo,
        }
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

/// Who schedules now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Scheduler {
    /// The local run queue, by design (no agent).
    Local = 0,
    /// The agent's decisions.
    Agent = 1,
    /// The local run queue, because the agent died or left; waiting to re-attach.
    Fallback = 2,
}

/// A worker's new lane and the link generation it belongs to, left by a re-attach.
type Mailbox = Mutex<Option<(u64, HostWorker)>>;

pub(crate) struct Shared {
    registry: Registry,
    local: local::LocalQueues,
    stop: AtomicBool,
    mode: AtomicU8,
    stats: RuntimeStats,
    slice_ns: u64,
    spin_when_idle: bool,
    /// The agent lane for events raised outside the workers (spawns and wakes from other
    /// threads); `None` without an agent.
    submit: Mutex<Option<Producer>>,
    /// Bumped each time a new agent link is installed.
    link_generation: AtomicU64,
    /// Where a re-attach leaves each worker's new lane (with its link generation).
    mailboxes: Box<[Mailbox]>,
    /// Our heartbeat to the agent, beaten by whichever thread comes by (`None`: no agent).
    heartbeat: Mutex<Option<Heartbeat>>,
    /// When it was last beaten (`MonoNanos`), so pollers skip the lock while not due.
    last_beat_ns: AtomicU64,
    /// Where work comes from besides `spawn`, polled by the workers.
    ingress: OnceLock<Arc<dyn Ingress>>,
    timers: timer::Timers,
}

/// A source of work the workers poll, the way a kernel-bypass server polls a NIC receive
/// queue: between tasks and at preempt points (so arrivals reach the scheduler while a long
/// task runs). It spawns what arrived through the handle and must not block.
pub trait Ingress: Send + Sync {
    /// Polls for arrivals on `worker`; returns how many tasks it spawned.
    fn poll(&self, worker: usize, handle: &Handle) -> usize;
}

/// Spawns tasks into a runtime from anywhere (inside tasks, an ingress, other threads).
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("mode", &self.shared.scheduler()).finish()
    }
}

impl Handle {
    /// Spawns a task; its output arrives through the handle.
    pub fn spawn<F>(&self, future: F) -> Result<JoinHandle<F::Output>, RuntimeError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_on(&self.shared, future)
    }

    pub(crate) fn poll_ingress(&self, worker: usize) {
        if let Some(ingress) = self.shared.ingress.get() {
            ingress.poll(worker, self);
        }
    }
}

impl Shared {
    fn new(config: &RuntimeConfig, mode: Scheduler) -> Shared {
        Shared {
            registry: Registry::new(config.tasks_max),
            local: local::LocalQueues::new(config.local_policy),
            stop: AtomicBool::new(false),
            mode: AtomicU8::new(mode as u8),
            stats: RuntimeStats::default(),
            slice_ns: config.slice_ns,
            spin_when_idle: config.spin_when_idle,
            submit: Mutex::new(None),
            link_generation: AtomicU64::new(0),
            mailboxes: (0..config.workers).map(|_| Mutex::new(None)).collect(),
            heartbeat: Mutex::new(None),
            last_beat_ns: AtomicU64::new(0),
            ingress: OnceLock::new(),
            timers: timer::Timers::new(),
        }
    }

    /// Beats our heartbeat if due (cheap when not: one relaxed load).
    pub(crate) fn beat(&self, now: MonoNanos) {
        const DUE_NS: u64 = 50_000;
        if now.0.saturating_sub(self.last_beat_ns.load(Ordering::Relaxed)) < DUE_NS {
            return;
        }
        if let Ok(mut heartbeat) = self.heartbeat.try_lock() {
            self.last_beat_ns.store(now.0, Ordering::Relaxed);
            if let Some(heartbeat) = heartbeat.as_mut() {
                heartbeat.beat(now);
            }
        }
    }

    pub(crate) fn scheduler(&self) -> Scheduler {
        // SeqCst: pairs with the task-state CAS in the fallback argument (switch_to_local).
        match self.mode.load(Ordering::SeqCst) {
            1 => Scheduler::Agent,
            2 => Scheduler::Fallback,
            _ => Scheduler::Local,
        }
    }

    /// A task became QUEUED at `seq`: tell the agent, or queue it locally.
    pub(crate) fn became_runnable(&self, task: &Arc<Task>, seq: u64, change: TaskChange) {
        if self.scheduler() == Scheduler::Agent && worker::report(self, change, task.id(), seq) {
            return;
        }
        self.push_local(task);
    }

    /// Queues `task` locally unless it is queued there already (on this worker's own deque
    /// when the local policy has them and this is one of our workers).
    pub(crate) fn push_local(&self, task: &Arc<Task>) {
        if task.mark_local_queued() && !worker::push_own(self, task) {
            self.local.push(task.clone(), None);
        }
    }

    /// The agent is gone: from now on tasks are queued locally, and every task waiting for a
    /// decision is queued locally now.
    ///
    /// Why none is missed: this stores the mode, then reads every task's state; a thread that
    /// makes a task QUEUED does so by a CAS, then reads the mode. All four are SeqCst, so one
    /// of the two sides sees the other's write, and queues the task (twice is harmless: the
    /// local-queue flag keeps one entry, and running needs the CAS from QUEUED).
    fn switch_to_local(&self) {
        self.mode.store(Scheduler::Fallback as u8, Ordering::SeqCst);
        self.registry.for_each(|task| {
            if task.snapshot().1 == task::Phase::Queued {
                self.push_local(task);
            }
        });
    }
}

/// A running runtime. Dropping it stops the workers (tasks not finished are dropped).
pub struct Runtime {
    shared: Arc<Shared>,
    workers: Vec<ThreadHandle<()>>,
    monitor: Option<ThreadHandle<()>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.workers.len())
            .field("mode", &self.shared.scheduler())
            .finish()
    }
}

impl Runtime {
    /// Starts the workers under local scheduling.
    pub fn start(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        check(&config)?;
        let shared = Arc::new(Shared::new(&config, Scheduler::Local));
        let lanes = (0..config.workers).map(|_| None).collect();
        let options = agent::LaneOptions { prefetch: false, tick_ns: 0 };
        let workers = worker::start_all(&shared, &config, lanes, options)?;
        Ok(Runtime { shared, workers, monitor: None })
    }

    /// Starts the workers under the agent at the other end of `options.link`, whose channel
    /// must have one lane per worker plus one (the last) for events raised off the workers.
    pub fn start_with_agent(
        config: RuntimeConfig,
        options: AgentOptions,
    ) -> Result<Runtime, RuntimeError> {
        check(&config)?;
        let lanes = options.link.end.workers.len();
        if lanes != config.workers + 1 {
            return Err(RuntimeError::Config("the agent channel needs workers + 1 lanes"));
        }
        let shared = Arc::new(Shared::new(&config, Scheduler::Agent));
        let (lanes, monitor, options) = agent::split(options, &shared);
        let workers = worker::start_all(&shared, &config, lanes, options)?;
        let monitor = agent::start_monitor(monitor, &shared)?;
        Ok(Runtime { shared, workers, monitor: Some(monitor) })
    }

    /// Spawns a task; its output arrives through the handle.
    pub fn spawn<F>(&self, future: F) -> Result<JoinHandle<F::Output>, RuntimeError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_on(&self.shared, future)
    }

    /// Who schedules now.
    pub fn scheduler(&self) -> Scheduler {
        self.shared.scheduler()
    }

    /// A handle that spawns into this runtime.
    pub fn handle(&self) -> Handle {
        Handle { shared: self.shared.clone() }
    }

    /// Has the workers poll `ingress` from now on. Once per runtime: false if one is set.
    pub fn set_ingress(&self, ingress: Arc<dyn Ingress>) -> bool {
        self.shared.ingress.set(ingress).is_ok()
    }

    /// The counters.
    pub fn stats(&self) -> &RuntimeStats {
        &self.shared.stats
    }

    /// A copy of the counters now.
    pub fn counters(&self) -> SchedCounters {
        self.shared.stats.read()
    }

    /// Yields at preempt points so far.
    pub fn preemptions(&self) -> u64 {
        self.shared.stats.preemptions.load(Ordering::Relaxed)
    }

    /// Tasks spawned and not finished.
    pub fn tasks_alive(&self) -> u64 {
        self.shared.registry.live() as u64
    }
}

fn check(config: &RuntimeConfig) -> Result<(), RuntimeError> {
    if config.workers == 0 || config.tasks_max == 0 {
        return Err(RuntimeError::Config("need at least one worker and one task"));
    }
    if config.workers >= usize::from(u16::MAX) || config.tasks_max > 1 << 30 {
        return Err(RuntimeError::Config("too many workers or tasks"));
    }
    if config.cpus.as_ref().is_some_and(|cpus| cpus.len() != config.workers) {
        return Err(RuntimeError::Config("cpus must name one CPU per worker"));
    }
    Ok(())
}

fn spawn_on<F>(shared: &Arc<Shared>, future: F) -> Result<JoinHandle<F::Output>, RuntimeError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (handle, completer) = join::pair();
    let body = async move { completer.complete(future.await) };
    let task = shared
        .registry
        .insert(|id| Task::new(id, shared.clone(), body))
        .ok_or(RuntimeError::Full)?;
    shared.became_runnable(&task, 1, TaskChange::New);
    Ok(handle)
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        if let Some(monitor) = self.monitor.take() {
            let _ = monitor.join();
        }
        self.shared.local.clear(); // drop what never ran
        // Tasks hold the shared state (their futures do, through handles and sockets) and the
        // shared state holds tasks (the registry; wakers in timers and sockets): break the
        // cycle by dropping every unfinished future, then the registry's entries and the
        // timers' wakers.
        let mut unfinished = Vec::new();
        self.shared.registry.for_each(|task| unfinished.push(task.clone()));
        for task in &unfinished {
            task.drop_future();
        }
        for task in unfinished {
            self.shared.registry.remove(task.id());
        }
        self.shared.timers.clear();
    }
}

#[cfg(test)]
mod tests;
