//! History metrics for the emails (and later the report): uptime %, outage counts, MTBF, MTTR,
//! longest outage — computed purely from the recorded transitions.
//!
//! An on-call engineer reading an outage email wants to know at once whether this is a rare
//! event or the fifth today. This module answers that from the `state` rows alone: no clock (the
//! caller passes `now`), no database, so every number can be checked by hand in a unit test.
//!
//! The building blocks are [`periods`] (rows → maximal runs of one health) and [`window`]
//! (periods → outages and uptime within any interval); [`summarize`] is only those applied to the
//! three standard windows, so the emails and the later `report` command share one code path.
//!
//! Conventions, chosen so no number overstates what was seen:
//! - Time before the first change is *unknown* and excluded from uptime, not counted as up.
//! - The last period is ongoing: it lasts until the end of the window (or `now`).
//! - Consecutive rows with the same health (a restart, a first observation recorded twice) are
//!   one period, so they are never counted twice.

use std::time::Duration;

use crate::detector::Health;
use crate::timestamp::Timestamp;

/// One recorded transition: from `at` on, the target was `health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub at: Timestamp,
    pub health: Health,
}

/// A maximal run of one health: consecutive periods always differ in health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub health: Health,
    /// When the first change of the run was recorded.
    pub start: Timestamp,
    /// When the next, different health began; `None` for the last period, still ongoing.
    pub end: Option<Timestamp>,
}

impl Period {
    /// The length of the period, an ongoing one measured to `now`.
    pub fn length(&self, now: Timestamp) -> Duration {
        self.end.unwrap_or(now).since(self.start)
    }

    /// Whether this is an outage (a `Down` period).
    pub fn is_outage(&self) -> bool {
        self.health == Health::Down
    }
}

/// Merges `changes` (oldest first, as the store returns them) into periods, oldest first.
///
/// Rows repeating the health before them extend the current period rather than starting one.
/// Out-of-order timestamps (a stepped wall clock) are not reordered: lengths saturate at zero.
pub fn periods(changes: &[Change]) -> Vec<Period> {
    let mut out: Vec<Period> = Vec::new();
    for change in changes {
        match out.last_mut() {
            Some(last) if last.health == change.health => {}
            last => {
                if let Some(last) = last {
                    last.end = Some(change.at);
                }
                out.push(Period { health: change.health, start: change.at, end: None });
            }
        }
    }
    out
}

/// What happened within one interval `[from, to]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Availability {
    /// Outages that overlap the interval: begun in it, or already ongoing at its start.
    pub outages: u32,
    /// Time spent `Up` within the interval.
    pub up: Duration,
    /// Time with a known health within the interval (up + down); time before the first recorded
    /// change is unknown and not included.
    pub observed: Duration,
}

impl Availability {
    /// `up / observed` in percent; `None` when nothing was observed in the interval.
    pub fn uptime_percent(&self) -> Option<f64> {
        let observed = self.observed.as_millis();
        if observed == 0 {
            return None;
        }
        Some(self.up.as_millis() as f64 * 100.0 / observed as f64)
    }
}

/// Outages and uptime within `[from, to]`. An ongoing last period is taken to last until `to`,
/// so `to` must not be later than `now`. Periods are clipped to the interval: an outage crossing
/// `from` counts as an outage of the interval but only its part after `from` counts as downtime.
/// An outage beginning exactly at `to` (the one being announced) is counted.
pub fn window(periods: &[Period], from: Timestamp, to: Timestamp) -> Availability {
    let mut availability =
        Availability { outages: 0, up: Duration::ZERO, observed: Duration::ZERO };
    for period in periods {
        let end = period.end.map_or(to, |end| end.min(to));
        let ended_before = matches!(period.end, Some(end) if end <= from);
        let overlaps = period.start <= to && !ended_before;
        if !overlaps {
            continue;
        }
        let inside = end.since(period.start.max(from));
        availability.observed += inside;
        match period.health {
            Health::Up => availability.up += inside,
            Health::Down => availability.outages += 1,
        }
    }
    availability
}

/// The standard windows every email shows, shortest first: `(label, span)`.
pub const WINDOWS: [(&str, Duration); 3] = [
    ("24h", Duration::from_secs(24 * 3_600)),
    ("7d", Duration::from_secs(7 * 24 * 3_600)),
    ("30d", Duration::from_secs(30 * 24 * 3_600)),
];

/// One of the [`WINDOWS`], ending at `now`.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowStats {
    /// How the window is named in emails: `24h`, `7d`, `30d`.
    pub label: &'static str,
    pub span: Duration,
    /// See [`Availability::outages`].
    pub outages: u32,
    /// See [`Availability::uptime_percent`].
    pub uptime_percent: Option<f64>,
    /// See [`Availability::observed`]: less than `span` when the recorded history is shorter
    /// than the window, and then the figures cover only this much, the end of the window.
    pub observed: Duration,
}

impl WindowStats {
    /// Whether the recorded history covers the whole window, so "last 30d" is what the figures
    /// really are about.
    pub fn is_whole(&self) -> bool {
        self.observed >= self.span
    }

    /// When the data behind the figures begins: the window's start, or later when the history
    /// is shorter (then it is where the first recorded change falls in the window).
    pub fn data_from(&self, now: Timestamp) -> Timestamp {
        now.minus(self.observed.min(self.span))
    }
}

/// What an email shows about the past of a target.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    /// One entry per [`WINDOWS`] entry, in the same order.
    pub windows: Vec<WindowStats>,
    /// Mean time between outages: see [`mtbf`].
    pub mtbf: Option<Duration>,
    /// Mean time to recovery: see [`mttr`].
    pub mttr: Option<Duration>,
    /// See [`longest_outage`].
    pub longest_outage: Option<Duration>,
}

impl History {
    /// The windows worth showing: each one the history covers whole, then the first it does
    /// not. The longer windows after that hold the same data (the history began inside the
    /// shorter one), so they would only repeat its figures under a longer name.
    pub fn covered(&self) -> &[WindowStats] {
        let shown =
            self.windows.iter().position(|w| !w.is_whole()).map_or(self.windows.len(), |i| i + 1);
        &self.windows[..shown]
    }
}

/// Mean length of the completed `Up` periods, each of which ended in an outage: the average
/// uptime between outages. `None` when no `Up` period has ended yet.
pub fn mtbf(periods: &[Period]) -> Option<Duration> {
    mean_completed(periods, Health::Up)
}

/// Mean length of the completed outages (`Down` periods followed by `Up`). An ongoing outage is
/// left out: its length is not known yet. `None` when no outage has ended.
pub fn mttr(periods: &[Period]) -> Option<Duration> {
    mean_completed(periods, Health::Down)
}

/// The longest outage, an ongoing one measured to `now`; `None` when there was no outage.
pub fn longest_outage(periods: &[Period], now: Timestamp) -> Option<Duration> {
    periods.iter().filter(|p| p.is_outage()).map(|p| p.length(now)).max()
}

/// Mean length of the periods of `health` that have ended (so their length is known).
fn mean_completed(periods: &[Period], health: Health) -> Option<Duration> {
    let lengths: Vec<u128> = periods
        .iter()
        .filter(|p| p.health == health)
        .filter_map(|p| p.end.map(|end| end.since(p.start).as_millis()))
        .collect();
    let count = u128::try_from(lengths.len()).ok().filter(|&n| n > 0)?;
    let mean = lengths.iter().sum::<u128>() / count;
    Some(Duration::from_millis(u64::try_from(mean).unwrap_or(u64::MAX)))
}

/// Everything an email shows about the past, from `changes` as [`crate::store::Store::since`]
/// returns them (the rows of the longest window preceded by the last row before it).
///
/// The windows end at `now`. MTBF, MTTR and the longest outage cover all of `changes`,
/// including the full length of the period that was ongoing at the start of the load.
pub fn summarize(changes: &[Change], now: Timestamp) -> History {
    let periods = periods(changes);
    let windows = WINDOWS
        .iter()
        .map(|&(label, span)| {
            let availability = window(&periods, now.minus(span), now);
            WindowStats {
                label,
                span,
                outages: availability.outages,
                uptime_percent: availability.uptime_percent(),
                observed: availability.observed,
            }
        })
        .collect();
    History {
        windows,
        mtbf: mtbf(&periods),
        mttr: mttr(&periods),
        longest_outage: longest_outage(&periods, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Health::{Down, Up};

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;

    /// "Now" in every test: day 100, so the 30-day window starts well after the epoch.
    const NOW: i64 = 100 * DAY;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    /// Builds a history from `(ms before NOW, health)` pairs, oldest first.
    fn history(rows: &[(i64, Health)]) -> Vec<Change> {
        rows.iter().map(|&(ago, health)| Change { at: at(NOW - ago), health }).collect()
    }

    fn ms(ms: i64) -> Duration {
        Duration::from_millis(ms as u64)
    }

    /// `(outages, uptime %)` of the 24h, 7d and 30d windows, in that order.
    fn windows(h: &History) -> Vec<(&'static str, u32, Option<f64>)> {
        h.windows.iter().map(|w| (w.label, w.outages, w.uptime_percent)).collect()
    }

    fn assert_percent(actual: Option<f64>, expected: f64, why: &str) {
        let actual = actual.unwrap_or_else(|| panic!("{why}: uptime should be known"));
        assert!((actual - expected).abs() < 1e-9, "{why}: expected {expected}%, got {actual}%");
    }

    #[test]
    fn empty_history_knows_nothing() {
        let h = summarize(&[], at(NOW));
        assert_eq!(
            windows(&h),
            vec![("24h", 0, None), ("7d", 0, None), ("30d", 0, None)],
            "no rows: no outages and uptime unknown (not 100%) in every window"
        );
        assert_eq!(h.mtbf, None, "no up period has ended");
        assert_eq!(h.mttr, None, "no outage has ended");
        assert_eq!(h.longest_outage, None, "there was no outage");
    }

    #[test]
    fn windows_are_the_three_standard_spans_in_order() {
        let h = summarize(&[], at(NOW));
        let spans: Vec<_> = h.windows.iter().map(|w| (w.label, w.span)).collect();
        assert_eq!(
            spans,
            vec![("24h", ms(DAY)), ("7d", ms(7 * DAY)), ("30d", ms(30 * DAY))],
            "emails show 24h, 7d and 30d, shortest first"
        );
    }

    #[test]
    fn always_up_since_before_every_window() {
        let h = summarize(&history(&[(60 * DAY, Up)]), at(NOW));
        assert_eq!(
            windows(&h),
            vec![("24h", 0, Some(100.0)), ("7d", 0, Some(100.0)), ("30d", 0, Some(100.0))],
            "up since before the windows: 100% everywhere, no outage"
        );
        assert_eq!(h.mtbf, None, "the only up period is still ongoing: no completed one");
        assert_eq!(h.mttr, None, "no outage");
        assert_eq!(h.longest_outage, None, "no outage");
    }

    #[test]
    fn one_outage_fully_inside_the_day() {
        // Up from 40 days ago; down for 36 minutes starting 2 hours ago.
        let changes = history(&[(40 * DAY, Up), (2 * HOUR, Down), (2 * HOUR - 36 * MIN, Up)]);
        let h = summarize(&changes, at(NOW));
        assert_eq!(h.windows[0].outages, 1, "the outage began within the last 24h");
        assert_eq!(h.windows[1].outages, 1, "and within the last 7d");
        assert_eq!(h.windows[2].outages, 1, "and within the last 30d");
        // 36 min of 1440 min down in the day: 97.5% up.
        assert_percent(h.windows[0].uptime_percent, 97.5, "24h: 36 min down of a full day");
        assert_percent(
            h.windows[1].uptime_percent,
            100.0 - 36.0 * 100.0 / (7.0 * 1440.0),
            "7d: 36 min down of 7 full days",
        );
        assert_eq!(h.mttr, Some(ms(36 * MIN)), "one completed outage of 36 minutes");
        assert_eq!(
            h.mtbf,
            Some(ms(40 * DAY - 2 * HOUR)),
            "one completed up period: from 40 days ago to the outage"
        );
        assert_eq!(h.longest_outage, Some(ms(36 * MIN)), "the only outage");
    }

    #[test]
    fn outage_still_open_at_now() {
        // Up from 10 days ago, down for the last 6 hours.
        let changes = history(&[(10 * DAY, Up), (6 * HOUR, Down)]);
        let h = summarize(&changes, at(NOW));
        assert_eq!(h.windows[0].outages, 1, "the open outage counts in the day");
        assert_percent(h.windows[0].uptime_percent, 75.0, "24h: the last 6 of 24 hours down");
        assert_eq!(h.windows[2].outages, 1, "and once in 30d, not more");
        assert_percent(
            h.windows[2].uptime_percent,
            100.0 - 6.0 * 100.0 / (10.0 * 24.0),
            "30d: only the 10 observed days count, 6h of them down",
        );
        assert_eq!(h.mttr, None, "the only outage has not ended: MTTR unknown");
        assert_eq!(h.mtbf, Some(ms(10 * DAY - 6 * HOUR)), "the up period ended in this outage");
        assert_eq!(h.longest_outage, Some(ms(6 * HOUR)), "an open outage is measured to now");
    }

    #[test]
    fn outage_just_announced_at_now_is_counted() {
        // The email is composed as the outage row is written: it may begin exactly at now.
        let changes = history(&[(3 * DAY, Up), (0, Down)]);
        let h = summarize(&changes, at(NOW));
        assert_eq!(h.windows[0].outages, 1, "the outage being announced is an outage of today");
        assert_percent(h.windows[0].uptime_percent, 100.0, "it has no length yet");
        assert_eq!(h.longest_outage, Some(Duration::ZERO), "it is the only outage, 0 long");
    }

    #[test]
    fn outage_crossing_the_window_start() {
        // Down from 26 hours ago to 20 hours ago: 2 hours before the day window, 4 inside.
        let changes = history(&[(5 * DAY, Up), (26 * HOUR, Down), (20 * HOUR, Up)]);
        let h = summarize(&changes, at(NOW));
        assert_eq!(h.windows[0].outages, 1, "ongoing at the start of the day: an outage of it");
        assert_percent(
            h.windows[0].uptime_percent,
            100.0 - 4.0 * 100.0 / 24.0,
            "24h: only the 4 in-window hours of the outage count as down",
        );
        assert_eq!(h.longest_outage, Some(ms(6 * HOUR)), "the full outage, both sides");
        assert_eq!(h.mttr, Some(ms(6 * HOUR)), "MTTR counts the full outage too");
    }

    #[test]
    fn outage_ended_exactly_at_the_window_start_is_not_in_it() {
        let changes = history(&[(5 * DAY, Up), (25 * HOUR, Down), (24 * HOUR, Up)]);
        let h = summarize(&changes, at(NOW));
        assert_eq!(h.windows[0].outages, 0, "it was over when the day window began");
        assert_percent(h.windows[0].uptime_percent, 100.0, "no down time in the day");
        assert_eq!(h.windows[1].outages, 1, "it is in the 7d window");
    }

    #[test]
    fn outage_before_the_window_is_not_counted_in_it() {
        let changes = history(&[(20 * DAY, Up), (10 * DAY, Down), (9 * DAY, Up)]);
        let h = summarize(&changes, at(NOW));
        assert_eq!(
            windows(&h).iter().map(|w| w.1).collect::<Vec<_>>(),
            vec![0, 0, 1],
            "an outage 10 days ago is only in the 30d window"
        );
    }

    #[test]
    fn history_starting_mid_window_counts_observed_time_only() {
        // First observed 12 hours ago (up), down for the last 3 hours.
        let changes = history(&[(12 * HOUR, Up), (3 * HOUR, Down)]);
        let h = summarize(&changes, at(NOW));
        for w in &h.windows {
            assert_percent(
                w.uptime_percent,
                75.0,
                &format!("{}: 9h up of 12h observed, the unknown time before excluded", w.label),
            );
            assert_eq!(w.outages, 1, "{}: one outage", w.label);
        }
    }

    #[test]
    fn windows_say_how_much_of_them_the_history_covers() {
        // (history, now) -> per window: (label, whole?, observed, data from), and the labels shown.
        type Expected = (&'static [(&'static str, bool, i64, i64)], &'static [&'static str]);
        let cases: [(&str, Vec<Change>, Expected); 5] = [
            ("no rows", vec![], (&[("24h", false, 0, 0)], &["24h"])),
            (
                "first observation, 5s ago",
                history(&[(5_000, Down)]),
                (&[("24h", false, 5_000, 5_000)], &["24h"]),
            ),
            (
                "3 days of data",
                history(&[(3 * DAY, Up), (HOUR, Down)]),
                (&[("24h", true, DAY, DAY), ("7d", false, 3 * DAY, 3 * DAY)], &["24h", "7d"]),
            ),
            (
                "exactly 7 days: whole",
                history(&[(7 * DAY, Up)]),
                (
                    &[("7d", true, 7 * DAY, 7 * DAY), ("30d", false, 7 * DAY, 7 * DAY)],
                    &["24h", "7d", "30d"],
                ),
            ),
            (
                "since before every window",
                history(&[(60 * DAY, Up), (2 * DAY, Down), (DAY + HOUR, Up)]),
                (&[("30d", true, 30 * DAY, 30 * DAY)], &["24h", "7d", "30d"]),
            ),
        ];
        for (name, changes, (windows, shown)) in cases {
            let h = summarize(&changes, at(NOW));
            for &(label, whole, observed, from) in windows {
                let w = h.windows.iter().find(|w| w.label == label).expect("a standard window");
                assert_eq!(
                    (w.is_whole(), w.observed, w.data_from(at(NOW))),
                    (whole, ms(observed), at(NOW - from)),
                    "{name}: {label}"
                );
            }
            let labels: Vec<_> = h.covered().iter().map(|w| w.label).collect();
            assert_eq!(labels, shown, "{name}: the windows shown");
        }
    }

    #[test]
    fn a_short_history_has_the_same_figures_in_every_longer_window() {
        // Why `covered` stops at the first partial window: the rest only repeat it.
        let h = summarize(&history(&[(10 * HOUR, Up), (5_000, Down)]), at(NOW));
        let figures: Vec<_> =
            h.windows.iter().map(|w| (w.outages, w.uptime_percent, w.observed)).collect();
        assert!(figures.windows(2).all(|pair| pair[0] == pair[1]), "{figures:?}");
    }

    #[test]
    fn repeated_same_health_rows_are_one_period() {
        // A restart re-recorded Down, then Up twice: still one outage and one up period.
        let changes = history(&[
            (10 * HOUR, Up),
            (8 * HOUR, Up),
            (6 * HOUR, Down),
            (5 * HOUR, Down),
            (4 * HOUR, Up),
            (2 * HOUR, Up),
        ]);
        assert_eq!(
            periods(&changes),
            vec![
                Period { health: Up, start: at(NOW - 10 * HOUR), end: Some(at(NOW - 6 * HOUR)) },
                Period { health: Down, start: at(NOW - 6 * HOUR), end: Some(at(NOW - 4 * HOUR)) },
                Period { health: Up, start: at(NOW - 4 * HOUR), end: None },
            ],
            "repeats extend the period begun by the first row of the run"
        );
        let h = summarize(&changes, at(NOW));
        assert_eq!(h.windows[0].outages, 1, "the repeated Down row is not a second outage");
        assert_eq!(h.mttr, Some(ms(2 * HOUR)), "the outage lasted from its first row: 2h");
        assert_eq!(h.mtbf, Some(ms(4 * HOUR)), "the up period lasted from its first row: 4h");
        assert_percent(h.windows[0].uptime_percent, 80.0, "8h up of 10h observed");
    }

    #[test]
    fn mtbf_and_mttr_over_several_cycles() {
        // Up 10h, down 1h, up 20h, down 2h, up 30h, down 3h, up (ongoing 5h).
        let changes = history(&[
            (71 * HOUR, Up),
            (61 * HOUR, Down),
            (60 * HOUR, Up),
            (40 * HOUR, Down),
            (38 * HOUR, Up),
            (8 * HOUR, Down),
            (5 * HOUR, Up),
        ]);
        let h = summarize(&changes, at(NOW));
        assert_eq!(h.mtbf, Some(ms(20 * HOUR)), "(10h + 20h + 30h) / 3; the ongoing 5h excluded");
        assert_eq!(h.mttr, Some(ms(2 * HOUR)), "(1h + 2h + 3h) / 3");
        assert_eq!(h.longest_outage, Some(ms(3 * HOUR)), "the 3h outage");
        assert_eq!(h.windows[0].outages, 1, "only the 3h outage began in the last 24h");
        assert_eq!(h.windows[1].outages, 3, "all three are in the 7d window");
        assert_percent(
            h.windows[1].uptime_percent,
            65.0 * 100.0 / 71.0,
            "7d: 65h up of 71h observed",
        );
    }

    #[test]
    fn mean_truncates_to_the_millisecond() {
        let changes = history(&[(10_000, Down), (9_000, Up), (8_000, Down), (7_999, Up)]);
        assert_eq!(
            mttr(&periods(&changes)),
            Some(ms(500)),
            "(1000ms + 1ms) / 2 = 500.5ms, truncated"
        );
    }

    #[test]
    fn longest_outage_ongoing_beats_completed_only_when_longer() {
        let completed_longer =
            history(&[(30 * HOUR, Up), (20 * HOUR, Down), (15 * HOUR, Up), (HOUR, Down)]);
        assert_eq!(
            summarize(&completed_longer, at(NOW)).longest_outage,
            Some(ms(5 * HOUR)),
            "a completed 5h outage is longer than the ongoing 1h one"
        );
        let ongoing_longer =
            history(&[(30 * HOUR, Up), (20 * HOUR, Down), (19 * HOUR, Up), (10 * HOUR, Down)]);
        assert_eq!(
            summarize(&ongoing_longer, at(NOW)).longest_outage,
            Some(ms(10 * HOUR)),
            "the ongoing outage, measured to now (10h), is longer than the completed 1h one"
        );
    }

    #[test]
    fn first_row_down_is_an_outage_from_its_start() {
        // The first settled state of a new target was Down.
        let changes = history(&[(2 * HOUR, Down), (HOUR, Up)]);
        let h = summarize(&changes, at(NOW));
        assert_eq!(h.windows[0].outages, 1, "a first observation Down is an outage");
        assert_percent(h.windows[0].uptime_percent, 50.0, "1h up of 2h observed");
        assert_eq!(h.mtbf, None, "no up period has ended");
        assert_eq!(h.mttr, Some(ms(HOUR)), "the outage lasted 1h");
    }

    #[test]
    fn window_over_an_arbitrary_past_interval() {
        // For `report`: a window that ends before now clips the ongoing period at its end.
        let changes = history(&[(10 * DAY, Up), (5 * DAY, Down), (4 * DAY, Up), (DAY, Down)]);
        let p = periods(&changes);
        let got = window(&p, at(NOW - 6 * DAY), at(NOW - 2 * DAY));
        assert_eq!(
            got,
            Availability { outages: 1, up: ms(3 * DAY), observed: ms(4 * DAY) },
            "4 days observed, 1 of them down; the outage 1 day ago is after the interval"
        );
        assert_percent(got.uptime_percent(), 75.0, "3 of 4 days up");
        let before = window(&p, at(NOW - 20 * DAY), at(NOW - 15 * DAY));
        assert_eq!(before.uptime_percent(), None, "nothing recorded yet: unknown, not 0%");
    }

    #[test]
    fn periods_of_nothing_and_of_one_row() {
        assert_eq!(periods(&[]), vec![], "no rows, no periods");
        assert_eq!(
            periods(&history(&[(HOUR, Down)])),
            vec![Period { health: Down, start: at(NOW - HOUR), end: None }],
            "one row: one ongoing period"
        );
    }

    #[test]
    fn timestamps_out_of_order_do_not_underflow() {
        // A wall clock stepped back between two rows.
        let changes = history(&[(HOUR, Up), (2 * HOUR, Down), (30 * MIN, Up)]);
        let h = summarize(&changes, at(NOW));
        assert_eq!(h.mtbf, Some(Duration::ZERO), "a negative length saturates to zero");
        assert!(h.windows[0].uptime_percent.is_some(), "still computes without panicking");
    }
}
