//! Printing URLs without their secrets.
//!
//! Database and SMTP URLs carry passwords, and a target URL may too; every place that prints a
//! URL (logs, errors, emails, `{:?}` of the configuration) goes through [`url`], [`text`] or a
//! [`SecretUrl`], so a password can never leak by accident.
//!
//! Masking errs on the side of hiding too much. A password with a raw `/`, `?` or `#` makes
//! the URL parser end the host early, so the password lands in the path or query where no
//! parser calls it a password; for the schemes that never carry an `@` after the host
//! (`mysql://`, `smtp://`, …) everything from `://` to the last `@` is then masked. `http(s)`
//! and `sqlite` URLs may legitimately hold an `@` in a path or query, so only their real
//! user-info password is masked (the configuration step documents that such passwords must
//! be percent-encoded).

use std::fmt;

/// What a masked password or `password=` parameter is shown as.
pub const MASK: &str = "***";

/// `text` with the password of its URL (if any) and any `password=` query parameter replaced by
/// `***`. Text that does not parse as a URL, or whose user-info the parser could not find, is
/// returned with everything between `://` and the last `@` masked, to be safe.
pub fn url(text: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(text) else {
        return mask_through_last_at(text);
    };
    let shown = if mask_passwords(&mut parsed) { parsed.to_string() } else { text.to_owned() };
    if at_after_host(&parsed) && !at_may_follow_host(parsed.scheme()) {
        mask_through_last_at(&shown)
    } else {
        shown
    }
}

/// Whether `text` is a URL with an `@` after its host that is not inside a `password=`
/// parameter: a sign that a password holding `/`, `?` or `#` was not percent-encoded, so the
/// parser took part of the user-info for the path or query. The configuration step rejects
/// database and SMTP URLs like that instead of connecting to the wrong host.
pub fn stray_at(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|mut parsed| {
        mask_passwords(&mut parsed);
        at_after_host(&parsed)
    })
}

/// Masks the user-info password and every `password=` query parameter (the mysql crate takes
/// one) of `parsed`; whether anything was masked.
fn mask_passwords(parsed: &mut url::Url) -> bool {
    let mut changed = parsed.password().is_some() && parsed.set_password(Some(MASK)).is_ok();
    if parsed.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let masked = k.eq_ignore_ascii_case("password");
                (k.into_owned(), if masked { MASK.to_owned() } else { v.into_owned() })
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    changed
}

/// Every URL inside the free-form `message` passed through [`url`]: a safety net for messages
/// that embed a URL the caller did not redact (command-line errors, driver errors).
pub fn text(message: &str) -> String {
    let stops = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>');
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(found) = rest.find("://") {
        let start = rest[..found]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[found..].find(stops).map_or(rest.len(), |i| found + i);
        out.push_str(&rest[..start]);
        out.push_str(&url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A URL that may carry a password: a database or SMTP URL, or a target with user-info.
///
/// `{}` and `{:?}` show it as [`url`] does, so a [`crate::config::Config`] or an error that
/// embeds one can be printed safely. The full text is reached on purpose only: through
/// [`SecretUrl::expose`], or by deref to `&str` where the URL is handed to a driver (so
/// `store::open(&config.db_url)` reads like it did with a `String`). Redaction guards
/// printing, not access. Note that `.to_string()` is the redacted form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps `url` (not validated: that is the configuration step's job).
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The URL as given, password included: for connecting, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL as it may be printed.
    pub fn shown(&self) -> String {
        url(&self.0)
    }
}

impl std::ops::Deref for SecretUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.shown(), f)
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        SecretUrl(url)
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        SecretUrl(url.to_owned())
    }
}

impl PartialEq<str> for SecretUrl {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for SecretUrl {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// `text` with the bytes of `raw` that are not RFC 3986 "unreserved" percent-encoded: a
/// password fit to be put into a URL's user-info, whatever it contains (`@`, `:`, `/`, `%`).
/// `url::Url::set_password` alone leaves `%` as it is, so `p%41ss` would come back `pAss`.
pub fn encode_userinfo(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether URLs of `scheme` may hold an `@` after the host (in a path or query) legitimately.
fn at_may_follow_host(scheme: &str) -> bool {
    matches!(scheme, "http" | "https" | "sqlite")
}

/// Whether an `@` appears after the host of `parsed` (path, query or fragment).
fn at_after_host(parsed: &url::Url) -> bool {
    parsed[url::Position::BeforePath..].contains('@')
}

/// `text` with everything from `://` (or the first `:`) to the last `@` replaced by `***`;
/// unchanged when there is no `@`.
fn mask_through_last_at(text: &str) -> String {
    let start = match (text.find("://"), text.find(':')) {
        (Some(i), _) => i + 3,
        (None, Some(i)) => i + 1,
        (None, None) => 0,
    };
    match text.rfind('@') {
        Some(at) if at >= start => format!("{}{MASK}{}", &text[..start], &text[at..]),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_masked_and_the_rest_kept() {
        assert_eq!(
            url("mysql://monitor:s3cret@db:3306/monitor"),
            "mysql://monitor:***@db:3306/monitor"
        );
        assert_eq!(
            url("smtp://user:s3cret@mail.example.com:587?tls=required"),
            "smtp://user:***@mail.example.com:587?tls=required"
        );
        assert_eq!(
            url("https://user:s3cret@api.example.com/health"),
            "https://user:***@api.example.com/health"
        );
    }

    #[test]
    fn password_parameters_are_masked() {
        assert_eq!(
            url("mysql://monitor@db:3306/monitor?password=s3cret&pool_max=2"),
            "mysql://monitor@db:3306/monitor?password=***&pool_max=2"
        );
        assert_eq!(
            url("mysql://monitor@db/monitor?PASSWORD=s3c@ret"),
            "mysql://monitor@db/monitor?PASSWORD=***",
            "any case, and an `@` inside the value is not a stray one"
        );
    }

    #[test]
    fn urls_without_password_are_unchanged() {
        for same in [
            "sqlite://api-monitor.db",
            "sqlite:///var/lib/api-monitor/db@1.db",
            "https://api.qa.fitpay.ninja/health",
            "https://api.example.com/health?owner=ops@example.com",
            "http://127.0.0.1:8080/health%0D%0ABcc:%20evil@example.com/<script>",
            "mysql://monitor@db:3306/monitor",
            "smtp://127.0.0.1:2525",
        ] {
            assert_eq!(url(same), same, "nothing to hide in {same}");
        }
    }

    /// Every spelling of a password an operator might type: none of it may survive.
    #[test]
    fn awkward_passwords_are_masked_however_they_are_written() {
        let cases = [
            ("mysql://u:p%40ss@db/m", "p%40ss", "percent-encoded @"),
            ("mysql://u:p@ss@db/m", "p@ss", "raw @: the last @ ends the user-info"),
            ("mysql://u:pa:ss@db/m", "pa:ss", "raw :"),
            ("mysql://u:pa/ss@db/m", "pa/ss", "raw / after a non-numeric start: unparsable"),
            ("mysql://u:12/ss@db/m", "12/ss", "raw / after digits: parses as a port and path"),
            ("mysql://u:12?ss@db/m", "12?ss", "raw ?: parses as a port and query"),
            ("smtp://u:25#ss@mail:25", "25#ss", "raw #: parses as a port and fragment"),
            ("smtps://u:s%2F3%3Acret@mail:465", "s%2F3%3Acret", "percent-encoded / and :"),
            ("mysql://u:s3cret@[bad", "s3cret", "unparsable host"),
            ("postgres://u:s3cret@db/m", "s3cret", "an unsupported scheme"),
        ];
        for (raw, secret, why) in cases {
            let shown = url(raw);
            assert!(!shown.contains(secret), "{why}: {raw} was shown as {shown}");
            assert!(shown.contains(MASK), "{why}: {shown} says something was hidden");
        }
    }

    #[test]
    fn stray_at_signs_are_detected_except_in_password_parameters() {
        assert!(stray_at("mysql://u:12/ss@db/m"));
        assert!(stray_at("smtp://u:25#ss@mail:25"));
        assert!(!stray_at("mysql://u:p@ss@db/m"), "the parser found that user-info");
        assert!(!stray_at("mysql://u@db/m?password=a@b"));
        assert!(!stray_at("not a url"));
    }

    #[test]
    fn urls_inside_messages_are_redacted() {
        assert_eq!(
            text("invalid argument \"mysql://u:s3cret@db/m\" (see --help)"),
            "invalid argument \"mysql://u:***@db/m\" (see --help)"
        );
        assert_eq!(
            text("cannot connect to mysql://u:s3cret@db/m: refused; via smtp://m:s3cret@h:25."),
            "cannot connect to mysql://u:***@db/m: refused; via smtp://***@h:25.",
            "a URL that does not parse (port `25.`) is masked up to its last @"
        );
        assert_eq!(text("no url here: a://"), "no url here: a://");
        assert_eq!(text(""), "");
    }

    #[test]
    fn secret_urls_print_redacted_but_hand_out_the_real_text() {
        let secret = SecretUrl::new("mysql://u:s3cret@db/m");
        assert_eq!(format!("{secret}"), "mysql://u:***@db/m");
        assert_eq!(format!("{secret:?}"), "\"mysql://u:***@db/m\"");
        assert_eq!(secret.to_string(), "mysql://u:***@db/m", "to_string is the display form");
        assert_eq!(secret.expose(), "mysql://u:s3cret@db/m");
        let as_str: &str = &secret;
        assert_eq!(as_str, "mysql://u:s3cret@db/m", "deref hands the URL to a driver");
        assert_eq!(secret, "mysql://u:s3cret@db/m");
    }

    #[test]
    fn userinfo_encoding_round_trips_every_character() {
        let raw = "p%41 s@:/?#[]&=+ü";
        let encoded = encode_userinfo(raw);
        assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
        let mut parsed = url::Url::parse("mysql://u@db/m").unwrap();
        parsed.set_password(Some(&encoded)).unwrap();
        assert_eq!(parsed.password(), Some(encoded.as_str()), "set_password keeps it as is");
        let decoded: Vec<u8> = decode(&encoded);
        assert_eq!(String::from_utf8(decoded).unwrap(), raw);
    }

    fn decode(text: &str) -> Vec<u8> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }
}
