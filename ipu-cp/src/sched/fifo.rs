//! Centralized FIFO: one queue for every worker; a free worker takes the task that became
//! runnable first, which runs until it blocks, yields or finishes (no preemption). The ghOSt
//! "centralized FIFO" agent; the baseline the paper's Shinjuku comparison starts from.

use link::MonoNanos;
use link::proto::{Barrier, TaskId, TxnOutcome, WorkerId};

use super::central::Central;
use super::{SchedDecision, SchedPolicy};

/// The centralized FIFO policy.
#[derive(Debug, Default)]
pub struct Fifo {
    central: Central,
}

impl Fifo {
    /// A policy that stages `depth` tasks per worker behind the running one.
    pub fn new(depth: u16) -> Fifo {
        Fifo { central: Central::new(depth) }
    }
}

impl SchedPolicy for Fifo {
    fn name(&self) -> &'static str {
        "fifo"
    }
    fn on_task_new(&mut self, task: TaskId, seq: Barrier, _now: MonoNanos) {
        self.central.runnable(task, seq);
    }
    fn on_task_runnable(&mut self, task: TaskId, seq: Barrier, _now: MonoNanos) {
        self.central.runnable(task, seq);
    }
    fn on_task_blocked(&mut self, task: TaskId, seq: Barrier, worker: WorkerId, _now: MonoNanos) {
        self.central.blocked(task, seq);
        self.central.left_worker(worker);
    }
    fn on_task_preempted(&mut self, task: TaskId, seq: Barrier, worker: WorkerId, _now: MonoNanos) {
        self.central.left_worker(worker);
        self.central.runnable(task, seq);
    }
    fn on_task_dead(&mut self, task: TaskId, worker: WorkerId, _now: MonoNanos) {
        self.central.dead(task);
        self.central.left_worker(worker);
    }
    fn on_worker_idle(&mut self, worker: WorkerId, _now: MonoNanos) {
        self.central.idle(worker);
    }
    fn on_worker_tick(&mut self, _: WorkerId, _: TaskId, _: Barrier, _: u64, _: MonoNanos) {}
    fn decide(&mut self, _now: MonoNanos, out: &mut Vec<SchedDecision>) {
        self.central.dispatch(0, out);
    }
    fn on_commit_failed(&mut self, decision: &SchedDecision, outcome: TxnOutcome, _: MonoNanos) {
        self.central.commit_failed(decision, outcome);
    }
}
