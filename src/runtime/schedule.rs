//! When probes start, and the stop request that wakes every sleeper.
//!
//! Probes run at a fixed rate on the monotonic clock: tick *k* of a target × region is due at
//! `start + k × interval`, so latency does not make the schedule drift. A probe that overruns
//! its slot makes the next one start as soon as it ends (once), never a burst of catch-up probes.
//!
//! [`Scheduler`] is the pure part: a min-heap of due times over every target × region ("slot"),
//! fed the instants it is given, so it is tested with a fake clock. A slot is in the heap only
//! while it has no probe in flight, which is what guarantees a target never has two probes in
//! flight at once: [`Scheduler::pop_due`] takes it out, [`Scheduler::done`] puts it back.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
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

/// The grid first probes of slots with `interval` start on, when there are `slots` in all: at
/// most [`PHASE_GRID`] and a tenth of the interval, and fine enough that about [`BURST`] probes
/// fall on one step; never under 1 ms.
///
/// Why a grid: every wake-up of the probing thread costs CPU (the kernel's timer, a context
/// switch, cold caches), about as much as a loopback probe itself. Spread evenly, 1,000 targets
/// every 5 s would wake it every 5 ms, once per probe; on the grid, every 100 ms for 20 probes,
/// whose answers then also tend to arrive together (`bench/RESULTS.md`: CPU per probe 303 →
/// 98 µs). Why the burst cap: 200 connections at once (10,000 targets on a 100 ms grid) made
/// probes start late and overflowed a server's accept queue (a dropped SYN is retried after
/// 1 s). Periods stay exact (each slot keeps its own fixed rate); only the first start moves,
/// by less than one grid step.
pub fn phase_grid(interval: Duration, slots: usize) -> Duration {
    let slots = u32::try_from(slots).unwrap_or(u32::MAX).max(1);
    let for_burst = interval.saturating_mul(BURST) / slots;
    (interval / 10).min(PHASE_GRID).min(for_burst).max(Duration::from_millis(1))
}

/// The coarsest grid first probes start on; see [`phase_grid`].
pub const PHASE_GRID: Duration = Duration::from_millis(100);

/// About how many first probes (and so, at a fixed rate, later ones) start on one grid step at
/// most; see [`phase_grid`].
pub const BURST: u32 = 20;

/// Due times of every slot (one target × region), in a min-heap. Pure: no clock, no threads.
#[derive(Debug)]
pub struct Scheduler {
    tickers: Vec<Ticker>,
    /// `(due, slot)` of every slot without a probe in flight.
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Scheduler {
    /// One slot per interval, in slot order. First probes are spread over one interval (slot
    /// *n* of *N* starts about `n / N` of its interval after `start`), so many targets never
    /// probe in one burst; each start is rounded down to its interval's [`phase_grid`], so
    /// slots whose starts are closer than that start together (see there why).
    pub fn new(intervals: &[Duration], start: Instant) -> Self {
        let count = u32::try_from(intervals.len()).unwrap_or(u32::MAX).max(1);
        let tickers: Vec<Ticker> = intervals
            .iter()
            .enumerate()
            .map(|(n, &interval)| {
                let n = u32::try_from(n).unwrap_or(u32::MAX);
                // interval × n / count without overflow: at most one interval late.
                let spread = (interval / count).saturating_mul(n);
                let grid = phase_grid(interval, intervals.len());
                let steps = u32::try_from(spread.as_nanos() / grid.as_nanos()).unwrap_or(u32::MAX);
                let phase = grid.saturating_mul(steps);
                Ticker::new(start + phase, interval)
            })
            .collect();
        let heap = tickers.iter().enumerate().map(|(slot, t)| Reverse((t.due(), slot))).collect();
        Scheduler { tickers, heap }
    }

    /// The earliest due time of a slot that is not in flight; `None` when every slot is.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((due, _))| *due)
    }

    /// The slot due first, if it is due at `now`, with its due time; it is then in flight
    /// until [`Scheduler::done`].
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, Instant)> {
        match self.heap.peek() {
            Some(Reverse((due, _))) if *due <= now => {
                self.heap.pop().map(|Reverse((due, slot))| (slot, due))
            }
            _ => None,
        }
    }

    /// The probe of `slot` ended at `now`: its next tick is scheduled (fixed rate; an overrun
    /// makes it due at once).
    pub fn done(&mut self, slot: usize, now: Instant) {
        if let Some(ticker) = self.tickers.get_mut(slot) {
            let due = ticker.advance(now);
            self.heap.push(Reverse((due, slot)));
        }
    }
}

/// The process-wide stop request, set by Ctrl-C/SIGTERM and by tests.
///
/// The flag lives inside the mutex the sleepers wait on, and [`Shutdown::trigger`] sets it
/// while holding that mutex, so a wake-up can never fall between a sleeper's check and its wait.
#[derive(Default)]
pub struct Shutdown {
    stopped: Mutex<bool>,
    /// The stop is a reload: the runtime hands its database connection and unwritten rows to
    /// the next one instead of letting go of the database.
    reload: std::sync::atomic::AtomicBool,
    wake: Condvar,
    /// Called once by [`Shutdown::trigger`]: threads that sleep on a channel rather than on
    /// this condition variable register how to wake them.
    hooks: Mutex<Vec<Box<dyn Fn() + Send>>>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown").field("stopped", &self.is_triggered()).finish_non_exhaustive()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// [`Shutdown::trigger`] for a reload (SIGHUP): the same stop, but the database is handed
    /// over to the runtime that follows.
    pub fn trigger_reload(&self) {
        self.reload.store(true, std::sync::atomic::Ordering::SeqCst);
        self.trigger();
    }

    /// Whether the stop is a reload.
    pub fn is_reload(&self) -> bool {
        self.reload.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Asks every thread to stop and wakes the sleeping ones.
    pub fn trigger(&self) {
        *self.lock() = true;
        self.wake.notify_all();
        let hooks = std::mem::take(&mut *self.hooks.lock().unwrap_or_else(|p| p.into_inner()));
        hooks.iter().for_each(|wake| wake());
    }

    /// Runs `wake` when the stop is requested (at once if it already was).
    pub fn on_trigger(&self, wake: impl Fn() + Send + 'static) {
        if self.is_triggered() {
            wake();
            return;
        }
        self.hooks.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(wake));
        // A trigger between the check and the push has already taken the hooks.
        if self.is_triggered() {
            let hooks = std::mem::take(&mut *self.hooks.lock().unwrap_or_else(|p| p.into_inner()));
            hooks.iter().for_each(|wake| wake());
        }
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
    fn first_probes_are_spread_over_one_interval() {
        let t0 = Instant::now();
        let scheduler = Scheduler::new(&[S * 4; 4], t0);
        let mut s = scheduler;
        let mut dues = Vec::new();
        while let Some((slot, due)) = s.pop_due(t0 + S * 10) {
            dues.push((slot, due - t0));
        }
        assert_eq!(
            dues,
            vec![(0, Duration::ZERO), (1, S), (2, S * 2), (3, S * 3)],
            "one per second"
        );
    }

    #[test]
    fn first_probes_start_on_the_grid_so_close_ones_start_together() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // 1,000 slots every 5 s: evenly spread, one every 5 ms; on the grid, 20 every 100 ms.
        let mut s = Scheduler::new(&[S * 5; 1000], t0);
        let mut starts = std::collections::BTreeMap::<Duration, usize>::new();
        while let Some((_, due)) = s.pop_due(t0 + S * 5) {
            *starts.entry(due - t0).or_default() += 1;
        }
        assert_eq!(starts.len(), 50, "{starts:?}");
        assert!(starts.iter().all(|(at, n)| at.as_millis() % 100 == 0 && *n == 20), "{starts:?}");
        // Few slots keep their even spread (it is on the grid already).
        let mut s = Scheduler::new(&[S * 4; 3], t0);
        let dues: Vec<_> =
            std::iter::from_fn(|| s.pop_due(t0 + S * 5)).map(|(_, d)| d - t0).collect();
        assert_eq!(dues, [ms(0), ms(1300), ms(2600)], "4 s / 3 = 1.333 s, rounded down");
        // A short interval gets a finer grid: a tenth of it.
        assert_eq!(phase_grid(ms(50), 1), ms(5));
        assert_eq!(phase_grid(S, 1), ms(100));
        assert_eq!(phase_grid(S * 60, 1), ms(100));
        assert_eq!(phase_grid(Duration::from_micros(10), 1), ms(1), "never zero");
        // Many slots get a finer grid too: about BURST probes a step, not more.
        assert_eq!(phase_grid(S * 5, 1000), ms(100), "20 a step");
        assert_eq!(phase_grid(S * 5, 10_000), ms(10), "20 a step, not 200");
        assert_eq!(phase_grid(S * 5, 1_000_000), ms(1), "never under 1 ms");
        let mut s = Scheduler::new(&[S * 5; 10_000], t0);
        let mut per_step = std::collections::BTreeMap::<Duration, u32>::new();
        while let Some((_, due)) = s.pop_due(t0 + S * 5) {
            *per_step.entry(due - t0).or_default() += 1;
        }
        assert_eq!(per_step.len(), 500);
        assert!(per_step.values().all(|&n| n == BURST), "{per_step:?}");
        // The grid moves only the first start: each slot's period stays its interval.
        let mut s = Scheduler::new(&[S * 5; 1000], t0);
        let (slot, due) = std::iter::from_fn(|| s.pop_due(t0 + S * 5)).last().unwrap();
        s.done(slot, due + ms(3));
        assert_eq!(s.next_due(), Some(due + S * 5));
    }

    #[test]
    fn a_slot_in_flight_is_never_due_again_until_done() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&[S], t0);
        assert_eq!(s.pop_due(t0), Some((0, t0)));
        assert_eq!(s.next_due(), None, "in flight: not in the heap");
        // Even far past its next tick, nothing is due while the probe runs.
        assert_eq!(s.pop_due(t0 + S * 30), None);
        s.done(0, t0 + Duration::from_millis(200));
        assert_eq!(s.next_due(), Some(t0 + S), "fixed rate: tick 1 at t0 + 1 s");
    }

    #[test]
    fn an_overrunning_probe_is_followed_at_once_then_at_the_rate() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&[S], t0);
        s.pop_due(t0);
        let late = t0 + Duration::from_millis(3500);
        s.done(0, late);
        assert_eq!(s.pop_due(late), Some((0, late)), "due at once, once");
        s.done(0, late + Duration::from_millis(5));
        assert_eq!(s.next_due(), Some(late + S));
    }

    #[test]
    fn slots_come_out_in_due_order_whatever_their_intervals() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&[S * 3, S], t0);
        // Slot 0 at t0, slot 1 at t0 + 0.5 s.
        let (a, _) = s.pop_due(t0 + S).unwrap();
        let (b, _) = s.pop_due(t0 + S).unwrap();
        assert_eq!((a, b), (0, 1));
        s.done(0, t0 + Duration::from_millis(10)); // next at t0 + 3 s
        s.done(1, t0 + Duration::from_millis(510)); // next at t0 + 1.5 s
        assert_eq!(s.pop_due(t0 + S * 2).map(|(slot, _)| slot), Some(1));
        assert_eq!(s.pop_due(t0 + S * 2), None, "slot 0 is not due before 3 s");
    }

    #[test]
    fn on_trigger_runs_hooks_once_even_when_registered_late() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let shutdown = Shutdown::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        shutdown.on_trigger(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        shutdown.trigger();
        shutdown.trigger();
        let c = Arc::clone(&calls);
        shutdown.on_trigger(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(calls.load(Ordering::SeqCst), 2, "once before the trigger, once after");
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
