//! The policy contract of the agent, and the policies.
//!
//! A policy is a pure function of (its state, an event, now) that appends decisions. It never
//! touches a ring, a socket or a clock: the agent does the I/O and passes time in, so a policy
//! runs the same offloaded, on-host, or under a test's fake clock.

use std::sync::Arc;

use link::proto::{AppId, Message, PongRepr, TxnOutcome, WorkerId};
use link::tier_table::PageTableView;
use link::{ChannelConfig, MonoNanos};

/// How a decision reaches the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Through the worker's decision ring, read in order.
    Ring,
    /// Prestaged in one of the worker's transaction slots, claimed when the worker needs work
    /// (through the ring if every slot is busy). Its outcome comes back as a `TxnResult`.
    Prestaged,
}

/// Where the policy's decisions go: a list of (worker, decision, delivery) the agent posts.
#[derive(Debug, Default)]
pub struct Decisions {
    items: Vec<(WorkerId, Message, Delivery)>,
}

impl Decisions {
    /// Empty, with room for `capacity` decisions before reallocating.
    pub fn with_capacity(capacity: usize) -> Decisions {
        Decisions { items: Vec::with_capacity(capacity) }
    }
    /// Adds a decision for `worker`, sent through its ring.
    pub fn push(&mut self, worker: WorkerId, decision: Message) {
        self.items.push((worker, decision, Delivery::Ring));
    }
    /// Adds a decision for `worker`, delivered as `delivery` says.
    pub fn push_via(&mut self, worker: WorkerId, decision: Message, delivery: Delivery) {
        self.items.push((worker, decision, delivery));
    }
    /// The decisions so far.
    pub fn as_slice(&self) -> &[(WorkerId, Message, Delivery)] {
        &self.items
    }
    /// Removes all decisions.
    pub fn clear(&mut self) {
        self.items.clear();
    }
    /// How many.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// True when none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A control-plane policy: state-only callbacks per event, decisions out.
pub trait Policy: Send {
    /// The policy's name, as selected on the command line.
    fn name(&self) -> &'static str;
    /// An app attached over a channel of `shape` (its lanes, ring and prestage slots).
    fn on_app_attached(&mut self, app: AppId, shape: ChannelConfig);
    /// The app shared a table of its own state (the tier service's page-state table), to be
    /// read, never trusted: it arrives right after [`Policy::on_app_attached`]. Default:
    /// ignored.
    fn on_page_table(&mut self, _app: AppId, _table: Arc<PageTableView>) {}
    /// An app detached (closed, died, or was dropped); forget its state.
    fn on_app_detached(&mut self, app: AppId);
    /// One validated event from `worker` of `app`.
    fn on_event(
        &mut self,
        app: AppId,
        worker: WorkerId,
        event: &Message,
        now: MonoNanos,
        out: &mut Decisions,
    );
    /// How long the agent may sleep between polls once idle, ns: the slack in the policy's
    /// reaction time. The default suits policies that answer events in microseconds
    /// (scheduling, connection admission); a policy working in long epochs allows more, and
    /// each idle wakeup costs CPU on whatever core the agent shares.
    fn idle_sleep_ns(&self) -> u64 {
        50_000
    }
    /// Decisions that answer no single event (dispatching queued work), after each drained
    /// batch of `app`'s events. Default: none.
    fn decide(&mut self, _app: AppId, _now: MonoNanos, _out: &mut Decisions) {}
    /// The host did not commit a prestaged `decision` for `worker` (`Stale` or `Rejected`).
    /// Default: nothing to undo.
    fn on_commit_failed(
        &mut self,
        _app: AppId,
        _worker: WorkerId,
        _decision: &Message,
        _outcome: TxnOutcome,
        _now: MonoNanos,
    ) {
    }
}

/// The scheduling policies' settings (`by_name` builds a policy with them; echo ignores them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedConfig {
    /// Time slice of preemptive scheduling policies.
    pub slice_ns: u64,
    /// Decisions a scheduling policy stages per worker beyond the one it runs (0: none; a
    /// worker asks, waits a round trip, then runs). Wave's prestaging mitigation.
    pub prestage_depth: u16,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig { slice_ns: 30_000, prestage_depth: 1 }
    }
}

/// The echo policy: answers every `Ping` with a `Pong` to the same worker, and ignores other
/// events. It is the smallest round trip through the agent: the demo and the link benchmark
/// measure with it, and it stands in until the subsystems' policies land.
#[derive(Debug, Default)]
pub struct Echo {
    attached: usize,
}

impl Policy for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn on_app_attached(&mut self, _app: AppId, _shape: ChannelConfig) {
        self.attached += 1;
    }

    fn on_app_detached(&mut self, _app: AppId) {
        self.attached = self.attached.saturating_sub(1);
    }

    fn on_event(
        &mut self,
        _app: AppId,
        worker: WorkerId,
        event: &Message,
        _now: MonoNanos,
        out: &mut Decisions,
    ) {
        if let Message::Ping(ping) = event {
            let pong = PongRepr { worker, seq: ping.seq, ping_sent_at_ns: ping.sent_at_ns };
            out.push(worker, Message::Pong(pong));
        }
    }
}

/// Policies selectable by name.
pub const POLICY_NAMES: &[&str] = &["echo", "fifo", "shinjuku"];

/// Builds the policy called `name`, or `None` if there is no such policy.
pub fn by_name(name: &str, config: SchedConfig) -> Option<Box<dyn Policy>> {
    use crate::sched::adapter::SchedAgent;
    match name {
        "echo" => Some(Box::new(Echo::default())),
        "fifo" => Some(Box::new(SchedAgent::new("fifo", config))),
        "shinjuku" => Some(Box::new(SchedAgent::new("shinjuku", config))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use link::proto::PingRepr;

    #[test]
    fn echo_answers_pings_on_the_same_worker_only() {
        let mut echo = Echo::default();
        let mut out = Decisions::default();
        let ping = Message::Ping(PingRepr { worker: WorkerId(5), seq: 9, sent_at_ns: 77 });
        echo.on_event(AppId(1), WorkerId(2), &ping, MonoNanos(0), &mut out);
        let expected = PongRepr { worker: WorkerId(2), seq: 9, ping_sent_at_ns: 77 };
        assert_eq!(out.as_slice(), &[(WorkerId(2), Message::Pong(expected), Delivery::Ring)]);
        let config = SchedConfig::default();
        assert!(by_name("echo", config).is_some() && by_name("nope", config).is_none());
        assert_eq!(by_name("shinjuku", config).unwrap().name(), "shinjuku");
    }
}
