//! What every centralized policy tracks: each task's latest sequence and state, one run queue,
//! how many more tasks each worker may be handed, and what runs where. Policies decide *which*
//! task and *when* to preempt; this file keeps the facts straight, including the stale ones: a
//! queued entry whose sequence is no longer the task's latest is dropped when reached, never
//! run.
//!
//! A worker that reported itself idle may hold `1 + depth` handed-out tasks: the one it runs
//! and `depth` prestaged behind it (Wave's prestaging), so it never waits a link round trip
//! between tasks. Each task that leaves the worker gives one back.

use std::collections::{BTreeMap, HashMap, VecDeque};

use std::cmp::Reverse;

use link::proto::{Barrier, RunRepr, TaskId, TxnOutcome, WorkerId};

use super::SchedDecision;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Runnable,
    Blocked,
    /// On a worker (or handed to it in a Run decision not yet known to have failed).
    Running(WorkerId),
}

/// Centralized bookkeeping.
#[derive(Debug, Default)]
pub struct Central {
    tasks: HashMap<TaskId, (Barrier, State)>,
    queue: VecDeque<(TaskId, Barrier)>,
    /// Tasks each known worker may still be handed.
    credits: BTreeMap<WorkerId, u16>,
    depth: u16,
}

impl Central {
    /// Bookkeeping that stages up to `depth` tasks per worker behind the running one.
    pub fn new(depth: u16) -> Central {
        Central { depth: depth.min(64), ..Central::default() }
    }

    fn give_back(&mut self, worker: WorkerId) {
        let most = self.depth + 1;
        let credit = self.credits.entry(worker).or_insert(0);
        *credit = (*credit + 1).min(most);
    }

    /// A task became runnable at `seq`: queue it at the tail.
    pub fn runnable(&mut self, task: TaskId, seq: Barrier) {
        if self.is_newer(task, seq) {
            self.tasks.insert(task, (seq, State::Runnable));
            self.queue.push_back((task, seq));
        }
    }

    /// A task stopped running on `worker` (blocked, preempted, or done): one more may go there.
    pub fn left_worker(&mut self, worker: WorkerId) {
        self.give_back(worker);
    }

    /// A task blocked at `seq`.
    pub fn blocked(&mut self, task: TaskId, seq: Barrier) {
        if self.is_newer(task, seq) {
            self.tasks.insert(task, (seq, State::Blocked));
        }
    }

    /// A task finished: forget it.
    pub fn dead(&mut self, task: TaskId) {
        self.tasks.remove(&task);
    }

    /// `worker` has nothing to run and nothing staged.
    pub fn idle(&mut self, worker: WorkerId) {
        self.credits.insert(worker, self.depth + 1);
    }

    /// Tasks waiting to run.
    pub fn waiting(&self) -> usize {
        self.queue.iter().filter(|(task, seq)| self.is_current(*task, *seq)).count()
    }

    /// Pairs waiting tasks with workers in queue order, each to the worker with the most
    /// room (the least loaded; the lowest id on a tie).
    pub fn dispatch(&mut self, slice_ns: u64, out: &mut Vec<SchedDecision>) {
        loop {
            let Some((&worker, _)) = self
                .credits
                .iter()
                .filter(|(_, c)| **c > 0)
                .max_by_key(|(w, c)| (**c, Reverse(**w)))
            else {
                return;
            };
            let Some((task, seq)) = self.pop_current() else { return };
            *self.credits.get_mut(&worker).expect("found above") -= 1;
            self.tasks.insert(task, (seq, State::Running(worker)));
            out.push(SchedDecision::Run(RunRepr { task, barrier: seq, worker, slice_ns }));
        }
    }

    /// The host refused a decision: undo what it assumed.
    pub fn commit_failed(&mut self, decision: &SchedDecision, outcome: TxnOutcome) {
        let SchedDecision::Run(run) = decision else { return };
        self.give_back(run.worker);
        // Stale: the task changed since; its newer event tells what it is now. Rejected at
        // the same sequence: it is still runnable, so it goes back to the head of the queue.
        if outcome == TxnOutcome::Rejected
            && self.tasks.get(&run.task) == Some(&(run.barrier, State::Running(run.worker)))
        {
            self.tasks.insert(run.task, (run.barrier, State::Runnable));
            self.queue.push_front((run.task, run.barrier));
        }
    }

    fn pop_current(&mut self) -> Option<(TaskId, Barrier)> {
        while let Some((task, seq)) = self.queue.pop_front() {
            if self.is_current(task, seq) {
                return Some((task, seq));
            }
        }
        None
    }

    fn is_current(&self, task: TaskId, seq: Barrier) -> bool {
        self.tasks.get(&task) == Some(&(seq, State::Runnable))
    }

    /// Events can arrive after newer ones for the same task only if the host misbehaves; a
    /// sequence at or below the known one is ignored.
    fn is_newer(&self, task: TaskId, seq: Barrier) -> bool {
        self.tasks.get(&task).is_none_or(|(known, _)| seq > *known)
    }
}
