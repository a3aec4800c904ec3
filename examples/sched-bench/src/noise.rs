//! The machine's noise floor: a thread spinning alone on a worker CPU reads the clock in a
//! tight loop and counts the gaps (time it did not run). Every latency in the report sits on
//! top of these; on a shared VM they, not the scheduler, set the tail.

use std::time::{Duration, Instant};

/// Gaps seen while spinning for `seconds` on `cpu`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Noise {
    /// Gaps of 10–50 µs, 50–100 µs, 0.1–1 ms and over 1 ms.
    pub(crate) gaps: [u64; 4],
    /// The longest gap.
    pub(crate) longest: Duration,
    /// Time lost in gaps over 10 µs, as a fraction of the run.
    pub(crate) lost_frac: f64,
    /// How long it ran.
    pub(crate) seconds: f64,
}

/// Spins on `cpu` for `seconds`, measuring gaps.
pub(crate) fn measure(cpu: usize, seconds: f64) -> anyhow::Result<Noise> {
    let worker = std::thread::spawn(move || -> anyhow::Result<Noise> {
        ipu_cp::pin_current_thread(cpu)?;
        let start = Instant::now();
        let until = start + Duration::from_secs_f64(seconds);
        let mut noise = Noise { seconds, ..Noise::default() };
        let mut lost = Duration::ZERO;
        let mut last = Instant::now();
        while last < until {
            let now = Instant::now();
            let gap = now - last;
            last = now;
            if gap < Duration::from_micros(10) {
                continue;
            }
            lost += gap;
            noise.longest = noise.longest.max(gap);
            let bucket = match gap.as_micros() {
                0..50 => 0,
                50..100 => 1,
                100..1000 => 2,
                _ => 3,
            };
            noise.gaps[bucket] += 1;
        }
        noise.lost_frac = lost.as_secs_f64() / start.elapsed().as_secs_f64();
        Ok(noise)
    });
    worker.join().map_err(|_| anyhow::anyhow!("noise thread panicked"))?
}

impl std::fmt::Display for Noise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d] = self.gaps;
        write!(
            f,
            "a thread spinning alone on a worker CPU for {:.0} s was not running {:.2} % of the \
             time: gaps of 10–50 µs: {a}, 50–100 µs: {b}, 0.1–1 ms: {c}, over 1 ms: {d}; longest \
             {:.2} ms",
            self.seconds,
            100.0 * self.lost_frac,
            self.longest.as_secs_f64() * 1e3,
        )
    }
}
