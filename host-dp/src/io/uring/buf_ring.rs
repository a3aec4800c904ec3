//! A ring of provided buffers (`IORING_REGISTER_PBUF_RING`): we publish free pool buffers in
//! it, and the one multishot receive picks the next one for each frame that arrives, naming
//! it in the completion. One receive armed on the socket instead of one per buffer: a frame
//! wakes one waiter, not `rx_depth` of them.
//!
//! Invariants: the entries live in one page-aligned allocation that is registered with the
//! io_uring and freed only after the io_uring is gone (the port declares this ring after its
//! `IoUring`, so it drops later). We write an entry only at or past the published tail (the
//! kernel reads only entries before it), and publish a new tail with a Release store after
//! the entry's fields are written.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;

use super::UringError;

/// `struct io_uring_buf` (uapi io_uring.h): addr u64, len u32, bid u16, resv u16; entry 0's
/// `resv` is the ring's tail. Written field by field through byte offsets.
#[repr(C, align(16))]
struct Entry([u8; 16]);

/// The buffer group the port's receives select from.
pub(super) const GROUP: u16 = 0;

pub(super) struct BufRing {
    base: NonNull<Entry>,
    layout: Layout,
    /// Entries (a power of two).
    entries: u16,
    /// The next tail to publish (wrapping, as the kernel's head does).
    tail: u16,
}

impl BufRing {
    /// Allocates a ring of `entries` (a power of two up to 32768) and registers it with `ring`
    /// as group [`GROUP`].
    pub(super) fn register(ring: &IoUring, entries: u16) -> Result<BufRing, UringError> {
        if !entries.is_power_of_two() || entries > 1 << 15 {
            return Err(UringError::Config("provided-buffer ring: a power of two up to 32768"));
        }
        let bytes = usize::from(entries) * std::mem::size_of::<Entry>();
        let layout = Layout::from_size_align(bytes, 4096).expect("ring layout");
        // SAFETY: non-zero size (at least one 16-byte entry); zeroed entries and tail 0.
        let base = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
            .unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
            .cast::<Entry>();
        let ring_buf = BufRing { base, layout, entries, tail: 0 };
        let address = base.as_ptr() as u64;
        // SAFETY: `address` is a page-aligned allocation of `entries` entries that outlives
        // the registration (freed in `Drop`, after the io_uring; module invariants).
        unsafe { ring.submitter().register_buf_ring_with_flags(address, entries, GROUP, 0) }
            .map_err(|source| UringError::Sys { call: "io_uring_register(PBUF_RING)", source })?;
        Ok(ring_buf)
    }

    /// Adds buffer `bid` (`len` bytes at `addr`) past the tail; visible to the kernel after
    /// [`BufRing::publish`], which may then write a received frame there.
    ///
    /// # Safety
    ///
    /// `addr` must point to `len` writable bytes that stay allocated, and that nothing else
    /// reads or writes, from this call until a completion names `bid` (the kernel filled it)
    /// or the io_uring is gone.
    pub(super) unsafe fn push(&mut self, addr: *mut u8, len: u32, bid: u16) {
        let slot = usize::from(self.tail & (self.entries - 1));
        let entry = self.base.as_ptr().wrapping_add(slot).cast::<u8>();
        // Field by field at the uapi offsets (addr 0, len 8, bid 12): entry 0's `resv` at 14
        // is the published tail and is not touched here.
        // SAFETY: `slot < entries`, so the field lies inside the allocation, aligned for its
        // type (16-byte entries, page-aligned base); the entry is at or past the published
        // tail, so the kernel does not read it now.
        unsafe { entry.cast::<u64>().write(addr as u64) };
        // SAFETY: as above.
        unsafe { entry.wrapping_add(8).cast::<u32>().write(len) };
        // SAFETY: as above.
        unsafe { entry.wrapping_add(12).cast::<u16>().write(bid) };
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every pushed entry available to the kernel.
    pub(super) fn publish(&self) {
        let tail = self.base.as_ptr().cast::<u8>().wrapping_add(14).cast::<AtomicU16>();
        // SAFETY: entry 0's `resv` field is the ring's tail, a u16 at offset 14 of the live,
        // page-aligned allocation (so 2-aligned), read by the kernel and written only here.
        let tail = unsafe { &*tail };
        // Release: the entries' fields are written before the kernel can see the new tail.
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `register` with this layout; the io_uring it was registered
        // with is gone (module invariants), so nothing reads it.
        unsafe { std::alloc::dealloc(self.base.as_ptr().cast(), self.layout) }
    }
}
