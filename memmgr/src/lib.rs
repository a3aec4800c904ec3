//! `memmgr`: Wave's page-tiering mechanism. It moves pages; a policy (in `ipu-cp`, to come)
//! decides which.
//!
//! - [`Arena`]: anonymous memory registered with userfaultfd. Cold pages move to an LZ4
//!   compressed tier (`Arena::demote`, atomic by `UFFDIO_MOVE`), and come back when touched.
//! - [`uffd`]: the kernel interface (the crate's only unsafe code).
//!
//! Needs root here (or `/dev/userfaultfd` access): `Arena::new` says so clearly otherwise.
//! Design and measurements: `../shared/docs/memtier.md`; the plan (parking to learn
//! which pages are touched, write tracking, epoch-batched commands from the policy, the
//! in-thread fault path) builds on this.

mod arena;
pub mod uffd;

pub use arena::{Applied, Arena, Command, Counters, Error, Op, PageView, get};
