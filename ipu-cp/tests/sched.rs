//! The scheduling policies served by the `ipu-cp` binary over the real link: a test host
//! reports task and worker events and checks the decisions, on rings and in prestage slots.

use std::time::{Duration, Instant};

use link::proto::{Epoch, Message, TxnOutcome, WorkerId};
use link::transport::Connection;
use link::{MonoNanos, Record};

mod common;

use common::{ControlPlane, counter};

fn task_event(
    change: link::proto::TaskChange,
    task: u64,
    seq: u64,
    worker: u16,
    ran_ns: u64,
) -> Record {
    Message::Task(link::proto::TaskEventRepr {
        change,
        task: link::proto::TaskId(task),
        seq: link::proto::Barrier(seq),
        worker: WorkerId(worker),
        ran_ns,
    })
    .to_record(Epoch(1))
}

fn idle_event(worker: u16) -> Record {
    let idle = link::proto::WorkerEventRepr { worker: WorkerId(worker), running: None, ran_ns: 0 };
    Message::Worker(idle).to_record(Epoch(1))
}

/// Both workers of `app` tell the policy they are free.
fn report_idle(app: &mut Connection) {
    for lane in &mut app.end.workers {
        lane.events.try_push(&idle_event(lane.worker.0), MonoNanos(0)).unwrap();
    }
}

/// Waits (bounded) for the next decision on `worker`'s ring.
fn next_decision(conn: &mut Connection, worker: usize) -> Message {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(record) = conn.end.workers[worker].decisions.try_pop(MonoNanos(0)) {
            return record.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no decision for worker {worker}");
        conn.end.liveness.heartbeat.beat(MonoNanos::now());
        std::thread::yield_now();
    }
}

#[test]
fn offloaded_fifo_places_tasks_on_free_workers() {
    use link::proto::TaskChange::{Done, New};
    let cp = ControlPlane::start(
        "fifo",
        &["--policy", "fifo", "--prestage-depth", "0", "--peer-timeout-ms", "30000"],
    );
    let mut app = cp.connect(1); // two workers
    report_idle(&mut app);
    for task in 1..=3 {
        app.end.workers[0].events.try_push(&task_event(New, task, 1, 0, 0), MonoNanos(0)).unwrap();
    }
    let run = |m: Message| match m {
        Message::Run(run) => (run.task.0, run.barrier.0, run.worker.0, run.slice_ns),
        other => panic!("expected Run, got {other:?}"),
    };
    assert_eq!(run(next_decision(&mut app, 0)), (1, 1, 0, 0));
    assert_eq!(run(next_decision(&mut app, 1)), (2, 1, 1, 0));
    app.end.workers[0].events.try_push(&task_event(Done, 1, 2, 0, 5_000), MonoNanos(0)).unwrap();
    assert_eq!(run(next_decision(&mut app, 0)), (3, 1, 0, 0), "task 3 waited for a free worker");
    let line = cp.stop();
    assert_eq!(counter(&line, "decisions"), 3);
}

#[test]
fn offloaded_shinjuku_preempts_a_long_task_when_others_wait() {
    use link::proto::TaskChange::New;
    let cp = ControlPlane::start(
        "shinjuku",
        &[
            "--policy",
            "shinjuku",
            "--slice-us",
            "30",
            "--prestage-depth",
            "0",
            "--peer-timeout-ms",
            "30000",
        ],
    );
    let mut app = cp.connect(1);
    report_idle(&mut app);
    for task in 1..=3 {
        app.end.workers[0].events.try_push(&task_event(New, task, 1, 0, 0), MonoNanos(0)).unwrap();
    }
    assert!(matches!(next_decision(&mut app, 0), Message::Run(r) if r.slice_ns == 30_000));
    assert!(matches!(next_decision(&mut app, 1), Message::Run(_)));
    // Worker 0's task has run 40 µs while task 3 waits: preempt it.
    let tick = Message::Worker(link::proto::WorkerEventRepr {
        worker: WorkerId(0),
        running: Some((link::proto::TaskId(1), link::proto::Barrier(1))),
        ran_ns: 40_000,
    });
    app.end.workers[0].events.try_push(&tick.to_record(Epoch(1)), MonoNanos(0)).unwrap();
    match next_decision(&mut app, 0) {
        Message::Preempt(p) => assert_eq!((p.task.0, p.barrier.0, p.worker.0), (1, 1, 0)),
        other => panic!("expected Preempt, got {other:?}"),
    }
    cp.stop();
}

#[test]
fn prestaged_runs_wait_in_slots_and_a_stale_one_goes_back_to_the_policy() {
    use link::proto::TaskChange::{Done, New, Runnable};
    let cp = ControlPlane::start(
        "prestage",
        &["--policy", "fifo", "--prestage-depth", "1", "--peer-timeout-ms", "30000"],
    );
    let mut app = cp.connect(1);
    report_idle(&mut app);
    for task in 1..=2 {
        app.end.workers[0].events.try_push(&task_event(New, task, 1, 0, 0), MonoNanos(0)).unwrap();
    }
    // Both tasks are staged, one per worker, without the host asking.
    let claim_on = |app: &mut Connection, workers: &[usize]| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for &worker in workers {
                if let Some(claim) = app.end.workers[worker].slots.try_claim() {
                    return (worker, claim);
                }
            }
            assert!(Instant::now() < deadline, "nothing staged for workers {workers:?}");
            app.end.liveness.heartbeat.beat(MonoNanos::now());
            std::thread::yield_now();
        }
    };
    let claim = |app: &mut Connection, worker: usize| claim_on(app, &[worker]).1;
    let first = claim(&mut app, 0);
    let Ok(Message::Run(run)) = first.decision.parse() else { panic!("expected a staged Run") };
    assert_eq!((run.task.0, run.worker.0), (1, 0));
    let result = app.end.workers[0].slots.resolve(first, TxnOutcome::Committed, run.barrier);
    let event = Message::TxnResult(result).to_record(Epoch(1));
    app.end.workers[0].events.try_push(&event, MonoNanos(0)).unwrap();
    // Worker 1's staged task 2 has meanwhile changed (it ran elsewhere and woke again): the
    // host finds it stale, and the policy runs the newer sequence instead.
    let second = claim(&mut app, 1);
    let Ok(Message::Run(run)) = second.decision.parse() else { panic!("expected a staged Run") };
    assert_eq!((run.task.0, run.barrier.0), (2, 1));
    let event = task_event(Runnable, 2, 3, 1, 0);
    app.end.workers[1].events.try_push(&event, MonoNanos(0)).unwrap();
    let result = app.end.workers[1].slots.resolve(second, TxnOutcome::Stale, run.barrier);
    let event = Message::TxnResult(result).to_record(Epoch(1));
    app.end.workers[1].events.try_push(&event, MonoNanos(0)).unwrap();
    // Where it goes depends on whether the agent saw the stale report before the new sequence
    // (both workers then have room for one more): either is right.
    let (worker, third) = claim_on(&mut app, &[0, 1]);
    let Ok(Message::Run(run)) = third.decision.parse() else { panic!("expected a staged Run") };
    assert_eq!((run.task.0, run.barrier.0, usize::from(run.worker.0)), (2, 3, worker));
    let _ = app.end.workers[worker].slots.resolve(third, TxnOutcome::Committed, run.barrier);
    app.end.workers[0].events.try_push(&task_event(Done, 1, 2, 0, 0), MonoNanos(0)).unwrap();
    let line = cp.stop();
    assert_eq!(counter(&line, "prestaged"), 3);
    assert_eq!(counter(&line, "failed_commits"), 1);
    assert_eq!(counter(&line, "stray_txn_results"), 0);
}
