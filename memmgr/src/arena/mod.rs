//! An arena whose pages can be *parked* (moved aside, to learn whether they are touched) and
//! *demoted* (compressed with LZ4), and come back on fault.
//!
//! Per page, one state word: `UNTOUCHED` (never used: the first touch faults and gets a zeroed
//! page), `RESIDENT`, `BUSY` (a transition in progress), `PARKED` (moved to its staging page,
//! intact), `COMPRESSED`. Pages leave the arena only by `UFFDIO_MOVE`, which is atomic: from
//! that instant any access faults and waits, so no write can slip between a copy and an
//! unmap. A parked page that is touched moves straight back (cheap, no copy) and is marked
//! touched: the only per-page access signal this machine offers (no accessed bits, no PMU;
//! `../shared/docs/memtier.md`). Demotion compresses a parked page from its staging page; one
//! that does not shrink enough moves back. Promotion happens in the fault handler: decompress,
//! `UFFDIO_COPY` into place, set the state, then wake the faulting threads.
//!
//! Faults are resolved in a handler thread or in the faulting thread itself ([`FaultMode`],
//! `fault.rs`); on this VM a wakeup across vCPUs costs 40–65 µs, which the second avoids.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::fault::{FaultMode, handle_faults};

mod batch;
mod memory;
use crate::table::PageTable;
use crate::uffd::{Mapping, PAGE, Uffd, UffdError};

pub(crate) const UNTOUCHED: u8 = 0;
pub(crate) const RESIDENT: u8 = 1;
pub(crate) const BUSY: u8 = 2;
pub(crate) const PARKED: u8 = 3;
pub(crate) const COMPRESSED: u8 = 4;

/// A page compressing to more than this stays resident (not worth the fault).
const KEEP_IF_LARGER_THAN: usize = PAGE * 3 / 4;

/// What the mechanism did.
#[derive(Debug, Default)]
pub struct Counters {
    /// Faults resolved.
    pub faults: AtomicU64,
    /// First touches filled with zeros.
    pub zero_fills: AtomicU64,
    /// Pages parked.
    pub parks: AtomicU64,
    /// Parked pages touched (and moved back).
    pub unparks: AtomicU64,
    /// Pages brought back from the compressed tier.
    pub promotions: AtomicU64,
    /// Pages moved to the compressed tier.
    pub demotions: AtomicU64,
    /// Pages that did not compress enough and moved back.
    pub incompressible: AtomicU64,
    /// Bytes the compressed tier holds (copies of promoted pages included until reclaimed).
    pub compressed_bytes: AtomicU64,
    /// Times a fault found its page held by a transition for a while and yielded.
    pub busy_waits: AtomicU64,
    /// Parks that found a page's staging page occupied (stale) and dropped it first.
    pub staging_conflicts: AtomicU64,
    /// Time spent resolving faults, ns (in-thread: in the signal handler, not counting the
    /// trap and the signal's delivery; handler thread: in that thread).
    pub fault_ns: AtomicU64,
    /// Promoted pages found written by [`Arena::track_writes`] (their kept copies let go).
    pub written: AtomicU64,
    /// Time spent in [`Arena::track_writes`], ns.
    pub tracking_ns: AtomicU64,
    /// Demotions that reused the page's kept compressed copy (checked equal) instead of
    /// compressing it again.
    pub copies_reused: AtomicU64,
    /// Kept copies found different from the page at demotion (written after the last
    /// tracking pass) and replaced.
    pub copies_stale: AtomicU64,
}

/// A counter's value.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub(crate) struct Inner {
    pub(crate) uffd: Uffd,
    pub(crate) arena: Mapping,
    /// One staging page per arena page, registered too (MOVE needs both ends registered).
    pub(crate) staging: Mapping,
    /// Per page: state, version, touch and write marks; in shared memory, where the policy
    /// reads it (`table.rs`). A page's version is bumped at every completed state change, by
    /// whoever holds the page `BUSY`: a command names the version it was decided on, and a
    /// stale one is refused.
    pub(crate) table: PageTable,
    /// A page's compressed copy; locked only by whoever holds the page `BUSY`. It outlives
    /// a promotion (the fault path frees nothing) until [`Arena::reclaim`].
    pub(crate) compressed: Vec<Mutex<Option<Vec<u8>>>>,
    /// Whether `compressed` holds a copy.
    has_copy: Vec<AtomicBool>,
    /// Promoted since its last demotion, its copy kept: what `reclaim` and write tracking
    /// scan, 16 times smaller than the table (whose lines the policy reads too).
    pub(crate) promoted: Vec<AtomicBool>,
    pub(crate) counters: Counters,
}

/// A tiered arena.
pub struct Arena {
    inner: Arc<Inner>,
    stop: Arc<AtomicBool>,
    handler: Option<JoinHandle<()>>,
    /// The in-thread fault table's slot, in [`FaultMode::InThread`].
    slot: Option<usize>,
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena").field("pages", &self.inner.arena.pages()).finish()
    }
}

/// Why the arena could not be made or could not move a page.
pub type Error = UffdError;

impl Arena {
    /// An arena of `pages` pages, all untouched, with its fault handler thread running.
    pub fn new(pages: usize) -> Result<Arena, Error> {
        Arena::with_faults(pages, FaultMode::Handler)
    }

    /// An arena of `pages` pages whose faults are resolved as `mode` says.
    pub fn with_faults(pages: usize, mode: FaultMode) -> Result<Arena, Error> {
        let uffd = Uffd::open(mode == FaultMode::InThread)?;
        let arena = Mapping::new(pages)?;
        let staging = Mapping::new(pages)?;
        uffd.register(&arena, true)?;
        uffd.register(&staging, false)?;
        let inner = Arc::new(Inner {
            uffd,
            arena,
            staging,
            table: PageTable::new(pages)?,
            compressed: (0..pages).map(|_| Mutex::new(None)).collect(),
            has_copy: (0..pages).map(|_| AtomicBool::new(false)).collect(),
            promoted: (0..pages).map(|_| AtomicBool::new(false)).collect(),
            counters: Counters::default(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        if mode == FaultMode::InThread {
            let slot = crate::sigbus::register(&inner)?;
            return Ok(Arena { inner, stop, handler: None, slot: Some(slot) });
        }
        let handler = {
            let (inner, stop) = (inner.clone(), stop.clone());
            std::thread::Builder::new()
                .name("memmgr-faults".into())
                .spawn(move || handle_faults(&inner, &stop))
                .map_err(|source| UffdError::Sys { call: "spawn", source })?
        };
        Ok(Arena { inner, stop, handler: Some(handler), slot: None })
    }

    /// The arena's memory as 64-bit words (page `p` is words `p*512 .. (p+1)*512`).
    pub fn words(&self) -> &[AtomicU64] {
        self.inner.arena.words()
    }

    /// Pages in the arena.
    pub fn pages(&self) -> usize {
        self.inner.arena.pages()
    }

    /// The page-state table, in shared memory: its fd is what a policy maps (read-only).
    pub fn table(&self) -> &PageTable {
        &self.inner.table
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// True if page `index` is in the compressed tier now.
    pub fn is_compressed(&self, index: usize) -> bool {
        self.inner.table[index].state.load(Ordering::Acquire) == COMPRESSED
    }

    /// True if page `index` is parked now (moved aside and not touched since).
    pub fn is_parked(&self, index: usize) -> bool {
        self.inner.table[index].state.load(Ordering::Acquire) == PARKED
    }

    /// Whether page `index` was touched while parked since the last call; clears the mark.
    pub fn take_touched(&self, index: usize) -> bool {
        self.inner.table[index].touched.swap(false, Ordering::AcqRel)
    }

    /// Moves resident page `index` aside: its next access faults (and moves it back, marked
    /// touched). `Ok(false)`: it was not resident.
    pub fn park(&self, index: usize) -> Result<bool, Error> {
        Ok(self.park_at(index, None)? == Outcome::Done)
    }

    /// Takes page `index` from `from` to `BUSY` if its version is `expected` (when given).
    /// Takes resident page `index` to `BUSY` for parking, unless it is unused (retired by an
    /// allocator: not the policy's to move) or not at version `expected`.
    fn claim_in_use(&self, index: usize, expected: Option<u32>) -> Outcome {
        let claimed = self.claim(index, RESIDENT, expected);
        // `retire` sets the mark under BUSY, so it cannot change while we hold the page.
        if claimed == Outcome::Done && self.inner.table[index].unused.load(Ordering::Acquire) {
            self.inner.table[index].state.store(RESIDENT, Ordering::Release);
            return Outcome::Skipped;
        }
        claimed
    }

    fn claim(&self, index: usize, from: u8, expected: Option<u32>) -> Outcome {
        let inner = &*self.inner;
        let state = &inner.table[index].state;
        if state.compare_exchange(from, BUSY, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Outcome::Skipped;
        }
        // Versions change only under BUSY, which we now hold: this check cannot race.
        if expected.is_some_and(|v| v != inner.table[index].version.load(Ordering::Relaxed)) {
            state.store(from, Ordering::Release);
            return Outcome::Stale;
        }
        Outcome::Done
    }

    fn park_at(&self, index: usize, expected: Option<u32>) -> Result<Outcome, Error> {
        let inner = &*self.inner;
        let state = &inner.table[index].state;
        let claimed = self.claim_in_use(index, expected);
        if claimed != Outcome::Done {
            return Ok(claimed);
        }
        let moved = inner.uffd.unprotect(inner.arena.page_addr(index), 1);
        let moved = moved.and_then(|()| self.move_out(index));
        if let Err(error) = moved {
            state.store(RESIDENT, Ordering::Release);
            return Err(error);
        }
        inner.finish(index, PARKED);
        add(&inner.counters.parks, 1);
        Ok(Outcome::Done)
    }

    /// Moves claimed, unprotected page `index` to its staging page. If that is occupied, which
    /// the states say cannot be (seen once in many experiment runs, cause unknown), whichever
    /// copy is mapped in the arena is the app's: a stale staging page is dropped and the move
    /// tried again; if the arena has none, the staging page is the data and stays (the page
    /// is parked). Counted either way.
    fn move_out(&self, index: usize) -> Result<(), Error> {
        let inner = &*self.inner;
        let (page, staged) = (inner.arena.page_addr(index), inner.staging.page_addr(index));
        match inner.uffd.move_page(page, staged) {
            Err(error) if error.is_exists() => {
                add(&inner.counters.staging_conflicts, 1);
                if inner.arena.is_present(index)? {
                    inner.staging.discard(index)?;
                    inner.uffd.move_page(page, staged)
                } else {
                    Ok(())
                }
            }
            other => other,
        }
    }

    /// Moves page `index` to the compressed tier (parking it first if resident). `Ok(false)`:
    /// it was neither resident nor parked, or did not compress enough (it is resident again).
    pub fn demote(&self, index: usize) -> Result<bool, Error> {
        Ok(self.demote_at(index, None)? == Outcome::Done)
    }

    fn demote_at(&self, index: usize, expected: Option<u32>) -> Result<Outcome, Error> {
        let claimed = self.claim_for_demotion(index, expected)?;
        if claimed != Outcome::Done {
            return Ok(claimed);
        }
        if !self.compress_claimed(index)? {
            return Ok(Outcome::Skipped);
        }
        self.inner.staging.discard(index)?;
        self.seal(index);
        Ok(Outcome::Done)
    }

    /// Takes page `index` to `BUSY` from `PARKED`, parking it first if it is resident.
    fn claim_for_demotion(
        &self,
        index: usize,
        mut expected: Option<u32>,
    ) -> Result<Outcome, Error> {
        if self.inner.table[index].state.load(Ordering::Acquire) == RESIDENT {
            let parked = self.park_at(index, expected)?;
            if parked != Outcome::Done {
                return Ok(parked);
            }
            expected = expected.map(|v| v.wrapping_add(1)); // parking made a version
        }
        // Not parked (touched meanwhile), stale, or not ours to move: said so.
        Ok(self.claim(index, PARKED, expected))
    }

    /// Compresses claimed, parked page `index` from its staging page and keeps the copy
    /// (or keeps the copy it has, if tracking says it is clean and it checks equal).
    /// `Ok(false)`: it does not compress enough and is resident again (or parked, if moving it
    /// back failed: the next touch brings it in).
    fn compress_claimed(&self, index: usize) -> Result<bool, Error> {
        let inner = &*self.inner;
        let (page, staged) = (inner.arena.page_addr(index), inner.staging.page_addr(index));
        let words = &inner.staging.words()[index * PAGE / 8..(index + 1) * PAGE / 8];
        let mut bytes = [0u8; PAGE];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        if inner.table[index].clean.swap(false, Ordering::AcqRel)
            && self.copy_matches(index, &bytes)
        {
            inner.promoted[index].store(false, Ordering::Release);
            add(&inner.counters.copies_reused, 1);
            return Ok(true);
        }
        let packed = lz4_flex::block::compress(&bytes);
        if packed.len() > KEEP_IF_LARGER_THAN {
            // Not worth it: back where it was (this wakes anyone who faulted meanwhile).
            if let Err(error) = inner.uffd.move_page(staged, page) {
                inner.table[index].state.store(PARKED, Ordering::Release);
                return Err(error);
            }
            inner.finish(index, RESIDENT);
            add(&inner.counters.incompressible, 1);
            return Ok(false);
        }
        add(&inner.counters.compressed_bytes, packed.len() as u64);
        let mut slot = inner.compressed[index].lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = slot.replace(packed) {
            inner.counters.compressed_bytes.fetch_sub(old.len() as u64, Ordering::Relaxed);
        }
        drop(slot);
        inner.has_copy[index].store(true, Ordering::Release);
        inner.promoted[index].store(false, Ordering::Release);
        Ok(true)
    }

    /// Whether claimed page `index`'s kept copy decompresses to `bytes` (counted if not).
    fn copy_matches(&self, index: usize, bytes: &[u8; PAGE]) -> bool {
        let inner = &*self.inner;
        let slot = inner.compressed[index].lock().unwrap_or_else(PoisonError::into_inner);
        let Some(packed) = slot.as_ref() else { return false };
        let mut copy = [0u8; PAGE];
        let same = lz4_flex::block::decompress_into(packed, &mut copy).ok() == Some(PAGE)
            && copy == *bytes;
        if !same {
            add(&inner.counters.copies_stale, 1);
        }
        same
    }

    /// Ends the demotion of claimed page `index`, whose staging page is gone.
    fn seal(&self, index: usize) {
        // Release: a fault that sees COMPRESSED finds the data stored.
        self.inner.finish(index, COMPRESSED);
        add(&self.inner.counters.demotions, 1);
    }
}

/// What a command did to its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    /// The page was not in a state the command applies to (or did not compress).
    Skipped,
    /// The page changed since the version the command names.
    Stale,
}

/// What the policy can ask of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Move it aside to learn whether it is touched.
    Park,
    /// Move it to the compressed tier.
    Demote,
}

/// A policy's command: `op` on `page`, decided on the page as it was at `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    /// The page.
    pub page: u32,
    /// Its version when the policy decided.
    pub version: u32,
    /// What to do.
    pub op: Op,
}

/// What a batch of commands did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Carried out.
    pub done: u64,
    /// Refused: the page changed since the policy looked (counted, not an error).
    pub stale: u64,
    /// Not applicable now (wrong state, incompressible).
    pub skipped: u64,
    /// Refused: no such page.
    pub invalid: u64,
}

/// What the policy sees of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageView {
    /// Its version (commands must name it).
    pub version: u32,
    /// Parked now.
    pub parked: bool,
    /// Compressed now.
    pub compressed: bool,
    /// Touched while parked since the mark was last taken.
    pub touched: bool,
    /// Holding nothing: never touched, or released.
    pub free: bool,
    /// Times touched while parked (wrapping).
    pub touches: u32,
    /// Times found written by write tracking after a promotion (wrapping).
    pub writes: u32,
}

impl Drop for Arena {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            crate::sigbus::unregister(slot);
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handler) = self.handler.take() {
            let _ = handler.join();
        }
    }
}

impl Inner {
    /// Ends a transition of page `index` (held `BUSY`) in `state`, with a new version.
    pub(crate) fn finish(&self, index: usize, state: u8) {
        self.table[index].version.fetch_add(1, Ordering::Relaxed);
        // Release: the version and the page's data are visible with the new state.
        self.table[index].state.store(state, Ordering::Release);
    }
}
