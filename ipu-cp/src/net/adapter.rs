//! Hosts a [`ConnPolicy`] in the agent: keeps the counts it decides on and translates records.
//!
//! Per app: listeners (tenant, connections, tokens out), connections by the host's id, and
//! connections per worker; over every app: connections per tenant and the ephemeral port
//! space, handed out in blocks so that apps sharing an address never collide. A connection is
//! counted from the moment it is granted (a token issued, a request admitted) until the host
//! reports it closed, or a token comes back unused.
//!
//! The host's reports are checked, never trusted: an unknown listener, a worker out of range,
//! a close for an unknown connection change nothing and are counted as invalid.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use link::MonoNanos;
use link::proto::{AppId, FlowKey, Message, NetMessage, RefuseReason, TxnOutcome, WorkerId};

use super::{ConnPolicy, ListenerLoad};
use crate::policy::{Decisions, Delivery, Policy};

/// First ephemeral port (IANA's dynamic range).
pub const EPHEMERAL_FIRST: u16 = 49152;
/// The only lane of a connection-control channel.
const LANE: WorkerId = WorkerId(0);

/// What the adapter did, readable from any thread.
#[derive(Debug, Default)]
pub struct NetCounters {
    /// Admissions prestaged as tokens.
    pub tokens: AtomicU64,
    /// Tokens the host used (connections placed without waiting for the link).
    pub tokens_used: AtomicU64,
    /// Tokens that came back unused (listener gone, rejected by the host).
    pub tokens_returned: AtomicU64,
    /// Requests admitted.
    pub admitted: AtomicU64,
    /// Requests refused.
    pub refused: AtomicU64,
    /// Connections reported closed.
    pub closed: AtomicU64,
    /// Port leases granted.
    pub leases: AtomicU64,
    /// Host reports that named something unknown or out of range.
    pub invalid: AtomicU64,
}

impl NetCounters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Listener {
    tenant: u16,
    conns: u32,
    tokens: u16,
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    port: u16,
    tenant: u16,
    worker: WorkerId,
}

#[derive(Debug, Default)]
struct AppNet {
    workers: u16,
    /// Prestage slots of its channel: tokens live there only, so never more are out.
    slots: u16,
    listeners: HashMap<u16, Listener>,
    conns: HashMap<u64, Conn>,
    worker_conns: Vec<u32>,
}

/// The agent-side host of a connection policy.
pub struct NetAgent<P: ConnPolicy> {
    policy: P,
    apps: HashMap<AppId, AppNet>,
    tenants: HashMap<u16, u32>,
    /// Owner of each ephemeral port block.
    blocks: Vec<Option<AppId>>,
    counters: Arc<NetCounters>,
}

impl<P: ConnPolicy> std::fmt::Debug for NetAgent<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetAgent").field("policy", &self.policy.name()).finish()
    }
}

impl<P: ConnPolicy> NetAgent<P> {
    /// Hosts `policy` for every app.
    pub fn new(policy: P) -> NetAgent<P> {
        let block = usize::from(policy.port_block().max(1));
        let blocks = vec![None; (usize::from(u16::MAX) + 1 - usize::from(EPHEMERAL_FIRST)) / block];
        NetAgent {
            policy,
            apps: HashMap::new(),
            tenants: HashMap::new(),
            blocks,
            counters: Arc::default(),
        }
    }

    /// The counters (shared).
    pub fn counters(&self) -> Arc<NetCounters> {
        self.counters.clone()
    }

    fn load(&self, app: AppId, port: u16) -> Option<ListenerLoad> {
        let listener = self.apps.get(&app)?.listeners.get(&port)?;
        Some(ListenerLoad {
            app,
            port,
            tenant: listener.tenant,
            conns: listener.conns,
            tenant_conns: self.tenants.get(&listener.tenant).copied().unwrap_or(0),
        })
    }

    /// Admits one connection to `port` of `app` and places it: the counts grow at once.
    fn grant(&mut self, app: AppId, port: u16, now: MonoNanos) -> Result<Conn, RefuseReason> {
        let load = self.load(app, port).ok_or(RefuseReason::NoListener)?;
        self.policy.admit(&load, now)?;
        let state = self.apps.get_mut(&app).expect("load found the app");
        let worker = self.policy.place(&load, &state.worker_conns);
        let worker = if worker.0 < state.workers { worker } else { WorkerId(0) };
        let conn = Conn { port, tenant: load.tenant, worker };
        self.count(app, conn, 1);
        Ok(conn)
    }

    /// Adds (`delta` 1) or removes (-1) one connection from every count it is part of.
    fn count(&mut self, app: AppId, conn: Conn, delta: i32) {
        let apply = |n: &mut u32| *n = n.saturating_add_signed(delta);
        apply(self.tenants.entry(conn.tenant).or_default());
        if let Some(state) = self.apps.get_mut(&app) {
            if let Some(listener) = state.listeners.get_mut(&conn.port) {
                apply(&mut listener.conns);
            }
            if let Some(n) = state.worker_conns.get_mut(usize::from(conn.worker.0)) {
                apply(n);
            }
        }
    }

    fn lease(&mut self, app: AppId, out: &mut Decisions) {
        let Some(block) = self.blocks.iter().position(Option::is_none) else { return };
        self.blocks[block] = Some(app);
        let count = self.policy.port_block();
        let first = EPHEMERAL_FIRST + u16::try_from(block).unwrap_or(0) * count;
        NetCounters::add(&self.counters.leases, 1);
        out.push(LANE, Message::Net(NetMessage::PortLease { first, count }));
    }

    fn on_attach(&mut self, app: AppId, workers: u16, out: &mut Decisions) {
        let Some(state) = self.apps.get_mut(&app) else { return };
        if state.workers != 0 || workers == 0 {
            NetCounters::add(&self.counters.invalid, 1);
            return;
        }
        state.workers = workers;
        state.worker_conns = vec![0; usize::from(workers)];
        for &(ip, mac) in self.policy.neighbors() {
            out.push(LANE, Message::Net(NetMessage::Neighbor { ip, mac }));
        }
        for &(prefix, prefix_len, gateway) in self.policy.routes() {
            out.push(LANE, Message::Net(NetMessage::Route { prefix, prefix_len, gateway }));
        }
        self.lease(app, out);
    }

    fn on_opened(&mut self, app: AppId, id: u64, flow: FlowKey, worker: WorkerId, tok: bool) {
        let Some(state) = self.apps.get_mut(&app) else { return };
        if worker.0 >= state.workers || state.conns.contains_key(&id) && tok {
            NetCounters::add(&self.counters.invalid, 1);
            return;
        }
        if state.conns.contains_key(&id) {
            return; // admitted on request: counted when granted
        }
        let tenant = state.listeners.get(&flow.local_port).map_or(0, |l| l.tenant);
        let conn = Conn { port: flow.local_port, tenant, worker };
        state.conns.insert(id, conn);
        let token = state.listeners.get_mut(&flow.local_port).filter(|l| tok && l.tokens > 0);
        match token {
            Some(listener) => {
                listener.tokens -= 1;
                NetCounters::add(&self.counters.tokens_used, 1);
                // Counted when the token was issued, on the token's worker, which the host
                // used: nothing more to count.
            }
            // Opened while we were away (local fallback) or from a token of a listener since
            // closed: count it now; the host never drops an established connection.
            None => self.count(app, conn, 1),
        }
    }

    /// Tops up every listener of `app` to the policy's prestaging depth.
    fn top_up(&mut self, app: AppId, now: MonoNanos, out: &mut Decisions) {
        let depth = self.policy.prestage_depth();
        let Some(state) = self.apps.get(&app) else { return };
        if state.workers == 0 || depth == 0 {
            return;
        }
        let out_now: u16 = state.listeners.values().map(|l| l.tokens).sum();
        let mut room = state.slots.saturating_sub(out_now);
        let mut wanted: Vec<(u16, u16)> = state
            .listeners
            .iter()
            .filter(|(_, l)| l.tokens < depth)
            .map(|(&port, l)| (port, depth - l.tokens))
            .collect();
        wanted.sort_unstable(); // deterministic order
        for (port, missing) in wanted {
            for _ in 0..missing {
                if room == 0 {
                    return;
                }
                let Ok(conn) = self.grant(app, port, now) else { break };
                room -= 1;
                let state = self.apps.get_mut(&app).expect("granted");
                state.listeners.get_mut(&port).expect("granted").tokens += 1;
                NetCounters::add(&self.counters.tokens, 1);
                let place = NetMessage::Place { port, worker: conn.worker };
                out.push_via(LANE, Message::Net(place), Delivery::Prestaged);
            }
        }
    }
}

impl<P: ConnPolicy> Policy for NetAgent<P> {
    fn name(&self) -> &'static str {
        self.policy.name()
    }

    fn on_app_attached(&mut self, app: AppId, shape: link::ChannelConfig) {
        let slots = shape.prestage_slots;
        self.apps.insert(app, AppNet { slots, ..AppNet::default() });
    }

    fn on_app_detached(&mut self, app: AppId) {
        if let Some(state) = self.apps.remove(&app) {
            for conn in state.conns.values() {
                if let Some(n) = self.tenants.get_mut(&conn.tenant) {
                    *n = n.saturating_sub(1);
                }
            }
            for listener in state.listeners.values() {
                if let Some(n) = self.tenants.get_mut(&listener.tenant) {
                    *n = n.saturating_sub(u32::from(listener.tokens));
                }
            }
        }
        for block in &mut self.blocks {
            if *block == Some(app) {
                *block = None;
            }
        }
        self.policy.on_app_detached(app);
    }

    fn on_event(
        &mut self,
        app: AppId,
        _lane: WorkerId,
        event: &Message,
        now: MonoNanos,
        out: &mut Decisions,
    ) {
        let Message::Net(event) = *event else { return };
        let invalid = &self.counters.invalid;
        match event {
            NetMessage::Attach { workers, .. } => self.on_attach(app, workers, out),
            NetMessage::Listen { port, tenant } => {
                let Some(state) = self.apps.get_mut(&app) else { return };
                state.listeners.entry(port).or_insert(Listener { tenant, conns: 0, tokens: 0 });
            }
            NetMessage::Unlisten { port } => {
                let Some(state) = self.apps.get_mut(&app) else { return };
                match state.listeners.remove(&port) {
                    // Its unused tokens leave the tenant's count now, and the workers' when
                    // they come back as rejected claims; its connections stay counted until
                    // they close.
                    Some(listener) => {
                        if let Some(n) = self.tenants.get_mut(&listener.tenant) {
                            *n = n.saturating_sub(u32::from(listener.tokens));
                        }
                    }
                    None => NetCounters::add(invalid, 1),
                }
            }
            NetMessage::ConnRequest { conn: id, flow } => {
                let answer = match self.grant(app, flow.local_port, now) {
                    Ok(conn) => {
                        let state = self.apps.get_mut(&app).expect("granted");
                        state.conns.insert(id, conn);
                        NetCounters::add(&self.counters.admitted, 1);
                        NetMessage::Admit { conn: id, worker: conn.worker }
                    }
                    Err(reason) => {
                        NetCounters::add(&self.counters.refused, 1);
                        NetMessage::Refuse { conn: id, reason }
                    }
                };
                out.push(LANE, Message::Net(answer));
            }
            NetMessage::ConnOpened { conn, flow, worker, prestaged } => {
                self.on_opened(app, conn, flow, worker, prestaged)
            }
            NetMessage::ConnClosed { conn: id, .. } => {
                let Some(state) = self.apps.get_mut(&app) else { return };
                match state.conns.remove(&id) {
                    Some(conn) => {
                        NetCounters::add(&self.counters.closed, 1);
                        self.count(app, conn, -1);
                    }
                    None => NetCounters::add(invalid, 1),
                }
            }
            NetMessage::PortsWanted { .. } => self.lease(app, out),
            // Decisions never arrive as events (the agent checks directions).
            _ => NetCounters::add(invalid, 1),
        }
    }

    fn decide(&mut self, app: AppId, now: MonoNanos, out: &mut Decisions) {
        self.top_up(app, now, out);
    }

    fn on_commit_failed(
        &mut self,
        app: AppId,
        _lane: WorkerId,
        decision: &Message,
        _outcome: TxnOutcome,
        _now: MonoNanos,
    ) {
        let Message::Net(NetMessage::Place { port, worker }) = *decision else { return };
        NetCounters::add(&self.counters.tokens_returned, 1);
        let Some(state) = self.apps.get_mut(&app) else { return };
        match state.listeners.get_mut(&port) {
            Some(listener) => {
                listener.tokens = listener.tokens.saturating_sub(1);
                let tenant = listener.tenant;
                self.count(app, Conn { port, tenant, worker }, -1);
            }
            // Closed: its tokens left the tenant's count with it; only the worker's is left.
            None => {
                if let Some(n) = state.worker_conns.get_mut(usize::from(worker.0)) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }
}
