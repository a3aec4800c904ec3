//! `conn-bench`: connection setup rate with the connection control local, on-host, or
//! offloaded to `ipu-cp`, prestaged or not. `conn-bench point` measures one setup;
//! `conn-bench experiment` interleaves every setup run by run and writes a CSV file and a
//! markdown report.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use conn_bench::{Churn, Mode, Rig, Setup};
use ipu_cp::net::AdmissionConfig;

#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure one setup.
    Point {
        #[command(flatten)]
        common: Common,
        /// Who admits and places.
        #[arg(long, default_value = "on-host")]
        mode: Mode,
        /// Admissions prestaged per listener (0: every SYN asks).
        #[arg(long, default_value_t = 16)]
        depth: u16,
        /// Emulated one-way link delay (offloaded), ns.
        #[arg(long, default_value_t = 1000)]
        delay_ns: u32,
    },
    /// Every setup, interleaved run by run; writes conn-setup.csv and conn-setup.md.
    Experiment {
        #[command(flatten)]
        common: Common,
        /// Runs per setup.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
        runs: u32,
        /// Prestaging depth of the prestaged setups.
        #[arg(long, default_value_t = 16)]
        depth: u16,
        /// Attempts in flight, one table each (replaces --concurrency).
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        concurrencies: Vec<usize>,
        /// Where the report goes.
        #[arg(long, default_value = "docs/results")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// Worker stacks.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// Connection attempts in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,
    /// Seconds per run.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// CPU of the client and the plane (this thread).
    #[arg(long, default_value_t = 1)]
    bench_cpu: usize,
    /// CPU of the agent (thread or ipu-cp).
    #[arg(long, default_value_t = 0)]
    agent_cpu: usize,
    /// The ipu-cp binary (default: next to this one).
    #[arg(long)]
    ipu_cp: Option<PathBuf>,
}

impl Common {
    fn setup(&self, mode: Mode, depth: u16, delay_ns: u32) -> anyhow::Result<Setup> {
        let ipu_cp = match &self.ipu_cp {
            Some(path) => path.clone(),
            None => ipu_cp::process::binary_next_to_exe()
                .context("no ipu-cp next to this binary: build it, or pass --ipu-cp")?,
        };
        Ok(Setup {
            mode,
            depth,
            delay_ns,
            workers: self.workers,
            agent_cpu: Some(self.agent_cpu),
            spin: true,
            ipu_cp,
            admission: AdmissionConfig::default(),
        })
    }

    fn duration(&self) -> anyhow::Result<Duration> {
        anyhow::ensure!(self.seconds > 0.0 && self.seconds <= 60.0, "--seconds: 0 < s ≤ 60");
        Ok(Duration::from_secs_f64(self.seconds))
    }
}

fn run(setup: &Setup, common: &Common, concurrency: usize, tag: &str) -> anyhow::Result<Churn> {
    let mut rig = Rig::start(setup, tag)?;
    rig.churn(concurrency, common.duration()?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Point { common, mode, depth, delay_ns } => {
            ipu_cp::pin_current_thread(common.bench_cpu).context("pinning to --bench-cpu")?;
            let setup = common.setup(mode, depth, delay_ns)?;
            let churn = run(&setup, &common, usize::try_from(common.concurrency)?, "point")?;
            println!("{}: {}", setup.label(), describe(&churn));
        }
        Command::Experiment { common, runs, depth, concurrencies, out } => {
            ipu_cp::pin_current_thread(common.bench_cpu).context("pinning to --bench-cpu")?;
            anyhow::ensure!(
                !concurrencies.is_empty() && concurrencies.iter().all(|&c| (1..=1024).contains(&c)),
                "--concurrencies: values in 1..=1024"
            );
            experiment(&common, runs, depth, &concurrencies, &out)?;
        }
    }
    Ok(())
}

fn describe(churn: &Churn) -> String {
    let c = &churn.control;
    format!(
        "{:.0} conn/s, setup p50 {} µs p99 {} µs, refused {}; placed prestaged {} requested {} \
         local {}",
        churn.rate_per_s(),
        churn.setup_us.value_at_quantile(0.5),
        churn.setup_us.value_at_quantile(0.99),
        churn.refused,
        c.placed_prestaged,
        c.placed_requested,
        c.placed_local
    )
}

fn experiment(
    common: &Common,
    runs: u32,
    depth: u16,
    concurrencies: &[usize],
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let setups = vec![
        common.setup(Mode::Local, 0, 0)?,
        common.setup(Mode::OnHost, 0, 0)?,
        common.setup(Mode::OnHost, depth, 0)?,
        common.setup(Mode::Offloaded, 0, 1000)?,
        common.setup(Mode::Offloaded, depth, 1000)?,
        common.setup(Mode::Offloaded, 0, 5000)?,
        common.setup(Mode::Offloaded, depth, 5000)?,
    ];
    let mut csv = String::from(
        "concurrency,setup,mode,delay_ns,depth,run,conn_per_s,p50_us,p99_us,refused,prestaged,\
         requested,local\n",
    );
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut report_text = format!(
        "# Connection setup: control local, on-host, offloaded; prestaged or not\n\n\
         Generated by `cargo build --release -p ipu-cp -p conn-bench && \
         ./target/release/conn-bench {}` (the numbers below are that run's). A client stack \
         opens connections to a listener on a plane of worker stacks over an in-memory wire, N \
         attempts in flight; a connection \
         counts once the client sees it established, then both ends let go. Admissions come \
         from the host's local policy, from `ipu-cp`'s `admission` policy in an agent thread \
         (on-host), or from the `ipu-cp` process over memfd shared memory with an emulated \
         one-way link delay (offloaded); prestaged (admission tokens, depth {depth}) or asked \
         per SYN (depth 0). Interpretation: `docs/results/netstack.md`.\n\n\
         {runs} interleaved runs of {} s per setup; {} worker stacks; agent on CPU {}, client \
         and plane on CPU {}.\n",
        args.join(" "),
        common.seconds,
        common.workers,
        common.agent_cpu,
        common.bench_cpu
    );
    for &concurrency in concurrencies {
        let mut results: Vec<Vec<Churn>> = vec![Vec::new(); setups.len()];
        for run_index in 0..runs {
            for (index, setup) in setups.iter().enumerate() {
                let tag = format!("{concurrency}-{run_index}-{index}");
                let churn = run(setup, common, concurrency, &tag)?;
                eprintln!(
                    "[{concurrency} in flight, run {}/{runs}] {}: {}",
                    run_index + 1,
                    setup.label(),
                    describe(&churn)
                );
                let c = &churn.control;
                writeln!(
                    csv,
                    "{concurrency},{},{},{},{},{},{:.0},{},{},{},{},{},{}",
                    setup.label(),
                    setup.mode.name(),
                    setup.delay_ns,
                    setup.depth,
                    run_index,
                    churn.rate_per_s(),
                    churn.setup_us.value_at_quantile(0.5),
                    churn.setup_us.value_at_quantile(0.99),
                    churn.refused,
                    c.placed_prestaged,
                    c.placed_requested,
                    c.placed_local
                )?;
                results[index].push(churn);
            }
        }
        let _ = write!(report_text, "\n### {concurrency} connection attempt(s) in flight\n\n");
        report_text.push_str(&report(&setups, &results));
    }
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("conn-setup.csv"), csv)?;
    std::fs::write(out.join("conn-setup.md"), &report_text)?;
    print!("{report_text}");
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn report(setups: &[Setup], results: &[Vec<Churn>]) -> String {
    let rates: Vec<(f64, f64)> = results
        .iter()
        .map(|churns| {
            let mut r: Vec<f64> = churns.iter().map(Churn::rate_per_s).collect();
            let best = r.iter().copied().fold(0.0, f64::max);
            (median(&mut r), best)
        })
        .collect();
    let mut md = String::new();
    md.push_str("| setup | conn/s median | conn/s best | setup p50 / p99 µs (median run) ");
    md.push_str("| placed prestaged / requested / local (all runs) |\n");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for ((setup, churns), (med, best)) in setups.iter().zip(results).zip(&rates) {
        let mut by_rate: Vec<&Churn> = churns.iter().collect();
        by_rate.sort_by(|a, b| a.rate_per_s().total_cmp(&b.rate_per_s()));
        let mid = by_rate[by_rate.len() / 2];
        let sum = |f: fn(&Churn) -> u64| churns.iter().map(f).sum::<u64>();
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {} / {} | {} / {} / {} |",
            setup.label(),
            med,
            best,
            mid.setup_us.value_at_quantile(0.5),
            mid.setup_us.value_at_quantile(0.99),
            sum(|c| c.control.placed_prestaged),
            sum(|c| c.control.placed_requested),
            sum(|c| c.control.placed_local),
        );
    }
    // Runs are interleaved: run i of every setup ran back to back, so the ratio within a run
    // pair cancels the machine's slow drifts; its median over pairs is the headline.
    let paired = |a: usize, b: usize, f: fn(&Churn) -> f64| {
        let mut ratios: Vec<f64> =
            results[a].iter().zip(&results[b]).map(|(x, y)| f(x) / f(y)).collect();
        median(&mut ratios)
    };
    let p50 = |c: &Churn| c.setup_us.value_at_quantile(0.5) as f64;
    let ratio = |a: usize, b: usize| (rates[a].0 / rates[b].0, rates[a].1 / rates[b].1);
    let mut text = md;
    text.push_str(
        "\nRatios of the rate: median of run-pair ratios; of median runs; of best runs. Last: \
         the inverse ratio of the setup time p50 (median of run pairs; above 1: faster).\n\n",
    );
    for (name, a, b) in [
        ("offloaded 1 µs prestaged / on-host prestaged", 4, 2),
        ("offloaded 5 µs prestaged / on-host prestaged", 6, 2),
        ("offloaded 1 µs not prestaged / on-host not prestaged", 3, 1),
        ("offloaded 5 µs not prestaged / on-host not prestaged", 5, 1),
        ("on-host prestaged / local", 2, 0),
    ] {
        let (m, best) = ratio(a, b);
        let pairs = paired(a, b, Churn::rate_per_s);
        let latency = paired(b, a, p50);
        let _ =
            writeln!(text, "- {name}: **{pairs:.3}**; {m:.3}; {best:.3}; setup time {latency:.3}");
    }
    text
}
