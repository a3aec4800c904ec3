//! The raw bindings against the real DPDK: EAL without hugepages, a mempool, two ports wired
//! back to back over rte_rings, and a burst of frames from one to the other.

use std::ffi::CString;
use std::os::raw::c_char;

use dpdk_sys::*;

fn eal_init() {
    let args = [
        "dpdk-sys-smoke",
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "-m",
        "128",
        "-l",
        "0",
        "--log-level",
        "lib.eal:error",
    ];
    let owned: Vec<CString> = args.iter().map(|a| CString::new(*a).unwrap()).collect();
    let mut argv: Vec<*mut c_char> = owned.iter().map(|a| a.as_ptr().cast_mut()).collect();
    // SAFETY: argv points at NUL-terminated strings that outlive the call (EAL copies what it
    // keeps); this is the process's only EAL initialisation.
    let parsed = unsafe { rte_eal_init(i32::try_from(argv.len()).unwrap(), argv.as_mut_ptr()) };
    // SAFETY: reading rte_errno through the shim has no preconditions.
    assert!(parsed >= 0, "rte_eal_init failed: rte_errno {}", unsafe { rte_errno_() });
}

/// Configures one rx and one tx queue and starts the port (the fast path is installed only at
/// start).
fn start(port: u16, pool: *mut rte_mempool) {
    let conf = rte_eth_conf::default();
    // SAFETY: port exists (from rte_eth_from_rings); conf and pool are valid; queue sizes
    // fit the rings.
    unsafe {
        assert_eq!(rte_eth_dev_configure(port, 1, 1, &conf), 0);
        let socket = u32::try_from(rte_eth_dev_socket_id(port).max(0)).unwrap();
        assert_eq!(rte_eth_rx_queue_setup(port, 0, 256, socket, std::ptr::null(), pool), 0);
        assert_eq!(rte_eth_tx_queue_setup(port, 0, 256, socket, std::ptr::null()), 0);
        assert_eq!(rte_eth_dev_start(port), 0);
    }
}

#[test]
fn frames_cross_two_ring_ports() {
    eal_init();
    let name = CString::new("smoke_pool").unwrap();
    // SAFETY: EAL is initialised; the name is NUL-terminated; sizes are DPDK's defaults.
    let pool = unsafe {
        rte_pktmbuf_pool_create(name.as_ptr(), 1023, 32, 0, RTE_MBUF_DEFAULT_BUF_SIZE as u16, 0)
    };
    assert!(!pool.is_null(), "mempool creation failed");
    let ring_name = |n: &str| CString::new(n).unwrap();
    let (a, b) = (ring_name("smoke_a"), ring_name("smoke_b"));
    // SAFETY: EAL is initialised; names are NUL-terminated; 256 is a power of two.
    let (ring_a, ring_b) = unsafe {
        (
            rte_ring_create(a.as_ptr(), 256, 0, RING_F_SP_ENQ | RING_F_SC_DEQ),
            rte_ring_create(b.as_ptr(), 256, 0, RING_F_SP_ENQ | RING_F_SC_DEQ),
        )
    };
    assert!(!ring_a.is_null() && !ring_b.is_null());
    // Port 0 receives from A and sends into B; port 1 the other way round.
    let (mut rx0, mut tx0, mut rx1, mut tx1) = ([ring_a], [ring_b], [ring_b], [ring_a]);
    let (p0, p1) = (ring_name("smoke_p0"), ring_name("smoke_p1"));
    // SAFETY: the ring arrays hold valid rings and live through the calls (the PMD copies them).
    let (port0, port1) = unsafe {
        (
            rte_eth_from_rings(p0.as_ptr(), rx0.as_mut_ptr(), 1, tx0.as_mut_ptr(), 1, 0),
            rte_eth_from_rings(p1.as_ptr(), rx1.as_mut_ptr(), 1, tx1.as_mut_ptr(), 1, 0),
        )
    };
    assert!(port0 >= 0 && port1 >= 0);
    let (port0, port1) = (u16::try_from(port0).unwrap(), u16::try_from(port1).unwrap());
    for port in [port0, port1] {
        start(port, pool);
    }

    let mut mbufs = [std::ptr::null_mut::<rte_mbuf>(); 8];
    // SAFETY: pool is valid and mbufs has room for 8 pointers.
    assert_eq!(unsafe { rte_pktmbuf_alloc_bulk_(pool, mbufs.as_mut_ptr(), 8) }, 0);
    for (i, &m) in mbufs.iter().enumerate() {
        // SAFETY: m is a fresh mbuf with far more than 60 bytes of tailroom.
        let data = unsafe { rte_pktmbuf_append_(m, 60) };
        assert!(!data.is_null());
        // SAFETY: append returned 60 writable bytes.
        unsafe { std::ptr::write_bytes(data, u8::try_from(i).unwrap(), 60) };
    }
    // SAFETY: port0/queue 0 exist; on return the PMD owns the mbufs it accepted.
    let sent = unsafe { rte_eth_tx_burst_(port0, 0, mbufs.as_mut_ptr(), 8) };
    assert_eq!(sent, 8);
    let mut got = [std::ptr::null_mut::<rte_mbuf>(); 16];
    // SAFETY: port1/queue 0 exist; got has room for 16 pointers.
    let received = unsafe { rte_eth_rx_burst_(port1, 0, got.as_mut_ptr(), 16) };
    assert_eq!(received, 8, "every frame crossed");
    for (i, &m) in got[..8].iter().enumerate() {
        // SAFETY: m is a received mbuf we own; mtod points at data_len readable bytes.
        unsafe {
            assert_eq!(rte_pktmbuf_data_len_(m), 60);
            let data = std::slice::from_raw_parts(rte_pktmbuf_mtod_(m).cast::<u8>(), 60);
            assert!(data.iter().all(|&b| usize::from(b) == i), "frame {i} in order and intact");
            rte_pktmbuf_free_(m);
        }
    }
    // SAFETY: every mbuf went back to the pool above.
    assert_eq!(unsafe { rte_mempool_avail_count_(pool) }, 1023);
}
