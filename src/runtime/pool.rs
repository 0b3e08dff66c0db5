//! The bounded pool of probe workers.
//!
//! Why a pool and not a thread per target: 10,000 targets must not cost 10,000 threads. Why it
//! grows on demand: healthy probes on a fast network take milliseconds, so a handful of workers
//! serve thousands of targets, while black holes (endpoints that accept and never answer) each
//! hold a worker for a whole timeout; the pool then grows up to its cap instead of making the
//! healthy targets wait. Workers idle for [`IDLE_EXIT`] leave again (down to [`MIN_WORKERS`]).
//!
//! The queue holds at most one job per target × region (the scheduler never dispatches a slot
//! that is in flight), so it is bounded by the number of slots. When every worker is busy and
//! the cap is reached, jobs wait and probes start late: that is logged once per episode and
//! counted in `/metrics` (`api_monitor_probes_late_total`), never dropped silently.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Workers kept even when idle.
pub const MIN_WORKERS: usize = 2;
/// The most workers the default `--concurrency` gives.
pub const MAX_DEFAULT_WORKERS: usize = 1024;
/// An idle worker above [`MIN_WORKERS`] leaves after this long without a job.
pub const IDLE_EXIT: Duration = Duration::from_secs(60);
/// A probe that starts later than this after its due time counts as late.
pub const LATE_AFTER: Duration = Duration::from_millis(100);
/// Each worker's stack: a probe (TLS included) needs far less; only touched pages count.
const STACK_SIZE: usize = 256 * 1024;

/// The default pool size: enough workers for every target to be stuck in a timeout at once
/// (Σ timeout ÷ interval over every target × region, rounded up, plus 2), at most
/// [`MAX_DEFAULT_WORKERS`]. Workers are started only when needed, so a generous cap costs
/// nothing while targets answer quickly.
pub fn default_size(slots: impl IntoIterator<Item = (Duration, Duration)>) -> usize {
    let busy: f64 = slots
        .into_iter()
        .map(|(interval, timeout)| timeout.as_secs_f64() / interval.as_secs_f64().max(0.001))
        .sum();
    // Truncation of a small positive float: the cap bounds it anyway.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let needed = busy.ceil().min(MAX_DEFAULT_WORKERS as f64) as usize;
    (needed + 2).clamp(MIN_WORKERS, MAX_DEFAULT_WORKERS)
}

/// One probe to run: which slot, and when it was due (to measure lateness).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    pub slot: usize,
    pub due: Instant,
}

/// What the queue knows, behind one mutex.
#[derive(Debug, Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Workers alive, and those waiting for a job.
    workers: usize,
    idle: usize,
    closed: bool,
}

/// Late-start bookkeeping, shared with `/metrics`.
#[derive(Debug, Default)]
pub struct Lateness {
    /// Probes that started more than [`LATE_AFTER`] after their due time.
    pub late: AtomicU64,
    /// Whether a late episode is going on (logged once when it starts and when it ends).
    episode: AtomicBool,
}

/// See the module doc. `run` is what a worker does with a job.
pub struct Pool {
    queue: Mutex<Queue>,
    wake: Condvar,
    max: usize,
    run: Box<dyn Fn(Job) + Send + Sync>,
    lateness: Arc<Lateness>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    /// A pool of at most `max` workers (at least 1) running `run` for each job.
    pub fn new(
        max: usize,
        lateness: Arc<Lateness>,
        run: impl Fn(Job) + Send + Sync + 'static,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            max: max.max(1),
            run: Box::new(run),
            lateness,
            threads: Mutex::new(Vec::new()),
        })
    }

    /// The cap on workers.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Workers alive now.
    pub fn workers(&self) -> usize {
        self.lock().workers
    }

    /// Queues `job`, starting a worker if none is idle and the cap allows. A failure to start a
    /// thread (a pid or memory limit) is logged; the job waits for a running worker.
    pub fn submit(self: &Arc<Self>, job: Job) {
        let mut queue = self.lock();
        if queue.closed {
            return;
        }
        queue.jobs.push_back(job);
        let spawn = queue.idle < queue.jobs.len() && queue.workers < self.max;
        if spawn {
            queue.workers += 1;
            queue.idle += 1;
        }
        let number = queue.workers;
        drop(queue);
        if spawn {
            let pool = Arc::clone(self);
            let started = std::thread::Builder::new()
                .name(format!("probe-{number}"))
                .stack_size(STACK_SIZE)
                .spawn(move || pool.work());
            match started {
                Ok(handle) => self.threads.lock().unwrap_or_else(|p| p.into_inner()).push(handle),
                Err(e) => {
                    let mut queue = self.lock();
                    queue.workers -= 1;
                    queue.idle -= 1;
                    log::error!("cannot start a probe worker ({e}); {} running", queue.workers);
                }
            }
        }
        self.wake.notify_one();
    }

    /// Stops taking jobs; queued ones are dropped (a stop does not start new probes), running
    /// ones finish. Returns once every worker has left.
    pub fn close(&self) {
        {
            let mut queue = self.lock();
            queue.closed = true;
            queue.jobs.clear();
        }
        self.wake.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            if thread.join().is_err() {
                log::error!("a probe worker panicked");
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Plain counters and a queue: nothing a panic could leave half-changed.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A worker: take jobs until closed, or until idle too long while others remain.
    fn work(&self) {
        let mut queue = self.lock();
        loop {
            if queue.closed {
                break;
            }
            if let Some(job) = queue.jobs.pop_front() {
                queue.idle -= 1;
                drop(queue);
                self.note_start(job);
                (self.run)(job);
                queue = self.lock();
                queue.idle += 1;
                continue;
            }
            let (guard, timeout) =
                self.wake.wait_timeout(queue, IDLE_EXIT).unwrap_or_else(|p| p.into_inner());
            queue = guard;
            if timeout.timed_out() && queue.jobs.is_empty() && queue.workers > MIN_WORKERS {
                break;
            }
        }
        queue.workers -= 1;
        queue.idle -= 1;
    }

    /// Counts a late start and logs the start and end of a late episode.
    fn note_start(&self, job: Job) {
        let late_by = Instant::now().saturating_duration_since(job.due);
        let lateness = &self.lateness;
        if late_by > LATE_AFTER {
            lateness.late.fetch_add(1, Ordering::Relaxed);
            if !lateness.episode.swap(true, Ordering::Relaxed) {
                let workers = self.workers();
                log::warn!(
                    "probes are starting late late_by_ms={} workers={workers} max={} \
                     (all busy: raise --concurrency; or the machine is overloaded)",
                    late_by.as_millis(),
                    self.max
                );
            }
        } else if lateness.episode.swap(false, Ordering::Relaxed) {
            log::info!(
                "probes start on time again late_probes_so_far={}",
                lateness.late.load(Ordering::Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn the_default_size_covers_every_target_stuck_in_a_timeout_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(default_size([(s(5), s(5))]), 3, "one target: 1 busy + 2");
        assert_eq!(default_size(vec![(s(5), s(1)); 10]), 4, "10 × 1/5 = 2 busy + 2");
        assert_eq!(default_size(vec![(s(1), s(5)); 3]), 17, "a timeout longer than the interval");
        assert_eq!(default_size(vec![(s(5), s(5)); 10_000]), MAX_DEFAULT_WORKERS);
        assert_eq!(default_size([]), MIN_WORKERS);
    }

    #[test]
    fn a_saturated_pool_runs_every_job_late_and_counts_it() {
        let lateness = Arc::new(Lateness::default());
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let gate = Mutex::new(gate_rx);
        let (done_tx, done_rx) = mpsc::channel();
        let done_tx = Mutex::new(done_tx);
        let pool = Pool::new(1, Arc::clone(&lateness), move |job: Job| {
            // The first job holds the only worker until the test opens the gate.
            if job.slot == 0 {
                gate.lock().unwrap().recv().unwrap();
            }
            done_tx.lock().unwrap().send(job.slot).unwrap();
        });
        let now = Instant::now();
        for slot in 0..3 {
            pool.submit(Job { slot, due: now });
        }
        assert_eq!(pool.workers(), 1, "never more than the cap");
        // Let slots 1 and 2 wait well past LATE_AFTER behind the stuck one.
        std::thread::sleep(LATE_AFTER * 3);
        gate_tx.send(()).unwrap();
        let mut done: Vec<usize> =
            (0..3).map(|_| done_rx.recv_timeout(Duration::from_secs(30)).unwrap()).collect();
        done.sort_unstable();
        assert_eq!(done, vec![0, 1, 2], "nothing dropped");
        assert_eq!(lateness.late.load(Ordering::Relaxed), 2, "the two that waited were late");
        pool.close();
        assert_eq!(pool.workers(), 0);
    }

    #[test]
    fn the_pool_grows_while_workers_are_busy_and_close_drops_queued_jobs() {
        let lateness = Arc::new(Lateness::default());
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release = Mutex::new(release_rx);
        let (started_tx, started_rx) = mpsc::channel();
        let started_tx = Mutex::new(started_tx);
        let pool = Pool::new(3, lateness, move |job: Job| {
            started_tx.lock().unwrap().send(job.slot).unwrap();
            let _ = release.lock().unwrap().recv();
        });
        for slot in 0..5 {
            pool.submit(Job { slot, due: Instant::now() });
        }
        // Three workers start (the cap); each blocks in turn on `release`.
        for _ in 0..3 {
            started_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        }
        assert_eq!(pool.workers(), 3);
        let closer = {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || pool.close())
        };
        // Wait until close has dropped the queue, then let the running jobs end.
        while !pool.lock().closed {
            std::thread::yield_now();
        }
        drop(release_tx);
        closer.join().unwrap();
        assert!(started_rx.try_recv().is_err(), "queued jobs 3 and 4 never started");
    }
}
