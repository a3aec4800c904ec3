//! Write tracking's query: `PAGEMAP_SCAN` (Linux 6.7) on `/proc/self/pagemap`, written out
//! from `include/uapi/linux/fs.h` (the installed headers predate it).

use std::os::fd::AsRawFd;

use super::{Mapping, PAGE, Uffd, UffdError, last_error};

/// `_IOWR('f', 16, struct pm_scan_arg)`, on a `/proc/<pid>/pagemap` descriptor: the size in
/// the number is the structure's, 96 bytes as in the uapi header.
const PAGEMAP_SCAN: libc::c_ulong =
    nix::request_code_readwrite!(b'f', 16, std::mem::size_of::<ScanArg>()) as libc::c_ulong;
const _: () = assert!(std::mem::size_of::<ScanArg>() == 96);
const PAGE_IS_WRITTEN: u64 = 1 << 1;
const PAGE_IS_PRESENT: u64 = 1 << 3;

#[repr(C)]
struct ScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

impl Uffd {
    /// Appends to `written` the pages `first..end` of `mapping` (indices) that are present
    /// and not write-protected: those installed protected ([`Uffd::copy`] with `protect`)
    /// and written since, and any page never protected. A query only (nothing is protected
    /// again, so a page costs at most one write fault, in the kernel, about 1 µs): a few ns
    /// per page of the span, in as few `PAGEMAP_SCAN` calls as the output allows. Nothing
    /// when writes are not tracked.
    pub fn take_written(
        &self,
        mapping: &Mapping,
        first: usize,
        end: usize,
        written: &mut Vec<usize>,
    ) -> Result<(), UffdError> {
        const REGIONS: usize = 512;
        let Some(pagemap) = &self.pagemap else { return Ok(()) };
        if first >= end {
            return Ok(());
        }
        let (mut start, stop) =
            (mapping.page_addr(first), mapping.page_addr(end - 1) + PAGE as u64);
        let mut regions = [PageRegion::default(); REGIONS];
        // Each call walks on from where the last stopped; bounded by the span's pages.
        for _ in 0..=end - first {
            let mut arg = ScanArg {
                size: std::mem::size_of::<ScanArg>() as u64,
                flags: 0,
                start,
                end: stop,
                walk_end: 0,
                vec: regions.as_mut_ptr() as u64,
                vec_len: REGIONS as u64,
                max_pages: 0,
                category_inverted: 0,
                category_mask: PAGE_IS_WRITTEN | PAGE_IS_PRESENT,
                category_anyof_mask: 0,
                return_mask: PAGE_IS_WRITTEN,
            };
            // SAFETY: `arg` is an initialised `pm_scan_arg` on our stack whose `vec` points to
            // `REGIONS` writable `page_region`s (also ours, alive across the call); the range
            // is inside this mapping, and the descriptor is our own pagemap.
            let found = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN, &raw mut arg) };
            let found = usize::try_from(found).map_err(|_| last_error("PAGEMAP_SCAN"))?;
            for region in &regions[..found.min(REGIONS)] {
                let from = mapping.page_index(region.start);
                let last = mapping.page_index(region.end.saturating_sub(PAGE as u64));
                if let (Some(from), Some(last)) = (from, last) {
                    written.extend(from..=last);
                }
            }
            if arg.walk_end >= stop || arg.walk_end <= start {
                break;
            }
            start = arg.walk_end;
        }
        Ok(())
    }
}
