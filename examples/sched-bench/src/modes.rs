//! Building the runtime in each mode: local (no agent), on-host (the agent in a thread of
//! this process, heap transport) and offloaded (the real `ipu-cp` binary in its own process,
//! memfd transport, with the emulated PCIe delay). Same policy code in the last two.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use host_dp::runtime::{AgentChannel, AgentOptions, LocalPolicy, Reattach, Runtime, RuntimeConfig};
use ipu_cp::on_host::{OnHostAgent, OnHostOptions};
use ipu_cp::policy::{self, SchedConfig};
pub use ipu_cp::process::{ControlPlane, stat_cpu_ns};
use link::proto::{Epoch, Service};
use link::{ChannelConfig, LivenessConfig, MonoNanos};

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
    /// The in-process agent thread.
    OnHost(OnHostAgent),
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

/// Starts the runtime as `setup` says, with `tasks_max` tasks at most.
pub fn start(setup: &Setup, tasks_max: usize) -> anyhow::Result<(Runtime, AgentSide)> {
    // Local mode has one queue, preempted tasks to its tail: with a slice, that is Shinjuku's
    // policy run by the runtime itself.
    let local_slice_ns = if setup.policy == "shinjuku" { setup.slice_ns } else { 0 };
    let config = RuntimeConfig {
        workers: setup.worker_cpus.len(),
        cpus: Some(setup.worker_cpus.clone()),
        tasks_max,
        slice_ns: local_slice_ns,
        spin_when_idle: setup.spin,
        local_policy: if setup.policy == "stealing" {
            LocalPolicy::Stealing
        } else {
            LocalPolicy::SharedFifo
        },
    };
    let policy_config =
        SchedConfig { slice_ns: setup.slice_ns, prestage_depth: setup.prestage_depth };
    match setup.mode {
        Mode::Local => Ok((Runtime::start(config)?, AgentSide::None)),
        Mode::OnHost => {
            let Some(policy) = policy::by_name(&setup.policy, policy_config) else {
                bail!("unknown policy {}", setup.policy);
            };
            let (host, cp) = link::channel::heap_pair(
                channel(setup, 0),
                setup.liveness,
                Epoch(1),
                ipu_cp::fresh_epoch(),
                MonoNanos::now(),
            )?;
            let agent_options = OnHostOptions {
                cpu: setup.agent_cpu,
                event_batch: usize::from(setup.event_batch),
                spin: setup.spin,
            };
            let agent = OnHostAgent::start(policy, cp, agent_options)?;
            let options = options(setup, AgentChannel { end: host, session: None }, None);
            Ok((Runtime::start_with_agent(config, options)?, AgentSide::OnHost(agent)))
        }
        Mode::Offloaded => {
            let cp = start_control_plane(setup, "run")?;
            let link = connect_when_up(setup, &cp.socket)?;
            let options = options(setup, link, None);
            Ok((Runtime::start_with_agent(config, options)?, AgentSide::Offloaded(cp)))
        }
    }
}

/// Agent options for `setup`.
pub fn options(setup: &Setup, link: AgentChannel, reattach: Option<Reattach>) -> AgentOptions {
    let mut options = AgentOptions::new(link);
    options.prefetch = setup.prefetch;
    options.reattach = reattach;
    options
}
