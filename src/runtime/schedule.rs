//! When probes start, and how the loop sleeps so that a shutdown wakes it at once.
//!
//! Probes run at a fixed rate on the monotonic clock: tick *k* is due at `start + k × interval`,
//! so latency does not make the schedule drift. A probe that overruns its slot makes the next
//! one start immediately (once), never a burst of catch-up probes. Between probes the thread
//! sleeps on a condition variable: zero CPU, and [`Shutdown::trigger`] wakes every sleeper.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Fixed-rate tick arithmetic, pure over the instants it is given.
#[derive(Clone, Copy, Debug)]
pub struct Ticker {
    interval: Duration,
    due: Instant,
}

impl Ticker {
    /// A ticker whose first tick is due at `first`.
    pub fn new(first: Instant, interval: Duration) -> Self {
        Ticker { interval, due: first }
    }

    /// When the current tick is due.
    pub fn due(&self) -> Instant {
        self.due
    }

    /// Moves to the tick after the current one. If that slot has already passed at `now`
    /// (the probe overran), the next tick is `now`: late slots are skipped, never replayed.
    pub fn advance(&mut self, now: Instant) -> Instant {
        let next = self.due + self.interval;
        self.due = if next < now { now } else { next };
        self.due
    }
}

/// The process-wide stop request, set by Ctrl-C/SIGTERM and by tests.
///
/// The flag lives inside the mutex the sleepers wait on, and [`Shutdown::trigger`] sets it
/// while holding that mutex, so a wake-up can never fall between a sleeper's check and its wait.
#[derive(Debug, Default)]
pub struct Shutdown {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every loop to stop and wakes the sleeping ones.
    pub fn trigger(&self) {
        *self.lock() = true;
        self.wake.notify_all();
    }

    pub fn is_triggered(&self) -> bool {
        *self.lock()
    }

    /// Sleeps until `deadline` or a shutdown, whichever comes first; `true` means shut down.
    pub fn sleep_until(&self, deadline: Instant) -> bool {
        let mut stopped = self.lock();
        while !*stopped {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stopped = match self.wake.wait_timeout(stopped, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    fn lock(&self) -> MutexGuard<'_, bool> {
        // A panic elsewhere while holding this lock cannot leave a half-written bool.
        self.stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn ticks_are_fixed_rate_regardless_of_probe_latency() {
        let t0 = Instant::now();
        let mut ticker = Ticker::new(t0, S);
        // Probe 0 took 300 ms: tick 1 is still at t0 + 1 s.
        assert_eq!(ticker.advance(t0 + Duration::from_millis(300)), t0 + S);
        // Probe 1 took 900 ms: tick 2 at t0 + 2 s.
        assert_eq!(ticker.advance(t0 + S + Duration::from_millis(900)), t0 + 2 * S);
    }

    #[test]
    fn an_overrun_delays_the_next_tick_without_a_burst() {
        let t0 = Instant::now();
        let mut ticker = Ticker::new(t0, S);
        // Probe 0 took 3.5 s (slots 1, 2, 3 missed): the next tick is now, once.
        let late = t0 + Duration::from_millis(3500);
        assert_eq!(ticker.advance(late), late);
        // And the rate resumes from there.
        assert_eq!(ticker.advance(late + Duration::from_millis(10)), late + S);
    }

    #[test]
    fn sleep_returns_false_at_the_deadline() {
        let shutdown = Shutdown::new();
        let start = Instant::now();
        assert!(!shutdown.sleep_until(start + Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn trigger_wakes_a_long_sleep() {
        let shutdown = Arc::new(Shutdown::new());
        let sleeper = {
            let shutdown = Arc::clone(&shutdown);
            std::thread::spawn(move || {
                shutdown.sleep_until(Instant::now() + Duration::from_secs(600))
            })
        };
        shutdown.trigger();
        assert!(sleeper.join().unwrap(), "a 10-minute sleep must end on shutdown");
        assert!(shutdown.is_triggered());
        assert!(shutdown.sleep_until(Instant::now() + Duration::from_secs(600)), "stays stopped");
    }
}
