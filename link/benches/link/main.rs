//! The link benchmark: one-way latency and throughput of `link`'s ring between two processes
//! pinned to different cores, next to the physical floor (a raw cache-line ping-pong between
//! the same two cores) and crossbeam's `ArrayQueue` between two threads, all in one run, with
//! emulated one-way delays of 0, 1 and 2 µs.
//!
//! ```text
//! cargo bench -p link --bench link -- [--runs 5] [--out FILE] [--host-cpu 0] [--peer-cpu 1]
//! ```
//!
//! The parent process is the host side; it re-runs this binary as the child (the peer),
//! which maps the parent's memfds through `/proc/<parent>/fd/<n>`.

use std::sync::Arc;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use link::proto::{AppId, Epoch, Message, PingRepr, WorkerId};
use link::region::Region;
use link::{ChannelConfig, HostEnd, Layout, LivenessConfig, MonoNanos, Record};

mod measure;
mod peer;
mod report;

use measure::*;
use peer::*;
use report::*;

/// CPUs of the host side and the peer (`--host-cpu`, `--peer-cpu`); set once at start.
static HOST_CPU: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
static PEER_CPU: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn host_cpu() -> usize {
    *HOST_CPU.get().unwrap_or(&0)
}

fn peer_cpu() -> usize {
    *PEER_CPU.get().unwrap_or(&1)
}
/// Round trips per block; blocks of the floor and of each ring alternate.
const BLOCK_SAMPLES: u64 = 10_000;
/// Measured blocks per run (plus one warm-up block).
const BLOCKS: usize = 20;
const LATENCY_SAMPLES: u64 = BLOCK_SAMPLES * BLOCKS as u64;
/// Records per throughput block, and rounds of blocks per run.
const THROUGHPUT_RECORDS: u64 = 2_000_000;
const THROUGHPUT_ROUNDS: usize = 4;
const RING_CAPACITY: u32 = 1024;
const DELAYS_NS: [u32; 3] = [0, 1000, 2000];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let cpu = |name: &str, default: usize| -> anyhow::Result<usize> {
        flag(&args, name).map_or(Ok(default), |v| v.parse().with_context(|| name.to_owned()))
    };
    HOST_CPU.set(cpu("--host-cpu", 0)?).expect("set once");
    PEER_CPU.set(cpu("--peer-cpu", 1)?).expect("set once");
    if let Some(at) = args.iter().position(|a| a == "--child") {
        return child(&args[at + 1..]);
    }
    let runs = flag(&args, "--runs").map_or(Ok(5), |v| v.parse()).context("--runs")?;
    let out = flag(&args, "--out");
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    pin(host_cpu())?;
    let report = run_all(runs)?;
    print!("{report}");
    if let Some(path) = out {
        std::fs::write(&path, &report).with_context(|| format!("writing {path}"))?;
        eprintln!("wrote {path}");
    }
    Ok(())
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|at| args.get(at + 1).cloned())
}

fn pin(cpu: usize) -> anyhow::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("pinning to CPU {cpu}"))
}

fn ping(seq: u64) -> Record {
    Message::Ping(PingRepr { worker: WorkerId(0), seq, sent_at_ns: seq }).to_record(Epoch(1))
}

fn now_if(delayed: bool) -> MonoNanos {
    if delayed { MonoNanos::now() } else { MonoNanos(u64::MAX / 2) }
}

fn channel(delay_ns: u32) -> anyhow::Result<(Arc<Region>, HostEnd)> {
    let config =
        ChannelConfig { workers: 1, ring_capacity: RING_CAPACITY, prestage_slots: 0, delay_ns };
    let layout = Layout::new(config)?;
    let region = Arc::new(Region::memfd(c"bench-channel", layout.total_len())?);
    layout.format(&region, AppId::new(1, 1));
    let host =
        HostEnd::attach(region.clone(), Epoch(1), LivenessConfig::default(), MonoNanos::now())?;
    Ok((region, host))
}

fn control() -> anyhow::Result<Arc<Region>> {
    Ok(Arc::new(Region::memfd(c"bench-control", 4096)?))
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// One channel per emulated delay, formatted here; the peer attaches to the regions.
fn channels() -> anyhow::Result<(Vec<Arc<Region>>, Vec<HostEnd>)> {
    let mut regions = Vec::new();
    let mut hosts = Vec::new();
    for delay in DELAYS_NS {
        let (region, host) = channel(delay)?;
        regions.push(region);
        hosts.push(host);
    }
    Ok((regions, hosts))
}
