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
    Barrier, Direction, Epoch, Message, Record, RunRepr, TaskChange, TaskEventRepr, TaskId,
    TxnOutcome, WorkerEventRepr, WorkerId,
};
use link::{HostWorker, MonoNanos};

mod preempt;

pub use preempt::preempt_point;

use super::agent::LaneOptions;
use super::task::{Outcome, Task};
use super::{Handle, Mode, RuntimeConfig, RuntimeError, RuntimeStats, Shared};

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
    for (index, lane) in lanes.into_iter().enumerate() {
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
    let mut idle_polls = 0u32;
    while !shared.stop.load(Ordering::Acquire) {
        poll_ingress();
        let Some((task, slice_ns)) = CTX.with_borrow_mut(|c| c.as_mut().map(Ctx::next)).flatten()
        else {
            idle_polls = idle_polls.saturating_add(1);
            backoff(if shared.spin_when_idle { 0 } else { idle_polls });
            continue;
        };
        idle_polls = 0;
        let started = Instant::now();
        SLICE.set(Some((started, slice_ns)));
        let outcome = task.poll();
        SLICE.set(None);
        CTX.with_borrow_mut(|c| c.as_mut().expect("worker context").finish(&task, outcome));
    }
    CTX.take(); // drop the lane and queued events on this thread
    WORKER.take();
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

impl Ctx {
    /// The next task to poll, moved to RUNNING, with its time slice.
    fn next(&mut self) -> Option<(Arc<Task>, u64)> {
        let shared = self.shared.clone();
        let sched_start = Instant::now();
        self.now = MonoNanos::now();
        shared.beat(self.now);
        self.install_new_lane();
        self.flush_overflow();
        let mut picked = None;
        if shared.mode() == Mode::Agent && self.lane.is_some() {
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
            RuntimeStats::add(&shared.stats.sched_ns, elapsed_ns(sched_start));
        }
        Some((task, slice_ns))
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
        let agent = shared.mode() == Mode::Agent && self.lane.is_some();
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
            (false, _, Outcome::Runnable(_)) => shared.push_local(task),
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

    fn read_decisions(&mut self) {
        let Some(lane) = self.lane.as_mut() else { return };
        let mut rejected = 0;
        for _ in 0..DECISION_BATCH {
            let Some(record) = lane.decisions.try_pop(self.now) else { break };
            match Message::parse_in(&record, Direction::Decision) {
                Ok(Message::Run(run)) => {
                    let task = self.options.prefetch.then(|| self.shared.registry.get(run.task));
                    self.ahead.push_back(Ahead { run, task: task.flatten() });
                }
                Ok(Message::Preempt(preempt)) => {
                    let current = self
                        .running
                        .as_mut()
                        .filter(|r| r.task == preempt.task && Barrier(r.seq) == preempt.barrier);
                    match current {
                        Some(running) => running.preempt = true,
                        None => RuntimeStats::add(&self.shared.stats.stale, 1),
                    }
                }
                _ => rejected += 1,
            }
        }
        RuntimeStats::add(&self.shared.stats.rejected, rejected);
    }

    /// Commits the oldest ring decision that still holds; reports idle if none did and
    /// nothing else is coming.
    fn pick_decision(&mut self) -> Option<(Arc<Task>, Origin, u64)> {
        let mut failed = false;
        while let Some(Ahead { run, task }) = self.ahead.pop_front() {
            match self.commit(&run, task) {
                Ok(task) => return Some((task, Origin::Decision(self.generation), run.slice_ns)),
                Err(_) => failed = true,
            }
        }
        if failed {
            // The agent counted this worker busy with the failed decision: free it.
            self.report_worker(None, 0);
        }
        None
    }

    fn pick_prestaged(&mut self) -> Option<(Arc<Task>, Origin, u64)> {
        for _ in 0..4 {
            let lane = self.lane.as_mut()?;
            let claim = lane.slots.try_claim()?;
            let parsed = Message::parse_in(&claim.decision, Direction::Decision);
            let (outcome, picked, barrier) = match parsed {
                Ok(Message::Run(run)) => match self.commit(&run, None) {
                    Ok(task) => (TxnOutcome::Committed, Some((task, run.slice_ns)), run.barrier),
                    Err(outcome) => (outcome, None, run.barrier),
                },
                _ => {
                    RuntimeStats::add(&self.shared.stats.rejected, 1);
                    (TxnOutcome::Rejected, None, Barrier(0))
                }
            };
            let lane = self.lane.as_mut().expect("checked above");
            let result = lane.slots.resolve(claim, outcome, barrier);
            self.push_event(&Message::TxnResult(result).to_record(HOST_EPOCH));
            if let Some((task, slice_ns)) = picked {
                return Some((task, Origin::Decision(self.generation), slice_ns));
            }
        }
        None
    }

    fn pick_local(&mut self) -> Option<(Arc<Task>, Origin, u64)> {
        for _ in 0..LOCAL_SKIPS {
            let task = self.shared.local.pop()?;
            task.clear_local_queued();
            let (seq, _) = task.snapshot();
            if task.try_start(seq) {
                RuntimeStats::add(&self.shared.stats.local_runs, 1);
                return Some((task, Origin::Local, self.shared.slice_ns));
            }
        }
        None
    }

    /// The barrier check: the decision applies only to a live task of ours, aimed at this
    /// worker, still QUEUED at the decision's sequence.
    fn commit(&self, run: &RunRepr, task: Option<Arc<Task>>) -> Result<Arc<Task>, TxnOutcome> {
        let stats = &self.shared.stats;
        let task = task.or_else(|| self.shared.registry.get(run.task));
        let Some(task) = task.filter(|t| t.id() == run.task && run.worker == self.worker) else {
            RuntimeStats::add(&stats.rejected, 1);
            return Err(TxnOutcome::Rejected);
        };
        if task.try_start(run.barrier.0) {
            RuntimeStats::add(&stats.committed, 1);
            Ok(task)
        } else {
            RuntimeStats::add(&stats.stale, 1);
            Err(TxnOutcome::Stale)
        }
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

/// Sends a task event to the agent from wherever this runs: the worker's own lane on a
/// worker of this runtime, else the shared submit lane, waiting while that lane is full
/// (backpressure on spawners outside the runtime). False if there is no agent to tell (the
/// caller then queues the task locally).
pub(super) fn report(shared: &Shared, change: TaskChange, task: TaskId, seq: u64) -> bool {
    let own = with_ctx(|ctx| {
        let ours = std::ptr::eq(Arc::as_ptr(&ctx.shared), shared) && ctx.lane.is_some();
        let current = ours && shared.link_generation.load(Ordering::Acquire) == ctx.generation;
        if current {
            ctx.now = MonoNanos::now();
            ctx.push_event(&task_event(change, task, seq, ctx.worker, 0));
        }
        current
    });
    if own == Some(true) {
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
        if shared.mode() != Mode::Agent || shared.stop.load(Ordering::Acquire) {
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
