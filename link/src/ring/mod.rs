//! Bounded single-producer single-consumer ring of 64-byte records over a shared region.
//!
//! Layout, in line with the link's rule that each side polls only memory it owns:
//! - in the **consumer's** memory: `capacity` slots of one record each;
//! - in the **producer's** memory: one cache line holding the consumer's *credit*, the
//!   position up to which slots were consumed and may be rewritten.
//!
//! A record is published by writing its body (words 1..8) and then its channel word (word 0)
//! with the stamp `position + 1`. The consumer polls the channel word of the slot it expects
//! next: one cache line carries both the "is it there" signal and the data, so a transfer costs
//! one line move, the physical floor. Stamps grow by `capacity` each lap, so a slot left over
//! from the previous lap never matches. Zeroed memory reads as empty.
//!
//! With the PCIe delay emulation on, the channel word also carries the record's visibility
//! time: `(position + 1) mod 2^24` in bits 0..24 and the visibility time in ns mod 2^40 in
//! bits 24..64. It stays one line per record (a separate stamp array would move a second line
//! per record, a cost the real link does not have). 24 bits still tell laps apart (capacity
//! ≤ 2^16), and the time is compared as a signed 40-bit difference: right for records read
//! up to 9 minutes after they became visible, where delays are at most 1 ms.
//!
//! Neither side reads the other's index on the hot path: the producer caches the credit and
//! re-reads it only when its cached view says the ring is full.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::clock::MonoNanos;
use crate::proto::Record;
use crate::region::Region;

/// Where one ring lives inside a region. Offsets in bytes, each 64-byte aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    /// Records in the ring: a power of two.
    pub capacity: u32,
    /// First slot (consumer memory).
    pub slots_offset: usize,
    /// The credit line (producer memory).
    pub credit_offset: usize,
    /// Emulated one-way delay: a record becomes visible this long after it was pushed.
    pub delay_ns: u64,
}

impl RingLayout {
    /// Bytes of consumer memory the slots take.
    pub fn consumer_bytes(capacity: u32) -> usize {
        capacity as usize * 64
    }

    fn check(&self, region: &Region) {
        assert!(self.capacity.is_power_of_two() && self.capacity >= 2, "bad ring capacity");
        assert!(
            self.slots_offset.is_multiple_of(64) && self.credit_offset.is_multiple_of(64),
            "unaligned ring"
        );
        assert!(self.delay_ns < 1 << 38, "delay beyond the channel word's time window");
        let end = self.slots_offset + Self::consumer_bytes(self.capacity);
        assert!(end <= region.len() && self.credit_offset + 64 <= region.len(), "ring overflow");
    }
}

/// Why a push did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// No free slot: the consumer is behind. Back off and retry; nothing was written.
    #[error("ring full")]
    Full,
}

#[inline]
fn stamp_le(position: u64) -> u64 {
    // The channel word is little-endian in the record contract; on the wire it is stored as
    // the native word whose bytes are that encoding.
    u64::from_ne_bytes((position + 1).to_le_bytes())
}

/// Bits of the position in a delayed ring's channel word.
const POSITION_BITS: u32 = 24;
const POSITION_MASK: u64 = (1 << POSITION_BITS) - 1;

/// A delayed ring's channel word: position stamp and visibility time (see the module docs).
#[inline]
fn delayed_word_le(position: u64, visible_at: MonoNanos) -> u64 {
    let value = (visible_at.0 << POSITION_BITS) | ((position + 1) & POSITION_MASK);
    u64::from_ne_bytes(value.to_le_bytes())
}

/// Reads a delayed ring's channel word: is it `position`'s, and is it visible at `now`?
#[inline]
fn delayed_word_check(word: u64, position: u64, now: MonoNanos) -> (bool, bool) {
    let value = u64::from_le_bytes(word.to_ne_bytes());
    let ours = value & POSITION_MASK == (position + 1) & POSITION_MASK;
    // Signed difference of the two 40-bit times: shift them to the top and compare as i64.
    let since = (now.0 << POSITION_BITS).wrapping_sub(value & !POSITION_MASK);
    (ours, ours && (since as i64) >= 0)
}

#[inline]
fn slot_index(position: u64, mask: u64) -> usize {
    // The mask is below 2^16 (RING_CAPACITY_MAX), so this never fails.
    usize::try_from(position & mask).expect("slot index fits usize")
}

/// The producing end. Owned by exactly one thread.
#[derive(Debug)]
pub struct Producer {
    region: Arc<Region>,
    layout: RingLayout,
    mask: u64,
    /// Next position to write.
    tail: u64,
    /// Last credit read from the consumer: positions below it are free to rewrite.
    credit_cache: u64,
}

impl Producer {
    /// Attaches the producing end of `layout`. Exactly one `Producer` may exist per ring.
    pub fn new(region: Arc<Region>, layout: RingLayout) -> Producer {
        layout.check(&region);
        // Resume after whatever was published before (zero for a fresh region).
        let credit = region.word(layout.credit_offset).load(Ordering::Acquire);
        let mask = u64::from(layout.capacity) - 1;
        Producer { region, layout, mask, tail: credit, credit_cache: credit }
    }

    /// Free slots as last seen; refreshes the credit from the consumer when short of `want`.
    #[inline]
    fn free(&mut self, want: u64) -> u64 {
        let capacity = u64::from(self.layout.capacity);
        let mut free = capacity - (self.tail - self.credit_cache);
        if free < want {
            // Acquire pairs with the consumer's Release credit store: once we see a credit,
            // the consumer has finished reading every slot below it, so rewriting is safe.
            self.credit_cache = self.region.word(self.layout.credit_offset).load(Ordering::Acquire);
            debug_assert!(self.credit_cache <= self.tail, "credit beyond tail: corrupt peer");
            free = capacity - (self.tail - self.credit_cache);
        }
        free
    }

    #[inline]
    fn write(&mut self, record: &Record, now: MonoNanos) {
        let index = slot_index(self.tail, self.mask);
        let slot = self.region.words(self.layout.slots_offset + index * 64, 8);
        for (word_index, word) in slot.iter().enumerate().skip(1) {
            // Relaxed: ordered before the consumer's read by the Release stamp below.
            word.store(record.word(word_index), Ordering::Relaxed);
        }
        let word = if self.layout.delay_ns > 0 {
            delayed_word_le(self.tail, now.plus_ns(self.layout.delay_ns))
        } else {
            stamp_le(self.tail)
        };
        // Release publishes the body together with the channel word: a consumer that
        // Acquire-loads this stamp sees the whole record.
        slot[0].store(word, Ordering::Release);
        self.tail += 1;
    }

    /// Pushes one record, stamped visible at `now + delay`.
    #[inline]
    pub fn try_push(&mut self, record: &Record, now: MonoNanos) -> Result<(), PushError> {
        if self.free(1) == 0 {
            return Err(PushError::Full);
        }
        self.write(record, now);
        Ok(())
    }

    /// Pushes as many of `records` as fit, in order; returns how many.
    #[inline]
    pub fn push_batch(&mut self, records: &[Record], now: MonoNanos) -> usize {
        let want = records.len() as u64;
        let count = usize::try_from(self.free(want).min(want)).expect("at most records.len()");
        for record in &records[..count] {
            self.write(record, now);
        }
        count
    }

    /// Records published so far.
    pub fn position(&self) -> u64 {
        self.tail
    }

    /// Capacity in records.
    pub fn capacity(&self) -> u32 {
        self.layout.capacity
    }
}

/// The consuming end. Owned by exactly one thread.
#[derive(Debug)]
pub struct Consumer {
    region: Arc<Region>,
    layout: RingLayout,
    mask: u64,
    /// Next position to read.
    head: u64,
    /// Credit last published to the producer.
    released: u64,
    /// Publish credit once this many records are consumed and unreleased.
    release_every: u64,
}

impl Consumer {
    /// Attaches the consuming end of `layout`. Exactly one `Consumer` may exist per ring.
    pub fn new(region: Arc<Region>, layout: RingLayout) -> Consumer {
        layout.check(&region);
        let head = region.word(layout.credit_offset).load(Ordering::Acquire);
        let mask = u64::from(layout.capacity) - 1;
        let release_every = (u64::from(layout.capacity) / 8).max(1);
        Consumer { region, layout, mask, head, released: head, release_every }
    }

    /// Reads the record at `head` into `out` if it is published and visible at `now`.
    #[inline]
    fn read(&self, out: &mut Record, now: MonoNanos) -> bool {
        let index = slot_index(self.head, self.mask);
        let slot = self.region.words(self.layout.slots_offset + index * 64, 8);
        // Acquire pairs with the producer's Release stamp store: seeing our stamp means the
        // body words are written.
        let word = slot[0].load(Ordering::Acquire);
        if self.layout.delay_ns > 0 {
            if !delayed_word_check(word, self.head, now).1 {
                return false; // not there, or still "in flight" on the emulated link
            }
        } else if word != stamp_le(self.head) {
            return false;
        }
        for (word_index, word) in slot.iter().enumerate() {
            out.set_word(word_index, word.load(Ordering::Relaxed));
        }
        true
    }

    /// Publishes credit lazily: every `release_every` records, or whenever the ring looks
    /// drained (`drained`), so a consumer that keeps polling never leaves the producer blocked.
    /// Writing the credit line on every pop would make it ping-pong with a producer that
    /// re-reads it while the ring is full.
    #[inline]
    fn release(&mut self, drained: bool) {
        let unreleased = self.head - self.released;
        if unreleased >= self.release_every || (drained && unreleased > 0) {
            // Release orders our reads of the consumed slots before the producer may reuse
            // them.
            self.region.word(self.layout.credit_offset).store(self.head, Ordering::Release);
            self.released = self.head;
        }
    }

    /// Pops one record visible at `now`.
    #[inline]
    pub fn try_pop(&mut self, now: MonoNanos) -> Option<Record> {
        let mut record = Record::ZERO;
        if !self.read(&mut record, now) {
            self.release(true);
            return None;
        }
        self.head += 1;
        self.release(false);
        Some(record)
    }

    /// Pops up to `out.len()` visible records in order; returns how many.
    #[inline]
    pub fn pop_batch(&mut self, out: &mut [Record], now: MonoNanos) -> usize {
        let mut count = 0;
        while count < out.len() && self.read(&mut out[count], now) {
            self.head += 1;
            count += 1;
        }
        self.release(count < out.len());
        count
    }

    /// True when the next record is published (visible or not yet).
    pub fn has_pending(&self) -> bool {
        let index = slot_index(self.head, self.mask);
        let word = self.region.word(self.layout.slots_offset + index * 64).load(Ordering::Acquire);
        if self.layout.delay_ns > 0 {
            delayed_word_check(word, self.head, MonoNanos(0)).0
        } else {
            word == stamp_le(self.head)
        }
    }

    /// Records consumed so far.
    pub fn position(&self) -> u64 {
        self.head
    }
}

/// A ring in a fresh heap region, for tests and in-process use: `(producer, consumer)`.
pub fn heap_ring(capacity: u32, delay_ns: u64) -> (Producer, Consumer) {
    let consumer_bytes = RingLayout::consumer_bytes(capacity);
    let region = Arc::new(Region::heap(consumer_bytes + 64).expect("heap ring region"));
    let layout = RingLayout { capacity, slots_offset: 0, credit_offset: consumer_bytes, delay_ns };
    (Producer::new(region.clone(), layout), Consumer::new(region, layout))
}

#[cfg(test)]
mod tests;
