//! `slow` end to end through the real binaries: a target whose healthy answers take longer than
//! its `slow` limit goes down with a `slow: … > 300ms` reason, and comes back when the API is
//! quick again; each transition is one email. SQLite; every wait is on an event with a generous
//! deadline, never on a timing.

mod support;

use std::time::Duration;

use api_monitor::latency::{Histogram, LatencyRow, Span};
use api_monitor::store;
use api_monitor::timestamp::Timestamp;
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

/// Latency end to end: minutes an earlier run left are rolled up into their hour at start; the
/// answered probes' latency is written at a stop (the minute in progress), `report` gives its p50/p95 from the database (the default week, read from hours
/// and the minutes not rolled up, and the last hour, read to the minute), and a restarted
/// monitor draws the sparkline from what the last run wrote.
#[test]
fn latency_is_reported_and_drawn_again_after_a_restart() {
    let dir = temp_dir("latency");
    let db = format!("sqlite://{}", dir.join("monitor.db").display());
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let url = api.health_url();
    let args = [
        "--url",
        &url,
        "--interval",
        "200ms",
        "--db",
        &db,
        "--smtp",
        &smtp.url,
        "--support",
        SUPPORT,
        "--from",
        "monitor@example.com",
        "--listen",
        "127.0.0.1:0",
    ];
    // Minutes of an earlier run, three hours ago, never rolled up (it stopped before the hour
    // ended): the monitor rolls them up when it starts.
    let old = "http://old.example/health";
    let three_hours_ago = Span::Hour
        .start_of(Timestamp::from_system_time(std::time::SystemTime::now()))
        .minus(Duration::from_secs(3 * 3600));
    {
        let mut store = store::open(&db).expect("create the database");
        let minute = |m: u64, probes: u64| {
            let mut histogram = Histogram::default();
            (0..probes).for_each(|_| histogram.add(Duration::from_millis(20)));
            let start = three_hours_ago.plus(Duration::from_secs(m * 60));
            LatencyRow {
                target: old.into(),
                region: "direct".into(),
                span: Span::Minute,
                start,
                histogram,
            }
        };
        store.record_latency(&[minute(0, 12), minute(1, 12), minute(59, 6)]).unwrap();
    }

    let started = std::time::Instant::now();
    let mut mon = support::monitor(&args);
    mon.wait_for_count("probe ok", 10);
    mon.signal("TERM");
    assert_eq!(mon.wait_exit().code(), Some(0));
    // Every request the API answered (a stop waits for the probes in flight); fake-api's log
    // of the last one may trail the monitor's exit, so its count is read until it matches.
    let answered = |want: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let hits = api.hits_since(started) as u64;
            if hits == want || std::time::Instant::now() > deadline {
                return hits;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };

    let mut store = store::open(&db).expect("open the database");
    let span = (three_hours_ago, Timestamp::from_system_time(std::time::SystemTime::now()));
    let hours = store.latency(Span::Hour, Some((old, "direct")), span.0, span.1).unwrap();
    assert_eq!(hours.len(), 1, "the old minutes are one hour now: {hours:?}");
    assert_eq!((hours[0].start, hours[0].histogram.probes()), (three_hours_ago, 30));
    drop(store);

    let report = |extra: &[&str]| -> serde_json::Value {
        let mut all = vec!["report", "--db", &db, "--json"];
        all.extend_from_slice(extra);
        let (status, out, err) = support::run_monitor(&all, &[]);
        assert!(status.success(), "report failed: {err}");
        serde_json::from_str(&out).expect("report --json is JSON")
    };
    for window in [&[][..], &["--since", "1h"][..]] {
        let series = &report(window)["series"][0];
        let probes = series["latency_probes"].as_u64().expect("a count");
        assert_eq!(probes, answered(probes), "every answered probe: {window:?}");
        assert_eq!(mon.count("probe ok") as u64, probes, "each probe logged once");
        let p50 = series["latency_p50_seconds"].as_f64().expect("a p50");
        let p95 = series["latency_p95_seconds"].as_f64().expect("a p95");
        assert!(p50 > 0.0 && p50 <= p95 && p95 < 3.0, "loopback figures: {p50} {p95}");
    }

    // The API is gone now: the new run answers nothing, so any sparkline is the last run's.
    drop(api);
    let mut mon = support::monitor(&args);
    let addr = support::listen_addr(&mon);
    // The page shows the resumed rows once the database is read: wait for that, not a time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let page = loop {
        let (status, page) = support::http_get(addr, "/");
        assert_eq!(status, 200);
        if page.contains("<svg class=\"spark\"") {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sparkline is drawn from the database:\n{page}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(page.contains("latest minute "), "with its figures");
    mon.signal("TERM");
    assert_eq!(mon.wait_exit().code(), Some(0));
}
