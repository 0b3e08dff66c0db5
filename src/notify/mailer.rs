//! Delivering composed emails: over SMTP with `lettre`, or only into the log when no server or
//! recipient is configured.
//!
//! `lettre` rather than the design card's `mail-send`: mail-send is async-only (tokio), and the
//! monitor's first rule is zero async.
//!
//! # One conversation, one deadline
//!
//! [`Mailer::send`] takes a deadline for the whole conversation (connect, TLS, EHLO, AUTH,
//! MAIL, RCPT, DATA) and keeps it whatever the server does. `lettre`'s own timeout is per socket
//! read, so a tarpit answering `220-` every few seconds, or trickling a byte at a time, would
//! keep its `SmtpTransport` busy forever; and `lettre` hands out no handle to its socket that
//! another thread could shut down. So:
//!
//! - The protocol is `lettre`'s lower-level [`SmtpConnection`], driven step by step (`connect`,
//!   `starttls`, `auth`, then `MAIL`, each `RCPT`, `DATA` and the message as commands). That
//!   gives per-recipient answers (one refused recipient no longer fails the others), the phase
//!   and code of every failure, and "accepted" as soon as the end of DATA is answered 2xx —
//!   the QUIT is left to [`Mailer::finish`].
//! - The socket is ours: `lettre` connects to a one-shot loopback [relay](super::relay) that
//!   connects to the real server and copies bytes both ways unchanged (TLS stays end to end:
//!   `lettre` is given `TlsParameters` for the real host name). A watchdog shuts both sockets
//!   down at the deadline, and [`AbortHandle::abort`] does the same from any thread; whatever
//!   `lettre` is blocked in then returns at once. The relay's threads are joined before `send`
//!   returns an error, or by `finish` after a success, so no thread or socket outlives the
//!   conversation. (Alternatives: running `lettre` on a thread that is abandoned at the deadline
//!   leaks the thread and its socket for as long as the server keeps talking; finding `lettre`'s
//!   descriptor behind its back needs `unsafe`; a hand-written SMTP client is what `lettre` is
//!   for.)
//! - The per-read timeout ([`SMTP_TIMEOUT`] in the daemon) stays a bound too: a server silent
//!   for that long fails the conversation even before the deadline.
//!
//! One limit: resolving the server's host name uses the system resolver, which no socket of
//! ours can cut; it is bounded by the resolver's own timeouts (an IP address needs none).
//!
//! # Permanent or transient
//!
//! [`MailError::is_permanent`] says whether retrying *this message* is pointless: the server
//! answered 5xx to `MAIL FROM`, to `DATA` or to the end of DATA, or refused every recipient with
//! 5xx, or the message cannot be built. Everything else is transient: 4xx answers, refusals of
//! the session rather than the message (greeting, EHLO, STARTTLS, AUTH), network and TLS
//! errors, timeouts, the deadline, an abort.
//!
//! # Long subjects
//!
//! `lettre` folds a header only at spaces and RFC 2047-encodes only words that are not ASCII,
//! so a subject holding a 2,000-character URL goes out as one 2,000-octet line (servers answer
//! `500 Line too long`; RFC 5322 allows 998). The subject is therefore emitted through
//! [`FoldedSubject`], which uses the same encoder as `lettre` (the `email-encoding` crate) and
//! also encodes, in encoded-words of at most 76 octets per line, any word too long for a line.

use std::net::ToSocketAddrs;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use email_encoding::headers::writer::EmailWriter;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{SmtpConnection, Tls, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

use crate::config::SmtpSettings;
use crate::notify::message::Email;
use crate::notify::relay::{Cut, Cutter, Relay};
use crate::redact;

/// The per-read bound of an SMTP conversation (each answer must start coming within it); the
/// daemon also gives each conversation this long in all.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Mailer::finish`] waits for the answer to QUIT.
pub const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a failed conversation waits for the answer to its QUIT before it is cut.
const QUIT_AFTER_FAILURE: Duration = Duration::from_millis(500);

/// The longest server answer kept in an error or a refusal.
const ANSWER_MAX: usize = 300;

/// Something that delivers [`Email`]s.
pub trait Mailer: Send {
    /// One SMTP conversation that ends by `deadline` whatever the server does (connect, TLS,
    /// EHLO, AUTH, MAIL, RCPT, DATA). Ok as soon as the server accepted the message (end of
    /// DATA answered 2xx); the QUIT is left to `finish`.
    fn send(
        &mut self,
        email: &Email,
        to: &[&str],
        deadline: Instant,
    ) -> Result<Accepted, MailError>;

    /// Ends the last accepted conversation politely (QUIT) within a short bound
    /// ([`QUIT_TIMEOUT`]); never fails. Call it right after recording the delivery: until then
    /// the accepted conversation keeps its socket. Default: nothing.
    fn finish(&mut self) {}

    /// How it delivers, for the log: `smtp` or `log`.
    fn channel(&self) -> &'static str;

    /// A handle another thread uses to cut the conversation in flight (shutdown): `send` then
    /// returns `Err` promptly (< 1 s). A no-op when nothing is in flight.
    fn abort_handle(&self) -> AbortHandle;
}

/// The server accepted the message (for at least one recipient).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Recipients refused at RCPT while others were accepted.
    pub refused: Vec<Refusal>,
}

/// A recipient the server refused at RCPT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub address: String,
    /// The server's code and text, one line (`550 5.1.1 no such user`).
    pub answer: String,
}

/// Where in the conversation it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The TCP connection to the server (made by the relay).
    Connect,
    /// Everything `lettre` does on connecting: TLS (for `smtps://`), the greeting, EHLO.
    Greeting,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    /// The message itself, up to the server's answer to its final `.`.
    EndOfData,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::Greeting => "greeting/TLS/EHLO",
            Phase::StartTls => "STARTTLS",
            Phase::Auth => "AUTH",
            Phase::MailFrom => "MAIL FROM",
            Phase::RcptTo => "RCPT TO",
            Phase::Data => "DATA",
            Phase::EndOfData => "end of DATA",
        })
    }
}

/// A delivery that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid mail settings: {0}")]
    Settings(String),
    #[error("cannot build the message: {0}")]
    Build(String),
    /// `server` has no password; `answer` is one line: the server's code and text, or what
    /// went wrong instead (network error, deadline, abort).
    #[error("SMTP delivery via {server} failed at {phase}: {answer}")]
    Smtp { server: String, phase: Phase, answer: String, permanent: bool },
}

impl MailError {
    /// Whether retrying this message is pointless (see the module documentation).
    pub fn is_permanent(&self) -> bool {
        match self {
            MailError::Settings(_) | MailError::Build(_) => true,
            MailError::Smtp { permanent, .. } => *permanent,
        }
    }
}

/// Cuts the conversation a mailer has in flight; see [`Mailer::abort_handle`].
#[derive(Clone, Default)]
pub struct AbortHandle(Arc<Mutex<InFlight>>);

#[derive(Default)]
struct InFlight {
    /// A `send` is running.
    active: bool,
    /// `abort` was called during this `send`.
    aborted: bool,
    /// The relay of the conversation in flight or awaiting its QUIT.
    relay: Option<Cutter>,
}

impl AbortHandle {
    /// Cuts the conversation in flight (or awaiting its QUIT), if any.
    pub fn abort(&self) {
        let mut state = self.lock();
        if state.active {
            state.aborted = true;
        }
        if let Some(relay) = &state.relay {
            relay.cut(Cut::Aborted);
        }
    }

    fn lock(&self) -> MutexGuard<'_, InFlight> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(&self) {
        *self.lock() = InFlight { active: true, aborted: false, relay: None };
    }

    fn aborted(&self) -> bool {
        self.lock().aborted
    }

    /// Registers the conversation's relay; cuts it at once if aborted already.
    fn register(&self, relay: Cutter) {
        let mut state = self.lock();
        if state.aborted {
            relay.cut(Cut::Aborted);
        }
        state.relay = Some(relay);
    }

    /// `send` returned; `keep` the relay registered while the conversation awaits its QUIT.
    fn end(&self, keep: bool) {
        let mut state = self.lock();
        state.active = false;
        if !keep {
            state.relay = None;
        }
    }
}

impl std::fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AbortHandle")
    }
}

/// Where and how to reach the server: what `lettre` would take from the same URL.
struct Endpoint {
    host: String,
    port: u16,
    tls: Tls,
    hello: ClientId,
    credentials: Option<Credentials>,
}

impl Endpoint {
    /// The URL read as `lettre`'s `SmtpTransport::from_url` reads it.
    fn parse(text: &str) -> Result<Endpoint, String> {
        let url = url::Url::parse(text).map_err(|e| e.to_string())?;
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("no host".into()),
        };
        let tls_param = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
        let params = || TlsParameters::new(host.clone()).map_err(|e| e.to_string());
        let (port, tls) = match (url.scheme(), tls_param.as_deref()) {
            ("smtp", None) => (25, Tls::None),
            ("smtp", Some("required")) => (587, Tls::Required(params()?)),
            ("smtp", Some("opportunistic")) => (587, Tls::Opportunistic(params()?)),
            ("smtps", _) => (465, Tls::Wrapper(params()?)),
            (scheme, tls) => return Err(format!("unknown scheme {scheme:?} or tls={tls:?}")),
        };
        let hello = match url.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_owned()),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|e| e.to_string())
        };
        let credentials = match url.password() {
            Some(password) => Some(Credentials::new(decode(url.username())?, decode(password)?)),
            None => None,
        };
        Ok(Endpoint { host, port: url.port().unwrap_or(port), tls, hello, credentials })
    }
}

/// Delivers through an SMTP server.
pub struct SmtpMailer {
    endpoint: Endpoint,
    /// The per-read bound.
    timeout: Duration,
    from: Mailbox,
    /// The server URL without its password, for errors.
    server: String,
    in_flight: AbortHandle,
    /// The last accepted conversation, until [`Mailer::finish`] QUITs it.
    accepted: Option<Open>,
}

/// A conversation: `lettre`'s connection through our relay.
struct Open {
    conn: SmtpConnection,
    relay: Relay,
}

impl SmtpMailer {
    /// Reads the settings; nothing is sent or connected yet. `timeout` bounds each read (and
    /// the TCP connect); [`Mailer::send`]'s deadline bounds the whole conversation.
    pub fn new(settings: &SmtpSettings, timeout: Duration) -> Result<Self, MailError> {
        let server = redact::url(&settings.url);
        let endpoint = Endpoint::parse(&settings.url)
            .map_err(|e| MailError::Settings(format!("{server}: {e}")))?;
        let from = settings
            .from
            .parse::<Mailbox>()
            .map_err(|e| MailError::Settings(format!("{:?}: {e}", settings.from)))?;
        Ok(SmtpMailer {
            endpoint,
            timeout,
            from,
            server,
            in_flight: AbortHandle::default(),
            accepted: None,
        })
    }

    fn build(&self, email: &Email, to: &[&str]) -> Result<lettre::Message, MailError> {
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .header(FoldedSubject(email.subject.clone()))
            .user_agent(concat!("api-monitor/", env!("CARGO_PKG_VERSION")).to_string())
            .message_id(email.message_id.clone());
        for address in to {
            let mailbox = address
                .parse::<Mailbox>()
                .map_err(|e| MailError::Build(format!("{address:?}: {e}")))?;
            builder = builder.to(mailbox);
        }
        builder
            .multipart(MultiPart::alternative_plain_html(email.text.clone(), email.html.clone()))
            .map_err(|e| MailError::Build(e.to_string()))
    }

    fn error(&self, phase: Phase, answer: String, permanent: bool) -> MailError {
        MailError::Smtp { server: self.server.clone(), phase, answer, permanent }
    }

    /// The conversation up to the server's answer to the end of DATA.
    fn converse(
        &self,
        message: &lettre::Message,
        deadline: Instant,
    ) -> Result<(Open, Accepted), MailError> {
        let transient = |phase, answer: String| self.error(phase, answer, false);
        let ep = &self.endpoint;
        let addrs: Vec<_> = (ep.host.as_str(), ep.port)
            .to_socket_addrs()
            .map_err(|e| transient(Phase::Connect, format!("cannot resolve {}: {e}", ep.host)))?
            .collect();
        if self.in_flight.aborted() {
            return Err(transient(Phase::Connect, "aborted (shutdown)".into()));
        }
        if Instant::now() >= deadline {
            return Err(transient(Phase::Connect, "the deadline passed before connecting".into()));
        }
        let relay = Relay::start(addrs, self.timeout, deadline)
            .map_err(|e| transient(Phase::Connect, format!("cannot start the relay: {e}")))?;
        self.in_flight.register(relay.cutter());
        let wrapper = match &ep.tls {
            Tls::Wrapper(params) => Some(params),
            _ => None,
        };
        let connected = SmtpConnection::connect(
            relay.local_addr(),
            Some(self.timeout),
            &ep.hello,
            wrapper,
            None,
        );
        let conn = match connected {
            Ok(conn) => conn,
            Err(e) => return Err(self.failed(None, relay, Phase::Greeting, &e, false)),
        };
        let mut open = Open { conn, relay };

        let starttls = match &ep.tls {
            Tls::Required(params) => Some(params),
            Tls::Opportunistic(params) if open.conn.can_starttls() => Some(params),
            _ => None,
        };
        if let Some(params) = starttls {
            if let Err(e) = open.conn.starttls(params, &ep.hello) {
                return Err(self.fail(open, Phase::StartTls, &e, false));
            }
        }
        if let Some(credentials) = &ep.credentials {
            if let Err(e) = open.conn.auth(DEFAULT_MECHANISMS, credentials) {
                return Err(self.fail(open, Phase::Auth, &e, false));
            }
        }

        let bytes = message.formatted();
        let envelope = message.envelope();
        let info = open.conn.server_info();
        let mut options = Vec::new();
        let non_ascii_address = envelope.from().into_iter().chain(envelope.to()).any(|a| {
            let text: &str = a.as_ref();
            !text.is_ascii()
        });
        if non_ascii_address {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                let why = "an address is not ASCII and the server does not offer SMTPUTF8";
                return Err(self.abandon(open, Phase::MailFrom, why.into(), true));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !bytes.is_ascii() {
            if !info.supports_feature(Extension::EightBitMime) {
                let why = "the message is not ASCII and the server does not offer 8BITMIME";
                return Err(self.abandon(open, Phase::MailFrom, why.into(), true));
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        if let Err(e) = open.conn.command(Mail::new(envelope.from().cloned(), options)) {
            return Err(self.fail(open, Phase::MailFrom, &e, e.is_permanent()));
        }

        let mut refused = Vec::new();
        let mut all_permanent = true;
        for address in envelope.to() {
            match open.conn.command(Rcpt::new(address.clone(), vec![])) {
                Ok(_) => {}
                Err(e) if e.status().is_some() => {
                    all_permanent &= e.is_permanent();
                    refused.push(Refusal { address: address.to_string(), answer: answer(&e) });
                }
                Err(e) => return Err(self.fail(open, Phase::RcptTo, &e, false)),
            }
        }
        if refused.len() == envelope.to().len() {
            let every: Vec<String> =
                refused.iter().map(|r| format!("{} refused: {}", r.address, r.answer)).collect();
            return Err(self.abandon(open, Phase::RcptTo, every.join("; "), all_permanent));
        }

        if let Err(e) = open.conn.command(Data) {
            return Err(self.fail(open, Phase::Data, &e, e.is_permanent()));
        }
        if let Err(e) = open.conn.message(&bytes) {
            return Err(self.fail(open, Phase::EndOfData, &e, e.is_permanent()));
        }
        Ok((open, Accepted { refused }))
    }

    /// The error for `e` at `phase`, after ending the conversation.
    fn fail(
        &self,
        open: Open,
        phase: Phase,
        e: &lettre::transport::smtp::Error,
        permanent: bool,
    ) -> MailError {
        let Open { conn, relay } = open;
        self.failed(Some(conn), relay, phase, e, permanent)
    }

    fn failed(
        &self,
        conn: Option<SmtpConnection>,
        relay: Relay,
        mut phase: Phase,
        e: &lettre::transport::smtp::Error,
        permanent: bool,
    ) -> MailError {
        // A server's answer says it all; otherwise the relay knows best why the socket died.
        let text = if e.status().is_some() {
            answer(e)
        } else {
            match relay.cut_reason() {
                Some(Cut::Deadline) => "the conversation's deadline passed (cut)".to_owned(),
                Some(Cut::Aborted) => "aborted (shutdown)".to_owned(),
                Some(Cut::Connect(why)) => {
                    phase = Phase::Connect;
                    one_line(&why)
                }
                // lettre read the end of the stream: the server hung up without a word.
                Some(Cut::ServerClosed) if e.is_response() => {
                    "the server closed the connection".to_owned()
                }
                _ if timed_out(e) => {
                    format!(
                        "no answer within {} (read timeout)",
                        crate::duration::human(self.timeout)
                    )
                }
                _ => one_line(&e.to_string()),
            }
        };
        let error = self.error(phase, text, permanent && e.status().is_some());
        if let Some(conn) = conn {
            quit_and_close(Open { conn, relay }, QUIT_AFTER_FAILURE);
        }
        error
    }

    /// Gives up on a conversation whose server answered, with `answer`.
    fn abandon(&self, open: Open, phase: Phase, answer: String, permanent: bool) -> MailError {
        quit_and_close(open, QUIT_AFTER_FAILURE);
        self.error(phase, answer, permanent)
    }
}

/// QUITs within `bound` (unless the connection is broken already), then cuts the relay and
/// waits for its threads.
fn quit_and_close(open: Open, bound: Duration) {
    let Open { mut conn, relay } = open;
    let broken = conn.has_broken() || relay.cut_reason().is_some();
    if !broken {
        relay.shorten(Instant::now() + bound);
        if conn.set_timeout(Some(bound)).is_ok() {
            let _ = conn.quit();
        }
    }
    drop(conn);
    relay.close();
}

impl Mailer for SmtpMailer {
    fn send(
        &mut self,
        email: &Email,
        to: &[&str],
        deadline: Instant,
    ) -> Result<Accepted, MailError> {
        self.finish();
        if to.is_empty() {
            // A target/region with no recipient at all: say so rather than retry forever.
            return LogMailer.send(email, to, deadline);
        }
        let message = self.build(email, to)?;
        self.in_flight.begin();
        let result = self.converse(&message, deadline);
        self.in_flight.end(result.is_ok());
        let (open, accepted) = result?;
        self.accepted = Some(open);
        Ok(accepted)
    }

    fn finish(&mut self) {
        if let Some(open) = self.accepted.take() {
            quit_and_close(open, QUIT_TIMEOUT);
            self.in_flight.end(false);
        }
    }

    fn channel(&self) -> &'static str {
        "smtp"
    }

    fn abort_handle(&self) -> AbortHandle {
        self.in_flight.clone()
    }
}

impl Drop for SmtpMailer {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Whether `e` comes from a socket read or write that timed out (`EAGAIN` on Unix).
fn timed_out(e: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            );
        }
        source = err.source();
    }
    false
}

/// A server's negative answer as one line: `550 5.1.1 no such user`.
fn answer(e: &lettre::transport::smtp::Error) -> String {
    use std::error::Error as _;
    match (e.status(), e.source()) {
        (Some(code), Some(text)) => one_line(&format!("{code} {text}")),
        (Some(code), None) => code.to_string(),
        _ => one_line(&e.to_string()),
    }
}

/// `text` on one line of printable characters, at most [`ANSWER_MAX`] of them.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(ANSWER_MAX));
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > ANSWER_MAX {
        out = out.chars().take(ANSWER_MAX - 1).collect::<String>() + "…";
    }
    out
}

/// The `Subject` header, folded so that no line exceeds 76 octets whatever the subject holds.
///
/// `lettre`'s own `Subject` folds only at spaces and encodes only non-ASCII words, so one long
/// word (a URL) stays on a line of its own length. This does what `lettre`'s header encoder does
/// — printable ASCII words as they are, folded at spaces; runs of other words as RFC 2047
/// encoded-words, through the same `email-encoding` crate — and also encodes any word that
/// cannot fit a folded line, or that looks like an encoded-word itself (so a reader decodes the
/// subject to exactly the original). The encoder splits encoded-words across folded lines, and
/// readers join adjacent encoded-words without the folding white space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoldedSubject(pub String);

/// The line length `lettre`'s header encoder folds at.
const HEADER_LINE: usize = 76;

impl Header for FoldedSubject {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Subject")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.into()))
    }

    fn display(&self) -> HeaderValue {
        let name = Self::name();
        let encoded = fold(name.len() + ": ".len(), &self.0);
        // Pre-encoded: only printable ASCII, folded, and nothing of the subject's own is left
        // unencoded unless it is plain printable ASCII without CR or LF.
        HeaderValue::dangerous_new_pre_encoded(name, self.0.clone(), encoded)
    }
}

/// `value` as a header value starting at column `start`: see [`FoldedSubject`].
fn fold(start: usize, value: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(value.len() + value.len() / 2);
    {
        let mut writer = EmailWriter::new(&mut out, start, 0, false);
        let mut pending = String::new();
        let mut first = true;
        for word in value.split_inclusive(' ') {
            let bare = word.trim_end_matches(' ');
            // A word written as it is must fit a line: after the header name when it comes
            // first (nothing to fold before it), else on a continuation line after one space.
            let room = if first { HEADER_LINE.saturating_sub(start) } else { HEADER_LINE - 1 };
            let plain = bare.bytes().all(|b| (b'!'..=b'~').contains(&b))
                && bare.len() <= room
                && !bare.contains("=?");
            if plain {
                flush(&mut pending, &mut writer);
                let _ = writer.folding().write_str(word);
            } else {
                pending.push_str(word);
            }
            first = false;
        }
        flush(&mut pending, &mut writer);
    }
    out
}

/// Writes the words collected in `pending` as encoded-words (their trailing spaces as spaces).
fn flush(pending: &mut String, writer: &mut EmailWriter<'_>) {
    if pending.is_empty() {
        return;
    }
    let text = pending.trim_end_matches(' ');
    let _ = email_encoding::headers::rfc2047::encode(text, writer);
    for _ in text.len()..pending.len() {
        writer.space();
    }
    pending.clear();
}

/// "Delivers" into the log, in full, so a monitor without mail set-up still tells someone.
pub struct LogMailer;

impl Mailer for LogMailer {
    fn send(
        &mut self,
        email: &Email,
        _to: &[&str],
        _deadline: Instant,
    ) -> Result<Accepted, MailError> {
        log::warn!(
            "notification not mailed (no SMTP server or no recipient) subject={:?}\n{}",
            email.subject,
            email.text.trim_end()
        );
        Ok(Accepted::default())
    }

    fn channel(&self) -> &'static str {
        "log"
    }

    fn abort_handle(&self) -> AbortHandle {
        AbortHandle::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::message::header::Subject;

    /// The `Subject` line(s) as they go out, and the value a reader decodes from them.
    fn emitted(subject: &str) -> (Vec<String>, String) {
        let mut headers = lettre::message::header::Headers::new();
        headers.set(FoldedSubject(subject.to_owned()));
        let text = headers.to_string();
        let lines: Vec<String> =
            text.strip_suffix("\r\n").unwrap().split("\r\n").map(str::to_owned).collect();
        let unfolded = text.trim_end_matches("\r\n").replace("\r\n", "");
        let value = unfolded.strip_prefix("Subject: ").unwrap();
        (lines, testkit::decode_encoded_words(value))
    }

    #[test]
    fn a_subject_with_a_2100_character_url_is_folded_into_short_lines() {
        let url = format!("https://api.example.com/health/{}", "a1b2c3d4e5".repeat(207));
        let subject = format!("[api-monitor] OUTAGE: {url} is down (region eu)");
        assert!(url.len() > 2_100);
        let (lines, decoded) = emitted(&subject);
        for line in &lines {
            assert!(line.len() <= 78, "a line of {} octets: {line:?}", line.len());
        }
        assert!(lines.len() > 25, "folded over many lines: {}", lines.len());
        assert_eq!(decoded, subject, "a reader gets the subject back exactly");
        assert!(lines[0].starts_with("Subject: [api-monitor] OUTAGE: "), "{}", lines[0]);
    }

    #[test]
    fn lettre_alone_leaves_a_long_url_on_one_line() {
        // Why FoldedSubject exists: if lettre ever folds this itself, it can be dropped.
        let url = format!("https://api.example.com/{}", "x".repeat(2_100));
        let mut headers = lettre::message::header::Headers::new();
        headers.set(Subject::from(format!("[api-monitor] OUTAGE: {url} is down")));
        let longest = headers.to_string().split("\r\n").map(str::len).max().unwrap();
        assert!(longest > 998, "lettre's Subject: longest line {longest} octets");
    }

    #[test]
    fn ordinary_subjects_go_out_exactly_as_lettre_writes_them() {
        for subject in [
            "[api-monitor] OUTAGE: https://api.example.com/health is down",
            "[api-monitor] RECOVERED: https://api.example.com/health is up after 2m 10s (region eu-west)",
            "[api-monitor] STILL DOWN: https://a-rather-long-host-name.example.com/v1/health/check \
             has been down for 1h 5m (region us-east-1)",
            "[api-monitor] OUTAGE: https://exämple.com/ü is down — région Île-de-France",
            "",
        ] {
            let ours = FoldedSubject(subject.to_owned()).display();
            let lettre = Subject::from(subject.to_owned()).display();
            assert_eq!(ours, lettre, "{subject:?}");
            assert_eq!(emitted(subject).1, subject);
        }
    }

    #[test]
    fn every_kind_of_subject_decodes_to_itself_in_short_lines() {
        let long = "é".repeat(300);
        let word = "w".repeat(75);
        for subject in [
            format!("[api-monitor] OUTAGE: https://x.example/{long} is down"),
            format!("{} trailing", "y".repeat(80)),
            format!("double  spaces   and {word} {word}x =?utf-8?b?YQ==?= literal"),
            format!("ends with a long word {}", "z".repeat(500)),
            "  leading and trailing spaces  ".to_owned(),
        ] {
            let (lines, decoded) = emitted(&subject);
            assert_eq!(decoded, subject);
            for line in &lines {
                assert!(line.len() <= 78, "{} octets: {line:?}", line.len());
            }
        }
    }

    #[test]
    fn the_url_is_read_as_lettre_reads_it() {
        let ep =
            Endpoint::parse("smtps://user%40example.com:pa%24%24w%3F@mail.example.com").unwrap();
        assert_eq!((ep.host.as_str(), ep.port), ("mail.example.com", 465));
        assert!(matches!(ep.tls, Tls::Wrapper(_)));
        let credentials = Credentials::new("user@example.com".into(), "pa$$w?".into());
        assert_eq!(ep.credentials, Some(credentials));

        let ep = Endpoint::parse("smtp://mail.example.com?tls=required").unwrap();
        assert_eq!(ep.port, 587);
        assert!(matches!(ep.tls, Tls::Required(_)));
        let ep =
            Endpoint::parse("smtp://mail.example.com:2525/monitor.example.com?tls=opportunistic")
                .unwrap();
        assert_eq!(ep.port, 2525);
        assert!(matches!(ep.tls, Tls::Opportunistic(_)));
        assert_eq!(ep.hello, ClientId::Domain("monitor.example.com".into()));
        let ep = Endpoint::parse("smtp://[::1]:25").unwrap();
        assert_eq!(ep.host, "::1");
        assert!(matches!(ep.tls, Tls::None));
        assert!(ep.credentials.is_none());
        assert!(Endpoint::parse("http://mail.example.com").is_err());
    }

    #[test]
    fn answers_are_one_bounded_line() {
        assert_eq!(one_line("550 5.1.1\r\n no such\tuser\n"), "550 5.1.1 no such user");
        let long = one_line(&"x ".repeat(1_000));
        assert_eq!(long.chars().count(), ANSWER_MAX);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn only_message_level_refusals_are_permanent() {
        let smtp = |phase, permanent| MailError::Smtp {
            server: "smtp://h:25".into(),
            phase,
            answer: "550 no".into(),
            permanent,
        };
        assert!(smtp(Phase::MailFrom, true).is_permanent());
        assert!(!smtp(Phase::Connect, false).is_permanent());
        assert!(MailError::Build("bad address".into()).is_permanent());
        assert_eq!(
            smtp(Phase::EndOfData, true).to_string(),
            "SMTP delivery via smtp://h:25 failed at end of DATA: 550 no"
        );
    }
}
