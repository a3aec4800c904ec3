//! hyper's runtime traits on Wave's runtime (cargo feature `hyper`): the host's handles are
//! hyper executors (hyper's background futures, such as HTTP/2 streams, become tasks), and
//! [`HyperTimer`] gives hyper Wave's timers (header-read and keep-alive timeouts), so a hyper
//! server or client runs on the workers with nothing of tokio's runtime. I/O goes through
//! `hyper_util::rt::TokioIo` over [`crate::net::TcpStream`]'s tokio traits (feature `tokio`).
//! `examples/hyper-server` serves HTTP/1.1 and HTTP/2 this way: an `auto::Builder` made with
//! `host.handle()` as its executor and `HyperTimer` on both protocols.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::HostHandle;
use crate::runtime::{self, Handle, Sleep};

impl<F> hyper::rt::Executor<F> for HostHandle
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// Spawns `future` as a task. A runtime at its task limit drops it (hyper then fails
    /// that stream or connection, as with any executor that refuses work).
    fn execute(&self, future: F) {
        let _ = self.spawn(future);
    }
}

impl<F> hyper::rt::Executor<F> for Handle
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// As for [`HostHandle`].
    fn execute(&self, future: F) {
        let _ = self.spawn(future);
    }
}

/// hyper's timer on Wave's runtime: sleeps that are awaited in the runtime's tasks, fired by
/// the polling workers (no timer thread), and removed when hyper drops them early.
#[derive(Debug, Clone, Copy, Default)]
pub struct HyperTimer;

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(runtime::sleep(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(runtime::sleep_until(deadline))
    }
}

impl hyper::rt::Sleep for Sleep {}
