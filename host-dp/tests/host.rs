//! The builder: a host started from a few lines, in each mode of its services, serving a
//! client stack on the other end of an in-memory wire; standard async I/O on its sockets;
//! fair `accept`; orderly shutdown; and every misconfiguration refused with a typed error
//! that names the key.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use futures_util::{AsyncReadExt, AsyncWriteExt};
use host_dp::host::{ConfigError, HostConfig, SchedPolicy};
use host_dp::io::QueueId;
use host_dp::io::shm::{self, ShmPort, Side, WireConfig};
use host_dp::net::PortWire;
use host_dp::runtime::Scheduler;
use host_dp::{Host, HostBuilder, HostError, ServiceMode};
use netstack::{Conn, MemoryWire, NetError, Stack, StackConfig};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 7);

/// A host built by `builder` on one end of a wire, and a client stack on the other.
fn host_and_client(builder: HostBuilder) -> (Host, Stack<MemoryWire>) {
    let (a, b) = MemoryWire::pair(4096, 1514);
    let host = builder.link(a).build().expect("the host starts");
    let config = StackConfig { ip: CLIENT, mac: [2, 0, 0, 0, 0, 1], ..StackConfig::default() };
    (host, Stack::new(b, config, Instant::now()).unwrap())
}

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
        std::thread::yield_now();
    }
    panic!("timed out waiting for {what}");
}

/// An echo server of tasks, written with the standard `AsyncRead`/`AsyncWrite` traits.
fn serve_echo(host: &Host) {
    let listener = host.listen(7).unwrap();
    let spawner = host.handle();
    host.spawn(async move {
        while let Ok((mut stream, _peer)) = listener.accept().await {
            let _ = spawner.spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match AsyncReadExt::read(&mut stream, &mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => AsyncWriteExt::write_all(&mut stream, &buf[..n]).await.unwrap(),
                    }
                }
                AsyncWriteExt::close(&mut stream).await.unwrap();
            });
        }
    })
    .unwrap();
}

/// Echoes `bytes` bytes over each of `conns` connections and checks them.
fn echo_through(client: &mut Stack<MemoryWire>, conns: usize, bytes: usize) -> Vec<Conn> {
    let conns: Vec<Conn> = (0..conns).map(|_| client.connect(SERVER).unwrap()).collect();
    let data: Vec<Vec<u8>> = (0..conns.len())
        .map(|i| (0..bytes).map(|j| u8::try_from((i * 31 + j * 7) % 251).unwrap()).collect())
        .collect();
    let (mut sent, mut got) = (vec![0; conns.len()], vec![Vec::new(); conns.len()]);
    let mut buf = vec![0u8; 8192];
    drive(client, "the echoes", |client| {
        for (i, &conn) in conns.iter().enumerate() {
            if sent[i] < bytes {
                sent[i] += client.send(conn, &data[i][sent[i]..]).unwrap_or(0);
            }
            let n = client.recv(conn, &mut buf).unwrap_or(0);
            got[i].extend_from_slice(&buf[..n]);
        }
        got.iter().all(|g| g.len() >= bytes)
    });
    assert!(got == data, "every connection echoed its own bytes");
    conns
}

#[test]
fn a_host_of_a_few_lines_echoes_through_standard_async_io() {
    let (host, mut client) = host_and_client(Host::builder().workers(2));
    serve_echo(&host);
    let conns = echo_through(&mut client, 8, 20_000);
    for conn in &conns {
        client.close(*conn).unwrap();
    }
    let mut tail = [0u8; 4];
    drive(&mut client, "the server's FINs", |client| {
        conns.iter().all(|&c| client.recv(c, &mut tail) == Err(NetError::Closed))
    });
    let stats = host.shutdown();
    assert_eq!(stats.scheduler, Scheduler::Local);
    assert!(stats.plane.steered > 0, "{stats:?}");
}

#[test]
fn accept_gives_the_peer_wakes_every_waiter_and_fails_once_closed() {
    let (host, mut client) = host_and_client(Host::builder().workers(2));
    let listener = std::sync::Arc::new(host.listen(7).unwrap());
    // Three tasks wait at once; each must get a connection (the old accept woke only the
    // last waiter, stranding the others).
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let listener = listener.clone();
            host.spawn(async move {
                let (stream, peer) = listener.accept().await?;
                Ok::<_, NetError>((stream, peer))
            })
            .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50)); // let all three wait
    let conns: Vec<Conn> = (0..3).map(|_| client.connect(SERVER).unwrap()).collect();
    drive(&mut client, "three accepts", |_| waiters.iter().all(|w| w.is_finished()));
    let mut peers: Vec<u16> = Vec::new();
    let mut streams = Vec::new();
    for waiter in waiters {
        let (stream, peer) = waiter.join().unwrap();
        assert_eq!(*peer.ip(), CLIENT);
        peers.push(peer.port());
        streams.push(stream);
    }
    let mut ours: Vec<u16> =
        conns.iter().map(|&c| client.local(c).unwrap().unwrap().port()).collect();
    peers.sort_unstable();
    ours.sort_unstable();
    assert_eq!(peers, ours, "accept names each connection's peer");
    // A task waiting when the listener closes is told so.
    let waiting = {
        let listener = listener.clone();
        host.spawn(async move { listener.accept().await.map(|_| ()) }).unwrap()
    };
    std::thread::sleep(Duration::from_millis(20));
    listener.close();
    assert!(matches!(waiting.join(), Err(NetError::Closed)));
    let error = std::io::Error::from(NetError::Closed);
    assert_eq!(error.raw_os_error(), Some(libc::EPIPE));
    drop(streams);
}

#[test]
fn on_host_agents_place_connections_and_schedule_tasks() {
    let builder = Host::builder()
        .workers(2)
        .control(ServiceMode::OnHost)
        .sched(ServiceMode::OnHost, SchedPolicy::Shinjuku);
    let (host, mut client) = host_and_client(builder);
    serve_echo(&host);
    let conns = echo_through(&mut client, 4, 4000);
    let stats = host.stats();
    assert!(stats.control_attached, "{stats:?}");
    assert_eq!(stats.scheduler, Scheduler::Agent);
    assert!(stats.sched.committed > 0, "the agent ran tasks: {stats:?}");
    let placed = stats.control.placed_prestaged + stats.control.placed_requested;
    assert!(placed >= conns.len() as u64, "the agent placed them: {stats:?}");
    assert_eq!(stats.control.placed_local, 0);
    let stats = host.shutdown();
    assert_eq!(stats.sched.fallbacks, 0, "an orderly shutdown is no loss: {stats:?}");
}

fn refused(builder: HostBuilder) -> HostError {
    builder.build().expect_err("refused")
}

fn key_of(error: &HostError) -> &'static str {
    match error {
        HostError::Config(ConfigError::Invalid { key, .. }) => key,
        other => panic!("not a config error: {other:?}"),
    }
}

#[test]
fn misconfigurations_are_typed_errors_that_name_the_key() {
    let wire = || MemoryWire::pair(16, 1514).0;
    assert_eq!(key_of(&refused(Host::builder().link(wire()).workers(0))), "workers");
    let offloaded = Host::builder().link(wire()).control(ServiceMode::Offloaded);
    assert_eq!(key_of(&refused(offloaded)), "control.mode");
    let offloaded = Host::builder().link(wire()).sched(ServiceMode::Offloaded, SchedPolicy::Fifo);
    assert_eq!(key_of(&refused(offloaded)), "sched.mode");
    assert_eq!(key_of(&refused(Host::builder())), "port");
    assert_eq!(key_of(&refused(Host::builder().link(wire()).ip("198.18.0.2"))), "ip");
    let cpus = Host::builder().link(wire()).workers(2).cpus(vec![0]);
    assert_eq!(key_of(&refused(cpus)), "cpus");
    let tier = Host::builder().link(wire()).tier(ServiceMode::OnHost, 0);
    assert_eq!(key_of(&refused(tier)), "tier.arena_mb");
    // The plane shares its port between threads: a port with a frame lent out is refused,
    // since that frame could race the workers on the port's per-thread pool.
    let region = shm::create(WireConfig::default(), false).unwrap();
    let mut port = ShmPort::attach(region, Side::A).unwrap();
    let mut lent = Vec::new();
    assert_eq!(host_dp::io::PacketIo::alloc(&mut port, &mut lent, 1), 1);
    let error = refused(Host::builder().link(PortWire::new(port, QueueId(0))));
    assert!(matches!(error, HostError::Net(NetError::LinkInUse)), "{error:?}");
    drop(lent);
}

#[test]
fn a_config_file_and_the_environment_mean_the_same_fields() {
    let text = r#"
        workers = 3
        ip = "198.18.0.9/16"
        ipu_cp = "/run/wave.sock"
        [port]
        kind = "af-packet"
        iface = "veth7"
        [sched]
        mode = "on-host"
        policy = "shinjuku"
        slice_us = 15
    "#;
    let from_file = HostConfig::from_toml(text).unwrap();
    let vars = [
        ("WAVE_WORKERS", "3"),
        ("WAVE_IP", "198.18.0.9/16"),
        ("WAVE_IPU_CP", "/run/wave.sock"),
        ("WAVE_PORT_KIND", "af-packet"),
        ("WAVE_PORT_IFACE", "veth7"),
        ("WAVE_SCHED_MODE", "on-host"),
        ("WAVE_SCHED_POLICY", "shinjuku"),
        ("WAVE_SCHED_SLICE_US", "15"),
        ("HOME", "/root"),
    ];
    let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let from_env = HostConfig::default().with_vars(vars).unwrap();
    assert_eq!(from_file, from_env);
    assert_eq!(from_file.sched.slice_us, 15);
    assert!(from_file.check().is_ok());
    // What the file does not say keeps its default; the environment overrides the file.
    let over = from_file.clone().with_vars([("WAVE_WORKERS".into(), "5".into())]).unwrap();
    assert_eq!((over.workers, over.sched.policy), (5, SchedPolicy::Shinjuku));
}

#[test]
fn unknown_keys_and_bad_values_are_refused_by_name() {
    let message = |error: ConfigError| error.to_string();
    let unknown = HostConfig::from_toml("wrokers = 2").unwrap_err();
    assert!(message(unknown).contains("wrokers"));
    let unknown = HostConfig::from_toml("[sched]\nplicy = \"fifo\"").unwrap_err();
    assert!(message(unknown).contains("plicy"));
    let bad = HostConfig::from_toml("[sched]\npolicy = \"lottery\"").unwrap_err();
    assert!(message(bad).contains("lottery"));
    let bad = HostConfig::from_toml("ip = \"198.18.0.300/24\"").unwrap_err();
    assert!(message(bad).contains("198.18.0.300"));
    let env = |var: &str, value: &str| {
        HostConfig::default().with_vars([(var.to_string(), value.to_string())]).unwrap_err()
    };
    match env("WAVE_SCHED_PLICY", "fifo") {
        ConfigError::Env { var, .. } => assert_eq!(var, "WAVE_SCHED_PLICY"),
        other => panic!("{other:?}"),
    }
    match env("WAVE_WORKERS", "many") {
        ConfigError::Env { var, message } => {
            assert_eq!(var, "WAVE_WORKERS");
            assert!(message.contains("workers"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let checked = HostConfig::from_toml("workers = 0").unwrap().check().unwrap_err();
    assert!(matches!(checked, ConfigError::Invalid { key: "workers", .. }));
}
