//! The packet I/O contract on a started `DpdkPort`: bulk allocation, rx/tx bursts of up to
//! `BURST` mbufs per DPDK call, and bulk free. Ownership moves with `Mbuf::into_raw` /
//! `Mbuf::from_raw` exactly when DPDK takes or hands over an mbuf.

use std::ptr::NonNull;

use super::{BURST, DpdkPort, Mbuf};
use crate::io::{Capabilities, IoError, PacketIo, QueueId, check_queue};

impl DpdkPort {
    /// Fallback when the pool has fewer mbufs than a bulk request: fills `raw` one by one and
    /// returns how many it got.
    fn alloc_one_by_one(&mut self, raw: &mut [*mut dpdk_sys::rte_mbuf]) -> usize {
        for (got, slot) in raw.iter_mut().enumerate() {
            // SAFETY: the pool is valid while the port holds it.
            *slot = unsafe { dpdk_sys::rte_pktmbuf_alloc_(self.pool.raw.as_ptr()) };
            if slot.is_null() {
                return got;
            }
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
        let mut raw = [std::ptr::null_mut::<dpdk_sys::rte_mbuf>(); BURST];
        let mut given = 0;
        while given < count {
            let chunk = (count - given).min(BURST);
            let n = u32::try_from(chunk).expect("at most BURST");
            // SAFETY: the pool is valid while the port holds it; `raw` has room for `chunk`.
            let bulk = unsafe {
                dpdk_sys::rte_pktmbuf_alloc_bulk_(self.pool.raw.as_ptr(), raw.as_mut_ptr(), n)
            } == 0;
            let got = if bulk { chunk } else { self.alloc_one_by_one(&mut raw[..chunk]) };
            for &m in &raw[..got] {
                let m = NonNull::new(m).expect("allocated mbufs are non-null");
                // SAFETY: a fresh single-segment mbuf, owned by nobody else.
                out.push(unsafe { Mbuf::from_raw(m, max) });
            }
            given += got;
            if got < chunk {
                break; // the pool is empty
            }
        }
        given
    }

    fn free_batch(&mut self, frames: &mut Vec<Mbuf>) {
        let mut raw = [std::ptr::null_mut::<dpdk_sys::rte_mbuf>(); BURST];
        while !frames.is_empty() {
            let chunk = frames.len().min(BURST);
            for (slot, frame) in raw.iter_mut().zip(frames.drain(..chunk)) {
                *slot = frame.into_raw();
            }
            let n = u32::try_from(chunk).expect("at most BURST");
            // SAFETY: the first `chunk` pointers are mbufs we owned (taken with into_raw).
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(raw.as_mut_ptr(), n) };
        }
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
        let mut raw = [std::ptr::null_mut::<dpdk_sys::rte_mbuf>(); BURST];
        while received < max {
            let want = u16::try_from((max - received).min(BURST)).expect("at most BURST");
            // SAFETY: started port, valid queue; `raw` has room for `want` pointers.
            let got =
                unsafe { dpdk_sys::rte_eth_rx_burst_(self.id, queue.0, raw.as_mut_ptr(), want) };
            for &m in &raw[..usize::from(got)] {
                let m = NonNull::new(m).expect("rx burst returns non-null mbufs");
                // SAFETY: a received mbuf we now own; reading a field.
                debug_assert_eq!(unsafe { m.as_ref() }.nb_segs, 1, "scatter-rx is never enabled");
                // SAFETY: the device hands us ownership of each received mbuf.
                out.push(unsafe { Mbuf::from_raw(m, frame_max) });
            }
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
        let oversize = frames.iter().position(|f| crate::io::Frame::len(f) > max);
        let sendable = oversize.unwrap_or(frames.len());
        let mut sent = 0;
        let mut raw = [std::ptr::null_mut::<dpdk_sys::rte_mbuf>(); BURST];
        while sent < sendable {
            let chunk = (sendable - sent).min(BURST);
            for (slot, frame) in raw.iter_mut().zip(&frames[sent..sent + chunk]) {
                *slot = frame.as_raw();
            }
            let n = u16::try_from(chunk).expect("at most BURST");
            // SAFETY: started port, valid queue; the first `n` pointers are owned mbufs. The
            // device takes ownership of those it accepts, which we forget below.
            let accepted = usize::from(unsafe {
                dpdk_sys::rte_eth_tx_burst_(self.id, queue.0, raw.as_mut_ptr(), n)
            });
            sent += accepted;
            if accepted < chunk {
                break;
            }
        }
        for frame in frames.drain(..sent) {
            let _ = frame.into_raw(); // now the device's
        }
        match oversize {
            Some(_) if sent == sendable => {
                let len = crate::io::Frame::len(&frames[0]);
                Err(IoError::FrameTooLong { len, max })
            }
            _ => Ok(sent),
        }
    }
}
