//! The io_uring backend: Ethernet frames through an `AF_PACKET` raw socket bound to one
//! interface (a veth, a TAP, a NIC the kernel drives), with batched submission and completion.
//! The default backend when DPDK is not wanted.
//!
//! Receive reads a `PACKET_MMAP` ring in memory (the default), lending its slots out as frames
//! in place (copying into pool buffers only once a quarter of the ring is lent), or keeps one
//! multishot `Recv` armed that takes a buffer per frame from `rx_depth` pool buffers provided in a
//! buffer ring; a completion names the buffer it filled, which becomes a frame. Transmit
//! copies frames into a `PACKET_MMAP` transmit ring of `tx_depth` slots on a transmit-only
//! socket and asks the kernel to send them with one `Send` of no bytes per burst (the
//! default), or posts one `Send` per frame, at most `tx_depth` in flight, whose completions
//! return the buffers. Either way a full queue is reported as backpressure. The sockets
//! ignore their own outgoing frames (`PACKET_IGNORE_OUTGOING`).
//!
//! Unsafe code lives in this folder. Invariants: a buffer handed to an operation, or
//! provided in the buffer ring, is not touched by Rust until a completion gives it back; the
//! port's `Drop` closes the socket, cancels every operation and waits for all completions
//! before the pool may be freed (if they do not all arrive within a bound, the pool memory is
//! leaked instead).

mod buf_ring;
mod mmap_ring;
mod pool;
mod rx;
mod rx_ring;
mod socket;
mod tx_ring;

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};

use buf_ring::BufRing;
use pool::Pool;
pub use pool::UringFrame;
use rx_ring::RxRing;
pub use socket::open_socket;
use socket::{interface_index, interface_mtu, set_option};
use tx_ring::TxRing;

use super::{Capabilities, Frame, IoError, PacketIo, QueueId, check_queue};

const RX: u64 = 1 << 32;
const TX: u64 = 2 << 32;
const CANCEL: u64 = 3 << 32;
/// A `Send` of no bytes asking the kernel to send the marked slots of the transmit ring.
const KICK: u64 = 4 << 32;
const INDEX_MASK: u64 = 0xffff_ffff;

/// How frames are received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxMode {
    /// A `PACKET_MMAP` ring polled in memory: no system call per frame (the default).
    MmapRing,
    /// One multishot `Recv` on the io_uring, filling buffers provided in a buffer ring.
    IoUring,
}

/// How frames are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    /// Frames copied into a `PACKET_MMAP` transmit ring, sent by one `Send` of no bytes on
    /// the io_uring per burst (the default, and the faster of the two:
    /// `docs/results/packet-io.md`). Slots are sized to the interface's MTU.
    MmapRing,
    /// One `Send` per frame on the io_uring, from the frame's own buffer.
    IoUring,
}

/// Port shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UringConfig {
    /// How frames are received.
    pub rx_mode: RxMode,
    /// How frames are sent.
    pub tx_mode: TxMode,
    /// Frame buffers (receive and transmit together).
    pub buffers: u32,
    /// Buffers kept for receiving (posted, or provided in the ring).
    pub rx_depth: u32,
    /// Most sends in flight: the transmit queue.
    pub tx_depth: u32,
    /// Socket receive buffer in bytes (set with `SO_RCVBUFFORCE` when allowed).
    pub socket_rcvbuf_bytes: u32,
    /// Transmit straight to the device's driver, past the kernel's queueing discipline
    /// (`PACKET_QDISC_BYPASS`): a little less work per frame (`docs/results/packet-io.md`),
    /// but packet taps (`tcpdump`) no longer see what this port sends,
    /// and a NIC whose ring is full drops at once, with no qdisc queue to absorb a burst
    /// (counted in `error_counts`). Off by default.
    pub qdisc_bypass: bool,
    /// Set the io_uring up for one submitting thread, the one that opens the port, with
    /// completions run only when it asks (Linux 6.1+: faster). Turn off for a port that other
    /// threads drive, e.g. under `net::Plane`, whose workers take turns.
    pub single_issuer: bool,
}

impl Default for UringConfig {
    fn default() -> Self {
        UringConfig {
            rx_mode: RxMode::MmapRing,
            tx_mode: TxMode::MmapRing,
            buffers: 2048,
            rx_depth: 256,
            tx_depth: 256,
            socket_rcvbuf_bytes: 8 << 20,
            qdisc_bypass: false,
            single_issuer: true,
        }
    }
}

/// Why the port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UringError {
    /// No interface with that name (in this network namespace).
    #[error("no interface {0}")]
    NoSuchInterface(String),
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Sys {
        /// Which call.
        call: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The config is out of bounds.
    #[error("invalid config: {0}")]
    Config(&'static str),
}

fn sys(call: &'static str) -> impl FnOnce(std::io::Error) -> UringError {
    move |source| UringError::Sys { call, source }
}

/// A port on one interface, single queue.
pub struct UringPort {
    ring: IoUring,
    /// Buffers provided to the multishot receive, in `RxMode::IoUring`. Declared after `ring`:
    /// it must outlive the registration.
    buf_ring: Option<BufRing>,
    /// The multishot receive is armed (its last completion said more would come).
    recv_armed: bool,
    socket: Option<OwnedFd>,
    pool: Rc<Pool>,
    /// The receive ring's next slot to read, in `RxMode::MmapRing` (the ring is the pool's).
    rx_next: usize,
    config: UringConfig,
    caps: Capabilities,
    /// Pool buffers the kernel holds for receiving.
    rx_posted: u32,
    tx_in_flight: u32,
    /// Of those, sends of receive-ring slots (forwarded frames): their completions are reaped
    /// by every receive, so that the slots go back before the kernel comes round to them.
    ring_tx_in_flight: u32,
    /// The transmit ring, in `TxMode::MmapRing`.
    tx_ring: Option<TxRing>,
    /// Kicks of the transmit ring not yet completed.
    kicks_in_flight: u32,
    /// Completed receives not yet handed out: (buffer, length).
    rx_ready: VecDeque<(u32, usize)>,
    rx_errors: u64,
    tx_errors: u64,
    /// Frames received by copy: the ring had lent out as many slots as it may.
    rx_copies: u64,
    /// Reused by `reap`, so reaping allocates nothing after set-up.
    completions: Vec<(u64, i32, u32)>,
}

impl std::fmt::Debug for UringPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringPort").field("config", &self.config).field("caps", &self.caps).finish()
    }
}

impl UringPort {
    /// Opens `interface` (in the calling thread's network namespace).
    pub fn open(interface: &str, config: UringConfig) -> Result<UringPort, UringError> {
        if config.rx_depth + config.tx_depth > config.buffers || config.rx_depth == 0 {
            return Err(UringError::Config("need rx_depth > 0 and rx_depth + tx_depth <= buffers"));
        }
        if config.buffers > 1 << 16 || config.rx_depth > 1 << 15 {
            // A provided buffer is named by a u16; a buffer ring holds at most 32768.
            return Err(UringError::Config("need buffers <= 65536 and rx_depth <= 32768"));
        }
        let socket = open_socket(interface, config.socket_rcvbuf_bytes)?;
        if config.qdisc_bypass {
            set_option(&socket, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)?;
        }
        let mtu = interface_mtu(&socket, interface)?;
        let frame_len_max = mtu + 14;
        let tx_ring = match config.tx_mode {
            TxMode::MmapRing => {
                let ifindex = interface_index(interface)?;
                Some(TxRing::new(ifindex, config.tx_depth, frame_len_max, config.qdisc_bypass)?)
            }
            TxMode::IoUring => None,
        };
        let rx_ring = match config.rx_mode {
            RxMode::MmapRing => {
                Some(RxRing::new(&socket, config.rx_depth.max(256) * 4, frame_len_max)?)
            }
            RxMode::IoUring => None,
        };
        let entries = (config.rx_depth + config.tx_depth + 8).next_power_of_two();
        // Deferred task work (Linux 6.1+) runs completions only when we ask for events,
        // batching them into our own calls; older kernels get a plain ring.
        let ring = if config.single_issuer {
            IoUring::builder().setup_single_issuer().setup_defer_taskrun().build(entries)
        } else {
            IoUring::new(entries)
        }
        .or_else(|_| IoUring::new(entries))
        .map_err(sys("io_uring_setup"))?;
        let buf_ring = match config.rx_mode {
            RxMode::IoUring => {
                let entries = u16::try_from(config.rx_depth.next_power_of_two())
                    .map_err(|_| UringError::Config("rx_depth too big"))?;
                Some(BufRing::register(&ring, entries)?)
            }
            RxMode::MmapRing => None,
        };
        let buffer_size = frame_len_max.next_multiple_of(64);
        let caps = Capabilities {
            frame_len_max,
            rx_queues: 1,
            tx_queues: 1,
            rx_checksum_offload: false,
            tx_checksum_offload: false,
            burst_max: config.tx_depth as usize,
        };
        let pool = Pool::new(config.buffers, buffer_size, frame_len_max, rx_ring);
        let mut port = UringPort {
            ring,
            buf_ring,
            recv_armed: false,
            socket: Some(socket),
            pool,
            rx_next: 0,
            config,
            caps,
            rx_posted: 0,
            tx_in_flight: 0,
            ring_tx_in_flight: 0,
            tx_ring,
            kicks_in_flight: 0,
            rx_ready: VecDeque::new(),
            rx_errors: 0,
            tx_errors: 0,
            rx_copies: 0,
            completions: Vec::with_capacity(2 * entries as usize), // the CQ is twice the SQ
        };
        port.post_receives();
        port.ring.submit().map_err(sys("io_uring_enter"))?;
        Ok(port)
    }

    /// Receives and sends that failed in the kernel (dropped frames, counted).
    pub fn error_counts(&self) -> (u64, u64) {
        (self.rx_errors, self.tx_errors)
    }

    /// True while no frame this port lent is alive (the port holds the only `Rc` on its pool;
    /// operations in flight hold bare indices).
    pub fn lends_nothing(&self) -> bool {
        Rc::strong_count(&self.pool) == 1 && Rc::weak_count(&self.pool) == 0
    }

    /// Frames received by copying them out of the `PACKET_MMAP` ring into pool buffers,
    /// because a quarter of its slots were lent out as frames still held (the rest were lent
    /// in place, without a copy).
    pub fn rx_copies(&self) -> u64 {
        self.rx_copies
    }

    fn fd(&self) -> types::Fd {
        types::Fd(self.socket.as_ref().map_or(-1, AsRawFd::as_raw_fd))
    }

    /// Submits what is queued; a failure is the device's error.
    fn submit(&mut self) -> Result<(), IoError> {
        self.ring.submit().map(drop).map_err(|e| IoError::Device(e.raw_os_error().unwrap_or(0)))
    }

    /// Pushes one operation; false when the submission queue is full.
    fn push(&mut self, entry: &squeue::Entry) -> bool {
        // SAFETY: every entry refers to a pool buffer that the operation now owns until its
        // completion (module invariants), and the pool outlives the ring's operations.
        unsafe { self.ring.submission().push(entry).is_ok() }
    }
}

impl PacketIo for UringPort {
    type Frame = UringFrame;

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn alloc(&mut self, out: &mut Vec<UringFrame>, count: usize) -> usize {
        // Keep the buffers that receives need.
        let reserve = (self.config.rx_depth - self.rx_posted) as usize;
        if self.pool.free_count() < count + reserve {
            self.reap();
        }
        let mut given = 0;
        while given < count && self.pool.free_count() > reserve {
            let Some(index) = self.pool.take() else { break };
            out.push(self.pool.frame(index, 0));
            given += 1;
        }
        given
    }

    fn rx_burst(
        &mut self,
        queue: QueueId,
        out: &mut Vec<UringFrame>,
        max: usize,
    ) -> Result<usize, IoError> {
        check_queue(queue, 1)?;
        if self.pool.ring().is_some() {
            return Ok(self.rx_from_ring(out, max));
        }
        if self.rx_ready.len() < max {
            self.reap();
        }
        let mut received = 0;
        while received < max {
            let Some((index, len)) = self.rx_ready.pop_front() else { break };
            out.push(self.pool.frame(index, len));
            received += 1;
        }
        self.post_receives();
        self.submit()?;
        Ok(received)
    }

    fn tx_burst(&mut self, queue: QueueId, frames: &mut Vec<UringFrame>) -> Result<usize, IoError> {
        check_queue(queue, 1)?;
        if self.tx_ring.is_some() {
            return self.tx_through_ring(frames);
        }
        self.reap();
        let max = self.caps.frame_len_max;
        let mut sent = 0;
        let mut result = Ok(());
        for frame in frames.iter() {
            let len = frame.len();
            if len > max {
                result = Err(IoError::FrameTooLong { len, max });
                break;
            }
            if self.tx_in_flight >= self.config.tx_depth {
                break; // the transmit queue is full: backpressure
            }
            let length = u32::try_from(len).expect("bounded by frame_len_max");
            let entry = opcode::Send::new(self.fd(), frame.data().as_ptr(), length)
                .build()
                .user_data(TX | u64::from(frame.index_for_submit()));
            if !self.push(&entry) {
                break;
            }
            self.tx_in_flight += 1;
            if self.pool.ring_slot(frame.index_for_submit()).is_some() {
                self.ring_tx_in_flight += 1;
            }
            sent += 1;
        }
        for frame in frames.drain(..sent) {
            let _ = frame.into_index(); // in flight: the completion returns the buffer
        }
        self.submit()?;
        result.map(|()| sent)
    }
}

impl Drop for UringPort {
    fn drop(&mut self) {
        // Close the socket, then cancel whatever is still posted, and wait for every
        // completion: only then does no operation own a pool buffer. (The io_uring, dropped
        // first of the fields, takes the buffer ring's registration with it.)
        self.socket = None;
        let cancel =
            opcode::AsyncCancel2::new(types::CancelBuilder::any()).build().user_data(CANCEL);
        let _ = self.push(&cancel);
        let deadline = Instant::now() + Duration::from_secs(2);
        let tick = types::Timespec::new().nsec(10_000_000);
        let wait = types::SubmitArgs::new().timespec(&tick);
        // Buffers still provided in the buffer ring are written only by an armed receive.
        let busy = |port: &UringPort| port.recv_armed || port.tx_in_flight > 0;
        while busy(self) && Instant::now() < deadline {
            // Bounded wait: a completion that never comes must not hang the drop (the leak
            // below covers that case).
            let _ = self.ring.submitter().submit_with_args(1, &wait);
            self.reap();
        }
        if busy(self) {
            self.pool.leak_on_drop(); // the kernel may still write into buffers: never free them
        }
    }
}
