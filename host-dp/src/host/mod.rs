//! The front door: one builder that turns one configuration into a running Wave host.
//!
//! [`Host::builder`] owns every choice an app makes: the port (AF_PACKET, a shared-memory
//! wire, DPDK), the address, the worker count (stated once: it sizes the runtime, the plane
//! and every agent channel), and for each service — connection control, task scheduling,
//! page tiering — where its policy runs (`local | on-host | offloaded`), with the `ipu-cp`
//! socket, the policies' settings and liveness. Services run offloaded re-attach by
//! themselves when a restarted `ipu-cp` is back. The same fields come from code, a TOML file
//! or the environment ([`HostConfig`]).
//!
//! ```no_run
//! use host_dp::Host;
//!
//! let host = Host::builder().iface("veth0").ip("198.18.0.2/24").workers(2).build()?;
//! let listener = host.listen(7)?;
//! let spawner = host.handle();
//! host.block_on(async move {
//!     while let Ok((mut stream, _peer)) = listener.accept().await {
//!         let _ = spawner.spawn(async move {
//!             let mut buf = [0u8; 4096];
//!             while let Ok(n @ 1..) = stream.read(&mut buf).await {
//!                 if stream.write_all(&buf[..n]).await.is_err() {
//!                     break;
//!                 }
//!             }
//!             let _ = stream.close().await;
//!         });
//!     }
//! })?;
//! # Ok::<(), host_dp::HostError>(())
//! ```

mod builder;
pub mod config;
mod control;
mod services;
mod tier;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

pub use builder::HostBuilder;
pub use config::{
    AgentSettings, Cidr, ConfigError, ControlSettings, HostConfig, LivenessSettings, PortConfig,
    SchedPolicy, SchedSettings, ServiceMode, TierSettings, TxSetting,
};
pub use control::ControlService;
use netstack::NetError;
pub use tier::TierService;

use crate::net::{ControlStats, NetRuntime, PlaneStats, TcpListener, TcpStream, UdpSocket};
use crate::runtime::{self, JoinHandle, Runtime, RuntimeError};

/// How long a shutdown waits for released connections to finish their closes.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a host could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The configuration is refused (names the key).
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    /// The port could not be opened.
    #[error("opening the port ({port}): {source}")]
    Port {
        /// Which port.
        port: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The network stacks refused (a port with frames lent out, a bad stack config).
    #[error("network: {0}")]
    Net(#[from] NetError),
    /// The runtime could not start.
    #[error("runtime: {0}")]
    Runtime(#[from] RuntimeError),
    /// A service could not attach to its agent.
    #[error("attaching {service}: {message}")]
    Attach {
        /// The service.
        service: &'static str,
        /// Why.
        message: String,
    },
    /// The tiered arena could not be made.
    #[error("tiered arena: {0}")]
    Arena(#[from] memmgr::Error),
    /// A thread could not start.
    #[error("starting a thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Spawns tasks and opens sockets on a host, from anywhere: clone it into tasks.
#[derive(Debug, Clone)]
pub struct HostHandle {
    runtime: runtime::Handle,
    /// The stacks; `None` on a host without a port.
    net: Option<Arc<NetRuntime>>,
    tenant: u16,
    backlog: usize,
}

impl HostHandle {
    /// Spawns a task; its output arrives through the handle.
    pub fn spawn<F>(&self, future: F) -> Result<JoinHandle<F::Output>, RuntimeError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(future)
    }

    fn net(&self) -> Result<&Arc<NetRuntime>, NetError> {
        self.net.as_ref().ok_or(NetError::Invalid("this host has no network port"))
    }

    /// Listens on TCP `port` on every worker (the control settings' tenant and backlog).
    pub fn listen(&self, port: u16) -> Result<TcpListener, NetError> {
        self.net()?.listen(port, self.tenant, self.backlog)
    }

    /// Connects to `remote`; the future resolves once the connection is established. Await
    /// it in a task (or [`Host::block_on`] it).
    pub fn connect(
        &self,
        remote: SocketAddrV4,
    ) -> impl Future<Output = Result<TcpStream, NetError>> + Send + 'static {
        let net = self.net().cloned();
        async move { net?.connect(remote).await }
    }

    /// Binds UDP `port` (on the worker `port % workers`, where its datagrams are steered),
    /// with 64 KiB queued each way.
    pub fn bind_udp(&self, port: u16) -> Result<UdpSocket, NetError> {
        let net = self.net()?;
        let workers = u16::try_from(net.workers()).unwrap_or(u16::MAX).max(1);
        net.bind_udp(port, port % workers, 64 * 1024)
    }

    /// The host's address (unspecified without a port).
    pub fn ip(&self) -> Ipv4Addr {
        self.net.as_ref().map_or(Ipv4Addr::UNSPECIFIED, |net| net.ip())
    }
}

/// What a host did so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStats {
    /// Who schedules tasks now.
    pub scheduler: runtime::Scheduler,
    /// Tasks spawned and not finished.
    pub tasks_alive: u64,
    /// The runtime's counters.
    pub sched: runtime::SchedCounters,
    /// True while a connection-control agent decides admissions.
    pub control_attached: bool,
    /// The connection control's counters.
    pub control: ControlStats,
    /// The plane's steering counters.
    pub plane: PlaneStats,
    /// True while a tier agent decides (false without an arena).
    pub tier_attached: bool,
}

/// A running Wave host: workers, stacks and the services' agents. Dropping it shuts down as
/// [`Host::shutdown`] does.
#[derive(Debug)]
pub struct Host {
    handle: HostHandle,
    runtime: Option<Runtime>,
    services: services::Services,
    config: HostConfig,
}

impl Host {
    /// A builder with the defaults of [`HostConfig`].
    pub fn builder() -> HostBuilder {
        HostBuilder::new()
    }

    /// Spawns and opens sockets from anywhere.
    pub fn handle(&self) -> HostHandle {
        self.handle.clone()
    }

    /// Spawns a task; its output arrives through the handle.
    pub fn spawn<F>(&self, future: F) -> Result<JoinHandle<F::Output>, RuntimeError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Runs `future` as a task and waits for its output on this thread (which must not be
    /// one of the host's workers).
    pub fn block_on<F>(&self, future: F) -> Result<F::Output, RuntimeError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Ok(self.handle.spawn(future)?.join())
    }

    /// Listens on TCP `port` on every worker.
    pub fn listen(&self, port: u16) -> Result<TcpListener, NetError> {
        self.handle.listen(port)
    }

    /// Connects to `remote` (await the future in a task, or `block_on` it).
    pub fn connect(
        &self,
        remote: SocketAddrV4,
    ) -> impl Future<Output = Result<TcpStream, NetError>> + Send + 'static {
        self.handle.connect(remote)
    }

    /// Binds UDP `port`.
    pub fn bind_udp(&self, port: u16) -> Result<UdpSocket, NetError> {
        self.handle.bind_udp(port)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// The tiered arena, when the config asks for one (`tier.arena_mb`).
    pub fn arena(&self) -> Option<&Arc<memmgr::Arena>> {
        self.services.arena()
    }

    /// Has the workers poll `ingress` between tasks, as they poll the stacks on a host with a
    /// port: for a host without one (`port.kind = "none"`) whose work arrives some other way.
    /// False if the workers poll something already.
    pub fn set_ingress(&self, ingress: Arc<dyn runtime::Ingress>) -> bool {
        self.runtime.as_ref().is_some_and(|runtime| runtime.set_ingress(ingress))
    }

    /// CPU time the on-host agent threads used so far (10 ms resolution), ns.
    pub fn agent_cpu_ns(&self) -> u64 {
        self.services.agent_cpu_ns()
    }

    /// The counters of every part.
    pub fn stats(&self) -> HostStats {
        let plane = self.handle.net.as_ref().map(|net| net.plane());
        let (scheduler, tasks_alive, sched) = match &self.runtime {
            Some(runtime) => (runtime.scheduler(), runtime.tasks_alive(), runtime.counters()),
            None => (runtime::Scheduler::Local, 0, runtime::SchedCounters::default()),
        };
        HostStats {
            scheduler,
            tasks_alive,
            sched,
            control_attached: plane.is_some_and(|plane| plane.has_agent()),
            control: plane.map(|plane| plane.control_stats()).unwrap_or_default(),
            plane: plane.map(|plane| plane.stats()).unwrap_or_default(),
            tier_attached: self.services.tier_attached(),
        }
    }

    /// Shuts down in order: listeners close (waiting `accept`s fail with `Closed`), released
    /// connections finish their closes (up to two seconds), every
    /// service detaches from its agent with `Closed` (not as a loss), the workers stop (tasks
    /// not finished are dropped), and the agent threads end. Returns the last counters.
    pub fn shutdown(mut self) -> HostStats {
        self.stop()
    }

    fn stop(&mut self) -> HostStats {
        if let Some(net) = &self.handle.net {
            net.close_listeners();
            // Connections released in order finish their closes while the workers still
            // poll (their FINs and last ACKs leave), within a bound.
            let drain_end = std::time::Instant::now() + SHUTDOWN_DRAIN;
            while net.closing() > 0 && std::time::Instant::now() < drain_end {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        let stats = self.stats();
        self.services.stop_monitors();
        if let Some(net) = &self.handle.net {
            net.plane().detach();
        }
        // The runtime's monitor says goodbye to its agent as the workers stop.
        drop(self.runtime.take());
        self.services.stop_agents();
        stats
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.runtime.is_some() {
            self.stop();
        }
    }
}
