//! End-to-end tests of the real `fake-api` binary over loopback: every mode, the control
//! endpoint, scripts, and command-line errors. Waits poll with a generous deadline; nothing
//! asserts on a fixed sleep.

mod common;

use common::{eventually, http, send_request, Reply, Running};
use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fake-api");

fn start(args: &[&str]) -> Running {
    let mut all = vec!["--port", "0"];
    all.extend_from_slice(args);
    Running::start(BIN, &all, "fake-api listening on http://")
}

fn get(api: &Running, path: &str) -> Reply {
    http(&api.address, "GET", path).unwrap_or_else(|| panic!("GET {path}: no response"))
}

fn post(api: &Running, path: &str) -> Reply {
    http(&api.address, "POST", path).unwrap_or_else(|| panic!("POST {path}: no response"))
}

fn json(status: u16, body: &str) -> Reply {
    Reply { status, content_type: "application/json".into(), body: body.into() }
}

fn switch(api: &Running, mode: &str) {
    let expected = format!(r#"{{"mode":"{mode}"}}"#);
    assert_eq!(post(api, &format!("/control/{mode}")), json(200, &expected), "switch to {mode}");
}

#[test]
fn start_up_line_names_a_loopback_address() {
    let api = start(&[]);
    assert!(api.address.starts_with("127.0.0.1:"), "{}", api.address);
    let port: u16 = api.address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    assert_ne!(port, 0, "--port 0 is resolved to the real port");
}

#[test]
fn steady_modes_answer_as_documented() {
    let api = start(&[]);
    assert_eq!(get(&api, "/health"), json(200, r#"{"status":"OK"}"#), "default mode is ok");
    assert_eq!(get(&api, "/control"), json(200, r#"{"mode":"ok"}"#));

    switch(&api, "down");
    assert_eq!(get(&api, "/health"), json(200, r#"{"status":"DOWN"}"#));
    assert_eq!(get(&api, "/control"), json(200, r#"{"mode":"down"}"#));

    switch(&api, "error");
    assert_eq!(get(&api, "/health"), json(503, r#"{"status":"ERROR"}"#));

    switch(&api, "garbage");
    let garbage = get(&api, "/health");
    assert_eq!(garbage.status, 200);
    assert!(garbage.content_type.starts_with("text/html"), "{garbage:?}");
    assert!(garbage.body.contains("<html>") && !garbage.body.starts_with('{'), "{garbage:?}");

    api.wait_for_log("mode_change from=error to=garbage source=control");
    api.wait_for_log("request method=GET path=/health mode=garbage answer=garbage status=200");
}

#[test]
fn reset_closes_the_connection_without_a_response() {
    let api = start(&["--mode", "reset"]);
    assert_eq!(http(&api.address, "GET", "/health"), None, "no HTTP response at all");
    assert_eq!(get(&api, "/control"), json(200, r#"{"mode":"reset"}"#), "control still works");
}

#[test]
fn flap_alternates_ok_and_down() {
    let api = start(&["--mode", "flap"]);
    let statuses: Vec<String> = (0..4).map(|_| get(&api, "/health").body).collect();
    let ok = r#"{"status":"OK"}"#;
    let down = r#"{"status":"DOWN"}"#;
    assert_eq!(statuses, [ok, down, ok, down], "never two failures in a row");
}

#[test]
fn slow_does_not_block_the_control_endpoint() {
    let api = start(&["--mode", "slow", "--slow-delay", "60s"]);
    let mut held = send_request(&api.address, "GET", "/health");
    api.wait_for_log("answer=slow-ok status=200 delay=1m");

    let started = Instant::now();
    switch(&api, "ok");
    assert!(started.elapsed() < Duration::from_secs(10), "control answered while slow held");
    assert_eq!(get(&api, "/health"), json(200, r#"{"status":"OK"}"#), "new requests are fast");

    held.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    let mut buf = [0u8; 16];
    assert!(held.read(&mut buf).is_err(), "the slow request is still being held");
}

#[test]
fn slow_answers_ok_after_the_delay() {
    let api = start(&["--mode", "slow", "--slow-delay", "300ms"]);
    let started = Instant::now();
    assert_eq!(get(&api, "/health"), json(200, r#"{"status":"OK"}"#));
    assert!(started.elapsed() >= Duration::from_millis(300), "waited the slow delay");
}

#[test]
fn control_rejects_unknown_modes_and_paths() {
    let api = start(&[]);
    let bad = post(&api, "/control/sleepy");
    assert_eq!(bad.status, 400);
    for mode in [
        "ok",
        "down",
        "error",
        "slow",
        "garbage",
        "reset",
        "flap",
        "stall",
        "cut",
        "abort",
        "huge",
        "redirect",
        "html",
        "binary",
        "status-number",
        "status-null",
    ] {
        assert!(bad.body.contains(mode), "400 lists {mode}: {}", bad.body);
    }
    assert_eq!(get(&api, "/nope").status, 404);
    assert_eq!(get(&api, "/control/down").status, 404, "switching needs POST");
    assert_eq!(get(&api, "/control"), json(200, r#"{"mode":"ok"}"#), "mode unchanged");
}

#[test]
fn script_switches_modes_over_time() {
    let api = start(&["--script", "ok:300ms,down:1s,error"]);
    let mut seen: Vec<u16> = Vec::new();
    let mut bodies: Vec<String> = Vec::new();
    eventually("the script to reach error", || {
        let reply = get(&api, "/health");
        if bodies.last() != Some(&reply.body) {
            bodies.push(reply.body.clone());
            seen.push(reply.status);
        }
        (reply.status == 503).then_some(())
    });
    let down = r#"{"status":"DOWN"}"#.to_owned();
    assert!(bodies.contains(&down), "the down step was observed: {bodies:?}");
    let error = r#"{"status":"ERROR"}"#.to_owned();
    assert_eq!(bodies.last(), Some(&error), "ends in error: {bodies:?}");
    let order = ["OK", "DOWN", "ERROR"];
    let ranks: Vec<usize> =
        bodies.iter().map(|b| order.iter().position(|s| b.contains(s)).expect("known")).collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "steps in script order: {bodies:?}");
    assert_eq!(get(&api, "/control"), json(200, r#"{"mode":"error"}"#), "stays on the last step");
    api.wait_for_log("mode_change from=down to=error source=script step=3/3");
}

#[test]
fn a_manual_switch_cancels_the_script() {
    let api = start(&["--script", "down:300ms,error"]);
    let started = Instant::now();
    switch(&api, "ok");
    api.wait_for_log("source=control script=cancelled");
    // Testing that something does *not* happen needs time to pass: the script clock started
    // before the start-up line was read, so its 300ms boundary is behind us after this.
    std::thread::sleep(Duration::from_millis(600).saturating_sub(started.elapsed()));
    assert_eq!(get(&api, "/control"), json(200, r#"{"mode":"ok"}"#), "the script stays off");
    assert_eq!(get(&api, "/health"), json(200, r#"{"status":"OK"}"#));
    assert!(!api.log().contains("to=error"), "the script logged no further change");
}

#[test]
fn bad_arguments_exit_2_with_one_line_naming_the_option() {
    for (args, option) in [
        (&["--port", "nope"][..], "--port"),
        (&["--script", "ok:5x"], "--script"),
        (&["--script", "ok,down:1s"], "--script"),
        (&["--mode", "sleepy"], "--mode"),
        (&["--slow-delay", "later"], "--slow-delay"),
        (&["--bogus"], "--bogus"),
    ] {
        let output = Command::new(BIN).args(args).output().expect("run fake-api");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.contains(option), "{args:?} names {option}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn environment_port_is_used_when_the_flag_is_absent() {
    let output =
        Command::new(BIN).env("FAKE_API_PORT", "x").output().expect("run fake-api with env");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("FAKE_API_PORT"));
}

#[test]
fn help_exits_0() {
    let output = Command::new(BIN).arg("--help").output().expect("run fake-api --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(help.contains("POST /control/<mode>"), "{help}");
    assert!(help.contains("--tls") && help.contains("status-null"), "{help}");
}
