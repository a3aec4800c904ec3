//! What the `PACKET_MMAP` receive and transmit rings share: TPACKET_V2 slots sized to the
//! MTU, set up on a socket and mapped into our memory, each starting with a status word
//! that the kernel and we hand back and forth.
//!
//! Invariants: the mapping is `frame_nr * frame_size` bytes the kernel set up for the
//! socket, and lives until `Drop` unmaps it; nothing refers into it by then (the receive
//! ring's owner, the pool, drops after the last frame that lends a slot; the transmit ring
//! writes slots only inside `put`).

use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

use super::UringError;
use super::socket::set_option;

/// `enum tpacket_versions { TPACKET_V1, TPACKET_V2, TPACKET_V3 }` (linux/if_packet.h).
const TPACKET_V2: libc::c_int = 1;
/// Smallest slot (a 1514-byte frame and its header fit) and block.
const FRAME_SIZE_MIN: usize = 2048;
const BLOCK_SIZE_MIN: usize = 64 * 1024;
/// Room in a slot before the frame: the TPACKET_V2 header, the address and alignment (the
/// kernel places a received frame's MAC header within the first 100 bytes; a sent frame
/// starts at 42, after its virtio_net_hdr).
const SLOT_HEADROOM: usize = 128;

/// Bytes per slot for frames of up to `frame_len_max` bytes: a power of two, at least 2 KiB.
pub(super) fn slot_size(frame_len_max: usize) -> usize {
    (SLOT_HEADROOM + frame_len_max).next_power_of_two().max(FRAME_SIZE_MIN)
}

/// A `PACKET_MMAP` ring mapped into our memory.
pub(super) struct Mapping {
    base: NonNull<u8>,
    len: usize,
    frame_nr: usize,
    frame_size: usize,
}

impl Mapping {
    /// Sets up a TPACKET_V2 ring (`option`: `PACKET_RX_RING` or `PACKET_TX_RING`) of at least
    /// `frames` slots of `frame_size` bytes on `socket`, and maps it.
    pub(super) fn new(
        socket: &OwnedFd,
        option: libc::c_int,
        frames: usize,
        frame_size: usize,
    ) -> Result<Mapping, UringError> {
        set_option(socket, libc::SOL_PACKET, libc::PACKET_VERSION, TPACKET_V2)?;
        let block_size = frame_size.max(BLOCK_SIZE_MIN);
        let per_block = block_size / frame_size;
        let blocks = frames.div_ceil(per_block).max(1);
        let frame_nr = blocks * per_block;
        let too_big = |_| UringError::Config("PACKET_MMAP ring too big");
        let request = libc::tpacket_req {
            tp_block_size: u32::try_from(block_size).map_err(too_big)?,
            tp_block_nr: u32::try_from(blocks).map_err(too_big)?,
            tp_frame_size: u32::try_from(frame_size).map_err(too_big)?,
            tp_frame_nr: u32::try_from(frame_nr).map_err(too_big)?,
        };
        let size = u32::try_from(std::mem::size_of::<libc::tpacket_req>()).expect("small");
        let fd = socket.as_raw_fd();
        // SAFETY: `request` is a valid tpacket_req of `size` bytes for the call.
        let code = unsafe {
            libc::setsockopt(fd, libc::SOL_PACKET, option, (&raw const request).cast(), size)
        };
        if code < 0 {
            let source = std::io::Error::last_os_error();
            return Err(UringError::Sys { call: "setsockopt(PACKET_*_RING)", source });
        }
        let len = blocks * block_size;
        let length = NonZeroUsize::new(len).expect("at least one block");
        // SAFETY: maps the ring the kernel just created for this socket, shared, at a place
        // of the kernel's choosing (nothing is replaced); `len` is exactly the ring's size.
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
        .map_err(|e| UringError::Sys { call: "mmap(PACKET_*_RING)", source: e.into() })?;
        Ok(Mapping { base: base.cast(), len, frame_nr, frame_size })
    }

    /// Slots in the ring.
    pub(super) fn slots(&self) -> usize {
        self.frame_nr
    }

    /// Bytes per slot.
    pub(super) fn frame_size(&self) -> usize {
        self.frame_size
    }

    /// The start of slot `index` (its status word, then the rest of the TPACKET header).
    pub(super) fn slot(&self, index: usize) -> *mut u8 {
        assert!(index < self.frame_nr, "slot {index} out of range");
        self.base.as_ptr().wrapping_add(index * self.frame_size)
    }

    /// Slot `index`'s status word.
    pub(super) fn status(&self, index: usize) -> &AtomicU32 {
        // SAFETY: each slot starts with the kernel's u32 status word, 4-aligned (slots are at
        // least 2 KiB aligned in a page-aligned mapping) and alive as long as `self`; the
        // kernel and we access it atomically.
        unsafe { &*self.slot(index).cast::<AtomicU32>() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base..base + len` is exactly the mapping made in `new`, and nothing refers
        // into it any more (module invariants). Frames the kernel still sends from a transmit
        // ring hold their own references to its pages.
        let _ = unsafe { nix::sys::mman::munmap(self.base.cast(), self.len) };
    }
}
