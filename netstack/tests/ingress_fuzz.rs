//! The ingress path under garbage: random frames, and real frames with a byte changed or cut
//! short, thrown at a stack in the middle of a transfer. Nothing may panic, the transfer must
//! still complete byte-exact, and the stack must not grow: it holds no more sockets than it
//! was given.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use netstack::{ConnState, MemoryWire, Stack, StackConfig, Wire};
use proptest::prelude::*;

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// A wire end that also delivers injected frames to the stack, and keeps a copy of what the
/// peer sent, for mutating.
struct Tapped {
    inner: MemoryWire,
    inject: Vec<Vec<u8>>,
    seen: Vec<Vec<u8>>,
}

impl Wire for Tapped {
    type Frame = Vec<u8>;
    fn frame_len_max(&self) -> usize {
        self.inner.frame_len_max()
    }
    fn receive(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> usize {
        let start = out.len();
        let injected = self.inject.len().min(max / 2);
        out.extend(self.inject.drain(..injected));
        let real = self.inner.receive(out, max - injected);
        for frame in &out[start + injected..] {
            if self.seen.len() < 64 {
                self.seen.push(frame.clone());
            }
        }
        injected + real
    }
    fn alloc(&mut self) -> Option<Vec<u8>> {
        self.inner.alloc()
    }
    fn send(&mut self, frames: &mut Vec<Vec<u8>>) -> usize {
        self.inner.send(frames)
    }
}

#[derive(Debug, Clone)]
enum Garbage {
    Random(Vec<u8>),
    /// Flip byte `at` (mod the frame's length) of a frame seen earlier to `to`.
    Mutate {
        pick: usize,
        at: usize,
        to: u8,
    },
    /// A seen frame cut to `len` bytes.
    Truncate {
        pick: usize,
        len: usize,
    },
}

fn garbage() -> impl Strategy<Value = Garbage> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..1600).prop_map(Garbage::Random),
        (any::<usize>(), any::<usize>(), any::<u8>()).prop_map(|(pick, at, to)| Garbage::Mutate {
            pick,
            at,
            to
        }),
        (any::<usize>(), 0usize..80).prop_map(|(pick, len)| Garbage::Truncate { pick, len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn garbage_on_the_wire_never_panics_nor_corrupts_a_transfer(
        junk in prop::collection::vec(garbage(), 1..200)
    ) {
        let (a, b) = MemoryWire::pair(256, 1514);
        let now = Instant::now();
        let tapped = Tapped { inner: a, inject: Vec::new(), seen: Vec::new() };
        let mut s = Stack::new(tapped, StackConfig { ip: SERVER, ..StackConfig::default() }, now)
            .unwrap();
        let client_config = StackConfig {
            ip: Ipv4Addr::new(198, 18, 0, 3),
            mac: [2, 0, 0, 0, 0, 3],
            ..StackConfig::default()
        };
        let mut c = Stack::new(b, client_config, now).unwrap();
        s.listen(7, 2).unwrap();
        let cc = c.connect(SocketAddrV4::new(SERVER, 7)).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251).to_le_bytes()[0]).collect();
        let (mut sent, mut got, mut sc) = (0, Vec::new(), None);
        let mut junk = junk.into_iter();
        let mut buf = vec![0u8; 8192];
        for step in 0..200_000 {
            let now = Instant::now();
            // Every few steps, a piece of garbage arrives among the real frames.
            if step % 3 == 0 && let Some(piece) = junk.next() {
                let link = s.link_mut();
                let frame = match piece {
                    Garbage::Random(bytes) => bytes,
                    Garbage::Mutate { pick, at, to } if !link.seen.is_empty() => {
                        let mut frame = link.seen[pick % link.seen.len()].clone();
                        let mut at = at % frame.len().max(1);
                        // Not the source MAC, nor inside an ARP packet: nothing checks them,
                        // so a changed one is a valid frame from a spoofer on the segment,
                        // who can poison any host's neighbour cache (out of scope: in Wave
                        // the control plane owns the neighbour table).
                        if (6..12).contains(&at) {
                            at += 6;
                        }
                        let arp = frame.get(12..14) == Some(&[0x08, 0x06]);
                        if !arp && let Some(byte) = frame.get_mut(at) { *byte = to; }
                        frame
                    }
                    Garbage::Truncate { pick, len } if !link.seen.is_empty() => {
                        let mut frame = link.seen[pick % link.seen.len()].clone();
                        frame.truncate(len);
                        frame
                    }
                    _ => Vec::new(),
                };
                link.inject.push(frame);
            }
            s.poll(now);
            c.poll(now);
            sc = sc.or_else(|| s.accept(7));
            if sent < data.len() {
                sent += c.send(cc, &data[sent..]).unwrap_or(0);
            }
            if let Some(sc) = sc {
                let n = s.recv(sc, &mut buf).unwrap_or(0);
                got.extend_from_slice(&buf[..n]);
            }
            if got.len() == data.len() {
                break;
            }
        }
        prop_assert!(
            got == data,
            "received {} of {} bytes, or corrupted; client {:?} unsent {:?}; server stats {:?}",
            got.len(),
            data.len(),
            c.state(cc),
            c.unsent(cc),
            s.stats()
        );
        prop_assert_eq!(c.state(cc).unwrap(), ConnState::Established);
        prop_assert!(s.socket_count() <= 3, "sockets: {}", s.socket_count());
    }
}
