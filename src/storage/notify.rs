//! Wake-ups for blocked consumers: a [`Signal`] per consumer, registered with every
//! partition log it reads ([`Watchers`]), raised by each append that makes records visible.
//!
//! A consumer spins briefly on its signal before it parks: on this class of machine waking
//! a thread parked on a condition variable costs tens of microseconds, while a spinning
//! reader sees a new record within a couple. The append path pays one atomic load when no
//! consumer watches the partition, and one atomic swap per watcher otherwise (plus a futex
//! wake only for a watcher that is actually parked).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// How long [`Signal::wait_until`] spins before it parks.
const SPIN: Duration = Duration::from_micros(50);

/// A level-triggered wake-up flag one thread waits on and any thread raises.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    /// Raised since the waiter last took it.
    pending: AtomicBool,
    /// The waiter is (about to be) parked on `cv`.
    parked: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Signal {
    pub fn new() -> Arc<Signal> {
        Arc::new(Signal::default())
    }

    /// Raises the signal, waking the waiter if it is parked.
    pub fn notify(&self) {
        // SeqCst pairs with `wait_until`: either the waiter sees `pending`, or we see
        // `parked` and wake it under the lock, so a wake-up is never lost.
        if self.pending.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.parked.load(Ordering::SeqCst) {
            let _g = self.lock.lock();
            self.cv.notify_one();
        }
    }

    /// Takes the signal: whether it was raised since the last take.
    pub fn take(&self) -> bool {
        self.pending.swap(false, Ordering::SeqCst)
    }

    /// Waits until the signal is raised or `deadline` passes, spinning for a few tens of
    /// microseconds first. Returns whether it was raised (and takes it).
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let spin_end = Instant::now() + SPIN;
        let mut spins = 0u32;
        loop {
            if self.take() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if now >= spin_end {
                break;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let mut guard = self.lock.lock();
        self.parked.store(true, Ordering::SeqCst);
        let raised = loop {
            if self.take() {
                break true;
            }
            if self.cv.wait_until(&mut guard, deadline).timed_out() {
                break self.take();
            }
        };
        self.parked.store(false, Ordering::SeqCst);
        raised
    }
}

/// The signals of the consumers reading one partition.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    count: AtomicUsize,
    list: Mutex<Vec<Arc<Signal>>>,
}

impl Watchers {
    /// Adds `signal` (once, however often it is added).
    pub fn add(&self, signal: &Arc<Signal>) {
        let mut list = self.list.lock();
        if !list.iter().any(|s| Arc::ptr_eq(s, signal)) {
            list.push(Arc::clone(signal));
            self.count.store(list.len(), Ordering::SeqCst);
        }
        // Pairs with the fence in `notify_all`: an append that published its end before
        // this point sees the new count, or the caller's next read of the end sees it.
        fence(Ordering::SeqCst);
    }

    /// Removes `signal`.
    pub fn remove(&self, signal: &Arc<Signal>) {
        let mut list = self.list.lock();
        list.retain(|s| !Arc::ptr_eq(s, signal));
        self.count.store(list.len(), Ordering::SeqCst);
    }

    /// Raises every registered signal. Call after publishing the new end offset.
    pub fn notify_all(&self) {
        fence(Ordering::SeqCst);
        if self.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        for s in self.list.lock().iter() {
            s.notify();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_signal_is_seen_once() {
        let s = Signal::new();
        s.notify();
        s.notify();
        assert!(s.wait_until(Instant::now() + Duration::from_secs(5)));
        assert!(!s.wait_until(Instant::now() + Duration::from_millis(1)));
    }

    #[test]
    fn a_parked_waiter_is_woken_by_another_thread() {
        let s = Signal::new();
        let w = Watchers::default();
        w.add(&s);
        w.add(&s);
        let t = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || s.wait_until(Instant::now() + Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(20));
        w.notify_all();
        assert!(t.join().unwrap());
        w.remove(&s);
        w.notify_all();
        assert!(!s.take());
    }
}
