//! Connection control attached to a plane as a config says: what the builder does for its own
//! plane, public for apps and benchmarks that drive a plane's workers themselves
//! (`examples/conn-bench`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ipu_cp::on_host::OnHostAgent;
use link::MonoNanos;
use link::proto::Service;

use super::HostError;
use super::config::{HostConfig, ServiceMode};
use super::services::{CONTROL_SHAPE, agent_options, attach_error, connect, connect_first};
use super::services::{delayed, heap_pair, shape, socket_of};
use crate::net::{Plane, SharedWire};
use crate::runtime::AgentChannel;

/// A plane's connection-control agent, as `config.control.mode` chose: none, `ipu-cp`'s
/// admission policy in a thread (on-host), or a session with `ipu-cp` that a thread
/// re-attaches whenever the plane has lost it (offloaded). Stops when dropped.
#[derive(Debug, Default)]
pub struct ControlService {
    agent: Option<OnHostAgent>,
    monitor: Option<Monitor>,
}

impl ControlService {
    /// Attaches connection control to `plane` as `config` says (`control`, `agent`,
    /// `liveness` and `ipu_cp`; `config.check()` first).
    pub fn attach<L: SharedWire + 'static>(
        plane: &Arc<Plane<L>>,
        config: &HostConfig,
    ) -> Result<ControlService, HostError> {
        config.check()?;
        let error = attach_error("connection control");
        let (lanes, ring, slots) = CONTROL_SHAPE;
        let channel = shape(lanes, ring, slots);
        match config.control.mode {
            ServiceMode::Local => Ok(ControlService::default()),
            ServiceMode::OnHost => {
                use ipu_cp::net::adapter::NetAgent;
                use ipu_cp::net::{Admission, AdmissionConfig};
                let (host, cp) = heap_pair(channel, config).map_err(&error)?;
                let settings = &config.control;
                let admission = AdmissionConfig {
                    max_per_listener: settings.max_per_listener,
                    syn_rate_per_s: settings.syn_rate_per_s,
                    syn_burst: settings.syn_burst,
                    prestage_depth: settings.prestage_depth,
                    ..AdmissionConfig::default()
                };
                let policy = Box::new(NetAgent::new(Admission::new(admission)));
                let agent = OnHostAgent::start(policy, cp, agent_options(config))?;
                plane.attach(host, MonoNanos::now()).map_err(|e| error(e.to_string()))?;
                Ok(ControlService { agent: Some(agent), monitor: None })
            }
            ServiceMode::Offloaded => {
                let (socket, channel) = (socket_of(config), delayed(channel, config));
                let link = connect_first(&socket, Service::Net, channel, config).map_err(&error)?;
                plane.attach(link, MonoNanos::now()).map_err(|e| error(e.to_string()))?;
                let reattach = {
                    let config = config.clone();
                    move || connect(&socket, Service::Net, channel, &config).ok()
                };
                let interval = Duration::from_millis(config.liveness.reattach_ms);
                let monitor = Monitor::start(plane.clone(), interval, reattach)?;
                Ok(ControlService { agent: None, monitor: Some(monitor) })
            }
        }
    }

    /// CPU time the on-host agent thread used so far (10 ms resolution), ns; 0 without one.
    pub fn agent_cpu_ns(&self) -> u64 {
        self.agent.as_ref().and_then(OnHostAgent::cpu_ns).unwrap_or(0)
    }

    /// Stops re-attaching (the plane keeps whatever agent it has).
    pub fn stop_monitor(&mut self) {
        if let Some(monitor) = self.monitor.take() {
            monitor.stop();
        }
    }

    /// Stops re-attaching and the agent thread.
    pub fn stop(mut self) {
        self.stop_monitor();
        if let Some(agent) = self.agent.take() {
            agent.stop();
        }
    }
}

/// A thread that, while the plane has no connection-control agent, tries to attach one
/// every `interval` (the plane itself notices a lost agent and falls back).
#[derive(Debug)]
struct Monitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    fn start<L: SharedWire + 'static>(
        plane: Arc<Plane<L>>,
        interval: Duration,
        mut reattach: impl FnMut() -> Option<AgentChannel> + Send + 'static,
    ) -> std::io::Result<Monitor> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("wave-reattach".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(interval);
                if !plane.has_agent()
                    && let Some(link) = reattach()
                {
                    // Refused only if an agent attached meanwhile: nothing to do then.
                    let _ = plane.attach(link, MonoNanos::now());
                }
            }
        })?;
        Ok(Monitor { stop, thread: Some(thread) })
    }

    fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.halt(); // a service dropped (a build that failed later) leaves no thread behind
    }
}
