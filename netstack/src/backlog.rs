//! The socket lifecycle of a [`Stack`]: the accept backlog (smoltcp has none: a pool of
//! listening sockets per port, refilled as connections arrive), released sockets that still
//! owe their peer a RST, and spare closed sockets reused instead of allocating and zeroing
//! fresh buffers per connection.

use smoltcp::iface::SocketSet;
use smoltcp::socket::{Socket, tcp};

use crate::NetError;
use crate::conns::{Phase, SlotId};
use crate::stack::{Conn, DYING_MAX, LINGER_MAX, LINGERING_MAX, Listener, SPARE_SOCKETS};
use crate::stack::{Stack, TIME_WAIT};
use crate::wire::Wire;

impl<L: Wire> Stack<L> {
    /// A closed TCP socket with our defaults: a spare one if there is one (its buffers were
    /// allocated and zeroed once; zeroing 2 × 64 KiB per connection was most of a connection
    /// setup's cost), else a new one.
    pub(crate) fn socket(&mut self) -> tcp::Socket<'static> {
        let bytes = self.config.tcp_buffer_bytes;
        let mut socket = self.spare.pop().unwrap_or_else(|| {
            tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; bytes]),
                tcp::SocketBuffer::new(vec![0; bytes]),
            )
        });
        // Whatever a previous user set goes: spare sockets come back as new ones.
        socket.set_timeout(None);
        socket.set_keep_alive(None);
        // RPC defaults: send at once, acknowledge at once (both off in smoltcp by default
        // is the opposite: Nagle on, 10 ms delayed ACK).
        socket.set_nagle_enabled(false);
        socket.set_ack_delay(None);
        socket
    }

    /// Listens on `port` with room for `backlog` connections in handshake or waiting to be
    /// accepted.
    pub fn listen(&mut self, port: u16, backlog: usize) -> Result<(), NetError> {
        if port == 0 || backlog == 0 {
            return Err(NetError::Invalid("port and backlog must be non-zero"));
        }
        if self.listeners.contains_key(&port) {
            return Err(NetError::AddrInUse);
        }
        let mut listener = Listener {
            backlog,
            set: SocketSet::new(Vec::with_capacity(backlog)),
            listening: Vec::with_capacity(backlog),
        };
        for _ in 0..backlog {
            let socket = self.listening_socket(port)?;
            listener.listening.push(listener.set.add(socket));
        }
        self.listeners.insert(port, listener);
        Ok(())
    }

    fn listening_socket(&mut self, port: u16) -> Result<tcp::Socket<'static>, NetError> {
        let mut socket = self.socket();
        socket.listen(port).map_err(|_| NetError::AddrInUse)?;
        Ok(socket)
    }

    /// Stops listening on `port`; connections already accepted or waiting are unaffected.
    pub fn unlisten(&mut self, port: u16) {
        if let Some(mut listener) = self.listeners.remove(&port) {
            for handle in listener.listening {
                if let Socket::Tcp(socket) = listener.set.remove(handle) {
                    self.keep_spare(socket);
                }
            }
        }
    }

    /// Keeps a socket for reuse if it is closed and there is room (bounded).
    fn keep_spare(&mut self, mut socket: tcp::Socket<'static>) {
        socket.abort(); // closed, no peer: nothing will be sent
        if self.spare.len() < SPARE_SOCKETS && socket.remote_endpoint().is_none() {
            self.spare.push(socket);
        }
    }

    /// Takes a connection out of the stack; its socket may be kept as a spare.
    fn remove_conn(&mut self, id: SlotId) {
        if let Some(socket) = self.conns.remove(id) {
            self.freed += 1;
            self.keep_spare(socket);
        }
    }

    /// True while the stack still holds `conn` (open, or released and finishing its close).
    pub fn holds(&mut self, conn: Conn) -> bool {
        self.conns.get(conn.0).is_some()
    }

    /// Released connections still sending their RST or finishing their close short of
    /// TIME-WAIT (what an orderly shutdown waits for).
    pub fn closing(&mut self) -> usize {
        let dying = std::mem::take(&mut self.dying);
        let count = dying
            .iter()
            .filter(|&&id| {
                self.conns.get(id).is_some_and(|slot| slot.socket().state() != tcp::State::TimeWait)
            })
            .count();
        self.dying = dying;
        count
    }

    /// Connections whose slot was freed so far: a cheap sign that [`Stack::holds`] may have
    /// changed for a released one.
    pub fn freed(&self) -> u64 {
        self.freed
    }

    /// A connection that arrived on `port`, if one is waiting.
    pub fn accept(&mut self, port: u16) -> Option<Conn> {
        let ready = self.ready.get_mut(&port)?;
        while let Some(id) = ready.pop() {
            if let Some(slot) = self.conns.get(id) {
                slot.phase = Phase::Open;
                self.stats.accepted += 1;
                return Some(Conn(id));
            }
        }
        None
    }

    /// Forgets `conn`. A connection the app closed (`close`: our FIN is queued or sent)
    /// lingers until its close finishes in order (SO_LINGER off, as a Linux `close`): what is
    /// queued is sent, the peer's FIN acknowledged; then its buffers are freed. One still
    /// open is reset (an abort, SO_LINGER with a zero timeout), and so is a close that takes
    /// longer than a minute, or one released while too many linger. `conn` must not be used
    /// again.
    pub fn release(&mut self, conn: Conn) {
        let Some(slot) = self.conns.get(conn.0) else { return };
        if slot.phase != Phase::Open {
            return;
        }
        let socket = slot.socket();
        let state = socket.state();
        use tcp::State as S;
        let closing = matches!(state, S::FinWait1 | S::FinWait2 | S::Closing | S::LastAck);
        if (closing || state == S::TimeWait) && self.lingering < LINGERING_MAX {
            let wait = if state == S::TimeWait { TIME_WAIT } else { LINGER_MAX };
            slot.phase = Phase::Lingering(self.last_poll + wait);
            self.lingering += 1;
            self.dying.push(conn.0);
            return;
        }
        let open = state != S::Closed;
        if open {
            socket.abort();
            self.stats.reset_on_release += 1;
        }
        if open && socket.remote_endpoint().is_some() {
            // smoltcp sends the RST of an aborted socket on its next egress, then forgets the
            // peer; removing it now would leave the peer with a half-open connection.
            slot.phase = Phase::Dying(self.last_poll + DYING_MAX);
            self.conns.mark(conn.0.index);
            self.dying.push(conn.0);
        } else {
            self.remove_conn(conn.0);
        }
    }

    /// Removes released connections whose RST left or whose close finished (or that waited
    /// too long), and resets lingering ones past their deadline.
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
                Phase::Waiting | Phase::Open => false,
            }
        });
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
        let state = slot.socket().state();
        if state == S::Closed || (state == S::TimeWait && now >= deadline) {
            self.lingering -= 1;
            self.stats.closed_in_order += 1;
            self.remove_conn(id);
            return false;
        }
        if now >= deadline {
            // The peer never finished its side: reset, as Linux does after tcp_fin_timeout.
            slot.socket().abort();
            slot.phase = Phase::Dying(now + DYING_MAX);
            self.conns.mark(id.index);
            self.lingering -= 1;
            self.stats.reset_on_release += 1;
            return true;
        }
        if state == S::TimeWait && deadline > now + TIME_WAIT {
            slot.phase = Phase::Lingering(now + TIME_WAIT); // both FINs done: a short wait
        }
        true
    }

    /// For each port a segment reached: moves its listening sockets that got a connection to
    /// sets of their own, on the ready list, and replaces them.
    pub(crate) fn refill_listeners(&mut self) {
        let mut ports = std::mem::take(&mut self.touched_ports);
        for &port in &ports {
            let Some(listener) = self.listeners.get_mut(&port) else { continue };
            let mut left = Vec::new();
            let set = &mut listener.set;
            listener.listening.retain(|&handle| {
                let busy = !set.get::<tcp::Socket>(handle).is_listening();
                if busy && let Socket::Tcp(socket) = set.remove(handle) {
                    left.push(socket);
                }
                !busy
            });
            let (backlog, listening) = (listener.backlog, listener.listening.len());
            let waiting = self.ready.entry(port).or_default();
            let room = backlog.saturating_sub(waiting.len());
            waiting.extend(left.into_iter().map(|s| self.conns.insert(s, Phase::Waiting)));
            // Keep `backlog` slots for handshakes and waiting connections together.
            for _ in 0..(backlog - listening).min(room) {
                let Ok(socket) = self.listening_socket(port) else { break };
                let listener = self.listeners.get_mut(&port).expect("present");
                listener.listening.push(listener.set.add(socket));
            }
        }
        ports.clear();
        self.touched_ports = ports; // keep the capacity
    }
}
