//! The two ends of a channel: per-worker rings and slots plus liveness, over one region.
//!
//! The control plane *formats* a region (writes the superblock) and builds a [`CpEnd`]; the
//! host *attaches* to it, validating the superblock, and builds a [`HostEnd`]. Worker parts
//! are plain values meant to be moved to the thread that owns them.

use std::sync::Arc;

use crate::clock::MonoNanos;
use crate::layout::{ChannelConfig, ConfigError, Layout, SuperblockError};
use crate::liveness::{Heartbeat, Liveness, LivenessConfig, PeerWatch};
use crate::proto::{AppId, Epoch, WorkerId};
use crate::region::Region;
use crate::ring::{Consumer, Producer};
use crate::tier_table::PageTableView;
use crate::txn::{AgentSlots, HostSlots};

/// One host worker's end: it produces events, consumes decisions and claims prestaged ones.
#[derive(Debug)]
pub struct HostWorker {
    /// Which worker.
    pub worker: WorkerId,
    /// Host → control plane.
    pub events: Producer,
    /// Control plane → host.
    pub decisions: Consumer,
    /// Prestaged decisions for this worker.
    pub slots: HostSlots,
}

/// The control plane's end for one host worker.
#[derive(Debug)]
pub struct CpWorker {
    /// Which worker.
    pub worker: WorkerId,
    /// Host → control plane.
    pub events: Consumer,
    /// Control plane → host.
    pub decisions: Producer,
    /// Prestage slots of this worker.
    pub slots: AgentSlots,
}

/// The host's end of a channel.
#[derive(Debug)]
pub struct HostEnd {
    /// The app id the control plane assigned.
    pub app: AppId,
    /// The layout read from the superblock.
    pub layout: Layout,
    /// One per worker, in worker order.
    pub workers: Vec<HostWorker>,
    /// Our heartbeat and the watch over the control plane's.
    pub liveness: Liveness,
}

/// The control plane's end of a channel.
#[derive(Debug)]
pub struct CpEnd {
    /// The app this channel serves.
    pub app: AppId,
    /// The layout.
    pub layout: Layout,
    /// One per host worker, in worker order.
    pub workers: Vec<CpWorker>,
    /// Our heartbeat and the watch over the host's.
    pub liveness: Liveness,
    /// The host's page-state table, read-only: shared by a tier-service app at the
    /// handshake (or, in process, set by whoever made the pair); `None` for other services.
    pub page_table: Option<Arc<PageTableView>>,
}

impl CpEnd {
    /// Formats `region` for `layout` and builds the control plane's end.
    pub fn format(
        region: Arc<Region>,
        layout: Layout,
        app: AppId,
        epoch: Epoch,
        liveness: LivenessConfig,
        now: MonoNanos,
    ) -> CpEnd {
        layout.format(&region, app);
        CpEnd::attach_existing(region, layout, app, epoch, liveness, now)
    }

    /// Builds the control plane's end over a region already formatted for `layout` (by this
    /// process or a trusted one, e.g. a benchmark's parent).
    pub fn attach_existing(
        region: Arc<Region>,
        layout: Layout,
        app: AppId,
        epoch: Epoch,
        liveness: LivenessConfig,
        now: MonoNanos,
    ) -> CpEnd {
        let workers = (0..layout.config().workers)
            .map(|w| CpWorker {
                worker: WorkerId(w),
                events: Consumer::new(region.clone(), layout.event_ring(w)),
                decisions: Producer::new(region.clone(), layout.decision_ring(w)),
                slots: AgentSlots::new(region.clone(), layout.slots(w)),
            })
            .collect();
        let heartbeat = Heartbeat::start(
            region.clone(),
            layout.cp_heartbeat(),
            epoch,
            liveness.heartbeat_interval_ns,
            now,
        );
        let peer = PeerWatch::new(region, layout.host_heartbeat(), liveness.peer_timeout_ns, now);
        CpEnd { app, layout, workers, liveness: Liveness { heartbeat, peer }, page_table: None }
    }
}

impl HostEnd {
    /// Validates the superblock of `region` and builds the host's end.
    pub fn attach(
        region: Arc<Region>,
        epoch: Epoch,
        liveness: LivenessConfig,
        now: MonoNanos,
    ) -> Result<HostEnd, SuperblockError> {
        let (layout, app) = Layout::read_superblock(&region)?;
        let workers = (0..layout.config().workers)
            .map(|w| HostWorker {
                worker: WorkerId(w),
                events: Producer::new(region.clone(), layout.event_ring(w)),
                decisions: Consumer::new(region.clone(), layout.decision_ring(w)),
                slots: HostSlots::new(region.clone(), layout.slots(w), WorkerId(w)),
            })
            .collect();
        let heartbeat = Heartbeat::start(
            region.clone(),
            layout.host_heartbeat(),
            epoch,
            liveness.heartbeat_interval_ns,
            now,
        );
        let peer = PeerWatch::new(region, layout.cp_heartbeat(), liveness.peer_timeout_ns, now);
        Ok(HostEnd { app, layout, workers, liveness: Liveness { heartbeat, peer } })
    }
}

/// Both ends of a channel over a heap region: the in-process (`heap`) transport, used by
/// tests and by the on-host mode, where the agent runs in a thread of the app.
pub fn heap_pair(
    config: ChannelConfig,
    liveness: LivenessConfig,
    host_epoch: Epoch,
    cp_epoch: Epoch,
    now: MonoNanos,
) -> Result<(HostEnd, CpEnd), ConfigError> {
    let layout = Layout::new(config)?;
    let region = Arc::new(Region::heap(layout.total_len()).expect("heap channel region"));
    let cp = CpEnd::format(region.clone(), layout, AppId::new(0, 1), cp_epoch, liveness, now);
    let host = HostEnd::attach(region, host_epoch, liveness, now)
        .expect("a region we formatted ourselves validates");
    Ok((host, cp))
}
