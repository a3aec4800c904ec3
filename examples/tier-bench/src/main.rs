//! `tier-bench`: one run of the memory-tiering experiment. A skewed workload (`workload.rs`)
//! over a `memmgr` arena, managed by one setup (`driver.rs`): all resident, the tier policy
//! (inline, on-host agent thread, or offloaded in `ipu-cp`), or random demotion. After a
//! warm-up it measures a window: throughput (also per second of app CPU), operation latency,
//! the share of the arena in the slow tier and the DRAM it saves, promotions against the
//! target, and the CPU of the fault path, the mechanism thread and the policy. Prints a
//! summary and appends a CSV row (`--csv`) and a per-second series (`--series`);
//! `scripts/tier-experiment.sh` runs the setups interleaved, with the kernel baseline, and
//! `scripts/tier-report.py` writes the report. Needs root (userfaultfd).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use ipu_cp::tier::TierConfig;
use memmgr::{Arena, get};

mod driver;
mod workload;

use driver::{Driver, Setup};
use workload::{STOP, Shared, WINDOW, Workload};

/// One run of the memory-tiering experiment.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// What manages the arena.
    #[arg(long, value_enum, default_value = "offloaded")]
    setup: Setup,
    /// Arena size, MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=16_384))]
    arena_mb: u64,
    /// Percentage of the pages that is hot.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=99))]
    hot_percent: u64,
    /// Operations per million that go to the cold pages (the rest go to the hot ones).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    cold_per_million: u64,
    /// Worker threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    threads: u64,
    /// Seconds of warm-up before the window.
    #[arg(long, default_value_t = 20.0)]
    warmup_seconds: f64,
    /// Seconds of the measurement window.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Policy epoch, ms.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    epoch_ms: u64,
    /// Promotions per minute the policy aims under, as a fraction of the working set.
    #[arg(long, default_value_t = 0.02)]
    promotion_target: f64,
    /// With `--setup random`: the percentage of the arena kept compressed.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(0..=100))]
    random_percent: u64,
    /// Where faults are resolved.
    #[arg(long, value_enum, default_value = "in-thread")]
    faults: Faults,
    /// Pin worker i to the i-th of these CPUs (round robin); none: not pinned.
    #[arg(long, value_delimiter = ',')]
    worker_cpus: Vec<usize>,
    /// Pin the mechanism thread and the policy (agent thread or `ipu-cp`) to this CPU.
    #[arg(long)]
    control_cpu: Option<usize>,
    /// The name of this setup in the outputs (default: the setup's).
    #[arg(long)]
    label: Option<String>,
    /// The run's number, for the outputs.
    #[arg(long, default_value_t = 1)]
    run: u32,
    /// A zram device whose `mm_stat` tells the DRAM the kernel baseline saves.
    #[arg(long)]
    zram: Option<PathBuf>,
    /// Append the run's row to this CSV (with a header if new).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Append the run's per-second series to this CSV.
    #[arg(long)]
    series: Option<PathBuf>,
    /// Start the warm-up's clock at this Unix time, ms (after the arena is filled), so that
    /// two runs side by side share their window; a run not ready by then fails.
    #[arg(long)]
    start_unix_ms: Option<u64>,
}

/// `memmgr::FaultMode`, for the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Faults {
    /// In the faulting thread.
    InThread,
    /// In a handler thread.
    Handler,
}

/// Counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    at: Option<Instant>,
    promotions: u64,
    unparks: u64,
    parks: u64,
    faults: u64,
    fault_ns: u64,
    tracking_ns: u64,
    copies_reused: u64,
    driver_cpu_ns: u64,
    policy_cpu_ns: u64,
}

/// One per-second sample.
#[derive(Debug, Clone, Copy)]
struct Sample {
    t_s: f64,
    ops_per_s: f64,
    slow_fraction: f64,
    saved_bytes: f64,
    in_window: bool,
}

/// The kernel's swap: pages of this process swapped out (`VmSwap`), and what zram saves.
fn kernel_tier(zram: Option<&Path>) -> (u64, Option<f64>) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let swap_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSwap:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let saved = zram.and_then(|dir| {
        let stat = std::fs::read_to_string(dir.join("mm_stat")).ok()?;
        let fields: Vec<f64> = stat.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        Some(fields.first()? - fields.get(2)?) // orig_data_size - mem_used_total
    });
    (swap_kib / 4, saved)
}

fn snapshot(arena: &Arena, driver: Option<&Driver>) -> Snapshot {
    let c = arena.counters();
    Snapshot {
        at: Some(Instant::now()),
        promotions: get(&c.promotions),
        unparks: get(&c.unparks),
        parks: get(&c.parks),
        faults: get(&c.faults),
        fault_ns: get(&c.fault_ns),
        tracking_ns: get(&c.tracking_ns),
        copies_reused: get(&c.copies_reused),
        driver_cpu_ns: workload::thread_cpu_ns(),
        policy_cpu_ns: driver.and_then(Driver::policy_cpu_ns).unwrap_or(0),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.seconds > 0.0 && args.warmup_seconds >= 0.0, "positive durations");
    let label = args.label.clone().unwrap_or_else(|| format!("{:?}", args.setup).to_lowercase());
    let pages = usize::try_from(args.arena_mb * 256)?;
    let mode = match args.faults {
        Faults::InThread => memmgr::FaultMode::InThread,
        Faults::Handler => memmgr::FaultMode::Handler,
    };
    let arena = Arc::new(Arena::with_faults(pages, mode).context("userfaultfd (run as root)")?);
    for page in 0..pages {
        workload::fill(arena.words(), page);
    }
    let load = Arc::new(Workload::new(pages, args.hot_percent, args.cold_per_million));
    let shared = Arc::new(Shared::default());
    let workers: Vec<_> = (0..args.threads)
        .map(|t| {
            let (arena, load, shared) = (arena.clone(), load.clone(), shared.clone());
            let cpu = (!args.worker_cpus.is_empty()).then(|| {
                args.worker_cpus[usize::try_from(t).unwrap_or(0) % args.worker_cpus.len()]
            });
            std::thread::spawn(move || {
                if let Some(cpu) = cpu {
                    ipu_cp::pin_current_thread(cpu).expect("pinning a worker");
                }
                workload::work(arena.words(), &load, &shared, t)
            })
        })
        .collect();
    let config = TierConfig {
        epoch_ns: args.epoch_ms * 1_000_000,
        promotion_target_per_min: args.promotion_target,
        threshold_start: 4,
        threshold_min: 2,
        park_max_per_epoch: u32::try_from(pages / 8).unwrap_or(u32::MAX),
        demote_max_per_epoch: u32::try_from(pages / 8).unwrap_or(u32::MAX),
        hot_skip_epochs: u32::try_from(60_000 / args.epoch_ms).unwrap_or(1).max(1),
        ..TierConfig::default()
    };
    if let Some(cpu) = args.control_cpu {
        ipu_cp::pin_current_thread(cpu).context("pinning the mechanism thread")?;
    }
    let mut driver =
        Driver::new(args.setup, &arena, config, args.random_percent, args.control_cpu)?;
    eprintln!(
        "tier-bench: {label}, run {}: {} MiB, warm-up {} s ...",
        args.run, args.arena_mb, args.warmup_seconds
    );
    // Until the start, the loop only keeps the driver's link alive.
    let lead = args.start_unix_ms.map(until_unix_ms).transpose()?.unwrap_or_default();
    let start = Instant::now() + lead;
    let window_at = start + Duration::from_secs_f64(args.warmup_seconds);
    let end_at = window_at + Duration::from_secs_f64(args.seconds);
    let epoch = Duration::from_millis(args.epoch_ms);
    let (mut next_epoch, mut next_sample) = (start + epoch, start + Duration::from_secs(1));
    let (mut first, mut samples) = (Snapshot::default(), Vec::new());
    let mut last_ops = None;
    loop {
        std::thread::sleep(Duration::from_millis(1));
        let now = Instant::now();
        if let Some(driver) = driver.as_mut() {
            driver.tick();
        }
        if now < start {
            continue;
        }
        let (since, ops_before) =
            *last_ops.get_or_insert((now, shared.ops.load(Ordering::Relaxed)));
        if let Some(driver) = driver.as_mut()
            && now >= next_epoch
        {
            next_epoch += epoch;
            driver.epoch(&arena)?;
        }
        if first.at.is_none() && now >= window_at {
            first = snapshot(&arena, driver.as_ref());
            shared.phase.store(WINDOW, Ordering::Release);
            eprintln!("tier-bench: {label}: window of {} s ...", args.seconds);
        }
        if now >= next_sample {
            next_sample += Duration::from_secs(1);
            let ops = shared.ops.load(Ordering::Relaxed);
            let ops_per_s = (ops - ops_before) as f64 / (now - since).as_secs_f64();
            last_ops = Some((now, ops));
            let c = arena.counters();
            let compressed = get(&c.demotions).saturating_sub(get(&c.promotions));
            let (swapped, zram_saved) = kernel_tier(args.zram.as_deref());
            let slow = compressed.max(swapped) as f64 / pages as f64;
            let ours = (compressed * 4096) as f64 - get(&c.compressed_bytes) as f64;
            let saved_bytes = zram_saved.unwrap_or(ours);
            let t_s = (now - start).as_secs_f64();
            let in_window = first.at.is_some();
            samples.push(Sample { t_s, ops_per_s, slow_fraction: slow, saved_bytes, in_window });
        }
        if now >= end_at {
            break;
        }
    }
    let last = snapshot(&arena, driver.as_ref());
    shared.phase.store(STOP, Ordering::Release);
    let mut results = Vec::new();
    for worker in workers {
        results.push(worker.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?);
    }
    let mut latency = results[0].latency.clone();
    for r in &results[1..] {
        latency.add(&r.latency)?;
    }
    let ops: u64 = results.iter().map(|r| r.ops).sum();
    let app_cpu_ns: u64 = results.iter().map(|r| r.cpu_ns).sum();
    let wall = (last.at.expect("set") - first.at.context("no window")?).as_secs_f64();
    let window: Vec<&Sample> = samples.iter().filter(|s| s.in_window).collect();
    let mean = |f: &dyn Fn(&Sample) -> f64| {
        window.iter().map(|s| f(s)).sum::<f64>() / window.len().max(1) as f64
    };
    let c = arena.counters();
    let compressed_end = get(&c.demotions).saturating_sub(get(&c.promotions));
    let ratio = (compressed_end * 4096) as f64 / get(&c.compressed_bytes).max(1) as f64;
    let policy_ns = last.policy_cpu_ns.saturating_sub(first.policy_cpu_ns);
    let mut mechanism_ns = last.driver_cpu_ns.saturating_sub(first.driver_cpu_ns);
    if args.setup == Setup::Inline {
        mechanism_ns = mechanism_ns.saturating_sub(policy_ns); // the driver thread ran both
    }
    let pct_of_wall = |ns: u64| ns as f64 / 1e9 / wall * 100.0;
    let hot = load.hot_pages() as f64;
    let promotions = (last.promotions - first.promotions) as f64;
    let row = [
        label.clone(),
        args.run.to_string(),
        args.arena_mb.to_string(),
        format!("{wall:.2}"),
        format!("{:.0}", ops as f64 / wall),
        format!("{:.0}", ops as f64 / (app_cpu_ns.max(1) as f64 / 1e9)),
        latency.value_at_quantile(0.5).to_string(),
        latency.value_at_quantile(0.99).to_string(),
        latency.value_at_quantile(0.999).to_string(),
        format!("{:.4}", mean(&|s| s.slow_fraction)),
        format!("{:.1}", mean(&|s| s.saved_bytes) / f64::from(1 << 20)),
        format!("{:.3}", promotions / hot / (wall / 60.0) * 100.0),
        format!("{:.3}", args.promotion_target * 100.0),
        format!("{:.1}", (last.unparks - first.unparks) as f64 / wall),
        format!("{:.1}", (last.faults - first.faults) as f64 / wall),
        format!(
            "{:.2}",
            (last.fault_ns - first.fault_ns) as f64 / app_cpu_ns.max(1) as f64 * 100.0
        ),
        format!("{:.1}", pct_of_wall(app_cpu_ns)),
        format!("{:.2}", pct_of_wall(mechanism_ns)),
        format!("{:.2}", pct_of_wall(policy_ns)),
        format!("{ratio:.2}"),
        format!(
            "{:.2}",
            (last.fault_ns - first.fault_ns) as f64
                / 1e3
                / (last.faults - first.faults).max(1) as f64
        ),
        format!("{:.1}", (last.parks - first.parks) as f64 / wall),
        format!("{:.3}", pct_of_wall(last.tracking_ns - first.tracking_ns)),
        format!("{:.1}", (last.copies_reused - first.copies_reused) as f64 / wall),
    ];
    const HEADER: &str = "setup,run,arena_mb,window_s,ops_per_s,ops_per_cpu_s,p50_ns,p99_ns,\
        p999_ns,slow_fraction,saved_mib,promotions_per_min_pct,target_pct,probes_per_s,\
        faults_per_s,fault_cpu_pct,app_cpu_pct,mechanism_cpu_pct,policy_cpu_pct,\
        compression_ratio,fault_us,parks_per_s,tracking_cpu_pct,copies_reused_per_s";
    for (name, value) in HEADER.split(',').zip(&row) {
        println!("{name:>24}: {value}");
    }
    if let Some(host) = driver.as_ref().and_then(Driver::host_stats) {
        println!("{:>24}: {host:?}", "tier host");
    }
    let conflicts = get(&c.staging_conflicts);
    if conflicts > 0 {
        println!("{:>24}: {conflicts}", "staging conflicts");
    }
    if let Some(t) = driver.as_ref().and_then(Driver::threshold) {
        println!("{:>24}: {t} epochs", "threshold at the end");
    }
    if let Some(path) = &args.csv {
        append(path, HEADER, &[row.join(",")])?;
    }
    if let Some(path) = &args.series {
        let lines: Vec<String> = samples
            .iter()
            .map(|s| {
                format!(
                    "{label},{},{:.1},{:.0},{:.4}",
                    args.run, s.t_s, s.ops_per_s, s.slow_fraction
                )
            })
            .collect();
        append(path, "setup,run,t_s,ops_per_s,slow_fraction", &lines)?;
    }
    Ok(())
}

/// The time left until the Unix time `at_ms`; an error if it has passed.
fn until_unix_ms(at_ms: u64) -> anyhow::Result<Duration> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let at = Duration::from_millis(at_ms);
    anyhow::ensure!(
        at >= now,
        "ready {} ms after --start-unix-ms: give the runs more lead",
        (now - at).as_millis()
    );
    Ok(at - now)
}

/// Appends `lines` to the CSV at `path`, writing `header` first if the file is new.
fn append(path: &Path, header: &str, lines: &[String]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.lock()?; // runs side by side append to one file
    if file.metadata()?.len() == 0 {
        writeln!(file, "{header}")?;
    }
    for line in lines {
        writeln!(file, "{line}")?;
    }
    Ok(())
}
