//! The port's receive side and completions: reading the `PACKET_MMAP` ring, providing buffers
//! to the multishot receive, and reaping finished receives and sends.

use io_uring::opcode;

use super::rx_ring::Slot;
use super::{INDEX_MASK, KICK, RX, TX, UringFrame, UringPort, buf_ring};
use crate::io::Frame;

impl UringPort {
    /// Provides free buffers to the receive up to `rx_depth`, and arms the multishot receive
    /// if it is not.
    pub(super) fn post_receives(&mut self) {
        let Some(buf_ring) = self.buf_ring.as_mut() else {
            return; // frames arrive in the mapped ring, not through operations
        };
        let len = u32::try_from(self.pool.buffer_size()).expect("buffer size fits u32");
        let provided = self.rx_posted;
        while self.rx_posted < self.config.rx_depth {
            let Some(index) = self.pool.take() else { break };
            let bid = u16::try_from(index).expect("buffers <= 65536 (checked at open)");
            // SAFETY: `index` came off the pool's free list, so its buffer (`len` bytes, freed
            // only with the pool, which outlives the io_uring) is in no frame: it belongs to
            // the receive until a completion names it (`reap` turns that into a frame).
            unsafe { buf_ring.push(self.pool.buffer(index), len, bid) };
            self.rx_posted += 1;
        }
        if self.rx_posted != provided {
            buf_ring.publish();
        }
        if !self.recv_armed && self.rx_posted > 0 {
            let entry = opcode::RecvMulti::new(self.fd(), buf_ring::GROUP).build().user_data(RX);
            self.recv_armed = self.push(&entry);
        }
    }

    /// Reaps completions: finished receives become ready frames, finished sends free their
    /// buffers.
    pub(super) fn reap(&mut self) {
        // DEFER_TASKRUN: deferred work (finished receives and sends) runs only when we enter
        // the kernel asking for events.
        let flags = 1; // IORING_ENTER_GETEVENTS (uapi io_uring.h)
        // SAFETY: io_uring_enter with nothing to submit, no wait and no argument: it only runs
        // the deferred task work that posts completions.
        let _ = unsafe { self.ring.submitter().enter::<libc::sigset_t>(0, 0, flags, None) };
        self.reap_posted();
    }

    /// Handles the completions already posted, without entering the kernel (sends that
    /// completed when submitted are posted at once; deferred ones wait for [`Self::reap`]).
    pub(super) fn reap_posted(&mut self) {
        let mut completions = std::mem::take(&mut self.completions);
        completions.extend(self.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
        for (data, result, flags) in completions.drain(..) {
            let index = (data & INDEX_MASK) as u32;
            match data & !INDEX_MASK {
                RX => {
                    if !io_uring::cqueue::more(flags) {
                        self.recv_armed = false; // re-armed by the next post_receives
                    }
                    let Some(bid) = io_uring::cqueue::buffer_select(flags) else {
                        // No buffer taken: the ring ran dry (ENOBUFS: the frame waits in the
                        // socket for the re-armed receive), a cancel, or a socket error.
                        let benign = [-libc::ENOBUFS, -libc::ECANCELED];
                        if result < 0 && !benign.contains(&result) {
                            self.rx_errors += 1;
                        }
                        continue;
                    };
                    self.rx_posted -= 1;
                    let index = u32::from(bid);
                    match usize::try_from(result) {
                        Ok(len) if len <= self.caps.frame_len_max => {
                            self.rx_ready.push_back((index, len))
                        }
                        _ => {
                            self.rx_errors += 1;
                            self.pool.give_back(index);
                        }
                    }
                }
                // A failed kick loses nothing: its slots stay marked for the next one.
                KICK => self.kicks_in_flight -= 1,
                TX => {
                    self.tx_in_flight -= 1;
                    if self.pool.ring_slot(index).is_some() {
                        self.ring_tx_in_flight -= 1;
                    }
                    if result < 0 {
                        self.tx_errors += 1;
                    }
                    self.pool.give_back(index);
                }
                _ => {} // cancel requests
            }
        }
        self.completions = completions; // empty again, capacity kept
    }

    /// Takes up to `max` frames from the receive ring, in order: each slot lent out as a frame
    /// while the pool may lend, else copied into a pool buffer (none free: the frame waits).
    /// It stops at a slot still lent out: a frame held that long stops the ring (the kernel
    /// drops what arrives meanwhile) until it is dropped.
    pub(super) fn rx_from_ring(&mut self, out: &mut Vec<UringFrame>, max: usize) -> usize {
        if self.ring_tx_in_flight > 0 {
            self.reap_posted();
        }
        if self.pool.is_lent(self.rx_next) && self.ring_tx_in_flight > 0 {
            // The cursor came round to a slot still lent out, where the kernel waits too: it
            // may be a send whose completion is deferred.
            self.reap();
        }
        let pool = &self.pool;
        let ring = pool.ring().expect("called with a ring");
        let mut taken = 0;
        while taken < max && !pool.is_lent(self.rx_next) {
            let slot = self.rx_next;
            match ring.peek(slot) {
                Slot::Empty => break,
                Slot::Frame { offset, len } if len <= self.caps.frame_len_max => {
                    if pool.may_lend() {
                        out.push(pool.lend(slot, offset, len));
                    } else {
                        let Some(index) = pool.take() else { break }; // it waits in its slot
                        let mut frame = pool.frame(index, len);
                        // SAFETY: `peek` read the slot as this frame and it is released only
                        // below, after the copy.
                        frame
                            .data_mut()
                            .copy_from_slice(unsafe { ring.frame_bytes(slot, offset, len) });
                        ring.release(slot);
                        out.push(frame);
                        self.rx_copies += 1;
                    }
                    taken += 1;
                }
                Slot::Frame { .. } | Slot::Truncated => {
                    self.rx_errors += 1; // longer than the port's frames: dropped, counted
                    ring.release(slot);
                }
            }
            self.rx_next = (slot + 1) % ring.slots();
        }
        taken
    }
}
