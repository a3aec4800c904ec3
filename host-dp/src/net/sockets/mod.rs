//! Sockets for the runtime's async tasks: the plane's stacks driven by the workers, and
//! `TcpListener` / `TcpStream` / `UdpSocket` futures that sleep on smoltcp's wakers.
//!
//! Worker `w` of the runtime owns stack `w`: [`NetRuntime`] is the runtime's [`Ingress`], so
//! each worker polls its stack between tasks and at preempt points, and hands connections its
//! stack accepted to the listener's queue. A task may run on any worker (an agent places
//! tasks), so each stack sits behind a mutex that its worker's poll and the tasks using its
//! connections take briefly; a task that finds nothing to read or no room to write registers
//! its waker with the socket under that same lock, so no arrival falls in between, and sleeps.
//! Data a task writes leaves at the owning worker's next poll.
//!
//! The sockets speak standard async I/O: [`TcpStream`] implements `futures_io`'s
//! `AsyncRead`/`AsyncWrite` (and tokio's, with the `tokio` feature), and errors convert to
//! `std::io::Error` with the errno a Linux socket would give. Their type parameter defaults
//! to [`AnyPort`], the builder's link, so application code never names it.

mod stream;
mod udp;

use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::{Poll, Waker};
use std::time::Instant;

use link::MonoNanos;
use netstack::{ConnState, NetError, Wire};

use super::{AnyPort, NetWorker, Plane, SharedWire};
use crate::runtime::{Handle, Ingress};
pub use stream::TcpStream;
pub use udp::UdpSocket;

/// Connections a listener's queue holds before its stacks' own backlogs fill.
const ACCEPT_QUEUE_MAX: usize = 4096;

/// Tasks waiting in `accept` on one listener at once; more are refused (bounded memory).
const ACCEPT_WAITERS_MAX: usize = 4096;

#[derive(Debug, Default)]
struct AcceptQueue {
    ready: VecDeque<(usize, netstack::Conn)>,
    /// Every task waiting in `accept`, in the order they came; all are woken when
    /// connections arrive, so none is starved by a later one.
    waiters: Vec<Waker>,
    closed: bool,
}

/// The plane's stacks, driven by the runtime's workers.
pub struct NetRuntime<L: Wire = AnyPort> {
    plane: Arc<Plane<L>>,
    stacks: Vec<Mutex<NetWorker<L>>>,
    listeners: RwLock<Vec<(u16, Arc<Mutex<AcceptQueue>>)>>,
    next_connect: AtomicUsize,
}

impl<L: Wire> std::fmt::Debug for NetRuntime<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetRuntime").field("stacks", &self.stacks.len()).finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<L: Wire> NetRuntime<L> {
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

    /// The stacks' shared address.
    pub fn ip(&self) -> Ipv4Addr {
        self.plane.ip()
    }

    /// Released connections the stacks are still closing (see `netstack::Stack::closing`).
    pub fn closing(&self) -> usize {
        (0..self.stacks.len()).map(|w| self.stack(w).stack().closing()).sum()
    }

    /// How many stacks (one per worker).
    pub fn workers(&self) -> usize {
        self.stacks.len()
    }

    /// Listens on `port` for `tenant` on every stack, `backlog` handshakes each.
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
        Ok(UdpSocket::new(self.clone(), index, sock, SocketAddrV4::new(self.ip(), port)))
    }

    /// Opens a connection to `remote` from one of the stacks (in turn) and waits until it is
    /// established.
    pub async fn connect(self: &Arc<Self>, remote: SocketAddrV4) -> Result<TcpStream<L>, NetError> {
        let worker = self.next_connect.fetch_add(1, Ordering::Relaxed) % self.stacks.len();
        let conn = lock(&self.stacks[worker]).connect(remote)?;
        let stream = TcpStream::new(self.clone(), worker, conn);
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

    /// Closes every listener: tasks waiting in `accept` fail with [`NetError::Closed`], and
    /// connections not yet accepted are reset.
    pub fn close_listeners(&self) {
        let queues: Vec<Arc<Mutex<AcceptQueue>>> = self
            .listeners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(_, queue)| queue.clone())
            .collect();
        for queue in queues {
            self.unlisten(&queue);
        }
    }

    /// Closes the listener whose queue is `queue`, if it is still open.
    fn unlisten(&self, queue: &Arc<Mutex<AcceptQueue>>) {
        let port = {
            let mut listeners = self.listeners.write().unwrap_or_else(PoisonError::into_inner);
            let Some(index) = listeners.iter().position(|(_, q)| Arc::ptr_eq(q, queue)) else {
                return;
            };
            listeners.swap_remove(index).0
        };
        self.plane.unlisten(port);
        let (ready, waiters) = {
            let mut queue = lock(queue);
            queue.closed = true;
            (std::mem::take(&mut queue.ready), std::mem::take(&mut queue.waiters))
        };
        for (worker, conn) in ready {
            lock(&self.stacks[worker]).abort(conn);
        }
        waiters.into_iter().for_each(Waker::wake);
    }

    fn stack(&self, worker: usize) -> MutexGuard<'_, NetWorker<L>> {
        lock(&self.stacks[worker])
    }
}

impl<L: SharedWire + 'static> Ingress for NetRuntime<L> {
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
                queue.ready.push_back((worker, conn));
                arrived = true;
            }
            if arrived {
                // Every waiter, oldest first: each takes one connection or waits again.
                std::mem::take(&mut queue.waiters).into_iter().for_each(Waker::wake);
            }
        }
        0
    }
}

/// Connections arriving on a port, from every stack. Dropping it (or [`TcpListener::close`])
/// stops listening; share it between tasks in an `Arc`.
#[derive(Debug)]
pub struct TcpListener<L: Wire = AnyPort> {
    net: Arc<NetRuntime<L>>,
    port: u16,
    queue: Arc<Mutex<AcceptQueue>>,
}

impl<L: Wire> TcpListener<L> {
    /// The next connection and its peer's address. Any number of tasks may wait at once:
    /// each arrival wakes all of them, oldest first. Fails with [`NetError::Closed`] once the
    /// listener is closed (by [`TcpListener::close`], or the host's shutdown).
    pub async fn accept(&self) -> Result<(TcpStream<L>, SocketAddrV4), NetError> {
        let (worker, conn) = poll_fn(|cx| {
            let mut queue = lock(&self.queue);
            if let Some(ready) = queue.ready.pop_front() {
                return Poll::Ready(Ok(ready));
            }
            if queue.closed {
                return Poll::Ready(Err(NetError::Closed));
            }
            if !queue.waiters.iter().any(|waiter| waiter.will_wake(cx.waker())) {
                if queue.waiters.len() >= ACCEPT_WAITERS_MAX {
                    return Poll::Ready(Err(NetError::Invalid("too many tasks in accept")));
                }
                queue.waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await?;
        let stream = TcpStream::new(self.net.clone(), worker, conn);
        let unspecified = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        let peer = stream.peer_addr().unwrap_or(unspecified);
        Ok((stream, peer))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.net.ip(), self.port)
    }

    /// Stops listening: waiting and later `accept`s fail with [`NetError::Closed`];
    /// connections not yet accepted are reset.
    pub fn close(&self) {
        self.net.unlisten(&self.queue);
    }
}

impl<L: Wire> Drop for TcpListener<L> {
    fn drop(&mut self) {
        self.close();
    }
}
