//! Just enough HTTP/1.1 for a fake health API: read one request head, answer, close.
//!
//! Written on `std::net` rather than an HTTP library because several modes break HTTP on
//! purpose — `reset` closes without writing a byte, `cut` and `abort` stop in the middle of a
//! body, `stall` trickles it, `huge` streams one without a length — and because one request per
//! connection (`Connection: close`) keeps the server trivially correct. Parsing is pure and
//! unit-tested; [`read_request`] is the only function that touches the socket for reading.

use std::fmt;
use std::io::{self, Read};

/// Largest request head accepted; a health probe sends a few hundred bytes.
pub const MAX_HEAD: usize = 16 * 1024;

/// Largest request body read and thrown away; bigger bodies get the connection closed after the
/// answer (the fake API never needs a body).
pub const MAX_BODY: usize = 64 * 1024;

/// The parts of a request the fake API routes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target without its query string.
    pub path: String,
    /// `Content-Length`, 0 when absent.
    pub content_length: usize,
}

/// Why a request could not be read. `Io` covers timeouts and peers that went away.
#[derive(Debug)]
pub enum RequestError {
    Io(io::Error),
    /// The peer closed the connection before sending a complete head.
    Incomplete,
    TooLarge,
    Malformed(&'static str),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Io(e) => write!(f, "read failed: {e}"),
            RequestError::Incomplete => f.write_str("connection closed before a full request"),
            RequestError::TooLarge => write!(f, "request head over {MAX_HEAD} bytes"),
            RequestError::Malformed(what) => write!(f, "malformed request: {what}"),
        }
    }
}

impl From<io::Error> for RequestError {
    fn from(e: io::Error) -> Self {
        RequestError::Io(e)
    }
}

/// Reads one request head from `stream`, then reads and discards its body (up to
/// [`MAX_BODY`]) so closing the socket afterwards does not turn into a TCP reset for the peer.
pub fn read_request(stream: &mut impl Read) -> Result<Request, RequestError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(RequestError::Incomplete);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err(RequestError::TooLarge);
        }
    };
    let request = parse_head(&buf[..head_end])?;
    let already = buf.len() - head_end;
    if request.content_length > already && request.content_length <= MAX_BODY {
        let rest = (request.content_length - already) as u64;
        io::copy(&mut stream.take(rest), &mut io::sink())?;
    }
    Ok(request)
}

/// Index just past the blank line ending the head (`\r\n\r\n`, or a bare `\n\n`).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parses a request head (request line and header lines).
pub fn parse_head(head: &[u8]) -> Result<Request, RequestError> {
    let text = std::str::from_utf8(head).map_err(|_| RequestError::Malformed("not UTF-8"))?;
    let mut lines = text.lines();
    let request_line = lines.next().ok_or(RequestError::Malformed("empty request"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed("request line is not 'METHOD TARGET HTTP/x.y'"));
    };
    if method.is_empty() || !version.starts_with("HTTP/1.") {
        return Err(RequestError::Malformed("request line is not 'METHOD TARGET HTTP/1.x'"));
    }
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    let mut content_length = 0;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        if name.trim().eq_ignore_ascii_case("content-length") {
            content_length = value
                .trim()
                .parse()
                .map_err(|_| RequestError::Malformed("Content-Length is not a number"))?;
        }
    }
    Ok(Request { method: method.to_owned(), path: path.to_owned(), content_length })
}

/// A response; always sent with `Connection: close`. The body is bytes because some modes
/// answer with bytes that are not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Headers besides `Content-Type`, `Content-Length`, `Connection` and `Cache-Control`.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response; `body` must already be valid JSON.
    pub fn json(status: u16, body: String) -> Response {
        Response::new(status, "application/json", body)
    }

    /// A response with any content type and body.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, content_type, headers: Vec::new(), body: body.into() }
    }

    /// The same response with one more header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.head(Some(self.body.len()));
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// The status line and headers, with `Content-Length: length` when given; without it the
    /// body ends when the connection closes.
    pub fn head(&self, length: Option<usize>) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type
        );
        if let Some(length) = length {
            head.push_str(&format!("Content-Length: {length}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("Connection: close\r\nCache-Control: no-store\r\n\r\n");
        head.into_bytes()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// `s` as a JSON string literal, quotes included.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_probe_request() {
        let head = b"GET /health?probe=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n";
        let request = parse_head(head).expect("valid head");
        assert_eq!(
            request,
            Request { method: "GET".into(), path: "/health".into(), content_length: 0 },
            "query string dropped"
        );
    }

    #[test]
    fn reads_content_length_case_insensitively() {
        let head = b"POST /control/down HTTP/1.1\r\ncontent-LENGTH: 5\r\n\r\n";
        assert_eq!(parse_head(head).expect("valid head").content_length, 5);
    }

    #[test]
    fn rejects_garbage_request_lines() {
        for head in [&b"\r\n\r\n"[..], b"GET\r\n\r\n", b"GET / SMTP/1.0\r\n\r\n", b"GET / a b\r\n"]
        {
            assert!(
                matches!(parse_head(head), Err(RequestError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn read_request_consumes_a_body_that_arrives_after_the_head() {
        let head = &b"POST /control/ok HTTP/1.1\r\nContent-Length: 4\r\n\r\n"[..];
        let mut reader = head.chain(&b"abcdNEXT"[..]);
        let request = read_request(&mut reader).expect("reads");
        assert_eq!(request.path, "/control/ok");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).expect("in memory");
        assert_eq!(rest, b"NEXT", "exactly the body was consumed");
    }

    #[test]
    fn read_request_accepts_bare_newlines() {
        let mut reader = &b"GET /control HTTP/1.0\n\n"[..];
        assert_eq!(read_request(&mut reader).expect("reads").path, "/control");
    }

    #[test]
    fn read_request_reports_a_truncated_head() {
        let mut reader = &b"GET /health HTTP/1.1\r\nHost"[..];
        assert!(matches!(read_request(&mut reader), Err(RequestError::Incomplete)));
    }

    #[test]
    fn response_bytes_carry_length_and_close() {
        let bytes = Response::json(503, r#"{"status":"ERROR"}"#.into()).to_bytes();
        let text = String::from_utf8(bytes).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{text}");
        assert!(text.contains("Content-Length: 18\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"status\":\"ERROR\"}"), "{text}");
    }

    #[test]
    fn extra_headers_and_a_head_without_length() {
        let response = Response::new(302, "text/plain", "").with_header("Location", "/health");
        let head = String::from_utf8(response.head(None)).expect("ascii");
        assert!(head.starts_with("HTTP/1.1 302 Found\r\n"), "{head}");
        assert!(head.contains("Location: /health\r\n"), "{head}");
        assert!(!head.contains("Content-Length"), "the body ends at close: {head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
    }

    #[test]
    fn bodies_may_be_any_bytes() {
        let bytes = Response::new(200, "application/json", &b"\x1f\x8b"[..]).to_bytes();
        assert!(bytes.ends_with(
            b"Content-Length: 2\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n\x1f\x8b"
        ));
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\u{1}"), r#""a\"b\\c\u0001""#);
    }
}
