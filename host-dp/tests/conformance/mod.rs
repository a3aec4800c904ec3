//! The packet I/O conformance suite, run against every backend: frame integrity (checksummed
//! payloads), ordering within a queue, batch sizes 1..N, MTU-size frames, oversize refused,
//! backpressure on a full queue without loss. Teardown and re-init are exercised by each
//! backend's test building fresh pairs.
#![allow(dead_code, unreachable_pub)]
// Test patterns wrap sequence numbers into bytes on purpose, and counts stay tiny.
#![allow(clippy::cast_possible_truncation)]

use std::time::{Duration, Instant};

use host_dp::io::{Frame, IoError, PacketIo, QueueId};

const Q: QueueId = QueueId(0);
/// Ethertype for local experiments (IEEE 802 "local experimental 1").
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
const HEADER: usize = 14;
/// Sequence (8) + payload length (4) + checksum (4) after the Ethernet header.
const META: usize = 16;
pub const FRAME_LEN_MIN: usize = 60;

/// A small seeded generator, so every run sends the same frames.
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// Fills `frame` as test frame `seq` of `len` bytes: Ethernet header, metadata, a payload
/// derived from the sequence number, and an FNV-1a checksum over the payload.
pub fn fill(frame: &mut impl Frame, seq: u64, len: usize) {
    frame.set_len(len).expect("test frame within limits");
    let data = frame.data_mut();
    data[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // dst: locally administered
    data[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // src
    data[12..14].copy_from_slice(&ETHERTYPE);
    for (i, byte) in data[HEADER + META..].iter_mut().enumerate() {
        *byte = (seq as u8).wrapping_add(i as u8).wrapping_mul(31);
    }
    let checksum = fnv1a(&data[HEADER + META..]);
    data[HEADER..HEADER + 8].copy_from_slice(&seq.to_le_bytes());
    data[HEADER + 8..HEADER + 12].copy_from_slice(&(len as u32).to_le_bytes());
    data[HEADER + 12..HEADER + 16].copy_from_slice(&checksum.to_le_bytes());
}

/// Checks a received test frame; returns its sequence number.
pub fn check(frame: &impl Frame) -> u64 {
    let data = frame.data();
    assert!(data.len() >= HEADER + META, "runt frame of {} bytes", data.len());
    assert_eq!(&data[12..14], &ETHERTYPE, "not a test frame");
    let seq = u64::from_le_bytes(data[HEADER..HEADER + 8].try_into().unwrap());
    let len = u32::from_le_bytes(data[HEADER + 8..HEADER + 12].try_into().unwrap()) as usize;
    let checksum = u32::from_le_bytes(data[HEADER + 12..HEADER + 16].try_into().unwrap());
    assert_eq!(data.len(), len, "frame {seq}: length changed in flight");
    assert_eq!(fnv1a(&data[HEADER + META..]), checksum, "frame {seq}: payload corrupted");
    seq
}

/// True for frames of this suite (kernel paths may carry unrelated traffic, which is skipped).
pub fn is_test_frame(frame: &impl Frame) -> bool {
    frame.data().get(12..14) == Some(&ETHERTYPE[..])
}

/// Receives until `count` test frames arrived (bounded wait); checks each and returns their
/// sequence numbers.
pub fn receive<B: PacketIo>(b: &mut B, count: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut frames = Vec::with_capacity(count);
    let mut seqs = Vec::with_capacity(count);
    while seqs.len() < count {
        let want = (count - seqs.len()).min(b.capabilities().burst_max);
        b.rx_burst(Q, &mut frames, want).expect("rx_burst");
        seqs.extend(frames.drain(..).filter(is_test_frame).map(|f| check(&f)));
        assert!(Instant::now() < deadline, "only {} of {count} frames arrived", seqs.len());
    }
    seqs
}

/// Receives until `count` test frames arrived (bounded wait) and returns them, checked.
pub fn receive_frames<B: PacketIo>(b: &mut B, count: usize) -> Vec<B::Frame> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut frames, mut kept) = (Vec::new(), Vec::with_capacity(count));
    while kept.len() < count {
        let want = (count - kept.len()).min(b.capabilities().burst_max);
        b.rx_burst(Q, &mut frames, want).expect("rx_burst");
        kept.extend(frames.drain(..).filter(is_test_frame).inspect(|f| {
            check(f);
        }));
        assert!(Instant::now() < deadline, "only {} of {count} frames arrived", kept.len());
    }
    kept
}

/// Sends frames `first..first + lengths.len()` with the given lengths, retrying on
/// backpressure (bounded wait).
pub fn send<A: PacketIo>(a: &mut A, first: u64, lengths: &[usize]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut frames = Vec::with_capacity(lengths.len());
    while frames.len() < lengths.len() {
        let missing = lengths.len() - frames.len();
        a.alloc(&mut frames, missing);
        assert!(Instant::now() < deadline, "transmit buffers never came back");
    }
    for (i, (frame, &len)) in frames.iter_mut().zip(lengths).enumerate() {
        fill(frame, first + i as u64, len);
    }
    while !frames.is_empty() {
        a.tx_burst(Q, &mut frames).expect("tx_burst");
        assert!(Instant::now() < deadline, "transmit never accepted {} frames", frames.len());
    }
}

/// Random lengths between the minimum frame and the port's maximum, inclusive.
pub fn lengths(rng: &mut Lcg, count: usize, max: usize) -> Vec<usize> {
    (0..count).map(|_| FRAME_LEN_MIN + (rng.next() as usize % (max - FRAME_LEN_MIN + 1))).collect()
}

/// Integrity and order: `count` frames of random lengths arrive intact and in order.
pub fn integrity_and_order<A: PacketIo, B: PacketIo>(a: &mut A, b: &mut B, count: usize) {
    let max = a.capabilities().frame_len_max.min(b.capabilities().frame_len_max);
    let mut rng = Lcg::new(7);
    let mut next = 0u64;
    let mut expected = 0u64;
    while next < count as u64 {
        let batch = (count as u64 - next).min(32) as usize;
        send(a, next, &lengths(&mut rng, batch, max));
        next += batch as u64;
        for seq in receive(b, batch) {
            assert_eq!(seq, expected, "reordered, lost or duplicated");
            expected += 1;
        }
    }
}

/// Every batch size from 1 to `max_batch` moves exactly that many frames.
pub fn batch_sizes<A: PacketIo, B: PacketIo>(a: &mut A, b: &mut B, max_batch: usize) {
    let max = a.capabilities().frame_len_max;
    let mut seq = 1_000_000;
    for batch in 1..=max_batch {
        send(a, seq, &vec![max.min(128); batch]);
        let got = receive(b, batch);
        assert_eq!(got, (seq..seq + batch as u64).collect::<Vec<_>>(), "batch of {batch}");
        seq += batch as u64;
    }
}

/// Frames of exactly the maximum length pass; one byte more is refused: by `set_len` when
/// the buffer cannot hold it, otherwise by `tx_burst`, which sends the frames before it and
/// keeps it and those after it.
pub fn mtu_and_oversize<A: PacketIo, B: PacketIo>(a: &mut A, b: &mut B) {
    let max = a.capabilities().frame_len_max;
    send(a, 2_000_000, &[max; 8]);
    assert_eq!(receive(b, 8), (2_000_000..2_000_008).collect::<Vec<_>>());
    let mut frames = Vec::new();
    assert_eq!(a.alloc(&mut frames, 4), 4);
    fill(&mut frames[0], 2_100_000, 64);
    fill(&mut frames[1], 2_100_001, max);
    fill(&mut frames[3], 2_100_003, 64);
    match frames[2].set_len(max + 1) {
        Err(refused) => {
            assert_eq!(refused, IoError::FrameTooLong { len: max + 1, max }, "room is the limit");
            assert_eq!(frames[2].len(), 0, "a refused length leaves the frame as it was");
        }
        Ok(()) => {
            let result = a.tx_burst(Q, &mut frames);
            assert_eq!(result, Err(IoError::FrameTooLong { len: max + 1, max }));
            assert_eq!(frames.len(), 2, "the oversize frame and the one after it stay unsent");
            assert_eq!(frames[0].len(), max + 1);
            assert_eq!(receive(b, 2), vec![2_100_000, 2_100_001], "the frames before it went");
        }
    }
}

/// Offering more than the port can take ends in backpressure (a short `alloc` or a short
/// `tx_burst`), never in a silent drop: everything accepted is then received. On kernel paths
/// the limit is the local transmit queue (Ethernet has no end-to-end flow control).
pub fn backpressure_without_loss<A: PacketIo, B: PacketIo>(a: &mut A, b: &mut B) {
    let first = 3_000_000u64;
    let want = 2 * a.capabilities().burst_max;
    let mut frames = Vec::with_capacity(want);
    let mut accepted = 0u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = frames.len();
        let asked = want - before;
        let given = a.alloc(&mut frames, asked);
        for (i, frame) in frames[before..].iter_mut().enumerate() {
            fill(frame, first + accepted + (before + i) as u64, 64);
        }
        let offered = frames.len();
        let sent = a.tx_burst(Q, &mut frames).expect("tx_burst");
        accepted += sent as u64;
        if sent < offered || given < asked {
            break; // backpressure: the queue or the pool is full
        }
        assert!(Instant::now() < deadline, "never saw backpressure");
    }
    drop(frames); // unsent buffers go back to the pool
    assert!(accepted > 0);
    let got = receive(b, accepted as usize);
    assert_eq!(got, (first..first + accepted).collect::<Vec<_>>(), "lost under backpressure");
    // And the port works again afterwards.
    send(a, 4_000_000, &[64; 4]);
    assert_eq!(receive(b, 4), (4_000_000..4_000_004).collect::<Vec<_>>());
}

/// The whole suite, one direction.
pub fn suite<A: PacketIo, B: PacketIo>(a: &mut A, b: &mut B) {
    integrity_and_order(a, b, 2_000);
    batch_sizes(a, b, 64);
    mtu_and_oversize(a, b);
    backpressure_without_loss(a, b);
}
