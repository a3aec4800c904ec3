//! A `PACKET_MMAP` receive ring (TPACKET_V2): the kernel writes each received frame into the
//! next slot of a ring shared with us and flips the slot's status to USER; we read slots in
//! order, straight from memory, and hand each back by setting its status to KERNEL. No system
//! call per frame, which is what lets the AF_PACKET backend beat `recvmmsg`.
//!
//! Invariants: the mapping is `frame_nr * frame_size` bytes the kernel set up for this socket
//! and lives until `Drop` unmaps it; a slot's bytes are read only after its status word says
//! USER (Acquire), and never after it was set back to KERNEL (Release).

use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::UringError;

/// `enum tpacket_versions { TPACKET_V1, TPACKET_V2, TPACKET_V3 }` (linux/if_packet.h).
const TPACKET_V2: libc::c_int = 1;
const FRAME_SIZE: usize = 2048;
const BLOCK_SIZE: usize = 64 * 1024;
/// `struct tpacket2_hdr` offsets.
const SNAPLEN: usize = 8;
const MAC: usize = 12;
const LEN: usize = 4;

pub(super) struct RxRing {
    base: NonNull<u8>,
    len: usize,
    frame_nr: usize,
    next: usize,
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
        Ok(RxRing { base: base.cast(), len, frame_nr, next: 0 })
    }

    fn slot(&self, index: usize) -> *mut u8 {
        self.base.as_ptr().wrapping_add(index * FRAME_SIZE)
    }

    fn status(&self, index: usize) -> &AtomicU32 {
        // SAFETY: each slot starts with the kernel's u32 status word, 4-aligned (slots are
        // 2 KiB aligned in a page-aligned mapping) and alive as long as `self`; the kernel and
        // we access it atomically.
        unsafe { &*self.slot(index).cast::<AtomicU32>() }
    }

    /// Hands ready frames, in order, to `take` (which copies them out and returns false when
    /// it has no room: the frame then stays for the next call). Returns how many were taken;
    /// `truncated` counts frames larger than a slot (dropped).
    pub(super) fn poll(
        &mut self,
        max: usize,
        truncated: &mut u64,
        mut take: impl FnMut(&[u8]) -> bool,
    ) -> usize {
        let mut taken = 0;
        while taken < max {
            let index = self.next;
            // Acquire pairs with the kernel's release of the slot: its bytes are written.
            if self.status(index).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                break;
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
                *truncated += 1;
            } else {
                // SAFETY: `mac + snaplen <= FRAME_SIZE`: the frame lies inside this slot,
                // which is ours until we set its status back below.
                let data = unsafe { std::slice::from_raw_parts(slot.wrapping_add(mac), snaplen) };
                if !take(data) {
                    break;
                }
                taken += 1;
            }
            // Release: we are done reading the slot before the kernel may refill it.
            self.status(index).store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.next = (index + 1) % self.frame_nr;
        }
        taken
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: `base..base + len` is exactly the mapping made in `new`; no reference into
        // it outlives `self` (slices from `poll` do not escape the closure).
        let _ = unsafe { nix::sys::mman::munmap(self.base.cast(), self.len) };
    }
}
