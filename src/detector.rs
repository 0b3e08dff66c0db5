//! The outage detector: a pure state machine from probe outcomes to transitions.
//!
//! It is the one place that decides what counts as an outage, so it touches no clock, network
//! or database: the loop passes each [`Outcome`] with the time its probe started and acts on the
//! [`Transition`] it gets back. `failures` consecutive failures make the target `Down`,
//! `successes` consecutive successes make it `Up`; any outcome of the other kind restarts the
//! count, so an alternation like *fail, ok, fail, ok* never changes state.

use std::num::NonZeroU32;

use crate::probe::Outcome;
use crate::timestamp::Timestamp;

/// A settled state of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    Up,
    Down,
}

impl Health {
    /// `healthy` as the `state` table stores it.
    pub fn from_healthy(healthy: bool) -> Health {
        if healthy {
            Health::Up
        } else {
            Health::Down
        }
    }

    pub fn is_up(self) -> bool {
        self == Health::Up
    }
}

/// How many consecutive outcomes of one kind settle a state. Both are at least 1 by type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub failures: NonZeroU32,
    pub successes: NonZeroU32,
}

/// A change of settled state, returned by [`Detector::observe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state before; `None` for the first settled state of a target with no history.
    pub from: Option<Health>,
    pub to: Health,
    /// When the streak that caused the change began: the start of its first probe. Durations
    /// are measured from here so they cover the real outage, not the confirmation delay.
    pub since: Timestamp,
    /// The failure reasons of the streak's probes, oldest first, at most [`MAX_REASONS`]
    /// (empty for a change to `Up`).
    pub reasons: Vec<String>,
}

/// How many failure reasons a transition carries at most: enough to show a pattern in the
/// email, bounded so a high threshold cannot grow memory.
pub const MAX_REASONS: usize = 10;

impl Transition {
    /// Whether support must hear about it: every outage, and every recovery from a known
    /// outage. Only the first settled `Up` of a new target is recorded silently.
    pub fn notifies(&self) -> bool {
        self.to == Health::Down || self.from == Some(Health::Down)
    }
}

/// The current run of outcomes of one kind.
#[derive(Clone, Debug)]
struct Streak {
    healthy: bool,
    count: u32,
    started: Timestamp,
    reasons: Vec<String>,
}

/// Tracks one target (or target/region pair). See the module doc for the rules.
#[derive(Clone, Debug)]
pub struct Detector {
    thresholds: Thresholds,
    health: Option<Health>,
    streak: Option<Streak>,
}

impl Detector {
    /// A detector that continues from `last`, the state last recorded for this target (`None`
    /// when it has no history). Resuming from the record is what keeps a restart during an
    /// outage from announcing the same outage twice.
    pub fn resume(thresholds: Thresholds, last: Option<Health>) -> Self {
        Detector { thresholds, health: last, streak: None }
    }

    /// The settled state, `None` until the first one is reached.
    pub fn health(&self) -> Option<Health> {
        self.health
    }

    /// The length of the current run of identical outcomes (0 before the first probe).
    pub fn streak(&self) -> u32 {
        self.streak.as_ref().map_or(0, |s| s.count)
    }

    /// Feeds one probe outcome, started at `at`; returns the transition it completes, if any.
    ///
    /// A blind outcome (the region's proxy failed) says nothing about the target: it is
    /// ignored, and neither starts nor breaks a streak.
    pub fn observe(&mut self, outcome: &Outcome, at: Timestamp) -> Option<Transition> {
        if outcome.is_blind() {
            return None;
        }
        let healthy = outcome.is_healthy();
        let streak = match &mut self.streak {
            Some(s) if s.healthy == healthy => {
                s.count = s.count.saturating_add(1);
                s
            }
            slot => slot.insert(Streak { healthy, count: 1, started: at, reasons: Vec::new() }),
        };
        if let Some(reason) = outcome.reason() {
            if streak.reasons.len() < MAX_REASONS {
                streak.reasons.push(reason.to_string());
            }
        }

        let (target, needed) = if healthy {
            (Health::Up, self.thresholds.successes)
        } else {
            (Health::Down, self.thresholds.failures)
        };
        if self.health == Some(target) || streak.count < needed.get() {
            return None;
        }
        let transition = Transition {
            from: self.health,
            to: target,
            since: streak.started,
            reasons: std::mem::take(&mut streak.reasons),
        };
        self.health = Some(target);
        Some(transition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Phase, Reason};
    use std::time::Duration;

    fn thresholds(failures: u32, successes: u32) -> Thresholds {
        Thresholds {
            failures: NonZeroU32::new(failures).unwrap(),
            successes: NonZeroU32::new(successes).unwrap(),
        }
    }

    fn ok() -> Outcome {
        Outcome::Healthy { latency: Duration::from_millis(3) }
    }

    fn fail(reason: Reason) -> Outcome {
        Outcome::Failed { reason, latency: Duration::from_millis(3) }
    }

    /// Feeds a script like "ffo" (f = fail, o = ok), one probe per second starting at t=0s,
    /// and returns `(probe index, transition)` for every transition.
    fn run(detector: &mut Detector, script: &str) -> Vec<(usize, Transition)> {
        script
            .chars()
            .enumerate()
            .filter_map(|(i, c)| {
                let outcome = match c {
                    'o' => ok(),
                    'f' => fail(Reason::Status(format!("DOWN #{i}"))),
                    other => panic!("bad script char {other:?}"),
                };
                let at = Timestamp::from_millis(i as i64 * 1000);
                detector.observe(&outcome, at).map(|t| (i, t))
            })
            .collect()
    }

    /// (failures, successes, last recorded, script, expected [(probe index, from, to, since index)])
    type Case =
        (u32, u32, Option<Health>, &'static str, &'static [(usize, Option<Health>, Health, usize)]);

    const UP: Option<Health> = Some(Health::Up);
    const DOWN: Option<Health> = Some(Health::Down);

    #[test]
    fn scripts_of_outcomes_produce_exactly_the_expected_transitions() {
        use Health::{Down, Up};
        let cases: &[(&str, Case)] = &[
            (
                "new target settles up after 2 oks, silently",
                (2, 2, None, "oo", &[(1, None, Up, 0)]),
            ),
            ("new target settles down after 2 fails", (2, 2, None, "ff", &[(1, None, Down, 0)])),
            ("one probe settles nothing", (2, 2, None, "o", &[])),
            ("alternation never settles a new target", (2, 2, None, "ofofofof", &[])),
            ("alternation never leaves up", (2, 2, UP, "fofofofofo", &[])),
            ("alternation never leaves down", (2, 2, DOWN, "ofofofofof", &[])),
            ("a single failure is no outage", (2, 2, UP, "ooofooo", &[])),
            (
                "two failures are an outage dated at the first",
                (2, 2, UP, "oofff", &[(3, UP, Down, 2)]),
            ),
            (
                "repeated failures during an outage are silent",
                (2, 2, UP, "ffffffff", &[(1, UP, Down, 0)]),
            ),
            (
                "recovery needs two successes, dated at the first",
                (2, 2, DOWN, "ffoo", &[(3, DOWN, Up, 2)]),
            ),
            ("a failure resets the success streak", (2, 2, DOWN, "ofoo", &[(3, DOWN, Up, 2)])),
            (
                "full cycle: outage then recovery",
                (2, 2, UP, "offfooo", &[(2, UP, Down, 1), (5, DOWN, Up, 4)]),
            ),
            (
                "threshold 1 reacts to every change",
                (1, 1, UP, "fof", &[(0, UP, Down, 0), (1, DOWN, Up, 1), (2, UP, Down, 2)]),
            ),
            ("threshold 1 on a new target settles at once", (1, 1, None, "o", &[(0, None, Up, 0)])),
            ("threshold 3: two failures are not enough", (3, 3, UP, "ffoffo", &[])),
            ("threshold 3: three failures are", (3, 3, UP, "offf", &[(3, UP, Down, 1)])),
            ("threshold 3: recovery needs three", (3, 3, DOWN, "oofooo", &[(5, DOWN, Up, 3)])),
            (
                "asymmetric 1 failure / 3 successes",
                (1, 3, UP, "fooo", &[(0, UP, Down, 0), (3, DOWN, Up, 1)]),
            ),
            ("resumed down stays silent while still down", (2, 2, DOWN, "fff", &[])),
            ("resumed up stays silent while still up", (2, 2, UP, "ooo", &[])),
        ];
        for (name, (failures, successes, last, script, expected)) in cases {
            let mut detector = Detector::resume(thresholds(*failures, *successes), *last);
            let got: Vec<_> = run(&mut detector, script)
                .into_iter()
                .map(|(i, t)| (i, t.from, t.to, (t.since.millis() / 1000) as usize))
                .collect();
            assert_eq!(&got, expected, "case {name:?}: script {script:?}");
        }
    }

    #[test]
    fn outage_carries_the_reasons_of_its_streak_only() {
        let mut detector = Detector::resume(thresholds(2, 2), UP);
        assert_eq!(
            detector.observe(
                &fail(Reason::Timeout { after: Duration::from_secs(5), phase: Phase::Head }),
                Timestamp::from_millis(0)
            ),
            None
        );
        assert_eq!(detector.observe(&ok(), Timestamp::from_millis(1000)), None, "ok resets");
        assert_eq!(
            detector.observe(&fail(Reason::HttpStatus(503)), Timestamp::from_millis(2000)),
            None
        );
        let t = detector
            .observe(&fail(Reason::Status("DOWN".into())), Timestamp::from_millis(3000))
            .unwrap();
        assert_eq!(t.reasons, vec!["HTTP 503".to_string(), "status \"DOWN\"".to_string()]);
        assert_eq!(t.since, Timestamp::from_millis(2000), "dated at the streak's first probe");
    }

    #[test]
    fn reasons_are_bounded() {
        let mut detector = Detector::resume(thresholds(50, 2), UP);
        let t = (0..50)
            .find_map(|i| {
                detector.observe(&fail(Reason::HttpStatus(500)), Timestamp::from_millis(i))
            })
            .expect("50 failures settle down");
        assert_eq!(t.reasons.len(), MAX_REASONS);
    }

    #[test]
    fn only_first_up_is_silent() {
        let t =
            |from, to| Transition { from, to, since: Timestamp::from_millis(0), reasons: vec![] };
        assert!(!t(None, Health::Up).notifies(), "first settled up is recorded, not mailed");
        assert!(t(None, Health::Down).notifies(), "first settled down is an outage");
        assert!(t(UP, Health::Down).notifies());
        assert!(t(DOWN, Health::Up).notifies());
    }

    #[test]
    fn blind_outcomes_neither_count_nor_break_a_streak() {
        let proxy = "proxy.example".to_string();
        let blind =
            Outcome::Blind { reason: Reason::ProxyRefused { proxy }, latency: Duration::ZERO };
        let mut detector = Detector::resume(thresholds(2, 2), UP);
        let at = Timestamp::from_millis;
        assert_eq!(detector.observe(&fail(Reason::HttpStatus(503)), at(0)), None);
        for i in 1..10 {
            assert_eq!(detector.observe(&blind, at(i * 1000)), None, "blind never transitions");
        }
        assert_eq!(detector.streak(), 1, "the failure streak is neither grown nor reset");
        let t = detector
            .observe(&fail(Reason::HttpStatus(503)), at(10_000))
            .expect("second failure settles");
        assert_eq!(t.since, at(0), "dated at the first failure, across the blind probes");
    }

    #[test]
    fn health_and_streak_are_observable() {
        let mut detector = Detector::resume(thresholds(2, 2), None);
        assert_eq!((detector.health(), detector.streak()), (None, 0));
        run(&mut detector, "ooo");
        assert_eq!((detector.health(), detector.streak()), (UP, 3));
    }
}
