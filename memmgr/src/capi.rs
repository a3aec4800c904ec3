//! The C interface (`memmgr/include/wave_arena.h`): C and C++ code in the process allocates
//! from the allocator installed with [`install`]. This file's only unsafe items are the
//! exported symbol names (`#[unsafe(no_mangle)]`): the functions take and return plain
//! addresses and never dereference them.

use std::ffi::c_void;
use std::sync::OnceLock;

use crate::ArenaAlloc;

static GLOBAL: OnceLock<ArenaAlloc> = OnceLock::new();

/// Makes `alloc` the allocator behind the C interface (once per process); gives it back if
/// one is installed already.
pub fn install(alloc: ArenaAlloc) -> Result<&'static ArenaAlloc, ArenaAlloc> {
    let mut offered = Some(alloc);
    let installed = GLOBAL.get_or_init(|| offered.take().expect("offered once"));
    match offered {
        None => Ok(installed),
        Some(refused) => Err(refused),
    }
}

/// The installed allocator, if any.
pub fn installed() -> Option<&'static ArenaAlloc> {
    GLOBAL.get()
}

/// `size` bytes (aligned to 16, or to the page for blocks over 2 KiB) from the installed
/// arena; NULL if none is installed or it is full.
#[unsafe(no_mangle)]
pub extern "C" fn wave_arena_alloc(size: usize) -> *mut c_void {
    GLOBAL.get().and_then(|a| a.alloc(size, 16)).map_or(std::ptr::null_mut(), |p| p.as_ptr().cast())
}

/// Frees a block from `wave_arena_alloc`; returns 0, or -1 for a pointer that is not a live
/// block of the installed arena (nothing is changed then).
#[unsafe(no_mangle)]
pub extern "C" fn wave_arena_free(ptr: *mut c_void) -> i32 {
    match GLOBAL.get().map(|a| a.free(ptr.cast())) {
        Some(Ok(())) => 0,
        _ => -1,
    }
}

/// The usable size of a live block, or 0.
#[unsafe(no_mangle)]
pub extern "C" fn wave_arena_usable_size(ptr: *const c_void) -> usize {
    GLOBAL.get().and_then(|a| a.usable_size(ptr.cast())).unwrap_or(0)
}

/// 1 if `ptr` points into the installed arena, else 0.
#[unsafe(no_mangle)]
pub extern "C" fn wave_arena_contains(ptr: *const c_void) -> i32 {
    i32::from(GLOBAL.get().is_some_and(|a| a.arena().page_of(ptr as usize).is_some()))
}
