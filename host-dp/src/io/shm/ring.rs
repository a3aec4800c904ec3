//! A bounded SPSC ring of 64-bit words with cached indices (Lamport with batching), for the
//! wire's descriptors and returns. Producer and consumer indices sit on their own cache lines;
//! each side re-reads the other's index only when its cached copy says full (or empty), and
//! publishes its own once per burst.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use link::region::Region;

/// Where a ring lives: a producer-index line, a consumer-index line, then the slots.
#[derive(Debug, Clone, Copy)]
pub(super) struct WordRing {
    offset: usize,
    capacity: u32,
}

impl WordRing {
    pub(super) fn at(offset: usize, capacity: u32) -> WordRing {
        assert!(offset.is_multiple_of(64) && capacity.is_power_of_two());
        WordRing { offset, capacity }
    }

    pub(super) fn bytes(capacity: u32) -> usize {
        128 + (capacity as usize * 8).next_multiple_of(64)
    }

    fn producer_index(&self) -> usize {
        self.offset
    }

    fn consumer_index(&self) -> usize {
        self.offset + 64
    }

    fn slot(&self, position: u64) -> usize {
        let index = usize::try_from(position & u64::from(self.capacity - 1)).expect("masked");
        self.offset + 128 + index * 8
    }
}

#[derive(Debug)]
pub(super) struct WordProducer {
    region: Arc<Region>,
    ring: WordRing,
    tail: u64,
    head_cache: u64,
}

impl WordProducer {
    pub(super) fn new(region: Arc<Region>, ring: WordRing) -> WordProducer {
        let tail = region.word(ring.producer_index()).load(Ordering::Acquire);
        WordProducer { region, ring, tail, head_cache: tail }
    }

    /// Queues one word; false when full. Not visible until [`WordProducer::publish`].
    pub(super) fn push(&mut self, word: u64) -> bool {
        let capacity = u64::from(self.ring.capacity);
        if self.tail - self.head_cache >= capacity {
            // Acquire pairs with the consumer's Release: slots below its index are free.
            self.head_cache = self.region.word(self.ring.consumer_index()).load(Ordering::Acquire);
            if self.tail - self.head_cache >= capacity {
                return false;
            }
        }
        self.region.word(self.ring.slot(self.tail)).store(word, Ordering::Relaxed);
        self.tail += 1;
        true
    }

    /// Makes queued words visible.
    pub(super) fn publish(&mut self) {
        // Release: the slot stores above happen before the consumer sees the new index.
        self.region.word(self.ring.producer_index()).store(self.tail, Ordering::Release);
    }
}

#[derive(Debug)]
pub(super) struct WordConsumer {
    region: Arc<Region>,
    ring: WordRing,
    head: u64,
    tail_cache: u64,
    released: u64,
}

impl WordConsumer {
    pub(super) fn new(region: Arc<Region>, ring: WordRing) -> WordConsumer {
        let head = region.word(ring.consumer_index()).load(Ordering::Acquire);
        WordConsumer { region, ring, head, tail_cache: head, released: head }
    }

    pub(super) fn pop(&mut self) -> Option<u64> {
        if self.head == self.tail_cache {
            // Acquire pairs with the producer's Release publish: the slots are written.
            self.tail_cache = self.region.word(self.ring.producer_index()).load(Ordering::Acquire);
            if self.head == self.tail_cache {
                return None;
            }
        }
        let word = self.region.word(self.ring.slot(self.head)).load(Ordering::Relaxed);
        self.head += 1;
        Some(word)
    }

    /// Tells the producer the popped slots may be reused (a no-op if none were popped, so an
    /// idle poll writes nothing the producer would have to re-read).
    pub(super) fn release(&mut self) {
        if self.head != self.released {
            // Release: our slot reads happen before the producer may overwrite them.
            self.region.word(self.ring.consumer_index()).store(self.head, Ordering::Release);
            self.released = self.head;
        }
    }
}
