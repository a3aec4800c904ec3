//! Scheduling messages (kinds 0x10xx): task and worker events up, run and preempt decisions
//! down. Every task event carries the task's sequence number after the change; a decision
//! carries the sequence it was computed from as its barrier, and commits only if the task's
//! sequence still equals it (ghOSt's transaction barrier).

use super::{Barrier, ParseError, TaskId, WorkerId, le};

/// What happened to a task (the event's meaning; the kind is separate per variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskChange {
    /// Created, runnable.
    New,
    /// Woke up: runnable again.
    Runnable,
    /// Blocked (waiting on I/O or a timer): not runnable.
    Blocked,
    /// Preempted at a preempt point: runnable, back to the policy.
    Preempted,
    /// Finished: gone.
    Done,
}

/// Event: `task` underwent `change` on `worker`; `seq` is its sequence after the change and
/// `ran_ns` the time it ran since it last started (0 for New/Runnable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskEventRepr {
    /// The change.
    pub change: TaskChange,
    /// The task.
    pub task: TaskId,
    /// The task's sequence number after the change.
    pub seq: Barrier,
    /// Where it happened.
    pub worker: WorkerId,
    /// CPU time since it last started running.
    pub ran_ns: u64,
}

impl TaskEventRepr {
    pub(super) fn parse_payload(change: TaskChange, p: &[u8]) -> Result<TaskEventRepr, ParseError> {
        if !le::zero(p, 26..48) {
            return Err(ParseError::Reserved);
        }
        Ok(TaskEventRepr {
            change,
            task: TaskId(le::u64_at(p, 0)),
            seq: Barrier(le::u64_at(p, 8)),
            ran_ns: le::u64_at(p, 16),
            worker: WorkerId(le::u16_at(p, 24)),
        })
    }

    pub(super) fn emit_payload(&self, p: &mut [u8]) {
        le::put_u64(p, 0, self.task.0);
        le::put_u64(p, 8, self.seq.0);
        le::put_u64(p, 16, self.ran_ns);
        le::put_u16(p, 24, self.worker.0);
    }
}

/// Event: `worker` reports its state: idle (nothing to run), or running `running` for
/// `ran_ns` (a tick, so the policy can enforce time slices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerEventRepr {
    /// The worker.
    pub worker: WorkerId,
    /// The task it runs, with that task's sequence, or `None` when idle.
    pub running: Option<(TaskId, Barrier)>,
    /// How long the running task has run since it started.
    pub ran_ns: u64,
}

impl WorkerEventRepr {
    pub(super) fn parse_payload(p: &[u8]) -> Result<WorkerEventRepr, ParseError> {
        let busy = match p[2] {
            0 => false,
            1 => true,
            _ => return Err(ParseError::Field("running flag")),
        };
        if !le::zero(p, 3..8) || !le::zero(p, 32..48) {
            return Err(ParseError::Reserved);
        }
        let task = TaskId(le::u64_at(p, 8));
        let seq = Barrier(le::u64_at(p, 16));
        if !busy && (task.0 != 0 || seq.0 != 0) {
            return Err(ParseError::Reserved);
        }
        Ok(WorkerEventRepr {
            worker: WorkerId(le::u16_at(p, 0)),
            running: busy.then_some((task, seq)),
            ran_ns: le::u64_at(p, 24),
        })
    }

    pub(super) fn emit_payload(&self, p: &mut [u8]) {
        le::put_u16(p, 0, self.worker.0);
        if let Some((task, seq)) = self.running {
            p[2] = 1;
            le::put_u64(p, 8, task.0);
            le::put_u64(p, 16, seq.0);
        }
        le::put_u64(p, 24, self.ran_ns);
    }
}

/// Decision: run `task` on `worker` for at most `slice_ns` (0: until it yields), if the
/// task's sequence still equals `barrier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunRepr {
    /// The task.
    pub task: TaskId,
    /// The sequence the decision was computed from.
    pub barrier: Barrier,
    /// Where.
    pub worker: WorkerId,
    /// Time slice (0: run until it yields or blocks).
    pub slice_ns: u64,
}

/// Decision: preempt `task` on `worker` at its next preempt point, if its sequence still
/// equals `barrier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreemptRepr {
    /// The task.
    pub task: TaskId,
    /// The sequence the decision was computed from.
    pub barrier: Barrier,
    /// Where it runs.
    pub worker: WorkerId,
}

impl RunRepr {
    pub(super) fn parse_payload(p: &[u8]) -> Result<RunRepr, ParseError> {
        if !le::zero(p, 26..48) {
            return Err(ParseError::Reserved);
        }
        Ok(RunRepr {
            task: TaskId(le::u64_at(p, 0)),
            barrier: Barrier(le::u64_at(p, 8)),
            slice_ns: le::u64_at(p, 16),
            worker: WorkerId(le::u16_at(p, 24)),
        })
    }

    pub(super) fn emit_payload(&self, p: &mut [u8]) {
        le::put_u64(p, 0, self.task.0);
        le::put_u64(p, 8, self.barrier.0);
        le::put_u64(p, 16, self.slice_ns);
        le::put_u16(p, 24, self.worker.0);
    }
}

impl PreemptRepr {
    pub(super) fn parse_payload(p: &[u8]) -> Result<PreemptRepr, ParseError> {
        if !le::zero(p, 18..48) {
            return Err(ParseError::Reserved);
        }
        Ok(PreemptRepr {
            task: TaskId(le::u64_at(p, 0)),
            barrier: Barrier(le::u64_at(p, 8)),
            worker: WorkerId(le::u16_at(p, 16)),
        })
    }

    pub(super) fn emit_payload(&self, p: &mut [u8]) {
        le::put_u64(p, 0, self.task.0);
        le::put_u64(p, 8, self.barrier.0);
        le::put_u16(p, 16, self.worker.0);
    }
}
