//! RocksDB's block cache in a `memmgr` arena, through the C++ shim `shim/arena_cache.cc` (a
//! `rocksdb::MemoryAllocator` over the arena's C interface, and the LRU cache constructor the
//! `rocksdb` crate calls). This file holds the crate's only unsafe code: the calls into the
//! shim, which take and return plain integers.

use std::sync::Arc;

use memmgr::{Arena, ArenaAlloc, capi};

unsafe extern "C" {
    fn wave_rocksdb_use_arena(on: i32);
    fn wave_rocksdb_heap_fallbacks() -> u64;
}

/// A block cache of `capacity_bytes` whose blocks live in `arena` (installed as the
/// process's C allocator: one arena per process), or in the heap without one.
pub fn block_cache(
    capacity_bytes: usize,
    arena: Option<&Arc<Arena>>,
) -> anyhow::Result<rocksdb::Cache> {
    let Some(arena) = arena else { return Ok(rocksdb::Cache::new_lru_cache(capacity_bytes)) };
    if capi::install(ArenaAlloc::new(arena.clone())).is_err() {
        anyhow::bail!("an arena allocator is installed already (one per process)");
    }
    // SAFETY: sets an atomic flag in the shim; no pointers cross.
    unsafe { wave_rocksdb_use_arena(1) };
    let cache = rocksdb::Cache::new_lru_cache(capacity_bytes);
    // SAFETY: as above.
    unsafe { wave_rocksdb_use_arena(0) };
    Ok(cache)
}

/// Blocks that found the arena full and were allocated from the heap instead.
pub fn heap_fallbacks() -> u64 {
    // SAFETY: reads an atomic counter in the shim; no arguments.
    unsafe { wave_rocksdb_heap_fallbacks() }
}
