//! `rocksdb-server`: RocksDB behind memcached's text protocol (plus `scan <start> <count>`), on
//! Wave's runtime and stack. See `rocksdb-server --help`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use memmgr::Arena;
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
    #[arg(long, default_value = "on-host")]
    tier_policy: host_dp::ServiceMode,
    /// The tier policy's epoch, ms.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    tier_epoch_ms: u64,
}

/// The host's config: the shared flags, and the tier flags (a tiered arena for the block
/// cache, when asked for).
fn host_config(cli: &Cli) -> anyhow::Result<host_dp::HostConfig> {
    let mut config = cli.server.host.host_config()?;
    if cli.tier_arena_mb > 0 {
        config.tier.arena_mb = cli.tier_arena_mb;
        config.tier.mode = cli.tier_policy;
        config.tier.epoch_ms = cli.tier_epoch_ms;
    }
    Ok(config)
}

fn open(cli: &Cli, arena: Option<&Arc<Arena>>) -> anyhow::Result<RocksStore> {
    let capacity = cli.block_cache_mb << 20;
    let options = StoreOptions {
        block_cache: Some(arena_cache::block_cache(capacity, arena)?),
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
    let result = host_config(&cli).and_then(rpc_server::app::start).and_then(|host| {
        let store = Arc::new(open(&cli, host.arena())?);
        let host = rpc_server::app::run(&cli.server, host, "rocksdb-server", store.clone())?;
        // Measured before anything is torn down: what the process holds in DRAM now.
        let mut last = format!(
            "rocksdb-server: final: rss_kib={} cache_kib={}",
            rss_kib(),
            store.block_cache_bytes().unwrap_or(0) >> 10
        );
        if let Some(arena) = host.arena() {
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
            eprintln!("rocksdb-server: tier agent attached: {}", host.stats().tier_attached);
        }
        eprintln!("{last}");
        host.shutdown();
        Ok(())
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rocksdb-server: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
