//! Thread confinement by lock: the plane's one unsafe item.
//!
//! The packet backends are per-thread types (their buffer pools are shared with their frames
//! through `Rc`), and the plane shares one port between worker threads. It may, because every
//! use of the port goes through the plane's mutex: see the proof on the `Send` impl.

use std::ops::{Deref, DerefMut};

/// A value only ever touched with the plane's lock held.
pub(super) struct Confined<T>(T);

impl<T> Confined<T> {
    pub(super) fn new(value: T) -> Confined<T> {
        Confined(value)
    }
}

// SAFETY: a `Confined` is created by `Plane::new` and lives only inside the plane's `Mutex`
// until the plane drops. Every access to the value, and every clone or drop of anything it
// lends (frames, and the `Rc` each frame holds on its pool), happens while that mutex is held,
// and nothing it lends outlives the critical section: received frames are recycled
// (`Plane::pump`), transmit buffers are sent or dropped (`Plane::reset`, `WorkerLink::send`,
// which clear their vectors before unlocking). The mutex orders all of these accesses, so no
// two threads ever touch the value or its non-atomic reference counts at once. Links used by
// the plane must have no other thread affinity (no thread-locals, no thread-bound handles);
// an io_uring set up single-issuer is the one known case, and it fails with an error, not
// undefined behaviour (the plane's docs say to open the port without it).
unsafe impl<T> Send for Confined<T> {}

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
