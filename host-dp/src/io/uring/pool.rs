//! Fixed-size frame buffers for the io_uring backend, and the frames that lend them out.
//!
//! Invariants: the buffer memory is one allocation that never moves and is freed only when the
//! last `Rc<Pool>` drops (the port holds one and waits for the kernel to finish with every
//! buffer before dropping it, see `UringPort::drop`). A buffer index is always in exactly one
//! place: the free list, a [`UringFrame`], or an io_uring operation in flight. Only the holder
//! touches its bytes.

use std::alloc::Layout;
use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;

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
}

impl Pool {
    pub(super) fn new(count: u32, buffer_size: usize, frame_len_max: usize) -> Rc<Pool> {
        assert!(count > 0 && buffer_size >= frame_len_max && buffer_size.is_multiple_of(64));
        let bytes = count as usize * buffer_size;
        let layout = Layout::from_size_align(bytes, 4096).expect("pool layout");
        // SAFETY: non-zero size (count > 0, buffer_size >= 64).
        let base = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
            .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        let free = RefCell::new((0..count).rev().collect());
        Rc::new(Pool {
            base,
            layout,
            buffer_size,
            frame_len_max,
            count,
            free,
            leak: std::cell::Cell::new(false),
        })
    }

    pub(super) fn take(&self) -> Option<u32> {
        self.free.borrow_mut().pop()
    }

    pub(super) fn give_back(&self, index: u32) {
        debug_assert!(index < self.count);
        self.free.borrow_mut().push(index);
    }

    pub(super) fn free_count(&self) -> usize {
        self.free.borrow().len()
    }

    /// Start of buffer `index` (for the kernel, or for the frame that holds it).
    pub(super) fn buffer(&self, index: u32) -> *mut u8 {
        assert!(index < self.count, "buffer {index} out of range");
        self.base.as_ptr().wrapping_add(index as usize * self.buffer_size)
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
        UringFrame { pool: self.clone(), index, len }
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

/// A frame buffer of the io_uring backend; dropping it returns the buffer to the pool.
pub struct UringFrame {
    pool: Rc<Pool>,
    index: u32,
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
        // SAFETY: the buffer holds `buffer_size >= len` bytes of a live allocation (the frame
        // keeps the pool alive), and this frame holds its index exclusively (invariants).
        unsafe { std::slice::from_raw_parts(self.pool.buffer(self.index), self.len) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`; `&mut self` makes this the only reference into the buffer.
        unsafe { std::slice::from_raw_parts_mut(self.pool.buffer(self.index), self.len) }
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> Result<(), IoError> {
        if len > self.pool.frame_len_max {
            return Err(IoError::FrameTooLong { len, max: self.pool.frame_len_max });
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
