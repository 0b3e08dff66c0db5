//! An in-process SMTP server (`mailin-embedded`) on loopback that collects every message it
//! accepts, can refuse transactions on demand, and decodes what it received for assertions.

use crate::Log;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
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

    pub fn subject(&self) -> String {
        self.header("Subject").unwrap_or_default()
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

/// How the test SMTP server answers `MAIL FROM`: it can refuse the first few transactions,
/// or all of them until told otherwise.
#[derive(Debug)]
struct Policy {
    /// Transactions still to refuse (then it accepts).
    refuse_next: AtomicUsize,
    /// While false, every transaction is refused.
    accepting: AtomicBool,
    /// The SMTP code of a refusal (4xx transient, 5xx permanent).
    code: u16,
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
        let p = &self.policy;
        let refuse_one = p
            .refuse_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse_one || !p.accepting.load(Ordering::SeqCst) {
            return mailin_embedded::Response::custom(p.code, "test server refuses".to_string());
        }
        mailin_embedded::response::OK
    }

    fn data_start(
        &mut self,
        _domain: &str,
        from: &str,
        _8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
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

    /// A server on `listener` (e.g. a port reserved with [`crate::reserve_port`]).
    pub fn start_on(listener: TcpListener, n: usize, code: u16) -> Self {
        let addr = listener.local_addr().unwrap();
        let url = format!("smtp://{addr}");
        let mails = Log::new();
        let policy = Arc::new(Policy {
            refuse_next: AtomicUsize::new(n),
            accepting: AtomicBool::new(true),
            code,
        });
        let handler =
            Collector { mails: Arc::clone(&mails), current: None, policy: Arc::clone(&policy) };
        let mut server = mailin_embedded::Server::new(handler);
        server.with_name("sink.test").with_num_threads(2).with_tcp_listener(listener);
        std::thread::spawn(move || {
            if let Err(e) = server.serve() {
                eprintln!("SMTP server stopped: {e}");
            }
        });
        SmtpServer { url, addr, mails, policy }
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
