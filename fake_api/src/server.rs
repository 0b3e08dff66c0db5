//! The fake API server: one thread per connection, one request per connection.
//!
//! A thread per connection is what lets `slow` and `stall` hold a probe for 30 seconds while
//! `POST /control/ok` is still answered at once. Routing ([`route`]) and the choice of reply
//! ([`health_reply`]) are pure; [`serve`] and the script watcher are the only loops, and
//! [`finish`] is the one place that puts a reply — well-formed or deliberately broken — on the
//! wire, over plain TCP or TLS alike ([`Wire`]).

use crate::control::Shared;
use crate::events;
use crate::http::{self, Request, RequestError, Response};
use crate::mode::{Answer, Mode, UnknownMode};
use crate::script::Script;
use crate::tls;
use rustls::ServerConfig;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a connection may take to send its request or accept the reply.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Body of the `garbage` mode: what a misconfigured proxy or maintenance page serves.
const GARBAGE_BODY: &str = "<!DOCTYPE html>\n<html><head><title>Maintenance</title></head>\
                            <body><h1>We'll be back soon</h1></body></html>\n";

/// Body of the `binary` mode: the start of a gzip stream (magic, method, flags, mtime, XFL, OS,
/// deflate data), as served by a server that compresses without saying so. Not UTF-8.
const BINARY_BODY: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xab\x56\x2a\x2e\x49\x2c\x29\
                             \x2d\x56\xb2\x52\xf2\xf7\x56\xaa\x05\x00\xd1\x8b\xd9\x7e\x0f\x00\x00\x00";

/// Body length of the `huge` mode: 10 MiB, far over any sane health-body cap.
pub const HUGE_LENGTH: usize = 10 * 1024 * 1024;

/// How often `stall` sends the next byte of its body: far below any probe's per-read timeout.
pub const STALL_TICK: Duration = Duration::from_millis(200);

/// The body of the `cut` and `abort` modes; only its first half is sent.
const CUT_BODY: &str = r#"{"status":"OK","detail":"the rest of this body never arrives"}"#;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /health`
    Health,
    /// `GET /control`
    ShowMode,
    /// `POST /control/<mode>`
    Switch(Mode),
    /// `POST /control/<not a mode>`
    BadMode(UnknownMode),
    NotFound,
}

/// Maps a method and path to a [`Route`]; anything unknown is [`Route::NotFound`].
pub fn route(method: &str, path: &str) -> Route {
    match (method, path) {
        ("GET", "/health") => Route::Health,
        ("GET", "/control") => Route::ShowMode,
        ("POST", path) => match path.strip_prefix("/control/") {
            Some(name) => name.parse().map_or_else(Route::BadMode, Route::Switch),
            None => Route::NotFound,
        },
        _ => Route::NotFound,
    }
}

/// How to finish a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Send(Response),
    /// Wait, then send (the `slow` mode).
    SendAfter(Duration, Response),
    /// Close the connection without writing anything (the `reset` mode).
    Close,
    /// Send the head, which announces the whole body, and only the first `sent` bytes of the
    /// body; then end the connection as `ending` says (`cut`, `abort`).
    Cut {
        response: Response,
        sent: usize,
        ending: Ending,
    },
    /// Send the head and the first `sent` bytes of the body at once, then the rest one byte
    /// every `every` (`stall`).
    Trickle {
        response: Response,
        sent: usize,
        every: Duration,
    },
    /// Send a 200 `application/json` head without `Content-Length`, then `length` bytes of
    /// `{"status":"OK","pad":"xxx…"}` generated on the fly, then close (`huge`).
    Flood {
        length: usize,
    },
}

/// How a connection ends after a partial body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// An orderly close (FIN): the client reads a short body, then end-of-stream.
    Close,
    /// An abortive close (`SO_LINGER` 0, so the kernel sends RST): the client's next read
    /// fails with "connection reset".
    Reset,
}

/// The reply to `GET /health` for one answer. `slow_delay` is how long `slow` waits and how
/// long `stall` takes to finish its body.
pub fn health_reply(answer: Answer, slow_delay: Duration) -> Reply {
    let status = |code: u16, status: &str| {
        Response::json(code, format!("{{\"status\":{}}}", http::json_string(status)))
    };
    let cut = |ending| Reply::Cut {
        response: Response::json(200, CUT_BODY.to_owned()),
        sent: CUT_BODY.len() / 2,
        ending,
    };
    match answer {
        Answer::Ok => Reply::Send(status(200, "OK")),
        Answer::Down => Reply::Send(status(200, "DOWN")),
        Answer::Error => Reply::Send(status(503, "ERROR")),
        Answer::SlowOk => Reply::SendAfter(slow_delay, status(200, "OK")),
        Answer::Garbage => {
            Reply::Send(Response::new(200, "text/html; charset=utf-8", GARBAGE_BODY))
        }
        Answer::Reset => Reply::Close,
        Answer::Stall => {
            // Whitespace between `:` and the value is valid JSON, so the finished body parses.
            let (start, end) = ("{\"status\":", "\"OK\"}");
            let ticks = (slow_delay.as_millis() / STALL_TICK.as_millis()).max(1);
            let spaces = usize::try_from(ticks).unwrap_or(usize::MAX / 2);
            let body = format!("{start}{}{end}", " ".repeat(spaces));
            Reply::Trickle {
                response: Response::json(200, body),
                sent: start.len(),
                every: STALL_TICK,
            }
        }
        Answer::Cut => cut(Ending::Close),
        Answer::Abort => cut(Ending::Reset),
        Answer::Huge => Reply::Flood { length: HUGE_LENGTH },
        Answer::Redirect => {
            Reply::Send(Response::new(302, "text/plain", "").with_header("Location", "/health"))
        }
        Answer::Html => Reply::Send(Response::new(200, "text/html", r#"{"status":"OK"}"#)),
        Answer::Binary => Reply::Send(Response::new(200, "application/json", BINARY_BODY)),
        Answer::StatusNumber => Reply::Send(Response::json(200, r#"{"status":200}"#.into())),
        Answer::StatusNull => Reply::Send(Response::json(200, r#"{"status":null}"#.into())),
    }
}

fn mode_body(mode: Mode) -> String {
    format!("{{\"mode\":{}}}", http::json_string(mode.name()))
}

/// What handling one request decided, for the reply and the request log.
struct Handled {
    mode: Mode,
    answer: Option<Answer>,
    reply: Reply,
}

/// Applies one request to the shared state. Mode switches are logged here, under the lock.
fn handle(request: &Request, shared: &Shared, slow_delay: Duration) -> Handled {
    let now = Instant::now();
    match route(&request.method, &request.path) {
        Route::Health => {
            let (mode, answer) = shared.lock().answer(now);
            Handled { mode, answer: Some(answer), reply: health_reply(answer, slow_delay) }
        }
        Route::ShowMode => {
            let mode = shared.lock().mode(now);
            Handled { mode, answer: None, reply: Reply::Send(Response::json(200, mode_body(mode))) }
        }
        Route::Switch(to) => {
            let mut state = shared.lock();
            let switch = state.switch(to, now);
            let cancelled = if switch.cancelled_script { " script=cancelled" } else { "" };
            events::log(format_args!(
                "mode_change from={} to={} source=control{cancelled}",
                switch.from, switch.to
            ));
            Handled {
                mode: to,
                answer: None,
                reply: Reply::Send(Response::json(200, mode_body(to))),
            }
        }
        Route::BadMode(unknown) => {
            let body = format!("{{\"error\":{}}}", http::json_string(&unknown.to_string()));
            let mode = shared.lock().mode(now);
            Handled { mode, answer: None, reply: Reply::Send(Response::json(400, body)) }
        }
        Route::NotFound => {
            let mode = shared.lock().mode(now);
            let body =
                r#"{"error":"not found: try GET /health, GET /control, POST /control/<mode>"}"#;
            Handled { mode, answer: None, reply: Reply::Send(Response::json(404, body.into())) }
        }
    }
}

/// A connection the server answers on: plain TCP, or TLS over TCP ([`crate::tls`]).
pub trait Wire: Read + Write {
    /// The socket underneath, for socket options such as `SO_LINGER`.
    fn socket(&self) -> &TcpStream;

    /// Ends the stream in good order before the socket is closed (TLS sends `close_notify`).
    fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Wire for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

/// Accepts connections forever, each on its own thread; with `tls` every connection is HTTPS.
/// Accept errors (e.g. out of file descriptors) are logged and retried after a short pause.
pub fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    slow_delay: Duration,
    tls: Option<Arc<ServerConfig>>,
) -> ! {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = Arc::clone(&shared);
                let tls = tls.clone();
                let spawned = thread::Builder::new()
                    .name("connection".into())
                    .spawn(move || accept(stream, tls.as_ref(), &shared, slow_delay));
                if let Err(e) = spawned {
                    events::log(format_args!("error=\"cannot spawn connection thread: {e}\""));
                }
            }
            Err(e) => {
                events::log(format_args!("error=\"accept failed: {e}\""));
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Sets up one accepted connection (timeouts, TLS) and serves it.
fn accept(
    stream: TcpStream,
    tls: Option<&Arc<ServerConfig>>,
    shared: &Shared,
    slow_delay: Duration,
) {
    let peer = stream.peer_addr().map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
    if let Err(e) = set_timeouts(&stream) {
        events::log(format_args!("peer={peer} error=\"cannot set socket timeouts: {e}\""));
        return;
    }
    match tls {
        None => serve_connection(stream, &peer, shared, slow_delay),
        Some(config) => match tls::accept(config, stream) {
            Ok(stream) => serve_connection(stream, &peer, shared, slow_delay),
            Err(e) => events::log(format_args!("peer={peer} error=\"cannot start TLS: {e}\"")),
        },
    }
}

/// Reads one request, logs it, answers it, closes the connection.
///
/// The request is logged when the reply is decided, before a `slow` wait, so a demo shows the
/// probe arriving at once (and tests can see that a slow request is being held).
fn serve_connection(mut stream: impl Wire, peer: &str, shared: &Shared, slow_delay: Duration) {
    let request = match http::read_request(&mut stream) {
        Ok(request) => request,
        Err(e) => return reject(&mut stream, peer, &e),
    };
    let handled = handle(&request, shared, slow_delay);
    let answer = handled.answer.map(|a| format!(" answer={}", a.name())).unwrap_or_default();
    events::log(format_args!(
        "request method={} path={} mode={}{answer} status={} peer={peer}",
        request.method,
        request.path,
        handled.mode,
        describe(&handled.reply),
    ));
    if let Err(e) = finish(&mut stream, &handled.reply) {
        // Expected for `huge` and `stall` when the client gives up: the log says so.
        events::log(format_args!("peer={peer} error=\"cannot write response: {e}\""));
    }
}

/// The status part of the request log line.
fn describe(reply: &Reply) -> String {
    match reply {
        Reply::Send(response) => response.status.to_string(),
        Reply::SendAfter(delay, response) => {
            format!("{} delay={}", response.status, humantime::format_duration(*delay))
        }
        Reply::Close => "none closed=without-response".to_owned(),
        Reply::Cut { response, sent, ending } => {
            let end = match ending {
                Ending::Close => "close",
                Ending::Reset => "reset",
            };
            format!("{} body={sent}/{} then={end}", response.status, response.body.len())
        }
        Reply::Trickle { response, sent, every } => format!(
            "{} body={}/{} then=1-byte-every-{}",
            response.status,
            sent,
            response.body.len(),
            humantime::format_duration(*every)
        ),
        Reply::Flood { length } => format!("200 body={length} streamed"),
    }
}

fn set_timeouts(stream: &TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))
}

/// Answers 400 to a malformed request; a connection that broke off (or a TLS client that
/// rejected the certificate) is only logged.
fn reject(stream: &mut impl Wire, peer: &str, error: &RequestError) {
    let status = match error {
        RequestError::Malformed(_) | RequestError::TooLarge => {
            let body = format!("{{\"error\":{}}}", http::json_string(&error.to_string()));
            let sent = stream.write_all(&Response::json(400, body).to_bytes());
            match sent.and_then(|()| stream.close()) {
                Ok(()) => "400",
                Err(_) => "none",
            }
        }
        RequestError::Io(_) | RequestError::Incomplete => "none",
    };
    events::log(format_args!("bad_request status={status} peer={peer} error=\"{error}\""));
}

/// Carries out `reply`. Streaming replies write from small fixed buffers, so `huge` never holds
/// its 10 MiB in memory; a write error (the client hung up) ends the reply.
fn finish(stream: &mut impl Wire, reply: &Reply) -> io::Result<()> {
    match reply {
        Reply::Send(response) => send(stream, response),
        Reply::SendAfter(delay, response) => {
            thread::sleep(*delay);
            send(stream, response)
        }
        Reply::Close => Ok(()),
        Reply::Cut { response, sent, ending } => {
            stream.write_all(&response.head(Some(response.body.len())))?;
            stream.write_all(&response.body[..*sent])?;
            stream.flush()?;
            if *ending == Ending::Reset {
                // With a zero linger time, close() discards the connection with a RST. The bytes
                // above have already left: `write` hands them to the kernel, which sends them
                // ahead of the reset, and the client reads them before its read fails.
                socket2::SockRef::from(stream.socket()).set_linger(Some(Duration::ZERO))?;
            }
            Ok(())
        }
        Reply::Trickle { response, sent, every } => {
            stream.write_all(&response.head(Some(response.body.len())))?;
            stream.write_all(&response.body[..*sent])?;
            stream.flush()?;
            for byte in &response.body[*sent..] {
                thread::sleep(*every);
                stream.write_all(std::slice::from_ref(byte))?;
                stream.flush()?;
            }
            stream.close()
        }
        Reply::Flood { length } => flood(stream, *length),
    }
}

fn send(stream: &mut impl Wire, response: &Response) -> io::Result<()> {
    stream.write_all(&response.to_bytes())?;
    stream.flush()?;
    stream.close()
}

/// Streams `{"status":"OK","pad":"xxx…"}`, `length` bytes in all, with no `Content-Length`.
fn flood(stream: &mut impl Wire, length: usize) -> io::Result<()> {
    const PAD: [u8; 16 * 1024] = [b'x'; 16 * 1024];
    let (start, end) = (&b"{\"status\":\"OK\",\"pad\":\""[..], &b"\"}"[..]);
    stream.write_all(&Response::json(200, String::new()).head(None))?;
    stream.write_all(start)?;
    let mut left = length.saturating_sub(start.len() + end.len());
    while left > 0 {
        let n = left.min(PAD.len());
        stream.write_all(&PAD[..n])?;
        left -= n;
    }
    stream.write_all(end)?;
    stream.flush()?;
    stream.close()
}

/// Logs each scripted mode change when it happens: mode changes are computed from elapsed time
/// ([`crate::script::mode_at`]), so this thread only sleeps to the next step and writes the log
/// line. It stops as soon as a manual switch has cancelled the script.
pub fn spawn_script_watcher(
    shared: Arc<Shared>,
    script: Script,
    started: Instant,
) -> io::Result<()> {
    thread::Builder::new().name("script".into()).spawn(move || {
        let steps = script.steps();
        for (offset, index) in script.step_starts() {
            sleep_until(started + offset);
            let state = shared.lock();
            if !state.is_scripted() {
                return;
            }
            let (from, to) = (steps[index - 1].mode, steps[index].mode);
            if from != to {
                events::log(format_args!(
                    "mode_change from={from} to={to} source=script step={}/{}",
                    index + 1,
                    steps.len()
                ));
            }
        }
    })?;
    Ok(())
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        thread::sleep(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_the_three_endpoints() {
        assert_eq!(route("GET", "/health"), Route::Health);
        assert_eq!(route("GET", "/control"), Route::ShowMode);
        assert_eq!(route("POST", "/control/down"), Route::Switch(Mode::Down));
    }

    #[test]
    fn unknown_modes_and_paths_are_told_apart() {
        assert_eq!(route("POST", "/control/nap"), Route::BadMode(UnknownMode("nap".into())));
        assert_eq!(route("POST", "/control/"), Route::BadMode(UnknownMode(String::new())));
        assert_eq!(route("GET", "/control/down"), Route::NotFound, "switching needs POST");
        assert_eq!(route("POST", "/health"), Route::NotFound);
        assert_eq!(route("GET", "/"), Route::NotFound);
    }

    #[test]
    fn health_replies_match_the_modes() {
        let delay = Duration::from_secs(30);
        let body = |reply: Reply| match reply {
            Reply::Send(r) => (r.status, String::from_utf8(r.body).expect("text body")),
            other => panic!("expected an immediate reply, got {other:?}"),
        };
        assert_eq!(body(health_reply(Answer::Ok, delay)), (200, r#"{"status":"OK"}"#.into()));
        assert_eq!(body(health_reply(Answer::Down, delay)), (200, r#"{"status":"DOWN"}"#.into()));
        assert_eq!(body(health_reply(Answer::Error, delay)), (503, r#"{"status":"ERROR"}"#.into()));
        assert_eq!(health_reply(Answer::Reset, delay), Reply::Close);
        assert!(
            matches!(health_reply(Answer::SlowOk, delay), Reply::SendAfter(d, _) if d == delay),
            "slow waits the configured delay"
        );
        let json = [
            (Answer::StatusNumber, r#"{"status":200}"#),
            (Answer::StatusNull, r#"{"status":null}"#),
        ];
        for (answer, expected) in json {
            assert_eq!(body(health_reply(answer, delay)), (200, expected.into()), "{answer:?}");
        }
    }

    #[test]
    fn garbage_is_html_and_not_json() {
        let Reply::Send(response) = health_reply(Answer::Garbage, Duration::ZERO) else {
            panic!("garbage answers at once");
        };
        assert!(response.content_type.starts_with("text/html"));
        assert!(!response.body.trim_ascii_start().starts_with(b"{"), "must not look like JSON");
    }

    #[test]
    fn html_is_a_json_body_with_the_wrong_content_type() {
        let Reply::Send(response) = health_reply(Answer::Html, Duration::ZERO) else {
            panic!("html answers at once");
        };
        assert_eq!((response.status, response.content_type), (200, "text/html"));
        assert_eq!(response.body, br#"{"status":"OK"}"#);
    }

    #[test]
    fn binary_is_json_labelled_bytes_that_are_not_utf8() {
        let Reply::Send(response) = health_reply(Answer::Binary, Duration::ZERO) else {
            panic!("binary answers at once");
        };
        assert_eq!(response.content_type, "application/json");
        assert!(std::str::from_utf8(&response.body).is_err(), "not UTF-8");
        assert!(response.body.starts_with(&[0x1f, 0x8b]), "gzip magic");
    }

    #[test]
    fn redirect_points_at_itself() {
        let Reply::Send(response) = health_reply(Answer::Redirect, Duration::ZERO) else {
            panic!("redirect answers at once");
        };
        assert_eq!(response.status, 302);
        assert_eq!(response.headers, [("Location", "/health".to_owned())]);
    }

    #[test]
    fn cut_and_abort_send_half_a_body_then_end_differently() {
        for (answer, expected) in [(Answer::Cut, Ending::Close), (Answer::Abort, Ending::Reset)] {
            let Reply::Cut { response, sent, ending } = health_reply(answer, Duration::ZERO) else {
                panic!("{answer:?} cuts its body");
            };
            assert_eq!(ending, expected, "{answer:?}");
            assert!(sent > 0 && sent < response.body.len(), "{answer:?}: part of the body");
            assert_eq!(response.content_type, "application/json", "{answer:?}");
        }
    }

    #[test]
    fn stall_trickles_a_valid_body_over_the_slow_delay() {
        let Reply::Trickle { response, sent, every } =
            health_reply(Answer::Stall, Duration::from_secs(30))
        else {
            panic!("stall trickles");
        };
        let body = String::from_utf8(response.body).expect("text");
        assert_eq!(&body[..sent], r#"{"status":"#, "the head and the start go at once");
        assert_eq!(body.replace(' ', ""), r#"{"status":"OK"}"#, "finishes as valid JSON");
        let trickled = u32::try_from(body.len() - sent).expect("small");
        assert_eq!(every * (trickled - r#""OK"}"#.len() as u32), Duration::from_secs(30));
        assert!(every < Duration::from_secs(1), "each byte beats any per-read timeout");
    }

    #[test]
    fn stall_with_a_tiny_delay_still_trickles() {
        let Reply::Trickle { response, sent, .. } =
            health_reply(Answer::Stall, Duration::from_millis(1))
        else {
            panic!("stall trickles");
        };
        assert!(response.body.len() > sent);
    }

    #[test]
    fn huge_streams_ten_mebibytes() {
        assert_eq!(
            health_reply(Answer::Huge, Duration::ZERO),
            Reply::Flood { length: HUGE_LENGTH }
        );
        assert_eq!(HUGE_LENGTH, 10 * 1024 * 1024);
    }

    #[test]
    fn flood_writes_exactly_the_length_as_json() {
        let mut wire = MemoryWire(Vec::new());
        flood(&mut wire, 40_000).expect("in memory");
        let text = String::from_utf8(wire.0).expect("text");
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        assert!(!head.contains("Content-Length"), "{head}");
        assert_eq!(body.len(), 40_000);
        assert!(body.starts_with(r#"{"status":"OK","pad":"xx"#) && body.ends_with(r#"xx"}"#));
    }

    /// An in-memory [`Wire`] for the streaming replies (they never touch the socket).
    struct MemoryWire(Vec<u8>);

    impl Read for MemoryWire {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Ok(0)
        }
    }

    impl Write for MemoryWire {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write(buf)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Wire for MemoryWire {
        fn socket(&self) -> &TcpStream {
            unreachable!("streaming replies do not use socket options")
        }
    }
}
