//! Building the runtime in each mode: local (no agent), on-host (the agent in a thread of
//! this process, heap transport) and offloaded (the real `ipu-cp` binary in its own process,
//! memfd transport, with the emulated PCIe delay). Same policy code in the last two.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use host_dp::host::{AgentSettings, LivenessSettings, PortConfig, SchedPolicy, SchedSettings};
use host_dp::runtime::{AgentChannel, AgentOptions, Reattach};
use host_dp::{Host, HostConfig};
pub use ipu_cp::process::ControlPlane;
pub use ipu_cp::stat_cpu_ns;
use link::proto::{Epoch, Service};
use link::{ChannelConfig, LivenessConfig};

/// Who decides: local, on-host or offloaded.
pub use host_dp::ServiceMode as Mode;

/// Everything that shapes one run's scheduling.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Who schedules.
    pub mode: Mode,
    /// Policy name: fifo or shinjuku (an agent's, or the runtime's own shared queue without a
    /// slice / with one in local mode); stealing (local mode only: per-worker queues).
    pub policy: String,
    /// Shinjuku's time slice.
    pub slice_ns: u64,
    /// Prestaging depth (0: off).
    pub prestage_depth: u16,
    /// Events per worker per decide (1: batching off).
    pub event_batch: u16,
    /// Host-side prefetching of decisions.
    pub prefetch: bool,
    /// Emulated one-way link delay (offloaded only).
    pub delay_ns: u32,
    /// Worker CPUs (one worker each).
    pub worker_cpus: Vec<usize>,
    /// The agent's CPU (thread or process).
    pub agent_cpu: Option<usize>,
    /// Where the `ipu-cp` binary is.
    pub ipu_cp: PathBuf,
    /// Liveness of the link.
    pub liveness: LivenessConfig,
    /// Agent and idle workers spin on their cores instead of backing off (dedicated cores).
    pub spin: bool,
}

/// The agent side of a running setup, kept alive for the run and torn down after.
#[derive(Debug)]
pub enum AgentSide {
    /// No agent.
    None,
    /// The host's agent thread (its CPU time: `Host::agent_cpu_ns`).
    OnHost,
    /// The `ipu-cp` process and its socket path.
    Offloaded(ControlPlane),
}

/// Starts `ipu-cp` with `setup`'s policy on a fresh socket path; waits until it listens.
pub fn start_control_plane(setup: &Setup, tag: &str) -> anyhow::Result<ControlPlane> {
    let mut args: Vec<String> = [
        "--policy",
        &setup.policy,
        "--slice-us",
        &(setup.slice_ns / 1000).max(1).to_string(),
        "--prestage-depth",
        &setup.prestage_depth.to_string(),
        "--event-batch",
        &setup.event_batch.to_string(),
        "--peer-timeout-ms",
        "1000",
    ]
    .map(String::from)
    .to_vec();
    if let Some(cpu) = setup.agent_cpu {
        args.extend(["--cpu".to_string(), cpu.to_string()]);
    }
    if setup.spin {
        args.push("--spin".into());
    }
    Ok(ControlPlane::start(&setup.ipu_cp, &format!("sched-{tag}"), &args, false)?)
}

fn channel(setup: &Setup, delay_ns: u32) -> ChannelConfig {
    let workers = u16::try_from(setup.worker_cpus.len()).expect("few workers");
    ChannelConfig {
        workers: workers + 1,
        ring_capacity: 1024,
        prestage_slots: (setup.prestage_depth + 1).min(64),
        delay_ns,
    }
}

/// Connects to the `ipu-cp` at `socket`, retrying for up to two seconds while it starts (its
/// socket file appears at `bind`, a moment before it listens).
pub fn connect_when_up(setup: &Setup, socket: &Path) -> anyhow::Result<AgentChannel> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match connect(setup, socket) {
            Ok(link) => return Ok(link),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Err(error) => return Err(error),
        }
    }
}

/// Connects to the `ipu-cp` at `socket` with `setup`'s channel shape.
pub fn connect(setup: &Setup, socket: &Path) -> anyhow::Result<AgentChannel> {
    let config = channel(setup, setup.delay_ns);
    let conn = link::transport::connect(
        socket,
        Service::Sched,
        config,
        Epoch(1),
        setup.liveness,
        Duration::from_secs(5),
    )?;
    Ok(AgentChannel { end: conn.end, session: Some(conn.stream) })
}

/// Starts a host (workers, no network) scheduled as `setup` says, with `tasks_max` tasks at
/// most: through the builder, which wires the agent thread or the session with `ipu-cp`.
pub fn start(setup: &Setup, tasks_max: usize) -> anyhow::Result<(Host, AgentSide)> {
    let policy: SchedPolicy = setup.policy.parse().map_err(anyhow::Error::msg)?;
    let mut config = HostConfig {
        port: Some(PortConfig::None),
        workers: u16::try_from(setup.worker_cpus.len())?,
        cpus: Some(setup.worker_cpus.clone()),
        spin_when_idle: setup.spin,
        ..HostConfig::default()
    };
    config.sched = SchedSettings {
        mode: setup.mode,
        policy,
        slice_us: (setup.slice_ns / 1000).max(1),
        prestage_depth: setup.prestage_depth,
        tasks_max,
        prefetch: setup.prefetch,
    };
    config.agent = AgentSettings {
        cpu: setup.agent_cpu,
        spin: setup.spin,
        event_batch: usize::from(setup.event_batch),
        delay_ns: setup.delay_ns,
    };
    config.liveness = LivenessSettings {
        heartbeat_us: (setup.liveness.heartbeat_interval_ns / 1000).max(1),
        peer_timeout_ms: (setup.liveness.peer_timeout_ns / 1_000_000).max(1),
        ..LivenessSettings::default()
    };
    let cp = match setup.mode {
        Mode::Offloaded => {
            let cp = start_control_plane(setup, "run")?;
            config.ipu_cp = Some(cp.socket.clone());
            Some(cp)
        }
        Mode::Local | Mode::OnHost => None,
    };
    let host = Host::builder().config(config).build()?;
    let agent = match cp {
        Some(cp) => AgentSide::Offloaded(cp),
        None if setup.mode == Mode::OnHost => AgentSide::OnHost,
        None => AgentSide::None,
    };
    Ok((host, agent))
}

/// Agent options for `setup`.
pub fn options(setup: &Setup, link: AgentChannel, reattach: Option<Reattach>) -> AgentOptions {
    let mut options = AgentOptions::new(link);
    options.prefetch = setup.prefetch;
    options.reattach = reattach;
    options
}
