//! Never lose, never duplicate: faults injected with real parts — an SMTP server that refuses
//! or is not there yet, a monitor killed with SIGKILL mid-delivery, and a real MariaDB cut off
//! behind a TCP forwarder in the middle of an outage.

mod support;

use api_monitor::duration::human;
use api_monitor::notify::outbox::MAX_REFUSALS;
use api_monitor::store;
use support::{
    args, forwarded_mysql, monitor, reserve_port, rows, run_monitor, scratch_db, sqlite, temp_dir,
    FakeApi, Process, SmtpServer,
};

/// Runs an outage and a recovery against `smtp`; returns the monitor for more checks.
fn outage_then_recovery(api: &FakeApi, mon: &Process, smtp: &SmtpServer) -> Vec<support::Mail> {
    mon.wait_for_line("UP target=");
    api.set_mode("down");
    let url = api.health_url();
    let mails = smtp.wait_for(1);
    assert_eq!(mails[0].subject(), format!("[api-monitor] OUTAGE: {url} is down"));
    api.set_mode("ok");
    let mails = smtp.wait_for(2);
    assert!(mails[1].subject().starts_with(&format!("[api-monitor] RECOVERED: {url} is up after")));
    let probes = mon.count("probe ok");
    mon.wait_for_count("probe ok", probes + 5);
    let mails = smtp.mails.snapshot();
    assert_eq!(mails.len(), 2, "each email exactly once: {:#?}", subjects(&mails));
    mails
}

fn subjects(mails: &[support::Mail]) -> Vec<String> {
    mails.iter().map(|m| m.subject()).collect()
}

fn refusals_are_retried_until_accepted(n: usize, code: u16) {
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start_refusing(n, code);
    let db = sqlite("refuse");
    let mon = monitor(&args(&api.health_url(), &db, &smtp.url));
    outage_then_recovery(&api, &mon, &smtp);
    assert!(mon.count("notification NOT delivered") >= n, "the refusals were logged");
    assert!(store::open(&db).unwrap().pending().unwrap().is_empty(), "the outbox is empty");
}

#[test]
fn transient_smtp_refusals_delay_but_never_lose_or_duplicate() {
    refusals_are_retried_until_accepted(5, 451);
}

#[test]
fn a_permanent_refusal_is_retried_a_few_times_before_it_counts() {
    refusals_are_retried_until_accepted(MAX_REFUSALS as usize - 1, 554);
}

/// A config file with two targets whose emails go to different recipients.
fn two_teams(dir: &std::path::Path, a: &str, b: &str, db: &str, smtp: &str) -> String {
    let path = dir.join("monitor.toml");
    let toml = format!(
        "interval = \"200ms\"\ntimeout = \"2s\"\ndb = \"{db}\"\nsmtp = \"{smtp}\"\n\
         from = \"monitor@example.com\"\n\n\
         [[target]]\nurl = \"{a}\"\nrecipients = [\"nobody@example.com\"]\n\n\
         [[target]]\nurl = \"{b}\"\nrecipients = [\"oncall@example.com\", \"gone@example.com\"]\n"
    );
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

#[test]
fn a_refused_email_dies_blocks_nobody_is_listed_and_can_be_sent_again() {
    let (a, b) = (FakeApi::start(&[]), FakeApi::start(&[]));
    let smtp = SmtpServer::start();
    smtp.refuse_recipient("nobody@example.com", 550);
    smtp.refuse_recipient("gone@example.com", 550);
    let db = sqlite("dead");
    let dir = temp_dir("dead");
    let config = two_teams(&dir, &a.health_url(), &b.health_url(), &db, &smtp.url);
    let mut mon = monitor(&["--config", &config]);
    mon.wait_for_count("UP target=", 2);

    // A's outage email is refused for every recipient: it dies after MAX_REFUSALS tries.
    a.set_mode("down");
    mon.wait_for_line("notification DEAD");
    // B's emails go through behind it, to the recipient the server accepts.
    b.set_mode("down");
    let mails = smtp.wait_for(1);
    assert!(mails[0].subject().contains(&b.health_url()), "{}", mails[0].subject());
    assert_eq!(mails[0].to, ["oncall@example.com"]);
    let partial = mon.wait_for_line("refused some recipients");
    assert!(partial.contains("gone@example.com: 550"), "{partial}");
    b.set_mode("ok");
    assert!(smtp.wait_for(2)[1].subject().contains("RECOVERED"));
    mon.signal("TERM");
    assert_eq!(mon.wait_exit().code(), Some(0));

    // `outbox` lists the dead one with the server's answer; --requeue sends it at next start.
    let (status, listed, _) = run_monitor(&["outbox", "--db", &db], &[]);
    assert!(status.success(), "{listed}");
    assert!(
        listed.contains("DEAD: refused for good") && listed.contains(&a.health_url()),
        "{listed}"
    );
    assert!(listed.contains("550"), "the server's answer is shown: {listed}");
    let (status, out, err) = run_monitor(&["outbox", "--db", &db, "--requeue", "all"], &[]);
    assert!(status.success(), "{out}{err}");
    smtp.accept_all_recipients();
    let again = monitor(&["--config", &config]);
    again.wait_for_line("resuming 1 undelivered notification");
    let mails = smtp.wait_for(3);
    assert!(mails[2].subject().contains(&a.health_url()), "{}", mails[2].subject());
    assert_eq!(mails[2].to, ["nobody@example.com"]);
    assert!(store::open(&db).unwrap().dead().unwrap().is_empty(), "nothing dead any more");
}

#[test]
fn a_mail_server_that_is_down_at_first_gets_every_email_once_it_is_up() {
    let api = FakeApi::start(&[]);
    let port = reserve_port();
    let smtp_url = format!("smtp://127.0.0.1:{port}");
    let mon = monitor(&args(&api.health_url(), &sqlite("smtpdown"), &smtp_url));
    mon.wait_for_line("UP target=");
    api.set_mode("down");
    mon.wait_for_count("notification NOT delivered", 2);
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let smtp = SmtpServer::start_on(listener, 0, 451);
    let mails = smtp.wait_for(1);
    assert!(mails[0].subject().contains("OUTAGE"));
    api.set_mode("ok");
    let mails = smtp.wait_for(2);
    assert!(mails[1].subject().contains("RECOVERED"));
}

#[test]
fn a_crash_before_the_server_accepted_is_delivered_once_after_restart() {
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    smtp.set_accepting(false);
    let db = sqlite("crash");
    let url = api.health_url();
    let args = args(&url, &db, &smtp.url);

    let mut first = monitor(&args);
    first.wait_for_line("UP target=");
    api.set_mode("down");
    first.wait_for_line("notification NOT delivered");
    first.signal("KILL");
    first.wait_exit();
    assert!(smtp.mails.snapshot().is_empty());

    smtp.set_accepting(true);
    let second = monitor(&args);
    second.wait_for_line("resuming 1 undelivered notification");
    let mails = smtp.wait_for(1);
    assert_eq!(mails[0].subject(), format!("[api-monitor] OUTAGE: {url} is down"));
    let failed = second.count("probe failed");
    second.wait_for_count("probe failed", failed + 4);
    assert_eq!(smtp.mails.snapshot().len(), 1, "delivered once, and no second outage email");
    let conn = rusqlite::Connection::open(db.trim_start_matches("sqlite://")).unwrap();
    let created: i64 =
        conn.query_row("SELECT COUNT(*) FROM notification", [], |r| r.get(0)).unwrap();
    assert_eq!(created, 1, "no second outage notification was created");

    api.set_mode("ok");
    assert!(smtp.wait_for(2)[1].subject().contains("RECOVERED"));
}

#[test]
fn a_database_outage_during_an_outage_loses_nothing() {
    let Some(db) = scratch_db::mysql("cut") else { return };
    let (forwarder, db_url) = forwarded_mysql(&db);

    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let url = api.health_url();
    let mut mon = monitor(&args(&url, &db_url, &smtp.url));
    mon.wait_for_line("UP target=");

    forwarder.cut();
    api.set_mode("down");
    let mails = smtp.wait_for(1);
    assert_eq!(mails[0].subject(), format!("[api-monitor] OUTAGE: {url} is down"));
    assert!(mails[0].text().contains("It had been up for"), "{}", mails[0].text());
    mon.wait_for_line("DATABASE UNAVAILABLE");
    api.set_mode("ok");
    let recovered = smtp.wait_for(2)[1].clone();
    assert_eq!(mon.count("DATABASE UNAVAILABLE"), 1, "the database outage is logged once");

    forwarder.restore();
    mon.wait_for_line("DATABASE RECOVERED");
    mon.signal("TERM");
    assert_eq!(mon.wait_exit().code(), Some(0));
    assert_eq!(mon.count("DATABASE RECOVERED"), 1, "and its recovery once");

    let rows = rows(&db.url, &url);
    let states: Vec<_> = rows.iter().map(|r| r.healthy).collect();
    assert_eq!(states, [true, false, true], "both rows written after the database returned");
    let outage = rows[2].timestamp.since(rows[1].timestamp);
    assert_eq!(
        recovered.subject(),
        format!("[api-monitor] RECOVERED: {url} is up after {}", human(outage)),
        "rows keep their original timestamps: the outage measured from them matches the email"
    );
    assert!(store::open(&db.url).unwrap().pending().unwrap().is_empty(), "both marked sent");
    assert_eq!(smtp.mails.snapshot().len(), 2);
}
