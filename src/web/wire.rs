//! HTTP/1.x on the wire for the `--listen` server, without I/O: reading a request head within a
//! size cap, and writing a [`Reply`] as bytes.
//!
//! The head is parsed by `httparse` from the bytes received so far; the server calls
//! [`parse_head`] again after every read until it answers `Complete` or `Refused`. Nothing here
//! allocates in proportion to what the client sends: the caller's buffer is at most
//! [`Limits::max_head`](crate::web::server::Limits::max_head) bytes, and a head that does not fit
//! is refused, never grown into.
//!
//! Every answer closes the connection (`Connection: close`, no keep-alive), so each reply is
//! written once with its `Content-Length` and the server never has to find where a second
//! request begins.

use crate::web::server::{Method, Reply};

/// Header lines parsed at most; more is answered like an oversized head.
pub const MAX_HEADERS: usize = 64;

/// A request head as far as it has been received.
#[derive(Debug, PartialEq, Eq)]
pub enum Head<'b> {
    /// The whole head is here.
    Complete(Request<'b>),
    /// More bytes are needed, and there is room for them.
    Partial,
    /// Answer with this refusal and close.
    Refused(Refusal),
}

/// What the server needs of a complete request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'b> {
    pub method: Method,
    /// The request target as sent (path and query).
    pub target: &'b str,
    /// The head announces a body (`Content-Length` above 0, or any `Transfer-Encoding`).
    pub has_body: bool,
}

/// Why a request is refused before it reaches [`route`](crate::web::server::route).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not an HTTP/1.x request head.
    Malformed,
    /// The request line and headers do not fit in the cap, or have too many lines.
    TooLarge,
    /// The head did not arrive whole before the deadline.
    TooSlow,
}

impl Refusal {
    /// The answer sent before closing.
    pub fn reply(self) -> Reply {
        match self {
            Refusal::Malformed => Reply::text(400, "bad request: not an HTTP/1.x request head\n"),
            Refusal::TooLarge => Reply::text(431, "request head too large\n"),
            Refusal::TooSlow => Reply::text(408, "request head not received in time\n"),
        }
    }
}

/// Parses the head in `received` (everything read so far); `max` is the cap on its size, so a
/// head still incomplete when `received` holds `max` bytes is [`Refusal::TooLarge`].
pub fn parse_head(received: &[u8], max: usize) -> Head<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(received) {
        Ok(httparse::Status::Complete(length)) if length <= max => {}
        Ok(httparse::Status::Complete(_)) => return Head::Refused(Refusal::TooLarge),
        Ok(httparse::Status::Partial) if received.len() >= max => {
            return Head::Refused(Refusal::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(httparse::Error::TooManyHeaders) => return Head::Refused(Refusal::TooLarge),
        Err(_) => return Head::Refused(Refusal::Malformed),
    }
    // Complete: httparse filled in the method and the path.
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Head::Refused(Refusal::Malformed);
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let has_body = request.headers.iter().any(|h| {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return true;
        }
        h.name.eq_ignore_ascii_case("content-length")
            && std::str::from_utf8(h.value).map_or(true, |v| v.trim() != "0")
    });
    Head::Complete(Request { method, target, has_body })
}

/// The reason phrase of the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// `reply` as bytes: status line, headers, and the body unless `method` is `HEAD` (whose
/// `Content-Length` is still the body's). Every reply carries `Content-Type`, `Cache-Control:
/// no-store`, `X-Content-Type-Options: nosniff`, `Content-Length` and `Connection: close`.
pub fn encode(reply: &Reply, method: Method) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    let fixed = [
        ("Content-Type", reply.content_type),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
    ];
    for (name, value) in fixed.iter().chain(&reply.headers) {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", reply.body.len()));
    let mut bytes = head.into_bytes();
    if method != Method::Head {
        bytes.extend_from_slice(reply.body.as_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 8 * 1024;

    #[test]
    fn a_complete_head_gives_method_and_target() {
        let head = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", MAX);
        assert_eq!(
            head,
            Head::Complete(Request {
                method: Method::Get,
                target: "/metrics?x=1",
                has_body: false
            })
        );
        let head = parse_head(b"HEAD / HTTP/1.0\r\n\r\n", MAX);
        assert!(matches!(head, Head::Complete(Request { method: Method::Head, .. })), "{head:?}");
        let head = parse_head(b"DELETE / HTTP/1.1\r\n\r\n", MAX);
        assert!(matches!(head, Head::Complete(Request { method: Method::Other, .. })), "{head:?}");
    }

    #[test]
    fn bytes_after_the_head_are_not_part_of_it() {
        let head = parse_head(b"GET / HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n", MAX);
        assert!(matches!(head, Head::Complete(Request { target: "/", .. })), "{head:?}");
    }

    #[test]
    fn an_unfinished_head_asks_for_more_until_the_cap() {
        assert_eq!(parse_head(b"", MAX), Head::Partial, "nothing yet");
        assert_eq!(parse_head(b"GET /healthz HT", MAX), Head::Partial, "mid request line");
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n", MAX),
            Head::Partial,
            "no blank line"
        );
        let mut long = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        long.resize(MAX, b'a');
        assert_eq!(parse_head(&long, MAX), Head::Refused(Refusal::TooLarge), "full and unfinished");
        assert_eq!(parse_head(&long[..MAX - 1], MAX), Head::Partial, "one byte of room left");
    }

    #[test]
    fn a_head_longer_than_the_cap_is_refused_even_when_complete() {
        let mut head = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        head.resize(100, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(parse_head(&head, 104), Head::Complete(_)), "exactly the cap");
        assert_eq!(parse_head(&head, 103), Head::Refused(Refusal::TooLarge), "one byte over");
    }

    #[test]
    fn too_many_header_lines_are_refused_as_too_large() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            head.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert!(head.len() < MAX, "small in bytes");
        assert_eq!(parse_head(&head, MAX), Head::Refused(Refusal::TooLarge));
    }

    #[test]
    fn garbage_is_malformed() {
        for garbage in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..], // a TLS ClientHello
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET\x00/ HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(garbage, MAX),
                Head::Refused(Refusal::Malformed),
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
    }

    #[test]
    fn a_body_is_noticed_from_the_head() {
        let body = |extra: &str| match parse_head(
            format!("GET / HTTP/1.1\r\n{extra}\r\n").as_bytes(),
            MAX,
        ) {
            Head::Complete(request) => request.has_body,
            other => panic!("{other:?}"),
        };
        assert!(!body(""), "no framing header");
        assert!(!body("Content-Length: 0\r\n"), "an empty body is no body");
        assert!(body("Content-Length: 5\r\n"));
        assert!(body("content-length: 5\r\n"), "names are case-insensitive");
        assert!(body("Transfer-Encoding: chunked\r\n"));
    }

    #[test]
    fn replies_are_encoded_with_length_and_close() {
        let mut reply = Reply::text(405, "no\n");
        reply.headers.push(("Allow", "GET, HEAD"));
        let text = String::from_utf8(encode(&reply, Method::Get)).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nAllow: GET, HEAD\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\nno\n"
        );
        let head = String::from_utf8(encode(&reply, Method::Head)).unwrap();
        assert!(head.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"), "{head}");
    }

    #[test]
    fn refusals_have_their_status() {
        assert_eq!(Refusal::Malformed.reply().status, 400);
        assert_eq!(Refusal::TooLarge.reply().status, 431);
        assert_eq!(Refusal::TooSlow.reply().status, 408);
    }
}
