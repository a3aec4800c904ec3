//! The report's sweeps: FIFO vs Shinjuku, on-host vs offloaded across link delays, and the
//! mitigation ablation. Rows go to CSV files as they are measured; `sched.md` summarises.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context;
use sched_bench::modes::{Mode, Setup};
use sched_bench::point::{self, Measured};

use crate::Common;

/// CSV header of every sweep file.
pub(crate) const HEADER: &str = "mode,policy,delay_ns,mitigations,load,offered_rps,achieved_rps,\
short_p50_us,short_p99_us,short_p999_us,long_p99_us,unanswered,committed,stale,stale_pct,\
preemptions,fallbacks,worker_sched_pct,agent_cpu_pct";

/// One CSV row.
pub(crate) fn row(
    mode: &str,
    policy: &str,
    delay_ns: u32,
    mitigations: &str,
    load: f64,
    m: &Measured,
) -> String {
    let stale_pct = 100.0 * m.stale as f64 / (m.committed + m.stale).max(1) as f64;
    format!(
        "{mode},{policy},{delay_ns},{mitigations},{load:.2},{:.0},{:.0},{:.1},{:.1},{:.1},\
         {:.1},{},{},{},{:.3},{},{},{:.2},{:.1}",
        m.offered_rps,
        m.achieved_rps,
        m.short_us[0],
        m.short_us[1],
        m.short_us[2],
        m.long_p99_us,
        m.unanswered,
        m.committed,
        m.stale,
        stale_pct,
        m.preemptions,
        m.fallbacks,
        100.0 * m.worker_sched_frac,
        100.0 * m.agent_cpu_frac,
    )
}

/// Runs every setup at every load, `repeats` times, interleaved (each round runs every setup
/// at one load before moving on), so the machine's slow spells fall on all setups alike;
/// writes `sched.csv` into `out`, then the summary from it.
pub(crate) fn run(
    common: &Common,
    out: &Path,
    loads: &[f64],
    slo_us: f64,
    repeats: u64,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let mut loads = loads.to_vec();
    if !loads.iter().any(|l| (l - 0.5).abs() < 1e-9) {
        loads.push(0.5); // the summary's reference load
    }
    loads.sort_by(f64::total_cmp);
    let mut setups: Vec<(Setup, &'static str)> = Vec::new();
    for (mode, policy) in
        [(Mode::Local, "fifo"), (Mode::OnHost, "fifo"), (Mode::OnHost, "shinjuku")]
    {
        setups.push((common.setup(mode, policy)?, "all"));
    }
    for delay_ns in [0u32, 500, 1000, 2000, 5000] {
        let mut setup = common.setup(Mode::Offloaded, "shinjuku")?;
        setup.delay_ns = delay_ns;
        setups.push((setup, "all"));
    }
    for (mitigations, depth, batch, prefetch) in [
        ("no-prestage", 0, 32, true),
        ("no-batching", 1, 1, true),
        ("no-prefetch", 1, 32, false),
        ("none", 0, 1, false),
    ] {
        let mut setup = common.setup(Mode::Offloaded, "shinjuku")?;
        setup.delay_ns = 1000;
        setup.prestage_depth = depth;
        setup.event_batch = batch;
        setup.prefetch = prefetch;
        setups.push((setup, mitigations));
    }
    let noise_before = crate::noise::measure(common.worker_cpus[0], 3.0)?;
    eprintln!("sched-bench: noise floor: {noise_before}");
    let path = out.join("sched.csv");
    let mut csv =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    writeln!(csv, "{HEADER}")?;
    let total = usize::try_from(repeats.max(1)).unwrap_or(usize::MAX) * loads.len() * setups.len();
    let mut done = 0;
    for repeat in 0..repeats.max(1) {
        for &load in &loads {
            for (setup, mitigations) in &setups {
                let mut point = common.point(setup.clone(), load);
                point.seed = common.seed + repeat;
                let measured = point::run(&point).with_context(|| {
                    format!("{} {} at load {load}", setup.mode.name(), setup.policy)
                })?;
                let line = row(
                    setup.mode.name(),
                    &setup.policy,
                    setup.delay_ns,
                    mitigations,
                    load,
                    &measured,
                );
                done += 1;
                eprintln!("sched-bench: [{done}/{total}] {line}");
                writeln!(csv, "{line}")?;
            }
        }
    }
    let noise_after = crate::noise::measure(common.worker_cpus[0], 3.0)?;
    let noise = format!("before the runs, {noise_before}.\nAfter the runs, {noise_after}.\n");
    std::fs::write(out.join("sched-noise.txt"), noise)?;
    crate::report::write(common, out, slo_us)
}
