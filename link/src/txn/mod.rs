//! Prestage slots: decisions the agent computed ahead of need, parked in the host's memory,
//! claimed by the host without waiting on the link (Wave's prestaging; ghOSt's PNT ring).
//!
//! Each slot is one 64-byte record whose channel word is the slot's *state word*:
//! `generation << 32 | state`. States:
//!
//! ```text
//!   EMPTY ──agent publish──▶ READY ──host claim (CAS)──▶ CLAIMED ──host──▶ COMMITTED
//!                              │                            └──────host──▶ STALE / REJECTED
//!                              └──agent retract (CAS)──▶ ABORTED
//! ```
//!
//! Claim and retract are compare-and-swaps on the same word from READY, so exactly one of them
//! wins. Every publish takes a new generation (a per-worker counter), so a CAS aimed at an
//! older publication of the same slot fails instead of hitting the new one (the ABA problem
//! that ghOSt's REAPED state solves). The host claims the READY slot with the lowest
//! generation: prestaged decisions are taken in the order the agent made them.
//!
//! The agent never reads slot states across the link to learn outcomes: the host reports each
//! claimed slot's end with a `TxnResult` event, and only then (or after its own successful
//! retract) does the agent reuse the slot. A decision commits only if the barrier it carries
//! still matches the target's state; the caller checks that and resolves the claim.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::proto::{Barrier, Record, SlotIndex, TxnOutcome, TxnResultRepr, WorkerId};
use crate::region::Region;

/// The state part of a slot's state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SlotState {
    /// Never published, or reset.
    Empty = 0,
    /// Published by the agent, claimable.
    Ready = 1,
    /// Claimed by the host; the outcome follows.
    Claimed = 2,
    /// Applied by the host.
    Committed = 3,
    /// Refused by the host: the barrier no longer matched.
    Stale = 4,
    /// Retracted by the agent before any claim.
    Aborted = 5,
    /// Refused by the host: the decision was invalid.
    Rejected = 6,
}

impl SlotState {
    fn from_u8(value: u8) -> Option<SlotState> {
        Some(match value {
            0 => SlotState::Empty,
            1 => SlotState::Ready,
            2 => SlotState::Claimed,
            3 => SlotState::Committed,
            4 => SlotState::Stale,
            5 => SlotState::Aborted,
            6 => SlotState::Rejected,
            _ => return None,
        })
    }
}

fn pack(generation: u32, state: SlotState) -> u64 {
    u64::from_ne_bytes(((u64::from(generation) << 32) | state as u64).to_le_bytes())
}

fn unpack(word: u64) -> (u32, Option<SlotState>) {
    let value = u64::from_le_bytes(word.to_ne_bytes());
    ((value >> 32) as u32, SlotState::from_u8((value & 0xff) as u8))
}

/// Where one worker's slots live (host memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotsLayout {
    /// First slot.
    pub offset: usize,
    /// Slot count.
    pub count: u16,
}

impl SlotsLayout {
    fn check(&self, region: &Region) {
        assert!(self.offset.is_multiple_of(64), "unaligned slots");
        assert!(self.offset + usize::from(self.count) * 64 <= region.len(), "slots overflow");
    }

    fn slot<'r>(&self, region: &'r Region, slot: SlotIndex) -> &'r [AtomicU64] {
        assert!(slot.0 < self.count, "slot {} out of {}", slot.0, self.count);
        region.words(self.offset + usize::from(slot.0) * 64, 8)
    }
}

/// Why the agent could not publish or retract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// Every slot holds a decision whose outcome is not known yet.
    #[error("no free prestage slot")]
    NoFreeSlot,
    /// The host claimed the decision first; its outcome will come as a `TxnResult`.
    #[error("already claimed by the host")]
    AlreadyClaimed,
    /// The slot is not the agent's to touch (unknown, not published, or another generation).
    #[error("slot not published under that generation")]
    NotPublished,
}

/// A decision the agent has in flight in a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The slot.
    pub slot: SlotIndex,
    /// Its generation.
    pub generation: u32,
}

/// The agent's end of one worker's slots.
#[derive(Debug)]
pub struct AgentSlots {
    region: Arc<Region>,
    layout: SlotsLayout,
    /// The generation each slot is busy with and the decision it holds, or `None` when the
    /// agent may reuse it.
    busy: Vec<Option<(u32, Record)>>,
    next_generation: u32,
}

impl AgentSlots {
    /// Attaches the agent end. Exactly one per worker.
    pub fn new(region: Arc<Region>, layout: SlotsLayout) -> AgentSlots {
        layout.check(&region);
        let busy = vec![None; usize::from(layout.count)];
        AgentSlots { region, layout, busy, next_generation: 1 }
    }

    /// Slots the agent may publish into now.
    pub fn free_count(&self) -> usize {
        self.busy.iter().filter(|b| b.is_none()).count()
    }

    /// Publishes `decision` (channel word ignored) into a free slot.
    pub fn publish(&mut self, decision: &Record) -> Result<Published, TxnError> {
        let index = self.busy.iter().position(Option::is_none).ok_or(TxnError::NoFreeSlot)?;
        let slot = SlotIndex(u16::try_from(index).expect("slot count is a u16"));
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let words = self.layout.slot(&self.region, slot);
        for (word_index, word) in words.iter().enumerate().skip(1) {
            // Relaxed: published by the Release store of READY below.
            word.store(decision.word(word_index), Ordering::Relaxed);
        }
        // Release: a host that Acquire-claims this generation sees the decision's body.
        words[0].store(pack(generation, SlotState::Ready), Ordering::Release);
        self.busy[index] = Some((generation, *decision));
        Ok(Published { slot, generation })
    }

    /// Takes back a published decision the host has not claimed. On success the slot is free.
    pub fn retract(&mut self, published: Published) -> Result<(), TxnError> {
        let index = usize::from(published.slot.0);
        if self.busy.get(index).copied().flatten().map(|(g, _)| g) != Some(published.generation) {
            return Err(TxnError::NotPublished);
        }
        let word = &self.layout.slot(&self.region, published.slot)[0];
        let ready = pack(published.generation, SlotState::Ready);
        let aborted = pack(published.generation, SlotState::Aborted);
        // AcqRel on the same word the host CASes: exactly one of claim and retract succeeds.
        match word.compare_exchange(ready, aborted, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                self.busy[index] = None;
                Ok(())
            }
            Err(_) => Err(TxnError::AlreadyClaimed),
        }
    }

    /// Applies the host's report of a claimed slot's end; frees the slot and returns the
    /// decision it held, so a failed one can go back to the policy. Returns `None` (and
    /// changes nothing) for a report that names no in-flight publication: a stale or forged
    /// event, which the caller counts.
    pub fn on_result(&mut self, result: &TxnResultRepr) -> Option<Record> {
        let index = usize::from(result.slot.0);
        match self.busy.get(index) {
            Some(Some((generation, decision))) if *generation == result.generation => {
                let decision = *decision;
                self.busy[index] = None;
                Some(decision)
            }
            _ => None,
        }
    }
}

/// A decision the host claimed and must resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a claimed decision must be resolved, or its slot stays busy forever"]
pub struct Claimed {
    /// The slot.
    pub slot: SlotIndex,
    /// The generation it was published under.
    pub generation: u32,
    /// A private copy of the decision (channel word = the claim's state word).
    pub decision: Record,
}

/// The host's end of one worker's slots.
#[derive(Debug)]
pub struct HostSlots {
    region: Arc<Region>,
    layout: SlotsLayout,
    worker: WorkerId,
}

impl HostSlots {
    /// Attaches the host end. Exactly one per worker.
    pub fn new(region: Arc<Region>, layout: SlotsLayout, worker: WorkerId) -> HostSlots {
        layout.check(&region);
        HostSlots { region, layout, worker }
    }

    /// Claims the oldest READY decision, without waiting. Polls host memory only.
    pub fn try_claim(&mut self) -> Option<Claimed> {
        self.try_claim_where(|_| true)
    }

    /// Claims the oldest READY decision for which `wanted` holds (e.g. a token for one
    /// listener among tokens for several), without waiting.
    ///
    /// `wanted` sees a copy of the body read after the slot was seen READY under generation
    /// `g`; the claim is a CAS from READY `g`, so it fails (and the copy is discarded) if the
    /// agent retracted or republished the slot in between.
    pub fn try_claim_where(&mut self, wanted: impl Fn(&Record) -> bool) -> Option<Claimed> {
        // Bounded: each failed CAS means a retract removed a READY slot, and the agent cannot
        // re-add one under the same generation.
        for _ in 0..=self.layout.count {
            let (slot, generation, mut decision) = self.oldest_ready(&wanted)?;
            let word = &self.layout.slot(&self.region, slot)[0];
            let ready = pack(generation, SlotState::Ready);
            let claimed = pack(generation, SlotState::Claimed);
            if word.compare_exchange(ready, claimed, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                decision.set_word(0, claimed);
                return Some(Claimed { slot, generation, decision });
            }
        }
        None
    }

    /// The oldest READY slot whose body `wanted` accepts, with its generation and body.
    fn oldest_ready(&self, wanted: &impl Fn(&Record) -> bool) -> Option<(SlotIndex, u32, Record)> {
        // One bounds check for every slot's words (8 per slot).
        let all = self.region.words(self.layout.offset, usize::from(self.layout.count) * 8);
        let mut best: Option<(SlotIndex, u32, Record)> = None;
        for (index, words) in (0..self.layout.count).zip(all.chunks_exact(8)) {
            // Acquire pairs with the agent's Release publish: the body below is this
            // generation's, unless the slot changes, which the claim's CAS then detects.
            let (generation, state) = unpack(words[0].load(Ordering::Acquire));
            if state != Some(SlotState::Ready) {
                continue;
            }
            // Wrapping comparison: generations are a counter that may wrap.
            if best.is_some_and(|(_, g, _)| (generation.wrapping_sub(g) as i32) >= 0) {
                continue;
            }
            let mut body = Record::ZERO;
            for (word_index, word) in words.iter().enumerate().skip(1) {
                body.set_word(word_index, word.load(Ordering::Relaxed));
            }
            if wanted(&body) {
                best = Some((SlotIndex(index), generation, body));
            }
        }
        best
    }

    /// Ends a claim with `outcome` and returns the `TxnResult` event to send to the agent.
    pub fn resolve(
        &mut self,
        claim: Claimed,
        outcome: TxnOutcome,
        barrier: Barrier,
    ) -> TxnResultRepr {
        let state = match outcome {
            TxnOutcome::Committed => SlotState::Committed,
            TxnOutcome::Stale => SlotState::Stale,
            TxnOutcome::Rejected => SlotState::Rejected,
        };
        let word = &self.layout.slot(&self.region, claim.slot)[0];
        let previous = word.swap(pack(claim.generation, state), Ordering::Release);
        debug_assert_eq!(previous, pack(claim.generation, SlotState::Claimed), "double resolve");
        TxnResultRepr {
            worker: self.worker,
            slot: claim.slot,
            generation: claim.generation,
            outcome,
            barrier,
        }
    }

    /// The state of `slot` as the host sees it (diagnostics and tests).
    pub fn state(&self, slot: SlotIndex) -> (u32, Option<SlotState>) {
        unpack(self.layout.slot(&self.region, slot)[0].load(Ordering::Acquire))
    }
}

/// Agent and host ends of `count` slots in a fresh heap region (tests, in-process use).
pub fn heap_slots(count: u16, worker: WorkerId) -> (AgentSlots, HostSlots) {
    let region = Arc::new(Region::heap(usize::from(count.max(1)) * 64).expect("slots region"));
    let layout = SlotsLayout { offset: 0, count };
    (AgentSlots::new(region.clone(), layout), HostSlots::new(region, layout, worker))
}

#[cfg(test)]
mod tests;
