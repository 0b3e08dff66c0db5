//! SIGTERM in the middle of work: during a probe, during an SMTP conversation, and while the
//! database is down. The monitor exits 0 promptly (bounded by the in-flight operation's own
//! timeout), and whatever it could not finish is written, or logged in full — never dropped.

mod support;

use std::io::Read;
use std::net::TcpListener;

use api_monitor::store;
use support::{args, forwarded_mysql, monitor, scratch_db, sqlite, FakeApi, SmtpServer};

#[test]
fn sigterm_during_a_probe_exits_0_when_the_probe_returns() {
    let api = FakeApi::start(&["--mode", "slow", "--slow-delay", "120s"]);
    let mut mon = monitor(&[
        "--url",
        &api.health_url(),
        "--db",
        &sqlite("inflight"),
        "--interval",
        "1h",
        "--timeout",
        "2s",
    ]);
    api.process.wait_for_line("path=/health mode=slow");
    mon.signal("TERM");
    assert_eq!(mon.wait_exit().code(), Some(0));
    mon.wait_for_line("reason=\"timeout after 2s\"");
    mon.wait_for_line("stopped");
}

#[test]
fn sigterm_during_an_smtp_conversation_keeps_the_email_in_the_outbox() {
    // A mail server that accepts the connection and then never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let smtp_url = format!("smtp://{}", silent.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let (mut conn, _) = silent.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = conn.read(&mut buf); // blocks until the monitor gives up
    });
    let api = FakeApi::start(&["--mode", "error"]);
    let db = sqlite("smtpstall");
    let mut mon = monitor(&args(&api.health_url(), &db, &smtp_url));
    mon.wait_for_line("OUTAGE target=");
    mon.signal("TERM");
    assert_eq!(mon.wait_exit().code(), Some(0));
    mon.wait_for_line("kept in the outbox for the next start");
    let unsent = store::open(&db).unwrap().pending().unwrap();
    assert_eq!(unsent.len(), 1, "the outage email waits in the outbox for the next start");
    assert!(unsent[0].notification.subject.contains("OUTAGE"));
    drop(held);
}

#[test]
fn sigterm_while_the_database_is_down_logs_everything_unwritten_in_full() {
    let Some(db) = scratch_db::mysql("sigdb") else { return };
    let (forwarder, db_url) = forwarded_mysql(&db);

    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    smtp.set_accepting(false);
    let mut mon = monitor(&args(&api.health_url(), &db_url, &smtp.url));
    mon.wait_for_line("UP target=");
    forwarder.cut();
    api.set_mode("down");
    mon.wait_for_line("DATABASE UNAVAILABLE");
    mon.wait_for_line("notification NOT delivered");
    mon.signal("TERM");
    assert_eq!(mon.wait_exit().code(), Some(0));

    // (The first UP row may be unwritten too: it was on its way to the database when the link
    // was cut.)
    let lost_row = mon.wait_for_line("healthy=false");
    assert!(lost_row.contains("state row NOT written"), "{lost_row}");
    mon.wait_for_line("notification NOT delivered and NOT saved");
    mon.wait_for_line("It had been up for"); // the email's text, in full
}
