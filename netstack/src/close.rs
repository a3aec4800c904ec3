//! How a connection leaves the stack (ADR 0007): released after the app closed it, it
//! lingers until its close is done, waits out a short TIME-WAIT, and goes; released while
//! open, or aborted, it is reset. Every step is bounded: in time, and in how many
//! connections may linger or wait at once.

use smoltcp::socket::tcp;

use crate::conns::{Phase, SlotId};
use crate::stack::{Conn, DYING_MAX, LINGER_MAX, LINGERING_MAX, Stack, TIME_WAIT, TIME_WAIT_MAX};
use crate::wire::Wire;

impl<L: Wire> Stack<L> {
    /// Forgets `conn`. A connection the app closed (`close`: our FIN is queued or sent)
    /// lingers until its close finishes in order (SO_LINGER off, as a Linux `close`): what is
    /// queued is sent, the peer's FIN acknowledged; then it waits a second in TIME-WAIT and
    /// its buffers are freed. One still open is reset ([`Stack::abort`]), and so is a close
    /// that takes longer than a minute, or one released while 1024 others are closing.
    /// `conn` must not be used again.
    pub fn release(&mut self, conn: Conn) {
        let Some(slot) = self.conns.get(conn.0) else { return };
        if slot.phase != Phase::Open {
            return;
        }
        use tcp::State as S;
        match slot.socket().state() {
            S::Closed => self.remove_conn(conn.0),
            S::TimeWait => self.enter_time_wait(conn.0),
            S::FinWait1 | S::FinWait2 | S::Closing | S::LastAck
                if self.lingering < LINGERING_MAX =>
            {
                slot.phase = Phase::Lingering(self.last_poll + LINGER_MAX);
                self.lingering += 1;
                self.dying.push(conn.0);
            }
            _ => self.abort(conn),
        }
    }

    /// Resets `conn` (a RST; what is queued is discarded: SO_LINGER with a zero timeout) and
    /// forgets it. `conn` must not be used again.
    pub fn abort(&mut self, conn: Conn) {
        let Some(slot) = self.conns.get(conn.0) else { return };
        if slot.phase != Phase::Open {
            return;
        }
        let socket = slot.socket();
        if socket.state() == tcp::State::Closed {
            return self.remove_conn(conn.0);
        }
        socket.abort();
        self.stats.reset_on_release += 1;
        if socket.remote_endpoint().is_some() {
            // smoltcp sends the RST of an aborted socket on its next egress, then forgets the
            // peer; removing it now would leave the peer with a half-open connection.
            slot.phase = Phase::Dying(self.last_poll + DYING_MAX);
            self.conns.mark(conn.0.index);
            self.dying.push(conn.0);
        } else {
            self.remove_conn(conn.0);
        }
    }

    /// A released connection whose close is done waits in TIME-WAIT, if there is room;
    /// otherwise it goes now. Not on the `dying` list yet.
    fn enter_time_wait(&mut self, id: SlotId) {
        if self.time_waiting >= TIME_WAIT_MAX {
            self.stats.closed_in_order += 1;
            return self.remove_conn(id);
        }
        let Some(slot) = self.conns.get(id) else { return };
        slot.phase = Phase::TimeWait(self.last_poll + TIME_WAIT);
        self.time_waiting += 1;
        self.dying.push(id);
    }

    /// Released connections still sending their RST or finishing their close short of
    /// TIME-WAIT (what an orderly shutdown waits for).
    pub fn closing(&mut self) -> usize {
        let dying = std::mem::take(&mut self.dying);
        let count = dying
            .iter()
            .filter(|&&id| {
                self.conns.get(id).is_some_and(|slot| !matches!(slot.phase, Phase::TimeWait(_)))
            })
            .count();
        self.dying = dying;
        count
    }

    /// Moves every released connection along: removes those whose RST left, whose close
    /// finished, or whose TIME-WAIT ended; resets lingering ones past their deadline.
    pub(crate) fn reap(&mut self, now: std::time::Instant) {
        let mut dying = std::mem::take(&mut self.dying);
        dying.retain(|&id| {
            let Some(slot) = self.conns.get(id) else { return false };
            match slot.phase {
                Phase::Dying(deadline) => {
                    let gone = slot.socket().remote_endpoint().is_none();
                    if gone || now >= deadline {
                        self.remove_conn(id);
                    }
                    !(gone || now >= deadline)
                }
                Phase::Lingering(deadline) => self.linger(id, now, deadline),
                Phase::TimeWait(deadline) => {
                    let over = now >= deadline || slot.socket().state() == tcp::State::Closed;
                    if over {
                        self.time_waiting -= 1;
                        self.stats.closed_in_order += 1;
                        self.remove_conn(id);
                    }
                    !over
                }
                Phase::Waiting | Phase::Open => false,
            }
        });
        // Those that entered TIME-WAIT in `linger` were pushed meanwhile.
        dying.append(&mut self.dying);
        self.dying = dying;
    }

    /// One lingering connection's step; false once it left the lingering list.
    fn linger(
        &mut self,
        id: SlotId,
        now: std::time::Instant,
        deadline: std::time::Instant,
    ) -> bool {
        use tcp::State as S;
        let Some(slot) = self.conns.get(id) else { return false };
        match slot.socket().state() {
            S::Closed => {
                // Done (or reset by the peer, which ends it as well).
                self.lingering -= 1;
                self.stats.closed_in_order += 1;
                self.remove_conn(id);
                false
            }
            S::TimeWait => {
                self.lingering -= 1;
                self.enter_time_wait(id);
                false // `enter_time_wait` put it back on the list, if it stays
            }
            _ if now >= deadline => {
                // The peer never finished its side: reset, as Linux does after
                // tcp_fin_timeout.
                slot.socket().abort();
                slot.phase = Phase::Dying(now + DYING_MAX);
                self.conns.mark(id.index);
                self.lingering -= 1;
                self.stats.reset_on_release += 1;
                true
            }
            _ => true,
        }
    }
}
