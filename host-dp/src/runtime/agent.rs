//! The runtime's link to its agent: the lanes handed to the workers, and the monitor thread
//! that keeps the heartbeat, notices a lost agent, switches to local scheduling, and attaches
//! a new agent when one can be reached.
//!
//! The monitor is not on any fast path: it wakes every `monitor_interval_ns` (a sleep, so it
//! costs almost nothing), checks the agent's heartbeat and, for a separate `ipu-cp`,
//! whether its session socket hung up (a kill -9 is seen at the next wake, not after the
//! heartbeat timeout). A lost agent is noticed within `peer_timeout_ns` plus one interval.
//! Our own heartbeat is beaten by the workers as they poll (and by the monitor): it says the
//! data plane is alive, and a starved monitor thread alone does not make the agent give up
//! on us.
//!
//! Re-attaching needs no replay of state: while in fallback every runnable task sits in the
//! local queue, and workers drain that queue in every mode. The new agent learns each task at
//! its next transition (it becomes runnable, is preempted), and learns each worker when the
//! worker installs its new lane and reports itself idle.

use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use link::{HostEnd, HostWorker, MonoNanos, PeerStatus};

use super::{RuntimeError, RuntimeStats, Scheduler, Shared};

/// A channel to an agent: the host's end and, for a separate process, its session socket
/// (kept open for the session's life; its hang-up means the agent is gone).
#[derive(Debug)]
pub struct AgentChannel {
    /// The host's end of the channel (workers + 1 lanes).
    pub end: HostEnd,
    /// The session socket of the memfd transport; `None` in-process.
    pub session: Option<UnixStream>,
}

/// Why a service refused a channel to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefused {
    /// The channel has the wrong number of lanes for the service.
    #[error("the channel has {lanes} lanes; this service takes {needed}")]
    Lanes {
        /// Lanes it has.
        lanes: usize,
        /// Lanes the service takes.
        needed: usize,
    },
    /// An agent is attached already.
    #[error("an agent is attached already")]
    Attached,
    /// What the service must tell a new agent does not fit its record (an arena too large).
    #[error("the service's state does not fit the attach record")]
    TooLarge,
    /// The new channel's event ring took not even the first record.
    #[error("a fresh event ring is full")]
    RingFull,
}

/// Makes a new link after the agent was lost (e.g. connects to `ipu-cp` again); `None`: not
/// now, try later.
pub type Reattach = Box<dyn FnMut() -> Option<AgentChannel> + Send>;

/// How the runtime works with its agent.
pub struct AgentOptions {
    /// The first link.
    pub link: AgentChannel,
    /// How to get a new link after losing the agent; `None`: stay local.
    pub reattach: Option<Reattach>,
    /// How often the monitor beats and checks the agent.
    pub monitor_interval_ns: u64,
    /// How often to try `reattach` while in fallback.
    pub reattach_interval_ns: u64,
    /// Read decisions ahead at preempt points and look up the tasks they name while the
    /// current task runs (Wave's prefetching, host side). Off: only between tasks.
    pub prefetch: bool,
    /// Report the running task to the agent (a worker tick) at most this often, from preempt
    /// points; 0: never.
    pub tick_ns: u64,
}

impl AgentOptions {
    /// Defaults around `link`: monitor every 500 µs, re-attach every 20 ms, prefetch on,
    /// no ticks.
    pub fn new(link: AgentChannel) -> AgentOptions {
        AgentOptions {
            link,
            reattach: None,
            monitor_interval_ns: 500_000,
            reattach_interval_ns: 20_000_000,
            prefetch: true,
            tick_ns: 0,
        }
    }
}

impl std::fmt::Debug for AgentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentOptions")
            .field("app", &self.link.end.app)
            .field("reattach", &self.reattach.is_some())
            .field("prefetch", &self.prefetch)
            .field("tick_ns", &self.tick_ns)
            .finish()
    }
}

/// What the monitor thread owns (our heartbeat lives in `Shared`: workers beat it too).
pub(super) struct Monitor {
    peer: link::liveness::PeerWatch,
    session: Option<UnixStream>,
    reattach: Option<Reattach>,
    interval_ns: u64,
    reattach_interval_ns: u64,
}

/// Per-worker settings under an agent.
#[derive(Debug, Clone, Copy)]
pub(super) struct LaneOptions {
    pub(super) prefetch: bool,
    pub(super) tick_ns: u64,
}

/// Splits `options` into one lane per worker (the last lane becomes the shared submit lane)
/// and the monitor's part.
pub(super) fn split(
    options: AgentOptions,
    shared: &Shared,
) -> (Vec<Option<HostWorker>>, Monitor, LaneOptions) {
    let AgentOptions { link, reattach, monitor_interval_ns, reattach_interval_ns, .. } = options;
    let lane_options = LaneOptions { prefetch: options.prefetch, tick_ns: options.tick_ns };
    let HostEnd { workers: mut lanes, liveness, .. } = link.end;
    let submit = lanes.pop().expect("checked: workers + 1 lanes");
    *shared.submit.lock().expect("submit lane") = Some(submit.events);
    *shared.heartbeat.lock().expect("heartbeat") = Some(liveness.heartbeat);
    let monitor = Monitor {
        peer: liveness.peer,
        session: link.session,
        reattach,
        interval_ns: monitor_interval_ns.max(10_000),
        reattach_interval_ns,
    };
    (lanes.into_iter().map(Some).collect(), monitor, lane_options)
}

pub(super) fn start_monitor(
    mut monitor: Monitor,
    shared: &Arc<Shared>,
) -> Result<std::thread::JoinHandle<()>, RuntimeError> {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("wave-monitor".into())
        .spawn(move || monitor.run(&shared))
        .map_err(|source| RuntimeError::Worker { worker: usize::MAX, source })
}

impl Monitor {
    fn run(&mut self, shared: &Shared) {
        let mut last_try = MonoNanos::now();
        while !shared.stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_nanos(self.interval_ns));
            let now = MonoNanos::now();
            match shared.scheduler() {
                Scheduler::Agent => {
                    shared.beat(now);
                    let status = self.peer.check(now);
                    let lost = matches!(status, PeerStatus::Dead { .. } | PeerStatus::Closed)
                        || self.session.as_ref().is_some_and(link::transport::peer_hung_up);
                    if lost {
                        *shared.submit.lock().expect("submit lane") = None;
                        *shared.heartbeat.lock().expect("heartbeat") = None;
                        shared.switch_to_local();
                        RuntimeStats::add(&shared.stats.fallbacks, 1);
                    }
                }
                Scheduler::Fallback if now.since(last_try) >= self.reattach_interval_ns => {
                    last_try = now;
                    let link = self.reattach.as_mut().and_then(|reattach| reattach());
                    if let Some(link) = link {
                        self.install(link, shared);
                    }
                }
                Scheduler::Fallback | Scheduler::Local => {}
            }
        }
        if let Some(heartbeat) = shared.heartbeat.lock().expect("heartbeat").as_mut() {
            heartbeat.close(); // an orderly goodbye, seen at once
        }
    }

    /// Hands the new link's lanes to the workers, then returns to agent scheduling.
    fn install(&mut self, link: AgentChannel, shared: &Shared) {
        let HostEnd { workers: mut lanes, liveness, .. } = link.end;
        if lanes.len() != shared.mailboxes.len() + 1 {
            return; // a link of another shape: keep the fallback
        }
        let generation = shared.link_generation.load(Ordering::Acquire) + 1;
        let submit = lanes.pop().expect("checked length");
        for (mailbox, lane) in shared.mailboxes.iter().zip(lanes) {
            *mailbox.lock().expect("lane mailbox") = Some((generation, lane));
        }
        *shared.submit.lock().expect("submit lane") = Some(submit.events);
        *shared.heartbeat.lock().expect("heartbeat") = Some(liveness.heartbeat);
        self.peer = liveness.peer;
        self.session = link.session;
        // Release: a worker that sees the new generation finds its lane in the mailbox.
        shared.link_generation.store(generation, Ordering::Release);
        shared.mode.store(Scheduler::Agent as u8, Ordering::SeqCst);
        RuntimeStats::add(&shared.stats.reattaches, 1);
    }
}
