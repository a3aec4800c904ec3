//! The plane's ingress under garbage: random bytes, and SYN floods, stray segments and ARP
//! packets with random fields, thrown at a two-worker plane whose listener admits at most 64
//! connections. Nothing may panic; the flow table never outgrows the limit; refused SYNs get
//! RSTs; and afterwards a real client still connects.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use host_dp::net::{ControlConfig, NetWorker, Plane, PlaneConfig};
use link::MonoNanos;
use netstack::{ConnState, MemoryWire, Stack, StackConfig, Wire};
use proptest::prelude::*;

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const LIMIT: u32 = 64;

#[derive(Debug, Clone)]
enum Frame {
    Random(Vec<u8>),
    /// A TCP segment to us: source address and port, our port, flags.
    Tcp {
        src: [u8; 2],
        sport: u16,
        dport: u16,
        flags: u8,
    },
    /// An ARP packet with a random operation and addresses.
    Arp {
        op: u16,
        sender: [u8; 4],
        target: [u8; 4],
    },
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200).prop_map(Frame::Random),
        (any::<[u8; 2]>(), any::<u16>(), prop_oneof![Just(7u16), any::<u16>()], any::<u8>())
            .prop_map(|(src, sport, dport, flags)| Frame::Tcp { src, sport, dport, flags }),
        (any::<u16>(), any::<[u8; 4]>(), any::<[u8; 4]>())
            .prop_map(|(op, sender, target)| Frame::Arp { op, sender, target }),
    ]
}

fn bytes(frame: &Frame) -> Vec<u8> {
    let mut eth = vec![0x02, 0x57, 0x41, 0x56, 0x45, 0x01, 0x02, 0, 0, 0, 0, 9];
    match frame {
        Frame::Random(raw) => raw.clone(),
        Frame::Tcp { src, sport, dport, flags } => {
            eth.extend_from_slice(&[0x08, 0x00]);
            eth.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
            eth.extend_from_slice(&[198, 18, src[0], src[1]]);
            eth.extend_from_slice(&SERVER.octets());
            eth.extend_from_slice(&sport.to_be_bytes());
            eth.extend_from_slice(&dport.to_be_bytes());
            eth.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, *flags, 0x10, 0, 0, 0, 0, 0]);
            eth
        }
        Frame::Arp { op, sender, target } => {
            eth.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4]);
            eth.extend_from_slice(&op.to_be_bytes());
            eth.extend_from_slice(&[2, 0, 0, 0, 0, 9]);
            eth.extend_from_slice(sender);
            eth.extend_from_slice(&[0; 6]);
            eth.extend_from_slice(target);
            eth
        }
    }
}

fn plane() -> (std::sync::Arc<Plane<MemoryWire>>, Vec<NetWorker<MemoryWire>>, MemoryWire) {
    let (a, b) = MemoryWire::pair(4096, 1514);
    let control = ControlConfig {
        workers: 2,
        ip: SERVER,
        local_max_per_listener: LIMIT,
        unaccepted_timeout_ns: 50_000_000,
        ..ControlConfig::default()
    };
    let plane = Plane::new(a, PlaneConfig { control, ..PlaneConfig::default() })
        .expect("a fresh wire lends nothing");
    plane.listen(7, 1, 8).unwrap();
    let now = Instant::now();
    let workers = (0..2).map(|w| plane.worker(w, StackConfig::default(), now).unwrap()).collect();
    (plane, workers, b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn garbage_never_panics_nor_outgrows_the_limit(
        frames in prop::collection::vec(frame(), 1..300)
    ) {
        let (plane, mut workers, mut wire) = plane();
        let mut replies = Vec::new();
        for chunk in frames.chunks(16) {
            let mut batch: Vec<Vec<u8>> = chunk.iter().map(bytes).collect();
            batch.retain(|f| f.len() <= 1514);
            wire.send(&mut batch);
            for worker in &mut workers {
                worker.poll(MonoNanos::now(), Instant::now());
            }
            replies.clear();
            wire.receive(&mut replies, 1024);
            prop_assert!(plane.flow_count() <= LIMIT as usize, "{} flows", plane.flow_count());
        }
        let syns = frames.iter().filter(|f| matches!(f, Frame::Tcp { dport: 7, flags, .. }
            if flags & 0x16 == 0x02)).count();
        let stats = plane.control_stats();
        prop_assert!(stats.placed_local <= syns as u64, "{stats:?}");
        prop_assert_eq!(plane.stats().resets, stats.refused_local);
    }
}

#[test]
fn after_a_flood_a_real_client_still_connects() {
    let (plane, mut workers, wire) = plane();
    let mut flood = wire;
    // 200 SYNs from different ports: 64 placed, the rest refused with RSTs.
    for chunk in (0..200u16).collect::<Vec<_>>().chunks(32) {
        let mut batch: Vec<Vec<u8>> = chunk
            .iter()
            .map(|&p| bytes(&Frame::Tcp { src: [0, 9], sport: 1000 + p, dport: 7, flags: 0x02 }))
            .collect();
        flood.send(&mut batch);
        for worker in &mut workers {
            worker.poll(MonoNanos::now(), Instant::now());
        }
        let mut replies = Vec::new();
        flood.receive(&mut replies, 4096);
    }
    assert_eq!(plane.control_stats().placed_local, u64::from(LIMIT));
    assert_eq!(plane.stats().resets, 200 - u64::from(LIMIT));
    // The flood's flows never finish their handshakes: they expire, and a client gets in.
    let config = StackConfig { ip: Ipv4Addr::new(198, 18, 0, 1), ..StackConfig::default() };
    let mut client = Stack::new(flood, config, Instant::now()).unwrap();
    let start = Instant::now();
    while plane.flow_count() > 0 && start.elapsed().as_secs() < 10 {
        for worker in &mut workers {
            worker.poll(MonoNanos::now(), Instant::now());
        }
        client.poll(Instant::now());
    }
    assert_eq!(plane.control_stats().expired, u64::from(LIMIT));
    let conn = client.connect(SocketAddrV4::new(SERVER, 7)).unwrap();
    let mut accepted = None;
    while start.elapsed().as_secs() < 20 {
        client.poll(Instant::now());
        for worker in &mut workers {
            worker.poll(MonoNanos::now(), Instant::now());
            accepted = accepted.or_else(|| worker.accept(7));
        }
        if accepted.is_some() && client.state(conn) == Ok(ConnState::Established) {
            return;
        }
    }
    panic!("the client never got in after the flood");
}
