//! Deterministic policy tests on a fake clock, and a property test of the invariants every
//! centralized policy keeps.

use super::*;
use link::proto::{PreemptRepr, RunRepr};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};

const T0: MonoNanos = MonoNanos(1_000_000);

fn t(n: u64) -> TaskId {
    TaskId::new(n, 1)
}

fn runs(out: &[SchedDecision]) -> Vec<(TaskId, WorkerId)> {
    out.iter()
        .filter_map(|d| match d {
            SchedDecision::Run(r) => Some((r.task, r.worker)),
            SchedDecision::Preempt(_) => None,
        })
        .collect()
}

fn decide(policy: &mut dyn SchedPolicy) -> Vec<SchedDecision> {
    let mut out = Vec::new();
    policy.decide(T0, &mut out);
    out
}

#[test]
fn fifo_runs_in_arrival_order_and_never_preempts() {
    let mut fifo = fifo::Fifo::default();
    for w in 0..2 {
        fifo.on_worker_idle(WorkerId(w), T0);
    }
    for n in 1..=3 {
        fifo.on_task_new(t(n), Barrier(1), T0);
    }
    assert_eq!(runs(&decide(&mut fifo)), [(t(1), WorkerId(0)), (t(2), WorkerId(1))]);
    assert!(decide(&mut fifo).is_empty(), "no free worker: task 3 waits");
    fifo.on_worker_tick(WorkerId(0), t(1), Barrier(1), 10_000_000_000, T0);
    assert!(decide(&mut fifo).is_empty(), "FIFO runs to completion, however long");
    fifo.on_task_dead(t(1), WorkerId(0), T0);
    assert_eq!(runs(&decide(&mut fifo)), [(t(3), WorkerId(0))]);
}

#[test]
fn shinjuku_preempts_a_long_task_once_and_sends_it_to_the_tail() {
    let mut policy = shinjuku::Shinjuku::new(30_000, 0);
    policy.on_worker_idle(WorkerId(0), T0);
    policy.on_task_new(t(1), Barrier(1), T0);
    let out = decide(&mut policy);
    assert_eq!(
        out,
        [SchedDecision::Run(RunRepr {
            task: t(1),
            barrier: Barrier(1),
            worker: WorkerId(0),
            slice_ns: 30_000
        })]
    );
    policy.on_task_new(t(2), Barrier(1), T0);
    policy.on_worker_tick(WorkerId(0), t(1), Barrier(1), 20_000, T0);
    assert!(decide(&mut policy).is_empty(), "within its slice");
    policy.on_worker_tick(WorkerId(0), t(1), Barrier(1), 31_000, T0);
    let preempt = PreemptRepr { task: t(1), barrier: Barrier(1), worker: WorkerId(0) };
    assert_eq!(decide(&mut policy), [SchedDecision::Preempt(preempt)]);
    policy.on_worker_tick(WorkerId(0), t(1), Barrier(1), 45_000, T0);
    assert!(decide(&mut policy).is_empty(), "asked once per run");
    policy.on_task_preempted(t(1), Barrier(2), WorkerId(0), T0);
    assert_eq!(runs(&decide(&mut policy)), [(t(2), WorkerId(0))], "the waiting task goes first");
    policy.on_task_dead(t(2), WorkerId(0), T0);
    assert_eq!(runs(&decide(&mut policy)), [(t(1), WorkerId(0))], "then the preempted one");
}

#[test]
fn shinjuku_lets_a_long_task_run_when_nobody_waits() {
    let mut policy = shinjuku::Shinjuku::new(30_000, 0);
    policy.on_worker_idle(WorkerId(0), T0);
    policy.on_task_new(t(1), Barrier(1), T0);
    decide(&mut policy);
    policy.on_worker_tick(WorkerId(0), t(1), Barrier(1), 1_000_000, T0);
    assert!(decide(&mut policy).is_empty());
}

#[test]
fn stale_queue_entries_are_skipped() {
    let mut fifo = fifo::Fifo::default();
    fifo.on_task_new(t(1), Barrier(1), T0);
    fifo.on_task_blocked(t(1), Barrier(2), WorkerId(0), T0); // blocked before it ran
    fifo.on_task_runnable(t(1), Barrier(3), T0);
    fifo.on_task_runnable(t(1), Barrier(3), T0); // a duplicate event changes nothing
    fifo.on_worker_idle(WorkerId(1), T0);
    // Worker 0 is free too (the blocked event freed it): the lowest free worker is taken.
    let out = decide(&mut fifo);
    assert_eq!(
        out,
        [SchedDecision::Run(RunRepr {
            task: t(1),
            barrier: Barrier(3),
            worker: WorkerId(0),
            slice_ns: 0
        })]
    );
    fifo.on_worker_idle(WorkerId(2), T0);
    assert!(decide(&mut fifo).is_empty(), "the older entries never run");
}

#[test]
fn failed_commits_free_the_worker_and_keep_the_task() {
    let mut fifo = fifo::Fifo::default();
    fifo.on_worker_idle(WorkerId(0), T0);
    fifo.on_task_new(t(1), Barrier(1), T0);
    let run = decide(&mut fifo)[0];
    fifo.on_commit_failed(&run, TxnOutcome::Rejected, T0);
    assert_eq!(runs(&decide(&mut fifo)), [(t(1), WorkerId(0))], "rejected: retried");
    let run = SchedDecision::Run(RunRepr {
        task: t(1),
        barrier: Barrier(1),
        worker: WorkerId(0),
        slice_ns: 0,
    });
    fifo.on_commit_failed(&run, TxnOutcome::Stale, T0);
    assert!(decide(&mut fifo).is_empty(), "stale: wait for the newer event");
    fifo.on_task_blocked(t(1), Barrier(2), WorkerId(0), T0);
    fifo.on_task_runnable(t(1), Barrier(3), T0);
    assert_eq!(runs(&decide(&mut fifo)), [(t(1), WorkerId(0))]);
}

#[test]
fn prestaging_hands_each_worker_one_more_task_and_spreads_them() {
    let mut fifo = fifo::Fifo::new(1);
    fifo.on_worker_idle(WorkerId(0), T0);
    fifo.on_worker_idle(WorkerId(1), T0);
    for n in 1..=5 {
        fifo.on_task_new(t(n), Barrier(1), T0);
    }
    let expected =
        [(t(1), WorkerId(0)), (t(2), WorkerId(1)), (t(3), WorkerId(0)), (t(4), WorkerId(1))];
    assert_eq!(runs(&decide(&mut fifo)), expected, "two per worker, least loaded first");
    fifo.on_task_dead(t(1), WorkerId(0), T0);
    assert_eq!(runs(&decide(&mut fifo)), [(t(5), WorkerId(0))], "a finished task frees one");
    // A stale prestaged run gives its place back without double-counting past the depth.
    let stale = SchedDecision::Run(RunRepr {
        task: t(5),
        barrier: Barrier(1),
        worker: WorkerId(0),
        slice_ns: 0,
    });
    fifo.on_commit_failed(&stale, TxnOutcome::Stale, T0);
    fifo.on_commit_failed(&stale, TxnOutcome::Stale, T0);
    fifo.on_task_dead(t(3), WorkerId(0), T0);
    for n in 6..=9 {
        fifo.on_task_new(t(n), Barrier(1), T0);
    }
    assert_eq!(runs(&decide(&mut fifo)).len(), 2, "worker 0 holds at most depth + 1");
}

#[test]
fn policies_are_selected_by_name() {
    let config = SchedConfig::default();
    assert_eq!(by_name("fifo", config).unwrap().name(), "fifo");
    assert_eq!(by_name("shinjuku", config).unwrap().name(), "shinjuku");
    assert!(by_name("cfs", config).is_none());
}

/// A host model driving a policy with random events, checking what the host would check.
#[derive(Debug, Clone)]
enum Step {
    New,
    Finish(u8),
    Block(u8),
    Wake(u8),
    Tick(u8, u64),
    Decide,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            Just(Step::New),
            any::<u8>().prop_map(Step::Finish),
            any::<u8>().prop_map(Step::Block),
            any::<u8>().prop_map(Step::Wake),
            (any::<u8>(), 0u64..100_000).prop_map(|(w, ns)| Step::Tick(w, ns)),
            Just(Step::Decide),
        ],
        1..300,
    )
}

proptest! {
    /// Whatever the events: a Run names a task runnable at exactly that sequence and a free
    /// worker, no worker gets two tasks, and every runnable task eventually runs.
    #[test]
    fn centralized_policies_keep_the_host_safe(steps in steps(), shinjuku in any::<bool>()) {
        const WORKERS: u16 = 3;
        let config = SchedConfig { slice_ns: 30_000, prestage_depth: 0 };
        let mut policy = by_name(if shinjuku { "shinjuku" } else { "fifo" }, config).unwrap();
        let mut seq: HashMap<TaskId, u64> = HashMap::new();
        let mut runnable: HashSet<TaskId> = HashSet::new();
        let mut on: HashMap<WorkerId, TaskId> = HashMap::new();
        let mut blocked: Vec<TaskId> = Vec::new();
        let mut next = 0u64;
        for w in 0..WORKERS {
            policy.on_worker_idle(WorkerId(w), T0);
        }
        let apply = |policy: &mut Box<dyn SchedPolicy>, on: &mut HashMap<WorkerId, TaskId>,
                         seq: &mut HashMap<TaskId, u64>, runnable: &mut HashSet<TaskId>| {
            let mut out = Vec::new();
            policy.decide(T0, &mut out);
            for decision in out {
                if let SchedDecision::Run(run) = decision {
                    prop_assert_eq!(seq.get(&run.task).copied(), Some(run.barrier.0), "stale run");
                    prop_assert!(runnable.remove(&run.task), "run of a task not runnable");
                    prop_assert!(on.insert(run.worker, run.task).is_none(), "worker double-booked");
                }
            }
            Ok(())
        };
        for step in steps {
            match step {
                Step::New => {
                    next += 1;
                    let task = t(next);
                    seq.insert(task, 1);
                    runnable.insert(task);
                    policy.on_task_new(task, Barrier(1), T0);
                }
                Step::Finish(w) | Step::Block(w) => {
                    let worker = WorkerId(u16::from(w) % WORKERS);
                    if let Some(task) = on.remove(&worker) {
                        let s = seq.get_mut(&task).unwrap();
                        *s += 1;
                        if matches!(step, Step::Finish(_)) {
                            seq.remove(&task);
                            policy.on_task_dead(task, worker, T0);
                        } else {
                            blocked.push(task);
                            policy.on_task_blocked(task, Barrier(*s), worker, T0);
                        }
                    }
                }
                Step::Wake(i) => {
                    if !blocked.is_empty() {
                        let task = blocked.swap_remove(usize::from(i) % blocked.len());
                        let s = seq.get_mut(&task).unwrap();
                        *s += 1;
                        runnable.insert(task);
                        policy.on_task_runnable(task, Barrier(*s), T0);
                    }
                }
                Step::Tick(w, ran_ns) => {
                    let worker = WorkerId(u16::from(w) % WORKERS);
                    if let Some(&task) = on.get(&worker) {
                        policy.on_worker_tick(worker, task, Barrier(seq[&task]), ran_ns, T0);
                    }
                }
                Step::Decide => apply(&mut policy, &mut on, &mut seq, &mut runnable)?,
            }
        }
        // Drain: finishing everything that runs lets every runnable task run.
        for _ in 0..1_000 {
            apply(&mut policy, &mut on, &mut seq, &mut runnable)?;
            if runnable.is_empty() {
                break;
            }
            let busy: Vec<(WorkerId, TaskId)> = on.drain().collect();
            for (worker, task) in busy {
                seq.remove(&task);
                policy.on_task_dead(task, worker, T0);
            }
        }
        prop_assert!(runnable.is_empty(), "runnable tasks starved: {:?}", runnable);
    }
}
