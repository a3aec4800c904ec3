//! A `PACKET_MMAP` transmit ring (TPACKET_V2) on its own transmit-only socket: the port copies
//! each frame into the next free slot, marks it SEND_REQUEST, and one `Send` of no bytes on
//! the io_uring asks the kernel to send every marked slot in order (`tpacket_snd`). That is
//! one system call per burst and no per-frame message to parse. The kernel sets a slot
//! back to AVAILABLE once its frame has left (for a veth, before the send returns; for a NIC,
//! when the device is done with it); a slot not yet AVAILABLE is backpressure.
//!
//! Each frame carries a `virtio_net_hdr` (`PACKET_VNET_HDR`) whose `hdr_len` is the whole
//! frame, so the kernel copies it into the socket buffer's linear part. Without it the
//! kernel sends the payload as zero-copy page fragments, and every virtual device that hands
//! a frame on (veth, bridge, tun) must then "orphan" them: a fresh page and a copy per frame,
//! which cost about a tenth of the whole path on a veth here (`skb_copy_ubufs`). A NIC could
//! send the fragments without the copy; a future option can leave `hdr_len` at the header.
//!
//! The socket is bound with protocol 0, so it receives nothing, and ignores its own outgoing
//! frames; `PACKET_LOSS` makes the kernel skip a slot it finds malformed instead of stopping
//! the ring on it (the port checks lengths first, so none should be).
//!
//! Invariants: the mapping is unmapped before the socket closes; a slot's bytes are written
//! only while its status reads AVAILABLE (Acquire), and published by the SEND_REQUEST store
//! (Release), after which only the kernel touches it until it sets AVAILABLE again.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;

use io_uring::{opcode, types};

use super::mmap_ring::{Mapping, slot_size};
use super::socket::set_option;
use super::{KICK, UringError};
use crate::io::{Frame, IoError};

/// `PACKET_VNET_HDR` (uapi linux/if_packet.h; not in `libc`).
const PACKET_VNET_HDR: libc::c_int = 15;
/// `struct tpacket2_hdr`: `tp_len` at 4; the data follows the header at
/// `TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)` = 52 - 20 (Documentation/networking/
/// packet_mmap.rst), when `PACKET_TX_HAS_OFF` is not set.
const LEN: usize = 4;
const DATA: usize = 32;
/// The data starts with a `struct virtio_net_hdr` (10 bytes: flags, gso_type, then
/// little-endian u16s hdr_len, gso_size, csum_start, csum_offset), then the frame.
const VNET_HDR: usize = 10;
const ETHERNET_HEADER: usize = 14;

pub(super) struct TxRing {
    /// Declared before the socket: unmapped before it closes.
    map: Mapping,
    /// The next slot to fill: the kernel sends slots in this same order.
    next: usize,
    socket: OwnedFd,
}

impl TxRing {
    /// A transmit-only socket on interface `ifindex` with a ring of at least `frames` slots,
    /// each holding a frame of up to `frame_len_max` bytes.
    pub(super) fn new(
        ifindex: i32,
        frames: u32,
        frame_len_max: usize,
        qdisc_bypass: bool,
    ) -> Result<TxRing, UringError> {
        // SAFETY: plain socket(2) call; the result is checked below. Protocol 0: no frames
        // are delivered to this socket.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let source = std::io::Error::last_os_error();
            return Err(UringError::Sys { call: "socket(AF_PACKET, 0)", source });
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let socket = unsafe { OwnedFd::from_raw_fd(raw) };
        set_option(&socket, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
        set_option(&socket, libc::SOL_PACKET, libc::PACKET_LOSS, 1)?;
        set_option(&socket, libc::SOL_PACKET, PACKET_VNET_HDR, 1)?;
        if qdisc_bypass {
            set_option(&socket, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)?;
        }
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid starting value.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = u16::try_from(libc::AF_PACKET).expect("17");
        address.sll_ifindex = ifindex;
        let size = u32::try_from(std::mem::size_of::<libc::sockaddr_ll>()).expect("small");
        // SAFETY: `address` is a valid sockaddr_ll of `size` bytes for the call.
        let bound = unsafe {
            libc::bind(socket.as_raw_fd(), (&raw const address).cast::<libc::sockaddr>(), size)
        };
        if bound < 0 {
            let source = std::io::Error::last_os_error();
            return Err(UringError::Sys { call: "bind(AF_PACKET, 0)", source });
        }
        let frame_size = slot_size(frame_len_max);
        let map = Mapping::new(&socket, libc::PACKET_TX_RING, frames as usize, frame_size)?;
        Ok(TxRing { map, next: 0, socket })
    }

    /// The socket that sends: a `Send` of no bytes on it sends every marked slot.
    pub(super) fn fd(&self) -> i32 {
        self.socket.as_raw_fd()
    }

    /// Copies `frame` into the next slot and marks it for sending; false when that slot is
    /// still the kernel's (the ring is full: backpressure).
    pub(super) fn put(&mut self, frame: &[u8]) -> bool {
        let room = self.map.frame_size() - DATA - VNET_HDR;
        assert!(frame.len() <= room, "frame of {} bytes beyond a slot", frame.len());
        let index = self.next;
        // Acquire pairs with the kernel's release of the slot: it is done reading it.
        if self.map.status(index).load(Ordering::Acquire) != libc::TP_STATUS_AVAILABLE {
            return false;
        }
        let len = u32::try_from(VNET_HDR + frame.len()).expect("at most a slot");
        // Frames past 64 KiB (loopback's MTU) keep their tail as fragments.
        let linear = u16::try_from(frame.len()).unwrap_or(u16::MAX);
        let start = self.map.slot(index).wrapping_add(LEN);
        // SAFETY: the slot is ours while AVAILABLE (invariants); the slice covers it after
        // the status word (which stays atomic), inside the mapping, and ends before the
        // status store below hands the slot to the kernel.
        let bytes = unsafe { std::slice::from_raw_parts_mut(start, self.map.frame_size() - LEN) };
        bytes[..4].copy_from_slice(&len.to_ne_bytes()); // tp_len
        let data = &mut bytes[DATA - LEN..];
        // The virtio_net_hdr: no checksum to fill, no segmentation; hdr_len is the whole frame.
        data[..VNET_HDR].fill(0);
        data[2..4].copy_from_slice(&linear.to_le_bytes());
        data[VNET_HDR..VNET_HDR + frame.len()].copy_from_slice(frame);
        // Release: the length and bytes are written before the kernel may read the slot.
        self.map.status(index).store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.next = (index + 1) % self.map.slots();
        true
    }

    /// True while the last slot filled still waits for a kick: the kernel sends slots in
    /// order, so an earlier kick stopped before it (the device was down, or its queue full).
    pub(super) fn waiting(&self) -> bool {
        let last = self.next.checked_sub(1).unwrap_or(self.map.slots() - 1);
        self.map.status(last).load(Ordering::Acquire) == libc::TP_STATUS_SEND_REQUEST
    }
}

impl super::UringPort {
    /// `tx_burst` in `TxMode::MmapRing`: copies frames into the ring up to the first one over
    /// the limit or the first slot still the kernel's, returns their buffers at once, and
    /// kicks the ring once. A kick that could not send everything (the device down, its
    /// queue full) leaves the slots marked, nothing lost: the next call kicks again, even
    /// with no frames, and until then a full ring is backpressure.
    pub(super) fn tx_through_ring(
        &mut self,
        frames: &mut Vec<super::UringFrame>,
    ) -> Result<usize, IoError> {
        if self.kicks_in_flight > 0 {
            self.reap_posted(); // the kicks' completions: nothing else to wait for
        }
        let max = self.caps.frame_len_max;
        let ring = self.tx_ring.as_mut().expect("called in TxMode::MmapRing only");
        let (mut sent, mut runts) = (0, 0);
        let mut result = Ok(());
        for frame in frames.iter() {
            let len = frame.len();
            if len > max {
                result = Err(IoError::FrameTooLong { len, max });
                break;
            }
            if len < ETHERNET_HEADER {
                // The kernel refuses a frame without a whole Ethernet header, as a `Send`
                // would: taken, and counted as a failed send.
                runts += 1;
            } else if !ring.put(frame.data()) {
                break; // the ring is full: backpressure
            }
            sent += 1;
        }
        // New frames always get a kick (one in flight may have passed their slots already);
        // frames left over from a failed kick get one when no other is in flight.
        let kick_needed = sent > runts || (self.kicks_in_flight == 0 && ring.waiting());
        let fd = types::Fd(ring.fd());
        self.tx_errors += runts as u64;
        drop(frames.drain(..sent)); // copied: their buffers (or receive slots) go back now
        if kick_needed {
            let kick = opcode::Send::new(fd, std::ptr::null(), 0)
                .flags(libc::MSG_DONTWAIT)
                .build()
                .user_data(KICK);
            if !self.push(&kick) {
                // The submission queue is full: submitting empties it.
                self.submit()?;
                assert!(self.push(&kick), "an empty submission queue takes one entry");
            }
            self.kicks_in_flight += 1;
            self.submit()?;
        }
        result.map(|()| sent)
    }
}
