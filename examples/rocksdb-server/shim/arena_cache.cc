// RocksDB's block cache in a Wave arena: a rocksdb::MemoryAllocator that takes its memory from
// the tiered arena installed by the Rust side (memmgr's C interface, wave_arena.h), so the
// blocks RocksDB caches are the pages the tier policy parks, compresses and brings back.
//
// How it reaches the `rocksdb` crate: the crate makes its block cache with the C API's
// rocksdb_cache_create_lru(capacity), and this file defines that function too. The program's
// own definition wins over the shared library's at link time, so every LRU cache the program
// makes goes through here: with the arena allocator once wave_rocksdb_use_arena(1) was called,
// exactly as the library would make it otherwise. rocksdb_cache_t is the C API's wrapper of a
// shared_ptr<Cache> (c.cc); this definition has the same layout, so the library's own
// rocksdb_cache_destroy deletes it as its own.

#include <atomic>
#include <cstddef>
#include <memory>
#include <new>

#include <rocksdb/cache.h>
#include <rocksdb/memory_allocator.h>

#include "wave_arena.h"

extern "C" {
struct rocksdb_cache_t {
  std::shared_ptr<rocksdb::Cache> rep;
};
}

namespace {

std::atomic<int> use_arena{0};
std::atomic<unsigned long long> heap_fallbacks{0};

class ArenaAllocator : public rocksdb::MemoryAllocator {
 public:
  const char* Name() const override { return "WaveArenaAllocator"; }

  void* Allocate(size_t size) override {
    void* block = wave_arena_alloc(size);
    if (block == nullptr) {  // the arena is full: the heap, counted
      heap_fallbacks.fetch_add(1, std::memory_order_relaxed);
      block = ::operator new(size);
    }
    return block;
  }

  void Deallocate(void* block) override {
    if (wave_arena_contains(block)) {
      wave_arena_free(block);
    } else {
      ::operator delete(block);
    }
  }

  size_t UsableSize(void* block, size_t allocation_size) const override {
    size_t usable = wave_arena_usable_size(block);
    return usable != 0 ? usable : allocation_size;
  }
};

}  // namespace

extern "C" {

// From now on, LRU caches take their memory from the arena (0: from the heap again).
void wave_rocksdb_use_arena(int on) { use_arena.store(on, std::memory_order_relaxed); }

// Blocks that found the arena full and went to the heap.
unsigned long long wave_rocksdb_heap_fallbacks(void) {
  return heap_fallbacks.load(std::memory_order_relaxed);
}

rocksdb_cache_t* rocksdb_cache_create_lru(size_t capacity) {
  rocksdb::LRUCacheOptions options;
  options.capacity = capacity;
  if (use_arena.load(std::memory_order_relaxed) != 0) {
    options.memory_allocator = std::make_shared<ArenaAllocator>();
  }
  auto* cache = new rocksdb_cache_t;
  cache->rep = rocksdb::NewLRUCache(options);
  return cache;
}

}  // extern "C"
