//! PURE: what one probe outcome means for one target × region.
//!
//! [`step`] is the whole decision of the state owner for one outcome: blindness (the region's
//! proxy failed), the detector's transition and the length of the period it ended, whether the
//! target is now down from every region, and whether a reminder is due. It touches no clock,
//! database, mailer or log: the caller reads the clock once per outcome, passes it in, and
//! carries out the [`Effect`]s in the order they are returned (record before notify is the
//! caller's rule, see [`crate::runtime::state`]). That keeps every rule table-tested here.

use std::time::Duration;

use crate::detector::{Detector, Health, Thresholds, Transition};
use crate::probe::Outcome;
use crate::timestamp::Timestamp;

/// What the state owner remembers of one target × region between outcomes.
#[derive(Clone, Debug)]
pub struct Watch {
    pub detector: Detector,
    /// Start of the current settled state as far as this process knows: from the last row at
    /// start, then from each transition. `None` when the database could not say at start.
    pub since: Option<Timestamp>,
    /// Since when the region's proxy has failed, while it does.
    pub blind_since: Option<Timestamp>,
    /// Reminder periods of the current outage already covered (reminded, or elapsed before a
    /// restart): reminder *k* is due `k × remind` after the outage began.
    pub reminded: u128,
    /// The latest failure reason, for reminders.
    pub last_reason: Option<String>,
}

/// How the other regions of the same target see it, for the scope of an outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope {
    /// How many regions probe this target (this one included).
    pub regions: usize,
    /// How many of the *other* regions currently see it down.
    pub others_down: usize,
}

/// Something the state owner must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The region's proxy started failing at `since`: log and mail once per blind period.
    Blind { since: Timestamp, reason: String },
    /// The region's proxy works again after `blind_for`.
    SeeingAgain { blind_for: Duration },
    /// A settled state changed: record the row, then (if [`Transition::notifies`]) mail it.
    Changed {
        transition: Transition,
        /// Length of the period that ended; `None` when nothing earlier is known.
        ended: Option<Duration>,
        /// `Some(n)` when this outage makes the target down from all its `n` (≥ 2) regions.
        all_regions_down: Option<usize>,
    },
    /// A reminder period of the ongoing outage has passed.
    Remind { since: Timestamp, down_for: Duration, reason: Option<String> },
}

impl Watch {
    /// Continues from the last recorded state (`None`: no history, or the database could not
    /// say). Reminder periods that passed while the monitor was not running are counted as
    /// covered: they are not sent late.
    pub fn resume(
        thresholds: Thresholds,
        last: Option<(Health, Timestamp)>,
        remind: Option<Duration>,
        now: Timestamp,
    ) -> Watch {
        let mut watch = Watch {
            detector: Detector::resume(thresholds, last.map(|(health, _)| health)),
            since: last.map(|(_, at)| at),
            blind_since: None,
            reminded: 0,
            last_reason: None,
        };
        watch.reminded = watch.reminder_period(remind, now).unwrap_or(0);
        watch
    }

    /// The settled state, `None` until one is known.
    pub fn health(&self) -> Option<Health> {
        self.detector.health()
    }

    /// How many whole reminder periods the current outage has lasted at `now`, when reminders
    /// are on and the target is down.
    fn reminder_period(&self, remind: Option<Duration>, now: Timestamp) -> Option<u128> {
        let every = remind?.as_millis().max(1);
        match (self.detector.health(), self.since) {
            (Some(Health::Down), Some(start)) => Some(now.since(start).as_millis() / every),
            _ => None,
        }
    }
}

/// Feeds one outcome of a probe that started at `at`, judged at `now`, to `watch`; returns what
/// to do about it. `remind` is the target's reminder period; `scope` what its other regions see.
pub fn step(
    watch: &mut Watch,
    outcome: &Outcome,
    at: Timestamp,
    now: Timestamp,
    remind: Option<Duration>,
    scope: Scope,
) -> Vec<Effect> {
    let mut effects = Vec::new();
    match (outcome, watch.blind_since) {
        (Outcome::Blind { reason, .. }, None) => {
            watch.blind_since = Some(at);
            effects.push(Effect::Blind { since: at, reason: reason.to_string() });
        }
        (Outcome::Blind { .. }, Some(_)) => {}
        (_, Some(since)) => {
            watch.blind_since = None;
            effects.push(Effect::SeeingAgain { blind_for: at.since(since) });
        }
        (_, None) => {}
    }
    let transition = watch.detector.observe(outcome, at);
    if let (Outcome::Failed { reason, .. }, _) = (outcome, ()) {
        watch.last_reason = Some(reason.to_string());
    }
    if let Some(transition) = transition {
        let ended = watch.since.map(|start| transition.since.since(start));
        let down = scope.others_down + usize::from(transition.to == Health::Down);
        let all_regions_down =
            (transition.to == Health::Down && scope.regions > 1 && down == scope.regions)
                .then_some(scope.regions);
        watch.since = Some(transition.since);
        watch.reminded = 0;
        effects.push(Effect::Changed { transition, ended, all_regions_down });
    }
    if let (Some(period), Some(since)) = (watch.reminder_period(remind, now), watch.since) {
        if period > watch.reminded {
            watch.reminded = period;
            effects.push(Effect::Remind {
                since,
                down_for: now.since(since),
                reason: watch.last_reason.clone(),
            });
        }
    }
    effects
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Reason;
    use std::num::NonZeroU32;

    const ALONE: Scope = Scope { regions: 1, others_down: 0 };
    const SEC: i64 = 1000;

    fn thresholds(failures: u32, successes: u32) -> Thresholds {
        Thresholds {
            failures: NonZeroU32::new(failures).unwrap(),
            successes: NonZeroU32::new(successes).unwrap(),
        }
    }

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn ok() -> Outcome {
        Outcome::Healthy { latency: Duration::from_millis(3) }
    }

    fn fail() -> Outcome {
        Outcome::Failed { reason: Reason::HttpStatus(503), latency: Duration::from_millis(3) }
    }

    fn blind() -> Outcome {
        Outcome::Blind {
            reason: Reason::ProxyRefused { proxy: "p:3128".into() },
            latency: Duration::from_millis(3),
        }
    }

    /// Feeds `outcomes` one second apart from t = 0 s; returns each step's effects.
    fn script(
        watch: &mut Watch,
        outcomes: &[Outcome],
        remind: Option<Duration>,
    ) -> Vec<Vec<Effect>> {
        outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let at = ts(i64::try_from(i).unwrap() * SEC);
                step(watch, o, at, at, remind, ALONE)
            })
            .collect()
    }

    fn kinds(effects: &[Effect]) -> Vec<&'static str> {
        effects
            .iter()
            .map(|e| match e {
                Effect::Blind { .. } => "blind",
                Effect::SeeingAgain { .. } => "seeing",
                Effect::Changed { transition, .. } if transition.to == Health::Down => "down",
                Effect::Changed { .. } => "up",
                Effect::Remind { .. } => "remind",
            })
            .collect()
    }

    #[test]
    fn a_script_of_outcomes_gives_the_expected_effects_at_each_step() {
        // (outcomes, expected effects per step, why)
        /// Outcomes, the effects expected at each step, and why.
        type Case = (Vec<Outcome>, Vec<Vec<&'static str>>, &'static str);
        let cases: Vec<Case> = vec![
            (vec![fail(), fail()], vec![vec![], vec!["down"]], "two failures: an outage"),
            (
                vec![ok(), ok(), fail(), fail(), ok(), ok()],
                vec![vec![], vec!["up"], vec![], vec!["down"], vec![], vec!["up"]],
                "first state recorded, then an outage and its recovery",
            ),
            (vec![fail(), ok(), fail(), ok()], vec![vec![]; 4], "alternation never settles"),
            (
                vec![blind(), blind(), fail(), fail()],
                vec![vec!["blind"], vec![], vec!["seeing"], vec!["down"]],
                "blind once per period; seeing again on the next real outcome",
            ),
            (
                vec![fail(), blind(), fail()],
                vec![vec![], vec!["blind"], vec!["seeing", "down"]],
                "a blind probe neither breaks nor extends the failure streak",
            ),
        ];
        for (outcomes, expected, why) in cases {
            let mut watch = Watch::resume(thresholds(2, 2), None, None, ts(0));
            let got: Vec<Vec<&str>> =
                script(&mut watch, &outcomes, None).iter().map(|e| kinds(e)).collect();
            assert_eq!(got, expected, "{why}");
        }
    }

    #[test]
    fn the_ended_period_is_measured_from_the_last_known_change() {
        // Resumed up since t = -10 s: the outage confirmed at 1 s began at 0 s, so 10 s of uptime.
        let mut watch =
            Watch::resume(thresholds(2, 1), Some((Health::Up, ts(-10 * SEC))), None, ts(0));
        let effects = script(&mut watch, &[fail(), fail(), ok()], None);
        let Effect::Changed { ended, transition, .. } = &effects[1][0] else { panic!() };
        assert_eq!(transition.since, ts(0), "dated at the streak's first probe");
        assert_eq!(*ended, Some(Duration::from_secs(10)));
        let Effect::Changed { ended, .. } = &effects[2][0] else { panic!() };
        assert_eq!(*ended, Some(Duration::from_secs(2)), "the outage: 0 s to 2 s");
    }

    #[test]
    fn without_history_the_ended_period_is_unknown() {
        let mut watch = Watch::resume(thresholds(1, 1), None, None, ts(0));
        let effects = script(&mut watch, &[fail()], None);
        assert_eq!(
            effects[0],
            vec![Effect::Changed {
                transition: Transition {
                    from: None,
                    to: Health::Down,
                    since: ts(0),
                    reasons: vec!["HTTP 503".into()],
                },
                ended: None,
                all_regions_down: None,
            }]
        );
    }

    #[test]
    fn scope_names_all_regions_only_when_this_one_completes_them() {
        let cases = [
            (Scope { regions: 3, others_down: 2 }, Some(3), "the last of 3 regions goes down"),
            (Scope { regions: 3, others_down: 1 }, None, "one region still sees it up"),
            (Scope { regions: 1, others_down: 0 }, None, "a single region never says all"),
            (Scope { regions: 2, others_down: 1 }, Some(2), "both of 2"),
        ];
        for (scope, expected, why) in cases {
            let mut watch = Watch::resume(thresholds(1, 1), Some((Health::Up, ts(0))), None, ts(0));
            let effects = step(&mut watch, &fail(), ts(SEC), ts(SEC), None, scope);
            let Effect::Changed { all_regions_down, .. } = &effects[0] else { panic!("{why}") };
            assert_eq!(*all_regions_down, expected, "{why}");
        }
        // A recovery never claims a scope.
        let mut watch = Watch::resume(thresholds(1, 1), Some((Health::Down, ts(0))), None, ts(0));
        let effects =
            step(&mut watch, &ok(), ts(SEC), ts(SEC), None, Scope { regions: 2, others_down: 1 });
        assert!(matches!(effects[0], Effect::Changed { all_regions_down: None, .. }));
    }

    #[test]
    fn reminders_come_once_per_period_with_the_latest_reason() {
        let remind = Some(Duration::from_secs(3));
        let mut watch =
            Watch::resume(thresholds(1, 1), Some((Health::Up, ts(-SEC))), remind, ts(0));
        // Down at 0 s; probes every second; reminders at 3 s and 6 s; recovery at 7 s.
        let outcomes = [fail(), fail(), fail(), fail(), fail(), fail(), fail(), ok(), ok(), ok()];
        let effects = script(&mut watch, &outcomes, remind);
        let got: Vec<Vec<&str>> = effects.iter().map(|e| kinds(e)).collect();
        assert_eq!(
            got,
            vec![
                vec!["down"],
                vec![],
                vec![],
                vec!["remind"],
                vec![],
                vec![],
                vec!["remind"],
                vec!["up"],
                vec![],
                vec![]
            ]
        );
        let Effect::Remind { since, down_for, reason } = &effects[3][0] else { panic!() };
        assert_eq!((*since, *down_for), (ts(0), Duration::from_secs(3)));
        assert_eq!(reason.as_deref(), Some("HTTP 503"));
    }

    #[test]
    fn a_restart_does_not_send_the_reminders_that_fell_due_while_stopped() {
        let remind = Some(Duration::from_secs(60));
        // Down since 150 s before the restart: periods 1 and 2 passed while stopped.
        let mut watch =
            Watch::resume(thresholds(2, 2), Some((Health::Down, ts(0))), remind, ts(150 * SEC));
        let effects = step(&mut watch, &fail(), ts(150 * SEC), ts(150 * SEC), remind, ALONE);
        assert!(effects.is_empty(), "periods 1 and 2 are not sent late: {effects:?}");
        let effects = step(&mut watch, &fail(), ts(180 * SEC), ts(180 * SEC), remind, ALONE);
        assert_eq!(kinds(&effects), vec!["remind"], "period 3 at 180 s is");
    }

    #[test]
    fn blindness_reports_its_start_and_its_length() {
        let mut watch = Watch::resume(thresholds(2, 2), None, None, ts(0));
        let effects = script(&mut watch, &[blind(), blind(), blind(), ok()], None);
        assert_eq!(
            effects[0],
            vec![Effect::Blind {
                since: ts(0),
                reason: "proxy p:3128 unreachable: connection refused".into()
            }]
        );
        assert_eq!(effects[3], vec![Effect::SeeingAgain { blind_for: Duration::from_secs(3) }]);
    }
}
