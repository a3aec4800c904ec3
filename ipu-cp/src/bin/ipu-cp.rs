//! `ipu-cp`: the Wave control-plane process. See `ipu-cp --help`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use ipu_cp::policy::{self, POLICY_NAMES, PolicyConfig};
use ipu_cp::server::{MAX_APPS_DEFAULT, Server, ServerConfig};
use link::LivenessConfig;
use link::transport::AcceptPolicy;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

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
        PolicyConfig { slice_ns: args.slice_us * 1000, prestage_depth: args.prestage_depth };
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
            handshake_timeout: Duration::from_millis(args.handshake_timeout_ms),
        },
        epoch: ipu_cp::fresh_epoch(),
        event_batch: usize::from(args.event_batch),
        spin: args.spin,
    };
    let server = Server::bind(config).context("cannot start")?;
    eprintln!(
        "ipu-cp: listening on {} (policy {}, link ABI {}, pid {})",
        args.socket.display(),
        policy.name(),
        link::ABI_VERSION,
        std::process::id()
    );
    server.run(policy, &stop);
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
