//! The server around a [`Backend`]: the port (AF_PACKET on an interface, or a shared-memory
//! wire), the plane of worker stacks, connection control and task scheduling as asked, the
//! runtime, and a task per connection. `rpc-server` and `rocksdb-server` are this with
//! different backends. An interface should carry no IP address of its own (the kernel then
//! leaves its TCP traffic to us).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use anyhow::Context;
use host_dp::io::QueueId;
use host_dp::io::shm::{ShmPort, Side};
use host_dp::io::uring::{TxMode, UringConfig, UringPort};
use host_dp::net::{ControlConfig, NetRuntime, Plane, PlaneConfig, PortLink};
use host_dp::runtime::{AgentLink, AgentOptions, LocalPolicy, Runtime, RuntimeConfig};
use ipu_cp::Mode;
use ipu_cp::net::adapter::NetAgent;
use ipu_cp::net::{Admission, AdmissionConfig};
use ipu_cp::on_host::{OnHostAgent, OnHostOptions};
use link::proto::{Epoch, Service};
use link::{ChannelConfig, LivenessConfig, MonoNanos};
use netstack::StackConfig;

/// The flags every server shares.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The interface to serve on (no IP address of its own), over AF_PACKET.
    #[arg(long, required_unless_present = "wire_fd", conflicts_with = "wire_fd")]
    pub iface: Option<String>,
    /// How the AF_PACKET port sends: a `PACKET_MMAP` transmit ring, one system call per
    /// burst (ring), or an io_uring `Send` per frame (send).
    #[arg(long, value_enum, default_value = "ring")]
    pub tx: Tx,
    /// Serve on a shared-memory wire instead: side A of the wire region in this inherited
    /// memfd (as `loadgen` passes it; no root needed).
    #[arg(long, value_name = "FD", requires = "wire_len")]
    pub wire_fd: Option<u32>,
    /// The wire region's length in bytes (with --wire-fd).
    #[arg(long, value_name = "BYTES")]
    pub wire_len: Option<usize>,
    /// Our address, ADDRESS/PREFIX.
    #[arg(long, value_parser = parse_cidr, default_value = "198.18.0.2/24")]
    pub ip: (Ipv4Addr, u8),
    /// TCP port.
    #[arg(long, default_value_t = 11211)]
    pub port: u16,
    /// Worker threads, one stack each.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
    /// Who admits and places connections.
    #[arg(long, value_enum, default_value = "local")]
    pub control: Mode,
    /// Who schedules the runtime's tasks: its own queue (local), a policy in an agent thread
    /// (on-host), or `ipu-cp` (offloaded, with --ipu-cp; it must run a scheduling policy).
    #[arg(long, value_enum, default_value = "local")]
    pub sched: Mode,
    /// The scheduling policy: fifo (tasks run to completion) or shinjuku (a time slice,
    /// honoured at preempt points, after which a task goes to the queue's tail). With
    /// `--sched local` the runtime's own shared queue runs it; with on-host, an agent thread.
    #[arg(long, default_value = "fifo", value_parser = ["fifo", "shinjuku"])]
    pub sched_policy: String,
    /// Shinjuku's time slice in microseconds (local and on-host; offloaded, ipu-cp's own).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub slice_us: u64,
    /// The ipu-cp socket (with --control offloaded).
    #[arg(long, value_name = "PATH")]
    pub ipu_cp: Option<PathBuf>,
    /// Largest value accepted, bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub value_max: usize,
    /// Stop after this many seconds (default: at SIGINT/SIGTERM).
    #[arg(long)]
    pub seconds: Option<u64>,
}

/// How the AF_PACKET port sends (`--tx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tx {
    /// `TxMode::MmapRing`.
    Ring,
    /// `TxMode::IoUring`.
    Send,
}

fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, len) = text.split_once('/').ok_or("expected ADDRESS/PREFIX, e.g. 198.18.0.2/24")?;
    let ip = ip.parse().map_err(|e| format!("bad address `{ip}`: {e}"))?;
    let len = len.parse().ok().filter(|&l| l <= 32).ok_or("prefix length must be 0..=32")?;
    Ok((ip, len))
}

/// Runs the server `name` on `store` until SIGINT/SIGTERM or `--seconds`.
pub fn run<B: Backend>(args: Args, name: &str, store: Arc<B>) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    match (&args.iface, args.wire_fd, args.wire_len) {
        (Some(iface), _, _) => {
            // The workers take turns on the port: no single-issuer io_uring.
            let tx_mode = match args.tx {
                Tx::Ring => TxMode::MmapRing,
                Tx::Send => TxMode::IoUring,
            };
            let uring = UringConfig { single_issuer: false, tx_mode, ..UringConfig::default() };
            let port = UringPort::open(iface, uring)
                .with_context(|| format!("opening {iface} (AF_PACKET needs root)"))?;
            serve(PortLink::new(port, QueueId(0)), &args, &stop, name, store)
        }
        (None, Some(fd), Some(len)) => {
            // The wire's other side is the process that started us (`loadgen`): stop, as on
            // SIGTERM, when it dies, even if it was killed before it could stop us.
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .context("asking for a signal when our parent dies")?;
            // The inherited descriptor, reopened through /proc: a descriptor of our own,
            // read-write, without adopting a raw number (which would take unsafe code).
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(format!("/proc/self/fd/{fd}"))
                .with_context(|| format!("--wire-fd {fd} is not an open descriptor"))?;
            let region = Arc::new(link::region::Region::map_fd(file.into(), len)?);
            let port = ShmPort::attach(region, Side::A).context("attaching the wire")?;
            serve(PortLink::new(port, QueueId(0)), &args, &stop, name, store)
        }
        _ => anyhow::bail!("give --iface, or --wire-fd with --wire-len"),
    }
}

fn serve<P: host_dp::io::PacketIo + 'static, B: Backend>(
    port: PortLink<P>,
    args: &Args,
    stop: &AtomicBool,
    name: &str,
    store: Arc<B>,
) -> anyhow::Result<()> {
    let (ip, prefix_len) = args.ip;
    let control = ControlConfig { workers: args.workers, ip, ..ControlConfig::default() };
    let plane = Plane::new(port, PlaneConfig { control, ..PlaneConfig::default() });
    let _agent = attach(&plane, args)?;
    let now = Instant::now();
    let workers = (0..args.workers)
        .map(|w| {
            let config =
                StackConfig { prefix_len, random_seed: u64::from(w) + 1, ..StackConfig::default() };
            plane.worker(w, config, now)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let net = NetRuntime::new(plane.clone(), workers);
    let config = RuntimeConfig { workers: usize::from(args.workers), ..RuntimeConfig::default() };
    let (runtime, _sched_agent) = start_runtime(config, args)?;
    runtime.set_ingress(net.clone());
    let listener = net.listen(args.port, 1, 128)?;
    let (handle, value_max) = (runtime.handle(), args.value_max);
    let served = store.clone();
    runtime.spawn(async move {
        loop {
            let stream = listener.accept().await;
            if handle.spawn(crate::serve(stream, served.clone(), value_max)).is_err() {
                // The runtime is full: the connection is dropped (reset) rather than queued.
                continue;
            }
        }
    })?;
    eprintln!(
        "{name}: serving memcached protocol on {ip}:{} ({} workers, connection control {}, \
         scheduling {} {})",
        args.port,
        args.workers,
        args.control.name(),
        args.sched.name(),
        if args.sched == Mode::Offloaded { "by ipu-cp's policy" } else { &args.sched_policy }
    );
    let deadline = args.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (items, bytes, _) = store.usage();
    let c = plane.control_stats();
    eprintln!(
        "{name}: stopped; {} connections, {items} items, {bytes} bytes; placed prestaged {} \
         requested {} local {}, refused {}",
        store.counters().connections.load(Ordering::Relaxed),
        c.placed_prestaged,
        c.placed_requested,
        c.placed_local,
        c.refused_by_agent + c.refused_local
    );
    Ok(())
}

/// The agent side of `--control`: nothing, a thread, or a session with `ipu-cp`.
fn attach<L: netstack::Link>(plane: &Plane<L>, args: &Args) -> anyhow::Result<Option<OnHostAgent>> {
    let liveness =
        LivenessConfig { heartbeat_interval_ns: 100_000, peer_timeout_ns: 1_000_000_000 };
    let shape =
        |delay_ns| ChannelConfig { workers: 1, ring_capacity: 256, prestage_slots: 64, delay_ns };
    match args.control {
        Mode::Local => Ok(None),
        Mode::OnHost => {
            let (host, cp) = link::channel::heap_pair(
                shape(0),
                liveness,
                Epoch(1),
                ipu_cp::fresh_epoch(),
                MonoNanos::now(),
            )?;
            let policy = NetAgent::new(Admission::new(AdmissionConfig::default()));
            let agent = OnHostAgent::start(Box::new(policy), cp, OnHostOptions::default())?;
            plane
                .attach(AgentLink { end: host, session: None }, MonoNanos::now())
                .map_err(anyhow::Error::msg)?;
            Ok(Some(agent))
        }
        Mode::Offloaded => {
            let socket = args.ipu_cp.as_ref().context("--control offloaded needs --ipu-cp PATH")?;
            let conn = link::transport::connect(
                socket,
                Service::Net,
                shape(0),
                Epoch(1),
                liveness,
                Duration::from_secs(5),
            )
            .with_context(|| format!("attaching to ipu-cp at {}", socket.display()))?;
            plane
                .attach(AgentLink { end: conn.end, session: Some(conn.stream) }, MonoNanos::now())
                .map_err(anyhow::Error::msg)?;
            Ok(None)
        }
    }
}

/// The runtime, scheduled as `--sched` says (an agent channel has one lane per worker and a
/// submit lane).
fn start_runtime(
    config: RuntimeConfig,
    args: &Args,
) -> anyhow::Result<(Runtime, Option<OnHostAgent>)> {
    let liveness =
        LivenessConfig { heartbeat_interval_ns: 100_000, peer_timeout_ns: 1_000_000_000 };
    let shape = ChannelConfig {
        workers: args.workers + 1,
        ring_capacity: 1024,
        prestage_slots: 4,
        delay_ns: 0,
    };
    match args.sched {
        Mode::Local => {
            let slice_ns = if args.sched_policy == "shinjuku" { args.slice_us * 1000 } else { 0 };
            let config =
                RuntimeConfig { slice_ns, local_policy: LocalPolicy::SharedFifo, ..config };
            Ok((Runtime::start(config)?, None))
        }
        Mode::OnHost => {
            let policy_config = ipu_cp::policy::PolicyConfig {
                slice_ns: args.slice_us * 1000,
                ..ipu_cp::policy::PolicyConfig::default()
            };
            let policy = ipu_cp::policy::by_name(&args.sched_policy, policy_config)
                .with_context(|| format!("no scheduling policy `{}`", args.sched_policy))?;
            let (host, cp) = link::channel::heap_pair(
                shape,
                liveness,
                Epoch(1),
                ipu_cp::fresh_epoch(),
                MonoNanos::now(),
            )?;
            let agent = OnHostAgent::start(policy, cp, OnHostOptions::default())?;
            let options = AgentOptions::new(AgentLink { end: host, session: None });
            Ok((Runtime::start_with_agent(config, options)?, Some(agent)))
        }
        Mode::Offloaded => {
            let socket = args.ipu_cp.as_ref().context("--sched offloaded needs --ipu-cp PATH")?;
            let timeout = Duration::from_secs(5);
            let conn = link::transport::connect(
                socket,
                Service::Sched,
                shape,
                Epoch(1),
                liveness,
                timeout,
            )
            .with_context(|| format!("attaching to ipu-cp at {}", socket.display()))?;
            let options =
                AgentOptions::new(AgentLink { end: conn.end, session: Some(conn.stream) });
            Ok((Runtime::start_with_agent(config, options)?, None))
        }
    }
}
