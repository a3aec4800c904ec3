//! Fixed-size frame buffers for the io_uring backend, and the frames that lend them out: a
//! frame is one of the pool's buffers or, when the port receives through a `PACKET_MMAP`
//! ring, a slot of that ring lent out in place (no copy).
//!
//! Invariants: the buffer memory is one allocation that never moves and is freed only when the
//! last `Rc<Pool>` drops (the port holds one and waits for the kernel to finish with every
//! buffer before dropping it, see `UringPort::drop`); the ring, when there is one, is owned
//! here too and unmapped at the same point. A buffer index below `count` is always in exactly
//! one place: the free list, a [`UringFrame`], or an io_uring operation in flight. An index
//! from `count` on names ring slot `index - count`, lent out by the port's receive cursor: it
//! is in a frame or an operation in flight until `give_back` hands the slot to the kernel.
//! Only the holder touches its bytes.

use std::alloc::Layout;
use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;

use super::rx_ring::RxRing;
use crate::io::{Frame, IoError};

pub(super) struct Pool {
    base: NonNull<u8>,
    layout: Layout,
    buffer_size: usize,
    frame_len_max: usize,
    count: u32,
    free: RefCell<Vec<u32>>,
    /// Set when the kernel may still own buffers at drop: the memory is leaked, not freed.
    leak: std::cell::Cell<bool>,
    /// The receive ring whose slots frames may hold.
    ring: Option<RxRing>,
    /// Ring slots lent out now, and which: a lent slot still reads USER, so the receive
    /// cursor must not take it for a new frame when it comes round (the kernel is stopped
    /// there too).
    lent: std::cell::Cell<usize>,
    lent_slots: Vec<std::cell::Cell<bool>>,
}

impl Pool {
    pub(super) fn new(
        count: u32,
        buffer_size: usize,
        frame_len_max: usize,
        ring: Option<RxRing>,
    ) -> Rc<Pool> {
        assert!(count > 0 && buffer_size >= frame_len_max && buffer_size.is_multiple_of(64));
        let bytes = count as usize * buffer_size;
        let layout = Layout::from_size_align(bytes, 4096).expect("pool layout");
        // SAFETY: non-zero size (count > 0, buffer_size >= 64).
        let base = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
            .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        let free = RefCell::new((0..count).rev().collect());
        let slots = ring.as_ref().map_or(0, RxRing::slots);
        Rc::new(Pool {
            base,
            layout,
            buffer_size,
            frame_len_max,
            count,
            free,
            leak: std::cell::Cell::new(false),
            ring,
            lent: std::cell::Cell::new(0),
            lent_slots: (0..slots).map(|_| std::cell::Cell::new(false)).collect(),
        })
    }

    /// The receive ring, if frames arrive in one.
    pub(super) fn ring(&self) -> Option<&RxRing> {
        self.ring.as_ref()
    }

    /// True while another ring slot may be lent out.
    pub(super) fn may_lend(&self) -> bool {
        self.ring.as_ref().is_some_and(|ring| self.lent.get() < ring.lend_max())
    }

    /// True while ring slot `slot` is lent out (in a frame or an operation).
    pub(super) fn is_lent(&self, slot: usize) -> bool {
        self.lent_slots.get(slot).is_some_and(std::cell::Cell::get)
    }

    /// Lends ring slot `slot` out as a frame of `len` bytes at `offset` in the slot. The
    /// caller read the slot's status as USER and gives up the slot to the frame.
    pub(super) fn lend(self: &Rc<Pool>, slot: usize, offset: usize, len: usize) -> UringFrame {
        debug_assert!(self.ring.as_ref().is_some_and(|r| slot < r.slots()));
        debug_assert!(self.ring.as_ref().is_some_and(|r| offset + len <= r.frame_size()));
        self.lent.set(self.lent.get() + 1);
        self.lent_slots[slot].set(true);
        let index = self.count + u32::try_from(slot).expect("ring slots fit u32");
        let offset = u32::try_from(offset).expect("offset within a slot");
        UringFrame { pool: self.clone(), index, offset, len }
    }

    pub(super) fn take(&self) -> Option<u32> {
        self.free.borrow_mut().pop()
    }

    /// The ring slot that buffer index `index` names, if it names one (not a pool buffer).
    pub(super) fn ring_slot(&self, index: u32) -> Option<usize> {
        index.checked_sub(self.count).map(|slot| slot as usize)
    }

    /// Returns a buffer to the free list, or a ring slot to the kernel.
    pub(super) fn give_back(&self, index: u32) {
        match (self.ring_slot(index), self.ring.as_ref()) {
            (None, _) => self.free.borrow_mut().push(index),
            (Some(slot), Some(ring)) => {
                ring.release(slot);
                self.lent_slots[slot].set(false);
                self.lent.set(self.lent.get() - 1);
            }
            (Some(_), None) => unreachable!("a ring slot index without a ring"),
        }
    }

    pub(super) fn free_count(&self) -> usize {
        self.free.borrow().len()
    }

    /// Start of buffer `index` (for the kernel, or for the frame that holds it).
    pub(super) fn buffer(&self, index: u32) -> *mut u8 {
        assert!(index < self.count, "buffer {index} out of range");
        self.base.as_ptr().wrapping_add(index as usize * self.buffer_size)
    }

    /// Where the frame (`index`, `offset`) starts, and how long it may grow.
    #[inline]
    fn place(&self, index: u32, offset: u32) -> (*mut u8, usize) {
        match (self.ring_slot(index), self.ring.as_ref()) {
            (None, _) => (self.buffer(index), self.frame_len_max),
            (Some(slot), Some(ring)) => {
                let room = (ring.frame_size() - offset as usize).min(self.frame_len_max);
                (ring.slot(slot).wrapping_add(offset as usize), room)
            }
            (Some(_), None) => unreachable!("a ring slot index without a ring"),
        }
    }

    pub(super) fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// Marks the memory as possibly still in use by the kernel: never free it.
    pub(super) fn leak_on_drop(&self) {
        self.leak.set(true);
    }

    pub(super) fn frame(self: &Rc<Pool>, index: u32, len: usize) -> UringFrame {
        debug_assert!(len <= self.buffer_size);
        UringFrame { pool: self.clone(), index, offset: 0, len }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !self.leak.get() {
            // SAFETY: allocated in `new` with this layout; no frame (each holds an `Rc`) and
            // no kernel operation (the port drained them, else `leak` is set) uses it now.
            unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) }
        }
    }
}

/// A frame buffer of the io_uring backend (a pool buffer, or a receive ring slot lent in
/// place); dropping it returns the buffer to the pool, or the slot to the kernel.
pub struct UringFrame {
    pool: Rc<Pool>,
    index: u32,
    /// Where the frame starts in its buffer (a ring slot's frame follows the kernel's header).
    offset: u32,
    len: usize,
}

impl std::fmt::Debug for UringFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringFrame").field("index", &self.index).field("len", &self.len).finish()
    }
}

impl UringFrame {
    /// The buffer index, for building an operation on it (ownership moves with
    /// [`UringFrame::into_index`]).
    pub(super) fn index_for_submit(&self) -> u32 {
        self.index
    }

    /// Hands the buffer to an operation: the frame is consumed, the index stays out of the
    /// free list until the operation's completion gives it back.
    pub(super) fn into_index(self) -> u32 {
        let index = self.index;
        std::mem::forget(self);
        index
    }
}

impl Frame for UringFrame {
    #[inline]
    fn data(&self) -> &[u8] {
        let (start, room) = self.pool.place(self.index, self.offset);
        debug_assert!(self.len <= room);
        // SAFETY: `start` has `room >= len` bytes of a live allocation or mapping (the frame
        // keeps the pool, which owns both, alive), and this frame holds its index
        // exclusively (invariants).
        unsafe { std::slice::from_raw_parts(start, self.len) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let (start, _) = self.pool.place(self.index, self.offset);
        // SAFETY: as in `data`; `&mut self` makes this the only reference into the buffer.
        unsafe { std::slice::from_raw_parts_mut(start, self.len) }
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> Result<(), IoError> {
        let (_, room) = self.pool.place(self.index, self.offset);
        if len > room {
            return Err(IoError::FrameTooLong { len, max: room });
        }
        self.len = len;
        Ok(())
    }
}

impl Drop for UringFrame {
    fn drop(&mut self) {
        self.pool.give_back(self.index);
    }
}
