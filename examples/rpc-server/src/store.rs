//! The key-value store behind the protocol: sharded hash maps under short locks, CAS uniques,
//! expiry on a clock passed in (seconds), a memory bound with refusal (no eviction: a full
//! store answers `SERVER_ERROR out of memory storing object`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::protocol::{StoreOp, expires_at};

/// One stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The bytes.
    pub value: Vec<u8>,
    /// Opaque client flags.
    pub flags: u32,
    /// The CAS unique of this version.
    pub cas: u64,
    /// Unix second it expires at (0: never).
    expires_s: i64,
    /// Unix second it was stored at (a delayed `flush_all` spares what is stored after it).
    stored_s: i64,
}

/// What a storage command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// `STORED`.
    Stored,
    /// `NOT_STORED`: the condition (add, replace, append, prepend) did not hold.
    NotStored,
    /// `EXISTS`: cas, and the value changed since.
    Exists,
    /// `NOT_FOUND`: cas of an absent key.
    NotFound,
    /// The memory bound would be exceeded.
    OutOfMemory,
}

/// What incr/decr did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    /// The new value.
    Value(u64),
    /// No such key.
    NotFound,
    /// The value is not a decimal number.
    NotNumeric,
}

/// Counters for `stats`.
#[derive(Debug, Default)]
pub struct Counters {
    /// get hits.
    pub get_hits: AtomicU64,
    /// get misses.
    pub get_misses: AtomicU64,
    /// Storage commands.
    pub sets: AtomicU64,
    /// Connections served.
    pub connections: AtomicU64,
}

const SHARDS: usize = 64;

/// The store.
#[derive(Debug)]
pub struct Store {
    shards: Vec<Mutex<HashMap<Vec<u8>, Item>>>,
    next_cas: AtomicU64,
    bytes: AtomicU64,
    bytes_max: u64,
    /// Everything stored before this Unix second is invalid (`flush_all`); 0: none.
    flushed_before_s: AtomicU64,
    /// Counters.
    pub counters: Counters,
}

/// FNV-1a of a key: spreads keys over shards and lock stripes.
pub fn key_hash(key: &[u8]) -> u64 {
    key.iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl Store {
    /// An empty store holding at most `bytes_max` bytes of keys and values.
    pub fn new(bytes_max: u64) -> Store {
        Store {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            next_cas: AtomicU64::new(1),
            bytes: AtomicU64::new(0),
            bytes_max,
            flushed_before_s: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    fn shard(&self, key: &[u8]) -> MutexGuard<'_, HashMap<Vec<u8>, Item>> {
        let hash = key_hash(key);
        let index = usize::try_from(hash % SHARDS as u64).expect("below SHARDS");
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live item at `key`, dropping it if it expired or was flushed.
    fn live<'m>(
        &self,
        map: &'m mut HashMap<Vec<u8>, Item>,
        key: &[u8],
        now_s: i64,
    ) -> Option<&'m mut Item> {
        let flushed = i64::try_from(self.flushed_before_s.load(Ordering::Relaxed)).unwrap_or(0);
        let dead = map.get(key).is_some_and(|item| {
            (item.expires_s != 0 && item.expires_s <= now_s)
                || (flushed != 0 && flushed <= now_s && item.stored_s <= flushed)
        });
        if dead {
            if let Some(item) = map.remove(key) {
                self.bytes.fetch_sub((key.len() + item.value.len()) as u64, Ordering::Relaxed);
            }
            return None;
        }
        map.get_mut(key)
    }

    /// A copy of the value at `key` (value, flags, cas), if live.
    pub fn get(&self, key: &[u8], now_s: i64) -> Option<(Vec<u8>, u32, u64)> {
        let mut map = self.shard(key);
        let found = self.live(&mut map, key, now_s).map(|i| (i.value.clone(), i.flags, i.cas));
        let counter =
            if found.is_some() { &self.counters.get_hits } else { &self.counters.get_misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// A storage command.
    pub fn store(
        &self,
        op: StoreOp,
        key: &[u8],
        flags: u32,
        exptime: i64,
        data: &[u8],
        now_s: i64,
    ) -> Stored {
        self.counters.sets.fetch_add(1, Ordering::Relaxed);
        let mut map = self.shard(key);
        let existing = self.live(&mut map, key, now_s).map(|i| (i.cas, i.value.len()));
        let new_len = match (op, existing) {
            (StoreOp::Add, Some(_))
            | (StoreOp::Replace | StoreOp::Append | StoreOp::Prepend, None) => {
                return Stored::NotStored;
            }
            (StoreOp::Cas(_), None) => return Stored::NotFound,
            (StoreOp::Cas(cas), Some((current, _))) if cas != current => return Stored::Exists,
            (StoreOp::Append | StoreOp::Prepend, Some((_, len))) => len + data.len(),
            _ => data.len(),
        };
        let old = existing.map_or(0, |(_, len)| key.len() + len) as u64;
        let new = (key.len() + new_len) as u64;
        let total = self.bytes.load(Ordering::Relaxed).saturating_sub(old) + new;
        if total > self.bytes_max {
            return Stored::OutOfMemory;
        }
        self.bytes.fetch_add(new, Ordering::Relaxed);
        self.bytes.fetch_sub(old, Ordering::Relaxed);
        let cas = self.next_cas.fetch_add(1, Ordering::Relaxed);
        match op {
            StoreOp::Append | StoreOp::Prepend => {
                let item = map.get_mut(key).expect("live above");
                if op == StoreOp::Append {
                    item.value.extend_from_slice(data);
                } else {
                    item.value.splice(0..0, data.iter().copied());
                }
                item.cas = cas;
            }
            _ => {
                let expires_s = expires_at(exptime, now_s);
                let item = Item { value: data.to_vec(), flags, cas, expires_s, stored_s: now_s };
                map.insert(key.to_vec(), item);
            }
        }
        Stored::Stored
    }

    /// Deletes `key`; false if it was not there.
    pub fn delete(&self, key: &[u8], now_s: i64) -> bool {
        let mut map = self.shard(key);
        if self.live(&mut map, key, now_s).is_none() {
            return false;
        }
        let item = map.remove(key).expect("live above");
        self.bytes.fetch_sub((key.len() + item.value.len()) as u64, Ordering::Relaxed);
        true
    }

    /// incr/decr: increments wrap at 2^64, decrements stop at 0.
    pub fn arith(&self, key: &[u8], incr: bool, delta: u64, now_s: i64) -> Arith {
        let mut map = self.shard(key);
        let Some(item) = self.live(&mut map, key, now_s) else { return Arith::NotFound };
        let Some(current) =
            std::str::from_utf8(&item.value).ok().and_then(|s| s.trim_end().parse::<u64>().ok())
        else {
            return Arith::NotNumeric;
        };
        let value = if incr { current.wrapping_add(delta) } else { current.saturating_sub(delta) };
        let text = value.to_string().into_bytes();
        let (old, new) = (item.value.len() as u64, text.len() as u64);
        item.value = text;
        item.cas = self.next_cas.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(new, Ordering::Relaxed);
        self.bytes.fetch_sub(old, Ordering::Relaxed);
        Arith::Value(value)
    }

    /// A new expiry for `key`; false if it is not there.
    pub fn touch(&self, key: &[u8], exptime: i64, now_s: i64) -> bool {
        let mut map = self.shard(key);
        match self.live(&mut map, key, now_s) {
            Some(item) => {
                item.expires_s = expires_at(exptime, now_s);
                true
            }
            None => false,
        }
    }

    /// Invalidates everything stored until `now_s + delay` (items are dropped lazily).
    pub fn flush_all(&self, delay: i64, now_s: i64) {
        let at = u64::try_from(now_s + delay.max(0)).unwrap_or(0);
        self.flushed_before_s.store(at.max(1), Ordering::Relaxed);
        if delay <= 0 {
            for shard in &self.shards {
                shard.lock().unwrap_or_else(PoisonError::into_inner).clear();
            }
            self.bytes.store(0, Ordering::Relaxed);
            self.flushed_before_s.store(0, Ordering::Relaxed);
        }
    }

    /// Items and bytes held (for `stats`).
    pub fn usage(&self) -> (u64, u64) {
        let items = self
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len() as u64)
            .sum();
        (items, self.bytes.load(Ordering::Relaxed))
    }

    /// The memory bound.
    pub fn bytes_max(&self) -> u64 {
        self.bytes_max
    }
}
