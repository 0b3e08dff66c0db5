//! The probing thread: the scheduler's due times and the probe engine in one loop.
//!
//! Why one thread and not a pool of workers: a probe in flight is a socket in the engine's
//! `epoll`, not a blocked thread, so a thousand black holes (endpoints that accept and never
//! answer) cost a thousand sockets, not a thousand threads with their stacks and allocator
//! arenas; and a healthy probe costs no hand-off between threads until its outcome goes to the
//! state owner. The loop starts every probe that is due, waits for the network until the next
//! due time or deadline, and hands each outcome to the state owner.
//!
//! Outcomes go to the state owner at once, except a healthy outcome of a target that is
//! steadily healthy, which may wait up to [`HANDOFF_DELAY`] and go with the next: see
//! [`Handoff`].
//!
//! At most `--concurrency` probes are in flight. When that many are, due probes wait and start
//! late: that is logged once per episode and counted in `/metrics`
//! (`api_monitor_probes_late_total`), never dropped silently. A target never has two probes in
//! flight: the scheduler holds back a slot until its outcome is in.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::probe::engine::{Destination, Engine};
use crate::probe::Reason;
use crate::probe::{speed_verdict, BODY_CAP};
use crate::runtime::ownership::Ownership;
use crate::runtime::schedule::{Scheduler, Shutdown};
use crate::runtime::state::{Event, Probed};
use crate::runtime::Slot;
use crate::timestamp::{Clock, Timestamp};
use crate::web::metrics::Registry;

/// The smallest default `--concurrency`.
pub const MIN_IN_FLIGHT: usize = 2;
/// The most probes in flight the default `--concurrency` gives (each is a socket: the default
/// stays under the common 1,024 open-file limit with room for the rest).
pub const MAX_DEFAULT_IN_FLIGHT: usize = 1024;
/// A probe that starts later than this after its due time counts as late.
pub const LATE_AFTER: Duration = Duration::from_millis(100);

/// The default `--concurrency`: enough for every target to be stuck in a timeout at once
/// (Σ timeout ÷ interval over every target × region, rounded up, plus 2), at most
/// [`MAX_DEFAULT_IN_FLIGHT`].
pub fn default_size(slots: impl IntoIterator<Item = (Duration, Duration)>) -> usize {
    let busy: f64 = slots
        .into_iter()
        .map(|(interval, timeout)| timeout.as_secs_f64() / interval.as_secs_f64().max(0.001))
        .sum();
    // Truncation of a small positive float: the cap bounds it anyway.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let needed = busy.ceil().min(MAX_DEFAULT_IN_FLIGHT as f64) as usize;
    (needed + 2).clamp(MIN_IN_FLIGHT, MAX_DEFAULT_IN_FLIGHT)
}

/// File descriptors kept free for everything but probes: the database, SMTP, channels, the
/// `--listen` server's connections, logs, the engine's own `epoll` and waker.
pub const RESERVED_FDS: usize = 64;

/// The most probes in flight this process's open-file limit allows (its soft `RLIMIT_NOFILE`,
/// less [`RESERVED_FDS`]), read from `limits` (the text of `/proc/self/limits`). `None` when
/// unlimited or not stated. Each probe in flight is one socket: past the limit, `socket()`
/// fails with "Too many open files" and the probe would fail for a fault that is not the API's.
pub fn fd_room(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    let soft: usize = soft.parse().ok()?;
    Some(soft.saturating_sub(RESERVED_FDS).max(1))
}

/// How long a steady healthy outcome may wait before it goes to the state owner.
pub const HANDOFF_DELAY: Duration = Duration::from_secs(5);

/// Which outcomes go to the state owner at once and which may wait for company.
///
/// Why: handing an outcome to the state owner wakes its thread, and on a machine with idle
/// cores that wake-up (an inter-processor interrupt; in a VM, an exit to the hypervisor) cost
/// more CPU than the rest of the state owner's work on the outcome. Most outcomes are of
/// healthy targets that stay healthy: the state owner decides nothing on them. So an outcome
/// waits (up to [`HANDOFF_DELAY`]) only when it is healthy and the slot's previous
/// `successes` outcomes were healthy too: the detector is then surely `UP` (it takes
/// `successes` healthy outcomes in a row to get there from anything), so this outcome can start
/// no transition, end no blindness and owe no reminder. Every other outcome (a failure, a blind
/// one, the first healthy ones after them) goes at once, taking the waiting ones with it in
/// order, so alerts are not delayed and the state owner sees every slot's outcomes in the order
/// they ended. What waiting delays: the `/metrics` gauge of outcomes waiting, the status page's
/// latency minute a probe counts in, and `debug` logs of healthy probes.
#[derive(Debug, Default)]
pub struct Handoff {
    /// Per slot: healthy outcomes in a row, as taken here.
    healthy_run: Vec<u32>,
    /// Outcomes not handed on yet, in the order they ended.
    held: Vec<Probed>,
    /// When the held outcomes must go: the earliest of their latest times (`None`: none held).
    due: Option<Instant>,
}

impl Handoff {
    pub fn new(slots: usize) -> Handoff {
        Handoff { healthy_run: vec![0; slots], held: Vec::new(), due: None }
    }

    /// Takes one outcome of a slot whose target needs `successes` healthy outcomes in a row to
    /// be `UP`, at `now`.
    pub fn take(&mut self, probed: Probed, successes: u32, now: Instant) {
        let run = &mut self.healthy_run[probed.slot];
        let steady = probed.outcome.is_healthy() && *run >= successes;
        *run = if probed.outcome.is_healthy() { run.saturating_add(1) } else { 0 };
        self.held.push(probed);
        let latest = if steady { now + HANDOFF_DELAY } else { now };
        self.due = Some(self.due.map_or(latest, |due| due.min(latest)));
    }

    /// Forgets `slot`'s run (another member of the site probes it now): its next outcomes go
    /// at once, as the first ones after a start do.
    pub fn forget(&mut self, slot: usize) {
        self.healthy_run[slot] = 0;
    }

    /// When the held outcomes must go (`None`: none held).
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The held outcomes, if they must go by `now` (or `all`, at a stop).
    pub fn ready(&mut self, now: Instant, all: bool) -> Option<Vec<Probed>> {
        let due = self.due?;
        if !all && now < due {
            return None;
        }
        self.due = None;
        Some(std::mem::take(&mut self.held))
    }
}

/// Late-start bookkeeping, shared with `/metrics`.
#[derive(Debug, Default)]
pub struct Lateness {
    /// Probes that started more than [`LATE_AFTER`] after their due time.
    pub late: AtomicU64,
    /// Whether a late episode is going on (logged once when it starts and when it ends).
    episode: AtomicBool,
}

impl Lateness {
    /// Counts a start `late_by` after its due time; logs the start and end of a late episode.
    fn note_start(&self, late_by: Duration, in_flight: usize, max: usize) {
        if late_by > LATE_AFTER {
            self.late.fetch_add(1, Ordering::Relaxed);
            if !self.episode.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "probes are starting late late_by_ms={} in_flight={in_flight} max={max} \
                     (all busy: raise --concurrency; or the machine is overloaded)",
                    late_by.as_millis(),
                );
            }
        } else if self.episode.swap(false, Ordering::Relaxed) {
            log::info!(
                "probes start on time again late_probes_so_far={}",
                self.late.load(Ordering::Relaxed)
            );
        }
    }
}

/// What the probing loop works with.
pub struct Probing {
    pub slots: Arc<[Slot]>,
    /// Whether this process probes each slot (cluster mode: another member may).
    pub owned: Arc<Ownership>,
    pub events: Sender<Event>,
    pub metrics: Arc<Registry>,
    pub clock: Arc<dyn Clock>,
    pub lateness: Arc<Lateness>,
    /// The most probes in flight (`--concurrency`).
    pub max: usize,
}

impl Probing {
    /// Probes every slot at its rate until `shutdown`; then starts no new probe and returns
    /// once those in flight have ended (each by its deadline) and been handed on.
    pub fn run(&self, mut engine: Engine, shutdown: &Shutdown) {
        {
            let waker = engine.waker();
            shutdown.on_trigger(move || {
                let _ = waker.wake();
            });
        }
        let intervals: Vec<Duration> = self.slots.iter().map(|s| s.target.interval).collect();
        let mut scheduler = Scheduler::new(&intervals, Instant::now());
        let mut started: Vec<Option<Timestamp>> = vec![None; self.slots.len()];
        let mut finished = Vec::new();
        let mut handoff = Handoff::new(self.slots.len());
        // Each slot's count of ownership changes as last seen (see `Ownership`).
        let mut changes: Vec<u32> = (0..self.slots.len()).map(|s| self.owned.changes(s)).collect();
        // Parsed once here, not at every probe.
        let destinations: Vec<Result<Destination, Reason>> = self
            .slots
            .iter()
            .map(|slot| Destination::parse(&slot.target.url, slot.proxy.as_deref()))
            .collect();
        let max = self.max.max(1);
        loop {
            // A stop starts no new probe; those in flight end (each by its deadline) and are
            // handed on like any other.
            let stopping = shutdown.is_triggered();
            if stopping && engine.in_flight() == 0 {
                self.hand_on(&mut handoff, true);
                break;
            }
            let now = Instant::now();
            while !stopping && engine.in_flight() < max {
                let Some((slot, due)) = scheduler.pop_due(now) else { break };
                let target = &self.slots[slot].target;
                let seen = self.owned.changes(slot);
                if seen != changes[slot] {
                    // Given up (and maybe taken back) since its last due time: its next
                    // outcomes are the first after a start.
                    changes[slot] = seen;
                    handoff.forget(slot);
                }
                if !self.owned.is_mine(slot) {
                    // Another member of the site probes it now (its run was forgotten when
                    // the count of changes moved).
                    self.slots[slot].metrics.elsewhere(now);
                    scheduler.done(slot, now);
                    continue;
                }
                let late_by = now.saturating_duration_since(due);
                self.lateness.note_start(late_by, engine.in_flight(), max);
                started[slot] = Some(self.clock.now());
                engine.start_to(slot, destinations[slot].as_ref(), target.timeout, BODY_CAP);
            }
            // While every probe allowed is in flight (or stopping), only an outcome matters.
            let next_start =
                if !stopping && engine.in_flight() < max { scheduler.next_due() } else { None };
            let until = [next_start, handoff.due()].into_iter().flatten().min();
            if let Err(e) = engine.turn(until, &mut finished) {
                log::error!("cannot wait for the network ({e}); retrying in 1s");
                std::thread::sleep(Duration::from_secs(1));
            }
            for (slot, outcome) in finished.drain(..) {
                let target = &self.slots[slot].target;
                let outcome = speed_verdict(outcome, target.slow);
                let ended = Instant::now();
                self.slots[slot].metrics.probe(&outcome, ended);
                let at = started[slot].take().unwrap_or_else(|| self.clock.now());
                let successes = target.thresholds.successes.get();
                handoff.take(Probed { slot, outcome, at }, successes, ended);
                scheduler.done(slot, ended);
            }
            self.hand_on(&mut handoff, false);
        }
    }

    /// Sends the state owner the outcomes due now (every one with `all`).
    fn hand_on(&self, handoff: &mut Handoff, all: bool) {
        if let Some(probes) = handoff.ready(Instant::now(), all) {
            self.metrics.outcomes_sent(probes.len());
            // Fails only when the state owner is gone, i.e. while stopping.
            let _ = self.events.send(Event::Probed(probes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Outcome, Reason};

    #[test]
    fn the_open_file_limit_leaves_room_for_the_rest() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             127431               127431               processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(fd_room(limits), Some(1024 - RESERVED_FDS));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(fd_room(unlimited), None);
        assert_eq!(
            fd_room("Max open files            10                   10                   files"),
            Some(1)
        );
        assert_eq!(fd_room(""), None);
    }

    #[test]
    fn the_default_size_covers_every_target_stuck_in_a_timeout_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(default_size([(s(5), s(5))]), 3, "one target: 1 busy + 2");
        assert_eq!(default_size(vec![(s(5), s(1)); 10]), 4, "10 × 1/5 = 2 busy + 2");
        assert_eq!(default_size(vec![(s(1), s(5)); 3]), 17, "a timeout longer than the interval");
        assert_eq!(default_size(vec![(s(5), s(5)); 10_000]), MAX_DEFAULT_IN_FLIGHT);
        assert_eq!(default_size([]), MIN_IN_FLIGHT);
    }

    /// One outcome of `slot`: `'h'` healthy, `'f'` failed, `'b'` blind.
    fn probed(slot: usize, kind: char) -> Probed {
        let latency = Duration::from_millis(3);
        let outcome = match kind {
            'h' => Outcome::Healthy { latency },
            'f' => Outcome::Failed { reason: Reason::Refused, latency },
            _ => Outcome::Blind { reason: Reason::ClosedWithoutResponse, latency },
        };
        Probed { slot, outcome, at: Timestamp::from_millis(0) }
    }

    #[test]
    fn only_a_steady_healthy_outcome_waits_and_the_next_urgent_one_takes_it_along() {
        // (outcomes of slot 0 taken one after another with `successes` 2, whether the last one
        // may wait)
        let cases: &[(&str, bool)] = &[
            ("h", false),   // the first after a start: the detector may not be UP yet
            ("hh", false),  // the second: this one may be what makes it UP
            ("hhh", true),  // two healthy before it: UP for sure
            ("hhhh", true), // and it stays so
            ("hhf", false), // a failure always goes at once
            ("hhhf", false),
            ("hhfh", false), // the first healthy ones after a failure may end an outage
            ("hhfhh", false),
            ("hhfhhh", true),
            ("hhb", false), // blind, and the first healthy ones after it ("seeing again")
            ("hhbhh", false),
            ("hhbhhh", true),
        ];
        for &(kinds, waits) in cases {
            let now = Instant::now();
            let mut handoff = Handoff::new(1);
            for kind in kinds.chars() {
                // What is not steady goes now: hand it on, as the loop does after each turn.
                handoff.ready(now, false);
                handoff.take(probed(0, kind), 2, now);
            }
            let expected = if waits { now + HANDOFF_DELAY } else { now };
            assert_eq!(handoff.due(), Some(expected), "{kinds}");
        }
    }

    #[test]
    fn held_outcomes_go_in_the_order_they_ended_when_due_at_an_urgent_one_or_at_a_stop() {
        let start = Instant::now();
        let mut handoff = Handoff::new(2);
        assert_eq!(handoff.due(), None, "nothing held");
        assert!(handoff.ready(start, true).is_none(), "nothing to hand on, even at a stop");
        for slot in [0, 1] {
            for _ in 0..2 {
                handoff.take(probed(slot, 'h'), 2, start);
                handoff.ready(start, false).expect("not steady yet: goes at once");
            }
        }
        // Both slots steady: their healthy outcomes wait, due HANDOFF_DELAY after the first.
        handoff.take(probed(0, 'h'), 2, start);
        let later = start + Duration::from_secs(1);
        handoff.take(probed(1, 'h'), 2, later);
        assert_eq!(handoff.due(), Some(start + HANDOFF_DELAY));
        assert!(handoff.ready(later, false).is_none(), "not due yet");
        let due = handoff.ready(start + HANDOFF_DELAY, false).expect("due");
        assert_eq!(due.iter().map(|p| p.slot).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(handoff.due(), None);

        // A failure takes the waiting ones with it, after them.
        handoff.take(probed(1, 'h'), 2, later);
        handoff.take(probed(0, 'f'), 2, later);
        assert_eq!(handoff.due(), Some(later));
        let due = handoff.ready(later, false).expect("a failure goes at once");
        let order: Vec<_> = due.iter().map(|p| (p.slot, p.outcome.is_healthy())).collect();
        assert_eq!(order, [(1, true), (0, false)]);

        // A stop hands on what waits, due or not.
        handoff.take(probed(1, 'h'), 2, later);
        assert_eq!(handoff.ready(later, true).map(|p| p.len()), Some(1));
    }

    #[test]
    fn a_slot_probed_elsewhere_starts_its_run_again() {
        let now = Instant::now();
        let mut handoff = Handoff::new(1);
        for _ in 0..3 {
            handoff.take(probed(0, 'h'), 2, now);
            handoff.ready(now + HANDOFF_DELAY, false);
        }
        handoff.forget(0);
        handoff.take(probed(0, 'h'), 2, now);
        assert_eq!(handoff.due(), Some(now), "the state owner may have seen other outcomes since");
    }

    /// The runtime's slots for `urls`, probed every `interval` with `timeout`.
    fn slots_for(urls: &[String], interval: &str, timeout: &str) -> (Vec<Slot>, Arc<Registry>) {
        struct Nothing;
        impl crate::config::Surroundings for Nothing {
            fn host_name(&self) -> String {
                "box1".into()
            }
            fn read_secret(&self, _: &str) -> std::io::Result<String> {
                Err(std::io::ErrorKind::NotFound.into())
            }
        }
        let mut args: Vec<String> = Vec::new();
        for url in urls {
            args.extend(["--url".to_owned(), url.clone()]);
        }
        args.extend(["--interval".into(), interval.into(), "--timeout".into(), timeout.into()]);
        let no_env = |_: &str| None;
        let crate::cli::Parsed::Go(parsed) = crate::cli::parse_from(args, &no_env).unwrap() else {
            panic!("the command line parses")
        };
        let config = crate::config::from_args(*parsed, &Nothing).unwrap();
        let metrics = Arc::new(Registry::new());
        (crate::runtime::slots(&config.targets, &config.regions, &metrics), metrics)
    }

    /// A probing loop over `urls` (at most `max` probes in flight) running on its own thread:
    /// its outcomes, its late-start counts, its stop, and the thread to join after the stop.
    /// A probing loop under test, running on its own thread.
    struct Running {
        events: std::sync::mpsc::Receiver<Event>,
        lateness: Arc<Lateness>,
        owned: Arc<Ownership>,
        shutdown: Arc<Shutdown>,
        runner: std::thread::JoinHandle<()>,
    }

    fn running(urls: &[String], interval: &str, timeout: &str, max: usize) -> Running {
        let (slots, metrics) = slots_for(urls, interval, timeout);
        let (events_tx, events) = std::sync::mpsc::channel();
        let lateness = Arc::new(Lateness::default());
        let owned = Arc::new(Ownership::new(slots.len(), true));
        let probing = Probing {
            owned: Arc::clone(&owned),
            slots: slots.into(),
            events: events_tx,
            metrics,
            clock: Arc::new(crate::timestamp::SystemClock),
            lateness: Arc::clone(&lateness),
            max,
        };
        let shutdown = Arc::new(Shutdown::default());
        let runner = {
            let shutdown = Arc::clone(&shutdown);
            std::thread::spawn(move || probing.run(Engine::new().unwrap(), &shutdown))
        };
        Running { events, lateness, owned, shutdown, runner }
    }

    /// A healthy API on loopback; counts the probes it answered.
    fn healthy_server() -> (std::net::SocketAddr, Arc<AtomicU64>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let answered = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&answered);
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request);
                // Counted before the answer, so every probe that got one is counted.
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                      Content-Length: 15\r\nConnection: close\r\n\r\n{\"status\":\"OK\"}",
                );
            }
        });
        (address, answered)
    }

    #[test]
    fn a_stop_hands_on_every_held_outcome_in_order() {
        // A healthy target probed every 100 ms: from its third probe on, its outcomes wait (up
        // to 5 s) on the probing thread. A stop must hand them all on, not drop them.
        let (address, answered) = healthy_server();
        let Running { events: events_rx, shutdown, runner, .. } =
            running(&[format!("http://{address}/health")], "100ms", "5s", 4);
        let deadline = Instant::now() + Duration::from_secs(60);
        while answered.load(Ordering::SeqCst) < 8 {
            assert!(Instant::now() < deadline, "the target is probed");
            std::thread::sleep(Duration::from_millis(20));
        }
        shutdown.trigger();
        runner.join().unwrap();
        let mut at = Vec::new();
        for event in events_rx.try_iter() {
            let Event::Probed(probes) = event else { panic!("only outcomes") };
            for probe in probes {
                assert!(probe.outcome.is_healthy(), "{:?}", probe.outcome);
                at.push(probe.at);
            }
        }
        assert_eq!(at.len() as u64, answered.load(Ordering::SeqCst), "every probe handed on");
        assert!(at.windows(2).all(|w| w[0] <= w[1]), "in the order they ran: {at:?}");
    }

    #[test]
    fn a_full_loop_starts_due_probes_late_counts_them_and_drops_none() {
        // Two targets that accept and never answer, each probe holding its place in flight
        // for its whole 900 ms timeout; at most one in flight, so the other (due half an interval
        // later) waits.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let holder = std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().take(4).collect();
            std::thread::sleep(Duration::from_secs(20));
            drop(held);
        });
        let urls = [format!("http://{address}/a"), format!("http://{address}/b")];
        let Running { events: events_rx, lateness, shutdown, runner, .. } =
            running(&urls, "1s", "900ms", 1);
        let mut seen = Vec::new();
        while seen.len() < 4 {
            match events_rx.recv_timeout(Duration::from_secs(30)).expect("an outcome") {
                Event::Probed(probes) => {
                    for Probed { slot, outcome, .. } in probes {
                        assert_eq!(
                            outcome.reason().map(ToString::to_string).as_deref(),
                            Some("timeout after 900ms")
                        );
                        seen.push(slot);
                    }
                }
                _ => panic!("only outcomes"),
            }
        }
        shutdown.trigger();
        runner.join().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 0, 1, 1], "both targets probed in turn, none dropped");
        assert!(lateness.late.load(Ordering::Relaxed) >= 1, "a start waited for the other probe");
        drop(holder);
    }
    #[test]
    fn a_slot_given_up_and_taken_back_between_two_probes_is_not_held_as_steady() {
        // Cluster mode: another member probed the slot in between and the state owner took it
        // over anew, so its next healthy outcome may end what the other member saw (an
        // outage) and must go at once. The loop sees "mine" at both due times: only the count
        // of ownership changes tells.
        let (address, _) = healthy_server();
        let Running { events, owned, shutdown, runner, .. } =
            running(&[format!("http://{address}/health")], "100ms", "5s", 4);
        let mut outcomes = 0;
        // The first two (`successes`) go at once; from the third on they would wait up to 5 s.
        while outcomes < 2 {
            match events.recv_timeout(Duration::from_secs(60)).expect("the first outcomes") {
                Event::Probed(probes) => outcomes += probes.len(),
                _ => panic!("only outcomes"),
            }
        }
        assert!(owned.set(0, false) && !owned.set(0, true), "given up and taken back");
        let next = events.recv_timeout(Duration::from_millis(2500));
        assert!(
            matches!(next, Ok(Event::Probed(_))),
            "the next outcome went at once, not held as steady"
        );
        shutdown.trigger();
        runner.join().unwrap();
    }
}
