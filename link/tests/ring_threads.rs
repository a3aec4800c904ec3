//! Ten million records between two threads: no loss, duplication or reordering.

mod common;

use common::{Backoff, ping, seq_of};
use link::{MonoNanos, Record, ring::heap_ring};

const RECORDS: u64 = 10_000_000;

fn run(capacity: u32, batch: usize, delay_ns: u64) {
    let (mut tx, mut rx) = heap_ring(capacity, delay_ns);
    let producer = std::thread::spawn(move || {
        let mut next = 0u64;
        let mut backoff = Backoff::default();
        let mut staged = vec![Record::ZERO; batch];
        while next < RECORDS {
            let count = batch.min(usize::try_from(RECORDS - next).unwrap());
            for (i, record) in staged[..count].iter_mut().enumerate() {
                *record = ping(next + i as u64);
            }
            let now = if delay_ns > 0 { MonoNanos::now() } else { MonoNanos(0) };
            let pushed = tx.push_batch(&staged[..count], now);
            next += pushed as u64;
            if pushed == 0 { backoff.idle() } else { backoff.reset() }
        }
    });
    let mut expected = 0u64;
    let mut out = vec![Record::ZERO; batch];
    let mut backoff = Backoff::default();
    while expected < RECORDS {
        let now = if delay_ns > 0 { MonoNanos::now() } else { MonoNanos(u64::MAX) };
        let popped = rx.pop_batch(&mut out, now);
        for record in &out[..popped] {
            assert_eq!(seq_of(record), expected, "loss, duplication or reordering");
            expected += 1;
        }
        if popped == 0 { backoff.idle() } else { backoff.reset() }
    }
    producer.join().unwrap();
    assert!(rx.try_pop(MonoNanos(u64::MAX)).is_none(), "nothing beyond the last record");
}

#[test]
fn ten_million_records_one_at_a_time() {
    run(256, 1, 0);
}

#[test]
fn ten_million_records_in_batches_of_32() {
    run(1024, 32, 0);
}

#[test]
fn one_million_records_with_emulated_delay() {
    // Shorter: every record waits out its 1 µs in flight.
    let (mut tx, mut rx) = heap_ring(512, 1_000);
    let producer = std::thread::spawn(move || {
        for seq in 0..1_000_000u64 {
            let mut backoff = Backoff::default();
            while tx.try_push(&ping(seq), MonoNanos::now()).is_err() {
                backoff.idle();
            }
        }
    });
    let mut expected = 0;
    let mut backoff = Backoff::default();
    while expected < 1_000_000 {
        match rx.try_pop(MonoNanos::now()) {
            Some(record) => {
                assert_eq!(seq_of(&record), expected);
                expected += 1;
            }
            None => backoff.idle(),
        }
    }
    producer.join().unwrap();
}
