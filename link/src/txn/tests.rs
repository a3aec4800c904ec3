use super::*;
use crate::proto::{Epoch, Message, PingRepr};
use std::sync::Barrier as ThreadBarrier;

fn decision(seq: u64) -> Record {
    Message::Ping(PingRepr { worker: WorkerId(0), seq, sent_at_ns: 0 }).to_record(Epoch(1))
}

fn seq_of(record: &Record) -> u64 {
    match record.parse().unwrap() {
        Message::Ping(p) => p.seq,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn publish_claim_commit_then_reuse() {
    let (mut agent, mut host) = heap_slots(2, WorkerId(3));
    assert!(host.try_claim().is_none(), "empty slots are not claimable");
    let published = agent.publish(&decision(10)).unwrap();
    assert_eq!(host.state(published.slot), (published.generation, Some(SlotState::Ready)));
    let claim = host.try_claim().unwrap();
    assert_eq!((claim.slot, claim.generation), (published.slot, published.generation));
    assert_eq!(seq_of(&claim.decision), 10);
    assert_eq!(host.state(claim.slot).1, Some(SlotState::Claimed));
    assert!(host.try_claim().is_none(), "a claimed slot is not claimed twice");
    let result = host.resolve(claim, TxnOutcome::Committed, Barrier(77));
    assert_eq!(host.state(claim.slot).1, Some(SlotState::Committed));
    assert_eq!((result.worker, result.barrier), (WorkerId(3), Barrier(77)));
    assert_eq!(agent.free_count(), 1, "busy until the result arrives");
    assert!(agent.on_result(&result).is_some());
    assert!(agent.on_result(&result).is_none(), "a duplicate result is refused");
    assert_eq!(agent.free_count(), 2);
}

#[test]
fn stale_and_rejected_outcomes_free_the_slot() {
    let (mut agent, mut host) = heap_slots(1, WorkerId(0));
    for outcome in [TxnOutcome::Stale, TxnOutcome::Rejected] {
        agent.publish(&decision(1)).unwrap();
        assert_eq!(agent.publish(&decision(2)), Err(TxnError::NoFreeSlot));
        let claim = host.try_claim().unwrap();
        let result = host.resolve(claim, outcome, Barrier(1));
        let expected =
            if outcome == TxnOutcome::Stale { SlotState::Stale } else { SlotState::Rejected };
        assert_eq!(host.state(claim.slot).1, Some(expected));
        assert!(agent.on_result(&result).is_some());
    }
}

#[test]
fn retract_before_claim_aborts_and_after_claim_fails() {
    let (mut agent, mut host) = heap_slots(2, WorkerId(0));
    let first = agent.publish(&decision(1)).unwrap();
    agent.retract(first).unwrap();
    assert_eq!(host.state(first.slot).1, Some(SlotState::Aborted));
    assert!(host.try_claim().is_none(), "an aborted decision is never claimed");
    assert_eq!(agent.retract(first), Err(TxnError::NotPublished), "retract is once");
    let second = agent.publish(&decision(2)).unwrap();
    assert_eq!(second.slot, first.slot, "the aborted slot is reused at once");
    assert_ne!(second.generation, first.generation);
    let claim = host.try_claim().unwrap();
    assert_eq!(agent.retract(second), Err(TxnError::AlreadyClaimed));
    let result = host.resolve(claim, TxnOutcome::Committed, Barrier(0));
    assert!(agent.on_result(&result).is_some());
}

#[test]
fn host_claims_in_publication_order() {
    let (mut agent, mut host) = heap_slots(4, WorkerId(0));
    let published: Vec<Published> = (0..4).map(|s| agent.publish(&decision(s)).unwrap()).collect();
    // Free slot 1 and 2 out of order, then publish two more: they land in low slots but are
    // newer, so the host must still take 0, 3, then the new ones.
    agent.retract(published[1]).unwrap();
    agent.retract(published[2]).unwrap();
    agent.publish(&decision(4)).unwrap();
    agent.publish(&decision(5)).unwrap();
    let mut order = Vec::new();
    while let Some(claim) = host.try_claim() {
        order.push(seq_of(&claim.decision));
        let result = host.resolve(claim, TxnOutcome::Committed, Barrier(0));
        assert!(agent.on_result(&result).is_some());
    }
    assert_eq!(order, [0, 3, 4, 5]);
}

#[test]
fn claim_where_takes_the_oldest_matching_decision() {
    let (mut agent, mut host) = heap_slots(4, WorkerId(0));
    for seq in [1, 2, 3, 4] {
        agent.publish(&decision(seq)).unwrap();
    }
    let even = |r: &Record| seq_of(r).is_multiple_of(2);
    let claim = host.try_claim_where(even).unwrap();
    assert_eq!(seq_of(&claim.decision), 2);
    let _ = host.resolve(claim, TxnOutcome::Committed, Barrier(0));
    let claim = host.try_claim_where(even).unwrap();
    assert_eq!(seq_of(&claim.decision), 4);
    let _ = host.resolve(claim, TxnOutcome::Committed, Barrier(0));
    assert!(host.try_claim_where(even).is_none(), "odd ones stay READY");
    assert_eq!(seq_of(&host.try_claim().unwrap().decision), 1);
}

#[test]
fn result_for_an_old_generation_is_refused() {
    let (mut agent, mut host) = heap_slots(1, WorkerId(0));
    agent.publish(&decision(1)).unwrap();
    let claim = host.try_claim().unwrap();
    let mut result = host.resolve(claim, TxnOutcome::Committed, Barrier(0));
    result.generation = result.generation.wrapping_sub(1);
    assert!(agent.on_result(&result).is_none());
    result.slot = SlotIndex(9);
    assert!(agent.on_result(&result).is_none(), "out-of-range slot");
}

/// Claim and retract race on real threads: every publication ends exactly one way.
#[test]
fn claim_versus_retract_race_has_exactly_one_winner() {
    const ROUNDS: u64 = 20_000;
    let (mut agent, mut host) = heap_slots(1, WorkerId(0));
    let start = Arc::new(ThreadBarrier::new(2));
    let (to_host, from_agent) = std::sync::mpsc::sync_channel::<Option<TxnResultRepr>>(1);
    let (to_agent, from_host) = std::sync::mpsc::sync_channel::<Option<TxnResultRepr>>(1);
    let host_start = start.clone();
    let host_thread = std::thread::spawn(move || {
        let mut claims = 0u64;
        for _ in 0..ROUNDS {
            host_start.wait();
            let mut result = None;
            for _ in 0..64 {
                if let Some(claim) = host.try_claim() {
                    result = Some(host.resolve(claim, TxnOutcome::Committed, Barrier(0)));
                    claims += 1;
                    break;
                }
                std::hint::spin_loop();
            }
            to_agent.send(result).unwrap();
            from_agent.recv().unwrap();
        }
        claims
    });
    let mut retracts = 0u64;
    for round in 0..ROUNDS {
        let published = agent.publish(&decision(round)).unwrap();
        start.wait();
        let retracted = agent.retract(published).is_ok();
        let host_result = from_host.recv().unwrap();
        match (retracted, host_result) {
            (true, None) => retracts += 1,
            (false, Some(result)) => assert!(agent.on_result(&result).is_some()),
            (true, Some(_)) => panic!("round {round}: both claim and retract won"),
            (false, None) => panic!("round {round}: neither won"),
        }
        to_host.send(None).unwrap();
    }
    let claims = host_thread.join().unwrap();
    assert_eq!(claims + retracts, ROUNDS);
    assert_eq!(agent.free_count(), 1);
}
