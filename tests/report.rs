//! `report` over a real database: rows written through the `Store`, read back by
//! `report::load` and rendered by `report::table` / `report::json`, on a SQLite file and on
//! MySQL/MariaDB (a scratch database; skipped with `SKIPPED:` when no server is reachable,
//! unless `REQUIRE_MYSQL=1`).
//!
//! Then the command itself: it reads the database read-only, says which one on stderr, and
//! neither creates nor upgrades one.
//!
//! The fixture has an outage crossing the window's start (recorded twice, as after a restart,
//! once before the window), a completed outage inside it and one still ongoing at `now`.

#[path = "support/scratch_db.rs"]
mod scratch_db;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use api_monitor::latency::{Histogram, LatencyRow, Span};
use api_monitor::report;
use api_monitor::store::{self, Commit, NewState, Store};
use api_monitor::timestamp::Timestamp;

const A: &str = "https://a.example/health";
const B: &str = "https://b.example/health";

fn at(text: &str) -> Timestamp {
    Timestamp::parse_sql(text).expect("valid fixture timestamp")
}

/// `(target, region, when, reason)`: `None` is an `Up` row, `Some(reason)` a `Down` row.
const HISTORY: &[(&str, &str, &str, Option<&str>)] = &[
    (A, "direct", "2026-11-10 00:00:00", None),
    (A, "direct", "2026-11-17 06:00:00", Some("HTTP 503")),
    (A, "direct", "2026-11-17 08:00:00", Some("connection refused")),
    (A, "direct", "2026-11-18 18:00:00", None),
    (A, "direct", "2026-11-22 09:30:00", Some("timeout after 5s")),
    (A, "direct", "2026-11-22 10:15:00", None),
    (B, "eu", "2026-11-01 00:00:00", None),
    (B, "eu", "2026-11-20 00:00:00", Some("HTTP 500")),
    (B, "eu", "2026-11-20 02:00:00", None),
    (B, "eu", "2026-11-25 06:00:00", Some("status \"DEGRADED\"")),
];

/// The report the fixture gives over the 7 days before noon on 25 November.
const TABLE: &str = "\
Report from 2026-11-18T12:00:00Z to 2026-11-25T12:00:00Z (7d)

TARGET                    REGION  STATE  SINCE                  UPTIME  OUTAGES  DOWNTIME     MTTR    MTBF  LONGEST    P50     P95
https://a.example/health  direct  up     2026-11-22T10:15:00Z  95.982%        2    6h 45m  18h 22m  3d 15h   1d 12h  11 ms  974 ms
https://b.example/health  eu      down   2026-11-25T06:00:00Z  95.238%        2        8h       2h  12d 2h       6h      -       -

Outages of https://a.example/health (direct): 2
  START                                             END                   LENGTH  FIRST REASON
  2026-11-17T06:00:00Z (started before the window)  2026-11-18T18:00:00Z  1d 12h  HTTP 503
  2026-11-22T09:30:00Z                              2026-11-22T10:15:00Z     45m  timeout after 5s

Outages of https://b.example/health (eu): 2
  START                 END                   LENGTH  FIRST REASON
  2026-11-20T00:00:00Z  2026-11-20T02:00:00Z      2h  HTTP 500
  2026-11-25T06:00:00Z  ongoing                   6h  status \"DEGRADED\"
";

/// Writes the fixture into `store` (in an order unlike time order: the report must not care),
/// then checks the table and the JSON `load` gives.
fn report_over(store: &mut dyn Store) {
    for &(target, region, when, reason) in HISTORY.iter().rev() {
        let row = NewState {
            key: store::new_key(),
            timestamp: at(when),
            healthy: reason.is_none(),
            target: target.into(),
            region: region.into(),
            reason: reason.map(str::to_owned),
            maintenance: None,
            held: false,
        };
        store
            .commit(&Commit { state: Some(row), notifications: Vec::new(), release: None })
            .expect("commit");
    }
    // A's latency: an hour rolled up (18 answers of 10 ms, 2 of 900 ms) and, not rolled up yet,
    // a minute of the hour in progress; B has none.
    let latency = |span: Span, when: &str, fast: usize, slow: usize| {
        let mut histogram = Histogram::default();
        (0..fast).for_each(|_| histogram.add(Duration::from_millis(10)));
        (0..slow).for_each(|_| histogram.add(Duration::from_millis(900)));
        LatencyRow { target: A.into(), region: "direct".into(), span, start: at(when), histogram }
    };
    store
        .record_latency(&[
            latency(Span::Hour, "2026-11-20 10:00:00", 17, 2),
            latency(Span::Minute, "2026-11-25 11:30:00", 1, 0),
        ])
        .expect("record latency");
    let (from, now) = (at("2026-11-18 12:00:00"), at("2026-11-25 12:00:00"));

    let reports = report::load(store, None, from, now).expect("load");
    assert_eq!(report::table(&reports, from, now), TABLE);

    let json: serde_json::Value =
        serde_json::from_str(&report::json(&reports, from, now)).expect("valid JSON");
    let a = &json["series"][0];
    assert_eq!(a["outages_list"][0]["start"], "2026-11-17T06:00:00.000Z", "real start");
    assert_eq!(a["outages_list"][0]["first_reason"], "HTTP 503", "the first row's reason");
    assert_eq!(json["series"][1]["outages_list"][1]["end"], serde_json::Value::Null, "ongoing");
    assert_eq!(a["latency_probes"], 20);
    assert_eq!(a["latency_p50_seconds"], 0.010763, "the bound of 10 ms's bucket");
    assert_eq!(json["series"][1]["latency_p95_seconds"], serde_json::Value::Null, "none");

    let only_b = report::load(store, Some(B), from, now).expect("load");
    assert_eq!(only_b.len(), 1, "the filter keeps B only");
    assert_eq!(only_b[0], reports[1], "and reports it the same");
}

#[test]
fn sqlite_file() {
    let dir: PathBuf = std::env::temp_dir().join(format!("apimon-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let url = format!("sqlite://{}", dir.join("state.db").display());
    let mut store = store::open(&url).expect("open sqlite");
    report_over(&mut *store);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mysql() {
    let Some(db) = scratch_db::mysql("report") else { return };
    let mut store = store::open(&db.url).expect("open mysql");
    report_over(&mut *store);
}

/// A fresh, empty directory for one test.
fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("apimon-report-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// `api-monitor args…` run in `dir` with an empty environment: (exit code, stdout, stderr).
fn run_in(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_api-monitor"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("run api-monitor");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8 output");
    (output.status.code(), text(output.stdout), text(output.stderr))
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
}

#[test]
fn report_and_outbox_in_a_folder_without_a_database_say_so_and_create_none() {
    let dir = scratch_dir("nodb");
    let default = format!("sqlite://api-monitor.db ({})", dir.join("api-monitor.db").display());
    let commands =
        [&["report"][..], &["report", "--json"], &["outbox"], &["outbox", "--requeue", "all"]];
    for command in commands {
        let (code, out, err) = run_in(&dir, command);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (
                Some(1),
                "",
                format!(
                    "reading {default}\napi-monitor: no database at sqlite://api-monitor.db \
                     (start the monitor first, or pass --db)\n"
                )
                .as_str()
            ),
            "{command:?}"
        );
        assert_eq!(files_in(&dir), Vec::<PathBuf>::new(), "{command:?} created nothing");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_and_outbox_say_which_database_they_read() {
    let dir = scratch_dir("named");
    let url = format!("sqlite://{}", dir.join("state.db").display());
    let mut store = store::open(&url).expect("open sqlite");
    let row = NewState {
        key: store::new_key(),
        timestamp: at("2026-11-25 06:00:00"),
        healthy: true,
        target: A.into(),
        region: "direct".into(),
        reason: None,
        maintenance: None,
        held: false,
    };
    store
        .commit(&Commit { state: Some(row), notifications: Vec::new(), release: None })
        .expect("commit");
    drop(store);
    for command in [&["report", "--db", &url][..], &["outbox", "--db", &url]] {
        let (code, out, err) = run_in(&dir, command);
        assert_eq!((code, err), (Some(0), format!("reading {url}\n")), "{command:?}: {out}");
    }
    let (_, out, _) = run_in(&dir, &["report", "--db", &url, "--since", "3650d"]);
    assert!(out.contains(A), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_masks_the_password_of_the_database_it_reads() {
    let dir = scratch_dir("masked");
    // A port nothing listens on: the open fails, after the line.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("mysql://monitor:s3cret-pw@127.0.0.1:{port}/monitor");
    let (code, _, err) = run_in(&dir, &["report", "--db", &url]);
    assert_eq!(code, Some(1), "{err}");
    let shown = format!("reading mysql://monitor:***@127.0.0.1:{port}/monitor\n");
    assert!(err.starts_with(&shown), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_on_a_version_1_database_asks_for_one_run_of_the_monitor() {
    let dir = scratch_dir("v1");
    let path = dir.join("state.db");
    let raw = rusqlite::Connection::open(&path).expect("raw sqlite");
    raw.execute_batch(include_str!("fixtures/schema_v1_sqlite.sql")).expect("version 1 schema");
    drop(raw);
    let before = std::fs::read(&path).unwrap();
    let url = format!("sqlite://{}", path.display());
    let (code, _, err) = run_in(&dir, &["report", "--db", &url]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err.lines().last(),
        Some(
            format!(
                "api-monitor: {url}: schema version 1 is older than this api-monitor's (3): run \
                 the monitor once to upgrade it"
            )
            .as_str()
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file is left as it was");
    let _ = std::fs::remove_dir_all(&dir);
}
