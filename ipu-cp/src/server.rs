//! The control plane's front door and main loop.
//!
//! [`Server::bind`] claims the socket (so a bad path fails before anything starts);
//! [`Server::run`] starts the acceptor thread and runs the agent loop in the calling thread
//! until `stop` is set. The acceptor does handshakes (which may wait on a slow app for up to
//! the handshake timeout) so the agent loop never blocks; admitted sessions reach the agent
//! over a bounded channel.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use link::MonoNanos;
use link::proto::{AppId, Epoch, Service};
use link::transport::{AcceptPolicy, BindError, Listener, Session};

use crate::agent::{Agent, Attachment};
use crate::policy::Policy;
use crate::stats::Stats;

/// Most apps served at once unless configured otherwise.
pub const MAX_APPS_DEFAULT: u16 = 64;
/// Admitted sessions waiting for the agent to pick them up.
const HANDOFF_QUEUE: usize = 16;
/// How often counters are copied into the `metrics` facade.
const METRICS_EXPORT_INTERVAL_NS: u64 = 100_000_000;

/// What the server needs to know.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The Unix socket apps connect to.
    pub socket: PathBuf,
    /// Most apps attached at once; more are refused with `TooManyApps`.
    pub max_apps: usize,
    /// Handshake and liveness policy.
    pub accept: AcceptPolicy,
    /// This incarnation's epoch.
    pub epoch: Epoch,
    /// Events drained per worker before the policy decides (1: no batching).
    pub event_batch: usize,
    /// Never sleep when idle (a dedicated core).
    pub spin: bool,
}

/// A bound, not yet running control plane.
#[derive(Debug)]
pub struct Server {
    listener: Listener,
    config: ServerConfig,
    stats: Arc<Stats>,
}

impl Server {
    /// Claims the socket path.
    pub fn bind(config: ServerConfig) -> Result<Server, BindError> {
        let listener = Listener::bind(&config.socket)?;
        Ok(Server { listener, config, stats: Arc::new(Stats::default()) })
    }

    /// The counters (shared; readable while running).
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Serves until `stop` becomes true, then detaches every app in order and removes the
    /// socket file. Returns the counters.
    pub fn run(self, policies: Policies, stop: &Arc<AtomicBool>) -> Arc<Stats> {
        let Server { listener, config, stats } = self;
        let (handoff, sessions) = bounded::<Session>(HANDOFF_QUEUE);
        let acceptor = {
            let (stats, stop, config) = (stats.clone(), stop.clone(), config.clone());
            std::thread::Builder::new()
                .name("ipu-cp-accept".into())
                .spawn(move || accept_loop(&listener, &config, &stats, &stop, &handoff))
                .expect("spawn acceptor thread")
        };
        let mut agents = [policies.sched, policies.net, policies.tier].map(|policy| {
            let mut agent = Agent::new(policy, config.epoch, stats.clone());
            agent.set_event_batch(config.event_batch);
            agent
        });
        agent_loop(&mut agents, &sessions, stop, config.spin);
        for agent in &mut agents {
            agent.shutdown();
        }
        acceptor.join().expect("acceptor thread");
        stats.export();
        stats
    }
}

/// Spin, then yield, then sleep briefly: idle polling that leaves a 2-vCPU machine usable.
/// Or, on a dedicated core, spin only: an idle sleep costs the next event its length.
#[derive(Debug)]
pub struct Backoff {
    idle_polls: u32,
    spin_only: bool,
    sleep: Duration,
}

impl Backoff {
    const SPINS: u32 = 2_000;
    const YIELDS: u32 = 2_100;
    /// The sleep unless told otherwise ([`Backoff::set_sleep`]).
    pub const SLEEP: Duration = Duration::from_micros(50);

    /// A backoff that never yields or sleeps (for a dedicated core).
    pub fn spinning() -> Backoff {
        Backoff::new(true)
    }

    /// Spinning if `spin_only`, else the polite default.
    pub fn new(spin_only: bool) -> Backoff {
        Backoff { idle_polls: 0, spin_only, sleep: Self::SLEEP }
    }

    /// Sleeps of `sleep` once idle (the slack of the policies served).
    pub fn set_sleep(&mut self, sleep: Duration) {
        self.sleep = sleep;
    }

    /// Call after a poll that did no work.
    pub fn idle(&mut self) {
        self.idle_polls = self.idle_polls.saturating_add(1);
        if self.spin_only || self.idle_polls < Self::SPINS {
            std::hint::spin_loop();
        } else if self.idle_polls < Self::YIELDS {
            std::thread::yield_now();
        } else {
            std::thread::sleep(self.sleep);
        }
    }

    /// Call after a poll that did work.
    pub fn busy(&mut self) {
        self.idle_polls = 0;
    }
}

/// The policy serving each service (one agent each, polled in turn by one thread).
pub struct Policies {
    /// Scheduling (and the echo probe).
    pub sched: Box<dyn Policy>,
    /// Connection control.
    pub net: Box<dyn Policy>,
    /// Page tiering.
    pub tier: Box<dyn Policy>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("sched", &self.sched.name())
            .field("net", &self.net.name())
            .field("tier", &self.tier.name())
            .finish()
    }
}

/// How long the agent thread waits for a session at a time while no app is attached.
const NO_APP_WAIT: Duration = Duration::from_millis(10);

fn agent_loop(
    agents: &mut [Agent; 3],
    sessions: &Receiver<Session>,
    stop: &AtomicBool,
    spin: bool,
) {
    let mut backoff = Backoff::new(spin);
    let mut last_export = MonoNanos::now();
    while !stop.load(Ordering::Relaxed) {
        // No app to serve: wait for one instead of polling, so an idle ipu-cp costs no CPU
        // (its 50 µs polling sleeps woke it 20 000 times a second, on the apps' cores).
        // Bounded, so `stop` is seen.
        let arrived = if agents.iter().all(|agent| agent.app_count() == 0) {
            sessions.recv_timeout(NO_APP_WAIT).ok()
        } else {
            None
        };
        let now = MonoNanos::now();
        for session in arrived.into_iter().chain(std::iter::from_fn(|| sessions.try_recv().ok())) {
            let agent = match session.hello.service {
                Service::Sched => &mut agents[0],
                Service::Net => &mut agents[1],
                Service::Tier => &mut agents[2],
            };
            agent.attach(Attachment::Socket(session), now);
            backoff.busy();
        }
        let work: usize = agents.iter_mut().map(|agent| agent.poll(now)).sum();
        if work > 0 {
            backoff.busy();
        } else {
            // Idle sleeps as long as the most hurried policy with an app allows (the tier
            // policy alone works in epochs: its 50 µs sleeps took 16 % of a core).
            let slack = agents.iter().filter(|a| a.app_count() > 0).map(Agent::idle_sleep).min();
            backoff.set_sleep(slack.unwrap_or(Backoff::SLEEP));
            backoff.idle();
        }
        if now.since(last_export) >= METRICS_EXPORT_INTERVAL_NS {
            agents[0].stats().export();
            last_export = now;
        }
    }
}

fn accept_loop(
    listener: &Listener,
    config: &ServerConfig,
    stats: &Stats,
    stop: &AtomicBool,
    handoff: &Sender<Session>,
) {
    let mut generation: u16 = 0;
    let mut next_index: u16 = 0;
    while !stop.load(Ordering::Relaxed) {
        let incoming = match listener.try_accept() {
            Ok(Some(incoming)) => incoming,
            Ok(None) => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(error) => {
                eprintln!("ipu-cp: accept failed: {error}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        next_index = next_index.wrapping_add(1);
        if next_index == 0 {
            generation = generation.wrapping_add(1);
        }
        let app = AppId::new(next_index, generation.wrapping_add(1));
        // Admitted but not yet attached sessions count too, so the limit is never exceeded.
        let active = stats.apps_active.load(Ordering::Relaxed) + handoff.len() as u64;
        let room = active < config.max_apps as u64;
        match incoming.admit(&config.accept, app, config.epoch, room, MonoNanos::now()) {
            Ok(session) => {
                let pid = session.peer.pid();
                let hello = session.hello;
                Stats::add(&stats.apps_admitted, 1);
                eprintln!(
                    "ipu-cp: app {} attached for {:?} (pid {pid}, {} lanes, ring {}, {} slots, \
                     delay {} ns)",
                    app.0,
                    hello.service,
                    hello.workers,
                    hello.ring_capacity,
                    hello.prestage_slots,
                    hello.delay_ns
                );
                if let Err(TrySendError::Full(session) | TrySendError::Disconnected(session)) =
                    handoff.try_send(session)
                {
                    // The agent is not keeping up with arrivals: wait for it (bounded by stop).
                    if !send_until_stopped(handoff, session, stop) {
                        return;
                    }
                }
            }
            Err(error) => {
                Stats::add(&stats.apps_refused, 1);
                eprintln!("ipu-cp: {error}");
            }
        }
    }
}

fn send_until_stopped(handoff: &Sender<Session>, mut session: Session, stop: &AtomicBool) -> bool {
    loop {
        match handoff.send_timeout(session, Duration::from_millis(10)) {
            Ok(()) => return true,
            Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => session = back,
            Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return false,
        }
        if stop.load(Ordering::Relaxed) {
            return false;
        }
    }
}
