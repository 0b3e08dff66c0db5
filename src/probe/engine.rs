//! Many probes in flight on one thread: non-blocking sockets, one `epoll` (through `mio`), one
//! deadline per probe.
//!
//! Why not a thread per probe: a target that accepts the connection and then never says a word
//! (a black hole) would hold a thread, its stack and its allocator arena for a whole timeout;
//! a thousand of them cost a thousand threads and 100 MiB. Here a probe in flight is a socket
//! and a few hundred bytes of state, and a hung one costs nothing but its socket until its
//! deadline. And a healthy probe is no thread hand-off at all: connect, write, read, judge.
//!
//! Each probe goes through the same stages, each bounded by the one deadline set when it
//! starts (redirects included):
//!
//! ```text
//!   resolve (only a host name) → connect → [CONNECT through the region's proxy]
//!       → [TLS handshake] → send the GET → read the head → read the body → judge
//! ```
//!
//! Name resolution is the one blocking step (`getaddrinfo` cannot be cancelled): it runs on a
//! short-lived thread per host name in flight (never one per probe), whose answer wakes the
//! loop. A probe whose deadline passes first fails; the lookup's thread ends with the lookup.
//!
//! TLS is `rustls` driven by hand (`read_tls`/`write_tls`), with the webpki roots. Parsing is
//! [`super::response`]. A panic while driving a probe (none is known) fails that probe with
//! [`Reason::ClientFailed`] instead of ending the loop.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

use super::response::Response;
use super::verdict::{content_type_verdict, verdict};
use super::{Outcome, Phase, Reason};

/// Redirects followed before giving up (a loop is a failure, not a hang).
pub const MAX_REDIRECTS: usize = 5;
/// The token of the waker (lookups answered, or a stop asked for).
const WAKER: Token = Token(usize::MAX);
/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// What one probe asks for.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The health URL, with user-info if the target has credentials (sent as Basic auth).
    pub url: &'a str,
    /// The region's HTTP proxy (`http://[user:pass@]host:port`), tunnelled with CONNECT.
    pub proxy: Option<&'a str>,
    pub timeout: Duration,
    /// The largest body read.
    pub body_cap: usize,
}

/// See the module doc. `start` probes, `turn` waits for the network and hands back the
/// outcomes of the probes that ended, each with the key it was started with.
pub struct Engine {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    probes: Vec<Option<Probe>>,
    free: Vec<usize>,
    /// `(deadline, index, serial)` of probes in flight; stale entries are skipped.
    deadlines: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    serial: u64,
    /// Probes that ended without waiting for the network (e.g. a bad proxy URL).
    ended: VecDeque<(usize, Outcome)>,
    lookups: Lookups,
    scratch: Vec<u8>,
    /// Indexes of the probes the last wait found ready (kept to spare an allocation per turn).
    ready: Vec<usize>,
    /// The webpki roots (tests trust their own CA instead).
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("in_flight", &self.in_flight()).finish_non_exhaustive()
    }
}

/// Where a probe goes, parsed: the URL (its user-info taken out as a Basic `Authorization`)
/// and the region's proxy. The probing loop parses each target × region's once, not at every
/// probe: the parse was a fifth of the monitor's user-space instructions (callgrind, one
/// target every 50 ms).
pub struct Destination {
    /// Without user-info.
    url: url::Url,
    authorization: Option<String>,
    proxy: Option<ProxySpec>,
    /// The request head of the first hop, made once too (shared by the probes, not copied).
    head: Arc<[u8]>,
}

impl Destination {
    /// `url` through `proxy` (`http://[user:pass@]host:port`; `None`: directly). `Err`: the
    /// reason every probe of it fails with (an invalid proxy is named first).
    pub fn parse(url: &str, proxy: Option<&str>) -> Result<Destination, Reason> {
        let proxy = proxy.map(parse_proxy).transpose()?;
        let mut url = url::Url::parse(url).map_err(|e| Reason::InvalidResponse {
            detail: format!("invalid URL: {e}"),
            phase: Phase::Head,
        })?;
        let authorization = take_credentials(&mut url);
        let head = get_request(&url, authorization.as_deref()).into();
        Ok(Destination { url, authorization, proxy, head })
    }
}

/// One probe in flight.
struct Probe {
    key: usize,
    serial: u64,
    started: Instant,
    timeout: Duration,
    body_cap: usize,
    /// The URL of the current hop, without user-info.
    url: url::Url,
    authorization: Option<String>,
    /// The URLs of the hops so far, once there was a redirect (empty before: the first hop's
    /// URL is added at the first redirect, which spares a copy per probe).
    visited: Vec<String>,
    /// The first hop's request head ([`Destination`]'s).
    head: Arc<[u8]>,
    proxy: Option<ProxySpec>,
    stage: Stage,
    /// What the current socket is registered for in the `epoll` (`None`: not yet). A socket is
    /// registered only once the probe must wait, and for writability only while something is
    /// left to send: a loopback connect is often done at once, and a needless writable event
    /// would be one more wake-up per probe.
    interest: Option<Interest>,
}

/// The region's proxy, parsed.
#[derive(Clone)]
struct ProxySpec {
    /// As reasons name it.
    host: String,
    place: Place,
    port: u16,
    authorization: Option<String>,
}

/// Where to connect: an address as it is, or a name to look up first.
#[derive(Clone)]
enum Place {
    Address(IpAddr),
    Name(String),
}

impl Place {
    fn of(host: &url::Host<&str>) -> Place {
        match host {
            url::Host::Ipv4(ip) => Place::Address(IpAddr::V4(*ip)),
            url::Host::Ipv6(ip) => Place::Address(IpAddr::V6(*ip)),
            url::Host::Domain(name) => Place::Name((*name).to_owned()),
        }
    }
}

enum Stage {
    /// Waiting for the addresses of `name` (`host:port`) from a lookup thread.
    Resolving { name: String },
    /// A non-blocking connect in progress to one address, the others to try after it.
    Connecting { stream: TcpStream, rest: Vec<SocketAddr> },
    /// Asking the proxy for a tunnel and reading its answer.
    Tunnel { stream: TcpStream, out: Vec<u8>, sent: usize, answer: Vec<u8> },
    /// The GET and its response, over TLS or not.
    Exchange { link: Link, out: Arc<[u8]>, sent: usize, response: Response },
    /// Ended (the outcome is on its way out).
    Over,
}

impl Stage {
    /// The socket and the readiness this stage waits for: readable always (an answer, or the
    /// end), writable while connecting or while something is left to send.
    fn waits_for(&mut self) -> Option<(&mut TcpStream, Interest)> {
        let both = Interest::READABLE | Interest::WRITABLE;
        let unless_sent = |sent: usize, out: &[u8]| {
            if sent < out.len() {
                both
            } else {
                Interest::READABLE
            }
        };
        match self {
            Stage::Resolving { .. } | Stage::Over => None,
            Stage::Connecting { stream, .. } => Some((stream, both)),
            Stage::Tunnel { stream, out, sent, .. } => Some((stream, unless_sent(*sent, out))),
            Stage::Exchange { link: Link::Plain(stream), out, sent, .. } => {
                Some((stream, unless_sent(*sent, out)))
            }
            Stage::Exchange { link: Link::Tls(stream, tls), .. } => {
                let wanted = if tls.wants_write() { both } else { Interest::READABLE };
                Some((stream, wanted))
            }
        }
    }
}

/// The connection to the target (directly or through the tunnel).
enum Link {
    Plain(TcpStream),
    Tls(TcpStream, Box<ClientConnection>),
}

/// What driving a probe came to.
enum Drive {
    /// Waiting for the network.
    Pending,
    /// Healthy, or why not.
    Done(Result<(), Reason>),
    /// A redirect to follow: the next hop starts now.
    Redirect(url::Url),
    /// The connection attempt failed: the next addresses to try (none: give up).
    ConnectFailed(io::Error, Vec<SocketAddr>),
}

impl Engine {
    pub fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let lookups = Lookups::new(Arc::clone(&waker));
        Ok(Engine {
            poll,
            events: Events::with_capacity(1024),
            waker,
            probes: Vec::new(),
            free: Vec::new(),
            deadlines: BinaryHeap::new(),
            serial: 0,
            ended: VecDeque::new(),
            lookups,
            scratch: vec![0; READ_CHUNK],
            ready: Vec::new(),
            tls: tls_config(),
        })
    }

    /// An engine that trusts `roots` instead of the webpki roots (tests).
    #[cfg(test)]
    fn trusting(roots: rustls::RootCertStore) -> io::Result<Self> {
        Ok(Engine { tls: client_config(roots), ..Engine::new()? })
    }

    /// Wakes a [`Engine::turn`] in progress from another thread (e.g. to stop).
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// Probes in flight.
    pub fn in_flight(&self) -> usize {
        self.probes.len() - self.free.len()
    }

    /// Starts one probe, reported under `key` by a later [`Engine::turn`].
    pub fn start(&mut self, key: usize, request: &Request<'_>) {
        let destination = Destination::parse(request.url, request.proxy);
        self.start_to(key, destination.as_ref(), request.timeout, request.body_cap);
    }

    /// [`Engine::start`] to a destination parsed before (a parse that failed: the reason the
    /// probe fails with), with a deadline of `timeout` and a body read up to `body_cap` bytes.
    pub fn start_to(
        &mut self,
        key: usize,
        destination: Result<&Destination, &Reason>,
        timeout: Duration,
        body_cap: usize,
    ) {
        let started = Instant::now();
        let destination = match destination {
            Ok(destination) => destination,
            Err(reason) => return self.end_now(key, started, Err(reason.clone())),
        };
        self.serial += 1;
        let index = self.free.pop().unwrap_or_else(|| {
            self.probes.push(None);
            self.probes.len() - 1
        });
        let deadline = started + timeout;
        self.deadlines.push(Reverse((deadline, index, self.serial)));
        self.probes[index] = Some(Probe {
            key,
            serial: self.serial,
            started,
            timeout,
            body_cap,
            visited: Vec::new(),
            head: Arc::clone(&destination.head),
            url: destination.url.clone(),
            authorization: destination.authorization.clone(),
            proxy: destination.proxy.clone(),
            stage: Stage::Over,
            interest: None,
        });
        self.begin_hop(index);
    }

    /// Waits for the network until `until` at most (`None`: until something happens), then
    /// drives every probe that can go on and ends those past their deadline; their outcomes
    /// are appended to `finished`. Returns early when woken.
    pub fn turn(
        &mut self,
        until: Option<Instant>,
        finished: &mut Vec<(usize, Outcome)>,
    ) -> io::Result<()> {
        finished.extend(self.ended.drain(..));
        if !finished.is_empty() && self.in_flight() == 0 {
            // Every probe ended inline (a fast answer on loopback): nothing to wait for.
            return Ok(());
        }
        let now = Instant::now();
        let wake_at = [until, self.next_deadline()].into_iter().flatten().min();
        let wait = if finished.is_empty() {
            wake_at.map(|at| at.saturating_duration_since(now))
        } else {
            Some(Duration::ZERO)
        };
        // mio rounds a wait down to whole milliseconds: round up, so a deadline is not missed
        // by a busy loop of zero-length waits.
        let wait = wait.map(|w| {
            if w.is_zero() || w.subsec_nanos() % 1_000_000 == 0 {
                w
            } else {
                Duration::from_millis(w.as_millis() as u64 + 1)
            }
        });
        match self.poll.poll(&mut self.events, wait) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(self.events.iter().map(|e| e.token()).filter(|&t| t != WAKER).map(|t| t.0));
        for (name, answer) in self.lookups.answered() {
            for (index, serial) in answer.waiting {
                self.resolved(index, serial, &name, &answer.result);
            }
        }
        for &index in &ready {
            self.drive(index);
        }
        self.ready = ready;
        self.expire(Instant::now());
        finished.extend(self.ended.drain(..));
        Ok(())
    }

    /// The earliest deadline of a probe in flight.
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, index, serial))) = self.deadlines.peek().copied() {
            if self.live(index, serial) {
                return Some(deadline);
            }
            self.deadlines.pop();
        }
        None
    }

    fn live(&self, index: usize, serial: u64) -> bool {
        self.probes.get(index).and_then(Option::as_ref).is_some_and(|p| p.serial == serial)
    }

    /// Ends the probes whose deadline has passed at `now`.
    fn expire(&mut self, now: Instant) {
        while let Some(Reverse((deadline, index, serial))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            if !self.live(index, serial) {
                continue;
            }
            let probe = self.probes[index].as_ref().expect("live");
            let reason = match (&probe.stage, &probe.proxy) {
                (
                    Stage::Resolving { .. } | Stage::Connecting { .. } | Stage::Tunnel { .. },
                    Some(p),
                ) => Reason::ProxySilent { proxy: p.host.clone(), after: probe.timeout },
                (Stage::Exchange { response, .. }, _) => {
                    Reason::Timeout { after: probe.timeout, phase: response.phase() }
                }
                _ => Reason::Timeout { after: probe.timeout, phase: Phase::Head },
            };
            self.finish(index, Err(reason));
        }
    }

    fn end_now(&mut self, key: usize, started: Instant, verdict: Result<(), Reason>) {
        self.ended.push_back((key, outcome(verdict, started.elapsed())));
    }

    /// Ends probe `index` with `verdict`, closing its socket.
    fn finish(&mut self, index: usize, verdict: Result<(), Reason>) {
        if let Some(probe) = self.probes[index].take() {
            self.free.push(index);
            self.ended.push_back((probe.key, outcome(verdict, probe.started.elapsed())));
        }
    }

    /// Starts the current hop: resolve or connect (to the proxy when there is one).
    fn begin_hop(&mut self, index: usize) {
        let Some(probe) = self.probes[index].as_mut() else { return };
        // An address is connected to at once; only a name is looked up.
        let (place, port) = match &probe.proxy {
            Some(proxy) => (proxy.place.clone(), proxy.port),
            None => match (probe.url.host(), probe.url.port_or_known_default()) {
                (Some(host), Some(port)) => (Place::of(&host), port),
                _ => {
                    let reason = Reason::InvalidResponse {
                        detail: "URL without a host".into(),
                        phase: Phase::Head,
                    };
                    return self.finish(index, Err(reason));
                }
            },
        };
        match place {
            Place::Address(ip) => self.connect(index, vec![SocketAddr::new(ip, port)]),
            Place::Name(host) => {
                let name = format!("{host}:{port}");
                let serial = probe.serial;
                probe.stage = Stage::Resolving { name: name.clone() };
                self.lookups.ask(name, index, serial);
            }
        }
    }

    fn resolved(&mut self, index: usize, serial: u64, name: &str, answer: &LookupResult) {
        if !self.live(index, serial) {
            return;
        }
        let probe = self.probes[index].as_ref().expect("live");
        if !matches!(&probe.stage, Stage::Resolving { name: n } if n == name) {
            return;
        }
        let host = name.rsplit_once(':').map_or(name, |(h, _)| h).to_owned();
        match answer {
            Ok(addresses) if !addresses.is_empty() => self.connect(index, addresses.clone()),
            _ => {
                let reason = match &probe.proxy {
                    Some(p) => Reason::ProxyDns { proxy: p.host.clone() },
                    None => Reason::Dns { host },
                };
                self.finish(index, Err(reason));
            }
        }
    }

    /// Connects to the first of `addresses` that takes a connection attempt.
    fn connect(&mut self, index: usize, mut addresses: Vec<SocketAddr>) {
        addresses.reverse();
        let mut last_error = None;
        while let Some(address) = addresses.pop() {
            match TcpStream::connect(address) {
                Ok(stream) => {
                    addresses.reverse();
                    let probe = self.probes[index].as_mut().expect("in flight");
                    probe.stage = Stage::Connecting { stream, rest: addresses };
                    probe.interest = None;
                    // A connect to loopback may already be done: look now.
                    return self.drive(index);
                }
                Err(e) => last_error = Some(e),
            }
        }
        let error = last_error.unwrap_or_else(|| io::Error::other("no address"));
        let reason = self.connect_failure(index, &error);
        self.finish(index, Err(reason));
    }

    /// Registers (or re-registers) probe `index`'s socket for what it waits for now.
    fn watch(&mut self, index: usize) -> io::Result<()> {
        let Some(probe) = self.probes.get_mut(index).and_then(Option::as_mut) else {
            return Ok(());
        };
        let Some((stream, wanted)) = probe.stage.waits_for() else { return Ok(()) };
        let registry = self.poll.registry();
        match probe.interest {
            None => registry.register(stream, Token(index), wanted)?,
            Some(now) if now != wanted => registry.reregister(stream, Token(index), wanted)?,
            Some(_) => {}
        }
        probe.interest = Some(wanted);
        Ok(())
    }

    /// Why a connection to the target (or its proxy) could not be made.
    fn connect_failure(&self, index: usize, error: &io::Error) -> Reason {
        let probe = self.probes[index].as_ref().expect("in flight");
        match &probe.proxy {
            Some(proxy) => proxy_io(proxy, error, probe.timeout),
            None => io_reason(error, Phase::Head, probe.timeout),
        }
    }

    /// Moves probe `index` on as far as the network lets it.
    fn drive(&mut self, index: usize) {
        let (scratch, tls) = (&mut self.scratch, &self.tls);
        let Some(probe) = self.probes.get_mut(index).and_then(Option::as_mut) else { return };
        let step =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| advance(probe, scratch, tls)));
        match step {
            Ok(Drive::Pending) => {
                if let Err(error) = self.watch(index) {
                    let reason = self.connect_failure(index, &error);
                    self.finish(index, Err(reason));
                }
            }
            Ok(Drive::Done(verdict)) => self.finish(index, verdict),
            Ok(Drive::ConnectFailed(error, rest)) => {
                if rest.is_empty() {
                    let reason = self.connect_failure(index, &error);
                    self.finish(index, Err(reason));
                } else {
                    self.connect(index, rest);
                }
            }
            Ok(Drive::Redirect(next)) => {
                let probe = self.probes[index].as_mut().expect("in flight");
                probe.stage = Stage::Over;
                probe.url = next;
                self.begin_hop(index);
            }
            Err(_) => self.finish(index, Err(Reason::ClientFailed)),
        }
    }
}

/// What a non-blocking read gave.
enum Got {
    Data(usize),
    Blocked,
    Eof,
}

/// Moves one probe on until it must wait for the network, ends, or redirects.
fn advance(probe: &mut Probe, scratch: &mut [u8], tls: &Arc<rustls::ClientConfig>) -> Drive {
    loop {
        match &mut probe.stage {
            Stage::Resolving { .. } | Stage::Over => return Drive::Pending,
            Stage::Connecting { stream, rest } => {
                // Connected once the socket has a peer. Only without one is the error asked
                // for (pending or failed?): one system call, not two, for most probes.
                let failed = match stream.peer_addr() {
                    Ok(_) => None,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        match stream.take_error() {
                            Ok(Some(e)) | Err(e) => Some(e),
                            Ok(None) => return Drive::Pending,
                        }
                    }
                    Err(e) => Some(e),
                };
                if let Some(error) = failed {
                    return Drive::ConnectFailed(error, std::mem::take(rest));
                }
                let Stage::Connecting { stream, .. } =
                    std::mem::replace(&mut probe.stage, Stage::Over)
                else {
                    unreachable!("matched above")
                };
                probe.stage = match &probe.proxy {
                    Some(proxy) => Stage::Tunnel {
                        stream,
                        out: connect_request(&probe.url, proxy),
                        sent: 0,
                        answer: Vec::new(),
                    },
                    None => match exchange(probe, stream, &[], tls) {
                        Ok(stage) => stage,
                        Err(reason) => return Drive::Done(Err(reason)),
                    },
                };
            }
            Stage::Tunnel { stream, out, sent, answer } => {
                let proxy = probe.proxy.as_ref().expect("a tunnel has a proxy");
                if let Err(e) = write_some(stream, out, sent) {
                    return Drive::Done(Err(proxy_io(proxy, &e, probe.timeout)));
                }
                let eof = loop {
                    match read_plain(stream, scratch) {
                        Ok(Got::Data(n)) => answer.extend_from_slice(&scratch[..n]),
                        Ok(Got::Blocked) => break false,
                        Ok(Got::Eof) => break true,
                        Err(e) => return Drive::Done(Err(proxy_io(proxy, &e, probe.timeout))),
                    }
                    if answer.len() > super::response::HEAD_CAP {
                        break false;
                    }
                };
                let mut fields = [httparse::EMPTY_HEADER; 64];
                let mut parsed = httparse::Response::new(&mut fields);
                let proxy_failed =
                    |detail: String| Reason::ProxyFailed { proxy: proxy.host.clone(), detail };
                let length = match parsed.parse(answer) {
                    Ok(httparse::Status::Complete(length)) => length,
                    Ok(httparse::Status::Partial) if answer.len() > super::response::HEAD_CAP => {
                        return Drive::Done(Err(proxy_failed("answer to CONNECT too large".into())))
                    }
                    Ok(httparse::Status::Partial) if eof => {
                        return Drive::Done(Err(Reason::ProxyClosed { proxy: proxy.host.clone() }))
                    }
                    Ok(httparse::Status::Partial) => return Drive::Pending,
                    Err(e) => {
                        return Drive::Done(Err(proxy_failed(format!(
                            "malformed answer to CONNECT ({e})"
                        ))))
                    }
                };
                match parsed.code.unwrap_or(0) {
                    200..=299 => {}
                    407 => {
                        return Drive::Done(Err(Reason::ProxyCredentials {
                            proxy: proxy.host.clone(),
                        }))
                    }
                    _ => return Drive::Done(Err(Reason::ConnectRefused)),
                }
                let early = answer[length..].to_vec();
                let Stage::Tunnel { stream, .. } = std::mem::replace(&mut probe.stage, Stage::Over)
                else {
                    unreachable!("matched above")
                };
                probe.stage = match exchange(probe, stream, &early, tls) {
                    Ok(stage) => stage,
                    Err(reason) => return Drive::Done(Err(reason)),
                };
            }
            Stage::Exchange { .. } => loop {
                let got = pump(&mut probe.stage, scratch);
                let eof = match got {
                    Ok(Got::Data(_)) => false,
                    Ok(Got::Blocked) => return conclude(probe, false).unwrap_or(Drive::Pending),
                    Ok(Got::Eof) => true,
                    Err(e) => {
                        let phase = match &probe.stage {
                            Stage::Exchange { response, .. } => response.phase(),
                            _ => Phase::Head,
                        };
                        return Drive::Done(Err(io_reason(&e, phase, probe.timeout)));
                    }
                };
                if let Some(drive) = conclude(probe, eof) {
                    return drive;
                }
            },
        }
    }
}

/// One step of the exchange: sends what is left of the request, then reads once. A write
/// error is reported only when there is nothing to read: a server may answer and close
/// before it has read the whole request.
fn pump(stage: &mut Stage, scratch: &mut [u8]) -> io::Result<Got> {
    let Stage::Exchange { link, out, sent, response } = stage else { return Ok(Got::Blocked) };
    let wrote = match link {
        Link::Plain(stream) => write_some(stream, out, sent),
        Link::Tls(stream, tls) => flush_tls(stream, tls),
    };
    let got = match link {
        Link::Plain(stream) => read_plain(stream, scratch),
        Link::Tls(stream, tls) => read_tls(stream, tls, scratch),
    }?;
    match got {
        Got::Data(n) => response.feed(&scratch[..n]),
        Got::Blocked => wrote?,
        Got::Eof => {}
    }
    Ok(got)
}

/// Judges what has been read of the response: `None` while more is needed. `eof`: the
/// server closed, so this is all there will be.
fn conclude(probe: &mut Probe, eof: bool) -> Option<Drive> {
    let Stage::Exchange { response, .. } = &mut probe.stage else { return None };
    let (status, location, content_type) = match response.head(eof) {
        Ok(Some(head)) => (head.status, head.location.clone(), head.content_type.clone()),
        Ok(None) => return None,
        Err(reason) => return Some(Drive::Done(Err(reason))),
    };
    // With credentials a redirect is answered as a failure (`HTTP 302`), so the credentials
    // never travel to wherever it points.
    if matches!(status, 301 | 302 | 303 | 307 | 308) && probe.authorization.is_none() {
        return Some(match redirect(probe, location.as_deref()) {
            Ok(next) => Drive::Redirect(next),
            Err(reason) => Drive::Done(Err(reason)),
        });
    }
    if status != 200 {
        return Some(Drive::Done(Err(Reason::HttpStatus(status))));
    }
    if let Err(reason) = content_type_verdict(content_type.as_deref()) {
        return Some(Drive::Done(Err(reason)));
    }
    match response.body(eof) {
        Ok(Some(body)) => Some(Drive::Done(verdict(body))),
        Ok(None) => None,
        Err(reason) => Some(Drive::Done(Err(reason))),
    }
}

/// Where a redirect leads: never to a URL already visited, never past [`MAX_REDIRECTS`].
fn redirect(probe: &mut Probe, location: Option<&str>) -> Result<url::Url, Reason> {
    let location = location.ok_or(Reason::RedirectWithoutLocation)?;
    let next = probe.url.join(location.trim()).map_err(|_| Reason::RedirectNotHttp)?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(Reason::RedirectNotHttp);
    }
    if probe.visited.is_empty() {
        probe.visited.push(probe.url.to_string());
    }
    let text = String::from(next.clone());
    if probe.visited.contains(&text) {
        return Err(Reason::RedirectLoop);
    }
    if probe.visited.len() > MAX_REDIRECTS {
        return Err(Reason::TooManyRedirects { max: MAX_REDIRECTS });
    }
    probe.visited.push(text);
    Ok(next)
}

/// The exchange with the target over a connected `stream` (to it, or tunnelled through the
/// proxy): the GET queued, TLS set up for `https`. `early`: bytes the proxy sent past its
/// answer to CONNECT, already the target's.
fn exchange(
    probe: &Probe,
    stream: TcpStream,
    early: &[u8],
    config: &Arc<rustls::ClientConfig>,
) -> Result<Stage, Reason> {
    // Past a redirect the hop's URL is another.
    let request: Arc<[u8]> = if probe.visited.is_empty() {
        Arc::clone(&probe.head)
    } else {
        get_request(&probe.url, probe.authorization.as_deref()).into()
    };
    let mut response = Response::new(probe.body_cap);
    let link = if probe.url.scheme() == "https" {
        let name = match probe.url.host() {
            Some(url::Host::Domain(name)) => ServerName::try_from(name.to_owned())
                .map_err(|e| Reason::Tls { detail: e.to_string(), phase: Phase::Head })?,
            Some(url::Host::Ipv4(ip)) => ServerName::IpAddress(IpAddr::V4(ip).into()),
            Some(url::Host::Ipv6(ip)) => ServerName::IpAddress(IpAddr::V6(ip).into()),
            None => {
                return Err(Reason::InvalidResponse {
                    detail: "URL without a host".into(),
                    phase: Phase::Head,
                })
            }
        };
        let mut tls = ClientConnection::new(Arc::clone(config), name)
            .map_err(|e| Reason::Tls { detail: e.to_string(), phase: Phase::Head })?;
        // Sent once the handshake is done.
        tls.writer()
            .write_all(&request)
            .map_err(|e| Reason::Tls { detail: e.to_string(), phase: Phase::Head })?;
        if !early.is_empty() {
            let mut early = early;
            tls.read_tls(&mut early)
                .and_then(|_| tls.process_new_packets().map_err(io::Error::other).map(drop))
                .map_err(|e| Reason::Tls { detail: e.to_string(), phase: Phase::Head })?;
        }
        return Ok(Stage::Exchange {
            link: Link::Tls(stream, Box::new(tls)),
            out: Arc::new([]),
            sent: 0,
            response,
        });
    } else {
        response.feed(early);
        Link::Plain(stream)
    };
    Ok(Stage::Exchange { link, out: request, sent: 0, response })
}

/// The probe's request head. `Connection: close`: each probe tests the whole path, so no
/// connection is kept for the next.
fn get_request(url: &url::Url, authorization: Option<&str>) -> Vec<u8> {
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let path = if path.is_empty() { "/" } else { path };
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: api-monitor/{}\r\n\
         Accept: application/json\r\nConnection: close\r\n",
        authority(url),
        env!("CARGO_PKG_VERSION"),
    );
    if let Some(value) = authorization {
        head.push_str("Authorization: ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The request asking the proxy for a tunnel to the target's host and port.
fn connect_request(url: &url::Url, proxy: &ProxySpec) -> Vec<u8> {
    let port = url.port_or_known_default().unwrap_or(80);
    let host = url.host_str().unwrap_or_default();
    let mut head = format!(
        "CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: api-monitor/{}\r\n",
        env!("CARGO_PKG_VERSION"),
    );
    if let Some(value) = &proxy.authorization {
        head.push_str("Proxy-Authorization: ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// `host[:port]` as the `Host` header gives it (the port only when not the scheme's own).
fn authority(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// Writes what is left of `out` until the socket would block.
fn write_some(stream: &mut TcpStream, out: &[u8], sent: &mut usize) -> io::Result<()> {
    while *sent < out.len() {
        match stream.write(&out[*sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn read_plain(stream: &mut TcpStream, into: &mut [u8]) -> io::Result<Got> {
    loop {
        return match stream.read(into) {
            Ok(0) => Ok(Got::Eof),
            Ok(n) => Ok(Got::Data(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Got::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// Sends what TLS has to send (handshake records, the request, alerts).
fn flush_tls(stream: &mut TcpStream, tls: &mut ClientConnection) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads plaintext through TLS: records are read from the socket and processed until some
/// plaintext comes out, the socket would block, or the connection ends. A TLS error comes
/// back as an I/O error carrying the `rustls::Error`.
fn read_tls(
    stream: &mut TcpStream,
    tls: &mut ClientConnection,
    into: &mut [u8],
) -> io::Result<Got> {
    let mut closed = false;
    loop {
        match tls.reader().read(into) {
            Ok(0) => return Ok(Got::Eof),
            Ok(n) => return Ok(Got::Data(n)),
            // The peer closed without `close_notify`: for a probe, the end of what it sends.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Got::Eof),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if closed {
            return Ok(Got::Eof);
        }
        match tls.read_tls(stream) {
            Ok(0) => closed = true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Got::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if let Err(error) = tls.process_new_packets() {
            // Tell the server why (an alert), best effort.
            let _ = tls.write_tls(stream);
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        // The handshake's next flight, if it is our turn.
        flush_tls(stream, tls)?;
    }
}

/// An I/O error of the exchange with the target, as a reason.
fn io_reason(error: &io::Error, phase: Phase, timeout: Duration) -> Reason {
    use io::ErrorKind;
    if let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        return Reason::Tls { detail: tls.to_string(), phase };
    }
    match error.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Reason::Timeout { after: timeout, phase },
        ErrorKind::ConnectionRefused => Reason::Refused,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            Reason::Reset { phase }
        }
        ErrorKind::UnexpectedEof if phase == Phase::Head => Reason::ClosedWithoutResponse,
        ErrorKind::UnexpectedEof => Reason::ClosedMidBody,
        _ => Reason::Network { detail: error.to_string(), phase },
    }
}

/// An I/O error while reaching the proxy or waiting for its answer to CONNECT: the proxy's
/// own failure, which blinds the region.
fn proxy_io(proxy: &ProxySpec, error: &io::Error, timeout: Duration) -> Reason {
    use io::ErrorKind;
    let proxy = proxy.host.clone();
    match error.kind() {
        ErrorKind::ConnectionRefused => Reason::ProxyRefused { proxy },
        ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            Reason::ProxySilent { proxy, after: timeout }
        }
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof => Reason::ProxyClosed { proxy },
        _ => Reason::ProxyFailed { proxy, detail: error.to_string() },
    }
}

/// Takes the user-info out of `url` and gives the `Authorization` header value it stands for
/// (`Basic`, RFC 7617: base64 of `user:password`, each percent-decoded), so the header is sent
/// exactly as RFC 7617 says and no redirect is followed with it.
fn take_credentials(url: &mut url::Url) -> Option<String> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let header = basic(url.username(), url.password());
    // Cannot fail: a target URL has a host (validated at start-up), so it can lose its user-info.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some(header)
}

/// `Basic` credentials (RFC 7617) from a URL's percent-encoded user-info: base64 of
/// `user:password`, each percent-decoded.
fn basic(user: &str, password: Option<&str>) -> String {
    use base64::Engine as _;
    let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    let mut pair = decode(user);
    pair.push(b':');
    pair.extend(decode(password.unwrap_or("")));
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

/// `http://[user:pass@]host:port` (credentials percent-encoded) as the probe uses it.
fn parse_proxy(text: &str) -> Result<ProxySpec, Reason> {
    let invalid = |detail: String| Reason::ProxyFailed {
        proxy: text.to_owned(),
        detail: format!("invalid proxy URL: {detail}"),
    };
    let url = url::Url::parse(text).map_err(|e| invalid(e.to_string()))?;
    if url.scheme() != "http" {
        return Err(invalid(format!(
            "scheme {:?} (only http proxies are supported)",
            url.scheme()
        )));
    }
    let parsed = url.host().ok_or_else(|| invalid("no host".into()))?;
    let (host, place) = (parsed.to_string(), Place::of(&parsed));
    let authorization = (!url.username().is_empty() || url.password().is_some())
        .then(|| basic(url.username(), url.password()));
    Ok(ProxySpec { host, place, port: url.port_or_known_default().unwrap_or(80), authorization })
}

fn outcome(verdict: Result<(), Reason>, latency: Duration) -> Outcome {
    match verdict {
        Ok(()) => Outcome::Healthy { latency },
        Err(reason) if reason.blinds() => Outcome::Blind { reason, latency },
        Err(reason) => Outcome::Failed { reason, latency },
    }
}

/// The TLS client configuration, built once: the webpki roots and ring, the provider of every
/// TLS client here ([`crate::crypto`]).
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        client_config(rustls::RootCertStore::from_iter(
            webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
        ))
    }))
}

/// A TLS client configuration trusting `roots`, with ring ([`crate::crypto`]) and its default
/// versions.
fn client_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let config = rustls::ClientConfig::builder_with_provider(crate::crypto::provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Addresses of a host name, or the lookup failed.
type LookupResult = Result<Vec<SocketAddr>, ()>;

/// A lookup's answer and the probes that waited for it.
struct Answer {
    result: LookupResult,
    waiting: Vec<(usize, u64)>,
}

/// Name lookups on short-lived threads, at most one per host name in flight: a stalled
/// resolver costs one thread per name, never one per probe.
struct Lookups {
    waker: Arc<Waker>,
    /// `host:port` → the probes waiting for it.
    running: HashMap<String, Vec<(usize, u64)>>,
    answers: Arc<Mutex<Vec<(String, LookupResult)>>>,
}

impl Lookups {
    fn new(waker: Arc<Waker>) -> Self {
        Lookups { waker, running: HashMap::new(), answers: Arc::default() }
    }

    /// Probe `index` (`serial`) wants the addresses of `name`.
    fn ask(&mut self, name: String, index: usize, serial: u64) {
        if let Some(waiting) = self.running.get_mut(&name) {
            waiting.push((index, serial));
            return;
        }
        self.running.insert(name.clone(), vec![(index, serial)]);
        let (answers, waker, key) =
            (Arc::clone(&self.answers), Arc::clone(&self.waker), name.clone());
        let spawned =
            std::thread::Builder::new().name("dns".into()).stack_size(64 * 1024).spawn(move || {
                let found = key.to_socket_addrs().map(Iterator::collect).map_err(drop);
                answers.lock().unwrap_or_else(PoisonError::into_inner).push((key, found));
                let _ = waker.wake();
            });
        if spawned.is_err() {
            self.answers.lock().unwrap_or_else(PoisonError::into_inner).push((name, Err(())));
            let _ = self.waker.wake();
        }
    }

    /// The lookups that ended since the last call.
    fn answered(&mut self) -> Vec<(String, Answer)> {
        let done =
            std::mem::take(&mut *self.answers.lock().unwrap_or_else(PoisonError::into_inner));
        done.into_iter()
            .map(|(name, result)| {
                let waiting = self.running.remove(&name).unwrap_or_default();
                (name, Answer { result, waiting })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::thread;

    const HEALTHY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                             Content-Length: 15\r\nConnection: close\r\n\r\n{\"status\":\"OK\"}";

    /// A loopback server answering every connection with `answer` after reading the request
    /// head, each on a thread of its own; its `http://` base URL.
    fn server(answer: &'static [u8]) -> String {
        recording_server(answer).0
    }

    /// Runs `requests` on one engine at once; each outcome by key, and how long the whole took.
    fn run_all(requests: &[Request<'_>]) -> (Vec<Option<Outcome>>, Duration) {
        let started = Instant::now();
        let mut engine = Engine::new().unwrap();
        for (key, request) in requests.iter().enumerate() {
            engine.start(key, request);
        }
        let mut outcomes = vec![None; requests.len()];
        let mut finished = Vec::new();
        while outcomes.iter().any(Option::is_none) {
            engine.turn(None, &mut finished).unwrap();
            for (key, outcome) in finished.drain(..) {
                assert!(outcomes[key].is_none(), "one outcome per probe: {key}");
                outcomes[key] = Some(outcome);
            }
            assert!(started.elapsed() < Duration::from_secs(30), "every probe ends");
        }
        assert_eq!(engine.in_flight(), 0);
        (outcomes, started.elapsed())
    }

    fn text(outcome: &Option<Outcome>) -> Option<String> {
        outcome.as_ref().and_then(Outcome::reason).map(ToString::to_string)
    }

    #[test]
    fn many_probes_in_flight_at_once_each_get_their_own_outcome() {
        let healthy = server(HEALTHY);
        let down = server(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        // Accepts and never answers: those probes end at their deadline, the others long before.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let hole = format!("http://{}", silent.local_addr().unwrap());
        let refused = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let urls: Vec<String> = (0..40)
            .map(|n| match n % 4 {
                0 => format!("{healthy}/health?n={n}"),
                1 => format!("{down}/health?n={n}"),
                2 => format!("{hole}/health?n={n}"),
                _ => format!("{refused}/health?n={n}"),
            })
            .collect();
        let timeout = Duration::from_secs(2);
        let requests: Vec<Request<'_>> =
            urls.iter().map(|url| Request { url, proxy: None, timeout, body_cap: 4096 }).collect();
        let (outcomes, took) = run_all(&requests);
        for (n, outcome) in outcomes.iter().enumerate() {
            let expected = match n % 4 {
                0 => None,
                1 => Some("HTTP 503"),
                2 => Some("timeout after 2s"),
                _ => Some("connection refused"),
            };
            assert_eq!(text(outcome).as_deref(), expected, "probe {n}: {outcome:?}");
        }
        // The ten silent ones waited out their deadline together, not one after another.
        assert!(took < Duration::from_secs(10), "in parallel: {took:?}");
        drop(silent);
    }

    #[test]
    fn user_info_becomes_a_basic_authorization_header() {
        let mut url = url::Url::parse("http://probe:p%40ss%3Aw0rd@127.0.0.1:8080/health").unwrap();
        let header = take_credentials(&mut url);
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/health", "the request gets no user-info");
        assert_eq!(
            header.as_deref(),
            Some("Basic cHJvYmU6cEBzczp3MHJk"),
            "base64(probe:p@ss:w0rd)"
        );
        let mut url = url::Url::parse("https://api.example.com/health").unwrap();
        assert_eq!(take_credentials(&mut url), None);
        assert_eq!(url.as_str(), "https://api.example.com/health");
        let proxy = parse_proxy("http://region%201:s%3Acret@127.0.0.1:3128").ok().unwrap();
        assert_eq!(proxy.authorization.as_deref(), Some("Basic cmVnaW9uIDE6czpjcmV0"));
    }

    #[test]
    fn a_host_name_is_resolved_on_a_lookup_thread() {
        let base = server(HEALTHY);
        let port = base.rsplit(':').next().unwrap();
        let url = format!("http://localhost:{port}/health");
        let request =
            Request { url: &url, proxy: None, timeout: Duration::from_secs(5), body_cap: 4096 };
        let (outcomes, _) = run_all(&[request]);
        assert_eq!(text(&outcomes[0]), None, "{:?}", outcomes[0]);
    }

    #[test]
    fn an_address_that_refuses_is_followed_by_the_next_one() {
        // As when a name resolves to ::1 first and nothing listens there: the addresses are
        // handed to `connect` directly, the first refusing, the second answering.
        let base = server(HEALTHY);
        let good: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
        let refusing = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let url = format!("http://fallback.invalid:{}/health", good.port());
        let mut engine = Engine::new().unwrap();
        let request =
            Request { url: &url, proxy: None, timeout: Duration::from_secs(5), body_cap: 4096 };
        engine.start(7, &request);
        engine.connect(0, vec![refusing, good]);
        let mut finished = Vec::new();
        while finished.is_empty() {
            engine.turn(None, &mut finished).unwrap();
        }
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].0, 7);
        assert!(finished[0].1.is_healthy(), "{:?}", finished[0].1);
    }

    #[test]
    fn redirects_to_another_server_and_chunked_bodies_are_followed_and_read() {
        let chunked = server(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
              \r\n7\r\n{\"statu\r\n8\r\ns\":\"OK\"}\r\n0\r\n\r\n",
        );
        let location: &'static str = Box::leak(
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {chunked}/moved\r\n\
                 Content-Length: 0\r\n\r\n"
            )
            .into_boxed_str(),
        );
        let redirecting = server(location.as_bytes());
        let url = format!("{redirecting}/health");
        let request =
            Request { url: &url, proxy: None, timeout: Duration::from_secs(5), body_cap: 4096 };
        let (outcomes, _) = run_all(&[request]);
        assert_eq!(text(&outcomes[0]), None, "{:?}", outcomes[0]);
    }

    /// A server that answers `answer` to every request (each connection on a thread of its
    /// own) and keeps each request's head.
    fn recording_server(answer: &'static [u8]) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = Arc::clone(&heads);
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let kept = Arc::clone(&kept);
                thread::spawn(move || -> io::Result<()> {
                    let mut stream = stream;
                    let mut reader = BufReader::new(stream.try_clone()?);
                    let (mut head, mut line) = (String::new(), String::new());
                    while reader.read_line(&mut line)? > 2 {
                        head.push_str(&line);
                        line.clear();
                    }
                    kept.lock().unwrap_or_else(|p| p.into_inner()).push(head);
                    stream.write_all(answer)
                });
            }
        });
        (base, heads)
    }

    /// The first hop's request head is made once per destination; a redirect's hop must ask
    /// for its own path from its own host, and each probe of the destination for the first.
    #[test]
    fn each_hop_asks_for_its_own_path_at_its_own_host() {
        let (healthy, heads) = recording_server(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n\
              {\"status\":\"OK\"}",
        );
        let answer: &'static str = Box::leak(
            format!(
                "HTTP/1.1 302 Found\r\nLocation: {healthy}/moved?x=1\r\nContent-Length: 0\r\n\r\n"
            )
            .into_boxed_str(),
        );
        let (redirecting, first_heads) = recording_server(answer.as_bytes());
        let destination = Destination::parse(&format!("{redirecting}/health"), None).unwrap();
        let mut engine = Engine::new().unwrap();
        for key in 0..2 {
            engine.start_to(key, Ok(&destination), Duration::from_secs(5), 4096);
            let mut finished = Vec::new();
            while finished.is_empty() {
                engine.turn(None, &mut finished).unwrap();
            }
            assert_eq!(text(&Some(finished[0].1.clone())), None, "{:?}", finished[0]);
        }
        let host = |base: &str| format!("Host: {}\r\n", base.trim_start_matches("http://"));
        for head in first_heads.lock().unwrap().iter() {
            assert!(head.starts_with("GET /health HTTP/1.1\r\n"), "{head}");
            assert!(head.contains(&host(&redirecting)), "{head}");
        }
        let heads = heads.lock().unwrap();
        assert_eq!(heads.len(), 2);
        for head in heads.iter() {
            assert!(head.starts_with("GET /moved?x=1 HTTP/1.1\r\n"), "{head}");
            assert!(head.contains(&host(&healthy)), "{head}");
        }
    }

    /// A CA the test trusts, and a TLS server configuration for 127.0.0.1 signed by it.
    fn tls_pair() -> (rustls::RootCertStore, Arc<rustls::ServerConfig>) {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        (roots, Arc::new(server))
    }

    /// An HTTPS server on loopback answering each connection with `answer`, then ending the
    /// TLS session with `close_notify` or, if `abrupt`, just closing the socket.
    fn tls_server(
        config: Arc<rustls::ServerConfig>,
        answer: &'static [u8],
        abrupt: bool,
    ) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        thread::spawn(move || {
            for socket in listener.incoming().map_while(Result::ok) {
                let config = Arc::clone(&config);
                thread::spawn(move || -> io::Result<()> {
                    let session =
                        rustls::ServerConnection::new(config).map_err(io::Error::other)?;
                    let mut stream = rustls::StreamOwned::new(session, socket);
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        stream.read_exact(&mut byte)?;
                        head.push(byte[0]);
                    }
                    stream.write_all(answer)?;
                    if !abrupt {
                        stream.conn.send_close_notify();
                    }
                    stream.flush()
                });
            }
        });
        address
    }

    #[test]
    fn a_healthy_https_answer_is_healthy_directly_and_through_a_proxy() {
        let (roots, server) = tls_pair();
        let chunked: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                               Transfer-Encoding: chunked\r\n\r\nf\r\n{\"status\":\"OK\"}\r\n0\r\n\r\n";
        let until_close: &[u8] =
            b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"status\":\"OK\"}";
        let servers = [
            tls_server(Arc::clone(&server), HEALTHY, false),
            tls_server(Arc::clone(&server), HEALTHY, true),
            tls_server(Arc::clone(&server), chunked, false),
            tls_server(Arc::clone(&server), until_close, false),
        ];
        let proxy = testkit::ConnectProxy::start();
        let urls: Vec<String> = servers.iter().map(|a| format!("https://{a}/health")).collect();
        let timeout = Duration::from_secs(10);
        let mut requests: Vec<Request<'_>> =
            urls.iter().map(|url| Request { url, proxy: None, timeout, body_cap: 4096 }).collect();
        requests.extend(urls.iter().map(|url| Request {
            url,
            proxy: Some(&proxy.url),
            timeout,
            body_cap: 4096,
        }));
        let mut engine = Engine::trusting(roots).unwrap();
        for (key, request) in requests.iter().enumerate() {
            engine.start(key, request);
        }
        let mut outcomes = vec![None; requests.len()];
        let mut finished = Vec::new();
        let started = Instant::now();
        while outcomes.iter().any(Option::is_none) && started.elapsed() < Duration::from_secs(30) {
            engine.turn(None, &mut finished).unwrap();
            for (key, outcome) in finished.drain(..) {
                outcomes[key] = Some(outcome);
            }
        }
        for (n, outcome) in outcomes.iter().enumerate() {
            let how = if n < urls.len() { "direct" } else { "through the proxy" };
            assert!(
                outcome.as_ref().is_some_and(Outcome::is_healthy),
                "{} {how}: {outcome:?}",
                urls[n % urls.len()]
            );
        }
        assert!(proxy.tunnels.load(std::sync::atomic::Ordering::Relaxed) >= urls.len());
    }

    #[test]
    fn a_certificate_the_roots_do_not_trust_is_a_tls_failure() {
        let (_, server) = tls_pair();
        let address = tls_server(server, HEALTHY, false);
        let url = format!("https://{address}/health");
        let request =
            Request { url: &url, proxy: None, timeout: Duration::from_secs(5), body_cap: 4096 };
        let (outcomes, _) = run_all(&[request]);
        assert_eq!(
            text(&outcomes[0]).as_deref(),
            Some("TLS error: invalid peer certificate: UnknownIssuer")
        );
    }
}
