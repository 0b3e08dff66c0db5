//! An in-process SMTP server (`mailin-embedded`) on loopback that collects every message it
//! accepts, can refuse transactions (at `MAIL FROM`, `DATA` or the end of DATA) or single
//! recipients on demand, and decodes what it received for assertions.

use crate::Log;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One message as the SMTP server received it.
#[derive(Clone, Debug)]
pub struct Mail {
    /// When the server had the whole message (end of DATA).
    pub at: Instant,
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl Mail {
    /// A header's value, unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = value.as_mut() {
                    v.push_str(line.trim_start_matches(['\t']));
                }
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((key, v)) = line.split_once(':') {
                if key.eq_ignore_ascii_case(name) {
                    value = Some(v.trim_start().to_string());
                }
            }
        }
        value
    }

    /// The subject, unfolded and with its RFC 2047 encoded-words decoded.
    pub fn subject(&self) -> String {
        decode_encoded_words(&self.header("Subject").unwrap_or_default())
    }

    /// The longest line of the message as received, in octets (without its CRLF).
    pub fn longest_line(&self) -> usize {
        self.data.split("\r\n").map(str::len).max().unwrap_or(0)
    }

    /// The decoded body of the first part with this content type (`text/plain`, `text/html`).
    pub fn part(&self, content_type: &str) -> Option<String> {
        for part in self.data.split("\r\n--") {
            let Some((head, body)) = part.split_once("\r\n\r\n") else { continue };
            let lower = head.to_ascii_lowercase();
            if !lower.contains(&format!("content-type: {content_type}")) {
                continue;
            }
            let body = body.rsplit_once("\r\n").map_or(body, |(b, _)| b);
            return Some(if lower.contains("content-transfer-encoding: quoted-printable") {
                decode_quoted_printable(body)
            } else if lower.contains("content-transfer-encoding: base64") {
                decode_base64(body)
            } else {
                body.to_string()
            });
        }
        None
    }

    pub fn text(&self) -> String {
        self.part("text/plain").unwrap_or_else(|| panic!("no text/plain part in {:?}", self.data))
    }
}

fn decode_quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The text of a base64 body (line breaks ignored); lossy, for assertions.
pub fn decode_base64(body: &str) -> String {
    use base64::Engine as _;
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD.decode(compact).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An unfolded header value with its RFC 2047 encoded-words (`=?utf-8?b?...?=`,
/// `=?utf-8?q?...?=`) decoded; white space between two adjacent encoded-words is dropped, as
/// the RFC says. Lossy, for assertions.
pub fn decode_encoded_words(value: &str) -> String {
    let mut out = String::new();
    // White space seen since the last token, held back in case two encoded-words surround it.
    let mut space = String::new();
    let mut last_encoded = false;
    let mut rest = value;
    while !rest.is_empty() {
        let end = rest.find([' ', '\t']).unwrap_or(rest.len());
        if end == 0 {
            let ws = rest.len() - rest.trim_start_matches([' ', '\t']).len();
            space.push_str(&rest[..ws]);
            rest = &rest[ws..];
            continue;
        }
        let (token, after) = rest.split_at(end);
        match decode_word(token) {
            Some(decoded) => {
                if !last_encoded {
                    out.push_str(&space);
                }
                out.push_str(&decoded);
                last_encoded = true;
            }
            None => {
                out.push_str(&space);
                out.push_str(token);
                last_encoded = false;
            }
        }
        space.clear();
        rest = after;
    }
    out.push_str(&space);
    out
}

/// One encoded-word, if `token` is one.
fn decode_word(token: &str) -> Option<String> {
    let inner = token.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let (_charset, encoding, text) = (parts.next()?, parts.next()?, parts.next()?);
    match encoding {
        "b" | "B" => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        "q" | "Q" => Some(decode_quoted_printable(&text.replace('_', " "))),
        _ => None,
    }
}

/// Where the test SMTP server refuses a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The answer to `MAIL FROM`.
    MailFrom,
    /// The answer to `DATA`.
    Data,
    /// The answer to the end of DATA (the message is then not collected).
    EndOfData,
}

/// How the test SMTP server answers: it can refuse the first few transactions, or all of them
/// until told otherwise, at one [`Stage`]; and refuse some recipients.
#[derive(Debug)]
struct Policy {
    /// Transactions still to refuse (then it accepts).
    refuse_next: AtomicUsize,
    /// While false, every transaction is refused.
    accepting: AtomicBool,
    /// The SMTP code of a refusal (4xx transient, 5xx permanent).
    code: u16,
    /// Where transactions are refused.
    stage: Stage,
    /// Recipients refused at `RCPT TO`, with the code.
    refused_recipients: Mutex<Vec<(String, u16)>>,
}

impl Policy {
    /// The refusal of this transaction at `stage`, if any.
    fn refusal(&self, stage: Stage) -> Option<mailin_embedded::Response> {
        if stage != self.stage {
            return None;
        }
        let refuse_one = self
            .refuse_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        (refuse_one || !self.accepting.load(Ordering::SeqCst))
            .then(|| mailin_embedded::Response::custom(self.code, "test server refuses".into()))
    }
}

#[derive(Clone)]
struct Collector {
    mails: Arc<Log<Mail>>,
    current: Option<Mail>,
    policy: Arc<Policy>,
}

impl mailin_embedded::Handler for Collector {
    fn mail(
        &mut self,
        _ip: std::net::IpAddr,
        _domain: &str,
        _from: &str,
    ) -> mailin_embedded::Response {
        self.policy.refusal(Stage::MailFrom).unwrap_or(mailin_embedded::response::OK)
    }

    fn rcpt(&mut self, to: &str) -> mailin_embedded::Response {
        let to = to.trim_matches(['<', '>']);
        let refused = self.policy.refused_recipients.lock().unwrap_or_else(|p| p.into_inner());
        match refused.iter().find(|(address, _)| address.eq_ignore_ascii_case(to)) {
            Some((_, code)) => mailin_embedded::Response::custom(
                *code,
                format!("5.1.1 <{to}>: test server refuses this recipient"),
            ),
            None => mailin_embedded::response::OK,
        }
    }

    fn data_start(
        &mut self,
        _domain: &str,
        from: &str,
        _8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
        if let Some(refusal) = self.policy.refusal(Stage::Data) {
            return refusal;
        }
        self.current = Some(Mail {
            at: Instant::now(),
            from: from.to_string(),
            to: to.to_vec(),
            data: String::new(),
        });
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(mail) = self.current.as_mut() {
            mail.data.push_str(&String::from_utf8_lossy(buf));
        }
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        if let Some(refusal) = self.policy.refusal(Stage::EndOfData) {
            self.current = None;
            return refusal;
        }
        if let Some(mut mail) = self.current.take() {
            mail.at = Instant::now();
            self.mails.push(mail);
        }
        mailin_embedded::response::OK
    }
}

/// A real SMTP server on a loopback port, collecting every message it accepts.
pub struct SmtpServer {
    /// `smtp://127.0.0.1:PORT`
    pub url: String,
    pub addr: SocketAddr,
    pub mails: Arc<Log<Mail>>,
    policy: Arc<Policy>,
}

impl SmtpServer {
    /// A server that accepts everything.
    pub fn start() -> Self {
        Self::start_refusing(0, 451)
    }

    /// A server that refuses the first `n` transactions with `code`, then accepts.
    pub fn start_refusing(n: usize, code: u16) -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), n, code)
    }

    /// A server that refuses the first `n` transactions with `code` at `stage`, then accepts.
    pub fn start_refusing_at(stage: Stage, n: usize, code: u16) -> Self {
        Self::start_with(TcpListener::bind("127.0.0.1:0").unwrap(), stage, n, code)
    }

    /// A server on `listener` (e.g. a port reserved with [`crate::reserve_port`]).
    pub fn start_on(listener: TcpListener, n: usize, code: u16) -> Self {
        Self::start_with(listener, Stage::MailFrom, n, code)
    }

    /// A server that accepts everything and offers STARTTLS with a self-signed certificate
    /// (`testkit/tls/`, for 127.0.0.1): a client that verifies certificates refuses it.
    pub fn start_starttls() -> Self {
        Self::start_full(TcpListener::bind("127.0.0.1:0").unwrap(), Stage::MailFrom, 0, 451, true)
    }

    fn start_with(listener: TcpListener, stage: Stage, n: usize, code: u16) -> Self {
        Self::start_full(listener, stage, n, code, false)
    }

    fn start_full(listener: TcpListener, stage: Stage, n: usize, code: u16, tls: bool) -> Self {
        let addr = listener.local_addr().unwrap();
        let url = format!("smtp://{addr}");
        let mails = Log::new();
        let policy = Arc::new(Policy {
            refuse_next: AtomicUsize::new(n),
            accepting: AtomicBool::new(true),
            code,
            stage,
            refused_recipients: Mutex::new(Vec::new()),
        });
        let handler =
            Collector { mails: Arc::clone(&mails), current: None, policy: Arc::clone(&policy) };
        let mut server = mailin_embedded::Server::new(handler);
        server.with_name("sink.test").with_num_threads(2).with_tcp_listener(listener);
        if tls {
            // mailin-embedded asks rustls for the process default provider (see Cargo.toml).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let file = |name: &str| format!("{}/tls/{name}", env!("CARGO_MANIFEST_DIR"));
            let config = mailin_embedded::SslConfig::SelfSigned {
                cert_path: file("cert.pem"),
                key_path: file("key.pem"),
            };
            server.with_ssl(config).unwrap_or_else(|e| panic!("TLS set-up: {e}"));
        }
        std::thread::spawn(move || {
            if let Err(e) = server.serve() {
                eprintln!("SMTP server stopped: {e}");
            }
        });
        SmtpServer { url, addr, mails, policy }
    }

    /// Refuses `address` at `RCPT TO` with `code` from now on.
    pub fn refuse_recipient(&self, address: &str, code: u16) {
        let mut refused = self.policy.refused_recipients.lock().unwrap_or_else(|p| p.into_inner());
        refused.push((address.to_string(), code));
    }

    /// Accepts every recipient again.
    pub fn accept_all_recipients(&self) {
        self.policy.refused_recipients.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// While `false`, every transaction is refused (with the server's code).
    pub fn set_accepting(&self, accepting: bool) {
        self.policy.accepting.store(accepting, Ordering::SeqCst);
    }

    /// Waits for the `n`th message and returns all received so far.
    pub fn wait_for(&self, n: usize) -> Vec<Mail> {
        self.mails.wait_until(&format!("{n} email(s)"), |m| m.len() >= n)
    }
}
