//! `rocksdb-server`: RocksDB behind memcached's text protocol (plus `scan <start> <count>`), on
//! Wave's runtime and stack. See `rocksdb-server --help`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use host_dp::runtime::Reattach;
use host_dp::tier::{TierHost, TierThread};
use ipu_cp::on_host::{OnHostAgent, OnHostOptions};
use ipu_cp::tier::{TierConfig, adapter::TierAgent};
use link::{ChannelConfig, LivenessConfig, MonoNanos};
use memmgr::{Arena, FaultMode};
use rocksdb_server::{RocksStore, StoreOptions, arena_cache};

/// A RocksDB server speaking the memcached protocol on Wave's stack and runtime.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    server: rpc_server::app::Args,
    /// The database directory (created if missing).
    #[arg(long)]
    db: PathBuf,
    /// RocksDB's block cache, MiB.
    #[arg(long, default_value_t = 8)]
    block_cache_mb: usize,
    /// RocksDB's memtable, KiB (default: RocksDB's 64 MiB).
    #[arg(long)]
    write_buffer_kb: Option<usize>,
    /// Target size of RocksDB's data blocks, bytes (default: RocksDB's 4096). A block ends
    /// past it by up to one entry: in an arena, keep target + entry under a page.
    #[arg(long, value_parser = clap::value_parser!(u64).range(256..=1 << 20))]
    block_bytes: Option<u64>,
    /// Put the block cache in a tiered `memmgr` arena of this many MiB (0: the heap). Its
    /// faults are resolved by a handler thread: RocksDB reads files into cache blocks.
    #[arg(long, default_value_t = 0)]
    tier_arena_mb: usize,
    /// Who decides the arena's tiering: nobody (local: no demotion), an agent thread
    /// (on-host), or `ipu-cp` (offloaded, with --ipu-cp).
    #[arg(long, value_enum, default_value = "on-host")]
    tier_policy: ipu_cp::Mode,
    /// The tier policy's epoch, ms.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    tier_epoch_ms: u64,
}

/// The tiered arena and what runs it.
struct Tier {
    arena: Arc<Arena>,
    thread: TierThread,
    _agent: Option<OnHostAgent>,
}

fn start_tier(cli: &Cli) -> anyhow::Result<Option<Tier>> {
    if cli.tier_arena_mb == 0 {
        return Ok(None);
    }
    let arena = Arc::new(
        Arena::with_faults(cli.tier_arena_mb * 256, FaultMode::Handler)
            .context("the tiered arena (userfaultfd: run as root)")?,
    );
    let shape = ChannelConfig { workers: 1, ring_capacity: 4096, prestage_slots: 1, delay_ns: 0 };
    let liveness =
        LivenessConfig { heartbeat_interval_ns: 1_000_000, peer_timeout_ns: 1_000_000_000 };
    let config = TierConfig { epoch_ns: cli.tier_epoch_ms * 1_000_000, ..TierConfig::default() };
    let mut host = TierHost::new(arena.clone());
    let (mut agent, mut reattach): (Option<OnHostAgent>, Option<Reattach>) = (None, None);
    match cli.tier_policy {
        ipu_cp::Mode::Local => {}
        ipu_cp::Mode::OnHost => {
            let now = MonoNanos::now();
            let (link, cp) = host_dp::tier::heap_pair(&arena, shape, liveness, now)?;
            let policy = Box::new(TierAgent::new(config));
            agent = Some(OnHostAgent::start(policy, cp, OnHostOptions::default())?);
            host.attach(link, now).map_err(anyhow::Error::msg)?;
        }
        ipu_cp::Mode::Offloaded => {
            let socket =
                cli.server.ipu_cp.clone().context("--tier-policy offloaded needs --ipu-cp")?;
            let tiered = arena.clone();
            let connect = move || {
                let timeout = Duration::from_secs(1);
                host_dp::tier::connect(&tiered, &socket, shape, liveness, timeout).ok()
            };
            let mut connect: Reattach = Box::new(connect);
            let link = connect().context("attaching the tier service to ipu-cp")?;
            host.attach(link, MonoNanos::now()).map_err(anyhow::Error::msg)?;
            reattach = Some(connect);
        }
    }
    let thread = TierThread::spawn(host, Duration::from_millis(cli.tier_epoch_ms), reattach)?;
    Ok(Some(Tier { arena, thread, _agent: agent }))
}

fn open(cli: &Cli, tier: Option<&Tier>) -> anyhow::Result<RocksStore> {
    let capacity = cli.block_cache_mb << 20;
    let options = StoreOptions {
        block_cache: Some(arena_cache::block_cache(capacity, tier.map(|t| &t.arena))?),
        write_buffer_bytes: cli.write_buffer_kb.map(|kb| kb << 10),
        block_bytes: cli.block_bytes.and_then(|b| usize::try_from(b).ok()),
    };
    RocksStore::open_with(&cli.db, &options)
        .with_context(|| format!("opening {}", cli.db.display()))
}

/// This process's resident memory (`VmRSS`), KiB; 0 if unreadable.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = start_tier(&cli).and_then(|tier| {
        let store = Arc::new(open(&cli, tier.as_ref())?);
        let served = rpc_server::app::run(cli.server, "rocksdb-server", store.clone());
        // Measured before anything is torn down: what the process holds in DRAM now.
        let mut last = format!(
            "rocksdb-server: final: rss_kib={} cache_kib={}",
            rss_kib(),
            store.block_cache_bytes().unwrap_or(0) >> 10
        );
        if let Some(Tier { arena, thread, .. }) = tier {
            let stats = thread.stop();
            let c = arena.counters();
            let in_use = memmgr::capi::installed().map_or(0, memmgr::ArenaAlloc::in_use);
            let compressed = (0..arena.pages()).filter(|&p| arena.is_compressed(p)).count();
            let held = memmgr::get(&c.compressed_bytes);
            let saved = (compressed as u64 * 4096).saturating_sub(held);
            last += &format!(
                " arena_in_use_kib={} compressed_pages={compressed} compressed_kib={} \
                 saved_kib={} demotions={} promotions={} faults={} heap_fallbacks={}",
                in_use >> 10,
                held >> 10,
                saved >> 10,
                memmgr::get(&c.demotions),
                memmgr::get(&c.promotions),
                memmgr::get(&c.faults),
                arena_cache::heap_fallbacks(),
            );
            eprintln!("rocksdb-server: tier host {stats:?}");
        }
        eprintln!("{last}");
        served
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rocksdb-server: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
