//! `JoinHandle`: the result of a spawned task, awaitable from another task or waited for
//! from a thread outside the runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

struct State<T> {
    value: Mutex<Option<T>>,
    done: AtomicBool,
    waiter: Mutex<Option<Waker>>,
}

/// The eventual output of a spawned task.
pub struct JoinHandle<T> {
    state: Arc<State<T>>,
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle").field("finished", &self.is_finished()).finish()
    }
}

pub(super) struct Completer<T> {
    state: Arc<State<T>>,
}

pub(super) fn pair<T>() -> (JoinHandle<T>, Completer<T>) {
    let state = Arc::new(State {
        value: Mutex::new(None),
        done: AtomicBool::new(false),
        waiter: Mutex::new(None),
    });
    (JoinHandle { state: state.clone() }, Completer { state })
}

impl<T> Completer<T> {
    pub(super) fn complete(self, value: T) {
        *self.state.value.lock().expect("join state") = Some(value);
        // Release: a joiner that sees `done` sees the value.
        self.state.done.store(true, Ordering::Release);
        if let Some(waker) = self.state.waiter.lock().expect("join state").take() {
            waker.wake();
        }
    }
}

impl<T> JoinHandle<T> {
    /// True once the task finished.
    pub fn is_finished(&self) -> bool {
        self.state.done.load(Ordering::Acquire)
    }

    /// Waits for the output from a thread that is not a worker (spin, then short sleeps).
    pub fn join(self) -> T {
        let mut polls = 0u32;
        while !self.is_finished() {
            polls = polls.saturating_add(1);
            if polls < 1_000 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        self.state.value.lock().expect("join state").take().expect("output taken once")
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if !self.is_finished() {
            *self.state.waiter.lock().expect("join state") = Some(cx.waker().clone());
            // Re-check after registering: a completion in between must not be missed.
            if !self.is_finished() {
                return Poll::Pending;
            }
        }
        let value = self.state.value.lock().expect("join state").take();
        Poll::Ready(value.expect("a JoinHandle is polled to completion once"))
    }
}
