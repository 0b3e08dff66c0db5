//! Why a probe did not find its target healthy, as a typed value.
//!
//! Logs, emails and the `state.reason` column carry a reason's text ([`Reason`]'s `Display`),
//! which operators read and scripts grep, so the texts are fixed; metrics carry its
//! [`Reason::kind`], a short label that stays the same whatever the details (the status code,
//! the host, the deadline). Whether a reason blinds the region or fails the API is also decided
//! here, once ([`Reason::blinds`]).

use std::fmt;
use std::time::Duration;

/// Where in the exchange a fault struck: the same stall or reset means something else before
/// and after the response head (before it the server never answered, after it the body broke).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Resolving, connecting, the TLS handshake, sending, reading the status line and headers.
    Head,
    /// Reading the body.
    Body,
}

impl Phase {
    /// The suffix a reason takes in this phase: nothing, or ` while reading the body`.
    fn suffix(self) -> &'static str {
        match self {
            Phase::Head => "",
            Phase::Body => " while reading the body",
        }
    }
}

/// Why a probe failed, or why its region could not see the API. Its `Display` is the reason
/// text of the logs and emails (`docs/probing.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The request's deadline passed: `timeout after 5s`, or `… while reading the body`.
    Timeout { after: Duration, phase: Phase },
    /// Nothing listens on the target's port: `connection refused`.
    Refused,
    /// The peer reset the connection: `connection reset`, or `… while reading the body`.
    Reset { phase: Phase },
    /// The peer closed the connection before a complete response head.
    ClosedWithoutResponse,
    /// The peer closed the connection before the announced body was complete.
    ClosedMidBody,
    /// The target's host name does not resolve.
    Dns { host: String },
    /// The TLS handshake or a TLS record failed; `detail` is the TLS library's text.
    Tls { detail: String, phase: Phase },
    /// Any status but 200 (redirects aside): `HTTP 503`.
    HttpStatus(u16),
    /// A 200 whose `Content-Type` is not JSON; the media type, clipped to 64 characters.
    ContentType(String),
    /// The body exceeds the cap (given in KiB).
    BodyTooLarge { cap_kib: usize },
    /// The body is not UTF-8.
    BodyNotUtf8,
    /// The body is UTF-8 but not JSON.
    BodyNotJson,
    /// The JSON has no `status` field.
    NoStatusField,
    /// The JSON object has `status` more than once at its top level: which one counts is
    /// anybody's guess (serde_json keeps the last), so the answer is ambiguous.
    DuplicateStatusField,
    /// The `status` field is not a string; what it is instead (`a number`, `null`, …).
    StatusNotString(&'static str),
    /// The `status` field is a string other than `"OK"`; clipped to 64 characters.
    Status(String),
    /// A redirect leads back to a URL already visited.
    RedirectLoop,
    /// More redirects than the probe follows.
    TooManyRedirects { max: usize },
    /// A redirect status without a `Location` header.
    RedirectWithoutLocation,
    /// A redirect to something other than an `http`/`https` URL.
    RedirectNotHttp,
    /// The response head exceeds its cap (or a line in it is malformed beyond parsing).
    HeadersTooLarge,
    /// The response is not HTTP/1.x the client can read; the client's description.
    InvalidResponse { detail: String, phase: Phase },
    /// Another I/O failure; the system's description.
    Network { detail: String, phase: Phase },
    /// The HTTP client itself failed (a bug in it, caught rather than let take the loop down).
    ClientFailed,
    /// The proxy answered CONNECT with an error status: from this region the API cannot be
    /// reached, which is a failure of the API there, not of the proxy.
    ConnectRefused,
    /// The proxy refused our credentials (HTTP 407).
    ProxyCredentials { proxy: String },
    /// Nothing listens on the proxy's port.
    ProxyRefused { proxy: String },
    /// The proxy's host name does not resolve.
    ProxyDns { proxy: String },
    /// The proxy closed the connection (or reset it) without answering CONNECT.
    ProxyClosed { proxy: String },
    /// The proxy accepted (or never completed) the connection and did not answer CONNECT
    /// before the deadline.
    ProxySilent { proxy: String, after: Duration },
    /// Another failure talking to the proxy, before the tunnel was open.
    ProxyFailed { proxy: String, detail: String },
    /// A healthy answer that took longer than the target's `slow` limit: `slow: 2.31 s > 2s`.
    /// `took` is the probe's latency, measured like every probe's.
    Slow { took: Duration, limit: Duration },
}

impl Reason {
    /// A short, stable label for metrics: `timeout`, `refused`, `reset`, `closed`, `dns`,
    /// `tls`, `http_status`, `content_type`, `body`, `status`, `redirect`, `proxy`, `slow` or
    /// `other`.
    /// Every proxy reason is `proxy`, whether it blinds the region or (CONNECT refused) fails
    /// the API; the outcome tells those apart.
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::Timeout { .. } => "timeout",
            Reason::Refused => "refused",
            Reason::Reset { .. } => "reset",
            Reason::ClosedWithoutResponse | Reason::ClosedMidBody => "closed",
            Reason::Dns { .. } => "dns",
            Reason::Tls { .. } => "tls",
            Reason::HttpStatus(_) => "http_status",
            Reason::ContentType(_) => "content_type",
            Reason::BodyTooLarge { .. } | Reason::BodyNotUtf8 | Reason::BodyNotJson => "body",
            Reason::NoStatusField
            | Reason::DuplicateStatusField
            | Reason::StatusNotString(_)
            | Reason::Status(_) => "status",
            Reason::RedirectLoop
            | Reason::TooManyRedirects { .. }
            | Reason::RedirectWithoutLocation
            | Reason::RedirectNotHttp => "redirect",
            Reason::ConnectRefused
            | Reason::ProxyCredentials { .. }
            | Reason::ProxyRefused { .. }
            | Reason::ProxyDns { .. }
            | Reason::ProxyClosed { .. }
            | Reason::ProxySilent { .. }
            | Reason::ProxyFailed { .. } => "proxy",
            Reason::Slow { .. } => "slow",
            Reason::HeadersTooLarge
            | Reason::InvalidResponse { .. }
            | Reason::Network { .. }
            | Reason::ClientFailed => "other",
        }
    }

    /// Whether the API answered (with a status, a content type or a body judged wrong, or
    /// healthy but slow): such a probe's time is the API's latency and is kept
    /// ([`crate::latency`]); a timeout, a refused or broken connection is not.
    pub fn answered(&self) -> bool {
        matches!(
            self,
            Reason::HttpStatus(_)
                | Reason::ContentType(_)
                | Reason::BodyTooLarge { .. }
                | Reason::BodyNotUtf8
                | Reason::BodyNotJson
                | Reason::NoStatusField
                | Reason::DuplicateStatusField
                | Reason::StatusNotString(_)
                | Reason::Status(_)
                | Reason::Slow { .. }
        )
    }

    /// Whether this is a failure of the region's proxy itself, which says nothing about the
    /// API: such a probe is blind, not failed. A proxy that answers CONNECT with an error
    /// ([`Reason::ConnectRefused`]) is not one: it saw the API unreachable from its side.
    pub fn blinds(&self) -> bool {
        matches!(
            self,
            Reason::ProxyCredentials { .. }
                | Reason::ProxyRefused { .. }
                | Reason::ProxyDns { .. }
                | Reason::ProxyClosed { .. }
                | Reason::ProxySilent { .. }
                | Reason::ProxyFailed { .. }
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::duration::human;
        match self {
            Reason::Timeout { after, phase } => {
                write!(f, "timeout after {}{}", human(*after), phase.suffix())
            }
            Reason::Refused => f.write_str("connection refused"),
            Reason::Reset { phase } => write!(f, "connection reset{}", phase.suffix()),
            Reason::ClosedWithoutResponse => {
                f.write_str("connection closed without an HTTP response")
            }
            Reason::ClosedMidBody => f.write_str("connection closed before the body was complete"),
            Reason::Dns { host } => write!(f, "DNS lookup failed for {host}"),
            Reason::Tls { detail, phase } => write!(f, "TLS error: {detail}{}", phase.suffix()),
            Reason::HttpStatus(code) => write!(f, "HTTP {code}"),
            Reason::ContentType(media) => {
                write!(f, "content type {media:?}, expected application/json")
            }
            Reason::BodyTooLarge { cap_kib } => write!(f, "body exceeds {cap_kib} KiB"),
            Reason::BodyNotUtf8 => f.write_str("body is not UTF-8 text"),
            Reason::BodyNotJson => f.write_str("body is not JSON"),
            Reason::NoStatusField => f.write_str("no \"status\" field in JSON"),
            Reason::DuplicateStatusField => f.write_str("duplicate \"status\" field in JSON"),
            Reason::StatusNotString(what) => write!(f, "\"status\" is not a string: {what}"),
            Reason::Status(value) => write!(f, "status {value:?}"),
            Reason::RedirectLoop => f.write_str("redirect loop"),
            Reason::TooManyRedirects { max } => write!(f, "too many redirects (more than {max})"),
            Reason::RedirectWithoutLocation => f.write_str("redirect without a Location header"),
            Reason::RedirectNotHttp => f.write_str("redirect to a non-HTTP URL"),
            Reason::HeadersTooLarge => f.write_str("response headers too large"),
            Reason::InvalidResponse { detail, phase } => {
                write!(f, "invalid HTTP response: {detail}{}", phase.suffix())
            }
            Reason::Network { detail, phase } => {
                write!(f, "network error: {detail}{}", phase.suffix())
            }
            Reason::ClientFailed => f.write_str("the HTTP client failed unexpectedly"),
            Reason::ConnectRefused => {
                f.write_str("proxy could not reach the API (CONNECT refused)")
            }
            Reason::ProxyCredentials { proxy } => {
                write!(f, "proxy {proxy} rejected the credentials (HTTP 407)")
            }
            Reason::ProxyRefused { proxy } => {
                write!(f, "proxy {proxy} unreachable: connection refused")
            }
            Reason::ProxyDns { proxy } => write!(f, "proxy {proxy}: DNS lookup failed"),
            Reason::ProxyClosed { proxy } => {
                write!(f, "proxy {proxy} closed the connection without answering CONNECT")
            }
            Reason::ProxySilent { proxy, after } => {
                write!(f, "proxy {proxy} did not answer CONNECT within {}", human(*after))
            }
            Reason::ProxyFailed { proxy, detail } => write!(f, "proxy {proxy}: {detail}"),
            Reason::Slow { took, limit } => {
                // Hundredths of a second, rounded up: a probe over its limit never reads as
                // one that was not (`2.00 s > 2s` for 2.001 s would).
                let centis = took.as_nanos().div_ceil(10_000_000);
                write!(f, "slow: {}.{:02} s > {}", centis / 100, centis % 100, human(*limit))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_and_kinds() {
        let secs = Duration::from_secs;
        let proxy = || "proxy.example".to_string();
        let cases = [
            (Reason::Timeout { after: secs(5), phase: Phase::Head }, "timeout after 5s", "timeout"),
            (
                Reason::Timeout { after: Duration::from_millis(500), phase: Phase::Body },
                "timeout after 500ms while reading the body",
                "timeout",
            ),
            (Reason::Refused, "connection refused", "refused"),
            (Reason::Reset { phase: Phase::Head }, "connection reset", "reset"),
            (
                Reason::Reset { phase: Phase::Body },
                "connection reset while reading the body",
                "reset",
            ),
            (Reason::ClosedWithoutResponse, "connection closed without an HTTP response", "closed"),
            (Reason::ClosedMidBody, "connection closed before the body was complete", "closed"),
            (Reason::Dns { host: "a.invalid".into() }, "DNS lookup failed for a.invalid", "dns"),
            (
                Reason::Tls {
                    detail: "invalid peer certificate: UnknownIssuer".into(),
                    phase: Phase::Head,
                },
                "TLS error: invalid peer certificate: UnknownIssuer",
                "tls",
            ),
            (Reason::HttpStatus(503), "HTTP 503", "http_status"),
            (
                Reason::ContentType("text/html".into()),
                "content type \"text/html\", expected application/json",
                "content_type",
            ),
            (Reason::BodyTooLarge { cap_kib: 64 }, "body exceeds 64 KiB", "body"),
            (Reason::BodyNotUtf8, "body is not UTF-8 text", "body"),
            (Reason::BodyNotJson, "body is not JSON", "body"),
            (Reason::NoStatusField, "no \"status\" field in JSON", "status"),
            (Reason::DuplicateStatusField, "duplicate \"status\" field in JSON", "status"),
            (Reason::StatusNotString("a number"), "\"status\" is not a string: a number", "status"),
            (Reason::Status("DEGRADED".into()), "status \"DEGRADED\"", "status"),
            (Reason::RedirectLoop, "redirect loop", "redirect"),
            (Reason::TooManyRedirects { max: 5 }, "too many redirects (more than 5)", "redirect"),
            (Reason::RedirectWithoutLocation, "redirect without a Location header", "redirect"),
            (Reason::RedirectNotHttp, "redirect to a non-HTTP URL", "redirect"),
            (Reason::HeadersTooLarge, "response headers too large", "other"),
            (
                Reason::InvalidResponse { detail: "x".into(), phase: Phase::Head },
                "invalid HTTP response: x",
                "other",
            ),
            (
                Reason::Network { detail: "x".into(), phase: Phase::Body },
                "network error: x while reading the body",
                "other",
            ),
            (Reason::ClientFailed, "the HTTP client failed unexpectedly", "other"),
            (Reason::ConnectRefused, "proxy could not reach the API (CONNECT refused)", "proxy"),
            (
                Reason::ProxyCredentials { proxy: proxy() },
                "proxy proxy.example rejected the credentials (HTTP 407)",
                "proxy",
            ),
            (
                Reason::ProxyRefused { proxy: proxy() },
                "proxy proxy.example unreachable: connection refused",
                "proxy",
            ),
            (
                Reason::ProxyDns { proxy: proxy() },
                "proxy proxy.example: DNS lookup failed",
                "proxy",
            ),
            (
                Reason::ProxyClosed { proxy: proxy() },
                "proxy proxy.example closed the connection without answering CONNECT",
                "proxy",
            ),
            (
                Reason::ProxySilent { proxy: proxy(), after: secs(1) },
                "proxy proxy.example did not answer CONNECT within 1s",
                "proxy",
            ),
            (
                Reason::ProxyFailed { proxy: proxy(), detail: "x".into() },
                "proxy proxy.example: x",
                "proxy",
            ),
            (
                Reason::Slow { took: Duration::from_millis(2_310), limit: secs(2) },
                "slow: 2.31 s > 2s",
                "slow",
            ),
            (
                Reason::Slow {
                    took: Duration::from_millis(1_004),
                    limit: Duration::from_millis(300),
                },
                "slow: 1.01 s > 300ms",
                "slow",
            ),
            (
                Reason::Slow { took: Duration::from_micros(2_000_001), limit: secs(2) },
                "slow: 2.01 s > 2s",
                "slow",
            ),
            (
                Reason::Slow { took: secs(90), limit: Duration::from_millis(61_500) },
                "slow: 90.00 s > 1m 1s",
                "slow",
            ),
        ];
        for (reason, text, kind) in cases {
            assert_eq!((reason.to_string().as_str(), reason.kind()), (text, kind), "{reason:?}");
        }
    }

    #[test]
    fn only_failures_of_the_proxy_itself_blind_the_region() {
        let proxy = || "p".to_string();
        assert!(Reason::ProxyRefused { proxy: proxy() }.blinds());
        assert!(Reason::ProxySilent { proxy: proxy(), after: Duration::from_secs(1) }.blinds());
        assert!(Reason::ProxyCredentials { proxy: proxy() }.blinds());
        assert!(!Reason::ConnectRefused.blinds(), "the API is unreachable from the region");
        assert!(!Reason::Refused.blinds());
        let slow = Reason::Slow { took: Duration::from_secs(3), limit: Duration::from_secs(2) };
        assert!(!slow.blinds(), "a slow answer is the API's");
        assert!(!Reason::Timeout { after: Duration::from_secs(1), phase: Phase::Head }.blinds());
    }
}
