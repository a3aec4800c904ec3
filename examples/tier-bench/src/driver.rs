//! Where the tier policy runs: called inline by the driver thread, or behind `link`'s tier
//! service, in an agent thread (on-host) or in the `ipu-cp` process (offloaded). Either way the
//! host reports each page that changed and the end of each epoch, and applies the commands it
//! got, checked against page versions. Over `link` the commands of an epoch are applied at the
//! start of the next one (the host never waits for the policy).

use std::sync::Arc;
use std::time::Duration;

use host_dp::runtime::AgentLink;
use host_dp::tier::TierHost;

use ipu_cp::on_host::{OnHostAgent, OnHostOptions};
use ipu_cp::process::ControlPlane;
use ipu_cp::tier::adapter::TierAgent;
use ipu_cp::tier::{PageSample, PageState, TierCommand, TierConfig, TierPolicy};
use link::proto::{Epoch, Service};
use link::{ChannelConfig, LivenessConfig, MonoNanos};
use memmgr::{Arena, Command, Op, get};

/// Where the policy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Placement {
    /// Called by the driver thread.
    Inline,
    /// In an agent thread, over the heap transport.
    OnHost,
    /// In the `ipu-cp` process, over memfd.
    Offloaded,
}

/// The driver's side of the policy.
pub(crate) enum Driver {
    /// The policy itself.
    Inline(Box<TierPolicy>),
    /// The arena's tier host, attached to an agent.
    Link(Box<Linked>),
}

/// A tier host with what keeps its agent alive.
pub(crate) struct Linked {
    /// The mechanism's side of the link.
    pub(crate) host: TierHost,
    _agent: Option<OnHostAgent>,
    cp: Option<ControlPlane>,
}

impl Driver {
    /// Sets the policy up where `placement` says, for `arena`.
    pub(crate) fn new(
        placement: Placement,
        arena: &Arc<Arena>,
        config: TierConfig,
    ) -> anyhow::Result<Driver> {
        let pages = u32::try_from(arena.pages())?;
        if placement == Placement::Inline {
            return Ok(Driver::Inline(Box::new(TierPolicy::new(pages, config))));
        }
        let shape =
            ChannelConfig { workers: 1, ring_capacity: 4096, prestage_slots: 1, delay_ns: 0 };
        let liveness =
            LivenessConfig { heartbeat_interval_ns: 100_000, peer_timeout_ns: 5_000_000_000 };
        let (link, agent, cp) = if placement == Placement::OnHost {
            let now = MonoNanos::now();
            let (end, cp_end) = link::channel::heap_pair(shape, liveness, Epoch(1), Epoch(2), now)?;
            let options = OnHostOptions::default();
            let agent = OnHostAgent::start(Box::new(TierAgent::new(config)), cp_end, options)?;
            (AgentLink { end, session: None }, Some(agent), None)
        } else {
            let exe = ipu_cp::process::binary_next_to_exe()
                .ok_or_else(|| anyhow::anyhow!("no ipu-cp next to this binary"))?;
            let epoch_ms = (config.epoch_ns / 1_000_000).max(1).to_string();
            let target = config.promotion_target_per_min.to_string();
            let args = ["--tier-epoch-ms", &epoch_ms, "--tier-promotion-target", &target];
            let cp = ControlPlane::start(&exe, "tier", &args.map(String::from), false)?;
            let timeout = Duration::from_secs(5);
            let conn = link::transport::connect(
                &cp.socket,
                Service::Tier,
                shape,
                Epoch(1),
                liveness,
                timeout,
            )?;
            (AgentLink { end: conn.end, session: Some(conn.stream) }, None, Some(cp))
        };
        let mut host = TierHost::new(arena.clone());
        host.attach(link, MonoNanos::now()).map_err(anyhow::Error::msg)?;
        Ok(Driver::Link(Box::new(Linked { host, _agent: agent, cp })))
    }

    /// One epoch: decide (inline) or report and apply (over `link`).
    pub(crate) fn epoch(&mut self, arena: &Arena, promotions: u64) -> anyhow::Result<()> {
        match self {
            Driver::Inline(policy) => {
                let samples: Vec<PageSample> = (0..arena.pages())
                    .map(|page| sample(arena, page))
                    .collect::<anyhow::Result<_>>()?;
                let mut commands = Vec::new();
                policy.on_epoch(&samples, promotions, &mut commands);
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
                arena.reclaim();
            }
            Driver::Link(linked) => linked.host.epoch(MonoNanos::now())?,
        }
        Ok(())
    }

    /// Keeps the link's heartbeat (every millisecond).
    pub(crate) fn tick(&mut self) {
        if let Driver::Link(linked) = self {
            linked.host.tick(MonoNanos::now());
        }
    }

    /// The tier host's counters, over `link`.
    pub(crate) fn host_stats(&self) -> Option<host_dp::tier::TierHostStats> {
        match self {
            Driver::Inline(_) => None,
            Driver::Link(linked) => Some(linked.host.stats()),
        }
    }

    /// CPU time of the `ipu-cp` process (offloaded only).
    pub(crate) fn control_plane_cpu_ns(&self) -> Option<u64> {
        match self {
            Driver::Link(linked) => linked.cp.as_ref().map(ControlPlane::cpu_ns),
            Driver::Inline(_) => None,
        }
    }

    /// The threshold, where the policy is ours to ask.
    pub(crate) fn threshold(&self) -> Option<u16> {
        match self {
            Driver::Inline(policy) => Some(policy.threshold()),
            Driver::Link(_) => None,
        }
    }
}

fn sample(arena: &Arena, page: usize) -> anyhow::Result<PageSample> {
    let view = arena.view(page);
    let state = if view.compressed {
        PageState::Compressed
    } else if view.parked {
        PageState::Parked
    } else {
        PageState::Resident
    };
    let touched = arena.take_touched(page);
    Ok(PageSample { page: u32::try_from(page)?, version: view.version, state, touched })
}

/// Promotions so far, for the epoch deltas.
pub(crate) fn promotions(arena: &Arena) -> u64 {
    get(&arena.counters().promotions)
}
