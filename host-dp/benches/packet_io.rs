//! Packet I/O benchmark: frames per second through each backend, next to that backend's raw
//! baseline in the same run, at 64- and 1500-byte frames. Every loop runs in one thread: it
//! allocates a burst of 32 buffers, writes each frame (a copy of a template), transmits on one
//! port and receives on the other, and frees what arrived; rates count received frames.
//!
//! ```text
//! cargo bench -p host-dp --features dpdk --bench packet_io -- [--repeats 5] [--seconds 0.5]
//!     [--only dpdk|shm|uring|uring-txring|uring-mmap|uring-ops] [--len 64|1500]
//!     [--data-room 2176|1642]
//! ```
//!
//! Needs root (a network namespace with a veth pair for the kernel paths).

#[path = "../tests/netns/mod.rs"]
mod netns;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

#[cfg(feature = "dpdk")]
use host_dp::io::shm::{ShmPort, Side, WireConfig};
use host_dp::io::uring::{RxMode, TxMode, UringConfig, UringPort};
use host_dp::io::{Frame, PacketIo, QueueId};

const BURST: usize = 32;
const Q: QueueId = QueueId(0);

fn template(len: usize) -> Vec<u8> {
    let mut frame = vec![0u8; len];
    frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]);
    frame
}

/// Our backends: tx on `a`, rx on `b`, for `seconds`; returns received frames per second.
/// Every loop copies its frames from the same `bytes` buffer (its address alone moved the raw
/// DPDK loop's 1500-byte rate by 5–8 % here: `memcpy` speed depends on where the source sits
/// relative to the destination).
fn ours<A: PacketIo, B: PacketIo>(a: &mut A, b: &mut B, bytes: &[u8], seconds: f64) -> f64 {
    let len = bytes.len();
    let mut tx: Vec<A::Frame> = Vec::with_capacity(BURST);
    let mut rx: Vec<B::Frame> = Vec::with_capacity(2 * BURST);
    let (mut received, started) = (0u64, Instant::now());
    let deadline = started + Duration::from_secs_f64(seconds);
    while Instant::now() < deadline {
        for _ in 0..64 {
            let before = tx.len();
            a.alloc(&mut tx, BURST - before);
            for frame in &mut tx[before..] {
                frame.set_len(len).expect("within limits");
                frame.data_mut().copy_from_slice(bytes);
            }
            a.tx_burst(Q, &mut tx).expect("tx");
            received += b.rx_burst(Q, &mut rx, 2 * BURST).expect("rx") as u64;
            b.free_batch(&mut rx);
        }
    }
    received as f64 / started.elapsed().as_secs_f64()
}

/// Kernel baseline: `sendmmsg` of 32 frames on one AF_PACKET socket, `recvmmsg` on the other.
fn mmsg_baseline(tx_if: &str, rx_if: &str, bytes: &[u8], seconds: f64) -> f64 {
    use nix::sys::socket::{MsgFlags, MultiHeaders, recvmmsg, sendmmsg};
    use std::io::{IoSlice, IoSliceMut};
    let tx = host_dp::io::uring::open_socket(tx_if, 8 << 20).expect("tx socket");
    let rx = host_dp::io::uring::open_socket(rx_if, 8 << 20).expect("rx socket");
    let len = bytes.len();
    let mut out = vec![[0u8; 2048]; 2 * BURST];
    let (mut received, started) = (0u64, Instant::now());
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut send_headers = MultiHeaders::<()>::preallocate(BURST, None);
    let mut recv_headers = MultiHeaders::<()>::preallocate(2 * BURST, None);
    let mut frames = vec![[0u8; 1514]; BURST];
    while Instant::now() < deadline {
        for _ in 0..64 {
            // The frames are rewritten every burst, as the other loops write theirs.
            for frame in &mut frames {
                frame[..len].copy_from_slice(bytes);
            }
            let slices: Vec<[IoSlice<'_>; 1]> =
                frames.iter().map(|f| [IoSlice::new(&f[..len])]).collect();
            let addrs = vec![None; BURST];
            let _ =
                sendmmsg(tx.as_raw_fd(), &mut send_headers, &slices, &addrs, [], MsgFlags::empty());
            let mut buffers: Vec<[IoSliceMut<'_>; 1]> =
                out.iter_mut().map(|b| [IoSliceMut::new(&mut b[..])]).collect();
            if let Ok(got) = recvmmsg(
                rx.as_raw_fd(),
                &mut recv_headers,
                buffers.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                received += got.count() as u64;
            }
        }
    }
    received as f64 / started.elapsed().as_secs_f64()
}

#[cfg(feature = "dpdk")]
mod dpdk {
    //! The DPDK raw baseline: the same loop written directly against DPDK.
    use super::*;
    use host_dp::io::dpdk::{DpdkPort, Eal, EalConfig, Mempool};

    pub(crate) fn eal() -> &'static Eal {
        Eal::init(EalConfig::default()).expect("EAL")
    }

    /// The pool both DPDK loops share; `data_room` includes DPDK's 128-byte headroom.
    pub(crate) fn pool(data_room: u16) -> std::sync::Arc<Mempool> {
        Mempool::new(eal(), 8191, data_room).expect("pool")
    }

    pub(crate) fn raw_loop(
        pool: &Mempool,
        a: &DpdkPort,
        b: &DpdkPort,
        bytes: &[u8],
        seconds: f64,
    ) -> f64 {
        let len = bytes.len();
        let mut tx = [std::ptr::null_mut::<dpdk_sys::rte_mbuf>(); BURST];
        let mut rx = [std::ptr::null_mut::<dpdk_sys::rte_mbuf>(); 2 * BURST];
        let length = u16::try_from(len).expect("frame fits u16");
        let (mut received, started) = (0u64, Instant::now());
        let deadline = started + Duration::from_secs_f64(seconds);
        while Instant::now() < deadline {
            for _ in 0..64 {
                // SAFETY: valid pool; `tx` has room for BURST pointers.
                if unsafe { dpdk_sys::rte_pktmbuf_alloc_bulk_(pool.as_raw(), tx.as_mut_ptr(), 32) }
                    != 0
                {
                    continue;
                }
                for &m in &tx {
                    // SAFETY: a fresh mbuf with room for `len` bytes.
                    let data = unsafe { dpdk_sys::rte_pktmbuf_append_(m, length) };
                    // SAFETY: append returned `len` writable bytes that `bytes` does not overlap.
                    unsafe {
                        std::ptr::copy_nonoverlapping(bytes.as_ptr(), data.cast::<u8>(), len)
                    };
                }
                // SAFETY: started ports; the device takes the mbufs it accepts.
                let sent = unsafe { dpdk_sys::rte_eth_tx_burst_(a.id(), 0, tx.as_mut_ptr(), 32) };
                // SAFETY: the mbufs not accepted are still ours to free.
                unsafe {
                    dpdk_sys::rte_pktmbuf_free_bulk(
                        tx[usize::from(sent)..].as_mut_ptr(),
                        u32::from(32 - sent),
                    )
                };
                // SAFETY: started port; `rx` has room for 64 pointers.
                let got = unsafe { dpdk_sys::rte_eth_rx_burst_(b.id(), 0, rx.as_mut_ptr(), 64) };
                // SAFETY: received mbufs are ours.
                unsafe { dpdk_sys::rte_pktmbuf_free_bulk(rx.as_mut_ptr(), u32::from(got)) };
                received += u64::from(got);
            }
        }
        received as f64 / started.elapsed().as_secs_f64()
    }
}

struct Row {
    name: String,
    baseline: String,
    ours: Vec<f64>,
    base: Vec<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let repeats: usize = flag("--repeats").map_or(Ok(5), |v| v.parse())?;
    let seconds: f64 = flag("--seconds").map_or(Ok(0.5), |v| v.parse())?;
    // `--only dpdk|shm|uring|uring-txring|uring-mmap|uring-ops` runs one path (for
    // profiling); a prefix runs every path it starts (`uring`: every AF_PACKET path).
    let only = flag("--only").cloned();
    let run = |path: &str| only.as_deref().is_none_or(|o| path.starts_with(o));
    // `--data-room N`: the DPDK pool's buffer size with headroom (default 2176, DPDK's
    // RTE_MBUF_DEFAULT_BUF_SIZE); 1642 sizes it to a 1500-byte MTU, which spares our
    // `tx_burst` its per-frame length check (one pool size per process: the check depends on
    // every pool the process made).
    #[cfg_attr(not(feature = "dpdk"), allow(unused_variables))]
    let data_room: u16 = flag("--data-room").map_or(Ok(2176), |v| v.parse())?;
    // `--len N` runs one frame length instead of both.
    let lens: Vec<usize> = match flag("--len") {
        Some(v) => vec![v.parse()?],
        None => vec![64, 1500],
    };
    let mut rows = Vec::new();
    for len in lens {
        let bytes = template(len);
        #[cfg(feature = "dpdk")]
        {
            let pool = dpdk::pool(data_room);
            let config = host_dp::io::dpdk::PortConfig::default();
            let (mut a, mut b) =
                host_dp::io::dpdk::DpdkPort::ring_pair(dpdk::eal(), pool.clone(), config)?;
            let pages = if dpdk::eal().hugepages() { "hugepages" } else { "4 KiB pages" };
            let mut row = Row {
                name: format!("DPDK ring pair ({pages}, {data_room}-byte buffers), {len} B"),
                baseline: "raw DPDK loop (dpdk-sys), same ports".into(),
                ours: vec![],
                base: vec![],
            };
            for _ in 0..if run("dpdk") { repeats } else { 0 } {
                row.base.push(dpdk::raw_loop(&pool, &a, &b, &bytes, seconds));
                row.ours.push(ours(&mut a, &mut b, &bytes, seconds));
            }
            if run("dpdk") {
                rows.push(row);
            }
            let region = host_dp::io::shm::create(WireConfig::default(), false)?;
            let mut sa = ShmPort::attach(region.clone(), Side::A)?;
            let mut sb = ShmPort::attach(region, Side::B)?;
            let mut row = Row {
                name: format!("shm wire, {len} B"),
                baseline: "raw DPDK ring-pair loop (memory path reference)".into(),
                ours: vec![],
                base: vec![],
            };
            for _ in 0..if run("shm") { repeats } else { 0 } {
                row.base.push(dpdk::raw_loop(&pool, &a, &b, &bytes, seconds));
                row.ours.push(ours(&mut sa, &mut sb, &bytes, seconds));
            }
            if run("shm") {
                rows.push(row);
            }
        }
        if !["uring-mmap", "uring-ops", "uring-txring"].into_iter().any(run) {
            continue;
        }
        let ns = netns::Netns::with_veth_pair("bench");
        for (rx_mode, tx_mode, label, path) in [
            (RxMode::MmapRing, TxMode::MmapRing, "PACKET_MMAP tx + rx rings", "uring-txring"),
            (RxMode::MmapRing, TxMode::IoUring, "io_uring tx + PACKET_MMAP rx", "uring-mmap"),
            (RxMode::IoUring, TxMode::IoUring, "io_uring tx + io_uring rx", "uring-ops"),
        ] {
            if !run(path) {
                continue;
            }
            let row = ns.run(|| {
                let config = UringConfig { rx_mode, tx_mode, ..UringConfig::default() };
                let mut row = Row {
                    name: format!("AF_PACKET on veth, {label}, {len} B"),
                    baseline: "sendmmsg/recvmmsg on AF_PACKET, same veth".into(),
                    ours: vec![],
                    base: vec![],
                };
                for _ in 0..repeats {
                    // Only one path's sockets exist at a time: every socket on `vb` gets its
                    // own copy of each frame, so ports left open would slow the baseline.
                    row.base.push(mmsg_baseline("va", "vb", &bytes, seconds));
                    let mut a = UringPort::open("va", config).expect("va");
                    let mut b = UringPort::open("vb", config).expect("vb");
                    ours(&mut a, &mut b, &bytes, seconds / 10.0); // first touch of the buffers
                    row.ours.push(ours(&mut a, &mut b, &bytes, seconds));
                }
                row
            });
            rows.push(row);
        }
    }
    println!("| path | ours (Mpps) | baseline | baseline (Mpps) | ours ÷ baseline |");
    println!("|---|---|---|---|---|");
    for row in rows {
        let ratios: Vec<f64> = row.ours.iter().zip(&row.base).map(|(o, b)| o / b).collect();
        println!(
            "| {} | {:.2} | {} | {:.2} | {:.2} (per-repeat {:.2}–{:.2}) |",
            row.name,
            median(row.ours.clone()) / 1e6,
            row.baseline,
            median(row.base.clone()) / 1e6,
            median(ratios.clone()),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
    }
    Ok(())
}
