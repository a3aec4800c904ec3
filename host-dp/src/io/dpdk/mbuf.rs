//! `Mbuf`: an owned `rte_mbuf`, freed to its pool on drop; the DPDK backend's frame type.
//!
//! Invariants: the pointer is non-null, came from `rte_pktmbuf_alloc*` or an rx burst, is a
//! single-segment mbuf owned by exactly this value (ownership leaves with `into_raw`), and its
//! pool outlives it (the port keeps its pool alive while it has mbufs out; pools are freed
//! only when their `Mempool` value drops, after the ports using them).

use std::ptr::NonNull;

use dpdk_sys::rte_mbuf;

use crate::io::{Frame, IoError};

/// An owned packet buffer.
#[derive(Debug)]
pub struct Mbuf {
    raw: NonNull<rte_mbuf>,
    frame_len_max: usize,
}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid single-segment mbuf that nothing else owns or frees.
    pub(super) unsafe fn from_raw(raw: NonNull<rte_mbuf>, frame_len_max: usize) -> Mbuf {
        Mbuf { raw, frame_len_max }
    }

    /// Gives up ownership (to a tx burst that accepted it).
    pub(super) fn into_raw(self) -> *mut rte_mbuf {
        let raw = self.raw.as_ptr();
        std::mem::forget(self);
        raw
    }

    /// The data pointer and length.
    fn span(&self) -> (*mut u8, usize) {
        // SAFETY: the mbuf is valid and owned (module invariants).
        let len = usize::from(unsafe { dpdk_sys::rte_pktmbuf_data_len_(self.as_raw()) });
        // SAFETY: as above; mtod is buf_addr + data_off of a valid mbuf.
        let start = unsafe { dpdk_sys::rte_pktmbuf_mtod_(self.as_raw()) }.cast::<u8>();
        (start, len)
    }

    /// The raw pointer, still owned by `self`.
    pub(super) fn as_raw(&self) -> *mut rte_mbuf {
        self.raw.as_ptr()
    }
}

impl Frame for Mbuf {
    fn data(&self) -> &[u8] {
        let (start, len) = self.span();
        // SAFETY: `span` gives the mbuf's data pointer and length: `len` initialised bytes in
        // its buffer, which lives as long as `self` (module invariants).
        unsafe { std::slice::from_raw_parts(start, len) }
    }

    fn data_mut(&mut self) -> &mut [u8] {
        let (start, len) = self.span();
        // SAFETY: as in `data`; `&mut self` makes this the only reference into the buffer.
        unsafe { std::slice::from_raw_parts_mut(start, len) }
    }

    fn set_len(&mut self, len: usize) -> Result<(), IoError> {
        if len > self.frame_len_max {
            return Err(IoError::FrameTooLong { len, max: self.frame_len_max });
        }
        let current = self.len();
        let ok = if len >= current {
            let grow = u16::try_from(len - current).expect("len <= frame_len_max < 64 KiB");
            // SAFETY: the mbuf is valid and owned; append moves its length within the buffer
            // and returns null instead of overrunning it.
            grow == 0 || !unsafe { dpdk_sys::rte_pktmbuf_append_(self.as_raw(), grow) }.is_null()
        } else {
            let cut = u16::try_from(current - len).expect("bounded by current");
            // SAFETY: as above; trim fails (-1) rather than cut below zero.
            unsafe { dpdk_sys::rte_pktmbuf_trim_(self.as_raw(), cut) == 0 }
        };
        if ok { Ok(()) } else { Err(IoError::FrameTooLong { len, max: current }) }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf (invariants) and drop it exactly once.
        unsafe { dpdk_sys::rte_pktmbuf_free_(self.as_raw()) }
    }
}
