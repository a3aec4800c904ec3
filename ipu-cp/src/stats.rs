//! The control plane's counters. The agent thread is their only writer (relaxed adds, once
//! per batch); observers read them any time. [`Stats::export`] copies them into the
//! `metrics` facade, where the binary's recorder (or any recorder an embedding app installs)
//! picks them up.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! stats {
    ($($field:ident: $doc:literal,)*) => {
        /// Counters of one control plane.
        #[derive(Debug, Default)]
        pub struct Stats {
            $(#[doc = $doc] pub $field: AtomicU64,)*
        }

        /// A copy of [`Stats`] at one moment.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $(#[doc = $doc] pub $field: u64,)*
        }

        impl Stats {
            /// Reads every counter.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($field: self.$field.load(Ordering::Relaxed),)* }
            }

            /// Publishes every counter to the `metrics` facade as `ipu_cp_<name>`;
            /// `apps_active`, which goes down as well as up, as a gauge.
            pub fn export(&self) {
                $(
                    let value = self.$field.load(Ordering::Relaxed);
                    let name = concat!("ipu_cp_", stringify!($field));
                    if stringify!($field) == "apps_active" {
                        metrics::gauge!(name).set(value as f64);
                    } else {
                        metrics::counter!(name).absolute(value);
                    }
                )*
            }
        }

        impl std::fmt::Display for StatsSnapshot {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut first = true;
                $(
                    if !first { f.write_str(" ")?; }
                    first = false;
                    write!(f, "{}={}", stringify!($field), self.$field)?;
                )*
                let _ = first;
                Ok(())
            }
        }
    };
}

stats! {
    events: "Events drained from all apps.",
    decisions: "Decisions posted to all apps.",
    prestaged: "Decisions of those that went to a prestage slot.",
    failed_commits: "Prestaged decisions the host reported stale or rejected.",
    malformed_events: "Events that failed to parse or came the wrong way (dropped).",
    stray_txn_results: "TxnResult events naming no in-flight prestaged decision (dropped).",
    invalid_decisions: "Decisions a policy aimed at a worker the app does not have (dropped).",
    backpressure_stalls: "Times an app's decision ring was full and its events were left queued.",
    apps_admitted: "Apps that completed the handshake.",
    apps_refused: "Connections refused during the handshake.",
    apps_closed: "Apps that detached in order.",
    apps_lost: "Apps whose heartbeat stopped or whose socket hung up.",
    apps_active: "Apps attached now (admitted minus closed minus lost).",
}

impl Stats {
    /// Adds `n` to a counter. Only the agent thread writes; Relaxed suffices for counters.
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}
