//! Hosts the tier policy in the agent: one `Tiering` per app. The app shares its
//! page-state table at the handshake (`link::tier_table`); at each `Epoch` the adapter reads
//! a snapshot of it (once per epoch: on an IPU, one DMA of the table), feeds the policy, and
//! posts its commands to the app's lane. An app whose table is missing or does not match the
//! arena it declares gets no policy (and so no demotion); events out of order and malformed
//! entries are counted and ignored.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use link::MonoNanos;
use link::proto::{AppId, Message, TierMessage, WorkerId};
use link::tier_table::{self, PageTableView};

use super::{PageSample, PageState, TierCommand, TierConfig, Tiering};
use crate::policy::{Decisions, Policy};

/// The lane of a tiering channel.
const LANE: WorkerId = WorkerId(0);

/// What the adapter did.
#[derive(Debug, Default)]
pub struct TierCounters {
    /// Epochs decided.
    pub epochs: AtomicU64,
    /// Commands posted.
    pub commands: AtomicU64,
    /// Events refused (out of order, an arena its table does not match) and malformed
    /// table entries read.
    pub invalid: AtomicU64,
    /// Table entries read.
    pub entries_read: AtomicU64,
    /// Times pages were found written after a promotion (the table's write counters).
    pub writes_seen: AtomicU64,
}

/// An app's state here: its shared table until `Attach`, then its policy too.
#[derive(Default)]
struct AppSlot {
    table: Option<Arc<PageTableView>>,
    tier: Option<AppTier>,
}

struct AppTier {
    policy: Tiering,
    samples: Vec<PageSample>,
    /// Per page, the touch and write counters read last epoch.
    last_touches: Vec<u32>,
    last_writes: Vec<u32>,
}

impl AppTier {
    /// Refreshes the samples from a snapshot of `table`; returns (malformed entries, writes
    /// seen). A page in transition keeps its last sample (a command on it will be stale).
    fn read(&mut self, table: &PageTableView) -> (u64, u64) {
        let (mut malformed, mut writes) = (0, 0);
        for (page, sample) in (0..table.pages()).zip(&mut self.samples) {
            let Ok(entry) = table.entry(page) else {
                malformed += 1;
                continue;
            };
            let index = page as usize;
            let touches = std::mem::replace(&mut self.last_touches[index], entry.touches);
            let written = std::mem::replace(&mut self.last_writes[index], entry.writes);
            writes += u64::from(entry.writes.wrapping_sub(written));
            sample.touched = entry.touches != touches;
            sample.state = match entry.state {
                tier_table::PageState::Busy => continue,
                tier_table::PageState::Untouched => PageState::Free,
                _ if entry.unused => PageState::Free,
                tier_table::PageState::Resident => PageState::Resident,
                tier_table::PageState::Parked => PageState::Parked,
                tier_table::PageState::Compressed => PageState::Compressed,
            };
            sample.version = entry.version;
        }
        (malformed, writes)
    }
}

/// The agent-side host of the tier policy.
pub struct TierAgent {
    config: TierConfig,
    apps: HashMap<AppId, AppSlot>,
    commands: Vec<TierCommand>,
    counters: Arc<TierCounters>,
}

impl std::fmt::Debug for TierAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierAgent").field("apps", &self.apps.len()).finish()
    }
}

impl TierAgent {
    /// Hosts the tier policy with `config` for every app.
    pub fn new(config: TierConfig) -> TierAgent {
        TierAgent { config, apps: HashMap::new(), commands: Vec::new(), counters: Arc::default() }
    }

    /// The counters (shared).
    pub fn counters(&self) -> Arc<TierCounters> {
        self.counters.clone()
    }

    fn invalid(&self) {
        self.counters.invalid.fetch_add(1, Ordering::Relaxed);
    }
}

impl Policy for TierAgent {
    fn name(&self) -> &'static str {
        "tier"
    }

    /// Commands are due by the next epoch: 1/64 of it, at most 1 ms, at least 50 µs.
    fn idle_sleep_ns(&self) -> u64 {
        (self.config.epoch_ns / 64).clamp(50_000, 1_000_000)
    }

    fn on_app_attached(&mut self, app: AppId, _shape: link::ChannelConfig) {
        self.apps.insert(app, AppSlot::default());
    }

    fn on_page_table(&mut self, app: AppId, table: Arc<PageTableView>) {
        if let Some(slot) = self.apps.get_mut(&app) {
            slot.table = Some(table);
        }
    }

    fn on_app_detached(&mut self, app: AppId) {
        self.apps.remove(&app);
    }

    fn on_event(
        &mut self,
        app: AppId,
        _lane: WorkerId,
        event: &Message,
        _now: MonoNanos,
        out: &mut Decisions,
    ) {
        let Message::Tier(event) = *event else { return };
        let Some(slot) = self.apps.get_mut(&app) else { return };
        match (event, slot) {
            (TierMessage::Attach { pages }, AppSlot { table: Some(table), tier: tier @ None })
                if pages == table.pages() =>
            {
                let samples = (0..pages)
                    .map(|page| PageSample {
                        page,
                        version: 0,
                        state: PageState::Free,
                        touched: false,
                    })
                    .collect();
                let (last_touches, last_writes) =
                    (vec![0; pages as usize], vec![0; pages as usize]);
                let policy = Tiering::new(pages, self.config);
                *tier = Some(AppTier { policy, samples, last_touches, last_writes });
            }
            (
                TierMessage::Epoch { promotions },
                AppSlot { table: Some(table), tier: Some(tier) },
            ) => {
                let (malformed, writes) = tier.read(table);
                let counters = &self.counters;
                counters.entries_read.fetch_add(u64::from(table.pages()), Ordering::Relaxed);
                counters.invalid.fetch_add(malformed, Ordering::Relaxed);
                counters.writes_seen.fetch_add(writes, Ordering::Relaxed);
                self.commands.clear();
                tier.policy.on_epoch(&tier.samples, promotions, &mut self.commands);
                for command in self.commands.drain(..) {
                    let message = match command {
                        TierCommand::Park { page, version } => TierMessage::Park { page, version },
                        TierCommand::Demote { page, version } => {
                            TierMessage::Demote { page, version }
                        }
                    };
                    out.push(LANE, Message::Tier(message));
                    self.counters.commands.fetch_add(1, Ordering::Relaxed);
                }
                self.counters.epochs.fetch_add(1, Ordering::Relaxed);
            }
            _ => self.invalid(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::FileExt;

    use link::tier_table::{HEADER_BYTES, TABLE_MAGIC};
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};

    use super::*;

    /// A sealed table of `pages` resident pages at version 1; page 0's state byte is `first`.
    fn table(pages: u32, first: u8) -> Arc<PageTableView> {
        let mut bytes = vec![0u8; HEADER_BYTES + pages as usize * 16];
        bytes[0..8].copy_from_slice(&TABLE_MAGIC.to_le_bytes());
        bytes[8..16].copy_from_slice(&(1u64 | 16 << 32).to_le_bytes());
        bytes[16..24].copy_from_slice(&u64::from(pages).to_le_bytes());
        for entry in bytes[HEADER_BYTES..].chunks_mut(16) {
            entry[0] = 1;
            entry[4] = 1;
        }
        bytes[HEADER_BYTES] = first;
        let fd = nix::sys::memfd::memfd_create(c"t", nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING);
        let file = File::from(fd.expect("memfd"));
        file.write_all_at(&bytes, 0).expect("write");
        fcntl(&file, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK)).expect("seal");
        Arc::new(PageTableView::open(OwnedFd::from(file)).expect("a valid table"))
    }

    fn event(agent: &mut TierAgent, app: AppId, message: TierMessage) -> usize {
        let mut out = Decisions::with_capacity(64);
        agent.on_event(app, LANE, &Message::Tier(message), MonoNanos::now(), &mut out);
        out.len()
    }

    #[test]
    fn the_agent_may_sleep_a_sixty_fourth_of_an_epoch_within_bounds() {
        let sleep = |epoch_ns| TierAgent::new(TierConfig { epoch_ns, ..TierConfig::default() });
        assert_eq!(sleep(250_000_000).idle_sleep_ns(), 1_000_000);
        assert_eq!(sleep(32_000_000).idle_sleep_ns(), 500_000);
        assert_eq!(sleep(1_000_000).idle_sleep_ns(), 50_000);
        assert_eq!(crate::policy::Echo::default().idle_sleep_ns(), 50_000);
    }

    #[test]
    fn the_policy_decides_from_the_shared_table_and_refuses_a_mismatch() {
        let mut agent = TierAgent::new(TierConfig::default());
        let counters = agent.counters();
        let (good, short, none) = (AppId::new(1, 1), AppId::new(2, 1), AppId::new(3, 1));
        for app in [good, short, none] {
            agent.on_app_attached(app, link::ChannelConfig::default());
        }
        agent.on_page_table(good, table(64, 9)); // page 0: garbage
        agent.on_page_table(short, table(32, 1));
        event(&mut agent, good, TierMessage::Attach { pages: 64 });
        event(&mut agent, short, TierMessage::Attach { pages: 64 }); // table says 32
        event(&mut agent, none, TierMessage::Attach { pages: 64 }); // shared no table
        assert_eq!(counters.invalid.load(Ordering::Relaxed), 2);
        let parks = event(&mut agent, good, TierMessage::Epoch { promotions: 0 });
        assert!(parks > 0, "resident pages are parked to learn their temperature");
        assert_eq!(counters.entries_read.load(Ordering::Relaxed), 64);
        assert_eq!(counters.invalid.load(Ordering::Relaxed), 3, "the garbage entry");
        for app in [short, none] {
            assert_eq!(event(&mut agent, app, TierMessage::Epoch { promotions: 0 }), 0);
        }
        assert_eq!(counters.epochs.load(Ordering::Relaxed), 1);
    }
}
