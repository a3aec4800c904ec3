//! The arena allocator: blocks of every size class and page runs keep their data through
//! demotion and promotion, frees are checked, freed runs are retired (kept mapped, free to
//! the policy) and reused without a fault, and the C interface hands out the same blocks.
//! Needs root (userfaultfd), which CI has.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memmgr::{Arena, ArenaAlloc, FaultMode, FreeError, capi, get};

/// The arena words of the block at `ptr` of `len` bytes (blocks are 16-byte aligned).
fn words(arena: &Arena, ptr: *mut u8, len: usize) -> &[AtomicU64] {
    let start = (ptr as usize - arena.ptr_at(0) as usize) / 8;
    &arena.words()[start..start + len.div_ceil(8)]
}

fn pattern(block: usize, word: usize) -> u64 {
    (block as u64) << 32 | word as u64 | 1
}

#[test]
fn blocks_keep_their_data_through_demotion_and_frees_are_checked() {
    let arena = Arc::new(Arena::with_faults(512, FaultMode::InThread).expect("run as root"));
    let alloc = ArenaAlloc::new(arena.clone());
    let sizes = [1, 16, 24, 100, 512, 2048, 2049, 4096, 10_000, 40_000];
    let mut blocks = Vec::new();
    for round in 0..20 {
        for (k, &size) in sizes.iter().enumerate() {
            let ptr = alloc.alloc(size, 8).expect("room").as_ptr();
            assert!(alloc.usable_size(ptr).unwrap() >= size);
            let id = round * sizes.len() + k;
            for (w, word) in words(&arena, ptr, size).iter().enumerate() {
                word.store(pattern(id, w), Ordering::Relaxed);
            }
            blocks.push((id, ptr, size));
        }
    }
    // No two live blocks overlap: every word still holds its own block's pattern after all
    // the writes, and after every page went to the compressed tier and came back.
    for page in 0..arena.pages() {
        let _ = arena.demote(page).expect("demote");
    }
    assert!(get(&arena.counters().demotions) > 100);
    for &(id, ptr, size) in &blocks {
        for (w, word) in words(&arena, ptr, size).iter().enumerate() {
            assert_eq!(word.load(Ordering::Relaxed), pattern(id, w), "block {id} word {w}");
        }
    }
    // Frees: each once; a second time, an interior pointer or a foreign one is refused.
    let (_, small, _) = blocks[1];
    let (_, large, _) = blocks[9];
    alloc.free(small).unwrap();
    assert_eq!(alloc.free(small), Err(FreeError::NotLive(small as usize)));
    assert_eq!(alloc.free(large.wrapping_add(16)), Err(FreeError::NotLive(large as usize + 16)));
    let mut outside = 0u8;
    let foreign = std::ptr::from_mut(&mut outside);
    assert_eq!(alloc.free(foreign), Err(FreeError::Foreign(foreign as usize)));
    // A freed run is retired: its resident pages stay mapped and are free to the policy
    // (never parked), and the next run there reuses them without a fault.
    alloc.free(large).unwrap();
    let first = arena.page_of(large as usize).unwrap();
    assert!((first..first + 10).all(|p| arena.view(p).free), "free to the policy");
    assert!(!arena.park(first).unwrap(), "a retired page is not parked");
    let faults = get(&arena.counters().faults);
    let again = alloc.alloc(40_000, 4096).unwrap().as_ptr();
    assert_eq!(again, large, "first fit reuses the freed run");
    for (w, word) in words(&arena, again, 40_000).iter().enumerate() {
        word.store(pattern(999, w), Ordering::Relaxed);
    }
    assert_eq!(get(&arena.counters().faults), faults, "reuse costs no fault");
    assert!((first..first + 10).all(|p| !arena.view(p).free), "in use again");
    // Unsupported alignment, and a full arena, say so with None.
    assert!(alloc.alloc(64, 8192).is_none());
    assert!(alloc.alloc(512 * 4096, 8).is_none());
    for &(_, ptr, _) in &blocks[2..] {
        if ptr != large {
            alloc.free(ptr).unwrap();
        }
    }
    alloc.free(again).unwrap();
    alloc.free(blocks[0].1).unwrap();
    assert_eq!(alloc.in_use(), 0);
}

#[test]
fn the_c_interface_allocates_from_the_installed_arena() {
    assert!(capi::wave_arena_alloc(64).is_null(), "nothing installed yet");
    let arena = Arc::new(Arena::new(64).expect("run as root"));
    let alloc = capi::install(ArenaAlloc::new(arena.clone())).expect("first install");
    let ptr = capi::wave_arena_alloc(3000);
    assert!(!ptr.is_null());
    assert_eq!(capi::wave_arena_contains(ptr), 1);
    assert_eq!(capi::wave_arena_usable_size(ptr), 4096);
    assert!(alloc.in_use() >= 3000);
    assert_eq!(capi::wave_arena_free(ptr), 0);
    assert_eq!(capi::wave_arena_free(ptr), -1, "a double free is refused");
    let mut outside = 0u64;
    let foreign = std::ptr::from_mut(&mut outside).cast();
    assert_eq!((capi::wave_arena_contains(foreign), capi::wave_arena_free(foreign)), (0, -1));
    assert!(capi::install(ArenaAlloc::new(arena)).is_err(), "one per process");
}

#[test]
fn a_run_freed_by_one_thread_never_drops_another_threads_fresh_block() {
    // Threads allocate page runs, fill them, check them and free them, racing each other for
    // the same few pages while a mechanism thread parks random pages: a freed run must be
    // retired (its parked pages dropped) before the run is handed out again (dropping after
    // that would zero the new owner's data).
    const THREADS: usize = 3;
    let arena = Arc::new(Arena::with_faults(64, FaultMode::InThread).expect("run as root"));
    let alloc = Arc::new(ArenaAlloc::new(arena.clone()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let parker = {
        let (arena, stop) = (arena.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut page = 0usize;
            while !stop.load(Ordering::Relaxed) {
                page = (page * 7 + 3) % arena.pages();
                arena.park(page).expect("park");
            }
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (arena, alloc) = (arena.clone(), alloc.clone());
            std::thread::spawn(move || {
                let start = std::time::Instant::now();
                let mut rounds = 0usize;
                while start.elapsed() < std::time::Duration::from_millis(1500) {
                    let len = 4096 * (2 + rounds % 3);
                    let Some(ptr) = alloc.alloc(len, 16) else { continue };
                    let id = t * 1_000_000 + rounds;
                    let block = words(&arena, ptr.as_ptr(), len);
                    for (w, word) in block.iter().enumerate() {
                        word.store(pattern(id, w), Ordering::Relaxed);
                    }
                    std::thread::yield_now();
                    for (w, word) in block.iter().enumerate() {
                        let got = word.load(Ordering::Relaxed);
                        assert_eq!(got, pattern(id, w), "thread {t} round {rounds} word {w}");
                    }
                    alloc.free(ptr.as_ptr()).expect("a live run");
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    let rounds: usize = workers.into_iter().map(|w| w.join().expect("data intact")).sum();
    stop.store(true, Ordering::Relaxed);
    parker.join().expect("parker");
    assert!(rounds > 1000, "the threads must have raced: {rounds} rounds");
    assert!(get(&arena.counters().parks) > 100, "pages were parked meanwhile");
    assert_eq!(alloc.in_use(), 0);
}
