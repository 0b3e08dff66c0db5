//! End to end through the real binaries: `fake-api` + `api-monitor` + an in-process SMTP
//! server + a real database (SQLite here; MariaDB in `e2e_mysql.rs`).

mod support;

use api_monitor::duration::human;
use api_monitor::store::{self, StateRow};
use api_monitor::timestamp::Timestamp;
use support::{monitor, temp_dir, FakeApi, Process, SmtpServer};

const SUPPORT: &str = "oncall@example.com";

/// Monitor arguments for a fast loop on loopback.
fn args<'a>(api: &'a str, db: &'a str, smtp: &'a str) -> Vec<&'a str> {
    vec![
        "--url", api, "--db", db, "--smtp", smtp, "--support", SUPPORT, "--interval", "200ms",
        "--timeout", "2s", "--failures", "2", "--successes", "2", "--from", "monitor@example.com",
    ]
}

fn rows(db: &str, target: &str) -> Vec<StateRow> {
    store::open(db).unwrap().since(target, "direct", Timestamp::from_millis(0)).unwrap()
}

/// Drives a full outage/recovery cycle against `db`; shared with the MySQL test.
pub fn outage_and_recovery_cycle(db: &str) {
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let url = api.health_url();
    let mut mon = monitor(&args(&url, db, &smtp.url));

    mon.wait_for_line("UP target=");
    api.set_mode("down");
    let mails = smtp.wait_for(1);
    assert_eq!(mails[0].subject(), format!("[api-monitor] OUTAGE: {url} is down"));
    assert_eq!(mails[0].to, [SUPPORT]);
    let text = mails[0].text();
    assert!(text.contains("It had been up for"), "outage mail says how long it was up:\n{text}");
    assert!(text.contains("status \"DOWN\""), "outage mail carries the reason:\n{text}");
    assert!(mails[0].part("text/html").is_some(), "an HTML alternative is attached");

    api.set_mode("ok");
    let mails = smtp.wait_for(2);
    let recovered = &mails[1];
    assert!(
        recovered.subject().starts_with(&format!("[api-monitor] RECOVERED: {url} is up after ")),
        "{}",
        recovered.subject()
    );
    assert!(recovered.text().contains("It was down for"), "{}", recovered.text());

    // Several more healthy probes must not produce any further mail.
    let probes = mon.count("probe ok");
    mon.wait_for_count("probe ok", probes + 5);
    assert_eq!(smtp.mails.snapshot().len(), 2, "exactly one email per transition");

    mon.signal("TERM");
    assert_eq!(mon.wait_exit().code(), Some(0));

    let rows = rows(db, &url);
    let states: Vec<_> = rows.iter().map(|r| r.healthy).collect();
    assert_eq!(states, [true, false, true], "first up, outage, recovery");
    assert_eq!(rows[1].reason.as_deref(), Some("status \"DOWN\""));
    assert!(rows[0].timestamp < rows[1].timestamp && rows[1].timestamp < rows[2].timestamp);
    let outage = rows[2].timestamp.since(rows[1].timestamp);
    assert_eq!(
        recovered.subject(),
        format!("[api-monitor] RECOVERED: {url} is up after {}", human(outage)),
        "the recovery subject carries the outage length measured between the two rows"
    );
}

#[test]
fn outage_and_recovery_send_one_email_each_on_sqlite() {
    let dir = temp_dir("cycle");
    let db = format!("sqlite://{}", dir.join("monitor.db").display());
    outage_and_recovery_cycle(&db);
}

#[test]
fn flapping_api_never_alerts() {
    let dir = temp_dir("flap");
    let db = format!("sqlite://{}", dir.join("monitor.db").display());
    let api = FakeApi::start(&["--mode", "flap"]);
    let smtp = SmtpServer::start();
    let url = api.health_url();
    let mon = monitor(&args(&url, &db, &smtp.url));
    mon.wait_for_count("probe failed", 6);
    assert_eq!(mon.count("OUTAGE"), 0);
    assert!(smtp.mails.snapshot().is_empty(), "single failed probes send nothing");
    drop(mon);
    assert!(rows(&db, &url).is_empty(), "an alternating API never settles a state");
}

fn stops_cleanly_on(signal: &str) {
    let dir = temp_dir("signal");
    let db = format!("sqlite://{}", dir.join("monitor.db").display());
    let api = FakeApi::start(&[]);
    let mut mon: Process = monitor(&[
        "--url", &api.health_url(), "--db", &db, "--interval", "1h", "--timeout", "2s",
    ]);
    mon.wait_for_line("probe ok");
    mon.signal(signal);
    let status = mon.wait_exit();
    assert_eq!(status.code(), Some(0), "SIG{signal} must exit 0, got {status:?}");
    mon.wait_for_line("stopped");
}

#[test]
fn sigint_stops_cleanly() {
    stops_cleanly_on("INT");
}

#[test]
fn sigterm_stops_cleanly() {
    stops_cleanly_on("TERM");
}

#[test]
fn without_mail_setup_notifications_are_logged_in_full() {
    let dir = temp_dir("logonly");
    let db = format!("sqlite://{}", dir.join("monitor.db").display());
    let api = FakeApi::start(&["--mode", "error"]);
    let url = api.health_url();
    let mon = monitor(&["--url", &url, "--db", &db, "--interval", "200ms", "--timeout", "2s"]);
    mon.wait_for_line("NO EMAIL WILL BE SENT");
    let line = mon.wait_for_line("notification not mailed");
    assert!(line.contains(&format!("OUTAGE: {url} is down")), "{line}");
    mon.wait_for_line("HTTP 503");
}
