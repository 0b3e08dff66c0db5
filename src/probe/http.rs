//! The real probe: a blocking `GET` through `ureq`, and the one function that turns the
//! client's errors into [`Reason`]s.
//!
//! The deadline is real: `ureq` fixes a whole-request deadline when the request starts
//! (`timeout_global`) and gives every socket operation — connect, the TLS handshake, the CONNECT
//! exchange with a proxy, writing the request, every read of the head and of the body — a
//! socket timeout of the time *left*. No phase runs on a helper thread that could outlive the
//! probe, so when the probe returns its socket is closed and nothing of it lives on. The one
//! exception is name resolution (`getaddrinfo` cannot be cancelled): [`OneLookup`] runs it on a
//! thread but keeps at most one lookup per host name in flight, so a stalled resolver costs
//! one thread per host name, never one per probe.
//!
//! The connector chain is `ureq`'s own pieces (CONNECT proxy, TCP, rustls) plus two thin
//! wrappers: [`ProxyLeg`] marks every error raised while talking to the proxy (so a silent or
//! dead proxy blinds the region instead of failing the API) and [`Witnessed`] keeps a peer's
//! reset visible (`ureq` reads a reset in the body as an end of input) and drops interim `1xx`
//! heads before `ureq` sees them (it refuses a `100 Continue` that carries headers).

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::tls::{RootCerts, TlsConfig};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, NextTimeout, RustlsConnector,
    TcpConnector, Transport,
};
use ureq::{Agent, Error, Proxy};

use super::verdict::{content_type_verdict, verdict};
use super::{Outcome, Phase, Prober, Reason, BODY_CAP};

/// Redirects followed before giving up (a loop is a failure, not a hang).
const MAX_REDIRECTS: usize = 5;
/// The largest response head (status line and headers) read.
const HEAD_CAP: usize = 16 * 1024;

/// The real probe: a blocking `GET` through `ureq` with a whole-request deadline, no
/// connection kept between probes, and no proxy but the one it is given.
pub struct HttpProber {
    timeout: Duration,
    body_cap: usize,
    /// One agent per proxy used (`None`: direct), built on first use: a prober is shared by
    /// every target × region with its timeout, and an agent caches its TLS configuration.
    agents: Mutex<HashMap<Option<String>, Agent>>,
    /// Shared by the agents: at most one name lookup per host name in flight.
    resolver: OneLookup,
}

impl std::fmt::Debug for HttpProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProber")
            .field("timeout", &self.timeout)
            .field("body_cap", &self.body_cap)
            .finish_non_exhaustive()
    }
}

impl HttpProber {
    /// A prober whose requests end after `timeout` (validated at start-up: at least 100 ms).
    pub fn new(timeout: Duration) -> Self {
        HttpProber {
            timeout,
            body_cap: BODY_CAP,
            agents: Mutex::new(HashMap::new()),
            resolver: OneLookup::default(),
        }
    }

    /// The same prober with another body cap (tests use a small one).
    pub fn with_body_cap(mut self, cap: usize) -> Self {
        self.body_cap = cap;
        self
    }

    /// The agent for `proxy`, built when the proxy differs from the last probe's.
    fn agent(&self, proxy: Option<&str>) -> Result<Agent, Reason> {
        let key = proxy.map(str::to_owned);
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(agent) = agents.get(&key) {
            return Ok(agent.clone());
        }
        let parsed = proxy
            .map(|p| {
                Proxy::new(p).map_err(|e| Reason::ProxyFailed {
                    proxy: host(p),
                    detail: format!("invalid proxy URL: {e}"),
                })
            })
            .transpose()?;
        let agent = Agent::with_parts(self.config(parsed), connector(), self.resolver.clone());
        agents.insert(key, agent.clone());
        Ok(agent)
    }

    fn config(&self, proxy: Option<Proxy>) -> Config {
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::WebPki)
            .unversioned_rustls_crypto_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .build();
        Agent::config_builder()
            // Set explicitly, also when `None`: the default reads `http_proxy` & co.
            .proxy(proxy)
            .timeout_global(Some(self.timeout))
            // Each probe tests the whole path: no idle connection is kept for the next one.
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            // Redirects are followed by `fetch`, which detects loops and keeps the deadline.
            .max_redirects(0)
            .http_status_as_error(false)
            .max_response_header_size(HEAD_CAP)
            // Room for a whole head at the cap and a little more, so a longer one is seen as
            // too large; every byte of both buffers is zeroed per request, so no bigger.
            .input_buffer_size(HEAD_CAP + 1024)
            // A request head: a URL of at most 2,048 characters and a few headers.
            .output_buffer_size(8 * 1024)
            .user_agent(concat!("api-monitor/", env!("CARGO_PKG_VERSION")))
            .accept("application/json")
            .tls_config(tls)
            .build()
    }
}

impl Prober for HttpProber {
    fn probe(&self, url: &str, proxy: Option<&str>) -> Outcome {
        let started = Instant::now();
        // Defence in depth: `ureq` and its protocol crate assert on states that peer input
        // reaches (e.g. `assert!`/`expect` in the response and redirect paths). No panic is
        // known, but one would end this worker for good, silently; a failed probe is
        // the better outcome. Nothing shared is left half-updated: the agent cache is replaced
        // whole, and a poisoned lock is taken over.
        let verdict =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.fetch(url, proxy)))
                .unwrap_or(Err(Reason::ClientFailed));
        let latency = started.elapsed();
        match verdict {
            Ok(()) => Outcome::Healthy { latency },
            Err(reason) if reason.blinds() => Outcome::Blind { reason, latency },
            Err(reason) => Outcome::Failed { reason, latency },
        }
    }
}

impl HttpProber {
    /// `Ok` when healthy, else why not. Follows redirects itself (at most [`MAX_REDIRECTS`],
    /// never to a URL already visited, never with credentials), each hop within what is left
    /// of the one deadline.
    fn fetch(&self, url: &str, proxy: Option<&str>) -> Result<(), Reason> {
        let deadline = Instant::now() + self.timeout;
        let agent = self.agent(proxy)?;
        let (address, authorization) = without_credentials(url);
        let mut current = address.into_owned();
        let mut visited = vec![current.clone()];
        for hop in 0..=MAX_REDIRECTS {
            let mut request = agent.get(&current);
            if let Some(value) = &authorization {
                request = request.header("Authorization", value);
            }
            let sent = if hop == 0 {
                request.call()
            } else {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Reason::Timeout { after: self.timeout, phase: Phase::Head });
                }
                request.config().timeout_global(Some(left)).build().call()
            };
            let response = sent.map_err(|e| self.describe(e, Phase::Head, &current, proxy))?;
            let status = response.status().as_u16();
            // With credentials a redirect is answered as a failure (`HTTP 302`), so the
            // credentials never travel to wherever it points.
            if !matches!(status, 301 | 302 | 303 | 307 | 308) || authorization.is_some() {
                return self.judge(response, &current, proxy);
            }
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or(Reason::RedirectWithoutLocation)?;
            let next = url::Url::parse(&current)
                .and_then(|base| base.join(location.trim()))
                .map_err(|_| Reason::RedirectNotHttp)?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(Reason::RedirectNotHttp);
            }
            let next = String::from(next);
            if visited.contains(&next) {
                return Err(Reason::RedirectLoop);
            }
            visited.push(next.clone());
            current = next;
        }
        Err(Reason::TooManyRedirects { max: MAX_REDIRECTS })
    }

    /// Judges a final (non-redirect) answer: status, `Content-Type`, body size, body.
    fn judge(
        &self,
        response: ureq::http::Response<ureq::Body>,
        url: &str,
        proxy: Option<&str>,
    ) -> Result<(), Reason> {
        let status = response.status().as_u16();
        if status != 200 {
            return Err(Reason::HttpStatus(status));
        }
        let content_type = response.headers().get("content-type").map(|v| {
            // A header that is not visible ASCII is not JSON's media type either.
            v.to_str().map_or("(not ASCII)", str::trim)
        });
        content_type_verdict(content_type)?;
        let cap = u64::try_from(self.body_cap).unwrap_or(u64::MAX);
        let exceeds = Reason::BodyTooLarge { cap_kib: self.body_cap / 1024 };
        let body = response.into_body();
        let declared = body.content_length();
        if declared.is_some_and(|length| length > cap) {
            return Err(exceeds);
        }
        // At most one byte past the cap is read, whatever the peer sends or announces.
        let mut bytes = Vec::with_capacity(256);
        body.into_reader()
            .take(cap.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| self.describe(Error::from(e), Phase::Body, url, proxy))?;
        let received = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if received > cap {
            return Err(exceeds);
        }
        // `ureq` reports a body cut short of its Content-Length itself; this is a backstop.
        if declared.is_some_and(|length| received < length) {
            return Err(Reason::ClosedMidBody);
        }
        verdict(&bytes)
    }

    /// The one place that turns an error of the HTTP client into a failure reason.
    fn describe(&self, error: Error, phase: Phase, url: &str, proxy: Option<&str>) -> Reason {
        let error = match error {
            Error::Other(inner) => match inner.downcast::<ProxyLegError>() {
                Ok(leg) => return self.describe_proxy(leg.0, proxy.map_or_else(String::new, host)),
                Err(other) => Error::Other(other),
            },
            error => error,
        };
        match error {
            Error::Timeout(_) => Reason::Timeout { after: self.timeout, phase },
            Error::Io(io) => self.describe_io(&io, phase, url),
            Error::HostNotFound => Reason::Dns { host: host(url) },
            Error::Rustls(tls) => Reason::Tls { detail: tls.to_string(), phase },
            Error::Tls(text) => Reason::Tls { detail: text.to_owned(), phase },
            Error::LargeResponseHeader(..)
            | Error::Protocol(ureq_proto::Error::HttpParseTooManyHeaders) => {
                Reason::HeadersTooLarge
            }
            Error::Protocol(protocol) => {
                Reason::InvalidResponse { detail: protocol.to_string(), phase }
            }
            other => Reason::InvalidResponse { detail: other.to_string(), phase },
        }
    }

    /// An I/O error of the exchange with the target.
    fn describe_io(&self, io: &io::Error, phase: Phase, url: &str) -> Reason {
        use io::ErrorKind;
        if let Some(tls) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            return Reason::Tls { detail: tls.to_string(), phase };
        }
        if io.get_ref().is_some_and(|e| e.is::<PeerReset>()) {
            return Reason::Reset { phase };
        }
        match (io.kind(), phase) {
            (ErrorKind::TimedOut | ErrorKind::WouldBlock, _) => {
                Reason::Timeout { after: self.timeout, phase }
            }
            (ErrorKind::ConnectionRefused, _) => Reason::Refused,
            (
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe,
                _,
            ) => Reason::Reset { phase },
            (ErrorKind::UnexpectedEof, Phase::Head) => Reason::ClosedWithoutResponse,
            (ErrorKind::UnexpectedEof, Phase::Body) => Reason::ClosedMidBody,
            // std's resolver error has no stable kind; its message is fixed.
            _ if is_lookup_failure(io) => Reason::Dns { host: host(url) },
            _ => Reason::Network { detail: io.to_string(), phase },
        }
    }

    /// An error raised while reaching the proxy or waiting for its answer to CONNECT: the
    /// proxy's own failure (the region is blind), except a CONNECT answered with an error
    /// status, which is the API unreachable from the proxy's side.
    fn describe_proxy(&self, error: Error, proxy: String) -> Reason {
        use io::ErrorKind;
        match error {
            Error::ConnectProxyFailed(text) => match connect_status(&text) {
                Some(407) => Reason::ProxyCredentials { proxy },
                Some(_) => Reason::ConnectRefused,
                // `ureq`'s text when the proxy closed the connection without a reply.
                None => Reason::ProxyClosed { proxy },
            },
            Error::Timeout(_) => Reason::ProxySilent { proxy, after: self.timeout },
            Error::HostNotFound => Reason::ProxyDns { proxy },
            Error::Io(io) if io.get_ref().is_some_and(|e| e.is::<PeerReset>()) => {
                Reason::ProxyClosed { proxy }
            }
            Error::Io(io) => match io.kind() {
                ErrorKind::ConnectionRefused => Reason::ProxyRefused { proxy },
                ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                    Reason::ProxySilent { proxy, after: self.timeout }
                }
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof => Reason::ProxyClosed { proxy },
                _ if is_lookup_failure(&io) => Reason::ProxyDns { proxy },
                _ => Reason::ProxyFailed { proxy, detail: io.to_string() },
            },
            other => Reason::ProxyFailed { proxy, detail: other.to_string() },
        }
    }
}

/// The status code in `ureq`'s text for a CONNECT answered with an error
/// (`proxy server responded 407/407`), if that is what `text` is.
fn connect_status(text: &str) -> Option<u16> {
    let rest = text.strip_prefix("proxy server responded ")?;
    rest.split('/').next()?.parse().ok()
}

/// Whether `io` is std's name-resolution failure (it has no stable kind; its text is fixed).
fn is_lookup_failure(io: &io::Error) -> bool {
    io.to_string().starts_with("failed to lookup address")
}

/// The connector chain: `ureq`'s default pieces (CONNECT proxy, TCP, rustls) with the proxy
/// leg marked, resets witnessed and interim heads dropped. No SOCKS: region proxies are HTTP CONNECT proxies.
fn connector() -> impl Connector {
    ().chain(ProxyLeg(ConnectProxyConnector::default()))
        .chain(TcpConnector::default())
        .chain(RustlsConnector::default())
        .chain(Witness)
}

/// `ureq`'s CONNECT connector, whose errors — everything from resolving the proxy to reading
/// its answer — come out wrapped in [`ProxyLegError`], so they cannot be mistaken for the
/// target's. It does nothing (and cannot fail) without a proxy.
#[derive(Debug)]
struct ProxyLeg(ConnectProxyConnector);

/// An error of the exchange with the proxy, before the tunnel to the target was open.
#[derive(Debug)]
struct ProxyLegError(Error);

impl std::fmt::Display for ProxyLegError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "proxy: {}", self.0)
    }
}

impl std::error::Error for ProxyLegError {}

impl<In: Transport> Connector<In> for ProxyLeg {
    type Out = <ConnectProxyConnector as Connector<In>>::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        self.0.connect(details, chained).map_err(|e| Error::Other(Box::new(ProxyLegError(e))))
    }
}

/// Wraps every connection in [`Witnessed`].
#[derive(Debug)]
struct Witness;

impl<In: Transport> Connector<In> for Witness {
    type Out = Witnessed<In>;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        Ok(chained.map(|inner| Witnessed { inner, interim: Interim::Possible(0) }))
    }
}

/// A transport whose reset (`ECONNRESET`, `ECONNABORTED`) surfaces as a [`PeerReset`] error
/// rather than an I/O error `ureq` would take for the end of a body: a body cut by a reset
/// reads `connection reset while reading the body`, not `… closed before …`.
///
/// It also drops the interim responses (`1xx` but `101`, RFC 9110 §15.2) a server may send
/// before the final one, unasked: `ureq` skips them too, except a `100 Continue` with header
/// fields, which it calls an invalid response. Interim heads count toward the head cap.
#[derive(Debug)]
struct Witnessed<T> {
    inner: T,
    interim: Interim,
}

/// Whether interim heads may still come, and how many bytes of them were dropped so far.
#[derive(Clone, Copy, Debug)]
enum Interim {
    Possible(usize),
    /// The final head has begun: nothing is dropped any more (a body may look like a head).
    Over,
}

/// The peer reset the connection.
#[derive(Debug)]
struct PeerReset;

impl std::fmt::Display for PeerReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by peer")
    }
}

impl std::error::Error for PeerReset {}

fn witness(error: Error) -> Error {
    match error {
        Error::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ) =>
        {
            Error::Io(io::Error::other(PeerReset))
        }
        other => other,
    }
}

impl<T: Transport> Transport for Witnessed<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        self.inner.transmit_output(amount, timeout).map_err(witness)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let progress = self.inner.await_input(timeout).map_err(witness)?;
        while let Interim::Possible(dropped) = self.interim {
            let buffers = self.inner.buffers();
            match interim_head(buffers.input()) {
                Head::Incomplete => break,
                Head::Final => self.interim = Interim::Over,
                Head::Interim(length) => {
                    let dropped = dropped + length;
                    if dropped > HEAD_CAP {
                        return Err(Error::LargeResponseHeader(dropped, HEAD_CAP));
                    }
                    buffers.input_consume(length);
                    self.interim = Interim::Possible(dropped);
                }
            }
        }
        Ok(progress)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

/// What the start of a response stream holds, as far as interim responses go.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// A complete interim head (`1xx` but `101`) of this many bytes.
    Interim(usize),
    /// The final head begins here (or something `ureq` is to judge: `101`, or no HTTP at all).
    Final,
    /// Too little to tell yet.
    Incomplete,
}

/// Classifies the start of `input`. Only a status line `HTTP/1.x 1…` is parsed in full, so a
/// final head costs a comparison of ten bytes.
fn interim_head(input: &[u8]) -> Head {
    const HEADERS: usize = 128; // as many as `ureq` accepts in a head
    let Some(line) = input.get(..10) else {
        // A stream that cannot become `HTTP/1.x 1` is no interim head, however short.
        let prefix = &b"HTTP/1.x 1"[..input.len()];
        let may_be = input.iter().zip(prefix).all(|(a, b)| a == b || *b == b'x');
        return if may_be { Head::Incomplete } else { Head::Final };
    };
    if !(line.starts_with(b"HTTP/1.") && line[8] == b' ' && line[9] == b'1') {
        return Head::Final;
    }
    match ureq_proto::parser::try_parse_response::<HEADERS>(input) {
        Ok(None) => Head::Incomplete,
        Ok(Some((length, head)))
            if head.status().is_informational()
                && head.status() != ureq::http::StatusCode::SWITCHING_PROTOCOLS =>
        {
            Head::Interim(length)
        }
        // `101`, or a head `ureq` will refuse with its own words.
        Ok(Some(_)) | Err(_) => Head::Final,
    }
}

/// Name resolution with at most one lookup in flight per host name. `getaddrinfo` cannot be
/// cancelled, so a lookup runs on its own thread and is abandoned at the deadline; a probe that
/// finds a lookup of the same name still running waits for that one (up to its own deadline)
/// instead of starting another. A stalled resolver therefore costs one thread per host name
/// until the system resolver gives up (`resolv.conf` timeouts), never one per probe; and probes
/// of other names (a prober is shared by every target with the same timeout) never wait on it.
/// IP literals (`127.0.0.1`, `[::1]`) are answered at once, without a thread. Nothing is
/// cached: a finished lookup leaves the table, so every probe sees the resolver's current view.
#[derive(Clone, Debug, Default)]
struct OneLookup {
    running: Arc<Mutex<HashMap<String, Arc<Lookup>>>>,
}

/// A lookup running (or just finished) on its thread; any number of probes may wait on it.
#[derive(Debug, Default)]
struct Lookup {
    answer: Mutex<Option<io::Result<Vec<SocketAddr>>>>,
    done: Condvar,
}

impl Resolver for OneLookup {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(Error::BadUri(uri.to_string()));
        };
        let name = DefaultResolver::host_and_port(scheme, authority)
            .ok_or_else(|| Error::BadUri(uri.to_string()))?;
        let mut answer = self.empty();
        if let Ok(literal) = name.parse::<SocketAddr>() {
            answer.push(literal);
            return Ok(answer);
        }
        let found = self.lookup(name, *timeout.after).map_err(|e| match e {
            None => Error::Timeout(timeout.reason),
            Some(io) => Error::Io(io),
        })?;
        for address in config.ip_family().keep_wanted(found.into_iter()) {
            if answer.try_push(address).is_err() {
                break;
            }
        }
        if answer.is_empty() {
            return Err(Error::HostNotFound);
        }
        Ok(answer)
    }
}

impl OneLookup {
    /// The addresses of `name` (`host:port`), `Err(None)` when `within` passed first.
    fn lookup(&self, name: String, within: Duration) -> Result<Vec<SocketAddr>, Option<io::Error>> {
        let until = Instant::now() + within;
        let lookup = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(lookup) = running.get(&name) {
                Arc::clone(lookup)
            } else {
                let lookup = Arc::new(Lookup::default());
                let (table, mine, key) =
                    (Arc::clone(&self.running), Arc::clone(&lookup), name.clone());
                let spawned = std::thread::Builder::new()
                    .name("dns".into())
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        let found =
                            std::net::ToSocketAddrs::to_socket_addrs(&key).map(Iterator::collect);
                        // Out of the table first: a later probe starts a fresh lookup.
                        table.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
                        *mine.answer.lock().unwrap_or_else(PoisonError::into_inner) = Some(found);
                        mine.done.notify_all();
                    });
                if let Err(e) = spawned {
                    return Err(Some(e));
                }
                running.insert(name, Arc::clone(&lookup));
                lookup
            }
        };
        let mut answer = lookup.answer.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(found) = answer.as_ref() {
                return match found {
                    Ok(addresses) => Ok(addresses.clone()),
                    Err(e) => Err(Some(io::Error::new(e.kind(), e.to_string()))),
                };
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(None);
            }
            answer =
                lookup.done.wait_timeout(answer, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

/// `url` without its user-info, and the `Authorization` header value that user-info stands for
/// (`Basic`, RFC 7617: base64 of `user:password`, each percent-decoded). Done here rather than
/// by the client so the header is sent exactly as RFC 7617 says and [`HttpProber::fetch`]
/// knows to follow no redirect with it. A URL without user-info comes back as it is.
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

/// The host of `url` for a reason (`url` was validated at start-up, so it parses).
fn host(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "the target host".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::thread::{self, JoinHandle};

    const JSON: Option<&str> = Some("application/json");

    /// The reason's text, as logs and emails show it.
    fn reason_of(outcome: &Outcome) -> Option<String> {
        outcome.reason().map(ToString::to_string)
    }

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
                reason_of(&probe_mock(status, content_type, body)).as_deref(),
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
        assert_eq!(
            reason_of(&outcome).as_deref(),
            Some("content type \"text/html\", expected application/json")
        );
        let outcome = probe_mock(200, Some("text/plain"), r#"{"status":"OK"}"#);
        assert_eq!(
            reason_of(&outcome).as_deref(),
            Some("content type \"text/plain\", expected application/json")
        );
    }

    #[test]
    fn announced_body_over_the_cap_fails_without_reading_it() {
        let mut server = mockito::Server::new();
        let big = format!(r#"{{"status":"OK","pad":"{}"}}"#, "x".repeat(10_000));
        server.mock("GET", "/health").with_body(big).create();
        let outcome = HttpProber::new(Duration::from_secs(5))
            .with_body_cap(4096)
            .probe(&format!("{}/health", server.url()), None);
        assert_eq!(reason_of(&outcome).as_deref(), Some("body exceeds 4 KiB"));
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
        assert_eq!(reason_of(&outcome).as_deref(), Some("body exceeds 4 KiB"));
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
        assert_eq!(
            reason_of(&outcome).as_deref(),
            Some("connection closed before the body was complete")
        );
        server.join().unwrap().unwrap();
    }

    #[test]
    fn connection_closed_without_a_response_is_a_failure() {
        let (url, server) = raw_server(|_| Ok(()));
        let outcome = HttpProber::new(Duration::from_secs(5)).probe(&url, None);
        assert_eq!(
            reason_of(&outcome).as_deref(),
            Some("connection closed without an HTTP response")
        );
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
        assert_eq!(reason_of(&outcome).as_deref(), Some("timeout after 1s while reading the body"));
        let _ = server.join();
    }

    #[test]
    fn timeout_is_a_failure_with_the_deadline() {
        // A listener that accepts (the kernel completes the handshake) but never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let outcome = HttpProber::new(Duration::from_secs(1)).probe(&url, None);
        assert_eq!(reason_of(&outcome).as_deref(), Some("timeout after 1s"));
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
        assert_eq!(reason_of(&outcome).as_deref(), Some("connection refused"));
    }

    #[test]
    fn redirect_to_itself_is_a_loop() {
        let mut server = mockito::Server::new();
        server.mock("GET", "/health").with_status(302).with_header("location", "/health").create();
        let outcome = HttpProber::new(Duration::from_secs(5))
            .probe(&format!("{}/health", server.url()), None);
        assert_eq!(reason_of(&outcome).as_deref(), Some("redirect loop"));
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
        assert_eq!(reason_of(&outcome).as_deref(), Some("too many redirects (more than 5)"));
    }

    #[test]
    fn unresolvable_host_is_a_dns_failure() {
        // `.invalid` is reserved (RFC 2606): no resolver may answer it.
        let outcome = HttpProber::new(Duration::from_secs(5))
            .probe("http://nonexistent.invalid/health", None);
        assert_eq!(
            reason_of(&outcome).as_deref(),
            Some("DNS lookup failed for nonexistent.invalid")
        );
    }

    #[test]
    fn user_info_becomes_a_basic_authorization_header() {
        let (url, auth) = without_credentials("http://probe:p%40ss%3Aw0rd@127.0.0.1:8080/health");
        assert_eq!(url, "http://127.0.0.1:8080/health", "the client gets no user-info");
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

    /// A loopback listener that accepts every connection and keeps it open without a word
    /// (nor reading one): a silent TLS server, or a proxy that never answers CONNECT.
    fn silent_listener() -> (std::net::SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let mut held = Vec::new();
            // Two connections at most per test; then hold them until the test process ends.
            for stream in listener.incoming().take(2).map_while(Result::ok) {
                held.push(stream);
            }
            thread::sleep(Duration::from_secs(30));
        });
        (address, handle)
    }

    /// How long a probe with `deadline` may take at most: the deadline plus scheduling slack.
    fn by_deadline(outcome: &Outcome, deadline: Duration) {
        let limit = deadline + Duration::from_millis(900);
        assert!(outcome.latency() < limit, "ended by the deadline: {outcome:?}");
    }

    #[test]
    fn a_silent_tls_server_times_out_at_the_deadline() {
        let (address, _server) = silent_listener();
        let outcome = HttpProber::new(Duration::from_secs(1))
            .probe(&format!("https://{address}/health"), None);
        assert_eq!(reason_of(&outcome).as_deref(), Some("timeout after 1s"));
        assert!(!outcome.is_blind());
        by_deadline(&outcome, Duration::from_secs(1));
    }

    #[test]
    fn a_proxy_that_never_answers_connect_blinds_the_region() {
        let (proxy, _server) = silent_listener();
        let proxy = format!("http://{proxy}");
        for target in ["http://127.0.0.1:9/health", "https://127.0.0.1:9/health"] {
            let outcome = HttpProber::new(Duration::from_secs(1)).probe(target, Some(&proxy));
            assert!(outcome.is_blind(), "{target}: {outcome:?}");
            assert_eq!(
                reason_of(&outcome).as_deref(),
                Some("proxy 127.0.0.1 did not answer CONNECT within 1s"),
                "{target}"
            );
            assert_eq!(outcome.reason().map(Reason::kind), Some("proxy"));
            by_deadline(&outcome, Duration::from_secs(1));
        }
    }

    #[test]
    fn a_proxy_that_refuses_connect_is_a_failure_of_the_api() {
        let (url, _server) = raw_server(|stream| {
            stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        });
        let proxy = url.trim_end_matches("/health");
        let outcome =
            HttpProber::new(Duration::from_secs(5)).probe("http://127.0.0.1:9/health", Some(proxy));
        assert!(matches!(outcome, Outcome::Failed { .. }), "{outcome:?}");
        assert_eq!(
            reason_of(&outcome).as_deref(),
            Some("proxy could not reach the API (CONNECT refused)")
        );
    }

    #[test]
    fn a_proxy_asking_for_credentials_blinds_the_region() {
        let (url, _server) = raw_server(|stream| {
            stream.write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
            )
        });
        let proxy = url.trim_end_matches("/health");
        let outcome =
            HttpProber::new(Duration::from_secs(5)).probe("http://127.0.0.1:9/health", Some(proxy));
        assert!(outcome.is_blind(), "{outcome:?}");
        assert_eq!(
            reason_of(&outcome).as_deref(),
            Some("proxy 127.0.0.1 rejected the credentials (HTTP 407)")
        );
    }

    #[test]
    fn a_dead_proxy_blinds_the_region() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let proxy = format!("http://127.0.0.1:{port}");
        let outcome = HttpProber::new(Duration::from_secs(5))
            .probe("http://127.0.0.1:9/health", Some(&proxy));
        assert!(outcome.is_blind(), "{outcome:?}");
        assert_eq!(
            reason_of(&outcome).as_deref(),
            Some("proxy 127.0.0.1 unreachable: connection refused")
        );
    }

    #[test]
    fn headers_trickled_line_by_line_end_at_the_deadline() {
        let (url, server) = raw_server(|stream| {
            stream.write_all(b"HTTP/1.1 200 OK\r\n")?;
            for _ in 0..100 {
                thread::sleep(Duration::from_millis(200));
                stream.write_all(b"X-Wait: a\r\n")?;
            }
            Ok(())
        });
        let outcome = HttpProber::new(Duration::from_secs(1)).probe(&url, None);
        assert_eq!(reason_of(&outcome).as_deref(), Some("timeout after 1s"));
        by_deadline(&outcome, Duration::from_secs(1));
        assert!(server.join().unwrap().is_err(), "the probe hung up");
    }

    #[test]
    fn a_stalled_body_ends_at_the_deadline() {
        let (url, _server) = raw_server(|stream| {
            stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{",
            )?;
            thread::sleep(Duration::from_secs(10));
            Ok(())
        });
        let outcome = HttpProber::new(Duration::from_secs(1)).probe(&url, None);
        assert_eq!(reason_of(&outcome).as_deref(), Some("timeout after 1s while reading the body"));
        by_deadline(&outcome, Duration::from_secs(1));
    }

    #[test]
    fn a_huge_header_line_ending_in_a_bare_lf_fails_fast() {
        let (url, _server) = raw_server(|stream| {
            let mut head = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
            head.resize(head.len() + 16_383 - "X-Big: ".len() - 1, b'a');
            head.extend_from_slice(b"\n\r\n{\"status\":\"OK\"}");
            stream.write_all(&head)
        });
        let outcome = HttpProber::new(Duration::from_secs(5)).probe(&url, None);
        assert_eq!(reason_of(&outcome).as_deref(), Some("response headers too large"));
        assert!(outcome.latency() < Duration::from_secs(2), "fast: {outcome:?}");
    }

    #[test]
    fn endless_header_lines_or_interim_responses_are_cut_at_the_head_cap() {
        // 64 MiB of head if nobody stopped reading it: header lines, or interim responses
        // (each dropped, but they count toward the cap all the same).
        let cases: [(&'static [u8], &'static [u8]); 2] = [
            (
                b"HTTP/1.1 200 OK\r\n",
                b"X-More: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            ),
            (b"", b"HTTP/1.1 100 Continue\r\nX-Wait: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"),
        ];
        for (start, unit) in cases {
            let (url, server) = raw_server(move |stream| {
                stream.write_all(start)?;
                let units = unit.repeat(1024);
                for _ in 0..1024 {
                    stream.write_all(&units)?;
                }
                Ok(())
            });
            let outcome = HttpProber::new(Duration::from_secs(5)).probe(&url, None);
            let shown = String::from_utf8_lossy(unit);
            assert_eq!(
                reason_of(&outcome).as_deref(),
                Some("response headers too large"),
                "{shown}"
            );
            assert!(server.join().unwrap().is_err(), "{shown}: the probe hung up, not read on");
        }
    }

    #[test]
    fn an_ipv6_literal_target_is_probed() {
        let Ok(listener) = TcpListener::bind("[::1]:0") else {
            eprintln!("SKIPPED: no IPv6 loopback on this machine");
            return;
        };
        let url = format!("http://[::1]:{}/health", listener.local_addr().unwrap().port());
        let server = thread::spawn(move || -> std::io::Result<()> {
            let (mut stream, _) = listener.accept()?;
            let mut reader = BufReader::new(stream.try_clone()?);
            let mut line = String::new();
            while reader.read_line(&mut line)? > 2 {
                line.clear();
            }
            stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n\
                  {\"status\":\"OK\"}",
            )
        });
        let outcome = HttpProber::new(Duration::from_secs(5)).probe(&url, None);
        assert!(outcome.is_healthy(), "{outcome:?}");
        server.join().unwrap().unwrap();
    }

    #[test]
    fn bytes_beyond_ascii_only_matter_in_a_header_we_read() {
        let cases: [(&'static [u8], Option<&str>); 3] = [
            (b"X-Note: caf\xe9", None),
            (b"X-Note: \xff\xfe\x80", None),
            (
                b"Content-Type: application/js\xf6n",
                Some("content type \"(not ascii)\", expected application/json"),
            ),
        ];
        for (header, reason) in cases {
            let (url, server) = raw_server(move |stream| {
                stream.write_all(b"HTTP/1.1 200 OK\r\n")?;
                stream.write_all(header)?;
                stream.write_all(b"\r\nContent-Length: 15\r\n\r\n{\"status\":\"OK\"}")
            });
            let outcome = HttpProber::new(Duration::from_secs(5)).probe(&url, None);
            let shown = String::from_utf8_lossy(header);
            assert_eq!(reason_of(&outcome).as_deref(), reason, "{shown}: {outcome:?}");
            server.join().unwrap().unwrap();
        }
    }

    #[test]
    fn unsolicited_interim_responses_are_skipped_and_the_final_answer_judged() {
        let ok = r#"{"status":"OK"}"#;
        let cases = [
            ("HTTP/1.1 100 Continue\r\n\r\n", ok, None),
            // Header fields in a 1xx are allowed (RFC 9110 §15.2); `ureq` alone refuses them
            // in a 100 ("received headers with 100-continue response").
            ("HTTP/1.1 100 Continue\r\nServer: edge\r\n\r\n", ok, None),
            ("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n", ok, None),
            ("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", ok, None),
            (
                "HTTP/1.1 100 Continue\r\nX: y\r\n\r\n",
                r#"{"status":"DOWN"}"#,
                Some("status \"DOWN\""),
            ),
            ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", ok, Some("HTTP 101")),
        ];
        for (interim, body, reason) in cases {
            let (url, server) = raw_server(move |stream| {
                // The interim head alone first, as a server that is still thinking sends it.
                stream.write_all(interim.as_bytes())?;
                stream.flush()?;
                thread::sleep(Duration::from_millis(50));
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            });
            let outcome = HttpProber::new(Duration::from_secs(5)).probe(&url, None);
            assert_eq!(reason_of(&outcome).as_deref(), reason, "{interim:?}: {outcome:?}");
            let _ = server.join().unwrap();
        }
    }

    #[test]
    fn interim_heads_are_told_from_final_ones() {
        let cases: [(&[u8], Head); 11] = [
            (b"", Head::Incomplete),
            (b"HTTP/1.1 1", Head::Incomplete),
            (b"HTTP/1.", Head::Incomplete),
            (b"HTTP/1.1 100 Continue\r\n", Head::Incomplete),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", Head::Interim(25)),
            (b"HTTP/1.0 103 Early Hints\r\nLink: <a>\r\n\r\n", Head::Interim(39)),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", Head::Final),
            (b"HTTP/1.1 200 OK\r\n", Head::Final),
            (b"HTTP/2 ", Head::Final),
            (b"<html>", Head::Final),
            (b"HTTP/1.1 1xx Nonsense\r\n\r\n", Head::Final),
        ];
        for (input, head) in cases {
            assert_eq!(interim_head(input), head, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn a_duplicate_status_key_is_ambiguous() {
        let outcome = probe_mock(200, JSON, r#"{"status":"DOWN","status":"OK"}"#);
        assert_eq!(reason_of(&outcome).as_deref(), Some("duplicate \"status\" field in JSON"));
    }

    #[test]
    fn a_sub_second_timeout_reads_in_milliseconds() {
        let (address, _server) = silent_listener();
        let deadline = Duration::from_millis(300);
        let outcome = HttpProber::new(deadline).probe(&format!("http://{address}/health"), None);
        assert_eq!(reason_of(&outcome).as_deref(), Some("timeout after 300ms"));
        by_deadline(&outcome, deadline);
    }
}
