//! The on-host mode: the agent in a thread of the app, over `link`'s heap transport. The
//! policy code and the agent loop are the ones `ipu-cp` runs offloaded; only the transport
//! and the core they occupy differ, which is what the comparison measures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use link::{CpEnd, MonoNanos};

use crate::agent::{Agent, Attachment};
use crate::policy::Policy;
use crate::server::Backoff;
use crate::stats::Stats;

/// How the agent thread runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnHostOptions {
    /// Pin it to this CPU.
    pub cpu: Option<usize>,
    /// Events drained per worker before the policy decides (1: no batching).
    pub event_batch: usize,
    /// Never sleep when idle (a dedicated core).
    pub spin: bool,
}

impl Default for OnHostOptions {
    fn default() -> Self {
        OnHostOptions { cpu: None, event_batch: crate::agent::EVENT_BATCH, spin: false }
    }
}

/// An agent thread serving one in-process app.
#[derive(Debug)]
pub struct OnHostAgent {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
    stats: Arc<Stats>,
    tid: Arc<std::sync::atomic::AtomicI32>,
}

impl OnHostAgent {
    /// Starts the agent thread running `policy` for the app at the other end of `end`.
    pub fn start(
        policy: Box<dyn Policy>,
        end: CpEnd,
        options: OnHostOptions,
    ) -> std::io::Result<OnHostAgent> {
        let OnHostOptions { cpu, event_batch, spin } = options;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let mut agent = Agent::new(policy, crate::fresh_epoch(), stats.clone());
        agent.set_event_batch(event_batch);
        let tid = Arc::new(std::sync::atomic::AtomicI32::new(0));
        let thread = {
            let (stop, tid) = (stop.clone(), tid.clone());
            std::thread::Builder::new().name("wave-agent".into()).spawn(move || {
                tid.store(nix::unistd::gettid().as_raw(), Ordering::Release);
                if let Some(cpu) = cpu {
                    crate::pin_current_thread(cpu).expect("pin the agent thread");
                }
                agent.attach(Attachment::InProcess(end), MonoNanos::now());
                let mut backoff = Backoff::new(spin);
                backoff.set_sleep(agent.idle_sleep());
                while !stop.load(Ordering::Relaxed) {
                    if agent.poll(MonoNanos::now()) > 0 {
                        backoff.busy();
                    } else {
                        backoff.idle();
                    }
                }
                agent.shutdown();
                thread_cpu_ns()
            })?
        };
        Ok(OnHostAgent { stop, thread: Some(thread), stats, tid })
    }

    /// The agent thread's kernel thread id (0 until it started), e.g. to read its CPU time
    /// from `/proc/self/task/<tid>/stat` while it runs.
    pub fn tid(&self) -> i32 {
        self.tid.load(Ordering::Acquire)
    }

    /// CPU time the agent thread used so far (10 ms resolution), ns; `None` before it
    /// started or where `/proc` cannot tell.
    pub fn cpu_ns(&self) -> Option<u64> {
        crate::stat_cpu_ns(&format!("/proc/self/task/{}/stat", self.tid()))
    }

    /// The agent's counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Stops the agent (the app is told it closed) and returns the CPU time its thread used.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |thread| thread.join().unwrap_or(0))
    }
}

impl Drop for OnHostAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// CPU time of the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |t| {
        let (secs, nanos) = (u64::try_from(t.tv_sec()), u64::try_from(t.tv_nsec()));
        secs.unwrap_or(0) * 1_000_000_000 + nanos.unwrap_or(0)
    })
}
