//! Reading one HTTP/1.1 response from bytes as they arrive: pure, no I/O, no clock.
//!
//! The probe engine feeds whatever the socket gave and asks whether the answer is complete.
//! Everything a hostile or broken server can do to the reader is bounded here: the head
//! (interim `1xx` heads included) is cut at [`HEAD_CAP`] bytes and 128 header fields, the body
//! at the prober's cap, and a body announced larger than the cap is refused before a byte of
//! it is read. Parsing is `httparse`'s (the head, and the chunk sizes of a chunked body).

use super::Phase;
use super::Reason;

/// The largest response head (status line and header fields, interim heads included) read.
pub const HEAD_CAP: usize = 16 * 1024;
/// The most header fields a head may have.
const MAX_HEADERS: usize = 128;

/// The final head of a response: what the probe judges, and how its body is framed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// `Content-Type`, trimmed; `(not ASCII)` when it holds other bytes.
    pub content_type: Option<String>,
    pub location: Option<String>,
    framing: Framing,
}

/// How the body's end is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// HTTP/1.0 style: the body ends when the server closes the connection.
    UntilClose,
}

/// Where a chunked body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the line end after a chunk's data.
    DataEnd,
}

/// One response being read. Feed it bytes with [`Response::feed`], then ask [`Response::head`]
/// and [`Response::body`].
#[derive(Debug)]
pub struct Response {
    /// Bytes received and not consumed yet.
    input: Vec<u8>,
    /// Bytes of interim heads already consumed (they count toward the head cap).
    interim: usize,
    head: Option<Head>,
    body: Vec<u8>,
    chunk: Chunk,
    cap: usize,
}

impl Response {
    /// A response whose body may be at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Response {
            input: Vec::new(),
            interim: 0,
            head: None,
            body: Vec::new(),
            chunk: Chunk::Size,
            cap,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Whether the final head has been read (a fault after it is a fault of the body).
    pub fn phase(&self) -> Phase {
        if self.head.is_some() {
            Phase::Body
        } else {
            Phase::Head
        }
    }

    /// The final head once it is complete (`Ok(None)`: more bytes needed). `eof`: the server
    /// closed the connection, so no more bytes will come.
    pub fn head(&mut self, eof: bool) -> Result<Option<&Head>, Reason> {
        while self.head.is_none() {
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut fields);
            let status = parsed.parse(&self.input);
            match status {
                Ok(httparse::Status::Complete(length)) => {
                    if self.interim + length > HEAD_CAP {
                        return Err(Reason::HeadersTooLarge);
                    }
                    let code = parsed.code.unwrap_or(0);
                    if (100..200).contains(&code) && code != 101 {
                        // An interim answer (`100 Continue`, `103 Early Hints`): dropped, the
                        // final one follows.
                        self.interim += length;
                        self.input.drain(..length);
                        continue;
                    }
                    let head = final_head(code, parsed.headers)?;
                    self.input.drain(..length);
                    self.head = Some(head);
                }
                Ok(httparse::Status::Partial) => {
                    if self.interim + self.input.len() > HEAD_CAP {
                        return Err(Reason::HeadersTooLarge);
                    }
                    if eof {
                        return Err(Reason::ClosedWithoutResponse);
                    }
                    return Ok(None);
                }
                Err(httparse::Error::TooManyHeaders) => return Err(Reason::HeadersTooLarge),
                Err(e) => {
                    if self.interim + self.input.len() > HEAD_CAP {
                        return Err(Reason::HeadersTooLarge);
                    }
                    return Err(Reason::InvalidResponse {
                        detail: format!("malformed response head ({e})"),
                        phase: Phase::Head,
                    });
                }
            }
        }
        Ok(self.head.as_ref())
    }

    /// The whole body once it is complete (`Ok(None)`: more bytes needed). Call after
    /// [`Response::head`] gave the head.
    pub fn body(&mut self, eof: bool) -> Result<Option<&[u8]>, Reason> {
        let Some(head) = &self.head else { return Ok(None) };
        let too_large = Reason::BodyTooLarge { cap_kib: self.cap / 1024 };
        let complete = match head.framing {
            // Refused before a byte of it is read.
            Framing::Length(length) if length > self.cap as u64 => return Err(too_large),
            Framing::Length(length) => {
                let wanted = usize::try_from(length).unwrap_or(usize::MAX);
                let take = (wanted - self.body.len()).min(self.input.len());
                self.body.extend(self.input.drain(..take));
                if self.body.len() == wanted {
                    true
                } else if eof {
                    return Err(Reason::ClosedMidBody);
                } else {
                    false
                }
            }
            Framing::UntilClose => {
                self.body.append(&mut self.input);
                if self.body.len() > self.cap {
                    return Err(too_large);
                }
                eof
            }
            Framing::Chunked => match self.chunks()? {
                true => true,
                false if eof => return Err(Reason::ClosedMidBody),
                false => false,
            },
        };
        if self.body.len() > self.cap {
            return Err(too_large);
        }
        Ok(complete.then_some(&self.body[..]))
    }

    /// Decodes the chunks received so far; `true` once the last (empty) chunk was read.
    /// Trailer fields, if any, are not waited for.
    fn chunks(&mut self) -> Result<bool, Reason> {
        let invalid = |detail: &str| Reason::InvalidResponse {
            detail: format!("malformed chunked body ({detail})"),
            phase: Phase::Body,
        };
        loop {
            match self.chunk {
                Chunk::Size => match httparse::parse_chunk_size(&self.input) {
                    Ok(httparse::Status::Complete((used, 0))) => {
                        self.input.drain(..used);
                        return Ok(true);
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.input.drain(..used);
                        if size > (self.cap - self.body.len().min(self.cap)) as u64 {
                            return Err(Reason::BodyTooLarge { cap_kib: self.cap / 1024 });
                        }
                        self.chunk = Chunk::Data(size);
                    }
                    Ok(httparse::Status::Partial) => {
                        // A size line is short; a long one is garbage.
                        if self.input.len() > 1024 {
                            return Err(invalid("chunk size line too long"));
                        }
                        return Ok(false);
                    }
                    Err(_) => return Err(invalid("bad chunk size")),
                },
                Chunk::Data(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(self.input.len());
                    self.body.extend(self.input.drain(..take));
                    let left = left - take as u64;
                    if left > 0 {
                        self.chunk = Chunk::Data(left);
                        return Ok(false);
                    }
                    self.chunk = Chunk::DataEnd;
                }
                Chunk::DataEnd => {
                    if self.input.starts_with(b"\r\n") {
                        self.input.drain(..2);
                    } else if self.input.starts_with(b"\n") {
                        self.input.drain(..1);
                    } else if self.input.is_empty() || self.input == b"\r" {
                        return Ok(false);
                    } else {
                        return Err(invalid("no line end after a chunk"));
                    }
                    self.chunk = Chunk::Size;
                }
            }
        }
    }
}

/// The parts of a final head the probe needs, and its body framing (RFC 9112 §6.3).
fn final_head(status: u16, fields: &[httparse::Header<'_>]) -> Result<Head, Reason> {
    let text = |value: &[u8]| {
        std::str::from_utf8(value)
            .ok()
            .filter(|v| v.is_ascii())
            .map_or_else(|| "(not ASCII)".to_owned(), |v| v.trim().to_owned())
    };
    let mut head =
        Head { status, content_type: None, location: None, framing: Framing::UntilClose };
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for field in fields {
        if field.name.eq_ignore_ascii_case("content-type") {
            head.content_type = Some(text(field.value));
        } else if field.name.eq_ignore_ascii_case("location") {
            head.location = Some(text(field.value));
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = text(field.value)
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if field.name.eq_ignore_ascii_case("content-length") {
            let value: Option<u64> = std::str::from_utf8(field.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse().ok());
            match (value, length) {
                (Some(v), None) => length = Some(v),
                (Some(v), Some(seen)) if v == seen => {}
                _ => {
                    return Err(Reason::InvalidResponse {
                        detail: "invalid Content-Length".into(),
                        phase: Phase::Head,
                    })
                }
            }
        }
    }
    head.framing = if chunked {
        Framing::Chunked
    } else if let Some(length) = length {
        Framing::Length(length)
    } else if matches!(status, 204 | 304) {
        Framing::Length(0)
    } else {
        Framing::UntilClose
    };
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body once complete, `None` while incomplete, or why it failed.
    type Read = Result<Option<Vec<u8>>, Reason>;

    /// Feeds `input` in pieces of `step` bytes; the body (or the failure) once complete.
    fn read(input: &[u8], step: usize, eof: bool, cap: usize) -> Read {
        let mut response = Response::new(cap);
        let pieces: Vec<&[u8]> = input.chunks(step.max(1)).collect();
        let last = pieces.len().saturating_sub(1);
        for (n, piece) in pieces.iter().enumerate() {
            response.feed(piece);
            let end = eof && n == last;
            if response.head(end)?.is_none() {
                continue;
            }
            if let Some(body) = response.body(end)? {
                return Ok(Some(body.to_vec()));
            }
        }
        if input.is_empty() && eof {
            response.head(true)?;
        }
        Ok(None)
    }

    #[test]
    fn bodies_framed_every_way_are_read_whole_in_any_pieces() {
        let ok = Some(br#"{"status":"OK"}"#.to_vec());
        let cases: [(&[u8], bool); 5] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"OK\"}", false),
            (b"HTTP/1.0 200 OK\r\n\r\n{\"status\":\"OK\"}", true),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5\r\n{\"sta\r\na;ext=1\r\ntus\":\"OK\"}\r\n0\r\n\r\n",
                false,
            ),
            (b"HTTP/1.1 200 OK\nContent-Length: 15\n\n{\"status\":\"OK\"}", false),
            (
                b"HTTP/1.1 100 Continue\r\nX: y\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n\
                  {\"status\":\"OK\"}",
                false,
            ),
        ];
        for (input, eof) in cases {
            for step in [1, 2, 7, 4096] {
                assert_eq!(
                    read(input, step, eof, 1024),
                    Ok(ok.clone()),
                    "{} in pieces of {step}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn each_broken_answer_has_its_reason() {
        let too_large = Err(Reason::BodyTooLarge { cap_kib: 1 });
        let long_head = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(HEAD_CAP));
        let cases: Vec<(&[u8], bool, Read)> = vec![
            (b"", true, Err(Reason::ClosedWithoutResponse)),
            (b"HTTP/1.1 200 O", true, Err(Reason::ClosedWithoutResponse)),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{", true, Err(Reason::ClosedMidBody)),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{",
                true,
                Err(Reason::ClosedMidBody),
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n", false, too_large.clone()),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n",
                false,
                too_large.clone(),
            ),
            (long_head.as_bytes(), false, Err(Reason::HeadersTooLarge)),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"st", false, Ok(None)),
        ];
        for (input, eof, expected) in cases {
            assert_eq!(
                read(input, 4096, eof, 1024),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let endless = vec![b'x'; 2000];
        let mut head = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
        head.extend_from_slice(&endless);
        assert_eq!(read(&head, 100, false, 1024), too_large);
        for garbage in [&b"<html>"[..], b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"] {
            assert!(
                matches!(read(garbage, 4096, false, 1024), Err(Reason::InvalidResponse { .. })),
                "{}",
                String::from_utf8_lossy(garbage)
            );
        }
    }

    #[test]
    fn the_head_gives_status_type_and_location() {
        let mut response = Response::new(1024);
        response
            .feed(b"HTTP/1.1 302 Found\r\nLocation:  /next \r\ncontent-type: text/html\r\n\r\n");
        let head = response.head(false).unwrap().unwrap().clone();
        assert_eq!(head.status, 302);
        assert_eq!(head.location.as_deref(), Some("/next"));
        assert_eq!(head.content_type.as_deref(), Some("text/html"));
        assert_eq!(response.phase(), Phase::Body);
        let mut response = Response::new(1024);
        response.feed(b"HTTP/1.1 200 OK\r\nContent-Type: application/js\xf6n\r\n\r\n");
        let head = response.head(false).unwrap().unwrap();
        assert_eq!(head.content_type.as_deref(), Some("(not ASCII)"));
    }

    #[test]
    fn a_large_announced_body_is_refused_only_when_it_is_read() {
        // The status is judged first: a 500 with a huge body is `HTTP 500`, not "too large".
        let mut response = Response::new(1024);
        response.feed(b"HTTP/1.1 500 Oops\r\nContent-Length: 99999999\r\n\r\n");
        assert_eq!(response.head(false).unwrap().map(|h| h.status), Some(500));
        assert_eq!(response.body(false), Err(Reason::BodyTooLarge { cap_kib: 1 }));
    }
}
