//! The probe as one blocking call: [`HttpProber`] runs one probe on an [`Engine`] of its own
//! and waits for its outcome. The `check` command and the tests use it; the running monitor
//! drives one shared engine with many probes in flight instead (`runtime::probing`).

use std::time::{Duration, Instant};

use super::engine::{Engine, Request};
use super::{Outcome, Phase, Prober, Reason, BODY_CAP};

/// One probe at a time, each on its own engine: a blocking `GET` with a whole-request
/// deadline, no connection kept between probes, and no proxy but the one it is given.
#[derive(Debug, Clone)]
pub struct HttpProber {
    timeout: Duration,
    body_cap: usize,
}

impl HttpProber {
    /// A prober whose requests end after `timeout` (validated at start-up: at least 100 ms).
    pub fn new(timeout: Duration) -> Self {
        HttpProber { timeout, body_cap: BODY_CAP }
    }

    /// The same prober with another body cap (tests use a small one).
    pub fn with_body_cap(mut self, cap: usize) -> Self {
        self.body_cap = cap;
        self
    }
}

impl Prober for HttpProber {
    fn probe(&self, url: &str, proxy: Option<&str>) -> Outcome {
        let started = Instant::now();
        let failed = |e: std::io::Error| Outcome::Failed {
            reason: Reason::Network {
                detail: format!("cannot poll sockets: {e}"),
                phase: Phase::Head,
            },
            latency: started.elapsed(),
        };
        let mut engine = match Engine::new() {
            Ok(engine) => engine,
            Err(e) => return failed(e),
        };
        let request = Request { url, proxy, timeout: self.timeout, body_cap: self.body_cap };
        engine.start(0, &request);
        let mut finished = Vec::new();
        loop {
            if let Err(e) = engine.turn(None, &mut finished) {
                return failed(e);
            }
            if let Some((_, outcome)) = finished.pop() {
                return outcome;
            }
        }
    }
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
