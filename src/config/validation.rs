//! Durations, thresholds and email addresses, each checked against its range or form, and the
//! checks that need several values at once (where mail goes).
//!
//! The ranges are caps against typos and against hurting someone: nothing downstream checks
//! again, so a value outside them is refused here, naming where it came from.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::config::error::ConfigError;
use crate::config::sources::Setting;
use crate::config::{Delivery, Region, SmtpSettings, Target};
use crate::redact::SecretUrl;

/// Below this, probing a remote host looks like an attack to its firewall.
pub const INTERVAL_FLOOR: Duration = Duration::from_secs(1);

/// Thresholds above this are surely typos (an outage would take hours to confirm).
pub const MAX_THRESHOLD: u32 = 1000;

/// The shortest probe timeout accepted: below it the deadline is mostly scheduling and
/// handshake noise, and a healthy API would read as down.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);

/// The most probes in flight one may ask for: each is a socket (a file descriptor).
pub const MAX_CONCURRENCY: usize = 10_000;

/// The longest duration a setting takes, and how its errors write it.
pub(super) struct Cap {
    pub(super) max: Duration,
    pub(super) shown: &'static str,
}

/// The cap of every interval, timeout and reminder spacing: a day. A longer one is surely a
/// typo, and a far longer one would overflow the clock arithmetic of the scheduler and the
/// probe (`timeout = "18446744073709551615s"` made every probe panic).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
pub(super) const DAY: Cap = Cap { max: MAX_DURATION, shown: "24h" };

/// How far back `report --since` may look: ten years of 365.25 days (a `y` to the duration
/// parser), so that `10y` is accepted.
pub const MAX_REPORT_SPAN: Duration = Duration::from_secs(10 * 31_557_600);
pub(super) const TEN_YEARS: Cap = Cap { max: MAX_REPORT_SPAN, shown: "10y" };

/// The duration `setting` holds, or `default` when unset; zero is refused, and so is anything
/// longer than `cap`.
pub(super) fn duration(
    setting: Option<&Setting>,
    default: Duration,
    cap: Cap,
) -> Result<Duration, ConfigError> {
    let Some(Setting { value: raw, source: option }) = setting else { return Ok(default) };
    let d = crate::duration::parse(raw)
        .map_err(|e| ConfigError(format!("{option}: invalid duration {raw:?}: {e}")))?;
    if d.is_zero() {
        return Err(ConfigError(format!("{option}: must be longer than zero, got {raw:?}")));
    }
    if d > cap.max {
        return Err(ConfigError(format!("{option}: {raw:?} is too long; at most {}", cap.shown)));
    }
    Ok(d)
}

/// The probe timeout `setting` holds (at least [`MIN_TIMEOUT`], at most a day), or `default`
/// when unset.
pub(super) fn timeout(
    setting: Option<&Setting>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = duration(setting, default, DAY)?;
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

/// The `slow` limit `setting` holds, with the setting itself (a target's timeout is compared
/// with it later, and the error names where it came from); `None` when unset: off. Zero is
/// refused like any zero duration: every answer would be slow.
pub(super) fn slow(setting: Option<Setting>) -> Result<Option<(Duration, Setting)>, ConfigError> {
    let Some(setting) = setting else { return Ok(None) };
    let limit = duration(Some(&setting), Duration::ZERO, DAY)?;
    Ok(Some((limit, setting)))
}

/// The `slow` limit of a target probed with `timeout`: it must be shorter, or no answer could
/// ever be slow (the timeout would end the probe first), which is surely a mistake.
pub(super) fn slow_within(
    slow: Option<&(Duration, Setting)>,
    timeout: Duration,
    target: &str,
) -> Result<Option<Duration>, ConfigError> {
    match slow {
        None => Ok(None),
        Some((limit, Setting { value: raw, source: option })) if *limit >= timeout => {
            Err(ConfigError(format!(
                "{option}: {raw:?} must be shorter than the timeout ({}) of {target}",
                crate::duration::human(timeout)
            )))
        }
        Some((limit, _)) => Ok(Some(*limit)),
    }
}

/// A reminder spacing: a duration, or `off` (also the default).
pub(super) fn remind(setting: Option<&Setting>) -> Result<Option<Duration>, ConfigError> {
    match setting {
        Some(s) if s.value.trim().eq_ignore_ascii_case("off") => Ok(None),
        Some(s) => duration(Some(s), Duration::ZERO, DAY)
            .map(Some)
            .map_err(|ConfigError(e)| ConfigError(format!("{e}; or \"off\" for no reminders"))),
        None => Ok(None),
    }
}

/// The threshold `setting` holds (1 to [`MAX_THRESHOLD`]), or `default` when unset.
pub(super) fn threshold(
    setting: Option<&Setting>,
    default: NonZeroU32,
) -> Result<NonZeroU32, ConfigError> {
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

pub(super) fn address(option: &str, raw: &str) -> Result<String, ConfigError> {
    raw.trim()
        .parse::<lettre::Address>()
        .map(|a| a.to_string())
        .map_err(|e| ConfigError(format!("{option}: invalid email address {raw:?}: {e}")))
}

pub(super) fn mailbox(option: &str, raw: &str) -> Result<String, ConfigError> {
    raw.trim()
        .parse::<lettre::message::Mailbox>()
        .map(|m| m.to_string())
        .map_err(|e| ConfigError(format!("{option}: invalid email address {raw:?}: {e}")))
}

/// `api-monitor@<host>`, or `@localhost` when the host name is not a valid mail domain.
pub(super) fn default_sender(host: &str) -> String {
    address("", &format!("api-monitor@{host}"))
        .unwrap_or_else(|_| "api-monitor@localhost".to_string())
}

/// Where notifications go, from the SMTP server and everyone who is to receive mail. Mail is
/// worth setting up as soon as anyone at all is to receive it: the global `--support`, or a
/// target's or (used) region's own recipients. Half a set-up is not an error (the monitor
/// still watches and logs) but says what is missing, for the warning at start.
pub(super) fn delivery(
    smtp: Option<SecretUrl>,
    from: String,
    support: Vec<String>,
    targets: &[Target],
    regions: &[Region],
) -> Delivery {
    let anyone = !support.is_empty()
        || targets.iter().any(|t| !t.recipients.is_empty())
        || regions.iter().any(|r| !r.recipients.is_empty());
    match (smtp, anyone) {
        (Some(url), true) => Delivery::Smtp(SmtpSettings { url, from, to: support }),
        (Some(_), false) => Delivery::LogOnly {
            why: "no recipient is set (--support, or recipients of a target or region)".into(),
        },
        (None, true) => Delivery::LogOnly { why: "no --smtp server is set".into() },
        (None, false) => Delivery::LogOnly { why: "neither --smtp nor --support is set".into() },
    }
}

/// The `--listen` address; unset, empty or `off`: not served.
pub(super) fn listen(setting: Option<&Setting>) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(Setting { value, source }) = setting else { return Ok(None) };
    match value.trim() {
        "" | "off" => Ok(None),
        addr => addr.parse::<SocketAddr>().map(Some).map_err(|_| {
            ConfigError(format!(
                "{source}: invalid address {addr:?}: expected IP:PORT such as 127.0.0.1:9898, \
                 or off"
            ))
        }),
    }
}

/// The probe concurrency `setting` holds (1 to [`MAX_CONCURRENCY`]); `None` when unset.
pub(super) fn concurrency(setting: Option<&Setting>) -> Result<Option<usize>, ConfigError> {
    let Some(Setting { value, source }) = setting else { return Ok(None) };
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(Some(n)),
        _ => Err(ConfigError(format!(
            "{source}: expected a whole number from 1 to {MAX_CONCURRENCY}, got {value:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{config, error, file_error, secs, with_file};

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
    fn durations_are_capped_with_one_line_naming_their_source() {
        // (arguments, environment, how the message starts)
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                &["--interval", "99999999999999h"],
                &[],
                "--interval: \"99999999999999h\" is too long",
            ),
            (&["--interval", "25h"], &[], "--interval: \"25h\" is too long; at most 24h"),
            (&[], &[("INTERVAL", "2d")], "INTERVAL: \"2d\" is too long; at most 24h"),
            (
                &["--timeout", "18446744073709551615s"],
                &[],
                "--timeout: \"18446744073709551615s\" is too long; at most 24h",
            ),
            (&[], &[("TIMEOUT", "24h 1s")], "TIMEOUT: \"24h 1s\" is too long; at most 24h"),
            (&["--remind", "1d 1ms"], &[], "--remind: \"1d 1ms\" is too long; at most 24h"),
            (&[], &[("REMIND", "8760h")], "REMIND: \"8760h\" is too long; at most 24h"),
            (&["report", "--since", "11y"], &[], "--since: \"11y\" is too long; at most 10y"),
        ];
        for (args, env, expected) in cases {
            let e = config(args, env).expect_err(expected).0;
            assert!(e.starts_with(expected), "{args:?} {env:?}\n  → {e}\n  expected {expected}");
        }
        let c =
            config(&["--interval", "24h", "--timeout", "1d", "--remind", "1440m"], &[]).unwrap();
        assert_eq!(
            (c.interval, c.timeout, c.targets[0].remind),
            (secs(86400), secs(86400), Some(secs(86400)))
        );
        let c = config(&["report", "--since", "10y"], &[]).unwrap();
        assert_eq!(c.report.unwrap().since, secs(10 * 31_557_600), "ten years of 365.25 days");
    }

    #[test]
    fn durations_in_the_config_file_are_capped_too() {
        let cases = [
            (
                "timeout = \"18446744073709551615s\"\n[[target]]\nurl = \"https://a/h\"\n",
                "monitor.toml: timeout: \"18446744073709551615s\" is too long; at most 24h",
            ),
            (
                "interval = \"48h\"\n[[target]]\nurl = \"https://a/h\"\n",
                "monitor.toml: interval: \"48h\" is too long",
            ),
            (
                "remind = \"2d\"\n[[target]]\nurl = \"https://a/h\"\n",
                "monitor.toml: remind: \"2d\" is too long",
            ),
            (
                "[[target]]\nurl = \"https://a/h\"\ninterval = \"100000h\"\n",
                "monitor.toml: target[1].interval: \"100000h\" is too long",
            ),
            (
                "[[target]]\nurl = \"https://a/h\"\ntimeout = \"25h\"\n",
                "monitor.toml: target[1].timeout: \"25h\" is too long",
            ),
            (
                "[[target]]\nurl = \"https://a/h\"\nremind = \"30d\"\n",
                "monitor.toml: target[1].remind: \"30d\" is too long",
            ),
        ];
        for (text, expected) in cases {
            let e = file_error(text);
            assert!(e.starts_with(expected), "{text:?}\n  → {e}\n  expected {expected}");
        }
    }

    #[test]
    fn slow_is_off_unless_set_and_always_shorter_than_the_timeout() {
        let ms = Duration::from_millis;
        let c = config(&[], &[]).unwrap();
        assert_eq!((c.slow, c.targets[0].slow), (None, None), "unset: off");
        let c = config(&["--slow", "2s"], &[]).unwrap();
        assert_eq!((c.slow, c.targets[0].slow), (Some(secs(2)), Some(secs(2))));
        let c = config(&["--timeout", "1s"], &[("SLOW", "300ms")]).unwrap();
        assert_eq!(c.targets[0].slow, Some(ms(300)), "from SLOW, sub-second");
        let c = config(&["--slow", "1s"], &[("SLOW", "nonsense")]).unwrap();
        assert_eq!(c.targets[0].slow, Some(secs(1)), "the flag wins; the variable is not read");
        // (arguments, environment, the whole message)
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (&["--slow", "soon"], &[], "--slow: invalid duration \"soon\": expected a duration"),
            (&["--slow", "0s"], &[], "--slow: must be longer than zero, got \"0s\""),
            (&[], &[("SLOW", "0ms")], "SLOW: must be longer than zero, got \"0ms\""),
            (
                &["--slow", "5s", "--url", "https://a/h"],
                &[],
                "--slow: \"5s\" must be shorter than the timeout (5s) of https://a/h",
            ),
            (
                &["--timeout", "1s", "--url", "https://a/h"],
                &[("SLOW", "1500ms")],
                "SLOW: \"1500ms\" must be shorter than the timeout (1s) of https://a/h",
            ),
            (&["--slow", "25h"], &[], "--slow: \"25h\" is too long; at most 24h"),
        ];
        for (args, env, expected) in cases {
            let e = config(args, env).expect_err(expected).0;
            assert!(e.starts_with(expected), "{args:?} {env:?}\n  → {e}\n  expected {expected}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn slow_in_the_config_file_globally_and_per_target() {
        let text = "slow = \"2s\"\n[[target]]\nurl = \"https://a/h\"\n\
                    [[target]]\nurl = \"https://b/h\"\nslow = \"500ms\"\n";
        let c = with_file(text, &["check"], &[]).unwrap();
        let limits: Vec<_> = c.targets.iter().map(|t| t.slow).collect();
        assert_eq!(limits, [Some(secs(2)), Some(Duration::from_millis(500))], "own key wins");
        let c = with_file(text, &["check", "--slow", "3s"], &[]).unwrap();
        assert_eq!(c.targets[0].slow, Some(secs(3)), "the flag wins over the file's global");
        let cases = [
            (
                "slow = \"5s\"\n[[target]]\nurl = \"https://a/h\"\n",
                "monitor.toml: slow: \"5s\" must be shorter than the timeout (5s) of https://a/h",
            ),
            (
                "slow = \"2s\"\n[[target]]\nurl = \"https://a/h\"\ntimeout = \"2s\"\n",
                "monitor.toml: slow: \"2s\" must be shorter than the timeout (2s) of https://a/h",
            ),
            (
                "[[target]]\nurl = \"https://a/h\"\ntimeout = \"1s\"\nslow = \"1s\"\n",
                "monitor.toml: target[1].slow: \"1s\" must be shorter than the timeout (1s) of \
                 https://a/h",
            ),
            (
                "[[target]]\nurl = \"https://a/h\"\nslow = \"0s\"\n",
                "monitor.toml: target[1].slow: must be longer than zero, got \"0s\"",
            ),
            (
                "slow = \"quick\"\n[[target]]\nurl = \"https://a/h\"\n",
                "monitor.toml: slow: invalid duration \"quick\"",
            ),
            ("slow = 2\n[[target]]\nurl = \"https://a/h\"\n", "monitor.toml: slow: invalid type"),
        ];
        for (text, expected) in cases {
            let e = file_error(text);
            assert!(e.starts_with(expected), "{text:?}\n  → {e}\n  expected {expected}");
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
    fn half_a_mail_setup_is_log_only() {
        let c = config(&["--support", "a@b.co"], &[]).unwrap();
        assert!(matches!(c.delivery, Delivery::LogOnly { ref why } if why.contains("--smtp")));
        let c = config(&["--smtp", "smtp://h:25"], &[]).unwrap();
        assert!(matches!(c.delivery, Delivery::LogOnly { ref why } if why.contains("--support")));
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
            [[region]]\nname = \"eu\"\nproxy = \"http://p:3128\"\nrecipients = [\"eu@b.co\"]\n\
            [[target]]\nurl = \"https://a/h\"\n";
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
}
