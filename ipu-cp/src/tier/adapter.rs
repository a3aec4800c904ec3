//! Hosts the tier policy in the agent: one `TierPolicy` per app, its page table kept from the
//! host's `Page` reports, and at each `Epoch` the policy's commands posted to the app's lane.
//! Reports naming pages outside the arena, or arriving before `Attach`, are counted and
//! ignored.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use link::MonoNanos;
use link::proto::{AppId, Message, TierMessage, TierPlace, WorkerId};

use super::{PageSample, PageState, TierCommand, TierConfig, TierPolicy};
use crate::policy::{Decisions, Policy};

/// The lane of a tiering channel.
const LANE: WorkerId = WorkerId(0);
/// Most pages an app may declare (16 GiB of 4 KiB pages).
const PAGES_MAX: u32 = 1 << 22;

/// What the adapter did.
#[derive(Debug, Default)]
pub struct TierCounters {
    /// Epochs decided.
    pub epochs: AtomicU64,
    /// Commands posted.
    pub commands: AtomicU64,
    /// Reports refused (unknown app state, page out of range).
    pub invalid: AtomicU64,
}

struct AppTier {
    policy: TierPolicy,
    samples: Vec<PageSample>,
}

/// The agent-side host of the tier policy.
pub struct TierAgent {
    config: TierConfig,
    apps: HashMap<AppId, Option<AppTier>>,
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

    fn on_app_attached(&mut self, app: AppId, _shape: link::ChannelConfig) {
        self.apps.insert(app, None);
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
            (TierMessage::Attach { pages }, slot @ None) if pages > 0 && pages <= PAGES_MAX => {
                let samples = (0..pages)
                    .map(|page| PageSample {
                        page,
                        version: 0,
                        state: PageState::Resident,
                        touched: false,
                    })
                    .collect();
                *slot = Some(AppTier { policy: TierPolicy::new(pages, self.config), samples });
            }
            (TierMessage::Page { page, version, place, touched }, Some(tier)) => {
                let Some(sample) = tier.samples.get_mut(page as usize) else {
                    return self.invalid();
                };
                sample.version = version;
                sample.state = match place {
                    TierPlace::Resident => PageState::Resident,
                    TierPlace::Parked => PageState::Parked,
                    TierPlace::Compressed => PageState::Compressed,
                    TierPlace::Free => PageState::Free,
                };
                sample.touched |= touched;
            }
            (TierMessage::Epoch { promotions }, Some(tier)) => {
                self.commands.clear();
                tier.policy.on_epoch(&tier.samples, promotions, &mut self.commands);
                for sample in &mut tier.samples {
                    sample.touched = false;
                }
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
