//! `loadgen`: an open-loop load generator for memcached-protocol servers ([`engine`]), over
//! our own stack on a shared-memory wire to an `rpc-server` it starts ([`WireServer`],
//! [`StackTransport`]) or over kernel sockets to any server ([`KernelTransport`]).

pub mod engine;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use host_dp::io::QueueId;
use host_dp::io::shm::{self, ShmPort, Side, WireConfig};
use host_dp::net::PortWire;
use netstack::{Conn, ConnState, NetError, Stack, StackConfig};

use engine::Transport;

/// The server's address on the wire.
pub const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 11211);
/// Ours.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// An `rpc-server` child on side A of a fresh shared-memory wire; side B is ours. What the
/// server writes to stderr after it starts serving (its warnings, its closing statistics)
/// comes out on ours.
#[derive(Debug)]
pub struct WireServer {
    child: Child,
    port: Option<ShmPort>,
    log: Option<std::thread::JoinHandle<()>>,
}

impl WireServer {
    /// Starts `binary` with `args` (e.g. `--workers 2 --control on-host`) on a new wire, and
    /// waits until it serves.
    pub fn start(binary: &Path, args: &[String]) -> anyhow::Result<WireServer> {
        let region = shm::create(WireConfig::default(), true)?;
        let fd = region.fd().context("a memfd wire has a descriptor")?;
        // dup() clears close-on-exec: the child inherits this copy under the same number.
        let inherited: OwnedFd = nix::unistd::dup(fd)?;
        let mut child = Command::new(binary)
            .args(["--wire-fd", &inherited.as_raw_fd().to_string()])
            .args(["--wire-len", &region.len().to_string()])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        drop(inherited);
        let stderr = child.stderr.take().context("piped stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::thread::spawn(move || {
            let mut serving = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if serving {
                    eprintln!("{line}");
                } else {
                    serving = line.contains("serving memcached protocol");
                    let _ = tx.send(line);
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut said = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("serving memcached protocol") => break,
                Ok(line) => said.push(line),
                Err(_) => {
                    let _ = child.kill();
                    anyhow::bail!(
                        "{} did not start serving: {}",
                        binary.display(),
                        said.join("; ")
                    );
                }
            }
        }
        let port = ShmPort::attach(region, Side::B)?;
        Ok(WireServer { child, port: Some(port), log: Some(log) })
    }

    /// Our side of the wire (once).
    pub fn take_port(&mut self) -> Option<ShmPort> {
        self.port.take()
    }
}

impl Drop for WireServer {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        // The child is gone, so its stderr ends: the last lines are out before we return.
        if let Some(log) = self.log.take() {
            let _ = log.join();
        }
    }
}

/// Connections from our stack over our side of the wire.
#[derive(Debug)]
pub struct StackTransport {
    stack: Stack<PortWire<ShmPort>>,
    conns: Vec<Conn>,
}

impl StackTransport {
    /// Opens `count` connections to [`SERVER`] and waits until all are established.
    pub fn connect(port: ShmPort, count: usize) -> anyhow::Result<StackTransport> {
        let config =
            StackConfig { ip: CLIENT_IP, mac: [2, 0, 0, 0, 0, 0x11], ..StackConfig::default() };
        let mut stack = Stack::new(PortWire::new(port, QueueId(0)), config, Instant::now())?;
        let conns: Vec<Conn> =
            (0..count).map(|_| stack.connect(SERVER)).collect::<Result<_, _>>()?;
        let start = Instant::now();
        while !conns.iter().all(|&c| stack.state(c) == Ok(ConnState::Established)) {
            anyhow::ensure!(start.elapsed() < Duration::from_secs(10), "connecting timed out");
            stack.poll(Instant::now());
        }
        Ok(StackTransport { stack, conns })
    }
}

fn net(error: NetError) -> anyhow::Error {
    anyhow::anyhow!("connection: {error}")
}

impl Transport for StackTransport {
    fn poll(&mut self) {
        self.stack.poll(Instant::now());
    }
    fn send(&mut self, conn: usize, data: &[u8]) -> anyhow::Result<usize> {
        self.stack.send(self.conns[conn], data).map_err(net)
    }
    fn recv(&mut self, conn: usize, buf: &mut [u8]) -> anyhow::Result<usize> {
        self.stack.recv(self.conns[conn], buf).map_err(net)
    }
    fn conns(&self) -> usize {
        self.conns.len()
    }
}

/// Non-blocking kernel sockets to any server.
#[derive(Debug)]
pub struct KernelTransport {
    streams: Vec<TcpStream>,
}

impl KernelTransport {
    /// Opens `count` connections to `server`.
    pub fn connect(server: std::net::SocketAddr, count: usize) -> anyhow::Result<KernelTransport> {
        let streams = (0..count)
            .map(|_| {
                let stream = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
                stream.set_nodelay(true)?;
                stream.set_nonblocking(true)?;
                Ok(stream)
            })
            .collect::<std::io::Result<Vec<_>>>()
            .with_context(|| format!("connecting to {server}"))?;
        Ok(KernelTransport { streams })
    }
}

fn would_block(result: std::io::Result<usize>) -> anyhow::Result<usize> {
    match result {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e.into()),
    }
}

impl Transport for KernelTransport {
    fn poll(&mut self) {}
    fn send(&mut self, conn: usize, data: &[u8]) -> anyhow::Result<usize> {
        would_block(self.streams[conn].write(data))
    }
    fn recv(&mut self, conn: usize, buf: &mut [u8]) -> anyhow::Result<usize> {
        match self.streams[conn].read(buf) {
            Ok(0) => anyhow::bail!("the server closed connection {conn}"),
            other => would_block(other),
        }
    }
    fn conns(&self) -> usize {
        self.streams.len()
    }
}
