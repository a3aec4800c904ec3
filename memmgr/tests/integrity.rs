//! No data loss, ever: threads hammer random pages with checksummed writes and verified reads
//! while a demoter moves random pages to the compressed tier and faults bring them back, with
//! faults resolved by the handler thread and in the faulting thread (SIGBUS).
//! Needs root (userfaultfd), which CI has.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use memmgr::{Arena, FaultMode, get};

const WORDS_PER_PAGE: usize = 512;

/// xorshift64*: a small deterministic generator per thread.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// A random index below `bound`.
fn below(state: &mut u64, bound: usize) -> usize {
    usize::try_from(next(state) % bound as u64).expect("below a usize bound")
}

/// Each page holds a version in word 0 and, in words 1..512, values derived from it; a
/// writer owning the page bumps the version and rewrites the rest; anyone can verify.
fn expected(page: usize, version: u64, word: usize) -> u64 {
    version.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((page as u64) << 20) ^ word as u64
}

fn write_page(arena: &Arena, page: usize, version: u64) {
    let words = &arena.words()[page * WORDS_PER_PAGE..(page + 1) * WORDS_PER_PAGE];
    for (index, word) in words.iter().enumerate().skip(1) {
        word.store(expected(page, version, index), Ordering::Relaxed);
    }
    words[0].store(version, Ordering::Release);
}

fn check_page(arena: &Arena, page: usize, version: u64) {
    let words = &arena.words()[page * WORDS_PER_PAGE..(page + 1) * WORDS_PER_PAGE];
    assert_eq!(words[0].load(Ordering::Acquire), version, "page {page}: version");
    for (index, word) in words.iter().enumerate().skip(1) {
        let got = word.load(Ordering::Relaxed);
        assert_eq!(got, expected(page, version, index), "page {page} word {index}");
    }
}

fn concurrent_readers_and_writers_lose_nothing_while_pages_move(mode: FaultMode, batched: bool) {
    const PAGES: usize = 512;
    const THREADS: usize = 3;
    let arena = Arc::new(Arena::with_faults(PAGES, mode).expect("userfaultfd (run as root)"));
    // Thread t owns pages p with p % THREADS == t (it alone writes them, so it knows their
    // versions); untouched pages read as zeros.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (arena, stop) = (arena.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut versions = vec![0u64; PAGES];
                let mut rng = 0x1234_5678 + t as u64;
                let mut ops = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let page = below(&mut rng, PAGES / THREADS) * THREADS + t;
                    if next(&mut rng).is_multiple_of(3) {
                        versions[page] += 1;
                        write_page(&arena, page, versions[page]);
                    } else if versions[page] > 0 {
                        check_page(&arena, page, versions[page]);
                    } else {
                        assert_eq!(arena.words()[page * WORDS_PER_PAGE].load(Ordering::Relaxed), 0);
                    }
                    ops += 1;
                }
                // At the end every page this thread wrote holds its last version.
                for (page, &version) in versions.iter().enumerate() {
                    if version > 0 {
                        check_page(&arena, page, version);
                    }
                }
                ops
            })
        })
        .collect();
    // The mechanism's driver: parks and demotes random pages, as fast as it can, for a
    // bounded time (a policy would pick cold ones).
    let start = Instant::now();
    let mut rng = 99u64;
    let mut demoted = 0;
    let mut rounds = 0u64;
    while start.elapsed() < Duration::from_secs(3) {
        rounds += 1;
        if rounds.is_multiple_of(64) {
            // An epoch's housekeeping, racing the workers' writes: tracking re-protects
            // written pages, and the copies of written promoted pages go.
            arena.track_writes().expect("tracking");
            arena.reclaim();
        }
        let page = below(&mut rng, PAGES);
        if batched {
            // A policy's batch: park a run of pages at their versions, then demote them.
            let run = (page..PAGES.min(page + 40)).collect::<Vec<_>>();
            let command = |index: usize, op| {
                let page = u32::try_from(index).unwrap();
                memmgr::Command { page, version: arena.view(index).version, op }
            };
            let parks: Vec<_> = run.iter().map(|&i| command(i, memmgr::Op::Park)).collect();
            arena.apply(&parks).expect("parks");
            let demotes: Vec<_> = run.iter().map(|&i| command(i, memmgr::Op::Demote)).collect();
            demoted += arena.apply(&demotes).expect("demotes").done;
        } else if next(&mut rng).is_multiple_of(2) {
            arena.park(page).expect("park");
        } else if arena.demote(page).expect("demote") {
            demoted += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let ops: u64 = workers.into_iter().map(|w| w.join().expect("a worker found bad data")).sum();
    let c = arena.counters();
    eprintln!(
        "ops {ops}, demoted {demoted}, parks {}, unparks {}, promotions {}, zero fills {}, \
         faults {}, incompressible {}, copies reused {}, stale {}",
        get(&c.parks),
        get(&c.unparks),
        get(&c.promotions),
        get(&c.zero_fills),
        get(&c.faults),
        get(&c.incompressible),
        get(&c.copies_reused),
        get(&c.copies_stale)
    );
    assert!(demoted > 100, "the demoter must have worked: {demoted}");
    assert!(get(&c.promotions) > 50, "pages must have come back on access");
    assert!(get(&c.unparks) > 50, "parked pages must have been touched and come back");
    assert!(get(&c.copies_reused) > 0, "clean promoted pages must have kept their copies");
}

fn parking_tells_touched_pages_from_untouched_ones(mode: FaultMode) {
    let arena = Arena::with_faults(8, mode).expect("userfaultfd (run as root)");
    for page in 0..8 {
        write_page(&arena, page, 1);
        assert!(arena.park(page).unwrap());
        assert!(arena.is_parked(page));
    }
    // Touch the even pages: they come back, marked; the odd ones stay parked.
    for page in (0..8).step_by(2) {
        check_page(&arena, page, 1);
    }
    for page in 0..8 {
        assert_eq!(arena.take_touched(page), page % 2 == 0, "page {page}");
        assert_eq!(arena.is_parked(page), page % 2 == 1, "page {page}");
    }
    assert!(!arena.take_touched(0), "the mark clears");
    // Untouched parked pages are the ones worth compressing; they read back exactly later.
    for page in (1..8).step_by(2) {
        assert!(arena.demote(page).unwrap());
    }
    for page in 0..8 {
        check_page(&arena, page, 1);
    }
    let c = arena.counters();
    assert_eq!((get(&c.parks), get(&c.unparks), get(&c.promotions)), (8, 4, 4));
}

fn a_cold_page_stays_compressed_and_reads_back_exactly(mode: FaultMode) {
    let arena = Arena::with_faults(16, mode).expect("userfaultfd (run as root)");
    for page in 0..16 {
        write_page(&arena, page, 7);
    }
    for page in 0..16 {
        assert!(arena.demote(page).unwrap(), "page {page} compresses");
        assert!(arena.is_compressed(page));
    }
    // Each page kept compressed took at most three quarters of a page.
    let held = get(&arena.counters().compressed_bytes);
    assert!(held > 0 && held <= 16 * 3072, "{held} bytes");
    for page in (0..16).rev() {
        check_page(&arena, page, 7);
        assert!(!arena.is_compressed(page));
    }
    assert_eq!(get(&arena.counters().promotions), 16);
    // The fault path freed nothing. The copies of pages only read are kept (write
    // tracking: they are still the pages' contents); once written, the mechanism frees them.
    assert_eq!(arena.reclaim(), 0);
    for page in 0..16 {
        write_page(&arena, page, 8);
    }
    assert_eq!(arena.track_writes().unwrap().len(), 16);
    assert_eq!(arena.reclaim(), held);
    assert_eq!(get(&arena.counters().compressed_bytes), 0);
    assert!(!arena.demote(3).unwrap() || arena.is_compressed(3), "resident pages demote again");
}

fn commands_on_a_changed_page_are_refused_as_stale(mode: FaultMode) {
    use memmgr::{Command, Op};
    let arena = Arena::with_faults(4, mode).expect("userfaultfd (run as root)");
    write_page(&arena, 0, 3);
    let v0 = arena.view(0).version;
    let park = Command { page: 0, version: v0, op: Op::Park };
    assert_eq!(arena.apply(&[park]).unwrap().done, 1);
    let parked = arena.view(0);
    assert!(parked.parked && parked.version != v0);
    // Decided on the old version: refused. On the current one: done.
    let stale = Command { page: 0, version: v0, op: Op::Demote };
    let fresh = Command { page: 0, version: parked.version, op: Op::Demote };
    let applied = arena.apply(&[stale, fresh]).unwrap();
    assert_eq!((applied.done, applied.stale), (1, 1));
    assert!(arena.view(0).compressed);
    // A touch brings it back and changes the version: the policy's old view is stale now.
    let before = arena.view(0).version;
    check_page(&arena, 0, 3);
    let demote = Command { page: 0, version: before, op: Op::Demote };
    let outside = Command { page: 99, version: 0, op: Op::Park };
    let applied = arena.apply(&[demote, outside]).unwrap();
    assert_eq!((applied.stale, applied.invalid, applied.done), (1, 1, 0));
    check_page(&arena, 0, 3);
}

/// Each test, with faults resolved by the handler thread and in the faulting thread.
mod modes {
    use super::*;

    #[test]
    fn concurrent_readers_and_writers_lose_nothing_while_pages_move_handler_thread() {
        concurrent_readers_and_writers_lose_nothing_while_pages_move(FaultMode::Handler, false);
    }

    #[test]
    fn concurrent_readers_and_writers_lose_nothing_while_pages_move_in_thread() {
        concurrent_readers_and_writers_lose_nothing_while_pages_move(FaultMode::InThread, false);
    }

    #[test]
    fn concurrent_readers_and_writers_lose_nothing_while_runs_move_in_batches() {
        concurrent_readers_and_writers_lose_nothing_while_pages_move(FaultMode::InThread, true);
    }

    #[test]
    fn parking_tells_touched_pages_from_untouched_ones_handler_thread() {
        parking_tells_touched_pages_from_untouched_ones(FaultMode::Handler);
    }

    #[test]
    fn parking_tells_touched_pages_from_untouched_ones_in_thread() {
        parking_tells_touched_pages_from_untouched_ones(FaultMode::InThread);
    }

    #[test]
    fn a_cold_page_stays_compressed_and_reads_back_exactly_handler_thread() {
        a_cold_page_stays_compressed_and_reads_back_exactly(FaultMode::Handler);
    }

    #[test]
    fn a_cold_page_stays_compressed_and_reads_back_exactly_in_thread() {
        a_cold_page_stays_compressed_and_reads_back_exactly(FaultMode::InThread);
    }

    #[test]
    fn commands_on_a_changed_page_are_refused_as_stale_handler_thread() {
        commands_on_a_changed_page_are_refused_as_stale(FaultMode::Handler);
    }

    #[test]
    fn commands_on_a_changed_page_are_refused_as_stale_in_thread() {
        commands_on_a_changed_page_are_refused_as_stale(FaultMode::InThread);
    }
}
