//! Durations as people write and read them.
//!
//! Operators write durations on the command line (`--interval 5s`, `report --since 7d`) and read
//! them in logs and emails (`It was down for 2m 10s`). Both directions live here so the whole
//! program speaks one notation: [`parse`] for input, [`human`] for output.

use std::time::Duration;

/// What [`parse`] accepts, quoted in its error so a bad option explains itself.
const ACCEPTED: &str =
    "expected a duration like 500ms, 5s or 2m (units ms, s, m, h, d; combined like 1m30s)";

/// Parses a duration written with units: `500ms`, `5s`, `2m`, `1h`, `1d`, or a combination
/// such as `1m30s` or `1h 30m` (the notation of the `humantime` crate, which also knows longer
/// spellings like `2min` or `1hour`).
///
/// A bare number is refused rather than guessed at: `--interval 5` could mean seconds or
/// milliseconds, and guessing wrong by a factor of 1000 hammers the monitored API. The error
/// only says what is accepted: the caller names the option and quotes the text it read.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|_| ACCEPTED.to_owned())
}

/// How every duration reads in logs and emails: the largest non-zero unit among days, hours,
/// minutes and seconds, followed by the next unit when that is non-zero (`3d 4h`, `2m 10s`,
/// `1h`, `45s`, `2d`; `1d 0h 5m` reads `1d`). Smaller units are truncated, never rounded, so a duration is never shown
/// longer than it was. Below one second it reads in milliseconds (`850ms`); zero is `0s`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        let ms = d.subsec_millis();
        return if ms == 0 { "0s".to_owned() } else { format!("{ms}ms") };
    }
    let units = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3_600, "h"),
        (secs % 3_600 / 60, "m"),
        (secs % 60, "s"),
    ];
    // The largest non-zero unit and the one right below it (if non-zero): `1h 0m 59s` reads
    // `1h`, because a reader scanning for the order of magnitude should not meet `1h 59s`.
    let first = units.iter().position(|(value, _)| *value > 0).unwrap_or(units.len() - 1);
    units[first..]
        .iter()
        .take(2)
        .filter(|(value, _)| *value > 0)
        .map(|(value, unit)| format!("{value}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1;
    const MIN: u64 = 60;
    const HOUR: u64 = 3_600;
    const DAY: u64 = 86_400;

    #[test]
    fn parse_accepts_units_and_combinations() {
        let cases: &[(&str, Duration)] = &[
            ("500ms", Duration::from_millis(500)),
            ("5s", Duration::from_secs(5)),
            ("2m", Duration::from_secs(2 * MIN)),
            ("1h", Duration::from_secs(HOUR)),
            ("1d", Duration::from_secs(DAY)),
            ("1m30s", Duration::from_secs(MIN + 30 * SEC)),
            ("1h 30m", Duration::from_secs(HOUR + 30 * MIN)),
            ("2min", Duration::from_secs(2 * MIN)),
            (" 7d ", Duration::from_secs(7 * DAY)),
            ("0s", Duration::ZERO),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(*expected), "{text:?} should parse to {expected:?}");
        }
    }

    #[test]
    fn parse_rejects_what_is_not_a_duration_and_says_what_is_accepted() {
        for text in ["", "   ", "5", "1.5", "abc", "5 parsecs", "-5s", "s", "5s!"] {
            let err = parse(text).expect_err(&format!("{text:?} must be refused"));
            assert!(
                err.contains("expected a duration like 500ms, 5s or 2m"),
                "the error for {text:?} should say what is accepted, got {err:?}"
            );
        }
    }

    #[test]
    fn human_shows_the_largest_unit_and_the_next_truncated() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let cases: &[(Duration, &str, &str)] = &[
            (Duration::ZERO, "0s", "zero is 0s, not empty"),
            (ms(1), "1ms", "the smallest recorded unit"),
            (ms(850), "850ms", "below one second reads in milliseconds"),
            (ms(999), "999ms", "still below one second"),
            (ms(1_000), "1s", "exactly one second"),
            (ms(1_999), "1s", "milliseconds are truncated, not rounded, above one second"),
            (s(45), "45s", "seconds only"),
            (s(2 * MIN + 10), "2m 10s", "minutes and seconds"),
            (s(2 * MIN), "2m", "zero seconds are not shown"),
            (s(HOUR), "1h", "a whole hour"),
            (s(HOUR + 59), "1h", "the unit below hours is zero, seconds are below that"),
            (s(HOUR + 5 * MIN + 59), "1h 5m", "hours and minutes, seconds truncated"),
            (s(2 * DAY), "2d", "whole days"),
            (s(3 * DAY + 4 * HOUR), "3d 4h", "days and hours"),
            (s(3 * DAY + 4 * HOUR + 59 * MIN + 59), "3d 4h", "truncated: never rounded up to 5h"),
            (s(DAY + 5 * MIN), "1d", "minutes are two units below days"),
            (s(DAY + HOUR + 30), "1d 1h", "days and hours, the rest truncated"),
            (s(400 * DAY), "400d", "days do not roll over into larger units"),
        ];
        for (d, expected, why) in cases {
            assert_eq!(human(*d), *expected, "{d:?}: {why}");
        }
    }

    #[test]
    fn human_reads_back_through_parse() {
        for text in ["850ms", "45s", "2m 10s", "1h 5m", "3d 4h"] {
            let d = parse(text).expect("a human duration is valid input");
            assert_eq!(human(d), text, "human(parse({text:?})) should give the text back");
        }
    }
}
