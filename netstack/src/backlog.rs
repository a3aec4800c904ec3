//! The socket lifecycle of a [`Stack`]: the accept backlog (smoltcp has none: a pool of
//! listening sockets per port, refilled as connections arrive), released sockets that still
//! owe their peer a RST, and spare closed sockets reused instead of allocating and zeroing
//! fresh buffers per connection.

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;

use crate::link::Link;
use crate::stack::{Conn, DYING_MAX, Listener, NetError, SPARE_SOCKETS, Stack};

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
        let mut listener = Listener { backlog, listening: Vec::with_capacity(backlog) };
        for _ in 0..backlog {
            listener.listening.push(self.listening_socket(port)?);
        }
        self.listeners.insert(port, listener);
        Ok(())
    }

    pub(crate) fn listening_socket(&mut self, port: u16) -> Result<SocketHandle, NetError> {
        let mut socket = self.socket();
        socket.listen(port).map_err(|_| NetError::AddrInUse)?;
        Ok(self.sockets.add(socket))
    }

    /// Stops listening on `port`; connections already accepted or waiting are unaffected.
    pub fn unlisten(&mut self, port: u16) {
        if let Some(listener) = self.listeners.remove(&port) {
            for handle in listener.listening {
                self.remove(handle);
            }
        }
    }

    /// Removes a socket from the set; a closed TCP socket is kept as a spare (bounded).
    pub(crate) fn remove(&mut self, handle: SocketHandle) {
        if let smoltcp::socket::Socket::Tcp(mut socket) = self.sockets.remove(handle)
            && self.spare.len() < SPARE_SOCKETS
        {
            socket.abort(); // closed, no peer: nothing will be sent
            if socket.remote_endpoint().is_none() {
                self.spare.push(socket);
            }
        }
    }

    /// A connection that arrived on `port`, if one is waiting.
    pub fn accept(&mut self, port: u16) -> Option<Conn> {
        let handle = self.ready.get_mut(&port)?.pop()?;
        self.stats.accepted += 1;
        self.conns.insert(handle);
        Some(Conn(handle))
    }

    /// Forgets `conn` (an abort if it is still open: the peer gets a RST) and frees its
    /// buffers. `conn` must not be used again.
    pub fn release(&mut self, conn: Conn) {
        if !self.conns.remove(&conn.0) {
            return;
        }
        let socket = self.sockets.get_mut::<tcp::Socket>(conn.0);
        // Our side finished (FIN acknowledged): nothing to reset.
        let open = !matches!(
            socket.state(),
            tcp::State::Closed | tcp::State::TimeWait | tcp::State::FinWait2
        );
        if open {
            socket.abort();
        }
        if open && socket.remote_endpoint().is_some() {
            // smoltcp sends the RST of an aborted socket on its next poll, then forgets the
            // peer; removing it now would leave the peer with a half-open connection.
            self.dying.push((conn.0, self.last_poll + DYING_MAX));
        } else {
            self.remove(conn.0);
        }
    }

    /// Removes released sockets whose RST left (or that waited too long for it).
    pub(crate) fn reap(&mut self, now: std::time::Instant) {
        let mut dying = std::mem::take(&mut self.dying);
        dying.retain(|&(handle, deadline)| {
            let gone = self.sockets.get::<tcp::Socket>(handle).remote_endpoint().is_none();
            if gone || now >= deadline {
                self.remove(handle);
            }
            !(gone || now >= deadline)
        });
        self.dying = dying;
    }

    /// Moves listening sockets that got a connection to the ready list and replaces them.
    pub(crate) fn refill_listeners(&mut self) {
        let ports: Vec<u16> = self.listeners.keys().copied().collect();
        for port in ports {
            let listener = self.listeners.get_mut(&port).expect("key from the map");
            let mut left = Vec::new();
            listener.listening.retain(|&handle| {
                let busy = !self.sockets.get::<tcp::Socket>(handle).is_listening();
                if busy {
                    left.push(handle);
                }
                !busy
            });
            let waiting = self.ready.entry(port).or_default();
            let room = listener.backlog.saturating_sub(waiting.len());
            waiting.extend(left.iter().copied());
            // Keep `backlog` slots for handshakes and waiting connections together.
            let missing = listener.backlog - listener.listening.len();
            for _ in 0..missing.min(room) {
                match self.listening_socket(port) {
                    Ok(handle) => {
                        self.listeners.get_mut(&port).expect("present").listening.push(handle)
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
