//! Timers: [`sleep`] and [`sleep_until`] for tasks. Deadlines sit in one heap per runtime;
//! workers fire the due ones as they poll (between tasks), so a timer costs no thread and no
//! wakeup across cores. A cached earliest deadline keeps the check to one atomic load while
//! nothing is due. Precision: the polling interval (sub-microsecond on a spinning worker; up
//! to the idle backoff's 50 µs sleep on a polite one).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::Handle;

/// Most timers fired per poll: bounded work for the polling worker.
const FIRE_BATCH: usize = 64;

/// A timer's place in the map: its deadline (ns since the origin) and a tie-breaker.
type Key = (u64, u64);

pub(crate) struct Timers {
    origin: Instant,
    /// Armed timers in deadline order. A `Sleep` dropped before its deadline takes its entry
    /// out, so the map holds only timers someone still waits on (hyper arms one per request
    /// and drops most of them).
    map: Mutex<BTreeMap<Key, Waker>>,
    /// The earliest deadline in the map (ns since `origin`), `u64::MAX` when empty.
    next_ns: AtomicU64,
    order: AtomicU64,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            origin: Instant::now(),
            map: Mutex::new(BTreeMap::new()),
            next_ns: AtomicU64::new(u64::MAX),
            order: AtomicU64::new(0),
        }
    }

    fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Waker>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes `waker` at or after `deadline`; returns the timer's key.
    fn add(&self, deadline: Instant, waker: Waker) -> Key {
        let key = (self.ns(deadline), self.order.fetch_add(1, Ordering::Relaxed));
        self.lock().insert(key, waker);
        self.next_ns.fetch_min(key.0, Ordering::AcqRel);
        key
    }

    /// Points the armed timer `key` at `waker`; false if it fired already.
    fn rearm(&self, key: Key, waker: &Waker) -> bool {
        let replaced = {
            let mut map = self.lock();
            let Some(armed) = map.get_mut(&key) else { return false };
            if armed.will_wake(waker) {
                return true;
            }
            std::mem::replace(armed, waker.clone())
        };
        drop(replaced); // outside the lock: the last reference to a task may go with it
        true
    }

    /// Takes the timer `key` out (its `Sleep` is gone). The cached earliest deadline may
    /// then be early: `fire` corrects it.
    fn cancel(&self, key: Key) {
        let removed = self.lock().remove(&key);
        drop(removed); // outside the lock, as in `rearm`
    }

    /// Drops every armed timer's waker (the runtime is gone).
    pub(crate) fn clear(&self) {
        let map = std::mem::take(&mut *self.lock());
        self.next_ns.store(u64::MAX, Ordering::Release);
        drop(map);
    }

    /// Timers armed now.
    #[cfg(test)]
    pub(crate) fn armed(&self) -> usize {
        self.lock().len()
    }

    /// True when a deadline has passed (one atomic load and a clock read when armed).
    pub(crate) fn due(&self) -> bool {
        let next = self.next_ns.load(Ordering::Acquire);
        next != u64::MAX && self.ns(Instant::now()) >= next
    }

    /// Wakes up to `FIRE_BATCH` timers that are due. Never waits: a worker that finds the
    /// map locked leaves it to the holder.
    pub(crate) fn fire(&self) {
        let now_ns = self.ns(Instant::now());
        let mut due = Vec::new();
        {
            let Ok(mut map) = self.map.try_lock() else { return };
            while due.len() < FIRE_BATCH {
                match map.first_entry() {
                    Some(entry) if entry.key().0 <= now_ns => due.push(entry.remove()),
                    _ => break,
                }
            }
            let next = map.first_key_value().map_or(u64::MAX, |(key, _)| key.0);
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
    /// Where it is armed: the runtime and its key there.
    armed: Option<(Handle, Key)>,
}

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Completes at `deadline` (at once if it has passed).
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, armed: None }
}

impl Sleep {
    /// When it completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        match &self.armed {
            Some((handle, key)) => {
                if !handle.shared.timers.rearm(*key, cx.waker()) {
                    // Fired, but the clock read above came first: arm again.
                    self.armed = None;
                    return self.poll(cx);
                }
            }
            None => {
                let handle = super::worker::current_handle()
                    .expect("host_dp::runtime::sleep must be awaited in a task of a runtime");
                let key = handle.shared.timers.add(self.deadline, cx.waker().clone());
                self.armed = Some((handle, key));
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((handle, key)) = self.armed.take() {
            handle.shared.timers.cancel(key);
        }
    }
}
