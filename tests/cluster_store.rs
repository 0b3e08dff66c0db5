//! The cluster's tables on a real MariaDB/MySQL ([`ClusterStore`] of `MysqlStore`): member
//! heartbeats and ages by the database's clock, the leader lease taken, kept and lost through
//! conditional statements, writes fenced by the term, and a race for an expired lease.
//!
//! A scratch database per test (`TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`);
//! without a server the tests print `SKIPPED:` and pass, unless `REQUIRE_MYSQL=1`.

#[path = "support/scratch_db.rs"]
mod scratch_db;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use api_monitor::cluster::lease::{decide, LeaderRow, LeaseDecision};
use api_monitor::cluster::MemberId;
use api_monitor::store::cluster::ClusterStore;
use api_monitor::store::mysql::MysqlStore;
use api_monitor::store::{self, Commit, NewState, Notification};
use api_monitor::timestamp::Timestamp;
use mysql::prelude::Queryable;

const CLUSTER: &str = "prod";
/// Short, so that a lease expires within a test; long enough that a fresh one stays fresh
/// between a read and the write that follows it.
const LEASE: Duration = Duration::from_millis(300);
const TARGET: &str = "https://a.example/health";

/// The store as cluster mode opens it: `store::cluster::open`, a `Box<dyn ClusterStore>` that is
/// a `Store` too.
fn open(db: &scratch_db::ScratchDb) -> Box<dyn ClusterStore> {
    store::cluster::open(&db.url).unwrap_or_else(|e| panic!("cannot open {}: {e}", db.name))
}

fn id(name: &str) -> MemberId {
    MemberId::new(name)
}

/// Polls `read` until `done` holds of what it returns (ages come from the database's clock, so
/// waiting is polling it, not sleeping a fixed time); panics after 10 s.
fn wait_for<T: std::fmt::Debug>(
    what: &str,
    mut read: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = read();
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: still {value:?} after 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The leader row once its lease has expired by the database's clock.
fn expired_leader(store: &mut dyn ClusterStore) -> LeaderRow {
    wait_for(
        "the lease to expire",
        || store.leader(CLUSTER).expect("leader").expect("a leader row"),
        |row| row.age >= LEASE,
    )
}

/// `me` reads the leader row, decides, and carries the decision out: whether it leads now.
fn read_decide_lead(store: &mut dyn ClusterStore, me: &MemberId) -> (LeaseDecision, bool) {
    let row = store.leader(CLUSTER).expect("leader");
    let decision = decide(row.as_ref(), me, LEASE);
    let won = store.lead(CLUSTER, me, &decision, LEASE).expect("lead");
    (decision, won)
}

/// A transition and its outage email, as the leader would write them.
fn outage(subject: &str) -> Commit {
    let at = Timestamp::from_millis(1_795_000_000_123);
    Commit {
        state: Some(NewState {
            key: store::new_key(),
            timestamp: at,
            healthy: false,
            target: TARGET.into(),
            region: "direct".into(),
            reason: Some("HTTP 503".into()),
        }),
        notifications: vec![Notification {
            key: store::new_key(),
            target: TARGET.into(),
            region: "direct".into(),
            recipients: "oncall@example.com".into(),
            subject: subject.into(),
            text: "down".into(),
            html: "<p>down</p>".into(),
            created_at: at,
        }],
    }
}

/// `(started_at, heartbeat_at)` of a member row, as text, read beside the store.
fn member_times(db: &scratch_db::ScratchDb, me: &MemberId) -> (String, String) {
    let mut raw = db.admin().expect("admin connection");
    raw.query_drop(format!("USE `{}`", db.name)).expect("use the scratch database");
    raw.exec_first(
        "SELECT CAST(started_at AS CHAR), CAST(heartbeat_at AS CHAR) FROM cluster_member \
         WHERE cluster = ? AND instance_id = ?",
        (CLUSTER, me.as_str()),
    )
    .expect("member times")
    .expect("a member row")
}

#[test]
fn a_members_age_grows_until_its_next_beat_resets_it() {
    let Some(db) = scratch_db::mysql("cluster_age") else { return };
    let mut store = open(&db);
    let a = id("a");
    assert!(store.members(CLUSTER).unwrap().is_empty(), "nobody before the first beat");
    store.beat(CLUSTER, &a, "eu", "1.0.0").unwrap();
    let (started, first_beat) = member_times(&db, &a);
    let old = wait_for(
        "the member's age to grow",
        || store.members(CLUSTER).unwrap(),
        |rows| rows.len() == 1 && rows[0].age >= Duration::from_millis(200),
    );
    assert_eq!(old[0].id, a);

    store.beat(CLUSTER, &a, "eu", "1.0.1").unwrap();
    let fresh = store.members(CLUSTER).unwrap();
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert!(fresh[0].age < old[0].age, "reset by the beat: {fresh:?} after {old:?}");
    assert!(fresh[0].age < Duration::from_millis(150), "{fresh:?}");
    let (started_again, second_beat) = member_times(&db, &a);
    assert_eq!(started_again, started, "started_at is kept from the first insert");
    assert!(second_beat > first_beat, "{second_beat} after {first_beat}");
}

#[test]
fn members_lists_each_member_once_with_its_site() {
    let Some(db) = scratch_db::mysql("cluster_members") else { return };
    let mut store = open(&db);
    for _ in 0..3 {
        store.beat(CLUSTER, &id("b"), "us", "1.0.0").unwrap();
        store.beat(CLUSTER, &id("a"), "eu", "1.0.0").unwrap();
    }
    store.beat("staging", &id("c"), "eu", "1.0.0").unwrap();
    let rows = store.members(CLUSTER).unwrap();
    let listed: Vec<(&str, &str)> =
        rows.iter().map(|row| (row.id.as_str(), row.site.as_str())).collect();
    assert_eq!(listed, [("a", "eu"), ("b", "us")], "once each, sorted, this cluster only");
    assert!(rows.iter().all(|row| row.age < LEASE), "alive: {rows:?}");

    store.beat(CLUSTER, &id("a"), "ap", "1.0.0").unwrap();
    let sites: Vec<String> = store.members(CLUSTER).unwrap().into_iter().map(|r| r.site).collect();
    assert_eq!(sites, ["ap", "us"], "a member that moves site says so at its next beat");
}

#[test]
fn the_first_lead_wins_term_1_and_a_second_contender_loses() {
    let Some(db) = scratch_db::mysql("cluster_first") else { return };
    let (mut a_store, mut b_store) = (open(&db), open(&db));
    let (a, b) = (id("a"), id("b"));
    assert_eq!(a_store.leader(CLUSTER).unwrap(), None, "no leader yet");

    // Both read the same (empty) state and decide to take over with term 1.
    let a_decision = decide(a_store.leader(CLUSTER).unwrap().as_ref(), &a, LEASE);
    let b_decision = decide(b_store.leader(CLUSTER).unwrap().as_ref(), &b, LEASE);
    assert_eq!(a_decision, LeaseDecision::TakeOver { next_term: 1 });
    assert_eq!(b_decision, a_decision);
    assert!(a_store.lead(CLUSTER, &a, &a_decision, LEASE).unwrap(), "the first wins");
    assert!(!b_store.lead(CLUSTER, &b, &b_decision, LEASE).unwrap(), "the second loses");

    let row = b_store.leader(CLUSTER).unwrap().expect("a leader row");
    assert_eq!((row.holder.as_str(), row.term), ("a", 1));
    assert!(row.age < LEASE, "{row:?}");
    assert_eq!(read_decide_lead(&mut *a_store, &a), (LeaseDecision::Keep { term: 1 }, true));
    assert_eq!(
        read_decide_lead(&mut *b_store, &b),
        (LeaseDecision::Follow { leader: a.clone(), term: 1 }, false)
    );
    assert!(
        !b_store.lead(CLUSTER, &b, &LeaseDecision::Keep { term: 1 }, LEASE).unwrap(),
        "a renewal of someone else's term matches nothing"
    );
    assert_eq!(a_store.leader(CLUSTER).unwrap().map(|r| (r.holder, r.term)), Some((a, 1)));
}

#[test]
fn after_the_lease_a_contender_takes_over_with_term_2_and_the_old_renewal_fails() {
    let Some(db) = scratch_db::mysql("cluster_takeover") else { return };
    let (mut a_store, mut b_store) = (open(&db), open(&db));
    let (a, b) = (id("a"), id("b"));
    assert!(a_store.lead(CLUSTER, &a, &LeaseDecision::TakeOver { next_term: 1 }, LEASE).unwrap());
    assert!(
        !b_store.lead(CLUSTER, &b, &LeaseDecision::TakeOver { next_term: 2 }, LEASE).unwrap(),
        "the database refuses a takeover of a fresh lease, whatever the caller decided"
    );

    let expired = expired_leader(&mut *b_store);
    assert_eq!((expired.holder.as_str(), expired.term), ("a", 1));
    assert!(
        !a_store.lead(CLUSTER, &a, &LeaseDecision::Keep { term: 1 }, LEASE).unwrap(),
        "an expired lease is not renewed, even by its holder"
    );
    let b_decision = decide(Some(&expired), &b, LEASE);
    assert_eq!(b_decision, LeaseDecision::TakeOver { next_term: 2 });
    assert!(b_store.lead(CLUSTER, &b, &b_decision, LEASE).unwrap(), "b takes over");
    let row = a_store.leader(CLUSTER).unwrap().expect("a leader row");
    assert_eq!((row.holder.as_str(), row.term), ("b", 2));

    // a froze before its renewal and wakes up now: its term is gone.
    assert!(!a_store.lead(CLUSTER, &a, &LeaseDecision::Keep { term: 1 }, LEASE).unwrap());
    // A takeover decided from the old expired row, late: that term is gone too.
    let a_stale = decide(Some(&expired), &a, LEASE);
    assert!(!a_store.lead(CLUSTER, &a, &a_stale, LEASE).unwrap(), "decided from a stale row");
    assert!(!b_store.lead(CLUSTER, &b, &b_decision, LEASE).unwrap(), "taken once, not twice");
    let row = a_store.leader(CLUSTER).unwrap().expect("a leader row");
    assert_eq!((row.holder.as_str(), row.term), ("b", 2), "unchanged by the losers");
    assert_eq!(read_decide_lead(&mut *b_store, &b), (LeaseDecision::Keep { term: 2 }, true));
    assert_eq!(
        read_decide_lead(&mut *a_store, &a),
        (LeaseDecision::Follow { leader: b, term: 2 }, false)
    );

    // Even once term 2 has expired in turn, a takeover decided from term 1 is refused: it is the
    // term read that is taken over, not whatever term is there now.
    assert_eq!(expired_leader(&mut *a_store).term, 2);
    assert!(!a_store.lead(CLUSTER, &a, &a_stale, LEASE).unwrap(), "decided from term 1");
    let row = a_store.leader(CLUSTER).unwrap().expect("a leader row");
    assert_eq!((row.holder.as_str(), row.term), ("b", 2));
}

#[test]
fn a_deposed_leaders_fenced_commit_writes_nothing_and_the_new_leaders_does() {
    let Some(db) = scratch_db::mysql("cluster_fenced") else { return };
    let (mut a_store, mut b_store) = (open(&db), open(&db));
    let (a, b) = (id("a"), id("b"));
    assert!(!a_store.commit_fenced(CLUSTER, &a, 1, &outage("no leader")).unwrap(), "no row");
    assert!(a_store.lead(CLUSTER, &a, &LeaseDecision::TakeOver { next_term: 1 }, LEASE).unwrap());
    assert!(
        !b_store.commit_fenced(CLUSTER, &b, 1, &outage("not the holder")).unwrap(),
        "a follower's write is refused"
    );
    let expired = expired_leader(&mut *b_store);
    assert!(b_store.lead(CLUSTER, &b, &decide(Some(&expired), &b, LEASE), LEASE).unwrap());

    assert!(
        !a_store.commit_fenced(CLUSTER, &a, 1, &outage("stale")).unwrap(),
        "the deposed leader's write is refused"
    );
    assert_eq!(a_store.last(TARGET, "direct").unwrap(), None, "no state row");
    assert!(a_store.pending().unwrap().is_empty(), "no notification");

    let new = outage("fresh");
    assert!(b_store.commit_fenced(CLUSTER, &b, 2, &new).unwrap(), "the new leader writes");
    let row = a_store.last(TARGET, "direct").unwrap().expect("the new leader's row");
    assert!(!row.healthy);
    let pending = a_store.pending().unwrap();
    let subjects: Vec<&str> = pending.iter().map(|e| e.notification.subject.as_str()).collect();
    assert_eq!(subjects, ["fresh"], "only the new leader's email");
}

#[test]
fn two_members_racing_for_an_expired_lease_have_exactly_one_winner() {
    let Some(db) = scratch_db::mysql("cluster_race") else { return };
    let mut watcher = open(&db);
    assert!(watcher
        .lead(CLUSTER, &id("old"), &LeaseDecision::TakeOver { next_term: 1 }, LEASE)
        .unwrap());
    for round in 0..3u64 {
        let expired = expired_leader(&mut *watcher);
        assert_eq!(expired.term, round + 1);
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = ["x", "y"]
            .into_iter()
            .map(|name| {
                let (url, barrier) = (db.url.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let me = id(name);
                    let mut store = MysqlStore::open(&url).expect("open");
                    let row = store.leader(CLUSTER).expect("leader");
                    let decision = decide(row.as_ref(), &me, LEASE);
                    assert_eq!(decision, LeaseDecision::TakeOver { next_term: round + 2 });
                    barrier.wait();
                    let won = store.lead(CLUSTER, &me, &decision, LEASE).expect("lead");
                    (me, won)
                })
            })
            .collect();
        let results: Vec<(MemberId, bool)> =
            racers.into_iter().map(|racer| racer.join().expect("racer")).collect();
        let winners: Vec<&MemberId> =
            results.iter().filter(|(_, won)| *won).map(|(me, _)| me).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one winner: {results:?}");
        let row = watcher.leader(CLUSTER).unwrap().expect("a leader row");
        assert_eq!((&row.holder, row.term), (winners[0], round + 2), "round {round}");
    }
}

#[test]
fn a_version_2_database_without_the_cluster_tables_gets_them_at_open_and_stays_version_2() {
    let Some(db) = scratch_db::mysql("cluster_v2") else { return };
    drop(open(&db));
    let mut raw = db.admin().expect("admin connection");
    raw.query_drop(format!("USE `{}`", db.name)).expect("use the scratch database");
    // The database as a version 2 binary from before cluster mode left it.
    raw.query_drop("DROP TABLE cluster_member, cluster_leader").expect("drop the cluster tables");

    let mut store = open(&db);
    store.beat(CLUSTER, &id("a"), "eu", "1.0.0").expect("the tables are back");
    assert!(store
        .lead(CLUSTER, &id("a"), &LeaseDecision::TakeOver { next_term: 1 }, LEASE)
        .unwrap());
    let versions: Vec<i64> = raw.query("SELECT version FROM schema_version").unwrap();
    assert_eq!(versions, [2], "new tables only: no new schema version");
}
