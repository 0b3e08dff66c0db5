//! Target, proxy, database and SMTP URLs: parsed, checked, and given their password.
//!
//! Together because they share their dangers: a password that must never reach a message
//! (every error shows the URL through [`redact::url`]), a stray `@` that means a password was
//! not percent-encoded, and characters that could split an HTTP request or a log line. Each
//! URL is checked here for what its client will do with it, so that a bad one is refused at
//! start with its reason rather than met later as a failing probe, mailer or store.

use crate::config::error::ConfigError;
use crate::config::sources::Setting;
use crate::redact::{self, SecretUrl};

/// The longest target URL, in characters: what the `state.target` column holds
/// (`VARCHAR(2048)`, which MySQL counts in characters). A longer one is refused at start,
/// because MySQL would refuse (or, not in strict mode, cut) every row about the target.
pub const MAX_URL_LEN: usize = 2048;

/// Validates a target URL (from `url.source`): the URL to probe and the name to show.
pub(super) fn target_url(url: &Setting) -> Result<(SecretUrl, String), ConfigError> {
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
    // The name, password masked, is what the store keeps, so it is what must fit.
    let length = shown.chars().count();
    if length > MAX_URL_LEN {
        return Err(ConfigError(format!(
            "{option}: URL is {length} characters long, the most a target may have is \
             {MAX_URL_LEN} (the width of the database column that records it)"
        )));
    }
    let parsed =
        parse(option, raw, None, |e| ConfigError(format!("{option}: invalid URL {shown}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError(format!(
            "{option}: invalid URL {shown}: expected http://HOST[:PORT]/PATH or https://…"
        )));
    }
    Ok((SecretUrl::new(raw), shown))
}

/// Validates a proxy URL into one plain form: `http://[user[:pass]@]host:port`, nothing after
/// the port. The probe speaks plain HTTP to its proxy and tunnels every target (http and
/// https) with CONNECT. A missing port (the client would guess one), an IPv6 literal (not
/// supported by this monitor: never tested against a proxy), and a `:` in the user name
/// (Basic authentication splits the user-info at its first `:`) are refused here with the
/// reason rather than met as a mysteriously blind region.
pub(super) fn proxy_url(option: &str, raw: &str) -> Result<SecretUrl, ConfigError> {
    let shown = redact::url(raw);
    // Not written as a URL with user-info: error text goes through `redact::text`.
    let expected = "expected http://HOST:PORT, with USER:PASS@ before HOST if the proxy asks";
    let bad =
        |why: &str| ConfigError(format!("{option}: invalid proxy URL {shown}: {why}; {expected}"));
    // First, before any message shows the URL: http URLs may hold an '@' after the host, so
    // the redaction would not hide a password that spilled into the path.
    no_stray_at(option, raw, None)?;
    if let Some(c) = raw.chars().find(|&c| c.is_control() || c.is_whitespace() || is_bidi(c)) {
        return Err(bad(&format!("it contains {c:?}")));
    }
    let url = parse(option, raw, None, |e| bad(&e.to_string()))?;
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
pub(super) fn has_explicit_port(raw: &str) -> bool {
    let authority = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let authority = authority.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    host_port
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
}

/// Unicode bidirectional controls: invisible, and able to make a log line read backwards.
pub(super) fn is_bidi(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Validates a database URL and puts `password` into it.
pub(super) fn database_url(
    db: &Setting,
    password: Option<&Setting>,
) -> Result<SecretUrl, ConfigError> {
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
    let variable = Some("DATABASE_PASSWORD");
    let mut url = parse(option, &db.value, variable, |e| {
        ConfigError(format!("{option}: invalid database URL {shown}: {e}"))
    })?;
    no_stray_at(option, &db.value, variable)?;
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

/// `raw` parsed. A URL that does not parse because its user-info holds a raw `/`, `?` or `#`
/// is told so ([`unencoded_userinfo`]): the parser would blame the port. Any other failure is
/// `invalid`'s to word. `variable`: the password's variable, if it has one.
pub(super) fn parse(
    option: &str,
    raw: &str,
    variable: Option<&str>,
    invalid: impl FnOnce(url::ParseError) -> ConfigError,
) -> Result<url::Url, ConfigError> {
    url::Url::parse(raw)
        .map_err(|e| unencoded_userinfo(option, raw, variable).unwrap_or_else(|| invalid(e)))
}

/// Refuses a URL with an `@` after its host (see [`redact::stray_at`]), for the schemes where
/// that is never right: part of the user-info spilled past the host. `variable` as for
/// [`parse`].
pub(super) fn no_stray_at(
    option: &str,
    raw: &str,
    variable: Option<&str>,
) -> Result<(), ConfigError> {
    if !redact::stray_at(raw) {
        return Ok(());
    }
    Err(unencoded_userinfo(option, raw, variable).unwrap_or_else(|| {
        let or = variable.map_or_else(String::new, |v| format!(", or set the password in {v}"));
        ConfigError(format!(
            "{option}: the URL has an '@' after its host, so part of it is probably a password \
             with a '/', '?' or '#' in it: percent-encode those (%2F, %3F, %23){or}"
        ))
    }))
}

/// The error for a URL whose user-info, as written (between `://` and the last `@`), holds a
/// raw `/`, `?` or `#`: the URL parser ends the host at the first of them, so the URL either
/// does not parse (the rest of the password read as a port) or names another host. Says which
/// character, in the user name or the password, and its escape; `None` when there is none.
/// Only for a URL already found wrong: an http(s) URL may hold an `@` in its path.
/// (A raw `@` is fine: the last `@` ends the user-info, and every client here decodes the
/// user name and password once.)
pub(super) fn unencoded_userinfo(
    option: &str,
    raw: &str,
    variable: Option<&str>,
) -> Option<ConfigError> {
    let rest = raw.split_once("://")?.1;
    let userinfo = &rest[..rest.rfind('@')?];
    let at = userinfo.find(['/', '?', '#'])?;
    let c = userinfo[at..].chars().next()?;
    let escape = match c {
        '/' => "%2F",
        '?' => "%3F",
        _ => "%23",
    };
    let in_password = userinfo[..at].contains(':');
    let (part, or) = match variable {
        Some(v) if in_password => ("password", format!(", or set the password in {v}")),
        _ => (if in_password { "password" } else { "user name" }, String::new()),
    };
    Some(ConfigError(format!(
        "{option}: the {part} in the URL has a '{c}' that is not percent-encoded, so the URL \
         ends early: write it as {escape}{or}"
    )))
}

/// Sets `password` as the password of `url`, percent-encoded. Fails when the URL has no user
/// name to go with it. The message names the password's variable.
pub(super) fn put_password(url: &mut url::Url, password: &Setting) -> Result<(), String> {
    if url.username().is_empty() {
        return Err(format!(
            "{} is set but the URL has no user name to go with it (scheme://USER@HOST/…)",
            password.source
        ));
    }
    url.set_password(Some(&redact::encode_userinfo(&password.value)))
        .map_err(|()| "the URL cannot hold a password".to_string())
}

pub(super) fn smtp_url(
    smtp: &Setting,
    password: Option<&Setting>,
) -> Result<SecretUrl, ConfigError> {
    let (option, raw) = (smtp.source.as_str(), smtp.value.as_str());
    let shown = redact::url(raw);
    let bad = |why: &str| {
        ConfigError(format!(
            "{option}: invalid SMTP URL {shown}: {why}; expected smtp://HOST:PORT, \
             smtp://USER:PASS@HOST:587?tls=required or smtps://USER:PASS@HOST:465"
        ))
    };
    let variable = Some("SMTP_PASSWORD");
    let mut url = parse(option, raw, variable, |e| bad(&e.to_string()))?;
    no_stray_at(option, raw, variable)?;
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

/// Whether `url`'s host is this machine, where probing fast cannot upset a firewall.
pub fn is_loopback(raw: &str) -> bool {
    match url::Url::parse(raw).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::MAX_URL_LEN;
    use crate::config::testing::{config, db, error, file_error, smtp_url};

    /// `https://api.example.com/` and `x`s up to `length` characters.
    fn long_url(length: usize) -> String {
        let base = "https://api.example.com/";
        format!("{base}{}", "x".repeat(length - base.len()))
    }

    #[test]
    fn a_target_url_fits_the_database_column() {
        let c = config(&["--url", &long_url(MAX_URL_LEN)], &[]).expect("2,048 characters fit");
        assert_eq!(c.targets[0].name.chars().count(), MAX_URL_LEN);
        let e = error(&["--url", &long_url(MAX_URL_LEN + 1)]);
        assert_eq!(
            e,
            "--url: URL is 2049 characters long, the most a target may have is 2048 (the width \
             of the database column that records it)"
        );
        let file = format!("[[target]]\nurl = \"{}\"\n", long_url(MAX_URL_LEN + 1)).leak();
        let e = file_error(file);
        assert!(e.starts_with("monitor.toml: target[1].url: URL is 2049 characters long"), "{e}");

        // Characters, as the column counts them, not bytes.
        let wide = format!("https://api.example.com/{}", "é".repeat(MAX_URL_LEN - 24));
        assert!(wide.len() > MAX_URL_LEN && wide.chars().count() == MAX_URL_LEN);
        assert!(config(&["--url", &wide], &[]).is_ok(), "{wide}");
        // The name is what is stored: a password masked away does not count.
        let secret = "s".repeat(MAX_URL_LEN);
        let c = config(&["--url", &format!("https://u:{secret}@api.example.com/h")], &[]);
        assert_eq!(c.expect("fits once masked").targets[0].name, "https://u:***@api.example.com/h");
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
    fn a_raw_slash_question_mark_or_hash_in_a_password_is_named_not_blamed_on_the_port() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--smtp", "smtp://mailer:pa#ss@mail.example.com:587"],
                "--smtp: the password in the URL has a '#' that is not percent-encoded, so the \
                 URL ends early: write it as %23, or set the password in SMTP_PASSWORD",
            ),
            (
                &["--smtp", "smtps://mailer:pa/ss@mail.example.com:465"],
                "--smtp: the password in the URL has a '/' that is not percent-encoded, so the \
                 URL ends early: write it as %2F, or set the password in SMTP_PASSWORD",
            ),
            (
                &["--smtp", "smtp://mailer:25#ss@mail.example.com:587"],
                "--smtp: the password in the URL has a '#' that is not percent-encoded",
            ),
            (
                &["--smtp", "smtp://mai?ler:pw@mail.example.com:587"],
                "--smtp: the user name in the URL has a '?' that is not percent-encoded, so the \
                 URL ends early: write it as %3F",
            ),
            (
                &["--db", "mysql://monitor:pa?ss@db/monitor"],
                "--db: the password in the URL has a '?' that is not percent-encoded, so the URL \
                 ends early: write it as %3F, or set the password in DATABASE_PASSWORD",
            ),
            (
                &["--db", "mysql://u:12/s3cret@db/m"],
                "--db: the password in the URL has a '/' that is not percent-encoded",
            ),
            (
                &["--region", "eu=http://u:pa#ss@proxy:3128"],
                "--region: the password in the URL has a '#' that is not percent-encoded, so the \
                 URL ends early: write it as %23",
            ),
            (
                &["--url", "https://u:pa#ss@api.example.com/health"],
                "--url: the password in the URL has a '#' that is not percent-encoded",
            ),
        ];
        for (args, expected) in cases {
            let e = config(args, &[]).expect_err("must be rejected").to_string();
            assert!(e.starts_with(expected), "{args:?}\n  → {e}\n  expected {expected}");
            assert!(!e.contains("port") && !e.contains("ss@"), "{args:?}: {e}");
        }
        let e = config(&["--region", "eu=http://u:pa#ss@proxy:3128"], &[]).unwrap_err().0;
        assert!(!e.contains("set the password in"), "a proxy has no password variable: {e}");
    }

    #[test]
    fn a_raw_at_sign_in_a_password_is_fine_as_the_last_at_ends_the_user_info() {
        let decoded = |url: &str| {
            let url = url::Url::parse(url).unwrap();
            let password = percent_encoding::percent_decode_str(url.password().unwrap());
            password.decode_utf8().unwrap().into_owned()
        };
        let url = smtp_url(&["--smtp", "smtp://mailer:p@ss@mail.example.com:587"], &[]);
        assert_eq!(url::Url::parse(&url).unwrap().host_str(), Some("mail.example.com"));
        assert_eq!(decoded(&url), "p@ss", "what the mailer sends, decoded once");
        let url = db(&["--db", "mysql://monitor:p@ss@db/monitor"], &[]);
        assert_eq!(url::Url::parse(&url).unwrap().host_str(), Some("db"));
        assert_eq!(decoded(&url), "p@ss", "what the mysql driver sends, decoded once");
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
}
