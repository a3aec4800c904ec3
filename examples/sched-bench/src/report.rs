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

    /// The offered load (fraction of capacity) at which the median short p99 reaches `slo_us`,
    /// interpolated; `(load, true)` if even the highest load measured stays within it.
    fn load_at_slo(&self, slo_us: f64) -> Option<(f64, bool)> {
        let ok = |load: u64| {
            let p99 = self.at(load, |r| r.short_p99)?;
            let answered = self.at(load, |r| r.unanswered_frac)? <= 0.001;
            Some((p99, answered))
        };
        let mut previous: Option<(f64, f64)> = None;
        for &load in self.points.keys() {
            let (p99, answered) = ok(load)?;
            let x = load as f64 / 1000.0;
            if p99 > slo_us || !answered {
                let (x0, p0) = previous?;
                let t = (slo_us.ln() - p0.ln()) / (p99.ln() - p0.ln());
                return Some((x0 + t.clamp(0.0, 1.0) * (x - x0), false));
            }
            previous = Some((x, p99));
        }
        previous.map(|(x, _)| (x, true))
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
    let at_slo = |s: &Series| match s.load_at_slo(slo_us) {
        Some((load, false)) => format!("{load:.3} ({:.0})", load * capacity_rps),
        Some((load, true)) => format!("≥ {load:.2} ({:.0})", load * capacity_rps),
        None => "< lowest load".into(),
    };
    let ratio = |s: &Series, base: &Series| {
        let (a, b) = (s.load_at_slo(slo_us)?, base.load_at_slo(slo_us)?);
        (!a.1 && !b.1).then_some(a.0 / b.0)
    };
    let p99 = |s: &Series| s.at(MID, |r| r.short_p99);

    let mut md = String::new();
    let _ = writeln!(md, "## Measured summary (generated by `sched-bench`)\n");
    let _ = writeln!(
        md,
        "Mix: {:.1} % × {} µs, {:.1} % × {} µs (capacity {capacity_rps:.0} req/s per worker); \
         Poisson arrivals; {} ms per run ({} ms warm-up); {runs} runs per point (arrival seeds \
         {}..), medians reported; workers on CPUs {:?}, agent on CPU {}; Shinjuku slice {} µs; \
         loads {loads:?}; SLO: short p99 ≤ {slo_us} µs. \"Load at SLO\": where the median short \
         p99 crosses the SLO, interpolated between measured loads (req/s in brackets).\n",
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
    let _ = writeln!(md, "### FIFO vs Shinjuku (load 0.5)\n");
    let _ = writeln!(
        md,
        "| setup | short p50 µs | short p99 µs | short p99.9 µs | long p99 µs | load at SLO |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for s in &policies {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            s.label,
            opt(s.at(MID, |r| r.short_p50), 1),
            opt(p99(s), 1),
            opt(s.at(MID, |r| r.short_p999), 1),
            opt(s.at(MID, |r| r.long_p99), 0),
            at_slo(s),
        );
    }
    let fifo = policies.iter().find(|s| s.label == "on-host fifo").and_then(|s| p99(s));
    let shinjuku = policies.iter().find(|s| s.label == "on-host shinjuku").and_then(|s| p99(s));
    if let Some((fifo, shinjuku)) = fifo.zip(shinjuku) {
        let _ = writeln!(
            md,
            "\nOn-host FIFO / Shinjuku short p99 at load 0.5: **{:.1}×**.\n",
            fifo / shinjuku
        );
    }

    let _ = writeln!(md, "### On-host vs offloaded (Shinjuku, all mitigations)\n");
    let _ = writeln!(
        md,
        "| setup | load at SLO | vs on-host | short p50 µs at 0.5 | short p99 µs at 0.5 | \
         stale % | worker sched CPU % | agent CPU % of a core (where) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    if let Some(base) = delays.iter().find(|s| s.mode == "on-host") {
        for s in &delays {
            let place = if s.mode == "offloaded" { "off host" } else { "host" };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} ({place}) |",
                s.label,
                at_slo(s),
                opt(ratio(s, base), 3),
                opt(s.at(MID, |r| r.short_p50), 1),
                opt(p99(s), 1),
                opt(s.at(MID, |r| r.stale_pct), 3),
                opt(s.at(MID, |r| r.worker_sched_pct), 2),
                opt(s.at(MID, |r| r.agent_cpu_pct), 0),
            );
        }
    }

    let _ = writeln!(md, "\n### Ablation (offloaded Shinjuku, 1 µs delay)\n");
    let _ = writeln!(
        md,
        "| mitigations | load at SLO | vs all | short p50 µs at 0.5 | short p99 µs at 0.5 | \
         p99 vs all |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    if let Some(all) = ablation.iter().find(|s| s.mitigations == "all") {
        for s in &ablation {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                s.label,
                at_slo(s),
                opt(ratio(s, all), 3),
                opt(s.at(MID, |r| r.short_p50), 1),
                opt(p99(s), 1),
                opt(p99(s).zip(p99(all)).map(|(p, a)| p / a), 2),
            );
        }
    }
    std::fs::write(out.join("sched-summary.md"), md)?;
    eprintln!("sched-bench: wrote {}", out.join("sched-summary.md").display());
    Ok(())
}
