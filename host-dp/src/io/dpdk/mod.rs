//! The DPDK backend (cargo feature `dpdk`): RAII over `dpdk-sys` for EAL ([`Eal`]), mempools
//! ([`Mempool`]), ports ([`DpdkPort`]) and mbufs ([`Mbuf`]), and the packet I/O contract on
//! top. Works with DPDK's virtual devices here (net_ring, net_tap, net_af_packet, net_memif)
//! and with a real NIC's PMD elsewhere; ports with several rx queues get RSS over every hash
//! type the device offers.
//!
//! Unsafe code lives in this folder only. Invariants: every DPDK call happens after
//! [`Eal::init`] succeeded (all constructors take `&'static Eal`); a port is stopped and
//! closed exactly once, in `Drop`, before the rings it may use are freed; mbufs are owned by
//! exactly one [`Mbuf`] or by the device; a pool is freed only when all its mbufs are back
//! (otherwise it is deliberately leaked, never freed under a live mbuf).

mod eal;
mod mbuf;
mod mempool;
mod port_io;

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use eal::{Eal, EalConfig};
pub use mbuf::Mbuf;
pub use mempool::Mempool;

use super::Capabilities;

const ETHERNET_HEADER: usize = 14;
const RX_OFFLOAD_CHECKSUMS: u64 = (1 << 1) | (1 << 2) | (1 << 3); // IPV4, UDP, TCP
const TX_OFFLOAD_CHECKSUMS: u64 = (1 << 1) | (1 << 2) | (1 << 3);
/// Frames per DPDK burst call; larger requests loop.
const BURST: usize = 64;

/// Why a DPDK set-up step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpdkError {
    /// `rte_eal_init` failed.
    #[error("rte_eal_init failed (rte_errno {errno}) with arguments: {args}")]
    EalInit {
        /// rte_errno.
        errno: i32,
        /// The arguments.
        args: String,
    },
    /// EAL already runs with another config in this process.
    #[error("EAL already runs in this process with another config; it cannot restart")]
    EalAlreadyRunning,
    /// An argument or name contained a NUL byte.
    #[error("argument contains a NUL byte: {0:?}")]
    BadArgument(String),
    /// A mempool could not be created.
    #[error("cannot create mempool {name} (rte_errno {errno})")]
    Mempool {
        /// Its name.
        name: String,
        /// rte_errno.
        errno: i32,
    },
    /// A virtual device could not be created.
    #[error("cannot create vdev {name} (error {code})")]
    Vdev {
        /// Its name.
        name: String,
        /// The return code.
        code: i32,
    },
    /// No port has that name.
    #[error("no DPDK port named {0}")]
    NoSuchPort(String),
    /// A ring for a ring-pair port could not be created.
    #[error("cannot create rte_ring {0}")]
    Ring(String),
    /// A port set-up call failed.
    #[error("port {port}: {step} failed (code {code})")]
    Port {
        /// The port.
        port: u16,
        /// Which call.
        step: &'static str,
        /// Its return code.
        code: i32,
    },
}

/// Reads `rte_errno`.
pub(crate) fn rte_errno() -> i32 {
    // SAFETY: the shim reads a thread-local; no preconditions.
    unsafe { dpdk_sys::rte_errno_() }
}

/// Converts a DPDK return code (negative errno on failure) in one place.
fn check(code: i32, port: u16, step: &'static str) -> Result<(), DpdkError> {
    if code < 0 { Err(DpdkError::Port { port, step, code }) } else { Ok(()) }
}

fn c_name(name: &str) -> Result<CString, DpdkError> {
    CString::new(name).map_err(|_| DpdkError::BadArgument(name.to_owned()))
}

/// Unique suffixes for the names DPDK wants unique (pools, rings, ports).
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Port shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConfig {
    /// Receive queues (RSS spreads flows over them when more than one).
    pub rx_queues: u16,
    /// Transmit queues.
    pub tx_queues: u16,
    /// Descriptors per queue.
    pub descriptors: u16,
    /// Accept frames for any MAC address.
    pub promiscuous: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig { rx_queues: 1, tx_queues: 1, descriptors: 1024, promiscuous: true }
    }
}

/// What must be released after the port is closed.
#[derive(Debug)]
enum Backing {
    /// A port probed from EAL arguments or PCI: close only.
    Probed,
    /// A vdev this value created: uninit after close.
    Vdev(CString),
    /// A ring-pair port: the rings both ports use, freed when the last port is closed.
    Rings(
        #[expect(dead_code, reason = "held for its Drop, which frees the rings")] Arc<SharedRings>,
    ),
}

/// The two rings of a ring pair. Dropped after both ports' `Drop` closed them.
#[derive(Debug)]
struct SharedRings([NonNull<dpdk_sys::rte_ring>; 2]);

// SAFETY: the pointers are only passed to `rte_ring_free`, once, when the last owner drops.
unsafe impl Send for SharedRings {}
// SAFETY: as above; no method reads through the pointers.
unsafe impl Sync for SharedRings {}

impl Drop for SharedRings {
    fn drop(&mut self) {
        for ring in self.0 {
            // SAFETY: both ports using these rings are closed (each holds this `Arc` and
            // closes its port in its `Drop` body, before its fields drop).
            unsafe { dpdk_sys::rte_ring_free(ring.as_ptr()) };
        }
    }
}

/// A started DPDK port.
#[derive(Debug)]
pub struct DpdkPort {
    id: u16,
    pool: Arc<Mempool>,
    config: PortConfig,
    caps: Capabilities,
    backing: Backing,
}

// SAFETY: a port id is a plain index into DPDK's global port table; burst calls on different
// queues from different threads are allowed by DPDK, and `&mut self` serialises the rest.
unsafe impl Send for DpdkPort {}

impl DpdkPort {
    /// Opens a port EAL already knows: a `--vdev` from [`EalConfig`] or a PCI NIC
    /// (`0000:3b:00.0`), by its DPDK name.
    pub fn open(
        _eal: &'static Eal,
        name: &str,
        pool: Arc<Mempool>,
        config: PortConfig,
    ) -> Result<DpdkPort, DpdkError> {
        let id = port_by_name(name)?;
        DpdkPort::start(id, pool, config, Backing::Probed)
    }

    /// Creates virtual device `name` with `args` (e.g. `net_tap3`, `iface=tap3`) and opens it.
    /// Dropping the port removes the device again, so it can be created anew.
    pub fn create_vdev(
        _eal: &'static Eal,
        name: &str,
        args: &str,
        pool: Arc<Mempool>,
        config: PortConfig,
    ) -> Result<DpdkPort, DpdkError> {
        let (c_dev, c_args) = (c_name(name)?, c_name(args)?);
        // SAFETY: EAL is up; both strings are NUL-terminated and outlive the call.
        let code = unsafe { dpdk_sys::rte_vdev_init(c_dev.as_ptr(), c_args.as_ptr()) };
        if code < 0 {
            return Err(DpdkError::Vdev { name: name.to_owned(), code });
        }
        let id = port_by_name(name)?;
        DpdkPort::start(id, pool, config, Backing::Vdev(c_dev))
    }

    /// Two ports wired back to back over a pair of `rte_ring`s (no kernel, no NIC): what one
    /// sends, the other receives. For tests and benchmarks of the layers above.
    pub fn ring_pair(
        _eal: &'static Eal,
        pool: Arc<Mempool>,
        config: PortConfig,
    ) -> Result<(DpdkPort, DpdkPort), DpdkError> {
        let size = u32::from(config.descriptors).next_power_of_two();
        let ring = || -> Result<NonNull<dpdk_sys::rte_ring>, DpdkError> {
            let name = unique("wave_ring");
            let c = c_name(&name)?;
            let flags = dpdk_sys::RING_F_SP_ENQ | dpdk_sys::RING_F_SC_DEQ;
            // SAFETY: EAL is up; the name is unique and NUL-terminated; size is a power of 2.
            let raw = unsafe { dpdk_sys::rte_ring_create(c.as_ptr(), size, -1, flags) };
            NonNull::new(raw).ok_or(DpdkError::Ring(name))
        };
        let (a_to_b, b_to_a) = (ring()?, ring()?);
        let rings = Arc::new(SharedRings([a_to_b, b_to_a]));
        let a = ring_port(a_to_b, b_to_a, &pool, config, rings.clone())?;
        let b = ring_port(b_to_a, a_to_b, &pool, config, rings)?;
        Ok((a, b))
    }

    fn start(
        id: u16,
        pool: Arc<Mempool>,
        config: PortConfig,
        backing: Backing,
    ) -> Result<DpdkPort, DpdkError> {
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: the port exists; info is a valid out-parameter.
        check(unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) }, id, "dev_info_get")?;
        let too_many = |asked: u16, max: u16| asked == 0 || asked > max;
        if too_many(config.rx_queues, info.max_rx_queues)
            || too_many(config.tx_queues, info.max_tx_queues)
        {
            return Err(DpdkError::Port { port: id, step: "queue count", code: -22 });
        }
        let mut conf = dpdk_sys::rte_eth_conf::default();
        if config.rx_queues > 1 && info.flow_type_rss_offloads != 0 {
            conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads;
        }
        let (rxq, txq, n) = (config.rx_queues, config.tx_queues, config.descriptors);
        // SAFETY: the port exists and is stopped; conf is valid for the call.
        check(unsafe { dpdk_sys::rte_eth_dev_configure(id, rxq, txq, &conf) }, id, "configure")?;
        // SAFETY: the port exists.
        let socket = u32::try_from(unsafe { dpdk_sys::rte_eth_dev_socket_id(id) }).unwrap_or(0);
        for q in 0..rxq {
            let pool_ptr = pool.raw.as_ptr();
            // SAFETY: configured port, valid queue index, pool outlives the port (Arc held).
            let code = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(id, q, n, socket, std::ptr::null(), pool_ptr)
            };
            check(code, id, "rx_queue_setup")?;
        }
        for q in 0..txq {
            // SAFETY: configured port, valid queue index, default queue config.
            let code =
                unsafe { dpdk_sys::rte_eth_tx_queue_setup(id, q, n, socket, std::ptr::null()) };
            check(code, id, "tx_queue_setup")?;
        }
        // SAFETY: queues are set up.
        check(unsafe { dpdk_sys::rte_eth_dev_start(id) }, id, "start")?;
        if config.promiscuous {
            // Best effort: some PMDs (net_ring) have no notion of it.
            // SAFETY: started port.
            let _ = unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
        }
        let mut mtu = 1500u16;
        // SAFETY: started port; mtu is a valid out-parameter.
        let _ = unsafe { dpdk_sys::rte_eth_dev_get_mtu(id, &mut mtu) };
        let room = usize::from(pool.data_room).saturating_sub(mempool::HEADROOM);
        let caps = Capabilities {
            frame_len_max: (usize::from(mtu) + ETHERNET_HEADER).min(room),
            rx_queues: rxq,
            tx_queues: txq,
            rx_checksum_offload: info.rx_offload_capa & RX_OFFLOAD_CHECKSUMS
                == RX_OFFLOAD_CHECKSUMS,
            tx_checksum_offload: info.tx_offload_capa & TX_OFFLOAD_CHECKSUMS
                == TX_OFFLOAD_CHECKSUMS,
            burst_max: usize::from(n),
        };
        Ok(DpdkPort { id, pool, config, caps, backing })
    }

    /// The DPDK port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Whether the link is up now (memif, for one, comes up only once its peer connected).
    pub fn link_up(&self) -> bool {
        let mut link = dpdk_sys::rte_eth_link::default();
        // SAFETY: started port; `link` is a valid out-parameter.
        let code = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id, &mut link) };
        code == 0 && link.link_status() != 0
    }
}

fn port_by_name(name: &str) -> Result<u16, DpdkError> {
    let c = c_name(name)?;
    let mut id = 0u16;
    // SAFETY: EAL is up (callers hold `&Eal`); c is NUL-terminated; id is an out-parameter.
    let code = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    if code < 0 { Err(DpdkError::NoSuchPort(name.to_owned())) } else { Ok(id) }
}

fn ring_port(
    rx: NonNull<dpdk_sys::rte_ring>,
    tx: NonNull<dpdk_sys::rte_ring>,
    pool: &Arc<Mempool>,
    config: PortConfig,
    rings: Arc<SharedRings>,
) -> Result<DpdkPort, DpdkError> {
    let name = unique("wave_ringport");
    let c = c_name(&name)?;
    let (mut rxs, mut txs) = ([rx.as_ptr()], [tx.as_ptr()]);
    // SAFETY: EAL is up; the ring arrays hold valid rings for the call (the PMD copies them)
    // and the rings outlive the port (freed only after close, see Backing::Rings).
    let code = unsafe {
        dpdk_sys::rte_eth_from_rings(c.as_ptr(), rxs.as_mut_ptr(), 1, txs.as_mut_ptr(), 1, 0)
    };
    let id = u16::try_from(code).map_err(|_| DpdkError::NoSuchPort(name))?;
    let config = PortConfig { rx_queues: 1, tx_queues: 1, ..config };
    DpdkPort::start(id, pool.clone(), config, Backing::Rings(rings))
}

impl Drop for DpdkPort {
    fn drop(&mut self) {
        // SAFETY: the port was started by this value and is stopped only here.
        unsafe { dpdk_sys::rte_eth_dev_stop(self.id) };
        // SAFETY: stopped just above; closed exactly once, here.
        unsafe { dpdk_sys::rte_eth_dev_close(self.id) };
        if let Backing::Vdev(name) = &self.backing {
            // SAFETY: the vdev was created by this value and its port is closed.
            unsafe { dpdk_sys::rte_vdev_uninit(name.as_ptr()) };
        }
        // Ring-pair rings drop with `backing`, after this body: freed by the last port.
    }
}
