//! One stack per worker behind one port, frames steered by the flow table.
//!
//! Each worker polls its own stack ([`NetWorker::poll`]); whichever worker finds the port
//! free *pumps* it: receives a burst, classifies each frame (`netstack::steer`), and moves it
//! to the inbox of the worker that owns its flow. A SYN for a listener goes through
//! [`ConnControl`]: a prestaged token places it at once, otherwise it waits for the control
//! plane's answer or the local policy. ARP requests, fragments, ICMP and segments of unknown
//! flows go to worker 0 (which answers a stray segment with a RST); ARP replies and pushed
//! neighbours go to every worker.
//!
//! This is the software stand-in for what a NIC's flow steering (or the IPU itself) does on
//! a multi-queue port: steering here costs one copy per received frame and one per sent frame,
//! and the port's transmit side is shared under a lock. The single-queue devices of this VM
//! give no other choice; a multi-queue port would give each worker its own queue. The port is
//! used only under the plane's lock, which is what lets per-thread backends (their buffer pools
//! are `Rc`) serve every worker (`confine.rs`); an io_uring port must then be opened without
//! `single_issuer`, since the workers take turns submitting.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_queue::ArrayQueue;
use link::MonoNanos;
use link::proto::FlowKey;
use netstack::steer::{FrameClass, arp_reply_from, classify, rst_for_syn};
use netstack::{NetError, Wire, WireFrame};

use super::AnyPort;
use super::control::{ConnControl, ControlConfig, ControlStats, Output, Verdict};
use crate::runtime::{AgentChannel, LinkRefused};

/// How the plane is built.
#[derive(Debug, Clone)]
pub struct PlaneConfig {
    /// The stacks' shared address and Ethernet address, and the connection control's knobs
    /// (its `workers` is the number of stacks).
    pub control: ControlConfig,
    /// The stacks' Ethernet address.
    pub mac: [u8; 6],
    /// Frames waiting per worker before steering drops (and counts) more.
    pub inbox_frames: usize,
    /// Frames received per pump.
    pub burst: usize,
}

impl Default for PlaneConfig {
    fn default() -> Self {
        PlaneConfig {
            control: ControlConfig::default(),
            mac: [0x02, 0x57, 0x41, 0x56, 0x45, 0x01],
            inbox_frames: 1024,
            burst: 32,
        }
    }
}

/// Steering counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PlaneStats {
    /// Frames moved to an inbox.
    pub steered: u64,
    /// Frames dropped because their worker's inbox was full.
    pub inbox_full: u64,
    /// Frames that did not parse.
    pub malformed: u64,
    /// RSTs sent for refused SYNs.
    pub resets: u64,
    /// RSTs not sent: no transmit buffer or a full queue.
    pub resets_lost: u64,
}

#[derive(Debug, Default)]
struct Counters {
    steered: AtomicU64,
    inbox_full: AtomicU64,
    malformed: AtomicU64,
    resets: AtomicU64,
    resets_lost: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What every stack must be told: listeners and routes, with a generation that changes
/// whenever they do.
#[derive(Debug, Default, Clone)]
struct Shared {
    generation: u64,
    listeners: Vec<(u16, usize)>,
    routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
}

struct Inner<L: Wire> {
    link: L,
    control: ConnControl,
    rx: Vec<L::Frame>,
    tx: Vec<L::Frame>,
    out: Vec<Output>,
    shared: Shared,
    udp: HashMap<u16, u16>,
}

/// The port, the flow table and every worker's inbox.
pub struct Plane<L: Wire = AnyPort> {
    inner: Mutex<Confined<Inner<L>>>,
    inboxes: Vec<ArrayQueue<Vec<u8>>>,
    generation: AtomicU64,
    ip: Ipv4Addr,
    mac: [u8; 6],
    frame_len_max: usize,
    burst: usize,
    counters: Counters,
}

impl<L: Wire> std::fmt::Debug for Plane<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plane").field("workers", &self.inboxes.len()).finish()
    }
}

impl<L: SharedWire> Plane<L> {
    /// A plane over `link` with `config.control.workers` stacks (local control until an agent
    /// attaches). Refused with [`NetError::LinkInUse`] while `link` has frames lent out: the
    /// plane shares the link between threads, so nothing of it may live outside.
    ///
    /// ```
    /// use host_dp::net::{Plane, PlaneConfig};
    /// let (wire, _peer) = netstack::MemoryWire::pair(64, 1514);
    /// let plane = Plane::new(wire, PlaneConfig::default())?;
    /// # Ok::<(), netstack::NetError>(())
    /// ```
    pub fn new(link: L, config: PlaneConfig) -> Result<Arc<Plane<L>>, NetError> {
        let workers = usize::from(config.control.workers.max(1));
        let frame_len_max = link.frame_len_max();
        let (ip, burst) = (config.control.ip, config.burst.max(1));
        let inner = Inner {
            link,
            control: ConnControl::local(config.control),
            rx: Vec::with_capacity(burst),
            tx: Vec::with_capacity(burst),
            out: Vec::new(),
            shared: Shared::default(),
            udp: HashMap::new(),
        };
        let inner = Confined::new(inner).ok_or(NetError::LinkInUse)?;
        let inboxes = (0..workers).map(|_| ArrayQueue::new(config.inbox_frames.max(1))).collect();
        Ok(Arc::new(Plane {
            inner: Mutex::new(inner),
            inboxes,
            generation: AtomicU64::new(0),
            ip,
            mac: config.mac,
            frame_len_max,
            burst,
            counters: Counters::default(),
        }))
    }
}

impl<L: Wire> Plane<L> {
    fn lock(&self) -> MutexGuard<'_, Confined<Inner<L>>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Attaches a connection-control agent (a one-lane channel of the net service).
    pub fn attach(&self, link: AgentChannel, now: MonoNanos) -> Result<(), LinkRefused> {
        self.lock().control.attach(link, now)
    }

    /// The stacks' shared address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Detaches the connection-control agent in order (it sees `Closed`, not a loss); the
    /// local policy decides from now on.
    pub fn detach(&self) {
        self.lock().control.detach();
    }

    /// True while an agent decides admissions.
    pub fn has_agent(&self) -> bool {
        self.lock().control.has_agent()
    }

    /// Listens on `port` for `tenant` on every worker, `backlog` connections each.
    pub fn listen(&self, port: u16, tenant: u16, backlog: usize) -> Result<(), NetError> {
        if port == 0 || backlog == 0 {
            return Err(NetError::Invalid("port and backlog must be non-zero"));
        }
        let mut inner = self.lock();
        if inner.shared.listeners.iter().any(|&(p, _)| p == port) {
            return Err(NetError::AddrInUse);
        }
        inner.shared.listeners.push((port, backlog));
        inner.control.listen(port, tenant);
        self.publish(&mut inner);
        Ok(())
    }

    /// Stops listening on `port`.
    pub fn unlisten(&self, port: u16) {
        let mut inner = self.lock();
        inner.shared.listeners.retain(|&(p, _)| p != port);
        inner.control.unlisten(port);
        self.publish(&mut inner);
    }

    /// Steers UDP datagrams to `port` to `worker` (default: worker 0).
    pub fn bind_udp(&self, port: u16, worker: u16) {
        self.lock().udp.insert(port, worker);
    }

    fn publish(&self, inner: &mut Inner<L>) {
        inner.shared.generation += 1;
        self.generation.store(inner.shared.generation, Ordering::Release);
    }

    /// The steering counters.
    pub fn stats(&self) -> PlaneStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PlaneStats {
            steered: get(&c.steered),
            inbox_full: get(&c.inbox_full),
            malformed: get(&c.malformed),
            resets: get(&c.resets),
            resets_lost: get(&c.resets_lost),
        }
    }

    /// The connection control's counters.
    pub fn control_stats(&self) -> ControlStats {
        self.lock().control.stats()
    }

    /// Flows in the table.
    pub fn flow_count(&self) -> usize {
        self.lock().control.flow_count()
    }

    /// Receives and steers one burst and talks to the agent, unless another worker is doing
    /// it now. Returns true if it moved anything.
    pub fn pump(&self, now: MonoNanos) -> bool {
        let Ok(mut guard) = self.inner.try_lock() else { return false };
        let inner = &mut **guard;
        let received = inner.link.receive(&mut inner.rx, self.burst);
        for index in 0..inner.rx.len() {
            let frame = inner.rx[index].data();
            match classify(frame) {
                FrameClass::ArpRequest | FrameClass::Other => self.deliver(0, frame),
                FrameClass::ArpReply => {
                    (0..self.inboxes.len()).for_each(|w| self.deliver(w, frame))
                }
                FrameClass::Udp { local_port } => {
                    let worker = inner.udp.get(&local_port).copied().unwrap_or(0);
                    self.deliver(usize::from(worker), frame);
                }
                FrameClass::Tcp { local_port, remote, syn, rst } => {
                    let flow = flow_key(local_port, remote);
                    match inner.control.worker_of(&flow) {
                        Some(worker) => self.deliver(usize::from(worker), frame),
                        None if syn && !rst => match inner.control.on_syn(flow, frame, now) {
                            Verdict::To(worker) => self.deliver(usize::from(worker), frame),
                            Verdict::Held => {}
                            Verdict::Refuse => {
                                let syn = frame.to_vec();
                                self.reset(&mut inner.link, &mut inner.tx, &syn);
                            }
                        },
                        None => self.deliver(0, frame),
                    }
                }
                FrameClass::Malformed => bump(&self.counters.malformed),
            }
        }
        inner.link.recycle(&mut inner.rx);
        inner.control.poll(now, &mut inner.out);
        let produced = !inner.out.is_empty();
        for output in std::mem::take(&mut inner.out) {
            match output {
                Output::Deliver(worker, frame) => self.deliver(usize::from(worker), &frame),
                Output::Reset(syn) => self.reset(&mut inner.link, &mut inner.tx, &syn),
                Output::Neighbor(ip, mac) => {
                    let frame = arp_reply_from(ip, mac, self.ip, self.mac);
                    (0..self.inboxes.len()).for_each(|w| self.deliver(w, &frame));
                }
                Output::Route(prefix, len, gateway) => {
                    inner.shared.routes.retain(|&(p, l, _)| (p, l) != (prefix, len));
                    inner.shared.routes.push((prefix, len, gateway));
                    self.publish(inner);
                }
            }
        }
        received > 0 || produced
    }

    fn deliver(&self, worker: usize, frame: &[u8]) {
        let inbox = &self.inboxes[worker.min(self.inboxes.len() - 1)];
        match inbox.push(frame.to_vec()) {
            Ok(()) => bump(&self.counters.steered),
            Err(_) => bump(&self.counters.inbox_full),
        }
    }

    fn reset(&self, link: &mut L, tx: &mut Vec<L::Frame>, syn: &[u8]) {
        let Some(mut frame) = link.alloc() else { return bump(&self.counters.resets_lost) };
        // A fresh buffer may have length 0: give it room for the RST first.
        if !frame.set_len(RST_FRAME_LEN) {
            return bump(&self.counters.resets_lost);
        }
        let Some(len) = rst_for_syn(syn, frame.data_mut()) else { return };
        if !frame.set_len(len) {
            return bump(&self.counters.resets_lost);
        }
        tx.push(frame);
        if link.send(tx) == 1 {
            bump(&self.counters.resets);
        } else {
            bump(&self.counters.resets_lost);
        }
        tx.clear();
    }
}

/// Room a RST frame needs (Ethernet's minimum frame).
const RST_FRAME_LEN: usize = 60;

fn flow_key(local_port: u16, remote: SocketAddrV4) -> FlowKey {
    FlowKey { local_port, remote_ip: *remote.ip(), remote_port: remote.port() }
}

mod confine;
mod worker;
use confine::Confined;
pub use confine::SharedWire;
pub use worker::{NetWorker, PlaneFrame, WorkerWire};
