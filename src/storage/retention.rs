//! The broker's retention checker: a thread that applies retention to every partition at a
//! fixed interval, as Kafka's `log.retention.check.interval.ms` scheduler does, so that time
//! retention reaches partitions nobody appends to (an append applies retention at each
//! roll, but an idle partition never rolls).
//!
//! The thread holds no strong reference to what it checks: the pass it runs upgrades a weak
//! one, so the broker closes when the application drops its last handle, and
//! [`RetentionChecker`]'s drop (run by that last handle) stops and joins the thread first,
//! so that a pass in progress never closes the directory late on the checker's thread. The
//! pass is told when a stop is asked ([`Stopping`]) and ends early, between partitions, so
//! that closing a broker with many partitions does not wait for a whole pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Runs a pass every `interval` on a thread of its own until dropped.
#[derive(Debug)]
pub(crate) struct RetentionChecker {
    stop: Arc<Stop>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
    /// `stopped`, readable without the lock by a pass in progress.
    requested: AtomicBool,
}

/// Given to a pass: whether the checker is being stopped (the pass should end soon).
#[derive(Debug)]
pub(crate) struct Stopping<'a>(&'a Stop);

impl Stopping<'_> {
    /// Whether a stop was asked.
    pub(crate) fn requested(&self) -> bool {
        self.0.requested.load(Ordering::Acquire)
    }
}

impl RetentionChecker {
    /// Starts the thread: `pass` runs every `interval` (the first time one interval from
    /// now) and returns `false` once there is nothing left to check (the thread then ends).
    /// It should return early once its [`Stopping`] says a stop was asked. A pass that
    /// panics is logged and the thread goes on.
    ///
    /// # Errors
    /// The OS refusing a thread.
    pub(crate) fn start(
        interval: Duration,
        mut pass: impl FnMut(&Stopping<'_>) -> bool + Send + 'static,
    ) -> std::io::Result<RetentionChecker> {
        let stop = Arc::new(Stop::default());
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("brooklet-retention".into())
                .spawn(move || {
                    while stop.sleep(interval) {
                        // A pass that panics (a bug) is reported, not the end of retention:
                        // the next interval tries again.
                        let stopping = Stopping(&stop);
                        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pass(&stopping))) {
                            Ok(true) => {}
                            Ok(false) => return,
                            Err(_) => tracing::error!("a retention check panicked; the next one runs as planned"),
                        }
                    }
                })?
        };
        Ok(RetentionChecker {
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }
}

impl Stop {
    /// Sleeps `interval` unless stopped meanwhile; whether to go on.
    fn sleep(&self, interval: Duration) -> bool {
        let mut stopped = self.stopped.lock();
        // An interval too long to add to the clock never ends: the thread only waits.
        let deadline = Instant::now().checked_add(interval);
        while !*stopped {
            match deadline {
                Some(deadline) => {
                    if self.wake.wait_until(&mut stopped, deadline).timed_out() {
                        return !*stopped;
                    }
                }
                None => self.wake.wait(&mut stopped),
            }
        }
        false
    }
}

impl Drop for RetentionChecker {
    fn drop(&mut self) {
        self.stop.requested.store(true, Ordering::Release);
        *self.stop.stopped.lock() = true;
        self.stop.wake.notify_all();
        if let Some(thread) = self.thread.lock().take()
            // Never reached from the checker's own thread (it holds no handle); checked all
            // the same, as joining itself would fail.
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A pass that panics is reported and the checker goes on to the next one.
    #[test]
    fn a_panicking_pass_does_not_end_the_checker() {
        let (tx, rx) = mpsc::channel();
        let mut passes = 0;
        let checker = RetentionChecker::start(Duration::from_millis(1), move |_| {
            passes += 1;
            assert!(passes != 1, "the first pass panics");
            tx.send(passes).is_ok()
        })
        .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(2));
        drop(checker);
    }

    /// Dropping the checker wakes and joins its thread at once, whatever the interval.
    #[test]
    fn drop_stops_a_sleeping_checker() {
        let (tx, rx) = mpsc::channel::<()>();
        let checker = RetentionChecker::start(Duration::from_secs(3600), move |_| tx.send(()).is_ok()).unwrap();
        drop(checker);
        // The thread ended (its closure, holding the sender, is gone) without a pass.
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(30)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }

    /// Dropping the checker during a pass tells the pass, which ends early: the drop
    /// returns without waiting for a whole pass (here one that would never end by itself).
    #[test]
    fn drop_during_a_pass_tells_the_pass_to_end() {
        let (started_tx, started) = mpsc::channel::<()>();
        let checker = RetentionChecker::start(Duration::from_millis(1), move |stopping| {
            let _ = started_tx.send(());
            while !stopping.requested() {
                std::thread::sleep(Duration::from_millis(1));
            }
            false
        })
        .unwrap();
        started.recv_timeout(Duration::from_secs(30)).unwrap();
        let (dropped_tx, dropped) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            drop(checker);
            let _ = dropped_tx.send(());
        });
        assert_eq!(
            dropped.recv_timeout(Duration::from_secs(120)),
            Ok(()),
            "drop waited for the pass"
        );
    }
}
