//! The conformance suite over the DPDK backend: two ports wired back to back over rte_rings
//! (EAL without hugepages, no NIC), net_af_packet on a veth pair in a network namespace,
//! teardown and re-init, a vdev created and removed at run time, and set-up errors. One EAL
//! serves the whole test binary (DPDK allows one per process).
#![cfg(feature = "dpdk")]

mod conformance;
mod netns;

use std::sync::Arc;

use host_dp::io::dpdk::{DpdkError, DpdkPort, Eal, EalConfig, Mempool, PortConfig};
use host_dp::io::{Frame, PacketIo, QueueId};

fn eal() -> &'static Eal {
    Eal::init(EalConfig::default()).expect("EAL starts without hugepages or NICs")
}

fn pool() -> Arc<Mempool> {
    Mempool::new(eal(), 4095, 2176).unwrap()
}

#[test]
fn suite_over_a_ring_pair_both_directions() {
    let pool = pool();
    let (mut a, mut b) = DpdkPort::ring_pair(eal(), pool.clone(), PortConfig::default()).unwrap();
    assert_eq!(a.capabilities().frame_len_max, 1514);
    conformance::suite(&mut a, &mut b);
    conformance::suite(&mut b, &mut a);
    drop((a, b));
    assert_eq!(pool.available(), 4095, "every mbuf is back in the pool");
}

#[test]
fn teardown_and_reinit() {
    let pool = pool();
    for round in 0..3 {
        let (mut a, mut b) =
            DpdkPort::ring_pair(eal(), pool.clone(), PortConfig::default()).unwrap();
        conformance::integrity_and_order(&mut a, &mut b, 200 + round);
        drop(b); // either order works: the rings go with the last port
        drop(a);
        assert_eq!(pool.available(), 4095, "round {round}: no mbuf leaked");
    }
}

#[test]
fn vdev_created_at_run_time_loops_back_and_is_removed() {
    let pool = pool();
    for _ in 0..2 {
        // net_ring with no arguments loops its tx back to its rx.
        let mut port =
            DpdkPort::create_vdev(eal(), "net_ring_loop", "", pool.clone(), PortConfig::default())
                .unwrap();
        let mut frames = Vec::new();
        assert_eq!(port.alloc(&mut frames, 4), 4);
        for (seq, frame) in frames.iter_mut().enumerate() {
            conformance::fill(frame, seq as u64, 100);
        }
        assert_eq!(port.tx_burst(QueueId(0), &mut frames).unwrap(), 4);
        let mut got = Vec::new();
        assert_eq!(port.rx_burst(QueueId(0), &mut got, 8).unwrap(), 4);
        let seqs: Vec<u64> = got.iter().map(conformance::check).collect();
        assert_eq!(seqs, [0, 1, 2, 3]);
        assert_eq!(got[3].len(), 100);
    } // dropped: the vdev is removed, so the same name can be created again
}

#[test]
fn setup_errors_are_typed() {
    let pool = pool();
    let missing = DpdkPort::open(eal(), "no_such_port", pool.clone(), PortConfig::default());
    assert!(matches!(missing, Err(DpdkError::NoSuchPort(_))));
    let bad_driver = DpdkPort::create_vdev(eal(), "net_nonsense0", "", pool, PortConfig::default());
    assert!(matches!(bad_driver, Err(DpdkError::Vdev { .. })));
    let other = EalConfig { lcores: "1".into(), ..EalConfig::default() };
    eal();
    assert_eq!(Eal::init(other).unwrap_err(), DpdkError::EalAlreadyRunning);
    let pool = Mempool::new(eal(), 63, 2176).unwrap();
    let too_many = PortConfig { rx_queues: 64, ..PortConfig::default() };
    let vdev = DpdkPort::create_vdev(eal(), "net_ring_q", "", pool, too_many);
    assert!(matches!(vdev, Err(DpdkError::Port { step: "queue count", .. })), "{vdev:?}");
}

#[test]
fn suite_over_af_packet_on_a_veth_pair() {
    let pool = pool();
    let ns = netns::Netns::with_veth_pair("dpdk-afp");
    ns.run(|| {
        // The vdevs open their AF_PACKET sockets in this thread's namespace.
        let config = PortConfig { descriptors: 512, ..PortConfig::default() };
        let mut a =
            DpdkPort::create_vdev(eal(), "net_af_packet_va", "iface=va", pool.clone(), config)
                .unwrap();
        let mut b =
            DpdkPort::create_vdev(eal(), "net_af_packet_vb", "iface=vb", pool.clone(), config)
                .unwrap();
        conformance::integrity_and_order(&mut a, &mut b, 2_000);
        conformance::batch_sizes(&mut a, &mut b, 64);
        conformance::mtu_and_oversize(&mut a, &mut b);
        conformance::integrity_and_order(&mut b, &mut a, 500);
    });
}

#[test]
fn suite_over_two_taps_joined_by_a_kernel_bridge() {
    let pool = pool();
    let ns = netns::Netns::with_veth_pair("dpdk-tap");
    ns.run(|| {
        // net_tap creates its interface in this thread's namespace.
        let config = PortConfig { descriptors: 512, ..PortConfig::default() };
        let mut a = DpdkPort::create_vdev(eal(), "net_tap_wa", "iface=wtapa", pool.clone(), config)
            .unwrap();
        let mut b = DpdkPort::create_vdev(eal(), "net_tap_wb", "iface=wtapb", pool.clone(), config)
            .unwrap();
        ns.bridge("wbr0", &["wtapa", "wtapb"]);
        conformance::integrity_and_order(&mut a, &mut b, 1_000);
        conformance::batch_sizes(&mut a, &mut b, 32);
        conformance::mtu_and_oversize(&mut a, &mut b);
    });
}

#[test]
fn suite_over_memif_server_and_client() {
    let pool = pool();
    let socket = std::env::temp_dir().join(format!("wave-memif-{}.sock", std::process::id()));
    let args = |role: &str| format!("role={role},socket={}", socket.display());
    let config = PortConfig { descriptors: 1024, ..PortConfig::default() };
    let mut server =
        DpdkPort::create_vdev(eal(), "net_memif_s", &args("server"), pool.clone(), config).unwrap();
    let mut client =
        DpdkPort::create_vdev(eal(), "net_memif_c", &args("client"), pool.clone(), config).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(server.link_up() && client.link_up()) {
        assert!(std::time::Instant::now() < deadline, "memif link never came up");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    conformance::integrity_and_order(&mut client, &mut server, 2_000);
    conformance::batch_sizes(&mut client, &mut server, 64);
    // A memif client posts buffers on the ring the server transmits into when it polls rx;
    // until it has, the server sees that ring full (backpressure, as the contract says).
    let mut nothing = Vec::new();
    for _ in 0..10 {
        client.rx_burst(host_dp::io::QueueId(0), &mut nothing, 32).unwrap();
    }
    assert!(nothing.is_empty());
    conformance::integrity_and_order(&mut server, &mut client, 100);
    conformance::mtu_and_oversize(&mut client, &mut server);
    drop((client, server));
    let _ = std::fs::remove_file(&socket);
}

#[test]
fn multi_queue_tap_port_spreads_and_bounds_its_queues() {
    let pool = pool();
    let ns = netns::Netns::with_veth_pair("dpdk-mq");
    ns.run(|| {
        let queues = PortConfig { rx_queues: 2, tx_queues: 2, descriptors: 256, promiscuous: true };
        let mut multi =
            DpdkPort::create_vdev(eal(), "net_tap_mq", "iface=wtapmq", pool.clone(), queues)
                .unwrap();
        let single = PortConfig { descriptors: 256, ..PortConfig::default() };
        let mut peer =
            DpdkPort::create_vdev(eal(), "net_tap_mp", "iface=wtapmp", pool.clone(), single)
                .unwrap();
        ns.bridge("wbrmq", &["wtapmq", "wtapmp"]);
        assert_eq!((multi.capabilities().rx_queues, multi.capabilities().tx_queues), (2, 2));
        // Frames from the peer arrive on one of the two rx queues; every one is accounted for.
        conformance::send(&mut peer, 0, &[128; 64]);
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while got.iter().filter(|f| conformance::is_test_frame(*f)).count() < 64 {
            for queue in 0..2 {
                multi.rx_burst(QueueId(queue), &mut got, 64).unwrap();
            }
            assert!(std::time::Instant::now() < deadline, "frames lost across queues");
        }
        // Transmit works on both queues; a third queue does not exist.
        for queue in 0..2 {
            let mut frames = Vec::new();
            assert_eq!(multi.alloc(&mut frames, 1), 1);
            conformance::fill(&mut frames[0], 100 + u64::from(queue), 64);
            assert_eq!(multi.tx_burst(QueueId(queue), &mut frames).unwrap(), 1);
        }
        let mut none = Vec::new();
        assert_eq!(
            multi.rx_burst(QueueId(2), &mut none, 1),
            Err(host_dp::io::IoError::NoSuchQueue(2))
        );
        assert_eq!(conformance::receive(&mut peer, 2).len(), 2);
    });
}
