//! The conformance suite over the io_uring backend: AF_PACKET sockets on the two ends of a
//! veth pair, in a network namespace the test creates and removes. Needs root.

mod conformance;
mod netns;

use std::time::{Duration, Instant};

use host_dp::io::uring::{RxMode, TxMode, UringConfig, UringError, UringPort};
use host_dp::io::{Frame, PacketIo, QueueId};

/// Ports on the two ends of the namespace's veth pair (`va`, `vb`).
fn ports(config: UringConfig) -> (UringPort, UringPort) {
    (UringPort::open("va", config).unwrap(), UringPort::open("vb", config).unwrap())
}

#[test]
fn suite_over_a_veth_pair_both_directions() {
    let ns = netns::Netns::with_veth_pair("uring");
    ns.run(|| {
        let (mut a, mut b) = ports(UringConfig::default());
        conformance::suite(&mut a, &mut b);
        conformance::suite(&mut b, &mut a);
        assert_eq!(a.error_counts(), (0, 0));
    });
}

/// The other receive and transmit modes: multishot io_uring receives, a `Send` per frame.
#[test]
fn suite_under_the_other_receive_and_transmit_modes() {
    let ns = netns::Netns::with_veth_pair("uring-modes");
    ns.run(|| {
        for (rx_mode, tx_mode) in [
            (RxMode::IoUring, TxMode::MmapRing),
            (RxMode::MmapRing, TxMode::IoUring),
            (RxMode::IoUring, TxMode::IoUring),
        ] {
            let (mut a, mut b) = ports(UringConfig { rx_mode, tx_mode, ..Default::default() });
            conformance::suite(&mut a, &mut b);
            conformance::suite(&mut b, &mut a);
            assert_eq!(a.error_counts(), (0, 0), "{rx_mode:?} {tx_mode:?}");
            assert_eq!(b.error_counts(), (0, 0), "{rx_mode:?} {tx_mode:?}");
        }
    });
}

/// A frame shorter than an Ethernet header is taken and counted as a failed send, on both
/// transmit paths (the kernel refuses it), and the frames around it arrive.
#[test]
fn a_runt_frame_is_counted_and_the_rest_pass() {
    let ns = netns::Netns::with_veth_pair("uring-runt");
    ns.run(|| {
        for tx_mode in [TxMode::IoUring, TxMode::MmapRing] {
            let (mut a, mut b) = ports(UringConfig { tx_mode, ..UringConfig::default() });
            let mut frames = Vec::new();
            assert_eq!(a.alloc(&mut frames, 3), 3);
            conformance::fill(&mut frames[0], 10, 64);
            frames[1].set_len(10).unwrap();
            conformance::fill(&mut frames[2], 11, 64);
            assert_eq!(a.tx_burst(QueueId(0), &mut frames), Ok(3), "{tx_mode:?}");
            assert_eq!(conformance::receive(&mut b, 2), vec![10, 11], "{tx_mode:?}");
            let deadline = Instant::now() + Duration::from_secs(5);
            while a.error_counts().1 == 0 {
                a.tx_burst(QueueId(0), &mut Vec::new()).unwrap(); // reaps completions
                assert!(Instant::now() < deadline, "the runt was never counted ({tx_mode:?})");
            }
            assert_eq!(a.error_counts(), (0, 1), "{tx_mode:?}");
        }
    });
}

/// Frames put in the transmit ring while the device is down are not lost: the kick fails and
/// leaves them marked, and once the device is up the next `tx_burst`, even an empty one,
/// kicks again and they arrive, in order.
#[test]
fn frames_queued_in_the_transmit_ring_while_down_go_once_it_is_up() {
    let ns = netns::Netns::with_veth_pair("uring-down");
    ns.run(|| {
        let (mut a, mut b) = ports(UringConfig::default());
        conformance::send(&mut a, 0, &[64; 4]);
        assert_eq!(conformance::receive(&mut b, 4), vec![0, 1, 2, 3]);
        let link = |state: &str| {
            let status = std::process::Command::new("ip")
                .args(["link", "set", "va", state])
                .status()
                .expect("run ip");
            assert!(status.success(), "ip link set va {state}");
        };
        link("down");
        conformance::send(&mut a, 4, &[64; 8]); // taken into the ring; the kick fails
        link("up");
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut got, mut frames) = (Vec::new(), Vec::new());
        while got.len() < 8 {
            a.tx_burst(QueueId(0), &mut Vec::new()).unwrap(); // kicks what waits
            b.rx_burst(QueueId(0), &mut frames, 64).unwrap();
            got.extend(
                frames.drain(..).filter(conformance::is_test_frame).map(|f| conformance::check(&f)),
            );
            assert!(Instant::now() < deadline, "only {got:?} arrived after the link came up");
        }
        assert_eq!(got, (4..12).collect::<Vec<_>>());
        assert_eq!(a.error_counts(), (0, 0));
    });
}

/// On a 9000-byte MTU the rings' slots grow to fit: frames of every length up to 9014 bytes
/// pass intact through the transmit and receive rings, and one byte more is refused.
#[test]
fn jumbo_frames_pass_through_both_rings() {
    let ns = netns::Netns::with_veth_pair("uring-jumbo");
    ns.run(|| {
        for interface in ["va", "vb"] {
            let status = std::process::Command::new("ip")
                .args(["link", "set", interface, "mtu", "9000"])
                .status()
                .expect("run ip");
            assert!(status.success(), "set the MTU of {interface}");
        }
        for rx_mode in [RxMode::MmapRing, RxMode::IoUring] {
            let (mut a, mut b) = ports(UringConfig { rx_mode, ..UringConfig::default() });
            assert_eq!(a.capabilities().frame_len_max, 9014);
            conformance::integrity_and_order(&mut a, &mut b, 500);
            conformance::mtu_and_oversize(&mut a, &mut b);
            assert_eq!(a.error_counts(), (0, 0));
            assert_eq!(b.error_counts(), (0, 0));
        }
    });
}

#[test]
fn frames_pass_intact_with_the_qdisc_bypassed() {
    let ns = netns::Netns::with_veth_pair("uring-qb");
    ns.run(|| {
        let config = UringConfig { qdisc_bypass: true, ..UringConfig::default() };
        let (mut a, mut b) = ports(config);
        conformance::integrity_and_order(&mut a, &mut b, 2_000);
        conformance::mtu_and_oversize(&mut a, &mut b);
        assert_eq!(a.error_counts(), (0, 0));
    });
}

#[test]
fn teardown_and_reinit() {
    let ns = netns::Netns::with_veth_pair("uring-re");
    ns.run(|| {
        for round in 0..3 {
            for (rx_mode, tx_mode) in [
                (RxMode::MmapRing, TxMode::MmapRing),
                (RxMode::IoUring, TxMode::MmapRing),
                (RxMode::MmapRing, TxMode::IoUring),
            ] {
                let config = UringConfig { rx_mode, tx_mode, ..UringConfig::default() };
                let (mut a, mut b) = ports(config);
                conformance::integrity_and_order(&mut a, &mut b, 300 + round);
            }
        }
    });
}

/// Received frames are ring slots lent in place: a receiver may hold many (past a quarter of
/// the ring they arrive as copies), send them on as they are (in place with a `Send` per
/// frame, copied into the transmit ring otherwise), and every slot comes back.
#[test]
fn received_frames_can_be_held_and_forwarded_in_place() {
    let ns = netns::Netns::with_veth_pair("uring-zc");
    ns.run(|| {
        for tx_mode in [TxMode::IoUring, TxMode::MmapRing] {
            held_frames_are_forwarded_and_come_back(UringConfig { tx_mode, ..Default::default() });
        }
    });
}

fn held_frames_are_forwarded_and_come_back(config: UringConfig) {
    let (mut a, mut b) = ports(config);
    let max = a.capabilities().frame_len_max;
    let lengths = conformance::lengths(&mut conformance::Lcg::new(11), 600, max);
    let (mut held, mut burst) = (Vec::new(), Vec::new());
    for (start, chunk) in (0u64..).step_by(32).zip(lengths.chunks(32)) {
        conformance::send(&mut a, start, chunk);
        let deadline = Instant::now() + Duration::from_secs(10);
        while (held.len() as u64) < start + chunk.len() as u64 {
            b.rx_burst(QueueId(0), &mut burst, 64).unwrap();
            held.extend(burst.drain(..).filter(conformance::is_test_frame));
            assert!(Instant::now() < deadline, "only {} frames arrived", held.len());
        }
    }
    let seqs: Vec<u64> = held.iter().map(conformance::check).collect();
    assert_eq!(seqs, (0..600).collect::<Vec<_>>());
    assert!(b.rx_copies() > 0, "holding 600 frames must go past the ring's lending");
    assert!(b.rx_copies() < 600, "frames must be lent in place while the ring may lend");
    // Forward 64 of them back from `b`, as they are, lent slots and copies alike.
    let mut forward: Vec<_> = held.drain(..64).collect();
    while !forward.is_empty() {
        b.tx_burst(QueueId(0), &mut forward).unwrap();
    }
    assert_eq!(conformance::receive(&mut a, 64), (0..64).collect::<Vec<_>>());
    drop(held);
    // Every slot went back to the kernel: three rings' worth more arrive, lent in place.
    let copies = b.rx_copies();
    conformance::integrity_and_order(&mut a, &mut b, 3_000);
    assert_eq!(b.rx_copies(), copies);
    assert_eq!(b.error_counts(), (0, 0));
}

/// A frame held while a whole ring of frames arrives stops the ring at its slot (the kernel
/// drops what comes meanwhile; the held slot is never read again as a new frame), and the
/// ring moves on once the frame is dropped.
#[test]
fn a_frame_held_past_a_whole_ring_stops_it_until_dropped() {
    let ns = netns::Netns::with_veth_pair("uring-hold");
    ns.run(|| {
        let (mut a, mut b) = ports(UringConfig::default());
        conformance::send(&mut a, 0, &[100]);
        let held = conformance::receive_frames(&mut b, 1);
        let (mut next, mut got) = (1u64, Vec::new());
        // The ring has 1 024 slots: within 2 048 more frames the kernel comes round to the
        // held one and stops.
        while next < 2_049 {
            conformance::send(&mut a, next, &[100; 32]);
            next += 32;
            std::thread::sleep(Duration::from_millis(1));
            let mut frames = Vec::new();
            b.rx_burst(QueueId(0), &mut frames, 64).unwrap();
            got.extend(
                frames.iter().filter(|f| conformance::is_test_frame(*f)).map(conformance::check),
            );
        }
        assert!(got.len() < 2_048, "the ring went past a held slot");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "a stale slot was read again");
        drop(held);
        conformance::send(&mut a, 10_000, &[100; 32]);
        assert_eq!(conformance::receive(&mut b, 32), (10_000..10_032).collect::<Vec<_>>());
    });
}

#[test]
fn bad_interface_and_config_are_refused() {
    assert!(matches!(
        UringPort::open("no-such-if0", UringConfig::default()),
        Err(UringError::NoSuchInterface(_))
    ));
    let bad = UringConfig { rx_depth: 4000, ..UringConfig::default() };
    assert!(matches!(UringPort::open("lo", bad), Err(UringError::Config(_))));
    let too_many = UringConfig { buffers: 70_000, ..UringConfig::default() };
    assert!(matches!(UringPort::open("lo", too_many), Err(UringError::Config(_))));
}
