//! Orderly close to the end: a connection the app closes and releases at once finishes its
//! close in the stack (what is queued is sent, the peer's FIN is acknowledged) and never
//! sends a RST; its buffers go back once it is done. Frames the server sends are watched for
//! the RST flag.

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::time::Instant;

use netstack::{MemoryWire, NetError, Stack, StackConfig, Wire, WireFrame};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);

/// A wire end that counts the TCP segments with RST it sends.
struct Watched {
    inner: MemoryWire,
    resets: Rc<Cell<u32>>,
}

fn is_rst(frame: &[u8]) -> bool {
    // Ethernet (14 bytes), IPv4 (IHL words), TCP flags at offset 13 of the TCP header.
    let ip = frame.get(14..).unwrap_or_default();
    let Some(&version_ihl) = ip.first() else { return false };
    let tcp = ip.get(usize::from(version_ihl & 0x0f) * 4..).unwrap_or_default();
    frame.get(12..14) == Some(&[0x08, 0x00])
        && ip.get(9) == Some(&6)
        && tcp.get(13).is_some_and(|f| f & 0x04 != 0)
}

impl Wire for Watched {
    type Frame = Vec<u8>;
    fn frame_len_max(&self) -> usize {
        self.inner.frame_len_max()
    }
    fn receive(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> usize {
        self.inner.receive(out, max)
    }
    fn alloc(&mut self) -> Option<Vec<u8>> {
        self.inner.alloc()
    }
    fn send(&mut self, frames: &mut Vec<Vec<u8>>) -> usize {
        let resets = frames.iter().filter(|f| is_rst(f.data())).count();
        self.resets.set(self.resets.get() + u32::try_from(resets).unwrap());
        self.inner.send(frames)
    }
}

fn pair() -> (Stack<Watched>, Stack<MemoryWire>, Rc<Cell<u32>>) {
    let (a, b) = MemoryWire::pair(256, 1514);
    let resets = Rc::new(Cell::new(0));
    let now = Instant::now();
    let server = StackConfig { ip: SERVER, mac: [2, 0, 0, 0, 0, 2], ..StackConfig::default() };
    let client = StackConfig { ip: CLIENT, mac: [2, 0, 0, 0, 0, 3], ..StackConfig::default() };
    let watched = Watched { inner: a, resets: resets.clone() };
    (Stack::new(watched, server, now).unwrap(), Stack::new(b, client, now).unwrap(), resets)
}

fn run(
    s: &mut Stack<Watched>,
    c: &mut Stack<MemoryWire>,
    mut done: impl FnMut(&mut Stack<Watched>, &mut Stack<MemoryWire>) -> bool,
) {
    let start = Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(20) {
        let now = Instant::now();
        s.poll(now);
        c.poll(now);
        if done(s, c) {
            return;
        }
    }
    panic!("did not converge");
}

#[test]
fn a_connection_released_right_after_close_finishes_in_order_without_a_reset() {
    let (mut s, mut c, resets) = pair();
    s.listen(7, 4).unwrap();
    let cc = c.connect(SocketAddrV4::new(SERVER, 7)).unwrap();
    let mut sc = None;
    run(&mut s, &mut c, |s, _| {
        sc = sc.or_else(|| s.accept(7));
        sc.is_some()
    });
    let sc = sc.unwrap();
    // `accept` hands out only connections whose handshake is done: closing one still in
    // SYN-RECEIVED left smoltcp in FIN-WAIT-1 sending nothing.
    assert_eq!(s.state(sc), Ok(netstack::ConnState::Established));
    // memcached's `quit`, HTTP's `Connection: close`: the server answers, closes, and lets go
    // at once, with the reply still unsent and the client's FIN yet to come.
    let reply = vec![7u8; 50_000];
    let queued = s.send(sc, &reply).unwrap();
    s.close(sc).unwrap();
    s.release(sc);
    let freed = s.freed();
    assert!(s.holds(sc), "the stack keeps it until its close is done");
    let (mut got, mut eof) = (Vec::new(), false);
    let mut buf = vec![0u8; 8192];
    run(&mut s, &mut c, |_, c| {
        match c.recv(cc, &mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(NetError::Closed) => eof = true,
            Err(other) => panic!("{other:?}"),
        }
        eof
    });
    assert_eq!(got.len(), queued, "everything queued before the close arrived");
    // The client still talks after our FIN (half-close), then closes its side.
    assert_eq!(c.send(cc, b"late words").unwrap(), 10);
    c.close(cc).unwrap();
    run(&mut s, &mut c, |s, c| !s.holds(sc) && c.finished(cc).unwrap_or(true));
    assert_eq!(resets.get(), 0, "the client's FIN was acknowledged, never answered by a RST");
    assert_eq!(s.stats().closed_in_order, 1);
    assert_eq!(s.stats().reset_on_release, 0);
    assert!(s.freed() > freed);
}

#[test]
fn a_connection_released_while_open_is_reset_on_purpose() {
    let (mut s, mut c, resets) = pair();
    s.listen(7, 4).unwrap();
    let cc = c.connect(SocketAddrV4::new(SERVER, 7)).unwrap();
    let mut sc = None;
    run(&mut s, &mut c, |s, _| {
        sc = sc.or_else(|| s.accept(7));
        sc.is_some()
    });
    s.release(sc.unwrap()); // no close: SO_LINGER with a zero timeout
    let mut buf = [0u8; 16];
    run(&mut s, &mut c, |_, c| c.recv(cc, &mut buf) == Err(NetError::Closed));
    assert!(resets.get() >= 1);
    assert_eq!(s.stats().reset_on_release, 1);
}

#[test]
fn connections_waiting_for_accept_are_reset_when_the_listener_goes() {
    let (mut s, mut c, resets) = pair();
    s.listen(7, 4).unwrap();
    let cc = c.connect(SocketAddrV4::new(SERVER, 7)).unwrap();
    run(&mut s, &mut c, |_, c| c.state(cc) == Ok(netstack::ConnState::Established));
    s.unlisten(7); // never accepted
    let mut buf = [0u8; 16];
    run(&mut s, &mut c, |_, c| c.recv(cc, &mut buf) == Err(NetError::Closed));
    assert!(resets.get() >= 1, "the waiting connection was refused with a RST");
    assert_eq!(s.stats().reset_on_release, 1);
    assert_eq!(s.closing(), 0);
}

#[test]
fn many_closes_at_once_all_finish_in_order_past_the_time_wait_bound() {
    // More connections than TIME-WAIT may hold: the extra ones leave at once, still without a
    // reset, and none that is still closing is cut short.
    const CONNS: usize = 300;
    let (mut s, mut c, resets) = pair();
    s.listen(7, CONNS).unwrap();
    let clients: Vec<_> =
        (0..CONNS).map(|_| c.connect(SocketAddrV4::new(SERVER, 7)).unwrap()).collect();
    let mut servers = Vec::new();
    run(&mut s, &mut c, |s, _| {
        while let Some(conn) = s.accept(7) {
            servers.push(conn);
        }
        servers.len() == CONNS
            && servers.iter().all(|&sc| s.state(sc) == Ok(netstack::ConnState::Established))
    });
    for &sc in &servers {
        s.send(sc, b"bye").unwrap();
        s.close(sc).unwrap();
        s.release(sc);
    }
    let mut buf = [0u8; 8];
    run(&mut s, &mut c, |_, c| {
        clients.iter().all(|&cc| c.recv(cc, &mut buf) == Err(NetError::Closed))
    });
    for &cc in &clients {
        c.close(cc).unwrap();
    }
    run(&mut s, &mut c, |s, _| servers.iter().all(|&sc| !s.holds(sc)));
    assert_eq!(resets.get(), 0, "nothing was reset");
    assert_eq!(s.stats().reset_on_release, 0);
    assert_eq!(s.stats().closed_in_order, CONNS as u64);
}
