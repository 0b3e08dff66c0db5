//! `slow` end to end through the real binaries: a target whose healthy answers take longer than
//! its `slow` limit goes down with a `slow: … > 300ms` reason, and comes back when the API is
//! quick again; each transition is one email. SQLite; every wait is on an event with a generous
//! deadline, never on a timing.

mod support;

use support::{rows, temp_dir, FakeApi, SmtpServer, SUPPORT};

#[test]
fn a_slow_healthy_answer_is_an_outage_and_a_quick_one_a_recovery() {
    let dir = temp_dir("slow");
    let db = format!("sqlite://{}", dir.join("monitor.db").display());
    // `slow` mode answers OK after about a second: healthy, but over the 300ms limit.
    let api = FakeApi::start(&["--slow-delay", "1s"]);
    let smtp = SmtpServer::start();
    let url = api.health_url();
    let config = dir.join("monitor.toml");
    let text = format!(
        "interval = \"200ms\"\ntimeout = \"3s\"\nfailures = 2\nsuccesses = 2\n\
         [[target]]\nurl = \"{url}\"\nslow = \"300ms\"\n"
    );
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();
    let mut mon = support::monitor(&[
        "--config",
        config,
        "--db",
        &db,
        "--smtp",
        &smtp.url,
        "--support",
        SUPPORT,
        "--from",
        "monitor@example.com",
    ]);

    mon.wait_for_line("UP target=");
    api.set_mode("slow");
    let mails = smtp.wait_for(1);
    assert_eq!(mails[0].subject(), format!("[api-monitor] OUTAGE: {url} is down"));
    let text = mails[0].text();
    let reason = text.lines().find(|l| l.contains("slow: ")).unwrap_or_else(|| {
        panic!("the outage mail carries the slow reason:\n{text}");
    });
    assert!(reason.contains(" s > 300ms"), "took in seconds, over the limit as written: {reason}");

    api.set_mode("ok");
    let mails = smtp.wait_for(2);
    assert!(
        mails[1].subject().starts_with(&format!("[api-monitor] RECOVERED: {url} is up after ")),
        "{}",
        mails[1].subject()
    );
    let probes = mon.count("probe ok");
    mon.wait_for_count("probe ok", probes + 3);
    assert_eq!(smtp.mails.snapshot().len(), 2, "exactly one email per transition");
    mon.signal("TERM");
    assert_eq!(mon.wait_exit().code(), Some(0));

    let rows = rows(&db, &url);
    let states: Vec<_> = rows.iter().map(|r| r.healthy).collect();
    assert_eq!(states, [true, false, true], "up, down while slow, up again");
    let recorded = rows[1].reason.as_deref().unwrap_or_default();
    assert!(
        recorded.starts_with("slow: ") && recorded.ends_with(" s > 300ms"),
        "the state row keeps the reason: {recorded}"
    );
}
