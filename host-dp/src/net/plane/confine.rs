//! Thread confinement by lock: the plane's unsafe items.
//!
//! The packet backends are per-thread types (their buffer pools are shared with their frames
//! through `Rc`), and the plane shares one port between worker threads. It may, because every
//! use of the port goes through the plane's mutex, and because only links that promise what
//! that needs ([`SharedWire`]) and lend nothing when the plane takes them can be confined.

use std::ops::{Deref, DerefMut};

use netstack::{Capture, Impaired, MemoryWire};

use super::Inner;
use crate::io::shm::ShmPort;
use crate::io::uring::UringPort;
use crate::net::{AnyPort, PortWire};

/// A link the plane may share between its worker threads, touching it only under its lock.
///
/// Implemented for the audited links: ports of every backend behind a [`PortWire`], the
/// in-memory wire, and the impairment and capture layers over them.
///
/// # Safety
///
/// Implement it only for a link that
/// 1. has no thread affinity: no thread-locals, no handle that works only on the thread that
///    made it (an io_uring set up single-issuer is the one known case; it fails with an
///    error, not undefined behaviour);
/// 2. keeps all of its state that is not thread-safe (`Rc`, `Cell`, `RefCell`) reachable only
///    through the value itself and through the frames it lends; and
/// 3. answers [`SharedWire::lends_nothing`] truthfully: true only while no frame it lent and
///    no other handle to that state exists outside the value.
///
/// ```compile_fail
/// // A link over a per-thread `Rc` cannot be shared by a plane: it is not a `SharedWire`.
/// use std::rc::Rc;
/// struct RcLink(Rc<()>);
/// impl netstack::Wire for RcLink {
///     type Frame = Vec<u8>;
///     fn frame_len_max(&self) -> usize { 1514 }
///     fn receive(&mut self, _: &mut Vec<Vec<u8>>, _: usize) -> usize { 0 }
///     fn alloc(&mut self) -> Option<Vec<u8>> { None }
///     fn send(&mut self, _: &mut Vec<Vec<u8>>) -> usize { 0 }
/// }
/// let _ = host_dp::net::Plane::new(RcLink(Rc::new(())), Default::default());
/// ```
pub unsafe trait SharedWire: netstack::Wire {
    /// True while nothing outside this value shares its thread-unsafe state: no frame it
    /// lent is alive elsewhere. May be false when the only frames are inside the value (an
    /// impairment layer's delayed ones, a port's spare buffers): refusing then is safe, and a
    /// fresh link lends nothing.
    fn lends_nothing(&self) -> bool;
}

/// A value only ever touched with the plane's lock held.
pub(super) struct Confined<T>(T);

impl<L: SharedWire> Confined<Inner<L>> {
    /// Confines `inner`, if its link lends nothing now.
    pub(super) fn new(inner: Inner<L>) -> Option<Confined<Inner<L>>> {
        inner.link.lends_nothing().then_some(Confined(inner))
    }
}

// SAFETY: a `Confined` is made only by `Confined::new`, from a link that lends nothing at
// that moment (checked there, truthfully by `SharedWire`'s contract), inside `Plane::new`,
// and lives only inside the plane's `Mutex` until the plane drops. So the link's
// thread-unsafe state is reachable only through this value, which every thread reaches only
// under the mutex. Every clone or drop of anything the link lends afterwards (frames, and the
// `Rc` each frame holds on its pool) happens while that mutex is held, and nothing it lends
// outlives the critical section: received frames are recycled (`Plane::pump`), transmit
// buffers are sent or dropped (`Plane::reset`, `WorkerWire::send`, which clear their vectors
// before unlocking). The mutex orders all of these accesses, so no two threads ever touch the
// value or its non-atomic reference counts at once, and the link has no thread affinity
// (`SharedWire`'s contract) that moving it between threads could break.
unsafe impl<L: SharedWire> Send for Confined<Inner<L>> {}

impl<T> Deref for Confined<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Confined<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

// SAFETY: a `UringPort`'s pool and receive ring are shared only with the frames it lends (each
// holds an `Rc<Pool>`; operations in flight hold a bare index), it keeps no thread-locals,
// and `lends_nothing` is true only when the port's `Rc` is the pool's only one. `PortWire`
// adds only frames it keeps inside itself.
unsafe impl SharedWire for PortWire<UringPort> {
    fn lends_nothing(&self) -> bool {
        self.port().lends_nothing()
    }
}

// SAFETY: a `ShmPort`'s thread-unsafe state (`Rc<Inner>`: free list, return ring) is shared
// only with the frames it lends, each holding an `Rc`; the region under it is an `Arc` of
// atomics, and `lends_nothing` is true only when the port's `Rc` is the only one.
unsafe impl SharedWire for PortWire<ShmPort> {
    fn lends_nothing(&self) -> bool {
        self.port().lends_nothing()
    }
}

// SAFETY: a DPDK port is `Send` (a port id and an `Arc` of a thread-safe mempool) and its
// frames are mbuf pointers freed into that mempool, whose operations are safe from any thread;
// it has no thread-unsafe state to lend.
#[cfg(feature = "dpdk")]
unsafe impl SharedWire for PortWire<crate::io::dpdk::DpdkPort> {
    fn lends_nothing(&self) -> bool {
        true
    }
}

// SAFETY: each variant holds one of the links above, whose promises carry over; the frames a
// `Tagged` keeps in its scratch vector are inside the value, and only during a call.
unsafe impl SharedWire for AnyPort {
    fn lends_nothing(&self) -> bool {
        self.backend_lends_nothing()
    }
}

// SAFETY: the in-memory wire is an `Arc` of mutex-guarded queues of `Vec<u8>` frames: all of
// it is thread-safe, and it lends nothing that is not.
unsafe impl SharedWire for MemoryWire {
    fn lends_nothing(&self) -> bool {
        true
    }
}

// SAFETY: the impairment layer adds plain values and frames it keeps inside itself; what it
// lends is what its inner link lends, checked through that link.
unsafe impl<L: SharedWire> SharedWire for Impaired<L> {
    fn lends_nothing(&self) -> bool {
        self.inner().lends_nothing()
    }
}

// SAFETY: the capture layer adds a writer that is `Send` (no thread affinity) and plain
// values; what it lends is what its inner link lends.
unsafe impl<L: SharedWire, W: std::io::Write + Send> SharedWire for Capture<L, W> {
    fn lends_nothing(&self) -> bool {
        self.inner().lends_nothing()
    }
}
