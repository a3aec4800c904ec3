/* Wave's tiered arena, for C and C++ code in a process whose Rust side installed an
 * allocator (memmgr::capi::install). Blocks live in a userfaultfd arena whose cold pages the
 * tier policy moves to a compressed tier; they come back on touch. */
#ifndef WAVE_ARENA_H
#define WAVE_ARENA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* `size` bytes (16-byte aligned; page aligned over 2 KiB), or NULL (none installed, full). */
void *wave_arena_alloc(size_t size);
/* 0, or -1 if `ptr` is not a live block of the arena (nothing changes then). */
int wave_arena_free(void *ptr);
/* The usable size of a live block, or 0. */
size_t wave_arena_usable_size(const void *ptr);
/* 1 if `ptr` points into the arena, else 0. */
int wave_arena_contains(const void *ptr);

#ifdef __cplusplus
}
#endif

#endif
