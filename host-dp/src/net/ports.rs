//! Ephemeral ports for outgoing connections: leased by the control plane in blocks (so that
//! apps sharing an address never pick the same one), or a static local range while no agent
//! is there to lease any.
//!
//! When an agent attaches, everything handed out before (the local range, leases of an
//! agent that was lost: a restarted one remembers none of them) is withdrawn: its free ports
//! go, and its ports in use are dropped when freed.

use std::ops::Range;

/// Free ports, leased and local.
#[derive(Debug, Default)]
pub(super) struct PortPool {
    free: Vec<u16>,
    /// Ranges handed out by the current source (local range or the current agent's leases).
    current: Vec<Range<u32>>,
    /// Ranges of earlier sources: their ports are not reused.
    withdrawn: Vec<Range<u32>>,
    leased: usize,
    local: bool,
    asked: bool,
}

impl PortPool {
    /// Makes `range` usable while there is no agent (no-op if it is already).
    pub(super) fn add_local(&mut self, range: Range<u16>) {
        if !self.local {
            self.local = true;
            self.add(u32::from(range.start)..u32::from(range.end));
        }
    }

    /// A new agent leases ports from now on: withdraw everything handed out before.
    pub(super) fn withdraw_all(&mut self) {
        self.withdrawn.append(&mut self.current);
        self.free.clear();
        self.leased = 0;
        self.local = false;
        self.asked = false;
    }

    /// Adds a lease; false (nothing added) unless it is a non-empty range of unprivileged
    /// ports.
    pub(super) fn add_lease(&mut self, first: u16, count: u16) -> bool {
        let end = u32::from(first) + u32::from(count);
        if first < 1024 || count == 0 || end > 65_536 {
            return false;
        }
        self.add(u32::from(first)..end);
        self.leased += usize::from(count);
        self.asked = false;
        true
    }

    fn add(&mut self, range: Range<u32>) {
        self.withdrawn.retain(|w| w.end <= range.start || w.start >= range.end);
        self.free.extend(range.clone().filter_map(|p| u16::try_from(p).ok()).filter(|&p| p != 0));
        self.current.push(range);
    }

    /// A free port.
    pub(super) fn alloc(&mut self) -> Option<u16> {
        self.free.pop()
    }

    /// Returns `port` to the pool, unless its range was withdrawn.
    pub(super) fn free(&mut self, port: u16) {
        let port32 = u32::from(port);
        if self.current.iter().any(|r| r.contains(&port32)) {
            self.free.push(port);
        }
    }

    /// True once per shortage: leases are running low (under a quarter left).
    pub(super) fn want_more(&mut self) -> bool {
        if self.leased == 0 || self.asked || self.free.len() * 4 >= self.leased {
            return false;
        }
        self.asked = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withdrawn_ports_are_not_reused_and_leases_are_checked() {
        let mut pool = PortPool::default();
        pool.add_local(60_000..60_002);
        let a = pool.alloc().unwrap();
        pool.withdraw_all();
        assert_eq!(pool.alloc(), None, "no lease yet");
        assert!(!pool.add_lease(80, 10) && !pool.add_lease(65_530, 10) && !pool.add_lease(2000, 0));
        assert!(pool.add_lease(50_000, 4));
        pool.free(a);
        let mut got: Vec<u16> = std::iter::from_fn(|| pool.alloc()).collect();
        got.sort_unstable();
        assert_eq!(got, [50_000, 50_001, 50_002, 50_003], "the old local port is gone");
        assert!(pool.want_more() && !pool.want_more(), "asks once per shortage");
    }
}
