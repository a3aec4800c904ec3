//! Scheduling policies (ghOSt style): state-only callbacks per event, then `decide`.
//!
//! A policy sees task and worker events from the host and answers with decisions: run task T
//! on worker W with barrier B (and a time slice), or preempt T. The host commits a decision
//! only if T's sequence still equals B; a failed commit comes back through
//! [`SchedPolicy::on_commit_failed`]. Policies hold no clocks and do no I/O: `now` is passed in,
//! decisions are appended to a vector, so the same code runs offloaded, on-host, or under a
//! test's fake clock.
//!
//! One policy per file: [`fifo`] (centralized FIFO, run to completion) and [`shinjuku`]
//! (centralized, time-slice preemption, preempted tasks to the tail). Both build on
//! [`central::Central`], the bookkeeping every centralized policy needs.

pub mod adapter;
pub mod central;
pub mod fifo;
pub mod shinjuku;

use link::MonoNanos;

use crate::policy::SchedConfig;
use link::proto::{Barrier, PreemptRepr, RunRepr, TaskId, TxnOutcome, WorkerId};

/// A decision of a scheduling policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedDecision {
    /// Run a task on a worker.
    Run(RunRepr),
    /// Preempt a running task.
    Preempt(PreemptRepr),
}

/// A scheduling policy.
pub trait SchedPolicy: Send {
    /// The name it is selected by.
    fn name(&self) -> &'static str;
    /// A task was created and is runnable.
    fn on_task_new(&mut self, task: TaskId, seq: Barrier, now: MonoNanos);
    /// A task woke up and is runnable.
    fn on_task_runnable(&mut self, task: TaskId, seq: Barrier, now: MonoNanos);
    /// A task blocked on `worker`, which is now free.
    fn on_task_blocked(&mut self, task: TaskId, seq: Barrier, worker: WorkerId, now: MonoNanos);
    /// A task was preempted (or yielded) on `worker`, which is now free; the task is runnable.
    fn on_task_preempted(&mut self, task: TaskId, seq: Barrier, worker: WorkerId, now: MonoNanos);
    /// A task finished on `worker`, which is now free.
    fn on_task_dead(&mut self, task: TaskId, worker: WorkerId, now: MonoNanos);
    /// `worker` has nothing to run.
    fn on_worker_idle(&mut self, worker: WorkerId, now: MonoNanos);
    /// `worker` runs `task` (at sequence `seq`) and has for `ran_ns`.
    fn on_worker_tick(
        &mut self,
        worker: WorkerId,
        task: TaskId,
        seq: Barrier,
        ran_ns: u64,
        now: MonoNanos,
    );
    /// Appends the decisions the policy makes now.
    fn decide(&mut self, now: MonoNanos, out: &mut Vec<SchedDecision>);
    /// The host did not commit `decision` (`Stale` or `Rejected`).
    fn on_commit_failed(&mut self, decision: &SchedDecision, outcome: TxnOutcome, now: MonoNanos);
}

/// Scheduling policies selectable by name.
pub const SCHED_POLICY_NAMES: &[&str] = &["fifo", "shinjuku"];

/// Builds the scheduling policy `name` (Shinjuku's slice is `config.slice_ns`, at least 1).
pub fn by_name(name: &str, config: SchedConfig) -> Option<Box<dyn SchedPolicy>> {
    let depth = config.prestage_depth;
    match name {
        "fifo" => Some(Box::new(fifo::Fifo::new(depth))),
        "shinjuku" => Some(Box::new(shinjuku::Shinjuku::new(config.slice_ns.max(1), depth))),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
