//! The agent loop: drain events, dispatch to the policy, post decisions, watch liveness.
//! It holds no policy logic (style guide C).
//!
//! Per app and per worker, each [`Agent::poll`] drains at most `event_batch` events (default
//! [`EVENT_BATCH`]; 1 turns batching off, the ablation's switch), then asks the policy to
//! decide. A decision that does not fit its ring waits in a small per-app backlog, and while
//! that backlog is non-empty the app's events stay in their rings: backpressure reaches the
//! host as a full event ring instead of growing memory here. Prestaged decisions go to the
//! worker's transaction slots (to its ring when every slot is in flight); when the host
//! reports one stale or rejected, the policy hears of it. Nothing is dropped except records
//! that fail validation, which are counted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use link::proto::{AppId, Direction, Epoch, Message, Record, WorkerId};
use link::transport::Session;
use link::{CpEnd, MonoNanos, PeerStatus};

use crate::policy::{Decisions, Delivery, Policy};
use crate::stats::Stats;

/// Most events drained per worker per poll.
pub const EVENT_BATCH: usize = 32;
/// How often to ask the kernel whether an app's socket hung up (a syscall; not per poll).
pub const HANGUP_CHECK_INTERVAL_NS: u64 = 1_000_000;

/// How an app is attached.
#[derive(Debug)]
pub enum Attachment {
    /// Over the memfd transport: a separate process with a session socket.
    Socket(Session),
    /// In the same process (on-host mode, tests): the heap transport.
    InProcess(CpEnd),
}

impl Attachment {
    fn end(&mut self) -> &mut CpEnd {
        match self {
            Attachment::Socket(session) => &mut session.end,
            Attachment::InProcess(end) => end,
        }
    }

    fn hung_up(&self) -> bool {
        match self {
            Attachment::Socket(session) => session.hung_up(),
            Attachment::InProcess(_) => false,
        }
    }

    fn pid(&self) -> Option<i32> {
        match self {
            Attachment::Socket(session) => Some(session.peer.pid()),
            Attachment::InProcess(_) => None,
        }
    }
}

/// Why an app left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detach {
    /// It announced an orderly close.
    Closed,
    /// Its heartbeat stopped for longer than the timeout.
    Silent {
        /// How long.
        silent_ns: u64,
    },
    /// Its session socket hung up (the process exited or crashed).
    HungUp,
    /// The control plane is shutting down.
    Shutdown,
}

#[derive(Debug)]
struct App {
    id: AppId,
    attachment: Attachment,
    backlog: VecDeque<(WorkerId, Record)>,
    /// Prestaged decisions on their way under the delay emulation: (visible at, worker,
    /// decision), in time order.
    staging: VecDeque<(MonoNanos, WorkerId, Record)>,
    /// The channel's emulated one-way delay.
    delay_ns: u64,
    last_hangup_check: MonoNanos,
}

/// The agent: every attached app, one policy, the counters.
pub struct Agent {
    policy: Box<dyn Policy>,
    apps: Vec<App>,
    stats: Arc<Stats>,
    epoch: Epoch,
    events: Vec<Record>,
    event_batch: usize,
    decisions: Decisions,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("policy", &self.policy.name())
            .field("apps", &self.apps.len())
            .finish()
    }
}

impl Agent {
    /// An agent running `policy`, stamping decisions with `epoch`.
    pub fn new(policy: Box<dyn Policy>, epoch: Epoch, stats: Arc<Stats>) -> Agent {
        Agent {
            policy,
            apps: Vec::new(),
            stats,
            epoch,
            events: vec![Record::ZERO; EVENT_BATCH],
            event_batch: EVENT_BATCH,
            decisions: Decisions::with_capacity(EVENT_BATCH * 4),
        }
    }

    /// Drains at most `batch` events per worker before deciding (clamped to
    /// 1..=[`EVENT_BATCH`]; 1: no batching).
    pub fn set_event_batch(&mut self, batch: usize) {
        self.event_batch = batch.clamp(1, EVENT_BATCH);
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Apps attached now.
    pub fn app_count(&self) -> usize {
        self.apps.len()
    }

    /// How long this agent may sleep once idle (its policy's slack).
    pub fn idle_sleep(&self) -> Duration {
        Duration::from_nanos(self.policy.idle_sleep_ns())
    }

    /// Attaches an admitted app.
    pub fn attach(&mut self, mut attachment: Attachment, now: MonoNanos) {
        let end = attachment.end();
        let (id, config) = (end.app, end.layout.config());
        self.policy.on_app_attached(id, config);
        if let Some(table) = end.page_table.clone() {
            self.policy.on_page_table(id, table);
        }
        Stats::add(&self.stats.apps_active, 1);
        let backlog = VecDeque::with_capacity(EVENT_BATCH * 4);
        let staging = VecDeque::new();
        let delay_ns = u64::from(config.delay_ns);
        let app = App { id, attachment, backlog, staging, delay_ns, last_hangup_check: now };
        self.apps.push(app);
    }

    /// One pass over every app. Returns the number of records moved (0: idle).
    pub fn poll(&mut self, now: MonoNanos) -> usize {
        let mut work = 0;
        let mut index = 0;
        while index < self.apps.len() {
            match self.poll_app(index, now, &mut work) {
                None => index += 1,
                Some(reason) => self.detach(index, reason),
            }
        }
        work
    }

    fn poll_app(&mut self, index: usize, now: MonoNanos, work: &mut usize) -> Option<Detach> {
        let app = &mut self.apps[index];
        match app.attachment.end().liveness.tick(now) {
            PeerStatus::Closed => return Some(Detach::Closed),
            PeerStatus::Dead { silent_ns } => return Some(Detach::Silent { silent_ns }),
            PeerStatus::Alive(_) | PeerStatus::Starting => {}
        }
        if now.since(app.last_hangup_check) >= HANGUP_CHECK_INTERVAL_NS {
            app.last_hangup_check = now;
            if app.attachment.hung_up() {
                return Some(Detach::HungUp);
            }
        }
        let staged = publish_due(app, now);
        Stats::add(&self.stats.prestaged, staged);
        let flushed = flush_backlog(app, now);
        Stats::add(&self.stats.decisions, flushed as u64);
        *work += flushed;
        if !app.backlog.is_empty() {
            Stats::add(&self.stats.backpressure_stalls, 1);
            return None;
        }
        let workers = app.attachment.end().workers.len();
        let mut events = 0;
        for worker_index in 0..workers {
            events += self.drain_worker(index, worker_index, now);
        }
        if events > 0 {
            // Decisions that answer no single event: dispatching queued work.
            self.decisions.clear();
            self.policy.decide(self.apps[index].id, now, &mut self.decisions);
            self.post(index, now);
        }
        *work += events;
        None
    }

    fn drain_worker(&mut self, index: usize, worker_index: usize, now: MonoNanos) -> usize {
        let app = &mut self.apps[index];
        let end = app.attachment.end();
        let worker = &mut end.workers[worker_index];
        let count = worker.events.pop_batch(&mut self.events[..self.event_batch], now);
        if count == 0 {
            return 0;
        }
        let (mut malformed, mut stray, mut failed) = (0, 0, 0);
        self.decisions.clear();
        for record in &self.events[..count] {
            match Message::parse_in(record, Direction::Event) {
                Ok(Message::TxnResult(result)) => {
                    let Some(decision) = worker.slots.on_result(&result) else {
                        stray += 1;
                        continue;
                    };
                    if result.outcome == link::proto::TxnOutcome::Committed {
                        continue;
                    }
                    failed += 1;
                    // Our own record, so it parses; if it did not, there is nothing to undo.
                    if let Ok(decision) = Message::parse_in(&decision, Direction::Decision) {
                        let (id, w) = (app.id, worker.worker);
                        self.policy.on_commit_failed(id, w, &decision, result.outcome, now);
                    }
                }
                Ok(event) => {
                    self.policy.on_event(app.id, worker.worker, &event, now, &mut self.decisions)
                }
                Err(_) => malformed += 1,
            }
        }
        let s = &self.stats;
        Stats::add(&s.events, count as u64);
        Stats::add(&s.malformed_events, malformed);
        Stats::add(&s.stray_txn_results, stray);
        Stats::add(&s.failed_commits, failed);
        self.post(index, now);
        count
    }

    /// Posts `self.decisions` to app `index`: prestaged ones into the worker's slots, the rest
    /// (and prestaged ones that find every slot busy) to its ring in order; what does not fit
    /// waits in the app's backlog.
    fn post(&mut self, index: usize, now: MonoNanos) {
        let app = &mut self.apps[index];
        let end = app.attachment.end();
        let (mut posted, mut staged, mut invalid) = (0, 0, 0);
        for (target, decision, delivery) in self.decisions.as_slice() {
            let Some(worker) = end.workers.get_mut(usize::from(target.0)) else {
                invalid += 1;
                continue;
            };
            let record = decision.to_record(self.epoch);
            debug_assert_eq!(decision.kind().direction(), Direction::Decision, "policy bug");
            if *delivery == Delivery::Prestaged && app.delay_ns > 0 {
                // Visible to the host only after the emulated link delay, like a ring record.
                app.staging.push_back((now.plus_ns(app.delay_ns), *target, record));
            } else if *delivery == Delivery::Prestaged && worker.slots.publish(&record).is_ok() {
                staged += 1;
            } else if app.backlog.is_empty() && worker.decisions.try_push(&record, now).is_ok() {
                posted += 1;
            } else {
                app.backlog.push_back((*target, record));
            }
        }
        Stats::add(&self.stats.decisions, posted + staged);
        Stats::add(&self.stats.prestaged, staged);
        Stats::add(&self.stats.invalid_decisions, invalid);
    }

    fn detach(&mut self, index: usize, reason: Detach) {
        let mut app = self.apps.swap_remove(index);
        self.policy.on_app_detached(app.id);
        self.stats.apps_active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let counter = match reason {
            Detach::Closed | Detach::Shutdown => &self.stats.apps_closed,
            Detach::Silent { .. } | Detach::HungUp => &self.stats.apps_lost,
        };
        Stats::add(counter, 1);
        if reason == Detach::Shutdown {
            app.attachment.end().liveness.heartbeat.close();
        }
        let pid = app.attachment.pid().map_or_else(|| "in-process".into(), |p| format!("pid {p}"));
        eprintln!("ipu-cp: app {} ({pid}) detached: {reason:?}", app.id.0);
    }

    /// Detaches every app, telling each that the control plane closed in order.
    pub fn shutdown(&mut self) {
        while !self.apps.is_empty() {
            self.detach(self.apps.len() - 1, Detach::Shutdown);
        }
    }
}

/// Publishes the prestaged decisions whose emulated delay has passed; one that finds every
/// slot busy goes to the ring (backlog) instead. Returns how many went to slots.
fn publish_due(app: &mut App, now: MonoNanos) -> u64 {
    let mut staged = 0;
    let end = app.attachment.end();
    while let Some(&(due, target, record)) = app.staging.front() {
        if due > now {
            break;
        }
        app.staging.pop_front();
        if end.workers[usize::from(target.0)].slots.publish(&record).is_ok() {
            staged += 1;
        } else {
            app.backlog.push_back((target, record));
        }
    }
    staged
}

/// Posts backlogged decisions in order until a ring is full. Returns how many were posted.
fn flush_backlog(app: &mut App, now: MonoNanos) -> usize {
    let mut posted = 0;
    let end = app.attachment.end();
    while let Some((target, record)) = app.backlog.front() {
        let ring = &mut end.workers[usize::from(target.0)].decisions;
        if ring.try_push(record, now).is_err() {
            break;
        }
        app.backlog.pop_front();
        posted += 1;
    }
    posted
}
