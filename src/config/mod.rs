//! The "high" configuration step: raw [`Args`] and the `--config` file become a validated
//! [`Config`].
//!
//! After this step nothing downstream re-validates: a `Config` always has at least one http(s)
//! target, each probed from at least one defined region, non-zero thresholds, intervals that
//! respect the 1 s floor for remote hosts, proxies the HTTP client can use, and known
//! database/SMTP URL schemes. Every error is one line naming the option (or, for the file,
//! `<file>: <key path>`) and what is accepted, and callers exit with code 2 on it. The only
//! outside world this step sees is handed in (the host name, a reader for the config file and
//! the `*_FILE` secrets), so it stays testable.
//!
//! The step is cut so that the dependencies between its parts go one way, from raw text to
//! typed values; each part can be read, and tested, without the ones above it:
//!
//! - [`file`]: the `--config` TOML file's shape, as raw values with their key paths;
//! - `sources`: where each setting comes from (flag, variable, `*_FILE`, file, default), with
//!   the name an error uses for it, and the precedence between them;
//! - `urls`, `validation`: single values made typed (URLs; durations, thresholds, addresses
//!   and their caps), and the checks across values (delivery);
//! - `regions`, `targets`: the two lists, validated against each other;
//! - this file: the [`Config`] types, and [`from_args`], which takes each setting from its
//!   source and hands it to its check.
//!
//! `error` holds [`ConfigError`], the one thing every part shares, so that none of them needs
//! this file but for the `Config` types it builds. Every public item of the parts is
//! re-exported here: outside this module, `crate::config::X` is the only path.

mod channels;
pub mod cluster;
mod error;
pub mod file;
mod maintenance;
mod regions;
mod sources;
mod targets;
mod urls;
mod validation;

#[cfg(test)]
mod testing;

pub use cluster::ClusterSettings;
pub use error::ConfigError;
pub use regions::MAX_REGION_NAME;
pub use sources::{
    Surroundings, DEFAULT_DB, DEFAULT_INTERVAL, DEFAULT_REPORT_SPAN, DEFAULT_THRESHOLDS,
    DEFAULT_TIMEOUT, DEFAULT_URL,
};
pub use urls::{is_loopback, MAX_URL_LEN};
pub use validation::{
    INTERVAL_FLOOR, MAX_CONCURRENCY, MAX_DURATION, MAX_REPORT_SPAN, MAX_THRESHOLD, MIN_TIMEOUT,
};

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Args, Command};
use crate::config::file::{self as config_file, ConfigFile, Count, DurationText};
use crate::detector::Thresholds;
use crate::notify::channel::Channel;
use crate::redact::SecretUrl;

use regions::{cli_regions, file_regions, used_regions};
use sources::{log_level, pick, read_file, secret, Setting};
use targets::{specs, targets, Defaults};
use urls::{database_url, smtp_url};
use validation::{
    address, concurrency, default_sender, delivery, duration, listen, mailbox, remind, slow,
    threshold, timeout, DAY, TEN_YEARS,
};

/// One monitored health endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, credentials included, used for probing only. Never contains
    /// whitespace or control characters (they could split the HTTP request or a log line).
    pub url: SecretUrl,
    /// The URL with any password masked: what logs, emails and the `state.target` column show.
    /// Unique among the targets.
    pub name: String,
    /// Time between probe starts (the target's `interval`, else the global one).
    pub interval: Duration,
    /// The deadline of each probe, whole request (at least [`MIN_TIMEOUT`]).
    pub timeout: Duration,
    /// A healthy answer that took longer than this fails as slow (the target's `slow`, else
    /// the global one); always shorter than [`Target::timeout`]. `None`: off.
    pub slow: Option<Duration>,
    pub thresholds: Thresholds,
    /// Who gets this target's emails besides the global `--support` recipients.
    pub recipients: Vec<String>,
    /// Names of the [`Region`]s it is probed from, never empty (`direct` by default), each
    /// once; each name is defined in [`Config::regions`].
    pub regions: Vec<String>,
    /// While an outage lasts, a reminder email every this long; `None`: no reminders.
    pub remind: Option<Duration>,
    /// Names of the channels that get this target's notifications besides the global ones.
    pub channels: Vec<String>,
}

/// The name of the region that probes without a proxy, when no region is configured.
pub const DIRECT: &str = "direct";

/// Where probes come from: directly, or through an HTTP proxy in some geography.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// 1 to [`MAX_REGION_NAME`] ASCII letters, digits, `-` or `_`.
    pub name: String,
    /// `http://[user:pass@]host:port`, always with an explicit port and nothing after it;
    /// credentials as written (percent-encoded). `None` probes directly (always so for
    /// [`DIRECT`]). Hand the HTTP client [`Region::proxy_address`], not this.
    pub proxy: Option<SecretUrl>,
    /// Who gets this region's emails besides the global and the target's recipients.
    pub recipients: Vec<String>,
    /// Names of the channels that get this region's notifications.
    pub channels: Vec<String>,
}

impl Region {
    /// The proxy URL to hand the HTTP client: [`Region::proxy`] as validated, credentials still
    /// percent-encoded, because `ureq` decodes them exactly once (so `p%40ss` is sent as
    /// `p@ss`). For connecting only, never for printing. `None` probes directly.
    pub fn proxy_address(&self) -> Option<String> {
        self.proxy.as_ref().map(|p| p.expose().to_owned())
    }
}

/// Where notifications go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Mail through an SMTP server.
    Smtp(SmtpSettings),
    /// Nowhere but the log, because `why`; the monitor warns about it loudly at start.
    LogOnly { why: String },
}

/// A complete SMTP set-up: server URL (password included), sender and recipients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpSettings {
    /// `smtp://` or `smtps://` URL in the form `lettre` understands; may hold a password.
    pub url: SecretUrl,
    pub from: String,
    /// The global recipients (`--support`): every email goes to them. May be empty when some
    /// target or region has recipients of its own.
    pub to: Vec<String>,
}

/// Everything the monitor needs, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub command: Command,
    pub targets: Vec<Target>,
    /// Every region a target refers to, each once, and no other; at least one. In the order
    /// they were defined, with an implicit [`DIRECT`] first.
    pub regions: Vec<Region>,
    /// The global default interval; targets carry their own in [`Target::interval`].
    pub interval: Duration,
    /// The global default timeout (at least [`MIN_TIMEOUT`]); targets carry their own in
    /// [`Target::timeout`].
    pub timeout: Duration,
    /// The global default of [`Target::slow`]; `None`: off.
    pub slow: Option<Duration>,
    /// The global default thresholds.
    pub thresholds: Thresholds,
    /// `sqlite://…` or `mysql://…`; may hold a password, which `{}`/`{:?}` never show.
    pub db_url: SecretUrl,
    pub delivery: Delivery,
    pub log_level: log::LevelFilter,
    pub log_file: Option<PathBuf>,
    /// Where to serve `/metrics`, `/healthz` and the status page; `None`: not served.
    pub listen: Option<std::net::SocketAddr>,
    /// The most probes in flight at once (1 to [`MAX_CONCURRENCY`]); `None`: the runtime
    /// derives it from the targets.
    pub concurrency: Option<usize>,
    /// What `api-monitor report` shows (set for that command only).
    pub report: Option<ReportOptions>,
    /// Cluster mode (`--cluster`); `None`: a single instance.
    pub cluster: Option<ClusterSettings>,
    /// Every `[[channel]]` of the config file (webhook, Slack, PagerDuty).
    pub channels: Vec<Channel>,
    /// Names of the channels that get every notification (the file's `channels`).
    pub global_channels: Vec<String>,
    /// The file's `[[maintenance]]` windows.
    pub maintenance: Vec<crate::maintenance::Window>,
}

/// `api-monitor report [--since DUR] [--target URL] [--json]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportOptions {
    /// How far back the report looks (default 7 days).
    pub since: Duration,
    /// Only this target (its URL, password masked or not).
    pub target: Option<String>,
    pub json: bool,
}

/// Validates `args`, and the config file it names, into a [`Config`].
pub fn from_args(args: Args, world: &dyn Surroundings) -> Result<Config, ConfigError> {
    let file = match args.config.as_ref().map(|given| given.value.as_str()) {
        Some(path) => config_file::load(path, |p| world.read_config_file(p))?,
        None => ConfigFile::default(),
    };
    let f = &file.settings;
    let channels = channels::defined(&file, world)?;
    let global_channels = channels::routed(&file, &channels)?;
    let text = |value: &Option<DurationText>, key: &str| {
        value.as_ref().map(|v| Setting { value: v.0.clone(), source: file.key(key) })
    };
    let count = |value: Option<Count>, key: &str| {
        value.map(|v| Setting { value: v.0.to_string(), source: file.key(key) })
    };

    let interval = pick(args.interval, text(&f.interval, "interval"));
    let defaults = Defaults {
        interval: duration(interval.as_ref(), DEFAULT_INTERVAL, DAY)?,
        interval_source: interval.map_or_else(|| "--interval".to_owned(), |s| s.source),
        timeout: timeout(
            pick(args.timeout, text(&f.timeout, "timeout")).as_ref(),
            DEFAULT_TIMEOUT,
        )?,
        slow: slow(pick(args.slow, text(&f.slow, "slow")))?,
        thresholds: Thresholds {
            failures: threshold(
                pick(args.failures, count(f.failures, "failures")).as_ref(),
                DEFAULT_THRESHOLDS.failures,
            )?,
            successes: threshold(
                pick(args.successes, count(f.successes, "successes")).as_ref(),
                DEFAULT_THRESHOLDS.successes,
            )?,
        },
        remind: remind(pick(args.remind, text(&f.remind, "remind")).as_ref())?,
    };

    let regions_from_cli = !args.regions.is_empty();
    let defined = if regions_from_cli {
        cli_regions(&args.regions.into_iter().map(Setting::from).collect::<Vec<_>>())?
    } else {
        file_regions(&file)?
    };

    let urls = args.urls.into_iter().map(Setting::from).collect();
    let targets = targets(specs(urls, &file)?, &defaults, &defined, regions_from_cli)?;
    let regions = used_regions(defined, &targets);
    let mut targets = targets;

    let db = match (args.db, args.db_file, &f.db) {
        (Some(url), _, _) => Setting::from(url),
        (None, Some(path), _) => read_file(world, "DATABASE_URL_FILE", &path)?,
        (None, None, Some(url)) => Setting { value: url.expose().into(), source: file.key("db") },
        (None, None, None) => Setting { value: DEFAULT_DB.to_string(), source: "--db".into() },
    };
    let db_password = secret(
        world,
        (args.db_password, "DATABASE_PASSWORD"),
        (args.db_password_file, "DATABASE_PASSWORD_FILE"),
    )?;
    let db_url = database_url(&db, db_password.as_ref())?;

    let support: Vec<Setting> = if args.support.is_empty() {
        let listed = f.support.iter().flatten().enumerate();
        listed
            .map(|(i, s)| Setting {
                value: s.clone(),
                source: file.key(&format!("support[{}]", i + 1)),
            })
            .collect()
    } else {
        args.support.into_iter().map(Setting::from).collect()
    };
    let support: Vec<String> =
        support.iter().map(|s| address(&s.source, &s.value)).collect::<Result<_, _>>()?;
    let from = f.from.clone().map(|value| Setting { value, source: file.key("from") });
    let from = match pick(args.from, from) {
        Some(from) => mailbox(&from.source, &from.value)?,
        None => default_sender(&world.host_name()),
    };
    let smtp = match (args.smtp, args.smtp_file, &f.smtp) {
        (Some(url), _, _) => Some(Setting::from(url)),
        (None, Some(path), _) => Some(read_file(world, "SMTP_URL_FILE", &path)?),
        (None, None, Some(url)) => {
            Some(Setting { value: url.expose().into(), source: file.key("smtp") })
        }
        (None, None, None) => None,
    };
    let password = secret(
        world,
        (args.smtp_password, "SMTP_PASSWORD"),
        (args.smtp_password_file, "SMTP_PASSWORD_FILE"),
    )?;
    let smtp = smtp.map(|url| smtp_url(&url, password.as_ref())).transpose()?;
    let delivery = delivery(smtp, from, support, &targets, &regions);

    let log_level = log_level(args.verbosity, &file)?;
    let log_file = f.log_file.clone().map(|value| Setting { value, source: file.key("log_file") });
    let log_file = match pick(args.log_file, log_file) {
        Some(path) if path.value.trim().is_empty() => {
            return Err(ConfigError(format!(
                "{}: empty; leave it out to log to stderr only",
                path.source
            )))
        }
        path => path.map(|p| p.value),
    };

    let listen = listen(args.listen.map(Setting::from).as_ref())?;
    let named = |value: &Option<String>, key: &str| {
        value.clone().map(|value| Setting { value, source: file.key(key) })
    };
    let cluster = cluster::settings(
        cluster::Raw {
            cluster: pick(args.cluster, named(&f.cluster, "cluster")),
            site: pick(args.site, named(&f.site, "site")),
            lease: pick(args.lease, text(&f.lease, "lease")),
            quorum: pick(args.quorum, count(f.quorum, "quorum")),
        },
        (db_url.expose(), &db.source),
        &regions,
    )?;
    // In a cluster the site is the one place this member probes from: it is the region of
    // every target, so rows, emails and the status page name it as they name a region.
    let regions = match &cluster {
        Some(c) => {
            for target in &mut targets {
                target.regions = vec![c.site.clone()];
            }
            vec![c.region.clone()]
        }
        None => regions,
    };
    let maintenance = maintenance::windows(&file, &targets)?;
    let concurrency =
        concurrency(pick(args.concurrency, count(f.concurrency, "concurrency")).as_ref())?;
    let report = match args.command {
        Command::Report => Some(ReportOptions {
            since: duration(
                args.since.map(|value| Setting { value, source: "--since".into() }).as_ref(),
                DEFAULT_REPORT_SPAN,
                TEN_YEARS,
            )?,
            target: args.target,
            json: args.json,
        }),
        _ => None,
    };

    Ok(Config {
        command: args.command,
        targets,
        regions,
        interval: defaults.interval,
        timeout: defaults.timeout,
        slow: defaults.slow.map(|(limit, _)| limit),
        thresholds: defaults.thresholds,
        db_url,
        delivery,
        log_level,
        log_file: log_file.map(PathBuf::from),
        listen,
        concurrency,
        report,
        cluster,
        channels,
        global_channels,
        maintenance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{config, error};

    #[test]
    fn debug_of_a_config_never_shows_a_password() {
        let c = config(
            &[
                "--url",
                "https://probe:t4rget@api.example.com/health",
                "--db",
                "mysql://monitor@db/monitor",
                "--smtp",
                "smtp://mailer@mail.example.com:587?tls=required",
                "--support",
                "a@b.co",
            ],
            &[("DATABASE_PASSWORD", "d4tabase"), ("SMTP_PASSWORD_FILE", "/run/secrets/smtp")],
        )
        .unwrap();
        let shown = format!("{c:?} {c:#?}");
        for secret in ["t4rget", "d4tabase", "fr0m-file"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("mysql://monitor:***@db/monitor"), "{shown}");
        assert_eq!(
            c.targets[0].url, "https://probe:t4rget@api.example.com/health",
            "probed as given"
        );
        assert_eq!(c.targets[0].name, "https://probe:***@api.example.com/health", "shown masked");
    }

    #[test]
    fn every_bad_input_names_its_option() {
        let cases: &[(&[&str], &str)] = &[
            (&["--url", "not a url"], "--url"),
            (&["--url", "ftp://example.com/health"], "--url"),
            (&["--url", &format!("http://example.com/{}", "x".repeat(MAX_URL_LEN))], "--url"),
            (&["--support", "not-an-email"], "--support"),
            (&["--from", "nobody"], "--from"),
            (&["--failures", "0"], "--failures"),
            (&["--successes", "0"], "--successes"),
            (&["--failures", "two"], "--failures"),
            (&["--failures", "5000"], "--failures"),
            (&["--interval", "5 parsecs"], "--interval"),
            (&["--interval", "0s"], "--interval"),
            (&["--timeout", "soon"], "--timeout"),
            (&["--slow", "soon"], "--slow"),
            (&["--slow", "0s"], "--slow"),
            (&["--slow", "5s"], "--slow"),
            (&["--interval", "500ms", "--url", "https://example.com/health"], "--interval"),
            (&["--db", "postgres://localhost/x"], "--db"),
            (&["--db", "api-monitor.db"], "--db"),
            (&["--smtp", "http://mail:25"], "--smtp"),
            (&["--smtp", "smtp://mail:25?tls=maybe"], "--smtp"),
            (&["--log-file", ""], "--log-file: empty"),
            (&["--log-file", " "], "--log-file: empty"),
        ];
        for (args, option) in cases {
            let message = error(args);
            assert!(message.starts_with(option), "{args:?} → {message:?} should name {option}");
            assert!(!message.contains('\n'), "one line: {message:?}");
        }
    }

    #[test]
    fn bad_input_from_a_variable_names_the_variable() {
        let cases: &[(&str, &str, &str)] = &[
            ("FAILURE_THRESHOLD", "0", "FAILURE_THRESHOLD: expected a whole number from 1 to"),
            ("SUCCESS_THRESHOLD", "two", "SUCCESS_THRESHOLD: expected a whole number"),
            ("INTERVAL", "soon", "INTERVAL: invalid duration \"soon\""),
            ("INTERVAL", "500ms", "INTERVAL: 500ms is below the 1s floor"),
            ("TIMEOUT", "50ms", "TIMEOUT: \"50ms\" is below the 100ms floor"),
            ("SLOW", "soon", "SLOW: invalid duration \"soon\""),
            ("SLOW", "6s", "SLOW: \"6s\" must be shorter than the timeout (5s) of"),
            ("REMIND", "soon", "REMIND: invalid duration"),
            ("API_URL", "not a url", "API_URL: invalid URL"),
            ("API_URL", "https://a/h,https://a/h", "API_URL: https://a/h is given twice"),
            ("SUPPORT", "a@b.co,nobody", "SUPPORT: invalid email address \"nobody\""),
            ("REGIONS", "direct,eu", "REGIONS: \"eu\" has no proxy"),
            ("REGIONS", "eu=http://p", "REGIONS: invalid proxy URL http://p: no port"),
            ("DATABASE_URL", "postgres://h/db", "DATABASE_URL: unsupported database URL"),
            ("DATABASE_URL", "mysql://u:p/w@db/m", "DATABASE_URL: the password in the URL"),
            ("SMTP_URL", "smtp://u:p#w@mail:587", "SMTP_URL: the password in the URL has a '#'"),
            ("SMTP_URL", "http://mail:25", "SMTP_URL: invalid SMTP URL"),
            ("MAIL_FROM", "nobody", "MAIL_FROM: invalid email address"),
            ("LISTEN", "everywhere", "LISTEN: invalid address \"everywhere\""),
            ("CONCURRENCY", "0", "CONCURRENCY: expected a whole number from 1 to 10000"),
        ];
        for (variable, value, expected) in cases {
            let e = config(&[], &[(variable, value)]).expect_err(variable).to_string();
            assert!(e.starts_with(expected), "{variable}={value:?} → {e:?}\n  expected {expected}");
            assert!(!e.contains("--"), "names no flag: {e}");
        }
    }
}
