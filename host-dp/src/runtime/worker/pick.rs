//! Choosing the next task: the agent's ring decisions (read ahead into `ahead`), then its
//! prestaged slots, then the local queues; and the barrier check that commits a decision.

use std::sync::Arc;

use link::proto::{Barrier, Direction, Message, RunRepr, TxnOutcome};

use super::{Ahead, Ctx, DECISION_BATCH, HOST_EPOCH, LOCAL_SKIPS, Origin};
use crate::runtime::RuntimeStats;
use crate::runtime::task::Task;

impl Ctx {
    pub(super) fn read_decisions(&mut self) {
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
    pub(super) fn pick_decision(&mut self) -> Option<(Arc<Task>, Origin, u64)> {
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

    pub(super) fn pick_prestaged(&mut self) -> Option<(Arc<Task>, Origin, u64)> {
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

    pub(super) fn pick_local(&mut self) -> Option<(Arc<Task>, Origin, u64)> {
        for _ in 0..LOCAL_SKIPS {
            let task = self.shared.local.pop(self.deque.as_ref(), usize::from(self.worker.0))?;
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
}
