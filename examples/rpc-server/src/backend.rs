//! What a session needs from a store: the in-memory [`crate::store::Store`] here, RocksDB in
//! `rocksdb-server`. One protocol, several backends.

use crate::protocol::StoreOp;
use crate::store::{Arith, Counters, Stored};

/// Items a `scan` returns: (key, value, flags), in key order.
pub type ScanItems = Vec<(Vec<u8>, Vec<u8>, u32)>;

/// A key-value store behind the memcached protocol. `now_s` is the Unix time in seconds.
pub trait Backend: Send + Sync + 'static {
    /// A copy of the value at `key` (value, flags, CAS unique), if live.
    fn get(&self, key: &[u8], now_s: i64) -> Option<(Vec<u8>, u32, u64)>;
    /// A storage command.
    fn store(
        &self,
        op: StoreOp,
        key: &[u8],
        flags: u32,
        exptime: i64,
        data: &[u8],
        now_s: i64,
    ) -> Stored;
    /// Deletes `key`; false if it was not there.
    fn delete(&self, key: &[u8], now_s: i64) -> bool;
    /// incr/decr.
    fn arith(&self, key: &[u8], incr: bool, delta: u64, now_s: i64) -> Arith;
    /// A new expiry; false if the key is not there.
    fn touch(&self, key: &[u8], exptime: i64, now_s: i64) -> bool;
    /// Invalidates everything stored until `now_s + delay`.
    fn flush_all(&self, delay: i64, now_s: i64);
    /// Items and bytes held, and the byte bound (for `stats`).
    fn usage(&self) -> (u64, u64, u64);
    /// The counters `stats` reports.
    fn counters(&self) -> &Counters;
    /// Up to `count` live items with keys at or after `start`, in key order (`scan`); `None`:
    /// this backend has no order (the command is unknown to it).
    fn scan(&self, _start: &[u8], _count: usize, _now_s: i64) -> Option<ScanItems> {
        None
    }
}

impl Backend for crate::store::Store {
    fn get(&self, key: &[u8], now_s: i64) -> Option<(Vec<u8>, u32, u64)> {
        crate::store::Store::get(self, key, now_s)
    }
    fn store(
        &self,
        op: StoreOp,
        key: &[u8],
        flags: u32,
        exptime: i64,
        data: &[u8],
        now_s: i64,
    ) -> Stored {
        crate::store::Store::store(self, op, key, flags, exptime, data, now_s)
    }
    fn delete(&self, key: &[u8], now_s: i64) -> bool {
        crate::store::Store::delete(self, key, now_s)
    }
    fn arith(&self, key: &[u8], incr: bool, delta: u64, now_s: i64) -> Arith {
        crate::store::Store::arith(self, key, incr, delta, now_s)
    }
    fn touch(&self, key: &[u8], exptime: i64, now_s: i64) -> bool {
        crate::store::Store::touch(self, key, exptime, now_s)
    }
    fn flush_all(&self, delay: i64, now_s: i64) {
        crate::store::Store::flush_all(self, delay, now_s);
    }
    fn usage(&self) -> (u64, u64, u64) {
        let (items, bytes) = crate::store::Store::usage(self);
        (items, bytes, self.bytes_max())
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
}
