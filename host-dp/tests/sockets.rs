//! Async sockets on the runtime: an echo server made of tasks (an accept loop spawning one
//! task per connection) on a two-worker plane, against a client stack driven by the test
//! thread over an in-memory wire; and tasks that connect out.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use host_dp::net::{ControlConfig, NetRuntime, Plane, PlaneConfig};
use host_dp::runtime::{Runtime, RuntimeConfig};
use netstack::{Conn, ConnState, MemoryWire, NetError, Stack, StackConfig};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| u8::try_from((i * 7 + seed * 13) % 251).expect("below 251")).collect()
}

/// A runtime of two workers driving a two-stack plane, and the client stack on the wire's
/// other end.
fn setup() -> (Runtime, Arc<NetRuntime<MemoryWire>>, Stack<MemoryWire>) {
    let (a, b) = MemoryWire::pair(4096, 1514);
    let now = Instant::now();
    let control = ControlConfig { workers: 2, ip: SERVER, ..ControlConfig::default() };
    let plane = Plane::new(a, PlaneConfig { control, ..PlaneConfig::default() })
        .expect("a fresh wire lends nothing");
    let workers = (0..2)
        .map(|w| {
            plane.worker(
                w,
                StackConfig { random_seed: u64::from(w) + 5, ..Default::default() },
                now,
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let net = NetRuntime::new(plane, workers);
    let runtime = Runtime::start(RuntimeConfig { workers: 2, ..RuntimeConfig::default() }).unwrap();
    assert!(runtime.set_ingress(net.clone()));
    let client = StackConfig { ip: CLIENT, mac: [2, 0, 0, 0, 0, 1], ..StackConfig::default() };
    (runtime, net, Stack::new(b, client, now).unwrap())
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

#[test]
fn an_echo_server_of_tasks_serves_many_connections_byte_exact() {
    let (runtime, net, mut client) = setup();
    let listener = net.listen(7, 1, 32).unwrap();
    let handle = runtime.handle();
    runtime
        .spawn(async move {
            loop {
                let (mut stream, _peer) = listener.accept().await.unwrap();
                handle
                    .spawn(async move {
                        let mut buf = vec![0u8; 4096];
                        loop {
                            let n = stream.read(&mut buf).await.unwrap();
                            if n == 0 {
                                break; // the client closed its side
                            }
                            stream.write_all(&buf[..n]).await.unwrap();
                        }
                        stream.close().await.unwrap();
                    })
                    .unwrap();
            }
        })
        .unwrap();
    let server = SocketAddrV4::new(SERVER, 7);
    const CONNS: usize = 12;
    const BYTES: usize = 64 * 1024;
    let conns: Vec<Conn> = (0..CONNS).map(|_| client.connect(server).unwrap()).collect();
    let data: Vec<Vec<u8>> = (0..CONNS).map(|i| pattern(BYTES, i)).collect();
    let mut sent = [0usize; CONNS];
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); CONNS];
    let mut buf = vec![0u8; 16 * 1024];
    drive(&mut client, "every echo", |client| {
        for i in 0..CONNS {
            if sent[i] < BYTES {
                sent[i] += client.send(conns[i], &data[i][sent[i]..]).unwrap_or(0);
            }
            let n = client.recv(conns[i], &mut buf).unwrap_or(0);
            got[i].extend_from_slice(&buf[..n]);
        }
        got.iter().all(|g| g.len() >= BYTES)
    });
    for i in 0..CONNS {
        assert!(got[i] == data[i], "connection {i} echoed other bytes");
        client.close(conns[i]).unwrap();
    }
    // The server tasks see the end of the stream, close in order, and release.
    let mut tail = [0u8; 8];
    drive(&mut client, "the server's FINs", |client| {
        conns.iter().all(|&c| client.recv(c, &mut tail) == Err(NetError::Closed))
    });
    drive(&mut client, "the flows to leave the table", |_| net.plane().flow_count() == 0);
    for conn in conns {
        client.release(conn);
    }
}

#[test]
fn a_task_connects_out_and_talks() {
    let (runtime, net, mut client) = setup();
    client.listen(9000, 4).unwrap();
    let connector = net.clone();
    let task = runtime
        .spawn(async move {
            let mut stream = connector.connect(SocketAddrV4::new(CLIENT, 9000)).await?;
            stream.write_all(b"ping").await?;
            // Half-close: our FIN goes after the ping; the reply still comes in.
            stream.shutdown()?;
            let mut buf = [0u8; 4];
            let mut got = 0;
            while got < 4 {
                let n = stream.read(&mut buf[got..]).await?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            stream.close().await?;
            Ok::<_, NetError>(buf)
        })
        .unwrap();
    let mut accepted = None;
    let mut buf = [0u8; 4];
    let mut have = 0;
    drive(&mut client, "the ping", |client| {
        accepted = accepted.or_else(|| client.accept(9000));
        if let Some(conn) = accepted {
            have += client.recv(conn, &mut buf[have..]).unwrap_or(0);
        }
        have == 4
    });
    assert_eq!(&buf, b"ping");
    let conn = accepted.unwrap();
    drive(&mut client, "the task's FIN", |client| client.state(conn) == Ok(ConnState::PeerClosed));
    assert_eq!(client.send(conn, b"pong").unwrap(), 4);
    client.close(conn).unwrap();
    drive(&mut client, "the task", |_| task.is_finished());
    assert_eq!(&task.join().unwrap(), b"pong");
}

#[test]
fn a_udp_task_echoes_datagrams_with_their_senders() {
    let (runtime, net, mut client) = setup();
    let socket = net.bind_udp(5353, 1, 64 * 1024).unwrap();
    let task = runtime
        .spawn(async move {
            let mut buf = vec![0u8; 2048];
            for _ in 0..20 {
                let (n, from) = socket.recv_from(&mut buf).await?;
                socket.send_to(&buf[..n], from).await?;
            }
            // Datagrams still queued when a socket drops are discarded: hand it back instead.
            Ok::<_, NetError>(socket)
        })
        .unwrap();
    let mine = client.udp_bind(4000, 64 * 1024).unwrap();
    let server = SocketAddrV4::new(SERVER, 5353);
    let mut echoed = Vec::new();
    let mut buf = vec![0u8; 2048];
    for i in 0..20 {
        let datagram = pattern(1 + i * 70, i);
        assert!(client.udp_send_to(mine, &datagram, server).unwrap());
        drive(&mut client, "the echo", |client| {
            if let Some((n, from)) = client.udp_recv_from(mine, &mut buf).unwrap() {
                assert_eq!(from, server);
                echoed.push(buf[..n].to_vec());
            }
            echoed.len() > i
        });
        assert!(echoed[i] == datagram, "datagram {i}");
    }
    drive(&mut client, "the task", |_| task.is_finished());
    drop(task.join().unwrap());
}
