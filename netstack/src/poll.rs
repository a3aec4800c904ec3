//! `Stack::poll`: each received frame goes to the one socket set it concerns, and egress runs
//! only on the sets that may have something to send (see `conns`).

use std::time::Duration;

use smoltcp::iface::{Interface, PollIngressSingleResult as Ingress, PollResult, SocketSet};
use smoltcp::time::Instant as SmolInstant;

use crate::device::WireDevice;
use crate::stack::Stack;
use crate::steer::{FrameClass, classify};
use crate::wire::Wire;

/// Most segments one set sends per egress round; what is left waits for the next round, after
/// the other sets had theirs.
const EGRESS_ROUND_MAX: usize = 16;

/// The set a received frame goes to.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// A segment of a known flow: its connection.
    Conn(u32),
    /// A segment to a listened-on port of no known flow: the port's listening sockets.
    Listener(u16),
    /// Anything else: UDP sockets, and the interface itself (ARP, ICMP, the RST for a segment
    /// nobody owns).
    Misc {
        /// An ARP frame: a neighbour may have become known.
        arp: bool,
    },
}

/// Runs egress on `set` until it sends nothing or sent a round's worth. Returns (sent
/// something, may have more).
fn egress_set<L: Wire>(
    iface: &mut Interface,
    device: &mut WireDevice<L>,
    set: &mut SocketSet<'static>,
    timestamp: SmolInstant,
) -> (bool, bool) {
    for round in 0..EGRESS_ROUND_MAX {
        if iface.poll_egress(timestamp, device, set) == PollResult::None {
            return (round > 0, false);
        }
    }
    (true, true)
}

impl<L: Wire> Stack<L> {
    /// Receives a burst, runs the protocol, sends what it produced. Returns true when some
    /// socket may have changed (data, state).
    ///
    /// A frame is routed by its flow to its connection's socket set, so smoltcp looks at one
    /// socket instead of all of them. Egress runs on a connection only when it may have work:
    /// a segment arrived for it, the application sent, read or closed, its last round sent a
    /// full round, or the timer smoltcp reported for it (retransmission, delayed ACK,
    /// keep-alive) is due. An idle stack does no per-connection work at all.
    pub fn poll(&mut self, now: std::time::Instant) -> bool {
        self.last_poll = now;
        let timestamp = self.timestamp(now);
        self.device.link.tick(now);
        self.conns.fire_timers(timestamp);
        let mut changed = false;
        // Bounded: a few bursts per call, so one busy link cannot starve the caller.
        for _ in 0..4 {
            let queued = self.device.fill();
            changed |= self.ingress(timestamp);
            if !self.touched_ports.is_empty() {
                // A socket leaves LISTEN only on a segment (a SYN): it moves to a set of its
                // own, dirty, so its SYN-ACK leaves in this round's egress.
                self.refill_listeners();
            }
            changed |= self.egress(timestamp);
            self.device.flush();
            if queued == 0 {
                break;
            }
        }
        if !self.dying.is_empty() {
            self.reap(now);
        }
        changed
    }

    /// How long until the stack needs `poll` again even if nothing arrives.
    pub fn poll_delay(&mut self, now: std::time::Instant) -> Option<Duration> {
        if self.device.has_pending_tx() || self.conns.has_dirty() || self.misc_due {
            return Some(Duration::ZERO);
        }
        let now_us = self.timestamp(now).total_micros();
        let misc_us = self.misc_at.map(|at| at.total_micros());
        let next_us = match (self.conns.next_timer_us(), misc_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }?;
        let wait_us = u64::try_from(next_us.saturating_sub(now_us)).unwrap_or(0);
        Some(Duration::from_micros(wait_us))
    }

    fn route(&self) -> Option<Route> {
        let frame = self.device.front()?;
        Some(match classify(frame) {
            FrameClass::Tcp { local_port, remote, .. } => {
                if let Some(index) = self.conns.by_flow(&(local_port, remote)) {
                    Route::Conn(index)
                } else if self.listeners.contains_key(&local_port) {
                    Route::Listener(local_port)
                } else {
                    Route::Misc { arp: false }
                }
            }
            FrameClass::ArpRequest | FrameClass::ArpReply => Route::Misc { arp: true },
            FrameClass::Udp { .. } | FrameClass::Other | FrameClass::Malformed => {
                Route::Misc { arp: false }
            }
        })
    }

    /// Runs every queued frame through the protocol, each with its own set.
    fn ingress(&mut self, timestamp: SmolInstant) -> bool {
        let mut changed = false;
        // Bounded by the burst `fill` queued: each round takes one frame off the queue.
        while let Some(route) = self.route() {
            let set = match route {
                Route::Conn(index) => self.conns.at(index).map(|slot| &mut slot.set),
                Route::Listener(port) => self.listeners.get_mut(&port).map(|l| &mut l.set),
                Route::Misc { .. } => None,
            }
            .unwrap_or(&mut self.misc);
            match self.iface.poll_ingress_single(timestamp, &mut self.device, set) {
                Ingress::None => break,
                Ingress::PacketProcessed => {}
                Ingress::SocketStateChanged => changed = true,
            }
            match route {
                Route::Conn(index) => self.conns.mark(index), // an ACK, or data to take
                Route::Listener(port) => {
                    if !self.touched_ports.contains(&port) {
                        self.touched_ports.push(port);
                    }
                }
                Route::Misc { arp } => {
                    self.misc_due = true;
                    if arp {
                        // Segments held for an unknown neighbour may leave now (rare: ARP).
                        self.conns.mark_all();
                    }
                }
            }
        }
        changed
    }

    /// Egress on the sets that may have something to send.
    fn egress(&mut self, timestamp: SmolInstant) -> bool {
        let mut sent_any = false;
        let mut dirty = std::mem::take(&mut self.scratch);
        self.conns.take_dirty(&mut dirty);
        for &index in &dirty {
            let Some(slot) = self.conns.at(index) else { continue };
            let (sent, more) =
                egress_set(&mut self.iface, &mut self.device, &mut slot.set, timestamp);
            sent_any |= sent;
            if more {
                self.conns.mark(index);
            } else {
                // Quiet now: when does smoltcp next want it (one socket to ask)?
                let at = self.iface.poll_at(timestamp, &slot.set);
                self.conns.set_timer(index, at);
            }
        }
        self.scratch = dirty;
        if self.misc_due || self.misc_at.is_some_and(|at| at <= timestamp) {
            let (sent, more) =
                egress_set(&mut self.iface, &mut self.device, &mut self.misc, timestamp);
            sent_any |= sent;
            self.misc_due = more;
            self.misc_at = if more { None } else { self.iface.poll_at(timestamp, &self.misc) };
        }
        sent_any
    }
}
