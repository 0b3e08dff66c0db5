//! `report` over a real database: rows written through the `Store`, read back by
//! `report::load` and rendered by `report::table` / `report::json`, on a SQLite file and on
//! MySQL/MariaDB (a scratch database; skipped with `SKIPPED:` when no server is reachable,
//! unless `REQUIRE_MYSQL=1`).
//!
//! The fixture has an outage crossing the window's start (recorded twice, as after a restart,
//! once before the window), a completed outage inside it and one still ongoing at `now`.

#[path = "support/scratch_db.rs"]
mod scratch_db;

use std::path::PathBuf;

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

TARGET                    REGION  STATE  SINCE                  UPTIME  OUTAGES  DOWNTIME     MTTR    MTBF  LONGEST
https://a.example/health  direct  up     2026-11-22T10:15:00Z  95.982%        2    6h 45m  18h 22m  3d 15h   1d 12h
https://b.example/health  eu      down   2026-11-25T06:00:00Z  95.238%        2        8h       2h  12d 2h       6h

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
        };
        store.commit(&Commit { state: Some(row), notifications: Vec::new() }).expect("commit");
    }
    let (from, now) = (at("2026-11-18 12:00:00"), at("2026-11-25 12:00:00"));

    let reports = report::load(store, None, from, now).expect("load");
    assert_eq!(report::table(&reports, from, now), TABLE);

    let json: serde_json::Value =
        serde_json::from_str(&report::json(&reports, from, now)).expect("valid JSON");
    let a = &json["series"][0];
    assert_eq!(a["outages_list"][0]["start"], "2026-11-17T06:00:00.000Z", "real start");
    assert_eq!(a["outages_list"][0]["first_reason"], "HTTP 503", "the first row's reason");
    assert_eq!(json["series"][1]["outages_list"][1]["end"], serde_json::Value::Null, "ongoing");

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
