//! A waitable event log: reader threads push, callers wait for a condition on the whole list.

use crate::DEADLINE;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A shared, append-only list that a test or a bench step can wait on.
///
/// A panicking writer does not make the log unusable: a poisoned lock is taken over, since a
/// list that is only ever appended to cannot be left half-changed.
pub struct Log<T> {
    items: Mutex<Vec<T>>,
    grew: Condvar,
}

impl<T> Log<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(Log { items: Mutex::new(Vec::new()), grew: Condvar::new() })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, item: T) {
        self.lock().push(item);
        self.grew.notify_all();
    }

    /// Runs `f` on the items as they are now.
    pub fn read<R>(&self, f: impl FnOnce(&[T]) -> R) -> R {
        f(&self.lock())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until `check` finds something in the items, or `deadline`. At least every 250 ms
    /// it also calls `between` (e.g. "is the child still running?"), whose error ends the wait.
    /// `what` names the awaited event in the timeout message.
    pub fn wait_for<R>(
        &self,
        deadline: Instant,
        what: &str,
        mut check: impl FnMut(&[T]) -> Option<R>,
        mut between: impl FnMut() -> Result<(), String>,
    ) -> Result<R, String> {
        let started = Instant::now();
        loop {
            {
                let items = self.lock();
                if let Some(found) = check(&items) {
                    return Ok(found);
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(format!(
                        "timed out after {:.0} s waiting for {what}",
                        (now - started).as_secs_f64()
                    ));
                }
                let nap = (deadline - now).min(Duration::from_millis(250));
                drop(self.grew.wait_timeout(items, nap).unwrap_or_else(|p| p.into_inner()));
            }
            between()?;
        }
    }
}

impl<T: Clone> Log<T> {
    pub fn snapshot(&self) -> Vec<T> {
        self.lock().clone()
    }

    /// Waits until `ready` holds for the items and returns them; panics after [`DEADLINE`]
    /// with `what` (for tests).
    pub fn wait_until(&self, what: &str, ready: impl Fn(&[T]) -> bool) -> Vec<T> {
        let found = self.wait_for(
            Instant::now() + DEADLINE,
            what,
            |items| ready(items).then(|| items.to_vec()),
            || Ok(()),
        );
        found.unwrap_or_else(|e| panic!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_when_another_thread_pushes() {
        let log = Log::new();
        let writer = Arc::clone(&log);
        let t = std::thread::spawn(move || (0..3).for_each(|i| writer.push(i)));
        let items = log.wait_until("three items", |items| items.len() == 3);
        assert_eq!(items, [0, 1, 2], "pushed in order");
        t.join().unwrap();
    }

    #[test]
    fn a_wait_reports_the_error_of_between_and_the_timeout() {
        let log: Arc<Log<u8>> = Log::new();
        let far = Instant::now() + Duration::from_secs(60);
        let gone = log.wait_for(far, "x", |_| None::<()>, || Err("child exited".into()));
        assert_eq!(gone, Err("child exited".into()), "between's error ends the wait");
        let late = log.wait_for(Instant::now(), "x", |_| None::<()>, || Ok(()));
        assert!(late.unwrap_err().starts_with("timed out"), "a past deadline times out");
    }
}
