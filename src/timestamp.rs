//! UTC wall-clock instants with millisecond precision.
//!
//! Every timestamp the monitor records, compares or prints is a [`Timestamp`]: a plain count of
//! milliseconds since the Unix epoch. Keeping it an integer makes the pure modules (detector,
//! history, message) trivially testable with hand-built values, and millisecond precision is what
//! both stores keep (`DATETIME(3)` in MySQL, ISO text in SQLite).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An instant in UTC, in milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// A text that is not a `YYYY-MM-DD HH:MM:SS[.fff]` UTC timestamp.
#[derive(Debug, thiserror::Error)]
#[error("invalid timestamp {0:?}: expected `YYYY-MM-DD HH:MM:SS.fff` (UTC)")]
pub struct TimestampError(pub String);

impl Timestamp {
    /// The timestamp `ms` milliseconds after the Unix epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Converts a wall-clock reading; instants before 1970 clamp to the epoch.
    pub fn from_system_time(t: SystemTime) -> Self {
        let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// The time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// `self` moved back by `d` (saturating).
    pub fn minus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// `self` moved forward by `d` (saturating).
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    fn system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.0).unwrap_or(0))
    }

    /// The form both stores keep: `2026-11-25 14:42:00.123` (UTC, no zone suffix), which
    /// MySQL's `DATETIME(3)` accepts as is and SQLite's date functions understand.
    pub fn to_sql(self) -> String {
        let iso = humantime::format_rfc3339_millis(self.system_time()).to_string();
        iso.trim_end_matches('Z').replacen('T', " ", 1)
    }

    /// Parses what [`Timestamp::to_sql`] writes (and any RFC 3339-like UTC text).
    pub fn parse_sql(text: &str) -> Result<Self, TimestampError> {
        humantime::parse_rfc3339_weak(text.trim())
            .map(Timestamp::from_system_time)
            .map_err(|_| TimestampError(text.to_owned()))
    }
}

/// ISO-8601 in UTC with milliseconds: `2026-11-25T14:42:00.123Z`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_millis(self.system_time()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_form_round_trips_with_milliseconds() {
        let t = Timestamp::from_millis(1_795_000_000_123);
        assert_eq!(t.to_sql(), "2026-11-18 11:06:40.123");
        assert_eq!(Timestamp::parse_sql(&t.to_sql()).unwrap(), t);
    }

    #[test]
    fn display_is_iso_8601_utc() {
        assert_eq!(Timestamp::from_millis(0).to_string(), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn parse_accepts_mysql_text_without_fraction_and_rejects_garbage() {
        assert_eq!(Timestamp::parse_sql("1970-01-01 00:00:01").unwrap().millis(), 1000);
        assert!(Timestamp::parse_sql("yesterday").is_err());
    }

    #[test]
    fn since_saturates_at_zero() {
        let a = Timestamp::from_millis(5_000);
        let b = Timestamp::from_millis(7_500);
        assert_eq!(b.since(a), Duration::from_millis(2_500));
        assert_eq!(a.since(b), Duration::ZERO);
    }
}

/// The source of "now" for the loop; tests substitute their own.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system's wall clock, in UTC.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }
}
