//! `memmgr`: Wave's page-tiering mechanism. It moves pages; a policy (`ipu-cp`'s tier policy,
//! through `host-dp`'s tier host) decides which.
//!
//! - [`Arena`]: anonymous memory registered with userfaultfd. Cold pages move to an LZ4
//!   compressed tier (`Arena::demote`, atomic by `UFFDIO_MOVE`), and come back when touched.
//! - [`ArenaAlloc`]: an allocator over an arena, and [`capi`], its C interface
//!   (`include/wave_arena.h`) for C and C++ code in the process.
//! - [`FaultMode`]: faults resolved by a handler thread, or in the faulting thread (SIGBUS).
//! - [`table`]: the per-page states (state, version, touch and write counters), in a sealed
//!   memfd the policy maps read-only; updated in place with per-page atomics.
//! - [`uffd`]: the kernel interface; with `table.rs` (the table's mapping), `sigbus.rs` (the
//!   in-thread fault handler) and `capi.rs` (exported symbol names), the crate's only unsafe
//!   code.
//!
//! - Write tracking (`WP_ASYNC` + `PAGEMAP_SCAN`, `Arena::track_writes`): a promoted page
//!   keeps its compressed copy while unwritten, so demoting it again costs a check.
//!
//! Needs root here (or `/dev/userfaultfd` access): `Arena::new` says so clearly otherwise.
//! Design and measurements: `../shared/docs/memtier.md`.

mod alloc;
mod arena;
pub mod capi;
mod fault;
mod sigbus;
pub mod table;
pub mod uffd;

pub use alloc::{ArenaAlloc, FreeError};
pub use arena::{Applied, Arena, Command, Counters, Error, Op, PageView, get};
pub use fault::FaultMode;
