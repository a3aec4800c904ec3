//! The socket lifecycle of a [`Stack`]: the accept backlog (smoltcp has none: a pool of
//! listening sockets per port, refilled as connections arrive), released sockets that still
//! owe their peer a RST, and spare closed sockets reused instead of allocating and zeroing
//! fresh buffers per connection.

use smoltcp::iface::SocketSet;
use smoltcp::socket::{Socket, tcp};

use crate::NetError;
use crate::conns::{Phase, SlotId};
use crate::link::Link;
use crate::stack::{Conn, DYING_MAX, Listener, SPARE_SOCKETS, Stack};

impl<L: Link> Stack<L> {
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
            self.keep_spare(socket);
        }
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

    /// Forgets `conn` (an abort if it is still open: the peer gets a RST) and frees its
    /// buffers. `conn` must not be used again.
    pub fn release(&mut self, conn: Conn) {
        let deadline = self.last_poll + DYING_MAX;
        let Some(slot) = self.conns.get(conn.0) else { return };
        if slot.phase != Phase::Open {
            return;
        }
        let socket = slot.socket();
        // Our side finished (FIN acknowledged): nothing to reset.
        let open = !matches!(
            socket.state(),
            tcp::State::Closed | tcp::State::TimeWait | tcp::State::FinWait2
        );
        if open {
            socket.abort();
        }
        if open && socket.remote_endpoint().is_some() {
            // smoltcp sends the RST of an aborted socket on its next egress, then forgets the
            // peer; removing it now would leave the peer with a half-open connection.
            slot.phase = Phase::Dying(deadline);
            self.conns.mark(conn.0.index);
            self.dying.push(conn.0);
        } else {
            self.remove_conn(conn.0);
        }
    }

    /// Removes released connections whose RST left (or that waited too long for it).
    pub(crate) fn reap(&mut self, now: std::time::Instant) {
        let mut dying = std::mem::take(&mut self.dying);
        dying.retain(|&id| {
            let Some(slot) = self.conns.get(id) else { return false };
            let Phase::Dying(deadline) = slot.phase else { return false };
            let gone = slot.socket().remote_endpoint().is_none();
            if gone || now >= deadline {
                self.remove_conn(id);
            }
            !(gone || now >= deadline)
        });
        self.dying = dying;
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
