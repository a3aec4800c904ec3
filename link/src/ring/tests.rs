use super::*;
use crate::proto::{Epoch, Message, PingRepr, WorkerId};
use proptest::prelude::*;
use std::collections::VecDeque;

fn ping(seq: u64) -> Record {
    Message::Ping(PingRepr { worker: WorkerId(1), seq, sent_at_ns: seq * 3 }).to_record(Epoch(9))
}

fn seq_of(record: &Record) -> u64 {
    match record.parse().unwrap() {
        Message::Ping(p) => p.seq,
        other => panic!("unexpected {other:?}"),
    }
}

const T0: MonoNanos = MonoNanos(1_000);

#[test]
fn fifo_across_many_laps() {
    let (mut tx, mut rx) = heap_ring(8, 0);
    for seq in 0..100 {
        tx.try_push(&ping(seq), T0).unwrap();
        let got = rx.try_pop(T0).unwrap();
        assert_eq!(seq_of(&got), seq);
        assert_eq!(got.channel_word(), seq + 1, "channel word is the 1-based position");
    }
    assert!(rx.try_pop(T0).is_none());
}

#[test]
fn full_ring_refuses_and_loses_nothing() {
    let (mut tx, mut rx) = heap_ring(4, 0);
    for seq in 0..4 {
        tx.try_push(&ping(seq), T0).unwrap();
    }
    assert_eq!(tx.try_push(&ping(99), T0), Err(PushError::Full));
    assert_eq!(tx.push_batch(&[ping(99)], T0), 0);
    assert_eq!(seq_of(&rx.try_pop(T0).unwrap()), 0);
    tx.try_push(&ping(4), T0).unwrap();
    let mut out = [Record::ZERO; 8];
    assert_eq!(rx.pop_batch(&mut out, T0), 4);
    let seqs: Vec<u64> = out[..4].iter().map(seq_of).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
}

#[test]
fn credit_is_lazy_but_a_drained_ring_returns_all_of_it() {
    let (mut tx, mut rx) = heap_ring(64, 0); // credit every 8 records
    let batch: Vec<Record> = (0..64).map(ping).collect();
    assert_eq!(tx.push_batch(&batch, T0), 64);
    let mut out = [Record::ZERO; 5];
    assert_eq!(rx.pop_batch(&mut out, T0), 5);
    assert_eq!(tx.push_batch(&batch, T0), 0, "5 < 8 consumed: credit not yet published");
    for _ in 0..3 {
        assert!(rx.try_pop(T0).is_some());
    }
    assert_eq!(tx.push_batch(&batch, T0), 8, "8 consumed: published");
    let mut rest = [Record::ZERO; 128];
    assert_eq!(rx.pop_batch(&mut rest, T0), 64);
    assert_eq!(tx.push_batch(&batch, T0), 64, "a drained ring returns all its credit");
}

#[test]
fn batches_are_partial_when_short_of_space() {
    let (mut tx, mut rx) = heap_ring(8, 0);
    let batch: Vec<Record> = (0..12).map(ping).collect();
    assert_eq!(tx.push_batch(&batch, T0), 8);
    let mut out = [Record::ZERO; 5];
    assert_eq!(rx.pop_batch(&mut out, T0), 5);
    assert_eq!(tx.push_batch(&batch[8..], T0), 4);
    let mut rest = [Record::ZERO; 16];
    assert_eq!(rx.pop_batch(&mut rest, T0), 7);
    assert_eq!(seq_of(&rest[6]), 11);
}

#[test]
fn delayed_records_become_visible_after_the_delay() {
    let (mut tx, mut rx) = heap_ring(8, 1_000);
    tx.try_push(&ping(0), MonoNanos(5_000)).unwrap();
    tx.try_push(&ping(1), MonoNanos(5_400)).unwrap();
    assert!(rx.has_pending());
    assert!(rx.try_pop(MonoNanos(5_999)).is_none(), "in flight");
    assert_eq!(seq_of(&rx.try_pop(MonoNanos(6_000)).unwrap()), 0);
    let mut out = [Record::ZERO; 4];
    assert_eq!(rx.pop_batch(&mut out, MonoNanos(6_399)), 0);
    assert_eq!(rx.pop_batch(&mut out, MonoNanos(6_400)), 1);
}

#[test]
fn the_delayed_channel_word_survives_wrapping_times_and_positions() {
    // Times just below and past a 2^40 ns boundary, positions past 2^24.
    let boundary = 1u64 << 40;
    for (visible, position) in [(boundary - 5, 3u64), (boundary + 5, (1 << 24) - 1), (7, 1 << 30)] {
        let word = delayed_word_le(position, MonoNanos(visible));
        assert_eq!(delayed_word_check(word, position, MonoNanos(visible - 1)), (true, false));
        assert_eq!(delayed_word_check(word, position, MonoNanos(visible)), (true, true));
        let later = MonoNanos(visible + 500_000_000_000); // read 500 s after: still visible
        assert_eq!(delayed_word_check(word, position, later), (true, true));
        assert!(!delayed_word_check(word, position + 1, later).0, "another position");
        assert!(!delayed_word_check(word, position + (1 << 16), later).0, "another lap");
    }
    assert!(!delayed_word_check(0, 0, MonoNanos(1)).0, "zeroed memory is empty");
}

#[test]
fn stale_lap_contents_are_not_read_as_new() {
    let (mut tx, mut rx) = heap_ring(2, 0);
    for seq in 0..2 {
        tx.try_push(&ping(seq), T0).unwrap();
    }
    let mut out = [Record::ZERO; 2];
    assert_eq!(rx.pop_batch(&mut out, T0), 2);
    // The slots still hold lap-0 records; the consumer now expects lap 1 and sees nothing.
    assert!(!rx.has_pending());
    assert!(rx.try_pop(T0).is_none());
}

#[derive(Debug, Clone)]
enum Op {
    Push(u8),
    Pop(u8),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![(1u8..20).prop_map(Op::Push), (1u8..20).prop_map(Op::Pop)],
        1..200,
    )
}

proptest! {
    /// Any interleaving of batch pushes and pops behaves like a bounded FIFO queue whose
    /// producer may see up to `release_every - 1` consumed slots late (lazy credit).
    #[test]
    fn behaves_like_a_bounded_fifo(ops in ops(), capacity_log2 in 1u32..8) {
        let capacity = 1u32 << capacity_log2;
        let lag = (capacity as usize / 8).max(1) - 1;
        let (mut tx, mut rx) = heap_ring(capacity, 0);
        let mut model = VecDeque::new();
        let mut next = 0u64;
        for op in ops {
            match op {
                Op::Push(n) => {
                    let batch: Vec<Record> = (next..next + u64::from(n)).map(ping).collect();
                    let pushed = tx.push_batch(&batch, T0);
                    let room = capacity as usize - model.len();
                    prop_assert!(pushed <= usize::from(n).min(room));
                    prop_assert!(pushed >= usize::from(n).min(room.saturating_sub(lag)));
                    model.extend(next..next + pushed as u64);
                    next += pushed as u64;
                }
                Op::Pop(n) => {
                    let mut out = vec![Record::ZERO; usize::from(n)];
                    let popped = rx.pop_batch(&mut out, T0);
                    prop_assert_eq!(popped, usize::from(n).min(model.len()));
                    for record in &out[..popped] {
                        prop_assert_eq!(Some(seq_of(record)), model.pop_front());
                    }
                }
            }
        }
    }
}
