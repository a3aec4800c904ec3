//! Where the mode wiring lives, once: the port, and for each service its agent — none
//! (local), a thread running `ipu-cp`'s policy over the heap transport (on-host), or a session
//! with the `ipu-cp` process (offloaded), re-attached whenever that process comes back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipu_cp::on_host::{OnHostAgent, OnHostOptions};
use link::proto::{Epoch, Service};
use link::{ChannelConfig, MonoNanos};

use super::HostError;
use super::config::{HostConfig, PortConfig, ServiceMode, TxSetting};
use super::control::ControlService;
use super::tier::TierService;
use crate::io::QueueId;
use crate::net::{AnyPort, PortWire};
use crate::runtime::{AgentChannel, AgentOptions, LocalPolicy, Reattach, Runtime, RuntimeConfig};
use crate::tier::TierThread;

/// The agents and the threads that keep them attached.
#[derive(Debug, Default)]
pub(super) struct Services {
    /// On-host agent threads (stopped last, after the host side said goodbye).
    agents: Vec<OnHostAgent>,
    /// Connection control's agent (and its re-attach thread).
    pub(super) control: Option<ControlService>,
    tier: Option<(Arc<memmgr::Arena>, TierThread)>,
}

/// Opens the port `config` names.
pub(super) fn open_port(config: &PortConfig) -> Result<AnyPort, HostError> {
    let port_error = |port: String| move |source| HostError::Port { port, source };
    match config {
        PortConfig::AfPacket { iface, tx } => {
            use crate::io::uring::{TxMode, UringConfig, UringPort};
            let tx_mode = match tx {
                TxSetting::Ring => TxMode::MmapRing,
                TxSetting::Send => TxMode::IoUring,
            };
            // The workers take turns on the port: no single-issuer io_uring.
            let uring = UringConfig { single_issuer: false, tx_mode, ..UringConfig::default() };
            let port = UringPort::open(iface, uring)
                .map_err(|e| port_error(format!("AF_PACKET on {iface}"))(Box::new(e)))?;
            Ok(PortWire::new(port, QueueId(0)).into())
        }
        PortConfig::Wire { fd, len } => {
            use crate::io::shm::{ShmPort, Side};
            let what = format!("wire in descriptor {fd}");
            // The inherited descriptor, reopened through /proc: a descriptor of our own,
            // read-write, without adopting a raw number (which would take unsafe code).
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(format!("/proc/self/fd/{fd}"))
                .map_err(|e| port_error(what.clone())(Box::new(e)))?;
            let region = link::region::Region::map_fd(file.into(), *len)
                .map_err(|e| port_error(what.clone())(Box::new(e)))?;
            let port = ShmPort::attach(Arc::new(region), Side::A)
                .map_err(|e| port_error(what)(Box::new(e)))?;
            Ok(PortWire::new(port, QueueId(0)).into())
        }
        PortConfig::Dpdk { device, vdev_args, mbufs } => open_dpdk(device, vdev_args, *mbufs),
        PortConfig::None => Err(HostError::Port {
            port: "none".into(),
            source: "a host without a port opens none".into(),
        }),
    }
}

#[cfg(feature = "dpdk")]
fn open_dpdk(device: &str, vdev_args: &Option<String>, mbufs: u32) -> Result<AnyPort, HostError> {
    use crate::io::dpdk::{DpdkPort, Eal, EalConfig, Mempool, PortConfig};
    let error = |source: crate::io::dpdk::DpdkError| HostError::Port {
        port: format!("DPDK {device}"),
        source: Box::new(source),
    };
    let eal = Eal::init(EalConfig::default()).map_err(error)?;
    let pool = Mempool::new(eal, mbufs, 2176).map_err(error)?;
    let port = match vdev_args {
        Some(args) => DpdkPort::create_vdev(eal, device, args, pool, PortConfig::default()),
        None => DpdkPort::open(eal, device, pool, PortConfig::default()),
    }
    .map_err(error)?;
    Ok(PortWire::new(port, QueueId(0)).into())
}

#[cfg(not(feature = "dpdk"))]
fn open_dpdk(device: &str, _: &Option<String>, _: u32) -> Result<AnyPort, HostError> {
    Err(HostError::Port {
        port: format!("DPDK {device}"),
        source: "host-dp was built without its `dpdk` feature".into(),
    })
}

pub(super) fn attach_error(service: &'static str) -> impl Fn(String) -> HostError {
    move |message| HostError::Attach { service, message }
}

/// The one shape every service's channel is derived from.
pub(super) fn shape(lanes: u16, ring_capacity: u32, prestage_slots: u16) -> ChannelConfig {
    ChannelConfig { workers: lanes, ring_capacity, prestage_slots, delay_ns: 0 }
}

/// Connects `service` to the `ipu-cp` at `socket` (one try: re-attaches try again later).
pub(super) fn connect(
    socket: &Path,
    service: Service,
    channel: ChannelConfig,
    config: &HostConfig,
) -> Result<AgentChannel, String> {
    let timeout = Duration::from_millis(config.liveness.connect_timeout_ms);
    let liveness = config.liveness.link();
    link::transport::connect(socket, service, channel, Epoch(1), liveness, timeout)
        .map(|conn| AgentChannel { end: conn.end, session: Some(conn.stream) })
        .map_err(|e| format!("ipu-cp at {}: {e}", socket.display()))
}

/// The first attach: [`connect`], tried again for up to the connect timeout while `ipu-cp`
/// is not answering yet (it may be starting beside us: its socket file appears a moment
/// before it listens).
pub(super) fn connect_first(
    socket: &Path,
    service: Service,
    channel: ChannelConfig,
    config: &HostConfig,
) -> Result<AgentChannel, String> {
    let timeout = Duration::from_millis(config.liveness.connect_timeout_ms);
    let mut last = String::new();
    let attempt = || match connect(socket, service, channel, config) {
        Ok(link) => Some(link),
        Err(error) => {
            last = error;
            None
        }
    };
    until_answered(timeout, attempt).ok_or(last)
}

/// `attempt` until it gives something, or `timeout` passes (one last try at the end).
pub(super) fn until_answered<T>(
    timeout: Duration,
    mut attempt: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(answer) = attempt() {
            return Some(answer);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(super) fn socket_of(config: &HostConfig) -> PathBuf {
    config.ipu_cp.clone().expect("checked: offloaded modes have a socket")
}

/// How `config`'s on-host agent threads run.
pub(super) fn agent_options(config: &HostConfig) -> OnHostOptions {
    let agent = &config.agent;
    OnHostOptions { cpu: agent.cpu, event_batch: agent.event_batch, spin: agent.spin }
}

/// `channel` as an offloaded one: with the configured emulated link delay.
pub(super) fn delayed(channel: ChannelConfig, config: &HostConfig) -> ChannelConfig {
    ChannelConfig { delay_ns: config.agent.delay_ns, ..channel }
}

/// Connection control's channel: one lane, tokens prestaged in its slots.
pub(super) const CONTROL_SHAPE: (u16, u32, u16) = (1, 256, 64);

impl Services {
    /// Starts the runtime, scheduled as `config.sched` says (an agent channel has one lane
    /// per worker and a submit lane).
    pub(super) fn start_runtime(&mut self, config: &HostConfig) -> Result<Runtime, HostError> {
        let error = attach_error("task scheduling");
        let sched = &config.sched;
        let runtime = RuntimeConfig {
            workers: usize::from(config.workers),
            cpus: config.cpus.clone(),
            tasks_max: sched.tasks_max,
            spin_when_idle: config.spin_when_idle,
            local_policy: match sched.policy {
                super::SchedPolicy::Stealing => LocalPolicy::Stealing,
                _ => LocalPolicy::SharedFifo,
            },
            slice_ns: 0,
        };
        // One lane per worker and the submit lane; a slot per staged decision and the one run.
        let slots = sched.prestage_depth.saturating_add(1).min(64);
        let channel = shape(config.workers + 1, 1024, slots);
        let options = |link, reattach: Option<Reattach>| {
            let mut options = AgentOptions::new(link);
            options.reattach = reattach;
            options.prefetch = sched.prefetch;
            options.reattach_interval_ns = config.liveness.reattach_ms.saturating_mul(1_000_000);
            options
        };
        match sched.mode {
            ServiceMode::Local => {
                let slice_ns = match sched.policy {
                    super::SchedPolicy::Shinjuku => sched.slice_us.saturating_mul(1000),
                    super::SchedPolicy::Fifo | super::SchedPolicy::Stealing => 0,
                };
                Ok(Runtime::start(RuntimeConfig { slice_ns, ..runtime })?)
            }
            ServiceMode::OnHost => {
                let policy_config = ipu_cp::policy::SchedConfig {
                    slice_ns: sched.slice_us.saturating_mul(1000),
                    prestage_depth: sched.prestage_depth,
                };
                let policy = ipu_cp::policy::by_name(sched.policy.name(), policy_config)
                    .expect("every SchedPolicy is one of ipu-cp's");
                let (host, cp) = heap_pair(channel, config).map_err(&error)?;
                self.agents.push(OnHostAgent::start(policy, cp, agent_options(config))?);
                Ok(Runtime::start_with_agent(runtime, options(host, None))?)
            }
            ServiceMode::Offloaded => {
                let (socket, channel) = (socket_of(config), delayed(channel, config));
                let link =
                    connect_first(&socket, Service::Sched, channel, config).map_err(&error)?;
                let reattach: Reattach = {
                    let config = config.clone();
                    Box::new(move || connect(&socket, Service::Sched, channel, &config).ok())
                };
                Ok(Runtime::start_with_agent(runtime, options(link, Some(reattach)))?)
            }
        }
    }

    /// Makes the tiered arena and its mechanism thread, tiered as `config.tier` says.
    pub(super) fn start_tier(&mut self, config: &HostConfig) -> Result<(), HostError> {
        let settings = &config.tier;
        if settings.arena_mb == 0 {
            return Ok(());
        }
        let pages = settings.arena_mb.saturating_mul(256);
        let arena = Arc::new(memmgr::Arena::with_faults(pages, memmgr::FaultMode::Handler)?);
        let service = TierService::attach(&arena, config)?;
        let (thread, agent) = service.spawn(Duration::from_millis(settings.epoch_ms))?;
        self.agents.extend(agent);
        self.tier = Some((arena, thread));
        Ok(())
    }

    /// CPU time the on-host agent threads used so far, ns.
    pub(super) fn agent_cpu_ns(&self) -> u64 {
        let control = self.control.as_ref().map_or(0, ControlService::agent_cpu_ns);
        self.agents.iter().map(|agent| agent.cpu_ns().unwrap_or(0)).sum::<u64>() + control
    }

    pub(super) fn arena(&self) -> Option<&Arc<memmgr::Arena>> {
        self.tier.as_ref().map(|(arena, _)| arena)
    }

    pub(super) fn tier_attached(&self) -> bool {
        self.tier.as_ref().is_some_and(|(_, thread)| thread.is_attached())
    }

    /// Stops the threads that re-attach services (before the services detach).
    pub(super) fn stop_monitors(&mut self) {
        if let Some(control) = self.control.as_mut() {
            control.stop_monitor();
        }
    }

    /// Stops the tier thread (its host says goodbye to its agent) and the agent threads.
    pub(super) fn stop_agents(&mut self) {
        if let Some((_, thread)) = self.tier.take() {
            thread.stop();
        }
        for agent in self.agents.drain(..) {
            agent.stop();
        }
        if let Some(control) = self.control.take() {
            control.stop();
        }
    }
}

pub(super) fn heap_pair(
    channel: ChannelConfig,
    config: &HostConfig,
) -> Result<(AgentChannel, link::CpEnd), String> {
    let liveness = config.liveness.link();
    let now = MonoNanos::now();
    let (host, cp) =
        link::channel::heap_pair(channel, liveness, Epoch(1), ipu_cp::fresh_epoch(), now)
            .map_err(|e| e.to_string())?;
    Ok((AgentChannel { end: host, session: None }, cp))
}
