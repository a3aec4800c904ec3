//! The packet I/O contract on a started `DpdkPort`: bulk allocation, rx/tx bursts of up to
//! `BURST` mbufs per DPDK call, and bulk free. Ownership moves exactly when DPDK takes or
//! hands over an mbuf: `adopt` wraps the pointers DPDK gave, `forget_first` drops the
//! `Mbuf`s of those it took without freeing them.

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use super::{BURST, DpdkPort, Mbuf};
use crate::io::{Capabilities, IoError, PacketIo, QueueId, check_queue};

type RawMbuf = *mut dpdk_sys::rte_mbuf;

/// A burst's worth of mbuf pointers, left uninitialised (zeroing 512 bytes per call was a
/// measurable share of a 64-byte frame's cost): DPDK or our own loops fill a prefix, and
/// only that prefix is ever read ([`filled`]).
fn scratch() -> [MaybeUninit<RawMbuf>; BURST] {
    [const { MaybeUninit::uninit() }; BURST]
}

/// The first `n` pointers of `raw`.
///
/// # Safety
/// The first `n` entries must have been written (by DPDK, which fills the prefix of a burst
/// it reports, or by our own loops).
#[inline]
unsafe fn filled(raw: &[MaybeUninit<RawMbuf>], n: usize) -> &[RawMbuf] {
    assert!(n <= raw.len(), "{n} pointers out of a burst of {}", raw.len());
    // SAFETY: `MaybeUninit<T>` has `T`'s layout, and the caller guarantees the first `n`
    // entries are initialised; `n` is in bounds (checked above).
    unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<RawMbuf>(), n) }
}

impl DpdkPort {
    /// Fallback when the pool has fewer mbufs than a bulk request: fills `raw` one by one and
    /// returns how many it got.
    fn alloc_one_by_one(&mut self, raw: &mut [MaybeUninit<RawMbuf>]) -> usize {
        for (got, slot) in raw.iter_mut().enumerate() {
            // SAFETY: the pool is valid while the port holds it.
            let m = unsafe { dpdk_sys::rte_pktmbuf_alloc_(self.pool.raw.as_ptr()) };
            if m.is_null() {
                return got;
            }
            slot.write(m);
        }
        raw.len()
    }
}

impl PacketIo for DpdkPort {
    type Frame = Mbuf;

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn alloc(&mut self, out: &mut Vec<Mbuf>, count: usize) -> usize {
        let max = self.caps.frame_len_max;
        let mut raw = scratch();
        let mut given = 0;
        while given < count {
            let chunk = (count - given).min(BURST);
            let n = u32::try_from(chunk).expect("at most BURST");
            let pool = self.pool.raw.as_ptr();
            // SAFETY: the pool is valid while the port holds it; `raw` has room for `chunk`.
            let bulk =
                unsafe { dpdk_sys::rte_pktmbuf_alloc_bulk_(pool, raw.as_mut_ptr().cast(), n) };
            let got = if bulk == 0 { chunk } else { self.alloc_one_by_one(&mut raw[..chunk]) };
            // SAFETY: a bulk allocation that succeeds fills all `chunk` slots; one by one
            // fills the first `got`.
            adopt(out, unsafe { filled(&raw, got) }, max);
            given += got;
            if got < chunk {
                break; // the pool is empty
            }
        }
        given
    }

    fn free_batch(&mut self, frames: &mut Vec<Mbuf>) {
        let mut raw = scratch();
        for chunk in frames.chunks(BURST) {
            for (slot, frame) in raw.iter_mut().zip(chunk) {
                slot.write(frame.as_raw());
            }
            let n = u32::try_from(chunk.len()).expect("at most BURST");
            // SAFETY: the first `n` pointers were just written and are mbufs owned by
            // `frames`, which forgets them below without dropping (each is freed once, here).
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(raw.as_mut_ptr().cast(), n) };
        }
        forget_first(frames, frames.len());
    }

    fn rx_burst(
        &mut self,
        queue: QueueId,
        out: &mut Vec<Mbuf>,
        max: usize,
    ) -> Result<usize, IoError> {
        check_queue(queue, self.config.rx_queues)?;
        let frame_max = self.caps.frame_len_max;
        let mut received = 0;
        let mut raw = scratch();
        while received < max {
            let want = u16::try_from((max - received).min(BURST)).expect("at most BURST");
            let slots = raw.as_mut_ptr().cast();
            // SAFETY: started port, valid queue; `raw` has room for `want` pointers.
            let got = unsafe { dpdk_sys::rte_eth_rx_burst_(self.id, queue.0, slots, want) };
            // Scatter-rx is never enabled: every received mbuf is one segment.
            // SAFETY: an rx burst fills the first `got` slots.
            adopt(out, unsafe { filled(&raw, usize::from(got)) }, frame_max);
            received += usize::from(got);
            if got < want {
                break;
            }
        }
        Ok(received)
    }

    fn tx_burst(&mut self, queue: QueueId, frames: &mut Vec<Mbuf>) -> Result<usize, IoError> {
        check_queue(queue, self.config.tx_queues)?;
        let max = self.caps.frame_len_max;
        let mut oversize = None;
        let mut sent = 0;
        let mut raw = scratch();
        while sent < frames.len() && oversize.is_none() {
            // Up to a burst of frames, stopping before the first one over the MTU.
            let mut chunk = 0;
            for (slot, frame) in raw.iter_mut().zip(&frames[sent..]) {
                if crate::io::Frame::len(frame) > max {
                    oversize = Some(sent + chunk);
                    break;
                }
                slot.write(frame.as_raw());
                chunk += 1;
            }
            if chunk == 0 {
                break;
            }
            let n = u16::try_from(chunk).expect("at most BURST");
            let slots = raw.as_mut_ptr().cast();
            // SAFETY: started port, valid queue; the first `n` pointers were just written and
            // are owned mbufs. The device takes ownership of those it accepts, which we forget
            // below.
            let accepted =
                usize::from(unsafe { dpdk_sys::rte_eth_tx_burst_(self.id, queue.0, slots, n) });
            sent += accepted;
            if accepted < chunk {
                break;
            }
        }
        forget_first(frames, sent); // now the device's
        match oversize {
            Some(at) if sent == at => {
                let len = crate::io::Frame::len(&frames[0]);
                Err(IoError::FrameTooLong { len, max })
            }
            _ => Ok(sent),
        }
    }
}

/// Appends owned `Mbuf`s for `raw`, pointers DPDK just handed over (allocated or received).
#[inline]
fn adopt(out: &mut Vec<Mbuf>, raw: &[RawMbuf], frame_len_max: usize) {
    out.extend(raw.iter().map(|&m| {
        // SAFETY: DPDK fills the first `got` slots of a burst with valid, non-null,
        // single-segment mbufs that it gives up (ports never enable scatter-rx), so each is
        // owned by exactly the `Mbuf` made here.
        let m = unsafe { NonNull::new_unchecked(m) };
        // SAFETY: as above: the mbuf is valid, single-segment and owned by nobody else.
        unsafe { Mbuf::from_raw(m, frame_len_max) }
    }));
}

/// Removes the first `n` frames of `frames` without dropping them (DPDK owns them now, or has
/// freed them); the rest move to the front.
#[inline]
fn forget_first(frames: &mut Vec<Mbuf>, n: usize) {
    if n == frames.len() {
        // SAFETY: length 0 is within capacity; the elements are not dropped (`Mbuf` is a
        // pointer and a number: forgetting one leaks nothing of Rust's).
        unsafe { frames.set_len(0) };
    } else {
        frames.drain(..n).for_each(std::mem::forget);
    }
}
