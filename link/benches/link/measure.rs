//! The measurements: latency blocks, throughput blocks, and the thread baselines.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use hdrhistogram::Histogram;
use link::region::Region;
use link::ring::heap_ring;
use link::{HostEnd, MonoNanos, Record};

use super::*;

/// One block of raw cache-line round trips (the physical floor) into `rtt`.
pub(crate) fn raw_block(control: &Region, next: &mut u64, rtt: &mut Histogram<u64>) {
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
pub(crate) fn ring_block(host: &mut HostEnd, next: &mut u64, rtt: &mut Histogram<u64>) {
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
pub(crate) fn latency_run(
    totals: &mut [Histogram<u64>; 4],
    ratios: &mut [[Series; 2]; 3],
) -> anyhow::Result<()> {
    let control = control()?;
    let (channels, mut hosts) = channels()?;
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
pub(crate) fn ring_block_throughput(
    control: &Region,
    host: &mut HostEnd,
    index: usize,
    batch: usize,
) -> f64 {
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

pub(crate) fn spawn_pinned<T: Send + 'static>(
    cpu: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        pin(cpu).expect("pin thread");
        f()
    })
}

/// Our ring between two threads (same process), for an apples-to-apples line beside crossbeam.
pub(crate) fn ring_threads_throughput(batch: usize) -> f64 {
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
pub(crate) fn crossbeam_throughput() -> f64 {
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
pub(crate) fn set_mode(control: &Region, mode: u64) {
    control.word(MODE).store(mode, Ordering::Release);
    if mode == MODE_PAUSE {
        while control.word(PAUSED).load(Ordering::Acquire) == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// Throughput of every path, round by round; each round's crossbeam rate is the baseline of
/// that round's ratios.
pub(crate) fn throughput_run(r: &mut Results) -> anyhow::Result<()> {
    let control = control()?;
    let (channels, mut hosts) = channels()?;
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
pub(crate) fn crossbeam_pingpong() -> Histogram<u64> {
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
pub(crate) fn clock_overhead_ns() -> u64 {
    let mut h = histogram();
    for _ in 0..100_000 {
        let t0 = MonoNanos::now();
        h.saturating_record(MonoNanos::now().since(t0).max(1));
    }
    h.value_at_quantile(0.5)
}
