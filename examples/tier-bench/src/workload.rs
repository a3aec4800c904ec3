//! The workload: worker threads doing single-word operations at a random 64-byte line of a
//! random page (an 8-byte read, or an atomic add with 10 % probability), `hot_percent` of
//! the pages (scattered over the arena by a hash) taking all but `cold_per_million` of them.
//! The data compresses about 3.5:1 (two random words in each line of eight), like the
//! synthetic data of `memtier.md` §3.
//!
//! Workers count every operation; during the measurement window they also time one in 256
//! into a histogram and read their own CPU clock at the
//! window's edges, so throughput can be judged per second of app CPU on this shared VM.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;

pub(crate) const WORDS_PER_PAGE: usize = 512;
const WORDS_PER_LINE: usize = 8;
const LINES_PER_PAGE: u64 = 64;
/// Operations between looks at the phase.
const BATCH: u64 = 256;
/// One operation in this many is timed: a clock read costs about a microsecond on this VM
/// (timing one in 16 cost 40 % of the throughput); faults hit operations independently of
/// the sampling, so the tail stays unbiased.
const TIMED_EVERY: u64 = 256;

// Phases: 0 (the default) before the window, then these.
/// In the window.
pub(crate) const WINDOW: u8 = 1;
/// After it: stop.
pub(crate) const STOP: u8 = 2;

/// xorshift64*.
pub(crate) fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Which pages are hot, and how often the cold ones are touched.
#[derive(Debug)]
pub(crate) struct Workload {
    hot: Vec<u32>,
    cold: Vec<u32>,
    cold_per_million: u64,
}

impl Workload {
    pub(crate) fn new(pages: usize, hot_percent: u64, cold_per_million: u64) -> Workload {
        let (mut hot, mut cold) = (Vec::new(), Vec::new());
        for page in 0..u32::try_from(pages).expect("pages fit u32") {
            if mix(u64::from(page)) % 100 < hot_percent {
                hot.push(page);
            } else {
                cold.push(page);
            }
        }
        if hot.is_empty() {
            hot.push(cold.pop().expect("at least one page"));
        }
        Workload { hot, cold, cold_per_million }
    }

    /// Pages in the hot set.
    pub(crate) fn hot_pages(&self) -> usize {
        self.hot.len()
    }

    fn pick(&self, rng: &mut u64) -> usize {
        let draw = next(rng);
        let set = if draw % 1_000_000 < self.cold_per_million && !self.cold.is_empty() {
            &self.cold
        } else {
            &self.hot
        };
        set[usize::try_from((draw >> 20) % set.len() as u64).expect("index")] as usize
    }
}

/// Writes page `page`'s initial data.
pub(crate) fn fill(words: &[AtomicU64], page: usize) {
    let words = &words[page * WORDS_PER_PAGE..(page + 1) * WORDS_PER_PAGE];
    let mut rng = mix(page as u64) | 1;
    for (i, word) in words.iter().enumerate() {
        let value = if i % WORDS_PER_LINE < 2 { next(&mut rng) } else { page as u64 };
        word.store(value, Ordering::Relaxed);
    }
}

/// What workers and the driver share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) phase: AtomicU8,
    /// Operations so far, all workers (updated per batch).
    pub(crate) ops: AtomicU64,
}

/// One worker's window.
pub(crate) struct WorkerResult {
    pub(crate) ops: u64,
    pub(crate) cpu_ns: u64,
    pub(crate) latency: Histogram<u64>,
}

/// This thread's CPU time, ns.
pub(crate) fn thread_cpu_ns() -> u64 {
    ipu_cp::on_host::thread_cpu_ns()
}

/// Runs operations until the phase says stop.
pub(crate) fn work(
    words: &[AtomicU64],
    load: &Workload,
    shared: &Shared,
    seed: u64,
) -> WorkerResult {
    let mut latency = Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let mut rng = mix(seed) | 1;
    let (mut ops, mut cpu_start, mut cpu_ns, mut in_window) = (0u64, 0u64, 0u64, false);
    loop {
        match shared.phase.load(Ordering::Acquire) {
            WINDOW if !in_window => {
                in_window = true;
                cpu_start = thread_cpu_ns();
            }
            STOP => {
                if in_window {
                    cpu_ns = thread_cpu_ns().saturating_sub(cpu_start);
                }
                break;
            }
            _ => {}
        }
        for i in 0..BATCH {
            let timed = in_window && i.is_multiple_of(TIMED_EVERY);
            let began = timed.then(Instant::now);
            let draw = next(&mut rng);
            let page = load.pick(&mut rng);
            let line = usize::try_from(draw % LINES_PER_PAGE).expect("line");
            let offset = usize::try_from((draw >> 8) % WORDS_PER_LINE as u64).expect("offset");
            let word = &words[page * WORDS_PER_PAGE + line * WORDS_PER_LINE + offset];
            if (draw >> 16).is_multiple_of(10) {
                word.fetch_add(1, Ordering::Relaxed);
            } else {
                std::hint::black_box(word.load(Ordering::Relaxed));
            }
            if let Some(began) = began {
                let ns = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
                latency.saturating_record(ns.max(1));
            }
        }
        shared.ops.fetch_add(BATCH, Ordering::Relaxed);
        if in_window {
            ops += BATCH;
        }
    }
    WorkerResult { ops, cpu_ns, latency }
}
