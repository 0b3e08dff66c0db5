//! The probe's fault matrix, end to end: the real `api-monitor` binary watches a real endpoint
//! that misbehaves in one precise way (a `fake-api` mode, a port with nothing behind it, an
//! unresolvable host), and each test checks two things the issue asks for:
//!
//! - the WARN line `probe failed target=… region=direct reason="…"` carries the exact reason, and the outage
//!   it leads to carries it too (it goes into the email);
//! - the monitor keeps going: more probes follow the outage, the process is still running, and
//!   where the endpoint can be healed, the monitor sees the recovery.
//!
//! Every wait is on a log line with the support deadline; nothing sleeps for a fixed time and
//! nothing asserts on timing, so a loaded machine only makes the tests slower.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use support::{monitor, reserve_port, run_monitor, temp_dir, FakeApi, Process};

/// Probe deadline used throughout; the reasons below say `1s`.
const TIMEOUT: &str = "1s";

/// Starts `api-monitor` on `url` with a fresh SQLite database and no mail set-up (notifications
/// are logged). `interval` must be at least 1s unless the host is on loopback.
fn watch(url: &str, interval: &str) -> Process {
    let dir = temp_dir("faults");
    let db = format!("sqlite://{}", dir.join("monitor.db").display());
    monitor(&["--url", url, "--db", &db, "--interval", interval, "--timeout", TIMEOUT])
}

/// Waits until probes of `url` have failed with exactly `reason`, the failures have been
/// declared an outage with that reason, and probing has gone on after the outage; then checks
/// that the process is still running.
fn assert_fails_and_keeps_going(mon: &mut Process, url: &str, reason: &str) {
    let failed = format!("probe failed target={url} region=direct reason={reason:?}");
    mon.wait_for_line(&failed);
    let outage = mon.wait_for_line(&format!("OUTAGE target={url}"));
    assert!(outage.contains(&format!("reason={reason:?}")), "the outage carries it: {outage}");
    let so_far = mon.count(&failed);
    mon.wait_for_count(&failed, so_far + 2);
    assert_running(mon);
}

/// Waits for the recovery of `url` and checks that the process is still running.
fn assert_recovers(mon: &mut Process, url: &str) {
    mon.wait_for_line(&format!("RECOVERED target={url}"));
    assert_running(mon);
}

fn assert_running(mon: &mut Process) {
    let status = mon.child.try_wait().expect("try_wait");
    assert!(status.is_none(), "the monitor must still be running, but it exited: {status:?}");
}

/// A `fake-api` in `mode` (plus `extra` arguments): the monitor must report `reason`, keep
/// going, and recover once the API is switched back to `ok`.
fn fake_api_fault(mode: &str, extra: &[&str], reason: &str) {
    let mut args = vec!["--mode", mode];
    args.extend_from_slice(extra);
    let api = FakeApi::start(&args);
    let url = api.health_url();
    let mut mon = watch(&url, "200ms");
    assert_fails_and_keeps_going(&mut mon, &url, reason);
    api.set_mode("ok");
    assert_recovers(&mut mon, &url);
}

#[test]
fn connection_refused() {
    // Nothing listens on the port until the test starts an API there.
    let port = reserve_port();
    let url = format!("http://127.0.0.1:{port}/health");
    let mut mon = watch(&url, "200ms");
    assert_fails_and_keeps_going(&mut mon, &url, "connection refused");
    let api = FakeApi::start(&["--port", &port.to_string()]);
    assert_eq!(api.health_url(), url, "the API took the reserved port");
    assert_recovers(&mut mon, &url);
}

#[test]
fn connection_closed_without_a_response() {
    fake_api_fault("reset", &[], "connection closed without an HTTP response");
}

#[test]
fn connection_closed_in_the_middle_of_the_body() {
    fake_api_fault("cut", &[], "connection closed before the body was complete");
}

#[test]
fn connection_reset_in_the_middle_of_the_body() {
    fake_api_fault("abort", &[], "connection reset while reading the body");
}

#[test]
fn accepted_but_never_answered() {
    fake_api_fault("slow", &["--slow-delay", "1h"], "timeout after 1s");
}

#[test]
fn body_stalled_after_the_head_ends_at_the_whole_request_deadline() {
    // One byte every 200ms would satisfy a per-read timeout forever (and the body would
    // complete, healthy, after a minute); only the whole-request deadline ends the probe.
    fake_api_fault("stall", &["--slow-delay", "60s"], "timeout after 1s while reading the body");
}

#[test]
fn ten_megabyte_body() {
    fake_api_fault("huge", &[], "body exceeds 64 KiB");
}

#[test]
fn redirect_loop() {
    fake_api_fault("redirect", &[], "redirect loop");
}

#[test]
fn json_body_with_an_html_content_type() {
    fake_api_fault("html", &[], "content type \"text/html\", expected application/json");
}

#[test]
fn body_that_is_not_utf8() {
    fake_api_fault("binary", &[], "body is not UTF-8 text");
}

#[test]
fn status_that_is_a_number() {
    fake_api_fault("status-number", &[], "\"status\" is not a string: a number");
}

#[test]
fn status_that_is_null() {
    fake_api_fault("status-null", &[], "\"status\" is not a string: null");
}

#[test]
fn untrusted_tls_certificate() {
    // The control endpoint is HTTPS too, so this API cannot be healed from here: the monitor
    // keeping going is shown by the probes after the outage.
    let api = FakeApi::start(&["--tls"]);
    let url = api.health_url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let mut mon = watch(&url, "200ms");
    assert_fails_and_keeps_going(
        &mut mon,
        &url,
        "TLS error: invalid peer certificate: UnknownIssuer",
    );
}

#[test]
fn dns_lookup_failure() {
    // `.invalid` can never resolve (RFC 2606). Not loopback, so the interval floor of 1s holds.
    let url = "http://nonexistent.invalid/health";
    let mut mon = watch(url, "1s");
    assert_fails_and_keeps_going(&mut mon, url, "DNS lookup failed for nonexistent.invalid");
}

/// A loopback server that answers every request with `response`, byte for byte: for answers no
/// `fake-api` mode gives (odd but legal heads). Its thread lives as long as the test process.
fn raw_api(response: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/health", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let Ok(reader) = stream.try_clone() else { continue };
            let mut reader = BufReader::new(reader);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = stream.write_all(response);
        }
    });
    url
}

/// `api-monitor check --url url`: (healthy, its stdout line).
fn check(url: &str) -> (bool, String) {
    let (status, stdout, stderr) = run_monitor(&["check", "--url", url, "--timeout", TIMEOUT], &[]);
    assert!(status.code().is_some_and(|c| c <= 1), "{status:?}: {stdout}{stderr}");
    (status.success(), stdout)
}

#[test]
fn a_header_we_do_not_read_may_hold_any_byte() {
    let url = raw_api(
        b"HTTP/1.1 200 OK\r\nX-Note: caf\xe9\r\nContent-Type: application/json\r\n\
          Content-Length: 15\r\nConnection: close\r\n\r\n{\"status\":\"OK\"}",
    );
    let (healthy, line) = check(&url);
    assert!(healthy, "{line}");
}

#[test]
fn interim_responses_before_the_final_one_are_skipped() {
    // An unsolicited 100 Continue (with a header field, which is legal) and a 103 Early Hints.
    let url = raw_api(
        b"HTTP/1.1 100 Continue\r\nServer: edge\r\n\r\n\
          HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\
          Connection: close\r\n\r\n{\"status\":\"OK\"}",
    );
    let (healthy, line) = check(&url);
    assert!(healthy, "{line}");
}

#[test]
fn duplicate_status_field() {
    let url = raw_api(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 31\r\n\
          Connection: close\r\n\r\n{\"status\":\"DOWN\",\"status\":\"OK\"}",
    );
    let mut mon = watch(&url, "200ms");
    assert_fails_and_keeps_going(&mut mon, &url, "duplicate \"status\" field in JSON");
}

#[test]
fn ipv6_literal_target() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    }
    let api = FakeApi::start(&["--bind", "::1", "--mode", "down"]);
    let url = api.health_url();
    assert!(url.starts_with("http://[::1]:"), "{url}");
    let mut mon = watch(&url, "200ms");
    // Reaching the API at all is the point: its own answer, not a lookup failure.
    assert_fails_and_keeps_going(&mut mon, &url, "status \"DOWN\"");
    api.set_mode("ok");
    assert_recovers(&mut mon, &url);
    let (healthy, line) = check(&url);
    assert!(healthy && line.starts_with(&format!("OK     {url} from direct")), "{line}");
}
