//! The DPDK backend when every pool is sized to the MTU (data room = headroom + 1514): no
//! buffer can hold a frame over the port's limit, so `tx_burst` skips its per-frame length
//! check, and `set_len` alone refuses oversize frames. Its own test binary, because the
//! skip depends on every pool the process has made (DPDK allows one EAL per process).
#![cfg(feature = "dpdk")]

mod conformance;

use host_dp::io::dpdk::{DpdkPort, Eal, EalConfig, Mempool, PortConfig};
use host_dp::io::{Frame, IoError, PacketIo, QueueId};

#[test]
fn the_suite_passes_and_oversize_is_refused_by_set_len() {
    let eal = Eal::init(EalConfig::default()).expect("EAL starts without hugepages or NICs");
    let pool = Mempool::new(eal, 2047, 128 + 1514).unwrap();
    let (mut a, mut b) = DpdkPort::ring_pair(eal, pool.clone(), PortConfig::default()).unwrap();
    let max = a.capabilities().frame_len_max;
    assert_eq!(max, 1514);
    conformance::suite(&mut a, &mut b);
    conformance::suite(&mut b, &mut a);
    // With the check skipped, nothing longer than the limit can even be made.
    let mut frames = Vec::new();
    assert_eq!(a.alloc(&mut frames, 1), 1);
    assert_eq!(frames[0].set_len(max + 1), Err(IoError::FrameTooLong { len: max + 1, max }));
    conformance::fill(&mut frames[0], 7, max);
    assert_eq!(a.tx_burst(QueueId(0), &mut frames), Ok(1));
    assert_eq!(conformance::receive(&mut b, 1), vec![7]);
    drop((a, b));
    assert_eq!(pool.available(), 2047, "every mbuf is back in the pool");
}
