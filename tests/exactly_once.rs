//! Exactly once through restarts, a database that is away, two instances on one database,
//! long URLs and databases that can never work — each with real parts (the binary, fake-api, a
//! real SMTP server, SQLite and a scratch MariaDB behind a forwarder the test can cut).
//! Random SIGKILLs are in `tests/crash.rs`.

mod support;

use std::time::{Duration, Instant};

use api_monitor::duration::human;
use support::{
    args, forwarded_mysql, http_get, listen_addr, monitor, rows, run_monitor, scratch_db, sqlite,
    temp_dir, FakeApi, SmtpServer, DEADLINE,
};
use testkit::{HostileSmtp, Hostility};

/// Waits until `ready()` holds, polling; panics with `what` after [`DEADLINE`].
fn eventually(what: &str, ready: impl Fn() -> bool) {
    let give_up = Instant::now() + DEADLINE;
    while !ready() {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_recovery_while_stopped_and_the_database_away_is_mailed_once_after_the_database_returns() {
    let Some(db) = scratch_db::mysql("away") else { return };
    let (forwarder, db_url) = forwarded_mysql(&db);
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let url = api.health_url();
    let mut argv = args(&url, &db_url, &smtp.url);
    argv.extend(["--listen", "127.0.0.1:0"]);

    let mut first = monitor(&argv);
    first.wait_for_line("UP target=");
    api.set_mode("down");
    assert!(smtp.wait_for(1)[0].subject().contains("OUTAGE"));
    first.signal("TERM");
    assert_eq!(first.wait_exit().code(), Some(0));

    // The API recovers while the monitor is stopped; it restarts before the database is back.
    api.set_mode("ok");
    forwarder.cut();
    let second = monitor(&argv);
    second.wait_for_line("waiting for the database before deciding anything");
    let addr = listen_addr(&second);
    let probes = second.count("probe ok");
    second.wait_for_count("probe ok", probes + 4);
    let (status, body) = http_get(addr, "/healthz");
    assert_eq!(status, 503, "healthz says it cannot decide yet: {body}");
    assert!(body.contains("waiting for the database"), "{body}");
    assert_eq!(second.count("UP target="), 0, "no first state settled from nothing");
    assert_eq!(smtp.mails.snapshot().len(), 1, "nothing mailed while it cannot decide");

    forwarder.restore();
    let recovered = smtp.wait_for(2)[1].clone();
    second.wait_for_line("evaluating");
    eventually("healthz 200", || http_get(addr, "/healthz").0 == 200);
    let states: Vec<bool> = rows(&db.url, &url).iter().map(|r| r.healthy).collect();
    assert_eq!(states, [true, false, true], "the recovery recorded after the outage");
    let rows = rows(&db.url, &url);
    let outage = rows[2].timestamp.since(rows[1].timestamp);
    assert_eq!(
        recovered.subject(),
        format!("[api-monitor] RECOVERED: {url} is up after {}", human(outage))
    );
    let probes = second.count("probe ok");
    second.wait_for_count("probe ok", probes + 5);
    assert_eq!(smtp.mails.snapshot().len(), 2, "mailed once");
}

#[test]
fn a_second_instance_on_the_same_database_is_a_standby_and_nothing_is_sent_twice() {
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let db = sqlite("standby");
    let url = api.health_url();
    let mut argv = args(&url, &db, &smtp.url);
    argv.extend(["--listen", "127.0.0.1:0"]);

    let mut a = monitor(&argv);
    a.wait_for_line("UP target=");
    let b = monitor(&argv);
    let standby = b.wait_for_line("STANDBY");
    assert!(standby.contains(&format!("pid {}", a.pid())), "names the holder: {standby}");
    let (status, body) = http_get(listen_addr(&b), "/healthz");
    assert_eq!((status, body.starts_with("standby")), (200, true), "a healthy standby: {body}");

    api.set_mode("down");
    smtp.wait_for(1);
    let failed = b.count("probe failed");
    b.wait_for_count("probe failed", failed + 5);
    assert_eq!(smtp.mails.snapshot().len(), 1, "one OUTAGE, from the holder only");
    assert_eq!(b.count("OUTAGE target="), 0, "the standby decides nothing");

    a.signal("TERM");
    assert_eq!(a.wait_exit().code(), Some(0));
    b.wait_for_line("taking over the database");
    b.wait_for_line("resuming target=");
    api.set_mode("ok");
    let mails = smtp.wait_for(2);
    assert!(mails[1].subject().contains("RECOVERED"), "{}", mails[1].subject());
    let states: Vec<bool> = rows(&db, &url).iter().map(|r| r.healthy).collect();
    assert_eq!(states, [true, false, true], "one row per transition, whoever recorded it");
    let rows = rows(&db, &url);
    let outage = rows[2].timestamp.since(rows[1].timestamp);
    assert!(outage > Duration::from_millis(200), "a real outage length, not 1ms: {outage:?}");
    let probes = b.count("probe ok");
    b.wait_for_count("probe ok", probes + 5);
    assert_eq!(smtp.mails.snapshot().len(), 2);
}

#[test]
fn a_standby_takes_over_at_once_from_a_holder_killed_on_the_same_host() {
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let db = sqlite("takeover");
    let url = api.health_url();
    let argv = args(&url, &db, &smtp.url);
    let mut a = monitor(&argv);
    a.wait_for_line("UP target=");
    eventually("the UP row", || !rows(&db, &url).is_empty());
    a.signal("KILL");
    a.wait_exit();
    let b = monitor(&argv);
    b.wait_for_line("resuming target=");
    assert_eq!(b.count("STANDBY"), 0, "a dead holder on this host is not waited for");
    api.set_mode("down");
    assert!(smtp.wait_for(1)[0].subject().contains("OUTAGE"));
}

#[test]
fn a_2048_character_url_is_stored_whole_and_its_email_delivered_on_mariadb() {
    let Some(db) = scratch_db::mysql("longurl") else { return };
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let base = format!("{}?pad=", api.health_url());
    let url = format!("{base}{}", "x".repeat(2048 - base.len()));
    assert_eq!(url.len(), 2048);
    let mon = monitor(&args(&url, &db.url, &smtp.url));
    mon.wait_for_line("UP target=");
    api.set_mode("down");
    let mail = smtp.wait_for(1)[0].clone();
    assert_eq!(mail.subject(), format!("[api-monitor] OUTAGE: {url} is down"));
    assert!(mail.data.split("\r\n").all(|l| l.len() <= 998), "no line over 998 octets");
    assert!(mail.text().contains(&url), "the text shows the whole URL");
    let rows = rows(&db.url, &url);
    assert_eq!(rows.iter().map(|r| r.healthy).collect::<Vec<_>>(), [true, false]);
    assert_eq!(rows[1].target, url, "stored whole");
}

/// Runs the monitor against `db` and returns (exit code, stderr).
fn start_with_db(db: &str) -> (Option<i32>, String) {
    let (status, _, stderr) = run_monitor(&["--url", "http://127.0.0.1:9/health", "--db", db], &[]);
    (status.code(), stderr)
}

#[test]
fn a_database_that_can_never_work_stops_the_start_with_one_clear_line() {
    let dir = temp_dir("permanent");
    let garbage = dir.join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let mut cases = vec![
        (format!("sqlite://{}/no/such/dir/monitor.db", dir.display()), "directory"),
        (format!("sqlite://{}", garbage.display()), "not a database"),
    ];
    if let Some(scratch) = scratch_db::mysql("permanent") {
        let mut wrong = url::Url::parse(&scratch.url).unwrap();
        wrong.set_password(Some("certainly-wrong")).unwrap();
        cases.push((wrong.to_string(), "denied"));
        let mut unknown = url::Url::parse(&scratch.url).unwrap();
        unknown.set_path("/apimon_no_such_database");
        cases.push((unknown.to_string(), "apimon_no_such_database"));
    }
    for (db, says) in cases {
        let (code, stderr) = start_with_db(&db);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("api-monitor:")).collect();
        assert_eq!(code, Some(2), "{db}: exit 2\n{stderr}");
        assert_eq!(errors.len(), 1, "{db}: one line\n{stderr}");
        assert!(errors[0].contains("--db"), "{db}: names the option: {}", errors[0]);
        assert!(errors[0].to_lowercase().contains(says), "{db}: says {says:?}: {}", errors[0]);
        assert!(!errors[0].contains('{'), "{db}: no debug output: {}", errors[0]);
        assert!(!errors[0].contains("certainly-wrong"), "{db}: no password: {}", errors[0]);
    }
}

#[test]
fn a_vanished_sqlite_file_stops_the_monitor_with_exit_1() {
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let db = sqlite("vanish");
    let mut mon = monitor(&args(&api.health_url(), &db, &smtp.url));
    mon.wait_for_line("UP target=");
    let path = db.trim_start_matches("sqlite://");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    api.set_mode("down");
    let status = mon.exit_within(DEADLINE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(1));
    let line = mon.wait_for_line("STOPPING");
    assert!(line.contains("deleted or replaced"), "{line}");
}

#[test]
fn sigterm_while_a_mail_server_tarpits_stops_within_seconds_and_keeps_the_email() {
    let api = FakeApi::start(&[]);
    let smtp = HostileSmtp::start(Hostility::Tarpit);
    let db = sqlite("tarpit");
    let mut mon = monitor(&args(&api.health_url(), &db, &smtp.url));
    mon.wait_for_line("UP target=");
    api.set_mode("down");
    mon.wait_for_line("OUTAGE target=");
    eventually("the SMTP conversation", || {
        smtp.accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1
    });
    // The conversation would last its whole 30 s deadline; a stop cuts it after a short grace.
    // (Generous bound for a loaded machine; without the cut it is 30 s or, before the deadline
    // existed, never.)
    let took = mon.terminate(Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("stopped {took:?} after SIGTERM");
    mon.wait_for_line("cutting the SMTP conversation in flight");
    let pending = api_monitor::store::open(&db).unwrap().pending().unwrap();
    assert_eq!(pending.len(), 1, "the OUTAGE email stays in the outbox for the next start");
}

#[test]
fn a_lost_reply_to_a_commit_on_mariadb_writes_and_mails_nothing_twice() {
    let Some(db) = scratch_db::mysql("lostreply") else { return };
    let (forwarder, db_url) = forwarded_mysql(&db);
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let url = api.health_url();
    let mon = monitor(&args(&url, &db_url, &smtp.url));
    mon.wait_for_line("UP target=");

    // The OUTAGE commit reaches the server and commits; its reply is lost, the client times out
    // and retries the same commit once the database "returns".
    forwarder.lose_next_commit_reply();
    api.set_mode("down");
    mon.wait_for_line("DATABASE UNAVAILABLE");
    mon.wait_for_line("DATABASE RECOVERED");
    assert!(smtp.wait_for(1)[0].subject().contains("OUTAGE"));
    api.set_mode("ok");
    assert!(smtp.wait_for(2)[1].subject().contains("RECOVERED"));
    let probes = mon.count("probe ok");
    mon.wait_for_count("probe ok", probes + 5);

    let states: Vec<bool> = rows(&db.url, &url).iter().map(|r| r.healthy).collect();
    assert_eq!(states, [true, false, true], "the retried commit wrote no second DOWN row");
    assert_eq!(smtp.mails.snapshot().len(), 2, "and no second email");
    use mysql::prelude::Queryable;
    let mut conn = mysql::Conn::new(mysql::Opts::from_url(&db.url).unwrap()).unwrap();
    let notifications: u64 =
        conn.query_first("SELECT COUNT(*) FROM notification").unwrap().unwrap();
    assert_eq!(notifications, 2, "one notification row per transition");
}
