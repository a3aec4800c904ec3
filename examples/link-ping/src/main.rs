//! `link-ping`: a host process that sends `Ping` events to the control plane and times the
//! `Pong` decisions that come back, in two modes:
//! - **offloaded**: to a running `ipu-cp` process, over the memfd transport;
//! - **on-host**: to the same agent and echo policy running in a thread of this process, over
//!   the heap transport.
//!
//! It prints one line per mode: round-trip p50/p99/p99.9 (one probe in flight) and echo
//! throughput (a window of probes in flight).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use ipu_cp::on_host::{OnHostAgent, OnHostOptions};
use ipu_cp::policy::Echo;
use link::proto::{Epoch, Message, PingRepr, Service, WorkerId};
use link::{ChannelConfig, HostWorker, LivenessConfig, MonoNanos, PeerStatus, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Offloaded,
    OnHost,
    Both,
}

/// Time event→decision round trips through the Wave control plane.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// ipu-cp's socket (needed for the offloaded mode).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Which modes to run.
    #[arg(long, value_enum, default_value = "both")]
    mode: Mode,
    /// Timed round trips per mode (after a 10 % warm-up).
    #[arg(
        long,
        default_value_t = 200_000,
        value_parser = clap::value_parser!(u64).range(100..=100_000_000)
    )]
    count: u64,
    /// Probes in flight during the throughput phase.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    window: u64,
    /// Emulated one-way PCIe delay in nanoseconds.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    delay_ns: u32,
    /// Pin this process's worker to a CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Pin the on-host agent thread to a CPU.
    #[arg(long)]
    agent_cpu: Option<usize>,
}

struct Report {
    rtt: Histogram<u64>,
    echoes_per_s: f64,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("link-ping: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.mode != Mode::OnHost && args.socket.is_none() {
        bail!("--socket is required for the offloaded mode (or pass --mode on-host)");
    }
    if let Some(cpu) = args.cpu {
        pin_to(cpu)?;
    }
    let config = ChannelConfig {
        workers: 1,
        ring_capacity: 1024,
        prestage_slots: 0,
        delay_ns: args.delay_ns,
    };
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>14}",
        "mode", "rtt p50", "rtt p99", "rtt p99.9", "rtt max", "echoes/s"
    );
    if args.mode != Mode::OnHost {
        let path = args.socket.as_ref().expect("checked above");
        let liveness = LivenessConfig::default();
        let mut conn = link::transport::connect(
            path,
            Service::Sched,
            config,
            Epoch(1),
            liveness,
            Duration::from_secs(5),
        )
        .with_context(|| format!("attaching to ipu-cp at {}", path.display()))?;
        let report = measure(&mut conn.end.workers[0], &mut conn.end.liveness, &args)?;
        print_row("offloaded", &report);
        conn.end.liveness.heartbeat.close();
    }
    if args.mode != Mode::Offloaded {
        let report = on_host(config, &args)?;
        print_row("on-host", &report);
    }
    Ok(())
}

fn on_host(config: ChannelConfig, args: &Args) -> anyhow::Result<Report> {
    let now = MonoNanos::now();
    let cp_epoch = ipu_cp::fresh_epoch();
    let (mut host, cp) =
        link::transport::heap_pair(config, LivenessConfig::default(), Epoch(1), cp_epoch, now)?;
    let options = OnHostOptions { cpu: args.agent_cpu, ..OnHostOptions::default() };
    let agent = OnHostAgent::start(Box::new(Echo::default()), cp, options)?;
    let report = measure(&mut host.workers[0], &mut host.liveness, args);
    host.liveness.heartbeat.close();
    agent.stop();
    report
}

fn ping(seq: u64, now: MonoNanos) -> Record {
    Message::Ping(PingRepr { worker: WorkerId(0), seq, sent_at_ns: now.0 }).to_record(Epoch(1))
}

/// Waits for the next Pong; checks it answers `expected_seq`. Bails if ipu-cp dies.
fn await_pong(
    worker: &mut HostWorker,
    liveness: &mut link::liveness::Liveness,
    expected_seq: u64,
) -> anyhow::Result<MonoNanos> {
    let mut polls = 0u64;
    loop {
        let now = MonoNanos::now();
        if let Some(record) = worker.decisions.try_pop(now) {
            let Ok(Message::Pong(pong)) = record.parse() else {
                bail!("unexpected decision {record:?}")
            };
            if pong.seq != expected_seq {
                bail!("pong {} out of order (expected {expected_seq})", pong.seq);
            }
            return Ok(MonoNanos(pong.ping_sent_at_ns));
        }
        polls += 1;
        if polls.is_multiple_of(1024) {
            match liveness.tick(now) {
                PeerStatus::Dead { silent_ns } => {
                    bail!("control plane silent for {} ms: it died", silent_ns / 1_000_000)
                }
                PeerStatus::Closed => bail!("control plane closed the channel"),
                PeerStatus::Alive(_) | PeerStatus::Starting => {}
            }
        }
        std::hint::spin_loop();
    }
}

fn measure(
    worker: &mut HostWorker,
    liveness: &mut link::liveness::Liveness,
    args: &Args,
) -> anyhow::Result<Report> {
    let mut rtt = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)?;
    let warmup = args.count / 10;
    // Latency: one probe in flight.
    for seq in 0..warmup + args.count {
        let sent = MonoNanos::now();
        while worker.events.try_push(&ping(seq, sent), sent).is_err() {
            std::hint::spin_loop();
        }
        let sent_at = await_pong(worker, liveness, seq)?;
        let elapsed = MonoNanos::now().since(sent_at);
        liveness.heartbeat.beat(MonoNanos::now());
        if seq >= warmup {
            rtt.saturating_record(elapsed.max(1));
        }
    }
    // Throughput: keep `window` probes in flight.
    let base = warmup + args.count;
    let (mut sent, mut received) = (0u64, 0u64);
    let started = Instant::now();
    while received < args.count {
        while sent < args.count && sent - received < args.window {
            let now = MonoNanos::now();
            if worker.events.try_push(&ping(base + sent, now), now).is_err() {
                break;
            }
            sent += 1;
        }
        await_pong(worker, liveness, base + received)?;
        received += 1;
        // Beat on every echo: a fast echo never reaches the idle-poll tick in await_pong.
        liveness.heartbeat.beat(MonoNanos::now());
    }
    let echoes_per_s = args.count as f64 / started.elapsed().as_secs_f64();
    Ok(Report { rtt, echoes_per_s })
}

fn print_row(mode: &str, report: &Report) {
    let us = |q: f64| report.rtt.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{mode:<10} {:>8.2}µs {:>8.2}µs {:>8.2}µs {:>8.2}µs {:>14.0}",
        us(0.5),
        us(0.99),
        us(0.999),
        report.rtt.max() as f64 / 1000.0,
        report.echoes_per_s
    );
}

fn pin_to(cpu: usize) -> anyhow::Result<()> {
    ipu_cp::pin_current_thread(cpu).with_context(|| format!("cannot pin to CPU {cpu}"))
}
