//! Local scheduling (no agent, or a lost one): the host-local baselines.
//!
//! - [`LocalPolicy::SharedFifo`]: one queue for every worker, in arrival order (centralized
//!   FIFO; with a time slice, preempted tasks go to its tail: Shinjuku's policy, run locally).
//! - [`LocalPolicy::Stealing`]: each worker has its own FIFO deque for the tasks it queues;
//!   tasks from elsewhere go to a shared injector; an idle worker takes from its deque, then the
//!   injector, then steals from the others (the Tokio / Go design).
//!
//! Either way a task is in the local queues at most once (its flag) and runs only after the
//! CAS from QUEUED, so a stale entry (the task ran by other means) is skipped, never run.

use std::sync::{Arc, OnceLock};

use crossbeam_deque::{Injector, Steal, Stealer, Worker as Deque};

use super::task::Task;

/// How tasks are queued without an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LocalPolicy {
    /// One shared FIFO queue.
    #[default]
    SharedFifo,
    /// Per-worker FIFO deques with work stealing.
    Stealing,
}

pub(crate) struct LocalQueues {
    policy: LocalPolicy,
    injector: Injector<Arc<Task>>,
    stealers: OnceLock<Vec<Stealer<Arc<Task>>>>,
}

/// Most steal attempts per pick (a `Retry` means another worker raced us).
const STEAL_ROUNDS: usize = 4;

impl LocalQueues {
    pub(crate) fn new(policy: LocalPolicy) -> LocalQueues {
        LocalQueues { policy, injector: Injector::new(), stealers: OnceLock::new() }
    }

    /// Per-worker deques (under `Stealing`), registered for stealing; call once at start.
    pub(crate) fn deques(&self, workers: usize) -> Vec<Option<Deque<Arc<Task>>>> {
        if self.policy != LocalPolicy::Stealing {
            return (0..workers).map(|_| None).collect();
        }
        let deques: Vec<Deque<Arc<Task>>> = (0..workers).map(|_| Deque::new_fifo()).collect();
        let _ = self.stealers.set(deques.iter().map(Deque::stealer).collect());
        deques.into_iter().map(Some).collect()
    }

    /// Queues `task` (whose local flag the caller claimed): on `own` deque if given.
    pub(crate) fn push(&self, task: Arc<Task>, own: Option<&Deque<Arc<Task>>>) {
        match own {
            Some(deque) => deque.push(task),
            None => self.injector.push(task),
        }
    }

    /// The next queued task for worker `index`.
    pub(crate) fn pop(&self, own: Option<&Deque<Arc<Task>>>, index: usize) -> Option<Arc<Task>> {
        let Some(deque) = own else { return steal_one(|| self.injector.steal()) };
        if let Some(task) = deque.pop() {
            return Some(task);
        }
        if let Some(task) = steal_one(|| self.injector.steal_batch_and_pop(deque)) {
            return Some(task);
        }
        let stealers = self.stealers.get()?;
        (1..stealers.len())
            .map(|offset| &stealers[(index + offset) % stealers.len()])
            .find_map(|victim| steal_one(|| victim.steal_batch_and_pop(deque)))
    }

    /// Drops every queued task (shutdown).
    pub(crate) fn clear(&self) {
        while steal_one(|| self.injector.steal()).is_some() {}
    }
}

fn steal_one(mut attempt: impl FnMut() -> Steal<Arc<Task>>) -> Option<Arc<Task>> {
    for _ in 0..STEAL_ROUNDS {
        match attempt() {
            Steal::Success(task) => return Some(task),
            Steal::Empty => return None,
            Steal::Retry => std::hint::spin_loop(),
        }
    }
    None
}
