use super::*;
use std::sync::atomic::AtomicU8;
use std::time::Duration;
use std::time::Instant;

fn runtime(workers: usize, slice_ns: u64) -> Runtime {
    let config =
        RuntimeConfig { workers, slice_ns, tasks_max: 1 << 14, ..RuntimeConfig::default() };
    Runtime::start(config).unwrap()
}

#[test]
fn spawned_tasks_return_their_values_and_can_await_each_other() {
    let rt = runtime(2, 0);
    let inner = rt.spawn(async { 20 + 1 }).unwrap();
    let outer = rt.spawn(async move { inner.await * 2 }).unwrap();
    assert_eq!(outer.join(), 42);
    let deadline = Instant::now() + Duration::from_secs(5);
    while rt.tasks_alive() > 0 {
        assert!(Instant::now() < deadline, "finished tasks are released");
        std::thread::yield_now();
    }
}

/// One million tasks, each marks its own slot: every slot ends at exactly one.
#[test]
fn a_million_tasks_each_run_exactly_once() {
    const TASKS: usize = 1_000_000;
    let rt = runtime(2, 0);
    let slots: Arc<Vec<AtomicU8>> = Arc::new((0..TASKS).map(|_| AtomicU8::new(0)).collect());
    let mut handles = Vec::with_capacity(1024);
    for i in 0..TASKS {
        let slots = slots.clone();
        // At most 1024 tasks are in flight (joined below), far under the 16 Ki limit.
        let handle = rt.spawn(async move {
            slots[i].fetch_add(1, Ordering::Relaxed);
        });
        handles.push(handle.expect("under the task limit"));
        if handles.len() == 1024 {
            handles.drain(..).for_each(JoinHandle::join); // backpressure: stay under the limit
        }
    }
    handles.into_iter().for_each(JoinHandle::join);
    let ran: Vec<usize> = (0..TASKS).filter(|&i| slots[i].load(Ordering::Relaxed) != 1).collect();
    assert!(ran.is_empty(), "tasks not run exactly once: {:?}", &ran[..ran.len().min(10)]);
}

/// A future completed by a thread outside the runtime (as a NIC completion or a timer would).
struct Flag {
    set: Arc<AtomicBool>,
    waker: Arc<std::sync::Mutex<Option<std::task::Waker>>>,
}

impl Future for Flag {
    type Output = ();
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        if self.set.load(Ordering::Acquire) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }
}

#[test]
fn a_wake_from_another_thread_resumes_the_task() {
    let rt = runtime(1, 0);
    let set = Arc::new(AtomicBool::new(false));
    let waker = Arc::new(std::sync::Mutex::new(None::<std::task::Waker>));
    let flag = Flag { set: set.clone(), waker: waker.clone() };
    let handle = rt
        .spawn(async move {
            flag.await;
            7
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(!handle.is_finished(), "parked until woken");
    set.store(true, Ordering::Release);
    if let Some(w) = waker.lock().unwrap().take() {
        w.wake();
    }
    assert_eq!(handle.join(), 7);
}

/// With one worker, a long task that calls preempt points lets a later short task run when
/// a slice is set, and does not when none is.
fn short_task_ran_during_long_one(slice_ns: u64) -> (bool, u64) {
    let rt = runtime(1, slice_ns);
    let short_done = Arc::new(AtomicBool::new(false));
    let seen = short_done.clone();
    let long = rt
        .spawn(async move {
            let until = Instant::now() + Duration::from_millis(100);
            while Instant::now() < until && !seen.load(Ordering::Acquire) {
                preempt_point().await;
            }
            seen.load(Ordering::Acquire)
        })
        .unwrap();
    let flag = short_done.clone();
    let short = rt.spawn(async move { flag.store(true, Ordering::Release) }).unwrap();
    let ran_during = long.join();
    short.join();
    (ran_during, rt.preemptions())
}

#[test]
fn preempt_points_yield_only_when_a_slice_is_set() {
    let (ran, preemptions) = short_task_ran_during_long_one(50_000);
    assert!(ran && preemptions > 0, "with a 50 µs slice the short task runs in between");
    let (ran, preemptions) = short_task_ran_during_long_one(0);
    assert!(!ran && preemptions == 0, "without a slice the long task runs to completion");
}

/// An ingress that, once armed, spawns one task recording how many rounds the long task had
/// run when it got the worker.
struct ArmedIngress {
    armed: AtomicBool,
    rounds: Arc<AtomicU64>,
    seen_at_round: Arc<AtomicU64>,
}

impl Ingress for ArmedIngress {
    fn poll(&self, _worker: usize, handle: &Handle) -> usize {
        if !self.armed.swap(false, Ordering::AcqRel) {
            return 0;
        }
        let (rounds, seen) = (self.rounds.clone(), self.seen_at_round.clone());
        let spawned = handle.spawn(async move {
            seen.store(rounds.load(Ordering::Acquire), Ordering::Release);
        });
        usize::from(spawned.is_ok())
    }
}

#[test]
fn an_arrival_during_a_slice_runs_before_the_task_that_used_it_up() {
    // Shinjuku's order: a task preempted at the end of its slice goes behind what arrived
    // while it ran, so the arrival waits for one slice, not two.
    let rt = runtime(1, 30_000);
    let rounds = Arc::new(AtomicU64::new(0));
    let seen_at_round = Arc::new(AtomicU64::new(0));
    let ingress = Arc::new(ArmedIngress {
        armed: AtomicBool::new(false),
        rounds: rounds.clone(),
        seen_at_round: seen_at_round.clone(),
    });
    assert!(rt.set_ingress(ingress.clone()));
    let (counter, seen) = (rounds.clone(), seen_at_round.clone());
    let long = rt
        .spawn(async move {
            while seen.load(Ordering::Acquire) == 0 && counter.load(Ordering::Acquire) < 1000 {
                counter.fetch_add(1, Ordering::AcqRel);
                if counter.load(Ordering::Acquire) == 1 {
                    ingress.armed.store(true, Ordering::Release); // "arrives" during round 1
                }
                let until = Instant::now() + Duration::from_micros(100); // past the slice
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                preempt_point().await;
            }
        })
        .unwrap();
    long.join();
    assert_eq!(seen_at_round.load(Ordering::Acquire), 1, "the arrival ran right after round 1");
}

#[test]
fn the_task_limit_is_backpressure_not_loss() {
    let rt = Runtime::start(RuntimeConfig { tasks_max: 2, ..RuntimeConfig::default() }).unwrap();
    let gate = Arc::new(AtomicBool::new(false));
    let wakers: Vec<_> = (0..2).map(|_| Arc::new(std::sync::Mutex::new(None))).collect();
    let mut handles = Vec::new();
    for waker in &wakers {
        let flag = Flag { set: gate.clone(), waker: waker.clone() };
        handles.push(rt.spawn(flag).unwrap());
    }
    assert!(matches!(rt.spawn(async {}), Err(RuntimeError::Full)), "third task refused");
    assert_eq!(rt.tasks_alive(), 2);
    // Open the gate: both finish, and the slots come back.
    gate.store(true, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(5);
    while handles.iter().any(|h| !h.is_finished()) {
        for waker in &wakers {
            if let Some(w) = waker.lock().unwrap().take() {
                w.wake();
            }
        }
        assert!(Instant::now() < deadline, "gated tasks never finished");
        std::thread::yield_now();
    }
    while rt.tasks_alive() > 0 {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    assert_eq!(rt.spawn(async { 5 }).unwrap().join(), 5, "room again after they finished");
}

#[test]
fn bad_configs_are_refused() {
    let no_workers = RuntimeConfig { workers: 0, ..RuntimeConfig::default() };
    assert!(matches!(Runtime::start(no_workers), Err(RuntimeError::Config(_))));
    let cpus = RuntimeConfig { workers: 2, cpus: Some(vec![0]), ..RuntimeConfig::default() };
    assert!(matches!(Runtime::start(cpus), Err(RuntimeError::Config(_))));
}

#[test]
fn sleeping_tasks_wake_after_their_deadline_and_free_the_worker_meanwhile() {
    let rt = runtime(1, 0);
    let start = Instant::now();
    let sleepers: Vec<_> = (0..50u64)
        .map(|i| {
            rt.spawn(async move {
                let begun = Instant::now();
                sleep(Duration::from_millis(2 + i % 3)).await;
                begun.elapsed()
            })
            .unwrap()
        })
        .collect();
    // While 50 tasks sleep on the single worker, others still run.
    let busy = rt.spawn(async { 7 }).unwrap();
    assert_eq!(busy.join(), 7);
    for (i, sleeper) in sleepers.into_iter().enumerate() {
        let slept = sleeper.join();
        assert!(slept >= Duration::from_millis(2 + i as u64 % 3), "woke early: {slept:?}");
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    let past = rt.spawn(sleep_until(Instant::now() - Duration::from_millis(1))).unwrap();
    past.join();
}

#[test]
fn tasks_still_waiting_when_the_runtime_drops_are_dropped_with_it() {
    let rt = runtime(1, 0);
    let held = std::sync::Arc::new(());
    // One task waits on a timer (its waker in the runtime's timers), one on nothing at all.
    let (a, b) = (held.clone(), held.clone());
    let _sleeping = rt.spawn(async move {
        sleep(Duration::from_secs(30)).await;
        drop(a);
    });
    let _pending = rt.spawn(async move {
        std::future::pending::<()>().await;
        drop(b);
    });
    std::thread::sleep(Duration::from_millis(20)); // both ran once and wait
    drop(rt);
    assert_eq!(std::sync::Arc::strong_count(&held), 1, "their futures were dropped");
}

#[test]
fn a_sleep_dropped_before_its_deadline_leaves_no_timer_behind() {
    let rt = runtime(1, 0);
    // hyper arms a header-read timeout per request and drops it once the headers are in:
    // 10 000 of them must not pile up until their deadlines.
    let armed = rt
        .spawn(async {
            for _ in 0..10_000 {
                let mut timeout = std::pin::pin!(sleep(Duration::from_secs(30)));
                let waker = std::task::Waker::noop();
                let polled = timeout.as_mut().poll(&mut std::task::Context::from_waker(waker));
                assert!(polled.is_pending());
            }
        })
        .unwrap();
    armed.join();
    assert_eq!(rt.shared.timers.armed(), 0);
    // One that fires on time still wakes its task.
    let slept = rt.spawn(sleep(Duration::from_millis(1))).unwrap();
    slept.join();
    assert_eq!(rt.shared.timers.armed(), 0);
}

#[test]
fn work_stealing_runs_tasks_spawned_on_workers_exactly_once() {
    let config = RuntimeConfig {
        workers: 2,
        local_policy: LocalPolicy::Stealing,
        tasks_max: 1 << 17,
        ..RuntimeConfig::default()
    };
    let rt = Runtime::start(config).unwrap();
    let (parents, children) = (200usize, 500usize);
    let marks: Arc<Vec<AtomicU8>> =
        Arc::new((0..parents * children).map(|_| AtomicU8::new(0)).collect());
    let handle = rt.handle();
    let joins: Vec<_> = (0..parents)
        .map(|p| {
            let (marks, handle) = (marks.clone(), handle.clone());
            rt.spawn(async move {
                // Spawned on a worker: onto that worker's own deque, to be stolen by the other.
                for c in 0..children {
                    let marks = marks.clone();
                    let child = async move {
                        marks[p * children + c].fetch_add(1, Ordering::Relaxed);
                    };
                    handle.spawn(child).expect("tasks_max holds every task");
                }
            })
            .unwrap()
        })
        .collect();
    for join in joins {
        join.join();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt.tasks_alive() > 0 {
        assert!(Instant::now() < deadline, "tasks left: {}", rt.tasks_alive());
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(marks.iter().all(|m| m.load(Ordering::Relaxed) == 1), "each child ran exactly once");
}
