//! Connection control: admission, placement, ephemeral ports, neighbours and routes.
//!
//! A [`ConnPolicy`] decides; [`adapter::NetAgent`] hosts it in the agent, keeps the counts it
//! decides on (connections per listener, per tenant across every app, per worker, admissions
//! prestaged and not yet used) and translates to and from `link` records. [`Admission`] is
//! the policy `ipu-cp` ships: static limits, a token-bucket SYN rate limit per listener,
//! least-loaded placement.

pub mod adapter;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;

use link::MonoNanos;
use link::proto::{AppId, RefuseReason, WorkerId};

/// What a policy knows of a listener when it decides on one more connection to it. Counts
/// include admissions granted but not yet used (prestaged tokens, answered requests), so a
/// limit holds even while tokens are outstanding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLoad {
    /// The app.
    pub app: AppId,
    /// The listener's port.
    pub port: u16,
    /// Its tenant.
    pub tenant: u16,
    /// Its connections (open and granted).
    pub conns: u32,
    /// Its tenant's connections over every app (open and granted).
    pub tenant_conns: u32,
}

/// A connection-control policy: pure decisions over counts the adapter keeps.
pub trait ConnPolicy: Send {
    /// Its name.
    fn name(&self) -> &'static str;
    /// May one more connection to `listener` be admitted now? An admission consumes rate
    /// budget whether it is used at once (a request) or prestaged (a token).
    fn admit(&mut self, listener: &ListenerLoad, now: MonoNanos) -> Result<(), RefuseReason>;
    /// Which worker gets a connection, given each worker's connections (open and granted).
    fn place(&mut self, listener: &ListenerLoad, worker_conns: &[u32]) -> WorkerId;
    /// Admissions kept prestaged per listener (0: every SYN asks across the link).
    fn prestage_depth(&self) -> u16;
    /// Ephemeral ports per lease.
    fn port_block(&self) -> u16;
    /// Neighbours every app's stacks learn: (address, Ethernet address).
    fn neighbors(&self) -> &[(Ipv4Addr, [u8; 6])];
    /// Routes every app's stacks learn: (prefix, length, gateway).
    fn routes(&self) -> &[(Ipv4Addr, u8, Ipv4Addr)];
    /// `app` left: forget what the policy keeps for it.
    fn on_app_detached(&mut self, _app: AppId) {}
}

/// The knobs of [`Admission`].
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionConfig {
    /// Most connections per listener.
    pub max_per_listener: u32,
    /// Most connections per tenant, over every app.
    pub max_per_tenant: u32,
    /// SYNs admitted per second per listener, sustained (0: no limit).
    pub syn_rate_per_s: u32,
    /// SYNs admitted at once beyond the rate (the bucket's size).
    pub syn_burst: u32,
    /// Admissions kept prestaged per listener.
    pub prestage_depth: u16,
    /// Ephemeral ports per lease.
    pub port_block: u16,
    /// Static neighbours pushed to every app.
    pub neighbors: Vec<(Ipv4Addr, [u8; 6])>,
    /// Static routes pushed to every app.
    pub routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_per_listener: 65_536,
            max_per_tenant: 1 << 20,
            syn_rate_per_s: 0,
            syn_burst: 64,
            prestage_depth: 8,
            port_block: 1024,
            neighbors: Vec::new(),
            routes: Vec::new(),
        }
    }
}

/// Static limits, a token bucket per listener, least-loaded placement.
#[derive(Debug)]
pub struct Admission {
    config: AdmissionConfig,
    /// Per (app, listener): tokens left (in millionths of a SYN) and when last refilled.
    buckets: std::collections::HashMap<(AppId, u16), (u64, MonoNanos)>,
}

const MICRO: u64 = 1_000_000;

impl Admission {
    /// The policy with `config`.
    pub fn new(config: AdmissionConfig) -> Admission {
        Admission { config, buckets: std::collections::HashMap::new() }
    }

    /// Takes one SYN's worth from the listener's bucket, refilled at the configured rate.
    fn take_rate(&mut self, listener: &ListenerLoad, now: MonoNanos) -> bool {
        let rate = u64::from(self.config.syn_rate_per_s);
        if rate == 0 {
            return true;
        }
        let full = u64::from(self.config.syn_burst.max(1)) * MICRO;
        let (tokens, last) =
            self.buckets.entry((listener.app, listener.port)).or_insert((full, now));
        // rate SYN/s = rate µSYN/µs = rate/1000 µSYN/ns.
        let refill = now.since(*last).saturating_mul(rate) / 1_000;
        *tokens = tokens.saturating_add(refill).min(full);
        *last = now;
        if *tokens >= MICRO {
            *tokens -= MICRO;
            true
        } else {
            false
        }
    }
}

impl ConnPolicy for Admission {
    fn name(&self) -> &'static str {
        "admission"
    }

    fn admit(&mut self, listener: &ListenerLoad, now: MonoNanos) -> Result<(), RefuseReason> {
        if listener.conns >= self.config.max_per_listener {
            return Err(RefuseReason::ListenerFull);
        }
        if listener.tenant_conns >= self.config.max_per_tenant {
            return Err(RefuseReason::TenantFull);
        }
        if !self.take_rate(listener, now) {
            return Err(RefuseReason::RateLimited);
        }
        Ok(())
    }

    fn place(&mut self, _listener: &ListenerLoad, worker_conns: &[u32]) -> WorkerId {
        let least = worker_conns.iter().enumerate().min_by_key(|&(_, &n)| n).map_or(0, |(w, _)| w);
        WorkerId(u16::try_from(least).unwrap_or(0))
    }

    fn prestage_depth(&self) -> u16 {
        self.config.prestage_depth
    }

    fn port_block(&self) -> u16 {
        self.config.port_block
    }

    fn neighbors(&self) -> &[(Ipv4Addr, [u8; 6])] {
        &self.config.neighbors
    }

    fn routes(&self) -> &[(Ipv4Addr, u8, Ipv4Addr)] {
        &self.config.routes
    }

    fn on_app_detached(&mut self, app: AppId) {
        self.buckets.retain(|(a, _), _| *a != app);
    }
}
