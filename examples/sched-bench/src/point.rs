//! One measurement point: a setup, a mix, an offered load, a duration.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::modes::{self, AgentSide, Setup};
use crate::workload::{self, Generator, Mix};
use host_dp::Host;

/// What to run.
#[derive(Debug, Clone)]
pub struct Point {
    /// Scheduling setup.
    pub setup: Setup,
    /// Request mix.
    pub mix: Mix,
    /// Offered load as a fraction of the workers' capacity.
    pub load: f64,
    /// Arrivals for this long.
    pub duration_ms: u64,
    /// Arrivals in the first this-many ms are served but not recorded.
    pub warmup_ms: u64,
    /// Arrival seed.
    pub seed: u64,
}

/// What one point measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Offered requests per second.
    pub offered_rps: f64,
    /// Finished requests per second of the arrival window.
    pub achieved_rps: f64,
    /// Short-request latency percentiles (µs): p50, p99, p99.9.
    pub short_us: [f64; 3],
    /// Long-request p99 (µs).
    pub long_p99_us: f64,
    /// Requests planned but not finished by the end of the drain.
    pub unanswered: u64,
    /// Decisions applied / refused as stale / refused as invalid.
    pub committed: u64,
    /// Stale decisions (never applied).
    pub stale: u64,
    /// Invalid decisions.
    pub rejected: u64,
    /// Yields at preempt points.
    pub preemptions: u64,
    /// Switches to local scheduling (should be 0 in an experiment).
    pub fallbacks: u64,
    /// Scheduling work on the worker cores, as a fraction of their time.
    pub worker_sched_frac: f64,
    /// The agent's CPU time as a fraction of the run: on a host core in on-host mode, off the
    /// host (the `ipu-cp` process) in offloaded mode.
    pub agent_cpu_frac: f64,
}

/// Runs `point`.
pub fn run(point: &Point) -> anyhow::Result<Measured> {
    let workers = point.setup.worker_cpus.len();
    let rate = point.load * workers as f64 * 1e9 / point.mix.mean_ns();
    let duration_ns = point.duration_ms * 1_000_000;
    let arrivals = workload::arrivals(point.seed, rate, duration_ns, point.mix);
    let planned = arrivals.len() as u64;
    let (host, agent) = modes::start(&point.setup, 1 << 16)?;
    std::thread::sleep(Duration::from_millis(20)); // workers report in, the agent settles
    let agent_cpu_before = agent_cpu_ns(&host, &agent);
    let start = Instant::now();
    let generator = Arc::new(Generator::new(arrivals, start, point.warmup_ms * 1_000_000));
    host.set_ingress(generator.clone());
    std::thread::sleep(Duration::from_nanos(duration_ns));
    let window = start.elapsed();
    let finished_in_window = generator.finished.load(Ordering::Relaxed);
    let drain_until = Instant::now() + Duration::from_secs(3);
    while generator.finished.load(Ordering::Relaxed) < planned && Instant::now() < drain_until {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    let agent_cpu = agent_cpu_ns(&host, &agent).saturating_sub(agent_cpu_before);
    let stats = host.stats().sched;
    let finished = generator.finished.load(Ordering::Relaxed);
    let results = generator.results();
    let pct = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
    let measured = Measured {
        offered_rps: rate,
        achieved_rps: finished_in_window as f64 / window.as_secs_f64(),
        short_us: [pct(&results.short, 0.5), pct(&results.short, 0.99), pct(&results.short, 0.999)],
        long_p99_us: pct(&results.long, 0.99),
        unanswered: planned.saturating_sub(finished),
        committed: stats.committed,
        stale: stats.stale,
        rejected: stats.rejected,
        preemptions: stats.preemptions,
        fallbacks: stats.fallbacks,
        worker_sched_frac: stats.sched_ns as f64 / (elapsed.as_nanos() as f64 * workers as f64),
        agent_cpu_frac: agent_cpu as f64 / elapsed.as_nanos() as f64,
    };
    drop(results);
    host.shutdown(); // the agent thread or ipu-cp session is told, then the workers stop
    drop(agent);
    Ok(measured)
}

fn agent_cpu_ns(host: &Host, agent: &AgentSide) -> u64 {
    match agent {
        AgentSide::None | AgentSide::OnHost => host.agent_cpu_ns(),
        AgentSide::Offloaded(cp) => cp.cpu_ns(),
    }
}
