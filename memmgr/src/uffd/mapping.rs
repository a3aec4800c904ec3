//! An anonymous private mapping of whole pages, seen from Rust only as atomic words (module
//! invariants in `uffd/mod.rs`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use super::{PAGE, UffdError, last_error};

/// An anonymous private mapping of whole pages.
#[derive(Debug)]
pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
    /// A pidfd of this process, for `process_madvise` (opened on first use; `None`: none).
    pidfd: std::sync::OnceLock<Option<OwnedFd>>,
}

// SAFETY: the mapping is plain memory owned by this value; all access from Rust goes through
// `AtomicU64`s (`words`), which are safe to share between threads.
unsafe impl Send for Mapping {}
// SAFETY: as above: shared access is atomic only.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `pages` zero pages (nothing is touched: the kernel backs them on first access).
    pub fn new(pages: usize) -> Result<Mapping, UffdError> {
        let len = pages.checked_mul(PAGE).filter(|&l| l > 0).ok_or(UffdError::Missing("a size"))?;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choice; no existing
        // memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(last_error("mmap"));
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or(UffdError::Missing("a mapping"))?;
        Ok(Mapping { base, len, pidfd: std::sync::OnceLock::new() })
    }

    /// Address of page `index`.
    pub fn page_addr(&self, index: usize) -> u64 {
        assert!(index * PAGE < self.len, "page {index} out of range");
        self.base.as_ptr() as u64 + (index * PAGE) as u64
    }

    /// A pointer to byte `offset` of the mapping (dangling past its end: check first).
    pub fn ptr_at(&self, offset: usize) -> *mut u8 {
        self.base.as_ptr().wrapping_add(offset)
    }

    /// The page `address` falls in, if it is in this mapping.
    pub fn page_index(&self, address: u64) -> Option<usize> {
        let offset = address.checked_sub(self.base.as_ptr() as u64)?;
        usize::try_from(offset).ok().filter(|&o| o < self.len).map(|o| o / PAGE)
    }

    /// Pages in the mapping.
    pub fn pages(&self) -> usize {
        self.len / PAGE
    }

    /// The mapping as 64-bit words (a page is 512 of them).
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: `base..base+len` is a live mapping owned by `self` (unmapped only in Drop),
        // page aligned, readable and writable; `AtomicU64` has u64's size and alignment and
        // any bit pattern is valid; every Rust access to it is atomic (module invariants).
        // Accessing a page that is not present blocks in the fault handler, which is the
        // mechanism's business, not a safety concern.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().cast::<AtomicU64>(), self.len / 8) }
    }

    /// Releases the memory of every page in `indices` (sorted) with one system call where
    /// the kernel allows (`process_madvise`, contiguous pages merged into one range), else
    /// one `madvise` per range.
    pub fn discard_pages(&self, indices: &[usize]) -> Result<(), UffdError> {
        let mut ranges: Vec<libc::iovec> = Vec::with_capacity(indices.len());
        for &index in indices {
            let addr = self.page_addr(index);
            match ranges.last_mut() {
                Some(last) if last.iov_base as u64 + last.iov_len as u64 == addr => {
                    last.iov_len += PAGE;
                }
                _ => {
                    ranges.push(libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: PAGE })
                }
            }
        }
        if ranges.is_empty() {
            return Ok(());
        }
        let pidfd = self.pidfd.get_or_init(|| {
            // SAFETY: a plain system call on our own pid; it returns a new descriptor or -1.
            let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, std::process::id(), 0) };
            // SAFETY: a descriptor the kernel just gave us, owned by nobody else.
            i32::try_from(raw)
                .ok()
                .filter(|&fd| fd >= 0)
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        });
        if let Some(pidfd) = pidfd {
            // SAFETY: the iovecs describe whole pages of this mapping (built above from
            // `page_addr`); MADV_DONTNEED only drops their contents.
            let done = unsafe {
                libc::syscall(
                    libc::SYS_process_madvise,
                    pidfd.as_raw_fd(),
                    ranges.as_ptr(),
                    ranges.len(),
                    libc::MADV_DONTNEED,
                    0,
                )
            };
            let total: usize = ranges.iter().map(|r| r.iov_len).sum();
            if usize::try_from(done).is_ok_and(|d| d == total) {
                return Ok(());
            }
        }
        // Not allowed here (or partial): range by range (dropping twice is harmless).
        for range in &ranges {
            // SAFETY: as above.
            if unsafe { libc::madvise(range.iov_base, range.iov_len, libc::MADV_DONTNEED) } != 0 {
                return Err(last_error("madvise"));
            }
        }
        Ok(())
    }

    /// Whether page `index` is mapped now (`mincore`).
    pub fn is_present(&self, index: usize) -> Result<bool, UffdError> {
        let mut resident = 0u8;
        // SAFETY: one page of our own mapping, and one byte of output on our stack.
        let done = unsafe {
            libc::mincore(self.page_addr(index) as *mut libc::c_void, PAGE, &raw mut resident)
        };
        if done != 0 {
            return Err(last_error("mincore"));
        }
        Ok(resident & 1 != 0)
    }

    /// Releases page `index`'s memory (it reads as zero, or faults if registered, next time).
    pub fn discard(&self, index: usize) -> Result<(), UffdError> {
        let addr = self.page_addr(index) as *mut libc::c_void;
        // SAFETY: a page of our own mapping; MADV_DONTNEED only drops its contents.
        if unsafe { libc::madvise(addr, PAGE, libc::MADV_DONTNEED) } != 0 {
            return Err(last_error("madvise"));
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping we made in `new`, with its length; nothing refers to it after
        // `self` goes (views borrow `self`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
