//! The arena's page-state table, in shared memory: a sealed memfd that the mechanism maps
//! read-write and hands to the policy (in `ipu-cp`, or an agent thread), which maps it
//! read-only. Every field is an atomic updated in place by whoever changes the page; the
//! policy reads a snapshot per epoch and its commands name the version they saw, so a torn
//! read costs at most a refused command.
//!
//! Layout (native byte order, little-endian on every supported target; `docs/abi.md`,
//! "page-state table"; `link::tier_table` reads it and a `host-dp` test checks the two agree):
//!
//! | offset | header field (64 bytes) |
//! |---|---|
//! | 0 | magic `u64` = [`TABLE_MAGIC`] |
//! | 8 | layout version `u32` = [`TABLE_VERSION`] |
//! | 12 | entry size `u32` = 16 |
//! | 16 | pages `u64` |
//!
//! Then one 16-byte [`PageEntry`] per page, from offset [`HEADER_BYTES`].
//!
//! This file's `unsafe`: creating, sealing and mapping the memfd, and viewing the mapping as
//! the header's words and the entries (all atomics, so shared access is sound).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

use crate::uffd::{UffdError, last_error};

/// The header's magic: "WAVETIER" in ASCII, little-endian.
pub const TABLE_MAGIC: u64 = u64::from_le_bytes(*b"WAVETIER");
/// The layout's version.
pub const TABLE_VERSION: u32 = 1;
/// The header's size; entries start here.
pub const HEADER_BYTES: usize = 64;
/// One entry's size.
pub const ENTRY_BYTES: usize = 16;

/// One page's state, as the mechanism keeps it and the policy reads it.
#[repr(C, align(16))]
#[derive(Debug)]
pub struct PageEntry {
    /// Byte 0: `0` untouched, `1` resident, `2` busy (a transition in progress), `3` parked,
    /// `4` compressed.
    pub(crate) state: AtomicU8,
    /// Byte 1: touched while parked since the mechanism last took the mark (its own use).
    pub(crate) touched: AtomicBool,
    /// Byte 2: promoted from a compressed copy that is still kept and not found written.
    pub(crate) clean: AtomicBool,
    /// Byte 3: resident but free (retired by an allocator): never parked or demoted.
    pub(crate) unused: AtomicBool,
    /// Bytes 4..8: bumped at every completed state change (commands name it).
    pub(crate) version: AtomicU32,
    /// Bytes 8..12: times the page was touched while parked (wrapping).
    pub(crate) touches: AtomicU32,
    /// Bytes 12..16: times write tracking found the page written since a promotion
    /// (wrapping): the written bit, as a counter a reader never has to clear.
    pub(crate) writes: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<PageEntry>() == ENTRY_BYTES);
const _: () = assert!(HEADER_BYTES.is_multiple_of(std::mem::align_of::<PageEntry>()));

/// The table: a sealed memfd mapped shared.
#[derive(Debug)]
pub struct PageTable {
    fd: OwnedFd,
    base: NonNull<u8>,
    len: usize,
    pages: usize,
}

// SAFETY: the mapping is owned by this value and only reached through atomics (`entries`,
// the header's words), which are safe to share between threads.
unsafe impl Send for PageTable {}
// SAFETY: as above.
unsafe impl Sync for PageTable {}

impl PageTable {
    /// A table of `pages` entries, all untouched at version 0, its size sealed.
    pub fn new(pages: usize) -> Result<PageTable, UffdError> {
        let len = pages
            .checked_mul(ENTRY_BYTES)
            .and_then(|bytes| bytes.checked_add(HEADER_BYTES))
            .ok_or(UffdError::Missing("a table size"))?;
        // SAFETY: memfd_create takes a NUL-terminated name and returns a new fd or -1.
        let raw = unsafe {
            libc::memfd_create(
                c"wave-page-table".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if raw < 0 {
            return Err(last_error("memfd_create"));
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = libc::off_t::try_from(len).map_err(|_| UffdError::Missing("a table size"))?;
        // SAFETY: plain syscalls on our own fd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(last_error("ftruncate"));
        }
        // The reader maps it for as long as it likes: its size may never change (a shrink
        // would turn the reader's loads into SIGBUS).
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(last_error("F_ADD_SEALS"));
        }
        // SAFETY: a fresh shared mapping of our own memfd, `len` bytes long (its size, now
        // sealed), at an address of the kernel's choice.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(last_error("mmap"));
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or(UffdError::Missing("a mapping"))?;
        let table = PageTable { fd, base, len, pages };
        let header = table.header();
        header[0].store(TABLE_MAGIC, Ordering::Relaxed);
        header[1].store(TABLE_VERSION as u64 | ((ENTRY_BYTES as u64) << 32), Ordering::Relaxed);
        header[2].store(pages as u64, Ordering::Release);
        Ok(table)
    }

    /// The header's first eight words.
    fn header(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned and at least HEADER_BYTES long; memfd pages
        // start zeroed, a valid value for atomics; they live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().cast::<AtomicU64>(), 8) }
    }

    /// The entries, one per page.
    pub fn entries(&self) -> &[PageEntry] {
        // SAFETY: the mapping is longer than its 64-byte header (its length was computed
        // from it), so the offset stays inside it.
        let first = unsafe { self.base.as_ptr().add(HEADER_BYTES) }.cast::<PageEntry>();
        // SAFETY: `pages` entries of 16 bytes follow the header inside the mapping; offset 64
        // of a page-aligned base is aligned for `PageEntry`; all its fields are atomics, for
        // which zero bytes (a fresh memfd) and any bytes written through them are valid; they
        // live as long as `self`.
        unsafe { std::slice::from_raw_parts(first, self.pages) }
    }

    /// The memfd, to share with the policy (it maps it read-only).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The table's size in bytes (header included).
    pub fn len_bytes(&self) -> usize {
        self.len
    }
}

impl std::ops::Index<usize> for PageTable {
    type Output = PageEntry;

    fn index(&self, index: usize) -> &PageEntry {
        &self.entries()[index]
    }
}

impl Drop for PageTable {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this length and nothing borrows it
        // past `self` (every view is tied to `&self`).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_table_has_its_header_and_untouched_entries() {
        let table = PageTable::new(3).expect("table");
        assert_eq!(table.len_bytes(), HEADER_BYTES + 3 * ENTRY_BYTES);
        assert_eq!(table.header()[0].load(Ordering::Relaxed), TABLE_MAGIC);
        assert_eq!(table.header()[2].load(Ordering::Relaxed), 3);
        assert_eq!(table.entries().len(), 3);
        assert_eq!(table[2].state.load(Ordering::Relaxed), 0);
        assert_eq!(table[2].version.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn its_size_is_sealed() {
        let table = PageTable::new(1).expect("table");
        // SAFETY: a plain syscall on the table's own fd; it must fail (sealed).
        let shrunk = unsafe { libc::ftruncate(table.fd().as_raw_fd(), 0) };
        assert_ne!(shrunk, 0, "a sealed memfd cannot shrink");
    }
}
