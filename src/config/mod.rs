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
//! Precedence, one rule for every global setting: flag > variable > config file > default.
//! A target's own key in the file wins over the global value, wherever that came from. Lists
//! replace rather than merge, so what is probed never depends on two sources at once:
//! `--url`/`API_URL` replace the file's targets (with plain ones on the global settings),
//! `--region`/`REGIONS` its regions, `--support`/`SUPPORT` its `support` list.
//!
//! Secrets follow one rule: the flag wins over its variable, the variable over its `_FILE`
//! (Docker secrets), and a file loses exactly one trailing newline. A `*_PASSWORD` replaces the
//! password of its URL (the config file's too), percent-encoded so any character works. Every
//! URL that may hold a password is kept as a [`SecretUrl`], so `{:?}` of a [`Config`] never
//! shows one, and every error shows URLs through [`redact`].

pub mod file;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Args, Command, Verbosity};
use crate::config::file::{self as config_file, ConfigFile, Count, DurationText};
use crate::detector::Thresholds;
use crate::redact::{self, SecretUrl};

pub const DEFAULT_URL: &str = "https://api.qa.fitpay.ninja/health";
pub const DEFAULT_DB: &str = "sqlite://api-monitor.db";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Below this, probing a remote host looks like an attack to its firewall.
pub const INTERVAL_FLOOR: Duration = Duration::from_secs(1);
/// The longest target URL: what the `state.target` column holds (`VARCHAR(2048)`).
pub const MAX_URL_LEN: usize = 2048;
pub const DEFAULT_THRESHOLDS: Thresholds = Thresholds {
    failures: NonZeroU32::new(2).expect("2 is not zero"),
    successes: NonZeroU32::new(2).expect("2 is not zero"),
};
/// Thresholds above this are surely typos (an outage would take hours to confirm).
pub const MAX_THRESHOLD: u32 = 1000;
/// The longest region name: what the `state.region` column comfortably holds, and short
/// enough for an email subject.
pub const MAX_REGION_NAME: usize = 64;

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
    pub thresholds: Thresholds,
    /// Who gets this target's emails besides the global `--support` recipients.
    pub recipients: Vec<String>,
    /// Names of the [`Region`]s it is probed from, never empty (`direct` by default), each
    /// once; each name is defined in [`Config::regions`].
    pub regions: Vec<String>,
    /// While an outage lasts, a reminder email every this long; `None`: no reminders.
    pub remind: Option<Duration>,
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

/// The report's default window.
pub const DEFAULT_REPORT_SPAN: Duration = Duration::from_secs(7 * 24 * 3600);

/// A configuration value that cannot be used; the message starts with the option's name (or
/// the variable's, for `*_FILE` and `*_PASSWORD`, or `<file>: <key path>` for the config
/// file). Any URL in it is shown redacted.
#[derive(Debug, thiserror::Error)]
#[error("{}", redact::text(.0))]
pub struct ConfigError(pub String);

/// What the configuration step may ask of the outside world.
pub trait Surroundings {
    /// This machine's host name, for the default sender address.
    fn host_name(&self) -> String;
    /// The contents of a file named by a `*_FILE` variable, as they are (the caller trims).
    fn read_secret(&self, path: &str) -> std::io::Result<String>;
    /// The contents of the `--config` file. By default read like a secret file (as it is).
    fn read_config_file(&self, path: &str) -> std::io::Result<String> {
        self.read_secret(path)
    }
}

/// Validates `args`, and the config file it names, into a [`Config`].
pub fn from_args(args: Args, world: &dyn Surroundings) -> Result<Config, ConfigError> {
    let file = match args.config.as_deref() {
        Some(path) => config_file::load(path, |p| world.read_config_file(p))?,
        None => ConfigFile::default(),
    };
    let f = &file.settings;
    let text = |value: &Option<DurationText>, key: &str| {
        value.as_ref().map(|v| Setting { value: v.0.clone(), source: file.key(key) })
    };
    let count = |value: Option<Count>, key: &str| {
        value.map(|v| Setting { value: v.0.to_string(), source: file.key(key) })
    };

    let interval = pick(args.interval, "--interval", text(&f.interval, "interval"));
    let defaults = Defaults {
        interval: duration(interval.as_ref(), DEFAULT_INTERVAL)?,
        interval_source: interval.map_or_else(|| "--interval".to_owned(), |s| s.source),
        timeout: timeout(
            pick(args.timeout, "--timeout", text(&f.timeout, "timeout")).as_ref(),
            DEFAULT_TIMEOUT,
        )?,
        thresholds: Thresholds {
            failures: threshold(
                pick(args.failures, "--failures", count(f.failures, "failures")).as_ref(),
                DEFAULT_THRESHOLDS.failures,
            )?,
            successes: threshold(
                pick(args.successes, "--successes", count(f.successes, "successes")).as_ref(),
                DEFAULT_THRESHOLDS.successes,
            )?,
        },
        remind: remind(pick(args.remind, "--remind", text(&f.remind, "remind")).as_ref())?,
    };

    let regions_from_cli = !args.regions.is_empty();
    let defined = if regions_from_cli { cli_regions(&args.regions)? } else { file_regions(&file)? };

    let specs = if !args.urls.is_empty() {
        args.urls.into_iter().map(|url| Spec::plain(url, "--url")).collect()
    } else if !f.targets.is_empty() {
        f.targets.iter().enumerate().map(|(i, t)| Spec::from_file(&file, i, t)).collect()
    } else {
        vec![Spec::plain(DEFAULT_URL.to_string(), "--url")]
    };
    let mut targets: Vec<Target> = Vec::with_capacity(specs.len());
    let mut seen: HashMap<String, String> = HashMap::new();
    for spec in specs {
        let origin = spec.origin.clone();
        let url_source = spec.url.source.clone();
        let target = target(spec, &defaults, &defined, regions_from_cli)?;
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
    let regions = used_regions(defined, &targets);

    let db = match (args.db, args.db_file, &f.db) {
        (Some(url), _, _) => Setting { value: url, source: "--db".into() },
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
        args.support
            .into_iter()
            .map(|value| Setting { value, source: "--support".into() })
            .collect()
    };
    let support: Vec<String> =
        support.iter().map(|s| address(&s.source, &s.value)).collect::<Result<_, _>>()?;
    let from = f.from.clone().map(|value| Setting { value, source: file.key("from") });
    let from = match pick(args.from, "--from", from) {
        Some(from) => mailbox(&from.source, &from.value)?,
        None => default_sender(&world.host_name()),
    };
    let smtp = match (args.smtp, args.smtp_file, &f.smtp) {
        (Some(url), _, _) => Some(Setting { value: url, source: "--smtp".into() }),
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
    // Mail is worth setting up as soon as anyone at all is to receive it.
    let anyone = !support.is_empty()
        || targets.iter().any(|t| !t.recipients.is_empty())
        || regions.iter().any(|r| !r.recipients.is_empty());
    let delivery = match (smtp, anyone) {
        (Some(url), true) => Delivery::Smtp(SmtpSettings { url, from, to: support }),
        (Some(_), false) => Delivery::LogOnly {
            why: "no recipient is set (--support, or recipients of a target or region)".into(),
        },
        (None, true) => Delivery::LogOnly { why: "no --smtp server is set".into() },
        (None, false) => Delivery::LogOnly { why: "neither --smtp nor --support is set".into() },
    };

    let log_level = log_level(args.verbosity, &file)?;
    let log_file = match (args.log_file, &f.log_file) {
        (Some(path), _) => Some(path),
        (None, Some(path)) if path.trim().is_empty() => {
            return Err(ConfigError(format!(
                "{}: empty; leave the key out to log to stderr only",
                file.key("log_file")
            )))
        }
        (None, path) => path.clone(),
    };

    let listen = match args.listen.as_deref().map(str::trim) {
        None | Some("") | Some("off") => None,
        Some(addr) => Some(addr.parse::<std::net::SocketAddr>().map_err(|_| {
            ConfigError(format!(
                "--listen: invalid address {addr:?}: expected IP:PORT such as 127.0.0.1:9898"
            ))
        })?),
    };
    let concurrency =
        match pick(args.concurrency, "--concurrency", count(f.concurrency, "concurrency")) {
            None => None,
            Some(Setting { value, source }) => match value.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Some(n),
                _ => {
                    return Err(ConfigError(format!(
                    "{source}: expected a whole number from 1 to {MAX_CONCURRENCY}, got {value:?}"
                )))
                }
            },
        };
    let report = match args.command {
        Command::Report => Some(ReportOptions {
            since: duration(
                args.since.map(|value| Setting { value, source: "--since".into() }).as_ref(),
                DEFAULT_REPORT_SPAN,
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
        thresholds: defaults.thresholds,
        db_url,
        delivery,
        log_level,
        log_file: log_file.map(PathBuf::from),
        listen,
        concurrency,
        report,
    })
}

/// The most probe workers one may ask for: each is a thread.
pub const MAX_CONCURRENCY: usize = 10_000;

/// `-v`/`-q`, else `LOG_LEVEL`, else the file's `log_level`, else info.
fn log_level(verbosity: Verbosity, file: &ConfigFile) -> Result<log::LevelFilter, ConfigError> {
    Ok(match verbosity {
        Verbosity::Default => match &file.settings.log_level {
            None => log::LevelFilter::Info,
            Some(level) => level.trim().parse().map_err(|_| {
                ConfigError(format!(
                    "{}: invalid level {level:?}: expected error, warn, info, debug or trace",
                    file.key("log_level")
                ))
            })?,
        },
        Verbosity::Flags(0) => log::LevelFilter::Info,
        Verbosity::Flags(1) => log::LevelFilter::Debug,
        Verbosity::Flags(n) if n >= 2 => log::LevelFilter::Trace,
        Verbosity::Flags(-1) => log::LevelFilter::Warn,
        Verbosity::Flags(_) => log::LevelFilter::Error,
        Verbosity::Env(level) => level,
    })
}

/// The command line's value (flag or variable; the low step already chose between them) if
/// set, else the file's.
fn pick(cli: Option<String>, option: &str, file: Option<Setting>) -> Option<Setting> {
    cli.map(|value| Setting { value, source: option.to_owned() }).or(file)
}

/// The global settings a target falls back to.
struct Defaults {
    interval: Duration,
    /// Where the interval came from (`--interval`, `monitor.toml: interval`), for the floor.
    interval_source: String,
    timeout: Duration,
    thresholds: Thresholds,
    remind: Option<Duration>,
}

/// A target as configured, before validation; every value knows where it came from.
struct Spec {
    /// `--url` or `monitor.toml: target[2]`: how errors about the target as a whole name it.
    origin: String,
    url: Setting,
    interval: Option<Setting>,
    timeout: Option<Setting>,
    failures: Option<Setting>,
    successes: Option<Setting>,
    recipients: Vec<Setting>,
    /// The key of the list (`monitor.toml: target[2].regions`) and its names; `None`: all.
    regions: Option<(String, Vec<Setting>)>,
    remind: Option<Setting>,
}

impl Spec {
    /// A target from the command line: the URL only, everything else global.
    fn plain(url: String, option: &str) -> Spec {
        Spec {
            origin: option.to_owned(),
            url: Setting { value: url, source: option.to_owned() },
            interval: None,
            timeout: None,
            failures: None,
            successes: None,
            recipients: Vec::new(),
            regions: None,
            remind: None,
        }
    }

    /// The `index`-th (0-based) `[[target]]` of `file`.
    fn from_file(file: &ConfigFile, index: usize, t: &config_file::TargetEntry) -> Spec {
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
            failures: count(t.failures, "failures"),
            successes: count(t.successes, "successes"),
            recipients: list(&t.recipients, "recipients"),
            regions: t.regions.as_ref().map(|names| (key("regions"), list(names, "regions"))),
            remind: text(&t.remind, "remind"),
        }
    }
}

/// A region as defined, with where: `--region` or `region[2]`.
struct Defined {
    region: Region,
    at: String,
}

/// Validates one target; `defined` are the regions it may name.
fn target(
    spec: Spec,
    defaults: &Defaults,
    defined: &[Defined],
    regions_from_cli: bool,
) -> Result<Target, ConfigError> {
    let (url, name) = target_url(&spec.url)?;
    let (interval, interval_source) = match &spec.interval {
        Some(s) => (duration(Some(s), DEFAULT_INTERVAL)?, s.source.as_str()),
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
    Ok(Target { url, name, interval, timeout, thresholds, recipients, regions, remind })
}

/// A target's own `regions` list, checked against the defined regions.
fn named_regions(
    key: &str,
    names: &[Setting],
    defined: &[Defined],
    regions_from_cli: bool,
) -> Result<Vec<String>, ConfigError> {
    if names.is_empty() {
        return Err(ConfigError(format!(
            "{key}: the list is empty; leave the key out to probe from every defined region"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let known = name.value == DIRECT || defined.iter().any(|d| d.region.name == name.value);
        if !known {
            let hint = if regions_from_cli {
                "; --region/REGIONS replace the file's [[region]] list"
            } else {
                ""
            };
            return Err(ConfigError(format!(
                "{}: region {:?} is not defined: add a [[region]] with that name, or use \
                 \"direct\"{hint}",
                name.source, name.value
            )));
        }
        if out.contains(&name.value) {
            return Err(ConfigError(format!(
                "{}: region {:?} is listed twice",
                name.source, name.value
            )));
        }
        out.push(name.value.clone());
    }
    Ok(out)
}

/// The regions of `--region`/`REGIONS`: `NAME=PROXY_URL`, or `direct` alone.
fn cli_regions(raw: &[String]) -> Result<Vec<Defined>, ConfigError> {
    let option = "--region";
    let mut out: Vec<Defined> = Vec::with_capacity(raw.len());
    for entry in raw {
        let (name, proxy) = match entry.split_once('=') {
            Some((name, proxy)) => (name.trim(), Some(proxy.trim())),
            None if entry.trim() == DIRECT => (DIRECT, None),
            None => {
                return Err(ConfigError(format!(
                    "{option}: {:?} has no proxy: expected NAME=PROXY_URL (the proxy as \
                     http://HOST:PORT), or `direct` to probe without one",
                    redact::text(entry)
                )))
            }
        };
        region_name(option, name)?;
        if out.iter().any(|d| d.region.name == name) {
            return Err(ConfigError(format!("{option}: region {name:?} is given twice")));
        }
        let proxy = match proxy {
            Some(_) if name == DIRECT => return Err(direct_with_proxy(option)),
            Some(raw) => Some(proxy_url(option, raw)?),
            None => None,
        };
        let region = Region { name: name.to_owned(), proxy, recipients: Vec::new() };
        out.push(Defined { region, at: option.to_owned() });
    }
    Ok(out)
}

/// The `[[region]]`s of the config file.
fn file_regions(file: &ConfigFile) -> Result<Vec<Defined>, ConfigError> {
    let mut out: Vec<Defined> = Vec::with_capacity(file.settings.regions.len());
    for (i, entry) in file.settings.regions.iter().enumerate() {
        let at = format!("region[{}]", i + 1);
        let key = |name: &str| file.key(&format!("{at}.{name}"));
        region_name(&key("name"), &entry.name)?;
        if let Some(first) = out.iter().find(|d| d.region.name == entry.name) {
            return Err(ConfigError(format!(
                "{}: region {:?} is already defined by {}",
                key("name"),
                entry.name,
                first.at
            )));
        }
        let proxy = match &entry.proxy {
            Some(_) if entry.name == DIRECT => return Err(direct_with_proxy(&key("proxy"))),
            Some(raw) => Some(proxy_url(&key("proxy"), raw.expose())?),
            None => None,
        };
        let recipients = entry
            .recipients
            .iter()
            .enumerate()
            .map(|(j, r)| address(&key(&format!("recipients[{}]", j + 1)), r))
            .collect::<Result<_, _>>()?;
        let region = Region { name: entry.name.clone(), proxy, recipients };
        out.push(Defined { region, at });
    }
    Ok(out)
}

/// The regions some target names, in definition order, an implicit [`DIRECT`] first.
fn used_regions(defined: Vec<Defined>, targets: &[Target]) -> Vec<Region> {
    let named = |name: &str| targets.iter().any(|t| t.regions.iter().any(|r| r == name));
    let mut out = Vec::with_capacity(defined.len() + 1);
    if named(DIRECT) && !defined.iter().any(|d| d.region.name == DIRECT) {
        out.push(Region { name: DIRECT.to_string(), proxy: None, recipients: Vec::new() });
    }
    out.extend(defined.into_iter().map(|d| d.region).filter(|r| named(&r.name)));
    out
}

fn direct_with_proxy(option: &str) -> ConfigError {
    ConfigError(format!(
        "{option}: the region {DIRECT:?} probes without a proxy by definition; give the region \
         with a proxy another name"
    ))
}

/// A region name: it goes into the `state.region` column, logs and email subjects.
fn region_name(option: &str, name: &str) -> Result<(), ConfigError> {
    let fits = (1..=MAX_REGION_NAME).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if fits {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "{option}: invalid region name {name:?}: expected 1 to {MAX_REGION_NAME} letters, \
             digits, '-' or '_'"
        )))
    }
}

/// Validates a proxy URL into one plain form: `http://[user[:pass]@]host:port`, nothing after
/// the port. The probe speaks plain HTTP to its proxy and tunnels every target (http and
/// https) with CONNECT. A missing port (the client would guess one), an IPv6 literal (not
/// supported by this monitor: never tested against a proxy), and a `:` in the user name
/// (Basic authentication splits the user-info at its first `:`) are refused here with the
/// reason rather than met as a mysteriously blind region.
fn proxy_url(option: &str, raw: &str) -> Result<SecretUrl, ConfigError> {
    let shown = redact::url(raw);
    // Not written as a URL with user-info: error text goes through `redact::text`.
    let expected = "expected http://HOST:PORT, with USER:PASS@ before HOST if the proxy asks";
    let bad =
        |why: &str| ConfigError(format!("{option}: invalid proxy URL {shown}: {why}; {expected}"));
    // First, before any message shows the URL: http URLs may hold an '@' after the host, so
    // the redaction would not hide a password that spilled into the path.
    if redact::stray_at(raw) {
        return Err(ConfigError(format!(
            "{option}: the proxy URL has an '@' after its host, so part of it is probably a \
             password with a '/', '?' or '#' in it: percent-encode those (%2F, %3F, %23)"
        )));
    }
    if let Some(c) = raw.chars().find(|&c| c.is_control() || c.is_whitespace() || is_bidi(c)) {
        return Err(bad(&format!("it contains {c:?}")));
    }
    let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "http" {
        return Err(bad(&format!(
            "unsupported scheme {:?} (only http:// proxies: HTTPS targets are tunnelled through \
             them with CONNECT)",
            url.scheme()
        )));
    }
    let host = match url.host() {
        Some(url::Host::Ipv6(_)) => {
            return Err(bad("an IPv6 address as the proxy is not supported; use a host name"))
        }
        Some(host) => host.to_string(),
        None => return Err(bad("no host")),
    };
    let Some(port) = url.port_or_known_default().filter(|_| has_explicit_port(raw)) else {
        return Err(bad("no port (proxies have no standard one)"));
    };
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a proxy URL ends with its port"));
    }
    let user = percent_encoding::percent_decode_str(url.username()).decode_utf8();
    let password = url.password().map(|p| percent_encoding::percent_decode_str(p).decode_utf8());
    match (user, password) {
        (Ok(user), _) if user.contains(':') => {
            return Err(bad("the user name cannot contain ':' (Basic authentication splits at it)"))
        }
        (Err(_), _) | (_, Some(Err(_))) => {
            return Err(bad("the credentials are not UTF-8 once percent-decoded"))
        }
        _ => {}
    }
    let userinfo = match (url.username(), url.password()) {
        ("", None) => String::new(),
        (user, None) => format!("{user}@"),
        (user, Some(password)) => format!("{user}:{password}@"),
    };
    Ok(SecretUrl::new(format!("http://{userinfo}{host}:{port}")))
}

/// Whether the authority of `raw` (a URL the parser accepted) spells out a port. The parser
/// forgets a port equal to the scheme's default, so ask the text.
fn has_explicit_port(raw: &str) -> bool {
    let authority = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let authority = authority.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    host_port
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
}

/// Validates a target URL (from `url.source`): the URL to probe and the name to show.
fn target_url(url: &Setting) -> Result<(SecretUrl, String), ConfigError> {
    let (option, raw) = (url.source.as_str(), url.value.as_str());
    let shown = redact::url(raw);
    // The URL parser would silently drop a CR, LF or tab, but the probe sends the text as it is:
    // such a URL could split the HTTP request, or a log line.
    if let Some(c) = raw.chars().find(|&c| c.is_control() || c.is_whitespace() || is_bidi(c)) {
        return Err(ConfigError(format!(
            "{option}: invalid URL {shown:?}: it contains {c:?}; percent-encode whitespace and \
             control characters (%20, %0D, %0A)"
        )));
    }
    if shown.len() > MAX_URL_LEN {
        return Err(ConfigError(format!(
            "{option}: URL is {} characters long, the most a target may have is {MAX_URL_LEN}",
            shown.len()
        )));
    }
    let parsed = url::Url::parse(raw)
        .map_err(|e| ConfigError(format!("{option}: invalid URL {shown}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError(format!(
            "{option}: invalid URL {shown}: expected http://HOST[:PORT]/PATH or https://…"
        )));
    }
    Ok((SecretUrl::new(raw), shown))
}

/// The shortest probe timeout accepted: below it the deadline is mostly scheduling and
/// handshake noise, and a healthy API would read as down.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);

/// The probe timeout `setting` holds (at least [`MIN_TIMEOUT`]), or `default` when unset.
fn timeout(setting: Option<&Setting>, default: Duration) -> Result<Duration, ConfigError> {
    let d = duration(setting, default)?;
    match setting {
        Some(Setting { value: raw, source: option }) if d < MIN_TIMEOUT => {
            Err(ConfigError(format!(
                "{option}: {raw:?} is below the {} floor of a probe timeout",
                crate::duration::human(MIN_TIMEOUT)
            )))
        }
        _ => Ok(d),
    }
}

/// A reminder spacing: a duration, or `off` (also the default).
fn remind(setting: Option<&Setting>) -> Result<Option<Duration>, ConfigError> {
    match setting {
        Some(s) if s.value.trim().eq_ignore_ascii_case("off") => Ok(None),
        Some(s) => duration(Some(s), Duration::ZERO)
            .map(Some)
            .map_err(|ConfigError(e)| ConfigError(format!("{e}; or \"off\" for no reminders"))),
        None => Ok(None),
    }
}

/// Unicode bidirectional controls: invisible, and able to make a log line read backwards.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A raw setting and where it came from, so an error names what the operator set.
struct Setting {
    value: String,
    /// The option, variable or file key: `--db`, `DATABASE_URL_FILE`, `monitor.toml: db`, …
    source: String,
}

/// The value of a variable (`direct`) if set, else the contents of the file its `_FILE`
/// variable names, else `None`. Each comes with its variable's name.
fn secret(
    world: &dyn Surroundings,
    direct: (Option<String>, &'static str),
    file: (Option<String>, &'static str),
) -> Result<Option<Setting>, ConfigError> {
    match (direct, file) {
        ((Some(value), source), _) => Ok(Some(Setting { value, source: source.to_owned() })),
        ((None, _), (Some(path), variable)) => read_file(world, variable, &path).map(Some),
        ((None, _), (None, _)) => Ok(None),
    }
}

/// The file at `path`, named by the variable `variable`, without one trailing newline (`\n`
/// or `\r\n`: editors and `echo` add one; anything else is part of the secret). An unreadable
/// or empty file is an error naming the variable and the path (a path is not secret).
fn read_file(
    world: &dyn Surroundings,
    variable: &'static str,
    path: &str,
) -> Result<Setting, ConfigError> {
    let mut value = world
        .read_secret(path)
        .map_err(|e| ConfigError(format!("{variable}: cannot read {path:?}: {e}")))?;
    if value.ends_with("\r\n") {
        value.truncate(value.len() - 2);
    } else if value.ends_with('\n') {
        value.truncate(value.len() - 1);
    }
    if value.is_empty() {
        return Err(ConfigError(format!("{variable}: the file {path:?} is empty")));
    }
    Ok(Setting { value, source: variable.to_owned() })
}

/// Validates a database URL and puts `password` into it.
fn database_url(db: &Setting, password: Option<&Setting>) -> Result<SecretUrl, ConfigError> {
    let option = db.source.as_str();
    let shown = redact::url(&db.value);
    let expected = "expected sqlite://PATH or mysql://USER:PASS@HOST:PORT/DB";
    match db.value.split_once("://") {
        Some(("sqlite", rest)) if !rest.is_empty() => {
            return match password {
                None => Ok(SecretUrl::new(db.value.as_str())),
                Some(p) => Err(ConfigError(format!(
                    "{} is set, but only a mysql:// database takes a password (the database \
                     is {shown})",
                    p.source
                ))),
            };
        }
        Some(("mysql", rest)) if !rest.is_empty() => {}
        _ => {
            return Err(ConfigError(format!(
                "{option}: unsupported database URL {shown}: {expected}"
            )))
        }
    }
    let mut url = url::Url::parse(&db.value)
        .map_err(|e| ConfigError(format!("{option}: invalid database URL {shown}: {e}")))?;
    if redact::stray_at(&db.value) {
        return Err(stray_at(option, "DATABASE_PASSWORD"));
    }
    if url.host_str().is_none_or(str::is_empty) || url.path().trim_matches('/').is_empty() {
        return Err(ConfigError(format!(
            "{option}: invalid database URL {shown}: no host or no database name; {expected}"
        )));
    }
    match password {
        // Kept as typed: the driver parses it, and the operator recognises it in the log.
        None => Ok(SecretUrl::new(db.value.as_str())),
        Some(password) => {
            put_password(&mut url, password)
                .map_err(|why| ConfigError(format!("{option}: {why}")))?;
            Ok(SecretUrl::new(String::from(url)))
        }
    }
}

/// The error for a URL whose password the parser could not find (see [`redact::stray_at`]).
fn stray_at(option: &str, variable: &str) -> ConfigError {
    ConfigError(format!(
        "{option}: the URL has an '@' after its host, so part of it is probably a password \
         with a '/', '?' or '#' in it: percent-encode those (%2F, %3F, %23) or set the \
         password in {variable}"
    ))
}

/// Sets `password` as the password of `url`, percent-encoded. Fails when the URL has no user
/// name to go with it. The message names the password's variable.
fn put_password(url: &mut url::Url, password: &Setting) -> Result<(), String> {
    if url.username().is_empty() {
        return Err(format!(
            "{} is set but the URL has no user name to go with it (scheme://USER@HOST/…)",
            password.source
        ));
    }
    url.set_password(Some(&redact::encode_userinfo(&password.value)))
        .map_err(|()| "the URL cannot hold a password".to_string())
}

/// Whether `url`'s host is this machine, where probing fast cannot upset a firewall.
pub fn is_loopback(raw: &str) -> bool {
    match url::Url::parse(raw).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The duration `setting` holds, or `default` when unset; zero is refused.
fn duration(setting: Option<&Setting>, default: Duration) -> Result<Duration, ConfigError> {
    let Some(Setting { value: raw, source: option }) = setting else { return Ok(default) };
    let d = crate::duration::parse(raw)
        .map_err(|e| ConfigError(format!("{option}: invalid duration {raw:?}: {e}")))?;
    if d.is_zero() {
        return Err(ConfigError(format!("{option}: must be longer than zero, got {raw:?}")));
    }
    Ok(d)
}

/// The threshold `setting` holds (1 to [`MAX_THRESHOLD`]), or `default` when unset.
fn threshold(setting: Option<&Setting>, default: NonZeroU32) -> Result<NonZeroU32, ConfigError> {
    let Some(Setting { value: raw, source: option }) = setting else { return Ok(default) };
    let n: u32 = raw.trim().parse().map_err(|_| {
        ConfigError(format!(
            "{option}: expected a whole number from 1 to {MAX_THRESHOLD}, got {raw:?}"
        ))
    })?;
    match NonZeroU32::new(n) {
        Some(n) if n.get() <= MAX_THRESHOLD => Ok(n),
        _ => Err(ConfigError(format!(
            "{option}: expected a whole number from 1 to {MAX_THRESHOLD}, got {n}"
        ))),
    }
}

fn address(option: &str, raw: &str) -> Result<String, ConfigError> {
    raw.trim()
        .parse::<lettre::Address>()
        .map(|a| a.to_string())
        .map_err(|e| ConfigError(format!("{option}: invalid email address {raw:?}: {e}")))
}

fn mailbox(option: &str, raw: &str) -> Result<String, ConfigError> {
    raw.trim()
        .parse::<lettre::message::Mailbox>()
        .map(|m| m.to_string())
        .map_err(|e| ConfigError(format!("{option}: invalid email address {raw:?}: {e}")))
}

/// `api-monitor@<host>`, or `@localhost` when the host name is not a valid mail domain.
fn default_sender(host: &str) -> String {
    address("", &format!("api-monitor@{host}"))
        .unwrap_or_else(|_| "api-monitor@localhost".to_string())
}

fn smtp_url(smtp: &Setting, password: Option<&Setting>) -> Result<SecretUrl, ConfigError> {
    let (option, raw) = (smtp.source.as_str(), smtp.value.as_str());
    let shown = redact::url(raw);
    let bad = |why: &str| {
        ConfigError(format!(
            "{option}: invalid SMTP URL {shown}: {why}; expected smtp://HOST:PORT, \
             smtp://USER:PASS@HOST:587?tls=required or smtps://USER:PASS@HOST:465"
        ))
    };
    let mut url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    if redact::stray_at(raw) {
        return Err(stray_at(option, "SMTP_PASSWORD"));
    }
    if !matches!(url.scheme(), "smtp" | "smtps") {
        return Err(bad(&format!("unknown scheme {:?}", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    match url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned()) {
        None => {}
        Some(v) if url.scheme() == "smtp" && (v == "required" || v == "opportunistic") => {}
        Some(v) => return Err(bad(&format!("unsupported tls={v}"))),
    }
    if let Some(password) = password {
        put_password(&mut url, password).map_err(|why| bad(&why))?;
    }
    Ok(SecretUrl::new(String::from(url)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse_from, Parsed};

    struct Fake;
    impl Surroundings for Fake {
        fn host_name(&self) -> String {
            "box1".into()
        }
        fn read_secret(&self, path: &str) -> std::io::Result<String> {
            let contents = match path {
                "/run/secrets/smtp" => "fr0m-file\n",
                "/run/secrets/crlf" => "fr0m-file\r\n",
                "/run/secrets/two_newlines" => "tw0\n\n",
                "/run/secrets/awkward" => "p%41ss@:/?# w0rd\n",
                "/run/secrets/empty" => "\n",
                "/run/secrets/db_url" => "mysql://monitor:fr0m-file@db:3306/monitor\n",
                "/run/secrets/smtp_url" => "smtps://mailer:fr0m-file@mail.example.com:465\n",
                _ => return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")),
            };
            Ok(contents.into())
        }
    }

    fn config(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        match parse_from(args.iter().copied(), &env).expect("cli parses") {
            Parsed::Go(a) => from_args(*a, &Fake),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn error(args: &[&str]) -> String {
        config(args, &[]).expect_err("must be rejected").0
    }

    #[test]
    fn defaults_match_the_documentation() {
        let c = config(&[], &[]).unwrap();
        assert_eq!(c.targets[0].url, DEFAULT_URL);
        assert_eq!((c.interval, c.timeout), (Duration::from_secs(5), Duration::from_secs(5)));
        assert_eq!((c.thresholds.failures.get(), c.thresholds.successes.get()), (2, 2));
        assert_eq!(c.db_url, "sqlite://api-monitor.db");
        assert!(matches!(c.delivery, Delivery::LogOnly { .. }));
        assert_eq!(c.log_level, log::LevelFilter::Info);
    }

    #[test]
    fn a_full_smtp_setup_delivers_by_mail() {
        let c =
            config(&["--smtp", "smtp://127.0.0.1:2525", "--support", "oncall@example.com"], &[])
                .unwrap();
        assert_eq!(
            c.delivery,
            Delivery::Smtp(SmtpSettings {
                url: "smtp://127.0.0.1:2525".into(),
                from: "api-monitor@box1".into(),
                to: vec!["oncall@example.com".into()],
            })
        );
    }

    #[test]
    fn smtp_password_comes_from_variable_or_file_and_is_never_shown() {
        let smtp = |env: &[(&str, &str)]| match config(
            &["--smtp", "smtp://user@mail.example.com:587?tls=required", "--support", "a@b.co"],
            env,
        )
        .unwrap()
        .delivery
        {
            Delivery::Smtp(s) => s,
            other => panic!("{other:?}"),
        };
        let s = smtp(&[("SMTP_PASSWORD", "s3cret")]);
        assert_eq!(s.url, "smtp://user:s3cret@mail.example.com:587?tls=required");
        assert!(!format!("{s:?}").contains("s3cret"), "Debug output must redact the password");
        let s = smtp(&[("SMTP_PASSWORD_FILE", "/run/secrets/smtp")]);
        assert!(s.url.contains(":fr0m-file@"), "{}", s.url);
        let e = config(&["--smtp", "smtp://u@h:25"], &[("SMTP_PASSWORD_FILE", "/nope")]);
        assert!(e.unwrap_err().0.starts_with("SMTP_PASSWORD_FILE"));
    }

    fn db(args: &[&str], env: &[(&str, &str)]) -> SecretUrl {
        config(args, env).expect("valid").db_url
    }

    fn smtp_url(args: &[&str], env: &[(&str, &str)]) -> SecretUrl {
        let mut with_support = args.to_vec();
        with_support.extend(["--support", "a@b.co"]);
        match config(&with_support, env).expect("valid").delivery {
            Delivery::Smtp(s) => s.url,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flag_wins_over_variable_and_variable_over_its_file() {
        let file = ("DATABASE_URL_FILE", "/run/secrets/db_url");
        let var = ("DATABASE_URL", "mysql://monitor:fr0m-var@db/monitor");
        assert_eq!(db(&[], &[file]), "mysql://monitor:fr0m-file@db:3306/monitor");
        assert_eq!(db(&[], &[file, var]), var.1, "DATABASE_URL beats DATABASE_URL_FILE");
        assert_eq!(
            db(&["--db", "sqlite://x.db"], &[file, var]),
            "sqlite://x.db",
            "--db beats both"
        );

        let file = ("SMTP_URL_FILE", "/run/secrets/smtp_url");
        let var = ("SMTP_URL", "smtp://mailer:fr0m-var@mail:25");
        assert_eq!(smtp_url(&[], &[file]), "smtps://mailer:fr0m-file@mail.example.com:465");
        assert_eq!(smtp_url(&[], &[file, var]), var.1, "SMTP_URL beats SMTP_URL_FILE");
        assert_eq!(smtp_url(&["--smtp", "smtp://h:25"], &[file, var]), "smtp://h:25");

        let url = ["--db", "mysql://monitor@db/monitor"];
        let file = ("DATABASE_PASSWORD_FILE", "/run/secrets/smtp");
        let var = ("DATABASE_PASSWORD", "fr0m-var");
        assert_eq!(db(&url, &[file]), "mysql://monitor:fr0m-file@db/monitor");
        assert_eq!(db(&url, &[file, var]), "mysql://monitor:fr0m-var@db/monitor");
        let unreadable = ("DATABASE_PASSWORD_FILE", "/nope");
        assert_eq!(
            db(&url, &[unreadable, var]),
            "mysql://monitor:fr0m-var@db/monitor",
            "a file that loses to its variable is never read"
        );
        let url = ["--db", "mysql://monitor:fr0m-url@db/monitor"];
        assert_eq!(db(&url, &[var]), "mysql://monitor:fr0m-var@db/monitor", "replaces the URL's");
    }

    #[test]
    fn a_file_loses_exactly_one_trailing_newline() {
        let password = |path: &str| {
            let url = db(&["--db", "mysql://u@db/m"], &[("DATABASE_PASSWORD_FILE", path)]);
            url::Url::parse(&url).unwrap().password().map(String::from)
        };
        assert_eq!(password("/run/secrets/smtp").as_deref(), Some("fr0m-file"), "LF");
        assert_eq!(password("/run/secrets/crlf").as_deref(), Some("fr0m-file"), "CR LF");
        assert_eq!(password("/run/secrets/two_newlines").as_deref(), Some("tw0%0A"), "only one");
    }

    #[test]
    fn unreadable_or_empty_files_name_the_variable_and_the_path() {
        for (variable, args) in [
            ("DATABASE_URL_FILE", &[][..]),
            ("DATABASE_PASSWORD_FILE", &["--db", "mysql://u@db/m"][..]),
            ("SMTP_URL_FILE", &[][..]),
            ("SMTP_PASSWORD_FILE", &["--smtp", "smtp://u@h:25"][..]),
        ] {
            for (path, why) in [("/nope", "cannot read"), ("/run/secrets/empty", "is empty")] {
                let e = config(args, &[(variable, path)]).expect_err("must be rejected").0;
                assert!(e.starts_with(variable), "{variable}={path}: {e}");
                assert!(e.contains(path) && e.contains(why), "{variable}={path}: {e}");
            }
        }
    }

    #[test]
    fn injected_passwords_may_hold_any_character() {
        for variable in ["DATABASE_PASSWORD", "SMTP_PASSWORD"] {
            let env = [(variable, "p%41ss@:/?# w0rd")];
            let url = match variable {
                "DATABASE_PASSWORD" => db(&["--db", "mysql://u@db:3306/m"], &env),
                _ => smtp_url(&["--smtp", "smtp://u@mail:25"], &env),
            };
            let parsed = url::Url::parse(&url).expect("still a valid URL");
            assert_eq!(
                parsed.host_str(),
                Some(if variable == "SMTP_PASSWORD" { "mail" } else { "db" })
            );
            assert_eq!(
                parsed.password(),
                Some("p%2541ss%40%3A%2F%3F%23%20w0rd"),
                "{variable}: every special character is percent-encoded, `%` included"
            );
            assert!(!url.to_string().contains("w0rd"), "{variable}: shown masked: {url}");
        }
        let from_file =
            db(&["--db", "mysql://u@db/m"], &[("DATABASE_PASSWORD_FILE", "/run/secrets/awkward")]);
        assert_eq!(url::Url::parse(&from_file).unwrap().path(), "/m", "the file's too");
    }

    #[test]
    fn a_user_name_may_be_an_email_address() {
        // The README's example: the last `@` ends the user-info, so this is not a stray `@`.
        let url = smtp_url(
            &["--smtp", "smtp://alerts@example.com@smtp.example.com:587?tls=required"],
            &[("SMTP_PASSWORD", "s3cret")],
        );
        let parsed = url::Url::parse(&url).unwrap();
        assert_eq!(parsed.host_str(), Some("smtp.example.com"));
        assert_eq!(
            (parsed.username(), parsed.password()),
            ("alerts%40example.com", Some("s3cret"))
        );
        assert_eq!(
            url.to_string(),
            "smtp://alerts%40example.com:***@smtp.example.com:587?tls=required"
        );
    }

    #[test]
    fn a_password_needs_a_mysql_url_with_a_user() {
        let e = config(&["--db", "sqlite://x.db"], &[("DATABASE_PASSWORD", "s3cret")]);
        let e = e.expect_err("SQLite takes no password").0;
        assert!(e.starts_with("DATABASE_PASSWORD ") && !e.contains("s3cret"), "{e}");
        let e =
            config(&["--db", "mysql://db/m"], &[("DATABASE_PASSWORD_FILE", "/run/secrets/smtp")]);
        let e = e.expect_err("no user").0;
        assert!(e.starts_with("--db") && e.contains("DATABASE_PASSWORD_FILE"), "{e}");
        assert!(!e.contains("fr0m-file"), "{e}");
    }

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
    fn misplaced_passwords_are_rejected_without_being_shown() {
        for (args, option) in [
            (&["--db", "mysql://u:12/s3cret@db/m"][..], "--db"),
            (&["--db", "mysql://u:12?s3cret@db/m"][..], "--db"),
            (&["--smtp", "smtp://u:25#s3cret@mail:25"][..], "--smtp"),
            (&["--db", "mysql://u:s3/cret@db/m"][..], "--db"),
            (&["--db", "mysql://u:s3cret@db:3306"][..], "--db"),
        ] {
            let e = error(args);
            assert!(e.starts_with(option) && !e.contains("cret"), "{args:?}: {e}");
        }
        assert!(error(&["--db", "mysql://u:12/s3cret@db/m"]).contains("percent-encode"));
    }

    #[test]
    fn target_urls_cannot_carry_line_breaks_but_may_carry_encoded_ones() {
        for bad in [
            "http://a/health\r\nBcc: x@y.z",
            "http://a/he alth",
            "http://a/h\tx",
            "http://a/\u{202E}x",
        ] {
            let e = error(&["--url", bad]);
            assert!(e.starts_with("--url") && !e.contains(['\r', '\n']), "{bad:?}: {e}");
        }
        let encoded = "http://127.0.0.1:8080/health%0D%0ABcc:%20evil@example.com/<script>";
        let c = config(&["--url", encoded], &[]).unwrap();
        assert_eq!(c.targets[0].name, encoded, "shown as typed: the email escapes it");
    }

    #[test]
    fn half_a_mail_setup_is_log_only() {
        let c = config(&["--support", "a@b.co"], &[]).unwrap();
        assert!(matches!(c.delivery, Delivery::LogOnly { ref why } if why.contains("--smtp")));
        let c = config(&["--smtp", "smtp://h:25"], &[]).unwrap();
        assert!(matches!(c.delivery, Delivery::LogOnly { ref why } if why.contains("--support")));
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
            (&["--interval", "500ms", "--url", "https://example.com/health"], "--interval"),
            (&["--db", "postgres://localhost/x"], "--db"),
            (&["--db", "api-monitor.db"], "--db"),
            (&["--smtp", "http://mail:25"], "--smtp"),
            (&["--smtp", "smtp://mail:25?tls=maybe"], "--smtp"),
        ];
        for (args, option) in cases {
            let message = error(args);
            assert!(message.starts_with(option), "{args:?} → {message:?} should name {option}");
            assert!(!message.contains('\n'), "one line: {message:?}");
        }
    }

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
    fn timeout_is_taken_as_written_down_to_100ms() {
        let ms = Duration::from_millis;
        assert_eq!(config(&["--timeout", "1500ms"], &[]).unwrap().timeout, ms(1500));
        assert_eq!(config(&["--timeout", "300ms"], &[]).unwrap().timeout, ms(300));
        assert_eq!(config(&["--timeout", "100ms"], &[]).unwrap().timeout, ms(100));
        let e = config(&["--timeout", "99ms"], &[]).unwrap_err().0;
        assert_eq!(e, "--timeout: \"99ms\" is below the 100ms floor of a probe timeout");
        let e = config(&[], &[("TIMEOUT", "50ms")]).unwrap_err().0;
        assert!(e.contains("\"50ms\" is below the 100ms floor"), "{e}");
    }

    #[test]
    fn errors_never_show_passwords() {
        let e = error(&["--db", "postgres://u:s3cret@h/db"]);
        assert!(!e.contains("s3cret"), "{e}");
        let e = error(&["--smtp", "smtp://u:s3cret@h:25?tls=maybe"]);
        assert!(!e.contains("s3cret"), "{e}");
        let e = error(&["--db", "mysql://u:s3cret@db/m", "--failures", "0"]);
        assert!(!e.contains("s3cret"), "{e}");
        let e = config(&["--url", "https://u:s3cret@[::1/health"], &[]).unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(config(&["-v"], &[]).unwrap().log_level, log::LevelFilter::Debug);
        assert_eq!(config(&["-qq"], &[]).unwrap().log_level, log::LevelFilter::Error);
        let c = config(&[], &[("LOG_LEVEL", "warn")]).unwrap();
        assert_eq!(c.log_level, log::LevelFilter::Warn);
    }

    // ---- regions, reminders and the --config file ----------------------------------------

    const EXAMPLE: &str = include_str!("../../examples/monitor.toml");

    /// [`Fake`], plus one config file (at any path) with the contents `text`, or none.
    struct WithFile(Option<&'static str>);
    impl Surroundings for WithFile {
        fn host_name(&self) -> String {
            Fake.host_name()
        }
        fn read_secret(&self, path: &str) -> std::io::Result<String> {
            Fake.read_secret(path)
        }
        fn read_config_file(&self, _path: &str) -> std::io::Result<String> {
            self.0.map(String::from).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory")
            })
        }
    }

    /// The configuration from `--config monitor.toml` holding `text`, plus `args` and `env`.
    fn with_file(
        text: &'static str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        let env = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        let mut all = vec!["--config", "monitor.toml"];
        all.extend_from_slice(args);
        match parse_from(all, &env).expect("cli parses") {
            Parsed::Go(a) => from_args(*a, &WithFile(Some(text))),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// What the operator reads when `text` is rejected (redacted, as printed).
    fn file_error(text: &'static str) -> String {
        with_file(text, &[], &[]).expect_err("must be rejected").to_string()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn thresholds(failures: u32, successes: u32) -> Thresholds {
        Thresholds {
            failures: NonZeroU32::new(failures).unwrap(),
            successes: NonZeroU32::new(successes).unwrap(),
        }
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
                    thresholds: thresholds(2, 2),
                    recipients: vec![],
                    regions: vec!["direct".into(), "eu".into(), "us".into()],
                    remind: Some(secs(30 * 60)),
                },
                Target {
                    url: payments.into(),
                    name: payments.into(),
                    interval: secs(10),
                    timeout: secs(3),
                    thresholds: thresholds(3, 2),
                    recipients: vec!["payments-team@example.com".into()],
                    regions: vec!["eu".into()],
                    remind: Some(secs(3600)),
                },
            ],
            regions: vec![
                Region { name: "direct".into(), proxy: None, recipients: vec![] },
                Region {
                    name: "eu".into(),
                    proxy: Some("http://proxy-eu.example.com:3128".into()),
                    recipients: vec!["eu-oncall@example.com".into()],
                },
                Region {
                    name: "us".into(),
                    proxy: Some("http://monitor:CHANGE_ME@proxy-us.example.com:3128".into()),
                    recipients: vec![],
                },
            ],
            interval: secs(5),
            timeout: secs(5),
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
        ] {
            let keys = accepted_keys(probe);
            assert!(keys.len() > 2, "{section}: {keys:?}");
            for key in keys {
                let set = EXAMPLE.lines().any(|l| l.starts_with(&format!("{key} = ")));
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
            ("interval = \"500ms\"\n", "monitor.toml: interval: 500ms is below the 1s floor"),
            ("[[region]]\nname = \"eu\"\nproxy = \"https://p:3128\"\n", "monitor.toml: region[1].proxy: invalid proxy URL https://p:3128: unsupported scheme \"https\""),
            ("[[region]]\nname = \"eu\"\nproxy = \"http://p\"\n", "monitor.toml: region[1].proxy: invalid proxy URL http://p: no port"),
            ("[[region]]\nname = \"eu\"\nrecipients = [\"a@b.co\", \"nobody\"]\n", "monitor.toml: region[1].recipients[2]: invalid email address \"nobody\""),
            ("[[target]]\nurl = \"https://a/h\"\nrecipients = [\"x\"]\n", "monitor.toml: target[1].recipients[1]: invalid email address \"x\""),
            ("support = [\"a@b.co\", \"@\"]\n", "monitor.toml: support[2]: invalid email address \"@\""),
            ("from = \"nobody\"\n", "monitor.toml: from: invalid email address \"nobody\""),
            ("db = \"postgres://h/db\"\n", "monitor.toml: db: unsupported database URL postgres://h/db"),
            ("smtp = \"http://mail:25\"\n", "monitor.toml: smtp: invalid SMTP URL http://mail:25"),
            ("log_level = \"loud\"\n", "monitor.toml: log_level: invalid level \"loud\""),
            ("log_file = \"\"\n", "monitor.toml: log_file: empty"),
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
            "db = \"mysql://u:pr0xy@db\"\n",
            "smtp = \"smtp://u:pr0xy@mail:25?tls=maybe\"\n",
            "failures = \"mysql://u:pr0xy@db/m\"\n",
        ] {
            let e = file_error(text);
            assert!(e.starts_with("monitor.toml: ") && !e.contains("pr0xy"), "{text:?} → {e}");
        }
    }

    #[test]
    fn flags_and_variables_override_the_file_and_targets_keep_their_own_keys() {
        const FILE: &str = "interval = \"10s\"\ntimeout = \"4s\"\nfailures = 4\nremind = \"1h\"\n\
            support = [\"file@b.co\"]\ndb = \"sqlite://file.db\"\nfrom = \"file@b.co\"\n\
            log_file = \"file.log\"\nlog_level = \"debug\"\n\
            [[target]]\nurl = \"https://a.example.com/h\"\n\
            [[target]]\nurl = \"https://b.example.com/h\"\ninterval = \"1m\"\nremind = \"off\"\n";
        let c = with_file(FILE, &[], &[]).unwrap();
        assert_eq!((c.interval, c.timeout, c.thresholds.failures.get()), (secs(10), secs(4), 4));
        assert_eq!((c.targets[0].interval, c.targets[1].interval), (secs(10), secs(60)));
        assert_eq!((c.targets[0].remind, c.targets[1].remind), (Some(secs(3600)), None));
        assert_eq!((c.db_url.expose(), c.log_level), ("sqlite://file.db", log::LevelFilter::Debug));
        assert_eq!(c.log_file, Some(PathBuf::from("file.log")));

        let env = [
            ("INTERVAL", "20s"),
            ("FAILURE_THRESHOLD", "5"),
            ("DATABASE_URL", "sqlite://env.db"),
            ("LOG_LEVEL", "warn"),
            ("REMIND", "15m"),
        ];
        let c = with_file(FILE, &[], &env).unwrap();
        assert_eq!((c.interval, c.thresholds.failures.get()), (secs(20), 5), "variable > file");
        assert_eq!(c.targets[0].interval, secs(20), "the global default moved");
        assert_eq!(c.targets[1].interval, secs(60), "a target's own key stays");
        assert_eq!(c.targets[0].remind, Some(secs(15 * 60)));
        assert_eq!((c.db_url.expose(), c.log_level), ("sqlite://env.db", log::LevelFilter::Warn));

        let flags = [
            "--interval",
            "30s",
            "--failures",
            "6",
            "--db",
            "sqlite://flag.db",
            "-q",
            "--support",
            "flag@b.co",
            "--smtp",
            "smtp://mail:25",
            "--from",
            "flag@b.co",
            "--log-file",
            "flag.log",
            "--remind",
            "off",
        ];
        let c = with_file(FILE, &flags, &env).unwrap();
        assert_eq!((c.interval, c.thresholds.failures.get()), (secs(30), 6), "flag > variable");
        assert_eq!(c.timeout, secs(4), "what no flag sets still comes from the file");
        assert_eq!((c.db_url.expose(), c.log_level), ("sqlite://flag.db", log::LevelFilter::Warn));
        assert_eq!(c.log_file, Some(PathBuf::from("flag.log")));
        assert_eq!(c.targets[0].remind, None, "--remind off");
        match c.delivery {
            Delivery::Smtp(s) => {
                assert_eq!((s.to, s.from), (vec!["flag@b.co".to_string()], "flag@b.co".into()))
            }
            other => panic!("{other:?}"),
        }

        let e = with_file(FILE, &["--interval", "500ms"], &[]).unwrap_err().0;
        assert!(e.starts_with("--interval: 500ms is below the 1s floor"), "{e}");
    }

    #[test]
    fn secret_variables_apply_to_the_files_urls() {
        let file = "db = \"mysql://monitor@db/monitor\"\n";
        let c = with_file(file, &[], &[("DATABASE_PASSWORD", "s3cret")]).unwrap();
        assert_eq!(c.db_url, "mysql://monitor:s3cret@db/monitor");
        let c = with_file(file, &[], &[("DATABASE_URL_FILE", "/run/secrets/db_url")]).unwrap();
        assert_eq!(c.db_url, "mysql://monitor:fr0m-file@db:3306/monitor", "_FILE > file");
    }

    #[test]
    fn url_on_the_command_line_replaces_the_files_targets() {
        const FILE: &str = "interval = \"7s\"\n\
            [[region]]\nname = \"eu\"\nproxy = \"http://p:3128\"\n\
            [[target]]\nurl = \"https://a.example.com/h\"\ninterval = \"1m\"\nregions = [\"eu\"]\n\
            [[target]]\nurl = \"https://b.example.com/h\"\n";
        let c = with_file(FILE, &["--url", "https://c.example.com/h"], &[]).unwrap();
        assert_eq!(c.targets.len(), 1);
        let t = &c.targets[0];
        assert_eq!((t.name.as_str(), t.interval), ("https://c.example.com/h", secs(7)));
        assert_eq!(t.regions, ["eu"], "probed from every region the file defines");
        let c = with_file(FILE, &[], &[("API_URL", "https://d.example.com/h")]).unwrap();
        assert_eq!(c.targets[0].name, "https://d.example.com/h");
    }

    #[test]
    fn region_on_the_command_line_replaces_the_files_regions() {
        const FILE: &str = "[[region]]\nname = \"eu\"\nproxy = \"http://p:3128\"\n\
            [[target]]\nurl = \"https://a.example.com/h\"\n";
        let c = with_file(FILE, &["--region", "us=http://q:8080"], &[]).unwrap();
        assert_eq!(c.regions.len(), 1);
        assert_eq!(
            (c.regions[0].name.as_str(), c.targets[0].regions.clone()),
            ("us", vec!["us".into()])
        );
        let named =
            "[[region]]\nname = \"eu\"\n[[target]]\nurl = \"https://a/h\"\nregions = [\"eu\"]\n";
        let e = with_file(named, &["--region", "direct"], &[]).unwrap_err().0;
        assert!(
            e.starts_with("monitor.toml: target[1].regions[1]: region \"eu\" is not defined"),
            "{e}"
        );
        assert!(e.contains("--region/REGIONS replace"), "says why: {e}");
    }

    #[test]
    fn regions_default_to_every_defined_one_and_only_used_ones_are_kept() {
        const FILE: &str = "[[region]]\nname = \"eu\"\nproxy = \"http://p:3128\"\n\
            [[region]]\nname = \"us\"\nproxy = \"http://q:3128\"\n\
            [[region]]\nname = \"ap\"\nproxy = \"http://r:3128\"\n\
            [[target]]\nurl = \"https://a.example.com/h\"\nregions = [\"us\", \"direct\"]\n\
            [[target]]\nurl = \"https://b.example.com/h\"\nregions = [\"eu\"]\n";
        let c = with_file(FILE, &[], &[]).unwrap();
        let names: Vec<&str> = c.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["direct", "eu", "us"], "implicit direct first, unused ap left out");
        let e =
            file_error("[[target]]\nurl = \"https://a/h\"\nregions = [\"direct\", \"direct\"]\n");
        assert!(
            e.starts_with("monitor.toml: target[1].regions[2]: region \"direct\" is listed twice"),
            "{e}"
        );
        let c =
            with_file("[[region]]\nname = \"eu\"\nproxy = \"http://p:3128\"\n", &[], &[]).unwrap();
        assert_eq!(c.targets[0].regions, ["eu"], "the default target is probed from eu");
        let c = with_file("[[target]]\nurl = \"https://a/h\"\n", &[], &[]).unwrap();
        assert_eq!((c.targets[0].regions.clone(), c.regions.len()), (vec![DIRECT.to_string()], 1));
    }

    #[test]
    fn region_flags_and_variable_are_parsed() {
        let c = config(&["--region", "eu=http://p:3128"], &[]).unwrap();
        assert_eq!(
            c.regions,
            [Region { name: "eu".into(), proxy: Some("http://p:3128".into()), recipients: vec![] }]
        );
        assert_eq!(c.targets[0].regions, ["eu"], "not direct unless asked for");

        let c =
            config(&["--region", "direct", "--region", "us=http://u:p%40ss@q:80/"], &[]).unwrap();
        let names: Vec<&str> = c.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["direct", "us"]);
        assert_eq!(c.regions[0].proxy, None);
        assert_eq!(
            c.regions[1].proxy.as_deref(),
            Some("http://u:p%40ss@q:80"),
            "port kept, / dropped"
        );
        assert_eq!(
            c.regions[1].proxy_address().as_deref(),
            Some("http://u:p%40ss@q:80"),
            "still encoded: the HTTP client decodes it once"
        );
        assert_eq!(c.regions[0].proxy_address(), None);
        assert_eq!(c.targets[0].regions, ["direct", "us"]);

        let c = config(&[], &[("REGIONS", "direct, eu=http://p:3128")]).unwrap();
        assert_eq!(c.regions.len(), 2);
        let c = config(&["--region", "ap=http://r:1"], &[("REGIONS", "direct")]).unwrap();
        assert_eq!(c.regions[0].name, "ap", "the flag replaces REGIONS");
        let c = config(&[], &[]).unwrap();
        assert_eq!(
            (c.regions[0].name.as_str(), c.targets[0].regions.clone()),
            (DIRECT, vec![DIRECT.into()])
        );
    }

    #[test]
    fn bad_region_flags_are_refused_with_the_reason() {
        for (raw, why) in [
            ("eu", "has no proxy"),
            ("=http://p:3128", "invalid region name \"\""),
            ("e u=http://p:3128", "invalid region name"),
            (&format!("{}=http://p:1", "x".repeat(65)), "invalid region name"),
            ("eu=", "invalid proxy URL"),
            ("eu=https://p:3128", "unsupported scheme \"https\""),
            ("eu=socks5://p:1080", "unsupported scheme \"socks5\""),
            ("eu=http://p", "no port"),
            ("eu=http://p:3128/path", "ends with its port"),
            ("eu=http://p:3128?x=1", "ends with its port"),
            ("eu=http://[::1]:3128", "IPv6"),
            ("eu=http://us%3Aer:pw@p:3128", "user name cannot contain ':'"),
            ("direct=http://p:3128", "probes without a proxy"),
            ("eu=http://u:pa ss@p:3128", "contains ' '"),
        ] {
            let e = error(&["--region", raw]);
            assert!(e.starts_with("--region: ") && e.contains(why), "{raw:?} → {e}");
        }
        let e = error(&["--region", "eu=http://p:1", "--region", "eu=http://q:1"]);
        assert!(e.contains("region \"eu\" is given twice"), "{e}");
        for raw in ["eu=http://u:12/s3cret@p:3128", "eu=ftp://u:s3cret@p:1", "http://u:s3cret@p:1"]
        {
            let e = config(&["--region", raw], &[]).unwrap_err().to_string();
            assert!(e.starts_with("--region: ") && !e.contains("s3cret"), "{raw:?} → {e}");
        }
    }

    #[test]
    fn remind_applies_to_every_target() {
        let c = config(&["--remind", "10m", "--url", "http://a/h", "--url", "http://b/h"], &[]);
        let c = c.unwrap();
        assert!(c.targets.iter().all(|t| t.remind == Some(secs(600))), "{:?}", c.targets);
        assert_eq!(config(&[], &[]).unwrap().targets[0].remind, None, "off by default");
        assert_eq!(config(&[], &[("REMIND", "1h")]).unwrap().targets[0].remind, Some(secs(3600)));
        assert_eq!(
            config(&["--remind", "off"], &[("REMIND", "1h")]).unwrap().targets[0].remind,
            None
        );
        for bad in ["soon", "0s", "5"] {
            let e = error(&["--remind", bad]);
            assert!(e.starts_with("--remind: ") && e.contains("\"off\""), "{bad} → {e}");
        }
    }

    #[test]
    fn mail_goes_out_when_anyone_at_all_is_to_receive_it() {
        let target_only = "smtp = \"smtp://mail:25\"\n\
            [[target]]\nurl = \"https://a/h\"\nrecipients = [\"t@b.co\"]\n";
        match with_file(target_only, &[], &[]).unwrap().delivery {
            Delivery::Smtp(s) => assert!(s.to.is_empty(), "no global recipient: {s:?}"),
            other => panic!("{other:?}"),
        }
        let region_only = "smtp = \"smtp://mail:25\"\n\
            [[region]]\nname = \"eu\"\nproxy = \"http://p:3128\"\nrecipients = [\"eu@b.co\"]\n";
        assert!(matches!(with_file(region_only, &[], &[]).unwrap().delivery, Delivery::Smtp(_)));
        let unused_region = "smtp = \"smtp://mail:25\"\n\
            [[region]]\nname = \"eu\"\nproxy = \"http://p:3128\"\nrecipients = [\"eu@b.co\"]\n\
            [[target]]\nurl = \"https://a/h\"\nregions = [\"direct\"]\n";
        let c = with_file(unused_region, &[], &[]).unwrap();
        assert!(matches!(c.delivery, Delivery::LogOnly { ref why } if why.contains("recipient")));
        let no_smtp = "[[target]]\nurl = \"https://a/h\"\nrecipients = [\"t@b.co\"]\n";
        let c = with_file(no_smtp, &[], &[]).unwrap();
        assert!(matches!(c.delivery, Delivery::LogOnly { ref why } if why.contains("--smtp")));
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
}
