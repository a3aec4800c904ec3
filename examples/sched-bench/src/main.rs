//! `sched-bench`: the scheduling experiment. `sched-bench point ...` measures one setup at
//! one load; `sched-bench experiment --out DIR` runs the report's sweeps and writes CSV files
//! and `sched-summary.md` (`sched-bench report` rebuilds the summary from the CSV files; the
//! plot is drawn from them by `scripts/sched-plot.py`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use link::LivenessConfig;
use sched_bench::modes::{Mode, Setup};
use sched_bench::point::{self, Point};
use sched_bench::workload::Mix;

mod experiment;
mod noise;
mod report;

#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure one setup at one offered load.
    Point {
        #[command(flatten)]
        common: Common,
        /// Who schedules.
        #[arg(long, default_value = "on-host")]
        mode: Mode,
        /// Policy (fifo, shinjuku).
        #[arg(long, default_value = "shinjuku")]
        policy: String,
        /// Offered load, as a fraction of the workers' capacity.
        #[arg(long, default_value_t = 0.5)]
        load: f64,
        /// Emulated one-way link delay (offloaded mode), ns.
        #[arg(long, default_value_t = 0)]
        delay_ns: u32,
        /// Prestaging depth (0: off).
        #[arg(long, default_value_t = 1)]
        prestage_depth: u16,
        /// Events per worker per decision round (1: batching off).
        #[arg(long, default_value_t = 32)]
        event_batch: u16,
        /// Host-side prefetching of decisions.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        prefetch: bool,
    },
    /// Measure the machine's noise floor on the first worker CPU.
    Noise {
        #[command(flatten)]
        common: Common,
        /// How long to spin, seconds.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// Rebuild sched-summary.md from the CSV files an experiment left in --out.
    Report {
        #[command(flatten)]
        common: Common,
        /// Where the CSV files are.
        #[arg(long, default_value = "docs/results")]
        out: PathBuf,
        /// Short-request p99 SLO (µs).
        #[arg(long, default_value_t = 1000.0)]
        slo_us: f64,
    },
    /// Run the report's sweeps; write CSV files and sched-summary.md into --out.
    Experiment {
        #[command(flatten)]
        common: Common,
        /// Where to write the results.
        #[arg(long, default_value = "docs/results")]
        out: PathBuf,
        /// Offered loads to sweep.
        #[arg(long, value_delimiter = ',', default_value = "0.2,0.4,0.5,0.6,0.7,0.8,1.2")]
        loads: Vec<f64>,
        /// Short-request p99 SLO (µs) for "throughput at the SLO".
        #[arg(long, default_value_t = 1000.0)]
        slo_us: f64,
        /// Runs per point (seeds seed, seed+1, ...); the report uses medians.
        #[arg(long, default_value_t = 5)]
        repeats: u64,
    },
}

/// Flags every run shares.
#[derive(Debug, Clone, Args)]
pub(crate) struct Common {
    /// Worker CPUs (one worker each).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    worker_cpus: Vec<usize>,
    /// The agent's CPU (thread or ipu-cp process).
    #[arg(long, default_value_t = 0)]
    agent_cpu: usize,
    /// Shinjuku time slice, µs.
    #[arg(long, default_value_t = 20)]
    slice_us: u64,
    /// Short requests' service time, µs.
    #[arg(long, default_value_t = 10)]
    short_us: u64,
    /// Long requests' service time, µs.
    #[arg(long, default_value_t = 1000)]
    long_us: u64,
    /// Fraction of long requests.
    #[arg(long, default_value_t = 0.005)]
    long_fraction: f64,
    /// Arrival window per run, ms.
    #[arg(long, default_value_t = 1000)]
    duration_ms: u64,
    /// Warm-up at the start of each window (served, not recorded), ms.
    #[arg(long, default_value_t = 200)]
    warmup_ms: u64,
    /// Arrival seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The ipu-cp binary (default: next to this one).
    #[arg(long)]
    ipu_cp: Option<PathBuf>,
}

impl Common {
    fn mix(&self) -> Mix {
        Mix {
            short_ns: self.short_us * 1000,
            long_ns: self.long_us * 1000,
            long_fraction: self.long_fraction,
        }
    }

    fn ipu_cp(&self) -> anyhow::Result<PathBuf> {
        match &self.ipu_cp {
            Some(path) => Ok(path.clone()),
            None => ipu_cp::process::binary_next_to_exe()
                .context("no ipu-cp next to this binary: build it, or pass --ipu-cp"),
        }
    }

    /// A setup with every mitigation on, in `mode` under `policy`.
    fn setup(&self, mode: Mode, policy: &str) -> anyhow::Result<Setup> {
        Ok(Setup {
            mode,
            policy: policy.to_string(),
            slice_ns: self.slice_us * 1000,
            prestage_depth: 1,
            event_batch: 32,
            prefetch: true,
            delay_ns: 0,
            worker_cpus: self.worker_cpus.clone(),
            agent_cpu: Some(self.agent_cpu),
            ipu_cp: self.ipu_cp()?,
            liveness: LivenessConfig {
                heartbeat_interval_ns: 100_000,
                peer_timeout_ns: 50_000_000,
            },
            spin: true,
        })
    }

    fn point(&self, setup: Setup, load: f64) -> Point {
        Point {
            setup,
            mix: self.mix(),
            load,
            duration_ms: self.duration_ms,
            warmup_ms: self.warmup_ms,
            seed: self.seed,
        }
    }
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sched-bench: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (Command::Point { common, .. }
    | Command::Experiment { common, .. }
    | Command::Report { common, .. }
    | Command::Noise { common, .. }) = &cli.command;
    // This thread and the helpers it starts (the runtime's monitor) stay off the workers'
    // CPUs: they share the agent's CPU, where they only wake now and then.
    ipu_cp::pin_current_thread(common.agent_cpu).context("pinning to the agent CPU")?;
    match cli.command {
        Command::Point {
            common,
            mode,
            policy,
            load,
            delay_ns,
            prestage_depth,
            event_batch,
            prefetch,
        } => {
            let mut setup = common.setup(mode, &policy)?;
            setup.delay_ns = delay_ns;
            setup.prestage_depth = prestage_depth;
            setup.event_batch = event_batch;
            setup.prefetch = prefetch;
            let measured = point::run(&common.point(setup, load))?;
            println!("{}", experiment::HEADER);
            println!("{}", experiment::row(mode.name(), &policy, delay_ns, "all", load, &measured));
            Ok(())
        }
        Command::Report { common, out, slo_us } => report::write(&common, &out, slo_us),
        Command::Noise { common, seconds } => {
            println!("{}", noise::measure(common.worker_cpus[0], seconds)?);
            Ok(())
        }
        Command::Experiment { common, out, loads, slo_us, repeats } => {
            experiment::run(&common, &out, &loads, slo_us, repeats)
        }
    }
}
