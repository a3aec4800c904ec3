//! `tier-bench`: a skewed workload over a `memmgr` arena, first with every page resident,
//! then tiered by `ipu-cp`'s tier policy: called inline by the driver thread, or over `link`
//! in an agent thread (on-host) or in the `ipu-cp` process (offloaded). Prints both runs and
//! their ratios; `--out` appends them as a markdown section. Needs root (userfaultfd).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use ipu_cp::tier::TierConfig;
use memmgr::{Arena, get};

mod driver;

/// The memory-tiering experiment.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Arena size, MiB.
    #[arg(long, default_value_t = 256)]
    arena_mb: usize,
    /// Percentage of the pages that is hot.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=99))]
    hot_percent: u64,
    /// Accesses per million that go to the cold pages (the rest go to the hot ones).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    cold_per_million: u64,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Policy epoch, ms.
    #[arg(long, default_value_t = 250)]
    epoch_ms: u64,
    /// Promotions per minute the policy aims under, as a fraction of the working set.
    #[arg(long, default_value_t = 0.02)]
    promotion_target: f64,
    /// Where the tier policy runs: inline (called by the driver thread), on-host (an agent
    /// thread over link), offloaded (the ipu-cp process over link).
    #[arg(long, value_enum, default_value = "inline")]
    policy: driver::Placement,
    /// Where faults are resolved: in the faulting thread (SIGBUS) or by a handler thread.
    #[arg(long, value_enum, default_value = "in-thread")]
    faults: Faults,
    /// Append the results to this markdown file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

const WORDS_PER_PAGE: usize = 512;

/// `memmgr::FaultMode`, for the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Faults {
    /// In the faulting thread.
    InThread,
    /// In a handler thread.
    Handler,
}

/// A random index below `bound`.
fn below(state: &mut u64, bound: usize) -> usize {
    usize::try_from(next(state) % bound.max(1) as u64).expect("below a usize")
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// A page: word 0 counts its writes, the rest is a compressible, checkable pattern.
fn fill(arena: &Arena, page: usize) {
    let words = &arena.words()[page * WORDS_PER_PAGE..(page + 1) * WORDS_PER_PAGE];
    for (i, word) in words.iter().enumerate().skip(1) {
        word.store((page as u64) << 16 | (i as u64 % 8), Ordering::Relaxed);
    }
}

struct Run {
    ops: u64,
    elapsed: Duration,
    compressed_pages_end: usize,
    compressed_bytes_end: u64,
    promotions: u64,
    demotions: u64,
    parks: u64,
    unparks: u64,
    policy_ns: u64,
    threshold_end: Option<u16>,
    host: Option<host_dp::tier::TierHostStats>,
    cp_cpu_ns: Option<u64>,
}

fn run(args: &Args, placement: Option<driver::Placement>) -> anyhow::Result<Run> {
    let pages = args.arena_mb * 256;
    let mode = match args.faults {
        Faults::InThread => memmgr::FaultMode::InThread,
        Faults::Handler => memmgr::FaultMode::Handler,
    };
    let arena = Arc::new(Arena::with_faults(pages, mode).context("userfaultfd (run as root)")?);
    for page in 0..pages {
        fill(&arena, page);
    }
    let hot = (pages * usize::try_from(args.hot_percent)? / 100).max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..args.threads)
        .map(|t| {
            let (arena, stop, ops) = (arena.clone(), stop.clone(), ops.clone());
            let cold_per_million = args.cold_per_million;
            std::thread::spawn(move || {
                let mut rng = 0x9e37 + t as u64;
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1024 {
                        let pick = next(&mut rng);
                        let page = if pick % 1_000_000 >= cold_per_million {
                            below(&mut rng, hot)
                        } else {
                            hot + below(&mut rng, pages - hot)
                        };
                        let word = &arena.words()[page * WORDS_PER_PAGE];
                        if pick.is_multiple_of(10) {
                            word.fetch_add(1, Ordering::Relaxed);
                        } else {
                            std::hint::black_box(word.load(Ordering::Relaxed));
                        }
                    }
                    done += 1024;
                    ops.fetch_add(1024, Ordering::Relaxed);
                }
                done
            })
        })
        .collect();
    let start = Instant::now();
    let duration = Duration::from_secs_f64(args.seconds);
    let config = TierConfig {
        epoch_ns: args.epoch_ms * 1_000_000,
        promotion_target_per_min: args.promotion_target,
        threshold_start: 4,
        threshold_min: 2,
        park_max_per_epoch: u32::try_from(pages / 8).unwrap_or(u32::MAX),
        demote_max_per_epoch: u32::try_from(pages / 8).unwrap_or(u32::MAX),
        ..TierConfig::default()
    };
    let mut driver = placement.map(|p| driver::Driver::new(p, &arena, config)).transpose()?;
    let (mut policy_ns, mut last_promotions) = (0u64, 0u64);
    let epoch = Duration::from_millis(args.epoch_ms);
    let mut next_epoch = start + epoch;
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(1));
        let Some(driver) = driver.as_mut() else { continue };
        driver.tick();
        if Instant::now() < next_epoch {
            continue;
        }
        next_epoch += epoch;
        let began = Instant::now();
        let promotions = driver::promotions(&arena);
        driver.epoch(&arena, promotions - last_promotions)?;
        last_promotions = promotions;
        policy_ns += u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
    }
    stop.store(true, Ordering::Relaxed);
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
    let elapsed = start.elapsed();
    let compressed_pages_end = (0..pages).filter(|&p| arena.is_compressed(p)).count();
    let c = arena.counters();
    Ok(Run {
        ops: total,
        elapsed,
        compressed_pages_end,
        compressed_bytes_end: get(&c.compressed_bytes),
        promotions: get(&c.promotions),
        demotions: get(&c.demotions),
        parks: get(&c.parks),
        unparks: get(&c.unparks),
        policy_ns,
        threshold_end: driver.as_ref().and_then(driver::Driver::threshold),
        host: driver.as_ref().and_then(driver::Driver::host_stats),
        cp_cpu_ns: driver.as_ref().and_then(driver::Driver::control_plane_cpu_ns),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.arena_mb > 0 && args.threads > 0 && args.seconds > 0.0, "positive sizes");
    let pages = args.arena_mb * 256;
    eprintln!("tier-bench: all-resident run ({} MiB, {} s) ...", args.arena_mb, args.seconds);
    let base = run(&args, None)?;
    eprintln!("tier-bench: tiered run (policy {:?}, epoch {} ms) ...", args.policy, args.epoch_ms);
    let tiered = run(&args, Some(args.policy))?;
    let rate = |r: &Run| r.ops as f64 / r.elapsed.as_secs_f64();
    let slow = tiered.compressed_pages_end as f64 / pages as f64;
    let saved = (tiered.compressed_pages_end * 4096) as f64 - tiered.compressed_bytes_end as f64;
    let minutes = tiered.elapsed.as_secs_f64() / 60.0;
    let working_set = (pages * usize::try_from(args.hot_percent)? / 100) as f64;
    let text = format!(
        "| run | ops/s | pages compressed at the end | DRAM saved | promotions | demotions \
         | parks / touched back | policy CPU |\n\
         |---|---|---|---|---|---|---|---|\n\
         | all resident | {:.0} | 0 | 0 | 0 | 0 | 0 / 0 | – |\n\
         | tiered | {:.0} ({:.3} of all-resident) | {} ({:.1} %) | {:.1} MiB of {} MiB \
         | {} ({:.2} % of the hot set per minute) | {} | {} / {} | {:.1} ms per s |\n\n\
         Policy: {:?}; threshold at the end: {} (epochs of {} ms).\n",
        rate(&base),
        rate(&tiered),
        rate(&tiered) / rate(&base),
        tiered.compressed_pages_end,
        slow * 100.0,
        saved / (1 << 20) as f64,
        args.arena_mb,
        tiered.promotions,
        tiered.promotions as f64 / working_set / minutes * 100.0,
        tiered.demotions,
        tiered.parks,
        tiered.unparks,
        tiered.policy_ns as f64 / 1e6 / tiered.elapsed.as_secs_f64(),
        args.policy,
        tiered.threshold_end.map_or("not visible (over link)".into(), |t| t.to_string()),
        args.epoch_ms,
    );
    let mut text = text;
    if let Some(h) = tiered.host {
        text.push_str(&format!(
            "Tier host: {} reports ({} deferred), {} commands applied, {} stale, {} skipped, \
             {} rejected, {} fallbacks.\n",
            h.reports, h.deferred, h.applied, h.stale, h.skipped, h.rejected, h.fallbacks
        ));
    }
    if let Some(ns) = tiered.cp_cpu_ns {
        let share = ns as f64 / tiered.elapsed.as_nanos() as f64;
        text.push_str(&format!("ipu-cp process CPU: {:.1} % of a core.\n", share * 100.0));
    }
    print!("{text}");
    let _ = base.compressed_pages_end;
    if let Some(path) = &args.out {
        let command: Vec<String> = std::env::args().skip(1).collect();
        let section = format!("\n### `tier-bench {}`\n\n{text}", command.join(" "));
        let mut existing = std::fs::read_to_string(path).unwrap_or_default();
        existing.push_str(&section);
        std::fs::write(path, existing)?;
    }
    Ok(())
}
