//! Maintenance: when a target's notifications are held back — planned windows from the config
//! file (one-off or weekly, in UTC) and silences set at run time with `api-monitor silence`
//! (kept in the database, so every instance and a restarted one honours them).
//!
//! Pure: what covers a target at an instant ([`covering`]), and parsing the window forms. The
//! state owner asks it for every outcome; holding back and the summary when it ends are there.
//!
//! Why UTC only: a window in a local zone needs the zone's rules (a tz database), and "02:00
//! on the day the clocks change" is exactly when planned work happens. UTC has no such hour.

use std::fmt;
use std::time::Duration;

use crate::timestamp::Timestamp;

/// What `targets` of a window or silence means "every target".
pub const ALL_TARGETS: &str = "*";

const DAY_MS: i64 = 24 * 3600 * 1000;
const WEEK_MS: i64 = 7 * DAY_MS;
/// 1970-01-01 was a Thursday: Monday-based weekday of day 0.
const EPOCH_WEEKDAY: i64 = 3;
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// When a window is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum When {
    /// Once, from `start` (inclusive) to `end` (exclusive).
    Once { start: Timestamp, end: Timestamp },
    /// Every week on `days` (bit 0 = Monday … bit 6 = Sunday) from `start` after midnight UTC,
    /// for `length` (which may run past midnight, into the next day).
    Weekly { days: u8, start: Duration, length: Duration },
}

/// A maintenance window of the config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Target names it covers; empty: every target.
    pub targets: Vec<String>,
    pub when: When,
    pub reason: String,
}

/// A silence from `api-monitor silence`, as the `silence` table keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Silence {
    pub id: i64,
    /// A target name, or [`ALL_TARGETS`].
    pub target: String,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub reason: String,
    /// Who set it (`user@host`), for `silence --list`.
    pub created_by: String,
}

/// Why a target is in maintenance now, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cover {
    /// `silence #3: deploy` or `window "Sun 02:00-04:00": weekly deploy`.
    pub why: String,
    pub until: Timestamp,
}

impl fmt::Display for Cover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (until {})", self.why, self.until)
    }
}

/// What covers `target` at `at`: the first silence, else the first window, open then. When
/// several cover it, the one ending last gives `until`.
pub fn covering(
    target: &str,
    at: Timestamp,
    windows: &[Window],
    silences: &[Silence],
) -> Option<Cover> {
    let silenced = silences
        .iter()
        .filter(|s| s.target == ALL_TARGETS || s.target == target)
        .filter(|s| s.starts_at <= at && at < s.ends_at)
        .map(|s| Cover { why: format!("silence #{}: {}", s.id, s.reason), until: s.ends_at });
    let windowed = windows
        .iter()
        .filter(|w| w.targets.is_empty() || w.targets.iter().any(|t| t == target))
        .filter_map(|w| {
            open_until(&w.when, at).map(|until| Cover {
                why: format!("window {}: {}", describe(&w.when), w.reason),
                until,
            })
        });
    let all: Vec<Cover> = silenced.chain(windowed).collect();
    let until = all.iter().map(|c| c.until).max()?;
    all.into_iter().next().map(|c| Cover { until, ..c })
}

/// When the window that is open at `at` closes; `None` when it is not open.
fn open_until(when: &When, at: Timestamp) -> Option<Timestamp> {
    match *when {
        When::Once { start, end } => (start <= at && at < end).then_some(end),
        When::Weekly { days, start, length } => {
            let start_ms = i64::try_from(start.as_millis()).ok()?;
            let length_ms = i64::try_from(length.as_millis()).ok()?;
            let today = at.millis().div_euclid(DAY_MS);
            // Today's opening, or one from an earlier day still running (a window may last
            // up to a week, so look back that far).
            (0..=7).map(|back| today - back).find_map(|day| {
                let weekday = (day + EPOCH_WEEKDAY).rem_euclid(7);
                let opens = day * DAY_MS + start_ms;
                let open = days & (1 << weekday) != 0 && opens <= at.millis();
                (open && at.millis() < opens + length_ms)
                    .then(|| Timestamp::from_millis(opens + length_ms))
            })
        }
    }
}

/// A weekly window as written: `Sun 02:00-04:00`.
pub fn describe(when: &When) -> String {
    match when {
        When::Once { start, end } => format!("{start}–{end}"),
        When::Weekly { days, start, length } => {
            let names: Vec<&str> =
                (0..7).filter(|d| days & (1 << d) != 0).map(|d| DAY_NAMES[d]).collect();
            let days = if *days == 0x7f { "daily".to_owned() } else { names.join(",") };
            let end = (*start + *length).as_secs() / 60 % (24 * 60);
            let start = start.as_secs() / 60;
            format!("{days} {:02}:{:02}-{:02}:{:02}", start / 60, start % 60, end / 60, end % 60)
        }
    }
}

/// Parses a weekly window: `DAYS HH:MM-HH:MM [UTC]`, DAYS being `daily` or day names (`Mon` …
/// `Sun`, or whole names, any case) joined by `,`. An end at or before the start runs into the
/// next day (`Sat 23:00-01:00`). The message says what was expected.
pub fn parse_weekly(text: &str) -> Result<When, String> {
    let expected = || {
        format!(
            "expected days and a UTC time range like \"Sun 02:00-04:00\", \"Mon,Thu \
             22:30-01:00\" or \"daily 03:00-03:15\", got {text:?}"
        )
    };
    let mut words = text.split_whitespace();
    let (Some(days_word), Some(range)) = (words.next(), words.next()) else {
        return Err(expected());
    };
    match words.next() {
        None => {}
        Some(zone) if zone.eq_ignore_ascii_case("UTC") && words.next().is_none() => {}
        Some(_) => {
            return Err(format!("{}; only UTC is supported", expected()));
        }
    }
    let days = if days_word.eq_ignore_ascii_case("daily") {
        0x7f
    } else {
        let mut days = 0u8;
        for name in days_word.split(',') {
            let short = name.get(..3).unwrap_or(name);
            let known =
                ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
            let day = DAY_NAMES
                .iter()
                .position(|d| d.eq_ignore_ascii_case(short))
                .filter(|&d| name.len() == 3 || known[d].eq_ignore_ascii_case(name))
                .ok_or_else(expected)?;
            days |= 1 << day;
        }
        days
    };
    let (from, to) = range.split_once('-').ok_or_else(expected)?;
    let (start, end) =
        (clock_time(from).ok_or_else(expected)?, clock_time(to).ok_or_else(expected)?);
    let length = if end > start { end - start } else { end + Duration::from_secs(86_400) - start };
    Ok(When::Weekly { days, start, length })
}

/// `HH:MM` (00:00–23:59; `24:00` as an end) after midnight.
fn clock_time(text: &str) -> Option<Duration> {
    let (h, m) = text.split_once(':')?;
    let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return None;
    }
    let (h, m): (u64, u64) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then(|| Duration::from_secs(h * 3600 + m * 60))
}

/// Parses an instant of a one-off window: RFC 3339 in UTC (`2026-12-24T22:00:00Z`).
pub fn parse_instant(text: &str) -> Result<Timestamp, String> {
    humantime::parse_rfc3339(text.trim()).map(Timestamp::from_system_time).map_err(|_| {
        format!("expected an RFC 3339 time in UTC like \"2026-12-24T22:00:00Z\", got {text:?}")
    })
}

/// How long a window lasts at most: longer is a typo, not maintenance.
pub const MAX_WINDOW: Duration = Duration::from_secs(WEEK_MS as u64 / 1000);

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        parse_instant(text).unwrap()
    }

    fn weekly(text: &str) -> Window {
        Window { targets: vec![], when: parse_weekly(text).unwrap(), reason: "deploy".into() }
    }

    #[test]
    fn weekly_windows_open_on_their_days_in_utc_and_may_run_past_midnight() {
        // 2026-12-06 is a Sunday.
        let cases = [
            ("Sun 02:00-04:00", "2026-12-06T01:59:59Z", None),
            ("Sun 02:00-04:00", "2026-12-06T02:00:00Z", Some("2026-12-06T04:00:00Z")),
            ("Sun 02:00-04:00", "2026-12-06T03:59:59Z", Some("2026-12-06T04:00:00Z")),
            ("Sun 02:00-04:00", "2026-12-06T04:00:00Z", None),
            ("Sun 02:00-04:00", "2026-12-07T02:30:00Z", None),
            ("Sun 02:00-04:00", "2026-12-13T02:30:00Z", Some("2026-12-13T04:00:00Z")),
            ("Sat 23:00-01:00", "2026-12-06T00:30:00Z", Some("2026-12-06T01:00:00Z")),
            ("Sat 23:00-01:00", "2026-12-05T23:00:00Z", Some("2026-12-06T01:00:00Z")),
            ("Sat 23:00-01:00", "2026-12-06T23:30:00Z", None),
            ("Mon,thursday 22:30-23:00 UTC", "2026-12-03T22:45:00Z", Some("2026-12-03T23:00:00Z")),
            ("daily 03:00-03:15", "2026-12-02T03:10:00Z", Some("2026-12-02T03:15:00Z")),
            ("daily 00:00-24:00", "2026-12-02T13:00:00Z", Some("2026-12-03T00:00:00Z")),
        ];
        for (window, now, expected) in cases {
            let cover = covering("t", at(now), &[weekly(window)], &[]);
            assert_eq!(cover.map(|c| c.until), expected.map(at), "{window} at {now}");
        }
    }

    #[test]
    fn bad_weekly_windows_say_what_is_expected() {
        for bad in [
            "",
            "Sun",
            "Sun 2:00-4:00",
            "Funday 02:00-04:00",
            "Sun 02:00-25:00",
            "Sun 02:00-04:00 CET",
            "Sun 02:00 04:00",
            "Sund 02:00-04:00",
        ] {
            let e = parse_weekly(bad).unwrap_err();
            assert!(e.contains("expected days and a UTC time range"), "{bad}: {e}");
        }
        assert!(parse_weekly("Sun 02:00-04:00 CET").unwrap_err().contains("only UTC"));
        assert_eq!(
            describe(&parse_weekly("sunday,Sat 23:00-01:00").unwrap()),
            "Sat,Sun 23:00-01:00"
        );
        assert_eq!(describe(&parse_weekly("daily 03:00-03:15").unwrap()), "daily 03:00-03:15");
    }

    #[test]
    fn silences_and_windows_cover_their_targets_the_latest_end_wins() {
        let silence = |id, target: &str, from, to| Silence {
            id,
            target: target.into(),
            starts_at: at(from),
            ends_at: at(to),
            reason: "deploy".into(),
            created_by: "me@host".into(),
        };
        let once = Window {
            targets: vec!["a".into()],
            when: When::Once { start: at("2026-12-01T10:00:00Z"), end: at("2026-12-01T12:00:00Z") },
            reason: "migration".into(),
        };
        let silences = [
            silence(1, "b", "2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z"),
            silence(2, ALL_TARGETS, "2026-12-01T11:30:00Z", "2026-12-01T13:00:00Z"),
        ];
        let windows = [once];
        let cases = [
            ("a", "2026-12-01T09:59:59Z", None),
            ("a", "2026-12-01T10:00:00Z", Some(("window", "2026-12-01T12:00:00Z"))),
            ("b", "2026-12-01T10:30:00Z", Some(("silence #1: deploy", "2026-12-01T11:00:00Z"))),
            ("b", "2026-12-01T11:00:00Z", None),
            ("a", "2026-12-01T11:45:00Z", Some(("silence #2: deploy", "2026-12-01T13:00:00Z"))),
            ("c", "2026-12-01T12:59:00Z", Some(("silence #2", "2026-12-01T13:00:00Z"))),
            ("c", "2026-12-01T13:00:00Z", None),
        ];
        for (target, now, expected) in cases {
            let cover = covering(target, at(now), &windows, &silences);
            match (cover, expected) {
                (None, None) => {}
                (Some(c), Some((why, until))) => {
                    assert!(c.why.starts_with(why), "{target} at {now}: {c:?}");
                    assert_eq!(c.until, at(until), "{target} at {now}");
                }
                (c, e) => panic!("{target} at {now}: {c:?}, expected {e:?}"),
            }
        }
    }
}
