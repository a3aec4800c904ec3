//! The tier service's page-state table, as the policy reads it: a memfd the host's
//! mechanism keeps (one 16-byte entry per page, updated in place with per-page atomics;
//! `memmgr::table`) and shares once, at the handshake. The policy maps it read-only and
//! reads a snapshot once per epoch. Nothing in it is trusted: the header is checked when the
//! table is opened, and an entry whose bytes are not a valid state reads as an error the
//! caller counts. Each entry is loaded as two aligned 8-byte words while the host stores its
//! fields as 1- and 4-byte atomics: an aligned load is single-copy atomic on the targets we
//! build for (x86-64, aarch64), so every field read is a value some store wrote, but fields
//! of one entry may come from different moments. Such a torn snapshot (a page changing while
//! it is read) costs at most a stale command, which the host refuses by version.
//!
//! On a real IPU this read is one DMA of the table per epoch (16 bytes a page: 4 MiB for a
//! 1 GiB arena), not a PCIe read per page. Layout: `docs/abi.md`, "page-state table".

use std::os::fd::OwnedFd;

use crate::region::{ReadOnlyRegion, RegionError};

/// The header's magic: "WAVETIER" in ASCII, little-endian.
pub const TABLE_MAGIC: u64 = u64::from_le_bytes(*b"WAVETIER");
/// The layout version this reader knows.
pub const TABLE_VERSION: u32 = 1;
/// The header's size; entries start here.
pub const HEADER_BYTES: usize = 64;
/// One entry's size.
pub const ENTRY_BYTES: usize = 16;
/// Most pages a table may declare (16 GiB of 4 KiB pages).
pub const PAGES_MAX: u64 = 1 << 22;

/// Why a shared table was refused.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// It could not be mapped (not sealed, bad size, a failed call).
    #[error("cannot map the page-state table: {0}")]
    Region(#[from] RegionError),
    /// Its header is not a page-state table of a known layout.
    #[error("bad page-state table header: {0}")]
    Header(&'static str),
}

/// Where a page is, as its entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageState {
    /// Never touched.
    Untouched,
    /// In DRAM.
    Resident,
    /// A transition is in progress (read it again next epoch).
    Busy,
    /// In DRAM, parked on probation.
    Parked,
    /// In the compressed tier.
    Compressed,
}

/// One page's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageEntry {
    /// Its state.
    pub state: PageState,
    /// Resident but free (retired by the app's allocator).
    pub unused: bool,
    /// Promoted from a compressed copy the host still keeps, not found written since.
    pub clean: bool,
    /// Its version: a command must name it.
    pub version: u32,
    /// Times it was touched while parked (wrapping: compare with the last value read).
    pub touches: u32,
    /// Times write tracking found it written after a promotion (wrapping, likewise).
    pub writes: u32,
}

/// An entry whose bytes are not a valid page state (the host wrote garbage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("page {page}: malformed page-state entry")]
pub struct BadEntry {
    /// The page.
    pub page: u32,
}

/// A host's page-state table, mapped read-only.
#[derive(Debug)]
pub struct PageTableView {
    region: ReadOnlyRegion,
    pages: u32,
}

impl PageTableView {
    /// Maps the table the host shared and checks its header and size.
    pub fn open(fd: OwnedFd) -> Result<PageTableView, TableError> {
        let region = ReadOnlyRegion::map_sealed(fd)?;
        if region.len() < HEADER_BYTES {
            return Err(TableError::Header("shorter than its header"));
        }
        if region.load(0) != TABLE_MAGIC {
            return Err(TableError::Header("not a page-state table (magic)"));
        }
        let (version, entry_bytes) = halves(region.load(8));
        if version != TABLE_VERSION {
            return Err(TableError::Header("unknown layout version"));
        }
        if entry_bytes as usize != ENTRY_BYTES {
            return Err(TableError::Header("entry size"));
        }
        let pages = region.load(16);
        if pages == 0 || pages > PAGES_MAX {
            return Err(TableError::Header("page count out of bounds"));
        }
        let pages = u32::try_from(pages).map_err(|_| TableError::Header("page count"))?;
        if region.len() != HEADER_BYTES + pages as usize * ENTRY_BYTES {
            return Err(TableError::Header("size does not match the page count"));
        }
        Ok(PageTableView { region, pages })
    }

    /// Pages in the table.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// Page `page`'s entry as it is now.
    ///
    /// # Panics
    /// If `page` is out of range.
    pub fn entry(&self, page: u32) -> Result<PageEntry, BadEntry> {
        assert!(page < self.pages, "page {page} out of range");
        let offset = HEADER_BYTES + page as usize * ENTRY_BYTES;
        let (low, high) = (self.region.load(offset), self.region.load(offset + 8));
        decode(low, high).ok_or(BadEntry { page })
    }
}

/// A word's low and high 32 bits.
fn halves(word: u64) -> (u32, u32) {
    let b = word.to_le_bytes();
    (u32::from_le_bytes([b[0], b[1], b[2], b[3]]), u32::from_le_bytes([b[4], b[5], b[6], b[7]]))
}

/// An entry from its two little-endian words: bytes 0..8 and 8..16.
fn decode(low: u64, high: u64) -> Option<PageEntry> {
    let bytes = low.to_le_bytes();
    let byte = |n: usize| bytes[n];
    let flag = |n: usize| match byte(n) {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    };
    let state = match byte(0) {
        0 => PageState::Untouched,
        1 => PageState::Resident,
        2 => PageState::Busy,
        3 => PageState::Parked,
        4 => PageState::Compressed,
        _ => return None,
    };
    flag(1)?; // the mechanism's own touch mark: valid or not, nothing for the policy
    let ((_, version), (touches, writes)) = (halves(low), halves(high));
    Some(PageEntry { state, clean: flag(2)?, unused: flag(3)?, version, touches, writes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_decode_and_garbage_is_refused() {
        let low = 3 | (1 << 16) | (7u64 << 32);
        let high = 5 | (2u64 << 32);
        let entry = decode(low, high).expect("valid");
        assert_eq!(entry.state, PageState::Parked);
        assert!(entry.clean && !entry.unused);
        assert_eq!((entry.version, entry.touches, entry.writes), (7, 5, 2));
        assert_eq!(decode(9, 0), None, "state 9");
        assert_eq!(decode(1 | (2 << 24), 0), None, "a flag of 2");
    }
}
