//! End to end against the real MariaDB/MySQL (`TEST_MYSQL_URL`): the full cycle, and a restart
//! in the middle of an outage. Each test works in its own scratch database.

mod support;

use api_monitor::duration::human;
use api_monitor::timestamp::{Clock, SystemClock};
use support::{args, monitor, outage_and_recovery_cycle, rows, scratch_db, FakeApi, SmtpServer};

#[test]
fn outage_and_recovery_send_one_email_each_on_mysql() {
    let Some(db) = scratch_db::mysql("cycle") else { return };
    outage_and_recovery_cycle(&db.url);
}

#[test]
fn restart_during_an_outage_sends_no_second_outage_email() {
    let Some(db) = scratch_db::mysql("restart") else { return };
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let url = api.health_url();
    let args = args(&url, &db.url, &smtp.url);

    let mut first = monitor(&args);
    first.wait_for_line("UP target=");
    api.set_mode("down");
    assert!(smtp.wait_for(1)[0].subject().contains("OUTAGE"));
    // Killed once the outage is recorded and its email marked sent. (A kill between the mail
    // server's acceptance and that mark would send it again at restart: tests/outbox.rs.)
    first.wait_for_line("notification recorded as sent");
    first.signal("KILL");
    first.wait_exit();

    let restarted_at = SystemClock.now();
    let mut second = monitor(&args);
    let resumed = second.wait_for_line("resuming target=");
    assert!(resumed.contains("state=down"), "the restart resumes the recorded outage: {resumed}");
    let failed = second.count("probe failed");
    second.wait_for_count("probe failed", failed + 4);
    assert_eq!(smtp.mails.snapshot().len(), 1, "no second outage email after the restart");

    api.set_mode("ok");
    let mails = smtp.wait_for(2);
    second.signal("TERM");
    assert_eq!(second.wait_exit().code(), Some(0));

    let rows = rows(&db.url, &url);
    let states: Vec<_> = rows.iter().map(|r| r.healthy).collect();
    assert_eq!(states, [true, false, true], "one outage row across the restart");
    assert!(rows[1].timestamp < restarted_at, "the outage began before the restart");
    let whole_outage = rows[2].timestamp.since(rows[1].timestamp);
    assert!(rows[2].timestamp > restarted_at, "and ended after it");
    assert_eq!(
        mails[1].subject(),
        format!("[api-monitor] RECOVERED: {url} is up after {}", human(whole_outage)),
        "the recovery email reports the whole outage, from before the restart"
    );
    assert_eq!(smtp.mails.snapshot().len(), 2);
}
