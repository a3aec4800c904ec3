//! One worker's stack: a smoltcp `Interface` and socket set over one [`Wire`], a socket API by
//! handle, listening ports with an accept backlog, and RPC defaults.
//!
//! smoltcp has no accept queue: a listening socket *becomes* the connection. So a port listened
//! on with backlog N holds N listening sockets; each that leaves LISTEN is a connection waiting
//! for `accept`, and is replaced at once by a fresh listening socket, so N handshakes can be in
//! progress or waiting at any time. A SYN that finds all N busy gets a RST (counted).
//!
//! Each connection lives in a socket set of its own (`conns`), each listened-on port's
//! listening sockets in one set, and UDP sockets in another; `poll` routes every received
//! frame to one set, so smoltcp's per-segment and per-egress scans stay within it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use rustc_hash::FxHashMap;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

use crate::NetError;
use crate::conns::{ConnTable, Phase, SlotId};
use crate::device::{DeviceStats, WireDevice};
use crate::wire::Wire;

/// How to build a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    /// Our MAC address.
    pub mac: [u8; 6],
    /// Our IPv4 address and prefix length.
    pub ip: Ipv4Addr,
    /// Prefix length of `ip`'s subnet.
    pub prefix_len: u8,
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Receive and send buffer of each TCP socket, bytes.
    pub tcp_buffer_bytes: usize,
    /// Frames received per burst.
    pub burst: usize,
    /// Seed of smoltcp's initial sequence numbers and ephemeral choices.
    pub random_seed: u64,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            mac: [0x02, 0, 0, 0, 0, 1],
            ip: Ipv4Addr::new(198, 18, 0, 2),
            prefix_len: 24,
            gateway: None,
            tcp_buffer_bytes: 64 * 1024,
            burst: 32,
            random_seed: 0x5eed,
        }
    }
}

/// A connection (a TCP socket), by handle. A handle kept past `release` finds nothing, even
/// once its slot holds another connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conn(pub(crate) SlotId);

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Handshake in progress.
    Connecting,
    /// Data may flow both ways.
    Established,
    /// The peer closed its side; what it sent can still be read.
    PeerClosed,
    /// Closing or closed.
    Closed,
}

/// Counters of one stack.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StackStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections opened by `connect`.
    pub connected: u64,
    /// Released connections that finished their close in order (FIN both ways).
    pub closed_in_order: u64,
    /// Released connections reset: still open when released, or their close outlived
    /// `LINGER_MAX`, or too many were lingering.
    pub reset_on_release: u64,
    /// The device's counters.
    pub device: DeviceStats,
}

pub(crate) struct Listener {
    pub(crate) backlog: usize,
    /// The port's listening sockets, in a set of their own.
    pub(crate) set: SocketSet<'static>,
    /// Sockets still in LISTEN.
    pub(crate) listening: Vec<SocketHandle>,
}

/// One worker's TCP/IP stack.
pub struct Stack<L: Wire> {
    /// Boxed: with server-sized tables it is tens of KiB, too much to move around.
    pub(crate) iface: Box<Interface>,
    pub(crate) device: WireDevice<L>,
    /// TCP connections, one socket set each.
    pub(crate) conns: ConnTable,
    /// UDP sockets; also gets every frame no connection or listener owns (ARP, ICMP, a
    /// segment of no known flow, which smoltcp answers with a RST).
    pub(crate) misc: SocketSet<'static>,
    /// `misc` may have something to send.
    pub(crate) misc_due: bool,
    /// When `misc`'s timers next want an egress pass.
    pub(crate) misc_at: Option<SmolInstant>,
    pub(crate) listeners: FxHashMap<u16, Listener>,
    /// Connections that left LISTEN, waiting for `accept`, per port.
    pub(crate) ready: FxHashMap<u16, Vec<SlotId>>,
    /// Ports whose listening sockets got a segment since the last refill.
    pub(crate) touched_ports: Vec<u16>,
    pub(crate) config: StackConfig,
    pub(crate) origin: std::time::Instant,
    pub(crate) next_port: u16,
    pub(crate) stats: StackStats,
    /// Closed sockets kept for reuse.
    pub(crate) spare: Vec<tcp::Socket<'static>>,
    /// Released connections waiting to send their RST or to finish their close (deadline in
    /// their phase).
    pub(crate) dying: Vec<SlotId>,
    /// How many of `dying` are lingering, and how many are in TIME-WAIT.
    pub(crate) lingering: usize,
    pub(crate) time_waiting: usize,
    /// Connection slots freed so far.
    pub(crate) freed: u64,
    pub(crate) last_poll: std::time::Instant,
    /// Reused by `poll` for the dirty list.
    pub(crate) scratch: Vec<u32>,
}

impl<L: Wire> std::fmt::Debug for Stack<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack").field("ip", &self.config.ip).field("stats", &self.stats).finish()
    }
}

const EPHEMERAL_FIRST: u16 = 49152;
/// Closed sockets kept for reuse per stack.
pub(crate) const SPARE_SOCKETS: usize = 64;
/// How long a released socket may wait to send its RST.
pub(crate) const DYING_MAX: Duration = Duration::from_secs(1);
/// How long a released connection may take to finish its close (send what is queued, get
/// the peer's FIN) before it is reset: Linux's `tcp_fin_timeout`.
pub(crate) const LINGER_MAX: Duration = Duration::from_secs(60);
/// How long a closed connection stays in TIME-WAIT to acknowledge a retransmitted FIN
/// (ADR 0007: a bound, not 2 MSL; each lingering socket holds its buffers).
pub(crate) const TIME_WAIT: Duration = Duration::from_secs(1);
/// Most released connections finishing their close at once per stack (1024 × 128 KiB of
/// buffers at most, held no longer than `LINGER_MAX`); past it a release resets.
pub(crate) const LINGERING_MAX: usize = 1024;
/// Most released connections in TIME-WAIT at once per stack; past it one leaves at once (both
/// sides are done: nothing is lost, a retransmitted FIN would meet a RST).
pub(crate) const TIME_WAIT_MAX: usize = 256;

impl<L: Wire> Stack<L> {
    /// A stack over `link`; `now` starts its clock.
    pub fn new(
        link: L,
        config: StackConfig,
        now: std::time::Instant,
    ) -> Result<Stack<L>, NetError> {
        if config.prefix_len > 32 || config.tcp_buffer_bytes < 1024 {
            return Err(NetError::Config("prefix_len ≤ 32 and TCP buffers ≥ 1 KiB"));
        }
        if link.frame_len_max() < 64 {
            return Err(NetError::Config("the link's frames are too small for Ethernet"));
        }
        let mut device = WireDevice::new(link, config.burst);
        let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(config.mac)));
        iface_config.random_seed = config.random_seed;
        let mut iface =
            Box::new(Interface::new(iface_config, &mut device, SmolInstant::from_micros(0)));
        let ip = IpCidr::new(IpAddress::Ipv4(octets(config.ip)), config.prefix_len);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(ip);
        });
        if let Some(gateway) = config.gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(octets(gateway))
                .map_err(|_| NetError::Config("route table full"))?;
        }
        let next_port = EPHEMERAL_FIRST + (config.random_seed % 1000) as u16;
        Ok(Stack {
            iface,
            device,
            conns: ConnTable::default(),
            misc: SocketSet::new(Vec::new()),
            misc_due: false,
            misc_at: None,
            listeners: FxHashMap::default(),
            ready: FxHashMap::default(),
            touched_ports: Vec::new(),
            config,
            origin: now,
            next_port,
            stats: StackStats::default(),
            spare: Vec::new(),
            dying: Vec::new(),
            lingering: 0,
            time_waiting: 0,
            freed: 0,
            last_poll: now,
            scratch: Vec::new(),
        })
    }

    /// Opens a connection to `remote` from an ephemeral port of the stack's own choice.
    pub fn connect(&mut self, remote: SocketAddrV4) -> Result<Conn, NetError> {
        let local = self.next_ephemeral();
        self.connect_from(remote, local)
    }

    /// Opens a connection to `remote` from `local` (a port the caller owns, e.g. leased).
    pub fn connect_from(&mut self, remote: SocketAddrV4, local: u16) -> Result<Conn, NetError> {
        if remote.port() == 0 || remote.ip().is_unspecified() || local == 0 {
            return Err(NetError::Invalid("remote needs an address and a port, local a port"));
        }
        let mut socket = self.socket();
        let remote_ep = (IpAddress::Ipv4(octets(*remote.ip())), remote.port());
        socket
            .connect(self.iface.context(), remote_ep, local)
            .map_err(|_| NetError::Invalid("cannot connect from here"))?;
        self.stats.connected += 1;
        Ok(Conn(self.conns.insert(socket, Phase::Open))) // dirty: the SYN leaves at the next poll
    }

    fn next_ephemeral(&mut self) -> u16 {
        let port = self.next_port;
        self.next_port = if port == u16::MAX { EPHEMERAL_FIRST } else { port + 1 };
        port
    }

    pub(crate) fn tcp(&mut self, conn: Conn) -> Result<&mut tcp::Socket<'static>, NetError> {
        match self.conns.get(conn.0) {
            Some(slot) if slot.phase == Phase::Open => Ok(slot.socket()),
            _ => Err(NetError::NoSuchConn),
        }
    }

    /// Queues `conn` for the next egress: the application changed something to send.
    fn touched(&mut self, conn: Conn) {
        self.conns.mark(conn.0.index);
    }

    /// Queues up to `data.len()` bytes; returns how many fit (0: the send buffer is full, or
    /// the handshake is not done yet).
    pub fn send(&mut self, conn: Conn, data: &[u8]) -> Result<usize, NetError> {
        let socket = self.tcp(conn)?;
        if !socket.may_send() {
            return match socket.state() {
                tcp::State::SynSent | tcp::State::SynReceived => Ok(0),
                _ => Err(NetError::Closed),
            };
        }
        let queued = socket.send_slice(data).map_err(|_| NetError::Closed)?;
        if queued > 0 {
            self.touched(conn);
        }
        Ok(queued)
    }

    /// Reads what arrived, up to `buf.len()` bytes. `Ok(0)`: nothing yet; `Err(Closed)`: the
    /// peer closed and everything it sent was read.
    pub fn recv(&mut self, conn: Conn, buf: &mut [u8]) -> Result<usize, NetError> {
        let socket = self.tcp(conn)?;
        match socket.recv_slice(buf) {
            Ok(n) => {
                if n > 0 {
                    self.touched(conn); // the window opened: an update may be due
                }
                Ok(n)
            }
            Err(tcp::RecvError::Finished) => Err(NetError::Closed),
            Err(tcp::RecvError::InvalidState) => match socket.state() {
                tcp::State::SynSent | tcp::State::SynReceived => Ok(0),
                _ => Err(NetError::Closed),
            },
        }
    }

    /// Bytes queued for sending and not yet acknowledged.
    pub fn unsent(&mut self, conn: Conn) -> Result<usize, NetError> {
        Ok(self.tcp(conn)?.send_queue())
    }

    /// Where `conn` is in its life.
    pub fn state(&mut self, conn: Conn) -> Result<ConnState, NetError> {
        use tcp::State as S;
        Ok(match self.tcp(conn)?.state() {
            S::SynSent | S::SynReceived | S::Listen => ConnState::Connecting,
            S::Established => ConnState::Established,
            S::CloseWait => ConnState::PeerClosed,
            S::FinWait1 | S::FinWait2 | S::Closing | S::LastAck | S::TimeWait | S::Closed => {
                ConnState::Closed
            }
        })
    }

    /// True once our side is finished: everything we sent, FIN included, was acknowledged
    /// (or the connection was reset). `close` then `release` after this loses no data.
    pub fn finished(&mut self, conn: Conn) -> Result<bool, NetError> {
        use tcp::State as S;
        Ok(matches!(self.tcp(conn)?.state(), S::FinWait2 | S::TimeWait | S::Closed))
    }

    /// The peer's address.
    pub fn peer(&mut self, conn: Conn) -> Result<Option<SocketAddrV4>, NetError> {
        Ok(self.tcp(conn)?.remote_endpoint().map(|ep| match ep.addr {
            IpAddress::Ipv4(ip) => SocketAddrV4::new(ip, ep.port),
        }))
    }

    /// Our address of `conn` (`None` before it is bound).
    pub fn local(&mut self, conn: Conn) -> Result<Option<SocketAddrV4>, NetError> {
        Ok(self.tcp(conn)?.local_endpoint().map(|ep| match ep.addr {
            IpAddress::Ipv4(ip) => SocketAddrV4::new(ip, ep.port),
        }))
    }

    /// Overrides the RPC defaults for one connection: Nagle's algorithm (`nagle`: coalesce
    /// small writes while data is unacknowledged) and a delayed-ACK timer (`None`: acknowledge
    /// at once). For bulk transfers, both on save packets.
    pub fn set_coalescing(
        &mut self,
        conn: Conn,
        nagle: bool,
        ack_delay: Option<Duration>,
    ) -> Result<(), NetError> {
        let socket = self.tcp(conn)?;
        socket.set_nagle_enabled(nagle);
        socket.set_ack_delay(ack_delay.map(|d| {
            smoltcp::time::Duration::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        }));
        self.touched(conn); // a held ACK or segment may be due now
        Ok(())
    }

    /// The connection's coalescing settings: (Nagle on, delayed-ACK timer).
    pub fn coalescing(&mut self, conn: Conn) -> Result<(bool, Option<Duration>), NetError> {
        let socket = self.tcp(conn)?;
        let delay = socket.ack_delay().map(|d| Duration::from_micros(d.total_micros()));
        Ok((socket.nagle_enabled(), delay))
    }

    /// Wakes `waker` when `conn` has data to read, or its state changes (once; register again
    /// after each wake). For async tasks: register under the same lock as the `recv` that
    /// found nothing, so no arrival falls in between.
    pub fn register_recv_waker(
        &mut self,
        conn: Conn,
        waker: &std::task::Waker,
    ) -> Result<(), NetError> {
        self.tcp(conn)?.register_recv_waker(waker);
        Ok(())
    }

    /// Wakes `waker` when `conn` has room to send, or its state changes (once).
    pub fn register_send_waker(
        &mut self,
        conn: Conn,
        waker: &std::task::Waker,
    ) -> Result<(), NetError> {
        self.tcp(conn)?.register_send_waker(waker);
        Ok(())
    }

    /// Closes our side (FIN after what is queued); the socket lives until `release`.
    pub fn close(&mut self, conn: Conn) -> Result<(), NetError> {
        self.tcp(conn)?.close();
        self.touched(conn); // the FIN
        Ok(())
    }

    /// Routes `prefix`/`prefix_len` through `gateway` (replacing a route to the same prefix).
    pub fn add_route(
        &mut self,
        prefix: Ipv4Addr,
        prefix_len: u8,
        gateway: Ipv4Addr,
    ) -> Result<(), NetError> {
        if prefix_len > 32 {
            return Err(NetError::Invalid("prefix length above 32"));
        }
        let cidr = smoltcp::wire::Ipv4Cidr::new(octets(prefix), prefix_len);
        let route = smoltcp::iface::Route {
            cidr: IpCidr::Ipv4(cidr),
            via_router: IpAddress::Ipv4(octets(gateway)),
            preferred_until: None,
            expires_at: None,
        };
        let mut result = Ok(());
        self.iface.routes_mut().update(|routes| {
            routes.retain(|r| r.cidr != route.cidr);
            result = routes.push(route).map_err(|_| NetError::Config("route table full"));
        });
        result
    }

    /// The counters.
    pub fn stats(&self) -> StackStats {
        StackStats { device: self.device.stats, ..self.stats }
    }

    /// The link (e.g. to read its own counters).
    pub fn link(&self) -> &L {
        &self.device.link
    }

    /// The link, writable (test doubles that inject frames).
    pub fn link_mut(&mut self) -> &mut L {
        &mut self.device.link
    }

    /// TCP sockets held now: listening, waiting, open and dying connections.
    pub fn socket_count(&self) -> usize {
        self.conns.len() + self.listeners.values().map(|l| l.listening.len()).sum::<usize>()
    }

    pub(crate) fn timestamp(&self, now: std::time::Instant) -> SmolInstant {
        let micros = now.saturating_duration_since(self.origin).as_micros();
        SmolInstant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }
}

fn octets(ip: Ipv4Addr) -> Ipv4Address {
    ip
}
