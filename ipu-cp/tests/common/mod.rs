//! What the `ipu-cp` process tests share: a control plane started on a fresh socket, with its
//! stderr lines, stopped in order or killed on drop.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use link::proto::{Epoch, Service};
use link::transport::{Connection, connect};
use link::{ChannelConfig, LivenessConfig, MonoNanos};

pub const BIN: &str = env!("CARGO_BIN_EXE_ipu-cp");

pub struct ControlPlane {
    pub child: Child,
    pub lines: Receiver<String>,
    pub socket: PathBuf,
}

pub fn socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "ipu-cp-{tag}-{}-{}.sock",
        std::process::id(),
        MonoNanos::now().0
    ))
}

impl ControlPlane {
    pub fn start(tag: &str, extra: &[&str]) -> ControlPlane {
        let socket = socket_path(tag);
        let mut child = Command::new(BIN)
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ipu-cp");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let cp = ControlPlane { child, lines, socket };
        cp.expect_line("listening on");
        cp
    }

    /// Waits (bounded) for a stderr line containing `needle`; returns it.
    pub fn expect_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("ipu-cp never printed `{needle}`"),
            }
        }
    }

    pub fn connect(&self, epoch: u32) -> Connection {
        let config =
            ChannelConfig { workers: 2, ring_capacity: 64, prestage_slots: 2, delay_ns: 0 };
        self.connect_to(Service::Sched, config, epoch)
    }

    pub fn connect_to(&self, service: Service, config: ChannelConfig, epoch: u32) -> Connection {
        connect(&self.socket, service, config, Epoch(epoch), liveness(), Duration::from_secs(5))
            .unwrap()
    }

    pub fn signal(&mut self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Sends SIGTERM, waits, and returns the final counters line.
    pub fn stop(mut self) -> String {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let line = self.expect_line("stopped;");
        assert!(self.child.wait().unwrap().success());
        assert!(!self.socket.exists(), "socket file removed on shutdown");
        line
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // A failing test must not leave a control plane running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

pub fn liveness() -> LivenessConfig {
    LivenessConfig { heartbeat_interval_ns: 100_000, peer_timeout_ns: 50_000_000 }
}

pub fn counter(line: &str, name: &str) -> u64 {
    let key = format!("ipu_cp_{name}=");
    let at = line.find(&key).unwrap_or_else(|| panic!("{name} missing in {line}"));
    line[at + key.len()..].split_whitespace().next().unwrap().parse().unwrap()
}
