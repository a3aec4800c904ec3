//! The host side of page tiering: a `memmgr` arena's mechanism, driven by the tier policy
//! over `link` (in `ipu-cp`, offloaded or on-host). The policy reads page states from the
//! arena's page-state table, which the host shares when it attaches ([`connect`],
//! [`heap_pair`]) and the mechanism keeps up to date with per-page atomics. Once per epoch
//! the mechanism thread calls [`TierHost::epoch`]: it finds written pages, applies the
//! commands that came down since the last epoch (each checked against its page's version by
//! the arena), and ends the epoch with the promotion count, the policy's cue to read the
//! table. The host never waits for the policy: commands decided on an epoch are applied at
//! the next one.
//!
//! Between epochs the mechanism thread calls [`TierHost::tick`] every millisecond or so: it
//! keeps the heartbeat, and takes the agent's commands off the ring into the epoch's batch.
//!
//! With no agent (never attached, or lost: heartbeat timeout or session hang-up) the arena
//! is in local mode: nothing is parked or demoted, parked and compressed pages come back on
//! touch as always. No data is at stake in any of this: the arena's page states and
//! versions are the truth, the policy only proposes.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use link::liveness::Liveness;
use link::proto::{Direction, Epoch, Message, TierMessage};
use link::tier_table::PageTableView;
use link::{ChannelConfig, CpEnd, HostWorker, LivenessConfig, MonoNanos, PeerStatus};
use memmgr::{Arena, Command, Op};

use crate::runtime::{AgentChannel, LinkRefused, Reattach};

/// Most commands held for an epoch (bounds an epoch's work against a flooding agent).
const DECISIONS_PER_EPOCH_MAX: usize = 1 << 20;
/// How long an epoch's end may wait for room in a full event ring before it is skipped (the
/// policy then reads the table at the next one).
const REPORT_WAIT_NS: u64 = 20_000_000;

/// What the tier host did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TierHostStats {
    /// Epochs run (with or without an agent).
    pub epochs: u64,
    /// Commands carried out.
    pub applied: u64,
    /// Commands refused as stale (the page changed after the decision).
    pub stale: u64,
    /// Commands with nothing to do (page already there, or incompressible).
    pub skipped: u64,
    /// Decisions refused as malformed: not a tier command, a page outside the arena.
    pub rejected: u64,
    /// Epoch ends sent.
    pub epoch_ends: u64,
    /// Epoch ends skipped because the ring stayed full.
    pub deferred: u64,
    /// Times the agent was lost and the arena went local.
    pub fallbacks: u64,
    /// Agents attached after a loss.
    pub reattaches: u64,
    /// Bytes of promoted pages' compressed copies freed.
    pub reclaimed_bytes: u64,
}

struct Agent {
    lane: HostWorker,
    liveness: Liveness,
    session: Option<UnixStream>,
    epoch: Epoch,
}

/// The tier mechanism's link to its policy. Owned by one mechanism thread.
pub struct TierHost {
    arena: Arc<Arena>,
    agent: Option<Agent>,
    batch: Vec<Command>,
    last_promotions: u64,
    stats: TierHostStats,
}

impl std::fmt::Debug for TierHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierHost")
            .field("pages", &self.arena.pages())
            .field("attached", &self.agent.is_some())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Why a tier agent could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The handshake with `ipu-cp` failed (or it refused the table).
    #[error(transparent)]
    Connect(#[from] link::transport::ConnectError),
    /// The channel's shape is out of bounds.
    #[error("channel shape: {0}")]
    Config(#[from] link::layout::ConfigError),
    /// The table could not be mapped for an in-process agent.
    #[error("the page-state table: {0}")]
    Table(#[from] link::tier_table::TableError),
    /// Its fd could not be duplicated.
    #[error("sharing the page-state table: {0}")]
    Io(#[from] std::io::Error),
}

/// Attaches `arena`'s tier service to the `ipu-cp` listening at `socket`, sharing the
/// arena's page-state table (one lane of `shape`).
pub fn connect(
    arena: &Arena,
    socket: &Path,
    shape: ChannelConfig,
    liveness: LivenessConfig,
    timeout: Duration,
) -> Result<AgentChannel, AttachError> {
    let table = arena.table().fd();
    let conn = link::transport::connect_tier(socket, shape, Epoch(1), liveness, timeout, table)?;
    Ok(AgentChannel { end: conn.end, session: Some(conn.stream) })
}

/// An in-process tier channel for an agent thread (on-host mode): the host's link, and the
/// agent's end, which reads the arena's page-state table through a read-only mapping of its
/// own, as `ipu-cp` does.
pub fn heap_pair(
    arena: &Arena,
    shape: ChannelConfig,
    liveness: LivenessConfig,
    now: MonoNanos,
) -> Result<(AgentChannel, CpEnd), AttachError> {
    let table = PageTableView::open(arena.table().fd().try_clone_to_owned()?)?;
    let (end, mut cp) = link::channel::heap_pair(shape, liveness, Epoch(1), Epoch(2), now)?;
    cp.page_table = Some(Arc::new(table));
    Ok((AgentChannel { end, session: None }, cp))
}

impl TierHost {
    /// The tier host of `arena`, local (no agent) until [`TierHost::attach`].
    pub fn new(arena: Arc<Arena>) -> TierHost {
        TierHost {
            arena,
            agent: None,
            batch: Vec::new(),
            last_promotions: 0,
            stats: TierHostStats::default(),
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> TierHostStats {
        self.stats
    }

    /// Whether an agent decides (else the arena is local: no demotion).
    pub fn is_attached(&self) -> bool {
        self.agent.is_some()
    }

    /// Attaches an agent (a one-lane channel of the tier service, made by [`connect`] or
    /// [`heap_pair`], so that the agent holds the arena's table) and tells it the arena's
    /// size.
    pub fn attach(&mut self, link: AgentChannel, now: MonoNanos) -> Result<(), LinkRefused> {
        if self.agent.is_some() {
            return Err(LinkRefused::Attached);
        }
        let AgentChannel { end, session } = link;
        let link::HostEnd { workers: mut lanes, liveness, .. } = end;
        if lanes.len() != 1 {
            return Err(LinkRefused::Lanes { lanes: lanes.len(), needed: 1 });
        }
        let mut lane = lanes.pop().expect("one lane");
        let pages = u32::try_from(self.arena.pages()).map_err(|_| LinkRefused::TooLarge)?;
        let epoch = Epoch(1);
        let attach = Message::Tier(TierMessage::Attach { pages }).to_record(epoch);
        lane.events.try_push(&attach, now).map_err(|_| LinkRefused::RingFull)?;
        if self.stats.fallbacks > 0 {
            self.stats.reattaches += 1;
        }
        self.agent = Some(Agent { lane, liveness, session, epoch });
        Ok(())
    }

    /// Beats the heartbeat: call it at least every millisecond between epochs (the agent
    /// gives up on a host silent for its peer timeout, 10 ms by default in `ipu-cp`).
    pub fn tick(&mut self, now: MonoNanos) {
        if let Some(agent) = self.agent.as_mut() {
            agent.liveness.heartbeat.beat(now);
        }
        self.take_decisions(now);
    }

    /// One epoch: finds written pages (write tracking), frees the compressed copies of
    /// promoted pages that were written, notices a lost agent, applies the commands that
    /// came down and ends the epoch (the table now holds their outcome). Errors are the
    /// arena's own (a failed `userfaultfd` or `PAGEMAP_SCAN` call).
    pub fn epoch(&mut self, now: MonoNanos) -> Result<(), memmgr::Error> {
        self.stats.epochs += 1;
        let promotions = memmgr::get(&self.arena.counters().promotions);
        let delta = promotions.saturating_sub(self.last_promotions);
        self.last_promotions = promotions;
        // Promoted pages' compressed copies are freed here, off the fault path, once written
        // (a clean one is kept: demoting the page again reuses it).
        self.arena.track_writes()?;
        self.stats.reclaimed_bytes += self.arena.reclaim();
        if self.agent_lost(now) {
            self.agent = None;
            self.batch.clear(); // local: no demotion
            self.stats.fallbacks += 1;
        }
        if self.agent.is_none() {
            return Ok(());
        }
        self.apply_decisions(now)?;
        self.report(now, delta);
        Ok(())
    }

    fn agent_lost(&mut self, now: MonoNanos) -> bool {
        let Some(agent) = self.agent.as_mut() else { return false };
        if matches!(agent.liveness.tick(now), PeerStatus::Dead { .. } | PeerStatus::Closed) {
            return true;
        }
        agent.session.as_ref().is_some_and(link::transport::peer_hung_up)
    }

    /// Moves the agent's commands off the ring into the epoch's batch (so the ring keeps
    /// flowing between epochs); beyond the batch's bound, commands are refused and counted.
    fn take_decisions(&mut self, now: MonoNanos) {
        let Some(agent) = self.agent.as_mut() else { return };
        for _ in 0..DECISIONS_PER_EPOCH_MAX {
            let Some(record) = agent.lane.decisions.try_pop(now) else { break };
            let (page, version, op) = match Message::parse_in(&record, Direction::Decision) {
                Ok(Message::Tier(TierMessage::Park { page, version })) => (page, version, Op::Park),
                Ok(Message::Tier(TierMessage::Demote { page, version })) => {
                    (page, version, Op::Demote)
                }
                _ => {
                    self.stats.rejected += 1;
                    continue;
                }
            };
            if self.batch.len() >= DECISIONS_PER_EPOCH_MAX {
                self.stats.rejected += 1;
                continue;
            }
            self.batch.push(Command { page, version, op });
        }
    }

    fn apply_decisions(&mut self, now: MonoNanos) -> Result<(), memmgr::Error> {
        self.take_decisions(now);
        let applied = self.arena.apply(&self.batch);
        self.batch.clear();
        let applied = applied?;
        self.stats.applied += applied.done;
        self.stats.stale += applied.stale;
        self.stats.skipped += applied.skipped;
        self.stats.rejected += applied.invalid;
        Ok(())
    }

    fn report(&mut self, now: MonoNanos, promotions: u64) {
        let Some(agent) = self.agent.as_mut() else { return };
        agent.liveness.heartbeat.beat(now);
        let mut waited_ns = 0;
        if push(agent, TierMessage::Epoch { promotions }, &mut waited_ns) {
            self.stats.epoch_ends += 1;
        } else {
            self.stats.deferred += 1;
        }
    }
}

impl Drop for TierHost {
    fn drop(&mut self) {
        if let Some(agent) = self.agent.as_mut() {
            agent.liveness.heartbeat.close(); // an orderly goodbye: the agent sees it at once
        }
    }
}

/// Pushes one event, waiting for room while the epoch's wait budget lasts.
fn push(agent: &mut Agent, message: TierMessage, waited_ns: &mut u64) -> bool {
    let record = Message::Tier(message).to_record(agent.epoch);
    loop {
        let began = MonoNanos::now();
        if agent.lane.events.try_push(&record, began).is_ok() {
            return true;
        }
        if *waited_ns >= REPORT_WAIT_NS {
            return false;
        }
        std::hint::spin_loop();
        *waited_ns += MonoNanos::now().since(began).max(100);
    }
}

/// A tier host on its own mechanism thread: an epoch every `epoch`, a tick every millisecond
/// between them, and, while no agent is attached, one try per epoch to attach one through
/// `reattach` (e.g. connecting to `ipu-cp` again). Stops when dropped.
#[derive(Debug)]
pub struct TierThread {
    stop: Arc<AtomicBool>,
    attached: Arc<AtomicBool>,
    handle: Option<JoinHandle<TierHostStats>>,
}

impl TierThread {
    /// Starts the thread.
    pub fn spawn(
        mut host: TierHost,
        epoch: Duration,
        mut reattach: Option<Reattach>,
    ) -> std::io::Result<TierThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let attached = Arc::new(AtomicBool::new(host.is_attached()));
        let (flag, attached_now) = (stop.clone(), attached.clone());
        let handle = std::thread::Builder::new().name("wave-tier".into()).spawn(move || {
            let mut next_epoch = Instant::now() + epoch;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
                host.tick(MonoNanos::now());
                attached_now.store(host.is_attached(), Ordering::Relaxed);
                if Instant::now() < next_epoch {
                    continue;
                }
                next_epoch += epoch;
                if !host.is_attached()
                    && let Some(link) = reattach.as_mut().and_then(|r| r())
                {
                    let _ = host.attach(link, MonoNanos::now());
                }
                // A failed userfaultfd call leaves the arena as it was; the next epoch retries.
                let _ = host.epoch(MonoNanos::now());
            }
            host.stats()
        })?;
        Ok(TierThread { stop, attached, handle: Some(handle) })
    }

    /// Whether an agent decides (as of the thread's last tick).
    pub fn is_attached(&self) -> bool {
        self.attached.load(Ordering::Relaxed)
    }

    /// Stops the thread; returns what its host did.
    pub fn stop(mut self) -> TierHostStats {
        self.halt()
    }

    fn halt(&mut self) -> TierHostStats {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

impl Drop for TierThread {
    fn drop(&mut self) {
        self.halt();
    }
}
