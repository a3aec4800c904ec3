//! What manages the arena: nothing, random demotion, or the tier policy. Where the policy
//! runs: called inline by the driver thread, or behind `link`'s tier
//! service, in an agent thread (on-host) or in the `ipu-cp` process (offloaded). Over `link`
//! the policy reads the arena's page-state table (shared at attach) at each epoch's end, and
//! the host applies the commands it got, checked against page versions, at the start of the
//! next epoch (the host never waits for the policy).

use std::sync::Arc;

use host_dp::host::{AgentSettings, LivenessSettings, TierService, TierSettings};
use host_dp::{HostConfig, ServiceMode};
use ipu_cp::process::ControlPlane;
use ipu_cp::tier::{PageSample, PageState, TierCommand, TierConfig, Tiering};
use link::MonoNanos;
use memmgr::{Arena, Command, Op, get};

use crate::workload::next;

/// What manages the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Setup {
    /// Nothing: every page stays resident (the baseline; also the kernel baseline, when the
    /// script runs it in a memory-limited cgroup with zram swap).
    Resident,
    /// The tier policy, called by the driver thread.
    Inline,
    /// The tier policy in an agent thread, over `link`'s heap transport.
    OnHost,
    /// The tier policy in the `ipu-cp` process, over memfd.
    Offloaded,
    /// No policy: random pages demoted to keep `--random-percent` of the arena compressed
    /// (the lower bound a policy must beat).
    Random,
}

/// The driver's side of the policy.
pub(crate) enum Driver {
    /// The policy itself, the CPU time spent in it, and the promotions it was told of.
    Inline(Box<Tiering>, u64, u64),
    /// Random demotion to a target share of the arena.
    Random {
        /// The target, pages.
        target: u64,
        /// Most demotions per epoch.
        per_epoch: u64,
        /// Generator state.
        rng: u64,
    },
    /// The arena's tier host, attached to an agent.
    Link(Box<Linked>),
}

/// A tier host with what keeps its agent alive: the builder's tier service (its host and
/// agent thread), and the `ipu-cp` process when offloaded.
pub(crate) struct Linked {
    service: TierService,
    cp: Option<ControlPlane>,
}

impl Driver {
    /// Sets `setup` up for `arena` (`None`: all resident).
    pub(crate) fn new(
        setup: Setup,
        arena: &Arc<Arena>,
        config: TierConfig,
        random_percent: u64,
        cpu: Option<usize>,
    ) -> anyhow::Result<Option<Driver>> {
        let pages = u32::try_from(arena.pages())?;
        match setup {
            Setup::Resident => return Ok(None),
            Setup::Inline => {
                let policy = Box::new(Tiering::new(pages, config));
                return Ok(Some(Driver::Inline(policy, 0, 0)));
            }
            Setup::Random => {
                let target = u64::from(pages) * random_percent.min(100) / 100;
                let per_epoch = u64::from(config.demote_max_per_epoch);
                return Ok(Some(Driver::Random { target, per_epoch, rng: 0x5eed }));
            }
            Setup::OnHost | Setup::Offloaded => {}
        }
        let tier = TierSettings {
            mode: if setup == Setup::OnHost { ServiceMode::OnHost } else { ServiceMode::Offloaded },
            arena_mb: arena.pages() / 256,
            epoch_ms: (config.epoch_ns / 1_000_000).max(1),
            promotion_target_per_min: config.promotion_target_per_min,
            threshold_start: config.threshold_start,
            park_max_per_epoch: config.park_max_per_epoch,
            demote_max_per_epoch: config.demote_max_per_epoch,
            hot_skip_epochs: config.hot_skip_epochs,
        };
        let agent = AgentSettings { cpu, ..AgentSettings::default() };
        let liveness = LivenessSettings { peer_timeout_ms: 5000, ..LivenessSettings::default() };
        let mut host_config = HostConfig { tier, agent, liveness, ..HostConfig::default() };
        let cp = if setup == Setup::Offloaded {
            let exe = ipu_cp::process::binary_next_to_exe()
                .ok_or_else(|| anyhow::anyhow!("no ipu-cp next to this binary"))?;
            let settings = &host_config.tier;
            let (epoch_ms, target) =
                (settings.epoch_ms.to_string(), settings.promotion_target_per_min.to_string());
            let (start, parks, demotes, skip) = (
                settings.threshold_start.to_string(),
                settings.park_max_per_epoch.to_string(),
                settings.demote_max_per_epoch.to_string(),
                settings.hot_skip_epochs.to_string(),
            );
            let cpu_arg = cpu.map(|c| ["--cpu".to_string(), c.to_string()]);
            let args = [
                "--tier-epoch-ms",
                &epoch_ms,
                "--tier-promotion-target",
                &target,
                "--tier-threshold-start",
                &start,
                "--tier-park-max",
                &parks,
                "--tier-demote-max",
                &demotes,
                "--tier-hot-skip-epochs",
                &skip,
            ];
            let mut args: Vec<String> = args.map(String::from).to_vec();
            args.extend(cpu_arg.into_iter().flatten());
            let cp = ControlPlane::start(&exe, "tier", &args, false)?;
            host_config.ipu_cp = Some(cp.socket.clone());
            Some(cp)
        } else {
            None
        };
        let service = TierService::attach(arena, &host_config)?;
        Ok(Some(Driver::Link(Box::new(Linked { service, cp }))))
    }

    /// One epoch: decide (inline) or report and apply (over `link`).
    pub(crate) fn epoch(&mut self, arena: &Arena) -> anyhow::Result<()> {
        match self {
            Driver::Inline(policy, policy_ns, told) => {
                let total = get(&arena.counters().promotions);
                let promotions = total - std::mem::replace(told, total);
                let samples: Vec<PageSample> = (0..arena.pages())
                    .map(|page| sample(arena, page))
                    .collect::<anyhow::Result<_>>()?;
                let mut commands = Vec::new();
                let began = crate::workload::thread_cpu_ns();
                policy.on_epoch(&samples, promotions, &mut commands);
                *policy_ns += crate::workload::thread_cpu_ns().saturating_sub(began);
                let batch: Vec<Command> = commands
                    .iter()
                    .map(|c| match *c {
                        TierCommand::Park { page, version } => {
                            Command { page, version, op: Op::Park }
                        }
                        TierCommand::Demote { page, version } => {
                            Command { page, version, op: Op::Demote }
                        }
                    })
                    .collect();
                arena.apply(&batch)?;
                arena.track_writes()?;
                arena.reclaim();
            }
            Driver::Link(linked) => linked.service.host.epoch(MonoNanos::now())?,
            Driver::Random { target, per_epoch, rng } => {
                arena.track_writes()?;
                arena.reclaim();
                let counters = arena.counters();
                let compressed = get(&counters.demotions) - get(&counters.promotions);
                let wanted = target.saturating_sub(compressed).min(*per_epoch);
                let (mut done, mut tries) = (0, 0);
                while done < wanted && tries < 4 * wanted {
                    tries += 1;
                    let page = usize::try_from(next(rng) % arena.pages() as u64)?;
                    if arena.demote(page)? {
                        done += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// CPU time of the policy so far, ns: the inline calls, the agent thread, or the
    /// `ipu-cp` process (`None`: no policy).
    pub(crate) fn policy_cpu_ns(&self) -> Option<u64> {
        match self {
            Driver::Inline(_, ns, _) => Some(*ns),
            Driver::Random { .. } => None,
            Driver::Link(linked) => match &linked.cp {
                Some(cp) => Some(cp.cpu_ns()),
                None => linked.service.agent_cpu_ns(),
            },
        }
    }

    /// Keeps the link's heartbeat (every millisecond).
    pub(crate) fn tick(&mut self) {
        if let Driver::Link(linked) = self {
            linked.service.host.tick(MonoNanos::now());
        }
    }

    /// The tier host's counters, over `link`.
    pub(crate) fn host_stats(&self) -> Option<host_dp::tier::TierHostStats> {
        match self {
            Driver::Link(linked) => Some(linked.service.host.stats()),
            _ => None,
        }
    }

    /// The threshold, where the policy is ours to ask.
    pub(crate) fn threshold(&self) -> Option<u16> {
        match self {
            Driver::Inline(policy, ..) => Some(policy.threshold()),
            _ => None,
        }
    }
}

fn sample(arena: &Arena, page: usize) -> anyhow::Result<PageSample> {
    let view = arena.view(page);
    let state = if view.free {
        PageState::Free
    } else if view.compressed {
        PageState::Compressed
    } else if view.parked {
        PageState::Parked
    } else {
        PageState::Resident
    };
    let touched = arena.take_touched(page);
    Ok(PageSample { page: u32::try_from(page)?, version: view.version, state, touched })
}
