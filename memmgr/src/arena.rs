//! An arena whose pages move between DRAM and an LZ4-compressed tier, and come back on fault.
//!
//! Per page, one state word: `UNTOUCHED` (never used: the first touch faults and gets a zeroed
//! page), `RESIDENT`, `BUSY` (being demoted), `COMPRESSED`. Demotion moves the page out of
//! the arena with `UFFDIO_MOVE`, atomically, so no write can slip in between the copy and the
//! unmap; from that instant any access faults and waits. The page is compressed from the
//! staging area; one that does not shrink enough moves back. Promotion happens in the fault
//! handler: decompress, `UFFDIO_COPY` into place, which also wakes the faulting threads.
//!
//! This first version resolves faults in one handler thread; on this VM a wakeup across vCPUs
//! costs 40–65 µs, so the next step is resolving faults in the faulting thread (SIGBUS mode,
//! `../shared/docs/memtier.md` §5).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::uffd::{Mapping, PAGE, Uffd, UffdError};

const UNTOUCHED: u8 = 0;
const RESIDENT: u8 = 1;
const BUSY: u8 = 2;
const COMPRESSED: u8 = 3;

/// A page compressing to more than this stays resident (not worth the fault).
const KEEP_IF_LARGER_THAN: usize = PAGE * 3 / 4;

/// What the mechanism did.
#[derive(Debug, Default)]
pub struct Counters {
    /// Faults resolved.
    pub faults: AtomicU64,
    /// First touches filled with zeros.
    pub zero_fills: AtomicU64,
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
    /// One page, registered too (MOVE needs both ends in registered ranges).
    staging: Mapping,
    states: Vec<AtomicU8>,
    compressed: Vec<Mutex<Option<Vec<u8>>>>,
    /// One demotion at a time: they share the staging page.
    demoting: Mutex<()>,
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
        let staging = Mapping::new(1)?;
        uffd.register(&arena)?;
        uffd.register(&staging)?;
        let inner = Arc::new(Inner {
            uffd,
            arena,
            staging,
            states: (0..pages).map(|_| AtomicU8::new(UNTOUCHED)).collect(),
            compressed: (0..pages).map(|_| Mutex::new(None)).collect(),
            demoting: Mutex::new(()),
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

    /// Moves resident page `index` to the compressed tier. `Ok(false)`: it was not resident,
    /// or did not compress enough (it stays).
    pub fn demote(&self, index: usize) -> Result<bool, Error> {
        let inner = &*self.inner;
        let _one_at_a_time = inner.demoting.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &inner.states[index];
        if state.compare_exchange(RESIDENT, BUSY, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Ok(false);
        }
        let (page, staged) = (inner.arena.page_addr(index), inner.staging.page_addr(0));
        if let Err(error) = inner.uffd.move_page(page, staged) {
            state.store(RESIDENT, Ordering::Release);
            return Err(error);
        }
        // From here the arena page is missing: accesses fault and wait for us.
        let mut bytes = [0u8; PAGE];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(&inner.staging.words()[..PAGE / 8]) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        let packed = lz4_flex::block::compress(&bytes);
        if packed.len() > KEEP_IF_LARGER_THAN {
            // Not worth it: back where it was (this wakes anyone who faulted meanwhile).
            inner.uffd.move_page(staged, page)?;
            state.store(RESIDENT, Ordering::Release);
            add(&inner.counters.incompressible, 1);
            return Ok(false);
        }
        add(&inner.counters.compressed_bytes, packed.len() as u64);
        *inner.compressed[index].lock().unwrap_or_else(PoisonError::into_inner) = Some(packed);
        inner.staging.discard(0)?;
        // Release: a handler that sees COMPRESSED finds the data stored.
        state.store(COMPRESSED, Ordering::Release);
        add(&inner.counters.demotions, 1);
        Ok(true)
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

fn handle_faults(inner: &Inner, stop: &AtomicBool) {
    let base = inner.arena.page_addr(0);
    while !stop.load(Ordering::Relaxed) {
        let Ok(Some(address)) = inner.uffd.next_fault(10) else { continue };
        let index = address.checked_sub(base).and_then(|o| usize::try_from(o / PAGE as u64).ok());
        let Some(index) = index else {
            continue; // the staging page: never touched by Rust, so never faults
        };
        if index >= inner.states.len() {
            continue;
        }
        resolve(inner, index);
        add(&inner.counters.faults, 1);
    }
}

/// Brings page `index` in: zeros for a first touch, its data for a compressed one; waits out
/// a demotion in progress (it ends in bounded time: the demoter never waits on a fault).
fn resolve(inner: &Inner, index: usize) {
    let state = &inner.states[index];
    let page = inner.arena.page_addr(index);
    loop {
        match state.load(Ordering::Acquire) {
            BUSY => std::hint::spin_loop(),
            UNTOUCHED => {
                if state
                    .compare_exchange(UNTOUCHED, BUSY, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    // A real zeroed page (not the shared zero page), so it can move later.
                    if fill(inner, page, &[0u8; PAGE]) {
                        state.store(RESIDENT, Ordering::Release);
                        add(&inner.counters.zero_fills, 1);
                    } else {
                        state.store(UNTOUCHED, Ordering::Release);
                    }
                    // Woken after the state is set: the access sees RESIDENT (or retries and
                    // faults again).
                    let _ = inner.uffd.wake(page);
                    return;
                }
            }
            COMPRESSED => {
                let packed =
                    inner.compressed[index].lock().unwrap_or_else(PoisonError::into_inner).take();
                let Some(packed) = packed else { continue };
                let mut bytes = [0u8; PAGE];
                let filled = lz4_flex::block::decompress_into(&packed, &mut bytes);
                debug_assert_eq!(filled.ok(), Some(PAGE), "our own compressed page");
                if fill(inner, page, &bytes) {
                    inner
                        .counters
                        .compressed_bytes
                        .fetch_sub(packed.len() as u64, Ordering::Relaxed);
                    state.store(RESIDENT, Ordering::Release);
                    add(&inner.counters.promotions, 1);
                } else {
                    // Keep the data; the woken access faults again and we retry.
                    *inner.compressed[index].lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(packed);
                }
                let _ = inner.uffd.wake(page);
                return;
            }
            _ => {
                // Resident already (a duplicate report of a fault resolved meanwhile).
                let _ = inner.uffd.wake(page);
                return;
            }
        }
    }
}

/// `UFFDIO_COPY` of `bytes` into the missing page at `page`, retrying while the kernel says
/// try again; true once the page is present (ours or already there).
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
