//! Giving memory back: the compressed copies of promoted pages (freed here, never on the
//! fault path), and whole pages an allocator no longer uses.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use super::{Arena, BUSY, Error, Outcome, PARKED, RESIDENT, UNTOUCHED, add};

impl Arena {
    /// Whether the arena tracks writes (the kernel has `UFFD_FEATURE_WP_ASYNC` and
    /// `PAGEMAP_SCAN`, Linux 6.7+): then [`Arena::track_writes`] finds written pages, and a
    /// promoted page that stays unwritten keeps its compressed copy, so demoting it again
    /// costs a check instead of a compression (the kernel's swap cache, in user space).
    pub fn tracks_writes(&self) -> bool {
        self.inner.uffd.tracks_writes()
    }

    /// Finds the promoted pages that kept their compressed copies and were written since
    /// they came in, and lets their copies go (marked stale, freed by [`Arena::reclaim`]);
    /// returns them, in order (none when writes are not tracked). One query over the span of
    /// such pages, a few ns per page; protection is not re-armed, so a page costs at most
    /// one write fault (in the kernel, about 1 µs) per promotion (`memtier.md` §2.4). The
    /// mechanism thread calls it once per epoch, before [`Arena::reclaim`].
    pub fn track_writes(&self) -> Result<Vec<usize>, Error> {
        let inner = &*self.inner;
        let began = std::time::Instant::now();
        let clean = |i: &usize| {
            inner.promoted[*i].load(Ordering::Acquire)
                && inner.table[*i].clean.load(Ordering::Acquire)
        };
        let first = (0..self.pages()).find(clean);
        let mut written = Vec::new();
        if let Some(first) = first {
            let last = (first..self.pages()).rev().find(clean).unwrap_or(first);
            inner.uffd.take_written(&inner.arena, first, last + 1, &mut written)?;
        }
        // Only pages holding a clean copy count (the others are not protected).
        written.retain(|&index| {
            let entry = &inner.table[index];
            let was_clean = entry.clean.swap(false, Ordering::AcqRel);
            if was_clean {
                entry.writes.fetch_add(1, Ordering::Relaxed);
            }
            was_clean
        });
        add(&inner.counters.written, written.len() as u64);
        let ns = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
        add(&inner.counters.tracking_ns, ns);
        Ok(written)
    }

    /// Frees the compressed copies of pages that were promoted and are resident now, except
    /// those write tracking still finds clean (kept for their next demotion); returns the
    /// bytes freed. The mechanism thread calls it (the fault path frees nothing).
    pub fn reclaim(&self) -> u64 {
        let inner = &*self.inner;
        let mut freed = 0;
        for index in 0..self.pages() {
            if !inner.promoted[index].load(Ordering::Acquire)
                || inner.table[index].clean.load(Ordering::Acquire)
                || self.claim(index, RESIDENT, None) != Outcome::Done
            {
                continue;
            }
            let copy =
                inner.compressed[index].lock().unwrap_or_else(PoisonError::into_inner).take();
            inner.has_copy[index].store(false, Ordering::Release);
            inner.promoted[index].store(false, Ordering::Release);
            // Resident again, same version: nothing about the page changed.
            inner.table[index].state.store(RESIDENT, Ordering::Release);
            let bytes = copy.map_or(0, |c| c.len() as u64);
            inner.counters.compressed_bytes.fetch_sub(bytes, Ordering::Relaxed);
            freed += bytes;
        }
        freed
    }
}

impl Arena {
    /// Gives pages `first .. first + n` back: whatever they hold (resident, parked or
    /// compressed) is dropped, and they read as zeros next time. Waits out transitions in
    /// progress on them.
    pub fn release(&self, first: usize, n: usize) -> Result<(), Error> {
        self.drop_pages(first, n, false)
    }

    /// An allocator's free of pages `first .. first + n`: resident pages stay mapped (the
    /// next use costs no fault, as with `malloc`'s free lists) but are marked unused, so the
    /// policy sees them free and they are never parked or demoted; parked or compressed ones
    /// are dropped (they read as zeros next time). [`Arena::reuse`] ends it.
    pub fn retire(&self, first: usize, n: usize) -> Result<(), Error> {
        self.drop_pages(first, n, true)
    }

    /// Pages `first .. first + n` are in use again (an allocator's allocation).
    pub fn reuse(&self, first: usize, n: usize) {
        let end = (first + n).min(self.pages());
        for entry in &self.inner.table.entries()[first.min(end)..end] {
            entry.unused.store(false, Ordering::Release);
        }
    }

    fn drop_pages(&self, first: usize, n: usize, keep_resident: bool) -> Result<(), Error> {
        let inner = &*self.inner;
        let (mut resident, mut parked, mut kept) = (Vec::new(), Vec::new(), Vec::new());
        let end = (first + n).min(self.pages());
        for index in first..end {
            let state = loop {
                let state = inner.table[index].state.load(Ordering::Acquire);
                if state != BUSY && self.claim(index, state, None) == Outcome::Done {
                    break state;
                }
                std::thread::yield_now();
            };
            match state {
                RESIDENT if keep_resident => kept.push(index),
                RESIDENT => resident.push(index),
                PARKED => parked.push(index),
                _ => {}
            }
        }
        let dropped =
            inner.arena.discard_pages(&resident).and(inner.staging.discard_pages(&parked));
        for index in first..end {
            inner.table[index].clean.store(false, Ordering::Release);
            inner.promoted[index].store(false, Ordering::Release);
            if inner.has_copy[index].swap(false, Ordering::AcqRel) {
                let copy =
                    inner.compressed[index].lock().unwrap_or_else(PoisonError::into_inner).take();
                let bytes = copy.map_or(0, |c| c.len() as u64);
                inner.counters.compressed_bytes.fetch_sub(bytes, Ordering::Relaxed);
            }
            inner.table[index].touched.store(false, Ordering::Release);
            let kept_in = kept.binary_search(&index).is_ok();
            inner.table[index].unused.store(kept_in, Ordering::Release);
            inner.finish(index, if kept_in { RESIDENT } else { UNTOUCHED });
        }
        dropped
    }

    /// Address of byte `offset` of the arena (for allocators; the arena must outlive its use).
    pub fn ptr_at(&self, offset: usize) -> *mut u8 {
        self.inner.arena.ptr_at(offset)
    }

    /// The arena's page holding `address`, if it is in the arena.
    pub fn page_of(&self, address: usize) -> Option<usize> {
        self.inner.arena.page_index(address as u64)
    }
}
