//! The "high" configuration step: raw [`Args`] become a validated [`Config`].
//!
//! After this step nothing downstream re-validates: a `Config` always has at least one http(s)
//! target, non-zero thresholds, an interval that respects the 1 s floor for remote hosts, and
//! known database/SMTP URL schemes. Every error names the option and what is accepted, and
//! callers exit with code 2 on it. The only outside world this step sees is handed in (the host
//! name, a file reader for `SMTP_PASSWORD_FILE`), so it stays testable.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Args, Command, Verbosity};
use crate::detector::Thresholds;
use crate::redact;

pub const DEFAULT_URL: &str = "https://api.qa.fitpay.ninja/health";
pub const DEFAULT_DB: &str = "sqlite://api-monitor.db";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Below this, probing a remote host looks like an attack to its firewall.
pub const INTERVAL_FLOOR: Duration = Duration::from_secs(1);
/// The longest target URL: what the `state.target` column holds (`VARCHAR(2048)`).
pub const MAX_URL_LEN: usize = 2048;
/// Thresholds above this are surely typos (an outage would take hours to confirm).
pub const MAX_THRESHOLD: u32 = 1000;

/// One monitored health endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, credentials included, used for probing only.
    pub url: String,
    /// The URL with any password masked: what logs, emails and the `state.target` column show.
    pub name: String,
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
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// `smtp://` or `smtps://` URL in the form `lettre` understands; may hold a password.
    pub url: String,
    pub from: String,
    pub to: Vec<String>,
}

/// Hand-written so the password inside `url` never reaches a log through `{:?}`.
impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("url", &redact::url(&self.url))
            .field("from", &self.from)
            .field("to", &self.to)
            .finish()
    }
}

/// Everything the monitor needs, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub command: Command,
    pub targets: Vec<Target>,
    pub interval: Duration,
    /// Whole seconds: the HTTP client's deadline has one-second resolution.
    pub timeout: Duration,
    pub thresholds: Thresholds,
    /// `sqlite://…` or `mysql://…`, may hold a password (print with [`redact::url`]).
    pub db_url: String,
    pub delivery: Delivery,
    pub log_level: log::LevelFilter,
    pub log_file: Option<PathBuf>,
}

/// A configuration value that cannot be used; the message starts with the option's name.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// What the configuration step may ask of the outside world.
pub trait Surroundings {
    /// This machine's host name, for the default sender address.
    fn host_name(&self) -> String;
    /// The contents of a file named by a `*_FILE` variable.
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

    let db_url = args.db.unwrap_or_else(|| DEFAULT_DB.to_string());
    match db_url.split_once("://") {
        Some(("sqlite" | "mysql", rest)) if !rest.is_empty() => {}
        _ => {
            return Err(ConfigError(format!(
                "--db: unsupported database URL {}: expected sqlite://PATH or \
                 mysql://USER:PASS@HOST:PORT/DB",
                redact::url(&db_url)
            )))
        }
    }

    let support: Vec<String> =
        args.support.iter().map(|s| address("--support", s)).collect::<Result<_, _>>()?;
    let from = match args.from {
        Some(from) => mailbox("--from", &from)?,
        None => default_sender(&world.host_name()),
    };
    let password = match (args.smtp_password, args.smtp_password_file) {
        (Some(p), _) => Some(p),
        (None, Some(path)) => Some(
            world
                .read_secret(&path)
                .map_err(|e| ConfigError(format!("SMTP_PASSWORD_FILE: cannot read {path}: {e}")))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
        (None, None) => None,
    };
    let smtp = args.smtp.map(|u| smtp_url(&u, password.as_deref())).transpose()?;
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

    Ok(Config {
        command: args.command,
        targets,
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
    Ok(Target { url: raw.to_string(), name: shown })
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

fn smtp_url(raw: &str, password: Option<&str>) -> Result<String, ConfigError> {
    let shown = redact::url(raw);
    let bad = |why: &str| {
        ConfigError(format!(
            "--smtp: invalid SMTP URL {shown}: {why}; expected smtp://HOST:PORT, \
             smtp://USER:PASS@HOST:587?tls=required or smtps://USER:PASS@HOST:465"
        ))
    };
    let mut url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
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
        if url.username().is_empty() {
            return Err(bad("a password is set (SMTP_PASSWORD) but the URL has no user name"));
        }
        url.set_password(Some(password)).map_err(|()| bad("cannot hold a password"))?;
    }
    Ok(url.to_string())
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
            match path {
                "/run/secrets/smtp" => Ok("fr0m-file\n".into()),
                _ => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")),
            }
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
        assert!(s.url.contains(":fr0m-file@"), "{}", redact::url(&s.url));
        let e = config(&["--smtp", "smtp://u@h:25"], &[("SMTP_PASSWORD_FILE", "/nope")]);
        assert!(e.unwrap_err().0.starts_with("SMTP_PASSWORD_FILE"));
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
    }

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(config(&["-v"], &[]).unwrap().log_level, log::LevelFilter::Debug);
        assert_eq!(config(&["-qq"], &[]).unwrap().log_level, log::LevelFilter::Error);
        let c = config(&[], &[("LOG_LEVEL", "warn")]).unwrap();
        assert_eq!(c.log_level, log::LevelFilter::Warn);
    }
}
