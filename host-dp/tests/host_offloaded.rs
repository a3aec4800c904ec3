//! The builder's offloaded services against the real `ipu-cp` binary: connection control and
//! task scheduling attach to it, fall back to local decisions when it is killed, and
//! re-attach by themselves to a restarted one, serving throughout.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use host_dp::host::{LivenessSettings, SchedPolicy};
use host_dp::runtime::Scheduler;
use host_dp::{Host, ServiceMode};
use ipu_cp::process::ControlPlane;
use netstack::{MemoryWire, Stack, StackConfig};

const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 7);

fn ipu_cp() -> ControlPlane {
    let exe = ipu_cp::process::binary_next_to_exe().expect("ipu-cp missing: cargo build -p ipu-cp");
    // The app's silence that ipu-cp tolerates: CI's two shared vCPUs stall threads for
    // milliseconds, longer than ipu-cp's 10 ms default.
    let args = ["--policy", "fifo", "--peer-timeout-ms", "2000"].map(String::from);
    ControlPlane::start(&exe, "host-offloaded", &args, false).expect("ipu-cp starts")
}

/// Polls the client until `done`, or panics after 20 s.
fn drive(
    client: &mut Stack<MemoryWire>,
    what: &str,
    mut done: impl FnMut(&mut Stack<MemoryWire>) -> bool,
) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        client.poll(Instant::now());
        if done(client) {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    panic!("timed out waiting for {what}");
}

/// One fresh connection echoes `round` through the host.
fn echo_once(client: &mut Stack<MemoryWire>, round: u8) {
    let conn = client.connect(SERVER).unwrap();
    let message = [round; 100];
    let (mut sent, mut got) = (0, Vec::new());
    let mut buf = [0u8; 256];
    drive(client, "an echo", |client| {
        if sent < message.len() {
            sent += client.send(conn, &message[sent..]).unwrap_or(0);
        }
        let n = client.recv(conn, &mut buf).unwrap_or(0);
        got.extend_from_slice(&buf[..n]);
        got.len() >= message.len()
    });
    assert_eq!(got, message);
    client.close(conn).unwrap();
}

#[test]
fn offloaded_services_survive_a_killed_ipu_cp_and_reattach_to_a_new_one() {
    let mut cp = ipu_cp();
    let (a, b) = MemoryWire::pair(4096, 1514);
    let liveness = LivenessSettings { peer_timeout_ms: 300, reattach_ms: 20, ..Default::default() };
    let host = Host::builder()
        .link(a)
        .workers(2)
        .ipu_cp(&cp.socket)
        .control(ServiceMode::Offloaded)
        .sched(ServiceMode::Offloaded, SchedPolicy::Fifo)
        .liveness(liveness)
        .build()
        .expect("attached to ipu-cp");
    let listener = host.listen(7).unwrap();
    let spawner = host.handle();
    host.spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = spawner.spawn(async move {
                let mut buf = [0u8; 512];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = stream.close().await;
            });
        }
    })
    .unwrap();
    let config = StackConfig { ip: Ipv4Addr::new(198, 18, 0, 1), ..StackConfig::default() };
    let mut client = Stack::new(b, config, Instant::now()).unwrap();

    echo_once(&mut client, 1);
    let stats = host.stats();
    assert!(stats.control_attached && stats.scheduler == Scheduler::Agent, "{stats:?}");
    assert!(stats.control.placed_prestaged + stats.control.placed_requested >= 1, "{stats:?}");

    cp.kill();
    drive(&mut client, "both services to fall back", |_| {
        let stats = host.stats();
        !stats.control_attached && stats.scheduler == Scheduler::Fallback
    });
    echo_once(&mut client, 2); // served by the local policies meanwhile

    let _cp = ipu_cp(); // the same socket path: a restarted control plane
    drive(&mut client, "both services to re-attach", |_| {
        let stats = host.stats();
        stats.control_attached && stats.scheduler == Scheduler::Agent
    });
    echo_once(&mut client, 3);
    let stats = host.shutdown();
    assert!(stats.control.reattaches >= 1 && stats.sched.reattaches >= 1, "{stats:?}");
    assert!(stats.control.placed_local >= 1, "the fallback placed the middle one: {stats:?}");
}
