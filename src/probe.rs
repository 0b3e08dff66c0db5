//! The HTTP probe: one `GET` of the health URL, turned into an [`Outcome`].
//!
//! A failed probe is a value, not an error: every way the endpoint can misbehave maps to a
//! short human reason that is logged and carried into the email.

use std::io::Read;
use std::time::Duration;

/// The result of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// HTTP 200 with a JSON body whose `status` is exactly `"OK"`.
    Healthy { latency: Duration },
    /// Anything else, with why.
    Failed { reason: String, latency: Duration },
}

impl Outcome {
    pub fn is_healthy(&self) -> bool {
        matches!(self, Outcome::Healthy { .. })
    }

    /// Why the probe failed; `None` when healthy.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Healthy { .. } => None,
            Outcome::Failed { reason, .. } => Some(reason),
        }
    }

    pub fn latency(&self) -> Duration {
        match self {
            Outcome::Healthy { latency } | Outcome::Failed { latency, .. } => *latency,
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
    fn probe(&self, url: &str) -> Outcome;
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

impl Prober for HttpProber {
    fn probe(&self, url: &str) -> Outcome {
        let started = std::time::Instant::now();
        let verdict = self.fetch(url);
        let latency = started.elapsed();
        match verdict {
            Ok(()) => Outcome::Healthy { latency },
            Err(reason) => Outcome::Failed { reason, latency },
        }
    }
}

impl HttpProber {
    /// `Ok` when healthy, else the failure reason.
    fn fetch(&self, url: &str) -> Result<(), String> {
        let response = minreq::get(url)
            .with_timeout(self.timeout_secs)
            .with_header("User-Agent", concat!("api-monitor/", env!("CARGO_PKG_VERSION")))
            .with_header("Accept", "application/json")
            .with_max_redirects(MAX_REDIRECTS)
            .with_max_headers_size(16 * 1024)
            .with_max_status_line_length(1024)
            .send_lazy()
            .map_err(|e| self.describe(&e))?;
        if response.status_code != 200 {
            return Err(format!("HTTP {}", response.status_code));
        }
        let mut body = Vec::with_capacity(256);
        let limit = u64::try_from(self.body_cap).unwrap_or(u64::MAX).saturating_add(1);
        std::io::Read::take(response, limit).read_to_end(&mut body).map_err(|e| {
            format!("{} while reading the body", self.describe(&minreq::Error::IoError(e)))
        })?;
        if body.len() > self.body_cap {
            return Err(format!("body exceeds {} KiB", self.body_cap / 1024));
        }
        verdict(&body)
    }

    /// The one place that turns an HTTP-client error into a failure reason.
    fn describe(&self, error: &minreq::Error) -> String {
        use std::io::ErrorKind;
        match error {
            minreq::Error::IoError(io) => match io.kind() {
                ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                    format!("timeout after {}s", self.timeout_secs)
                }
                ErrorKind::ConnectionRefused => "connection refused".into(),
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe => "connection reset".into(),
                ErrorKind::UnexpectedEof => "connection closed before a complete response".into(),
                _ if io.to_string().contains("lookup") => format!("DNS lookup failed: {io}"),
                _ => format!("network error: {io}"),
            },
            minreq::Error::RustlsCreateConnection(tls) => format!("TLS error: {tls}"),
            minreq::Error::AddressNotFound => "DNS lookup found no address".into(),
            minreq::Error::InfiniteRedirectionLoop => "redirect loop".into(),
            minreq::Error::TooManyRedirections => format!("more than {MAX_REDIRECTS} redirects"),
            minreq::Error::HeadersOverflow => "response headers too large".into(),
            minreq::Error::StatusLineOverflow => "status line too long".into(),
            other => format!("invalid HTTP response: {other}"),
        }
    }
}

/// Judges a complete HTTP 200 body: healthy only if it is JSON with `"status": "OK"`.
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

    fn probe_mock(status: usize, body: &str) -> Outcome {
        let mut server = mockito::Server::new();
        let mock = server.mock("GET", "/health").with_status(status).with_body(body).create();
        let outcome =
            HttpProber::new(Duration::from_secs(5)).probe(&format!("{}/health", server.url()));
        mock.assert();
        outcome
    }

    #[test]
    fn ok_status_is_healthy_and_timed() {
        let outcome = probe_mock(200, r#"{"status":"OK","version":"1.2"}"#);
        assert!(outcome.is_healthy(), "{outcome:?}");
        assert!(outcome.latency() > Duration::ZERO);
    }

    #[test]
    fn each_kind_of_bad_answer_has_its_reason() {
        let cases = [
            (200, r#"{"status":"DEGRADED"}"#, "status \"DEGRADED\""),
            (200, r#"{"healthy":true}"#, "no \"status\" field in JSON"),
            (200, "<html>hello</html>", "body is not JSON"),
            (200, r#"{"status":null}"#, "\"status\" is not a string: null"),
            (200, r#"{"status":1}"#, "\"status\" is not a string: a number"),
            (200, r#"{"status":"ok"}"#, "status \"ok\""),
            (500, r#"{"status":"OK"}"#, "HTTP 500"),
            (503, "", "HTTP 503"),
        ];
        for (status, body, reason) in cases {
            assert_eq!(probe_mock(status, body).reason(), Some(reason), "HTTP {status} {body:?}");
        }
    }

    #[test]
    fn body_over_the_cap_fails_without_reading_it_all() {
        let mut server = mockito::Server::new();
        let big = format!(r#"{{"status":"OK","pad":"{}"}}"#, "x".repeat(10_000));
        server.mock("GET", "/health").with_body(big).create();
        let outcome = HttpProber::new(Duration::from_secs(5))
            .with_body_cap(4096)
            .probe(&format!("{}/health", server.url()));
        assert_eq!(outcome.reason(), Some("body exceeds 4 KiB"));
    }

    #[test]
    fn timeout_is_a_failure_with_the_deadline() {
        // A listener that accepts (the kernel completes the handshake) but never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let outcome = HttpProber::new(Duration::from_secs(1)).probe(&url);
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
        let outcome =
            HttpProber::new(Duration::from_secs(2)).probe(&format!("http://127.0.0.1:{port}/"));
        assert_eq!(outcome.reason(), Some("connection refused"));
    }

    #[test]
    fn verdict_rejects_non_utf8() {
        assert_eq!(verdict(b"\xff\xfe{}"), Err("body is not UTF-8 text".to_string()));
        assert_eq!(verdict(br#"{"status":"OK"}"#), Ok(()));
    }
}
