//! The host's report of what became of a prestaged decision. The agent never reads host
//! memory to learn an outcome: the host posts this event instead, and only then may the agent
//! reuse the slot.

use super::{Barrier, ParseError, SlotIndex, WorkerId, le};

/// What the host did with a claimed decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TxnOutcome {
    /// Applied.
    Committed = 1,
    /// Not applied: its barrier no longer matched the target's state.
    Stale = 2,
    /// Not applied: the decision was invalid (bad target, out of range).
    Rejected = 3,
}

/// Event: slot `slot` of `worker` (generation `generation`) ended in `outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResultRepr {
    /// The worker owning the slot.
    pub worker: WorkerId,
    /// The slot.
    pub slot: SlotIndex,
    /// The slot generation the decision was published under.
    pub generation: u32,
    /// The outcome.
    pub outcome: TxnOutcome,
    /// The barrier the decision carried.
    pub barrier: Barrier,
}

impl TxnResultRepr {
    pub(super) fn parse_payload(p: &[u8]) -> Result<TxnResultRepr, ParseError> {
        let outcome = match p[4] {
            1 => TxnOutcome::Committed,
            2 => TxnOutcome::Stale,
            3 => TxnOutcome::Rejected,
            _ => return Err(ParseError::Field("outcome")),
        };
        if !le::zero(p, 5..8) || !le::zero(p, 12..16) || !le::zero(p, 24..48) {
            return Err(ParseError::Reserved);
        }
        Ok(TxnResultRepr {
            worker: WorkerId(le::u16_at(p, 0)),
            slot: SlotIndex(le::u16_at(p, 2)),
            generation: le::u32_at(p, 8),
            outcome,
            barrier: Barrier(le::u64_at(p, 16)),
        })
    }

    pub(super) fn emit_payload(&self, p: &mut [u8]) {
        le::put_u16(p, 0, self.worker.0);
        le::put_u16(p, 2, self.slot.0);
        p[4] = self.outcome as u8;
        le::put_u32(p, 8, self.generation);
        le::put_u64(p, 16, self.barrier.0);
    }
}
