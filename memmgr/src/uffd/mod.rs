//! The kernel interface, and (with `sigbus.rs`, the in-thread fault handler) this crate's
//! only unsafe code: the userfaultfd descriptor and its ioctls (API, REGISTER, COPY, MOVE,
//! WRITEPROTECT, WAKE) here; anonymous mappings and atomic views of them (`mapping.rs`);
//! `PAGEMAP_SCAN` on `/proc/self/pagemap` (`pagemap.rs`).
//!
//! The ioctl structures are written out here (each request's number is computed from its
//! structure's size by nix's `request_code_*`, checked against the uapi size) because the
//! installed headers (Linux 6.1) predate `UFFDIO_MOVE` (6.8), `UFFD_FEATURE_WP_ASYNC` and
//! `PAGEMAP_SCAN` (6.7); they follow `include/uapi/linux/userfaultfd.h` and
//! `include/uapi/linux/fs.h`.
//!
//! Invariants: a [`Mapping`] owns its pages from `mmap` to `munmap` (in `Drop`); Rust touches
//! mapped memory only through `AtomicU64`s, so a page the kernel moves away and back (its
//! contents intact) looks to Rust like memory another thread wrote; every ioctl gets a pointer
//! to a properly sized, initialised structure on our stack and addresses the caller got from a
//! `Mapping` of this crate.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

mod mapping;
mod pagemap;
pub use mapping::Mapping;

/// Bytes per page.
pub const PAGE: usize = 4096;

/// Why a kernel call failed.
#[derive(Debug, thiserror::Error)]
pub enum UffdError {
    /// userfaultfd is not available to this process.
    #[error(
        "userfaultfd unavailable ({0}): run as root, or give this user /dev/userfaultfd \
         (it is root-only here) or vm.unprivileged_userfaultfd=1"
    )]
    Unavailable(std::io::Error),
    /// The kernel lacks a feature this crate needs.
    #[error("the kernel's userfaultfd lacks {0} (Linux 6.8+ has it)")]
    Missing(&'static str),
    /// A system call failed.
    #[error("{call}: {source}")]
    Sys {
        /// Which call.
        call: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

impl UffdError {
    /// The kernel said EEXIST (a destination page is there already).
    pub fn is_exists(&self) -> bool {
        matches!(self, UffdError::Sys { source, .. } if source.raw_os_error() == Some(libc::EEXIST))
    }
}

pub(crate) fn last_error(call: &'static str) -> UffdError {
    UffdError::Sys { call, source: std::io::Error::last_os_error() }
}

const UFFD_API: u64 = 0xAA;
const FEATURE_SIGBUS: u64 = 1 << 7;
const FEATURE_WP_ASYNC: u64 = 1 << 15;
const FEATURE_MOVE: u64 = 1 << 16;
const REGISTER_MODE_MISSING: u64 = 1;
const REGISTER_MODE_WP: u64 = 2;
const COPY_MODE_DONTWAKE: u64 = 1;
const COPY_MODE_WP: u64 = 2;

#[repr(C)]
struct ApiArg {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct Range {
    start: u64,
    len: u64,
}

#[repr(C)]
struct RegisterArg {
    range: Range,
    mode: u64,
    ioctls: u64,
}

/// COPY and MOVE share a layout: dst, src, len, mode, result.
#[repr(C)]
struct TransferArg {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    result: i64,
}

/// `struct uffdio_writeprotect`: range, mode.
#[repr(C)]
struct WriteProtectArg {
    range: Range,
    mode: u64,
}

/// The ioctl type of userfaultfd (`UFFDIO` in the uapi header).
const UFFDIO: u8 = 0xAA;

/// One userfaultfd ioctl: its argument type, and its number, computed from that type's size
/// (so the two cannot disagree). Private: only the requests below exist.
trait Request {
    /// The structure the kernel reads and writes.
    type Arg;
    /// The request number.
    const CODE: libc::c_ulong;
    /// Its name, for errors.
    const NAME: &'static str;
}

macro_rules! request {
    ($name:ident, $uapi:literal, $arg:ty, $dir:ident, $nr:expr, $uapi_size:expr) => {
        #[doc = concat!("`", $uapi, "`.")]
        struct $name;
        impl Request for $name {
            type Arg = $arg;
            const CODE: libc::c_ulong =
                nix::$dir!(UFFDIO, $nr, std::mem::size_of::<$arg>()) as libc::c_ulong;
            const NAME: &'static str = $uapi;
        }
        // The layout is the uapi header's.
        const _: () = assert!(std::mem::size_of::<$arg>() == $uapi_size);
    };
}

request!(UffdioApi, "UFFDIO_API", ApiArg, request_code_readwrite, 0x3F, 24);
request!(UffdioRegister, "UFFDIO_REGISTER", RegisterArg, request_code_readwrite, 0x00, 32);
request!(UffdioWake, "UFFDIO_WAKE", Range, request_code_read, 0x02, 16);
request!(UffdioCopy, "UFFDIO_COPY", TransferArg, request_code_readwrite, 0x03, 40);
request!(UffdioMove, "UFFDIO_MOVE", TransferArg, request_code_readwrite, 0x05, 40);
request!(
    UffdioWriteProtect,
    "UFFDIO_WRITEPROTECT",
    WriteProtectArg,
    request_code_readwrite,
    0x06,
    24
);

/// A userfaultfd with the MOVE feature, and asynchronous write protection where the kernel
/// has it.
#[derive(Debug)]
pub struct Uffd {
    fd: OwnedFd,
    /// `/proc/self/pagemap`, for `PAGEMAP_SCAN`, when write tracking is on.
    pagemap: Option<std::fs::File>,
}

impl Uffd {
    /// Opens a userfaultfd (non-blocking reads) and negotiates the API with MOVE, with
    /// SIGBUS if `sigbus` (faults then raise SIGBUS in the faulting thread instead of being
    /// queued here), and with WP_ASYNC when the kernel offers it and `/proc/self/pagemap`
    /// opens (write tracking; see [`Uffd::tracks_writes`]).
    pub fn open(sigbus: bool) -> Result<Uffd, UffdError> {
        // SAFETY: a plain system call with integer flags; it returns a new descriptor or -1.
        let raw =
            unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
        if raw < 0 {
            return Err(UffdError::Unavailable(std::io::Error::last_os_error()));
        }
        let raw = i32::try_from(raw).map_err(|_| UffdError::Missing("a descriptor"))?;
        // SAFETY: `raw` is a descriptor the kernel just gave us, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut uffd = Uffd { fd, pagemap: None };
        // The API handshake happens once per descriptor, so ask what the kernel offers first
        // (a zero-feature handshake would spend it): a probe descriptor, dropped.
        let offered = Uffd::offered_features()?;
        let required = FEATURE_MOVE | if sigbus { FEATURE_SIGBUS } else { 0 };
        if offered & FEATURE_MOVE == 0 {
            return Err(UffdError::Missing("UFFDIO_MOVE"));
        }
        if offered & required != required {
            return Err(UffdError::Missing("UFFD_FEATURE_SIGBUS"));
        }
        let pagemap = std::fs::File::open("/proc/self/pagemap").ok();
        let track = offered & FEATURE_WP_ASYNC != 0 && pagemap.is_some();
        let wanted = required | if track { FEATURE_WP_ASYNC } else { 0 };
        let mut arg = ApiArg { api: UFFD_API, features: wanted, ioctls: 0 };
        uffd.ioctl::<UffdioApi>(&mut arg)?;
        if track {
            uffd.pagemap = pagemap;
        }
        Ok(uffd)
    }

    /// The features this kernel's userfaultfd offers.
    fn offered_features() -> Result<u64, UffdError> {
        // SAFETY: as in `open`.
        let raw = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(UffdError::Unavailable(std::io::Error::last_os_error()));
        }
        let raw = i32::try_from(raw).map_err(|_| UffdError::Missing("a descriptor"))?;
        // SAFETY: `raw` is a descriptor the kernel just gave us, owned by nobody else.
        let probe = Uffd { fd: unsafe { OwnedFd::from_raw_fd(raw) }, pagemap: None };
        let mut arg = ApiArg { api: UFFD_API, features: 0, ioctls: 0 };
        probe.ioctl::<UffdioApi>(&mut arg)?;
        Ok(arg.features)
    }

    /// Whether writes are tracked: pages installed with `protect` are write-protected
    /// (asynchronously: a write only clears the mark, in the kernel, with no fault to us),
    /// and [`Uffd::take_written`] finds the ones written since.
    pub fn tracks_writes(&self) -> bool {
        self.pagemap.is_some()
    }

    /// Issues request `R` with `arg`.
    fn ioctl<R: Request>(&self, arg: &mut R::Arg) -> Result<(), UffdError> {
        // SAFETY: `arg` is an initialised, exclusively borrowed `R::Arg`, the structure of
        // `R::CODE`, whose size is in the code (computed from the type); the descriptor is
        // ours. The addresses inside `arg` are the kernel's to check: a bad one fails the
        // call (EFAULT, EINVAL), and the ones this crate passes come from its `Mapping`s.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), R::CODE, std::ptr::from_mut(arg)) } != 0 {
            return Err(last_error(R::NAME));
        }
        Ok(())
    }

    /// Reports missing-page faults in all of `mapping` to this descriptor; with `track`
    /// (and write tracking on), its writes are tracked too.
    pub fn register(&self, mapping: &Mapping, track: bool) -> Result<(), UffdError> {
        let range = Range { start: mapping.page_addr(0), len: (mapping.pages() * PAGE) as u64 };
        let wp = if track && self.tracks_writes() { REGISTER_MODE_WP } else { 0 };
        let mut arg = RegisterArg { range, mode: REGISTER_MODE_MISSING | wp, ioctls: 0 };
        self.ioctl::<UffdioRegister>(&mut arg)
    }

    /// Fills the missing page at `dst` with `data` (one page), without waking its waiters
    /// (call [`Uffd::wake`] once the caller's own state says the page is back); with
    /// `protect`, write-protected when writes are tracked (it reads as unwritten until
    /// written). `Ok(false)`: the page was present already.
    pub fn copy(&self, dst: u64, data: &[u8; PAGE], protect: bool) -> Result<bool, UffdError> {
        let src = data.as_ptr() as u64;
        let wp = if protect && self.tracks_writes() { COPY_MODE_WP } else { 0 };
        let mode = COPY_MODE_DONTWAKE | wp;
        let mut arg = TransferArg { dst, src, len: PAGE as u64, mode, result: 0 };
        match self.ioctl::<UffdioCopy>(&mut arg) {
            Ok(()) => Ok(true),
            Err(UffdError::Sys { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Moves the page at `src` to the missing page `dst` (both in registered mappings),
    /// atomically: afterwards `src` is missing. Wakes waiters on `dst`.
    pub fn move_page(&self, src: u64, dst: u64) -> Result<(), UffdError> {
        self.move_one(src, dst, 0)
    }

    /// One page moved with `mode`, retried while the kernel says try again (`EAGAIN`: the
    /// page tables changed under it, or the page is locked for a moment by the kernel's own
    /// reclaim or compaction; seen under memory pressure from other processes).
    fn move_one(&self, src: u64, dst: u64, mode: u64) -> Result<(), UffdError> {
        const TRIES: u32 = 10_000;
        let mut last = None;
        for attempt in 0..TRIES {
            let mut arg = TransferArg { dst, src, len: PAGE as u64, mode, result: 0 };
            match self.ioctl::<UffdioMove>(&mut arg) {
                Err(UffdError::Sys { source, call })
                    if source.raw_os_error() == Some(libc::EAGAIN) =>
                {
                    last = Some(UffdError::Sys { source, call });
                    if attempt % 64 == 63 {
                        std::thread::yield_now(); // sched_yield: safe in a signal handler
                    }
                    std::hint::spin_loop();
                }
                other => return other,
            }
        }
        Err(last.unwrap_or(UffdError::Missing("a move")))
    }

    /// Moves `pages` pages from `src` to `dst` with one ioctl (one TLB flush); returns how
    /// many moved (the kernel stops at the first page it cannot move, e.g. a destination
    /// that is not empty; the caller moves the rest one by one and sees why).
    pub fn move_pages(&self, src: u64, dst: u64, pages: usize) -> usize {
        let len = (pages * PAGE) as u64;
        let mut arg = TransferArg { dst, src, len, mode: 0, result: 0 };
        match self.ioctl::<UffdioMove>(&mut arg) {
            Ok(()) => pages,
            // On a partial move the kernel reports the bytes moved in `result`.
            Err(_) => usize::try_from(arg.result.max(0)).unwrap_or(0) / PAGE,
        }
    }

    /// [`Uffd::move_page`] without waking `dst`'s waiters (call [`Uffd::wake`] once the
    /// caller's own state says the page is back).
    pub fn move_page_quietly(&self, src: u64, dst: u64) -> Result<(), UffdError> {
        const MOVE_MODE_DONTWAKE: u64 = 1;
        self.move_one(src, dst, MOVE_MODE_DONTWAKE)
    }

    /// Lifts write protection from `pages` pages at `start` (nothing when writes are not
    /// tracked). Done before a page leaves the arena by `UFFDIO_MOVE`: on Linux 6.18, moving
    /// protected pages while other threads wrote to the arena left pages missing that our
    /// states said were back in (the integrity tests caught it within seconds, as `ENOENT`
    /// and `EEXIST` on later moves); unprotected pages never did. A page reads as written
    /// once it returns either way (a move drops the mark), so tracking loses nothing.
    pub fn unprotect(&self, start: u64, pages: usize) -> Result<(), UffdError> {
        const WRITEPROTECT_MODE_DONTWAKE: u64 = 2;
        if !self.tracks_writes() {
            return Ok(());
        }
        let range = Range { start, len: (pages * PAGE) as u64 };
        let mut arg = WriteProtectArg { range, mode: WRITEPROTECT_MODE_DONTWAKE };
        self.ioctl::<UffdioWriteProtect>(&mut arg)
    }

    /// Wakes threads waiting on the page at `addr`.
    pub fn wake(&self, addr: u64) -> Result<(), UffdError> {
        let mut arg = Range { start: addr, len: PAGE as u64 };
        self.ioctl::<UffdioWake>(&mut arg)
    }

    /// Waits up to `timeout_ms` for a fault; returns the faulting address, if one came.
    pub fn next_fault(&self, timeout_ms: i32) -> Result<Option<u64>, UffdError> {
        let mut poll = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd on our stack.
        if unsafe { libc::poll(&raw mut poll, 1, timeout_ms) } <= 0 {
            return Ok(None);
        }
        let mut msg = [0u8; 32];
        // SAFETY: reading at most 32 bytes (one `struct uffd_msg`) into our buffer.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), msg.as_mut_ptr().cast(), msg.len()) };
        if n != 32 {
            return Ok(None); // EAGAIN: another reader took it
        }
        // struct uffd_msg: event u8 @0 (0x12: pagefault), then arg.pagefault.address @16.
        if msg[0] != 0x12 {
            return Ok(None);
        }
        let mut address = [0u8; 8];
        address.copy_from_slice(&msg[16..24]);
        Ok(Some(u64::from_ne_bytes(address)))
    }
}
