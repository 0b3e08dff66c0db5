//! The fake API server: one thread per connection, one request per connection.
//!
//! A thread per connection is what lets `slow` hold a probe for 30 seconds while
//! `POST /control/ok` is still answered at once. Routing ([`route`]) and the choice of reply
//! ([`health_reply`]) are pure; [`serve`] and the script watcher are the only loops.

use crate::control::Shared;
use crate::events;
use crate::http::{self, Request, RequestError, Response};
use crate::mode::{Answer, Mode, UnknownMode};
use crate::script::Script;
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a connection may take to send its request or accept the reply.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Body of the `garbage` mode: what a misconfigured proxy or maintenance page serves.
const GARBAGE_BODY: &str = "<!DOCTYPE html>\n<html><head><title>Maintenance</title></head>\
                            <body><h1>We'll be back soon</h1></body></html>\n";

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
}

/// The reply to `GET /health` for one answer.
pub fn health_reply(answer: Answer, slow_delay: Duration) -> Reply {
    let status = |code: u16, status: &str| {
        Response::json(code, format!("{{\"status\":{}}}", http::json_string(status)))
    };
    match answer {
        Answer::Ok => Reply::Send(status(200, "OK")),
        Answer::Down => Reply::Send(status(200, "DOWN")),
        Answer::Error => Reply::Send(status(503, "ERROR")),
        Answer::SlowOk => Reply::SendAfter(slow_delay, status(200, "OK")),
        Answer::Garbage => Reply::Send(Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: GARBAGE_BODY.to_owned(),
        }),
        Answer::Reset => Reply::Close,
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

/// Accepts connections forever, each on its own thread. Accept errors (e.g. out of file
/// descriptors) are logged and retried after a short pause.
pub fn serve(listener: TcpListener, shared: Arc<Shared>, slow_delay: Duration) -> ! {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = Arc::clone(&shared);
                let spawned = thread::Builder::new()
                    .name("connection".into())
                    .spawn(move || serve_connection(stream, &shared, slow_delay));
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

/// Reads one request, logs it, answers it, closes the connection.
///
/// The request is logged when the reply is decided, before a `slow` wait, so a demo shows the
/// probe arriving at once (and tests can see that a slow request is being held).
fn serve_connection(mut stream: TcpStream, shared: &Shared, slow_delay: Duration) {
    let peer = stream.peer_addr().map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
    if let Err(e) = set_timeouts(&stream) {
        events::log(format_args!("peer={peer} error=\"cannot set socket timeouts: {e}\""));
        return;
    }
    let request = match http::read_request(&mut stream) {
        Ok(request) => request,
        Err(e) => return reject(&mut stream, &peer, &e),
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
    }
}

fn set_timeouts(stream: &TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))
}

/// Answers 400 to a malformed request; a connection that broke off is only logged.
fn reject(stream: &mut TcpStream, peer: &str, error: &RequestError) {
    let status = match error {
        RequestError::Malformed(_) | RequestError::TooLarge => {
            let body = format!("{{\"error\":{}}}", http::json_string(&error.to_string()));
            match stream.write_all(&Response::json(400, body).to_bytes()) {
                Ok(()) => "400",
                Err(_) => "none",
            }
        }
        RequestError::Io(_) | RequestError::Incomplete => "none",
    };
    events::log(format_args!("bad_request status={status} peer={peer} error=\"{error}\""));
}

/// Carries out `reply`.
fn finish(stream: &mut TcpStream, reply: &Reply) -> io::Result<()> {
    let response = match reply {
        Reply::Send(response) => response,
        Reply::SendAfter(delay, response) => {
            thread::sleep(*delay);
            response
        }
        Reply::Close => return Ok(()),
    };
    stream.write_all(&response.to_bytes())?;
    stream.flush()
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
            Reply::Send(r) => (r.status, r.body),
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
    }

    #[test]
    fn garbage_is_html_and_not_json() {
        let Reply::Send(response) = health_reply(Answer::Garbage, Duration::ZERO) else {
            panic!("garbage answers at once");
        };
        assert!(response.content_type.starts_with("text/html"));
        assert!(!response.body.trim_start().starts_with('{'), "must not look like JSON");
    }
}
