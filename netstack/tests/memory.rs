//! Two stacks joined by an in-memory wire: handshakes, ARP, byte-exact transfers both ways,
//! the accept backlog, orderly close, and the socket API's errors.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use netstack::{Conn, ConnState, MemoryWire, NetError, Stack, StackConfig};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);

fn pair() -> (Stack<MemoryWire>, Stack<MemoryWire>) {
    let (a, b) = MemoryWire::pair(256, 1514);
    let now = Instant::now();
    let server = StackConfig { ip: SERVER, mac: [2, 0, 0, 0, 0, 2], ..StackConfig::default() };
    let client = StackConfig { ip: CLIENT, mac: [2, 0, 0, 0, 0, 3], ..StackConfig::default() };
    (Stack::new(a, server, now).unwrap(), Stack::new(b, client, now).unwrap())
}

/// Polls both until `done` holds (bounded).
fn run(
    s: &mut Stack<MemoryWire>,
    c: &mut Stack<MemoryWire>,
    mut done: impl FnMut(&mut Stack<MemoryWire>, &mut Stack<MemoryWire>) -> bool,
) {
    for _ in 0..2_000_000 {
        let now = Instant::now();
        s.poll(now);
        c.poll(now);
        if done(s, c) {
            return;
        }
    }
    panic!("did not converge");
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| i.to_le_bytes()[0].wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Sends `data` on `from` while reading on `to` until all arrived; returns what arrived.
fn transfer(
    s: &mut Stack<MemoryWire>,
    c: &mut Stack<MemoryWire>,
    server_sends: bool,
    conns: (Conn, Conn),
    data: &[u8],
) -> Vec<u8> {
    let (sc, cc) = conns;
    let mut sent = 0;
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 16 * 1024];
    run(s, c, |s, c| {
        let (tx, rx, txc, rxc) =
            if server_sends { (&mut *s, &mut *c, sc, cc) } else { (&mut *c, &mut *s, cc, sc) };
        if sent < data.len() {
            sent += tx.send(txc, &data[sent..]).unwrap();
        }
        let n = rx.recv(rxc, &mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        got.len() == data.len()
    });
    got
}

#[test]
fn a_megabyte_each_way_arrives_byte_exact_and_close_is_seen() {
    let (mut s, mut c) = pair();
    s.listen(7, 4).unwrap();
    let cc = c.connect(SocketAddrV4::new(SERVER, 7)).unwrap();
    let mut sc = None;
    run(&mut s, &mut c, |s, c| {
        sc = sc.or_else(|| s.accept(7));
        sc.is_some() && c.state(cc).unwrap() == ConnState::Established
    });
    let sc = sc.unwrap();
    assert_eq!(s.peer(sc).unwrap().map(|p| *p.ip()), Some(CLIENT));
    let up = pattern(1 << 20, 7);
    assert!(transfer(&mut s, &mut c, false, (sc, cc), &up) == up, "client → server");
    let down = pattern(1 << 20, 99);
    assert!(transfer(&mut s, &mut c, true, (sc, cc), &down) == down, "server → client");
    c.close(cc).unwrap();
    let mut buf = [0u8; 64];
    run(&mut s, &mut c, |s, _| s.recv(sc, &mut buf) == Err(NetError::Closed));
    assert_eq!(s.state(sc).unwrap(), ConnState::PeerClosed);
    s.close(sc).unwrap();
    run(&mut s, &mut c, |s, c| {
        s.state(sc).unwrap() == ConnState::Closed && c.recv(cc, &mut buf) == Err(NetError::Closed)
    });
    s.release(sc);
    c.release(cc);
    assert_eq!(s.send(sc, b"x"), Err(NetError::NoSuchConn));
    let stats = s.stats();
    assert_eq!(stats.accepted, 1);
    assert!(stats.device.rx_frames > 700 && stats.device.tx_frames > 700);
}

#[test]
fn the_backlog_holds_several_handshakes_and_refills_after_accept() {
    let (mut s, mut c) = pair();
    s.listen(80, 3).unwrap();
    let first: Vec<Conn> =
        (0..3).map(|_| c.connect(SocketAddrV4::new(SERVER, 80)).unwrap()).collect();
    // A connection is accepted once the server saw the handshake's last ACK.
    let mut accepted: Vec<Conn> = Vec::new();
    run(&mut s, &mut c, |s, c| {
        accepted.extend(std::iter::from_fn(|| s.accept(80)));
        first.iter().all(|&cc| c.state(cc).unwrap() == ConnState::Established)
            && accepted.len() == 3
    });
    assert_eq!(accepted.len(), 3);
    // After accepting, the listener has room again.
    let more: Vec<Conn> =
        (0..3).map(|_| c.connect(SocketAddrV4::new(SERVER, 80)).unwrap()).collect();
    let mut again = 0;
    run(&mut s, &mut c, |s, c| {
        again += std::iter::from_fn(|| s.accept(80)).count();
        more.iter().all(|&cc| c.state(cc).unwrap() == ConnState::Established) && again == 3
    });
    assert_eq!(s.stats().accepted, 6);
}

#[test]
fn socket_api_errors_are_typed() {
    let (mut s, mut c) = pair();
    assert_eq!(s.listen(0, 1), Err(NetError::Invalid("port and backlog must be non-zero")));
    assert_eq!(s.listen(9, 0), Err(NetError::Invalid("port and backlog must be non-zero")));
    s.listen(9, 1).unwrap();
    assert_eq!(s.listen(9, 1), Err(NetError::AddrInUse));
    assert!(matches!(c.connect(SocketAddrV4::new(SERVER, 0)), Err(NetError::Invalid(_))));
    // Nobody listens on 10: the SYN gets a RST and the connection ends closed.
    let cc = c.connect(SocketAddrV4::new(SERVER, 10)).unwrap();
    let mut buf = [0u8; 8];
    run(&mut s, &mut c, |_, c| c.state(cc).unwrap() == ConnState::Closed);
    assert_eq!(c.recv(cc, &mut buf), Err(NetError::Closed));
    assert_eq!(c.send(cc, b"x"), Err(NetError::Closed));
    // RPC defaults, overridable per connection, and a spare socket comes back with them.
    assert_eq!(c.coalescing(cc), Ok((false, None)));
    let delay = std::time::Duration::from_millis(10);
    c.set_coalescing(cc, true, Some(delay)).unwrap();
    assert_eq!(c.coalescing(cc), Ok((true, Some(delay))));
    c.release(cc);
    assert_eq!(c.set_coalescing(cc, true, None), Err(NetError::NoSuchConn));
    let again = c.connect(SocketAddrV4::new(SERVER, 10)).unwrap();
    assert_eq!(c.coalescing(again), Ok((false, None)));
    let bad = StackConfig { prefix_len: 40, ..StackConfig::default() };
    let (a, _) = MemoryWire::pair(4, 1514);
    assert!(matches!(Stack::new(a, bad, Instant::now()), Err(NetError::Config(_))));
}

/// A wire end that drops every `nth` frame it would deliver (a tail-drop stand-in).
struct Lossy {
    inner: MemoryWire,
    nth: u64,
    count: u64,
    dropped: u64,
}

impl netstack::Wire for Lossy {
    type Frame = Vec<u8>;
    fn frame_len_max(&self) -> usize {
        self.inner.frame_len_max()
    }
    fn receive(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> usize {
        let start = out.len();
        self.inner.receive(out, max);
        let mut index = start;
        while index < out.len() {
            self.count += 1;
            if self.count.is_multiple_of(self.nth) {
                out.remove(index);
                self.dropped += 1;
            } else {
                index += 1;
            }
        }
        out.len() - start
    }
    fn alloc(&mut self) -> Option<Vec<u8>> {
        self.inner.alloc()
    }
    fn send(&mut self, frames: &mut Vec<Vec<u8>>) -> usize {
        self.inner.send(frames)
    }
}

#[test]
fn a_transfer_survives_loss_and_recovers_quickly() {
    let (a, b) = MemoryWire::pair(256, 1514);
    let now = Instant::now();
    let lossy = Lossy { inner: a, nth: 50, count: 0, dropped: 0 };
    let server = StackConfig { ip: SERVER, mac: [2, 0, 0, 0, 0, 2], ..StackConfig::default() };
    let client = StackConfig { ip: CLIENT, mac: [2, 0, 0, 0, 0, 3], ..StackConfig::default() };
    let mut s = Stack::new(lossy, server, now).unwrap();
    let mut c = Stack::new(b, client, now).unwrap();
    s.listen(7, 1).unwrap();
    let cc = c.connect(SocketAddrV4::new(SERVER, 7)).unwrap();
    let data = pattern(2 << 20, 3);
    let (mut sent, mut got, mut sc) = (0, Vec::new(), None);
    let mut buf = vec![0u8; 16 * 1024];
    let start = Instant::now();
    while got.len() < data.len() {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "stalled at {}", got.len());
        let now = Instant::now();
        s.poll(now);
        c.poll(now);
        sc = sc.or_else(|| s.accept(7));
        if sent < data.len() {
            sent += c.send(cc, &data[sent..]).unwrap();
        }
        if let Some(sc) = sc {
            let n = s.recv(sc, &mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert!(got == data, "byte-exact under 2 % loss");
    let dropped = s.link().dropped;
    assert!(dropped > 20, "the wire dropped {dropped} frames");
    // Not a pass/fail number: how long 2 MiB took with every 50th frame lost (docs/adr/0005).
    eprintln!("2 MiB with {dropped} frames dropped took {:?}", start.elapsed());
}

#[test]
fn udp_datagrams_arrive_with_their_sender_and_a_full_queue_pushes_back() {
    let (mut s, mut c) = pair();
    let server = s.udp_bind(53, 64 * 1024).unwrap();
    let client = c.udp_bind(5353, 64 * 1024).unwrap();
    assert_eq!(s.udp_bind(53, 1024), Err(NetError::AddrInUse));
    assert!(matches!(s.udp_bind(0, 1024), Err(NetError::Invalid(_))));
    let to = SocketAddrV4::new(SERVER, 53);
    for i in 0..10u8 {
        assert!(c.udp_send_to(client, &[i; 100], to).unwrap());
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    run(&mut s, &mut c, |s, _| {
        while let Some((n, from)) = s.udp_recv_from(server, &mut buf).unwrap() {
            assert_eq!(from, SocketAddrV4::new(CLIENT, 5353));
            got.push(buf[..n].to_vec());
        }
        got.len() == 10
    });
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, d)| d.len() == 100 && d.iter().all(|b| usize::from(*b) == i))
    );
    // 64 datagrams fill the send queue; the 65th is refused until a poll drains it.
    let sent = (0..100).take_while(|_| c.udp_send_to(client, b"x", to).unwrap()).count();
    assert_eq!(sent, 64);
    c.udp_close(client);
    assert_eq!(c.udp_send_to(client, b"x", to), Err(NetError::NoSuchConn));
}

#[test]
fn releasing_an_open_connection_resets_the_peer_and_sockets_are_reused() {
    let (mut s, mut c) = pair();
    s.listen(7, 4).unwrap();
    let baseline = s.socket_count();
    for round in 0..50 {
        let cc = c.connect(SocketAddrV4::new(SERVER, 7)).unwrap();
        let mut sc = None;
        run(&mut s, &mut c, |s, c| {
            sc = sc.or_else(|| s.accept(7));
            sc.is_some() && c.state(cc).unwrap() == ConnState::Established
        });
        // The client lets go of an open connection: the server must hear of it (a RST), or
        // it would hold a half-open connection forever.
        c.release(cc);
        let sc = sc.unwrap();
        run(&mut s, &mut c, |s, _| s.state(sc).unwrap() == ConnState::Closed);
        s.release(sc);
        assert_eq!(s.state(sc), Err(NetError::NoSuchConn), "round {round}");
    }
    run(&mut s, &mut c, |s, c| s.socket_count() == baseline && c.socket_count() == 0);
}

#[test]
fn a_captured_link_writes_a_pcap_file_tcpdump_reads() {
    let (a, b) = MemoryWire::pair(256, 1514);
    let now = Instant::now();
    let mut pcap = Vec::new();
    let server = StackConfig { ip: SERVER, mac: [2, 0, 0, 0, 0, 2], ..StackConfig::default() };
    let client = StackConfig { ip: CLIENT, mac: [2, 0, 0, 0, 0, 3], ..StackConfig::default() };
    let captured = netstack::Capture::new(a, &mut pcap, std::time::SystemTime::now(), now);
    let mut s = Stack::new(captured, server, now).unwrap();
    let mut c = Stack::new(b, client, now).unwrap();
    s.listen(7, 1).unwrap();
    let cc = c.connect(SocketAddrV4::new(SERVER, 7)).unwrap();
    for _ in 0..1000 {
        let now = Instant::now();
        s.poll(now);
        c.poll(now);
        if c.state(cc) == Ok(ConnState::Established) {
            break;
        }
    }
    let frames = s.link().frames;
    assert!(frames >= 4, "ARP both ways, SYN, SYN-ACK at least: {frames}");
    drop(s);
    assert_eq!(&pcap[..4], &0xa1b2_c3d4u32.to_le_bytes());
    // Walk the records: every length adds up to the file.
    let (mut at, mut records) = (24, 0);
    while at < pcap.len() {
        let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + incl;
        records += 1;
    }
    assert_eq!((at, records), (pcap.len(), frames));
    // tcpdump, if installed, reads it (a check that the format is the real one).
    let path = std::env::temp_dir().join(format!("wave-capture-{}.pcap", std::process::id()));
    std::fs::write(&path, &pcap).unwrap();
    if let Ok(out) = std::process::Command::new("tcpdump").arg("-nr").arg(&path).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("198.18.0.2.7"), "{text}");
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn five_hundred_connections_each_get_their_own_bytes() {
    // Every connection lives in a socket set of its own, found by its flow: a segment routed
    // to the wrong one would show as another connection's bytes.
    let (mut s, mut c) = pair();
    s.listen(11, 64).unwrap();
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    while servers.len() < 500 {
        if clients.len() < 500 && clients.len() < servers.len() + 64 {
            clients.push(c.connect(SocketAddrV4::new(SERVER, 11)).unwrap());
        }
        s.poll(Instant::now());
        c.poll(Instant::now());
        servers.extend(std::iter::from_fn(|| s.accept(11)));
    }
    for (i, &cc) in clients.iter().enumerate() {
        let request = format!("request {i:04}");
        assert_eq!(c.send(cc, request.as_bytes()).unwrap(), request.len());
    }
    // Each server connection answers what it read, reversed; in the reverse order of accept.
    let mut answered = vec![false; servers.len()];
    let mut replies = vec![Vec::new(); clients.len()];
    let mut buf = [0u8; 64];
    run(&mut s, &mut c, |s, c| {
        for (k, &sc) in servers.iter().enumerate().rev() {
            let n = s.recv(sc, &mut buf).unwrap();
            if n > 0 {
                assert_eq!(n, 12, "requests arrive whole here (one segment each)");
                let reply: Vec<u8> = buf[..n].iter().rev().copied().collect();
                assert_eq!(s.send(sc, &reply).unwrap(), n);
                answered[k] = true;
            }
        }
        for (i, &cc) in clients.iter().enumerate() {
            let n = c.recv(cc, &mut buf).unwrap();
            replies[i].extend_from_slice(&buf[..n]);
        }
        replies.iter().all(|r| r.len() == 12)
    });
    assert!(answered.iter().all(|&a| a));
    for (i, reply) in replies.iter().enumerate() {
        let want: Vec<u8> = format!("request {i:04}").bytes().rev().collect();
        assert_eq!(reply, &want, "connection {i} got another's reply");
    }
    assert_eq!(s.socket_count(), 500 + 64);
}

#[test]
fn a_handle_kept_past_release_finds_nothing_even_when_its_slot_is_reused() {
    let (mut s, mut c) = pair();
    s.listen(12, 2).unwrap();
    let old = c.connect(SocketAddrV4::new(SERVER, 12)).unwrap();
    run(&mut s, &mut c, |_, c| c.state(old).unwrap() == ConnState::Established);
    c.release(old);
    run(&mut s, &mut c, |_, c| c.socket_count() == 0);
    let new = c.connect(SocketAddrV4::new(SERVER, 12)).unwrap();
    run(&mut s, &mut c, |_, c| c.state(new).unwrap() == ConnState::Established);
    assert_ne!(old, new);
    assert_eq!(c.send(old, b"x"), Err(NetError::NoSuchConn));
    assert_eq!(c.state(old), Err(NetError::NoSuchConn));
    c.release(old); // a no-op: it must not release `new`
    assert_eq!(c.state(new), Ok(ConnState::Established));
}

#[test]
fn a_delayed_ack_leaves_on_its_timer_with_nothing_else_happening() {
    // Only smoltcp's timer can send this ACK: no segment arrives and the application does
    // nothing after its read. The stack must keep the timer and run egress when it is due.
    let (mut s, mut c) = pair();
    s.listen(13, 1).unwrap();
    let cc = c.connect(SocketAddrV4::new(SERVER, 13)).unwrap();
    let mut sc = None;
    run(&mut s, &mut c, |s, c| {
        sc = sc.or_else(|| s.accept(13));
        sc.is_some() && c.state(cc).unwrap() == ConnState::Established
    });
    let sc = sc.unwrap();
    let delay = std::time::Duration::from_millis(20);
    s.set_coalescing(sc, false, Some(delay)).unwrap();
    run(&mut s, &mut c, |_, _| true); // the settings' own egress round passes
    let sent_at = Instant::now();
    assert_eq!(c.send(cc, b"ping").unwrap(), 4);
    let mut buf = [0u8; 8];
    run(&mut s, &mut c, |s, _| s.recv(sc, &mut buf).unwrap() == 4);
    run(&mut s, &mut c, |_, c| c.unsent(cc).unwrap() == 0);
    let acked_after = sent_at.elapsed();
    assert!(acked_after >= delay, "ACKed after {acked_after:?}: before its delay");
}
