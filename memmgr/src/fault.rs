//! Resolving faults on arena pages, in one of two places:
//!
//! - **a handler thread** ([`FaultMode::Handler`]): the kernel queues the fault on the
//!   userfaultfd and puts the faulting thread to sleep; the handler thread brings the page in
//!   and wakes it. Works for every access, the kernel's own included (a `read(2)` into the
//!   arena), but on this VM the wakeup across vCPUs costs 40–65 µs per fault.
//! - **the faulting thread** ([`FaultMode::InThread`]): with `UFFD_FEATURE_SIGBUS` the kernel
//!   raises SIGBUS instead, and the signal handler (`sigbus.rs`) brings the page in before the
//!   access is retried: no other thread, no wakeup (about 3 µs for a parked page, 6 µs for a
//!   compressed one, `memtier.md` §2.5). The price: a system call that writes into a page
//!   that is not in gets `EFAULT`, so only user-mode accesses may touch the arena.
//!
//! The code below runs in a signal handler in the second mode, so it keeps to what is safe
//! there: atomics, `ioctl`s, LZ4 decompression into a buffer on the stack, and a page's
//! compressed-data lock, which nobody else can hold at that moment (it is taken only by whoever
//! holds the page `BUSY`, and the handler does before it locks). It allocates and frees
//! nothing: a promoted page's compressed copy is freed later by [`Arena::reclaim`].
//!
//! [`Arena::reclaim`]: crate::Arena::reclaim

use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::arena::{BUSY, Inner, PARKED, RESIDENT, UNTOUCHED, add};
use crate::uffd::{PAGE, UffdError};

/// Where faults on an arena's pages are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultMode {
    /// In a handler thread (works with system calls into the arena; a wakeup per fault).
    #[default]
    Handler,
    /// In the faulting thread, from a SIGBUS handler (no wakeup; user-mode accesses only).
    InThread,
}

/// Spins before yielding while another thread holds a page `BUSY`.
const BUSY_SPINS: u32 = 1000;

/// The handler thread of [`FaultMode::Handler`].
pub(crate) fn handle_faults(inner: &Inner, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(Some(address)) = inner.uffd.next_fault(10) else { continue };
        let Some(index) = inner.arena.page_index(address) else {
            continue; // a staging page: never touched by Rust, so never faults
        };
        resolve_timed(inner, index, true);
    }
}

/// [`resolve`], counted and timed.
pub(crate) fn resolve_timed(inner: &Inner, index: usize, wake: bool) -> bool {
    let began = std::time::Instant::now(); // clock_gettime: safe in a signal handler
    let done = resolve(inner, index, wake);
    let ns = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
    add(&inner.counters.fault_ns, ns);
    add(&inner.counters.faults, 1);
    done
}

/// Brings page `index` in: zeros for a first touch, the page itself for a parked one, its
/// data for a compressed one; waits out a transition in progress (it ends in bounded time:
/// the mechanism never waits on a fault while a page is `BUSY`). `wake`: threads sleep on
/// the page (handler mode). False if the page could not be brought in (its data is kept).
pub(crate) fn resolve(inner: &Inner, index: usize, wake: bool) -> bool {
    let state = &inner.table[index].state;
    let page = inner.arena.page_addr(index);
    let mut spins = 0u32;
    loop {
        let current = state.load(Ordering::Acquire);
        if current == BUSY {
            spins += 1;
            if spins.is_multiple_of(BUSY_SPINS) {
                add(&inner.counters.busy_waits, 1);
                std::thread::yield_now(); // sched_yield: safe in a signal handler
            }
            std::hint::spin_loop();
            continue;
        }
        if current == RESIDENT {
            // A duplicate report of a fault resolved meanwhile.
            if wake {
                let _ = inner.uffd.wake(page);
            }
            return true;
        }
        if state.compare_exchange(current, BUSY, Ordering::AcqRel, Ordering::Acquire).is_err() {
            continue;
        }
        let back = match current {
            UNTOUCHED => {
                fill(inner, page, &[0u8; PAGE], false).then(|| add(&inner.counters.zero_fills, 1))
            }
            PARKED => {
                let staged = inner.staging.page_addr(index);
                match inner.uffd.move_page_quietly(staged, page) {
                    Ok(()) => {
                        let entry = &inner.table[index];
                        entry.touches.fetch_add(1, Ordering::Relaxed);
                        entry.touched.store(true, Ordering::Release);
                        add(&inner.counters.unparks, 1);
                        Some(())
                    }
                    Err(error) => {
                        failed(&error);
                        None
                    }
                }
            }
            _ => promote(inner, index, page),
        };
        // The state first, then the wake: the access sees it (or faults again and retries).
        if back.is_some() {
            inner.finish(index, RESIDENT);
        } else {
            state.store(current, Ordering::Release);
        }
        if wake {
            let _ = inner.uffd.wake(page);
        }
        return back.is_some();
    }
}

/// Decompresses page `index` into place; `None` (data kept) if the copy failed. The
/// compressed copy stays until [`crate::Arena::reclaim`] frees it (nothing is freed here).
fn promote(inner: &Inner, index: usize, page: u64) -> Option<()> {
    let slot = inner.compressed[index].lock().unwrap_or_else(PoisonError::into_inner);
    let Some(packed) = slot.as_ref() else {
        LAST_FAILURE.store(-2, Ordering::Relaxed); // compressed, with no copy: a bug
        return None;
    };
    let mut bytes = [0u8; PAGE];
    let filled = lz4_flex::block::decompress_into(packed, &mut bytes);
    debug_assert_eq!(filled.ok(), Some(PAGE), "our own compressed page");
    if !fill(inner, page, &bytes, true) {
        return None;
    }
    // Installed write-protected: until tracking reports a write, the copy is the page.
    inner.table[index].clean.store(inner.uffd.tracks_writes(), Ordering::Release);
    inner.promoted[index].store(true, Ordering::Release);
    add(&inner.counters.promotions, 1);
    Some(())
}

/// `UFFDIO_COPY` of `bytes` into the missing page at `page` (no wake; write-protected if
/// `protect`), retrying while the kernel says try again; true once the page is present.
fn fill(inner: &Inner, page: u64, bytes: &[u8; PAGE], protect: bool) -> bool {
    for attempt in 0..10_000u32 {
        match inner.uffd.copy(page, bytes, protect) {
            Ok(_) => return true,
            Err(UffdError::Sys { source, .. }) if source.raw_os_error() == Some(libc::EAGAIN) => {
                if attempt % 64 == 63 {
                    std::thread::yield_now();
                }
                std::hint::spin_loop();
            }
            Err(error) => return failed(&error),
        }
    }
    failed(&UffdError::Sys {
        call: "UFFDIO_COPY",
        source: std::io::Error::from_raw_os_error(libc::EAGAIN),
    })
}

/// The errno of the last failed call on the fault path (0: none), for the message of a
/// fault that cannot be resolved.
pub(crate) static LAST_FAILURE: AtomicI32 = AtomicI32::new(0);

/// Records `error` as the fault path's last failure; false.
fn failed(error: &UffdError) -> bool {
    let errno = match error {
        UffdError::Sys { source, .. } => source.raw_os_error().unwrap_or(-1),
        _ => -1,
    };
    LAST_FAILURE.store(errno, Ordering::Relaxed);
    false
}
