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

/// An agent thread serving one in-process app.
#[derive(Debug)]
pub struct OnHostAgent {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
    stats: Arc<Stats>,
}

impl OnHostAgent {
    /// Starts the agent thread running `policy` for the app at the other end of `end`,
    /// pinned to `cpu` if given, draining `event_batch` events per worker before deciding.
    pub fn start(
        policy: Box<dyn Policy>,
        end: CpEnd,
        cpu: Option<usize>,
        event_batch: usize,
    ) -> std::io::Result<OnHostAgent> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let mut agent = Agent::new(policy, crate::fresh_epoch(), stats.clone());
        agent.set_event_batch(event_batch);
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new().name("wave-agent".into()).spawn(move || {
                if let Some(cpu) = cpu {
                    crate::pin_current_thread(cpu).expect("pin the agent thread");
                }
                agent.attach(Attachment::InProcess(end), MonoNanos::now());
                let mut backoff = Backoff::default();
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
        Ok(OnHostAgent { stop, thread: Some(thread), stats })
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
