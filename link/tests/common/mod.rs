//! Helpers shared by the integration tests: child processes and polite polling loops.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use link::Record;
use link::proto::{Epoch, Message, PingRepr, PongRepr, WorkerId};

/// Re-runs this test binary as a child process executing only the ignored test `name`,
/// with `env` set. The child reads its role from the environment.
pub fn spawn_child(name: &str, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command.args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"]);
    command.stdout(Stdio::null()).stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("spawn child test process")
}

/// A unique socket path under the system temp directory.
pub fn socket_path(tag: &str) -> PathBuf {
    let nanos = link::MonoNanos::now().0;
    std::env::temp_dir().join(format!("wave-{tag}-{}-{nanos}.sock", std::process::id()))
}

/// Spin, then yield: how a test loop waits without hogging one of two vCPUs.
#[derive(Debug, Default)]
pub struct Backoff(u32);

impl Backoff {
    pub fn idle(&mut self) {
        self.0 += 1;
        if self.0 < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    pub fn reset(&mut self) {
        self.0 = 0;
    }
}

pub fn ping(seq: u64) -> Record {
    Message::Ping(PingRepr { worker: WorkerId(0), seq, sent_at_ns: !seq }).to_record(Epoch(1))
}

pub fn pong(seq: u64) -> Record {
    Message::Pong(PongRepr { worker: WorkerId(0), seq, ping_sent_at_ns: !seq }).to_record(Epoch(2))
}

/// The sequence number of a Ping or Pong, checking its companion field too.
pub fn seq_of(record: &Record) -> u64 {
    match record.parse().expect("record parses") {
        Message::Ping(p) => {
            assert_eq!(p.sent_at_ns, !p.seq, "torn record");
            p.seq
        }
        Message::Pong(p) => {
            assert_eq!(p.ping_sent_at_ns, !p.seq, "torn record");
            p.seq
        }
        other => panic!("unexpected message {other:?}"),
    }
}
