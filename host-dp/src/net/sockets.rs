//! Sockets for the runtime's async tasks: the plane's stacks driven by the workers, and
//! `TcpListener` / `TcpStream` futures that sleep on smoltcp's wakers.
//!
//! Worker `w` of the runtime owns stack `w`: [`NetRuntime`] is the runtime's [`Ingress`], so
//! each worker polls its stack between tasks and at preempt points, and hands connections its
//! stack accepted to the listener's queue. A task may run on any worker (an agent places
//! tasks), so each stack sits behind a mutex that its worker's poll and the tasks using its
//! connections take briefly; a task that finds nothing to read or no room to write registers
//! its waker with the socket under that same lock, so no arrival falls in between, and sleeps.
//! Data a task writes leaves at the owning worker's next poll.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::{Poll, Waker};
use std::time::Instant;

use link::MonoNanos;
use netstack::{Conn, ConnState, Link, NetError};

use super::{NetWorker, Plane};
use crate::runtime::{Handle, Ingress};

/// Connections a listener's queue holds before its stacks' own backlogs fill.
const ACCEPT_QUEUE_MAX: usize = 4096;

#[derive(Debug, Default)]
struct AcceptQueue {
    ready: VecDeque<(u16, Conn)>,
    waker: Option<Waker>,
}

/// The plane's stacks, driven by the runtime's workers.
pub struct NetRuntime<L: Link> {
    plane: Arc<Plane<L>>,
    stacks: Vec<Mutex<NetWorker<L>>>,
    listeners: RwLock<Vec<(u16, Arc<Mutex<AcceptQueue>>)>>,
    next_connect: AtomicUsize,
}

impl<L: Link> std::fmt::Debug for NetRuntime<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetRuntime").field("stacks", &self.stacks.len()).finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<L: Link> NetRuntime<L> {
    /// Drives `workers` (stack `w` by runtime worker `w`); install it with
    /// `Runtime::set_ingress`.
    pub fn new(plane: Arc<Plane<L>>, workers: Vec<NetWorker<L>>) -> Arc<NetRuntime<L>> {
        Arc::new(NetRuntime {
            plane,
            stacks: workers.into_iter().map(Mutex::new).collect(),
            listeners: RwLock::new(Vec::new()),
            next_connect: AtomicUsize::new(0),
        })
    }

    /// The plane (connection control, counters).
    pub fn plane(&self) -> &Arc<Plane<L>> {
        &self.plane
    }

    /// Listens on `port` for `tenant` on every stack.
    pub fn listen(
        self: &Arc<Self>,
        port: u16,
        tenant: u16,
        backlog: usize,
    ) -> Result<TcpListener<L>, NetError> {
        self.plane.listen(port, tenant, backlog)?;
        let queue = Arc::new(Mutex::new(AcceptQueue::default()));
        self.listeners.write().unwrap_or_else(PoisonError::into_inner).push((port, queue.clone()));
        Ok(TcpListener { net: self.clone(), port, queue })
    }

    /// Binds UDP `port` on stack `worker` (datagrams to the port are steered there), with
    /// `buffer_bytes` of payload queued each way.
    pub fn bind_udp(
        self: &Arc<Self>,
        port: u16,
        worker: u16,
        buffer_bytes: usize,
    ) -> Result<UdpSocket<L>, NetError> {
        let index = usize::from(worker);
        let stack = self.stacks.get(index).ok_or(NetError::Invalid("no such worker"))?;
        let sock = lock(stack).stack().udp_bind(port, buffer_bytes)?;
        self.plane.bind_udp(port, worker);
        Ok(UdpSocket { net: self.clone(), worker: index, sock: Some(sock) })
    }

    /// Opens a connection to `remote` from one of the stacks (in turn) and waits until it is
    /// established.
    pub async fn connect(self: &Arc<Self>, remote: SocketAddrV4) -> Result<TcpStream<L>, NetError> {
        let worker = self.next_connect.fetch_add(1, Ordering::Relaxed) % self.stacks.len();
        let conn = lock(&self.stacks[worker]).connect(remote)?;
        let stream = TcpStream { net: self.clone(), worker, conn: Some(conn) };
        poll_fn(|cx| {
            let mut stack = lock(&self.stacks[worker]);
            match stack.stack().state(conn)? {
                ConnState::Established | ConnState::PeerClosed => Poll::Ready(Ok(())),
                ConnState::Closed => Poll::Ready(Err(NetError::Closed)),
                ConnState::Connecting => {
                    stack.stack().register_send_waker(conn, cx.waker())?;
                    Poll::Pending
                }
            }
        })
        .await?;
        Ok(stream)
    }
}

impl<L: Link + 'static> Ingress for NetRuntime<L> {
    fn poll(&self, worker: usize, _handle: &Handle) -> usize {
        let Some(stack) = self.stacks.get(worker) else { return 0 };
        // A task holds it for a moment: poll next time rather than wait.
        let Ok(mut stack) = stack.try_lock() else { return 0 };
        // The edge of the host: the stacks' clocks are read here.
        stack.poll(MonoNanos::now(), Instant::now());
        let listeners = self.listeners.read().unwrap_or_else(PoisonError::into_inner);
        for (port, queue) in listeners.iter() {
            let mut queue = lock(queue);
            let mut arrived = false;
            while queue.ready.len() < ACCEPT_QUEUE_MAX {
                let Some(conn) = stack.accept(*port) else { break };
                queue.ready.push_back((u16::try_from(worker).unwrap_or(0), conn));
                arrived = true;
            }
            if arrived && let Some(waker) = queue.waker.take() {
                waker.wake();
            }
        }
        0
    }
}

/// Connections arriving on a port, from every stack.
#[derive(Debug)]
pub struct TcpListener<L: Link> {
    net: Arc<NetRuntime<L>>,
    port: u16,
    queue: Arc<Mutex<AcceptQueue>>,
}

impl<L: Link> TcpListener<L> {
    /// The next connection (one task accepts; the last one to wait is woken).
    pub async fn accept(&self) -> TcpStream<L> {
        let (worker, conn) = poll_fn(|cx| {
            let mut queue = lock(&self.queue);
            match queue.ready.pop_front() {
                Some(ready) => Poll::Ready(ready),
                None => {
                    queue.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        TcpStream { net: self.net.clone(), worker: usize::from(worker), conn: Some(conn) }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// One TCP connection, owned by a task. Dropping it releases the connection (a RST if it is
/// still open); [`TcpStream::close`] ends it in order.
#[derive(Debug)]
pub struct TcpStream<L: Link> {
    net: Arc<NetRuntime<L>>,
    worker: usize,
    conn: Option<Conn>,
}

impl<L: Link> TcpStream<L> {
    fn with<T>(&self, f: impl FnOnce(&mut NetWorker<L>, Conn) -> T) -> Result<T, NetError> {
        let conn = self.conn.ok_or(NetError::NoSuchConn)?;
        Ok(f(&mut lock(&self.net.stacks[self.worker]), conn))
    }

    /// Reads what has arrived into `buf`, waiting for at least one byte; 0 at the end of the
    /// stream (the peer closed its side).
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        poll_fn(|cx| {
            self.with(|stack, conn| match stack.stack().recv(conn, buf) {
                Ok(0) => match stack.stack().register_recv_waker(conn, cx.waker()) {
                    Ok(()) => Poll::Pending,
                    Err(error) => Poll::Ready(Err(error)),
                },
                Ok(n) => Poll::Ready(Ok(n)),
                Err(NetError::Closed) => Poll::Ready(Ok(0)),
                Err(error) => Poll::Ready(Err(error)),
            })?
        })
        .await
    }

    /// Queues as much of `data` as fits, waiting for room for at least one byte.
    pub async fn write(&mut self, data: &[u8]) -> Result<usize, NetError> {
        poll_fn(|cx| {
            self.with(|stack, conn| match stack.stack().send(conn, data) {
                Ok(0) if !data.is_empty() => {
                    match stack.stack().register_send_waker(conn, cx.waker()) {
                        Ok(()) => Poll::Pending,
                        Err(error) => Poll::Ready(Err(error)),
                    }
                }
                other => Poll::Ready(other),
            })?
        })
        .await
    }

    /// Queues all of `data`.
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<(), NetError> {
        while !data.is_empty() {
            let n = self.write(data).await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Ends our side (a FIN after what is queued) and keeps reading what the peer still sends;
    /// [`TcpStream::close`] (or dropping the stream) finishes.
    pub fn shutdown(&mut self) -> Result<(), NetError> {
        self.with(|stack, conn| stack.stack().close(conn))?
    }

    /// Overrides the RPC defaults for this connection (Nagle's algorithm, a delayed-ACK timer).
    pub fn set_coalescing(
        &mut self,
        nagle: bool,
        ack_delay: Option<std::time::Duration>,
    ) -> Result<(), NetError> {
        self.with(|stack, conn| stack.stack().set_coalescing(conn, nagle, ack_delay))?
    }

    /// The peer's address.
    pub fn peer(&self) -> Option<SocketAddrV4> {
        self.with(|stack, conn| stack.stack().peer(conn).ok().flatten()).ok().flatten()
    }

    /// Which stack (worker) owns the connection.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Sends what is queued, then a FIN, and waits until the peer acknowledged all of it (or
    /// reset the connection); then releases it.
    pub async fn close(mut self) -> Result<(), NetError> {
        self.with(|stack, conn| stack.stack().close(conn))??;
        let result = poll_fn(|cx| {
            self.with(|stack, conn| match stack.stack().finished(conn) {
                Ok(true) | Err(_) => Poll::Ready(()),
                Ok(false) => {
                    // Both wakers: the state changes through either direction.
                    let _ = stack.stack().register_recv_waker(conn, cx.waker());
                    let _ = stack.stack().register_send_waker(conn, cx.waker());
                    Poll::Pending
                }
            })
            .unwrap_or(Poll::Ready(()))
        })
        .await;
        self.release();
        Ok(result)
    }

    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            lock(&self.net.stacks[self.worker]).release(conn);
        }
    }
}

impl<L: Link> Drop for TcpStream<L> {
    fn drop(&mut self) {
        self.release();
    }
}

/// A UDP socket on one stack, owned by a task. Dropping it closes it, discarding datagrams
/// still queued to send (they leave at the stack's next poll; keep the socket until then).
#[derive(Debug)]
pub struct UdpSocket<L: Link> {
    net: Arc<NetRuntime<L>>,
    worker: usize,
    sock: Option<netstack::UdpSock>,
}

impl<L: Link> UdpSocket<L> {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut NetWorker<L>, netstack::UdpSock) -> T,
    ) -> Result<T, NetError> {
        let sock = self.sock.ok_or(NetError::NoSuchConn)?;
        Ok(f(&mut lock(&self.net.stacks[self.worker]), sock))
    }

    /// The next datagram into `buf`: its length and sender; waits for one.
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddrV4), NetError> {
        poll_fn(|cx| {
            self.with(|stack, sock| match stack.stack().udp_recv_from(sock, buf) {
                Ok(Some(got)) => Poll::Ready(Ok(got)),
                Ok(None) => match stack.stack().udp_register_recv_waker(sock, cx.waker()) {
                    Ok(()) => Poll::Pending,
                    Err(error) => Poll::Ready(Err(error)),
                },
                Err(error) => Poll::Ready(Err(error)),
            })?
        })
        .await
    }

    /// Queues one datagram to `to`, waiting for room in the send queue.
    pub async fn send_to(&self, data: &[u8], to: SocketAddrV4) -> Result<(), NetError> {
        poll_fn(|cx| {
            self.with(|stack, sock| match stack.stack().udp_send_to(sock, data, to) {
                Ok(true) => Poll::Ready(Ok(())),
                Ok(false) => match stack.stack().udp_register_send_waker(sock, cx.waker()) {
                    Ok(()) => Poll::Pending,
                    Err(error) => Poll::Ready(Err(error)),
                },
                Err(error) => Poll::Ready(Err(error)),
            })?
        })
        .await
    }
}

impl<L: Link> Drop for UdpSocket<L> {
    fn drop(&mut self) {
        if let Some(sock) = self.sock.take() {
            lock(&self.net.stacks[self.worker]).stack().udp_close(sock);
        }
    }
}
