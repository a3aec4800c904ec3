//! The conformance suite over the io_uring backend: AF_PACKET sockets on the two ends of a
//! veth pair, in a network namespace the test creates and removes. Needs root.

mod conformance;
mod netns;

use host_dp::io::uring::{RxMode, UringConfig, UringError, UringPort};

#[test]
fn suite_over_a_veth_pair_both_directions() {
    let ns = netns::Netns::with_veth_pair("uring");
    ns.run(|| {
        let mut a = UringPort::open("va", UringConfig::default()).unwrap();
        let mut b = UringPort::open("vb", UringConfig::default()).unwrap();
        conformance::suite(&mut a, &mut b);
        conformance::suite(&mut b, &mut a);
        assert_eq!(a.error_counts(), (0, 0));
    });
}

#[test]
fn suite_with_io_uring_receives() {
    let ns = netns::Netns::with_veth_pair("uring-rx");
    ns.run(|| {
        let config = UringConfig { rx_mode: RxMode::IoUring, ..UringConfig::default() };
        let mut a = UringPort::open("va", config).unwrap();
        let mut b = UringPort::open("vb", config).unwrap();
        conformance::suite(&mut a, &mut b);
        conformance::suite(&mut b, &mut a);
        assert_eq!(a.error_counts(), (0, 0));
        assert_eq!(b.error_counts(), (0, 0));
    });
}

#[test]
fn teardown_and_reinit() {
    let ns = netns::Netns::with_veth_pair("uring-re");
    ns.run(|| {
        for round in 0..3 {
            for rx_mode in [RxMode::MmapRing, RxMode::IoUring] {
                let config = UringConfig { rx_mode, ..UringConfig::default() };
                let mut a = UringPort::open("va", config).unwrap();
                let mut b = UringPort::open("vb", config).unwrap();
                conformance::integrity_and_order(&mut a, &mut b, 300 + round);
            }
        }
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
