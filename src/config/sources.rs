//! Where each setting comes from: the command line (flag or variable, already chosen by
//! [`crate::cli`]), the `*_FILE` secrets, the config file, and the defaults; and the name
//! each error uses for it ([`Setting::source`]), so that the operator is told what to fix, not
//! which internal field was wrong.
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
//! URL that may hold a password is kept as a [`crate::redact::SecretUrl`], so `{:?}` of a
//! [`crate::config::Config`] never shows one, and every error shows URLs through
//! [`crate::redact`].

use std::num::NonZeroU32;
use std::time::Duration;

use crate::cli::{Given, Verbosity};
use crate::config::error::ConfigError;
use crate::config::file::ConfigFile;
use crate::detector::Thresholds;

pub const DEFAULT_URL: &str = "https://api.qa.fitpay.ninja/health";
pub const DEFAULT_DB: &str = "sqlite://api-monitor.db";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

pub const DEFAULT_THRESHOLDS: Thresholds = Thresholds {
    failures: NonZeroU32::new(2).expect("2 is not zero"),
    successes: NonZeroU32::new(2).expect("2 is not zero"),
};

/// The report's default window.
pub const DEFAULT_REPORT_SPAN: Duration = Duration::from_secs(7 * 24 * 3600);

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

/// A raw setting and where it came from, so an error names what the operator set.
pub(super) struct Setting {
    pub(super) value: String,
    /// The option, variable or file key: `--db`, `DATABASE_URL_FILE`, `monitor.toml: db`, …
    pub(super) source: String,
}

impl From<Given> for Setting {
    fn from(given: Given) -> Setting {
        Setting { value: given.value, source: given.source.to_owned() }
    }
}

/// The command line's value (flag or variable; the low step already chose between them) if
/// set, else the file's.
pub(super) fn pick(cli: Option<Given>, file: Option<Setting>) -> Option<Setting> {
    cli.map(Setting::from).or(file)
}

/// The value of a variable (`direct`) if set, else the contents of the file its `_FILE`
/// variable names, else `None`. Each comes with its variable's name.
pub(super) fn secret(
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
pub(super) fn read_file(
    world: &dyn Surroundings,
    variable: &str,
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

/// `-v`/`-q`, else `LOG_LEVEL`, else the file's `log_level`, else info.
pub(super) fn log_level(
    verbosity: Verbosity,
    file: &ConfigFile,
) -> Result<log::LevelFilter, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{config, db, secs, smtp_url, with_file};
    use crate::config::Delivery;
    use std::path::PathBuf;

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
    fn verbosity_maps_to_levels() {
        assert_eq!(config(&["-v"], &[]).unwrap().log_level, log::LevelFilter::Debug);
        assert_eq!(config(&["-qq"], &[]).unwrap().log_level, log::LevelFilter::Error);
        let c = config(&[], &[("LOG_LEVEL", "warn")]).unwrap();
        assert_eq!(c.log_level, log::LevelFilter::Warn);
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
        let file = "db = \"mysql://monitor@db/monitor\"\n[[target]]\nurl = \"https://a/h\"\n";
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
}
