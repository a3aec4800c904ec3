//! Our TCP/IP stack (netstack over AF_PACKET on one end of a veth) against the Linux stack (on
//! the other end), with Python's socket module as the kernel-side program: ARP both ways, a
//! 10 MB echo through our server, 10 MB each way with our client against a kernel server, and
//! 1000 connections with 100 open at once; and 40 clients against an echo server of async tasks
//! on two workers' stacks behind one port, with connection control by `ipu-cp`'s policy. Needs
//! root (network namespaces, AF_PACKET).

mod netns;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use host_dp::io::QueueId;
use host_dp::io::uring::{UringConfig, UringPort};
use host_dp::net::PortWire;
use netns::Netns;
use netstack::{Conn, Impaired, Impairment, NetError, Stack, StackConfig};

const OURS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const KERNEL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const MB10: usize = 10 * 1024 * 1024;

/// The byte at `index` of the test pattern (period 256, so Python builds it in one line).
fn pattern_byte(index: usize) -> u8 {
    (index.wrapping_mul(31).wrapping_add(7) % 256).to_le_bytes()[0]
}

/// The namespace: our stack's end `va` has no address (the kernel leaves its traffic to us);
/// the kernel's end `vb` is 198.18.0.1/24, with transmit checksum offload off: a veth hands
/// the peer partially checksummed packets, which a stack reading raw frames would reject.
fn namespace(tag: &str) -> Netns {
    let ns = Netns::with_veth_pair(tag);
    let run = |program: &str, args: &[&str]| {
        let status = Command::new(program).args(args).stdout(Stdio::null()).status().unwrap();
        assert!(status.success(), "{program} {args:?} (scripts/setup.sh installs it)");
    };
    run("ip", &["-n", ns.name(), "addr", "add", "198.18.0.1/24", "dev", "vb"]);
    run("ip", &["netns", "exec", ns.name(), "ethtool", "-K", "vb", "tx", "off"]);
    ns
}

fn port_link() -> PortWire<UringPort> {
    let port = UringPort::open("va", UringConfig::default()).expect("AF_PACKET on va");
    PortWire::new(port, QueueId(0))
}

fn config() -> StackConfig {
    StackConfig { ip: OURS, tcp_buffer_bytes: 256 * 1024, ..StackConfig::default() }
}

fn stack() -> Stack<PortWire<UringPort>> {
    Stack::new(port_link(), config(), Instant::now()).unwrap()
}

/// Python sends `mb` MiB of the pattern to our echo server and checks what comes back. With
/// `half_close`, it shuts its sending side down once sent and reads to the end; without, it
/// reads as much as it sent, then closes.
fn echo_client_script(mb: usize, half_close: bool) -> String {
    let (shutdown, until) = if half_close {
        ("; s.shutdown(socket.SHUT_WR)", "True")
    } else {
        ("", "len(got)<len(data)")
    };
    format!(
        "import socket,threading\n\
         data=(bytes((i*31+7)&255 for i in range(256))*4096)*{mb}\n\
         s=socket.create_connection(('198.18.0.2',7),timeout=60)\n\
         s.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1)\n\
         def send():\n    s.sendall(data){shutdown}\n\
         t=threading.Thread(target=send); t.start()\n\
         got=bytearray()\n\
         while {until}:\n    b=s.recv(1<<16)\n    if not b: break\n    got+=b\n\
         t.join(); s.close()\n\
         print('OK' if got==data else 'MISMATCH %d'%len(got))\n"
    )
}

/// Serves echo on `stack` until the Python `client` exits; returns its output, the
/// connections accepted, and the most open at once.
fn echo_until_exit<L: netstack::Wire>(
    stack: &mut Stack<L>,
    mut client: Child,
) -> (String, usize, usize) {
    let (accepted, most) =
        serve_echo(stack, Duration::from_secs(120), || client.try_wait().unwrap().is_some());
    (finish(client), accepted, most)
}

/// Python inside the namespace, running `script`.
fn python(ns: &Netns, script: &str) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns.name(), "python3", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3")
}

fn finish(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "python failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

/// An echo server on our stack: echoes every connection until `done` says stop (bounded by
/// `limit`). Returns (connections accepted, most open at once).
fn serve_echo<L: netstack::Wire>(
    stack: &mut Stack<L>,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> (usize, usize) {
    stack.listen(7, 128).unwrap();
    let deadline = Instant::now() + limit;
    let mut conns: Vec<(Conn, Vec<u8>, bool)> = Vec::new(); // (conn, unsent, peer done)
    let (mut accepted, mut most) = (0, 0);
    let mut buf = vec![0u8; 64 * 1024];
    while !done() {
        assert!(Instant::now() < deadline, "echo server timed out after {accepted} connections");
        stack.poll(Instant::now());
        while let Some(conn) = stack.accept(7) {
            conns.push((conn, Vec::new(), false));
            accepted += 1;
        }
        most = most.max(conns.len());
        conns.retain_mut(|(conn, unsent, peer_done)| {
            if !unsent.is_empty() {
                let n = stack.send(*conn, unsent).unwrap_or(0);
                unsent.drain(..n);
            }
            if unsent.is_empty() && !*peer_done {
                match stack.recv(*conn, &mut buf) {
                    Ok(n) => {
                        let sent = stack.send(*conn, &buf[..n]).unwrap_or(0);
                        unsent.extend_from_slice(&buf[sent..n]);
                    }
                    Err(_) => {
                        *peer_done = true;
                        let _ = stack.close(*conn);
                    }
                }
            }
            // Released once our FIN is acknowledged too: released earlier (in LAST-ACK, data
            // all acknowledged but the FIN not yet sent), the peer would get a RST, not EOF.
            if *peer_done && stack.finished(*conn).unwrap_or(true) {
                stack.release(*conn);
                return false;
            }
            true
        });
    }
    (accepted, most)
}

const PATTERN_PY: &str = "bytes((i*31+7)&255 for i in range(256))*40960";

#[test]
fn a_python_client_gets_10_mb_echoed_byte_exact_by_our_server() {
    let ns = namespace("echo");
    ns.run(|| {
        let mut stack = stack();
        let client = python(&ns, &echo_client_script(10, true));
        assert_eq!(echo_until_exit(&mut stack, client).0.trim(), "OK");
        let stats = stack.stats();
        assert_eq!(stats.accepted, 1);
        assert!(stats.device.rx_frames > 7_000, "10 MB in ~1500 B frames: {stats:?}");
    });
}

#[test]
fn echo_stays_byte_exact_through_loss_duplication_and_reordering() {
    let ns = namespace("impair");
    ns.run(|| {
        let impairment = Impairment {
            loss: 0.01,
            duplicate: 0.01,
            reorder: 0.02,
            delay: Duration::ZERO,
            seed: 11,
        };
        let link = Impaired::new(port_link(), impairment);
        let mut stack = Stack::new(link, config(), Instant::now()).unwrap();
        // No half-close here: smoltcp 0.12 resets its retransmission timer on every ACK once
        // the peer has closed its side (CLOSE-WAIT, LAST-ACK), duplicates included, so a
        // segment of ours lost after the peer's FIN is never retransmitted while the peer's
        // duplicate ACKs keep coming (docs/adr/0005). The echo above half-closes, loss-free.
        let client = python(&ns, &echo_client_script(2, false));
        assert_eq!(echo_until_exit(&mut stack, client).0.trim(), "OK");
        let stats = stack.link().stats;
        assert!(stats.lost > 10 && stats.duplicated > 10 && stats.reordered > 10, "{stats:?}");
    });
}

#[test]
fn our_client_moves_10_mb_each_way_against_a_python_server() {
    let ns = namespace("client");
    // The server takes our 10 MB, checks it, then sends its own 10 MB and closes.
    let script = format!(
        "import socket\n\
         data={PATTERN_PY}\n\
         srv=socket.create_server(('198.18.0.1',9000)); srv.settimeout(60)\n\
         print('READY',flush=True)\n\
         c,_=srv.accept(); c.settimeout(60)\n\
         got=bytearray()\n\
         while len(got)<len(data):\n    b=c.recv(1<<16)\n    if not b: break\n    got+=b\n\
         c.sendall(b'OK' if got==data else b'NO')\n\
         c.sendall(bytes(range(256))*40960)\n\
         c.close(); print('SERVED',flush=True)\n"
    );
    ns.run(|| {
        let mut server = python(&ns, &script);
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(server.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "READY");
        let mut stack = stack();
        let conn = stack.connect(SocketAddrV4::new(KERNEL, 9000)).unwrap();
        let upload: Vec<u8> = (0..MB10).map(pattern_byte).collect();
        let (mut sent, mut got) = (0, Vec::with_capacity(MB10 + 2));
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(
                Instant::now() < deadline,
                "transfer timed out: sent {sent}, got {}",
                got.len()
            );
            stack.poll(Instant::now());
            if sent < upload.len() {
                sent += stack.send(conn, &upload[sent..]).unwrap();
            }
            match stack.recv(conn, &mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(NetError::Closed) => break,
                Err(error) => panic!("recv: {error}"),
            }
        }
        assert_eq!(&got[..2], b"OK", "the kernel received our 10 MB byte-exact");
        let download = &got[2..];
        assert_eq!(download.len(), MB10);
        let expected = (0..=255u8).cycle();
        assert!(download.iter().zip(expected).all(|(a, b)| *a == b), "download corrupted");
        assert_eq!(finish(server).trim(), "SERVED");
        stack.close(conn).unwrap();
    });
}

#[test]
fn a_thousand_connections_with_a_hundred_open_at_once() {
    let ns = namespace("many");
    // Ten rounds: open 100 connections, then send and check an echo on each, then close all.
    let script = "import socket\n\
         for r in range(10):\n    \
             socks=[socket.create_connection(('198.18.0.2',7),timeout=30)\n        \
                    for _ in range(100)]\n    \
             for i,s in enumerate(socks): s.sendall(b'round %d conn %d' % (r,i))\n    \
             for i,s in enumerate(socks):\n        \
                 want=b'round %d conn %d' % (r,i); got=b''\n        \
                 while len(got)<len(want): got+=s.recv(64)\n        \
                 assert got==want, (got,want)\n    \
             for s in socks: s.close()\n\
         print('OK')\n";
    ns.run(|| {
        let mut stack = stack();
        let (output, accepted, most) = echo_until_exit(&mut stack, python(&ns, script));
        assert_eq!(output.trim(), "OK");
        assert_eq!(accepted, 1000);
        assert!(most >= 100, "at most {most} open at once");
    });
}

#[test]
fn a_python_udp_client_gets_its_datagrams_echoed() {
    let ns = namespace("udp");
    // 200 datagrams of varied sizes, each echoed; Python checks every reply.
    let script = "import socket\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2)\n\
         ok=0\n\
         for i in range(200):\n    \
             msg=bytes([i%256])*(1+i*7%1400)\n    \
             for attempt in range(5):\n        \
                 s.sendto(msg,('198.18.0.2',7))\n        \
                 try:\n            \
                     got,frm=s.recvfrom(2048)\n            \
                     break\n        \
                 except socket.timeout:\n            \
                     got=None\n    \
             ok+=got==msg and frm==('198.18.0.2',7)\n\
         print(ok)\n";
    ns.run(|| {
        let mut stack = stack();
        let sock = stack.udp_bind(7, 256 * 1024).unwrap();
        let mut client = python(&ns, script);
        let mut buf = vec![0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut echoed = 0;
        while client.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "UDP client timed out");
            stack.poll(Instant::now());
            while let Some((n, from)) = stack.udp_recv_from(sock, &mut buf).unwrap() {
                assert_eq!(*from.ip(), KERNEL);
                while !stack.udp_send_to(sock, &buf[..n], from).unwrap() {
                    stack.poll(Instant::now());
                }
                echoed += 1;
            }
        }
        assert_eq!(finish(client).trim(), "200", "every datagram came back intact");
        assert!(echoed >= 200);
    });
}

/// The stack as an app runs it: two stacks on two runtime workers behind one AF_PACKET port,
/// an echo server made of async tasks, connection control by `ipu-cp`'s admission policy in
/// an agent thread; 40 Python clients at once, 256 KiB echoed each.
#[test]
fn python_clients_against_an_echo_server_of_tasks_on_two_workers() {
    use host_dp::net::{ControlConfig, NetRuntime, Plane, PlaneConfig};
    use host_dp::runtime::{AgentChannel, Runtime, RuntimeConfig};
    use ipu_cp::net::{Admission, AdmissionConfig, adapter::NetAgent};
    use ipu_cp::on_host::{OnHostAgent, OnHostOptions};
    use link::{ChannelConfig, LivenessConfig, MonoNanos, proto::Epoch};

    let ns = namespace("tasks");
    let script = "import socket,threading\n\
         data=bytes((i*31+7)&255 for i in range(256))*1024\n\
         bad=[]\n\
         def one(k):\n    \
             try:\n        \
                 s=socket.create_connection(('198.18.0.2',7),timeout=60)\n        \
                 t=threading.Thread(target=s.sendall,args=(data,)); t.start()\n        \
                 got=bytearray()\n        \
                 while len(got)<len(data):\n            \
                     b=s.recv(1<<16)\n            \
                     if not b: break\n            \
                     got+=b\n        \
                 t.join(); s.close()\n        \
                 if got!=data: bad.append(k)\n    \
             except Exception as e: bad.append((k,repr(e)))\n\
         ts=[threading.Thread(target=one,args=(k,)) for k in range(40)]\n\
         [t.start() for t in ts]; [t.join() for t in ts]\n\
         print('OK' if not bad else 'BAD %s'%bad)\n";
    ns.run(|| {
        // Worker threads take turns on the port: no single-issuer io_uring.
        let uring = UringConfig { single_issuer: false, ..UringConfig::default() };
        let port = UringPort::open("va", uring).expect("AF_PACKET on va");
        let control = ControlConfig { workers: 2, ip: OURS, ..ControlConfig::default() };
        let plane = Plane::new(
            PortWire::new(port, QueueId(0)),
            PlaneConfig { control, ..PlaneConfig::default() },
        )
        .expect("a fresh port lends nothing");
        let liveness =
            LivenessConfig { heartbeat_interval_ns: 100_000, peer_timeout_ns: 2_000_000_000 };
        let shape =
            ChannelConfig { workers: 1, ring_capacity: 256, prestage_slots: 32, delay_ns: 0 };
        let (host, cp) =
            link::channel::heap_pair(shape, liveness, Epoch(1), Epoch(2), MonoNanos::now())
                .unwrap();
        let policy = NetAgent::new(Admission::new(AdmissionConfig::default()));
        let _agent = OnHostAgent::start(Box::new(policy), cp, OnHostOptions::default()).unwrap();
        plane.attach(AgentChannel { end: host, session: None }, MonoNanos::now()).unwrap();
        let now = Instant::now();
        let workers = (0..2)
            .map(|w| plane.worker(w, StackConfig { random_seed: u64::from(w), ..config() }, now))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let net = NetRuntime::new(plane.clone(), workers);
        let runtime =
            Runtime::start(RuntimeConfig { workers: 2, ..RuntimeConfig::default() }).unwrap();
        assert!(runtime.set_ingress(net.clone()));
        let listener = net.listen(7, 1, 64).unwrap();
        let handle = runtime.handle();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        runtime
            .spawn(async move {
                loop {
                    let (mut stream, _peer) = listener.accept().await.unwrap();
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let serve = async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n) = stream.read(&mut buf).await {
                            if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = stream.close().await;
                    };
                    handle.spawn(serve).unwrap();
                }
            })
            .unwrap();
        assert_eq!(finish(python(&ns, script)).trim(), "OK");
        let stats = plane.control_stats();
        assert_eq!(accepted.load(std::sync::atomic::Ordering::Relaxed), 40);
        assert!(plane.stats().steered > 40 * 256 * 1024 / 1514, "{:?}", plane.stats());
        assert_eq!(stats.placed_prestaged + stats.placed_requested, 40, "{stats:?}");
        drop(runtime);
    });
}
