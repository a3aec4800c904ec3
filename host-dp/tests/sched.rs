//! The runtime under an agent in the same process (on-host mode): `ipu-cp`'s agent loop and
//! policies in a thread, over `link`'s heap transport. Every task must run exactly once,
//! whatever the policy, the prestaging depth, or an agent lost mid-run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use host_dp::runtime::{
    AgentChannel, AgentOptions, Runtime, RuntimeConfig, Scheduler, preempt_point,
};
use ipu_cp::on_host::{OnHostAgent, OnHostOptions};
use ipu_cp::policy::{self, SchedConfig};
use link::proto::Epoch;
use link::{ChannelConfig, LivenessConfig, MonoNanos};

/// Generous: with three busy threads on two vCPUs (agent, worker, spawner) any of them can be
/// descheduled for tens of milliseconds, and these tests are not about detecting a loss. The
/// fallback test stops its agent in order, which is seen at once.
fn liveness() -> LivenessConfig {
    LivenessConfig { heartbeat_interval_ns: 100_000, peer_timeout_ns: 500_000_000 }
}

/// These tests each keep two or three threads spinning; on a 2-vCPU machine they run one at a
/// time, or the agents starve each other past their timeouts.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A runtime of `workers` workers scheduled by `name` in an agent thread.
fn on_host(workers: u16, name: &str, depth: u16, slice_ns: u64) -> (Runtime, OnHostAgent) {
    let config =
        ChannelConfig { workers: workers + 1, ring_capacity: 256, prestage_slots: 4, delay_ns: 0 };
    let (host, cp) =
        link::channel::heap_pair(config, liveness(), Epoch(1), Epoch(2), MonoNanos::now()).unwrap();
    let policy = policy::by_name(name, SchedConfig { slice_ns, prestage_depth: depth }).unwrap();
    let agent = OnHostAgent::start(policy, cp, OnHostOptions::default()).unwrap();
    let options = AgentOptions::new(AgentChannel { end: host, session: None });
    let config =
        RuntimeConfig { workers: usize::from(workers), tasks_max: 1 << 16, ..Default::default() };
    let runtime = Runtime::start_with_agent(config, options).unwrap();
    (runtime, agent)
}

/// Spawns with backpressure: waits while the runtime holds `tasks_max` tasks.
fn spawn_waiting<F>(runtime: &Runtime, make: impl Fn() -> F) -> host_dp::runtime::JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        match runtime.spawn(make()) {
            Ok(handle) => return handle,
            Err(host_dp::runtime::RuntimeError::Full) => std::thread::yield_now(),
            Err(error) => panic!("spawn: {error}"),
        }
    }
}

fn wait_all_finished(runtime: &Runtime) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while runtime.tasks_alive() > 0 {
        assert!(Instant::now() < deadline, "{} tasks never finished", runtime.tasks_alive());
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Spawns `count` tasks that each mark their own cell; checks each ran exactly once.
fn run_exactly_once(runtime: &Runtime, count: usize) {
    let marks: Arc<Vec<AtomicU8>> = Arc::new((0..count).map(|_| AtomicU8::new(0)).collect());
    for index in 0..count {
        spawn_waiting(runtime, || {
            let marks = marks.clone();
            async move {
                marks[index].fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    wait_all_finished(runtime);
    let wrong: Vec<usize> =
        (0..count).filter(|&i| marks[i].load(Ordering::Relaxed) != 1).take(5).collect();
    assert!(wrong.is_empty(), "tasks not run exactly once: {wrong:?}");
}

#[test]
fn fifo_on_host_runs_every_task_once_through_the_agent() {
    let _serial = serial();
    for depth in [0, 1] {
        let (runtime, agent) = on_host(2, "fifo", depth, 0);
        run_exactly_once(&runtime, 20_000);
        let stats = runtime.stats();
        assert_eq!(runtime.scheduler(), Scheduler::Agent);
        assert_eq!(stats.committed.load(Ordering::Relaxed), 20_000, "depth {depth}");
        assert_eq!(stats.local_runs.load(Ordering::Relaxed), 0, "the agent decided every run");
        assert_eq!(stats.rejected.load(Ordering::Relaxed), 0);
        let prestaged = agent.stats().snapshot().prestaged;
        assert_eq!(prestaged > 0, depth > 0, "depth {depth}: {prestaged} prestaged");
        drop(runtime);
        agent.stop();
    }
}

#[test]
fn shinjuku_on_host_preempts_long_tasks_and_tasks_that_wait_on_each_other_finish() {
    let _serial = serial();
    let (runtime, agent) = on_host(2, "shinjuku", 1, 20_000);
    let done = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for i in 0..200u64 {
        let done = done.clone();
        handles.push(spawn_waiting(&runtime, move || {
            let done = done.clone();
            async move {
                // Every 20th task is long (~300 µs) and offers the CPU as it goes.
                let until =
                    Instant::now() + Duration::from_micros(if i % 20 == 0 { 300 } else { 5 });
                while Instant::now() < until {
                    preempt_point().await;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Tasks that block on the others' results: they sleep and are woken across workers.
    let mut joiners = Vec::new();
    while !handles.is_empty() {
        let batch: Vec<_> = handles.drain(..handles.len().min(20)).collect();
        let batch = std::sync::Mutex::new(Some(batch));
        joiners.push(spawn_waiting(&runtime, || {
            let batch = batch.lock().unwrap().take().unwrap_or_default();
            async move {
                for handle in batch {
                    handle.await;
                }
            }
        }));
    }
    for joiner in joiners {
        joiner.join();
    }
    assert_eq!(done.load(Ordering::Relaxed), 200);
    wait_all_finished(&runtime);
    assert!(runtime.preemptions() > 0, "long tasks were preempted at their slice");
    assert_eq!(runtime.stats().local_runs.load(Ordering::Relaxed), 0);
    drop(runtime);
    agent.stop();
}

#[test]
fn timers_block_and_wake_tasks_through_the_agent() {
    let _serial = serial();
    let (runtime, agent) = on_host(2, "fifo", 1, 0);
    let handles: Vec<_> = (0..100u64)
        .map(|i| {
            spawn_waiting(&runtime, move || async move {
                let begun = Instant::now();
                host_dp::runtime::sleep(Duration::from_micros(500 + 10 * i)).await;
                assert!(begun.elapsed() >= Duration::from_micros(500 + 10 * i));
            })
        })
        .collect();
    for handle in handles {
        handle.join();
    }
    wait_all_finished(&runtime);
    let stats = runtime.stats();
    // Each task ran twice (before and after its sleep), both times by a decision.
    assert_eq!(stats.committed.load(Ordering::Relaxed), 200);
    assert_eq!(stats.local_runs.load(Ordering::Relaxed), 0);
    drop(runtime);
    agent.stop();
}

#[test]
fn a_million_tasks_run_exactly_once_on_host() {
    let _serial = serial();
    let (runtime, agent) = on_host(1, "fifo", 2, 0);
    run_exactly_once(&runtime, 1_000_000);
    assert_eq!(runtime.stats().committed.load(Ordering::Relaxed), 1_000_000);
    drop(runtime);
    agent.stop();
}

#[test]
fn losing_the_agent_falls_back_to_local_scheduling_without_losing_a_task() {
    let _serial = serial();
    let (runtime, agent) = on_host(2, "fifo", 1, 0);
    let mut agent = Some(agent);
    let count = 50_000;
    let marks: Arc<Vec<AtomicU8>> = Arc::new((0..count).map(|_| AtomicU8::new(0)).collect());
    for index in 0..count {
        if index == count / 2 {
            agent.take().unwrap().stop(); // mid-run; the runtime must notice and carry on locally
            let deadline = Instant::now() + Duration::from_secs(5);
            while runtime.scheduler() != Scheduler::Fallback {
                assert!(Instant::now() < deadline, "no fallback after the agent left");
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        spawn_waiting(&runtime, || {
            let marks = marks.clone();
            async move {
                marks[index].fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    wait_all_finished(&runtime);
    let wrong = (0..count).filter(|&i| marks[i].load(Ordering::Relaxed) != 1).count();
    assert_eq!(wrong, 0, "every task ran exactly once across the switch");
    let stats = runtime.stats();
    assert_eq!(stats.fallbacks.load(Ordering::Relaxed), 1);
    assert!(stats.local_runs.load(Ordering::Relaxed) >= (count / 2) as u64);
}
