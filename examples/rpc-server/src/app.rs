//! The server around a [`Backend`]: a Wave host (the builder owns the port, the plane, the
//! runtime and every service's mode), and a task per connection. `rpc-server` and
//! `rocksdb-server` are this with different backends. An interface should carry no IP
//! address of its own (the kernel then leaves its TCP traffic to us).
//!
//! The host's settings come, in this order, from `--config FILE` (or the defaults), the
//! `WAVE_*` environment variables, then the flags given: one set of fields
//! (`host_dp::HostConfig`), whichever way they are written.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use anyhow::Context;
use host_dp::host::{Cidr, PortConfig, SchedPolicy, TxSetting};
use host_dp::{Host, HostConfig, ServiceMode};

/// The host's flags every server shares; each one overrides the config field it names.
#[derive(Debug, clap::Args)]
pub struct HostArgs {
    /// The host's config file (TOML; see `host_dp::host::config`). Flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The interface to serve on (no IP address of its own), over AF_PACKET.
    #[arg(long, conflicts_with = "wire_fd")]
    pub iface: Option<String>,
    /// How the AF_PACKET port sends: a `PACKET_MMAP` transmit ring, one system call per
    /// burst (ring), or an io_uring `Send` per frame (send).
    #[arg(long, value_parser = ["ring", "send"])]
    pub tx: Option<String>,
    /// Serve on a shared-memory wire instead: side A of the wire region in this inherited
    /// memfd (as `loadgen` passes it; no root needed).
    #[arg(long, value_name = "FD", requires = "wire_len")]
    pub wire_fd: Option<u32>,
    /// The wire region's length in bytes (with --wire-fd).
    #[arg(long, value_name = "BYTES")]
    pub wire_len: Option<usize>,
    /// Our address, ADDRESS/PREFIX [default: 198.18.0.2/24].
    #[arg(long)]
    pub ip: Option<Cidr>,
    /// Worker threads, one stack each [default: 2].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// Who admits and places connections: local, on-host or offloaded [default: local].
    #[arg(long)]
    pub control: Option<ServiceMode>,
    /// Who schedules the runtime's tasks: its own queue (local), a policy in an agent thread
    /// (on-host), or `ipu-cp` (offloaded, with --ipu-cp; it must run a scheduling policy)
    /// [default: local].
    #[arg(long)]
    pub sched: Option<ServiceMode>,
    /// The scheduling policy: fifo (tasks run to completion) or shinjuku (a time slice,
    /// honoured at preempt points, after which a task goes to the queue's tail) [default:
    /// fifo].
    #[arg(long)]
    pub sched_policy: Option<SchedPolicy>,
    /// Shinjuku's time slice in microseconds (local and on-host; offloaded, ipu-cp's own).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub slice_us: Option<u64>,
    /// The ipu-cp socket (for services run offloaded).
    #[arg(long, value_name = "PATH")]
    pub ipu_cp: Option<PathBuf>,
}

impl HostArgs {
    /// The host's config: the file (or this server's defaults), the environment, the flags.
    pub fn host_config(&self) -> anyhow::Result<HostConfig> {
        let base = match &self.config {
            Some(path) => HostConfig::from_file(path)?,
            None => HostConfig { workers: 2, ..HostConfig::default() },
        };
        let mut config = base.with_vars(std::env::vars())?;
        if let Some(iface) = &self.iface {
            config.port = Some(PortConfig::AfPacket { iface: iface.clone(), tx: TxSetting::Ring });
        }
        if let (Some(fd), Some(len)) = (self.wire_fd, self.wire_len) {
            config.port = Some(PortConfig::Wire { fd, len });
        }
        if let (Some(tx), Some(PortConfig::AfPacket { tx: setting, .. })) =
            (&self.tx, config.port.as_mut())
        {
            *setting = if tx == "send" { TxSetting::Send } else { TxSetting::Ring };
        }
        set(&mut config.ip, &self.ip);
        set(&mut config.workers, &self.workers);
        set(&mut config.control.mode, &self.control);
        set(&mut config.sched.mode, &self.sched);
        set(&mut config.sched.policy, &self.sched_policy);
        set(&mut config.sched.slice_us, &self.slice_us);
        if let Some(socket) = &self.ipu_cp {
            config.ipu_cp = Some(socket.clone());
        }
        Ok(config)
    }
}

/// Overrides `field` with the flag's value, if the flag was given.
fn set<T: Copy>(field: &mut T, flag: &Option<T>) {
    if let Some(value) = flag {
        *field = *value;
    }
}

/// The flags every server shares.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The host.
    #[command(flatten)]
    pub host: HostArgs,
    /// TCP port.
    #[arg(long, default_value_t = 11211)]
    pub port: u16,
    /// Largest value accepted, bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub value_max: usize,
    /// Stop after this many seconds (default: at SIGINT/SIGTERM).
    #[arg(long)]
    pub seconds: Option<u64>,
}

/// Starts the Wave host `config` describes (the tiered arena, if any, is `host.arena()`).
pub fn start(config: HostConfig) -> anyhow::Result<Host> {
    if let Some(PortConfig::Wire { .. }) = config.port {
        // The wire's other side is the process that started us (`loadgen`): stop, as on
        // SIGTERM, when it dies, even if it was killed before it could stop us.
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
            .context("asking for a signal when our parent dies")?;
    }
    Host::builder().config(config).build().context("starting the Wave host (AF_PACKET needs root)")
}

/// Serves `store` on `host` as `name` until SIGINT/SIGTERM or `--seconds`, then stops
/// listening and returns the host, still running, for a last look (shut it down, or drop it).
pub fn run<B: Backend>(args: &Args, host: Host, name: &str, store: Arc<B>) -> anyhow::Result<Host> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let listener = host.listen(args.port)?;
    let (spawner, value_max) = (host.handle(), args.value_max);
    let served = store.clone();
    host.spawn(async move {
        while let Ok((stream, _peer)) = listener.accept().await {
            // A full runtime drops (resets) the connection rather than queue it.
            let _ = spawner.spawn(crate::serve(stream, served.clone(), value_max));
        }
    })?;
    let config = host.config();
    eprintln!(
        "{name}: serving memcached protocol on {}:{} ({} workers, connection control {}, \
         scheduling {} {})",
        config.ip.ip,
        args.port,
        config.workers,
        config.control.mode,
        config.sched.mode,
        match config.sched.mode {
            ServiceMode::Offloaded => "by ipu-cp's policy",
            _ => config.sched.policy.name(),
        }
    );
    let deadline = args.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (items, bytes, _) = store.usage();
    let c = host.stats().control;
    eprintln!(
        "{name}: stopped; {} connections, {items} items, {bytes} bytes; placed prestaged {} \
         requested {} local {}, refused {}",
        store.counters().connections.load(Ordering::Relaxed),
        c.placed_prestaged,
        c.placed_requested,
        c.placed_local,
        c.refused_by_agent + c.refused_local
    );
    Ok(host)
}
