//! Runs a scheduling policy inside the agent: one [`SchedPolicy`] per attached app, fed from
//! that app's task and worker events, its decisions posted to the target worker's ring. Not a
//! policy itself: translation only.
//!
//! The ring an event arrives on names the worker; the worker fields inside events are not
//! trusted for that. A worker exists for the policy once it reports itself idle, so an app may
//! open extra lanes (e.g. one for spawns from threads outside the runtime) that never get
//! work. With prestaging on, Run decisions go to the worker's transaction slots.

use std::collections::HashMap;

use link::MonoNanos;
use link::proto::{AppId, Message, TaskChange, TxnOutcome, WorkerId};

use super::{SchedDecision, SchedPolicy};
use crate::policy::{Decisions, Delivery, Policy, SchedConfig};

/// The agent-side host of a scheduling policy.
pub struct SchedAgent {
    name: &'static str,
    config: SchedConfig,
    apps: HashMap<AppId, Box<dyn SchedPolicy>>,
    scratch: Vec<SchedDecision>,
}

impl std::fmt::Debug for SchedAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedAgent")
            .field("policy", &self.name)
            .field("apps", &self.apps.len())
            .finish()
    }
}

impl SchedAgent {
    /// Hosts policy `name` (see [`super::SCHED_POLICY_NAMES`]) for every app.
    pub fn new(name: &'static str, config: SchedConfig) -> SchedAgent {
        SchedAgent { name, config, apps: HashMap::new(), scratch: Vec::new() }
    }
}

impl Policy for SchedAgent {
    fn name(&self) -> &'static str {
        self.name
    }

    fn on_app_attached(&mut self, app: AppId, _shape: link::ChannelConfig) {
        let Some(policy) = super::by_name(self.name, self.config) else { return };
        self.apps.insert(app, policy);
    }

    fn on_app_detached(&mut self, app: AppId) {
        self.apps.remove(&app);
    }

    fn on_event(
        &mut self,
        app: AppId,
        worker: WorkerId,
        event: &Message,
        now: MonoNanos,
        _: &mut Decisions,
    ) {
        let Some(policy) = self.apps.get_mut(&app) else { return };
        match event {
            Message::Task(e) => match e.change {
                TaskChange::New => policy.on_task_new(e.task, e.seq, now),
                TaskChange::Runnable => policy.on_task_runnable(e.task, e.seq, now),
                TaskChange::Blocked => policy.on_task_blocked(e.task, e.seq, worker, now),
                TaskChange::Preempted => policy.on_task_preempted(e.task, e.seq, worker, now),
                TaskChange::Done => policy.on_task_dead(e.task, worker, now),
            },
            Message::Worker(w) => match w.running {
                None => policy.on_worker_idle(worker, now),
                Some((task, seq)) => policy.on_worker_tick(worker, task, seq, w.ran_ns, now),
            },
            _ => {} // other subsystems' events
        }
    }

    fn decide(&mut self, app: AppId, now: MonoNanos, out: &mut Decisions) {
        let Some(policy) = self.apps.get_mut(&app) else { return };
        policy.decide(now, &mut self.scratch);
        let runs =
            if self.config.prestage_depth > 0 { Delivery::Prestaged } else { Delivery::Ring };
        for decision in self.scratch.drain(..) {
            match decision {
                SchedDecision::Run(run) => out.push_via(run.worker, Message::Run(run), runs),
                SchedDecision::Preempt(preempt) => {
                    out.push(preempt.worker, Message::Preempt(preempt))
                }
            }
        }
    }

    fn on_commit_failed(
        &mut self,
        app: AppId,
        _worker: WorkerId,
        decision: &Message,
        outcome: TxnOutcome,
        now: MonoNanos,
    ) {
        let Some(policy) = self.apps.get_mut(&app) else { return };
        let decision = match decision {
            Message::Run(run) => SchedDecision::Run(*run),
            Message::Preempt(preempt) => SchedDecision::Preempt(*preempt),
            _ => return,
        };
        policy.on_commit_failed(&decision, outcome, now);
    }
}
