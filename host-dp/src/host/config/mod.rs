//! The host's configuration: one set of fields, read from code, a TOML file or `WAVE_*`
//! environment variables, with the same names and meanings everywhere.
//!
//! ```toml
//! workers = 2
//! ip = "198.18.0.2/24"
//! ipu_cp = "/run/wave.sock"       # the control plane, for services run offloaded
//!
//! [port]
//! kind = "af-packet"              # or "wire" (an inherited memfd), or "dpdk"
//! iface = "veth0"
//!
//! [control]                       # connection admission and placement
//! mode = "offloaded"              # local | on-host | offloaded
//!
//! [sched]                         # task scheduling
//! mode = "on-host"
//! policy = "shinjuku"
//! slice_us = 30
//! ```
//!
//! Environment variables name a top-level key (`WAVE_WORKERS=4`, `WAVE_IPU_CP=/run/wave.sock`)
//! or a section's key (`WAVE_SCHED_POLICY=fifo`, `WAVE_PORT_IFACE=veth0`); their values are
//! TOML values, or plain strings. Unknown keys and bad values are refused, naming the key (and
//! the variable).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod load;
mod values;
pub use load::ConfigError;
use load::invalid;
pub use values::{Cidr, ServiceMode};

/// How an AF_PACKET port sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxSetting {
    /// A `PACKET_MMAP` transmit ring, one system call per burst.
    #[default]
    Ring,
    /// An io_uring `Send` per frame.
    Send,
}

/// The port the host serves on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PortConfig {
    /// No network: a host of workers (and tiering) only; its work comes from `spawn` and from
    /// an ingress of the app's own (`Host::set_ingress`).
    None,
    /// AF_PACKET on an interface with no IP address of its own (needs `CAP_NET_RAW`).
    AfPacket {
        /// The interface.
        iface: String,
        /// How it sends.
        #[serde(default)]
        tx: TxSetting,
    },
    /// Side A of a shared-memory wire in an inherited memfd (as `loadgen` passes it).
    Wire {
        /// The inherited descriptor.
        fd: u32,
        /// The region's length, bytes.
        len: usize,
    },
    /// A DPDK port (cargo feature `dpdk`).
    Dpdk {
        /// The device: a PCI address, or a virtual device's name.
        device: String,
        /// Create `device` as a virtual device with these arguments (`iface=veth0` for
        /// `net_af_packet0`); without them, open a device EAL already probed.
        #[serde(default)]
        vdev_args: Option<String>,
        /// Mbufs in the port's pool.
        #[serde(default = "default_mbufs")]
        mbufs: u32,
    },
}

fn default_mbufs() -> u32 {
    8191
}

/// Connection control: who admits and places connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSettings {
    /// Where the admission policy runs.
    pub mode: ServiceMode,
    /// Handshakes queued per listener and worker.
    pub backlog: usize,
    /// The tenant this app's listeners count against.
    pub tenant: u16,
    /// Admission policy on-host: most connections per listener.
    pub max_per_listener: u32,
    /// Admission policy on-host: SYNs per second per listener (0: no limit).
    pub syn_rate_per_s: u32,
    /// Admission policy on-host: SYNs admitted at once beyond the rate.
    pub syn_burst: u32,
    /// Admission policy on-host: admissions kept prestaged per listener.
    pub prestage_depth: u16,
}

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings {
            mode: ServiceMode::Local,
            backlog: 128,
            tenant: 1,
            max_per_listener: 65_536,
            syn_rate_per_s: 0,
            syn_burst: 64,
            prestage_depth: 8,
        }
    }
}

/// The scheduling policy of local and on-host scheduling (offloaded, `ipu-cp`'s own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchedPolicy {
    /// Tasks run to completion in arrival order.
    #[default]
    Fifo,
    /// A time slice, honoured at preempt points, after which a task goes to the queue's tail.
    Shinjuku,
    /// Per-worker queues with work stealing (local scheduling only).
    Stealing,
}

impl SchedPolicy {
    /// The name in configs and `ipu-cp`'s policy table.
    pub fn name(self) -> &'static str {
        match self {
            SchedPolicy::Fifo => "fifo",
            SchedPolicy::Shinjuku => "shinjuku",
            SchedPolicy::Stealing => "stealing",
        }
    }
}

impl std::str::FromStr for SchedPolicy {
    type Err = String;
    fn from_str(text: &str) -> Result<SchedPolicy, String> {
        match text {
            "fifo" => Ok(SchedPolicy::Fifo),
            "shinjuku" => Ok(SchedPolicy::Shinjuku),
            "stealing" => Ok(SchedPolicy::Stealing),
            _ => Err(format!("`{text}`: expected fifo, shinjuku or stealing")),
        }
    }
}

/// Task scheduling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedSettings {
    /// Where the scheduling policy runs.
    pub mode: ServiceMode,
    /// The policy (local and on-host).
    pub policy: SchedPolicy,
    /// Shinjuku's time slice, µs (local and on-host).
    pub slice_us: u64,
    /// Decisions staged per worker ahead of the one it runs (on-host).
    pub prestage_depth: u16,
    /// Most tasks alive at once.
    pub tasks_max: usize,
    /// Under an agent, read decisions ahead at preempt points (Wave's prefetching).
    pub prefetch: bool,
}

impl Default for SchedSettings {
    fn default() -> Self {
        SchedSettings {
            mode: ServiceMode::Local,
            policy: SchedPolicy::Fifo,
            slice_us: 30,
            prestage_depth: 1,
            tasks_max: 1 << 16,
            prefetch: true,
        }
    }
}

/// How on-host agent threads run, and the link to an offloaded one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    /// Pin on-host agent threads to this CPU.
    pub cpu: Option<usize>,
    /// On-host agent threads spin when idle (a dedicated core) instead of backing off.
    pub spin: bool,
    /// Events an on-host agent drains per worker before its policy decides (1: no batching).
    pub event_batch: usize,
    /// The emulated one-way delay of offloaded channels, ns (a PCIe link: 500 to 2000).
    pub delay_ns: u32,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings { cpu: None, spin: false, event_batch: 32, delay_ns: 0 }
    }
}

/// Page tiering of a memory arena the host makes for the app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierSettings {
    /// Where the tiering policy runs (local: the arena stays resident).
    pub mode: ServiceMode,
    /// The arena's size, MiB (0: no arena).
    pub arena_mb: usize,
    /// The tiering epoch, ms.
    pub epoch_ms: u64,
    /// The policy on-host: promotions per minute it aims for, as a share of the working set.
    pub promotion_target_per_min: f64,
    /// The policy on-host: the cold-age threshold at start, epochs.
    pub threshold_start: u16,
    /// The policy on-host: most pages parked per epoch.
    pub park_max_per_epoch: u32,
    /// The policy on-host: most pages demoted per epoch.
    pub demote_max_per_epoch: u32,
    /// The policy on-host: epochs a page found hot is left alone before it is probed again.
    pub hot_skip_epochs: u32,
}

impl Default for TierSettings {
    fn default() -> Self {
        let policy = ipu_cp::tier::TierConfig::default();
        TierSettings {
            mode: ServiceMode::Local,
            arena_mb: 0,
            epoch_ms: 1000,
            promotion_target_per_min: policy.promotion_target_per_min,
            threshold_start: policy.threshold_start,
            park_max_per_epoch: policy.park_max_per_epoch,
            demote_max_per_epoch: policy.demote_max_per_epoch,
            hot_skip_epochs: policy.hot_skip_epochs,
        }
    }
}

/// How the host and its agents tell each other they are alive, and how soon it tries again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LivenessSettings {
    /// How often each side beats, µs.
    pub heartbeat_us: u64,
    /// Silence after which the peer counts as lost and the local policy takes over, ms.
    pub peer_timeout_ms: u64,
    /// How often a lost offloaded service tries to re-attach to `ipu-cp`, ms.
    pub reattach_ms: u64,
    /// How long one attach to `ipu-cp` may take, ms.
    pub connect_timeout_ms: u64,
}

impl Default for LivenessSettings {
    fn default() -> Self {
        LivenessSettings {
            heartbeat_us: 100,
            peer_timeout_ms: 1000,
            reattach_ms: 20,
            connect_timeout_ms: 5000,
        }
    }
}

impl LivenessSettings {
    /// As `link` takes it.
    pub fn link(&self) -> link::LivenessConfig {
        link::LivenessConfig {
            heartbeat_interval_ns: self.heartbeat_us.saturating_mul(1000),
            peer_timeout_ns: self.peer_timeout_ms.saturating_mul(1_000_000),
        }
    }
}

/// Everything an app chooses about its Wave host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// The port (required, here or through the builder).
    pub port: Option<PortConfig>,
    /// Our address and prefix.
    pub ip: Cidr,
    /// The default gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Worker threads, one stack each.
    pub workers: u16,
    /// CPU for each worker (one per worker), or none to leave placement to the OS.
    pub cpus: Option<Vec<usize>>,
    /// Idle workers spin and never sleep (dedicated cores).
    pub spin_when_idle: bool,
    /// The `ipu-cp` socket, for services run offloaded.
    pub ipu_cp: Option<PathBuf>,
    /// Connection control.
    pub control: ControlSettings,
    /// Task scheduling.
    pub sched: SchedSettings,
    /// Page tiering.
    pub tier: TierSettings,
    /// Agent threads and the offloaded link.
    pub agent: AgentSettings,
    /// Liveness and re-attach.
    pub liveness: LivenessSettings,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            port: None,
            ip: Cidr { ip: Ipv4Addr::new(198, 18, 0, 2), prefix_len: 24 },
            gateway: None,
            workers: 1,
            cpus: None,
            spin_when_idle: false,
            ipu_cp: None,
            control: ControlSettings::default(),
            sched: SchedSettings::default(),
            tier: TierSettings::default(),
            agent: AgentSettings::default(),
            liveness: LivenessSettings::default(),
        }
    }
}

/// Most workers one host runs.
pub const WORKERS_MAX: u16 = 1024;

impl HostConfig {
    /// Checks that the fields fit together (the builder does, before it starts anything).
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.workers == 0 || self.workers > WORKERS_MAX {
            return Err(invalid("workers", format!("must be 1..={WORKERS_MAX}")));
        }
        if self.cpus.as_ref().is_some_and(|cpus| cpus.len() != usize::from(self.workers)) {
            return Err(invalid("cpus", "must name one CPU per worker"));
        }
        let modes = [
            ("control.mode", self.control.mode),
            ("sched.mode", self.sched.mode),
            ("tier.mode", self.tier.mode),
        ];
        for (key, mode) in modes {
            if mode == ServiceMode::Offloaded && self.ipu_cp.is_none() {
                return Err(invalid(key, "offloaded needs ipu_cp, the control plane's socket"));
            }
        }
        if self.control.backlog == 0 {
            return Err(invalid("control.backlog", "must be at least 1"));
        }
        if self.sched.slice_us == 0 {
            return Err(invalid("sched.slice_us", "must be at least 1"));
        }
        if self.sched.tasks_max == 0 || self.sched.tasks_max > 1 << 30 {
            return Err(invalid("sched.tasks_max", "must be 1..=2^30"));
        }
        if self.tier.mode != ServiceMode::Local && self.tier.arena_mb == 0 {
            return Err(invalid("tier.arena_mb", "a tiered service needs an arena"));
        }
        if self.sched.policy == SchedPolicy::Stealing && self.sched.mode != ServiceMode::Local {
            return Err(invalid("sched.policy", "stealing is a local policy"));
        }
        let no_network = matches!(self.port, Some(PortConfig::None));
        if no_network && self.control.mode != ServiceMode::Local {
            return Err(invalid("control.mode", "a host without a port has no connections"));
        }
        if self.agent.event_batch == 0 {
            return Err(invalid("agent.event_batch", "must be at least 1"));
        }
        if self.tier.epoch_ms == 0 {
            return Err(invalid("tier.epoch_ms", "must be at least 1"));
        }
        let liveness = &self.liveness;
        if liveness.heartbeat_us == 0
            || liveness.heartbeat_us.saturating_mul(1000)
                >= liveness.peer_timeout_ms.saturating_mul(1_000_000)
        {
            return Err(invalid("liveness", "heartbeat_us must be non-zero and under the timeout"));
        }
        if liveness.reattach_ms == 0 || liveness.connect_timeout_ms == 0 {
            return Err(invalid("liveness", "reattach_ms and connect_timeout_ms must be non-zero"));
        }
        Ok(())
    }
}
