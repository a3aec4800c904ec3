//! `ipu-cp`: the Wave control-plane process. See `ipu-cp --help`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use ipu_cp::net::adapter::{NetAgent, NetCounters};
use ipu_cp::net::{Admission, AdmissionConfig};
use ipu_cp::policy::{self, POLICY_NAMES, SchedConfig};
use ipu_cp::server::{MAX_APPS_DEFAULT, Policies, Server, ServerConfig};
use link::LivenessConfig;
use link::proto::Service;
use link::transport::AcceptPolicy;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::net::Ipv4Addr;

/// Wave's control plane: serves apps over shared memory and makes their OS decisions.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Unix socket that apps connect to.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// Policy to run (one of: echo, fifo, shinjuku).
    #[arg(long, default_value = "echo")]
    policy: String,
    /// Time slice of the shinjuku policy, in microseconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    slice_us: u64,
    /// Scheduling policies: tasks staged per worker behind the running one (0: none).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=64))]
    prestage_depth: u16,
    /// Events drained per worker before the policy decides (1: no batching).
    #[arg(
        long,
        default_value_t = ipu_cp::agent::EVENT_BATCH as u16,
        value_parser = clap::value_parser!(u16).range(1..=ipu_cp::agent::EVENT_BATCH as i64)
    )]
    event_batch: u16,
    /// Most apps attached at once.
    #[arg(
        long,
        default_value_t = MAX_APPS_DEFAULT,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    max_apps: u16,
    /// Users allowed to attach (repeatable). Default: only the user running ipu-cp.
    #[arg(long = "allow-uid", value_name = "UID")]
    allow_uids: Vec<u32>,
    /// Heartbeat interval in microseconds.
    #[arg(
        long,
        default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    heartbeat_interval_us: u64,
    /// An app silent this long (ms) is declared lost and detached.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    peer_timeout_ms: u64,
    /// Give up on an app that does not finish its handshake in this many milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    handshake_timeout_ms: u64,
    /// Never sleep when idle: spin on a dedicated core (lowest latency; burns the core).
    #[arg(long)]
    spin: bool,
    /// Pin the agent thread to this CPU.
    #[arg(long, value_name = "CPU")]
    cpu: Option<usize>,
    /// Connection control: most connections per listener.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..))]
    max_conns_per_listener: u32,
    /// Connection control: most connections per tenant, over every app.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(1..))]
    max_conns_per_tenant: u32,
    /// Connection control: SYNs admitted per second per listener (0: no limit).
    #[arg(long, default_value_t = 0)]
    syn_rate: u32,
    /// Connection control: SYNs admitted at once beyond the rate.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    syn_burst: u32,
    /// Connection control: admissions prestaged per listener (0: every SYN asks).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(0..=256))]
    conn_prestage_depth: u16,
    /// Connection control: ephemeral ports per lease.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u16).range(16..=16384))]
    port_block: u16,
    /// Connection control: a neighbour pushed to every app, `IP=MAC` (repeatable).
    #[arg(long = "neighbor", value_name = "IP=MAC", value_parser = parse_neighbor)]
    neighbors: Vec<(Ipv4Addr, [u8; 6])>,
    /// Page tiering: the epoch the apps report at, ms (the policy's rates are per epoch).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    tier_epoch_ms: u64,
    /// Page tiering: how long a host may be silent, ms (its mechanism thread beats between
    /// epochs; a policy loss only stops demotion, so this can be long).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    tier_peer_timeout_ms: u64,
    /// Page tiering: promotions per minute to stay under, as a fraction of the working set.
    #[arg(long, default_value_t = 0.002)]
    tier_promotion_target: f64,
    /// Page tiering: the cold-age threshold to start from, epochs.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    tier_threshold_start: u16,
    /// Page tiering: most pages parked per epoch (a quarter of it when not over budget).
    #[arg(long, default_value_t = 4096)]
    tier_park_max: u32,
    /// Page tiering: most pages demoted per epoch.
    #[arg(long, default_value_t = 4096)]
    tier_demote_max: u32,
    /// Page tiering: epochs a page found hot is left alone before it is probed again.
    #[arg(long, default_value_t = 60)]
    tier_hot_skip_epochs: u32,
    /// Connection control: a route pushed to every app, `PREFIX/LEN=GATEWAY` (repeatable).
    #[arg(long = "route", value_name = "PREFIX/LEN=GW", value_parser = parse_route)]
    routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
}

fn parse_neighbor(text: &str) -> Result<(Ipv4Addr, [u8; 6]), String> {
    let (ip, mac) = text.split_once('=').ok_or("expected IP=MAC")?;
    let ip: Ipv4Addr = ip.parse().map_err(|e| format!("bad IP `{ip}`: {e}"))?;
    let parts: Vec<&str> = mac.split(':').collect();
    let mut bytes = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("bad MAC `{mac}`: expected six hex bytes"));
    }
    for (byte, part) in bytes.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16).map_err(|e| format!("bad MAC `{mac}`: {e}"))?;
    }
    Ok((ip, bytes))
}

fn parse_route(text: &str) -> Result<(Ipv4Addr, u8, Ipv4Addr), String> {
    let (cidr, gateway) = text.split_once('=').ok_or("expected PREFIX/LEN=GATEWAY")?;
    let (prefix, len) = cidr.split_once('/').ok_or("expected PREFIX/LEN")?;
    let prefix: Ipv4Addr = prefix.parse().map_err(|e| format!("bad prefix `{prefix}`: {e}"))?;
    let len: u8 = len.parse().ok().filter(|&l| l <= 32).ok_or("prefix length must be 0..=32")?;
    let gateway: Ipv4Addr = gateway.parse().map_err(|e| format!("bad gateway: {e}"))?;
    Ok((prefix, len, gateway))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ipu-cp: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let policy_config =
        SchedConfig { slice_ns: args.slice_us * 1000, prestage_depth: args.prestage_depth };
    let Some(policy) = policy::by_name(&args.policy, policy_config) else {
        bail!("unknown policy `{}` (known: {})", args.policy, POLICY_NAMES.join(", "));
    };
    if args.peer_timeout_ms * 1000 <= args.heartbeat_interval_us {
        bail!("--peer-timeout-ms must exceed the heartbeat interval");
    }
    if let Some(cpu) = args.cpu {
        pin_to(cpu)?;
    }
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().context("installing the metrics recorder")?;

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let config = ServerConfig {
        socket: args.socket.clone(),
        max_apps: usize::from(args.max_apps),
        accept: AcceptPolicy {
            allowed_uids: args.allow_uids,
            liveness: LivenessConfig {
                heartbeat_interval_ns: args.heartbeat_interval_us * 1000,
                peer_timeout_ns: args.peer_timeout_ms * 1_000_000,
            },
            tier_liveness: LivenessConfig {
                heartbeat_interval_ns: args.heartbeat_interval_us * 1000,
                peer_timeout_ns: args.tier_peer_timeout_ms * 1_000_000,
            },
            handshake_timeout: Duration::from_millis(args.handshake_timeout_ms),
            services: vec![Service::Sched, Service::Net, Service::Tier],
        },
        epoch: ipu_cp::fresh_epoch(),
        event_batch: usize::from(args.event_batch),
        spin: args.spin,
    };
    let admission = Admission::new(AdmissionConfig {
        max_per_listener: args.max_conns_per_listener,
        max_per_tenant: args.max_conns_per_tenant,
        syn_rate_per_s: args.syn_rate,
        syn_burst: args.syn_burst,
        prestage_depth: args.conn_prestage_depth,
        port_block: args.port_block,
        neighbors: args.neighbors,
        routes: args.routes,
    });
    let net = NetAgent::new(admission);
    let net_counters = net.counters();
    let server = Server::bind(config).context("cannot start")?;
    eprintln!(
        "ipu-cp: listening on {} (policies {} and admission, link ABI {}, pid {})",
        args.socket.display(),
        policy.name(),
        link::ABI_VERSION,
        std::process::id()
    );
    let tier = ipu_cp::tier::adapter::TierAgent::new(ipu_cp::tier::TierConfig {
        epoch_ns: args.tier_epoch_ms * 1_000_000,
        promotion_target_per_min: args.tier_promotion_target,
        threshold_start: args.tier_threshold_start,
        park_max_per_epoch: args.tier_park_max,
        demote_max_per_epoch: args.tier_demote_max,
        hot_skip_epochs: args.tier_hot_skip_epochs,
        ..ipu_cp::tier::TierConfig::default()
    });
    let tier_counters = tier.counters();
    server.run(Policies { sched: policy, net: Box::new(net), tier: Box::new(tier) }, &stop);
    let t = &tier_counters;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "ipu-cp: tiering: epochs={} commands={} table_entries_read={} writes_seen={} invalid={}",
        load(&t.epochs),
        load(&t.commands),
        load(&t.entries_read),
        load(&t.writes_seen),
        load(&t.invalid)
    );
    let n = &net_counters;
    let get = NetCounters::get;
    eprintln!(
        "ipu-cp: connections: tokens={} tokens_used={} tokens_returned={} admitted={} \
         refused={} closed={} leases={} invalid={}",
        get(&n.tokens),
        get(&n.tokens_used),
        get(&n.tokens_returned),
        get(&n.admitted),
        get(&n.refused),
        get(&n.closed),
        get(&n.leases),
        get(&n.invalid)
    );
    let mut counters: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => Some(format!("{}={n}", key.key().name())),
            DebugValue::Gauge(g) => Some(format!("{}={}", key.key().name(), g.into_inner())),
            DebugValue::Histogram(_) => None,
        })
        .collect();
    counters.sort();
    eprintln!("ipu-cp: stopped; {}", counters.join(" "));
    Ok(())
}

fn pin_to(cpu: usize) -> anyhow::Result<()> {
    ipu_cp::pin_current_thread(cpu).with_context(|| format!("cannot pin to --cpu {cpu}"))
}
