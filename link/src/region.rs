//! A shared byte region: the memory both sides of the link see.
//!
//! This is the only file of `link` with `unsafe`. Invariants it upholds:
//! - the region is `len` bytes, page aligned, zero-filled at creation, and stays mapped
//!   (and at the same address) for the life of the [`Region`] value;
//! - all access goes through [`AtomicU64`] words handed out by [`Region::word`] /
//!   [`Region::words`], which check bounds and 8-byte alignment; nothing in this process ever
//!   forms a `&u8`, `&mut` or non-atomic access to the bytes, so concurrent use from
//!   several threads (and from a peer process mapping the same memfd, which runs this code
//!   too) is free of data races;
//! - `Region` is `Send + Sync` because of the above: it exposes only atomics, plus raw pointers
//!   ([`Region::byte_range`]) whose dereference is the caller's `unsafe`, for byte ranges a
//!   higher layer owns exclusively by protocol (packet buffers); such ranges are never accessed
//!   through `word`/`words`.
//! - [`ReadOnlyRegion`] (a peer's table, mapped `PROT_READ`) hands out no references at all:
//!   only values loaded atomically, in bounds and aligned; it is mapped only once the peer has
//!   sealed the file against shrinking, so every load stays backed.

use std::alloc::Layout;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

/// Alignment of every region: a page, so any cache-line offset is line aligned.
pub const REGION_ALIGN: usize = 4096;

/// Failures setting up a region.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    /// Zero or absurd length.
    #[error("region length {0} is zero, too large or misaligned")]
    BadLength(usize),
    /// The heap allocation failed.
    #[error("out of memory allocating a {0}-byte region")]
    OutOfMemory(usize),
    /// A system call failed.
    #[error("{call} failed: {errno}")]
    Sys {
        /// Which call.
        call: &'static str,
        /// The error.
        errno: nix::errno::Errno,
    },
    /// The peer's fd may still shrink (no `F_SEAL_SHRINK`).
    #[error("the peer's memfd is not sealed against shrinking")]
    NotSealed,
    /// The fd is smaller than the length the peer announced.
    #[error("memfd holds {actual} bytes, expected {expected}")]
    ShortFile {
        /// Bytes in the file.
        actual: u64,
        /// Bytes expected.
        expected: usize,
    },
}

enum Backing {
    Heap(Layout),
    Mapped(OwnedFd),
}

/// A zero-initialised shared region, handed out as atomic words.
pub struct Region {
    base: NonNull<u8>,
    len: usize,
    backing: Backing,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backing {
            Backing::Heap(_) => "heap",
            Backing::Mapped(_) => "memfd",
        };
        f.debug_struct("Region").field("kind", &kind).field("len", &self.len).finish()
    }
}

// SAFETY: the region only hands out `&AtomicU64` (module invariants), and the backing memory
// is owned by the value and freed only in `drop`.
unsafe impl Send for Region {}
// SAFETY: as above: shared access is atomic-only.
unsafe impl Sync for Region {}

fn check_len(len: usize) -> Result<(), RegionError> {
    if len == 0 || !len.is_multiple_of(64) || len > (1 << 40) {
        return Err(RegionError::BadLength(len));
    }
    Ok(())
}

impl Region {
    /// An in-process region on the heap (the `heap` transport, tests, on-host mode).
    pub fn heap(len: usize) -> Result<Region, RegionError> {
        check_len(len)?;
        let layout =
            Layout::from_size_align(len, REGION_ALIGN).map_err(|_| RegionError::BadLength(len))?;
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let base = NonNull::new(ptr).ok_or(RegionError::OutOfMemory(len))?;
        Ok(Region { base, len, backing: Backing::Heap(layout) })
    }

    /// A new memfd of `len` zero bytes, mapped shared. `name` shows in `/proc/PID/fd`.
    pub fn memfd(name: &std::ffi::CStr, len: usize) -> Result<Region, RegionError> {
        check_len(len)?;
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC)
            .map_err(|errno| RegionError::Sys { call: "memfd_create", errno })?;
        let size = i64::try_from(len).map_err(|_| RegionError::BadLength(len))?;
        nix::unistd::ftruncate(&fd, size)
            .map_err(|errno| RegionError::Sys { call: "ftruncate", errno })?;
        Region::map_fd(fd, len)
    }

    /// Maps the first `len` bytes of a memfd (or any shared-memory fd) received from a peer.
    pub fn map_fd(fd: OwnedFd, len: usize) -> Result<Region, RegionError> {
        check_len(len)?;
        let stat = nix::sys::stat::fstat(&fd)
            .map_err(|errno| RegionError::Sys { call: "fstat", errno })?;
        let actual = u64::try_from(stat.st_size).unwrap_or(0);
        if actual < len as u64 {
            return Err(RegionError::ShortFile { actual, expected: len });
        }
        let length = NonZeroUsize::new(len).ok_or(RegionError::BadLength(len))?;
        // SAFETY: a fresh shared mapping chosen by the kernel (no fixed address, so nothing
        // else is replaced); the file holds at least `len` bytes (checked above), so every
        // byte of the mapping is backed.
        let base = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )
        }
        .map_err(|errno| RegionError::Sys { call: "mmap", errno })?;
        Ok(Region { base: base.cast(), len, backing: Backing::Mapped(fd) })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: regions are never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The memfd behind a mapped region (to pass to a peer), `None` for a heap region.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.backing {
            Backing::Heap(_) => None,
            Backing::Mapped(fd) => Some(fd.as_fd()),
        }
    }

    /// The 8-byte word at byte `offset`.
    ///
    /// # Panics
    /// If `offset` is not 8-byte aligned or the word is out of bounds: layouts are computed
    /// once and checked, so this is a programmer error.
    #[inline]
    pub fn word(&self, offset: usize) -> &AtomicU64 {
        &self.words(offset, 1)[0]
    }

    /// `count` consecutive 8-byte words starting at byte `offset`.
    ///
    /// # Panics
    /// As [`Region::word`].
    #[inline]
    pub fn words(&self, offset: usize, count: usize) -> &[AtomicU64] {
        assert!(offset.is_multiple_of(8), "unaligned region offset {offset}");
        let end = count.checked_mul(8).and_then(|bytes| bytes.checked_add(offset));
        assert!(end.is_some_and(|end| end <= self.len), "words {offset}+{count} out of bounds");
        // SAFETY: `offset <= len` (checked above), so the result stays inside the allocation
        // or one past its end.
        let start = unsafe { self.base.as_ptr().add(offset) };
        // SAFETY: `start..start + 8 * count` lies inside the live allocation (checked above);
        // `base` is page aligned and `offset` 8-aligned, so the pointer is aligned for
        // `AtomicU64`, which has the size and alignment of `u64`; the memory is initialised
        // (zero-filled at creation, then only written through atomics), and per the module
        // invariants it is only ever accessed atomically, so shared references are sound.
        unsafe { std::slice::from_raw_parts(start.cast::<AtomicU64>(), count) }
    }
}

/// Takes ownership of a file descriptor the kernel just installed in this process through
/// an `SCM_RIGHTS` control message.
pub(crate) fn adopt_received_fd(raw: std::os::fd::RawFd) -> OwnedFd {
    assert!(raw >= 0, "negative fd from SCM_RIGHTS");
    // SAFETY: the kernel created this descriptor in our table while delivering the message
    // (`recvmsg` with `SCM_RIGHTS`); no other owner exists, and it is adopted exactly once,
    // right after the message was parsed.
    unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) }
}

impl Region {
    /// A raw pointer to `len` bytes at `offset`, for buffers that a higher layer hands between
    /// owners by protocol (the shared-memory packet wire). Getting the pointer is safe; using it
    /// is `unsafe` in the caller, whose proof must show exclusive ownership of the range.
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub fn byte_range(&self, offset: usize, len: usize) -> NonNull<[u8]> {
        let end = offset.checked_add(len);
        assert!(end.is_some_and(|end| end <= self.len), "bytes {offset}+{len} out of bounds");
        let start = self.base.as_ptr().wrapping_add(offset);
        let slice = std::ptr::slice_from_raw_parts_mut(start, len);
        NonNull::new(slice).expect("inside a non-null mapping")
    }
}

/// A peer's table mapped read-only (the tier service's page-state table): loads only, so
/// nothing here can write the peer's memory, and mapped only once its size is sealed, so the
/// peer cannot shrink it under us (a load past a shrunk file's end would be a SIGBUS).
pub struct ReadOnlyRegion {
    base: NonNull<u8>,
    len: usize,
    _fd: OwnedFd,
}

impl std::fmt::Debug for ReadOnlyRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyRegion").field("len", &self.len).finish()
    }
}

// SAFETY: the mapping is owned by the value, freed only in `drop`, and read only through
// atomic loads (`load`), which are safe from any thread.
unsafe impl Send for ReadOnlyRegion {}
// SAFETY: as above.
unsafe impl Sync for ReadOnlyRegion {}

impl ReadOnlyRegion {
    /// Maps a whole memfd received from a peer, read-only. Refused unless the peer sealed
    /// its size (`F_SEAL_SHRINK`) and it is a positive multiple of 8 bytes, at most 1 TiB.
    pub fn map_sealed(fd: OwnedFd) -> Result<ReadOnlyRegion, RegionError> {
        use nix::fcntl::{FcntlArg, SealFlag, fcntl};
        let seals = fcntl(&fd, FcntlArg::F_GET_SEALS)
            .map_err(|errno| RegionError::Sys { call: "F_GET_SEALS", errno })?;
        if !SealFlag::from_bits_truncate(seals).contains(SealFlag::F_SEAL_SHRINK) {
            return Err(RegionError::NotSealed);
        }
        let stat = nix::sys::stat::fstat(&fd)
            .map_err(|errno| RegionError::Sys { call: "fstat", errno })?;
        let len = usize::try_from(stat.st_size).map_err(|_| RegionError::BadLength(0))?;
        if len == 0 || !len.is_multiple_of(8) || len > (1 << 40) {
            return Err(RegionError::BadLength(len));
        }
        let length = NonZeroUsize::new(len).ok_or(RegionError::BadLength(len))?;
        // SAFETY: a fresh read-only shared mapping chosen by the kernel (nothing replaced);
        // the file holds `len` bytes and cannot shrink (sealed, checked above), so every
        // byte of the mapping stays backed.
        let base =
            unsafe { mmap(None, length, ProtFlags::PROT_READ, MapFlags::MAP_SHARED, &fd, 0) }
                .map_err(|errno| RegionError::Sys { call: "mmap", errno })?;
        Ok(ReadOnlyRegion { base: base.cast(), len, _fd: fd })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty (never: the length is checked positive).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The 8-byte word at `offset` (Acquire), as the peer last wrote it.
    ///
    /// # Panics
    /// If `offset` is out of bounds or not 8-byte aligned.
    pub fn load(&self, offset: usize) -> u64 {
        assert!(offset.is_multiple_of(8), "offset {offset} not 8-byte aligned");
        assert!(offset.checked_add(8).is_some_and(|end| end <= self.len), "offset {offset}");
        // SAFETY: in bounds and aligned (checked above) inside a live mapping; the bytes are
        // only ever loaded here, atomically, never through a reference a writer could alias
        // in this process (the writer is the peer, or another mapping of the same file).
        let at = unsafe { self.base.as_ptr().add(offset) };
        // SAFETY: as above: `at` is in bounds, aligned, and points at live mapped memory.
        let word = unsafe { &*at.cast::<AtomicU64>() };
        word.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Drop for ReadOnlyRegion {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map_sealed`; no reference into it outlives
        // `self` (`load` returns values).
        if let Err(errno) = unsafe { munmap(self.base.cast(), self.len) } {
            debug_assert!(false, "munmap failed: {errno}");
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        match &self.backing {
            Backing::Heap(layout) => {
                // SAFETY: `base` came from `alloc_zeroed` with this very layout, and no
                // reference into the region outlives `self` (all borrow from `&self`).
                unsafe { std::alloc::dealloc(self.base.as_ptr(), *layout) }
            }
            Backing::Mapped(_) => {
                // SAFETY: `base..base + len` is exactly the mapping made in `map_fd`, and no
                // reference into it outlives `self`. The fd closes after this, when the
                // `OwnedFd` drops.
                if let Err(errno) = unsafe { munmap(self.base.cast(), self.len) } {
                    debug_assert!(false, "munmap failed: {errno}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn heap_and_memfd_regions_are_zeroed_and_bounded() {
        for region in [Region::heap(4096).unwrap(), Region::memfd(c"t", 4096).unwrap()] {
            assert_eq!(region.len(), 4096);
            assert!(region.words(0, 512).iter().all(|w| w.load(Ordering::Relaxed) == 0));
            region.word(4088).store(7, Ordering::Relaxed);
            assert_eq!(region.word(4088).load(Ordering::Relaxed), 7);
        }
    }

    #[test]
    fn memfd_mappings_share_bytes() {
        let a = Region::memfd(c"t", 128).unwrap();
        let fd = a.fd().unwrap().try_clone_to_owned().unwrap();
        let b = Region::map_fd(fd, 128).unwrap();
        a.word(64).store(0xdead_beef, Ordering::Release);
        assert_eq!(b.word(64).load(Ordering::Acquire), 0xdead_beef);
    }

    #[test]
    fn bad_lengths_and_short_files_are_refused() {
        assert!(matches!(Region::heap(0), Err(RegionError::BadLength(0))));
        assert!(matches!(Region::heap(100), Err(RegionError::BadLength(100))));
        let small = Region::memfd(c"t", 64).unwrap();
        let fd = small.fd().unwrap().try_clone_to_owned().unwrap();
        assert!(matches!(Region::map_fd(fd, 4096), Err(RegionError::ShortFile { .. })));
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn out_of_bounds_word_is_a_programmer_error() {
        let region = Region::heap(64).unwrap();
        let _ = region.word(64);
    }
}
