//! The report's sweeps: FIFO vs Shinjuku, on-host vs offloaded across link delays, and the
//! mitigation ablation. Rows go to CSV files as they are measured; `sched.md` summarises.

use std::fmt::Write as _;
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

/// A labelled series: one setup across loads, each load measured `repeats` times.
struct Series {
    label: String,
    setup: Setup,
    mitigations: &'static str,
    points: Vec<(f64, Vec<Measured>)>,
}

/// The median of `values` (the upper one of an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

impl Series {
    /// The median over repeats of `metric` at `load`.
    fn at(&self, load: f64, metric: impl Fn(&Measured) -> f64) -> Option<f64> {
        let (_, runs) = self.points.iter().find(|(l, _)| (l - load).abs() < 1e-9)?;
        median(runs.iter().map(metric).collect())
    }

    /// The highest median throughput among loads whose median short p99 meets the SLO with
    /// (almost) every request answered.
    fn throughput_at_slo(&self, slo_us: f64) -> Option<f64> {
        self.points
            .iter()
            .filter(|(load, _)| {
                let p99 = self.at(*load, |m| m.short_us[1]);
                let unanswered =
                    self.at(*load, |m| m.unanswered as f64 / m.committed.max(1) as f64);
                p99.is_some_and(|p| p <= slo_us) && unanswered.is_some_and(|u| u <= 0.001)
            })
            .filter_map(|(load, _)| self.at(*load, |m| m.achieved_rps))
            .fold(None, |best, rps| Some(best.map_or(rps, |b: f64| b.max(rps))))
    }
}

/// What every sweep shares.
struct Plan<'a> {
    common: &'a Common,
    loads: Vec<f64>,
    repeats: u64,
}

impl Plan<'_> {
    fn sweep(
        &self,
        label: String,
        setup: Setup,
        mitigations: &'static str,
        csv: &mut std::fs::File,
    ) -> anyhow::Result<Series> {
        let mut points = Vec::new();
        for &load in &self.loads {
            let mut runs = Vec::new();
            for repeat in 0..self.repeats {
                let mut point = self.common.point(setup.clone(), load);
                point.seed = self.common.seed + repeat;
                let measured =
                    point::run(&point).with_context(|| format!("{label} at load {load}"))?;
                let line = row(
                    setup.mode.name(),
                    &setup.policy,
                    setup.delay_ns,
                    mitigations,
                    load,
                    &measured,
                );
                eprintln!("sched-bench: {line}");
                writeln!(csv, "{line}")?;
                runs.push(measured);
            }
            points.push((load, runs));
        }
        Ok(Series { label, setup, mitigations, points })
    }
}

fn csv_file(out: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    let mut file = std::fs::File::create(out.join(name))
        .with_context(|| format!("creating {}", out.join(name).display()))?;
    writeln!(file, "{HEADER}")?;
    Ok(file)
}

/// Runs every sweep and writes `sched-*.csv` and `sched.md` into `out`.
pub(crate) fn run(
    common: &Common,
    out: &Path,
    loads: &[f64],
    slo_us: f64,
    repeats: u64,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let mid = 0.5;
    let mut loads = loads.to_vec();
    if !loads.iter().any(|l| (l - mid).abs() < 1e-9) {
        loads.push(mid);
    }
    loads.sort_by(f64::total_cmp);
    let plan = Plan { common, loads: loads.clone(), repeats: repeats.max(1) };

    let mut csv = csv_file(out, "sched-policies.csv")?;
    let mut policies = Vec::new();
    for (mode, policy) in
        [(Mode::Local, "fifo"), (Mode::OnHost, "fifo"), (Mode::OnHost, "shinjuku")]
    {
        let label = format!("{} {policy}", mode.name());
        policies.push(plan.sweep(label, common.setup(mode, policy)?, "all", &mut csv)?);
    }

    let mut csv = csv_file(out, "sched-delay.csv")?;
    let on_host = common.setup(Mode::OnHost, "shinjuku")?;
    let mut delays = vec![plan.sweep("on-host".into(), on_host, "all", &mut csv)?];
    for delay_ns in [0u32, 500, 1000, 2000, 5000] {
        let mut setup = common.setup(Mode::Offloaded, "shinjuku")?;
        setup.delay_ns = delay_ns;
        let label = format!("offloaded {:.1} µs", f64::from(delay_ns) / 1000.0);
        delays.push(plan.sweep(label, setup, "all", &mut csv)?);
    }

    let mut csv = csv_file(out, "sched-ablation.csv")?;
    let mut ablation = Vec::new();
    for (mitigations, depth, batch, prefetch) in [
        ("all", 1, 32, true),
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
        ablation.push(plan.sweep(mitigations.into(), setup, mitigations, &mut csv)?);
    }

    let report = summary(&plan, slo_us, &policies, &delays, &ablation);
    std::fs::write(out.join("sched.md"), report)?;
    eprintln!("sched-bench: wrote {}", out.join("sched.md").display());
    Ok(())
}

fn fmt_opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "—".into(), |v| format!("{v:.digits$}"))
}

fn stale_pct(m: &Measured) -> f64 {
    100.0 * m.stale as f64 / (m.committed + m.stale).max(1) as f64
}

fn summary(
    plan: &Plan<'_>,
    slo_us: f64,
    policies: &[Series],
    delays: &[Series],
    ablation: &[Series],
) -> String {
    let common = plan.common;
    let mut md = String::new();
    let mid = 0.5;
    let p99 = |s: &Series| s.at(mid, |m| m.short_us[1]);
    let _ = writeln!(md, "## Measured summary (generated by `sched-bench experiment`)\n");
    let _ = writeln!(
        md,
        "Mix: {:.1} % × {} µs, {:.1} % × {} µs; Poisson arrivals; {} ms per run ({} ms warm-up); \
         {} runs per point (different arrival seeds), medians reported; workers on CPUs {:?}, \
         agent on CPU {}; Shinjuku slice {} µs; loads {:?}; SLO: short p99 ≤ {slo_us} µs.\n",
        100.0 * (1.0 - common.long_fraction),
        common.short_us,
        100.0 * common.long_fraction,
        common.long_us,
        common.duration_ms,
        common.warmup_ms,
        plan.repeats,
        common.worker_cpus,
        common.agent_cpu,
        common.slice_us,
        plan.loads,
    );
    let _ = writeln!(md, "### FIFO vs Shinjuku at load {mid}\n");
    let _ = writeln!(
        md,
        "| setup | short p50 µs | short p99 µs | short p99.9 µs | long p99 µs | \
         throughput at SLO (req/s) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for series in policies {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            series.label,
            fmt_opt(series.at(mid, |m| m.short_us[0]), 1),
            fmt_opt(p99(series), 1),
            fmt_opt(series.at(mid, |m| m.short_us[2]), 1),
            fmt_opt(series.at(mid, |m| m.long_p99_us), 0),
            fmt_opt(series.throughput_at_slo(slo_us), 0),
        );
    }
    if let (Some(fifo), Some(shinjuku)) =
        (policies.get(1).and_then(p99), policies.get(2).and_then(p99))
    {
        let _ = writeln!(
            md,
            "\nOn-host FIFO / Shinjuku short p99 at load {mid}: **{:.1}×**.\n",
            fifo / shinjuku
        );
    }

    let _ = writeln!(md, "### On-host vs offloaded (Shinjuku, all mitigations)\n");
    let _ = writeln!(
        md,
        "| setup | throughput at SLO (req/s) | vs on-host | short p99 µs at {mid} | \
         stale % at {mid} | worker sched CPU % | agent CPU % of a core (where) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let base = delays.first().and_then(|s| s.throughput_at_slo(slo_us));
    for series in delays {
        let tput = series.throughput_at_slo(slo_us);
        let place = if series.setup.mode == Mode::OnHost { "host" } else { "off host" };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} ({place}) |",
            series.label,
            fmt_opt(tput, 0),
            fmt_opt(tput.zip(base).map(|(t, b)| t / b), 3),
            fmt_opt(p99(series), 1),
            fmt_opt(series.at(mid, stale_pct), 3),
            fmt_opt(series.at(mid, |m| 100.0 * m.worker_sched_frac), 2),
            fmt_opt(series.at(mid, |m| 100.0 * m.agent_cpu_frac), 0),
        );
    }

    let _ = writeln!(md, "\n### Ablation (offloaded Shinjuku, 1 µs delay)\n");
    let _ = writeln!(
        md,
        "| mitigations | throughput at SLO (req/s) | vs all | short p99 µs at {mid} | p99 vs all | \
         stale % at {mid} |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let all_tput = ablation.first().and_then(|s| s.throughput_at_slo(slo_us));
    let all_p99 = ablation.first().and_then(p99);
    for series in ablation {
        let tput = series.throughput_at_slo(slo_us);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            series.mitigations,
            fmt_opt(tput, 0),
            fmt_opt(tput.zip(all_tput).map(|(t, a)| t / a), 3),
            fmt_opt(p99(series), 1),
            fmt_opt(p99(series).zip(all_p99).map(|(p, a)| p / a), 2),
            fmt_opt(series.at(mid, stale_pct), 3),
        );
    }
    md
}
