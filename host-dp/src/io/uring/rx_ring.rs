//! A `PACKET_MMAP` receive ring (TPACKET_V2): the kernel writes each received frame into the
//! next slot of a ring shared with us and flips the slot's status to USER. The port reads
//! slots in order, straight from memory (no system call per frame, which is what lets the
//! AF_PACKET backend beat `recvmmsg`), and lends each slot out as a frame: the slot goes back
//! to the kernel (status KERNEL) when the frame is dropped or its transmission completes.
//!
//! The kernel fills slots strictly in order and stops at a slot still lent out (frames that
//! arrive meanwhile are dropped and counted by the kernel), so the port lends at most
//! [`RxRing::lend_max`] slots at once and copies frames into pool buffers beyond that.
//!
//! Slots are sized to the interface's MTU (`mmap_ring::slot_size`).
//!
//! Invariants: the mapping lives until the ring drops (it is owned by the pool, which every
//! frame keeps alive); a slot's bytes are touched only between its status reading USER
//! (Acquire) and our setting it back to KERNEL (Release), and by one owner at a time: the
//! port's cursor, then the frame it lent the slot to.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;

use super::UringError;
use super::mmap_ring::{Mapping, slot_size};

/// The receive ring's memory bound: big-MTU rings get fewer slots (at least 64).
const RX_RING_BYTES_MAX: usize = 16 << 20;
/// `struct tpacket2_hdr` offsets.
const SNAPLEN: usize = 8;
const MAC: usize = 12;
const LEN: usize = 4;

/// What the next slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    /// Nothing yet: the kernel still owns it.
    Empty,
    /// A frame at `offset` in the slot, `len` bytes.
    Frame {
        /// Where the Ethernet header starts, from the slot's start.
        offset: usize,
        /// The frame's length.
        len: usize,
    },
    /// A frame that did not fit the slot (cut short by the kernel): to be dropped.
    Truncated,
}

pub(super) struct RxRing {
    map: Mapping,
}

impl RxRing {
    /// Sets up a ring of at least `frames` slots (fewer for frames so big that the ring
    /// would pass 16 MiB) for frames of up to `frame_len_max` bytes on `socket`, and maps it.
    pub(super) fn new(
        socket: &OwnedFd,
        frames: u32,
        frame_len_max: usize,
    ) -> Result<RxRing, UringError> {
        let frame_size = slot_size(frame_len_max);
        let frames = (frames as usize).min((RX_RING_BYTES_MAX / frame_size).max(64));
        Ok(RxRing { map: Mapping::new(socket, libc::PACKET_RX_RING, frames, frame_size)? })
    }

    /// Bytes per slot.
    pub(super) fn frame_size(&self) -> usize {
        self.map.frame_size()
    }

    /// Slots in the ring.
    pub(super) fn slots(&self) -> usize {
        self.map.slots()
    }

    /// The start of slot `index` (its header; a frame's bytes are at its offset).
    pub(super) fn slot(&self, index: usize) -> *mut u8 {
        self.map.slot(index)
    }

    /// Most slots lent out at once: a quarter of the ring, so that the kernel always finds
    /// free slots ahead of it while frames are held briefly.
    pub(super) fn lend_max(&self) -> usize {
        self.map.slots() / 4
    }

    /// What slot `index` holds. A frame's bytes are then ours until [`RxRing::release`].
    pub(super) fn peek(&self, index: usize) -> Slot {
        // Acquire pairs with the kernel's release of the slot: its bytes are written.
        if self.map.status(index).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
            return Slot::Empty;
        }
        let slot = self.slot(index);
        let field = |offset: usize| {
            // SAFETY: the header fields lie in the slot's first 32 bytes.
            unsafe { slot.wrapping_add(offset).cast::<u32>().read_unaligned() }
        };
        let (snaplen, len) = (field(SNAPLEN) as usize, field(LEN) as usize);
        // SAFETY: as above, a u16 at offset 12.
        let mac = usize::from(unsafe { slot.wrapping_add(MAC).cast::<u16>().read_unaligned() });
        if snaplen < len || mac + snaplen > self.frame_size() {
            Slot::Truncated
        } else {
            Slot::Frame { offset: mac, len: snaplen }
        }
    }

    /// The `len` bytes at `offset` in slot `index`, as [`RxRing::peek`] reported them.
    ///
    /// # Safety
    /// The caller holds the slot: `peek` read it as a frame and it was not released since;
    /// the slice must be gone before [`RxRing::release`] hands the slot back.
    pub(super) unsafe fn frame_bytes(&self, index: usize, offset: usize, len: usize) -> &[u8] {
        assert!(offset + len <= self.frame_size(), "frame beyond its slot");
        // SAFETY: inside slot `index` of the live mapping (checked above and in `slot`), held
        // by the caller, so the kernel does not write it while the slice lives.
        unsafe { std::slice::from_raw_parts(self.slot(index).wrapping_add(offset), len) }
    }

    /// Hands slot `index` back to the kernel; its bytes are not touched after this.
    pub(super) fn release(&self, index: usize) {
        // Release: every read and write of the slot happens before the kernel may refill it.
        self.map.status(index).store(libc::TP_STATUS_KERNEL, Ordering::Release);
    }
}
