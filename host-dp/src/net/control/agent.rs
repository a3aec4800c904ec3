//! The agent side of connection control: attach (and tell a new agent everything), read
//! and check its decisions, notice when it is gone and fall back, keep events in order.

use link::proto::{Direction, Epoch, FlowKey, Message, NetMessage, WorkerId};
use link::{MonoNanos, PeerStatus};

use super::{Agent, ConnControl, Flow, Held, Output, Verdict};
use super::{DECISION_BATCH, HANGUP_CHECK_INTERVAL_NS};

/// How often placed flows nobody accepted are looked for.
const SWEEP_INTERVAL_NS: u64 = 100_000_000;
use crate::runtime::{AgentChannel, LinkRefused};

impl ConnControl {
    /// Attaches an agent (a one-lane channel of the net service) and tells it everything it
    /// needs: the stacks, every listener, every flow.
    pub fn attach(&mut self, link: AgentChannel, now: MonoNanos) -> Result<(), LinkRefused> {
        let AgentChannel { end, session } = link;
        let link::HostEnd { workers: mut lanes, liveness, .. } = end;
        if lanes.len() != 1 {
            return Err(LinkRefused::Lanes { lanes: lanes.len(), needed: 1 });
        }
        let lane = lanes.pop().expect("one lane");
        if self.agent.is_some() {
            return Err(LinkRefused::Attached);
        }
        if self.stats.fallbacks > 0 {
            self.stats.reattaches += 1;
        }
        self.epoch = Epoch(self.epoch.0.wrapping_add(1));
        self.agent = Some(Agent { lane, liveness, session, last_hangup_check: now });
        self.outbox.clear();
        self.ports.withdraw_all();
        let (workers, ip) = (self.config.workers, self.config.ip);
        self.emit(NetMessage::Attach { workers, ip });
        let mut ports: Vec<(u16, u16)> =
            self.listeners.iter().map(|(&p, &(t, _))| (p, t)).collect();
        ports.sort_unstable();
        for (port, tenant) in ports {
            self.emit(NetMessage::Listen { port, tenant });
        }
        let flows: Vec<(FlowKey, Flow)> =
            self.flows.iter().filter(|(_, f)| f.incoming).map(|(k, f)| (*k, *f)).collect();
        for (flow, f) in flows {
            let worker = WorkerId(f.worker);
            self.emit(NetMessage::ConnOpened { conn: f.conn, flow, worker, prestaged: false });
        }
        Ok(())
    }

    /// Talks to the agent: beats, checks it is alive, reads its decisions, times out held
    /// SYNs. Appends what the data plane must do to `out`.
    pub fn poll(&mut self, now: MonoNanos, out: &mut Vec<Output>) {
        self.clock = now;
        if now.since(self.last_sweep) >= SWEEP_INTERVAL_NS {
            self.last_sweep = now;
            self.sweep(now);
        }
        if self.agent.is_some() && self.agent_lost(now) {
            self.fall_back(now, out);
        }
        self.read_decisions(now, out);
        while self.held.front().is_some_and(|h| now.since(h.since) >= self.config.answer_timeout_ns)
        {
            let held = self.held.pop_front().expect("front exists");
            self.decide_held_locally(held, out);
        }
        self.flush_outbox(now);
    }

    pub(super) fn agent_lost(&mut self, now: MonoNanos) -> bool {
        let Some(agent) = self.agent.as_mut() else { return false };
        if matches!(agent.liveness.tick(now), PeerStatus::Dead { .. } | PeerStatus::Closed) {
            return true;
        }
        if now.since(agent.last_hangup_check) >= HANGUP_CHECK_INTERVAL_NS {
            agent.last_hangup_check = now;
            return agent.session.as_ref().is_some_and(link::transport::peer_hung_up);
        }
        false
    }

    /// Detaches the agent in order: it sees `Closed` at once (not a loss), and the local
    /// policy decides from now on. Nothing to do without one.
    pub fn detach(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.liveness.heartbeat.close();
            self.outbox.clear();
            self.ports.add_local(self.config.local_ports.clone());
        }
    }

    pub(super) fn fall_back(&mut self, _now: MonoNanos, out: &mut Vec<Output>) {
        self.agent = None;
        self.outbox.clear();
        self.stats.fallbacks += 1;
        self.ports.add_local(self.config.local_ports.clone());
        while let Some(held) = self.held.pop_front() {
            self.decide_held_locally(held, out);
        }
    }

    pub(super) fn decide_held_locally(&mut self, held: Held, out: &mut Vec<Output>) {
        match self.decide_locally(held.flow) {
            Verdict::To(worker) => out.push(Output::Deliver(worker, held.frame)),
            _ => out.push(Output::Reset(held.frame)),
        }
    }

    pub(super) fn read_decisions(&mut self, now: MonoNanos, out: &mut Vec<Output>) {
        for _ in 0..DECISION_BATCH {
            let Some(agent) = self.agent.as_mut() else { return };
            let Some(record) = agent.lane.decisions.try_pop(now) else { return };
            match Message::parse_in(&record, Direction::Decision) {
                Ok(Message::Net(decision)) => self.apply(decision, out),
                _ => self.stats.rejected += 1,
            }
        }
    }

    pub(super) fn apply(&mut self, decision: NetMessage, out: &mut Vec<Output>) {
        match decision {
            NetMessage::Admit { conn, worker } => {
                let Some(held) = self.take_held(conn) else { return };
                if worker.0 >= self.config.workers {
                    self.stats.rejected += 1;
                    return self.decide_held_locally(held, out);
                }
                self.install_as(held.conn, held.flow, worker.0, false);
                self.stats.placed_requested += 1;
                out.push(Output::Deliver(worker.0, held.frame));
            }
            NetMessage::Refuse { conn, .. } => {
                let Some(held) = self.take_held(conn) else { return };
                self.stats.refused_by_agent += 1;
                out.push(Output::Reset(held.frame));
            }
            NetMessage::PortLease { first, count } => {
                if !self.ports.add_lease(first, count) {
                    self.stats.rejected += 1;
                }
            }
            NetMessage::Neighbor { ip, mac } => out.push(Output::Neighbor(ip, mac)),
            NetMessage::Route { prefix, prefix_len, gateway } => {
                out.push(Output::Route(prefix, prefix_len, gateway))
            }
            // A token sent through the ring (every slot was busy) is not one we can account
            // for: tokens live in slots only.
            _ => self.stats.rejected += 1,
        }
    }

    pub(super) fn take_held(&mut self, conn: u64) -> Option<Held> {
        match self.held.iter().position(|h| h.conn == conn) {
            Some(index) => self.held.remove(index),
            None => {
                self.stats.stale_answers += 1;
                None
            }
        }
    }

    pub(super) fn emit(&mut self, message: NetMessage) {
        self.emit_message(Message::Net(message));
    }

    pub(super) fn emit_message(&mut self, message: Message) {
        if self.agent.is_none() {
            return;
        }
        if self.outbox.len() >= self.config.outbox_max {
            self.stats.events_dropped += 1;
            return;
        }
        self.outbox.push_back(message.to_record(self.epoch));
    }

    pub(super) fn flush_outbox(&mut self, now: MonoNanos) {
        let Some(agent) = self.agent.as_mut() else { return };
        while let Some(record) = self.outbox.front() {
            if agent.lane.events.try_push(record, now).is_err() {
                return; // full: the rest waits, in order
            }
            self.outbox.pop_front();
        }
    }
}
