//! The `--listen` HTTP server: `/metrics`, `/healthz` and the status page, read-only.
//!
//! A small synchronous server (`tiny_http`) on a few threads of its own, apart from the probe
//! loops: a scrape or a page view never delays a probe, and nothing here can change what the
//! monitor does. What each path answers is decided by [`route`], a pure function of the method,
//! the path and the data sources, so every answer is tested without a socket; the threads only
//! move requests between the socket and [`route`].
//!
//! Concurrency: [`WORKERS`] threads take requests from the one listening socket. The status
//! page may be slow (its source reads the database), so at most [`STATUS_RENDERS`] of them
//! render it at a time and further page requests get a quick 503: at least one worker always
//! remains for `/metrics` and `/healthz`, which only read memory.
//!
//! Binding beyond loopback is the operator's explicit choice (`--listen 0.0.0.0:9898`); the
//! data served is what the monitor already logs, and nothing accepts input.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::web::metrics::Registry;

/// Threads answering requests.
pub const WORKERS: usize = 4;

/// Status pages rendered at once, at most; fewer than [`WORKERS`] so that metrics and health
/// checks are always answered.
pub const STATUS_RENDERS: usize = 2;

/// How long [`Server::stop`] waits for requests in flight before it returns anyway: a status
/// page stuck on the database must not hold up the monitor's exit.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Each worker's stack: requests are handled shallowly and bodies live on the heap.
const STACK_SIZE: usize = 256 * 1024;

/// Renders the status page on request: the caller's function, typically reading the history
/// from the database and calling [`crate::web::status_page::render`]. An `Err` (the database is
/// unreachable, say) is answered with 503 and its text.
pub type StatusSource = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Why the server could not start. The caller reports it and exits; nothing was left running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address is malformed, in use, or not ours to bind.
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: String, source: Box<dyn std::error::Error + Send + Sync> },
    /// A worker thread could not be created.
    #[error("cannot start the HTTP server thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// What the server answers from: the metrics registry and the status page source.
#[derive(Clone)]
pub struct Sources {
    pub registry: Arc<Registry>,
    pub status: StatusSource,
}

/// A running server. Stops on [`Server::stop`] or when dropped.
pub struct Server {
    http: Arc<tiny_http::Server>,
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    /// Disconnects once every worker has exited (each holds a sender).
    exited: mpsc::Receiver<()>,
}

/// Binds `addr` (`host:port`; port 0 picks a free one, see [`Server::local_addr`]) and serves
/// `sources` until stopped.
pub fn serve(addr: &str, sources: Sources) -> Result<Server, ServeError> {
    let http = tiny_http::Server::http(addr)
        .map_err(|source| ServeError::Bind { addr: addr.to_owned(), source })?;
    let local = http.server_addr().to_ip().ok_or_else(|| ServeError::Bind {
        addr: addr.to_owned(),
        source: "not an IP address".into(),
    })?;
    let (exit_sender, exited) = mpsc::channel();
    let mut server = Server {
        http: Arc::new(http),
        addr: local,
        stopping: Arc::new(AtomicBool::new(false)),
        workers: Vec::with_capacity(WORKERS),
        exited,
    };
    let rendering = Arc::new(AtomicUsize::new(0));
    for i in 0..WORKERS {
        let worker = Worker {
            http: Arc::clone(&server.http),
            sources: sources.clone(),
            stopping: Arc::clone(&server.stopping),
            rendering: Arc::clone(&rendering),
            _exit: exit_sender.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("http-{i}"))
            .stack_size(STACK_SIZE)
            .spawn(move || worker.run());
        match handle {
            Ok(handle) => server.workers.push(handle),
            Err(e) => {
                // Dropping `server` stops the workers already started; they hold the only
                // other senders, so it does not wait for this one.
                drop(exit_sender);
                drop(server);
                return Err(ServeError::Spawn(e));
            }
        }
    }
    log::info!("HTTP server listening addr={local} paths=/,/metrics,/healthz");
    Ok(server)
}

impl Server {
    /// The address actually bound (with the port chosen when `0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: no new request is taken, requests in flight get up to 2 s to finish,
    /// then this returns (a worker still busy ends with the process).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Each unblock wakes one worker waiting for a request; each worker exits on its first.
        for _ in 0..self.workers.len() {
            self.http.unblock();
        }
        let deadline = Instant::now() + STOP_GRACE;
        let mut all_exited = false;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Err(mpsc::RecvTimeoutError::Disconnected) = self.exited.recv_timeout(left) {
                all_exited = true;
                break;
            }
        }
        if all_exited {
            for worker in self.workers.drain(..) {
                if worker.join().is_err() {
                    log::error!("an HTTP server thread panicked");
                }
            }
        } else {
            log::warn!("HTTP server: a request still in flight after {STOP_GRACE:?}; not waiting");
        }
        // The listening socket closes when the last worker drops its handle on the server.
    }
}

/// One request-answering thread.
struct Worker {
    http: Arc<tiny_http::Server>,
    sources: Sources,
    stopping: Arc<AtomicBool>,
    /// Status pages being rendered right now, by all workers.
    rendering: Arc<AtomicUsize>,
    /// Dropped when the worker exits: how [`Server::stop`] learns it is done.
    _exit: mpsc::Sender<()>,
}

impl Worker {
    fn run(self) {
        while !self.stopping.load(Ordering::SeqCst) {
            match self.http.recv() {
                Ok(request) => self.answer(request),
                // Unblocked by `stop` (the loop condition then ends it).
                Err(_) if self.stopping.load(Ordering::SeqCst) => break,
                Err(e) => {
                    // tiny_http stops accepting after an accept error: nothing more will come.
                    log::error!("HTTP server: cannot accept connections: {e}; no longer serving");
                    break;
                }
            }
        }
    }

    fn answer(&self, request: tiny_http::Request) {
        let method = match request.method() {
            tiny_http::Method::Get => Method::Get,
            tiny_http::Method::Head => Method::Head,
            _ => Method::Other,
        };
        let reply = if method != Method::Other && path(request.url()) == "/" {
            match Slot::take(&self.rendering) {
                Some(_slot) => route(method, request.url(), &self.sources, Instant::now()),
                None => Reply::busy(),
            }
        } else {
            route(method, request.url(), &self.sources, Instant::now())
        };
        let url = request.url().to_owned();
        if let Err(e) = request.respond(reply.into_response()) {
            log::debug!("HTTP server: cannot answer {url}: {e}");
        }
    }
}

/// One of the [`STATUS_RENDERS`] places, held while a status page renders.
struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    fn take(rendering: &'a AtomicUsize) -> Option<Slot<'a>> {
        rendering
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < STATUS_RENDERS).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(rendering))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The request methods [`route`] tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    /// Answered as `Get`; the transport leaves the body out.
    Head,
    Other,
}

/// An answer, before it is written to the socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Headers beyond `Content-Type`, `Cache-Control` and `X-Content-Type-Options` (which
    /// every reply carries).
    pub headers: Vec<(&'static str, &'static str)>,
}

/// The exposition format's content type.
pub const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT_TYPE: &str = "text/plain; charset=utf-8";
const HTML_TYPE: &str = "text/html; charset=utf-8";
/// The status page needs inline CSS and nothing else: no script, no external resource.
const PAGE_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'";

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply { status, content_type: TEXT_TYPE, body: body.into(), headers: Vec::new() }
    }

    fn busy() -> Reply {
        let mut reply = Reply::text(503, "busy: the status page is being rendered; retry\n");
        reply.headers.push(("Retry-After", "5"));
        reply
    }

    fn into_response(self) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
        let headers = [
            ("Content-Type", self.content_type),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ];
        let mut response =
            tiny_http::Response::from_string(self.body).with_status_code(self.status);
        for (name, value) in headers.into_iter().chain(self.headers) {
            // Every name and value here is an ASCII constant of this module, so this holds.
            if let Ok(header) = tiny_http::Header::from_bytes(name, value) {
                response.add_header(header);
            }
        }
        response
    }
}

/// The path of a request target, without its query string.
fn path(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// What the server answers to `method` on `url`, given the data and the time `now`.
///
/// - `GET /metrics`: 200 with [`Registry::render`] in the exposition format;
/// - `GET /healthz`: 200 `ok`, or 503 naming each stuck loop ([`Registry::healthz`]);
/// - `GET /`: 200 with the status page, or 503 with the source's error;
/// - any other path: 404; any method other than `GET` or `HEAD`: 405.
pub fn route(method: Method, url: &str, sources: &Sources, now: Instant) -> Reply {
    let known = matches!(path(url), "/" | "/metrics" | "/healthz");
    if !known {
        return Reply::text(404, "not found: try /, /metrics or /healthz\n");
    }
    if method == Method::Other {
        let mut reply = Reply::text(405, "method not allowed: this server is read-only\n");
        reply.headers.push(("Allow", "GET, HEAD"));
        return reply;
    }
    match path(url) {
        "/metrics" => Reply {
            status: 200,
            content_type: METRICS_TYPE,
            body: sources.registry.render(),
            headers: Vec::new(),
        },
        "/healthz" => match sources.registry.healthz(now) {
            Ok(()) => Reply::text(200, "ok\n"),
            Err(stalled) => Reply::text(503, format!("{stalled}\n")),
        },
        _ => match (sources.status)() {
            Ok(page) => Reply {
                status: 200,
                content_type: HTML_TYPE,
                body: page,
                headers: vec![("Content-Security-Policy", PAGE_POLICY)],
            },
            Err(e) => {
                log::warn!("status page unavailable: {e}");
                Reply::text(503, format!("status page unavailable: {e}\n"))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Outcome;

    fn sources(status: Result<&'static str, &'static str>) -> Sources {
        Sources {
            registry: Arc::new(Registry::new()),
            status: Arc::new(move || status.map(str::to_owned).map_err(str::to_owned)),
        }
    }

    #[test]
    fn metrics_are_served_in_the_exposition_format() {
        let s = sources(Ok("page"));
        let reply = route(Method::Get, "/metrics", &s, Instant::now());
        assert_eq!((reply.status, reply.content_type), (200, METRICS_TYPE));
        assert_eq!(reply.body, s.registry.render());
        let with_query = route(Method::Get, "/metrics?name[]=x", &s, Instant::now());
        assert_eq!(with_query.status, 200, "a query string does not change the path");
    }

    #[test]
    fn healthz_is_503_with_the_reason_when_a_loop_is_stuck() {
        let s = sources(Ok("page"));
        let start = Instant::now();
        let watch =
            s.registry.register("t", "direct", Duration::from_secs(1), Duration::ZERO, start);
        let reply = route(Method::Get, "/healthz", &s, start + Duration::from_secs(1));
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));
        watch.probe(&Outcome::Healthy { latency: Duration::ZERO }, start);
        let reply = route(Method::Get, "/healthz", &s, start + Duration::from_secs(4));
        assert_eq!(reply.status, 503, "silent for 4 s, limit 3 s");
        assert_eq!(
            reply.body,
            "probe loop stuck: target=t region=direct no probe for 4s (limit 3s)\n"
        );
    }

    #[test]
    fn the_status_page_comes_from_its_source() {
        let reply = route(Method::Get, "/", &sources(Ok("<html>")), Instant::now());
        assert_eq!(
            (reply.status, reply.content_type, reply.body.as_str()),
            (200, HTML_TYPE, "<html>")
        );
        assert_eq!(reply.headers, [("Content-Security-Policy", PAGE_POLICY)]);
        let reply = route(Method::Get, "/", &sources(Err("database down")), Instant::now());
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (503, "status page unavailable: database down\n")
        );
    }

    #[test]
    fn unknown_paths_and_writing_methods_are_refused() {
        let s = sources(Ok("page"));
        assert_eq!(route(Method::Get, "/admin", &s, Instant::now()).status, 404);
        assert_eq!(route(Method::Get, "/metrics/", &s, Instant::now()).status, 404, "exact paths");
        let reply = route(Method::Other, "/metrics", &s, Instant::now());
        assert_eq!(reply.status, 405);
        assert_eq!(reply.headers, [("Allow", "GET, HEAD")]);
        assert_eq!(route(Method::Head, "/healthz", &s, Instant::now()).status, 200, "HEAD is GET");
    }

    #[test]
    fn status_renders_are_capped() {
        let rendering = AtomicUsize::new(0);
        let first = Slot::take(&rendering);
        let second = Slot::take(&rendering);
        assert!(first.is_some() && second.is_some(), "two at once are allowed");
        assert!(Slot::take(&rendering).is_none(), "a third waits its turn elsewhere");
        drop(first);
        assert!(Slot::take(&rendering).is_some(), "a finished render frees its place");
    }

    #[test]
    fn every_reply_header_is_valid() {
        let replies = [
            Reply::busy(),
            route(Method::Other, "/", &sources(Ok("")), Instant::now()),
            route(Method::Get, "/", &sources(Ok("")), Instant::now()),
        ];
        for reply in replies {
            let expected = 3 + reply.headers.len();
            let response = reply.into_response();
            // from_string's own Content-Type is replaced, not duplicated.
            assert_eq!(response.headers().len(), expected, "no header was dropped");
        }
    }
}
