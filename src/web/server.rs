//! The `--listen` HTTP server: `/metrics`, `/healthz` and the status page, read-only.
//!
//! What each path answers is decided by [`route`], a pure function of the method, the path and
//! the data sources, so every answer is tested without a socket; the request head is read and
//! the reply written by the pure helpers of [`crate::web::wire`]. The threads here only move
//! bytes between sockets and those functions.
//!
//! # Why it is shaped this way
//!
//! Anyone who can reach the port is a client, and no client may take the server, or the
//! monitor, down. The previous server (`tiny_http` 0.12) spent a thread and file descriptors on
//! every connection: 511 idle connections under a 1,024-descriptor limit made its accept fail
//! with `EMFILE`, after which it never accepted again, and a request header had no size limit
//! (a 400 MiB header line grew the process to 390 MB). So everything here is bounded:
//!
//! - **Threads**: one accept thread (`web-accept`) and a fixed pool of [`Limits::workers`]
//!   (`web-0`…), all with small stacks. Nothing grows with the number of clients.
//! - **Connections**: the accept thread hands each connection to the workers through a
//!   queue of [`Limits::queue`] places. When it is full, the accept thread answers `503` with
//!   `Retry-After` itself, without blocking (the socket is non-blocking for that one write),
//!   and closes. At most `workers + queue` connections are open at once, so the descriptors
//!   the server holds are bounded too.
//! - **Time**: a connection has [`Limits::head_deadline`] from its accept for its whole request
//!   head, time in the queue included (a client trickling one byte a second is answered `408`
//!   and closed at that deadline, not at a per-read timeout it can keep resetting), and
//!   [`Limits::write_timeout`] for each write of the answer.
//! - **Memory**: the request line and headers together are capped at [`Limits::max_head`]
//!   bytes, read into one buffer per worker; beyond that `431` and close. No request body is
//!   read (`GET` and `HEAD` with a body get `413`), and there is no keep-alive: every answer
//!   carries `Connection: close`.
//! - **Accept errors** (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, …) are an episode, not an
//!   end: one warning when it starts, a pause of [`ACCEPT_BACKOFF`] between attempts, one info
//!   line when accepting has worked again for [`ACCEPT_QUIET`]. The listener is never given
//!   up while the server runs. (`ECONNABORTED`, a client that left before its accept, is not
//!   even an error.)
//!
//! The status page may be slow (its source may read the database), so at most
//! [`STATUS_RENDERS`] workers render it at a time and further page requests get a quick 503:
//! at least one worker always remains for `/metrics` and `/healthz`, which only read memory.
//! Idle or slow clients can still fill the workers and the queue for up to one head deadline;
//! while they do, new connections, health checks included, get the 503 rather than waiting.
//!
//! [`Server::stop`] sets a flag and wakes the accept thread by connecting to the listening
//! address (repeated until it has exited, in case descriptors are short); workers read in
//! slices of [`POLL`] and see the flag between them. A status page stuck on its source is
//! given 2 s, then left to end with the process.
//!
//! Binding beyond loopback is the operator's explicit choice (`--listen 0.0.0.0:9898`); the
//! data served is what the monitor already logs, and nothing accepts input.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::web::metrics::{Healthz, Registry};
use crate::web::wire::{self, Head, Refusal};

/// Threads answering requests, by default.
pub const WORKERS: usize = 4;

/// Accepted connections waiting for a worker, by default.
pub const QUEUE: usize = 32;

/// Status pages rendered at once, at most; fewer than [`WORKERS`] so that metrics and health
/// checks are always answered.
pub const STATUS_RENDERS: usize = 2;

/// How long [`Server::stop`] waits for requests in flight before it returns anyway: a status
/// page stuck on the database must not hold up the monitor's exit.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The pause between two failed accepts: long enough not to spin while descriptors are short,
/// short enough that service resumes soon after they are back.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The longest a worker blocks in one read, so that it notices [`Server::stop`] soon.
pub const POLL: Duration = Duration::from_millis(200);

/// Each worker's stack: requests are handled shallowly, buffers and bodies live on the heap.
const WORKER_STACK: usize = 256 * 1024;

/// The accept thread's stack: it accepts, queues, and at most writes a constant 503.
const ACCEPT_STACK: usize = 64 * 1024;

/// What the server spends at most; [`Limits::default`] is what `--listen` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Worker threads; at least [`STATUS_RENDERS`] + 1 are started whatever is asked, so one
    /// always remains for metrics and health.
    pub workers: usize,
    /// Accepted connections waiting for a worker (at least 1); beyond that, 503.
    pub queue: usize,
    /// Time for the whole request head, from the accept (time in the queue counts).
    pub head_deadline: Duration,
    /// Time for each write of the answer.
    pub write_timeout: Duration,
    /// Bytes of request line and headers, together.
    pub max_head: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            workers: WORKERS,
            queue: QUEUE,
            head_deadline: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_head: 8 * 1024,
        }
    }
}

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
    /// A server thread could not be created.
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
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    /// Disconnects once every thread has exited (each holds a sender).
    exited: Receiver<()>,
}

/// Binds `addr` (`host:port`; port 0 picks a free one, see [`Server::local_addr`]) and serves
/// `sources` within [`Limits::default`] until stopped.
pub fn serve(addr: &str, sources: Sources) -> Result<Server, ServeError> {
    serve_with(addr, sources, Limits::default())
}

/// [`serve`] within `limits`.
pub fn serve_with(addr: &str, sources: Sources, limits: Limits) -> Result<Server, ServeError> {
    let limits = Limits {
        workers: limits.workers.max(STATUS_RENDERS + 1),
        queue: limits.queue.max(1),
        ..limits
    };
    let bind_error =
        |source: std::io::Error| ServeError::Bind { addr: addr.to_owned(), source: source.into() };
    let listener = TcpListener::bind(addr).map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let (exit_sender, exited) = mpsc::channel();
    let (queue, connections) = mpsc::sync_channel::<Accepted>(limits.queue);
    let connections = Arc::new(Mutex::new(connections));
    let mut server = Server {
        addr: local,
        stopping: Arc::new(AtomicBool::new(false)),
        accept: None,
        workers: Vec::with_capacity(limits.workers),
        exited,
    };
    let rendering = Arc::new(AtomicUsize::new(0));
    // Workers first: if one cannot start, `queue` is dropped on return and the others see the
    // queue disconnect and exit.
    for i in 0..limits.workers {
        let worker = Worker {
            connections: Arc::clone(&connections),
            sources: sources.clone(),
            stopping: Arc::clone(&server.stopping),
            rendering: Arc::clone(&rendering),
            limits,
            _exit: exit_sender.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("web-{i}"))
            .stack_size(WORKER_STACK)
            .spawn(move || worker.run())?;
        server.workers.push(handle);
    }
    let acceptor = Acceptor {
        listener,
        queue,
        stopping: Arc::clone(&server.stopping),
        busy: wire::encode(&Reply::overloaded(), Method::Get),
        _exit: exit_sender,
    };
    let handle = std::thread::Builder::new()
        .name("web-accept".to_owned())
        .stack_size(ACCEPT_STACK)
        .spawn(move || acceptor.run())?;
    server.accept = Some(handle);
    log::info!(
        "HTTP server listening addr={local} paths=/,/metrics,/healthz workers={} queue={} \
         head_deadline={:?} max_head={}",
        limits.workers,
        limits.queue,
        limits.head_deadline,
        limits.max_head
    );
    Ok(server)
}

impl Server {
    /// The address actually bound (with the port chosen when `0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: no new connection is taken, requests in flight get up to 2 s to finish,
    /// then this returns (a worker still busy ends with the process).
    pub fn stop(self) {
        drop(self);
    }

    /// Connects to the listening socket, so that a blocked `accept` returns and sees the flag.
    /// Failing (no descriptor to spare, say) is fine: [`Drop`] tries again.
    fn wake_acceptor(&self) {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let _ = TcpStream::connect_timeout(&SocketAddr::new(ip, self.addr.port()), POLL);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + STOP_GRACE;
        let mut all_exited = false;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if self.accept.as_ref().is_some_and(|accept| !accept.is_finished()) {
                self.wake_acceptor();
            }
            match self.exited.recv_timeout(left.min(POLL)) {
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    all_exited = true;
                    break;
                }
                Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        if all_exited {
            for thread in self.accept.take().into_iter().chain(self.workers.drain(..)) {
                if thread.join().is_err() {
                    log::error!("an HTTP server thread panicked");
                }
            }
        } else {
            log::warn!("HTTP server: a request still in flight after {STOP_GRACE:?}; not waiting");
        }
    }
}

/// The accept thread: takes connections and queues them for the workers, or answers 503.
struct Acceptor {
    listener: TcpListener,
    queue: SyncSender<Accepted>,
    stopping: Arc<AtomicBool>,
    /// The 503 answered when the queue is full, encoded once: answering it costs no
    /// allocation and no worker.
    busy: Vec<u8>,
    /// Dropped when the thread exits: how [`Server::stop`] learns it is done.
    _exit: mpsc::Sender<()>,
}

impl Acceptor {
    fn run(self) {
        // Episodes, so that a flood or a descriptor shortage is one log line, not thousands.
        let mut failing = Failing::default();
        let mut refusing = false;
        loop {
            let accepted = self.listener.accept();
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            match accepted {
                Ok((stream, peer)) => {
                    if let Some(failed) = failing.accepted(Instant::now()) {
                        log::info!(
                            "HTTP server: accepting connections again failed_accepts={failed}"
                        );
                    }
                    match self.queue.try_send(Accepted { stream, at: Instant::now() }) {
                        Ok(()) => refusing = false,
                        // Disconnected only while stopping: answered the same way.
                        Err(TrySendError::Full(full) | TrySendError::Disconnected(full)) => {
                            if !refusing {
                                log::warn!(
                                    "HTTP server: every worker busy and the queue full; \
                                     answering 503 peer={peer}"
                                );
                                refusing = true;
                            }
                            refuse_busy(full.stream, &self.busy);
                        }
                    }
                }
                // The client gave up before we took it: nothing to do.
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    if failing.failed(Instant::now()) {
                        log::warn!(
                            "HTTP server: cannot accept a connection: {e}; retrying every {:?}",
                            ACCEPT_BACKOFF
                        );
                    }
                    std::thread::sleep(ACCEPT_BACKOFF);
                }
            }
        }
        // Dropping the queue's sender lets the workers finish once they have seen the flag.
    }
}

/// How long accepting must work without a failure before an episode of accept failures is
/// over: while descriptors are short, accepts alternate between failing and succeeding (each
/// close frees one), and that is still one episode.
pub const ACCEPT_QUIET: Duration = Duration::from_secs(5);

/// An episode of accept failures, kept apart from the socket so that its rule is tested
/// without one: it starts at a failure and ends at the first accept [`ACCEPT_QUIET`] after the
/// last failure.
#[derive(Debug, Default)]
struct Failing {
    /// The last failure and the failures so far, while an episode lasts.
    episode: Option<(Instant, u64)>,
}

impl Failing {
    /// Records a failed accept at `now`; true when it starts an episode (warn then).
    fn failed(&mut self, now: Instant) -> bool {
        let (starts, count) = match self.episode {
            Some((_, count)) => (false, count + 1),
            None => (true, 1),
        };
        self.episode = Some((now, count));
        starts
    }

    /// Records an accept at `now`; the number of failed accepts when it ends an episode.
    fn accepted(&mut self, now: Instant) -> Option<u64> {
        let (last, count) = self.episode?;
        if now.duration_since(last) < ACCEPT_QUIET {
            return None;
        }
        self.episode = None;
        Some(count)
    }
}

/// Answers `busy` (a whole encoded 503) and closes, without ever blocking the accept thread: the socket is
/// non-blocking, and a fresh connection's send buffer takes the whole constant. What the
/// client already sent is read first, so that closing does not reset the connection before
/// the client reads the 503.
fn refuse_busy(stream: TcpStream, busy: &[u8]) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut sent = [0u8; 2048];
    let _ = (&stream).read(&mut sent);
    let _ = (&stream).write(busy);
    let _ = stream.shutdown(Shutdown::Write);
}

/// One request-answering thread.
struct Worker {
    connections: Arc<Mutex<Receiver<Accepted>>>,
    sources: Sources,
    stopping: Arc<AtomicBool>,
    /// Status pages being rendered right now, by all workers.
    rendering: Arc<AtomicUsize>,
    limits: Limits,
    /// Dropped when the worker exits: how [`Server::stop`] learns it is done.
    _exit: mpsc::Sender<()>,
}

/// A connection waiting for a worker, with when it was accepted: its head deadline runs from
/// then, so time spent in the queue counts and a queue full of idle clients empties within one
/// deadline rather than one deadline per worker round.
struct Accepted {
    stream: TcpStream,
    at: Instant,
}

/// How reading a request head ended, short of a complete head.
enum Cut {
    /// The client closed, reset, or the server is stopping: nothing to answer.
    Gone,
    /// Answer this and close.
    Refused(Refusal),
}

impl Worker {
    fn run(self) {
        let mut buffer = vec![0u8; self.limits.max_head];
        loop {
            // The lock is held only while waiting; whoever holds it takes the next connection.
            let next = self.connections.lock().unwrap_or_else(PoisonError::into_inner).recv();
            let Ok(accepted) = next else { break }; // the accept thread has exited
            if self.stopping.load(Ordering::SeqCst) {
                continue; // drop it; the queue disconnects once the accept thread is gone
            }
            // A panic in a status source must not cost a worker: the pool would shrink.
            let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.handle(accepted, &mut buffer)
            }));
            if answered.is_err() {
                log::error!("HTTP server: a request handler panicked; connection dropped");
            }
        }
    }

    fn handle(&self, accepted: Accepted, buffer: &mut [u8]) {
        let Accepted { mut stream, at } = accepted;
        if stream.set_write_timeout(Some(self.limits.write_timeout)).is_err() {
            return;
        }
        let deadline = at + self.limits.head_deadline;
        let (reply, method) = match self.read_head(&mut stream, buffer, deadline) {
            Ok(received) => match wire::parse_head(&buffer[..received], self.limits.max_head) {
                Head::Complete(request) => (self.answer(&request), request.method),
                // `read_head` returns only a complete head.
                Head::Partial => return,
                Head::Refused(refusal) => (refusal.reply(), Method::Get),
            },
            Err(Cut::Gone) => return,
            Err(Cut::Refused(refusal)) => {
                log::debug!("HTTP server: request refused reason={refusal:?}");
                (refusal.reply(), Method::Get)
            }
        };
        if let Err(e) = stream.write_all(&wire::encode(&reply, method)) {
            log::debug!("HTTP server: cannot answer: {e}");
        }
        let _ = stream.shutdown(Shutdown::Write);
    }

    /// Reads until `buffer` holds a complete head; returns its length (bytes of a body or of a
    /// next request may follow it in the buffer). Blocks at most [`POLL`] at a time. Past the
    /// deadline it still reads once what has already arrived: a request that waited its turn in
    /// the queue was usually sent whole long ago.
    fn read_head(
        &self,
        stream: &mut TcpStream,
        buffer: &mut [u8],
        deadline: Instant,
    ) -> Result<usize, Cut> {
        let mut received = 0;
        let mut late = false;
        loop {
            match wire::parse_head(&buffer[..received], buffer.len()) {
                Head::Complete(_) => return Ok(received),
                Head::Refused(refusal) => return Err(Cut::Refused(refusal)),
                Head::Partial if late => return Err(Cut::Refused(Refusal::TooSlow)),
                Head::Partial => {}
            }
            if self.stopping.load(Ordering::SeqCst) {
                return Err(Cut::Gone);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            late = left.is_zero();
            // A zero timeout would mean "block forever".
            let slice = left.min(POLL).max(Duration::from_millis(1));
            stream.set_read_timeout(Some(slice)).map_err(|_| Cut::Gone)?;
            match stream.read(&mut buffer[received..]) {
                Ok(0) => return Err(Cut::Gone),
                Ok(n) => received += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(Cut::Gone),
            }
        }
    }

    /// The reply to a complete request head: [`route`], with the status page limited to
    /// [`STATUS_RENDERS`] at once and request bodies refused.
    fn answer(&self, request: &wire::Request<'_>) -> Reply {
        answer(request, &self.sources, &self.rendering, Instant::now())
    }
}

/// [`Worker::answer`] without the worker: a `GET`/`HEAD` announcing a body gets 413 (no body
/// is ever read); a status page when [`STATUS_RENDERS`] are rendering gets a busy 503.
fn answer(
    request: &wire::Request<'_>,
    sources: &Sources,
    rendering: &AtomicUsize,
    now: Instant,
) -> Reply {
    let readable = request.method != Method::Other;
    if readable && request.has_body {
        return Reply::text(413, "request bodies are not accepted\n");
    }
    if readable && path(request.target) == "/" {
        return match Slot::take(rendering) {
            Some(_slot) => route(request.method, request.target, sources, now),
            None => Reply::busy(),
        };
    }
    route(request.method, request.target, sources, now)
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
    pub(crate) fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply { status, content_type: TEXT_TYPE, body: body.into(), headers: Vec::new() }
    }

    fn busy() -> Reply {
        let mut reply = Reply::text(503, "busy: the status page is being rendered; retry\n");
        reply.headers.push(("Retry-After", "5"));
        reply
    }

    /// Every worker busy and the queue full: answered by the accept thread.
    fn overloaded() -> Reply {
        let mut reply = Reply::text(503, "busy: too many connections; retry\n");
        reply.headers.push(("Retry-After", "1"));
        reply
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
        "/healthz" => match sources.registry.health(now) {
            Healthz::Ok => Reply::text(200, "ok\n"),
            Healthz::Standby(why) => Reply::text(200, format!("{why}\n")),
            Healthz::Unwell(why) => Reply::text(503, format!("{why}\n")),
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
            Reply::overloaded(),
            route(Method::Other, "/", &sources(Ok("")), Instant::now()),
            route(Method::Get, "/", &sources(Ok("")), Instant::now()),
        ];
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        for reply in replies {
            let expected = 5 + reply.headers.len();
            let bytes = wire::encode(&reply, Method::Get);
            let text = String::from_utf8(bytes).expect("ASCII head, UTF-8 body");
            let (head, body) = text.split_once("\r\n\r\n").expect("a blank line ends the head");
            assert_eq!(body, reply.body);
            let headers: Vec<_> = head.split("\r\n").skip(1).collect();
            assert_eq!(headers.len(), expected, "no header was dropped or doubled: {head}");
            for header in headers {
                let (name, value) = header.split_once(": ").expect("name: value");
                assert!(name.chars().all(token), "header name {name:?}");
                assert!(value.chars().all(|c| c == ' ' || c.is_ascii_graphic()), "{value:?}");
            }
        }
    }

    #[test]
    fn accept_failures_are_one_episode_until_accepting_works_for_a_while() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut failing = Failing::default();
        assert_eq!(failing.accepted(at(0)), None, "no episode, nothing to end");
        assert!(failing.failed(at(0)), "the first failure starts an episode: warn");
        assert!(!failing.failed(at(50)), "the next ones do not");
        assert_eq!(failing.accepted(at(100)), None, "one accept between failures ends nothing");
        assert!(!failing.failed(at(150)), "still the same episode");
        let quiet = 150 + ACCEPT_QUIET.as_millis() as u64;
        assert_eq!(failing.accepted(at(quiet - 1)), None, "not quiet long enough");
        assert_eq!(failing.accepted(at(quiet)), Some(3), "quiet: over, after 3 failures");
        assert_eq!(failing.accepted(at(quiet + 1)), None, "and ended once");
        assert!(failing.failed(at(quiet + 2)), "a new failure is a new episode");
    }

    fn request(method: Method, target: &str, has_body: bool) -> wire::Request<'_> {
        wire::Request { method, target, has_body }
    }

    #[test]
    fn a_request_with_a_body_is_refused_unless_its_method_is() {
        let (s, rendering) = (sources(Ok("page")), AtomicUsize::new(0));
        let get = |r: &wire::Request<'_>| answer(r, &s, &rendering, Instant::now()).status;
        assert_eq!(get(&request(Method::Get, "/metrics", true)), 413, "GET with a body");
        assert_eq!(get(&request(Method::Head, "/", true)), 413, "HEAD with a body");
        assert_eq!(get(&request(Method::Other, "/metrics", true)), 405, "the method says more");
        assert_eq!(get(&request(Method::Get, "/metrics", false)), 200);
    }

    #[test]
    fn the_status_page_waits_for_no_one_when_renders_are_full() {
        let (s, rendering) = (sources(Ok("page")), AtomicUsize::new(0));
        let _taken: Vec<_> = (0..STATUS_RENDERS).filter_map(|_| Slot::take(&rendering)).collect();
        let page = answer(&request(Method::Get, "/?x", false), &s, &rendering, Instant::now());
        assert_eq!((page.status, page.headers.as_slice()), (503, &[("Retry-After", "5")][..]));
        let health =
            answer(&request(Method::Get, "/healthz", false), &s, &rendering, Instant::now());
        assert_eq!(health.status, 200, "health does not need a render place");
    }

    #[test]
    fn limits_keep_a_worker_for_health_and_a_queue_place() {
        let server = serve_with(
            "127.0.0.1:0",
            sources(Ok("")),
            Limits { workers: 0, queue: 0, ..Limits::default() },
        )
        .expect("bind");
        assert_eq!(server.workers.len(), STATUS_RENDERS + 1);
        server.stop();
    }
}
