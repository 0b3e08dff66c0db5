//! `api-monitor silence --list`: the silences not ended yet, as text.

use std::fmt::Write as _;

use super::{escape, seconds};
use crate::duration::human;
use crate::maintenance::{Silence, ALL_TARGETS};
use crate::timestamp::Timestamp;

/// Running silences first (with the time left), then those to come, each with its id (what
/// `--clear` takes), target, end, reason and who set it. Ends with a newline.
pub fn silences(all: &[Silence], now: Timestamp) -> String {
    let mut out = String::new();
    // Writing into a `String` cannot fail.
    let _ = writeln!(
        out,
        "SILENCES: notifications held back; `api-monitor silence --clear ID` ends one ({})",
        all.len()
    );
    for s in all {
        let target =
            if s.target == ALL_TARGETS { "every target".into() } else { escape(&s.target) };
        let when = if s.starts_at <= now {
            format!("until {} ({} left)", seconds(s.ends_at), human(s.ends_at.since(now)))
        } else {
            format!("from {} until {}", seconds(s.starts_at), seconds(s.ends_at))
        };
        let _ = writeln!(out, "  #{}  {target}  {when}", s.id);
        let _ = writeln!(
            out,
            "      reason: {}  (set by {})",
            escape(&s.reason),
            escape(&s.created_by)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_and_coming_silences_are_listed_with_their_id_and_reason() {
        let now = Timestamp::from_millis(1_795_000_000_000);
        let silence = |id, target: &str, from: i64, to: i64| Silence {
            id,
            target: target.into(),
            starts_at: Timestamp::from_millis(now.millis() + from),
            ends_at: Timestamp::from_millis(now.millis() + to),
            reason: "deploy\u{1b}[31m".into(),
            created_by: "ops@host".into(),
        };
        let text = silences(
            &[
                silence(3, "https://a.example/health", -60_000, 7_200_000),
                silence(4, "*", 3_600_000, 7_200_000),
            ],
            now,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[1].starts_with("  #3  https://a.example/health  until "), "{text}");
        assert!(lines[1].ends_with("(2h left)"), "{text}");
        assert!(lines[2].contains("(set by ops@host)") && !text.contains('\u{1b}'), "{text}");
        assert!(lines[3].starts_with("  #4  every target  from "), "{text}");
    }
}
