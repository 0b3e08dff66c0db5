//! Targets: as configured ([`Spec`]: `--url` or a `[[target]]`), then validated.
//!
//! A [`Spec`] keeps where each of its values came from until validation, because a target's
//! own key in the file and the global value it falls back to are named differently in errors
//! (`monitor.toml: target[2].interval` or `--interval`).

use std::collections::HashMap;
use std::time::Duration;

use crate::config::error::ConfigError;
use crate::config::file::{self as config_file, ConfigFile, Count, DurationText};
use crate::config::regions::{named_regions, Defined};
use crate::config::sources::{Setting, DEFAULT_INTERVAL, DEFAULT_URL};
use crate::config::urls::{is_loopback, target_url};
use crate::config::validation::{
    address, duration, remind, slow, slow_within, threshold, timeout, DAY, INTERVAL_FLOOR,
};
use crate::config::{Target, DIRECT};
use crate::detector::Thresholds;

/// The global settings a target falls back to.
pub(super) struct Defaults {
    pub(super) interval: Duration,
    /// Where the interval came from (`--interval`, `monitor.toml: interval`), for the floor.
    pub(super) interval_source: String,
    pub(super) timeout: Duration,
    /// The global `slow` limit and the setting it came from (for the error that compares it
    /// with a target's timeout); `None`: off.
    pub(super) slow: Option<(Duration, Setting)>,
    pub(super) thresholds: Thresholds,
    pub(super) remind: Option<Duration>,
}

/// A target as configured, before validation; every value knows where it came from.
pub(super) struct Spec {
    /// `--url` or `monitor.toml: target[2]`: how errors about the target as a whole name it.
    pub(super) origin: String,
    pub(super) url: Setting,
    pub(super) interval: Option<Setting>,
    pub(super) timeout: Option<Setting>,
    pub(super) slow: Option<Setting>,
    pub(super) failures: Option<Setting>,
    pub(super) successes: Option<Setting>,
    pub(super) recipients: Vec<Setting>,
    /// The key of the list (`monitor.toml: target[2].regions`) and its names; `None`: all.
    pub(super) regions: Option<(String, Vec<Setting>)>,
    pub(super) remind: Option<Setting>,
    /// Channel names, already checked against the `[[channel]]`s.
    pub(super) channels: Vec<String>,
}

impl Spec {
    /// A target from the command line (`--url` or `API_URL`): the URL only, everything else
    /// global.
    pub(super) fn plain(url: Setting) -> Spec {
        Spec {
            origin: url.source.clone(),
            url,
            interval: None,
            timeout: None,
            slow: None,
            failures: None,
            successes: None,
            recipients: Vec::new(),
            regions: None,
            remind: None,
            channels: Vec::new(),
        }
    }

    /// The `index`-th (0-based) `[[target]]` of `file`.
    pub(super) fn from_file(file: &ConfigFile, index: usize, t: &config_file::TargetEntry) -> Spec {
        let at = format!("target[{}]", index + 1);
        let key = |name: &str| file.key(&format!("{at}.{name}"));
        let text = |value: &Option<DurationText>, name: &str| {
            value.as_ref().map(|v| Setting { value: v.0.clone(), source: key(name) })
        };
        let count = |value: Option<Count>, name: &str| {
            value.map(|v| Setting { value: v.0.to_string(), source: key(name) })
        };
        let list = |values: &[String], name: &str| -> Vec<Setting> {
            let item = |(i, value): (usize, &String)| Setting {
                value: value.clone(),
                source: key(&format!("{name}[{}]", i + 1)),
            };
            values.iter().enumerate().map(item).collect()
        };
        Spec {
            origin: at.clone(),
            url: Setting { value: t.url.expose().to_owned(), source: key("url") },
            interval: text(&t.interval, "interval"),
            timeout: text(&t.timeout, "timeout"),
            slow: text(&t.slow, "slow"),
            failures: count(t.failures, "failures"),
            successes: count(t.successes, "successes"),
            recipients: list(&t.recipients, "recipients"),
            regions: t.regions.as_ref().map(|names| (key("regions"), list(names, "regions"))),
            remind: text(&t.remind, "remind"),
            channels: t.channels.clone(),
        }
    }
}

/// What is to be probed, as configured. The list replaces rather than merges, so what is
/// probed never depends on two sources at once: `--url`/`API_URL` replace the file's
/// `[[target]]`s (and stand on the global settings alone). The default URL is probed only
/// when nothing at all names a target: a config file without a `[[target]]` (empty, or
/// defaults only) and without `--url`/`API_URL` is an error, not a monitor of someone
/// else's API.
pub(super) fn specs(urls: Vec<Setting>, file: &ConfigFile) -> Result<Vec<Spec>, ConfigError> {
    let listed = &file.settings.targets;
    // Only a file given with --config/CONFIG has a path.
    let file_given = !file.path.is_empty();
    if !urls.is_empty() {
        Ok(urls.into_iter().map(Spec::plain).collect())
    } else if !listed.is_empty() {
        Ok(listed.iter().enumerate().map(|(i, t)| Spec::from_file(file, i, t)).collect())
    } else if file_given {
        Err(ConfigError(format!(
            "{}: no [[target]]: add one with the url of each health endpoint to probe, or give \
             --url/API_URL",
            file.path
        )))
    } else {
        Ok(vec![Spec::plain(Setting { value: DEFAULT_URL.to_string(), source: "--url".into() })])
    }
}

/// Validates every target. Their names must differ: the name is the target's key in the
/// store and in every email, so two targets with one name would share (and corrupt) one
/// history. The error names both places when the second one is elsewhere.
pub(super) fn targets(
    specs: Vec<Spec>,
    defaults: &Defaults,
    defined: &[Defined],
    regions_from_cli: bool,
) -> Result<Vec<Target>, ConfigError> {
    let mut targets: Vec<Target> = Vec::with_capacity(specs.len());
    let mut seen: HashMap<String, String> = HashMap::new();
    for spec in specs {
        let origin = spec.origin.clone();
        let url_source = spec.url.source.clone();
        let target = target(spec, defaults, defined, regions_from_cli)?;
        if let Some(first) = seen.get(&target.name) {
            return Err(ConfigError(if first == &origin {
                format!("{url_source}: {} is given twice", target.name)
            } else {
                format!("{url_source}: {} is already the url of {first}", target.name)
            }));
        }
        seen.insert(target.name.clone(), origin);
        targets.push(target);
    }
    Ok(targets)
}

/// Validates one target; `defined` are the regions it may name.
pub(super) fn target(
    spec: Spec,
    defaults: &Defaults,
    defined: &[Defined],
    regions_from_cli: bool,
) -> Result<Target, ConfigError> {
    let (url, name) = target_url(&spec.url)?;
    let (interval, interval_source) = match &spec.interval {
        Some(s) => (duration(Some(s), DEFAULT_INTERVAL, DAY)?, s.source.as_str()),
        None => (defaults.interval, defaults.interval_source.as_str()),
    };
    if interval < INTERVAL_FLOOR && !is_loopback(&url) {
        return Err(ConfigError(format!(
            "{interval_source}: {} is below the 1s floor, which applies because {name} is not a \
             loopback address (faster probing is only allowed against 127.0.0.1, ::1 or \
             localhost)",
            crate::duration::human(interval),
        )));
    }
    let timeout = timeout(spec.timeout.as_ref(), defaults.timeout)?;
    let slow = match spec.slow {
        Some(own) => slow_within(slow(Some(own))?.as_ref(), timeout, &name)?,
        None => slow_within(defaults.slow.as_ref(), timeout, &name)?,
    };
    let thresholds = Thresholds {
        failures: threshold(spec.failures.as_ref(), defaults.thresholds.failures)?,
        successes: threshold(spec.successes.as_ref(), defaults.thresholds.successes)?,
    };
    let recipients =
        spec.recipients.iter().map(|r| address(&r.source, &r.value)).collect::<Result<_, _>>()?;
    let regions = match &spec.regions {
        None if defined.is_empty() => vec![DIRECT.to_string()],
        None => defined.iter().map(|d| d.region.name.clone()).collect(),
        Some((key, names)) => named_regions(key, names, defined, regions_from_cli)?,
    };
    let remind = match &spec.remind {
        Some(s) => remind(Some(s))?,
        None => defaults.remind,
    };
    let channels = spec.channels.clone();
    Ok(Target {
        url,
        name,
        interval,
        timeout,
        slow,
        thresholds,
        recipients,
        regions,
        remind,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{config, error, with_file};

    #[test]
    fn fast_intervals_are_allowed_on_loopback_only() {
        for url in ["http://127.0.0.1:8000/health", "http://[::1]:80/h", "http://localhost/h"] {
            let c = config(&["--interval", "200ms", "--url", url], &[]).unwrap();
            assert_eq!(c.interval, Duration::from_millis(200), "{url}");
        }
        let e = error(&[
            "--interval",
            "200ms",
            "--url",
            "http://127.0.0.1/h",
            "--url",
            "http://10.0.0.1/h",
        ]);
        assert!(e.contains("10.0.0.1"), "names the remote target: {e}");
    }

    #[test]
    fn the_same_target_twice_is_refused() {
        let e = error(&["--url", "https://a.example.com/h", "--url", "https://a.example.com/h"]);
        assert!(e.starts_with("--url: https://a.example.com/h is given twice"), "{e}");
        let e = error(&[
            "--url",
            "https://u:one@a.example.com/h",
            "--url",
            "https://u:two@a.example.com/h",
        ]);
        assert!(e.contains("given twice") && !e.contains("one"), "same name in the store: {e}");
    }

    #[test]
    fn a_config_file_without_a_target_is_refused_unless_a_url_is_given() {
        let without = [
            "",
            "# nothing yet\n",
            "interval = \"10s\"\nsupport = [\"a@b.co\"]\n",
            "[[region]]\nname = \"eu\"\nproxy = \"http://p:3128\"\n",
        ];
        for text in without {
            let e = with_file(text, &[], &[]).expect_err(text).0;
            assert_eq!(
                e,
                "monitor.toml: no [[target]]: add one with the url of each health endpoint to \
                 probe, or give --url/API_URL",
                "{text:?}"
            );
            let c = with_file(text, &["--url", "https://a.example.com/h"], &[]).unwrap();
            assert_eq!(c.targets[0].name, "https://a.example.com/h", "{text:?}: defaults only");
            let c = with_file(text, &[], &[("API_URL", "https://b.example.com/h")]).unwrap();
            assert_eq!(c.targets[0].name, "https://b.example.com/h", "{text:?}");
        }
    }
}
