//! The "high" configuration step: raw [`Args`] become a validated [`Config`].
//!
//! After this step nothing downstream re-validates: a `Config` always has at least one http(s)
//! target, non-zero thresholds, an interval that respects the 1 s floor for remote hosts, and
//! known database/SMTP URL schemes. Every error names the option and what is accepted, and
//! callers exit with code 2 on it. The only outside world this step sees is handed in (the host
//! name, a file reader for the `*_FILE` secrets), so it stays testable.
//!
//! Secrets follow one rule: the flag wins over its variable, the variable over its `_FILE`
//! (Docker secrets), and a file loses exactly one trailing newline. A `*_PASSWORD` replaces the
//! password of its URL, percent-encoded so any character works. Every URL that may hold a
//! password is kept as a [`SecretUrl`], so `{:?}` of a [`Config`] never shows one, and every
//! error shows URLs through [`redact`].

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Args, Command, Verbosity};
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

/// One monitored health endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, credentials included, used for probing only. Never contains
    /// whitespace or control characters (they could split the HTTP request or a log line).
    pub url: SecretUrl,
    /// The URL with any password masked: what logs, emails and the `state.target` column show.
    pub name: String,
    /// Time between probe starts (from `--interval` or the target's `interval`).
    pub interval: Duration,
    /// Whole seconds: the HTTP client's deadline has one-second resolution.
    pub timeout: Duration,
    pub thresholds: Thresholds,
    /// Who gets this target's emails besides the global `--support` recipients.
    pub recipients: Vec<String>,
    /// Names of the [`Region`]s it is probed from, never empty (`direct` by default); each
    /// name is defined in [`Config::regions`].
    pub regions: Vec<String>,
    /// While an outage lasts, a reminder email every this long; `None`: no reminders.
    pub remind: Option<Duration>,
}

/// The name of the region that probes without a proxy, when no region is configured.
pub const DIRECT: &str = "direct";

/// Where probes come from: directly, or through an HTTP proxy in some geography.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    /// `http://[user:pass@]host:port`; `None` probes directly.
    pub proxy: Option<SecretUrl>,
    /// Who gets this region's emails besides the global and the target's recipients.
    pub recipients: Vec<String>,
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
    pub to: Vec<String>,
}

/// Everything the monitor needs, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub command: Command,
    pub targets: Vec<Target>,
    /// Every region a target refers to, each defined once; at least one.
    pub regions: Vec<Region>,
    /// The default (and, for the one-target command line, the only) interval; targets carry
    /// their own in [`Target::interval`].
    pub interval: Duration,
    /// Whole seconds: the HTTP client's deadline has one-second resolution.
    pub timeout: Duration,
    pub thresholds: Thresholds,
    /// `sqlite://…` or `mysql://…`; may hold a password, which `{}`/`{:?}` never show.
    pub db_url: SecretUrl,
    pub delivery: Delivery,
    pub log_level: log::LevelFilter,
    pub log_file: Option<PathBuf>,
}

/// A configuration value that cannot be used; the message starts with the option's name (or
/// the variable's, for `*_FILE` and `*_PASSWORD`). Any URL in it is shown redacted.
#[derive(Debug, thiserror::Error)]
#[error("{}", redact::text(.0))]
pub struct ConfigError(pub String);

/// What the configuration step may ask of the outside world.
pub trait Surroundings {
    /// This machine's host name, for the default sender address.
    fn host_name(&self) -> String;
    /// The contents of a file named by a `*_FILE` variable, as they are (the caller trims).
    fn read_secret(&self, path: &str) -> std::io::Result<String>;
}

/// Validates `args` into a [`Config`].
pub fn from_args(args: Args, world: &dyn Surroundings) -> Result<Config, ConfigError> {
    let urls = if args.urls.is_empty() { vec![DEFAULT_URL.to_string()] } else { args.urls };
    let targets = urls.iter().map(|u| target(u)).collect::<Result<Vec<_>, _>>()?;

    let interval = duration("--interval", args.interval.as_deref(), DEFAULT_INTERVAL)?;
    if interval < INTERVAL_FLOOR {
        if let Some(remote) = targets.iter().find(|t| !is_loopback(&t.url)) {
            return Err(ConfigError(format!(
                "--interval: {} is below the 1s floor, which applies because {} is not a \
                 loopback address (faster probing is only allowed against 127.0.0.1, ::1 or \
                 localhost)",
                crate::duration::human(interval),
                remote.name
            )));
        }
    }
    let timeout = duration("--timeout", args.timeout.as_deref(), DEFAULT_TIMEOUT)?;
    let timeout = Duration::from_secs(timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0));

    let thresholds = Thresholds {
        failures: threshold("--failures", args.failures.as_deref())?,
        successes: threshold("--successes", args.successes.as_deref())?,
    };

    let db = match (args.db, args.db_file) {
        (Some(url), _) => Setting { value: url, source: "--db" },
        (None, Some(path)) => read_file(world, "DATABASE_URL_FILE", &path)?,
        (None, None) => Setting { value: DEFAULT_DB.to_string(), source: "--db" },
    };
    let db_password = secret(
        world,
        (args.db_password, "DATABASE_PASSWORD"),
        (args.db_password_file, "DATABASE_PASSWORD_FILE"),
    )?;
    let db_url = database_url(&db, db_password.as_ref())?;

    let support: Vec<String> =
        args.support.iter().map(|s| address("--support", s)).collect::<Result<_, _>>()?;
    let from = match args.from {
        Some(from) => mailbox("--from", &from)?,
        None => default_sender(&world.host_name()),
    };
    let smtp = match (args.smtp, args.smtp_file) {
        (Some(url), _) => Some(Setting { value: url, source: "--smtp" }),
        (None, Some(path)) => Some(read_file(world, "SMTP_URL_FILE", &path)?),
        (None, None) => None,
    };
    let password = secret(
        world,
        (args.smtp_password, "SMTP_PASSWORD"),
        (args.smtp_password_file, "SMTP_PASSWORD_FILE"),
    )?;
    let smtp = smtp.map(|url| smtp_url(&url, password.as_ref())).transpose()?;
    let delivery = match (smtp, support) {
        (Some(url), to) if !to.is_empty() => Delivery::Smtp(SmtpSettings { url, from, to }),
        (Some(_), _) => Delivery::LogOnly { why: "no --support recipient is set".into() },
        (None, to) if !to.is_empty() => Delivery::LogOnly { why: "no --smtp server is set".into() },
        (None, _) => Delivery::LogOnly { why: "neither --smtp nor --support is set".into() },
    };

    let log_level = match args.verbosity {
        Verbosity::Default | Verbosity::Flags(0) => log::LevelFilter::Info,
        Verbosity::Flags(1) => log::LevelFilter::Debug,
        Verbosity::Flags(n) if n >= 2 => log::LevelFilter::Trace,
        Verbosity::Flags(-1) => log::LevelFilter::Warn,
        Verbosity::Flags(_) => log::LevelFilter::Error,
        Verbosity::Env(level) => level,
    };

    let targets = targets
        .into_iter()
        .map(|t| Target {
            interval,
            timeout,
            thresholds,
            recipients: Vec::new(),
            regions: vec![DIRECT.to_string()],
            remind: None,
            ..t
        })
        .collect();
    let regions = vec![Region { name: DIRECT.to_string(), proxy: None, recipients: Vec::new() }];
    Ok(Config {
        command: args.command,
        targets,
        regions,
        interval,
        timeout,
        thresholds,
        db_url,
        delivery,
        log_level,
        log_file: args.log_file.map(PathBuf::from),
    })
}

fn target(raw: &str) -> Result<Target, ConfigError> {
    let shown = redact::url(raw);
    // The URL parser would silently drop a CR, LF or tab, but the probe sends the text as it is:
    // such a URL could split the HTTP request, or a log line.
    if let Some(c) = raw.chars().find(|&c| c.is_control() || c.is_whitespace() || is_bidi(c)) {
        return Err(ConfigError(format!(
            "--url: invalid URL {shown:?}: it contains {c:?}; percent-encode whitespace and \
             control characters (%20, %0D, %0A)"
        )));
    }
    if shown.len() > MAX_URL_LEN {
        return Err(ConfigError(format!(
            "--url: URL is {} characters long, the most a target may have is {MAX_URL_LEN}",
            shown.len()
        )));
    }
    let url = url::Url::parse(raw)
        .map_err(|e| ConfigError(format!("--url: invalid URL {shown}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError(format!(
            "--url: invalid URL {shown}: expected http://HOST[:PORT]/PATH or https://…"
        )));
    }
    Ok(Target {
        url: SecretUrl::new(raw),
        name: shown,
        interval: DEFAULT_INTERVAL,
        timeout: DEFAULT_TIMEOUT,
        thresholds: DEFAULT_THRESHOLDS,
        recipients: Vec::new(),
        regions: vec![DIRECT.to_string()],
        remind: None,
    })
}

/// Unicode bidirectional controls: invisible, and able to make a log line read backwards.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A raw setting and where it came from, so an error names what the operator set.
struct Setting {
    value: String,
    /// The option or variable: `--db`, `DATABASE_URL_FILE`, `SMTP_PASSWORD`, …
    source: &'static str,
}

/// The value of a variable (`direct`) if set, else the contents of the file its `_FILE`
/// variable names, else `None`. Each comes with its variable's name.
fn secret(
    world: &dyn Surroundings,
    direct: (Option<String>, &'static str),
    file: (Option<String>, &'static str),
) -> Result<Option<Setting>, ConfigError> {
    match (direct, file) {
        ((Some(value), source), _) => Ok(Some(Setting { value, source })),
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
    Ok(Setting { value, source: variable })
}

/// Validates a database URL and puts `password` into it.
fn database_url(db: &Setting, password: Option<&Setting>) -> Result<SecretUrl, ConfigError> {
    let option = db.source;
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

fn duration(option: &str, raw: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
    let Some(raw) = raw else { return Ok(default) };
    let d = crate::duration::parse(raw)
        .map_err(|e| ConfigError(format!("{option}: invalid duration {raw:?}: {e}")))?;
    if d.is_zero() {
        return Err(ConfigError(format!("{option}: must be longer than zero, got {raw:?}")));
    }
    Ok(d)
}

fn threshold(option: &str, raw: Option<&str>) -> Result<NonZeroU32, ConfigError> {
    let Some(raw) = raw else { return Ok(NonZeroU32::new(2).expect("2 is not zero")) };
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
    let (option, raw) = (smtp.source, smtp.value.as_str());
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
    fn timeout_rounds_up_to_whole_seconds() {
        assert_eq!(config(&["--timeout", "1500ms"], &[]).unwrap().timeout, Duration::from_secs(2));
        assert_eq!(config(&["--timeout", "300ms"], &[]).unwrap().timeout, Duration::from_secs(1));
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
}
