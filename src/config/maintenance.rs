//! The `[[maintenance]]` windows of the config file, validated into
//! [`crate::maintenance::Window`]s with errors naming the file's key.

use crate::config::error::ConfigError;
use crate::config::file::ConfigFile;
use crate::config::Target;
use crate::maintenance::{parse_instant, parse_weekly, When, Window, MAX_WINDOW};

/// The longest reason kept: it is shown in logs, emails and the `state.maintenance` column.
pub const MAX_REASON: usize = 200;

/// Every `[[maintenance]]` of `file`, in file order; `targets` are the configured ones, which
/// the windows' `targets` must name (by URL, as written in `[[target]]`, or as logs show it).
pub(super) fn windows(file: &ConfigFile, targets: &[Target]) -> Result<Vec<Window>, ConfigError> {
    let mut out = Vec::new();
    for (i, entry) in file.settings.maintenance_list.iter().enumerate() {
        let entry_key = file.key(&format!("maintenance[{}]", i + 1));
        let key = |name: &str| format!("{entry_key}.{name}");
        let bad = |key: String, why: String| Err(ConfigError(format!("{key}: {why}")));
        let when = match (&entry.weekly, &entry.start, &entry.end) {
            (Some(weekly), None, None) => match parse_weekly(weekly) {
                Ok(when) => when,
                Err(why) => return bad(key("weekly"), why),
            },
            (None, Some(start), Some(end)) => {
                let start_at = parse_instant(start)
                    .map_err(|why| ConfigError(format!("{}: {why}", key("start"))))?;
                let end_at = parse_instant(end)
                    .map_err(|why| ConfigError(format!("{}: {why}", key("end"))))?;
                if end_at <= start_at {
                    return bad(key("end"), format!("{end:?} is not after start {start:?}"));
                }
                When::Once { start: start_at, end: end_at }
            }
            _ => {
                return bad(
                    entry_key,
                    "give `weekly` (like \"Sun 02:00-04:00\"), or `start` and `end` (RFC 3339 \
                     UTC), not both"
                        .to_owned(),
                )
            }
        };
        if let When::Weekly { length, .. } = &when {
            if *length > MAX_WINDOW {
                return bad(key("weekly"), "longer than a week".to_owned());
            }
        }
        let mut names = Vec::new();
        for (j, url) in entry.targets.iter().flatten().enumerate() {
            let Some(t) = targets.iter().find(|t| t.url.expose() == url || t.name == *url) else {
                return bad(
                    format!("{}[{}]", key("targets"), j + 1),
                    format!("no [[target]] (or --url) with the URL {:?}", crate::redact::url(url)),
                );
            };
            names.push(t.name.clone());
        }
        if entry.targets.as_ref().is_some_and(Vec::is_empty) {
            return bad(key("targets"), "empty; leave it out to cover every target".to_owned());
        }
        let reason = entry.reason.clone().unwrap_or_else(|| "planned maintenance".to_owned());
        if reason.chars().count() > MAX_REASON || reason.chars().any(char::is_control) {
            return bad(key("reason"), format!("at most {MAX_REASON} characters on one line"));
        }
        out.push(Window { targets: names, when, reason });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{config_with_files, CONFIG_PATH};
    use crate::maintenance::When;

    const TARGETS: &str = "[[target]]\nurl = \"https://a.example/health\"\n\
                           [[target]]\nurl = \"https://b.example/health\"\n";

    #[test]
    fn windows_are_read_with_their_targets() {
        let c = config_with_files(
            &format!(
                "{TARGETS}[[maintenance]]\nweekly = \"Sun 02:00-04:00\"\nreason = \"deploy\"\n\
                 [[maintenance]]\nstart = \"2026-12-24T22:00:00Z\"\nend = \"2026-12-25T02:00:00Z\"\n\
                 targets = [\"https://b.example/health\"]\n"
            ),
            &[],
        )
        .expect("valid");
        assert_eq!(c.maintenance.len(), 2);
        assert!(c.maintenance[0].targets.is_empty(), "every target");
        assert_eq!(c.maintenance[0].reason, "deploy");
        assert!(matches!(c.maintenance[0].when, When::Weekly { .. }));
        assert_eq!(c.maintenance[1].targets, ["https://b.example/health"]);
        assert_eq!(c.maintenance[1].reason, "planned maintenance");
    }

    #[test]
    fn mistakes_are_named_by_key() {
        let m = |body: &str| format!("{TARGETS}[[maintenance]]\n{body}");
        let cases = [
            (m("weekly = \"Sun 2-4\"\n"), "maintenance[1].weekly: expected days and a UTC time range"),
            (m("start = \"2026-12-24T22:00:00Z\"\n"), "maintenance[1]: give `weekly`"),
            (m("weekly = \"Sun 02:00-04:00\"\nstart = \"2026-12-24T22:00:00Z\"\nend = \"2026-12-24T23:00:00Z\"\n"), "maintenance[1]: give `weekly`"),
            (m("start = \"tomorrow\"\nend = \"2026-12-24T23:00:00Z\"\n"), "maintenance[1].start: expected an RFC 3339 time"),
            (m("start = \"2026-12-24T22:00:00Z\"\nend = \"2026-12-24T21:00:00Z\"\n"), "maintenance[1].end: \"2026-12-24T21:00:00Z\" is not after start"),
            (m("weekly = \"Sun 02:00-04:00\"\ntargets = [\"https://c.example/health\"]\n"), "maintenance[1].targets[1]: no [[target]] (or --url) with the URL"),
            (m("weekly = \"Sun 02:00-04:00\"\ntargets = []\n"), "maintenance[1].targets: empty"),
            (m("weekly = \"Sun 02:00-04:00\"\nevery = 1\n"), "maintenance[1].every: unknown key"),
        ];
        for (text, expected) in cases {
            let e = config_with_files(&text, &[]).expect_err(expected).0;
            assert!(e.starts_with(CONFIG_PATH), "{e}");
            assert!(e.contains(expected), "{e:?} should contain {expected:?}");
        }
    }
}
