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
//! Invariants: the mapping is `frame_nr * FRAME_SIZE` bytes the kernel set up for the socket
//! and lives until `Drop` unmaps it (the ring is owned by the pool, which every frame keeps
//! alive); a slot's bytes are touched only between its status reading USER (Acquire) and our
//! setting it back to KERNEL (Release), and by one owner at a time: the port's cursor, then
//! the frame it lent the slot to.

use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::UringError;

/// `enum tpacket_versions { TPACKET_V1, TPACKET_V2, TPACKET_V3 }` (linux/if_packet.h).
const TPACKET_V2: libc::c_int = 1;
/// Bytes per slot: header, padding and one frame of up to 1514 bytes (and then some).
pub(super) const FRAME_SIZE: usize = 2048;
const BLOCK_SIZE: usize = 64 * 1024;
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
    base: NonNull<u8>,
    len: usize,
    frame_nr: usize,
}

impl RxRing {
    /// Sets up a ring of at least `frames` slots on `socket` and maps it.
    pub(super) fn new(socket: &OwnedFd, frames: u32) -> Result<RxRing, UringError> {
        let per_block = BLOCK_SIZE / FRAME_SIZE;
        let blocks = (frames as usize).div_ceil(per_block).max(1);
        let frame_nr = blocks * per_block;
        super::set_option(socket, libc::SOL_PACKET, libc::PACKET_VERSION, TPACKET_V2)?;
        let request = libc::tpacket_req {
            tp_block_size: u32::try_from(BLOCK_SIZE).expect("64 KiB"),
            tp_block_nr: u32::try_from(blocks).map_err(|_| UringError::Config("ring too big"))?,
            tp_frame_size: u32::try_from(FRAME_SIZE).expect("2 KiB"),
            tp_frame_nr: u32::try_from(frame_nr).map_err(|_| UringError::Config("ring too big"))?,
        };
        let size = u32::try_from(std::mem::size_of::<libc::tpacket_req>()).expect("small");
        // SAFETY: `request` is a valid tpacket_req of `size` bytes for the call.
        let code = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_RX_RING,
                (&raw const request).cast(),
                size,
            )
        };
        if code < 0 {
            let source = std::io::Error::last_os_error();
            return Err(UringError::Sys { call: "setsockopt(PACKET_RX_RING)", source });
        }
        let len = blocks * BLOCK_SIZE;
        let length = NonZeroUsize::new(len).expect("at least one block");
        // SAFETY: maps the ring the kernel just created for this socket, shared, at a place of
        // the kernel's choosing (nothing is replaced); `len` is exactly the ring's size.
        let base = unsafe {
            nix::sys::mman::mmap(
                None,
                length,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_SHARED,
                socket,
                0,
            )
        }
        .map_err(|e| UringError::Sys { call: "mmap(PACKET_RX_RING)", source: e.into() })?;
        Ok(RxRing { base: base.cast(), len, frame_nr })
    }

    /// Slots in the ring.
    pub(super) fn slots(&self) -> usize {
        self.frame_nr
    }

    /// Most slots lent out at once: a quarter of the ring, so that the kernel always finds
    /// free slots ahead of it while frames are held briefly.
    pub(super) fn lend_max(&self) -> usize {
        self.frame_nr / 4
    }

    /// The start of slot `index` (its header; a frame's bytes are at its offset).
    pub(super) fn slot(&self, index: usize) -> *mut u8 {
        assert!(index < self.frame_nr, "slot {index} out of range");
        self.base.as_ptr().wrapping_add(index * FRAME_SIZE)
    }

    fn status(&self, index: usize) -> &AtomicU32 {
        // SAFETY: each slot starts with the kernel's u32 status word, 4-aligned (slots are
        // 2 KiB aligned in a page-aligned mapping) and alive as long as `self`; the kernel and
        // we access it atomically.
        unsafe { &*self.slot(index).cast::<AtomicU32>() }
    }

    /// What slot `index` holds. A frame's bytes are then ours until [`RxRing::release`].
    pub(super) fn peek(&self, index: usize) -> Slot {
        // Acquire pairs with the kernel's release of the slot: its bytes are written.
        if self.status(index).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
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
        if snaplen < len || mac + snaplen > FRAME_SIZE {
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
        assert!(offset + len <= FRAME_SIZE, "frame beyond its slot");
        // SAFETY: inside slot `index` of the live mapping (checked above and in `slot`), held
        // by the caller, so the kernel does not write it while the slice lives.
        unsafe { std::slice::from_raw_parts(self.slot(index).wrapping_add(offset), len) }
    }

    /// Hands slot `index` back to the kernel; its bytes are not touched after this.
    pub(super) fn release(&self, index: usize) {
        // Release: every read and write of the slot happens before the kernel may refill it.
        self.status(index).store(libc::TP_STATUS_KERNEL, Ordering::Release);
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: `base..base + len` is exactly the mapping made in `new`; the pool that owns
        // the ring is dropped only after the last frame (each holds an `Rc` to it), so no
        // reference into the mapping outlives it.
        let _ = unsafe { nix::sys::mman::munmap(self.base.cast(), self.len) };
    }
}
