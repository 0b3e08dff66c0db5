//! Command-line and environment parsing — the "low" step: it only reads arguments and the
//! environment variables it is handed, and never touches the world. Turning the raw values into
//! a validated [`crate::config::Config`] is the next step's job.
//!
//! Every option also reads an environment variable; a flag wins over its variable, and a
//! variable that loses is not read at all. Repeatable options (`--url`, `--support`,
//! `--region`) take their variable as a comma-separated list. A variable that is set but blank
//! is refused, naming it: taken for unset it would quietly apply a default (monitor the
//! default URL, open the default database). `LISTEN` is the exception: blank is `off`, as
//! `--listen ''` is, which is also the default. Each value keeps where it came from
//! ([`Given`]), so that the config step's errors name the flag or the variable.
//! `--config FILE` only names a TOML file here; the config step reads it and lets these
//! options win over its values (see [`crate::config::file`]). Secrets can
//! also come from files (the Docker secrets convention): `DATABASE_URL_FILE`, `SMTP_URL_FILE`,
//! `DATABASE_PASSWORD_FILE` and `SMTP_PASSWORD_FILE` only carry a path here; the config step
//! reads them, and only when neither the flag nor the plain variable is set.
//!
//! Nothing this step prints may show a password: [`Args`]' `Debug` masks them, and
//! [`CliError`] passes its message through [`redact::text`] (a URL typed where a command was
//! expected ends up in the message).

use std::ffi::OsString;
use std::fmt;

use crate::redact;

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Monitor until Ctrl-C / SIGTERM.
    Run,
    /// Probe each target once, print the result, exit 0 healthy / 1 not.
    Check,
    /// `check --healthz`: ask the monitor running here (its `--listen` address) for
    /// `/healthz`, exit 0 when it answers 200, 1 otherwise: the container health check, which
    /// must judge the monitor, not the API it watches (that one is down during every outage
    /// the monitor reports).
    Healthz,
    /// Print an uptime report from the database.
    Report,
    /// List the notifications not yet delivered (pending) and refused for good (dead);
    /// `--requeue` sends dead ones again.
    Outbox,
    /// Set, list or clear silences (maintenance set at run time, kept in the database).
    Silence,
}

/// What `api-monitor silence` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SilenceAction {
    /// `--target URL|all --for DUR [--reason TEXT]`.
    Add { target: String, length: String, reason: Option<String> },
    /// `--list`, or nothing.
    List,
    /// `--clear ID|URL|all`.
    Clear(String),
}

/// Which dead notifications `outbox --requeue` sends again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    All,
    One(i64),
}

/// How loud the log is, from `-v`/`-q` or `LOG_LEVEL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// `-v` count minus `-q` count; `None` when neither flag was given (then `LOG_LEVEL`).
    Flags(i8),
    Env(log::LevelFilter),
    Default,
}

/// A value as typed, and where: the flag (`--failures`) or the variable (`FAILURE_THRESHOLD`),
/// so that an error about it names what the operator set. `Debug` shows URLs in it masked.
#[derive(Clone, PartialEq, Eq)]
pub struct Given {
    pub value: String,
    pub source: &'static str,
}

impl fmt::Debug for Given {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}", self.source, redact::text(&self.value))
    }
}

/// Raw option values, flag first, else environment, else `None` (the default is the config
/// step's decision, so it is documented in one place). `Debug` masks every password.
#[derive(Clone, PartialEq, Eq)]
pub struct Args {
    pub command: Command,
    /// `--config FILE` / `CONFIG`: a TOML file with targets, regions and defaults.
    pub config: Option<Given>,
    pub urls: Vec<Given>,
    pub support: Vec<Given>,
    pub interval: Option<Given>,
    pub timeout: Option<Given>,
    /// `--slow DUR` / `SLOW`: a healthy answer slower than this fails; unset: off.
    pub slow: Option<Given>,
    pub failures: Option<Given>,
    pub successes: Option<Given>,
    pub db: Option<Given>,
    /// `DATABASE_URL_FILE`: a file holding the whole database URL; used when `db` is unset.
    pub db_file: Option<String>,
    /// `DATABASE_PASSWORD`; replaces a password in the database URL.
    pub db_password: Option<String>,
    /// `DATABASE_PASSWORD_FILE`: a file holding that password; used when `db_password` is unset.
    pub db_password_file: Option<String>,
    pub smtp: Option<Given>,
    /// `SMTP_URL_FILE`: a file holding the whole SMTP URL; used when `smtp` is unset.
    pub smtp_file: Option<String>,
    /// `SMTP_PASSWORD`; replaces a password in the SMTP URL.
    pub smtp_password: Option<String>,
    /// `SMTP_PASSWORD_FILE`: a file holding that password; used when `smtp_password` is unset.
    pub smtp_password_file: Option<String>,
    pub from: Option<Given>,
    /// `--region NAME=PROXY_URL` or `--region direct`, repeatable / `REGIONS`, as typed: the
    /// config step splits and validates them. May hold proxy passwords.
    pub regions: Vec<Given>,
    /// `--remind DUR` / `REMIND`: reminder spacing during an outage, or `off`.
    pub remind: Option<Given>,
    /// `--listen ADDR` / `LISTEN`: where to serve /metrics, /healthz and the status page.
    pub listen: Option<Given>,
    /// `--concurrency N` / `CONCURRENCY`: the most probes in flight at once.
    pub concurrency: Option<Given>,
    /// `--cluster NAME` / `CLUSTER`: run as a member of the cluster NAME.
    pub cluster: Option<Given>,
    /// `--site NAME` / `SITE`: where this member probes from.
    pub site: Option<Given>,
    /// `--lease DUR` / `LEASE`: how long a silent member (or leader) stays a member.
    pub lease: Option<Given>,
    /// `--quorum K` / `QUORUM`: sites that must see a target down for a global outage.
    pub quorum: Option<Given>,
    /// `report --since DUR`.
    pub since: Option<String>,
    /// `report --target URL`.
    pub target: Option<String>,
    /// `report --json`.
    pub json: bool,
    /// `check --healthz` (parsing turns it into [`Command::Healthz`]).
    pub healthz: bool,
    /// `outbox --requeue ID|all`: make dead notifications pending again.
    pub requeue: Option<Requeue>,
    /// `silence --for DUR`.
    pub silence_for: Option<String>,
    /// `silence --reason TEXT`.
    pub reason: Option<String>,
    /// `silence --list`.
    pub list: bool,
    /// `silence --clear ID|URL|all`.
    pub clear: Option<String>,
    pub log_file: Option<Given>,
    pub verbosity: Verbosity,
}

impl Args {
    /// What `api-monitor silence` was asked to do, from `--target`, `--for`, `--reason`,
    /// `--list` and `--clear`; a combination that means nothing is refused by flag.
    pub fn silence_action(&self) -> Result<SilenceAction, CliError> {
        let adding = self.target.is_some() || self.silence_for.is_some() || self.reason.is_some();
        match (&self.clear, self.list, adding) {
            (Some(_), true, _) | (Some(_), _, true) => Err(CliError(
                "--clear: give it alone (an id from `silence --list`, a target URL, or `all`)"
                    .into(),
            )),
            (Some(which), false, false) => Ok(SilenceAction::Clear(which.clone())),
            (None, true, true) => {
                Err(CliError("--list: give it alone; --target/--for set a silence".into()))
            }
            (None, _, false) => Ok(SilenceAction::List),
            (None, false, true) => match (&self.target, &self.silence_for) {
                (Some(target), Some(length)) => Ok(SilenceAction::Add {
                    target: target.clone(),
                    length: length.clone(),
                    reason: self.reason.clone(),
                }),
                (None, _) => Err(CliError(
                    "--target: which target to silence: its URL (as configured), or `all`".into(),
                )),
                (Some(_), None) => {
                    Err(CliError("--for: how long the silence lasts, e.g. --for 2h".into()))
                }
            },
        }
    }
}

/// Hand-written so that `{:?}` of the arguments (in a test failure, a debug line) never shows
/// a password: URLs are redacted, passwords shown as `***`. File paths are not secret.
impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = |p: &Option<String>| p.as_ref().map(|_| redact::MASK);
        f.debug_struct("Args")
            .field("command", &self.command)
            .field("config", &self.config)
            .field("urls", &self.urls)
            .field("support", &self.support)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("slow", &self.slow)
            .field("failures", &self.failures)
            .field("successes", &self.successes)
            .field("db", &self.db)
            .field("db_file", &self.db_file)
            .field("db_password", &password(&self.db_password))
            .field("db_password_file", &self.db_password_file)
            .field("smtp", &self.smtp)
            .field("smtp_file", &self.smtp_file)
            .field("smtp_password", &password(&self.smtp_password))
            .field("smtp_password_file", &self.smtp_password_file)
            .field("from", &self.from)
            .field("regions", &self.regions)
            .field("remind", &self.remind)
            .field("listen", &self.listen)
            .field("concurrency", &self.concurrency)
            .field("cluster", &self.cluster)
            .field("site", &self.site)
            .field("lease", &self.lease)
            .field("quorum", &self.quorum)
            .field("since", &self.since)
            .field("target", &self.target.as_deref().map(redact::url))
            .field("json", &self.json)
            .field("healthz", &self.healthz)
            .field("log_file", &self.log_file)
            .field("verbosity", &self.verbosity)
            .finish()
    }
}

/// The result of parsing: either work to do, or a request for help/version text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Help,
    Version,
    Go(Box<Args>),
}

/// A command line that cannot be understood. The message names the option; any URL in it is
/// shown redacted.
#[derive(Debug, thiserror::Error)]
#[error("{}", redact::text(.0))]
pub struct CliError(pub String);

impl From<lexopt::Error> for CliError {
    fn from(e: lexopt::Error) -> Self {
        CliError(redact::text(&e.to_string()))
    }
}

pub const HELP: &str = "\
api-monitor — watch an HTTP health API and email support when it goes down and comes back

USAGE:
    api-monitor [run] [OPTIONS]     monitor until Ctrl-C / SIGTERM (default)
    api-monitor check [OPTIONS]     probe each target once; exit 0 healthy, 1 not
    api-monitor check --healthz [OPTIONS]
                                    ask the monitor running here for its /healthz (at
                                    --listen/LISTEN); exit 0 when it answers 200, 1 not:
                                    a container health check
    api-monitor report [--since DUR] [--target URL] [--json] [OPTIONS]
                                    uptime and p50/p95 latency from the database
                                    [default --since 7d]
    api-monitor outbox [--requeue ID|all] [OPTIONS]
                                    notifications not yet delivered, and those the mail
                                    server refused for good (dead); --requeue sends dead
                                    ones again (at the monitor's next start or within 1m)
    api-monitor silence --target URL|all --for DUR [--reason TEXT] [OPTIONS]
                                    hold back a target's notifications for DUR (kept in
                                    the database: every instance honours it within 10s,
                                    a restarted one too); one summary when it ends
    api-monitor silence [--list] | --clear ID|URL|all [OPTIONS]
                                    list the silences not ended yet; end some early
    api-monitor --help | --version

A probe fails unless GET <url> answers HTTP 200 with a JSON body whose \"status\" is \"OK\".
FAILURES failed probes in a row are an outage, SUCCESSES good probes in a row a recovery.

OPTIONS (each also read from the environment variable shown; the flag wins, and a variable
that loses is not read. A variable set but blank is refused, except LISTEN= which is off):
    --config FILE      TOML file with targets, regions    CONFIG
                       and defaults (examples/monitor.toml documents every key); it
                       needs a [[target]] unless --url/API_URL is given
    --url URL          target health URL, repeatable      API_URL (comma-separated)
                       [default, only when neither --url, API_URL nor --config is
                       given: https://api.qa.fitpay.ninja/health]
    --support EMAIL    recipient, repeatable              SUPPORT (comma-separated)
                       [default: none — notifications are only logged]
    --interval DUR     time between probe starts          INTERVAL  [default: 5s]
                       (at least 1s unless every target is on loopback)
    --timeout DUR      whole-request deadline per probe   TIMEOUT   [default: 5s]
                       (at least 100ms)
    --slow DUR         a healthy answer slower than DUR   SLOW      [default: off]
                       fails (`slow: 2.31 s > 2s`); shorter than the timeout
    --failures N       failed probes in a row = outage    FAILURE_THRESHOLD  [default: 2]
    --successes N      good probes in a row = recovery    SUCCESS_THRESHOLD  [default: 2]
    --region NAME=URL  probe from region NAME through     REGIONS (comma-separated)
                       the HTTP proxy http://[USER:PASS@]HOST:PORT, repeatable;
                       `--region direct` probes without a proxy  [default: direct]
    --remind DUR       email a reminder every DUR while   REMIND    [default: off]
                       an outage lasts
    --db URL           sqlite://PATH or                   DATABASE_URL
                       mysql://USER:PASS@HOST:PORT/DB     [default: sqlite://api-monitor.db]
                       password also from DATABASE_PASSWORD or DATABASE_PASSWORD_FILE
    --smtp URL         smtp://HOST:PORT (plain),          SMTP_URL  [default: none]
                       smtp://USER:PASS@HOST:587?tls=required (STARTTLS),
                       smtps://USER:PASS@HOST:465 (TLS)
                       password also from SMTP_PASSWORD or SMTP_PASSWORD_FILE
    --from EMAIL       sender address                     MAIL_FROM [default: api-monitor@<hostname>]
    --listen ADDR      serve /metrics (Prometheus),       LISTEN    [default: off]
                       /healthz and a status page at / (e.g. 127.0.0.1:9898;
                       beyond loopback only if you mean it: the data is read-only)
    --concurrency N    most probes in flight at once      CONCURRENCY
                       (on one thread, a socket each) [default: enough for every
                       target to hang for its whole timeout, at most 1024
                       and within the open-file limit]
    --cluster NAME     run as a member of cluster NAME:   CLUSTER   [default: off]
                       instances sharing the MySQL --db and NAME split the targets
                       of each site and send each email once (docs/cluster.md)
    --site NAME        where this member probes from      SITE      [default: direct]
    --lease DUR        a member silent this long is gone  LEASE     [default: 15s]
                       (3s to 10m; members beat every third of it)
    --quorum K         sites that must see a target down  QUORUM
                       for an outage [default: a majority of the live sites]
    --log-file PATH    also append the log to PATH        LOG_FILE
    -v, --verbose      more log (-v debug: every probe, -vv trace, the most)
    -q, --quiet        less log (-q warnings, -qq errors) LOG_LEVEL=error|warn|info|debug|trace
                       (-v and -q together are refused)
    -h, --help         print this help
    -V, --version      print the version

DURATIONS: 500ms, 5s, 2m, 1h, 1m30s, 1d; --remind also takes `off`. Each is at most 24h
           (report --since: at most 10y, default 7d; silence --for: at most 90d).
SILENCES:  `silence` reads --db/DATABASE_URL/--config like `run`; --target is a URL as the
           monitor shows it, or `all`. Planned windows go in the config file ([[maintenance]]).
CONFIG:    for each setting, flag > variable > --config file > default; a target's own key
           in the file wins over the global one. --url/API_URL replace the file's targets,
           --region/REGIONS its regions, --support/SUPPORT its support list.
SECRETS:   DATABASE_URL_FILE, SMTP_URL_FILE, DATABASE_PASSWORD_FILE and SMTP_PASSWORD_FILE
           name a file holding the value of the variable without _FILE (Docker secrets; one
           trailing newline is ignored). The flag wins over the variable, the variable over
           its _FILE. A *_PASSWORD replaces the password in its URL; special characters need
           no escaping there. A password written into a URL must have / ? # % percent-encoded
           (%2F %3F %23 %25); an @ may stay as it is (the last @ ends USER:PASS).
           Passwords are never printed: URLs are shown as USER:***@HOST.
SIGNALS:   SIGINT/SIGTERM stop cleanly; SIGHUP re-reads the configuration (an invalid one is
           refused and the running one stays; docs/configuration.md#live-reload-sighup).
EXIT CODES: 0 stopped cleanly / check healthy, 1 check unhealthy or runtime failure,
            2 bad command line or configuration.
";

/// Parses `args` (without the program name), falling back to `env` for unset options.
pub fn parse_from<I>(args: I, env: &dyn Fn(&str) -> Option<String>) -> Result<Parsed, CliError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;

    let mut parser = lexopt::Parser::from_args(args);
    let mut command = None;
    let mut a = Args {
        command: Command::Run,
        config: None,
        urls: Vec::new(),
        support: Vec::new(),
        interval: None,
        timeout: None,
        slow: None,
        failures: None,
        successes: None,
        db: None,
        db_file: None,
        db_password: None,
        db_password_file: None,
        smtp: None,
        smtp_file: None,
        smtp_password: None,
        smtp_password_file: None,
        from: None,
        regions: Vec::new(),
        remind: None,
        listen: None,
        concurrency: None,
        cluster: None,
        site: None,
        lease: None,
        quorum: None,
        since: None,
        target: None,
        json: false,
        healthz: false,
        requeue: None,
        silence_for: None,
        reason: None,
        list: false,
        clear: None,
        log_file: None,
        verbosity: Verbosity::Default,
    };
    // How many -v and -q.
    let (mut louder, mut quieter) = (0u32, 0u32);

    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Short('v') | Long("verbose") => louder = louder.saturating_add(1),
            Short('q') | Long("quiet") => quieter = quieter.saturating_add(1),
            Long("config") => a.config = Some(given(&mut parser, "--config")?),
            Long("url") => a.urls.push(given(&mut parser, "--url")?),
            Long("support") => a.support.push(given(&mut parser, "--support")?),
            Long("interval") => a.interval = Some(given(&mut parser, "--interval")?),
            Long("timeout") => a.timeout = Some(given(&mut parser, "--timeout")?),
            Long("slow") => a.slow = Some(given(&mut parser, "--slow")?),
            Long("failures") => a.failures = Some(given(&mut parser, "--failures")?),
            Long("successes") => a.successes = Some(given(&mut parser, "--successes")?),
            Long("db") => a.db = Some(given(&mut parser, "--db")?),
            Long("smtp") => a.smtp = Some(given(&mut parser, "--smtp")?),
            Long("from") => a.from = Some(given(&mut parser, "--from")?),
            Long("region") => a.regions.push(given(&mut parser, "--region")?),
            Long("remind") => a.remind = Some(given(&mut parser, "--remind")?),
            Long("listen") => a.listen = Some(given(&mut parser, "--listen")?),
            Long("concurrency") => a.concurrency = Some(given(&mut parser, "--concurrency")?),
            Long("cluster") => a.cluster = Some(given(&mut parser, "--cluster")?),
            Long("site") => a.site = Some(given(&mut parser, "--site")?),
            Long("lease") => a.lease = Some(given(&mut parser, "--lease")?),
            Long("quorum") => a.quorum = Some(given(&mut parser, "--quorum")?),
            Long("since") => a.since = Some(text(&mut parser, "--since")?),
            Long("target") => a.target = Some(text(&mut parser, "--target")?),
            Long("json") => a.json = true,
            Long("healthz") => a.healthz = true,
            Long("requeue") => {
                let value = text(&mut parser, "--requeue")?;
                a.requeue = Some(match value.as_str() {
                    "all" => Requeue::All,
                    id => {
                        Requeue::One(id.parse().ok().filter(|&n: &i64| n > 0).ok_or_else(|| {
                            CliError(format!(
                                "--requeue: expected a notification id or `all`, got {id:?}"
                            ))
                        })?)
                    }
                });
            }
            Long("for") => a.silence_for = Some(text(&mut parser, "--for")?),
            Long("reason") => a.reason = Some(text(&mut parser, "--reason")?),
            Long("list") => a.list = true,
            Long("clear") => a.clear = Some(text(&mut parser, "--clear")?),
            Long("log-file") => a.log_file = Some(given(&mut parser, "--log-file")?),
            Value(word) if command.is_none() => {
                command = Some(match word.to_str() {
                    Some("run") => Command::Run,
                    Some("check") => Command::Check,
                    Some("report") => Command::Report,
                    Some("outbox") => Command::Outbox,
                    Some("silence") => Command::Silence,
                    _ => {
                        return Err(CliError(redact::text(&format!(
                            "unknown command {word:?}: expected `run`, `check`, `report`, \
                             `outbox` or `silence`"
                        ))))
                    }
                })
            }
            _ => return Err(arg.unexpected().into()),
        }
    }

    a.command = command.unwrap_or(Command::Run);
    let loudness = match (louder, quieter) {
        (0, 0) => None,
        (v @ 1..=2, 0) => Some(v as i8),
        (0, q @ 1..=2) => Some(-(q as i8)),
        (_, 0) => {
            return Err(CliError(format!(
                "-v: given {louder} times; -vv (trace, every detail) is the most verbose level"
            )))
        }
        (0, _) => {
            return Err(CliError(format!(
                "-q: given {quieter} times; -qq (errors only) is the quietest level"
            )))
        }
        _ => return Err(CliError("-v and -q: give one or the other, not both".into())),
    };
    if !matches!(a.command, Command::Report | Command::Silence) && a.target.is_some() {
        return Err(CliError("--target: only `api-monitor report` and `silence` take it".into()));
    }
    if a.command != Command::Silence {
        let only_silence = [
            ("--for", a.silence_for.is_some()),
            ("--reason", a.reason.is_some()),
            ("--list", a.list),
            ("--clear", a.clear.is_some()),
        ];
        if let Some((flag, _)) = only_silence.iter().find(|(_, given)| *given) {
            return Err(CliError(format!("{flag}: only `api-monitor silence` takes it")));
        }
    }
    if a.command == Command::Silence {
        a.silence_action()?;
    }
    if a.command != Command::Report {
        let only_report = [("--since", a.since.is_some()), ("--json", a.json)];
        if let Some((flag, _)) = only_report.iter().find(|(_, given)| *given) {
            return Err(CliError(format!("{flag}: only `api-monitor report` takes it")));
        }
    }
    if a.healthz {
        if a.command != Command::Check {
            return Err(CliError("--healthz: only `api-monitor check` takes it".into()));
        }
        a.command = Command::Healthz;
    }
    if a.command != Command::Outbox && a.requeue.is_some() {
        return Err(CliError("--requeue: only `api-monitor outbox` takes it".into()));
    }
    // Each variable is read only when it is to be used: when neither its flag nor a variable
    // that wins over it is set. Set but blank, it is a mistake (`API_URL=`, or an unset shell
    // variable in `-e API_URL=$URL`), never taken for "unset": that would quietly monitor the
    // default URL, or use the default database.
    let variable = |name: &'static str| -> Result<Option<Given>, CliError> {
        match env(name) {
            Some(value) if value.trim().is_empty() => {
                Err(CliError(format!("{name}: set but blank; give it a value, or unset it")))
            }
            value => Ok(value.map(|value| Given { value, source: name })),
        }
    };
    // A comma-separated list; blank items (`a,,b`, a trailing comma) are dropped.
    let list = |name: &'static str| -> Result<Vec<Given>, CliError> {
        let Some(raw) = variable(name)? else { return Ok(Vec::new()) };
        let items: Vec<Given> = (raw.value.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|value| Given { value: value.to_owned(), source: name })
            .collect();
        if items.is_empty() {
            return Err(CliError(format!("{name}: set but holds only commas; give it a value")));
        }
        Ok(items)
    };
    if a.urls.is_empty() {
        a.urls = list("API_URL")?;
    }
    if a.support.is_empty() {
        a.support = list("SUPPORT")?;
    }
    if a.regions.is_empty() {
        a.regions = list("REGIONS")?;
    }
    let fallback = |slot: &mut Option<Given>, name: &'static str| -> Result<(), CliError> {
        if slot.is_none() {
            *slot = variable(name)?;
        }
        Ok(())
    };
    fallback(&mut a.config, "CONFIG")?;
    fallback(&mut a.interval, "INTERVAL")?;
    fallback(&mut a.timeout, "TIMEOUT")?;
    fallback(&mut a.slow, "SLOW")?;
    fallback(&mut a.failures, "FAILURE_THRESHOLD")?;
    fallback(&mut a.successes, "SUCCESS_THRESHOLD")?;
    fallback(&mut a.db, "DATABASE_URL")?;
    fallback(&mut a.smtp, "SMTP_URL")?;
    fallback(&mut a.from, "MAIL_FROM")?;
    fallback(&mut a.remind, "REMIND")?;
    fallback(&mut a.concurrency, "CONCURRENCY")?;
    fallback(&mut a.cluster, "CLUSTER")?;
    fallback(&mut a.site, "SITE")?;
    fallback(&mut a.lease, "LEASE")?;
    fallback(&mut a.quorum, "QUORUM")?;
    fallback(&mut a.log_file, "LOG_FILE")?;
    // Blank means what `--listen ''` means: not served, the default.
    if a.listen.is_none() {
        a.listen = env("LISTEN").map(|value| Given { value, source: "LISTEN" });
    }
    // The secrets' variables, with no flag of their own: a `_FILE` only when the variable it
    // stands for is unset (and, for a URL, the flag too).
    let secret = |slot: &mut Option<String>, name: &'static str| -> Result<(), CliError> {
        *slot = variable(name)?.map(|g| g.value);
        Ok(())
    };
    if a.db.is_none() {
        secret(&mut a.db_file, "DATABASE_URL_FILE")?;
    }
    secret(&mut a.db_password, "DATABASE_PASSWORD")?;
    if a.db_password.is_none() {
        secret(&mut a.db_password_file, "DATABASE_PASSWORD_FILE")?;
    }
    if a.smtp.is_none() {
        secret(&mut a.smtp_file, "SMTP_URL_FILE")?;
    }
    secret(&mut a.smtp_password, "SMTP_PASSWORD")?;
    if a.smtp_password.is_none() {
        secret(&mut a.smtp_password_file, "SMTP_PASSWORD_FILE")?;
    }

    a.verbosity = match loudness {
        Some(n) => Verbosity::Flags(n),
        None => match variable("LOG_LEVEL")? {
            Some(Given { value: level, .. }) => {
                Verbosity::Env(level.trim().parse().map_err(|_| {
                    CliError(format!(
                        "LOG_LEVEL: invalid level {level:?}: expected error, warn, info, debug \
                         or trace"
                    ))
                })?)
            }
            None => Verbosity::Default,
        },
    };
    Ok(Parsed::Go(Box::new(a)))
}

/// The value of `option` as UTF-8 text, from the flag.
fn given(parser: &mut lexopt::Parser, option: &'static str) -> Result<Given, CliError> {
    text(parser, option).map(|value| Given { value, source: option })
}

/// The value of `option` as UTF-8 text.
fn text(parser: &mut lexopt::Parser, option: &str) -> Result<String, CliError> {
    let value = parser.value()?;
    value.into_string().map_err(|v| CliError(format!("{option}: value {v:?} is not valid UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn go(args: &[&str], env: &dyn Fn(&str) -> Option<String>) -> Args {
        match parse_from(args.iter().copied(), env).expect("parses") {
            Parsed::Go(a) => *a,
            other => panic!("expected arguments, got {other:?}"),
        }
    }

    /// Each value with where it was given, to compare.
    fn seen(given: &[Given]) -> Vec<(&str, &str)> {
        given.iter().map(|g| (g.value.as_str(), g.source)).collect()
    }

    fn one(given: &Option<Given>) -> Option<(&str, &str)> {
        given.as_ref().map(|g| (g.value.as_str(), g.source))
    }

    #[test]
    fn defaults_are_left_to_the_config_step() {
        let a = go(&[], &no_env);
        assert_eq!(a.command, Command::Run);
        assert!(a.urls.is_empty() && a.support.is_empty());
        assert_eq!((a.interval, a.db, a.verbosity), (None, None, Verbosity::Default));
    }

    #[test]
    fn healthz_turns_check_into_the_monitors_own_health_check_and_only_check() {
        assert_eq!(go(&["check", "--healthz"], &no_env).command, Command::Healthz);
        assert_eq!(go(&["--healthz", "check"], &no_env).command, Command::Healthz);
        for command in [&["--healthz"][..], &["run", "--healthz"], &["report", "--healthz"]] {
            let e = parse_from(command.iter().copied(), &no_env).expect_err("refused").0;
            assert_eq!(e, "--healthz: only `api-monitor check` takes it", "{command:?}");
        }
    }

    #[test]
    fn flags_are_read_in_both_spellings_and_repeat() {
        let a = go(
            &["check", "--url", "http://a/health", "--url=http://b/health", "--support", "x@y.z"],
            &no_env,
        );
        assert_eq!(a.command, Command::Check);
        assert_eq!(seen(&a.urls), [("http://a/health", "--url"), ("http://b/health", "--url")]);
        assert_eq!(seen(&a.support), [("x@y.z", "--support")]);
    }

    #[test]
    fn environment_fills_unset_options_and_flags_win() {
        let env = |name: &str| match name {
            "API_URL" => Some("http://a/health, http://b/health".to_string()),
            "SUPPORT" => Some("one@x.io,two@x.io".to_string()),
            "INTERVAL" => Some("10s".to_string()),
            "DATABASE_URL" => Some("mysql://u@h/db".to_string()),
            "LOG_LEVEL" => Some("debug".to_string()),
            _ => None,
        };
        let a = go(&["--interval", "2s"], &env);
        assert_eq!(seen(&a.urls), [("http://a/health", "API_URL"), ("http://b/health", "API_URL")]);
        assert_eq!(seen(&a.support), [("one@x.io", "SUPPORT"), ("two@x.io", "SUPPORT")]);
        assert_eq!(one(&a.interval), Some(("2s", "--interval")), "flag wins over INTERVAL");
        assert_eq!(one(&a.db), Some(("mysql://u@h/db", "DATABASE_URL")));
        assert_eq!(a.verbosity, Verbosity::Env(log::LevelFilter::Debug));
        let a = go(&["--url", "http://c/health"], &env);
        assert_eq!(
            seen(&a.urls),
            [("http://c/health", "--url")],
            "a --url flag replaces the API_URL list"
        );
    }

    #[test]
    fn secrets_can_come_from_files_and_passwords_from_variables() {
        let env = |name: &str| {
            let value = match name {
                "DATABASE_URL_FILE" => "/run/secrets/db_url",
                "DATABASE_PASSWORD" => "s3cret",
                "DATABASE_PASSWORD_FILE" => "/run/secrets/db_password",
                "SMTP_URL_FILE" => "/run/secrets/smtp_url",
                "SMTP_PASSWORD_FILE" => "/run/secrets/smtp_password",
                _ => return None,
            };
            Some(value.to_string())
        };
        let a = go(&[], &env);
        assert_eq!(a.db, None, "the file is the config step's to read");
        assert_eq!(a.db_file.as_deref(), Some("/run/secrets/db_url"));
        assert_eq!(a.db_password.as_deref(), Some("s3cret"));
        assert_eq!(a.db_password_file, None, "loses to DATABASE_PASSWORD: not read");
        assert_eq!(a.smtp_file.as_deref(), Some("/run/secrets/smtp_url"));
        assert_eq!(a.smtp_password_file.as_deref(), Some("/run/secrets/smtp_password"));
        let a = go(&["--db", "sqlite://x.db"], &env);
        assert_eq!(one(&a.db), Some(("sqlite://x.db", "--db")));
        assert_eq!(a.db_file, None, "loses to the flag: not read");
    }

    #[test]
    fn debug_output_never_shows_a_password() {
        let env = |name: &str| {
            matches!(name, "DATABASE_PASSWORD" | "SMTP_PASSWORD").then(|| "pl41n".to_string())
        };
        let a = go(
            &[
                "--db",
                "mysql://u:s3cret@db/m",
                "--smtp",
                "smtp://u:s3cret@mail:25",
                "--url",
                "https://u:s3cret@api/health",
            ],
            &env,
        );
        let shown = format!("{a:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("pl41n"), "{shown}");
        assert!(shown.contains("mysql://u:***@db/m"), "URLs are still recognisable: {shown}");
        let shown = format!("{:?}", Parsed::Go(Box::new(a)));
        assert!(!shown.contains("s3cret") && !shown.contains("pl41n"), "{shown}");
    }

    #[test]
    fn a_url_in_a_bad_command_line_is_shown_redacted() {
        for args in [
            &["mysql://u:s3cret@db/m"][..],
            &["run", "mysql://u:s3cret@db/m"],
            &["--verbose=smtp://u:s3cret@mail:25"],
        ] {
            let e = parse_from(args.iter().copied(), &no_env).unwrap_err();
            let (raw, shown) = (e.0.clone(), e.to_string());
            assert!(!raw.contains("s3cret") && !shown.contains("s3cret"), "{args:?}: {shown}");
            assert!(shown.contains("***"), "{args:?}: says something was hidden: {shown}");
        }
    }

    #[test]
    fn verbosity_flags_count_and_beat_log_level() {
        let env = |name: &str| (name == "LOG_LEVEL").then(|| "error".to_string());
        assert_eq!(go(&["-vv"], &env).verbosity, Verbosity::Flags(2));
        assert_eq!(go(&["-q", "-q"], &env).verbosity, Verbosity::Flags(-2));
    }

    #[test]
    fn verbosity_beyond_the_levels_or_both_ways_is_refused() {
        let err = |args: &[&str]| parse_from(args.iter().copied(), &no_env).unwrap_err().0;
        assert_eq!(err(&["-v", "-q"]), "-v and -q: give one or the other, not both");
        assert_eq!(err(&["-qv"]), "-v and -q: give one or the other, not both");
        assert_eq!(
            err(&["-vvv"]),
            "-v: given 3 times; -vv (trace, every detail) is the most verbose level"
        );
        assert_eq!(err(&["-qqq"]), "-q: given 3 times; -qq (errors only) is the quietest level");
        let many = vec!["-v"; 300];
        assert!(err(&many).starts_with("-v: given 300 times"), "counts without overflowing");
    }

    /// Every variable the binary reads, but `LISTEN` (blank is `off`, like `--listen ''`).
    const VARIABLES: &[&str] = &[
        "CONFIG",
        "API_URL",
        "SUPPORT",
        "REGIONS",
        "INTERVAL",
        "TIMEOUT",
        "SLOW",
        "FAILURE_THRESHOLD",
        "SUCCESS_THRESHOLD",
        "DATABASE_URL",
        "DATABASE_URL_FILE",
        "DATABASE_PASSWORD",
        "DATABASE_PASSWORD_FILE",
        "SMTP_URL",
        "SMTP_URL_FILE",
        "SMTP_PASSWORD",
        "SMTP_PASSWORD_FILE",
        "MAIL_FROM",
        "REMIND",
        "CONCURRENCY",
        "CLUSTER",
        "SITE",
        "LEASE",
        "QUORUM",
        "LOG_FILE",
        "LOG_LEVEL",
    ];

    #[test]
    fn a_variable_set_but_blank_is_refused_by_name() {
        for &variable in VARIABLES {
            for blank in ["", "  ", "\t"] {
                let env = |name: &str| (name == variable).then(|| blank.to_string());
                let e = parse_from(["check"], &env).expect_err(variable).0;
                assert_eq!(e, format!("{variable}: set but blank; give it a value, or unset it"));
            }
        }
        for list in ["API_URL", "SUPPORT", "REGIONS"] {
            let env = |name: &str| (name == list).then(|| " , ,".to_string());
            let e = parse_from(["check"], &env).expect_err(list).0;
            assert_eq!(e, format!("{list}: set but holds only commas; give it a value"));
        }
        let env = |name: &str| (name == "LISTEN").then(String::new);
        assert_eq!(one(&go(&[], &env).listen), Some(("", "LISTEN")), "blank LISTEN: off");
    }

    #[test]
    fn a_variable_that_loses_is_not_read_so_blank_does_not_matter() {
        let blank = |name: &str| (name != "DATABASE_URL").then(String::new);
        let a = go(
            &[
                "--config=m.toml",
                "--url=http://a/h",
                "--support=a@b.co",
                "--region=direct",
                "--interval=5s",
                "--timeout=5s",
                "--slow=2s",
                "--failures=2",
                "--successes=2",
                "--db=sqlite://x.db",
                "--smtp=smtp://h:25",
                "--from=a@b.co",
                "--remind=off",
                "--concurrency=4",
                "--cluster=prod",
                "--site=eu",
                "--lease=15s",
                "--quorum=2",
                "--log-file=x.log",
                "-v",
                "--listen=off",
            ],
            &|name| {
                // The password variables have no flag: only their _FILE can lose.
                match name {
                    "DATABASE_PASSWORD" | "SMTP_PASSWORD" => Some("pw".into()),
                    _ => blank(name),
                }
            },
        );
        assert_eq!((a.db_file, a.smtp_file, a.db_password_file), (None, None, None));
        let env = |name: &str| match name {
            "DATABASE_URL" => Some("sqlite://env.db".to_string()),
            "DATABASE_URL_FILE" => Some(String::new()),
            _ => None,
        };
        assert_eq!(go(&[], &env).db_file, None, "DATABASE_URL wins: its _FILE is not read");
    }

    #[test]
    fn help_and_version_win_wherever_they_are() {
        assert_eq!(parse_from(["--url", "x", "--help"], &no_env).unwrap(), Parsed::Help);
        assert_eq!(parse_from(["-V"], &no_env).unwrap(), Parsed::Version);
    }

    #[test]
    fn bad_command_lines_name_the_culprit() {
        let err = |args: &[&str]| parse_from(args.iter().copied(), &no_env).unwrap_err().0;
        assert!(err(&["--frobnicate"]).contains("--frobnicate"), "{}", err(&["--frobnicate"]));
        assert!(err(&["--interval"]).contains("--interval"), "missing value names the option");
        assert!(err(&["report2"]).contains("report2"));
        assert!(err(&["run", "extra"]).contains("extra"));
        let env = |name: &str| (name == "LOG_LEVEL").then(|| "loud".to_string());
        let e = parse_from(Vec::<String>::new(), &env).unwrap_err().0;
        assert!(e.starts_with("LOG_LEVEL"), "{e}");
    }

    #[test]
    fn help_lists_every_option_and_variable() {
        for needle in [
            "--url",
            "API_URL",
            "--support",
            "SUPPORT",
            "--interval",
            "INTERVAL",
            "--timeout",
            "TIMEOUT",
            "--slow",
            "SLOW",
            "--failures",
            "FAILURE_THRESHOLD",
            "--successes",
            "SUCCESS_THRESHOLD",
            "--db",
            "DATABASE_URL",
            "--smtp",
            "SMTP_URL",
            "SMTP_PASSWORD",
            "SMTP_PASSWORD_FILE",
            "SMTP_URL_FILE",
            "DATABASE_URL_FILE",
            "DATABASE_PASSWORD",
            "DATABASE_PASSWORD_FILE",
            "--from",
            "MAIL_FROM",
            "--log-file",
            "LOG_FILE",
            "LOG_LEVEL",
            "--config",
            "CONFIG",
            "--region",
            "REGIONS",
            "--remind",
            "REMIND",
            "check",
        ] {
            assert!(HELP.contains(needle), "--help must mention {needle}");
        }
    }

    #[test]
    fn config_regions_and_remind_are_read_from_flags_or_environment() {
        let env = |name: &str| {
            let value = match name {
                "CONFIG" => "/etc/api-monitor.toml",
                "REGIONS" => "direct, eu=http://p:3128,,",
                "REMIND" => "30m",
                _ => return None,
            };
            Some(value.to_string())
        };
        let a = go(&[], &env);
        assert_eq!(one(&a.config), Some(("/etc/api-monitor.toml", "CONFIG")));
        assert_eq!(
            seen(&a.regions),
            [("direct", "REGIONS"), ("eu=http://p:3128", "REGIONS")],
            "comma-separated, blanks dropped"
        );
        assert_eq!(one(&a.remind), Some(("30m", "REMIND")));
        let a = go(
            &[
                "--config",
                "m.toml",
                "--region",
                "us=http://q:8080",
                "--region=direct",
                "--remind",
                "off",
            ],
            &env,
        );
        assert_eq!(one(&a.config), Some(("m.toml", "--config")));
        assert_eq!(
            seen(&a.regions),
            [("us=http://q:8080", "--region"), ("direct", "--region")],
            "flags replace REGIONS, in order"
        );
        assert_eq!(one(&a.remind), Some(("off", "--remind")));
        let a = go(&["check", "--config", "m.toml"], &no_env);
        assert_eq!((a.command, one(&a.config)), (Command::Check, Some(("m.toml", "--config"))));
        assert!(a.regions.is_empty() && a.remind.is_none(), "defaults are the config step's");
    }

    #[test]
    fn proxy_passwords_in_regions_are_masked_in_debug() {
        let a = go(&["--region", "eu=http://u:s3cret@p:3128"], &no_env);
        let shown = format!("{a:?}");
        assert!(!shown.contains("s3cret") && shown.contains("eu=http://u:***@p:3128"), "{shown}");
    }
}
