//! Shinjuku-style: centralized like FIFO, but a task that has run a full time slice while
//! others wait is preempted, and preempted tasks go to the tail of the queue, so short
//! requests are not stuck behind long ones (Kaffes et al., NSDI'19; ghOSt's Shinjuku agent).
//! A preemption is requested once per run of a task (per sequence), not on every tick.

use std::collections::HashSet;

use link::MonoNanos;
use link::proto::{Barrier, PreemptRepr, TaskId, TxnOutcome, WorkerId};

use super::central::Central;
use super::{SchedDecision, SchedPolicy};

/// The Shinjuku-style policy.
#[derive(Debug)]
pub struct Shinjuku {
    central: Central,
    slice_ns: u64,
    /// Preemptions to send at the next `decide`.
    pending: Vec<PreemptRepr>,
    /// (task, sequence) already asked to yield.
    asked: HashSet<(TaskId, Barrier)>,
}

impl Shinjuku {
    /// A policy with time slice `slice_ns` (> 0) that stages `depth` tasks per worker.
    pub fn new(slice_ns: u64, depth: u16) -> Shinjuku {
        assert!(slice_ns > 0, "Shinjuku needs a time slice");
        Shinjuku {
            central: Central::new(depth),
            slice_ns,
            pending: Vec::new(),
            asked: HashSet::new(),
        }
    }
}

impl SchedPolicy for Shinjuku {
    fn name(&self) -> &'static str {
        "shinjuku"
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
        self.asked.retain(|(t, _)| *t != task); // bounded by the tasks on workers
    }
    fn on_task_preempted(&mut self, task: TaskId, seq: Barrier, worker: WorkerId, _now: MonoNanos) {
        self.central.left_worker(worker);
        self.central.runnable(task, seq); // to the tail: others first
        self.asked.retain(|(t, _)| *t != task);
    }
    fn on_task_dead(&mut self, task: TaskId, worker: WorkerId, _now: MonoNanos) {
        self.central.dead(task);
        self.central.left_worker(worker);
        self.asked.retain(|(t, _)| *t != task);
    }
    fn on_worker_idle(&mut self, worker: WorkerId, _now: MonoNanos) {
        self.central.idle(worker);
    }
    fn on_worker_tick(
        &mut self,
        worker: WorkerId,
        task: TaskId,
        seq: Barrier,
        ran_ns: u64,
        _now: MonoNanos,
    ) {
        let over = ran_ns >= self.slice_ns;
        if over && self.central.waiting() > 0 && self.asked.insert((task, seq)) {
            self.pending.push(PreemptRepr { task, barrier: seq, worker });
        }
    }
    fn decide(&mut self, _now: MonoNanos, out: &mut Vec<SchedDecision>) {
        out.extend(self.pending.drain(..).map(SchedDecision::Preempt));
        self.central.dispatch(self.slice_ns, out);
    }
    fn on_commit_failed(&mut self, decision: &SchedDecision, outcome: TxnOutcome, _: MonoNanos) {
        self.central.commit_failed(decision, outcome);
    }
}
