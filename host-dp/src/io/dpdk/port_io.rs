//! The packet I/O contract on a started `DpdkPort`: bulk allocation, rx/tx bursts of up to
//! `BURST` mbufs per DPDK call, and bulk free, all working in place on the caller's
//! `Vec<Mbuf>`. An `Mbuf` is exactly an `rte_mbuf *` (`#[repr(transparent)]`), so DPDK
//! writes received and allocated pointers straight into the vector's spare capacity and
//! reads transmitted ones straight out of it: no pointer is copied between our frames and
//! DPDK's arrays (`docs/results/packet-io.md` has what copying them through a stack array
//! cost). The one per-frame pass left is the MTU check in `tx_burst`, skipped when no
//! pool's buffer can hold a frame over the port's limit.
//!
//! The burst methods are `#[inline]`, so a caller's loop can inline them as a C caller
//! inlines DPDK's own `static inline` burst functions (`docs/results/packet-io.md`).
//!
//! Ownership moves exactly when DPDK takes or hands over an mbuf: the vector's length grows
//! over the pointers DPDK gave, and `forget_first` removes those it took without freeing them.

use std::ptr::NonNull;

use super::{BURST, DpdkPort, Mbuf};
use crate::io::{Capabilities, Frame, IoError, PacketIo, QueueId, check_queue};

type RawMbuf = *mut dpdk_sys::rte_mbuf;

/// The start of `out`'s spare capacity as DPDK pointer slots.
#[inline]
fn spare(out: &mut Vec<Mbuf>) -> *mut RawMbuf {
    // `Mbuf` is `#[repr(transparent)]` over `NonNull<rte_mbuf>`, which has the layout of
    // `*mut rte_mbuf`.
    out.spare_capacity_mut().as_mut_ptr().cast()
}

/// Counts as frames of `out` the `n` pointers DPDK just wrote into its spare capacity.
///
/// # Safety
/// The first `n` spare slots of `out` must hold valid, non-null, single-segment mbufs that
/// DPDK gave up (allocated or received; ports never enable scatter-rx), each owned by nobody
/// else: each becomes owned by the `Mbuf` in its slot (module invariants of `mbuf.rs`).
#[inline]
unsafe fn adopt(out: &mut Vec<Mbuf>, n: usize) {
    debug_assert!(n <= out.capacity() - out.len());
    // SAFETY: the caller guarantees the `n` slots after the length are initialised with
    // valid `Mbuf` bit patterns (non-null pointers), within capacity.
    unsafe { out.set_len(out.len() + n) };
}

impl PacketIo for DpdkPort {
    type Frame = Mbuf;

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    #[inline]
    fn alloc(&mut self, out: &mut Vec<Mbuf>, count: usize) -> usize {
        out.reserve(count);
        let pool = self.pool.raw.as_ptr();
        let mut given = 0;
        while given < count {
            let chunk = (count - given).min(BURST);
            let n = u32::try_from(chunk).expect("at most BURST");
            // SAFETY: the pool is valid while the port holds it; `out` has room for `count`
            // more pointers (reserved above), of which `given` are used.
            if unsafe { dpdk_sys::rte_pktmbuf_alloc_bulk_(pool, spare(out), n) } == 0 {
                // SAFETY: a bulk allocation that succeeds fills all `chunk` slots with fresh
                // mbufs from our pool.
                unsafe { adopt(out, chunk) };
                given += chunk;
                continue;
            }
            // The pool has fewer mbufs than the chunk: take what is left one by one.
            while given < count {
                // SAFETY: the pool is valid while the port holds it.
                let Some(m) = NonNull::new(unsafe { dpdk_sys::rte_pktmbuf_alloc_(pool) }) else {
                    return given; // the pool is empty
                };
                // SAFETY: a fresh single-segment mbuf that only this frame owns.
                out.push(unsafe { Mbuf::from_raw(m) });
                given += 1;
            }
        }
        given
    }

    #[inline]
    fn free_batch(&mut self, frames: &mut Vec<Mbuf>) {
        for chunk in frames.chunks_mut(BURST) {
            let n = u32::try_from(chunk.len()).expect("at most BURST");
            // SAFETY: `chunk` is `n` owned mbufs, laid out as `rte_mbuf *` (transparent);
            // `frames` forgets them below without dropping, so each is freed once, here.
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(chunk.as_mut_ptr().cast(), n) };
        }
        forget_first(frames, frames.len());
    }

    #[inline]
    fn rx_burst(
        &mut self,
        queue: QueueId,
        out: &mut Vec<Mbuf>,
        max: usize,
    ) -> Result<usize, IoError> {
        check_queue(queue, self.config.rx_queues)?;
        out.reserve(max);
        let mut received = 0;
        while received < max {
            let want = u16::try_from((max - received).min(BURST)).expect("at most BURST");
            // SAFETY: started port, valid queue; `out` has room for `max` more pointers
            // (reserved above), of which `received` are used.
            let got = unsafe { dpdk_sys::rte_eth_rx_burst_(self.id, queue.0, spare(out), want) };
            // SAFETY: an rx burst fills the first `got` slots with received mbufs it gives
            // up; scatter-rx is never enabled, so each is one segment.
            unsafe { adopt(out, usize::from(got)) };
            received += usize::from(got);
            if got < want {
                break;
            }
        }
        Ok(received)
    }

    #[inline]
    fn tx_burst(&mut self, queue: QueueId, frames: &mut Vec<Mbuf>) -> Result<usize, IoError> {
        check_queue(queue, self.config.tx_queues)?;
        let max = self.caps.frame_len_max;
        // No frame is longer than the largest buffer room of any pool; when that fits the
        // port, checking each frame's length (a pass over every mbuf before DPDK's) is moot.
        let check = max < super::mempool::largest_room();
        let mut sent = 0;
        let result = loop {
            if sent == frames.len() {
                break Ok(());
            }
            // Up to a burst of frames, stopping before the first one over the port's limit.
            let end = frames.len().min(sent + BURST);
            let oversize =
                if check { frames[sent..end].iter().position(|f| f.len() > max) } else { None };
            let n = oversize.unwrap_or(end - sent);
            let accepted = if n == 0 {
                0
            } else {
                let count = u16::try_from(n).expect("at most BURST");
                let slots = frames[sent..].as_mut_ptr().cast();
                // SAFETY: started port, valid queue; `slots` starts `n` owned mbufs laid out
                // as `rte_mbuf *` (transparent). The device takes ownership of those it
                // accepts, which are forgotten below; it only reads the array.
                usize::from(unsafe { dpdk_sys::rte_eth_tx_burst_(self.id, queue.0, slots, count) })
            };
            sent += accepted;
            if accepted < n {
                break Ok(()); // backpressure: the device's queue is full
            }
            if oversize.is_some() {
                break Err(IoError::FrameTooLong { len: frames[sent].len(), max });
            }
        };
        forget_first(frames, sent); // now the device's
        result.map(|()| sent)
    }
}

/// Removes the first `n` frames of `frames` without dropping them (DPDK owns them now, or has
/// freed them); the rest move to the front.
#[inline]
fn forget_first(frames: &mut Vec<Mbuf>, n: usize) {
    if n == frames.len() {
        // SAFETY: length 0 is within capacity; the elements are not dropped (`Mbuf` is a
        // pointer: forgetting one leaks nothing of Rust's).
        unsafe { frames.set_len(0) };
    } else {
        frames.drain(..n).for_each(std::mem::forget);
    }
}
