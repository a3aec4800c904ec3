//! The page-tiering policy, as pure decisions over per-epoch page samples; the
//! mechanism is `memmgr` on the host. [`adapter::TierAgent`] serves it over `link` (the tier
//! service): the host reports each page that changed and the end of each epoch, the policy
//! answers with park and demote commands stamped with page versions.
//!
//! The model is Google's software-defined far memory, adapted to what the host can observe
//! here (`../shared/docs/memtier.md`): no accessed bits, so pages are *parked* on probation and
//! a touch brings them back. A page's *cold age* is the number of epochs it has stayed parked
//! untouched; pages whose cold age reaches the threshold `T` are demoted. `T` adapts so that
//! promotions (compressed pages touched again) stay under a target fraction of the working
//! set per minute: more promotions than the target raise `T` (demote only colder pages),
//! fewer lower it. Parking and demotion are rate-limited per epoch, and a fast-tier budget,
//! when set, parks more aggressively while more pages are resident than it allows.

pub mod adapter;

/// A page as the host reported it at the end of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSample {
    /// The page.
    pub page: u32,
    /// Its version (commands must name it).
    pub version: u32,
    /// Where it is.
    pub state: PageState,
    /// Touched while parked during the epoch.
    pub touched: bool,
}

/// Where a page is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageState {
    /// In DRAM, in use.
    Resident,
    /// In DRAM, moved aside on probation.
    Parked,
    /// In the compressed tier.
    Compressed,
    /// Holding nothing (never touched, or freed): not part of the working set, never parked.
    Free,
}

/// A command for the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierCommand {
    /// Park `page` (decided at `version`).
    Park {
        /// The page.
        page: u32,
        /// Its version when decided.
        version: u32,
    },
    /// Demote `page` (decided at `version`).
    Demote {
        /// The page.
        page: u32,
        /// Its version when decided.
        version: u32,
    },
}

/// The policy's knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierConfig {
    /// Epoch length, ns.
    pub epoch_ns: u64,
    /// Target promotions per minute, as a fraction of the working set (Google: 0.2 %).
    pub promotion_target_per_min: f64,
    /// Cold-age threshold at start, epochs.
    pub threshold_start: u16,
    /// Bounds of the threshold, epochs.
    pub threshold_min: u16,
    /// Upper bound of the threshold, epochs.
    pub threshold_max: u16,
    /// Most pages parked per epoch.
    pub park_max_per_epoch: u32,
    /// Most pages demoted per epoch.
    pub demote_max_per_epoch: u32,
    /// Most pages resident (DRAM budget), if any.
    pub resident_budget: Option<u32>,
    /// Epochs a page found hot (touched while parked) is left alone before it is probed
    /// again; doubled at each further touch, up to 16 times as long. Every probe of a hot
    /// page costs a fault, so this is most of the tracking cost (AutoNUMA's hint-fault skip).
    pub hot_skip_epochs: u32,
}

impl Default for TierConfig {
    fn default() -> Self {
        TierConfig {
            epoch_ns: 1_000_000_000,
            promotion_target_per_min: 0.002,
            threshold_start: 8,
            threshold_min: 2,
            threshold_max: 240,
            park_max_per_epoch: 4096,
            demote_max_per_epoch: 4096,
            resident_budget: None,
            hot_skip_epochs: 60,
        }
    }
}

/// What the policy did in an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EpochReport {
    /// Pages the host has in DRAM and in use (resident or touched back).
    pub working_set: u32,
    /// Promotions the host reported for the epoch.
    pub promotions: u64,
    /// The threshold after the epoch, epochs.
    pub threshold: u16,
    /// Commands issued.
    pub parks: u32,
    /// Commands issued.
    pub demotes: u32,
}

/// The tiering policy's state for one app (served over `link` by [`adapter::TierAgent`], the
/// agent `Policy`).
#[derive(Debug, Clone)]
pub struct Tiering {
    config: TierConfig,
    /// Cold age per page, epochs (0: not parked, or touched).
    age: Vec<u16>,
    threshold: u16,
    /// Next resident page to consider for parking (CLOCK hand).
    hand: usize,
    /// Epochs seen.
    epoch: u32,
    /// Per page: how many times in a row it was found hot when parked (probing backs off
    /// exponentially: a page it already knows is hot is parked again only after
    /// `hot_skip_epochs << n` epochs, since each probe of a hot page costs a fault).
    backoff: Vec<u8>,
    /// Per page: the first epoch it may be parked again.
    next_probe: Vec<u32>,
    /// Promotions per epoch, smoothed.
    promotion_rate: f64,
    /// Cold-age histogram of parked pages (bucket i: age i, the last bucket: older).
    histogram: [u32; 16],
}

impl Tiering {
    /// A policy for an app of `pages` pages.
    pub fn new(pages: u32, config: TierConfig) -> Tiering {
        let threshold = config.threshold_start.clamp(config.threshold_min, config.threshold_max);
        let n = pages as usize;
        Tiering {
            config,
            age: vec![0; n],
            threshold,
            hand: 0,
            epoch: 0,
            backoff: vec![0; n],
            next_probe: vec![0; n],
            promotion_rate: 0.0,
            histogram: [0; 16],
        }
    }

    /// The current cold-age threshold, epochs.
    pub fn threshold(&self) -> u16 {
        self.threshold
    }

    /// Parked pages by cold age (the last bucket holds every older one).
    pub fn histogram(&self) -> &[u32; 16] {
        &self.histogram
    }

    /// One epoch: the host's samples (one per page, any order; unknown pages are ignored),
    /// and the promotions it counted; appends commands to `out`.
    pub fn on_epoch(
        &mut self,
        samples: &[PageSample],
        promotions: u64,
        out: &mut Vec<TierCommand>,
    ) -> EpochReport {
        let mut report = EpochReport { promotions, ..EpochReport::default() };
        self.histogram = [0; 16];
        let mut cold: Vec<(u16, PageSample)> = Vec::new();
        let mut resident: Vec<PageSample> = Vec::new();
        self.epoch = self.epoch.wrapping_add(1);
        for sample in samples {
            let index = sample.page as usize;
            let Some(age) = self.age.get_mut(index) else { continue };
            if sample.touched {
                let backoff = &mut self.backoff[index];
                let wait = self.config.hot_skip_epochs.max(1) << *backoff;
                *backoff = (*backoff + 1).min(4);
                self.next_probe[index] = self.epoch.saturating_add(wait);
            } else if sample.state == PageState::Parked && *age >= 1 {
                // A full epoch parked and untouched: not hot after all. (A page parked just
                // before the report shows age 0 here and says nothing yet.)
                self.backoff[index] = 0;
            }
            match sample.state {
                PageState::Parked if !sample.touched => {
                    *age = age.saturating_add(1);
                    self.histogram[usize::from(*age).min(15)] += 1;
                    if *age >= self.threshold {
                        cold.push((*age, *sample));
                    }
                }
                PageState::Parked | PageState::Resident => {
                    *age = 0;
                    report.working_set += 1;
                    if sample.state == PageState::Resident && self.next_probe[index] <= self.epoch {
                        resident.push(*sample);
                    }
                }
                PageState::Compressed | PageState::Free => *age = 0,
            }
        }
        self.adapt_threshold(promotions, report.working_set);
        report.threshold = self.threshold;
        // Demote the coldest first, within the rate limit.
        cold.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.page.cmp(&b.1.page)));
        for (_, sample) in cold.iter().take(self.config.demote_max_per_epoch as usize) {
            out.push(TierCommand::Demote { page: sample.page, version: sample.version });
            report.demotes += 1;
        }
        // Park resident pages, CLOCK-style from where the hand stopped; more when over budget.
        let over_budget = self.config.resident_budget.map_or(0, |budget| {
            u32::try_from(resident.len()).unwrap_or(u32::MAX).saturating_sub(budget)
        });
        let parks = (self.config.park_max_per_epoch / 4)
            .max(over_budget)
            .min(self.config.park_max_per_epoch);
        resident.sort_by_key(|s| s.page);
        if !resident.is_empty() {
            let start = resident.partition_point(|s| (s.page as usize) < self.hand);
            for sample in
                resident.iter().cycle().skip(start).take((parks as usize).min(resident.len()))
            {
                out.push(TierCommand::Park { page: sample.page, version: sample.version });
                report.parks += 1;
                self.hand = sample.page as usize + 1;
            }
        }
        report
    }

    /// Raises the threshold when promotions run above the target, lowers it when below.
    /// The promotion rate is smoothed over about a minute of epochs (an epoch holds too few
    /// promotions to judge by), and the threshold moves by a quarter up, one epoch down.
    fn adapt_threshold(&mut self, promotions: u64, working_set: u32) {
        let per_min = 60e9 / self.config.epoch_ns as f64;
        let target = self.config.promotion_target_per_min * f64::from(working_set.max(1)) / per_min;
        let weight = (1.0 / per_min).clamp(0.01, 0.5);
        self.promotion_rate = (1.0 - weight) * self.promotion_rate + weight * promotions as f64;
        let (min, max) = (self.config.threshold_min, self.config.threshold_max);
        if self.promotion_rate > target {
            let raised = self.threshold.saturating_add((self.threshold / 4).max(1));
            self.threshold = raised.clamp(min, max);
        } else if self.promotion_rate < target / 2.0 {
            self.threshold = self.threshold.saturating_sub(1).clamp(min, max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(page: u32, state: PageState, touched: bool) -> PageSample {
        PageSample { page, version: page * 10, state, touched }
    }

    #[test]
    fn untouched_parked_pages_age_into_demotion_and_touched_ones_reset() {
        let config = TierConfig { threshold_start: 3, threshold_min: 3, ..TierConfig::default() };
        let mut policy = Tiering::new(4, config);
        let mut out = Vec::new();
        // Pages 0, 1 parked and never touched; page 2 parked and touched each epoch.
        for epoch in 0..3 {
            out.clear();
            let samples = [
                sample(0, PageState::Parked, false),
                sample(1, PageState::Parked, false),
                sample(2, PageState::Parked, true),
                sample(3, PageState::Resident, false),
            ];
            let report = policy.on_epoch(&samples, 0, &mut out);
            let demoted: Vec<u32> = out
                .iter()
                .filter_map(|c| match c {
                    TierCommand::Demote { page, .. } => Some(*page),
                    TierCommand::Park { .. } => None,
                })
                .collect();
            if epoch < 2 {
                assert!(demoted.is_empty(), "epoch {epoch}: {out:?}");
            } else {
                assert_eq!(demoted, [0, 1], "cold for 3 epochs");
            }
            assert_eq!(report.working_set, 2);
        }
        assert!(out.contains(&TierCommand::Park { page: 3, version: 30 }), "{out:?}");
    }

    #[test]
    fn the_threshold_follows_the_promotion_target() {
        let config = TierConfig {
            epoch_ns: 1_000_000_000,
            promotion_target_per_min: 0.01,
            threshold_start: 8,
            threshold_min: 2,
            threshold_max: 64,
            ..TierConfig::default()
        };
        let mut policy = Tiering::new(6000, config);
        let samples: Vec<PageSample> =
            (0..6000).map(|p| sample(p, PageState::Resident, false)).collect();
        let mut out = Vec::new();
        // Working set 6000, 1 %/min: a target of one promotion per second (epoch).
        policy.on_epoch(&samples, 100, &mut out);
        assert_eq!(policy.threshold(), 10, "too many promotions: colder pages only");
        for _ in 0..300 {
            policy.on_epoch(&samples, 0, &mut out);
        }
        assert_eq!(policy.threshold(), 2, "none for minutes: down to the floor");
        for _ in 0..300 {
            policy.on_epoch(&samples, 30, &mut out);
        }
        assert_eq!(policy.threshold(), 64, "many for minutes: up to the ceiling");
    }

    #[test]
    fn parking_is_rate_limited_and_pushed_by_the_budget() {
        let config = TierConfig {
            park_max_per_epoch: 100,
            resident_budget: Some(500),
            ..TierConfig::default()
        };
        let mut policy = Tiering::new(1000, config);
        let samples: Vec<PageSample> =
            (0..1000).map(|p| sample(p, PageState::Resident, false)).collect();
        let mut out = Vec::new();
        let report = policy.on_epoch(&samples, 0, &mut out);
        assert_eq!(report.parks, 100, "500 over budget, capped by the rate");
        let mut within = Tiering::new(1000, TierConfig { park_max_per_epoch: 100, ..config });
        within.config.resident_budget = None;
        out.clear();
        assert_eq!(within.on_epoch(&samples, 0, &mut out).parks, 25, "a quarter when in budget");
        // The hand moves on: the next epoch parks the next pages.
        let first: Vec<_> = out.clone();
        out.clear();
        within.on_epoch(&samples, 0, &mut out);
        assert_ne!(first, out);
    }

    #[test]
    fn pages_found_hot_are_probed_again_only_after_a_growing_wait() {
        let config =
            TierConfig { park_max_per_epoch: 4, hot_skip_epochs: 2, ..TierConfig::default() };
        let mut policy = Tiering::new(1, config);
        let mut out = Vec::new();
        let mut parked_at = Vec::new();
        // Page 0 is resident and, whenever parked, touched right away (it is hot).
        let mut touched = false;
        for epoch in 1..=40 {
            out.clear();
            let s = sample(0, PageState::Resident, touched);
            policy.on_epoch(&[s], 0, &mut out);
            touched = !out.is_empty();
            if touched {
                parked_at.push(epoch);
            }
        }
        // The touch is seen the epoch after parking; the next probe waits 2, 4, 8, 16 epochs
        // from there: parked at 1, 4, 9, 18, 35. Each probe of a hot page costs a fault.
        assert_eq!(parked_at, [1, 4, 9, 18, 35]);
    }
}
