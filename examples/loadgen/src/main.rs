//! `loadgen`: open-loop load against a memcached-protocol server. `loadgen run` sweeps rates
//! against an `rpc-server` it starts on a shared-memory wire (`--server wire`) or against any
//! server over kernel sockets (`--server HOST:PORT`), and writes CSV; `loadgen demo` is the
//! README's main demo: `ipu-cp`, `rpc-server` and this client, with the connection control
//! on-host and then offloaded.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use host_dp::ServiceMode as Mode;
use ipu_cp::process::ControlPlane;
use loadgen::engine::{self, Mix, Point, Transport};
use loadgen::{KernelTransport, StackTransport, WireServer};

#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sweep offered rates against one server; print a table, write CSV.
    Run {
        #[command(flatten)]
        load: Load,
        /// `wire`: start rpc-server on a shared-memory wire and use our stack; or HOST:PORT
        /// of any memcached-protocol server, over kernel sockets.
        #[arg(long, default_value = "wire")]
        server: String,
        /// rpc-server's connection control (with --server wire).
        #[arg(long, default_value = "local")]
        control: Mode,
        /// The server started with --server wire: rpc-server, or rocksdb-server (on a fresh
        /// database in a temporary folder; it answers SCANs).
        #[arg(long, default_value = "rpc-server", value_parser = ["rpc-server", "rocksdb-server"])]
        wire_server: String,
        /// An extra flag for the server started with --server wire (repeatable), e.g.
        /// `--server-arg=--sched --server-arg=on-host`.
        #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
        server_args: Vec<String>,
        /// Where to write the CSV rows.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// The first column of the table and the CSV (default: the control mode for a wire
        /// server, `kernel` otherwise).
        #[arg(long)]
        label: Option<String>,
    },
    /// The main demo: on-host vs offloaded connection control, a few rates each.
    Demo {
        #[command(flatten)]
        load: Load,
        /// Also hand rpc-server's task scheduling to the agent (on-host, then offloaded). It
        /// wants cores of its own: on 2 vCPUs the client, the worker and the agents time-share
        /// and every request waits milliseconds.
        #[arg(long)]
        sched: bool,
    },
}

#[derive(Debug, Args)]
struct Load {
    /// Offered rates, requests per second.
    #[arg(long, value_delimiter = ',', default_value = "5000,20000,40000")]
    rates: Vec<f64>,
    /// Seconds per rate.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Connections.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    conns: u64,
    /// Fraction of GETs (the rest are SETs).
    #[arg(long, default_value_t = 0.9)]
    get_ratio: f64,
    /// Fraction of requests that are SCANs (for ordered servers, e.g. rocksdb-server).
    #[arg(long, default_value_t = 0.0)]
    scan_ratio: f64,
    /// Items per SCAN.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    scan_count: u32,
    /// Keys (all preloaded).
    #[arg(long, default_value_t = 10_000)]
    keys: u32,
    /// Bytes per value.
    #[arg(long, default_value_t = 64)]
    value_bytes: usize,
    /// Skew: the first FRACTION of the keys get --hot-share of the requests (0 < f < 1).
    #[arg(long, value_name = "FRACTION", requires = "hot_share")]
    hot_keys: Option<f64>,
    /// The share of requests that go to the --hot-keys (0..=1).
    #[arg(long, value_name = "SHARE", requires = "hot_keys")]
    hot_share: Option<f64>,
    /// Values of words (LZ4 compresses them about 2×, like text) instead of one byte repeated.
    #[arg(long)]
    text_values: bool,
    /// Sleep this long, µs, after a poll that found nothing to do (0: spin). On a machine
    /// with fewer cores than busy threads this leaves the client's core to the server and
    /// its control plane, at the cost of up to this much (plus a wakeup) on each latency.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    idle_sleep_us: u64,
    /// rpc-server workers (with a wire server).
    #[arg(long, default_value_t = 1)]
    workers: u16,
    /// Client threads, each with its share of the connections and the rate (kernel sockets
    /// only; their histograms are merged).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    threads: u64,
}

impl Load {
    fn mix(&self) -> anyhow::Result<Mix> {
        anyhow::ensure!((0.0..=1.0).contains(&self.get_ratio), "--get-ratio: 0..=1");
        anyhow::ensure!((0.0..=1.0).contains(&self.scan_ratio), "--scan-ratio: 0..=1");
        anyhow::ensure!(self.keys > 0 && self.value_bytes > 0, "--keys, --value-bytes: > 0");
        anyhow::ensure!(self.seconds > 0.0 && self.seconds <= 600.0, "--seconds: 0 < s ≤ 600");
        anyhow::ensure!(self.rates.iter().all(|&r| r > 0.0), "--rates: positive");
        let hot = self.hot_keys.zip(self.hot_share);
        if let Some((fraction, share)) = hot {
            anyhow::ensure!(fraction > 0.0 && fraction < 1.0, "--hot-keys: 0 < fraction < 1");
            anyhow::ensure!((0.0..=1.0).contains(&share), "--hot-share: 0..=1");
        }
        Ok(Mix {
            get_ratio: self.get_ratio,
            scan_ratio: self.scan_ratio,
            scan_count: self.scan_count,
            keys: self.keys,
            value_bytes: self.value_bytes,
            hot,
            text_values: self.text_values,
        })
    }
}

fn next_to_exe(name: &str) -> anyhow::Result<PathBuf> {
    ipu_cp::process::sibling_binary(name)
        .with_context(|| format!("no {name} next to this binary: cargo build --release -p {name}"))
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadgen: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { load, server, control, wire_server, server_args: extra, csv, label } => {
            let mix = load.mix()?;
            let points = if server == "wire" {
                let mut args = server_args(control, None, load.workers, false);
                let db =
                    std::env::temp_dir().join(format!("wave-loadgen-db-{}", std::process::id()));
                if wire_server == "rocksdb-server" {
                    let _ = std::fs::remove_dir_all(&db);
                    args.extend(["--db".to_string(), db.display().to_string()]);
                }
                args.extend(extra);
                let mut wire = WireServer::start(&next_to_exe(&wire_server)?, &args)?;
                let port = wire.take_port().context("wire port")?;
                let points = sweep(
                    &mut StackTransport::connect(port, usize::try_from(load.conns)?)?,
                    &mix,
                    &load,
                    "",
                );
                drop(wire);
                let _ = std::fs::remove_dir_all(&db);
                points?
            } else {
                let addr =
                    server.parse().with_context(|| format!("--server {server}: HOST:PORT"))?;
                if load.threads > 1 {
                    sweep_threads(addr, &mix, &load)?
                } else {
                    sweep(
                        &mut KernelTransport::connect(addr, usize::try_from(load.conns)?)?,
                        &mix,
                        &load,
                        "",
                    )?
                }
            };
            let default = if server == "wire" { control.name() } else { "kernel" };
            let label = label.as_deref().unwrap_or(default);
            print!("{}", table(&[(label, &points)]));
            if let Some(path) = csv {
                std::fs::write(&path, csv_rows(label, &points))?;
            }
        }
        Command::Demo { load, sched } => demo(&load, sched)?,
    }
    Ok(())
}

/// rpc-server's flags: connection control in `control` mode (local, on-host, or offloaded to
/// the `ipu-cp` at `socket`), and task scheduling too if `sched`.
fn server_args(control: Mode, socket: Option<&Path>, workers: u16, sched: bool) -> Vec<String> {
    let mut args: Vec<String> =
        ["--workers", &workers.to_string(), "--control", control.name()].map(String::from).to_vec();
    if sched {
        args.extend(["--sched".to_string(), control.name().to_string()]);
    }
    if let Some(socket) = socket {
        args.extend(["--ipu-cp".to_string(), socket.display().to_string()]);
    }
    args
}

/// Preloads, then runs each rate; `label` prefixes the progress lines.
fn sweep(
    transport: &mut impl Transport,
    mix: &Mix,
    load: &Load,
    label: &str,
) -> anyhow::Result<Vec<Point>> {
    engine::preload(transport, mix, Duration::from_secs(30))?;
    let mut points = Vec::new();
    for (index, &rate) in load.rates.iter().enumerate() {
        eprint!(
            "{label}[{}/{}] {rate:.0} req/s for {} s ... ",
            index + 1,
            load.rates.len(),
            load.seconds
        );
        let duration = Duration::from_secs_f64(load.seconds);
        let (drain, idle) = (Duration::from_secs(1), Duration::from_micros(load.idle_sleep_us));
        let point = engine::run(transport, mix, rate, duration, drain, idle, index as u64 + 1)?;
        eprintln!(
            "p50 {} µs, p99 {} µs",
            point.latency_us.value_at_quantile(0.5),
            point.latency_us.value_at_quantile(0.99)
        );
        points.push(point);
    }
    Ok(points)
}

/// `sweep` with `load.threads` client threads over kernel sockets.
fn sweep_threads(addr: std::net::SocketAddr, mix: &Mix, load: &Load) -> anyhow::Result<Vec<Point>> {
    let threads = usize::try_from(load.threads)?;
    let conns = usize::try_from(load.conns)?.max(threads);
    engine::preload(&mut KernelTransport::connect(addr, conns)?, mix, Duration::from_secs(30))?;
    let duration = Duration::from_secs_f64(load.seconds);
    let mut points = Vec::new();
    for (index, &rate) in load.rates.iter().enumerate() {
        eprint!("[{}/{}] {rate:.0} req/s, {threads} threads ... ", index + 1, load.rates.len());
        let parts = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        let share = conns / threads + usize::from(t < conns % threads);
                        let mut transport = KernelTransport::connect(addr, share)?;
                        let seed = (index * threads + t) as u64 + 1;
                        let per_thread = rate / threads as f64;
                        engine::run(
                            &mut transport,
                            mix,
                            per_thread,
                            duration,
                            Duration::from_secs(1),
                            Duration::from_micros(load.idle_sleep_us),
                            seed,
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))?)
                .collect::<anyhow::Result<Vec<Point>>>()
        })?;
        let point = engine::merge(parts)?;
        eprintln!(
            "p50 {} µs, p99 {} µs",
            point.latency_us.value_at_quantile(0.5),
            point.latency_us.value_at_quantile(0.99)
        );
        points.push(point);
    }
    Ok(points)
}

fn table(runs: &[(&str, &Vec<Point>)]) -> String {
    let mut out = String::from("control      offered/s  achieved/s   p50 µs   p99 µs  p99.9 µs");
    out.push_str("   late  unanswered  errors  scan p50  scan p99\n");
    for (name, points) in runs {
        for p in *points {
            let q = |x| p.latency_us.value_at_quantile(x);
            let _ = writeln!(
                out,
                "{name:<10} {:>11.0} {:>11.0} {:>8} {:>8} {:>9} {:>6} {:>11} {:>7} {:>9} {:>9}",
                p.offered_per_s,
                p.achieved_per_s,
                q(0.5),
                q(0.99),
                q(0.999),
                p.late,
                p.unanswered,
                p.errors,
                scan_q(p, 0.5),
                scan_q(p, 0.99)
            );
        }
    }
    out
}

/// A SCAN latency quantile, or `-` when the mix had no SCANs.
fn scan_q(point: &Point, quantile: f64) -> String {
    if point.scan_latency_us.is_empty() {
        "-".into()
    } else {
        point.scan_latency_us.value_at_quantile(quantile).to_string()
    }
}

fn csv_rows(name: &str, points: &[Point]) -> String {
    let mut out = String::from("control,offered_per_s,achieved_per_s,p50_us,p99_us,p999_us,");
    out.push_str("late,unanswered,errors,planned,scan_p50_us,scan_p99_us\n");
    for p in points {
        let q = |x| p.latency_us.value_at_quantile(x);
        let _ = writeln!(
            out,
            "{name},{:.0},{:.0},{},{},{},{},{},{},{},{},{}",
            p.offered_per_s,
            p.achieved_per_s,
            q(0.5),
            q(0.99),
            q(0.999),
            p.late,
            p.unanswered,
            p.errors,
            p.planned,
            scan_q(p, 0.5),
            scan_q(p, 0.99)
        );
    }
    out
}

/// `ipu-cp` as a process, then `rpc-server` with its connection control on-host, then
/// offloaded to that `ipu-cp`, each under the same open-loop load from our stack.
fn demo(load: &Load, sched: bool) -> anyhow::Result<()> {
    let mix = load.mix()?;
    let started = Instant::now();
    let rpc_server = next_to_exe("rpc-server")?;
    eprintln!("demo: starting ipu-cp (the control plane, its own process)");
    let cp_args = ["--policy", "fifo"].map(String::from);
    let cp = ControlPlane::start(&next_to_exe("ipu-cp")?, "demo", &cp_args, false)?;
    let mut results = Vec::new();
    for (step, control) in [Mode::OnHost, Mode::Offloaded].into_iter().enumerate() {
        let socket = (control == Mode::Offloaded).then_some(cp.socket.as_path());
        eprintln!(
            "demo: [{}/2] rpc-server with {} {} ({} worker{}), {} connections from our stack \
             over a shared-memory wire",
            step + 1,
            if sched { "scheduling and connection control" } else { "connection control" },
            control.name(),
            load.workers,
            if load.workers == 1 { "" } else { "s" },
            load.conns
        );
        let args = server_args(control, socket, load.workers, sched);
        let mut wire = WireServer::start(&rpc_server, &args)?;
        let port = wire.take_port().context("wire port")?;
        let mut transport = StackTransport::connect(port, usize::try_from(load.conns)?)?;
        let points = sweep(&mut transport, &mix, load, "      ")?;
        results.push((control.name(), points));
    }
    drop(cp);
    let runs: Vec<(&str, &Vec<Point>)> = results.iter().map(|(n, p)| (*n, p)).collect();
    println!("\n{}", table(&runs));
    println!(
        "latency from each request's planned send time (open loop, {:.0} % GET, {} B values); \
         {:.0} s in all",
        mix.get_ratio * 100.0,
        mix.value_bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
