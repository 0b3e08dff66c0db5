//! The HTTP probe: one `GET` of the health URL, turned into an [`Outcome`].
//!
//! A failed probe is a value, not an error: every way the endpoint can misbehave — refused,
//! reset, silent, stalled, oversized, redirecting in circles, bad TLS, wrong content type,
//! malformed body, unresolvable host — maps to a short human reason that is logged and carried
//! into the email. Nothing here may panic or block past the deadline, because the monitor loop
//! waits for the probe before it can do anything else.
//!
//! The exchange is judged in order: the exchange itself ([`HttpProber::describe`], the one
//! place that turns client errors into reasons), then the status code, the `Content-Type`, the
//! body size and completeness, and finally the body ([`verdict`]).

use std::io::Read;
use std::time::Duration;

/// The result of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// HTTP 200 with a JSON body whose `status` is exactly `"OK"`.
    Healthy { latency: Duration },
    /// Anything else, with why.
    Failed { reason: String, latency: Duration },
    /// The proxy of the probing region itself failed (down, refused our credentials, closed
    /// without answering): this says nothing about the API, so it never counts as a failure.
    Blind { reason: String, latency: Duration },
}

impl Outcome {
    /// Whether the probe found the target healthy.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Outcome::Healthy { .. })
    }

    /// Why the probe failed or saw nothing; `None` when healthy.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Healthy { .. } => None,
            Outcome::Failed { reason, .. } | Outcome::Blind { reason, .. } => Some(reason),
        }
    }

    /// Whether the probe could not look at the API at all (its region's proxy failed).
    pub fn is_blind(&self) -> bool {
        matches!(self, Outcome::Blind { .. })
    }

    /// How long the probe took, failed or not (a timeout reads as the deadline).
    pub fn latency(&self) -> Duration {
        match self {
            Outcome::Healthy { latency }
            | Outcome::Failed { latency, .. }
            | Outcome::Blind { latency, .. } => *latency,
        }
    }
}

/// The largest health body read; a hostile or broken endpoint must not exhaust memory.
pub const BODY_CAP: usize = 64 * 1024;
/// Redirects followed before giving up (a loop is a failure, not a hang).
const MAX_REDIRECTS: usize = 5;

/// Something that can probe a target. The monitor loop depends on this, not on HTTP, so its
/// tests can script outcomes.
pub trait Prober: Send + Sync {
    /// Probes `url` once, through the HTTP proxy `proxy` when given (`http://[user:pass@]host:port`,
    /// tunnelled with CONNECT). Never panics and returns within the prober's deadline.
    fn probe(&self, url: &str, proxy: Option<&str>) -> Outcome;
}

/// The real probe: a blocking `GET` through `minreq` with a whole-request deadline.
#[derive(Clone, Debug)]
pub struct HttpProber {
    /// Whole seconds: `minreq` deadlines have one-second resolution.
    timeout_secs: u64,
    body_cap: usize,
}

impl HttpProber {
    /// A prober whose requests end after `timeout` (rounded up to whole seconds, at least 1).
    pub fn new(timeout: Duration) -> Self {
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        HttpProber { timeout_secs: secs.max(1), body_cap: BODY_CAP }
    }

    /// The same prober with another body cap (tests use a small one).
    pub fn with_body_cap(mut self, cap: usize) -> Self {
        self.body_cap = cap;
        self
    }
}

/// Why a probe did not find the target healthy.
#[derive(Debug)]
enum Miss {
    /// The API (or the path to it) failed.
    Api(String),
    /// The region's proxy failed; the API was not seen.
    Proxy(String),
}

impl From<String> for Miss {
    fn from(reason: String) -> Self {
        Miss::Api(reason)
    }
}

impl Prober for HttpProber {
    fn probe(&self, url: &str, proxy: Option<&str>) -> Outcome {
        let started = std::time::Instant::now();
        // `minreq` has a few `unwrap`s on I/O (e.g. writing the CONNECT line to a proxy that
        // already hung up); a hostile peer must not be able to kill the probe thread with them.
        let verdict =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.fetch(url, proxy)))
                .unwrap_or_else(|_| Err(Miss::Api("the HTTP client failed unexpectedly".into())));
        let latency = started.elapsed();
        match verdict {
            Ok(()) => Outcome::Healthy { latency },
            Err(Miss::Api(reason)) => Outcome::Failed { reason, latency },
            Err(Miss::Proxy(reason)) => Outcome::Blind { reason, latency },
        }
    }
}

/// The failure of `proxy` itself in `error`, if that is what it is. A proxy that answers
/// CONNECT with an error status (it could not reach the API) is *not* one: from that region the
/// API is unreachable, which is exactly what the region is there to notice.
fn proxy_fault(error: &minreq::Error, proxy: &str) -> Option<String> {
    let host = host(proxy);
    match error {
        minreq::Error::InvalidProxyCreds => {
            Some(format!("proxy {host} rejected the credentials (HTTP 407)"))
        }
        minreq::Error::BadProxyCreds => Some(format!("proxy {host}: invalid credentials")),
        minreq::Error::ProxyConnect => {
            Some(format!("proxy {host} closed the connection without answering CONNECT"))
        }
        minreq::Error::AddressNotFound => Some(format!("proxy {host}: DNS lookup failed")),
        minreq::Error::IoError(io) => match io.kind() {
            // With a proxy, the only TCP connection minreq opens is to the proxy.
            std::io::ErrorKind::ConnectionRefused => {
                Some(format!("proxy {host} unreachable: connection refused"))
            }
            _ if io.to_string().starts_with("failed to lookup address") => {
                Some(format!("proxy {host}: DNS lookup failed"))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Where in the exchange a client error struck: the same I/O error means something else before
/// and after the response head (a reset before it is a refusal to talk, after it a broken body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Resolving, connecting, the TLS handshake, sending, reading the status line and headers.
    Head,
    /// Reading the body.
    Body,
}

/// A failure of the exchange itself, before its content can be judged.
#[derive(Debug)]
enum Fault<'e> {
    /// An error reported by the HTTP client.
    Client(&'e minreq::Error, Stage),
    /// No parsable status line. `minreq` 3 turns a connection closed before any response (or a
    /// peer that does not speak HTTP) into a synthetic 503, told apart by its reason phrase.
    NoStatusLine,
    /// The peer closed the connection before `Content-Length` bytes arrived. `minreq` ends the
    /// body quietly in that case, so [`HttpProber::fetch`] counts the bytes itself.
    Truncated,
}

/// The reason phrase of `minreq`'s synthetic 503 for a missing or unparsable status line.
const NO_STATUS_LINE: &str = "Server did not provide a status line";

impl HttpProber {
    /// `Ok` when healthy, else the failure reason.
    ///
    /// The deadline is `minreq`'s: fixed once when the request starts (`timeout_at`), it bounds
    /// the DNS lookup, connect, TLS handshake and head (run on a helper thread that is abandoned
    /// at the deadline) and every body read (each read's socket timeout is the time *left*),
    /// so a body trickled one byte at a time still ends at the deadline.
    fn fetch(&self, url: &str, proxy: Option<&str>) -> Result<(), Miss> {
        let (address, authorization) = without_credentials(url);
        let mut request = minreq::get(address.as_ref())
            .with_timeout(self.timeout_secs)
            .with_header("User-Agent", concat!("api-monitor/", env!("CARGO_PKG_VERSION")))
            .with_header("Accept", "application/json")
            .with_max_redirects(MAX_REDIRECTS)
            .with_max_headers_size(16 * 1024)
            .with_max_status_line_length(1024);
        if let Some(value) = authorization {
            // minreq keeps every header across redirects, to any host: with credentials, a
            // redirect is answered as a failure (`HTTP 302`) rather than followed.
            request = request.with_header("Authorization", value).with_follow_redirects(false);
        }
        if let Some(proxy) = proxy {
            let parsed = minreq::Proxy::new(proxy)
                .map_err(|e| Miss::Proxy(format!("invalid proxy {}: {e}", host(proxy))))?;
            request = request.with_proxy(parsed);
        }
        let response =
            request.send_lazy().map_err(|e| match proxy.and_then(|p| proxy_fault(&e, p)) {
                Some(reason) => Miss::Proxy(reason),
                None if matches!(e, minreq::Error::BadProxy) => {
                    Miss::Api("proxy could not reach the API (CONNECT refused)".into())
                }
                None => Miss::Api(self.describe(Fault::Client(&e, Stage::Head), url)),
            })?;
        if response.status_code == 503 && response.reason_phrase == NO_STATUS_LINE {
            return Err(self.describe(Fault::NoStatusLine, url).into());
        }
        if response.status_code != 200 {
            return Err(format!("HTTP {}", response.status_code).into());
        }
        content_type_verdict(header(&response.headers, "content-type"))?;
        let cap = u64::try_from(self.body_cap).unwrap_or(u64::MAX);
        let exceeds = || format!("body exceeds {} KiB", self.body_cap / 1024);
        // `minreq` has already rejected a Content-Length that is not a number.
        let declared = header(&response.headers, "content-length").and_then(|v| v.parse().ok());
        if declared.is_some_and(|length: u64| length > cap) {
            return Err(exceeds().into());
        }
        // At most one byte past the cap is read, whatever the peer sends or announces.
        let mut body = Vec::with_capacity(256);
        response.take(cap.saturating_add(1)).read_to_end(&mut body).map_err(|e| {
            self.describe(Fault::Client(&minreq::Error::IoError(e), Stage::Body), url)
        })?;
        let received = u64::try_from(body.len()).unwrap_or(u64::MAX);
        if received > cap {
            return Err(exceeds().into());
        }
        if declared.is_some_and(|length| received < length) {
            return Err(self.describe(Fault::Truncated, url).into());
        }
        verdict(&body).map_err(Miss::Api)
    }

    /// The one place that turns a failed exchange (an HTTP-client error, a missing status
    /// line, a truncated body) into a failure reason.
    fn describe(&self, fault: Fault<'_>, url: &str) -> String {
        use std::io::ErrorKind;
        let (error, stage) = match fault {
            Fault::Client(error, stage) => (error, stage),
            Fault::NoStatusLine => return "connection closed without an HTTP response".into(),
            Fault::Truncated => return "connection closed before the body was complete".into(),
        };
        let during = match stage {
            Stage::Head => "",
            Stage::Body => " while reading the body",
        };
        match error {
            minreq::Error::IoError(io) => {
                if let Some(tls) = io.get_ref().and_then(rustls_error) {
                    return format!("TLS error: {tls}{during}");
                }
                // Errors raised while decoding a chunked body come wrapped in an `io::Error`.
                if let Some(inner) = io.get_ref().and_then(|e| e.downcast_ref::<minreq::Error>()) {
                    return self.describe(Fault::Client(inner, stage), url);
                }
                match io.kind() {
                    ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                        format!("timeout after {}s{during}", self.timeout_secs)
                    }
                    ErrorKind::ConnectionRefused => "connection refused".into(),
                    ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe => format!("connection reset{during}"),
                    ErrorKind::UnexpectedEof if stage == Stage::Body => {
                        "connection closed before the body was complete".into()
                    }
                    ErrorKind::UnexpectedEof => {
                        "connection closed before a complete response".into()
                    }
                    // std's resolver error has no stable kind; its message is fixed.
                    _ if io.to_string().starts_with("failed to lookup address") => {
                        format!("DNS lookup failed for {}", host(url))
                    }
                    _ => format!("network error: {io}{during}"),
                }
            }
            minreq::Error::AddressNotFound => format!("DNS lookup failed for {}", host(url)),
            minreq::Error::RustlsCreateConnection(tls) => format!("TLS error: {tls}"),
            minreq::Error::InfiniteRedirectionLoop => "redirect loop".into(),
            minreq::Error::TooManyRedirections => {
                format!("too many redirects (more than {MAX_REDIRECTS})")
            }
            minreq::Error::RedirectLocationMissing => "redirect without a Location header".into(),
            minreq::Error::InvalidProtocolInRedirect => "redirect to a non-HTTP URL".into(),
            minreq::Error::HeadersOverflow => "response headers too large".into(),
            minreq::Error::StatusLineOverflow => "status line too long".into(),
            minreq::Error::MalformedContentLength => "invalid Content-Length header".into(),
            other => format!("invalid HTTP response: {other}{during}"),
        }
    }
}

/// The text of the `rustls` error inside an I/O error, if that is what it carries: TLS handshake
/// and record errors reach us as `io::Error`s. The type is taken from `minreq`'s own variant, so
/// this matches exactly the `rustls` that `minreq` uses without depending on `rustls` directly.
fn rustls_error(inner: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<String> {
    fn downcast<T: std::error::Error + 'static>(
        _variant: fn(T) -> minreq::Error,
        inner: &(dyn std::error::Error + Send + Sync + 'static),
    ) -> Option<String> {
        inner.downcast_ref::<T>().map(T::to_string)
    }
    downcast(minreq::Error::RustlsCreateConnection, inner)
}

/// `url` without its user-info, and the `Authorization` header value that user-info stands for
/// (`Basic`, RFC 7617: base64 of `user:password`, each percent-decoded). `minreq` has no
/// user-info support: it would take `user` for the host. A URL without user-info comes back as
/// it is, with no header.
fn without_credentials(url: &str) -> (std::borrow::Cow<'_, str>, Option<String>) {
    use base64::Engine as _;
    use std::borrow::Cow;
    let Ok(mut parsed) = url::Url::parse(url) else { return (Cow::Borrowed(url), None) };
    if parsed.username().is_empty() && parsed.password().is_none() {
        return (Cow::Borrowed(url), None);
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    let mut pair = decode(parsed.username());
    pair.push(b':');
    pair.extend(decode(parsed.password().unwrap_or("")));
    // Cannot fail: a target URL has a host (validated at start-up), so it can lose its user-info.
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
    (Cow::Owned(parsed.into()), Some(header))
}

/// The host of `url` for a DNS reason (`url` was validated at start-up, so it parses).
fn host(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "the target host".into())
}

/// The first value of header `name` (case-insensitive), trimmed.
fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(key, _)| key.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
}

/// Judges the `Content-Type` of a 200: JSON media types (`application/json`, with or without
/// parameters, and structured `application/<name>+json` such as `application/health+json`) pass;
/// anything else fails even if the body happens to parse, because a health endpoint answering
/// `text/html` is usually a proxy's or framework's page, not the API. A missing header is
/// tolerated — small health endpoints often omit it — and the body is judged on its own.
pub fn content_type_verdict(value: Option<&str>) -> Result<(), String> {
    let Some(value) = value else { return Ok(()) };
    let media = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let structured_json = media
        .strip_prefix("application/")
        .and_then(|subtype| subtype.strip_suffix("+json"))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'));
    if media == "application/json" || structured_json {
        return Ok(());
    }
    let shown: String = media.chars().take(64).collect();
    Err(format!("content type {shown:?}, expected application/json"))
}

/// Judges a complete HTTP 200 body: healthy only if it is UTF-8 JSON with `"status": "OK"`.
pub fn verdict(body: &[u8]) -> Result<(), String> {
    let json: serde_json::Value = match std::str::from_utf8(body) {
        Err(_) => return Err("body is not UTF-8 text".into()),
        Ok(text) => serde_json::from_str(text).map_err(|_| "body is not JSON".to_string())?,
    };
    match json.get("status") {
        None => Err("no \"status\" field in JSON".into()),
        Some(serde_json::Value::String(s)) if s == "OK" => Ok(()),
        Some(serde_json::Value::String(s)) => {
            let shown: String = s.chars().take(64).collect();
            Err(format!("status {shown:?}"))
        }
        Some(other) => Err(format!("\"status\" is not a string: {}", json_kind(other))),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::thread::{self, JoinHandle};

    const JSON: Option<&str> = Some("application/json");

    fn probe_mock(status: usize, content_type: Option<&str>, body: &str) -> Outcome {
        let mut server = mockito::Server::new();
        let mut mock = server.mock("GET", "/health").with_status(status).with_body(body);
        if let Some(content_type) = content_type {
            mock = mock.with_header("content-type", content_type);
        }
        let mock = mock.create();
        let outcome = HttpProber::new(Duration::from_secs(5))
            .probe(&format!("{}/health", server.url()), None);
        mock.assert();
        outcome
    }

    /// A one-connection HTTP server on loopback for answers `mockito` cannot give (cut,
    /// trickled, endless or missing responses): reads the request head, then runs `answer`.
    fn raw_server(
        answer: impl FnOnce(&mut TcpStream) -> std::io::Result<()> + Send + 'static,
    ) -> (String, JoinHandle<std::io::Result<()>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept()?;
            stream.set_write_timeout(Some(Duration::from_secs(20)))?;
            let mut reader = BufReader::new(stream.try_clone()?);
            let mut line = String::new();
            while reader.read_line(&mut line)? > 2 {
                line.clear();
            }
            answer(&mut stream)
        });
        (url, handle)
    }

    #[test]
    fn ok_status_is_healthy_and_timed() {
        let outcome = probe_mock(200, JSON, r#"{"status":"OK","version":"1.2"}"#);
        assert!(outcome.is_healthy(), "{outcome:?}");
        assert!(outcome.latency() > Duration::ZERO);
    }

    #[test]
    fn each_kind_of_bad_answer_has_its_reason() {
        let cases = [
            (200, JSON, r#"{"status":"DEGRADED"}"#, "status \"DEGRADED\""),
            (200, JSON, r#"{"healthy":true}"#, "no \"status\" field in JSON"),
            (200, None, "<html>hello</html>", "body is not JSON"),
            (200, JSON, "", "body is not JSON"),
            (200, JSON, r#"{"status":null}"#, "\"status\" is not a string: null"),
            (200, JSON, r#"{"status":1}"#, "\"status\" is not a string: a number"),
            (200, JSON, r#"{"status":"ok"}"#, "status \"ok\""),
            (500, JSON, r#"{"status":"OK"}"#, "HTTP 500"),
            (503, None, "", "HTTP 503"),
            (503, Some("text/html"), "<h1>down</h1>", "HTTP 503"),
        ];
        for (status, content_type, body, reason) in cases {
            assert_eq!(
                probe_mock(status, content_type, body).reason(),
                Some(reason),
                "HTTP {status} {content_type:?} {body:?}"
            );
        }
    }

    #[test]
    fn json_content_types_and_a_missing_one_are_accepted() {
        for content_type in [
            None,
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("Application/JSON"),
            Some("application/health+json"),
        ] {
            let outcome = probe_mock(200, content_type, r#"{"status":"OK"}"#);
            assert!(outcome.is_healthy(), "{content_type:?}: {outcome:?}");
        }
    }

    #[test]
    fn other_content_types_fail_even_with_a_json_body() {
        let outcome = probe_mock(200, Some("text/html; charset=utf-8"), r#"{"status":"OK"}"#);
        assert_eq!(outcome.reason(), Some("content type \"text/html\", expected application/json"));
        let outcome = probe_mock(200, Some("text/plain"), r#"{"status":"OK"}"#);
        assert_eq!(
            outcome.reason(),
            Some("content type \"text/plain\", expected application/json")
        );
    }

    #[test]
    fn content_type_rules() {
        let expected =
            |shown: &str| Err(format!("content type {shown:?}, expected application/json"));
        assert_eq!(content_type_verdict(None), Ok(()), "missing: the body is judged");
        assert_eq!(content_type_verdict(Some(" application/json ;charset=UTF-8")), Ok(()));
        assert_eq!(content_type_verdict(Some("application/problem+json")), Ok(()));
        assert_eq!(content_type_verdict(Some("application/+json")), expected("application/+json"));
        assert_eq!(content_type_verdict(Some("text/json")), expected("text/json"));
        assert_eq!(content_type_verdict(Some("")), expected(""));
        let hostile = format!("text/\"x\r\n{}", "y".repeat(500));
        let reason = content_type_verdict(Some(&hostile)).unwrap_err();
        assert!(reason.len() < 120 && !reason.contains('\n'), "clipped and escaped: {reason}");
    }

    #[test]
    fn announced_body_over_the_cap_fails_without_reading_it() {
        let mut server = mockito::Server::new();
        let big = format!(r#"{{"status":"OK","pad":"{}"}}"#, "x".repeat(10_000));
        server.mock("GET", "/health").with_body(big).create();
        let outcome = HttpProber::new(Duration::from_secs(5))
            .with_body_cap(4096)
            .probe(&format!("{}/health", server.url()), None);
        assert_eq!(outcome.reason(), Some("body exceeds 4 KiB"));
    }

    #[test]
    fn endless_unannounced_body_is_cut_at_the_cap() {
        // No Content-Length: the body would go on until the server closes. The probe must stop
        // reading at the cap and hang up, which makes the server's writes fail long before the
        // 256 MiB it would send (socket buffers hold a few MiB at most).
        let (url, server) = raw_server(|stream| {
            stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n\
                  {\"status\":\"OK\",\"pad\":\"",
            )?;
            let pad = [b'x'; 64 * 1024];
            for _ in 0..4096 {
                stream.write_all(&pad)?;
            }
            Ok(())
        });
        let outcome =
            HttpProber::new(Duration::from_secs(10)).with_body_cap(4096).probe(&url, None);
        assert_eq!(outcome.reason(), Some("body exceeds 4 KiB"));
        assert!(server.join().unwrap().is_err(), "the probe hung up instead of reading on");
    }

    #[test]
    fn body_cut_short_of_its_content_length_is_a_failure() {
        let (url, server) = raw_server(|stream| {
            stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\
                  Connection: close\r\n\r\n{\"status\":\"OK\"",
            )
        });
        let outcome = HttpProber::new(Duration::from_secs(5)).probe(&url, None);
        assert_eq!(outcome.reason(), Some("connection closed before the body was complete"));
        server.join().unwrap().unwrap();
    }

    #[test]
    fn connection_closed_without_a_response_is_a_failure() {
        let (url, server) = raw_server(|_| Ok(()));
        let outcome = HttpProber::new(Duration::from_secs(5)).probe(&url, None);
        assert_eq!(outcome.reason(), Some("connection closed without an HTTP response"));
        server.join().unwrap().unwrap();
    }

    #[test]
    fn trickled_body_ends_at_the_total_deadline() {
        // One byte every 100 ms never trips a per-read timeout of 1 s; only a deadline for the
        // whole request does. Were the deadline per read, this body would complete (after about
        // 20 s) and the probe would report the target healthy.
        let (url, server) = raw_server(|stream| {
            let (start, spaces, end) = (&b"{\"status\":"[..], 200, &b"\"OK\"}"[..]);
            let length = start.len() + spaces + end.len();
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\
                 Connection: close\r\n\r\n"
            )?;
            stream.write_all(start)?;
            for _ in 0..spaces {
                thread::sleep(Duration::from_millis(100));
                stream.write_all(b" ")?;
            }
            stream.write_all(end)
        });
        let outcome = HttpProber::new(Duration::from_secs(1)).probe(&url, None);
        assert_eq!(outcome.reason(), Some("timeout after 1s while reading the body"));
        let _ = server.join();
    }

    #[test]
    fn timeout_is_a_failure_with_the_deadline() {
        // A listener that accepts (the kernel completes the handshake) but never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let outcome = HttpProber::new(Duration::from_secs(1)).probe(&url, None);
        assert_eq!(outcome.reason(), Some("timeout after 1s"));
        assert!(outcome.latency() >= Duration::from_millis(900), "{outcome:?}");
        drop(listener);
    }

    #[test]
    fn refused_connection_is_a_failure() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let outcome = HttpProber::new(Duration::from_secs(2))
            .probe(&format!("http://127.0.0.1:{port}/"), None);
        assert_eq!(outcome.reason(), Some("connection refused"));
    }

    #[test]
    fn redirect_to_itself_is_a_loop() {
        let mut server = mockito::Server::new();
        server.mock("GET", "/health").with_status(302).with_header("location", "/health").create();
        let outcome = HttpProber::new(Duration::from_secs(5))
            .probe(&format!("{}/health", server.url()), None);
        assert_eq!(outcome.reason(), Some("redirect loop"));
    }

    #[test]
    fn endless_chain_of_redirects_is_cut_off() {
        let mut server = mockito::Server::new();
        server
            .mock("GET", mockito::Matcher::Regex("^/hop/".into()))
            .with_status(302)
            .with_header_from_request("location", |request| {
                let hop: u32 = request.path().trim_start_matches("/hop/").parse().unwrap();
                format!("/hop/{}", hop + 1)
            })
            .create();
        let outcome =
            HttpProber::new(Duration::from_secs(5)).probe(&format!("{}/hop/0", server.url()), None);
        assert_eq!(outcome.reason(), Some("too many redirects (more than 5)"));
    }

    #[test]
    fn unresolvable_host_is_a_dns_failure() {
        // `.invalid` is reserved (RFC 2606): no resolver may answer it.
        let outcome = HttpProber::new(Duration::from_secs(5))
            .probe("http://nonexistent.invalid/health", None);
        assert_eq!(outcome.reason(), Some("DNS lookup failed for nonexistent.invalid"));
    }

    #[test]
    fn verdict_rejects_non_utf8() {
        assert_eq!(verdict(b"\x1f\x8b\x08\x00"), Err("body is not UTF-8 text".to_string()));
        assert_eq!(verdict(b"\xff\xfe{}"), Err("body is not UTF-8 text".to_string()));
        assert_eq!(verdict(br#"{"status":"OK"}"#), Ok(()));
    }

    #[test]
    fn user_info_becomes_a_basic_authorization_header() {
        let (url, auth) = without_credentials("http://probe:p%40ss%3Aw0rd@127.0.0.1:8080/health");
        assert_eq!(url, "http://127.0.0.1:8080/health", "minreq gets no user-info");
        assert_eq!(auth.as_deref(), Some("Basic cHJvYmU6cEBzczp3MHJk"), "base64(probe:p@ss:w0rd)");
        let (url, auth) = without_credentials("https://api.example.com/health");
        assert_eq!((url.as_ref(), auth), ("https://api.example.com/health", None));
    }

    #[test]
    fn credentials_in_the_target_url_become_basic_auth() {
        let mut server = mockito::Server::new();
        let mock = server
            .mock("GET", "/health")
            .match_header("authorization", "Basic cHJvYmU6cCBAc3M=") // probe:p @ss
            .with_header("content-type", "application/json")
            .with_body(r#"{"status":"OK"}"#)
            .create();
        let url = server.url().replacen("http://", "http://probe:p%20%40ss@", 1);
        let outcome = HttpProber::new(Duration::from_secs(5)).probe(&format!("{url}/health"), None);
        assert!(outcome.is_healthy(), "{outcome:?}");
        mock.assert();
    }
}
