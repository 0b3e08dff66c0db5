//! The `Store` contract, checked against real databases: one behavioural suite, written once
//! over `&mut dyn Store`, run on a SQLite file, on SQLite `:memory:` and on MySQL/MariaDB (a
//! scratch database per test, so the tests run in parallel). Then what needs a backend's own
//! hands (a raw connection beside the store): atomicity under a failing trigger, the upgrade of
//! a version 1 database, a schema too new, permanent errors, a vanished file; and what differs
//! per backend: URLs, reopening, WAL, connection failures and reconnecting after the server
//! kills the connection.
//!
//! MySQL comes from `TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`); without a
//! server the MySQL tests print `SKIPPED:` and pass, unless `REQUIRE_MYSQL=1`.

#[path = "support/scratch_db.rs"]
mod scratch_db;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use api_monitor::latency::{Histogram, LatencyRow, Span};
use api_monitor::store::{
    self, Claim, Clear, Commit, Delivery, Holder, NewState, Notification, OutboxEntry, Silence,
    StateRow, Store, StoreError,
};
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
        key: store::new_key(),
        timestamp: at(offset_ms),
        healthy: true,
        target: target.into(),
        region: region.into(),
        reason: None,
        maintenance: None,
        held: false,
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

/// Writes `row` alone through [`Store::commit`]; the row as the store should now hold it (its
/// reason clipped to 1024 characters, as the stores promise).
fn insert(store: &mut dyn Store, row: NewState) -> StateRow {
    let id = store
        .commit(&Commit { state: Some(row.clone()), notifications: Vec::new(), release: None })
        .expect("commit")
        .expect("a commit with a state row returns its id");
    StateRow {
        id,
        timestamp: row.timestamp,
        healthy: row.healthy,
        target: row.target,
        region: row.region,
        reason: row.reason.map(|r| r.chars().take(1024).collect()),
        maintenance: row.maintenance,
        held: row.held,
    }
}

/// Asserts `e` reads as one clear line: no newline, no Rust `Debug` dump of a driver error.
fn assert_one_clear_line(e: &StoreError) {
    let shown = e.to_string();
    assert!(!shown.contains('\n'), "one line: {shown:?}");
    for dump in ["{", "}", "Error {", "MySqlError", "DriverError", "IoError", "Error code"] {
        assert!(!shown.contains(dump), "no {dump:?} in {shown:?}");
    }
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

fn notification(subject: &str, created_at: Timestamp) -> Notification {
    Notification {
        key: store::new_key(),
        target: A.into(),
        region: DIRECT.into(),
        recipients: "oncall@example.com,ops@example.com".into(),
        subject: subject.into(),
        text: "It was down for 2m 10s.\n\u{2014} \u{00d7}2 'quoted' \"double\"".into(),
        html: format!("<p>{}</p>", "x".repeat(70_000)),
        created_at,
    }
}

/// The keys of `entries`, in order.
fn keys(entries: &[OutboxEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.notification.key.as_str()).collect()
}

fn commits_are_idempotent(store: &mut dyn Store) {
    assert_eq!(store.commit(&Commit::default()).unwrap(), None, "an empty commit writes nothing");
    let outage = down(A, DIRECT, 1_000, "HTTP 503");
    let first = notification("[api-monitor] OUTAGE: a is down", at(1));
    let second = Notification { recipients: "boss@example.com".into(), ..notification("x", at(2)) };
    let commit =
        Commit { state: Some(outage.clone()), notifications: vec![first, second], release: None };

    let id = store.commit(&commit).unwrap().expect("a state row has an id");
    assert_eq!(store.commit(&commit).unwrap(), Some(id), "the retry finds the same row");
    assert_eq!(store.since(A, DIRECT, at(0)).unwrap().len(), 1, "one state row, not two");
    assert_eq!(store.pending().unwrap().len(), 2, "one notification each, not two");

    // The state row is there already (an earlier attempt got that far); the email is new.
    let reminder = notification("[api-monitor] STILL DOWN: a", at(3));
    let again =
        Commit { state: Some(outage), notifications: vec![reminder.clone()], release: None };
    assert_eq!(store.commit(&again).unwrap(), Some(id), "the existing row's id");
    assert_eq!(store.since(A, DIRECT, at(0)).unwrap().len(), 1, "still one state row");
    let pending = store.pending().unwrap();
    assert_eq!(pending.len(), 3, "the new notification was written");
    assert_eq!(pending[2].notification, reminder);

    // A notification without a state row (a reminder), twice.
    let alone =
        Commit { state: None, notifications: vec![notification("alone", at(4))], release: None };
    assert_eq!(store.commit(&alone).unwrap(), None);
    assert_eq!(store.commit(&alone).unwrap(), None);
    assert_eq!(store.pending().unwrap().len(), 4);

    // A retry after the email went out does not bring it back.
    store.record_sent(&commit.notifications[0].key, 1, at(9), None).unwrap();
    store.commit(&commit).unwrap();
    assert_eq!(store.pending().unwrap().len(), 3, "a sent notification stays sent");
}

fn outbox_life_cycle_pending_sent_dead_requeued(store: &mut dyn Store) {
    assert!(store.pending().unwrap().is_empty(), "a new outbox is empty");
    assert!(store.dead().unwrap().is_empty());
    // Committed out of creation order: the outbox is oldest first by created_at, not by id.
    let outage = notification("[api-monitor] OUTAGE: a is down", at(50));
    let earlier = notification("[api-monitor] reminder", at(10));
    let blind = notification("[api-monitor] BLIND: eu", at(50));
    let row = down(A, DIRECT, 0, "HTTP 503");
    store
        .commit(&Commit { state: Some(row), notifications: vec![outage.clone()], release: None })
        .unwrap();
    store
        .commit(&Commit { state: None, notifications: vec![earlier.clone()], release: None })
        .unwrap();
    store
        .commit(&Commit { state: None, notifications: vec![blind.clone()], release: None })
        .unwrap();

    let pending = store.pending().unwrap();
    assert_eq!(keys(&pending), [&earlier.key, &outage.key, &blind.key], "created_at, then id");
    assert_eq!(pending[1].notification, outage, "content round-trips, 70 KB html included");
    assert!(pending[0].id > pending[1].id, "the earlier one was committed later");
    for entry in &pending {
        assert_eq!(entry.delivery, Delivery::Pending);
        assert_eq!((entry.attempts, &entry.last_error, &entry.refused), (0, &None, &None));
    }

    store.record_attempt(&outage.key, 1, "SMTP 451 try again later").unwrap();
    let pending = store.pending().unwrap();
    assert_eq!(pending[1].attempts, 1);
    assert_eq!(pending[1].last_error.as_deref(), Some("SMTP 451 try again later"));
    let long: String = "é🚨x".chars().cycle().take(5_000).collect();
    store.record_attempt(&outage.key, 2, &long).unwrap();
    let stored = store.pending().unwrap()[1].last_error.clone().expect("an error");
    assert_eq!(stored.chars().count(), 1024, "a long error is clipped, never a failed write");
    assert!(long.starts_with(&stored));

    store.record_sent(&outage.key, 3, at(90), Some("x@example.com: 550 no such user")).unwrap();
    assert_eq!(keys(&store.pending().unwrap()), [&earlier.key, &blind.key], "sent leaves");

    store.record_dead(&earlier.key, 4, "550 5.1.1 mailbox unavailable", at(91)).unwrap();
    assert_eq!(keys(&store.pending().unwrap()), [&blind.key], "dead leaves the pending list");
    let dead = store.dead().unwrap();
    assert_eq!(keys(&dead), [&earlier.key]);
    assert_eq!(dead[0].delivery, Delivery::Dead);
    assert_eq!(dead[0].attempts, 4);
    assert_eq!(dead[0].last_error.as_deref(), Some("550 5.1.1 mailbox unavailable"));
    assert_eq!(dead[0].notification, earlier);

    // A sent notification cannot die, and re-queueing does not touch it.
    store.record_dead(&outage.key, 9, "late", at(92)).unwrap();
    assert_eq!(keys(&store.dead().unwrap()), [&earlier.key]);

    let dead_id = dead[0].id;
    assert_eq!(store.requeue(Some(dead_id)).unwrap(), 1, "re-queued by id");
    assert_eq!(store.requeue(Some(dead_id)).unwrap(), 0, "it is not dead any more");
    assert!(store.dead().unwrap().is_empty());
    let pending = store.pending().unwrap();
    assert_eq!(keys(&pending), [&earlier.key, &blind.key], "back in its place, oldest first");
    assert_eq!((pending[0].delivery, pending[0].attempts), (Delivery::Pending, 0), "from zero");

    store.record_dead(&earlier.key, 1, "550", at(93)).unwrap();
    store.record_dead(&blind.key, 1, "550", at(94)).unwrap();
    assert!(store.pending().unwrap().is_empty());
    assert_eq!(store.requeue(Some(i64::MAX)).unwrap(), 0, "no such id");
    assert_eq!(store.requeue(None).unwrap(), 2, "all the dead");
    assert_eq!(keys(&store.pending().unwrap()), [&earlier.key, &blind.key]);
    assert_eq!(store.requeue(None).unwrap(), 0);

    store.record_sent(&earlier.key, 1, at(95), None).unwrap();
    store.record_sent(&blind.key, 1, at(96), None).unwrap();
    assert!(store.pending().unwrap().is_empty() && store.dead().unwrap().is_empty());
}

fn long_urls_and_subjects_are_stored_whole(store: &mut dyn Store) {
    let url = format!("https://max.example/{}", "m".repeat(2048 - 20));
    assert_eq!(url.chars().count(), 2048);
    let subject = format!("[api-monitor] OUTAGE: {url} is down from direct since 11:06:40 UTC");
    assert!(subject.chars().count() > 2048);
    let n = Notification {
        target: url.clone(),
        recipients: format!("{}@example.com", "r".repeat(1000)),
        ..notification(&subject, at(0))
    };
    let row = down(&url, DIRECT, 0, "HTTP 503");
    store
        .commit(&Commit { state: Some(row), notifications: vec![n.clone()], release: None })
        .unwrap();
    assert_eq!(store.last(&url, DIRECT).unwrap().expect("the row").target, url);
    let pending = store.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].notification, n, "the 2048-character URL and the long subject, whole");
}

fn silences_are_added_listed_and_cleared_early(store: &mut dyn Store) {
    let silence = |target: &str, from: i64, to: i64| Silence {
        id: 0,
        target: target.into(),
        starts_at: at(from),
        ends_at: at(to),
        reason: "deploy; 'quoted' \"too\"".into(),
        created_by: "ops@host".into(),
    };
    assert_eq!(store.silences(at(0)).unwrap(), vec![], "none yet");
    let a = store.add_silence(&silence(A, 1_000, 10_000), at(500)).unwrap();
    let all = store.add_silence(&silence("*", 5_000, 20_000), at(500)).unwrap();
    let later = store.add_silence(&silence(B, 30_000, 40_000), at(500)).unwrap();
    assert!(a < all && all < later, "ids increase");
    let listed = store.silences(at(2_000)).unwrap();
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), [a, all, later]);
    assert_eq!(listed[0], Silence { id: a, ..silence(A, 1_000, 10_000) }, "round trip");
    assert_eq!(store.silences(at(10_000)).unwrap().len(), 2, "ended ones are not listed");

    assert_eq!(store.clear_silences(&Clear::Target(A.into()), at(3_000)).unwrap(), 1);
    assert_eq!(store.clear_silences(&Clear::Target(A.into()), at(3_500)).unwrap(), 0, "once");
    assert_eq!(store.clear_silences(&Clear::Id(later), at(3_000)).unwrap(), 1, "a future one");
    let left = store.silences(at(3_000)).unwrap();
    assert_eq!(left.iter().map(|s| s.id).collect::<Vec<_>>(), [all], "{left:?}");
    assert_eq!(store.clear_silences(&Clear::All, at(6_000)).unwrap(), 1);
    assert_eq!(store.silences(at(6_000)).unwrap(), vec![]);
}

fn held_rows_round_trip_and_are_released_with_the_summary(store: &mut dyn Store) {
    let held = |row: NewState| NewState {
        maintenance: Some("silence #1: deploy".into()),
        held: true,
        ..row
    };
    let outage = insert(store, held(down(A, DIRECT, 1_000, "HTTP 503")));
    let other = insert(store, held(down(B, DIRECT, 1_000, "HTTP 503")));
    assert_eq!(outage.maintenance.as_deref(), Some("silence #1: deploy"));
    assert!(outage.held && other.held);
    let summary = notification("[api-monitor] OUTAGE: a (during maintenance)", at(2));
    let release = Commit {
        state: None,
        notifications: vec![summary],
        release: Some((A.into(), DIRECT.into())),
    };
    store.commit(&release).unwrap();
    store.commit(&release).unwrap();
    let a = store.last(A, DIRECT).unwrap().unwrap();
    assert!(!a.held, "released");
    assert_eq!(a.maintenance.as_deref(), Some("silence #1: deploy"), "still marked");
    assert!(store.last(B, DIRECT).unwrap().unwrap().held, "only that pair");
    assert_eq!(store.pending().unwrap().len(), 1, "the summary, once");
}

fn latency_row(target: &str, region: &str, span: Span, offset_ms: i64, ms: &[u64]) -> LatencyRow {
    let mut histogram = Histogram::default();
    for &m in ms {
        histogram.add(Duration::from_millis(m));
    }
    LatencyRow {
        target: target.into(),
        region: region.into(),
        span,
        start: span.start_of(at(offset_ms)),
        histogram,
    }
}

fn latency_rows_are_replaced_whole_read_by_pair_and_pruned(store: &mut dyn Store) {
    // Two targets sharing their first 300 characters: a key on a prefix must not mix them.
    let long_a = format!("https://x.example/{}?a", "p".repeat(300));
    let long_b = format!("https://x.example/{}?b", "p".repeat(300));
    let first = latency_row(&long_a, DIRECT, Span::Minute, 0, &[10, 20]);
    let other = latency_row(&long_b, DIRECT, Span::Minute, 0, &[900]);
    let later = latency_row(&long_a, EU, Span::Minute, 60_000, &[30]);
    store.record_latency(&[first.clone(), other.clone(), later.clone()]).unwrap();
    // A retry, then a replacement: one row per target, region, span and start, the last one.
    store.record_latency(std::slice::from_ref(&first)).unwrap();
    let replaced = latency_row(&long_a, DIRECT, Span::Minute, 0, &[10, 20, 40]);
    store.record_latency(std::slice::from_ref(&replaced)).unwrap();

    let (from, to) = (at(-3_600_000), at(3_600_000));
    let all = store.latency(Span::Minute, None, from, to).unwrap();
    assert_eq!(all, [replaced.clone(), later.clone(), other.clone()], "sorted, replaced");
    let mine = store.latency(Span::Minute, Some((&long_a, DIRECT)), from, to).unwrap();
    assert_eq!(mine, std::slice::from_ref(&replaced), "one pair, not its prefix twin");
    assert!(store.latency(Span::Hour, None, from, to).unwrap().is_empty(), "by span");
    let pairs = store.latency_pairs(Span::Minute, from, to).unwrap();
    let want = [
        (long_a.clone(), DIRECT.to_owned()),
        (long_a.clone(), EU.to_owned()),
        (long_b.clone(), DIRECT.to_owned()),
    ];
    assert_eq!(pairs, want, "each pair once, sorted");
    assert!(store.latency_pairs(Span::Hour, from, to).unwrap().is_empty());
    assert_eq!(
        store.latency(Span::Minute, None, later.start, to).unwrap(),
        std::slice::from_ref(&later),
        "from is inclusive"
    );

    // The roll-up makes the hour; run twice it is the same hour.
    let hour = Span::Hour.start_of(at(0));
    for _ in 0..2 {
        store::roll_up_latency(store, hour, hour.plus(Span::Hour.length()), at(0)).unwrap();
    }
    let hours = store.latency(Span::Hour, Some((&long_a, DIRECT)), from, to).unwrap();
    assert_eq!(hours.len(), 1);
    assert_eq!(hours[0].histogram.probes(), 3);

    assert_eq!(store.prune_latency(Span::Minute, later.start).unwrap(), 2, "the two at 0");
    assert_eq!(store.latency(Span::Minute, None, from, to).unwrap(), [later]);
    assert_eq!(store.latency(Span::Hour, None, from, to).unwrap().len(), 3, "hours stay");
}

fn holder(name: &str) -> Holder {
    Holder { id: store::new_key(), host: format!("host-{name}"), pid: 4_000 + name.len() as u32 }
}

const ALIVE: &dyn Fn(&Holder) -> bool = &|_| false;
const MINUTE: Duration = Duration::from_secs(60);

fn one_instance_holds_the_database(store: &mut dyn Store) {
    let (a, b, c, d) = (holder("a"), holder("bb"), holder("ccc"), holder("dddd"));
    assert_eq!(store.claim(&a, MINUTE, ALIVE).unwrap(), Claim::Granted, "nobody held it");
    assert_eq!(store.claim(&a, MINUTE, ALIVE).unwrap(), Claim::Granted, "a holds it already");
    assert!(store.heartbeat(&a).unwrap(), "a holds it");

    match store.claim(&b, MINUTE, ALIVE).unwrap() {
        Claim::Held { by, heartbeat_age } => {
            assert_eq!(by, a, "says who holds it");
            assert!(
                heartbeat_age < Duration::from_secs(10),
                "a fresh heartbeat: {heartbeat_age:?}"
            );
        }
        Claim::Granted => panic!("b took a database a holds"),
    }
    assert!(store.heartbeat(&a).unwrap(), "a refused claim changes nothing");
    assert!(!store.heartbeat(&b).unwrap(), "b does not hold it");

    // a stops heartbeating: after stale_after, b takes over.
    std::thread::sleep(Duration::from_millis(300));
    let stale = Duration::from_millis(200);
    assert_eq!(store.claim(&b, stale, ALIVE).unwrap(), Claim::Granted, "a's heartbeat is stale");
    assert!(!store.heartbeat(&a).unwrap(), "a learns it was taken over");
    assert!(store.heartbeat(&b).unwrap());
    assert!(matches!(store.claim(&a, MINUTE, ALIVE).unwrap(), Claim::Held { by, .. } if by == b));

    // b's process is gone (same host, no such pid): c need not wait for the heartbeat to age.
    let asked = std::cell::RefCell::new(Vec::new());
    let gone = |h: &Holder| {
        asked.borrow_mut().push(h.clone());
        h.id == b.id
    };
    assert_eq!(store.claim(&c, MINUTE, &gone).unwrap(), Claim::Granted);
    assert_eq!(*asked.borrow(), vec![b.clone()], "gone was asked about b (its host and pid)");
    assert!(!store.heartbeat(&b).unwrap());

    // A release by someone who does not hold it changes nothing; c's own release frees it.
    store.release(&b).unwrap();
    assert!(matches!(store.claim(&d, MINUTE, ALIVE).unwrap(), Claim::Held { by, .. } if by == c));
    store.release(&c).unwrap();
    assert!(!store.heartbeat(&c).unwrap(), "released");
    assert_eq!(store.claim(&d, MINUTE, ALIVE).unwrap(), Claim::Granted, "free at once");
    assert!(store.heartbeat(&d).unwrap());
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
    series_lists_each_target_and_region_once_sorted,
    commits_are_idempotent,
    outbox_life_cycle_pending_sent_dead_requeued,
    long_urls_and_subjects_are_stored_whole,
    one_instance_holds_the_database,
    silences_are_added_listed_and_cleared_early,
    held_rows_round_trip_and_are_released_with_the_summary,
    latency_rows_are_replaced_whole_read_by_pair_and_pruned,
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
                    assert!(matches!(e, StoreError::Permanent { .. }), "{url}: {e:?}");
                    assert!(e.is_permanent());
                    assert!(shown.contains("does not exist"), "says why: {shown}");
                    assert_one_clear_line(&e);
                } else {
                    assert!(matches!(e, StoreError::Url { .. }), "{url:?}: {e:?}");
                }
            }
        }
    }
    assert!(!missing_dir.exists(), "a missing directory is not created");
}

// ---------------------------------------------------------------------------------------------
// With a raw connection beside the store: atomicity, upgrade, version, permanent errors.
// ---------------------------------------------------------------------------------------------

/// Two instances claim at once a database whose holder they both believe gone: the locking
/// read serialises them, so the second sees the first as the new, fresh holder. (`gone` sleeps
/// to hold the race open: without the lock both would read the old holder and both win.)
fn concurrent_claims_have_one_winner(url: &str) {
    let old = holder("old");
    assert_eq!(open(url).claim(&old, MINUTE, ALIVE).unwrap(), Claim::Granted);
    let claims: Vec<Claim> = std::thread::scope(|scope| {
        let old = &old;
        let racers: Vec<_> = [holder("a"), holder("b")]
            .into_iter()
            .map(|me| {
                scope.spawn(move || {
                    let mut store = open(url);
                    let gone = |h: &Holder| {
                        std::thread::sleep(Duration::from_millis(300));
                        h.id == old.id
                    };
                    store.claim(&me, MINUTE, &gone).expect("claim")
                })
            })
            .collect();
        racers.into_iter().map(|racer| racer.join().expect("no panic")).collect()
    });
    let granted = claims.iter().filter(|c| **c == Claim::Granted).count();
    assert_eq!(granted, 1, "exactly one winner: {claims:?}");
}

#[test]
fn sqlite_concurrent_claims_have_one_winner() {
    let dir = TempDir::new("race");
    concurrent_claims_have_one_winner(&dir.sqlite_url());
}

#[test]
fn mysql_concurrent_claims_have_one_winner() {
    let Some(db) = scratch_db::mysql("race") else { return };
    concurrent_claims_have_one_winner(&db.url);
}

/// A raw SQLite connection to the store's file, as another program would open it.
fn raw_sqlite(dir: &TempDir) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.path().join("state.db")).expect("raw sqlite connection")
}

/// A raw connection to the scratch database, as another program would open it.
fn raw_mysql(db: &scratch_db::ScratchDb) -> mysql::Conn {
    use mysql::prelude::Queryable;
    let mut conn = db.admin().expect("admin connection");
    conn.query_drop(format!("USE `{}`", db.name)).expect("use the scratch database");
    conn
}

/// Runs the statements of a schema file (comment lines dropped, split on `;`).
fn run_mysql_file(conn: &mut mysql::Conn, sql: &str) {
    use mysql::prelude::Queryable;
    let code: Vec<&str> = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect();
    for statement in code.join("\n").split(';').map(str::trim).filter(|s| !s.is_empty()) {
        conn.query_drop(statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// A failing notification insert leaves no state row behind, then the same commit succeeds.
fn a_commit_is_all_or_nothing(
    store: &mut dyn Store,
    fail_inserts: impl FnOnce(),
    heal: impl FnOnce(),
) {
    let commit = Commit {
        state: Some(down(A, DIRECT, 1_000, "HTTP 503")),
        notifications: vec![notification("[api-monitor] OUTAGE: a is down", at(1))],
        release: None,
    };
    fail_inserts();
    let e = store.commit(&commit).expect_err("the trigger makes the notification insert fail");
    assert!(!e.is_permanent(), "a failed statement is not a permanent fault: {e}");
    assert!(e.to_string().contains("boom"), "the database's reason: {e}");
    assert_eq!(store.since(A, DIRECT, at(0)).unwrap(), vec![], "no state row without its email");
    assert!(store.pending().unwrap().is_empty());
    heal();
    let id = store.commit(&commit).unwrap().expect("an id");
    assert_eq!(
        store.since(A, DIRECT, at(0)).unwrap().iter().map(|r| r.id).collect::<Vec<_>>(),
        [id]
    );
    assert_eq!(store.pending().unwrap().len(), 1);
}

#[test]
fn sqlite_commit_is_atomic() {
    let dir = TempDir::new("atomic");
    let mut store = open(&dir.sqlite_url());
    let raw = raw_sqlite(&dir);
    a_commit_is_all_or_nothing(
        &mut *store,
        || {
            raw.execute_batch(
                "CREATE TRIGGER boom BEFORE INSERT ON notification \
                 BEGIN SELECT RAISE(ABORT, 'boom'); END",
            )
            .unwrap()
        },
        || raw.execute_batch("DROP TRIGGER boom").unwrap(),
    );
}

#[test]
fn mysql_commit_is_atomic() {
    use mysql::prelude::Queryable;
    let Some(db) = scratch_db::mysql("atomic") else { return };
    let mut store = open(&db.url);
    let raw = std::cell::RefCell::new(raw_mysql(&db));
    a_commit_is_all_or_nothing(
        &mut *store,
        || {
            raw.borrow_mut()
                .query_drop(
                    "CREATE TRIGGER boom BEFORE INSERT ON notification FOR EACH ROW \
                     SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'boom'",
                )
                .unwrap()
        },
        || raw.borrow_mut().query_drop("DROP TRIGGER boom").unwrap(),
    );
}

/// Delivers two notifications through `store`, one with refused recipients far longer than
/// the column; returns their keys. What was stored is read back raw by the caller (a sent
/// notification is neither pending nor dead, so the trait cannot show it).
fn deliver_with_refusals(store: &mut dyn Store) -> (String, String, String) {
    let partial = notification("partial", at(1));
    let whole = notification("whole", at(2));
    let commit =
        Commit { state: None, notifications: vec![partial.clone(), whole.clone()], release: None };
    store.commit(&commit).unwrap();
    let refused: String = "x@example.com: 550 5.1.1 no such user 🚨, ".repeat(100);
    store.record_sent(&partial.key, 1, at(10), Some(&refused)).unwrap();
    store.record_sent(&whole.key, 2, at(11), None).unwrap();
    assert!(store.pending().unwrap().is_empty());
    (partial.key, whole.key, refused)
}

/// `stored` is `refused` clipped to the column's 2048 characters.
fn assert_refused_clipped(stored: &str, refused: &str) {
    assert_eq!(stored.chars().count(), 2048, "clipped to the column, never a failed write");
    assert!(refused.starts_with(stored), "on a character boundary");
}

#[test]
fn sqlite_sent_notifications_keep_their_refusals() {
    let dir = TempDir::new("refused");
    let mut store = open(&dir.sqlite_url());
    let (partial, whole, refused) = deliver_with_refusals(&mut *store);
    let raw = raw_sqlite(&dir);
    let read = |key: &str| -> (u32, Option<String>, Option<String>) {
        raw.query_row(
            "SELECT attempts, sent_at, refused FROM notification WHERE row_key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    let (attempts, sent_at, stored) = read(&partial);
    assert_eq!((attempts, sent_at.as_deref()), (1, Some(at(10).to_sql().as_str())));
    assert_refused_clipped(&stored.expect("refusals kept"), &refused);
    assert_eq!(read(&whole), (2, Some(at(11).to_sql()), None), "nobody refused");
}

#[test]
fn mysql_sent_notifications_keep_their_refusals() {
    use mysql::prelude::Queryable;
    let Some(db) = scratch_db::mysql("refused") else { return };
    let mut store = open(&db.url);
    let (partial, whole, refused) = deliver_with_refusals(&mut *store);
    let mut raw = raw_mysql(&db);
    let mut read = |key: &str| -> (u32, Option<String>, Option<String>) {
        raw.exec_first(
            "SELECT attempts, CAST(sent_at AS CHAR), refused FROM notification WHERE row_key = ?",
            (key,),
        )
        .unwrap()
        .expect("the row")
    };
    let (attempts, sent_at, stored) = read(&partial);
    assert_eq!((attempts, sent_at.as_deref()), (1, Some(at(10).to_sql().as_str())));
    assert_refused_clipped(&stored.expect("refusals kept"), &refused);
    assert_eq!(read(&whole), (2, Some(at(11).to_sql()), None), "nobody refused");
}

/// A MySQL user `apimon_<tag>_<pid>` with only `privileges` on the scratch database, dropped
/// on drop.
struct LimitedUser<'a> {
    db: &'a scratch_db::ScratchDb,
    name: String,
    url: String,
}

impl<'a> LimitedUser<'a> {
    fn new(db: &'a scratch_db::ScratchDb, tag: &str, privileges: &str) -> Self {
        use mysql::prelude::Queryable;
        let name = format!("apimon_{tag}_{}", std::process::id());
        let mut admin = db.admin().unwrap();
        admin.query_drop(format!("DROP USER IF EXISTS '{name}'@'127.0.0.1'")).unwrap();
        admin
            .query_drop(format!("CREATE USER '{name}'@'127.0.0.1' IDENTIFIED BY 'pw-ro'"))
            .unwrap();
        admin
            .query_drop(format!("GRANT {privileges} ON `{}`.* TO '{name}'@'127.0.0.1'", db.name))
            .unwrap();
        let mut url = url::Url::parse(&db.url).unwrap();
        url.set_username(&name).unwrap();
        url.set_password(Some("pw-ro")).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        LimitedUser { db, name, url: url.into() }
    }
}

impl Drop for LimitedUser<'_> {
    fn drop(&mut self) {
        use mysql::prelude::Queryable;
        if let Ok(mut admin) = self.db.admin() {
            let _ = admin.query_drop(format!("DROP USER IF EXISTS '{}'@'127.0.0.1'", self.name));
        }
    }
}

#[test]
fn mysql_missing_privilege_is_permanent() {
    let Some(db) = scratch_db::mysql("privilege") else { return };
    drop(open(&db.url));
    let reader = LimitedUser::new(&db, "ro", "SELECT");
    let e = assert_permanent(store::open(&reader.url), "1142", "pw-ro");
    eprintln!("missing privilege: {e}");
}

#[test]
fn mysql_no_access_to_the_database_is_permanent() {
    let Some(db) = scratch_db::mysql("no_access") else { return };
    let stranger = LimitedUser::new(&db, "none", "USAGE");
    let e = assert_permanent(store::open(&stranger.url), "1044", "pw-ro");
    eprintln!("no access: {e}");
}

/// What the version 1 fixture database holds: an outage row and its unsent email.
const V1_TARGET: &str = "https://legacy.example/health";
const V1_SUBJECT: &str = "[api-monitor] OUTAGE: legacy is down";

/// Opens the upgraded version 1 database: its row and unsent email are still there, the email
/// is delivered by its new key, and the new schema works (keys, long subjects, the lock).
fn a_version_1_database_is_upgraded_at_open(url: &str) {
    let mut store = open(url);
    let row = store.last(V1_TARGET, DIRECT).unwrap().expect("the version 1 row");
    assert_eq!((row.healthy, row.reason.as_deref()), (false, Some("HTTP 503")));
    assert_eq!(row.timestamp, Timestamp::parse_sql("2026-11-18 11:06:40.123").unwrap());
    let pending = store.pending().unwrap();
    assert_eq!(pending.len(), 1, "the version 1 unsent email is pending");
    let legacy = &pending[0];
    assert_eq!(legacy.notification.subject, V1_SUBJECT);
    assert_eq!(legacy.notification.key, format!("v1-{}", legacy.id), "keyed by its id");
    assert_eq!((legacy.attempts, legacy.last_error.as_deref()), (2, Some("451 later")));

    // Reopening (the upgrade again) is harmless.
    drop(store);
    let mut store = open(url);
    assert_eq!(store.pending().unwrap().len(), 1);

    let subject = format!("[api-monitor] OUTAGE: {} is down", "s".repeat(3_000));
    let later = Commit {
        state: Some(up(V1_TARGET, DIRECT, 9_000)),
        notifications: vec![notification(&subject, at(9_000))],
        release: None,
    };
    store.commit(&later).unwrap();
    store.commit(&later).unwrap();
    assert_eq!(store.since(V1_TARGET, DIRECT, at(0)).unwrap().len(), 2, "one new row, not two");
    let pending = store.pending().unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[1].notification.subject, subject, "the widened subject holds it");

    store.record_sent(&legacy.notification.key, 3, at(9_001), None).unwrap();
    assert_eq!(keys(&store.pending().unwrap()), [&later.notifications[0].key], "delivered by key");
    assert_eq!(store.claim(&holder("a"), MINUTE, ALIVE).unwrap(), Claim::Granted);
}

#[test]
fn sqlite_version_1_database_is_upgraded_at_open() {
    let dir = TempDir::new("v1");
    let raw = raw_sqlite(&dir);
    raw.execute_batch(include_str!("fixtures/schema_v1_sqlite.sql")).unwrap();
    raw.execute_batch(&format!(
        "INSERT INTO state (timestamp, healthy, target, region, reason) \
         VALUES ('2026-11-18 11:06:40.123', 0, '{V1_TARGET}', 'direct', 'HTTP 503');
         INSERT INTO notification (state_id, target, region, recipients, subject, text, html, \
         created_at, attempts, last_error) VALUES (1, '{V1_TARGET}', 'direct', 'a@example.com', \
         '{V1_SUBJECT}', 'text', '<p>html</p>', '2026-11-18 11:06:41.000', 2, '451 later');"
    ))
    .unwrap();
    drop(raw);
    a_version_1_database_is_upgraded_at_open(&dir.sqlite_url());
    let version: i64 =
        raw_sqlite(&dir).query_row("SELECT version FROM schema_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 3);
}

#[test]
fn mysql_version_1_database_is_upgraded_at_open() {
    use mysql::prelude::Queryable;
    let Some(db) = scratch_db::mysql("v1") else { return };
    let mut raw = raw_mysql(&db);
    run_mysql_file(&mut raw, include_str!("fixtures/schema_v1_mysql.sql"));
    raw.exec_drop(
        "INSERT INTO state (`timestamp`, healthy, target, region, reason) \
         VALUES ('2026-11-18 11:06:40.123', 0, ?, 'direct', 'HTTP 503')",
        (V1_TARGET,),
    )
    .unwrap();
    raw.exec_drop(
        "INSERT INTO notification (state_id, target, region, recipients, subject, `text`, html, \
         created_at, attempts, last_error) VALUES (1, ?, 'direct', 'a@example.com', ?, 'text', \
         '<p>html</p>', '2026-11-18 11:06:41.000', 2, '451 later')",
        (V1_TARGET, V1_SUBJECT),
    )
    .unwrap();
    a_version_1_database_is_upgraded_at_open(&db.url);
    let version: Option<i64> = raw.query_first("SELECT version FROM schema_version").unwrap();
    assert_eq!(version, Some(3));
}

/// A database whose schema is newer than this binary is refused, in one line, untouched, by
/// the monitor's open and by the read-only one alike.
fn assert_too_new(url: &str) {
    assert_too_new_for(url, store::open);
    assert_too_new_for(url, store::open_read_only);
}

fn assert_too_new_for(url: &str, open: fn(&str) -> Result<Box<dyn Store>, StoreError>) {
    match open(url) {
        Ok(_) => panic!("opened a database of schema version 4"),
        Err(e) => {
            assert!(matches!(e, StoreError::Permanent { .. }), "{e:?}");
            assert!(e.is_permanent());
            assert!(
                e.to_string().ends_with(
                    "schema version 4 is newer than this api-monitor understands (3): upgrade \
                     api-monitor"
                ),
                "{e}"
            );
            assert_one_clear_line(&e);
        }
    }
}

#[test]
fn sqlite_schema_too_new_is_permanent() {
    let dir = TempDir::new("too-new");
    drop(open(&dir.sqlite_url()));
    raw_sqlite(&dir).execute("UPDATE schema_version SET version = 4", []).unwrap();
    assert_too_new(&dir.sqlite_url());
    let version: i64 =
        raw_sqlite(&dir).query_row("SELECT version FROM schema_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 4, "left as it was");
}

#[test]
fn mysql_schema_too_new_is_permanent() {
    use mysql::prelude::Queryable;
    let Some(db) = scratch_db::mysql("too_new") else { return };
    drop(open(&db.url));
    raw_mysql(&db).query_drop("UPDATE schema_version SET version = 4").unwrap();
    assert_too_new(&db.url);
}

/// `result` is [`StoreError::Permanent`], one clear line, containing `needle` and not
/// `secret`.
fn assert_permanent<T>(result: Result<T, StoreError>, needle: &str, secret: &str) -> StoreError {
    let Err(e) = result else { panic!("expected a permanent error, got success") };
    assert!(matches!(e, StoreError::Permanent { .. }), "expected Permanent, got {e:?}");
    assert!(e.is_permanent());
    assert_one_clear_line(&e);
    let shown = format!("{e} / {e:?}");
    assert!(shown.contains(needle), "{needle:?} in {e}");
    assert!(!shown.contains(secret), "secret leaked: {shown}");
    e
}

#[test]
fn sqlite_garbage_file_is_permanent() {
    let dir = TempDir::new("garbage");
    std::fs::write(dir.path().join("state.db"), "not a database\n".repeat(500)).unwrap();
    let e = assert_permanent(store::open(&dir.sqlite_url()), "not a SQLite database", "\0");
    eprintln!("garbage file: {e}");
    let read = assert_permanent(store::open_read_only(&dir.sqlite_url()), "not a SQLite", "\0");
    assert_eq!(read.to_string(), e.to_string(), "the read-only open says the same");
}

#[test]
fn sqlite_missing_directory_is_permanent() {
    let dir = TempDir::new("missing-dir");
    let url = format!("sqlite://{}", dir.path().join("nope/state.db").display());
    let e = assert_permanent(store::open(&url), "does not exist", "\0");
    eprintln!("missing directory: {e}");
}

#[test]
fn sqlite_vanished_file_is_permanent_and_told_apart() {
    let dir = TempDir::new("vanished");
    let mut store = open(&dir.sqlite_url());
    let me = holder("me");
    assert_eq!(store.claim(&me, MINUTE, ALIVE).unwrap(), Claim::Granted);
    insert(&mut *store, up(A, DIRECT, 0));
    std::fs::remove_file(dir.path().join("state.db")).unwrap();
    let commit = Commit { state: Some(up(A, DIRECT, 1)), notifications: Vec::new(), release: None };
    let e = assert_vanished(store.commit(&commit));
    eprintln!("vanished file: {e}");
    assert_vanished(store.heartbeat(&me));

    // Another file at the same path (a restore, a second instance's fresh database) is no
    // better: the store's writes would go to the old, unlinked one.
    drop(open(&dir.sqlite_url()));
    assert_vanished(store.commit(&commit));
}

/// `result` is [`StoreError::Vanished`] (the runtime stops on it), permanent, one clear line.
fn assert_vanished<T>(result: Result<T, StoreError>) -> StoreError {
    let Err(e) = result else { panic!("expected a vanished file, got success") };
    assert!(matches!(e, StoreError::Vanished { .. }), "expected Vanished, got {e:?}");
    assert!(e.is_permanent());
    assert_one_clear_line(&e);
    assert!(e.to_string().contains("was deleted or replaced"), "{e}");
    e
}

#[test]
fn sqlite_memory_has_no_file_to_vanish() {
    let mut store = open("sqlite://:memory:");
    let me = holder("me");
    assert_eq!(store.claim(&me, MINUTE, ALIVE).unwrap(), Claim::Granted);
    insert(&mut *store, up(A, DIRECT, 0));
    assert!(store.heartbeat(&me).unwrap());
}

#[test]
fn mysql_wrong_password_is_permanent_without_the_password() {
    let Some(db) = scratch_db::mysql("wrong_password") else { return };
    let password = "hunter2-not-the-password";
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_password(Some(password)).unwrap();
    let e = assert_permanent(store::open(url.as_str()), "Access denied", password);
    assert!(e.to_string().contains("***"), "the URL is shown, masked: {e}");
    eprintln!("wrong password: {e}");
}

#[test]
fn mysql_wrong_password_of_the_test_server_is_permanent() {
    // The URL the brief names: root has no password here, so any password is wrong.
    if scratch_db::mysql("wrong_password_root").is_none() {
        return;
    }
    assert_permanent(store::open("mysql://root:wrong@127.0.0.1:3306/test"), "error 1045", "wrong");
}

#[test]
fn mysql_unknown_database_is_permanent() {
    let Some(db) = scratch_db::mysql("unknown_db") else { return };
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_path(&format!("/{}_missing", db.name));
    let e = assert_permanent(store::open(url.as_str()), "Unknown database", "\0");
    eprintln!("unknown database: {e}");
}

#[test]
fn mysql_database_dropped_mid_run_is_permanent() {
    use mysql::prelude::Queryable;
    let Some(db) = scratch_db::mysql("dropped") else { return };
    let mut store = open(&db.url);
    insert(&mut *store, up(A, DIRECT, 0));
    let mut admin = db.admin().unwrap();
    admin.query_drop(format!("DROP DATABASE `{}`", db.name)).unwrap();
    kill_store_connections(&db);
    let commit = Commit { state: Some(up(A, DIRECT, 1)), notifications: Vec::new(), release: None };
    let e = assert_permanent(store.commit(&commit), "Unknown database", "\0");
    eprintln!("dropped mid-run: {e}");
}

// ---------------------------------------------------------------------------------------------
// MySQL connection faults.
// ---------------------------------------------------------------------------------------------

/// Asserts `result` is a `Connect` error with no trace of `password` in Display or Debug.
fn assert_connect_error_without(result: Result<Box<dyn Store>, StoreError>, password: &str) {
    match result {
        Ok(_) => panic!("connected with a bad configuration"),
        Err(e @ StoreError::Connect { .. }) => {
            eprintln!("transient: {e}");
            assert!(!e.is_permanent(), "waiting may cure it: {e}");
            assert_one_clear_line(&e);
            let shown = format!("{e} / {e:?}");
            assert!(!shown.contains(password), "password leaked: {shown}");
            assert!(shown.contains("***"), "the URL is shown, masked: {shown}");
        }
        Err(e) => panic!("expected StoreError::Connect, got {e:?}"),
    }
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

// ---------------------------------------------------------------------------------------------
// Read-only opens (`report`, `outbox`): nothing is created, applied, upgraded or written.
// ---------------------------------------------------------------------------------------------

/// A read-only open of the database at `url`, which the monitor's open wrote a row into: the
/// row reads back, and a write is refused in one clear line and changes nothing.
fn read_only_reads_and_writes_nothing(url: &str) {
    let mut monitor = open(url);
    let row = insert(&mut *monitor, down(A, DIRECT, 0, "HTTP 503"));
    drop(monitor);
    let mut reader = store::open_read_only(url).expect("read-only open");
    assert_eq!(reader.last(A, DIRECT).unwrap(), Some(row.clone()));
    assert_eq!(reader.series().unwrap(), [(A.to_owned(), DIRECT.to_owned())]);
    assert!(reader.pending().unwrap().is_empty() && reader.dead().unwrap().is_empty());
    let write =
        Commit { state: Some(up(A, DIRECT, 1_000)), notifications: Vec::new(), release: None };
    let refused = reader.commit(&write).expect_err("a read-only store writes nothing");
    assert_one_clear_line(&refused);
    assert_eq!(reader.since(A, DIRECT, at(-1)).unwrap(), [row], "nothing was written");
}

/// `result` is [`StoreError::NoDatabase`] reading `expected`.
fn assert_no_database<T>(result: Result<T, StoreError>, expected: &str) {
    match result {
        Ok(_) => panic!("a read-only open found a database: expected {expected:?}"),
        Err(e) => {
            assert!(matches!(e, StoreError::NoDatabase { .. }), "{e:?}");
            assert!(!e.is_permanent(), "the monitor may create it yet: {e:?}");
            assert_eq!(e.to_string(), expected);
        }
    }
}

/// `result` is [`StoreError::OldSchema`] for version 1, in one line.
fn assert_old_schema<T>(result: Result<T, StoreError>) {
    match result {
        Ok(_) => panic!("a read-only open read a version 1 database"),
        Err(e) => {
            assert!(matches!(e, StoreError::OldSchema { found: 1, .. }), "{e:?}");
            assert!(
                e.to_string().ends_with(
                    "schema version 1 is older than this api-monitor's (3): run the monitor \
                     once to upgrade it"
                ),
                "{e}"
            );
            assert_one_clear_line(&e);
        }
    }
}

#[test]
fn sqlite_read_only_reads_and_writes_nothing() {
    let dir = TempDir::new("ro");
    read_only_reads_and_writes_nothing(&dir.sqlite_url());
}

#[test]
fn sqlite_read_only_creates_no_file() {
    let dir = TempDir::new("ro-missing");
    let url = dir.sqlite_url();
    assert_no_database(
        store::open_read_only(&url),
        &format!("no database at {url} (start the monitor first, or pass --db)"),
    );
    let missing_dir = format!("sqlite://{}", dir.path().join("nope/state.db").display());
    assert_no_database(
        store::open_read_only(&missing_dir),
        &format!("no database at {missing_dir} (start the monitor first, or pass --db)"),
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "no file created: {left:?}");
}

#[test]
fn sqlite_read_only_finds_no_tables_in_an_empty_file() {
    let dir = TempDir::new("ro-empty");
    let path = dir.path().join("state.db");
    std::fs::write(&path, b"").unwrap();
    let url = dir.sqlite_url();
    assert_no_database(
        store::open_read_only(&url),
        &format!("no api-monitor tables in {url} (start the monitor first, or pass --db)"),
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "still empty: no schema applied");
}

#[test]
fn sqlite_read_only_leaves_a_version_1_database_as_it_is() {
    let dir = TempDir::new("ro-v1");
    raw_sqlite(&dir).execute_batch(include_str!("fixtures/schema_v1_sqlite.sql")).unwrap();
    assert_old_schema(store::open_read_only(&dir.sqlite_url()));
    let upgraded: bool = raw_sqlite(&dir)
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!upgraded, "not upgraded: a read-only open writes nothing");
}

/// The tables of the scratch database.
fn mysql_tables(db: &scratch_db::ScratchDb) -> Vec<String> {
    use mysql::prelude::Queryable;
    raw_mysql(db)
        .query("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()")
        .unwrap()
}

#[test]
fn mysql_read_only_applies_no_schema_and_writes_nothing() {
    let Some(db) = scratch_db::mysql("ro") else { return };
    let shown = api_monitor::redact::url(&db.url);
    assert_no_database(
        store::open_read_only(&db.url),
        &format!("no api-monitor tables in {shown} (start the monitor first, or pass --db)"),
    );
    assert!(mysql_tables(&db).is_empty(), "no schema applied: {:?}", mysql_tables(&db));
    read_only_reads_and_writes_nothing(&db.url);
}

#[test]
fn mysql_read_only_leaves_a_version_1_database_as_it_is() {
    let Some(db) = scratch_db::mysql("ro_v1") else { return };
    run_mysql_file(&mut raw_mysql(&db), include_str!("fixtures/schema_v1_mysql.sql"));
    assert_old_schema(store::open_read_only(&db.url));
    let tables = mysql_tables(&db);
    assert!(!tables.iter().any(|t| t == "schema_version"), "not upgraded: {tables:?}");
}
