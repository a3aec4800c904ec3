//! The workload: open-loop Poisson arrivals of a dispersive request mix (many short, a few
//! long), injected by the workers' ingress poll the way a kernel-bypass server takes requests
//! off a NIC queue. Latency runs from each request's *planned* arrival time, so a server that
//! falls behind is charged for it (no coordinated omission).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use host_dp::runtime::{Handle, Ingress, RuntimeError, preempt_point};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};

/// The request mix.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Service time of a short request.
    pub short_ns: u64,
    /// Service time of a long request.
    pub long_ns: u64,
    /// Fraction of requests that are long.
    pub long_fraction: f64,
}

impl Mix {
    /// Mean service time.
    pub fn mean_ns(&self) -> f64 {
        self.short_ns as f64 * (1.0 - self.long_fraction) + self.long_ns as f64 * self.long_fraction
    }
}

/// One planned request.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// When it arrives, from the start of the run.
    pub at_ns: u64,
    /// CPU time it needs.
    pub service_ns: u64,
    /// Whether it is one of the long ones.
    pub long: bool,
}

/// Poisson arrivals at `rate_per_s` for `duration_ns`, each long with the mix's probability.
pub fn arrivals(seed: u64, rate_per_s: f64, duration_ns: u64, mix: Mix) -> Vec<Arrival> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let gap = Exp::new(rate_per_s / 1e9).expect("a positive rate");
    let mut at_ns = 0u64;
    let mut out = Vec::new();
    loop {
        // Gaps are drawn in ns and rounded: sub-ns precision means nothing here.
        let gap_ns: f64 = gap.sample(&mut rng);
        at_ns = at_ns.saturating_add(nanos(Duration::from_secs_f64(gap_ns / 1e9)));
        if at_ns >= duration_ns {
            return out;
        }
        let long = rng.random_bool(mix.long_fraction);
        let service_ns = if long { mix.long_ns } else { mix.short_ns };
        out.push(Arrival { at_ns, service_ns, long });
    }
}

/// What a run measured.
#[derive(Debug)]
pub struct Results {
    /// Latency of short requests (ns), from the planned arrival.
    pub short: Histogram<u64>,
    /// Latency of long requests (ns).
    pub long: Histogram<u64>,
}

/// Feeds planned arrivals to the runtime when their time comes; records their latencies.
#[derive(Debug)]
pub struct Generator {
    arrivals: Vec<Arrival>,
    next: AtomicUsize,
    start: Instant,
    /// Arrivals before this are warm-up: served, not recorded.
    warmup_ns: u64,
    results: Arc<Mutex<Results>>,
    /// Spawns refused because the runtime was full (the request is counted unanswered).
    pub refused: AtomicU64,
    /// Requests finished.
    pub finished: Arc<AtomicU64>,
}

/// Most arrivals spawned per poll: bounded work for the polling worker.
const SPAWN_BATCH: usize = 16;
/// A request runs this long between preempt points.
const PREEMPT_EVERY_NS: u64 = 5_000;

impl Generator {
    /// A generator for `arrivals` counted from `start`, recording after `warmup_ns`.
    pub fn new(arrivals: Vec<Arrival>, start: Instant, warmup_ns: u64) -> Generator {
        let histogram = || Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
        Generator {
            arrivals,
            next: AtomicUsize::new(0),
            start,
            warmup_ns,
            results: Arc::new(Mutex::new(Results { short: histogram(), long: histogram() })),
            refused: AtomicU64::new(0),
            finished: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Requests planned.
    pub fn planned(&self) -> usize {
        self.arrivals.len()
    }

    /// Requests that arrived so far.
    pub fn arrived(&self) -> usize {
        self.next.load(Ordering::Relaxed).min(self.arrivals.len())
    }

    /// The recorded latencies.
    pub fn results(&self) -> std::sync::MutexGuard<'_, Results> {
        self.results.lock().expect("results")
    }
}

impl Ingress for Generator {
    fn poll(&self, _worker: usize, handle: &Handle) -> usize {
        let now_ns = nanos(self.start.elapsed());
        let mut spawned = 0;
        while spawned < SPAWN_BATCH {
            let index = self.next.load(Ordering::Relaxed);
            let Some(arrival) = self.arrivals.get(index).copied() else { break };
            if arrival.at_ns > now_ns {
                break;
            }
            // Several workers may poll: each arrival is taken once.
            if self
                .next
                .compare_exchange(index, index + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let planned = self.start + Duration::from_nanos(arrival.at_ns);
            let record = arrival.at_ns >= self.warmup_ns;
            let (results, finished) = (self.results.clone(), self.finished.clone());
            let request = serve(arrival, planned, record, results, finished);
            match handle.spawn(request) {
                Ok(_) => spawned += 1,
                Err(RuntimeError::Full) => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => panic!("spawn: {error}"),
            }
        }
        spawned
    }
}

/// One request: `service_ns` of CPU work, offering the CPU every 5 µs (a preempt point costs
/// 50–300 ns here, mostly clock reads: finer would tax short requests several percent).
async fn serve(
    arrival: Arrival,
    planned: Instant,
    record: bool,
    results: Arc<Mutex<Results>>,
    finished: Arc<AtomicU64>,
) {
    let mut done_ns = 0u64;
    while done_ns < arrival.service_ns {
        let chunk_start = Instant::now();
        let chunk_ns = PREEMPT_EVERY_NS.min(arrival.service_ns - done_ns);
        while nanos(chunk_start.elapsed()) < chunk_ns {
            std::hint::spin_loop();
        }
        done_ns += nanos(chunk_start.elapsed());
        if done_ns < arrival.service_ns {
            preempt_point().await;
        }
    }
    let latency_ns = nanos(planned.elapsed()).max(1);
    if record {
        let mut results = results.lock().expect("results");
        let histogram = if arrival.long { &mut results.long } else { &mut results.short };
        histogram.saturating_record(latency_ns);
    }
    finished.fetch_add(1, Ordering::Relaxed);
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
