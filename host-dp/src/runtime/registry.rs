//! The task registry: a fixed slab of live tasks, addressed by [`TaskId`] = slot index plus a
//! generation, so a decision naming a task that finished (and whose slot was reused) finds no
//! task instead of the wrong one. Its size is the runtime's bound on live tasks.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_queue::ArrayQueue;
use link::proto::TaskId;

use super::task::Task;

struct Entry {
    generation: AtomicU32,
    task: Mutex<Option<Arc<Task>>>,
}

pub(crate) struct Registry {
    entries: Box<[Entry]>,
    free: ArrayQueue<u32>,
}

/// Generations live in 24 bits of a `TaskId`.
const GENERATION_MASK: u32 = (1 << 24) - 1;

impl Registry {
    pub(crate) fn new(capacity: usize) -> Registry {
        let entries = (0..capacity)
            .map(|_| Entry { generation: AtomicU32::new(0), task: Mutex::new(None) })
            .collect();
        let free = ArrayQueue::new(capacity);
        for index in 0..capacity {
            let index = u32::try_from(index).expect("tasks_max fits in u32 (checked at start)");
            free.push(index).expect("sized to fit");
        }
        Registry { entries, free }
    }

    /// Registers the task `make` builds for a fresh id; `None` when every slot is taken.
    pub(crate) fn insert(&self, make: impl FnOnce(TaskId) -> Arc<Task>) -> Option<Arc<Task>> {
        let index = self.free.pop()?;
        let entry = &self.entries[index as usize];
        // Relaxed: the slot is ours alone until the task is stored under the lock below.
        let generation = (entry.generation.load(Ordering::Relaxed) + 1) & GENERATION_MASK;
        entry.generation.store(generation, Ordering::Relaxed);
        let task = make(TaskId::new(u64::from(index), generation));
        *entry.task.lock().expect("registry entry") = Some(task.clone());
        Some(task)
    }

    /// The live task `id` names, if any.
    pub(crate) fn get(&self, id: TaskId) -> Option<Arc<Task>> {
        let entry = self.entries.get(usize::try_from(id.index()).ok()?)?;
        let slot = entry.task.lock().expect("registry entry");
        slot.as_ref().filter(|task| task.id() == id).cloned()
    }

    /// Forgets the finished task `id` and frees its slot.
    pub(crate) fn remove(&self, id: TaskId) {
        let Some(entry) = usize::try_from(id.index()).ok().and_then(|i| self.entries.get(i)) else {
            return;
        };
        let removed = {
            let mut slot = entry.task.lock().expect("registry entry");
            if slot.as_ref().is_some_and(|task| task.id() == id) { slot.take() } else { None }
        };
        if removed.is_some() {
            let index = u32::try_from(id.index()).expect("index came from this registry");
            self.free.push(index).expect("a slot is freed once");
        }
    }

    /// Live tasks now.
    pub(crate) fn live(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// Calls `visit` on every live task (a sweep at a mode switch; not a fast path).
    pub(crate) fn for_each(&self, mut visit: impl FnMut(&Arc<Task>)) {
        for entry in &self.entries {
            let task = entry.task.lock().expect("registry entry").clone();
            if let Some(task) = task {
                visit(&task);
            }
        }
    }
}
