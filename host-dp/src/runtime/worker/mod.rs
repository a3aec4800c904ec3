//! The worker loop and the mechanism side of scheduling: choose the next task (the agent's
//! ring decisions, then its prestaged slots, then the local queue), commit it by the barrier
//! check, poll it, report what became of it. Preempt points run here too.
//!
//! Each worker keeps its state in a thread-local context. The loop borrows it only between
//! polls, so code running inside a poll (a waker, a preempt point) can borrow it; where it
//! cannot (a waker run while the context is borrowed, or on another runtime's thread) the
//! event goes through the shared submit lane, or the task through the local queue.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use link::proto::{
    Barrier, Epoch, Message, Record, RunRepr, TaskChange, TaskEventRepr, TaskId, WorkerEventRepr,
    WorkerId,
};
use link::{HostWorker, MonoNanos};

mod pick;
mod preempt;

pub use preempt::preempt_point;

use super::agent::LaneOptions;
use super::task::{Outcome, Task};
use super::{Handle, RuntimeConfig, RuntimeError, RuntimeStats, Scheduler, Shared};

/// Most decisions read from the ring per look.
const DECISION_BATCH: usize = 16;
/// Most local-queue entries skipped (already running elsewhere) per pick.
const LOCAL_SKIPS: usize = 64;
/// Events carry no epoch meaning host → agent; a fixed one keeps records canonical.
const HOST_EPOCH: Epoch = Epoch(1);

/// A decision read ahead of use, with the task it names when prefetched.
struct Ahead {
    run: RunRepr,
    task: Option<Arc<Task>>,
}

/// Where the running task came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A decision of the agent on link generation `.0`.
    Decision(u64),
    /// The local queue.
    Local,
}

struct Running {
    task: TaskId,
    seq: u64,
    origin: Origin,
    started: Instant,
    last_tick: Instant,
    preempt: bool,
}

struct Ctx {
    shared: Arc<Shared>,
    worker: WorkerId,
    lane: Option<HostWorker>,
    generation: u64,
    options: LaneOptions,
    /// Events that found the lane full, sent first next time (order kept).
    overflow: VecDeque<Record>,
    ahead: VecDeque<Ahead>,
    running: Option<Running>,
    /// This worker's local deque (work-stealing local policy only).
    deque: Option<crossbeam_deque::Worker<Arc<Task>>>,
    /// Stamps records for the ring's delay emulation.
    now: MonoNanos,
}

thread_local! {
    static CTX: RefCell<Option<Ctx>> = const { RefCell::new(None) };
    /// Set while a worker polls a task: the task's start and slice (for preempt points).
    static SLICE: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
    /// This worker's index and a handle to its runtime, for polling the ingress.
    static WORKER: RefCell<Option<(usize, Handle)>> = const { RefCell::new(None) };
}

/// Runs `f` on the timers of the runtime this worker belongs to; false off a worker.
/// The handle of the runtime whose worker this thread is, if it is one.
pub(super) fn current_handle() -> Option<Handle> {
    WORKER
        .try_with(|worker| match worker.try_borrow().ok().as_deref() {
            Some(Some((_, handle))) => Some(handle.clone()),
            _ => None,
        })
        .ok()
        .flatten()
}

/// Polls the runtime's ingress from this worker, if it has one (outside any context borrow:
/// what it spawns reports through the context).
fn poll_ingress() {
    let _ = WORKER.try_with(|worker| {
        if let Ok(worker) = worker.try_borrow()
            && let Some((index, handle)) = worker.as_ref()
        {
            handle.poll_ingress(*index);
        }
    });
}

/// Runs `f` on this thread's worker context, if it is a worker and the context is not
/// borrowed already (a waker running inside the loop's own borrow).
fn with_ctx<R>(f: impl FnOnce(&mut Ctx) -> R) -> Option<R> {
    CTX.try_with(|cell| cell.try_borrow_mut().ok().and_then(|mut ctx| ctx.as_mut().map(f)))
        .ok()
        .flatten()
}

pub(super) fn start_all(
    shared: &Arc<Shared>,
    config: &RuntimeConfig,
    lanes: Vec<Option<HostWorker>>,
    options: LaneOptions,
) -> Result<Vec<ThreadHandle<()>>, RuntimeError> {
    let mut handles = Vec::with_capacity(config.workers);
    let deques = shared.local.deques(config.workers);
    for (index, (lane, deque)) in lanes.into_iter().zip(deques).enumerate() {
        let cpu = config.cpus.as_ref().map(|cpus| cpus[index]);
        let ctx = Ctx {
            shared: shared.clone(),
            worker: WorkerId(u16::try_from(index).expect("checked: fewer than u16::MAX")),
            lane,
            generation: 0,
            options,
            overflow: VecDeque::new(),
            ahead: VecDeque::with_capacity(DECISION_BATCH),
            running: None,
            deque,
            now: MonoNanos::now(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("wave-worker-{index}"))
            .spawn(move || worker_loop(ctx, cpu))
            .map_err(|source| RuntimeError::Worker { worker: index, source })?;
        handles.push(handle);
    }
    Ok(handles)
}

fn worker_loop(mut ctx: Ctx, cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        let mut set = nix::sched::CpuSet::new();
        let pinned = set
            .set(cpu)
            .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set));
        assert!(pinned.is_ok(), "cannot pin worker to CPU {cpu}");
    }
    ctx.report_worker(None, 0); // the agent hears of this worker: idle
    let shared = ctx.shared.clone();
    WORKER.set(Some((usize::from(ctx.worker.0), Handle { shared: shared.clone() })));
    CTX.set(Some(ctx));
    // Since when this worker found nothing to run (None: it ran a task last time round).
    let mut idle_since: Option<MonoNanos> = None;
    while !shared.stop.load(Ordering::Acquire) {
        if shared.timers.due() {
            shared.timers.fire();
        }
        poll_ingress();
        let picked = CTX.with_borrow_mut(|c| c.as_mut().map(Ctx::next)).flatten();
        let Some((task, started, slice_ns)) = picked else {
            if shared.spin_when_idle {
                std::hint::spin_loop();
            } else {
                let now = MonoNanos::now();
                backoff(now.since(*idle_since.get_or_insert(now)));
            }
            continue;
        };
        idle_since = None;
        SLICE.set(Some((started, slice_ns)));
        let outcome = task.poll();
        SLICE.set(None);
        CTX.with_borrow_mut(|c| c.as_mut().expect("worker context").finish(&task, outcome));
    }
    CTX.take(); // drop the lane and queued events on this thread
    WORKER.take();
}

/// An idle worker spins this long after its last task: an arrival within it pays no wakeup.
const IDLE_SPIN_NS: u64 = 2_000_000;
/// Then yields its core until this much idle time, then sleeps.
const IDLE_YIELD_NS: u64 = 4_000_000;

/// Spin, then yield, then sleep at most 50 µs at a time, by how long the worker has been idle
/// (`idle_ns`): idle workers leave a 2-vCPU machine usable. By time, not by poll count: how
/// long a poll takes depends on the stack and its connections.
fn backoff(idle_ns: u64) {
    if idle_ns < IDLE_SPIN_NS {
        std::hint::spin_loop();
    } else if idle_ns < IDLE_YIELD_NS {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(50));
    }
}

impl Ctx {
    /// The next task to poll, moved to RUNNING, with when its run starts and its time slice.
    fn next(&mut self) -> Option<(Arc<Task>, Instant, u64)> {
        let shared = self.shared.clone();
        self.now = MonoNanos::now();
        shared.beat(self.now);
        self.install_new_lane();
        self.flush_overflow();
        let mut picked = None;
        if shared.scheduler() == Scheduler::Agent && self.lane.is_some() {
            self.read_decisions();
            picked = self.pick_decision().or_else(|| self.pick_prestaged());
        }
        if picked.is_none() {
            picked = self.pick_local();
        }
        let (task, origin, slice_ns) = picked?;
        let (seq, _) = task.snapshot();
        let now = Instant::now();
        self.running = Some(Running {
            task: task.id(),
            seq,
            origin,
            started: now,
            last_tick: now,
            preempt: false,
        });
        if origin != Origin::Local {
            // Scheduling work on this core: from the start of this pick to the start of the run.
            RuntimeStats::add(&shared.stats.sched_ns, MonoNanos::now().since(self.now));
        }
        Some((task, now, slice_ns))
    }

    /// Reports what the poll left the task as, or queues it locally.
    fn finish(&mut self, task: &Arc<Task>, outcome: Outcome) {
        let start = Instant::now();
        self.now = MonoNanos::now();
        let running = self.running.take().expect("a task was running");
        let shared = self.shared.clone();
        if let Outcome::Done(_) = outcome {
            shared.registry.remove(task.id());
        }
        let (change, seq) = outcome.change_and_seq();
        let current = Origin::Decision(self.generation);
        let agent = shared.scheduler() == Scheduler::Agent && self.lane.is_some();
        match (agent, running.origin == current, outcome) {
            (true, true, _) => {
                let ran_ns = elapsed_ns(running.started);
                self.push_event(&task_event(change, task.id(), seq, self.worker, ran_ns));
                RuntimeStats::add(&shared.stats.sched_ns, elapsed_ns(start));
            }
            // Not handed out by this agent: it only needs to hear that the task is runnable.
            (true, false, Outcome::Runnable(_)) => {
                self.push_event(&task_event(TaskChange::Runnable, task.id(), seq, self.worker, 0));
            }
            (false, _, Outcome::Runnable(_)) if task.mark_local_queued() => {
                shared.local.push(task.clone(), self.deque.as_ref());
            }
            _ => {}
        }
    }

    fn install_new_lane(&mut self) {
        if self.shared.link_generation.load(Ordering::Acquire) == self.generation {
            return;
        }
        let mailbox = &self.shared.mailboxes[usize::from(self.worker.0)];
        let Some((generation, lane)) = mailbox.lock().expect("lane mailbox").take() else {
            return;
        };
        self.lane = Some(lane);
        self.generation = generation;
        self.overflow.clear(); // addressed to the lost agent
        self.ahead.clear(); // decisions of the lost agent: their tasks are queued locally
        self.report_worker(None, 0);
    }

    fn report_worker(&mut self, running: Option<(TaskId, Barrier)>, ran_ns: u64) {
        if self.lane.is_some() {
            let event = WorkerEventRepr { worker: self.worker, running, ran_ns };
            self.push_event(&Message::Worker(event).to_record(HOST_EPOCH));
        }
    }

    fn push_event(&mut self, record: &Record) {
        let Some(lane) = self.lane.as_mut() else { return };
        RuntimeStats::add(&self.shared.stats.events, 1);
        if !self.overflow.is_empty() || lane.events.try_push(record, self.now).is_err() {
            self.overflow.push_back(*record);
        }
    }

    fn flush_overflow(&mut self) {
        let Some(lane) = self.lane.as_mut() else { return };
        while let Some(record) = self.overflow.front() {
            if lane.events.try_push(record, self.now).is_err() {
                return;
            }
            self.overflow.pop_front();
        }
    }
}

fn task_event(change: TaskChange, task: TaskId, seq: u64, worker: WorkerId, ran: u64) -> Record {
    let event = TaskEventRepr { change, task, seq: Barrier(seq), worker, ran_ns: ran };
    Message::Task(event).to_record(HOST_EPOCH)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn elapsed_ns(since: Instant) -> u64 {
    nanos(since.elapsed())
}

/// Queues `task` (its local flag already claimed) on this thread's own deque, if this is a
/// worker of `shared`'s runtime with one and its context is free. False: use the injector.
pub(super) fn push_own(shared: &Shared, task: &Arc<Task>) -> bool {
    with_own_ctx(shared, |ctx| match ctx.deque.as_ref() {
        Some(deque) => {
            deque.push(task.clone());
            true
        }
        None => false,
    })
}

/// Runs `f` on this thread's worker context if it is a worker of `shared`'s runtime (a thread
/// may be a worker of another runtime) and the context is free; false otherwise.
fn with_own_ctx(shared: &Shared, f: impl FnOnce(&mut Ctx) -> bool) -> bool {
    with_ctx(|ctx| std::ptr::eq(Arc::as_ptr(&ctx.shared), shared) && f(ctx)) == Some(true)
}

/// Sends a task event to the agent from wherever this runs: the worker's own lane on a
/// worker of this runtime, else the shared submit lane, waiting while that lane is full
/// (backpressure on spawners outside the runtime). False if there is no agent to tell (the
/// caller then queues the task locally).
pub(super) fn report(shared: &Shared, change: TaskChange, task: TaskId, seq: u64) -> bool {
    let own = with_own_ctx(shared, |ctx| {
        let current =
            ctx.lane.is_some() && shared.link_generation.load(Ordering::Acquire) == ctx.generation;
        if current {
            ctx.now = MonoNanos::now();
            ctx.push_event(&task_event(change, task, seq, ctx.worker, 0));
        }
        current
    });
    if own {
        return true;
    }
    let record = task_event(change, task, seq, WorkerId(u16::MAX), 0);
    // Bounded by the agent draining the lane, or by the monitor declaring it lost (which
    // empties the lane slot and changes the mode).
    for attempt in 0u32.. {
        {
            let mut submit = shared.submit.lock().expect("submit lane");
            let Some(lane) = submit.as_mut() else { return false };
            if lane.try_push(&record, MonoNanos::now()).is_ok() {
                RuntimeStats::add(&shared.stats.events, 1);
                return true;
            }
        }
        if shared.scheduler() != Scheduler::Agent || shared.stop.load(Ordering::Acquire) {
            return false;
        }
        if attempt < 100 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    false
}
