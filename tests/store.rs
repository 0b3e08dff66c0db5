//! The `Store` contract, checked against real databases: one behavioural suite, written once
//! over `&mut dyn Store`, run on a SQLite file, on SQLite `:memory:` and on MySQL/MariaDB (a
//! scratch database per test, so the tests run in parallel). Then what differs per backend:
//! URLs, reopening, WAL, connection failures and reconnecting after the server kills the
//! connection.
//!
//! MySQL comes from `TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`); without a
//! server the MySQL tests print `SKIPPED:` and pass, unless `REQUIRE_MYSQL=1`.

#[path = "support/scratch_db.rs"]
mod scratch_db;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use api_monitor::store::{self, NewNotification, NewState, StateRow, Store, StoreError};
use api_monitor::timestamp::Timestamp;

const A: &str = "https://a.example/health";
const B: &str = "https://b.example/health";
const DIRECT: &str = "direct";
const EU: &str = "eu";

/// 2026-11-18 11:06:40.123 UTC: an arbitrary instant with milliseconds.
const BASE_MS: i64 = 1_795_000_000_123;

/// `BASE_MS + offset_ms` as a timestamp.
fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(BASE_MS + offset_ms)
}

fn up(target: &str, region: &str, offset_ms: i64) -> NewState {
    NewState {
        timestamp: at(offset_ms),
        healthy: true,
        target: target.into(),
        region: region.into(),
        reason: None,
    }
}

fn down(target: &str, region: &str, offset_ms: i64, reason: &str) -> NewState {
    NewState { healthy: false, reason: Some(reason.into()), ..up(target, region, offset_ms) }
}

fn open(url: &str) -> Box<dyn Store> {
    match store::open(url) {
        Ok(store) => store,
        Err(e) => panic!("cannot open {url}: {e}"),
    }
}

fn insert(store: &mut dyn Store, row: NewState) -> StateRow {
    let inserted = store.insert(&row).expect("insert");
    assert_eq!(
        (inserted.timestamp, inserted.healthy, &inserted.target, &inserted.region),
        (row.timestamp, row.healthy, &row.target, &row.region),
        "insert returns what it stored"
    );
    inserted
}

/// A unique directory under the system temp dir, removed (with its files) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "apimon-store-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.0.join("state.db").display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// The behavioural suite: each function gets an empty, open store.
// ---------------------------------------------------------------------------------------------

fn last_is_none_on_an_empty_store(store: &mut dyn Store) {
    assert_eq!(store.last(A, DIRECT).unwrap(), None, "no rows yet");
    assert_eq!(store.since(A, DIRECT, at(0)).unwrap(), vec![], "no history yet");
}

fn last_picks_the_latest_row_of_each_target_and_region(store: &mut dyn Store) {
    // Inserted out of time order: `last` must follow timestamps, not ids.
    insert(store, down(A, DIRECT, 1_000, "HTTP 503"));
    let a_direct = insert(store, up(A, DIRECT, 3_000));
    insert(store, down(A, DIRECT, 2_000, "timeout after 5s"));
    let a_eu = insert(store, down(A, EU, 5_000, "connection refused"));
    let b_direct = insert(store, down(B, DIRECT, 4_000, "status \"DEGRADED\""));
    insert(store, up(B, DIRECT, 500));

    assert_eq!(store.last(A, DIRECT).unwrap(), Some(a_direct), "latest timestamp wins");
    assert_eq!(store.last(A, EU).unwrap(), Some(a_eu), "regions are kept apart");
    assert_eq!(store.last(B, DIRECT).unwrap(), Some(b_direct), "targets are kept apart");
    assert_eq!(store.last(B, EU).unwrap(), None, "no row for this target/region");
}

fn previous_is_the_row_before_in_timestamp_then_id_order(store: &mut dyn Store) {
    let first = insert(store, up(A, DIRECT, 1_000));
    insert(store, down(A, EU, 1_500, "other region"));
    insert(store, down(B, DIRECT, 1_500, "other target"));
    let second = insert(store, down(A, DIRECT, 2_000, "HTTP 500"));
    let tied = insert(store, up(A, DIRECT, 2_000));
    let late = insert(store, down(A, DIRECT, 3_000, "HTTP 502"));
    let back_filled = insert(store, up(A, DIRECT, 2_500));

    assert_eq!(store.previous(&late).unwrap(), Some(back_filled.clone()), "by timestamp");
    assert_eq!(store.previous(&back_filled).unwrap(), Some(tied.clone()), "not by id alone");
    assert_eq!(store.previous(&tied).unwrap(), Some(second.clone()), "same timestamp: lower id");
    assert_eq!(
        store.previous(&second).unwrap(),
        Some(first.clone()),
        "other target/region skipped"
    );
    assert_eq!(store.previous(&first).unwrap(), None, "the first row has no predecessor");
}

fn since_returns_the_window_preceded_by_the_last_row_before_it(store: &mut dyn Store) {
    let r1 = insert(store, down(A, DIRECT, 1_000, "HTTP 503"));
    let r2 = insert(store, up(A, DIRECT, 2_000));
    insert(store, down(A, EU, 2_500, "other region"));
    insert(store, down(B, DIRECT, 2_600, "other target"));
    let r3 = insert(store, down(A, DIRECT, 3_000, "timeout after 5s"));
    let r4 = insert(store, up(A, DIRECT, 4_000));

    assert_eq!(
        store.since(A, DIRECT, at(2_500)).unwrap(),
        vec![r2.clone(), r3.clone(), r4.clone()],
        "window rows, preceded by the state at its start"
    );
    assert_eq!(
        store.since(A, DIRECT, at(3_000)).unwrap(),
        vec![r2.clone(), r3.clone(), r4.clone()],
        "a row exactly at the start is inside the window"
    );
    assert_eq!(
        store.since(A, DIRECT, at(0)).unwrap(),
        vec![r1, r2, r3, r4.clone()],
        "nothing before the window: just the window"
    );
    assert_eq!(
        store.since(A, DIRECT, at(9_000)).unwrap(),
        vec![r4],
        "an empty window still says what state it started in"
    );
    assert_eq!(store.since(B, EU, at(0)).unwrap(), vec![], "unknown target/region");
}

fn timestamps_round_trip_with_millisecond_precision(store: &mut dyn Store) {
    let instants = [
        Timestamp::from_millis(BASE_MS),
        Timestamp::from_millis(1_795_000_000_000), // .000
        Timestamp::from_millis(1_795_000_000_001), // .001
        Timestamp::from_millis(1_795_000_000_999), // .999
        Timestamp::from_millis(1),                 // just after the epoch
        Timestamp::from_millis(4_102_444_800_500), // 2100-01-01 00:00:00.500
    ];
    for (i, instant) in instants.into_iter().enumerate() {
        let target = format!("https://t{i}.example/health");
        let row = NewState { timestamp: instant, ..up(&target, DIRECT, 0) };
        let inserted = insert(store, row);
        let read = store.last(&target, DIRECT).unwrap().expect("row just inserted");
        assert_eq!(read.timestamp, instant, "{} read back as {}", instant, read.timestamp);
        assert_eq!(read, inserted);
    }
    // Rows 1 ms apart stay apart and in order.
    let early = insert(store, up(A, DIRECT, 0));
    let later = insert(store, down(A, DIRECT, 1, "1 ms later"));
    assert_eq!(store.last(A, DIRECT).unwrap(), Some(later.clone()));
    assert_eq!(store.since(A, DIRECT, at(1)).unwrap(), vec![early, later]);
}

fn ties_on_timestamp_are_ordered_by_id(store: &mut dyn Store) {
    let rows: Vec<StateRow> = (0..3)
        .map(|i| insert(store, NewState { healthy: i % 2 == 0, ..up(A, DIRECT, 1_000) }))
        .collect();
    assert!(rows[0].id < rows[1].id && rows[1].id < rows[2].id, "ids increase: {rows:?}");
    assert_eq!(store.last(A, DIRECT).unwrap().as_ref(), Some(&rows[2]), "highest id is last");
    assert_eq!(store.since(A, DIRECT, at(1_000)).unwrap(), rows, "ties come in id order");
    assert_eq!(store.previous(&rows[2]).unwrap().as_ref(), Some(&rows[1]));
    assert_eq!(store.previous(&rows[1]).unwrap().as_ref(), Some(&rows[0]));
    assert_eq!(store.previous(&rows[0]).unwrap(), None);
    let after = insert(store, up(A, DIRECT, 1_001));
    assert_eq!(store.since(A, DIRECT, at(1_001)).unwrap(), vec![rows[2].clone(), after]);
}

fn hostile_and_long_reasons_round_trip_harmlessly(store: &mut dyn Store) {
    let long: String = "é🚨x".chars().cycle().take(5_000).collect();
    let reasons = [
        r#"it's "quoted" with a \backslash\ and a `tick`"#.to_owned(),
        "'; DROP TABLE state; --".to_owned(),
        "\"); DELETE FROM state WHERE (\"1\"=\"1".to_owned(),
        "Dienst nicht verfügbar — 服务不可用 🚨 ∅".to_owned(),
        "line one\nline two\ttabbed\r\n".to_owned(),
        String::new(),
        long.clone(),
    ];
    for (i, reason) in reasons.iter().enumerate() {
        let target = format!("https://r{i}.example/health");
        let inserted = insert(store, down(&target, DIRECT, i as i64, reason));
        let read = store.last(&target, DIRECT).unwrap().expect("row just inserted");
        assert_eq!(read, inserted, "what insert returned is what was stored");
        let stored = read.reason.expect("a down row keeps its reason");
        if reason.chars().count() <= 1024 {
            assert_eq!(&stored, reason, "kept verbatim");
        } else {
            assert_eq!(stored.chars().count(), 1024, "clipped to 1024 characters");
            assert!(long.starts_with(&stored), "clipped on a character boundary, prefix kept");
        }
    }
    // A hostile target and region are only data too.
    let evil = "x'); DROP TABLE state; --";
    let row = insert(store, down(evil, evil, 0, evil));
    assert_eq!(store.last(evil, evil).unwrap(), Some(row));
    let up_row = insert(store, up(A, DIRECT, 0));
    assert_eq!(up_row.reason, None);
    assert_eq!(
        store.last(A, DIRECT).unwrap(),
        Some(up_row),
        "NULL reason stays None; table intact"
    );
}

fn targets_differing_late_or_in_case_are_distinct(store: &mut dyn Store) {
    // MySQL indexes only a 255-character prefix of target; rows must still not mix.
    let prefix = format!("https://long.example/{}", "p".repeat(300));
    let one = format!("{prefix}/one");
    let two = format!("{prefix}/two");
    let longest = format!("https://max.example/{}", "m".repeat(2048 - 20));
    assert_eq!(longest.chars().count(), 2048);
    let row_one = insert(store, up(&one, DIRECT, 2_000));
    let row_two = insert(store, down(&two, DIRECT, 1_000, "HTTP 503"));
    let row_longest = insert(store, up(&longest, DIRECT, 0));
    assert_eq!(store.last(&one, DIRECT).unwrap(), Some(row_one));
    assert_eq!(store.last(&two, DIRECT).unwrap(), Some(row_two));
    assert_eq!(store.last(&longest, DIRECT).unwrap(), Some(row_longest), "2048 chars fit");

    // URL paths are case-sensitive, so targets are too (MySQL collation utf8mb4_bin).
    let upper = insert(store, down("https://c.example/Health", DIRECT, 0, "HTTP 404"));
    let lower = insert(store, up("https://c.example/health", DIRECT, 0));
    assert_eq!(store.last("https://c.example/Health", DIRECT).unwrap(), Some(upper));
    assert_eq!(store.last("https://c.example/health", DIRECT).unwrap(), Some(lower));
    assert_eq!(store.last("https://c.example/HEALTH", DIRECT).unwrap(), None);
    let eu_upper = insert(store, up(A, "EU", 0));
    assert_eq!(store.last(A, EU).unwrap(), None, "regions are case-sensitive too");
    assert_eq!(store.last(A, "EU").unwrap(), Some(eu_upper));
}

fn series_lists_each_target_and_region_once_sorted(store: &mut dyn Store) {
    assert_eq!(store.series().unwrap(), vec![], "an empty store has no series");
    let evil = "x'); DROP TABLE state; --";
    // Inserted out of order, with repeats: each pair once, sorted by target then region.
    insert(store, down(B, EU, 1_000, "HTTP 503"));
    insert(store, up(A, EU, 2_000));
    insert(store, up(B, DIRECT, 500));
    insert(store, down(A, EU, 3_000, "timeout after 5s"));
    insert(store, up(A, DIRECT, 0));
    insert(store, up(B, EU, 4_000));
    insert(store, up("https://c.example/Health", DIRECT, 0));
    insert(store, up("https://c.example/health", DIRECT, 0));
    insert(store, down(evil, evil, 0, evil));
    let pair = |t: &str, r: &str| (t.to_owned(), r.to_owned());
    assert_eq!(
        store.series().unwrap(),
        vec![
            pair(A, DIRECT),
            pair(A, EU),
            pair(B, DIRECT),
            pair(B, EU),
            pair("https://c.example/Health", DIRECT),
            pair("https://c.example/health", DIRECT),
            pair(evil, evil),
        ],
        "distinct pairs in string order; case kept apart; a hostile name is only data"
    );
}

fn notification(state_id: Option<i64>, subject: &str) -> NewNotification {
    NewNotification {
        state_id,
        target: A.into(),
        region: DIRECT.into(),
        recipients: "oncall@example.com,ops@example.com".into(),
        subject: subject.into(),
        text: "It was down for 2m 10s.\n\u{2014} \u{00d7}2 'quoted' \"double\"".into(),
        html: format!("<p>{}</p>", "x".repeat(70_000)),
        created_at: at(5),
    }
}

fn outbox_keeps_unsent_notifications_in_order_until_sent(store: &mut dyn Store) {
    assert!(store.unsent().unwrap().is_empty(), "a new outbox is empty");
    let row = insert(store, down(A, DIRECT, 0, "HTTP 503"));
    let outage = notification(Some(row.id), "[api-monitor] OUTAGE: a is down");
    let recovery = notification(None, "[api-monitor] RECOVERED: a is up after 1s");
    let first = store.enqueue(&outage).unwrap();
    let second = store.enqueue(&recovery).unwrap();
    assert!(first < second, "ids grow");

    let unsent = store.unsent().unwrap();
    assert_eq!(unsent.iter().map(|n| n.id).collect::<Vec<_>>(), [first, second], "oldest first");
    assert_eq!(unsent[0].content, outage, "content round-trips, 70 KB html included");
    assert_eq!((unsent[0].attempts, unsent[0].last_error.as_deref()), (0, None));

    store.note_attempt(first, 1, "SMTP 451 try again later").unwrap();
    let unsent = store.unsent().unwrap();
    assert_eq!(unsent[0].attempts, 1);
    assert_eq!(unsent[0].last_error.as_deref(), Some("SMTP 451 try again later"));

    store.mark_sent(first, 2, at(9)).unwrap();
    let unsent = store.unsent().unwrap();
    assert_eq!(unsent.len(), 1, "a sent notification leaves the outbox");
    assert_eq!(unsent[0].id, second);
    store.mark_sent(second, 1, at(10)).unwrap();
    assert!(store.unsent().unwrap().is_empty());
}

/// Runs every behaviour of the suite on each backend, one `#[test]` per behaviour and backend.
macro_rules! store_suite {
    ($($behaviour:ident),* $(,)?) => {
        mod sqlite_file {
            $(
                #[test]
                fn $behaviour() {
                    let dir = super::TempDir::new(stringify!($behaviour));
                    let mut store = super::open(&dir.sqlite_url());
                    super::$behaviour(&mut *store);
                }
            )*
        }
        mod sqlite_memory {
            $(
                #[test]
                fn $behaviour() {
                    let mut store = super::open("sqlite://:memory:");
                    super::$behaviour(&mut *store);
                }
            )*
        }
        mod mysql_db {
            $(
                #[test]
                fn $behaviour() {
                    let Some(db) = super::scratch_db::mysql(stringify!($behaviour)) else {
                        return;
                    };
                    let mut store = super::open(&db.url);
                    super::$behaviour(&mut *store);
                }
            )*
        }
    };
}

store_suite!(
    last_is_none_on_an_empty_store,
    last_picks_the_latest_row_of_each_target_and_region,
    previous_is_the_row_before_in_timestamp_then_id_order,
    since_returns_the_window_preceded_by_the_last_row_before_it,
    timestamps_round_trip_with_millisecond_precision,
    ties_on_timestamp_are_ordered_by_id,
    hostile_and_long_reasons_round_trip_harmlessly,
    targets_differing_late_or_in_case_are_distinct,
    outbox_keeps_unsent_notifications_in_order_until_sent,
    series_lists_each_target_and_region_once_sorted,
);

// ---------------------------------------------------------------------------------------------
// Opening: URLs, reopening (schema idempotent), WAL.
// ---------------------------------------------------------------------------------------------

/// Two stores on one database: the schema is applied twice harmlessly and both see all rows.
fn reopening_keeps_rows_and_shares_them(url: &str) {
    let mut first = open(url);
    let a = insert(&mut *first, down(A, DIRECT, 1_000, "HTTP 503"));
    let mut second = open(url);
    assert_eq!(second.last(A, DIRECT).unwrap(), Some(a.clone()), "rows survive a reopen");
    let b = insert(&mut *second, up(A, DIRECT, 2_000));
    assert!(b.id > a.id, "ids keep increasing");
    assert_eq!(first.last(A, DIRECT).unwrap(), Some(b.clone()), "both stores see every write");
    drop((first, second));
    assert_eq!(open(url).since(A, DIRECT, at(0)).unwrap(), vec![a, b]);
}

#[test]
fn sqlite_file_reopening_is_idempotent() {
    let dir = TempDir::new("reopen");
    reopening_keeps_rows_and_shares_them(&dir.sqlite_url());
}

#[test]
fn mysql_reopening_is_idempotent() {
    let Some(db) = scratch_db::mysql("reopen") else { return };
    reopening_keeps_rows_and_shares_them(&db.url);
}

#[test]
fn sqlite_memory_opens_twice() {
    let mut first = open("sqlite://:memory:");
    let mut second = open("sqlite://:memory:");
    insert(&mut *first, up(A, DIRECT, 0));
    assert_eq!(second.last(A, DIRECT).unwrap(), None, "each :memory: store is private");
}

#[test]
fn sqlite_file_is_in_wal_mode() {
    let dir = TempDir::new("wal");
    let _store = open(&dir.sqlite_url());
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn sqlite_relative_url_is_relative_to_the_current_directory() {
    // Cargo runs integration tests in the package root; the target tmp dir is usually below it.
    let cwd = std::env::current_dir().unwrap();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("apimon-store-relative-{}", std::process::id()));
    let Ok(relative) = tmp.strip_prefix(&cwd).map(Path::to_path_buf) else {
        eprintln!("SKIPPED: {} is not below {}", tmp.display(), cwd.display());
        return;
    };
    std::fs::create_dir_all(&tmp).unwrap();
    let url = format!("sqlite://{}", relative.join("state.db").display());
    let row = insert(&mut *open(&url), up(A, DIRECT, 0));
    assert!(tmp.join("state.db").is_file(), "{url} created below the current directory");
    assert_eq!(open(&url).last(A, DIRECT).unwrap(), Some(row));
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn bad_urls_are_errors_not_panics() {
    let dir = TempDir::new("bad-url");
    let missing_dir = dir.path().join("no-such-dir");
    let missing = format!("sqlite://{}", missing_dir.join("state.db").display());
    let cases = [
        "postgres://x",
        "",
        "api-monitor.db",
        "sqlite://",
        "sqlite:api-monitor.db",
        "sqlite://state.db?mode=ro",
        &missing,
        "mysql://",
        "mysql://root@127.0.0.1:notaport/db",
        "mysql://root:pw-s3cret@127.0.0.1:3306",
        "mysql://root:pw-s3cret@127.0.0.1:3306/db?no_such_option=1",
    ];
    for url in cases {
        match store::open(url) {
            Ok(_) => panic!("{url:?} opened"),
            Err(e) => {
                let shown = e.to_string();
                assert!(!shown.contains("pw-s3cret"), "{url:?}: password leaked: {shown}");
                if url == missing {
                    assert!(matches!(e, StoreError::Connect { .. }), "{url}: {e:?}");
                    assert!(shown.contains("does not exist"), "says why: {shown}");
                } else {
                    assert!(matches!(e, StoreError::Url { .. }), "{url:?}: {e:?}");
                }
            }
        }
    }
    assert!(!missing_dir.exists(), "a missing directory is not created");
}

// ---------------------------------------------------------------------------------------------
// MySQL connection faults.
// ---------------------------------------------------------------------------------------------

/// Asserts `result` is a `Connect` error with no trace of `password` in Display or Debug.
fn assert_connect_error_without(result: Result<Box<dyn Store>, StoreError>, password: &str) {
    match result {
        Ok(_) => panic!("connected with a bad configuration"),
        Err(e @ StoreError::Connect { .. }) => {
            let shown = format!("{e} / {e:?}");
            assert!(!shown.contains(password), "password leaked: {shown}");
            assert!(shown.contains("***"), "the URL is shown, masked: {shown}");
        }
        Err(e) => panic!("expected StoreError::Connect, got {e:?}"),
    }
}

#[test]
fn mysql_wrong_password_is_a_connect_error_without_the_password() {
    let Some(db) = scratch_db::mysql("wrong_password") else { return };
    let password = "hunter2-not-the-password";
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_password(Some(password)).unwrap();
    assert_connect_error_without(store::open(url.as_str()), password);
}

#[test]
fn mysql_closed_port_is_a_quick_connect_error_without_the_password() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let password = "pw-s3cret-closed-port";
    let started = Instant::now();
    let result = store::open(&format!("mysql://monitor:{password}@127.0.0.1:{port}/monitor"));
    assert_connect_error_without(result, password);
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
}

#[test]
fn mysql_silent_server_cannot_hang_open() {
    // Accepts TCP connections but never says a word, like a wedged database host.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Holds every accepted connection open until the test process exits.
    std::thread::spawn(move || listener.incoming().collect::<Vec<_>>());
    let password = "pw-s3cret-silent";
    let started = Instant::now();
    let result = store::open(&format!("mysql://monitor:{password}@127.0.0.1:{port}/monitor"));
    assert_connect_error_without(result, password);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}

/// Kills every connection using `db`'s database; returns how many.
fn kill_store_connections(db: &scratch_db::ScratchDb) -> usize {
    use mysql::prelude::Queryable;
    let mut admin = db.admin().expect("admin connection");
    let ids: Vec<u64> = admin
        .exec("SELECT id FROM information_schema.processlist WHERE db = ?", (&db.name,))
        .expect("list connections");
    for id in &ids {
        admin.query_drop(format!("KILL {id}")).expect("kill connection");
    }
    ids.len()
}

#[test]
fn mysql_reconnects_after_the_server_kills_the_connection() {
    let Some(db) = scratch_db::mysql("reconnect") else { return };
    let mut store = open(&db.url);
    let first = insert(&mut *store, down(A, DIRECT, 1_000, "HTTP 503"));

    assert_eq!(kill_store_connections(&db), 1, "the store holds exactly one connection");
    assert_eq!(store.last(A, DIRECT).unwrap(), Some(first.clone()), "next call reconnects");

    assert_eq!(kill_store_connections(&db), 1, "a new connection was made");
    let second = insert(&mut *store, up(A, DIRECT, 2_000));
    assert!(second.id > first.id);
    assert_eq!(store.previous(&second).unwrap(), Some(first.clone()));

    assert_eq!(kill_store_connections(&db), 1);
    assert_eq!(store.since(A, DIRECT, at(0)).unwrap(), vec![first, second]);
}
