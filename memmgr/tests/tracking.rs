//! Write tracking (`UFFD_FEATURE_WP_ASYNC` + `PAGEMAP_SCAN`): exactly the promoted pages
//! written since are reported, once; a promoted page that stays clean keeps its compressed
//! copy and is demoted again without compressing; a written one gets a fresh copy; and a
//! write that lands after the last tracking pass is caught by the check at demotion, never
//! lost. Both fault modes.
//! Needs root (userfaultfd), which CI has.

use std::sync::atomic::Ordering;

use memmgr::{Arena, FaultMode, get};

const WORDS_PER_PAGE: usize = 512;

fn arena(mode: FaultMode) -> Arena {
    let arena = Arena::with_faults(32, mode).expect("userfaultfd (run as root)");
    assert!(arena.tracks_writes(), "this kernel (6.7+) has WP_ASYNC and PAGEMAP_SCAN");
    arena
}

/// Fills `page` with `tag` (compressible: a demotion keeps it compressed).
fn write(arena: &Arena, page: usize, tag: u64) {
    for word in &arena.words()[page * WORDS_PER_PAGE..(page + 1) * WORDS_PER_PAGE] {
        word.store(tag, Ordering::Relaxed);
    }
}

fn read(arena: &Arena, page: usize) -> Vec<u64> {
    let words = &arena.words()[page * WORDS_PER_PAGE..(page + 1) * WORDS_PER_PAGE];
    words.iter().map(|w| w.load(Ordering::Relaxed)).collect()
}

fn exactly_the_written_pages_are_reported(mode: FaultMode) {
    let arena = arena(mode);
    for page in 0..32 {
        write(&arena, page, page as u64);
    }
    assert!(arena.track_writes().expect("scan").is_empty(), "no page has a kept copy yet");
    for page in 0..32 {
        assert!(arena.demote(page).expect("demote"));
    }
    // Promoted by reads: installed write-protected, with their copies kept.
    for page in 0..32 {
        assert_eq!(read(&arena, page)[0], page as u64);
    }
    assert!(arena.track_writes().expect("scan").is_empty(), "reads do not count");
    for page in [3, 10, 11, 31] {
        write(&arena, page, 1000 + page as u64);
    }
    assert_eq!(arena.track_writes().expect("scan"), vec![3, 10, 11, 31]);
    assert!(arena.track_writes().expect("scan").is_empty(), "each reported once");
    assert_eq!(get(&arena.counters().written), 4);
}

fn clean_copies_are_reused_and_written_ones_replaced(mode: FaultMode) {
    let arena = arena(mode);
    write(&arena, 5, 0xabc);
    arena.track_writes().expect("scan");
    assert!(arena.demote(5).expect("demote"));
    let held = get(&arena.counters().compressed_bytes);
    assert!(read(&arena, 5).iter().all(|&w| w == 0xabc), "promoted intact");
    assert!(arena.track_writes().expect("scan").is_empty(), "read, not written");
    assert_eq!(arena.reclaim(), 0, "a clean page's copy is kept");
    assert!(arena.demote(5).expect("demote again"));
    assert_eq!(get(&arena.counters().copies_reused), 1, "no second compression");
    assert_eq!(get(&arena.counters().compressed_bytes), held);
    assert!(read(&arena, 5).iter().all(|&w| w == 0xabc));
    // Written after promotion and seen by a tracking pass: the copy goes, a new one is made.
    write(&arena, 5, 0xdef);
    assert_eq!(arena.track_writes().expect("scan"), vec![5]);
    assert_eq!(arena.reclaim(), held, "a written page's copy is freed");
    assert!(arena.demote(5).expect("demote written"));
    assert_eq!(get(&arena.counters().copies_reused), 1);
    assert!(read(&arena, 5).iter().all(|&w| w == 0xdef), "the new contents came back");
}

fn a_write_after_the_last_pass_is_not_lost(mode: FaultMode) {
    let arena = arena(mode);
    write(&arena, 7, 1);
    assert!(arena.demote(7).expect("demote"));
    assert!(read(&arena, 7).iter().all(|&w| w == 1));
    arena.track_writes().expect("scan");
    // No tracking pass between this write and the demotion: the copy still looks clean.
    arena.words()[7 * WORDS_PER_PAGE + 100].store(2, Ordering::Relaxed);
    assert!(arena.demote(7).expect("demote"));
    assert_eq!(get(&arena.counters().copies_stale), 1, "the check caught the write");
    assert_eq!(get(&arena.counters().copies_reused), 0);
    let words = read(&arena, 7);
    assert_eq!(words[100], 2, "the write survived demotion");
    assert_eq!(words.iter().filter(|&&w| w == 1).count(), WORDS_PER_PAGE - 1);
}

#[test]
fn exactly_the_written_pages_are_reported_handler() {
    exactly_the_written_pages_are_reported(FaultMode::Handler);
}

#[test]
fn exactly_the_written_pages_are_reported_in_thread() {
    exactly_the_written_pages_are_reported(FaultMode::InThread);
}

#[test]
fn clean_copies_are_reused_and_written_ones_replaced_handler() {
    clean_copies_are_reused_and_written_ones_replaced(FaultMode::Handler);
}

#[test]
fn clean_copies_are_reused_and_written_ones_replaced_in_thread() {
    clean_copies_are_reused_and_written_ones_replaced(FaultMode::InThread);
}

#[test]
fn a_write_after_the_last_pass_is_not_lost_handler() {
    a_write_after_the_last_pass_is_not_lost(FaultMode::Handler);
}

#[test]
fn a_write_after_the_last_pass_is_not_lost_in_thread() {
    a_write_after_the_last_pass_is_not_lost(FaultMode::InThread);
}
