//! The in-thread fault path's unsafe part: a process-wide SIGBUS handler and the table of
//! arenas it serves.
//!
//! Invariants:
//! - A slot of [`ARENAS`] holds either null or a pointer to the `Inner` of a live arena in
//!   [`FaultMode::InThread`](crate::FaultMode): the arena stores it after its `Inner` is
//!   complete and clears it in `Drop` before the `Inner` can go. A fault on an arena's memory
//!   cannot be in progress while the arena drops: its memory is reachable only through
//!   borrows of the arena (`Arena::words`).
//! - The handler does only what is safe in a signal handler (`fault.rs` says what), and
//!   passes every SIGBUS that is not on one of our arenas to the handler installed before
//!   ours (the Rust runtime's, which reports stack overflows), or to the default action.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::arena::Inner;
use crate::uffd::UffdError;

/// Arenas in in-thread mode at once, at most.
const SLOTS: usize = 64;

static ARENAS: [AtomicPtr<Inner>; SLOTS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];
/// The SIGBUS action before ours (set before ours is installed).
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
static INSTALLING: Mutex<()> = Mutex::new(());

/// Puts `inner` in the table (installing the handler the first time); returns its slot.
pub(crate) fn register(inner: &Inner) -> Result<usize, UffdError> {
    install()?;
    let pointer = std::ptr::from_ref(inner).cast_mut();
    for (slot, entry) in ARENAS.iter().enumerate() {
        let free = std::ptr::null_mut();
        if entry.compare_exchange(free, pointer, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return Ok(slot);
        }
    }
    Err(UffdError::Missing("a free in-thread fault slot (64 arenas at most)"))
}

/// Takes slot `slot` out of the table (the arena is going).
pub(crate) fn unregister(slot: usize) {
    ARENAS[slot].store(std::ptr::null_mut(), Ordering::Release);
}

fn install() -> Result<(), UffdError> {
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(PoisonError::into_inner);
    if PREVIOUS.get().is_some() {
        return Ok(());
    }
    let failed = |call| UffdError::Sys { call, source: std::io::Error::last_os_error() };
    // SAFETY: a zeroed sigaction is a valid value (empty mask, no flags, SIG_DFL); the first
    // call only reads the current action into `previous`, on our stack.
    let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &raw mut previous) } != 0 {
        return Err(failed("sigaction"));
    }
    let _ = PREVIOUS.set(previous);
    // SAFETY: as above; ours names a handler of the SA_SIGINFO signature.
    let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
    ours.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
    ours.sa_flags = libc::SA_SIGINFO;
    // SAFETY: installs `ours`, read from our stack.
    if unsafe { libc::sigaction(libc::SIGBUS, &raw const ours, std::ptr::null_mut()) } != 0 {
        return Err(failed("sigaction"));
    }
    Ok(())
}

extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler.
    let info_ref = unsafe { &*info };
    // SAFETY: for SIGBUS the union's address field is the one the kernel filled in.
    let address = unsafe { info_ref.si_addr() } as u64;
    for entry in &ARENAS {
        let pointer = entry.load(Ordering::Acquire);
        // SAFETY: non-null entries point to live arenas' `Inner`s (module invariants).
        let Some(inner) = (unsafe { pointer.as_ref() }) else { continue };
        if let Some(index) = inner.arena.page_index(address) {
            if !crate::fault::resolve_timed(inner, index, false) {
                // The page cannot come in (a failed ioctl): its data is kept, but retrying the
                // access would fault forever. Say so and stop, as a fault on bad memory would.
                let mut errno = *b"    ";
                put_decimal(&mut errno, crate::fault::LAST_FAILURE.load(Ordering::Relaxed));
                let parts: [&[u8]; 3] = [
                    b"memmgr: an arena page could not be brought in (errno ",
                    &errno,
                    b"); aborting\n",
                ];
                for part in parts {
                    // SAFETY: write(2) is async-signal-safe; the buffers are ours.
                    unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
                }
                // SAFETY: abort(3) is async-signal-safe.
                unsafe { libc::abort() };
            }
            return;
        }
    }
    // Not ours: the previous handler, or the default action (the access faults again).
    match PREVIOUS.get().copied() {
        Some(action) if action.sa_flags & libc::SA_SIGINFO != 0 && action.sa_sigaction > 1 => {
            // SAFETY: a SA_SIGINFO handler the process installed, called as the kernel would.
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(action.sa_sigaction) };
            handler(signal, info, context);
        }
        Some(action) if action.sa_sigaction > 1 => {
            // SAFETY: a plain handler the process installed.
            let handler: extern "C" fn(libc::c_int) =
                unsafe { std::mem::transmute(action.sa_sigaction) };
            handler(signal);
        }
        _ => {
            // SAFETY: a zeroed sigaction is valid: SIG_DFL, empty mask, no flags.
            let default: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: restoring the default action is async-signal-safe; returning re-runs
            // the access, which now ends the process with SIGBUS as if we were not here.
            unsafe { libc::sigaction(libc::SIGBUS, &raw const default, std::ptr::null_mut()) };
        }
    }
}

/// Writes `value` right-aligned into `field` in decimal (no allocation: signal-safe); `-`
/// for a negative value, `#`s if it does not fit.
fn put_decimal(field: &mut [u8], value: i32) {
    let mut magnitude = value.unsigned_abs();
    let mut at = field.len();
    loop {
        if at == 0 {
            field.fill(b'#');
            return;
        }
        at -= 1;
        field[at] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0 {
        if at == 0 {
            field.fill(b'#');
            return;
        }
        field[at - 1] = b'-';
    }
}
