//! `ipu-cp`: Wave's control plane, standing in for the IPU. It decides; the host enforces.
//!
//! Place in the layers: depends only on `link` (never on host crates). It runs as its own
//! process (`ipu-cp --socket PATH`, offloaded mode) or, as a library, in an agent thread of the
//! app over `link`'s heap transport (on-host mode): the same policy code either way.
//!
//! - [`agent`]: the loop that drains events from every attached app, hands them to the
//!   policy, and posts the policy's decisions back. It holds no policy logic.
//! - [`policy`]: the agent's policy contract and the `echo` policy, which answers each ping.
//! - [`sched`]: scheduling policies (centralized FIFO, Shinjuku), ghOSt style.
//! - [`net`]: connection control (admission, placement, ephemeral ports, neighbours and
//!   routes): the `ConnPolicy` contract, the `admission` policy and its agent adapter.
//! - [`tier`]: the page-tiering policy (cold ages, an adaptive threshold against a
//!   promotion-rate target, rate limits, a DRAM budget), as pure decisions; not yet wired.
//! - [`on_host`]: the agent in a thread of the app (on-host mode).
//! - `process` (feature `cli`): the `ipu-cp` binary as a child process (benchmarks, fault
//!   tests).
//! - [`server`]: the Unix-socket front door: accepts apps, runs the handshake in its own
//!   thread, and hands admitted sessions to the agent.
//!
//! It must never trust what an app writes (every record is parsed and validated; malformed
//! ones are counted and dropped), block its loop on one app, or grow without bound.
#![forbid(unsafe_code)]

pub mod agent;
pub mod net;
pub mod on_host;
pub mod policy;
#[cfg(feature = "cli")]
pub mod process;
pub mod sched;
pub mod server;
pub mod stats;
pub mod tier;

/// Pins the calling thread to `cpu`. Fails if the CPU does not exist or is not allowed.
pub fn pin_current_thread(cpu: usize) -> nix::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
}

/// An epoch for a fresh incarnation: the low 32 bits of the wall clock in microseconds at
/// start. It only needs to differ from the previous incarnation's, which it does unless two
/// starts fall in the same microsecond (or exactly 71.6 minutes apart, to the microsecond).
pub fn fresh_epoch() -> link::proto::Epoch {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let low = now.as_micros() & u128::from(u32::MAX);
    link::proto::Epoch(u32::try_from(low).expect("masked to 32 bits"))
}

/// CPU time (utime + stime) from a /proc `stat` file of a process or thread.
pub fn stat_cpu_ns(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name and state.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
    Some(ticks * 1_000_000_000 / u64::try_from(hz).unwrap_or(100))
}
