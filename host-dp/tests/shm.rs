//! The conformance suite over the shared-memory wire: in one thread, across two threads over a
//! heap region, and both directions; plus teardown and re-init, and refused descriptors.

mod conformance;

use host_dp::io::shm::{ShmPort, Side, WireConfig, create};
use host_dp::io::{Frame, PacketIo, QueueId};

fn pair(config: WireConfig) -> (ShmPort, ShmPort) {
    let region = create(config, false).unwrap();
    (ShmPort::attach(region.clone(), Side::A).unwrap(), ShmPort::attach(region, Side::B).unwrap())
}

#[test]
fn suite_both_directions() {
    let (mut a, mut b) = pair(WireConfig::default());
    conformance::suite(&mut a, &mut b);
    conformance::suite(&mut b, &mut a);
}

#[test]
fn suite_with_small_pools_and_jumbo_frames() {
    let config = WireConfig { buffers: 64, buffer_size: 9216, frame_len_max: 9014 };
    let (mut a, mut b) = pair(config);
    conformance::suite(&mut a, &mut b);
}

#[test]
fn teardown_and_reinit() {
    for round in 0..3 {
        let (mut a, mut b) = pair(WireConfig::default());
        conformance::integrity_and_order(&mut a, &mut b, 100 + round);
    }
}

#[test]
fn across_two_threads_over_memfd() {
    let region = create(WireConfig::default(), true).unwrap();
    let receiver_region = region.clone();
    let receiver = std::thread::spawn(move || {
        let mut b = ShmPort::attach(receiver_region, Side::B).unwrap();
        conformance::receive(&mut b, 100_000)
    });
    let mut a = ShmPort::attach(region, Side::A).unwrap();
    let mut rng = conformance::Lcg::new(3);
    for chunk in 0..(100_000 / 50) {
        let lengths = conformance::lengths(&mut rng, 50, 1514);
        conformance::send(&mut a, chunk * 50, &lengths);
    }
    let seqs = receiver.join().unwrap();
    assert!(seqs.iter().copied().eq(0..100_000), "in order, none lost or duplicated");
}

#[test]
fn received_frames_can_be_forwarded_back() {
    let (mut a, mut b) = pair(WireConfig::default());
    conformance::send(&mut a, 5, &[200]);
    let mut got = Vec::new();
    assert_eq!(b.rx_burst(QueueId(0), &mut got, 8).unwrap(), 1);
    // B transmits the very frame it received: the wire copies it into one of B's buffers.
    assert_eq!(b.tx_burst(QueueId(0), &mut got).unwrap(), 1);
    assert!(got.is_empty());
    let mut back = Vec::new();
    assert_eq!(a.rx_burst(QueueId(0), &mut back, 8).unwrap(), 1);
    assert_eq!(conformance::check(&back[0]), 5);
    assert_eq!(back[0].len(), 200);
}

#[test]
fn bad_configs_and_queues_are_refused() {
    assert!(create(WireConfig { buffers: 3, ..WireConfig::default() }, false).is_err());
    let frame_too_big = WireConfig { frame_len_max: 4096, ..WireConfig::default() };
    assert!(create(frame_too_big, false).is_err());
    let (mut a, _b) = pair(WireConfig::default());
    let mut frames = Vec::new();
    assert!(a.rx_burst(QueueId(1), &mut frames, 1).is_err());
    let region = link::region::Region::heap(4096).unwrap();
    assert!(ShmPort::attach(std::sync::Arc::new(region), Side::A).is_err(), "not a wire");
}
