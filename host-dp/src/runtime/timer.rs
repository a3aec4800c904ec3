//! Timers: [`sleep`] and [`sleep_until`] for tasks. Deadlines sit in one heap per runtime;
//! workers fire the due ones as they poll (between tasks), so a timer costs no thread and no
//! wakeup across cores. A cached earliest deadline keeps the check to one atomic load while
//! nothing is due. Precision: the polling interval (sub-microsecond on a spinning worker; up
//! to the idle backoff's 50 µs sleep on a polite one).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Most timers fired per poll: bounded work for the polling worker.
const FIRE_BATCH: usize = 64;

struct Entry {
    deadline_ns: u64,
    order: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline_ns, self.order) == (other.deadline_ns, other.order)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline_ns, self.order).cmp(&(other.deadline_ns, other.order))
    }
}

pub(crate) struct Timers {
    origin: Instant,
    heap: Mutex<BinaryHeap<Reverse<Entry>>>,
    /// The earliest deadline in the heap (ns since `origin`), `u64::MAX` when empty.
    next_ns: AtomicU64,
    order: AtomicU64,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            origin: Instant::now(),
            heap: Mutex::new(BinaryHeap::new()),
            next_ns: AtomicU64::new(u64::MAX),
            order: AtomicU64::new(0),
        }
    }

    fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Wakes `waker` at or after `deadline`.
    fn add(&self, deadline: Instant, waker: Waker) {
        let deadline_ns = self.ns(deadline);
        let order = self.order.fetch_add(1, Ordering::Relaxed);
        let mut heap = self.heap.lock().expect("timer heap");
        heap.push(Reverse(Entry { deadline_ns, order, waker }));
        self.next_ns.fetch_min(deadline_ns, Ordering::AcqRel);
    }

    /// True when a deadline has passed (one atomic load and a clock read when armed).
    pub(crate) fn due(&self) -> bool {
        let next = self.next_ns.load(Ordering::Acquire);
        next != u64::MAX && self.ns(Instant::now()) >= next
    }

    /// Wakes up to `FIRE_BATCH` timers that are due. Never waits: a worker that finds the
    /// heap locked leaves it to the holder.
    pub(crate) fn fire(&self) {
        let now_ns = self.ns(Instant::now());
        let mut due = Vec::new();
        {
            let Ok(mut heap) = self.heap.try_lock() else { return };
            while due.len() < FIRE_BATCH {
                match heap.peek() {
                    Some(Reverse(entry)) if entry.deadline_ns <= now_ns => {
                        due.push(heap.pop().expect("peeked").0.waker);
                    }
                    _ => break,
                }
            }
            let next = heap.peek().map_or(u64::MAX, |Reverse(entry)| entry.deadline_ns);
            self.next_ns.store(next, Ordering::Release);
        }
        for waker in due {
            waker.wake();
        }
    }
}

/// A future that completes at a deadline. Await it inside a runtime task.
#[derive(Debug)]
pub struct Sleep {
    deadline: Instant,
    armed: bool,
}

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Completes at `deadline` (at once if it has passed).
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, armed: false }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        if !self.armed {
            let deadline = self.deadline;
            let armed =
                super::worker::with_timers(|timers| timers.add(deadline, cx.waker().clone()));
            assert!(armed, "host_dp::runtime::sleep must be awaited in a task of a runtime");
            self.armed = true;
        }
        Poll::Pending
    }
}
