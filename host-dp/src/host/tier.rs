//! Page tiering attached to an arena as a config says: what the builder does for the arena it
//! makes, public for benchmarks that step the tier host's epochs themselves
//! (`examples/tier-bench`).

use std::sync::Arc;
use std::time::Duration;

use ipu_cp::on_host::OnHostAgent;
use link::MonoNanos;

use super::HostError;
use super::config::{HostConfig, ServiceMode, TierSettings};
use super::services::{agent_options, attach_error, delayed, shape, socket_of, until_answered};
use crate::runtime::Reattach;
use crate::tier::{TierHost, TierThread};

/// `arena`'s tier host with its agent as `config.tier.mode` chose: none (the arena stays
/// resident), `ipu-cp`'s tier policy in a thread (on-host, with `config.tier`'s settings), or
/// a session with `ipu-cp` (offloaded, its own policy settings) and a way to re-attach.
pub struct TierService {
    /// The mechanism: call its `tick` every millisecond and `epoch` once an epoch, or hand it
    /// to a [`TierThread`] with [`TierService::spawn`].
    pub host: TierHost,
    agent: Option<OnHostAgent>,
    reattach: Option<Reattach>,
}

impl std::fmt::Debug for TierService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierService")
            .field("attached", &self.host.is_attached())
            .field("on_host_agent", &self.agent.is_some())
            .field("reattach", &self.reattach.is_some())
            .finish()
    }
}

/// The tier policy's settings as `ipu-cp`'s library takes them.
fn policy_config(settings: &TierSettings) -> ipu_cp::tier::TierConfig {
    ipu_cp::tier::TierConfig {
        epoch_ns: settings.epoch_ms.saturating_mul(1_000_000),
        promotion_target_per_min: settings.promotion_target_per_min,
        threshold_start: settings.threshold_start,
        park_max_per_epoch: settings.park_max_per_epoch,
        demote_max_per_epoch: settings.demote_max_per_epoch,
        hot_skip_epochs: settings.hot_skip_epochs,
        ..ipu_cp::tier::TierConfig::default()
    }
}

impl TierService {
    /// Attaches `arena`'s tiering as `config` says (`tier`, `agent`, `liveness`, `ipu_cp`).
    pub fn attach(
        arena: &Arc<memmgr::Arena>,
        config: &HostConfig,
    ) -> Result<TierService, HostError> {
        let error = attach_error("page tiering");
        let mut host = TierHost::new(arena.clone());
        let channel = shape(1, 4096, 1);
        let liveness = config.liveness.link();
        let (mut agent, mut reattach) = (None, None);
        match config.tier.mode {
            ServiceMode::Local => {}
            ServiceMode::OnHost => {
                use ipu_cp::tier::adapter::TierAgent;
                let now = MonoNanos::now();
                let (link, cp) = crate::tier::heap_pair(arena, channel, liveness, now)
                    .map_err(|e| error(e.to_string()))?;
                let policy = Box::new(TierAgent::new(policy_config(&config.tier)));
                agent = Some(OnHostAgent::start(policy, cp, agent_options(config))?);
                host.attach(link, now).map_err(|e| error(e.to_string()))?;
            }
            ServiceMode::Offloaded => {
                let (socket, tiered) = (socket_of(config), arena.clone());
                let channel = delayed(channel, config);
                let timeout = Duration::from_millis(config.liveness.connect_timeout_ms);
                let mut connect: Reattach = Box::new(move || {
                    crate::tier::connect(&tiered, &socket, channel, liveness, timeout).ok()
                });
                // The first attach tries again while ipu-cp starts (up to the timeout).
                let link = until_answered(timeout, &mut connect)
                    .ok_or_else(|| error("ipu-cp did not answer".into()))?;
                host.attach(link, MonoNanos::now()).map_err(|e| error(e.to_string()))?;
                reattach = Some(connect);
            }
        }
        Ok(TierService { host, agent, reattach })
    }

    /// CPU time the on-host agent thread used so far (10 ms resolution), ns; `None` without
    /// one.
    pub fn agent_cpu_ns(&self) -> Option<u64> {
        self.agent.as_ref()?.cpu_ns()
    }

    /// Runs the tier host on its own thread, an epoch every `epoch`, re-attaching a lost
    /// offloaded agent; returns the thread and the on-host agent (stop it after the thread).
    pub fn spawn(self, epoch: Duration) -> std::io::Result<(TierThread, Option<OnHostAgent>)> {
        let TierService { host, agent, reattach } = self;
        Ok((TierThread::spawn(host, epoch, reattach)?, agent))
    }
}
