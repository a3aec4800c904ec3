//! `conn-bench`: connection setup through Wave's connection control.
//!
//! A client stack on one end of an in-memory wire opens connections, `concurrency` at a
//! time, to a listener on a plane of worker stacks at the other end; each connection counts
//! once the client sees it established, then the client aborts it and the server releases
//! it. The plane's admissions come from the local policy, from the `admission` policy in an
//! agent thread (on-host), or from the real `ipu-cp` process over shared memory with an
//! emulated link delay (offloaded); with admissions prestaged or asked for per SYN.
//!
//! Everything but the agent runs in the calling thread, so the comparison isolates what the
//! control plane's placement costs the data plane.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use host_dp::HostConfig;
use host_dp::host::{AgentSettings, ControlService, ControlSettings, LivenessSettings};
use host_dp::net::plane::PlaneConfig;
use host_dp::net::{ControlConfig, ControlStats, NetWorker, Plane};
use ipu_cp::net::AdmissionConfig;
use ipu_cp::process::ControlPlane;
use link::{LivenessConfig, MonoNanos};
use netstack::{Conn, ConnState, MemoryWire, Stack, StackConfig};

/// The server's address.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The client's address.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The listener's port.
pub const PORT: u16 = 7000;

/// Who decides: local, on-host or offloaded.
pub use host_dp::ServiceMode as Mode;

/// One setup.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Who decides.
    pub mode: Mode,
    /// Admissions prestaged per listener (0: every SYN asks the agent).
    pub depth: u16,
    /// Emulated one-way link delay (offloaded only), ns.
    pub delay_ns: u32,
    /// Worker stacks.
    pub workers: u16,
    /// The agent's CPU (thread or process).
    pub agent_cpu: Option<usize>,
    /// The agent spins instead of backing off.
    pub spin: bool,
    /// The `ipu-cp` binary.
    pub ipu_cp: PathBuf,
    /// The policy's knobs (its prestaging depth is `depth`).
    pub admission: AdmissionConfig,
}

impl Setup {
    /// A short label: mode, delay, prestaging.
    pub fn label(&self) -> String {
        match self.mode {
            Mode::Local => "local".into(),
            Mode::OnHost => format!("on-host depth {}", self.depth),
            Mode::Offloaded => format!("offloaded {} ns depth {}", self.delay_ns, self.depth),
        }
    }

    fn admission(&self) -> AdmissionConfig {
        AdmissionConfig { prestage_depth: self.depth, ..self.admission.clone() }
    }

    /// `ipu-cp` flags for this setup.
    fn cp_args(&self) -> Vec<String> {
        let a = self.admission();
        let mut args: Vec<String> = vec![
            "--conn-prestage-depth".into(),
            a.prestage_depth.to_string(),
            "--max-conns-per-listener".into(),
            a.max_per_listener.to_string(),
            "--syn-rate".into(),
            a.syn_rate_per_s.to_string(),
            "--syn-burst".into(),
            a.syn_burst.to_string(),
            "--peer-timeout-ms".into(),
            "2000".into(),
        ];
        if let Some(cpu) = self.agent_cpu {
            args.extend(["--cpu".to_string(), cpu.to_string()]);
        }
        if self.spin {
            args.push("--spin".into());
        }
        args
    }
}

/// Liveness generous enough for a noisy 2-vCPU VM.
pub fn liveness() -> LivenessConfig {
    LivenessConfig { heartbeat_interval_ns: 100_000, peer_timeout_ns: 2_000_000_000 }
}

/// The agent side of a running setup.
#[derive(Debug)]
pub enum AgentSide {
    /// None.
    None,
    /// The agent thread, attached through the builder's connection-control service.
    OnHost(ControlService),
    /// The `ipu-cp` process, and the service that attached the plane to it (and
    /// re-attaches it to whatever listens on the same socket after a loss).
    Offloaded(ControlPlane, ControlService),
}

impl Setup {
    /// The host config of this setup's connection control.
    fn host_config(&self, ipu_cp: Option<PathBuf>) -> HostConfig {
        let admission = self.admission();
        let mut config = HostConfig { workers: self.workers, ipu_cp, ..HostConfig::default() };
        config.control = ControlSettings {
            mode: self.mode,
            max_per_listener: admission.max_per_listener,
            syn_rate_per_s: admission.syn_rate_per_s,
            syn_burst: admission.syn_burst,
            prestage_depth: admission.prestage_depth,
            ..ControlSettings::default()
        };
        config.agent = AgentSettings {
            cpu: self.agent_cpu,
            spin: self.spin,
            delay_ns: self.delay_ns,
            ..Default::default()
        };
        let l = liveness();
        config.liveness = LivenessSettings {
            heartbeat_us: l.heartbeat_interval_ns / 1000,
            peer_timeout_ms: l.peer_timeout_ns / 1_000_000,
            ..LivenessSettings::default()
        };
        config
    }
}

/// Starts the agent side of `setup` and attaches `plane` to it.
pub fn start_agent(
    setup: &Setup,
    tag: &str,
    plane: &Arc<Plane<MemoryWire>>,
) -> anyhow::Result<AgentSide> {
    match setup.mode {
        Mode::Local => Ok(AgentSide::None),
        Mode::OnHost => {
            let service = ControlService::attach(plane, &setup.host_config(None))?;
            Ok(AgentSide::OnHost(service))
        }
        Mode::Offloaded => {
            let cp = ControlPlane::start(
                &setup.ipu_cp,
                &format!("conn-{tag}"),
                &setup.cp_args(),
                false,
            )?;
            let config = setup.host_config(Some(cp.socket.clone()));
            let service = ControlService::attach(plane, &config).context("attaching to ipu-cp")?;
            Ok(AgentSide::Offloaded(cp, service))
        }
    }
}

/// A client stack, a plane of worker stacks, and the agent side.
pub struct Rig {
    /// The client.
    pub client: Stack<MemoryWire>,
    /// The server's plane.
    pub plane: Arc<Plane<MemoryWire>>,
    /// The server's workers.
    pub workers: Vec<NetWorker<MemoryWire>>,
    /// The agent side.
    pub agent: AgentSide,
}

impl std::fmt::Debug for Rig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rig").field("plane", &self.plane).field("agent", &self.agent).finish()
    }
}

/// What a churn measured.
#[derive(Debug, Clone)]
pub struct Churn {
    /// Connections established.
    pub established: u64,
    /// Attempts refused (RST).
    pub refused: u64,
    /// How long it ran.
    pub elapsed: Duration,
    /// Connect to established, µs.
    pub setup_us: Histogram<u64>,
    /// The plane's connection-control counters at the end.
    pub control: ControlStats,
}

impl Churn {
    /// Connections established per second.
    pub fn rate_per_s(&self) -> f64 {
        self.established as f64 / self.elapsed.as_secs_f64()
    }
}

/// An open connection: the client's end, the worker that owns the server's end, and it.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    /// The client's end.
    pub client: Conn,
    /// The worker it was placed on.
    pub worker: usize,
    /// The server's end.
    pub server: Conn,
}

impl Rig {
    /// A client and a plane of `workers` stacks under local control, nothing listening yet.
    pub fn new(workers: u16, control: ControlConfig) -> anyhow::Result<Rig> {
        let (a, b) = MemoryWire::pair(4096, 1514);
        let now = Instant::now();
        let client = StackConfig { ip: CLIENT, mac: [2, 0, 0, 0, 0, 1], ..StackConfig::default() };
        let client = Stack::new(b, client, now)?;
        let control = ControlConfig { workers, ip: SERVER, ..control };
        let plane = Plane::new(a, PlaneConfig { control, ..PlaneConfig::default() })
            .expect("a fresh wire lends nothing");
        let workers = (0..workers)
            .map(|w| {
                let config =
                    StackConfig { random_seed: 1000 + u64::from(w), ..StackConfig::default() };
                plane.worker(w, config, now)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rig { client, plane, workers, agent: AgentSide::None })
    }

    /// Builds the rig for `setup`, attaches its agent, listens on [`PORT`], and lets the
    /// attach, the listen and the first tokens cross the link.
    pub fn start(setup: &Setup, tag: &str) -> anyhow::Result<Rig> {
        let mut rig = Rig::new(setup.workers, ControlConfig::default())?;
        rig.agent = start_agent(setup, tag, &rig.plane)?;
        rig.plane.listen(PORT, 1, 256)?;
        let settle = Instant::now();
        while settle.elapsed() < Duration::from_millis(50) {
            rig.poll();
        }
        Ok(rig)
    }

    /// Polls the client and every worker once.
    pub fn poll(&mut self) {
        let now = Instant::now();
        self.client.poll(now);
        let now_ns = MonoNanos::now();
        for worker in &mut self.workers {
            worker.poll(now_ns, now);
        }
    }

    /// Polls until `done` holds, for at most 10 s.
    pub fn until(
        &mut self,
        what: &str,
        mut done: impl FnMut(&mut Rig) -> bool,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            self.poll();
            if done(self) {
                return Ok(());
            }
        }
        anyhow::bail!("timed out waiting for {what}")
    }

    /// Starts a connection to the listener.
    pub fn connect(&mut self) -> anyhow::Result<Conn> {
        Ok(self.client.connect(SocketAddrV4::new(SERVER, PORT))?)
    }

    /// Connects and waits until the client is established and a worker accepted.
    pub fn open(&mut self) -> anyhow::Result<Opened> {
        let client = self.connect()?;
        let mut accepted = None;
        self.until("an accepted connection", |rig| {
            if accepted.is_none() {
                accepted = (0..rig.workers.len())
                    .find_map(|w| rig.workers[w].accept(PORT).map(|c| (w, c)));
            }
            accepted.is_some()
                && rig.client.state(client).is_ok_and(|s| s == ConnState::Established)
        })?;
        let (worker, server) = accepted.expect("checked");
        Ok(Opened { client, worker, server })
    }

    /// One byte each way.
    pub fn echo(&mut self, opened: Opened) -> anyhow::Result<()> {
        let Opened { client, worker, server } = opened;
        anyhow::ensure!(self.client.send(client, b"x")? == 1, "client send");
        let mut buf = [0u8; 8];
        self.until("the byte at the server", |rig| {
            rig.workers[worker].stack().recv(server, &mut buf).is_ok_and(|n| n == 1)
        })?;
        anyhow::ensure!(self.workers[worker].stack().send(server, b"y")? == 1, "server send");
        self.until("the byte back", |rig| rig.client.recv(client, &mut buf).is_ok_and(|n| n == 1))?;
        anyhow::ensure!(buf[0] == b'y', "wrong byte back");
        Ok(())
    }

    /// Lets go of both ends (the client's abort resets the server's).
    pub fn close(&mut self, opened: Opened) {
        self.workers[opened.worker].release(opened.server);
        self.client.release(opened.client);
        // The server's RST leaves at its stack's next poll; only then does the stack free the
        // connection and the plane forget its flow.
        let (worker, server) = (opened.worker, opened.server);
        let _ = self.until("the release", |rig| !rig.workers[worker].stack().holds(server));
    }

    /// Opens connections, `concurrency` at a time, for `duration`.
    pub fn churn(&mut self, concurrency: usize, duration: Duration) -> anyhow::Result<Churn> {
        let server = SocketAddrV4::new(SERVER, PORT);
        let mut in_flight: Vec<(Conn, Instant)> = Vec::with_capacity(concurrency);
        let mut accepted: Vec<Vec<Conn>> = vec![Vec::new(); self.workers.len()];
        let mut setup_us = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3)?;
        let (mut established, mut refused) = (0u64, 0u64);
        let start = Instant::now();
        while start.elapsed() < duration {
            while in_flight.len() < concurrency {
                in_flight.push((self.client.connect(server)?, Instant::now()));
            }
            self.client.poll(Instant::now());
            let mut index = 0;
            while index < in_flight.len() {
                let (conn, since) = in_flight[index];
                match self.client.state(conn)? {
                    ConnState::Established => {
                        established += 1;
                        let us = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
                        setup_us.saturating_record(us.max(1));
                    }
                    ConnState::Closed => refused += 1,
                    ConnState::Connecting | ConnState::PeerClosed => {
                        index += 1;
                        continue;
                    }
                }
                self.client.release(conn); // an abort: the server sees a RST
                in_flight.swap_remove(index);
            }
            let (now, now_ns) = (Instant::now(), MonoNanos::now());
            for (worker, kept) in self.workers.iter_mut().zip(&mut accepted) {
                worker.poll(now_ns, now);
                while let Some(conn) = worker.accept(PORT) {
                    kept.push(conn);
                }
                let mut closed = Vec::new();
                kept.retain(|&conn| {
                    let done = worker.stack().state(conn).is_ok_and(|s| s == ConnState::Closed);
                    if done {
                        closed.push(conn);
                    }
                    !done
                });
                for conn in closed {
                    worker.release(conn);
                }
            }
        }
        let elapsed = start.elapsed();
        Ok(Churn { established, refused, elapsed, setup_us, control: self.plane.control_stats() })
    }
}
