//! The connection table: every TCP connection lives in a smoltcp socket set of its own.
//!
//! smoltcp scans its whole socket set for each segment it receives and on each egress pass,
//! so with one set a request costs time in proportion to the connections held, and an idle
//! stack keeps paying for all of them. Here the stack routes a segment to its connection's
//! set by flow (a hash lookup), and runs egress only on the sets that may have something to
//! send: those the application or a segment touched (the dirty list) and those whose smoltcp
//! timer (retransmission, delayed ACK, keep-alive) came due (a min-heap; an entry that no
//! longer matches its slot is skipped).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddrV4;

use rustc_hash::FxHashMap;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::IpAddress;

/// A TCP flow as seen from here: (our port, the peer).
pub(crate) type Flow = (u16, SocketAddrV4);

/// Where a connection is in the stack's hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Left LISTEN, waiting for `accept`.
    Waiting,
    /// Handed out (accepted or connected).
    Open,
    /// Released while open: its RST leaves on the next egress, then it goes (or at the
    /// deadline).
    Dying(std::time::Instant),
    /// Released after the app closed it: the close runs to its end (what is queued is sent,
    /// the peer's FIN is acknowledged), then it waits in TIME-WAIT; at the deadline it is
    /// reset instead.
    Lingering(std::time::Instant),
    /// Released and both sides closed: kept until the deadline to acknowledge a
    /// retransmitted FIN, then it goes.
    TimeWait(std::time::Instant),
}

/// A connection's socket set (one socket) and bookkeeping.
pub(crate) struct Slot {
    pub(crate) set: SocketSet<'static>,
    handle: SocketHandle,
    flow: Option<Flow>,
    pub(crate) phase: Phase,
    /// In the dirty list.
    dirty: bool,
    /// The timer last pushed for this slot, micros since the stack's origin.
    timer_us: Option<i64>,
}

impl Slot {
    pub(crate) fn socket(&mut self) -> &mut tcp::Socket<'static> {
        self.set.get_mut::<tcp::Socket>(self.handle)
    }
}

/// A slot by index and generation: a handle that outlives its connection finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SlotId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

#[derive(Default)]
pub(crate) struct ConnTable {
    slots: Vec<Option<Slot>>,
    /// Each index's generation, bumped when the index is taken again.
    generations: Vec<u32>,
    free: Vec<u32>,
    flows: FxHashMap<Flow, u32>,
    dirty: Vec<u32>,
    timers: BinaryHeap<Reverse<(i64, u32)>>,
}

/// The flow of a socket that has a peer.
fn flow_of(socket: &tcp::Socket<'_>) -> Option<Flow> {
    let (local, remote) = (socket.local_endpoint()?, socket.remote_endpoint()?);
    let IpAddress::Ipv4(ip) = remote.addr;
    Some((local.port, SocketAddrV4::new(ip, remote.port)))
}

impl ConnTable {
    /// Takes `socket` in, dirty (it may have a SYN or SYN-ACK to send).
    pub(crate) fn insert(&mut self, socket: tcp::Socket<'static>, phase: Phase) -> SlotId {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.generations.push(0);
            u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 connections")
        });
        let i = index as usize;
        self.generations[i] = self.generations[i].wrapping_add(1);
        let flow = flow_of(&socket);
        if let Some(flow) = flow {
            self.flows.insert(flow, index);
        }
        let mut set = SocketSet::new(Vec::with_capacity(1));
        let handle = set.add(socket);
        self.slots[i] = Some(Slot { set, handle, flow, phase, dirty: false, timer_us: None });
        self.mark(index);
        SlotId { index, generation: self.generations[i] }
    }

    pub(crate) fn get(&mut self, id: SlotId) -> Option<&mut Slot> {
        let i = id.index as usize;
        if self.generations.get(i) != Some(&id.generation) {
            return None;
        }
        self.slots.get_mut(i)?.as_mut()
    }

    /// Takes the connection out; returns its socket.
    pub(crate) fn remove(&mut self, id: SlotId) -> Option<tcp::Socket<'static>> {
        self.get(id)?;
        let mut slot = self.slots[id.index as usize].take()?;
        if let Some(flow) = slot.flow
            && self.flows.get(&flow) == Some(&id.index)
        {
            self.flows.remove(&flow);
        }
        self.free.push(id.index);
        match slot.set.remove(slot.handle) {
            smoltcp::socket::Socket::Tcp(socket) => Some(socket),
            _ => None,
        }
    }

    /// The slot a segment of `flow` belongs to.
    pub(crate) fn by_flow(&self, flow: &Flow) -> Option<u32> {
        self.flows.get(flow).copied()
    }

    /// The slot at `index`, whatever its generation (for the stack's own loops).
    pub(crate) fn at(&mut self, index: u32) -> Option<&mut Slot> {
        self.slots.get_mut(index as usize)?.as_mut()
    }

    /// Queues the slot for the next egress.
    pub(crate) fn mark(&mut self, index: u32) {
        if let Some(slot) = self.at(index)
            && !slot.dirty
        {
            slot.dirty = true;
            self.dirty.push(index);
        }
    }

    /// Every connection, for the next egress (e.g. a neighbour became known).
    pub(crate) fn mark_all(&mut self) {
        for index in 0..self.slots.len() {
            self.mark(u32::try_from(index).expect("slot indices fit u32"));
        }
    }

    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Moves the dirty list into `out` (cleared first), clearing the slots' marks.
    pub(crate) fn take_dirty(&mut self, out: &mut Vec<u32>) {
        out.clear();
        out.append(&mut self.dirty);
        for &index in out.iter() {
            if let Some(slot) = self.slots.get_mut(index as usize).and_then(Option::as_mut) {
                slot.dirty = false;
            }
        }
    }

    /// Remembers when the slot's timer is next due.
    pub(crate) fn set_timer(&mut self, index: u32, at: Option<SmolInstant>) {
        let Some(slot) = self.at(index) else { return };
        let at_us = at.map(|t| t.total_micros());
        if slot.timer_us == at_us {
            return;
        }
        slot.timer_us = at_us;
        if let Some(at_us) = at_us {
            self.timers.push(Reverse((at_us, index)));
        }
        // Superseded entries stay until they come due: rebuild when they dominate, so the
        // heap stays in proportion to the connections.
        if self.timers.len() > 4 * self.slots.len() + 1024 {
            let live = self.slots.iter().enumerate().filter_map(|(index, slot)| {
                let at_us = slot.as_ref()?.timer_us?;
                Some(Reverse((at_us, u32::try_from(index).ok()?)))
            });
            self.timers = live.collect();
        }
    }

    /// Marks dirty every slot whose timer is due at `now`; stale entries are dropped.
    pub(crate) fn fire_timers(&mut self, now: SmolInstant) {
        let now_us = now.total_micros();
        while let Some(&Reverse((at_us, index))) = self.timers.peek() {
            if at_us > now_us {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.at(index) else { continue };
            if slot.timer_us == Some(at_us) {
                slot.timer_us = None;
                self.mark(index);
            }
        }
    }

    /// The earliest timer (possibly stale: early, never late), micros.
    pub(crate) fn next_timer_us(&self) -> Option<i64> {
        self.timers.peek().map(|Reverse((at_us, _))| *at_us)
    }

    /// Connections held.
    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}
