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

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use crossbeam_queue::ArrayQueue;
use hdrhistogram::Histogram;
use link::proto::{AppId, Epoch, Message, PingRepr, WorkerId};
use link::region::Region;
use link::ring::heap_ring;
use link::{ChannelConfig, CpEnd, HostEnd, Layout, LivenessConfig, MonoNanos, Record};

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

// ---------------------------------------------------------------- two-process plumbing

// Control words (one per line) in the control region.
const READY: usize = 0;
const DONE_NS: usize = 64;
const PING: usize = 128;
const PONG: usize = 192;
const MODE: usize = 256;
const BATCH: usize = 320;
const PAUSED: usize = 384;
/// Which channel the sink serves (the current block's).
const ACTIVE: usize = 448;
/// Per channel: records the sink has received so far (one line each).
const RECEIVED: usize = 512;
const MODE_SERVE: u64 = 0;
const MODE_EXIT: u64 = 1;
const MODE_PAUSE: u64 = 2;

struct Peer {
    control: Arc<Region>,
    child: std::process::Child,
}

/// Starts the child `role` on PEER_CPU, sharing `control` and the `channels`.
fn spawn(
    role: &str,
    control: &Arc<Region>,
    channels: &[Arc<Region>],
    extra: &[String],
) -> anyhow::Result<Peer> {
    let fd_path =
        |r: &Region| format!("/proc/{}/fd/{}", std::process::id(), r.fd().unwrap().as_raw_fd());
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["--child", role, &fd_path(control), &channels.len().to_string()]);
    for channel in channels {
        command.args([fd_path(channel), channel.len().to_string()]);
    }
    command.args(extra);
    command.args(["--peer-cpu", &peer_cpu().to_string()]);
    let child = command.spawn().context("spawning the peer process")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while control.word(READY).load(Ordering::Acquire) == 0 {
        if Instant::now() > deadline {
            bail!("peer {role} did not start");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(Peer { control: control.clone(), child })
}

impl Peer {
    fn finish(mut self) -> anyhow::Result<u64> {
        self.control.word(MODE).store(MODE_EXIT, Ordering::Release);
        let status = self.child.wait()?;
        if !status.success() {
            bail!("peer failed: {status}");
        }
        Ok(self.control.word(DONE_NS).load(Ordering::Acquire))
    }
}

fn open_shared(path: &str, len: usize) -> anyhow::Result<Region> {
    let file =
        OpenOptions::new().read(true).write(true).open(path).with_context(|| path.to_owned())?;
    Ok(Region::map_fd(OwnedFd::from(file), len)?)
}

fn child(args: &[String]) -> anyhow::Result<()> {
    pin(peer_cpu())?;
    let control = open_shared(&args[1], 4096)?;
    let channel_count: usize = args[2].parse()?;
    let mut ends = Vec::new();
    for i in 0..channel_count {
        let (path, len) = (&args[3 + 2 * i], args[4 + 2 * i].parse()?);
        ends.push(attach_cp(Arc::new(open_shared(path, len)?))?);
    }
    control.word(READY).store(1, Ordering::Release);
    match args[0].as_str() {
        "echo" => echo(&control, &mut ends),
        "sink" => sink(&control, &mut ends),
        other => bail!("unknown child role {other}"),
    }
    Ok(())
}

/// Serves the raw ping word and every channel's event ring in one polling loop, so the floor
/// and the rings are measured against the same peer, interleaved, until told to exit.
fn echo(control: &Region, ends: &mut [CpEnd]) {
    let mut last_ping = 0;
    let mut polls = 0u64;
    loop {
        let ping = control.word(PING).load(Ordering::Acquire);
        if ping != last_ping {
            control.word(PONG).store(ping, Ordering::Release);
            last_ping = ping;
        }
        for end in ends.iter_mut() {
            let delayed = end.layout.config().delay_ns > 0;
            let worker = &mut end.workers[0];
            if let Some(record) = worker.events.try_pop(now_if(delayed)) {
                // Forwarded untouched: this measures the link's transport. Parsing and
                // policy work are measured end to end by `link-ping` through `ipu-cp`.
                while worker.decisions.try_push(&record, now_if(delayed)).is_err() {
                    std::hint::spin_loop();
                }
            }
        }
        polls += 1;
        if polls.is_multiple_of(4096) && control.word(MODE).load(Ordering::Acquire) == MODE_EXIT {
            return;
        }
    }
}

/// Drains every channel's event ring, `BATCH` records per call, publishing running counts,
/// until told to exit; sleeps while told to pause (so thread baselines get this CPU).
fn sink(control: &Region, ends: &mut [CpEnd]) {
    let mut received = vec![0u64; ends.len()];
    let mut out = vec![Record::ZERO; 64];
    let mut idle = 0u64;
    loop {
        let batch = usize::try_from(control.word(BATCH).load(Ordering::Relaxed)).unwrap_or(1);
        let batch = batch.clamp(1, out.len());
        let mut got_any = false;
        let active = usize::try_from(control.word(ACTIVE).load(Ordering::Relaxed)).unwrap_or(0);
        // Serve only the active channel: polling the others would add their clock reads.
        for (i, end) in ends.iter_mut().enumerate().filter(|(i, _)| *i == active) {
            let delayed = end.layout.config().delay_ns > 0;
            let got = end.workers[0].events.pop_batch(&mut out[..batch], now_if(delayed));
            if got > 0 {
                received[i] += got as u64;
                control.word(RECEIVED + 64 * i).store(received[i], Ordering::Release);
                got_any = true;
            }
        }
        idle = if got_any { 0 } else { idle + 1 };
        if idle > 0 && idle.is_multiple_of(4096) {
            match control.word(MODE).load(Ordering::Acquire) {
                MODE_EXIT => return,
                MODE_PAUSE => {
                    control.word(PAUSED).store(1, Ordering::Release);
                    while control.word(MODE).load(Ordering::Acquire) == MODE_PAUSE {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    control.word(PAUSED).store(0, Ordering::Release);
                }
                _ => {}
            }
        }
    }
}

/// The peer plays the control plane over a region the parent formatted.
fn attach_cp(region: Arc<Region>) -> anyhow::Result<CpEnd> {
    let (layout, app) = Layout::read_superblock(&region)?;
    Ok(CpEnd::attach_existing(
        region,
        layout,
        app,
        Epoch(2),
        LivenessConfig::default(),
        MonoNanos::now(),
    ))
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

// ---------------------------------------------------------------- measurements

/// One block of raw cache-line round trips (the physical floor) into `rtt`.
fn raw_block(control: &Region, next: &mut u64, rtt: &mut Histogram<u64>) {
    for _ in 0..BLOCK_SAMPLES {
        *next += 1;
        let t0 = MonoNanos::now();
        control.word(PING).store(*next, Ordering::Release);
        while control.word(PONG).load(Ordering::Acquire) != *next {
            std::hint::spin_loop();
        }
        rtt.saturating_record(MonoNanos::now().since(t0).max(1));
    }
}

/// One block of ring round trips (event up, decision down) into `rtt`.
fn ring_block(host: &mut HostEnd, next: &mut u64, rtt: &mut Histogram<u64>) {
    let delayed = host.layout.config().delay_ns > 0;
    let worker = &mut host.workers[0];
    let mut record = ping(0);
    for _ in 0..BLOCK_SAMPLES {
        *next += 1;
        record.set_word(3, *next); // the Ping's seq field: each probe is distinct
        let t0 = MonoNanos::now();
        worker.events.try_push(&record, t0).expect("one in flight never fills the ring");
        loop {
            if let Some(echo) = worker.decisions.try_pop(now_if(delayed)) {
                debug_assert_eq!(echo.word(3), *next, "echo of another probe");
                break;
            }
            std::hint::spin_loop();
        }
        rtt.saturating_record(MonoNanos::now().since(t0).max(1));
    }
}

/// Latency of the floor and the three rings, interleaved block by block against one peer.
/// Returns the merged RTT histograms and the per-block ratios to the adjacent floor block.
fn latency_run(
    totals: &mut [Histogram<u64>; 4],
    ratios: &mut [[Series; 2]; 3],
) -> anyhow::Result<()> {
    let control = control()?;
    let mut channels = Vec::new();
    let mut hosts = Vec::new();
    for delay in DELAYS_NS {
        let (region, host) = channel(delay)?;
        channels.push(region);
        hosts.push(host);
    }
    let peer = spawn("echo", &control, &channels, &[])?;
    let mut next = [0u64; 4];
    for block in 0..=BLOCKS {
        let mut rtt: [Histogram<u64>; 4] = std::array::from_fn(|_| histogram());
        raw_block(&control, &mut next[0], &mut rtt[0]);
        for (i, host) in hosts.iter_mut().enumerate() {
            ring_block(host, &mut next[i + 1], &mut rtt[i + 1]);
        }
        if block == 0 {
            continue; // warm-up
        }
        for (i, pair) in ratios.iter_mut().enumerate() {
            for (j, q) in [0.5, 0.99].into_iter().enumerate() {
                pair[j].push(
                    rtt[i + 1].value_at_quantile(q) as f64 / rtt[0].value_at_quantile(q) as f64,
                );
            }
        }
        for (total, block) in totals.iter_mut().zip(&rtt) {
            total.add(block).expect("same bounds");
        }
    }
    peer.finish()?;
    Ok(())
}

/// Records/s of one block from this process into the sink over `host`'s channel `index`.
fn ring_block_throughput(control: &Region, host: &mut HostEnd, index: usize, batch: usize) -> f64 {
    let delayed = host.layout.config().delay_ns > 0;
    control.word(BATCH).store(batch as u64, Ordering::Relaxed);
    control.word(ACTIVE).store(index as u64, Ordering::Relaxed);
    let counter = control.word(RECEIVED + 64 * index);
    let target = counter.load(Ordering::Acquire) + THROUGHPUT_RECORDS;
    let worker = &mut host.workers[0];
    let records: Vec<Record> = (0..batch as u64).map(ping).collect();
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < THROUGHPUT_RECORDS {
        let want = usize::try_from((THROUGHPUT_RECORDS - sent).min(batch as u64)).unwrap_or(1);
        let pushed = worker.events.push_batch(&records[..want], now_if(delayed));
        sent += pushed as u64;
        if pushed == 0 {
            std::hint::spin_loop();
        }
    }
    while counter.load(Ordering::Acquire) < target {
        std::hint::spin_loop();
    }
    THROUGHPUT_RECORDS as f64 / started.elapsed().as_secs_f64()
}

fn spawn_pinned<T: Send + 'static>(
    cpu: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        pin(cpu).expect("pin thread");
        f()
    })
}

/// Our ring between two threads (same process), for an apples-to-apples line beside crossbeam.
fn ring_threads_throughput(batch: usize) -> f64 {
    let (mut tx, mut rx) = heap_ring(RING_CAPACITY, 0);
    let started = Instant::now();
    let consumer = spawn_pinned(peer_cpu(), move || {
        let mut out = vec![Record::ZERO; batch];
        let mut received = 0u64;
        while received < THROUGHPUT_RECORDS {
            received += rx.pop_batch(&mut out, MonoNanos(0)) as u64;
        }
    });
    let records: Vec<Record> = (0..batch as u64).map(ping).collect();
    let mut sent = 0u64;
    while sent < THROUGHPUT_RECORDS {
        let want = usize::try_from((THROUGHPUT_RECORDS - sent).min(batch as u64)).unwrap_or(1);
        sent += tx.push_batch(&records[..want], MonoNanos(0)) as u64;
    }
    consumer.join().expect("consumer thread");
    THROUGHPUT_RECORDS as f64 / started.elapsed().as_secs_f64()
}

/// crossbeam `ArrayQueue<Record>` between two threads (it has no batch operation).
fn crossbeam_throughput() -> f64 {
    let queue = Arc::new(ArrayQueue::<Record>::new(RING_CAPACITY as usize));
    let rx = queue.clone();
    let started = Instant::now();
    let consumer = spawn_pinned(peer_cpu(), move || {
        let mut received = 0u64;
        while received < THROUGHPUT_RECORDS {
            if rx.pop().is_some() {
                received += 1;
            }
        }
    });
    let record = ping(1);
    let mut sent = 0u64;
    while sent < THROUGHPUT_RECORDS {
        if queue.push(record).is_ok() {
            sent += 1;
        }
    }
    consumer.join().expect("consumer thread");
    THROUGHPUT_RECORDS as f64 / started.elapsed().as_secs_f64()
}

/// Sets the sink's mode and, for a pause, waits until it sleeps.
fn set_mode(control: &Region, mode: u64) {
    control.word(MODE).store(mode, Ordering::Release);
    if mode == MODE_PAUSE {
        while control.word(PAUSED).load(Ordering::Acquire) == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// Throughput of every path, round by round; each round's crossbeam rate is the baseline of
/// that round's ratios.
fn throughput_run(r: &mut Results) -> anyhow::Result<()> {
    let control = control()?;
    let mut channels = Vec::new();
    let mut hosts = Vec::new();
    for delay in DELAYS_NS {
        let (region, host) = channel(delay)?;
        channels.push(region);
        hosts.push(host);
    }
    let peer = spawn("sink", &control, &channels, &[])?;
    for _ in 0..THROUGHPUT_ROUNDS {
        set_mode(&control, MODE_PAUSE);
        let crossbeam = crossbeam_throughput();
        r.tp_crossbeam.push(crossbeam);
        for (j, batch) in [1usize, 32].into_iter().enumerate() {
            let tp = ring_threads_throughput(batch);
            r.tp_threads[j].push(tp);
            r.tp_ratio_threads[j].push(tp / crossbeam);
        }
        set_mode(&control, MODE_SERVE);
        for (i, host) in hosts.iter_mut().enumerate() {
            for (j, batch) in [1usize, 32].into_iter().enumerate() {
                let tp = ring_block_throughput(&control, host, i, batch);
                r.tp_processes[i][j].push(tp);
                r.tp_ratio_processes[i][j].push(tp / crossbeam);
            }
        }
    }
    peer.finish()?;
    Ok(())
}

/// crossbeam ping-pong between two threads over two `ArrayQueue`s. Returns RTT ns.
fn crossbeam_pingpong() -> Histogram<u64> {
    let up = Arc::new(ArrayQueue::<Record>::new(RING_CAPACITY as usize));
    let down = Arc::new(ArrayQueue::<Record>::new(RING_CAPACITY as usize));
    let (peer_up, peer_down) = (up.clone(), down.clone());
    let total = LATENCY_SAMPLES + LATENCY_SAMPLES / 10;
    let peer = spawn_pinned(peer_cpu(), move || {
        for _ in 0..total {
            let record = loop {
                if let Some(r) = peer_up.pop() {
                    break r;
                }
                std::hint::spin_loop();
            };
            let _ = peer_down.push(record);
        }
    });
    let mut rtt = histogram();
    for seq in 0..total {
        let t0 = MonoNanos::now();
        let _ = up.push(ping(seq));
        while down.pop().is_none() {
            std::hint::spin_loop();
        }
        if seq >= LATENCY_SAMPLES / 10 {
            rtt.saturating_record(MonoNanos::now().since(t0).max(1));
        }
    }
    peer.join().unwrap();
    rtt
}

/// The overhead of one clock read pair, included in every RTT sample above.
fn clock_overhead_ns() -> u64 {
    let mut h = histogram();
    for _ in 0..100_000 {
        let t0 = MonoNanos::now();
        h.saturating_record(MonoNanos::now().since(t0).max(1));
    }
    h.value_at_quantile(0.5)
}

// ---------------------------------------------------------------- report

#[derive(Default)]
struct Series(Vec<f64>);

impl Series {
    fn push(&mut self, v: f64) {
        self.0.push(v);
    }
    fn quantile(&self, q: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        // Nearest rank: q in [0, 1] scales the last index; the product fits easily.
        let last = v.len() - 1;
        let index = (0..=last).min_by(|&a, &b| {
            let (da, db) = ((a as f64 - last as f64 * q).abs(), (b as f64 - last as f64 * q).abs());
            da.total_cmp(&db)
        });
        v[index.unwrap_or(0)]
    }
    /// "median [p25–p75]" with `digits` decimals.
    fn show(&self, digits: usize) -> String {
        format!(
            "{:.digits$} [{:.digits$}–{:.digits$}]",
            self.quantile(0.5),
            self.quantile(0.25),
            self.quantile(0.75)
        )
    }
}

struct Results {
    runs: usize,
    /// RTT histograms: floor, ring at each delay; merged over blocks and runs.
    rtt: [Histogram<u64>; 4],
    crossbeam_rtt: Histogram<u64>,
    /// Per block: ring RTT quantile ÷ floor RTT quantile, for p50 and p99, per delay.
    ratios: [[Series; 2]; 3],
    /// Records/s per run: ring between processes [delay][batch], ring between threads
    /// [batch], crossbeam.
    tp_processes: [[Series; 2]; 3],
    tp_threads: [Series; 2],
    tp_crossbeam: Series,
    /// Per run: each of the above ÷ the same run's crossbeam.
    tp_ratio_processes: [[Series; 2]; 3],
    tp_ratio_threads: [Series; 2],
}

fn run_all(runs: usize) -> anyhow::Result<String> {
    let mut r = Results {
        runs,
        rtt: std::array::from_fn(|_| histogram()),
        crossbeam_rtt: histogram(),
        ratios: Default::default(),
        tp_processes: Default::default(),
        tp_threads: Default::default(),
        tp_crossbeam: Series::default(),
        tp_ratio_processes: Default::default(),
        tp_ratio_threads: Default::default(),
    };
    for run in 0..runs {
        eprintln!("run {}/{runs}", run + 1);
        latency_run(&mut r.rtt, &mut r.ratios)?;
        r.crossbeam_rtt.add(crossbeam_pingpong()).expect("same bounds");
        throughput_run(&mut r)?;
    }
    Ok(render(&r))
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':'])))
        .unwrap_or("unknown CPU")
        .to_owned();
    let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let siblings = |cpu: usize| {
        let path = format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list");
        std::fs::read_to_string(path).map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned())
    };
    let shared = if siblings(host_cpu()) == siblings(peer_cpu()) {
        "SMT siblings of one core"
    } else {
        "on different physical cores"
    };
    format!(
        "{model}, {cpus} CPUs, Linux {}; CPUs {} and {} are {shared} (as the guest sees them)",
        kernel.trim(),
        host_cpu(),
        peer_cpu()
    )
}

fn one_way(rtt: &Histogram<u64>, q: f64) -> f64 {
    rtt.value_at_quantile(q) as f64 / 2.0
}

fn render(r: &Results) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let mops = |x: f64| x / 1e6;
    let _ = writeln!(s, "### Measured\n");
    let _ = writeln!(
        s,
        "Machine: {}. Host side pinned to CPU {}, peer to CPU {}. {} runs.\n",
        machine(),
        host_cpu(),
        peer_cpu(),
        r.runs
    );
    let _ = writeln!(
        s,
        "**Latency.** One echo process serves the raw ping word and the three rings in one \
         polling loop; the host alternates blocks of {BLOCK_SAMPLES} round trips over the floor \
         and each ring ({BLOCKS} measured blocks per run after a warm-up block). One-way = round \
         trip / 2; every sample includes one clock read (~{} ns), in all rows alike. ns columns: \
         quantiles of all samples merged. Ratio columns: the same quantile of each ring block \
         divided by that of the floor block measured just before it, as median [p25–p75] over \
         all blocks, so that drift of a shared machine (a VM's vCPUs may move between SMT \
         siblings and separate cores) cancels within each pair.\n",
        clock_overhead_ns()
    );
    let _ = writeln!(s, "| path | p50 ns | p99 ns | p50 ÷ floor | p99 ÷ floor |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    let floor = &r.rtt[0];
    let _ = writeln!(
        s,
        "| raw cache-line ping-pong, 2 processes (floor) | {:.0} | {:.0} | 1 | 1 |",
        one_way(floor, 0.5),
        one_way(floor, 0.99)
    );
    for (i, name) in ["0", "1 µs", "2 µs"].iter().enumerate() {
        let _ = writeln!(
            s,
            "| link ring, 2 processes, delay {name} | {:.0} | {:.0} | {} | {} |",
            one_way(&r.rtt[i + 1], 0.5),
            one_way(&r.rtt[i + 1], 0.99),
            r.ratios[i][0].show(2),
            r.ratios[i][1].show(2)
        );
    }
    let cb = &r.crossbeam_rtt;
    let _ = writeln!(
        s,
        "| crossbeam ArrayQueue, 2 threads (separate phase, unpaired) | {:.0} | {:.0} | {:.2} | {:.2} |",
        one_way(cb, 0.5),
        one_way(cb, 0.99),
        one_way(cb, 0.5) / one_way(floor, 0.5),
        one_way(cb, 0.99) / one_way(floor, 0.99)
    );
    let _ = writeln!(
        s,
        "\n**Throughput.** Blocks of {THROUGHPUT_RECORDS} 64-byte records, ring capacity \
         {RING_CAPACITY}, producer on the host CPU, consumer on the peer CPU, timed from the \
         first push until the consumer has them all; {THROUGHPUT_ROUNDS} rounds per run, each \
         round measuring every path once. Batch = records per push and per pop. M records/s as \
         median [p25–p75] over rounds; ratio columns divide by the crossbeam \
         `ArrayQueue<Record>` rate of the same round (it has no batch operation, so it moves one \
         record per call). The sink process sleeps while the two-thread rows run.\n"
    );
    let _ =
        writeln!(s, "| path | batch 1 | batch 32 | batch 1 ÷ crossbeam | batch 32 ÷ crossbeam |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    let mrow = |pair: &[Series; 2], ratio: &[Series; 2]| {
        let scaled = |x: &Series| Series(x.0.iter().map(|v| mops(*v)).collect());
        format!(
            "{} | {} | {} | {}",
            scaled(&pair[0]).show(1),
            scaled(&pair[1]).show(1),
            ratio[0].show(2),
            ratio[1].show(2)
        )
    };
    for (i, name) in ["0", "1 µs", "2 µs"].iter().enumerate() {
        let row = mrow(&r.tp_processes[i], &r.tp_ratio_processes[i]);
        let _ = writeln!(s, "| link ring, 2 processes, delay {name} | {row} |");
    }
    let _ = writeln!(s, "| link ring, 2 threads | {} |", mrow(&r.tp_threads, &r.tp_ratio_threads));
    let cb = Series(r.tp_crossbeam.0.iter().map(|v| mops(*v)).collect());
    let _ = writeln!(s, "| crossbeam ArrayQueue, 2 threads | {} | – | 1 | – |", cb.show(1));
    s
}
