//! What the unit tests of every part of the configuration step share: a fake outside world,
//! and the whole step run on a command line, environment and config file.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::cli::{parse_from, Parsed};
use crate::config::{from_args, Config, ConfigError, Delivery, Surroundings};
use crate::detector::Thresholds;
use crate::redact::SecretUrl;

pub(super) struct Fake;
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
            "/run/secrets/webhook_url" => "https://hooks.example.com/api-monitor/fr0m-file\n",
            "/run/secrets/pagerduty_key" => "fr0m-file\n",
            _ => return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")),
        };
        Ok(contents.into())
    }
}

pub(super) fn config(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    match parse_from(args.iter().copied(), &env).expect("cli parses") {
        Parsed::Go(a) => from_args(*a, &Fake),
        other => panic!("unexpected {other:?}"),
    }
}

pub(super) fn error(args: &[&str]) -> String {
    config(args, &[]).expect_err("must be rejected").0
}

pub(super) fn db(args: &[&str], env: &[(&str, &str)]) -> SecretUrl {
    config(args, env).expect("valid").db_url
}

pub(super) fn smtp_url(args: &[&str], env: &[(&str, &str)]) -> SecretUrl {
    let mut with_support = args.to_vec();
    with_support.extend(["--support", "a@b.co"]);
    match config(&with_support, env).expect("valid").delivery {
        Delivery::Smtp(s) => s.url,
        other => panic!("{other:?}"),
    }
}

/// [`Fake`], plus one config file (at any path) with the contents `text`, or none.
pub(super) struct WithFile(pub(super) Option<&'static str>);
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
pub(super) fn with_file(
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

/// Where [`config_with_files`] says its config file is.
pub(super) const CONFIG_PATH: &str = "monitor.toml";

/// [`Fake`] with one config file holding `text` and secret files `files` (path, contents).
struct WithFiles<'a> {
    text: &'a str,
    files: &'a [(&'a str, &'a str)],
}
impl Surroundings for WithFiles<'_> {
    fn host_name(&self) -> String {
        Fake.host_name()
    }
    fn read_secret(&self, path: &str) -> std::io::Result<String> {
        match self.files.iter().find(|(p, _)| *p == path) {
            Some((_, contents)) => Ok((*contents).to_owned()),
            None => Fake.read_secret(path),
        }
    }
    fn read_config_file(&self, _path: &str) -> std::io::Result<String> {
        Ok(self.text.to_owned())
    }
}

/// The configuration from `--config monitor.toml` holding `text`, with secret files `files`.
pub(super) fn config_with_files(text: &str, files: &[(&str, &str)]) -> Result<Config, ConfigError> {
    match parse_from(["--config", CONFIG_PATH], &|_: &str| None).expect("cli parses") {
        Parsed::Go(a) => from_args(*a, &WithFiles { text, files }),
        other => panic!("unexpected {other:?}"),
    }
}

/// What the operator reads when `text` is rejected (redacted, as printed).
pub(super) fn file_error(text: &'static str) -> String {
    with_file(text, &[], &[]).expect_err("must be rejected").to_string()
}

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) fn thresholds(failures: u32, successes: u32) -> Thresholds {
    Thresholds {
        failures: NonZeroU32::new(failures).unwrap(),
        successes: NonZeroU32::new(successes).unwrap(),
    }
}
