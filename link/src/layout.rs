//! The layout of a channel's shared region, computed from a [`ChannelConfig`].
//!
//! The region is split into the two memories of a PCIe link, each written by the *other*
//! side (posted writes) and polled by its owner:
//!
//! ```text
//! control-plane memory (host writes, ipu-cp polls)   host memory (ipu-cp writes, host polls)
//!   line 0  superblock (ipu-cp writes once at setup)   cp heartbeat line
//!   line 1  host heartbeat line                        per worker: decision ring slots+stamps
//!   per worker: event ring slots (+ stamps)            per worker: event ring credit line
//!   per worker: decision ring credit line              per worker: prestage slots
//! ```
//!
//! The superblock is written once by the control plane before it hands the memfd over; the
//! host validates it against the handshake before touching anything else.

use std::sync::atomic::Ordering;

use crate::proto::{ABI_VERSION, AppId};
use crate::region::Region;
use crate::ring::RingLayout;
use crate::txn::SlotsLayout;

/// Most workers one app may register.
pub const WORKERS_MAX: u16 = 1024;
/// Largest ring, in records.
pub const RING_CAPACITY_MAX: u32 = 1 << 16;
/// Most prestage slots per worker.
pub const PRESTAGE_SLOTS_MAX: u16 = 64;
/// Largest emulated one-way delay.
pub const DELAY_NS_MAX: u32 = 1_000_000;

/// `superblock.magic`: "WAVELINK".
const SUPERBLOCK_MAGIC: u64 = u64::from_le_bytes(*b"WAVELINK");

/// The shape of a channel, chosen by the app and validated by both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Host workers: one event ring, one decision ring and one slot set each.
    pub workers: u16,
    /// Records per ring: a power of two, 2..=65536.
    pub ring_capacity: u32,
    /// Prestage slots per worker, 0..=64.
    pub prestage_slots: u16,
    /// Emulated one-way PCIe delay in ns, 0 (off)..=1 ms.
    pub delay_ns: u32,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig { workers: 1, ring_capacity: 1024, prestage_slots: 8, delay_ns: 0 }
    }
}

/// A channel shape out of bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Worker count is 0 or above [`WORKERS_MAX`].
    #[error("workers must be 1..={WORKERS_MAX}, got {0}")]
    Workers(u16),
    /// Ring capacity is not a power of two in 2..=[`RING_CAPACITY_MAX`].
    #[error("ring capacity must be a power of two in 2..={RING_CAPACITY_MAX}, got {0}")]
    RingCapacity(u32),
    /// More than [`PRESTAGE_SLOTS_MAX`] slots.
    #[error("prestage slots must be 0..={PRESTAGE_SLOTS_MAX}, got {0}")]
    PrestageSlots(u16),
    /// Delay above [`DELAY_NS_MAX`].
    #[error("emulated delay must be 0..={DELAY_NS_MAX} ns, got {0}")]
    Delay(u32),
}

impl ChannelConfig {
    /// Checks every bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workers == 0 || self.workers > WORKERS_MAX {
            return Err(ConfigError::Workers(self.workers));
        }
        let capacity = self.ring_capacity;
        if !capacity.is_power_of_two() || !(2..=RING_CAPACITY_MAX).contains(&capacity) {
            return Err(ConfigError::RingCapacity(capacity));
        }
        if self.prestage_slots > PRESTAGE_SLOTS_MAX {
            return Err(ConfigError::PrestageSlots(self.prestage_slots));
        }
        if self.delay_ns > DELAY_NS_MAX {
            return Err(ConfigError::Delay(self.delay_ns));
        }
        Ok(())
    }
}

/// Byte offsets of everything in a channel region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    config: ChannelConfig,
    per_worker_cp_bytes: usize,
    per_worker_host_bytes: usize,
    host_base: usize,
    total_len: usize,
}

const SUPERBLOCK: usize = 0;
const HOST_HEARTBEAT: usize = 64;
const CP_WORKERS_BASE: usize = 128;

impl Layout {
    /// Computes the layout of a validated config.
    pub fn new(config: ChannelConfig) -> Result<Layout, ConfigError> {
        config.validate()?;
        let ring = RingLayout::consumer_bytes(config.ring_capacity);
        let per_worker_cp_bytes = ring + 64;
        let per_worker_host_bytes = ring + 64 + usize::from(config.prestage_slots) * 64;
        let workers = usize::from(config.workers);
        // Host memory starts on its own page, as a separate BAR/DRAM would.
        let host_base = (CP_WORKERS_BASE + workers * per_worker_cp_bytes).next_multiple_of(4096);
        let host_workers_base = host_base + 64;
        let total_len =
            (host_workers_base + workers * per_worker_host_bytes).next_multiple_of(4096);
        Ok(Layout { config, per_worker_cp_bytes, per_worker_host_bytes, host_base, total_len })
    }

    /// The config this layout was computed from.
    pub fn config(&self) -> ChannelConfig {
        self.config
    }

    /// Bytes in the region.
    pub fn total_len(&self) -> usize {
        self.total_len
    }

    /// The host's heartbeat line (control-plane memory).
    pub fn host_heartbeat(&self) -> usize {
        HOST_HEARTBEAT
    }

    /// The control plane's heartbeat line (host memory).
    pub fn cp_heartbeat(&self) -> usize {
        self.host_base
    }

    fn cp_worker(&self, worker: u16) -> usize {
        assert!(worker < self.config.workers, "worker {worker} out of range");
        CP_WORKERS_BASE + usize::from(worker) * self.per_worker_cp_bytes
    }

    fn host_worker(&self, worker: u16) -> usize {
        assert!(worker < self.config.workers, "worker {worker} out of range");
        self.host_base + 64 + usize::from(worker) * self.per_worker_host_bytes
    }

    fn ring_bytes(&self) -> usize {
        RingLayout::consumer_bytes(self.config.ring_capacity)
    }

    fn ring(&self, slots_offset: usize, credit_offset: usize) -> RingLayout {
        RingLayout {
            capacity: self.config.ring_capacity,
            slots_offset,
            credit_offset,
            delay_ns: u64::from(self.config.delay_ns),
        }
    }

    /// The host→control-plane event ring of `worker`.
    pub fn event_ring(&self, worker: u16) -> RingLayout {
        let credit = self.host_worker(worker) + self.ring_bytes();
        self.ring(self.cp_worker(worker), credit)
    }

    /// The control-plane→host decision ring of `worker`.
    pub fn decision_ring(&self, worker: u16) -> RingLayout {
        let credit = self.cp_worker(worker) + self.ring_bytes();
        self.ring(self.host_worker(worker), credit)
    }

    /// The prestage slots of `worker` (host memory).
    pub fn slots(&self, worker: u16) -> SlotsLayout {
        let offset = self.host_worker(worker) + self.ring_bytes() + 64;
        SlotsLayout { offset, count: self.config.prestage_slots }
    }

    /// Writes the superblock (control-plane side, once, before sharing the region).
    pub fn format(&self, region: &Region, app: AppId) {
        assert!(region.len() >= self.total_len, "region smaller than the layout");
        let words = region.words(SUPERBLOCK, 8);
        let c = self.config;
        words[1].store(u64::from(ABI_VERSION), Ordering::Relaxed);
        words[2].store(u64::from(c.workers), Ordering::Relaxed);
        words[3].store(u64::from(c.ring_capacity), Ordering::Relaxed);
        words[4].store(u64::from(c.prestage_slots), Ordering::Relaxed);
        words[5].store(u64::from(c.delay_ns), Ordering::Relaxed);
        words[6].store(self.total_len as u64, Ordering::Relaxed);
        words[7].store(u64::from(app.0), Ordering::Relaxed);
        // Release: the magic is written last, so a superblock with magic is complete.
        words[0].store(SUPERBLOCK_MAGIC, Ordering::Release);
    }

    /// Reads and checks a superblock written by [`Layout::format`] (host side).
    pub fn read_superblock(region: &Region) -> Result<(Layout, AppId), SuperblockError> {
        let words = region.words(SUPERBLOCK, 8);
        if words[0].load(Ordering::Acquire) != SUPERBLOCK_MAGIC {
            return Err(SuperblockError::Magic);
        }
        let abi = words[1].load(Ordering::Relaxed);
        if abi != u64::from(ABI_VERSION) {
            return Err(SuperblockError::Abi { ours: ABI_VERSION, theirs: abi });
        }
        let field = |index: usize| words[index].load(Ordering::Relaxed);
        let narrow16 = |v: u64| u16::try_from(v).map_err(|_| SuperblockError::Field);
        let narrow32 = |v: u64| u32::try_from(v).map_err(|_| SuperblockError::Field);
        let config = ChannelConfig {
            workers: narrow16(field(2))?,
            ring_capacity: narrow32(field(3))?,
            prestage_slots: narrow16(field(4))?,
            delay_ns: narrow32(field(5))?,
        };
        let layout = Layout::new(config).map_err(SuperblockError::Config)?;
        if field(6) != layout.total_len as u64 || region.len() < layout.total_len {
            return Err(SuperblockError::Length);
        }
        Ok((layout, AppId(narrow32(field(7))?)))
    }
}

/// A superblock the host cannot accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SuperblockError {
    /// No magic: not a Wave channel, or not initialised.
    #[error("region has no Wave superblock")]
    Magic,
    /// Written by another ABI.
    #[error("region ABI {theirs} differs from ours ({ours})")]
    Abi {
        /// Ours.
        ours: u32,
        /// Theirs.
        theirs: u64,
    },
    /// A field does not fit its type.
    #[error("superblock field out of range")]
    Field,
    /// The config it names is out of bounds.
    #[error("superblock config invalid: {0}")]
    Config(ConfigError),
    /// Its length disagrees with the layout or the region.
    #[error("superblock length disagrees with the layout")]
    Length,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_do_not_overlap_and_memories_are_split() {
        for delay_ns in [0, 1000] {
            let config =
                ChannelConfig { workers: 3, ring_capacity: 16, prestage_slots: 4, delay_ns };
            let layout = Layout::new(config).unwrap();
            let mut spans =
                vec![(0, 64), (layout.host_heartbeat(), 64), (layout.cp_heartbeat(), 64)];
            for w in 0..3 {
                for ring in [layout.event_ring(w), layout.decision_ring(w)] {
                    let bytes = RingLayout::consumer_bytes(16);
                    spans.push((ring.slots_offset, bytes));
                    spans.push((ring.credit_offset, 64));
                }
                spans.push((layout.slots(w).offset, 4 * 64));
            }
            spans.sort();
            for pair in spans.windows(2) {
                assert!(pair[0].0 + pair[0].1 <= pair[1].0, "overlap: {pair:?}");
            }
            let end = spans.last().map(|(o, l)| o + l).unwrap();
            assert!(end <= layout.total_len());
            // Event slots are in control-plane memory, decision slots in host memory.
            assert!(layout.event_ring(2).slots_offset < layout.cp_heartbeat());
            assert!(layout.decision_ring(0).slots_offset > layout.cp_heartbeat());
            assert!(layout.slots(0).offset > layout.cp_heartbeat());
        }
    }

    #[test]
    fn superblock_round_trips_and_rejects_garbage() {
        let config =
            ChannelConfig { workers: 2, ring_capacity: 64, prestage_slots: 8, delay_ns: 7 };
        let layout = Layout::new(config).unwrap();
        let region = Region::heap(layout.total_len()).unwrap();
        assert_eq!(Layout::read_superblock(&region), Err(SuperblockError::Magic));
        layout.format(&region, AppId(42));
        let (read, app) = Layout::read_superblock(&region).unwrap();
        assert_eq!((read, app), (layout.clone(), AppId(42)));
        region.word(8).store(999, Ordering::Relaxed);
        assert!(matches!(Layout::read_superblock(&region), Err(SuperblockError::Abi { .. })));
        layout.format(&region, AppId(42));
        region.word(24).store(3, Ordering::Relaxed); // capacity 3: not a power of two
        assert!(matches!(Layout::read_superblock(&region), Err(SuperblockError::Config(_))));
    }

    #[test]
    fn configs_out_of_bounds_are_refused() {
        let ok = ChannelConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        let bad = [
            (ChannelConfig { workers: 0, ..ok }, ConfigError::Workers(0)),
            (ChannelConfig { ring_capacity: 100, ..ok }, ConfigError::RingCapacity(100)),
            (ChannelConfig { ring_capacity: 1, ..ok }, ConfigError::RingCapacity(1)),
            (ChannelConfig { prestage_slots: 65, ..ok }, ConfigError::PrestageSlots(65)),
            (ChannelConfig { delay_ns: 2_000_000, ..ok }, ConfigError::Delay(2_000_000)),
        ];
        for (config, error) in bad {
            assert_eq!(config.validate(), Err(error));
        }
    }
}
