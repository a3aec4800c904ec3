//! Identifier newtypes. Ids that name things which are created and destroyed carry a
//! generation in their high bits, so a reused index is never confused with its predecessor.

/// A host worker (one per pinned worker thread; one event and one decision ring each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(pub u16);

/// An application attached to the control plane: index in the low 16 bits, generation in
/// the high 16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppId(pub u32);

impl AppId {
    /// Builds an id from an index and a generation.
    pub fn new(index: u16, generation: u16) -> AppId {
        AppId((u32::from(generation) << 16) | u32::from(index))
    }
    /// The index part.
    pub fn index(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
    /// The generation part.
    pub fn generation(self) -> u16 {
        (self.0 >> 16) as u16
    }
}

/// A task: index in the low 40 bits, generation in the high 24 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub u64);

impl TaskId {
    const INDEX_BITS: u32 = 40;
    const INDEX_MASK: u64 = (1 << Self::INDEX_BITS) - 1;
    const GENERATION_MAX: u32 = (1 << (64 - Self::INDEX_BITS)) - 1;

    /// Builds an id; the generation wraps within 24 bits.
    pub fn new(index: u64, generation: u32) -> TaskId {
        assert!(index <= Self::INDEX_MASK, "task index {index} exceeds 40 bits");
        let generation = u64::from(generation & Self::GENERATION_MAX);
        TaskId((generation << Self::INDEX_BITS) | index)
    }
    /// The index part.
    pub fn index(self) -> u64 {
        self.0 & Self::INDEX_MASK
    }
    /// The generation part.
    pub fn generation(self) -> u32 {
        (self.0 >> Self::INDEX_BITS) as u32
    }
}

/// A sender's epoch: bumped each time that side (re)starts, carried in every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u32);

/// A sequence number of a stream of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq(pub u64);

/// The version of the state a decision was computed from: a decision commits only if its
/// barrier still equals the target's current sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Barrier(pub u64);

/// A prestage slot of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotIndex(pub u16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_round_trip() {
        let app = AppId::new(7, 3);
        assert_eq!((app.index(), app.generation()), (7, 3));
        let task = TaskId::new((1 << 40) - 1, 0xff_ffff);
        assert_eq!(task.index(), (1 << 40) - 1);
        assert_eq!(task.generation(), 0xff_ffff);
        assert_eq!(TaskId::new(5, 1 << 24).generation(), 0, "generation wraps in 24 bits");
    }

    #[test]
    #[should_panic(expected = "exceeds 40 bits")]
    fn task_index_overflow_is_a_programmer_error() {
        let _ = TaskId::new(1 << 40, 0);
    }
}
