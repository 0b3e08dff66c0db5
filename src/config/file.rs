//! The `--config FILE` format: TOML, read into raw values with the key path of every value
//! known, so that the config step can say exactly which key of which file is wrong.
//!
//! This is the file's "low" step, the twin of [`crate::cli`]: it checks the file's *shape*
//! (TOML syntax, known keys, value types) and nothing else. Whether a URL, duration or email
//! address is usable is decided in [`crate::config`], with the same rules as the command line.
//!
//! Every error is one line, `<file>: <key path>: <reason>`, with 1-based indices into the
//! `[[region]]` and `[[target]]` lists (`monitor.toml: target[2].interval: …`); a syntax
//! error, which has no key yet, names its line and column instead. The `toml` crate reports
//! where a problem is as a byte span only, so the span is mapped back to its key path through
//! toml's spanned document tree ([`key_path`]).
//!
//! `examples/monitor.toml` documents every key; the schema below must stay in step with it
//! (the tests below load that file).
//!
//! Nothing here depends on the rest of the config step but its error type: this file only
//! produces raw values, which [`crate::config::from_args`] turns into a `Config`.

use std::ops::Range;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::config::error::ConfigError;
use crate::redact::SecretUrl;

/// A file given with `--config`, read and shape-checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigFile {
    /// The path as given: every message about the file starts with it.
    pub path: String,
    pub settings: FileSettings,
}

impl ConfigFile {
    /// How a key of this file is named in an error: `monitor.toml: target[2].interval`.
    pub fn key(&self, path: &str) -> String {
        format!("{}: {path}", self.path)
    }
}

/// The top level of the file: global settings, then the `[[region]]` and `[[target]]` lists.
/// Every value is raw (durations as text, thresholds as any integer); `Debug` hides passwords.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub interval: Option<DurationText>,
    pub timeout: Option<DurationText>,
    /// A healthy answer slower than this fails (`slow: 2.31 s > 2s`); unset: off.
    pub slow: Option<DurationText>,
    pub failures: Option<Count>,
    pub successes: Option<Count>,
    /// A duration or `"off"`.
    pub remind: Option<DurationText>,
    /// The most probes in flight at once.
    pub concurrency: Option<Count>,
    /// Cluster mode: the cluster's name, this instance's site, the lease, the site quorum.
    pub cluster: Option<String>,
    pub site: Option<String>,
    pub lease: Option<DurationText>,
    pub quorum: Option<Count>,
    pub support: Option<Vec<String>>,
    /// Channels (by name) that get every notification, like `support` for email.
    pub channels: Option<Vec<String>>,
    #[serde(default, deserialize_with = "optional_secret")]
    pub db: Option<SecretUrl>,
    #[serde(default, deserialize_with = "optional_secret")]
    pub smtp: Option<SecretUrl>,
    pub from: Option<String>,
    pub log_file: Option<String>,
    pub log_level: Option<String>,
    #[serde(default, rename = "region")]
    pub regions: Vec<RegionEntry>,
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetEntry>,
    #[serde(default, rename = "channel")]
    pub channel_list: Vec<ChannelEntry>,
    #[serde(default, rename = "maintenance")]
    pub maintenance_list: Vec<MaintenanceEntry>,
}

/// One `[[maintenance]]`: a planned window during which notifications are held back. Either
/// `weekly`, or `start` and `end`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceEntry {
    /// `Sun 02:00-04:00` (UTC).
    pub weekly: Option<String>,
    /// RFC 3339, UTC.
    pub start: Option<String>,
    pub end: Option<String>,
    /// Target URLs, as in `[[target]]`; left out: every target.
    pub targets: Option<Vec<String>>,
    pub reason: Option<String>,
}

/// One `[[channel]]`: a webhook, Slack or PagerDuty destination beside email.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelEntry {
    pub name: String,
    /// `webhook`, `slack` or `pagerduty`.
    pub kind: String,
    pub url: Option<SecretText>,
    /// A file holding the URL (a Docker secret), instead of `url`.
    pub url_file: Option<String>,
    /// PagerDuty's integration key.
    pub routing_key: Option<SecretText>,
    pub routing_key_file: Option<String>,
}

/// A secret that is not a URL with a password but a credential as a whole (a webhook URL, a
/// routing key): `Debug` shows none of it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// One `[[region]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionEntry {
    pub name: String,
    #[serde(default, deserialize_with = "optional_secret")]
    pub proxy: Option<SecretUrl>,
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Channels (by name) that get this region's notifications.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// One `[[target]]`. Keys left out take the global value.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetEntry {
    #[serde(deserialize_with = "secret")]
    pub url: SecretUrl,
    pub interval: Option<DurationText>,
    pub timeout: Option<DurationText>,
    pub slow: Option<DurationText>,
    pub failures: Option<Count>,
    pub successes: Option<Count>,
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Channels (by name) that get this target's notifications.
    #[serde(default)]
    pub channels: Vec<String>,
    /// `None`: every defined region (or `direct` when none is defined).
    pub regions: Option<Vec<String>>,
    pub remind: Option<DurationText>,
}

/// A duration as written (`"5s"`); the config step parses it. Its own type only so that a
/// number where a duration belongs is explained (`expected a duration in quotes, like "5s"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationText(pub String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = DurationText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration in quotes, like \"5s\" or \"1m30s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_owned()))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// An integer as written, of any sign or size; the config step checks the range, so that a
/// `0` or `-1` reads "expected a whole number from 1 to 1000, got 0" like on the command line.
/// The range is the key's (thresholds and `concurrency` differ), so a quoted number is told
/// only that it is one: the file's shape knows no ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count(pub i64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Number;
        impl Visitor<'_> for Number {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a whole number, without quotes")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                Ok(Count(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(Count(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }
        deserializer.deserialize_i64(Number)
    }
}

fn secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SecretUrl, D::Error> {
    String::deserialize(deserializer).map(SecretUrl::from)
}

fn optional_secret<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretUrl>, D::Error> {
    secret(deserializer).map(Some)
}

/// Reads the file at `path` through `read` (the config step hands in
/// [`crate::config::Surroundings::read_config_file`]) and checks its shape. An unreadable file
/// is an error naming the path (a path is not secret).
pub fn load(
    path: &str,
    read: impl FnOnce(&str) -> std::io::Result<String>,
) -> Result<ConfigFile, ConfigError> {
    let text = read(path)
        .map_err(|e| ConfigError(one_line(&format!("{path}: cannot read the config file: {e}"))))?;
    let settings = parse(path, &text)?;
    Ok(ConfigFile { path: path.to_owned(), settings })
}

/// Checks the shape of `text`, the contents of the file `path`.
pub fn parse(path: &str, text: &str) -> Result<FileSettings, ConfigError> {
    // Syntax first, on its own: its errors have a position but no key yet.
    let tree = DeTable::parse(text).map_err(|e| {
        let at = e.span().map_or_else(String::new, |span| position(text, span.start));
        ConfigError(one_line(&format!("{path}: {at}: {}", e.message())))
    })?;
    toml::from_str::<FileSettings>(text).map_err(|e| {
        let at = e.span().map(|span| {
            key_path(tree.get_ref(), &span).unwrap_or_else(|| position(text, span.start))
        });
        let why = explain(e.message());
        ConfigError(one_line(&match at {
            Some(at) => format!("{path}: {at}: {why}"),
            None => format!("{path}: {why}"),
        }))
    })
}

/// serde's wording, in the file's vocabulary: keys, not fields. The path already names the
/// key, so it is not repeated.
fn explain(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let expected = rest.split_once("`, ").map_or("", |(_, e)| e);
        return format!("unknown key; {expected}");
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        return format!("missing key {rest}");
    }
    if message.contains("expected a sequence") && message.starts_with("invalid type: map") {
        return format!(
            "{message}: write [[region]] or [[target]] with double brackets, once per entry"
        );
    }
    message.to_owned()
}

/// `line 3, column 7` of the byte offset `at` in `text`.
fn position(text: &str, at: usize) -> String {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

/// One step of a key path.
enum Step {
    Key(String),
    /// 0-based; shown 1-based.
    Index(usize),
}

/// The key path (`target[2].interval`) of the deepest key or value in `root` at the start of
/// `span`, if any. Tables of an array (`[[target]]`) are spanned by their header only, so
/// every child is searched, not only those inside a parent's span.
fn key_path(root: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    let steps = in_table(root, span.start)?;
    let mut path = String::new();
    for step in steps {
        match step {
            Step::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                let bare = !key.is_empty()
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    path.push_str(&key);
                } else {
                    path.push_str(&format!("{key:?}"));
                }
            }
            Step::Index(i) => path.push_str(&format!("[{}]", i + 1)),
        }
    }
    Some(path)
}

fn in_table(table: &DeTable<'_>, at: usize) -> Option<Vec<Step>> {
    for (key, value) in table.iter() {
        let name = || Step::Key(key.get_ref().to_string());
        if let Some(mut steps) = in_value(value, at) {
            steps.insert(0, name());
            return Some(steps);
        }
        if covers(&key.span(), at) || covers(&value.span(), at) {
            return Some(vec![name()]);
        }
    }
    None
}

fn in_value(value: &Spanned<DeValue<'_>>, at: usize) -> Option<Vec<Step>> {
    match value.get_ref() {
        DeValue::Table(table) => in_table(table, at),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let mut steps = match in_value(item, at) {
                Some(steps) => steps,
                None if covers(&item.span(), at) => Vec::new(),
                None => return None,
            };
            steps.insert(0, Step::Index(i));
            Some(steps)
        }),
        _ => None,
    }
}

fn covers(span: &Range<usize>, at: usize) -> bool {
    span.contains(&at) || (span.is_empty() && span.start == at)
}

/// `message` on one line: the caller prints it as one.
fn one_line(message: &str) -> String {
    message.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse_from, Command, Parsed};
    use crate::config::testing::{file_error, secs, thresholds, with_file, WithFile};
    use crate::config::{from_args, Config, Delivery, Region, SmtpSettings, Target};
    use crate::notify::channel::{Channel, ChannelKind, PAGERDUTY_EVENTS_URL};
    use std::path::PathBuf;

    fn channel(name: &str, kind: ChannelKind, url: &str, key: Option<&str>) -> Channel {
        Channel { name: name.into(), kind, url: url.into(), routing_key: key.map(String::from) }
    }

    fn error(text: &str) -> String {
        parse("monitor.toml", text).expect_err("must be rejected").0
    }

    #[test]
    fn an_empty_file_is_all_defaults() {
        assert_eq!(parse("m.toml", "").unwrap(), FileSettings::default());
        assert_eq!(parse("m.toml", "# nothing\n\n").unwrap(), FileSettings::default());
    }

    #[test]
    fn every_key_is_read() {
        let f = parse(
            "m.toml",
            r#"
            interval = "10s"
            timeout = "3s"
            failures = 3
            successes = 4
            remind = "off"
            support = ["a@b.co"]
            db = "mysql://u:s3cret@db/m"
            smtp = "smtp://mail:25"
            from = "x@y.z"
            log_file = "/tmp/log"
            log_level = "debug"

            [[region]]
            name = "eu"
            proxy = "http://p:3128"
            recipients = ["eu@b.co"]

            [[target]]
            url = "http://a/health"
            interval = "1m"
            timeout = "2s"
            failures = 5
            successes = 6
            recipients = ["t@b.co"]
            regions = ["eu", "direct"]
            remind = "1h"
            "#,
        )
        .unwrap();
        assert_eq!(f.interval, Some(DurationText("10s".into())));
        assert_eq!((f.failures, f.successes), (Some(Count(3)), Some(Count(4))));
        assert_eq!(f.db.as_deref(), Some("mysql://u:s3cret@db/m"));
        assert!(!format!("{f:?}").contains("s3cret"), "Debug hides passwords");
        assert_eq!(f.regions[0].proxy.as_deref(), Some("http://p:3128"));
        let t = &f.targets[0];
        assert_eq!(t.regions.as_deref(), Some(&["eu".to_string(), "direct".to_string()][..]));
        assert_eq!(
            (t.failures, t.remind.clone()),
            (Some(Count(5)), Some(DurationText("1h".into())))
        );
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let cases = [
            ("intervall = \"5s\"\n", "monitor.toml: intervall: unknown key; expected one of"),
            (
                "[[region]]\nname = \"eu\"\n[[region]]\nnaem = \"us\"\n",
                "monitor.toml: region[2].naem: unknown key; expected one of `name`, `proxy`",
            ),
            (
                "[[target]]\nurl = \"http://a/h\"\nintreval = \"5s\"\n",
                "monitor.toml: target[1].intreval: unknown key",
            ),
            (
                "target = [{ url = \"http://a/h\" }, { url = \"http://b/h\", x = 1 }]\n",
                "monitor.toml: target[2].x: unknown key",
            ),
            ("[smtp]\nurl = \"smtp://h:25\"\n", "monitor.toml: smtp: invalid type: map"),
        ];
        for (text, expected) in cases {
            let e = error(text);
            assert!(e.starts_with(expected), "{text:?}\n→ {e}\nexpected {expected}");
        }
    }

    #[test]
    fn wrong_types_are_named_with_their_path_and_what_is_expected() {
        let cases = [
            ("interval = 5\n", "monitor.toml: interval: invalid type: integer `5`, expected a duration in quotes"),
            ("failures = \"3\"\n", "monitor.toml: failures: invalid type: string \"3\", expected a whole number, without quotes"),
            ("support = \"a@b.co\"\n", "monitor.toml: support: invalid type: string"),
            ("support = [\"a@b.co\",\n  3]\n", "monitor.toml: support[2]: invalid type: integer `3`, expected a string"),
            (
                "[[target]]\nurl = \"http://a/h\"\n[[target]]\nurl = \"http://b/h\"\ntimeout = 7\n",
                "monitor.toml: target[2].timeout: invalid type: integer `7`",
            ),
            ("[[target]]\nurl = \"http://a/h\"\nregions = \"eu\"\n", "monitor.toml: target[1].regions: invalid type"),
            ("[[target]]\ninterval = \"5s\"\n", "monitor.toml: target[1]: missing key `url`"),
            ("[[region]]\nproxy = \"http://p:1\"\n", "monitor.toml: region[1]: missing key `name`"),
            ("[target]\nurl = \"http://a/h\"\n", "monitor.toml: target: invalid type: map, expected a sequence: write [[region]] or [[target]]"),
        ];
        for (text, expected) in cases {
            let e = error(text);
            assert!(e.starts_with(expected), "{text:?}\n→ {e}\nexpected {expected}");
        }
    }

    #[test]
    fn syntax_errors_name_line_and_column_on_one_line() {
        let e = error("interval = \"5s\"\nfailures = \n");
        assert!(e.starts_with("monitor.toml: line 2, column 12: "), "{e}");
        let e = error("a = 1\na = 2\n");
        assert!(e.starts_with("monitor.toml: line 2, column 1: duplicate key"), "{e}");
        let e = error("[[target]\nurl = \"x\"\n");
        assert!(e.starts_with("monitor.toml: line 1, column "), "{e}");
        for text in ["x = \"\n", "[[", "= 1", "a = [1,,]"] {
            let e = error(text);
            assert!(!e.contains('\n') && e.starts_with("monitor.toml: line 1, column "), "{e}");
        }
    }

    #[test]
    fn an_unreadable_file_names_its_path() {
        let e = load("/etc/nope.toml", |_| {
            Err(std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory"))
        })
        .unwrap_err()
        .0;
        assert_eq!(e, "/etc/nope.toml: cannot read the config file: No such file or directory");
    }

    #[test]
    fn secrets_in_values_are_shown_redacted() {
        let e = error("failures = \"mysql://u:s3cret@db/m\"\n");
        assert!(e.contains("failures"), "{e}");
        let shown = ConfigError(e).to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    // ---- the file as the config step reads it --------------------------------------------

    const EXAMPLE: &str = include_str!("../../examples/monitor.toml");
    /// The keys of cluster mode, which the main example cannot set (it uses SQLite).
    const CLUSTER_EXAMPLE: &str = include_str!("../../examples/cluster.toml");

    #[test]
    fn the_cluster_example_is_valid() {
        let c = with_file(CLUSTER_EXAMPLE, &["check"], &[]).expect("the cluster example is valid");
        let cluster = c.cluster.expect("cluster mode");
        assert_eq!((cluster.name.as_str(), cluster.site.as_str()), ("prod", "eu"));
        assert_eq!((cluster.lease.as_secs(), cluster.quorum.map(|q| q.get())), (15, Some(2)));
    }

    #[test]
    fn the_example_file_round_trips() {
        let c = with_file(EXAMPLE, &["check"], &[]).expect("the example is valid");
        let fitpay = "https://api.qa.fitpay.ninja/health";
        let payments = "https://payments.example.com/health";
        let expected = Config {
            command: Command::Check,
            targets: vec![
                Target {
                    url: fitpay.into(),
                    name: fitpay.into(),
                    interval: secs(5),
                    timeout: secs(5),
                    slow: None,
                    thresholds: thresholds(2, 2),
                    recipients: vec![],
                    regions: vec!["direct".into(), "eu".into(), "us".into()],
                    remind: Some(secs(30 * 60)),
                    channels: vec![],
                },
                Target {
                    url: payments.into(),
                    name: payments.into(),
                    interval: secs(10),
                    timeout: secs(3),
                    slow: Some(secs(2)),
                    thresholds: thresholds(3, 2),
                    recipients: vec!["payments-team@example.com".into()],
                    regions: vec!["eu".into()],
                    remind: Some(secs(3600)),
                    channels: vec!["payments-pagerduty".into()],
                },
            ],
            regions: vec![
                Region { name: "direct".into(), proxy: None, recipients: vec![], channels: vec![] },
                Region {
                    name: "eu".into(),
                    proxy: Some("http://proxy-eu.example.com:3128".into()),
                    recipients: vec!["eu-oncall@example.com".into()],
                    channels: vec![],
                },
                Region {
                    name: "us".into(),
                    proxy: Some("http://monitor:CHANGE_ME@proxy-us.example.com:3128".into()),
                    recipients: vec![],
                    channels: vec![],
                },
            ],
            interval: secs(5),
            timeout: secs(5),
            slow: None,
            thresholds: thresholds(2, 2),
            db_url: "sqlite://api-monitor.db".into(),
            delivery: Delivery::Smtp(SmtpSettings {
                url: "smtp://mailer@mail.example.com:587?tls=required".into(),
                from: "api-monitor@example.com".into(),
                to: vec!["oncall@example.com".into()],
            }),
            log_level: log::LevelFilter::Info,
            log_file: Some(PathBuf::from("api-monitor.log")),
            listen: None,
            concurrency: Some(64),
            report: None,
            cluster: None,
            channels: vec![
                channel(
                    "ops-slack",
                    ChannelKind::Slack,
                    "https://hooks.slack.com/services/T000/B000/CHANGE_ME",
                    None,
                ),
                channel(
                    "payments-pagerduty",
                    ChannelKind::PagerDuty,
                    PAGERDUTY_EVENTS_URL,
                    Some("CHANGE_ME"),
                ),
                channel(
                    "ops-webhook",
                    ChannelKind::Webhook,
                    "https://hooks.example.com/api-monitor/fr0m-file",
                    None,
                ),
                channel(
                    "platform-pagerduty",
                    ChannelKind::PagerDuty,
                    PAGERDUTY_EVENTS_URL,
                    Some("fr0m-file"),
                ),
            ],
            global_channels: vec!["ops-slack".into()],
            maintenance: vec![
                crate::maintenance::Window {
                    targets: vec!["https://payments.example.com/health".into()],
                    when: crate::maintenance::parse_weekly("Sun 02:00-04:00").unwrap(),
                    reason: "weekly payments deploy".into(),
                },
                crate::maintenance::Window {
                    targets: vec![],
                    when: crate::maintenance::When::Once {
                        start: crate::maintenance::parse_instant("2026-12-24T22:00:00Z").unwrap(),
                        end: crate::maintenance::parse_instant("2026-12-25T02:00:00Z").unwrap(),
                    },
                    reason: "datacenter move".into(),
                },
            ],
        };
        assert_eq!(c, expected);
        assert!(!format!("{c:?}").contains("CHANGE_ME"), "the proxy password is masked");
    }

    /// The keys a section accepts, as its "unknown key" error lists them.
    fn accepted_keys(probe: &'static str) -> Vec<String> {
        let e = file_error(probe);
        let list = e.split_once("expected one of ").expect("lists the keys").1;
        list.split(", ").map(|k| k.trim_matches('`').to_string()).collect()
    }

    #[test]
    fn the_example_documents_every_key() {
        for (section, probe) in [
            ("top level", "zzz = 1\n"),
            ("[[region]]", "[[region]]\nname = \"a\"\nzzz = 1\n"),
            ("[[target]]", "[[target]]\nurl = \"http://a/h\"\nzzz = 1\n"),
            ("[[channel]]", "[[channel]]\nname = \"a\"\nkind = \"slack\"\nzzz = 1\n"),
            ("[[maintenance]]", "[[maintenance]]\nzzz = 1\n"),
        ] {
            let keys = accepted_keys(probe);
            assert!(keys.len() > 2, "{section}: {keys:?}");
            for key in keys {
                let set = [EXAMPLE, CLUSTER_EXAMPLE]
                    .iter()
                    .any(|e| e.lines().any(|l| l.starts_with(&format!("{key} = "))));
                let table = EXAMPLE.contains(&format!("[[{key}]]"));
                assert!(set || table, "examples/monitor.toml must show {section} key {key}");
            }
        }
    }

    #[test]
    fn each_kind_of_bad_file_names_file_key_and_reason() {
        let cases: &[(&'static str, &str)] = &[
            ("naem = \"x\"\n", "monitor.toml: naem: unknown key; expected one of"),
            (
                "[[region]]\nname = \"eu\"\nproxy = \"http://p:3128\"\nrecipient = [\"a@b.co\"]\n",
                "monitor.toml: region[1].recipient: unknown key; expected one of",
            ),
            (
                "[[target]]\nurl = \"https://a.example.com/h\"\n[[target]]\nurl = \"https://b.example.com/h\"\nintreval = \"5s\"\n",
                "monitor.toml: target[2].intreval: unknown key",
            ),
            ("failures = \"2\"\n", "monitor.toml: failures: invalid type: string \"2\", expected a whole number"),
            ("timeout = 5\n", "monitor.toml: timeout: invalid type: integer `5`, expected a duration in quotes"),
            (
                "[[target]]\nurl = \"https://a.example.com/h\"\n[[target]]\nurl = \"https://b.example.com/h\"\ninterval = \"5 parsecs\"\n",
                "monitor.toml: target[2].interval: invalid duration \"5 parsecs\": expected a duration like",
            ),
            ("remind = \"soon\"\n", "monitor.toml: remind: invalid duration \"soon\""),
            ("[[target]]\nurl = \"ftp://a.example.com/h\"\n", "monitor.toml: target[1].url: invalid URL ftp://a.example.com/h"),
            ("[[target]]\nurl = \"https://a/h\"\nregions = [\"mars\"]\n", "monitor.toml: target[1].regions[1]: region \"mars\" is not defined"),
            ("[[target]]\nurl = \"https://a/h\"\nregions = []\n", "monitor.toml: target[1].regions: the list is empty"),
            (
                "[[region]]\nname = \"eu\"\nproxy = \"http://p:3128\"\n[[region]]\nname = \"eu\"\n",
                "monitor.toml: region[2].name: region \"eu\" is already defined by region[1]",
            ),
            ("[[region]]\nname = \"eu west\"\n", "monitor.toml: region[1].name: invalid region name \"eu west\""),
            ("[[region]]\nname = \"direct\"\nproxy = \"http://p:3128\"\n", "monitor.toml: region[1].proxy: the region \"direct\" probes without a proxy"),
            ("failures = 0\n", "monitor.toml: failures: expected a whole number from 1 to 1000, got 0"),
            ("successes = -3\n", "monitor.toml: successes: expected a whole number from 1 to 1000, got \"-3\""),
            ("[[target]]\nurl = \"https://a/h\"\nsuccesses = 0\n", "monitor.toml: target[1].successes: expected a whole number from 1 to 1000, got 0"),
            (
                "[[target]]\nurl = \"http://127.0.0.1:8080/h\"\ninterval = \"200ms\"\n[[target]]\nurl = \"https://api.example.com/h\"\ninterval = \"200ms\"\n",
                "monitor.toml: target[2].interval: 200ms is below the 1s floor, which applies because https://api.example.com/h is not a loopback address",
            ),
            ("interval = \"500ms\"\n[[target]]\nurl = \"https://a/h\"\n", "monitor.toml: interval: 500ms is below the 1s floor"),
            ("[[region]]\nname = \"eu\"\nproxy = \"https://p:3128\"\n", "monitor.toml: region[1].proxy: invalid proxy URL https://p:3128: unsupported scheme \"https\""),
            ("[[region]]\nname = \"eu\"\nproxy = \"http://p\"\n", "monitor.toml: region[1].proxy: invalid proxy URL http://p: no port"),
            ("[[region]]\nname = \"eu\"\nrecipients = [\"a@b.co\", \"nobody\"]\n", "monitor.toml: region[1].recipients[2]: invalid email address \"nobody\""),
            ("[[target]]\nurl = \"https://a/h\"\nrecipients = [\"x\"]\n", "monitor.toml: target[1].recipients[1]: invalid email address \"x\""),
            ("support = [\"a@b.co\", \"@\"]\n[[target]]\nurl = \"https://a/h\"\n", "monitor.toml: support[2]: invalid email address \"@\""),
            ("from = \"nobody\"\n[[target]]\nurl = \"https://a/h\"\n", "monitor.toml: from: invalid email address \"nobody\""),
            ("db = \"postgres://h/db\"\n[[target]]\nurl = \"https://a/h\"\n", "monitor.toml: db: unsupported database URL postgres://h/db"),
            ("smtp = \"http://mail:25\"\n[[target]]\nurl = \"https://a/h\"\n", "monitor.toml: smtp: invalid SMTP URL http://mail:25"),
            ("log_level = \"loud\"\n[[target]]\nurl = \"https://a/h\"\n", "monitor.toml: log_level: invalid level \"loud\""),
            ("log_file = \"\"\n[[target]]\nurl = \"https://a/h\"\n", "monitor.toml: log_file: empty"),
            (
                "[[target]]\nurl = \"https://a/h\"\n[[target]]\nurl = \"https://a/h\"\n",
                "monitor.toml: target[2].url: https://a/h is already the url of target[1]",
            ),
            ("interval = \"5s\"\nfailures = [\n", "monitor.toml: line 2, column 13: unclosed array"),
            ("[[target]\n", "monitor.toml: line 1, column "),
        ];
        for (text, expected) in cases {
            let e = file_error(text);
            assert!(e.starts_with(expected), "{text:?}\n  → {e}\n  expected {expected}…");
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
    }

    #[test]
    fn an_unreadable_config_file_names_its_path() {
        let env = |_: &str| None;
        let a = match parse_from(["--config", "/etc/nope.toml"], &env).unwrap() {
            Parsed::Go(a) => *a,
            other => panic!("{other:?}"),
        };
        let e = from_args(a, &WithFile(None)).unwrap_err().to_string();
        assert_eq!(e, "/etc/nope.toml: cannot read the config file: No such file or directory");
    }

    #[test]
    fn secrets_in_the_file_are_masked_in_debug_and_errors() {
        let c = with_file(
            "db = \"mysql://mon:d4tabase@db/monitor\"\nsmtp = \"smtp://m:sm7p@mail:25\"\n\
             support = [\"a@b.co\"]\n[[region]]\nname = \"eu\"\nproxy = \"http://u:pr0xy@p:3128\"\n\
             [[target]]\nurl = \"https://t:t4rget@api.example.com/h\"\n",
            &[],
            &[],
        )
        .unwrap();
        let shown = format!("{c:?} {c:#?}");
        for secret in ["d4tabase", "sm7p", "pr0xy", "t4rget"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert_eq!(c.regions[0].proxy.as_deref(), Some("http://u:pr0xy@p:3128"), "usable");
        for text in [
            "[[region]]\nname = \"eu\"\nproxy = \"ftp://u:pr0xy@p:3128\"\n",
            "[[region]]\nname = \"eu\"\nproxy = \"http://u:pr0xy@p\"\n",
            "[[region]]\nname = \"eu\"\nproxy = \"http://u:12/pr0xy@p:3128\"\n",
            "[[region]]\nname = \"direct\"\nproxy = \"http://u:pr0xy@p:3128\"\n",
            "db = \"mysql://u:pr0xy@db\"\n[[target]]\nurl = \"https://a/h\"\n",
            "smtp = \"smtp://u:pr0xy@mail:25?tls=maybe\"\n[[target]]\nurl = \"https://a/h\"\n",
            "failures = \"mysql://u:pr0xy@db/m\"\n",
        ] {
            let e = file_error(text);
            assert!(e.starts_with("monitor.toml: ") && !e.contains("pr0xy"), "{text:?} → {e}");
            assert!(!e.contains("no [[target]]"), "refused for its URL: {e}");
        }
    }
}
