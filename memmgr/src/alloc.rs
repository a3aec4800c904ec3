//! An allocator over an [`Arena`], so an app's data (a cache, a heap of records) lives in
//! tiered memory. Small blocks (16 B .. 2 KiB, powers of two) come from pages given to one
//! size class each; larger ones are runs of whole pages, first fit, retired when freed
//! ([`Arena::retire`]: resident pages stay mapped, so reusing them costs no fault, and are
//! free to the policy; parked or compressed ones are dropped with their copies). Metadata
//! lives outside the arena (a byte per page and a slot bitmap per small page), so freeing
//! never touches a page that may be compressed, and a bad or double free is an error, not a
//! corruption. One lock: allocation is not on a fast path here (a block-cache fill is), and
//! the design leaves per-thread caches for when a measurement asks for them.
//!
//! C and C++ code allocates from it through `capi.rs` (`wave_arena_alloc`/`_free`).

use std::collections::{BTreeMap, HashMap};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};

use crate::Arena;
use crate::uffd::PAGE;

/// Smallest block, bytes.
const SMALL_MIN: usize = 16;
/// Size classes: 16, 32, ..., 2048 bytes.
const CLASSES: usize = 8;
/// Largest small block, bytes.
const SMALL_MAX: usize = SMALL_MIN << (CLASSES - 1);

/// Why a free was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FreeError {
    /// The pointer is not in the arena.
    #[error("pointer {0:#x} is not in this arena")]
    Foreign(usize),
    /// The pointer is in the arena but is not a live block's start (double or bad free).
    #[error("pointer {0:#x} is not a live block (double or bad free)")]
    NotLive(usize),
}

/// What a page of the arena is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Not handed out.
    Free,
    /// Slots of size class `c`.
    Small(u8),
    /// The first page of a live run of `n` pages.
    Run(usize),
    /// A later page of a run.
    InRun,
}

#[derive(Debug)]
struct State {
    pages: Vec<Use>,
    /// Per small page, which slots are live.
    live: HashMap<usize, [u64; 4]>,
    /// Free slots per class (byte offsets).
    slots: [Vec<usize>; CLASSES],
    /// Free runs of pages, by first page (coalesced).
    runs: BTreeMap<usize, usize>,
    /// Pages from here on were never handed out.
    fresh: usize,
    /// Bytes handed out (block sizes rounded up).
    in_use: usize,
}

/// The allocator.
#[derive(Debug)]
pub struct ArenaAlloc {
    arena: Arc<Arena>,
    state: Box<Mutex<State>>,
}

fn class_of(size: usize) -> usize {
    let rounded = size.max(SMALL_MIN).next_power_of_two();
    usize::try_from(rounded.trailing_zeros() - SMALL_MIN.trailing_zeros()).expect("small")
}

impl ArenaAlloc {
    /// An allocator owning all of `arena`'s pages.
    pub fn new(arena: Arc<Arena>) -> ArenaAlloc {
        let state = State {
            pages: vec![Use::Free; arena.pages()],
            live: HashMap::new(),
            slots: Default::default(),
            runs: BTreeMap::new(),
            fresh: 0,
            in_use: 0,
        };
        ArenaAlloc { arena, state: Box::new(Mutex::new(state)) }
    }

    /// The arena.
    pub fn arena(&self) -> &Arc<Arena> {
        &self.arena
    }

    /// Bytes handed out and not freed (sizes rounded up to their class or to pages).
    pub fn in_use(&self) -> usize {
        self.lock().in_use
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A block of at least `size` bytes aligned to `align` (≤ 4096, a power of two); `None`
    /// when the arena is full or the alignment is not supported. The memory is zeroed only
    /// if it was never used (as with `malloc`, a block may hold what a freed one left).
    pub fn alloc(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        if !align.is_power_of_two() || align > PAGE {
            return None;
        }
        let size = size.max(align).max(1);
        let mut state = self.lock();
        let offset = if size <= SMALL_MAX {
            let class = class_of(size);
            let offset = match state.slots[class].pop() {
                Some(offset) => offset,
                None => {
                    let page = take_pages(&mut state, 1)?;
                    self.arena.reuse(page, 1);
                    state.pages[page] = Use::Small(u8::try_from(class).expect("class"));
                    state.live.insert(page, [0; 4]);
                    let block = SMALL_MIN << class;
                    // Hand out the first slot, keep the rest (popped from the end: low first).
                    let rest = (1..PAGE / block).rev().map(|k| page * PAGE + k * block);
                    state.slots[class].extend(rest);
                    page * PAGE
                }
            };
            let (page, slot) = (offset / PAGE, (offset % PAGE) / (SMALL_MIN << class));
            state.live.get_mut(&page).expect("a small page")[slot / 64] |= 1 << (slot % 64);
            state.in_use += SMALL_MIN << class;
            offset
        } else {
            let n = size.div_ceil(PAGE);
            let page = take_pages(&mut state, n)?;
            self.arena.reuse(page, n);
            state.pages[page] = Use::Run(n);
            for later in page + 1..page + n {
                state.pages[later] = Use::InRun;
            }
            state.in_use += n * PAGE;
            page * PAGE
        };
        NonNull::new(self.arena.ptr_at(offset))
    }

    /// The usable size of the live block at `ptr`.
    pub fn usable_size(&self, ptr: *const u8) -> Option<usize> {
        let page = self.arena.page_of(ptr as usize)?;
        match self.lock().pages[page] {
            Use::Small(class) => Some(SMALL_MIN << class),
            Use::Run(n) => Some(n * PAGE),
            _ => None,
        }
    }

    /// Frees the block at `ptr`. The pages of a run are retired ([`Arena::retire`]).
    pub fn free(&self, ptr: *mut u8) -> Result<(), FreeError> {
        let address = ptr as usize;
        let page = self.arena.page_of(address).ok_or(FreeError::Foreign(address))?;
        let offset = address - self.arena.ptr_at(0) as usize;
        let mut state = self.lock();
        match state.pages[page] {
            Use::Small(class) => {
                let block = SMALL_MIN << class;
                let slot = (offset % PAGE) / block;
                let live = state.live.get_mut(&page).expect("a small page");
                let bit = 1u64 << (slot % 64);
                if !offset.is_multiple_of(block) || live[slot / 64] & bit == 0 {
                    return Err(FreeError::NotLive(address));
                }
                live[slot / 64] &= !bit;
                state.slots[usize::from(class)].push(offset);
                state.in_use -= block;
                Ok(())
            }
            Use::Run(n) if offset.is_multiple_of(PAGE) => {
                for p in page..page + n {
                    state.pages[p] = Use::Free;
                }
                state.in_use -= n * PAGE;
                // Retired before the run is free to take again, under the lock: dropping
                // pages after unlocking could drop the data of a block just allocated there
                // (RocksDB's block cache hit that: corrupt blocks). Resident pages stay mapped
                // (the next block there costs no fault) and free to the policy. Dropping
                // parked or compressed pages can fail only on a broken mapping; the run is
                // free in any case (its pages read what is left).
                let _ = self.arena.retire(page, n);
                give_back(&mut state, page, n);
                Ok(())
            }
            _ => Err(FreeError::NotLive(address)),
        }
    }
}

/// `n` contiguous free pages: the first free run that fits, else fresh ones.
fn take_pages(state: &mut State, n: usize) -> Option<usize> {
    let found = state.runs.iter().find(|&(_, &len)| len >= n).map(|(&first, &len)| (first, len));
    if let Some((first, len)) = found {
        state.runs.remove(&first);
        if len > n {
            state.runs.insert(first + n, len - n);
        }
        return Some(first);
    }
    let first = state.fresh;
    (first + n <= state.pages.len()).then(|| {
        state.fresh += n;
        first
    })
}

/// Puts a run back, merged with its free neighbours.
fn give_back(state: &mut State, mut first: usize, mut n: usize) {
    if let Some((&before, &len)) = state.runs.range(..first).next_back()
        && before + len == first
    {
        state.runs.remove(&before);
        first = before;
        n += len;
    }
    if let Some(len) = state.runs.remove(&(first + n)) {
        n += len;
    }
    if first + n == state.fresh {
        state.fresh = first; // the end of the used part shrinks back
    } else {
        state.runs.insert(first, n);
    }
}
