//! The socket lifecycle of a [`Stack`]: the accept backlog (smoltcp has none: a pool of
//! listening sockets per port, refilled as connections arrive), released sockets that still
//! owe their peer a RST, and spare closed sockets reused instead of allocating and zeroing
//! fresh buffers per connection.

use smoltcp::iface::SocketSet;
use smoltcp::socket::{Socket, tcp};

use crate::NetError;
use crate::conns::{Phase, SlotId};
use crate::stack::{Conn, Listener, SPARE_SOCKETS, Stack};
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

    /// Stops listening on `port`: connections already accepted are unaffected, ones waiting
    /// to be accepted are reset.
    pub fn unlisten(&mut self, port: u16) {
        if let Some(mut listener) = self.listeners.remove(&port) {
            for handle in listener.listening {
                if let Socket::Tcp(socket) = listener.set.remove(handle) {
                    self.keep_spare(socket);
                }
            }
        }
        // Connections that arrived and were never accepted are refused: reset.
        for id in self.ready.remove(&port).unwrap_or_default() {
            if let Some(slot) = self.conns.get(id) {
                slot.phase = Phase::Open;
                self.abort(Conn(id));
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
    pub(crate) fn remove_conn(&mut self, id: SlotId) {
        if let Some(socket) = self.conns.remove(id) {
            self.freed += 1;
            self.keep_spare(socket);
        }
    }

    /// True while the stack still holds `conn` (open, or released and finishing its close).
    pub fn holds(&mut self, conn: Conn) -> bool {
        self.conns.get(conn.0).is_some()
    }

    /// Connections whose slot was freed so far: a cheap sign that [`Stack::holds`] may have
    /// changed for a released one.
    pub fn freed(&self) -> u64 {
        self.freed
    }

    /// A connection that arrived on `port`, if one is waiting.
    ///
    /// Only a connection whose handshake is done is handed out (as Linux's `accept` does): one
    /// still in SYN-RECEIVED waits, since what the app does with it then (a `close`, a write)
    /// would have to wait for the handshake anyway.
    pub fn accept(&mut self, port: u16) -> Option<Conn> {
        let ready = self.ready.get_mut(&port)?;
        let mut index = ready.len();
        while index > 0 {
            index -= 1;
            let id = ready[index];
            let Some(slot) = self.conns.get(id) else {
                ready.remove(index); // gone meanwhile
                continue;
            };
            if slot.socket().state() == tcp::State::SynReceived {
                continue;
            }
            ready.remove(index);
            slot.phase = Phase::Open;
            self.stats.accepted += 1;
            return Some(Conn(id));
        }
        None
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
