//! Collecting runs and rendering the markdown report.

use hdrhistogram::Histogram;

use super::*;

#[derive(Default)]
pub(crate) struct Series(pub(crate) Vec<f64>);

impl Series {
    pub(crate) fn push(&mut self, v: f64) {
        self.0.push(v);
    }
    pub(crate) fn quantile(&self, q: f64) -> f64 {
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
    pub(crate) fn show(&self, digits: usize) -> String {
        format!(
            "{:.digits$} [{:.digits$}–{:.digits$}]",
            self.quantile(0.5),
            self.quantile(0.25),
            self.quantile(0.75)
        )
    }
}

pub(crate) struct Results {
    pub(crate) runs: usize,
    /// RTT histograms: floor, ring at each delay; merged over blocks and runs.
    pub(crate) rtt: [Histogram<u64>; 4],
    pub(crate) crossbeam_rtt: Histogram<u64>,
    /// Per block: ring RTT quantile ÷ floor RTT quantile, for p50 and p99, per delay.
    pub(crate) ratios: [[Series; 2]; 3],
    /// Records/s per run: ring between processes [delay][batch], ring between threads
    /// [batch], crossbeam.
    pub(crate) tp_processes: [[Series; 2]; 3],
    pub(crate) tp_threads: [Series; 2],
    pub(crate) tp_crossbeam: Series,
    /// Per run: each of the above ÷ the same run's crossbeam.
    pub(crate) tp_ratio_processes: [[Series; 2]; 3],
    pub(crate) tp_ratio_threads: [Series; 2],
}

pub(crate) fn run_all(runs: usize) -> anyhow::Result<String> {
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

pub(crate) fn machine() -> String {
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

pub(crate) fn one_way(rtt: &Histogram<u64>, q: f64) -> f64 {
    rtt.value_at_quantile(q) as f64 / 2.0
}

pub(crate) fn render(r: &Results) -> String {
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
        "| crossbeam ArrayQueue, 2 threads (separate phase, unpaired) \
         | {:.0} | {:.0} | {:.2} | {:.2} |",
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
