//! A worker's side of the plane: its stack's link (its inbox in, the shared port out) and
//! the flow bookkeeping around accept, connect and release.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use link::MonoNanos;
use link::proto::FlowKey;
use netstack::{Conn, NetError, Stack, StackConfig, Wire, WireFrame};

use super::{Plane, flow_key};

impl<L: Wire> Plane<L> {
    /// Worker `worker`'s stack over this plane. `config`'s address is replaced by the
    /// plane's; give each worker its own `random_seed`.
    pub fn worker(
        self: &Arc<Self>,
        worker: u16,
        mut config: StackConfig,
        now: std::time::Instant,
    ) -> Result<NetWorker<L>, NetError> {
        if usize::from(worker) >= self.inboxes.len() {
            return Err(NetError::Invalid("no such worker"));
        }
        config.ip = self.ip;
        config.mac = self.mac;
        let link = WorkerWire { plane: self.clone(), worker, spare: Vec::new() };
        let stack = Stack::new(link, config, now)?;
        Ok(NetWorker {
            stack,
            plane: self.clone(),
            worker,
            flows: HashMap::new(),
            closing: Vec::new(),
            freed_seen: 0,
            seen: 0,
            listening: Vec::new(),
            routes: Vec::new(),
        })
    }
}

/// A worker's view of the plane, as its stack's link: its inbox in, the shared port out.
pub struct WorkerWire<L: Wire> {
    plane: Arc<Plane<L>>,
    worker: u16,
    /// Transmit buffers of `frame_len_max` bytes, reused: zeroed once, when first made.
    spare: Vec<PlaneFrame>,
}

impl<L: Wire> std::fmt::Debug for WorkerWire<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerWire").field("worker", &self.worker).finish()
    }
}

/// A frame between a worker's stack and the plane: a buffer and the frame's length in it.
/// Changing the length never touches the buffer (a `Vec<u8>` resized back up to the MTU
/// zero-fills its tail every time), so a reused transmit buffer costs no `memset`.
#[derive(Debug)]
pub struct PlaneFrame {
    buf: Vec<u8>,
    len: usize,
}

impl netstack::WireFrame for PlaneFrame {
    fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    fn set_len(&mut self, len: usize) -> bool {
        if len > self.buf.len() {
            self.buf.resize(len, 0); // a received frame, grown: rare, and bounded by the stack
        }
        self.len = len;
        true
    }
}

/// Spare transmit buffers kept per worker.
const SPARE_MAX: usize = 256;

impl<L: Wire> Wire for WorkerWire<L> {
    type Frame = PlaneFrame;

    fn frame_len_max(&self) -> usize {
        self.plane.frame_len_max
    }

    fn receive(&mut self, out: &mut Vec<PlaneFrame>, max: usize) -> usize {
        let inbox = &self.plane.inboxes[usize::from(self.worker)];
        let mut count = 0;
        while count < max {
            let Some(buf) = inbox.pop() else { break };
            out.push(PlaneFrame { len: buf.len(), buf });
            count += 1;
        }
        count
    }

    fn alloc(&mut self) -> Option<PlaneFrame> {
        let max = self.plane.frame_len_max;
        let mut frame =
            self.spare.pop().unwrap_or_else(|| PlaneFrame { buf: vec![0; max], len: 0 });
        frame.len = max;
        Some(frame)
    }

    fn send(&mut self, frames: &mut Vec<PlaneFrame>) -> usize {
        // The stack never writes more than `frame_len_max`; anything longer could never be
        // sent, so it is dropped here rather than block the queue.
        let max = self.plane.frame_len_max;
        frames.retain(|frame| frame.len <= max);
        let mut guard = self.plane.lock();
        let inner = &mut **guard;
        for frame in frames.iter() {
            // A port's fresh buffer may have length 0: size it first (`frames` holds nothing
            // longer than the port takes, see above).
            let Some(mut port_frame) = inner.link.alloc() else { break };
            if !port_frame.set_len(frame.len) {
                break;
            }
            port_frame.data_mut().copy_from_slice(&frame.buf[..frame.len]);
            inner.tx.push(port_frame);
        }
        let sent = inner.link.send(&mut inner.tx);
        inner.tx.clear(); // what the port did not take goes back to its pool; we keep ours
        drop(guard);
        for frame in frames.drain(..sent) {
            self.keep(frame);
        }
        sent
    }

    fn recycle(&mut self, frames: &mut Vec<PlaneFrame>) {
        for frame in frames.drain(..) {
            self.keep(frame);
        }
    }
}

impl<L: Wire> WorkerWire<L> {
    /// Keeps a buffer for transmit if it is a whole one and there is room (received frames
    /// are cut to their length: they go).
    fn keep(&mut self, frame: PlaneFrame) {
        if frame.buf.len() == self.plane.frame_len_max && self.spare.len() < SPARE_MAX {
            self.spare.push(frame);
        }
    }
}

/// One worker's stack on the plane, with the flow bookkeeping around accept, connect and
/// release.
pub struct NetWorker<L: Wire> {
    stack: Stack<WorkerWire<L>>,
    plane: Arc<Plane<L>>,
    worker: u16,
    flows: HashMap<Conn, FlowKey>,
    /// Released connections still finishing their close in the stack: their flows stay in
    /// the table (the peer's FIN must reach this stack) until the stack frees them.
    closing: Vec<(Conn, FlowKey)>,
    /// The stack's `freed` count when `closing` was last swept.
    freed_seen: u64,
    seen: u64,
    listening: Vec<u16>,
    routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
}

impl<L: Wire> std::fmt::Debug for NetWorker<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetWorker").field("worker", &self.worker).finish()
    }
}

impl<L: Wire> NetWorker<L> {
    /// Pumps the port if it is free, picks up listener and route changes, and polls the
    /// stack. Returns true if anything moved.
    pub fn poll(&mut self, now_ns: MonoNanos, now: std::time::Instant) -> bool {
        let pumped = self.plane.pump(now_ns);
        if self.plane.generation.load(Ordering::Acquire) != self.seen {
            self.sync();
        }
        let moved = self.stack.poll(now) | pumped;
        if !self.closing.is_empty() && self.stack.freed() != self.freed_seen {
            self.sweep_closing();
        }
        moved
    }

    /// Takes the flows of connections the stack freed out of the table.
    fn sweep_closing(&mut self) {
        self.freed_seen = self.stack.freed();
        let (stack, plane) = (&mut self.stack, &self.plane);
        self.closing.retain(|(conn, flow)| {
            let held = stack.holds(*conn);
            if !held {
                plane.lock().control.closed(flow);
            }
            held
        });
    }

    fn sync(&mut self) {
        let shared = self.plane.lock().shared.clone();
        self.seen = shared.generation;
        for &(port, backlog) in &shared.listeners {
            if !self.listening.contains(&port) && self.stack.listen(port, backlog).is_ok() {
                self.listening.push(port);
            }
        }
        let closed: Vec<u16> = self
            .listening
            .iter()
            .copied()
            .filter(|p| !shared.listeners.iter().any(|(q, _)| q == p))
            .collect();
        for port in closed {
            self.stack.unlisten(port);
            self.listening.retain(|&p| p != port);
        }
        for route in shared.routes {
            if !self.routes.contains(&route)
                && self.stack.add_route(route.0, route.1, route.2).is_ok()
            {
                self.routes.push(route);
            }
        }
    }

    /// A connection that arrived on `port`, if one is waiting.
    pub fn accept(&mut self, port: u16) -> Option<Conn> {
        let conn = self.stack.accept(port)?;
        if let Ok(Some(peer)) = self.stack.peer(conn) {
            let flow = flow_key(port, peer);
            self.plane.lock().control.accepted(&flow);
            self.flows.insert(conn, flow);
        }
        Some(conn)
    }

    /// Opens a connection to `remote` from a leased port (or the local range while no
    /// agent leases any).
    pub fn connect(&mut self, remote: SocketAddrV4) -> Result<Conn, NetError> {
        let flow = self.plane.lock().control.connect(self.worker, remote);
        let flow = flow.ok_or(NetError::Invalid("no ephemeral port available"))?;
        match self.stack.connect_from(remote, flow.local_port) {
            Ok(conn) => {
                self.flows.insert(conn, flow);
                Ok(conn)
            }
            Err(error) => {
                self.plane.lock().control.closed(&flow);
                Err(error)
            }
        }
    }

    /// Forgets `conn` (see `netstack::Stack::release`: a closed one finishes its close, an
    /// open one is reset), and its flow once the stack is done with it.
    pub fn release(&mut self, conn: Conn) {
        self.stack.release(conn);
        self.forget_flow(conn);
    }

    /// Resets `conn` and forgets it, and its flow once its RST has left.
    pub fn abort(&mut self, conn: Conn) {
        self.stack.abort(conn);
        self.forget_flow(conn);
    }

    fn forget_flow(&mut self, conn: Conn) {
        let Some(flow) = self.flows.remove(&conn) else { return };
        if self.stack.holds(conn) {
            self.closing.push((conn, flow));
        } else {
            self.plane.lock().control.closed(&flow);
        }
    }

    /// The stack, for everything else (send, recv, close, state...).
    pub fn stack(&mut self) -> &mut Stack<WorkerWire<L>> {
        &mut self.stack
    }

    /// Which worker this is.
    pub fn id(&self) -> u16 {
        self.worker
    }
}
