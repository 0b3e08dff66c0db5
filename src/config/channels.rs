//! The `[[channel]]`s of the config file — webhook, Slack and PagerDuty destinations beside
//! email — and the `channels` lists that route notifications to them (global, per target, per
//! region), validated into [`Channel`]s with errors naming the file's key.
//!
//! A channel's URL and routing key are credentials: an error names the key and at most the
//! URL's scheme and host, never the rest; `url_file` / `routing_key_file` read them from a file
//! (a Docker secret) with the rules of the `*_FILE` variables.

use crate::config::error::ConfigError;
use crate::config::file::{ChannelEntry, ConfigFile};
use crate::config::sources::read_file;
use crate::config::Surroundings;
use crate::notify::channel::{self, Channel, ChannelKind, PAGERDUTY_EVENTS_URL};
use crate::redact::SecretUrl;

/// The longest channel name: it is part of the outbox's `recipients` column.
const MAX_NAME: usize = 64;

/// Every `[[channel]]` of `file`, validated, in file order.
pub(super) fn defined(
    file: &ConfigFile,
    world: &dyn Surroundings,
) -> Result<Vec<Channel>, ConfigError> {
    let mut out: Vec<Channel> = Vec::new();
    for (i, entry) in file.settings.channel_list.iter().enumerate() {
        let key = |name: &str| file.key(&format!("channel[{}].{name}", i + 1));
        let name = &entry.name;
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(valid) {
            return Err(ConfigError(format!(
                "{}: expected 1 to {MAX_NAME} letters, digits, '-', '_' or '.', got {name:?}",
                key("name")
            )));
        }
        if let Some(j) = out.iter().position(|c| c.name == *name) {
            return Err(ConfigError(format!(
                "{}: channel {name:?} is already defined by channel[{}]",
                key("name"),
                j + 1
            )));
        }
        let kind = ChannelKind::parse(&entry.kind).ok_or_else(|| {
            ConfigError(format!(
                "{}: expected webhook, slack or pagerduty, got {:?}",
                key("kind"),
                entry.kind
            ))
        })?;
        let url = match (secret(world, entry, "url", &key)?, kind) {
            (Some(url), _) => url,
            (None, ChannelKind::PagerDuty) => PAGERDUTY_EVENTS_URL.to_owned(),
            (None, _) => {
                return Err(ConfigError(format!(
                    "{}: a {} channel needs `url` (or `url_file`): where to POST",
                    file.key(&format!("channel[{}]", i + 1)),
                    kind.name()
                )))
            }
        };
        check_url(&key("url"), &url)?;
        let routing_key = secret(world, entry, "routing_key", &key)?;
        match (kind, &routing_key) {
            (ChannelKind::PagerDuty, None) => {
                return Err(ConfigError(format!(
                    "{}: a pagerduty channel needs `routing_key` (or `routing_key_file`): the \
                     integration key of a PagerDuty service",
                    file.key(&format!("channel[{}]", i + 1))
                )))
            }
            (ChannelKind::Webhook | ChannelKind::Slack, Some(_)) => {
                return Err(ConfigError(format!(
                    "{}: only a pagerduty channel takes a routing key",
                    key("routing_key")
                )))
            }
            _ => {}
        }
        out.push(Channel { name: name.clone(), kind, url: SecretUrl::new(url), routing_key });
    }
    Ok(out)
}

/// The value of `field` (`url`, `routing_key`) or of `field_file`, never both; trimmed as the
/// `*_FILE` variables are.
fn secret(
    world: &dyn Surroundings,
    entry: &ChannelEntry,
    field: &str,
    key: &dyn Fn(&str) -> String,
) -> Result<Option<String>, ConfigError> {
    let (value, file) = match field {
        "url" => (entry.url.as_ref(), entry.url_file.as_ref()),
        _ => (entry.routing_key.as_ref(), entry.routing_key_file.as_ref()),
    };
    let file_key = format!("{field}_file");
    match (value, file) {
        (Some(_), Some(_)) => Err(ConfigError(format!(
            "{}: give `{field}` or `{file_key}`, not both",
            key(&file_key)
        ))),
        (Some(v), None) if v.0.trim().is_empty() => {
            Err(ConfigError(format!("{}: empty", key(field))))
        }
        (Some(v), None) => Ok(Some(v.0.trim().to_owned())),
        (None, Some(path)) => Ok(Some(read_file(world, &key(&file_key), path)?.value)),
        (None, None) => Ok(None),
    }
}

/// A channel URL must be `http://` or `https://` with a host. The error shows the scheme and
/// host at most: the rest of a webhook URL is its secret.
fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| Err(ConfigError(format!("{key}: {why}")));
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("the URL contains whitespace or control characters");
    }
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        Ok(u) => bad(&format!(
            "expected an http:// or https:// URL with a host, got {}",
            channel::host(u.as_str())
        )),
        Err(e) => bad(&format!("not a URL ({e})")),
    }
}

/// Checks that every name in the file's `channels` lists — global, per target, per region —
/// is a defined channel; returns the global list.
pub(super) fn routed(file: &ConfigFile, defined: &[Channel]) -> Result<Vec<String>, ConfigError> {
    let known = |key: String, names: &[String]| -> Result<(), ConfigError> {
        for (j, name) in names.iter().enumerate() {
            if !defined.iter().any(|c| c.name == *name) {
                let names: Vec<&str> = defined.iter().map(|c| c.name.as_str()).collect();
                let defined = if names.is_empty() {
                    "none is defined".to_owned()
                } else {
                    format!("defined: {}", names.join(", "))
                };
                return Err(ConfigError(format!(
                    "{key}[{}]: no [[channel]] named {name:?} ({defined})",
                    j + 1
                )));
            }
        }
        Ok(())
    };
    let f = &file.settings;
    let global = f.channels.clone().unwrap_or_default();
    known(file.key("channels"), &global)?;
    for (i, t) in f.targets.iter().enumerate() {
        known(file.key(&format!("target[{}].channels", i + 1)), &t.channels)?;
    }
    for (i, r) in f.regions.iter().enumerate() {
        known(file.key(&format!("region[{}].channels", i + 1)), &r.channels)?;
    }
    Ok(global)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{config_with_files, CONFIG_PATH};
    use crate::notify::channel::ChannelKind;

    fn file(body: &str) -> String {
        format!("[[target]]\nurl = \"https://a.example/health\"\n{body}")
    }

    #[test]
    fn channels_are_defined_routed_and_read_from_files() {
        let c = config_with_files(
            &format!(
                "channels = [\"ops\"]\n{}\
                 [[target]]\nurl = \"https://b.example/health\"\nchannels = [\"pd\"]\n\
                 [[channel]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"https://hooks.example/x/s3cret\"\n\
                 [[channel]]\nname = \"pd\"\nkind = \"pagerduty\"\nrouting_key_file = \"/run/secrets/pd\"\n",
                file("")
            ),
            &[("/run/secrets/pd", "R0UTING\n")],
        )
        .expect("valid");
        assert_eq!(c.global_channels, ["ops"]);
        assert_eq!(c.targets[1].channels, ["pd"]);
        let pd = &c.channels[1];
        assert_eq!((pd.kind, pd.routing_key.as_deref()), (ChannelKind::PagerDuty, Some("R0UTING")));
        assert_eq!(pd.url.expose(), "https://events.pagerduty.com/v2/enqueue");
        assert!(!format!("{c:?}").contains("s3cret"), "Debug hides the webhook URL");
    }

    #[test]
    fn mistakes_are_named_by_key_without_the_secret() {
        let hook = |extra: &str| {
            file(&format!("[[channel]]\nname = \"ops\"\nkind = \"webhook\"\n{extra}"))
        };
        let cases: Vec<(String, &str)> = vec![
            (hook(""), "channel[1]: a webhook channel needs `url`"),
            (hook("url = \"ftp://h/s3cret\"\n"), "channel[1].url: expected an http:// or https:// URL with a host, got ftp://h"),
            (hook("url = \"https://h/s3cret\"\nrouting_key = \"k\"\n"), "channel[1].routing_key: only a pagerduty channel takes a routing key"),
            (hook("url = \"https://h/s3cret\"\nurl_file = \"/f\"\n"), "channel[1].url_file: give `url` or `url_file`, not both"),
            (hook("url = \"https://h/s3cret\"\nsecret = 1\n"), "channel[1].secret: unknown key"),
            (file("[[channel]]\nname = \"pd\"\nkind = \"pagerduty\"\n"), "channel[1]: a pagerduty channel needs `routing_key`"),
            (file("[[channel]]\nname = \"x\"\nkind = \"teams\"\nurl = \"https://h/s3cret\"\n"), "channel[1].kind: expected webhook, slack or pagerduty, got \"teams\""),
            (file("[[channel]]\nname = \"a b\"\nkind = \"slack\"\nurl = \"https://h/s3cret\"\n"), "channel[1].name: expected 1 to 64 letters"),
            (file("channels = [\"nope\"]\n"), "channels[1]: no [[channel]] named \"nope\" (none is defined)"),
            (
                file("[[target]]\nurl = \"https://b/h\"\nchannels = [\"ops\", \"nope\"]\n[[channel]]\nname = \"ops\"\nkind = \"slack\"\nurl = \"https://h/s3cret\"\n"),
                "target[2].channels[2]: no [[channel]] named \"nope\" (defined: ops)",
            ),
            (
                file("[[channel]]\nname = \"ops\"\nkind = \"slack\"\nurl = \"https://h/1\"\n[[channel]]\nname = \"ops\"\nkind = \"slack\"\nurl = \"https://h/2\"\n"),
                "channel[2].name: channel \"ops\" is already defined by channel[1]",
            ),
        ];
        for (text, expected) in cases {
            let e = config_with_files(&text, &[]).expect_err(expected).0;
            assert!(e.starts_with(CONFIG_PATH), "{e}");
            assert!(e.contains(expected), "{e:?} should contain {expected:?}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
