//! End to end through the real binaries: `fake-api` + `api-monitor` + an in-process SMTP
//! server + a real database (SQLite here; MariaDB in `e2e_mysql.rs`).

mod support;

use support::{
    args, monitor, outage_and_recovery_cycle, rows, temp_dir, FakeApi, Process, SmtpServer,
};

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
    let mut mon: Process =
        monitor(&["--url", &api.health_url(), "--db", &db, "--interval", "1h", "--timeout", "2s"]);
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
