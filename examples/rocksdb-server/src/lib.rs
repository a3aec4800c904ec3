//! `rocksdb-server`: RocksDB behind the memcached text protocol, plus `scan`, on Wave's runtime
//! and stack (the server around it is `rpc_server::app`).
//!
//! Each value is stored with a 28-byte header: flags (u32), expiry and store time (Unix
//! seconds, i64 each; expiry 0: never), CAS unique (u64), all little-endian. Commands that read
//! and then write (add, replace, append, prepend, cas, incr, decr, touch, and set, so that it
//! orders with them) hold one of 64 key-striped locks. Expired and flushed items are skipped on
//! read and deleted lazily.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rocksdb::{DB, IteratorMode, Options};

pub mod arena_cache;

/// How the database is opened.
#[derive(Default)]
pub struct StoreOptions {
    /// The block cache (e.g. from [`arena_cache::block_cache`]); `None`: RocksDB's own.
    pub block_cache: Option<rocksdb::Cache>,
    /// Memtable size, bytes; `None`: RocksDB's default (64 MiB).
    pub write_buffer_bytes: Option<usize>,
    /// Target size of a table's data blocks, bytes; `None`: RocksDB's default (4 KiB). A
    /// block ends past this size by up to one entry.
    pub block_bytes: Option<usize>,
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("block_cache", &self.block_cache.is_some())
            .field("write_buffer_bytes", &self.write_buffer_bytes)
            .field("block_bytes", &self.block_bytes)
            .finish()
    }
}
use rpc_server::backend::{Backend, ScanItems};
use rpc_server::protocol::{StoreOp, expires_at};
use rpc_server::store::{Arith, Counters, Stored, key_hash};

const HEADER: usize = 28;
const STRIPES: usize = 64;

/// RocksDB as a memcached-protocol backend.
pub struct RocksStore {
    db: DB,
    stripes: Vec<Mutex<()>>,
    next_cas: AtomicU64,
    /// Items stored before this Unix second are invalid (`flush_all`); 0: none.
    flushed_before_s: AtomicU64,
    counters: Counters,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("path", &self.db.path()).finish()
    }
}

struct Item {
    flags: u32,
    expires_s: i64,
    stored_s: i64,
    cas: u64,
}

fn encode(item: &Item, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + data.len());
    out.extend_from_slice(&item.flags.to_le_bytes());
    out.extend_from_slice(&item.expires_s.to_le_bytes());
    out.extend_from_slice(&item.stored_s.to_le_bytes());
    out.extend_from_slice(&item.cas.to_le_bytes());
    out.extend_from_slice(data);
    out
}

fn decode(raw: &[u8]) -> Option<(Item, &[u8])> {
    if raw.len() < HEADER {
        return None;
    }
    let u32_at = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
    let i64_at = |at: usize| i64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
    let item =
        Item { flags: u32_at(0), expires_s: i64_at(4), stored_s: i64_at(12), cas: u64_at(20) };
    Some((item, &raw[HEADER..]))
}

impl RocksStore {
    /// Bytes the block cache holds now, as RocksDB charges them (`rocksdb.block-cache-usage`).
    pub fn block_cache_bytes(&self) -> Option<u64> {
        self.db.property_int_value("rocksdb.block-cache-usage").ok().flatten()
    }

    /// Opens (creating if needed) the database at `path`, with RocksDB's defaults.
    pub fn open(path: &Path) -> Result<RocksStore, rocksdb::Error> {
        RocksStore::open_with(path, &StoreOptions::default())
    }

    /// Opens (creating if needed) the database at `path` with `store`'s settings.
    pub fn open_with(path: &Path, store: &StoreOptions) -> Result<RocksStore, rocksdb::Error> {
        let mut options = Options::default();
        options.create_if_missing(true);
        if store.block_cache.is_some() || store.block_bytes.is_some() {
            let mut table = rocksdb::BlockBasedOptions::default();
            if let Some(cache) = &store.block_cache {
                table.set_block_cache(cache);
            }
            if let Some(bytes) = store.block_bytes {
                table.set_block_size(bytes);
            }
            options.set_block_based_table_factory(&table);
        }
        if let Some(bytes) = store.write_buffer_bytes {
            options.set_write_buffer_size(bytes);
        }
        let db = DB::open(&options, path)?;
        Ok(RocksStore {
            db,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            next_cas: AtomicU64::new(1),
            flushed_before_s: AtomicU64::new(0),
            counters: Counters::default(),
        })
    }

    fn stripe(&self, key: &[u8]) -> MutexGuard<'_, ()> {
        let hash = key_hash(key);
        let index = usize::try_from(hash % STRIPES as u64).expect("below STRIPES");
        self.stripes[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn live(&self, item: &Item, now_s: i64) -> bool {
        let flushed = i64::try_from(self.flushed_before_s.load(Ordering::Relaxed)).unwrap_or(0);
        let expired = item.expires_s != 0 && item.expires_s <= now_s;
        let flushed_away = flushed != 0 && flushed <= now_s && item.stored_s <= flushed;
        !expired && !flushed_away
    }

    /// The live item at `key`, as (header, value).
    fn read(&self, key: &[u8], now_s: i64) -> Option<(Item, Vec<u8>)> {
        let raw = self.db.get(key).ok().flatten()?;
        let (item, data) = decode(&raw)?;
        if !self.live(&item, now_s) {
            let _ = self.db.delete(key);
            return None;
        }
        let data = data.to_vec();
        Some((item, data))
    }

    fn write(&self, key: &[u8], flags: u32, expires_s: i64, data: &[u8], now_s: i64) -> bool {
        let cas = self.next_cas.fetch_add(1, Ordering::Relaxed);
        let item = Item { flags, expires_s, stored_s: now_s, cas };
        self.db.put(key, encode(&item, data)).is_ok()
    }
}

impl Backend for RocksStore {
    fn get(&self, key: &[u8], now_s: i64) -> Option<(Vec<u8>, u32, u64)> {
        let found = self.read(key, now_s).map(|(item, data)| (data, item.flags, item.cas));
        let c = &self.counters;
        let counter = if found.is_some() { &c.get_hits } else { &c.get_misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
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
        self.counters.sets.fetch_add(1, Ordering::Relaxed);
        let _stripe = self.stripe(key);
        let existing = self.read(key, now_s);
        let (flags, expires_s, value) = match (op, existing) {
            (StoreOp::Add, Some(_))
            | (StoreOp::Replace | StoreOp::Append | StoreOp::Prepend, None) => {
                return Stored::NotStored;
            }
            (StoreOp::Cas(_), None) => return Stored::NotFound,
            (StoreOp::Cas(cas), Some((item, _))) if cas != item.cas => return Stored::Exists,
            (StoreOp::Append, Some((item, mut old))) => {
                old.extend_from_slice(data);
                (item.flags, item.expires_s, old)
            }
            (StoreOp::Prepend, Some((item, old))) => {
                let mut value = data.to_vec();
                value.extend_from_slice(&old);
                (item.flags, item.expires_s, value)
            }
            _ => (flags, expires_at(exptime, now_s), data.to_vec()),
        };
        if self.write(key, flags, expires_s, &value, now_s) {
            Stored::Stored
        } else {
            Stored::OutOfMemory
        }
    }

    fn delete(&self, key: &[u8], now_s: i64) -> bool {
        let _stripe = self.stripe(key);
        self.read(key, now_s).is_some() && self.db.delete(key).is_ok()
    }

    fn arith(&self, key: &[u8], incr: bool, delta: u64, now_s: i64) -> Arith {
        let _stripe = self.stripe(key);
        let Some((item, data)) = self.read(key, now_s) else { return Arith::NotFound };
        let current =
            std::str::from_utf8(&data).ok().and_then(|s| s.trim_end().parse::<u64>().ok());
        let Some(current) = current else { return Arith::NotNumeric };
        let value = if incr { current.wrapping_add(delta) } else { current.saturating_sub(delta) };
        if self.write(key, item.flags, item.expires_s, value.to_string().as_bytes(), now_s) {
            Arith::Value(value)
        } else {
            Arith::NotFound
        }
    }

    fn touch(&self, key: &[u8], exptime: i64, now_s: i64) -> bool {
        let _stripe = self.stripe(key);
        let Some((item, data)) = self.read(key, now_s) else { return false };
        self.write(key, item.flags, expires_at(exptime, now_s), &data, now_s)
    }

    fn flush_all(&self, delay: i64, now_s: i64) {
        if delay > 0 {
            let at = u64::try_from(now_s + delay).unwrap_or(0);
            self.flushed_before_s.store(at.max(1), Ordering::Relaxed);
            return;
        }
        // Now: delete everything (a second-granular mark would also hide what is stored in
        // the same second after the flush).
        let keys: Vec<Box<[u8]>> =
            self.db.iterator(IteratorMode::Start).filter_map(Result::ok).map(|(k, _)| k).collect();
        for key in keys {
            let _ = self.db.delete(key);
        }
    }

    fn usage(&self) -> (u64, u64, u64) {
        let property = |name| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        (property("rocksdb.estimate-num-keys"), property("rocksdb.estimate-live-data-size"), 0)
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn scan(&self, start: &[u8], count: usize, now_s: i64) -> Option<ScanItems> {
        let mut items = Vec::with_capacity(count.min(1024));
        let from = IteratorMode::From(start, rocksdb::Direction::Forward);
        for entry in self.db.iterator(from) {
            if items.len() >= count {
                break;
            }
            let Ok((key, raw)) = entry else { break };
            let Some((item, data)) = decode(&raw) else { continue };
            if self.live(&item, now_s) {
                items.push((key.to_vec(), data.to_vec(), item.flags));
            }
        }
        Some(items)
    }
}
