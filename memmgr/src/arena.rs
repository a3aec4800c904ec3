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
//! Faults are resolved in one handler thread for now; on this VM a wakeup across vCPUs costs
//! 40–65 µs, so the next step is resolving them in the faulting thread (SIGBUS mode).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::uffd::{Mapping, PAGE, Uffd, UffdError};

const UNTOUCHED: u8 = 0;
const RESIDENT: u8 = 1;
const BUSY: u8 = 2;
const PARKED: u8 = 3;
const COMPRESSED: u8 = 4;

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
    /// Bytes the compressed tier holds.
    pub compressed_bytes: AtomicU64,
}

/// A counter's value.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

struct Inner {
    uffd: Uffd,
    arena: Mapping,
    /// One staging page per arena page, registered too (MOVE needs both ends registered).
    staging: Mapping,
    states: Vec<AtomicU8>,
    /// Set when a parked page was touched; cleared by `take_touched`.
    touched: Vec<AtomicBool>,
    /// Bumped at every completed state change, by whoever holds the page `BUSY`: a command
    /// names the version it was decided on, and a stale one is refused.
    versions: Vec<AtomicU32>,
    compressed: Vec<Mutex<Option<Vec<u8>>>>,
    counters: Counters,
}

/// A tiered arena.
pub struct Arena {
    inner: Arc<Inner>,
    stop: Arc<AtomicBool>,
    handler: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena").field("pages", &self.inner.arena.pages()).finish()
    }
}

/// Why the arena could not be made or could not move a page.
pub type Error = UffdError;

impl Arena {
    /// An arena of `pages` pages, all untouched, with its fault handler running.
    pub fn new(pages: usize) -> Result<Arena, Error> {
        let uffd = Uffd::open()?;
        let arena = Mapping::new(pages)?;
        let staging = Mapping::new(pages)?;
        uffd.register(&arena)?;
        uffd.register(&staging)?;
        let inner = Arc::new(Inner {
            uffd,
            arena,
            staging,
            states: (0..pages).map(|_| AtomicU8::new(UNTOUCHED)).collect(),
            touched: (0..pages).map(|_| AtomicBool::new(false)).collect(),
            versions: (0..pages).map(|_| AtomicU32::new(0)).collect(),
            compressed: (0..pages).map(|_| Mutex::new(None)).collect(),
            counters: Counters::default(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let handler = {
            let (inner, stop) = (inner.clone(), stop.clone());
            std::thread::Builder::new()
                .name("memmgr-faults".into())
                .spawn(move || handle_faults(&inner, &stop))
                .map_err(|source| UffdError::Sys { call: "spawn", source })?
        };
        Ok(Arena { inner, stop, handler: Some(handler) })
    }

    /// The arena's memory as 64-bit words (page `p` is words `p*512 .. (p+1)*512`).
    pub fn words(&self) -> &[AtomicU64] {
        self.inner.arena.words()
    }

    /// Pages in the arena.
    pub fn pages(&self) -> usize {
        self.inner.arena.pages()
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// True if page `index` is in the compressed tier now.
    pub fn is_compressed(&self, index: usize) -> bool {
        self.inner.states[index].load(Ordering::Acquire) == COMPRESSED
    }

    /// True if page `index` is parked now (moved aside and not touched since).
    pub fn is_parked(&self, index: usize) -> bool {
        self.inner.states[index].load(Ordering::Acquire) == PARKED
    }

    /// Whether page `index` was touched while parked since the last call; clears the mark.
    pub fn take_touched(&self, index: usize) -> bool {
        self.inner.touched[index].swap(false, Ordering::AcqRel)
    }

    /// Moves resident page `index` aside: its next access faults (and moves it back, marked
    /// touched). `Ok(false)`: it was not resident.
    pub fn park(&self, index: usize) -> Result<bool, Error> {
        Ok(self.park_at(index, None)? == Outcome::Done)
    }

    /// Takes page `index` from `from` to `BUSY` if its version is `expected` (when given).
    fn claim(&self, index: usize, from: u8, expected: Option<u32>) -> Outcome {
        let inner = &*self.inner;
        let state = &inner.states[index];
        if state.compare_exchange(from, BUSY, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Outcome::Skipped;
        }
        // Versions change only under BUSY, which we now hold: this check cannot race.
        if expected.is_some_and(|v| v != inner.versions[index].load(Ordering::Relaxed)) {
            state.store(from, Ordering::Release);
            return Outcome::Stale;
        }
        Outcome::Done
    }

    fn park_at(&self, index: usize, expected: Option<u32>) -> Result<Outcome, Error> {
        let inner = &*self.inner;
        let state = &inner.states[index];
        let claimed = self.claim(index, RESIDENT, expected);
        if claimed != Outcome::Done {
            return Ok(claimed);
        }
        let (page, staged) = (inner.arena.page_addr(index), inner.staging.page_addr(index));
        if let Err(error) = inner.uffd.move_page(page, staged) {
            state.store(RESIDENT, Ordering::Release);
            return Err(error);
        }
        inner.finish(index, PARKED);
        add(&inner.counters.parks, 1);
        Ok(Outcome::Done)
    }

    /// Moves page `index` to the compressed tier (parking it first if resident). `Ok(false)`:
    /// it was neither resident nor parked, or did not compress enough (it is resident again).
    pub fn demote(&self, index: usize) -> Result<bool, Error> {
        Ok(self.demote_at(index, None)? == Outcome::Done)
    }

    fn demote_at(&self, index: usize, mut expected: Option<u32>) -> Result<Outcome, Error> {
        let inner = &*self.inner;
        let state = &inner.states[index];
        if state.load(Ordering::Acquire) == RESIDENT {
            let parked = self.park_at(index, expected)?;
            if parked != Outcome::Done {
                return Ok(parked);
            }
            expected = expected.map(|v| v.wrapping_add(1)); // parking made a version
        }
        let claimed = self.claim(index, PARKED, expected);
        if claimed != Outcome::Done {
            return Ok(claimed); // touched meanwhile, stale, or not ours to move
        }
        let (page, staged) = (inner.arena.page_addr(index), inner.staging.page_addr(index));
        let words = &inner.staging.words()[index * PAGE / 8..(index + 1) * PAGE / 8];
        let mut bytes = [0u8; PAGE];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        let packed = lz4_flex::block::compress(&bytes);
        if packed.len() > KEEP_IF_LARGER_THAN {
            // Not worth it: back where it was (this wakes anyone who faulted meanwhile).
            inner.uffd.move_page(staged, page)?;
            inner.finish(index, RESIDENT);
            add(&inner.counters.incompressible, 1);
            return Ok(Outcome::Skipped);
        }
        add(&inner.counters.compressed_bytes, packed.len() as u64);
        *inner.compressed[index].lock().unwrap_or_else(PoisonError::into_inner) = Some(packed);
        inner.staging.discard(index)?;
        // Release: a handler that sees COMPRESSED finds the data stored.
        inner.finish(index, COMPRESSED);
        add(&inner.counters.demotions, 1);
        Ok(Outcome::Done)
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
}

impl Arena {
    /// Page `index` as the policy sees it.
    pub fn view(&self, index: usize) -> PageView {
        let inner = &*self.inner;
        let state = inner.states[index].load(Ordering::Acquire);
        PageView {
            version: inner.versions[index].load(Ordering::Relaxed),
            parked: state == PARKED,
            compressed: state == COMPRESSED,
            touched: inner.touched[index].load(Ordering::Acquire),
        }
    }

    /// Carries out a batch of commands, each only if its page is still at the version it
    /// names: the host never trusts a decision made on a page that has changed since.
    pub fn apply(&self, commands: &[Command]) -> Result<Applied, Error> {
        let mut applied = Applied::default();
        for command in commands {
            let Ok(index) = usize::try_from(command.page) else {
                applied.invalid += 1;
                continue;
            };
            if index >= self.pages() {
                applied.invalid += 1;
                continue;
            }
            let outcome = match command.op {
                Op::Park => self.park_at(index, Some(command.version))?,
                Op::Demote => self.demote_at(index, Some(command.version))?,
            };
            match outcome {
                Outcome::Done => applied.done += 1,
                Outcome::Stale => applied.stale += 1,
                Outcome::Skipped => applied.skipped += 1,
            }
        }
        Ok(applied)
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handler) = self.handler.take() {
            let _ = handler.join();
        }
    }
}

impl Inner {
    /// Ends a transition of page `index` (held `BUSY`) in `state`, with a new version.
    fn finish(&self, index: usize, state: u8) {
        self.versions[index].fetch_add(1, Ordering::Relaxed);
        // Release: the version and the page's data are visible with the new state.
        self.states[index].store(state, Ordering::Release);
    }
}

fn handle_faults(inner: &Inner, stop: &AtomicBool) {
    let base = inner.arena.page_addr(0);
    while !stop.load(Ordering::Relaxed) {
        let Ok(Some(address)) = inner.uffd.next_fault(10) else { continue };
        let index = address.checked_sub(base).and_then(|o| usize::try_from(o / PAGE as u64).ok());
        let Some(index) = index.filter(|&i| i < inner.states.len()) else {
            continue; // a staging page: never touched by Rust, so never faults
        };
        resolve(inner, index);
        add(&inner.counters.faults, 1);
    }
}

/// Brings page `index` in: zeros for a first touch, the page itself for a parked one, its
/// data for a compressed one; waits out a transition in progress (it ends in bounded time:
/// the mechanism never waits on a fault while a page is `BUSY`).
fn resolve(inner: &Inner, index: usize) {
    let state = &inner.states[index];
    let page = inner.arena.page_addr(index);
    loop {
        let current = state.load(Ordering::Acquire);
        if current == BUSY {
            std::hint::spin_loop();
            continue;
        }
        if current == RESIDENT {
            // A duplicate report of a fault resolved meanwhile.
            let _ = inner.uffd.wake(page);
            return;
        }
        if state.compare_exchange(current, BUSY, Ordering::AcqRel, Ordering::Acquire).is_err() {
            continue;
        }
        let back = match current {
            UNTOUCHED => {
                fill(inner, page, &[0u8; PAGE]).then(|| add(&inner.counters.zero_fills, 1))
            }
            PARKED => {
                let staged = inner.staging.page_addr(index);
                inner.uffd.move_page_quietly(staged, page).is_ok().then(|| {
                    inner.touched[index].store(true, Ordering::Release);
                    add(&inner.counters.unparks, 1);
                })
            }
            _ => promote(inner, index, page),
        };
        // The state first, then the wake: the access sees it (or faults again and retries).
        if back.is_some() {
            inner.finish(index, RESIDENT);
        } else {
            state.store(current, Ordering::Release);
        }
        let _ = inner.uffd.wake(page);
        return;
    }
}

/// Decompresses page `index` into place; `None` (data kept) if the copy failed.
fn promote(inner: &Inner, index: usize, page: u64) -> Option<()> {
    let mut slot = inner.compressed[index].lock().unwrap_or_else(PoisonError::into_inner);
    let packed = slot.as_ref()?;
    let mut bytes = [0u8; PAGE];
    let filled = lz4_flex::block::decompress_into(packed, &mut bytes);
    debug_assert_eq!(filled.ok(), Some(PAGE), "our own compressed page");
    if !fill(inner, page, &bytes) {
        return None;
    }
    let packed = slot.take()?;
    inner.counters.compressed_bytes.fetch_sub(packed.len() as u64, Ordering::Relaxed);
    add(&inner.counters.promotions, 1);
    Some(())
}

/// `UFFDIO_COPY` of `bytes` into the missing page at `page` (no wake), retrying while the
/// kernel says try again; true once the page is present (ours or already there).
fn fill(inner: &Inner, page: u64, bytes: &[u8; PAGE]) -> bool {
    for _ in 0..1000 {
        match inner.uffd.copy(page, bytes) {
            Ok(_) => return true,
            Err(UffdError::Sys { source, .. }) if source.raw_os_error() == Some(libc::EAGAIN) => {
                std::hint::spin_loop();
            }
            Err(_) => return false,
        }
    }
    false
}
