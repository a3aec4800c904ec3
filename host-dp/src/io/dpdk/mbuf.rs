//! `Mbuf`: an owned `rte_mbuf`, freed to its pool on drop; the DPDK backend's frame type.
//! It is the pointer and nothing else (`#[repr(transparent)]`), so a `Vec<Mbuf>` is an array
//! of `rte_mbuf *` that DPDK's burst calls fill and drain in place. Like
//! `rte_pktmbuf_append`, [`Frame::set_len`] refuses what the buffer cannot hold; the port's
//! frame limit (its MTU) is enforced where it is known, by `tx_burst`.
//!
//! Invariants: the pointer is non-null, came from `rte_pktmbuf_alloc*` or an rx burst, is a
//! single-segment mbuf (ports are set up without scatter-rx, and frames fit one buffer)
//! owned by exactly this value (ownership leaves when the port forgets it after
//! DPDK took it), and its pool outlives it (the port keeps its pool alive while it has mbufs
//! out; pools are freed only when their `Mempool` value drops, after the ports using them).

use std::ptr::NonNull;

use dpdk_sys::rte_mbuf;

use crate::io::{Frame, IoError};

/// An owned packet buffer.
#[derive(Debug)]
#[repr(transparent)]
pub struct Mbuf {
    raw: NonNull<rte_mbuf>,
}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid single-segment mbuf that nothing else owns or frees.
    pub(super) unsafe fn from_raw(raw: NonNull<rte_mbuf>) -> Mbuf {
        Mbuf { raw }
    }

    /// The data pointer and length: DPDK's `rte_pktmbuf_mtod` and `rte_pktmbuf_data_len`,
    /// read from the fields directly (both are inline macros in C).
    #[inline]
    fn span(&self) -> (*mut u8, usize) {
        // SAFETY: the mbuf is valid and owned (module invariants); these are plain fields.
        let m = unsafe { self.raw.as_ref() };
        let start = m.buf_addr.cast::<u8>().wrapping_add(usize::from(m.data_off));
        (start, usize::from(m.data_len))
    }

    /// The raw pointer, still owned by `self`.
    #[inline]
    pub(super) fn as_raw(&self) -> *mut rte_mbuf {
        self.raw.as_ptr()
    }
}

impl Frame for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let (start, len) = self.span();
        // SAFETY: `span` gives the mbuf's data pointer and length: `len` initialised bytes in
        // its buffer, which lives as long as `self` (module invariants).
        unsafe { std::slice::from_raw_parts(start, len) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let (start, len) = self.span();
        // SAFETY: as in `data`; `&mut self` makes this the only reference into the buffer.
        unsafe { std::slice::from_raw_parts_mut(start, len) }
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> Result<(), IoError> {
        // SAFETY: the mbuf is valid and exclusively ours (`&mut self`, module invariants).
        let m = unsafe { self.raw.as_mut() };
        // Single segment (invariants): what rte_pktmbuf_append/trim do, with the room check.
        // The room never counts headroom below DPDK's default (a driver receives no more), so
        // no frame outgrows its pool's room (`mempool::largest_room`).
        let front = usize::from(m.data_off).max(super::mempool::HEADROOM);
        let room = usize::from(m.buf_len).saturating_sub(front);
        if len > room {
            return Err(IoError::FrameTooLong { len, max: room });
        }
        let len16 = u16::try_from(len).expect("len <= room < 64 KiB");
        m.data_len = len16;
        m.pkt_len = u32::from(len16);
        Ok(())
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf (invariants) and drop it exactly once.
        unsafe { dpdk_sys::rte_pktmbuf_free_(self.as_raw()) }
    }
}
