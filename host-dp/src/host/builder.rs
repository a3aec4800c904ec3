//! [`HostBuilder`]: the config, set field by field, then checked and started in one place.

use std::path::PathBuf;
use std::time::Instant;

use netstack::StackConfig;

use super::config::{Cidr, ConfigError, HostConfig, LivenessSettings, PortConfig};
use super::config::{SchedPolicy, ServiceMode};
use super::{Host, HostError, HostHandle, services};
use crate::net::ControlConfig;
use crate::net::{AnyPort, NetRuntime, Plane, PlaneConfig};

/// Builds a [`Host`]: start from [`Host::builder`], set what differs from the defaults,
/// then [`HostBuilder::build`]. Every setter has a config field of the same name.
#[derive(Debug, Default)]
pub struct HostBuilder {
    config: HostConfig,
    link: Option<AnyPort>,
    /// The first setter argument that did not parse, reported by `build`.
    error: Option<ConfigError>,
}

impl HostBuilder {
    pub(super) fn new() -> HostBuilder {
        HostBuilder::default()
    }

    /// Starts from `config` (replacing every field set so far).
    pub fn config(mut self, config: HostConfig) -> HostBuilder {
        self.config = config;
        self
    }

    /// Serves on `iface` through AF_PACKET (`port.kind = "af-packet"`).
    pub fn iface(mut self, iface: &str) -> HostBuilder {
        self.config.port =
            Some(PortConfig::AfPacket { iface: iface.into(), tx: Default::default() });
        self
    }

    /// A host without a network (`port.kind = "none"`): workers, and tiering if asked for.
    pub fn no_network(mut self) -> HostBuilder {
        self.config.port = Some(PortConfig::None);
        self
    }

    /// Serves on a link made in code: a shared-memory wire's port, a DPDK port, an
    /// in-memory wire (it must lend no frame: the plane checks).
    pub fn link(mut self, link: impl Into<AnyPort>) -> HostBuilder {
        self.link = Some(link.into());
        self
    }

    /// Our address, `ADDRESS/PREFIX`.
    pub fn ip(mut self, cidr: &str) -> HostBuilder {
        match cidr.parse::<Cidr>() {
            Ok(cidr) => self.config.ip = cidr,
            Err(reason) => self.refuse("ip", reason),
        }
        self
    }

    /// Worker threads, one stack each: the only place the count is given.
    pub fn workers(mut self, workers: u16) -> HostBuilder {
        self.config.workers = workers;
        self
    }

    /// Pins worker `w` to `cpus[w]`.
    pub fn cpus(mut self, cpus: Vec<usize>) -> HostBuilder {
        self.config.cpus = Some(cpus);
        self
    }

    /// The `ipu-cp` socket, for services run offloaded.
    pub fn ipu_cp(mut self, socket: impl Into<PathBuf>) -> HostBuilder {
        self.config.ipu_cp = Some(socket.into());
        self
    }

    /// Where connection control's policy runs.
    pub fn control(mut self, mode: ServiceMode) -> HostBuilder {
        self.config.control.mode = mode;
        self
    }

    /// Where task scheduling's policy runs, and which policy (local and on-host).
    pub fn sched(mut self, mode: ServiceMode, policy: SchedPolicy) -> HostBuilder {
        self.config.sched.mode = mode;
        self.config.sched.policy = policy;
        self
    }

    /// A tiered arena of `arena_mb` MiB, its policy run as `mode`.
    pub fn tier(mut self, mode: ServiceMode, arena_mb: usize) -> HostBuilder {
        self.config.tier.mode = mode;
        self.config.tier.arena_mb = arena_mb;
        self
    }

    /// Liveness and re-attach timing.
    pub fn liveness(mut self, liveness: LivenessSettings) -> HostBuilder {
        self.config.liveness = liveness;
        self
    }

    /// Overlays the `WAVE_*` environment variables (see [`HostConfig::with_vars`]).
    pub fn env(mut self) -> HostBuilder {
        match self.config.clone().with_vars(std::env::vars()) {
            Ok(config) => self.config = config,
            Err(error) => self.error = self.error.or(Some(error)),
        }
        self
    }

    fn refuse(&mut self, key: &'static str, reason: String) {
        self.error = self.error.take().or(Some(ConfigError::Invalid { key, reason }));
    }

    /// Checks the config, opens the port, starts the plane, the runtime and every service's
    /// agent, and attaches them. Nothing is left running if a step fails.
    pub fn build(self) -> Result<Host, HostError> {
        let HostBuilder { config, link, error } = self;
        if let Some(error) = error {
            return Err(error.into());
        }
        config.check()?;
        let link = match (link, &config.port) {
            (Some(link), _) => Some(link),
            (None, Some(PortConfig::None)) => None,
            (None, Some(port)) => Some(services::open_port(port)?),
            (None, None) => {
                let reason = "give a port ([port] in the config, or the builder's iface/link)";
                return Err(ConfigError::Invalid { key: "port", reason: reason.into() }.into());
            }
        };
        start(config, link)
    }
}

fn start(config: HostConfig, link: Option<AnyPort>) -> Result<Host, HostError> {
    let mut services = services::Services::default();
    let net = match link {
        Some(link) => Some(start_network(&config, link, &mut services)?),
        None => None,
    };
    let runtime = services.start_runtime(&config)?;
    if let Some(net) = &net {
        runtime.set_ingress(net.clone());
    }
    services.start_tier(&config)?;
    let handle = HostHandle {
        runtime: runtime.handle(),
        net,
        tenant: config.control.tenant,
        backlog: config.control.backlog,
    };
    Ok(Host { handle, runtime: Some(runtime), services, config })
}

/// The plane over `link`, a stack per worker, and connection control attached.
fn start_network(
    config: &HostConfig,
    link: AnyPort,
    services: &mut services::Services,
) -> Result<std::sync::Arc<NetRuntime>, HostError> {
    let control =
        ControlConfig { workers: config.workers, ip: config.ip.ip, ..ControlConfig::default() };
    let plane = Plane::new(link, PlaneConfig { control, ..PlaneConfig::default() })?;
    let now = Instant::now();
    let workers = (0..config.workers)
        .map(|w| {
            let stack = StackConfig {
                prefix_len: config.ip.prefix_len,
                gateway: config.gateway,
                random_seed: seed(w),
                ..StackConfig::default()
            };
            plane.worker(w, stack, now)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let net = NetRuntime::new(plane.clone(), workers);
    services.control = Some(super::ControlService::attach(&plane, config)?);
    Ok(net)
}

/// A distinct seed per worker and process, for the stacks' initial sequence numbers.
fn seed(worker: u16) -> u64 {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_nanos() & u128::from(u64::MAX)).unwrap_or(0));
    clock ^ (u64::from(std::process::id()) << 32) ^ (u64::from(worker) + 1)
}
