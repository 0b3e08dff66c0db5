//! End-to-end tests of `fake-api`'s fault modes over loopback: each one must break exactly the
//! rule it names (and nothing else) on the wire, because api-monitor's fault-matrix tests rely
//! on it. Responses are read as raw bytes so that truncation, resets and non-UTF-8 bodies show.

mod common;

use common::{send_request, Running};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

const BIN: &str = env!("CARGO_BIN_EXE_fake-api");

fn start(args: &[&str]) -> Running {
    let mut all = vec!["--port", "0"];
    all.extend_from_slice(args);
    Running::start(BIN, &all, "fake-api listening on http://")
}

/// What the server sent for one request, and how the stream ended.
struct Raw {
    head: String,
    body: Vec<u8>,
    end: io::Result<()>,
}

impl Raw {
    fn status(&self) -> u16 {
        self.head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length").map(|v| v.parse().expect("a number"))
    }
}

/// Reads everything until end-of-stream or an error, keeping both.
fn read_all(stream: &mut impl Read) -> Raw {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let end = loop {
        match stream.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head") + 4;
    let body = bytes.split_off(split);
    Raw { head: String::from_utf8(bytes).expect("ASCII head"), body, end }
}

fn get_health(api: &Running) -> Raw {
    read_all(&mut send_request(&api.address, "GET", "/health"))
}

#[test]
fn html_labels_a_json_body_as_html() {
    let raw = get_health(&start(&["--mode", "html"]));
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.header("content-type"), Some("text/html"));
    assert_eq!(raw.body, br#"{"status":"OK"}"#);
}

#[test]
fn binary_is_labelled_json_but_is_not_utf8() {
    let raw = get_health(&start(&["--mode", "binary"]));
    assert_eq!((raw.status(), raw.header("content-type")), (200, Some("application/json")));
    assert!(std::str::from_utf8(&raw.body).is_err(), "{:?}", raw.body);
    assert_eq!(raw.content_length(), Some(raw.body.len()), "complete, just not text");
}

#[test]
fn status_number_and_null() {
    let api = start(&["--mode", "status-number"]);
    assert_eq!(get_health(&api).body, br#"{"status":200}"#);
    let api = start(&["--mode", "status-null"]);
    let raw = get_health(&api);
    assert_eq!((raw.status(), raw.header("content-type")), (200, Some("application/json")));
    assert_eq!(raw.body, br#"{"status":null}"#);
}

#[test]
fn redirect_sends_the_client_back_to_health() {
    let raw = get_health(&start(&["--mode", "redirect"]));
    assert_eq!(raw.status(), 302);
    assert_eq!(raw.header("location"), Some("/health"));
}

#[test]
fn cut_sends_half_the_announced_body_then_closes_cleanly() {
    let raw = get_health(&start(&["--mode", "cut"]));
    assert_eq!(raw.status(), 200);
    let announced = raw.content_length().expect("Content-Length");
    assert!(
        !raw.body.is_empty() && raw.body.len() < announced,
        "{} of {announced}",
        raw.body.len()
    );
    assert!(raw.end.is_ok(), "an orderly close, not a reset: {:?}", raw.end);
}

#[test]
fn abort_sends_half_the_announced_body_then_resets() {
    let raw = get_health(&start(&["--mode", "abort"]));
    assert_eq!(raw.status(), 200);
    let announced = raw.content_length().expect("Content-Length");
    assert!(raw.body.len() < announced, "{} of {announced}", raw.body.len());
    let kind = raw.end.as_ref().map_err(io::Error::kind);
    assert_eq!(kind, Err(io::ErrorKind::ConnectionReset), "a TCP reset ends the stream");
}

#[test]
fn huge_streams_ten_mebibytes_of_json_without_a_length() {
    let api = start(&["--mode", "huge"]);
    let raw = get_health(&api);
    assert_eq!((raw.status(), raw.header("content-type")), (200, Some("application/json")));
    assert_eq!(raw.content_length(), None, "the body ends when the connection closes");
    assert!(raw.end.is_ok(), "{:?}", raw.end);
    assert_eq!(raw.body.len(), 10 * 1024 * 1024);
    assert!(raw.body.starts_with(br#"{"status":"OK","pad":"xxx"#));
    assert!(raw.body.ends_with(br#"xxx"}"#));
    api.wait_for_log("answer=huge status=200 body=10485760 streamed");
}

#[test]
fn stall_trickles_a_body_that_completes_after_the_slow_delay() {
    let api = start(&["--mode", "stall", "--slow-delay", "1s"]);
    let raw = get_health(&api);
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.content_length(), Some(raw.body.len()), "complete in the end");
    let body = String::from_utf8(raw.body).expect("text");
    assert_eq!(body, format!(r#"{{"status":{}"OK"}}"#, " ".repeat(5)), "1s at 200ms a byte");
    api.wait_for_log("answer=stall status=200 body=10/20 then=1-byte-every-200ms");
}

#[test]
fn fault_modes_switch_through_the_control_endpoint() {
    let api = start(&[]);
    for mode in ["cut", "abort", "html", "status-null", "ok"] {
        let reply = common::http(&api.address, "POST", &format!("/control/{mode}"));
        assert_eq!(reply.map(|r| r.status), Some(200), "switch to {mode}");
    }
    assert_eq!(get_health(&api).body, br#"{"status":"OK"}"#);
}

// ---------------------------------------------------------------------------------------------
// TLS

/// A TLS client that accepts any certificate (it still checks the handshake signatures), to
/// reach the server behind its self-signed certificate.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One HTTPS request with `config`; the handshake error, if any, as the `Err`.
fn https_get(address: &str, path: &str, config: ClientConfig) -> io::Result<Raw> {
    let tcp = TcpStream::connect(address)?;
    tcp.set_read_timeout(Some(common::DEADLINE))?;
    let name = ServerName::try_from("127.0.0.1").expect("an IP address is a server name");
    let session = ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(session, tcp);
    write!(tls, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")?;
    tls.flush()?;
    let raw = read_all(&mut tls);
    raw.end.as_ref().map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
    Ok(raw)
}

fn start_tls() -> Running {
    Running::start(BIN, &["--port", "0", "--tls"], "fake-api listening on https://")
}

#[test]
fn tls_serves_health_and_control_over_https() {
    let api = start_tls();
    let config = |provider: Arc<CryptoProvider>| {
        ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    };
    let raw = https_get(&api.address, "/health", config(provider())).expect("HTTPS works");
    assert_eq!((raw.status(), raw.body.as_slice()), (200, &br#"{"status":"OK"}"#[..]));
    let raw = https_get(&api.address, "/control", config(provider())).expect("HTTPS works");
    assert_eq!(raw.body, br#"{"mode":"ok"}"#);
}

#[test]
fn tls_certificate_is_refused_by_a_verifying_client() {
    let api = start_tls();
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let error = https_get(&api.address, "/health", config).err().expect("the handshake fails");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    api.wait_for_log("bad_request status=none");
}
