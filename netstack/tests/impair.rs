//! TCP between two of our stacks through the impairment layer: byte-exact under loss,
//! duplication, reordering and delay, and the layer replays exactly from its seed.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use netstack::{Impaired, Impairment, MemoryWire, Stack, StackConfig, Wire};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn impairment(seed: u64) -> Impairment {
    Impairment {
        loss: 0.01,
        duplicate: 0.01,
        reorder: 0.02,
        delay: Duration::from_micros(100),
        seed,
    }
}

fn stacks(seed: u64) -> (Stack<Impaired<MemoryWire>>, Stack<Impaired<MemoryWire>>) {
    let (a, b) = MemoryWire::pair(512, 1514);
    let now = Instant::now();
    let server = StackConfig { ip: SERVER, ..StackConfig::default() };
    let client = StackConfig {
        ip: Ipv4Addr::new(198, 18, 0, 3),
        mac: [2, 0, 0, 0, 0, 3],
        ..StackConfig::default()
    };
    (
        Stack::new(Impaired::new(a, impairment(seed)), server, now).unwrap(),
        Stack::new(Impaired::new(b, impairment(seed + 1)), client, now).unwrap(),
    )
}

#[test]
fn two_mebibytes_each_way_arrive_byte_exact_through_loss_duplication_and_reordering() {
    let (mut s, mut c) = stacks(7);
    s.listen(7, 1).unwrap();
    let cc = c.connect(SocketAddrV4::new(SERVER, 7)).unwrap();
    let up: Vec<u8> = (0..2u32 << 20).map(|i| (i % 253).to_le_bytes()[0]).collect();
    let down: Vec<u8> = (0..2u32 << 20).map(|i| (i % 241).to_le_bytes()[0]).collect();
    let (mut up_sent, mut down_sent) = (0, 0);
    let (mut up_got, mut down_got) = (Vec::new(), Vec::new());
    let mut sc = None;
    let mut buf = vec![0u8; 16 * 1024];
    let start = Instant::now();
    while up_got.len() < up.len() || down_got.len() < down.len() {
        assert!(start.elapsed() < Duration::from_secs(120), "stalled");
        let now = Instant::now();
        s.poll(now);
        c.poll(now);
        sc = sc.or_else(|| s.accept(7));
        let Some(sc) = sc else { continue };
        if up_sent < up.len() {
            up_sent += c.send(cc, &up[up_sent..]).unwrap();
        }
        if down_sent < down.len() {
            down_sent += s.send(sc, &down[down_sent..]).unwrap();
        }
        let n = s.recv(sc, &mut buf).unwrap();
        up_got.extend_from_slice(&buf[..n]);
        let n = c.recv(cc, &mut buf).unwrap();
        down_got.extend_from_slice(&buf[..n]);
    }
    assert!(up_got == up && down_got == down, "byte-exact both ways");
    let (ss, cs) = (s.link().stats, c.link().stats);
    for stats in [ss, cs] {
        assert!(stats.lost > 0 && stats.duplicated > 0 && stats.reordered > 0, "{stats:?}");
    }
    eprintln!("2 MiB each way took {:?}; server side {ss:?}, client side {cs:?}", start.elapsed());
}

#[test]
fn the_same_seed_replays_the_same_impairments() {
    let run = |seed: u64| {
        let (a, b) = MemoryWire::pair(4096, 1514);
        let mut tx = Impaired::new(
            a,
            Impairment {
                loss: 0.1,
                duplicate: 0.1,
                reorder: 0.1,
                ..Impairment { seed, ..Impairment::default() }
            },
        );
        let mut rx = b;
        let mut frames: Vec<Vec<u8>> = (0..1000u16).map(|i| i.to_le_bytes().to_vec()).collect();
        tx.send(&mut frames);
        let mut out = Vec::new();
        rx.receive(&mut out, 4096);
        (out, tx.stats)
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3).0, run(4).0);
    let (out, stats) = run(3);
    assert_eq!(out.len() as u64, 1000 - stats.lost + stats.duplicated);
}
