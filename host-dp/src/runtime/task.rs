//! A task: its future, and one atomic word holding its sequence number and phase.
//!
//! ```text
//!            spawn                 commit (CAS at seq)           poll: Ready
//!   ───────▶ QUEUED(seq) ─────────────────────────▶ RUNNING ──────────────────▶ DONE(seq+1)
//!              ▲  ▲                                  │   │ wake during the poll
//!   wake: seq+1│  └──── Pending, woken: seq+1 ───── RUNNING_WOKEN ◀┘
//!              │                                     │ Pending, not woken: seq+1
//!            BLOCKED(seq) ◀──────────────────────────┘
//! ```
//!
//! Every change that a policy must hear of bumps the sequence, and a decision commits only by
//! a compare-and-swap from `QUEUED` at the sequence it names (its barrier): a stale decision
//! fails and changes nothing, and no task is ever run twice or by two workers at once. The
//! sequence sits in the upper 56 bits, the phase in the low byte.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

use link::proto::{TaskChange, TaskId};

use super::Shared;

type BoxedFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Waiting for a wake.
    Blocked = 0,
    /// Runnable, waiting for a worker.
    Queued = 1,
    /// Being polled.
    Running = 2,
    /// Being polled, and woken meanwhile: runnable again when the poll returns.
    RunningWoken = 3,
    /// Finished.
    Done = 4,
}

fn pack(seq: u64, phase: Phase) -> u64 {
    (seq << 8) | phase as u64
}

fn unpack(word: u64) -> (u64, Phase) {
    let phase = match word & 0xff {
        0 => Phase::Blocked,
        1 => Phase::Queued,
        2 => Phase::Running,
        3 => Phase::RunningWoken,
        _ => Phase::Done,
    };
    (word >> 8, phase)
}

pub(crate) struct Task {
    id: TaskId,
    shared: Arc<Shared>,
    /// `seq << 8 | phase`. SeqCst on every access: the fallback sweep relies on a total order
    /// between "task became QUEUED" and "mode changed" (see `Shared::switch_to_local`).
    state: AtomicU64,
    /// In the local run queue now: keeps it there at most once.
    in_local_queue: AtomicBool,
    /// `None` once finished. Only the worker that moved the task to RUNNING locks it.
    future: Mutex<Option<BoxedFuture>>,
}

/// What a poll left the task as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Finished (the sequence after).
    Done(u64),
    /// Waiting for a wake.
    Blocked(u64),
    /// Runnable again: it yielded, or was woken while it ran.
    Runnable(u64),
}

impl Outcome {
    pub(crate) fn change_and_seq(self) -> (TaskChange, u64) {
        match self {
            Outcome::Done(seq) => (TaskChange::Done, seq),
            Outcome::Blocked(seq) => (TaskChange::Blocked, seq),
            Outcome::Runnable(seq) => (TaskChange::Preempted, seq),
        }
    }
}

impl Task {
    /// A new task, runnable at sequence 1.
    pub(super) fn new(
        id: TaskId,
        shared: Arc<Shared>,
        future: impl Future<Output = ()> + Send + 'static,
    ) -> Arc<Task> {
        Arc::new(Task {
            id,
            shared,
            state: AtomicU64::new(pack(1, Phase::Queued)),
            in_local_queue: AtomicBool::new(false),
            future: Mutex::new(Some(Box::pin(future))),
        })
    }

    pub(crate) fn id(&self) -> TaskId {
        self.id
    }

    /// The sequence and phase now.
    pub(crate) fn snapshot(&self) -> (u64, Phase) {
        unpack(self.state.load(Ordering::SeqCst))
    }

    /// Commits a decision computed at sequence `barrier`: QUEUED at exactly that sequence
    /// becomes RUNNING. False (nothing changed) when the decision is stale.
    pub(crate) fn try_start(&self, barrier: u64) -> bool {
        let queued = pack(barrier, Phase::Queued);
        let running = pack(barrier, Phase::Running);
        self.state.compare_exchange(queued, running, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }

    /// Claims the local-queue flag; false if the task is in the local queue already.
    pub(crate) fn mark_local_queued(&self) -> bool {
        !self.in_local_queue.swap(true, Ordering::AcqRel)
    }

    /// Taken out of the local queue.
    pub(crate) fn clear_local_queued(&self) {
        self.in_local_queue.store(false, Ordering::Release);
    }

    /// Drops the future unfinished (the runtime is gone): what it holds, wakers and sockets
    /// and the runtime's own state, is released.
    pub(crate) fn drop_future(&self) {
        let future = self.future.lock().map(|mut slot| slot.take()).unwrap_or_default();
        drop(future); // outside the lock: its drop may wake or drop other tasks
    }

    /// Polls once. The caller moved the task to RUNNING (so no other worker polls it).
    pub(crate) fn poll(self: &Arc<Task>) -> Outcome {
        let mut slot = self.future.lock().expect("task future");
        let (seq, phase) = self.snapshot();
        debug_assert!(
            matches!(phase, Phase::Running | Phase::RunningWoken),
            "polled while {phase:?}"
        );
        let Some(future) = slot.as_mut() else { return Outcome::Done(seq) };
        let waker = Waker::from(self.clone());
        let ready = future.as_mut().poll(&mut Context::from_waker(&waker)).is_ready();
        if ready {
            *slot = None; // drop the future's state now, on this worker
            drop(slot);
            self.state.store(pack(seq + 1, Phase::Done), Ordering::SeqCst);
            return Outcome::Done(seq + 1);
        }
        drop(slot);
        // Bounded: the only concurrent change is one RUNNING → RUNNING_WOKEN by a waker.
        loop {
            let word = self.state.load(Ordering::SeqCst);
            let (seq, phase) = unpack(word);
            let (next, outcome) = match phase {
                Phase::Running => (pack(seq + 1, Phase::Blocked), Outcome::Blocked(seq + 1)),
                _ => (pack(seq + 1, Phase::Queued), Outcome::Runnable(seq + 1)),
            };
            if self.state.compare_exchange(word, next, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                return outcome;
            }
        }
    }
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        loop {
            let word = self.state.load(Ordering::SeqCst);
            let (seq, phase) = unpack(word);
            let next = match phase {
                Phase::Blocked => pack(seq + 1, Phase::Queued),
                Phase::Running => pack(seq, Phase::RunningWoken),
                Phase::Queued | Phase::RunningWoken | Phase::Done => return,
            };
            if self.state.compare_exchange(word, next, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                if phase == Phase::Blocked {
                    self.shared.became_runnable(self, seq + 1, TaskChange::Runnable);
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_word_round_trips() {
        for phase in
            [Phase::Blocked, Phase::Queued, Phase::Running, Phase::RunningWoken, Phase::Done]
        {
            assert_eq!(unpack(pack(0x00ab_cdef_0123_4567, phase)), (0x00ab_cdef_0123_4567, phase));
        }
    }
}
