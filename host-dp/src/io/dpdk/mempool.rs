//! `Mempool`: an owned DPDK packet-buffer pool.
//!
//! Invariant: the pool is freed only when every mbuf is back in it; otherwise its memory is
//! deliberately leaked, never freed under a live mbuf.
//!
//! The process also remembers the largest buffer room of any pool ([`largest_room`]): no
//! frame can be longer (`Mbuf::set_len` refuses more than its buffer's room past the
//! headroom, and a driver receives at most that), so a port whose frame limit is at least that
//! room needs no per-frame length check on transmit.

use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{DpdkError, Eal, c_name, rte_errno, unique};

/// A packet-buffer pool.
#[derive(Debug)]
pub struct Mempool {
    pub(super) raw: NonNull<dpdk_sys::rte_mempool>,
    size: u32,
    pub(super) data_room: u16,
}

// SAFETY: DPDK mempools are thread-safe (multi-producer/multi-consumer by default); the value
// only hands the pointer to DPDK calls.
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

/// Bytes of DPDK's headroom before a frame (`RTE_PKTMBUF_HEADROOM`).
pub(super) const HEADROOM: usize = dpdk_sys::RTE_PKTMBUF_HEADROOM as usize;

/// The largest frame any pool's buffers can hold (data room less the headroom), over every
/// pool this process created; it only grows.
static LARGEST_ROOM: AtomicUsize = AtomicUsize::new(0);

/// The longest frame any mbuf of any pool can hold.
pub(super) fn largest_room() -> usize {
    // Acquire pairs with the Release in `Mempool::new`: a frame from a pool made on another
    // thread reached us after that pool's room was counted.
    LARGEST_ROOM.load(Ordering::Acquire)
}

impl Mempool {
    /// A pool of `size` mbufs with `data_room` bytes each (including DPDK's 128-byte headroom).
    /// A data room of exactly the headroom plus a port's longest frame (128 + 1514 for a
    /// 1500-byte MTU), in every pool, spares that port a length check per transmitted frame.
    pub fn new(_eal: &'static Eal, size: u32, data_room: u16) -> Result<Arc<Mempool>, DpdkError> {
        let name = unique("wave_pool");
        let c = c_name(&name)?;
        let cache = 32.min(size / 4);
        // SAFETY: EAL is up (`_eal`); the name is NUL-terminated and unique.
        let raw =
            unsafe { dpdk_sys::rte_pktmbuf_pool_create(c.as_ptr(), size, cache, 0, data_room, -1) };
        let raw = NonNull::new(raw).ok_or(DpdkError::Mempool { name, errno: rte_errno() })?;
        LARGEST_ROOM.fetch_max(usize::from(data_room).saturating_sub(HEADROOM), Ordering::Release);
        Ok(Arc::new(Mempool { raw, size, data_room }))
    }

    /// The raw pool, for code that drives DPDK directly (baselines, other libraries).
    pub fn as_raw(&self) -> *mut dpdk_sys::rte_mempool {
        self.raw.as_ptr()
    }

    /// Mbufs in the pool now (not lent out).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid while `self` lives.
        unsafe { dpdk_sys::rte_mempool_avail_count_(self.raw.as_ptr()) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        if self.available() == self.size {
            // SAFETY: every mbuf is back, so nothing refers into the pool any more.
            unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) }
        }
        // Otherwise mbufs are still out (leaked by the app): keep the pool's memory rather
        // than free it under them.
    }
}
