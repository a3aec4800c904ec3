//! `sched-summary.md` from the sweep CSVs: medians over the runs of each point, and the load at
//! which each setup's short-request p99 crosses the SLO (interpolated between measured loads,
//! log-linearly in p99), converted to requests per second.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};

use crate::Common;

/// One CSV row, the fields the summary uses.
#[derive(Debug, Clone)]
struct Run {
    achieved_rps: f64,
    short_p50: f64,
    short_p99: f64,
    short_p999: f64,
    long_p99: f64,
    unanswered_frac: f64,
    stale_pct: f64,
    worker_sched_pct: f64,
    agent_cpu_pct: f64,
}

/// One setup across loads.
#[derive(Debug)]
struct Series {
    label: String,
    mode: String,
    policy: String,
    delay_ns: f64,
    mitigations: String,
    points: BTreeMap<u64, Vec<Run>>, // key: load in thousandths
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

const MID: u64 = 500;

impl Series {
    fn at(&self, load: u64, metric: impl Fn(&Run) -> f64) -> Option<f64> {
        median(self.points.get(&load)?.iter().map(metric).collect())
    }

    /// The least-disturbed run's value: this machine's stalls only ever add latency, so the
    /// minimum over runs estimates what the setup does when the VM leaves it alone.
    fn best(&self, load: u64, metric: impl Fn(&Run) -> f64) -> Option<f64> {
        self.points.get(&load)?.iter().map(metric).min_by(f64::total_cmp)
    }

    /// The offered load (fraction of capacity) at which the median of `metric` reaches
    /// `limit_us`, interpolated; `(load, true)` if even the highest load measured stays within.
    fn load_at(&self, metric: fn(&Run) -> f64, limit_us: f64, best: bool) -> Option<(f64, bool)> {
        let ok = |load: u64| {
            let p99 = if best { self.best(load, metric)? } else { self.at(load, metric)? };
            let answered = self.at(load, |r| r.unanswered_frac)? <= 0.001;
            Some((p99, answered))
        };
        let mut previous: Option<(f64, f64)> = None;
        for &load in self.points.keys() {
            let (p99, answered) = ok(load)?;
            let x = load as f64 / 1000.0;
            if p99 > limit_us || !answered {
                let (x0, p0) = previous?;
                let t = (limit_us.ln() - p0.ln()) / (p99.ln() - p0.ln());
                return Some((x0 + t.clamp(0.0, 1.0) * (x - x0), false));
            }
            previous = Some((x, p99));
        }
        previous.map(|(x, _)| (x, true))
    }

    /// Requests per second finished at the highest offered load, if that load is beyond the
    /// capacity (≥ 1): the most the setup sustains.
    fn max_rps(&self) -> Option<f64> {
        let (&load, _) = self.points.last_key_value()?;
        if load < 1000 {
            return None;
        }
        self.at(load, |r| r.achieved_rps)
    }
}

fn parse(path: &Path) -> anyhow::Result<Vec<Series>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty CSV")?.split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let Some(columns) = [
        "mode",
        "policy",
        "delay_ns",
        "mitigations",
        "load",
        "short_p50_us",
        "short_p99_us",
        "short_p999_us",
        "long_p99_us",
        "unanswered",
        "committed",
        "stale_pct",
        "worker_sched_pct",
        "agent_cpu_pct",
        "achieved_rps",
    ]
    .iter()
    .map(|name| column(name))
    .collect::<Option<Vec<usize>>>() else {
        bail!("{}: not a sched-bench CSV", path.display());
    };
    let mut series: Vec<Series> = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let get = |i: usize| f.get(columns[i]).copied().unwrap_or("");
        let num = |i: usize| get(i).parse::<f64>().unwrap_or(f64::NAN);
        let (mode, policy, delay_ns, mitigations) = (get(0), get(1), num(2), get(3));
        let label = match (mode, mitigations) {
            ("offloaded", "all") => format!("offloaded {} µs", delay_ns / 1000.0),
            (_, "all") => format!("{mode} {policy}"),
            (_, other) => format!("offloaded {} µs, {other}", delay_ns / 1000.0),
        };
        let run = Run {
            achieved_rps: num(14),
            short_p50: num(5),
            short_p99: num(6),
            short_p999: num(7),
            long_p99: num(8),
            unanswered_frac: num(9) / num(10).max(1.0),
            stale_pct: num(11),
            worker_sched_pct: num(12),
            agent_cpu_pct: num(13),
        };
        let load = thousandths(num(4));
        let index = match series.iter().position(|s| s.label == label) {
            Some(index) => index,
            None => {
                series.push(Series {
                    label,
                    mode: mode.into(),
                    policy: policy.into(),
                    delay_ns,
                    mitigations: mitigations.into(),
                    points: BTreeMap::new(),
                });
                series.len() - 1
            }
        };
        series[index].points.entry(load).or_default().push(run);
    }
    Ok(series)
}

/// A load (a fraction, written with two decimals) as an exact map key.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "clamped to 0..=10 000 first"
)]
fn thousandths(load: f64) -> u64 {
    (load * 1000.0).round().clamp(0.0, 10_000.0) as u64
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "—".into(), |v| format!("{v:.digits$}"))
}

/// Writes `sched-summary.md` into `out` from `sched.csv` there.
pub(crate) fn write(common: &Common, out: &Path, slo_us: f64) -> anyhow::Result<()> {
    let all = parse(&out.join("sched.csv"))?;
    let pick = |keep: &dyn Fn(&Series) -> bool| all.iter().filter(|s| keep(s)).collect::<Vec<_>>();
    let shinjuku = |s: &Series| s.policy == "shinjuku" && s.mitigations == "all";
    let policies = pick(&|s| s.mode != "offloaded" && s.mitigations == "all");
    let delays = pick(&|s| shinjuku(s) && (s.mode == "on-host" || s.mode == "offloaded"));
    let ablation = pick(&|s| {
        s.mode == "offloaded" && s.delay_ns == 1000.0 && (s.mitigations != "all" || shinjuku(s))
    });
    let capacity_rps = common.worker_cpus.len() as f64 * 1e9 / common.mix().mean_ns();
    let runs = all.first().and_then(|s| s.points.values().next()).map_or(0, Vec::len);
    let loads: Vec<f64> = all
        .first()
        .map(|s| s.points.keys().map(|l| *l as f64 / 1000.0).collect())
        .unwrap_or_default();
    // Three ways to say how much load a setup carries: the p99 SLO (what the issue asks; on
    // this machine its tail is set by stalls of the VM), a p50 limit of five short service
    // times (queueing, robust to rare stalls), and the throughput at overload.
    let p50_limit_us = 5.0 * common.short_us as f64;
    let p99_of: fn(&Run) -> f64 = |r| r.short_p99;
    let p50_of: fn(&Run) -> f64 = |r| r.short_p50;
    let load_cell = |s: &Series, metric: fn(&Run) -> f64, limit: f64, best: bool| match s
        .load_at(metric, limit, best)
    {
        Some((load, false)) => format!("{load:.3}"),
        Some((load, true)) => format!("≥ {load:.2}"),
        None => "< lowest".into(),
    };
    let load_ratio = |s: &Series, base: &Series, metric: fn(&Run) -> f64, limit: f64, best| {
        let (a, b) = (s.load_at(metric, limit, best)?, base.load_at(metric, limit, best)?);
        (!a.1 && !b.1).then_some(a.0 / b.0)
    };
    let p99 = |s: &Series| s.at(MID, |r| r.short_p99);

    let mut md = String::new();
    let _ = writeln!(md, "## Measured summary (generated by `sched-bench`)\n");
    let _ = writeln!(
        md,
        "Mix: {:.1} % × {} µs, {:.1} % × {} µs (capacity {capacity_rps:.0} req/s per worker); \
         Poisson arrivals; {} ms per run ({} ms warm-up); {runs} runs per point (arrival seeds \
         {}..), setups interleaved, medians reported; workers on CPUs {:?}, agent on CPU {}; \
         Shinjuku slice {} µs; offered loads {loads:?} (fractions of the capacity). \
         *Load at p99 SLO*: where the median short p99 crosses {slo_us} µs; *load at p50 limit*: \
         where the median short p50 crosses {p50_limit_us} µs; both interpolated between \
         measured loads. *Max req/s*: finished per second when offered more than the capacity.\n",
        100.0 * (1.0 - common.long_fraction),
        common.short_us,
        100.0 * common.long_fraction,
        common.long_us,
        common.duration_ms,
        common.warmup_ms,
        common.seed,
        common.worker_cpus,
        common.agent_cpu,
        common.slice_us,
    );
    if let Ok(noise) = std::fs::read_to_string(out.join("sched-noise.txt")) {
        let _ = writeln!(md, "Noise floor (`sched-bench noise`): {}", noise.trim_end());
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "### FIFO vs Shinjuku (load 0.5)\n");
    let _ = writeln!(
        md,
        "Latency cells give the median over runs and, in brackets, the best (least disturbed) \
         run. Load cells: from the medians / from the best runs.\n"
    );
    let p99_cell =
        |s: &Series| format!("{} ({})", opt(p99(s), 0), opt(s.best(MID, |r| r.short_p99), 0));
    let loads_cell = |s: &Series, metric: fn(&Run) -> f64, limit: f64| {
        format!("{} / {}", load_cell(s, metric, limit, false), load_cell(s, metric, limit, true))
    };
    let ratios_cell = |s: &Series, base: &Series, metric: fn(&Run) -> f64, limit: f64| {
        format!(
            "{} / {}",
            opt(load_ratio(s, base, metric, limit, false), 3),
            opt(load_ratio(s, base, metric, limit, true), 3)
        )
    };
    let _ = writeln!(
        md,
        "| setup | short p50 µs | short p99 µs | short p99.9 µs | long p99 µs | load at p99 SLO \
         | load at p50 limit |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for s in &policies {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            s.label,
            opt(s.at(MID, |r| r.short_p50), 1),
            p99_cell(s),
            opt(s.at(MID, |r| r.short_p999), 0),
            opt(s.at(MID, |r| r.long_p99), 0),
            loads_cell(s, p99_of, slo_us),
            loads_cell(s, p50_of, p50_limit_us),
        );
    }
    let find = |label: &str| policies.iter().find(|s| s.label == label);
    if let (Some(fifo), Some(shinjuku)) = (find("on-host fifo"), find("on-host shinjuku")) {
        let best = |s: &Series| s.best(MID, |r| r.short_p99);
        let _ = writeln!(
            md,
            "\nOn-host FIFO / Shinjuku short p99 at load 0.5: **{}×** (medians), **{}×** (best \
             runs).\n",
            opt(p99(fifo).zip(p99(shinjuku)).map(|(f, s)| f / s), 1),
            opt(best(fifo).zip(best(shinjuku)).map(|(f, s)| f / s), 1),
        );
    }

    // The columns both comparisons share: the three capacity measures against `base`, then
    // the latencies at load 0.5.
    let capacity_cells = |s: &Series, base: &Series| {
        let max = s.max_rps();
        format!(
            "{} | {} | {} | {} | {} ({}) | {} / {}",
            loads_cell(s, p99_of, slo_us),
            ratios_cell(s, base, p99_of, slo_us),
            loads_cell(s, p50_of, p50_limit_us),
            ratios_cell(s, base, p50_of, p50_limit_us),
            opt(max, 0),
            opt(max.zip(base.max_rps()).map(|(a, b)| a / b), 3),
            opt(s.at(MID, |r| r.short_p50), 1),
            p99_cell(s),
        )
    };

    let _ = writeln!(md, "### On-host vs offloaded (Shinjuku, all mitigations)\n");
    let _ = writeln!(
        md,
        "| setup | load at p99 SLO | vs on-host | load at p50 limit | vs on-host | max req/s (vs \
         on-host) | short p50 / p99 µs at 0.5 | stale % | worker sched CPU % | agent CPU % of \
         a core (where) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    if let Some(base) = delays.iter().find(|s| s.mode == "on-host") {
        for s in &delays {
            let place = if s.mode == "offloaded" { "off host" } else { "host" };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} ({place}) |",
                s.label,
                capacity_cells(s, base),
                opt(s.at(MID, |r| r.stale_pct), 3),
                opt(s.at(MID, |r| r.worker_sched_pct), 2),
                opt(s.at(MID, |r| r.agent_cpu_pct), 0),
            );
        }
    }

    let _ = writeln!(md, "\n### Ablation (offloaded Shinjuku, 1 µs delay)\n");
    let _ = writeln!(
        md,
        "| mitigations | load at p99 SLO | vs all | load at p50 limit | vs all | max req/s (vs \
         all) | short p50 / p99 µs at 0.5 |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    if let Some(all) = ablation.iter().find(|s| s.mitigations == "all") {
        for s in &ablation {
            let _ = writeln!(md, "| {} | {} |", s.label, capacity_cells(s, all));
        }
    }
    std::fs::write(out.join("sched-summary.md"), md)?;
    eprintln!("sched-bench: wrote {}", out.join("sched-summary.md").display());
    Ok(())
}
