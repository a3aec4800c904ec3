//! The host's half of connection control: the flow table and the mechanism that applies the
//! control plane's admissions, with a local fallback. It decides nothing the agent decides
//! while the agent is there; it checks everything the agent says.
//!
//! A SYN for a listener takes, in order: the listener's oldest prestaged token (a `Place`
//! claimed from a transaction slot: no waiting on the link), else a request to the agent with
//! the SYN held (bounded) until the answer, else, when the agent is gone or slow, the local
//! policy (hash placement, a static limit per listener). Established flows are never dropped:
//! the table is the host's, and a re-attached agent is told about every flow in it.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

use link::liveness::Liveness;
use link::proto::{Barrier, WorkerId};
use link::proto::{Epoch, FlowKey, Message, NetMessage, Record, TxnOutcome};
use link::{HostWorker, MonoNanos};

mod agent;

/// How the host's connection control behaves.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Worker stacks flows are placed on.
    pub workers: u16,
    /// The address the stacks share.
    pub ip: Ipv4Addr,
    /// Local policy: most connections per listener.
    pub local_max_per_listener: u32,
    /// Local policy: ports for outgoing connections (used only while no lease is held).
    pub local_ports: std::ops::Range<u16>,
    /// Most SYNs held waiting for the agent; more are refused.
    pub pending_max: usize,
    /// A held SYN is decided locally after waiting this long.
    pub answer_timeout_ns: u64,
    /// Events kept while the agent's ring is full; more are dropped and counted.
    pub outbox_max: usize,
    /// A placed flow that no stack accepted for this long leaves the table (its SYN was
    /// refused by a full backlog, or the handshake never finished).
    pub unaccepted_timeout_ns: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            workers: 1,
            ip: Ipv4Addr::new(198, 18, 0, 2),
            local_max_per_listener: 65_536,
            local_ports: 60_000..61_000,
            pending_max: 1024,
            answer_timeout_ns: 50_000_000,
            outbox_max: 4096,
            unaccepted_timeout_ns: 5_000_000_000,
        }
    }
}

/// What the mechanism did, for tests and reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ControlStats {
    /// Flows placed by a prestaged token.
    pub placed_prestaged: u64,
    /// Flows placed by an answer to a request.
    pub placed_requested: u64,
    /// Flows placed by the local policy (no agent, or it was too slow).
    pub placed_local: u64,
    /// SYNs refused by the agent.
    pub refused_by_agent: u64,
    /// SYNs refused locally (limit, or too many held).
    pub refused_local: u64,
    /// Answers for no held SYN (late or duplicated).
    pub stale_answers: u64,
    /// Decisions refused as invalid (bad worker, bad lease, wrong kind, malformed).
    pub rejected: u64,
    /// Times the agent was lost.
    pub fallbacks: u64,
    /// Times an agent was attached after a loss.
    pub reattaches: u64,
    /// Events dropped because the agent's ring and the outbox were full.
    pub events_dropped: u64,
    /// Placed flows that no stack accepted in time, removed.
    pub expired: u64,
}

/// Where a SYN goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// To this worker's stack.
    To(u16),
    /// Held for the agent's answer (the control kept a copy).
    Held,
    /// Answer with a RST.
    Refuse,
}

/// What `poll` produced for the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A held SYN, now admitted: deliver it to this worker.
    Deliver(u16, Vec<u8>),
    /// A held SYN, refused: answer it with a RST.
    Reset(Vec<u8>),
    /// A neighbour to teach every stack.
    Neighbor(Ipv4Addr, [u8; 6]),
    /// A route for every stack.
    Route(Ipv4Addr, u8, Ipv4Addr),
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    conn: u64,
    worker: u16,
    incoming: bool,
    /// A worker's stack accepted it (outgoing flows: always).
    accepted: bool,
    since: MonoNanos,
}

#[derive(Debug)]
struct Held {
    conn: u64,
    flow: FlowKey,
    frame: Vec<u8>,
    since: MonoNanos,
}

#[derive(Debug)]
struct Agent {
    lane: HostWorker,
    liveness: Liveness,
    session: Option<std::os::unix::net::UnixStream>,
    last_hangup_check: MonoNanos,
}

/// Polls between hang-up checks of the agent's session socket (a syscall each).
const HANGUP_CHECK_INTERVAL_NS: u64 = 1_000_000;
/// Most decisions read per poll.
const DECISION_BATCH: usize = 64;

/// The host's connection control.
#[derive(Debug)]
pub struct ConnControl {
    config: ControlConfig,
    agent: Option<Agent>,
    flows: HashMap<FlowKey, Flow>,
    /// Listeners: port → (tenant, incoming flows).
    listeners: HashMap<u16, (u16, u32)>,
    held: VecDeque<Held>,
    outbox: VecDeque<Record>,
    ports: super::ports::PortPool,
    next_conn: u64,
    epoch: Epoch,
    stats: ControlStats,
    /// The latest time passed in (stamps new flows).
    clock: MonoNanos,
    last_sweep: MonoNanos,
}

impl ConnControl {
    /// Local control only (no agent yet).
    pub fn local(config: ControlConfig) -> ConnControl {
        let mut ports = super::ports::PortPool::default();
        ports.add_local(config.local_ports.clone());
        ConnControl {
            config,
            agent: None,
            flows: HashMap::new(),
            listeners: HashMap::new(),
            held: VecDeque::new(),
            outbox: VecDeque::new(),
            ports,
            next_conn: 1,
            epoch: Epoch(1),
            stats: ControlStats::default(),
            clock: MonoNanos(0),
            last_sweep: MonoNanos(0),
        }
    }

    /// The counters.
    pub fn stats(&self) -> ControlStats {
        self.stats
    }

    /// True while an agent decides.
    pub fn has_agent(&self) -> bool {
        self.agent.is_some()
    }

    /// Flows in the table.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// The worker of `flow`, if the table has it.
    pub fn worker_of(&self, flow: &FlowKey) -> Option<u16> {
        self.flows.get(flow).map(|f| f.worker)
    }

    /// Registers a listener.
    pub fn listen(&mut self, port: u16, tenant: u16) {
        self.listeners.entry(port).or_insert((tenant, 0));
        self.emit(NetMessage::Listen { port, tenant });
    }

    /// Closes a listener; its unused tokens go back to the agent as rejected.
    pub fn unlisten(&mut self, port: u16) {
        if self.listeners.remove(&port).is_none() {
            return;
        }
        self.emit(NetMessage::Unlisten { port });
        while let Some(claim) = self.claim_token(port) {
            self.resolve(claim, TxnOutcome::Rejected);
        }
    }

    /// Decides where the connection attempt `frame` (flow `flow`) goes.
    pub fn on_syn(&mut self, flow: FlowKey, frame: &[u8], now: MonoNanos) -> Verdict {
        self.clock = now;
        if let Some(existing) = self.flows.get(&flow) {
            return Verdict::To(existing.worker); // a retransmitted SYN
        }
        if !self.listeners.contains_key(&flow.local_port) {
            return Verdict::To(0); // no listener: that stack answers with a RST
        }
        if self.held.iter().any(|h| h.flow == flow) {
            return Verdict::Held; // retransmitted while we wait
        }
        if self.agent.is_none() {
            return self.decide_locally(flow);
        }
        if let Some(worker) = self.take_token(flow) {
            return Verdict::To(worker);
        }
        if self.held.len() >= self.config.pending_max {
            self.stats.refused_local += 1;
            return Verdict::Refuse;
        }
        let conn = self.new_conn();
        self.held.push_back(Held { conn, flow, frame: frame.to_vec(), since: now });
        self.emit(NetMessage::ConnRequest { conn, flow });
        Verdict::Held
    }

    fn new_conn(&mut self) -> u64 {
        let conn = self.next_conn;
        self.next_conn += 1;
        conn
    }

    fn claim_token(&mut self, port: u16) -> Option<link::txn::Claimed> {
        let lane = &mut self.agent.as_mut()?.lane;
        let for_port = |record: &Record| match record.parse() {
            Ok(Message::Net(NetMessage::Place { port: p, .. })) => p == port,
            _ => false,
        };
        lane.slots.try_claim_where(for_port)
    }

    fn resolve(&mut self, claim: link::txn::Claimed, outcome: TxnOutcome) {
        let Some(agent) = self.agent.as_mut() else { return };
        let result = agent.lane.slots.resolve(claim, outcome, Barrier(0));
        self.emit_message(Message::TxnResult(result));
    }

    /// Places `flow` with a prestaged token of its listener, if one is valid.
    fn take_token(&mut self, flow: FlowKey) -> Option<u16> {
        // Bounded by the slot count: each pass consumes one token.
        while let Some(claim) = self.claim_token(flow.local_port) {
            let worker = match claim.decision.parse() {
                Ok(Message::Net(NetMessage::Place { worker, .. })) => worker.0,
                _ => u16::MAX,
            };
            if worker >= self.config.workers {
                self.stats.rejected += 1;
                self.resolve(claim, TxnOutcome::Rejected);
                continue;
            }
            self.resolve(claim, TxnOutcome::Committed);
            self.stats.placed_prestaged += 1;
            self.install(flow, worker, true);
            return Some(worker);
        }
        None
    }

    fn install(&mut self, flow: FlowKey, worker: u16, prestaged: bool) -> u64 {
        let conn = self.new_conn();
        self.install_as(conn, flow, worker, prestaged);
        conn
    }

    fn install_as(&mut self, conn: u64, flow: FlowKey, worker: u16, prestaged: bool) {
        let since = self.clock;
        self.flows.insert(flow, Flow { conn, worker, incoming: true, accepted: false, since });
        if let Some((_, n)) = self.listeners.get_mut(&flow.local_port) {
            *n += 1;
        }
        let w = WorkerId(worker);
        self.emit(NetMessage::ConnOpened { conn, flow, worker: w, prestaged });
    }

    /// The local policy: a static limit per listener, placement by a hash of the flow.
    fn decide_locally(&mut self, flow: FlowKey) -> Verdict {
        let open = self.listeners.get(&flow.local_port).map_or(0, |&(_, n)| n);
        if open >= self.config.local_max_per_listener {
            self.stats.refused_local += 1;
            return Verdict::Refuse;
        }
        let worker = flow_hash(&flow) % u32::from(self.config.workers.max(1));
        let worker = u16::try_from(worker).expect("below a u16 worker count");
        self.install(flow, worker, false);
        self.stats.placed_local += 1;
        Verdict::To(worker)
    }

    /// A worker's stack accepted `flow`.
    pub fn accepted(&mut self, flow: &FlowKey) {
        if let Some(f) = self.flows.get_mut(flow) {
            f.accepted = true;
        }
    }

    /// Removes placed flows that no stack accepted in time.
    fn sweep(&mut self, now: MonoNanos) {
        let timeout = self.config.unaccepted_timeout_ns;
        let expired: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| !f.accepted && now.since(f.since) >= timeout)
            .map(|(k, _)| *k)
            .collect();
        self.stats.expired += expired.len() as u64;
        for flow in expired {
            self.closed(&flow);
        }
    }

    /// A flow left its stack (its socket was released): forget it.
    pub fn closed(&mut self, flow: &FlowKey) {
        let Some(f) = self.flows.remove(flow) else { return };
        if !f.incoming {
            self.ports.free(flow.local_port);
            return;
        }
        if let Some((_, n)) = self.listeners.get_mut(&flow.local_port) {
            *n = n.saturating_sub(1);
        }
        let worker = WorkerId(f.worker);
        self.emit(NetMessage::ConnClosed { conn: f.conn, flow: *flow, worker });
    }

    /// An outgoing connection from `worker` to `remote`: a port from the leases (or the local
    /// range), and the flow in the table so its segments reach the worker.
    pub fn connect(&mut self, worker: u16, remote: SocketAddrV4) -> Option<FlowKey> {
        let port = self.ports.alloc()?;
        if self.agent.is_some() && self.ports.want_more() {
            self.emit(NetMessage::PortsWanted { count: 1 });
        }
        let flow =
            FlowKey { local_port: port, remote_ip: *remote.ip(), remote_port: remote.port() };
        let conn = self.new_conn();
        let since = self.clock;
        self.flows.insert(flow, Flow { conn, worker, incoming: false, accepted: true, since });
        Some(flow)
    }
}

/// FNV-1a over the flow: a stable spread for the local placement.
fn flow_hash(flow: &FlowKey) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    let bytes = flow.remote_ip.octets();
    let ports = [flow.local_port.to_le_bytes(), flow.remote_port.to_le_bytes()];
    for byte in bytes.iter().chain(ports.iter().flatten()) {
        hash = (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193);
    }
    hash
}

impl Drop for ConnControl {
    fn drop(&mut self) {
        self.detach(); // an orderly goodbye: the agent sees it at once
    }
}
