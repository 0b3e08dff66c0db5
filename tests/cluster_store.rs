//! The cluster's tables on a real MariaDB/MySQL ([`ClusterStore`] of `MysqlStore`): member
//! heartbeats and ages by the database's clock, the leader lease taken, kept and lost through
//! conditional statements, writes fenced by the term, and a race for an expired lease; the
//! one-query view, a clean leave, the sites' latest states and the fence before each email.
//!
//! A scratch database per test (`TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`);
//! without a server the tests print `SKIPPED:` and pass, unless `REQUIRE_MYSQL=1`.

#[path = "support/scratch_db.rs"]
mod scratch_db;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use api_monitor::cluster::lease::{decide, LeaderRow, LeaseDecision, MemberRow};
use api_monitor::cluster::MemberId;
use api_monitor::store::cluster::{ClusterStore, SiteState};
use api_monitor::store::mysql::MysqlStore;
use api_monitor::store::{self, Commit, NewState, Notification, Store};
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
            maintenance: None,
            held: false,
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
        release: None,
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
fn a_database_without_the_cluster_tables_gets_them_at_open_and_keeps_its_version() {
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
    assert_eq!(versions, [3], "new tables only: no new schema version");
}

/// A member row without its age, which moves between two reads.
fn still(row: &MemberRow) -> (&str, &str, &str, Timestamp, Timestamp) {
    (row.id.as_str(), row.site.as_str(), row.version.as_str(), row.started_at, row.seen_at)
}

#[test]
fn view_reads_the_members_and_the_leader_that_members_and_leader_read() {
    let Some(db) = scratch_db::mysql("cluster_view") else { return };
    let (mut store, mut other) = (open(&db), open(&db));
    assert_eq!(store.view(CLUSTER).unwrap(), (vec![], None), "nothing yet");
    let (a, b) = (id("a"), id("b"));
    store.beat(CLUSTER, &b, "us", "2.0.0").unwrap();
    store.beat(CLUSTER, &a, "eu", "1.0.0").unwrap();
    store.beat("staging", &id("c"), "eu", "1.0.0").unwrap();
    let (members, leader) = store.view(CLUSTER).unwrap();
    assert_eq!(leader, None, "members but no leader yet");
    let listed: Vec<_> = members.iter().map(still).collect();
    let read = store.members(CLUSTER).unwrap();
    let expected: Vec<_> = read.iter().map(still).collect();
    assert_eq!(listed, expected, "the same rows, sorted by id, this cluster only");
    assert_eq!(listed.len(), 2, "{members:?}");
    assert_eq!((listed[0].0, listed[0].2, listed[1].0, listed[1].2), ("a", "1.0.0", "b", "2.0.0"));
    assert!(members.iter().all(|row| row.age < LEASE), "alive: {members:?}");

    // The times are the stored ones, as the database writes them.
    let (started, seen) = member_times(&db, &a);
    let parse = |text: &str| Timestamp::parse_sql(text).expect("a database time");
    assert_eq!((members[0].started_at, members[0].seen_at), (parse(&started), parse(&seen)));

    assert!(store.lead(CLUSTER, &a, &LeaseDecision::TakeOver { next_term: 1 }, LEASE).unwrap());
    let (_, leader) = store.view(CLUSTER).unwrap();
    let leader = leader.expect("the leader row");
    let read = store.leader(CLUSTER).unwrap().expect("the leader row");
    assert_eq!((&leader.holder, leader.term), (&read.holder, read.term));
    assert_eq!((leader.holder.as_str(), leader.term), ("a", 1));
    assert!(leader.age < LEASE, "{leader:?}");

    // seen_at names a heartbeat: the same from every connection, however old it grows.
    let (here, _) = store.view(CLUSTER).unwrap();
    let (there, _) = wait_for(
        "a's heartbeat to age",
        || other.view(CLUSTER).unwrap(),
        |(rows, _)| rows[0].age >= Duration::from_millis(20),
    );
    assert_eq!(here[0].seen_at, there[0].seen_at, "no beat in between: the same instant");
    assert_eq!(
        here.iter().map(still).collect::<Vec<_>>(),
        there.iter().map(still).collect::<Vec<_>>()
    );
    store.beat(CLUSTER, &a, "eu", "1.0.1").unwrap();
    let (after, _) = other.view(CLUSTER).unwrap();
    assert!(after[0].seen_at > here[0].seen_at, "a beat moves it: {after:?}");
    assert_eq!(after[0].started_at, here[0].started_at, "started_at stays");
    assert_eq!(after[0].version, "1.0.1");

    let (rows, leader) = store.view("staging").unwrap();
    assert_eq!((rows.len(), leader), (1, None), "another cluster, its own rows");
}

#[test]
fn leave_deletes_my_row_and_ends_my_lease_at_once_but_no_one_elses() {
    let Some(db) = scratch_db::mysql("cluster_leave") else { return };
    let (mut a_store, mut b_store) = (open(&db), open(&db));
    let (a, b) = (id("a"), id("b"));
    a_store.beat(CLUSTER, &a, "eu", "1.0.0").unwrap();
    b_store.beat(CLUSTER, &b, "eu", "1.0.0").unwrap();
    assert!(a_store.lead(CLUSTER, &a, &LeaseDecision::TakeOver { next_term: 1 }, LEASE).unwrap());
    assert_eq!(
        read_decide_lead(&mut *b_store, &b),
        (LeaseDecision::Follow { leader: a.clone(), term: 1 }, false)
    );

    a_store.leave(CLUSTER, &a).unwrap();
    let ids: Vec<MemberId> = b_store.members(CLUSTER).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, [id("b")], "a's row is gone");
    let row = b_store.leader(CLUSTER).unwrap().expect("the row stays");
    assert_eq!((row.holder.as_str(), row.term), ("a", 1), "holder and term unchanged");
    assert!(row.age >= LEASE, "expired at once, not a lease later: {row:?}");
    assert_eq!(
        read_decide_lead(&mut *b_store, &b),
        (LeaseDecision::TakeOver { next_term: 2 }, true),
        "the next member takes over at its next interval"
    );

    // a leaves again (a repeated stop), and c, never a member, leaves: b's lease is not theirs.
    a_store.leave(CLUSTER, &a).unwrap();
    a_store.leave(CLUSTER, &id("c")).unwrap();
    let row = a_store.leader(CLUSTER).unwrap().expect("b's row");
    assert_eq!((row.holder.as_str(), row.term), ("b", 2));
    assert!(row.age < LEASE, "b's lease untouched: {row:?}");
    assert_eq!(read_decide_lead(&mut *b_store, &b), (LeaseDecision::Keep { term: 2 }, true));
    assert_eq!(a_store.members(CLUSTER).unwrap().len(), 1, "b's member row untouched");

    // Leaving another cluster touches nothing of this one.
    b_store.leave("staging", &b).unwrap();
    assert_eq!(a_store.members(CLUSTER).unwrap().len(), 1);
    assert_eq!(read_decide_lead(&mut *b_store, &b), (LeaseDecision::Keep { term: 2 }, true));
}

/// A transition with no email, as a site's member writes it.
fn transition(target: &str, region: &str, healthy: bool, at_ms: i64) -> Commit {
    Commit {
        state: Some(NewState {
            key: store::new_key(),
            timestamp: Timestamp::from_millis(at_ms),
            healthy,
            target: target.into(),
            region: region.into(),
            reason: (!healthy).then(|| "HTTP 503".into()),
            maintenance: None,
            held: false,
        }),
        notifications: vec![],
        release: None,
    }
}

#[test]
fn site_states_are_the_latest_row_of_each_target_in_the_sites_asked() {
    let Some(db) = scratch_db::mysql("cluster_sites") else { return };
    let mut store = open(&db);
    let sites = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    assert_eq!(store.site_states(&sites(&["eu"])).unwrap(), [], "no rows yet");
    const OTHER: &str = "https://b.example/health";
    for commit in [
        // Written first, so a sort by id alone would put it first.
        transition(OTHER, "eu", true, 500),
        // Written last with an earlier timestamp (another host's clock): still the latest.
        transition(OTHER, "eu", false, 400),
        transition(TARGET, "eu", false, 1_000),
        transition(TARGET, "eu", true, 2_000),
        transition(TARGET, "us", true, 1_500),
        transition(TARGET, "eu", false, 3_000),
        transition(TARGET, "ap", false, 9_000),
        transition(OTHER, "eu2", true, 9_000),
    ] {
        store.commit(&commit).unwrap();
    }
    let state = |target: &str, site: &str, healthy, since| SiteState {
        target: target.into(),
        site: site.into(),
        healthy,
        since: Timestamp::from_millis(since),
    };
    assert_eq!(
        store.site_states(&sites(&["us", "eu"])).unwrap(),
        [
            state(TARGET, "eu", false, 3_000),
            state(TARGET, "us", true, 1_500),
            state(OTHER, "eu", false, 400),
        ],
        "the latest row of each pair, sorted by target then site; ap and eu2 not asked"
    );
    assert_eq!(store.site_states(&sites(&["ap"])).unwrap(), [state(TARGET, "ap", false, 9_000)]);
    assert_eq!(store.site_states(&sites(&["nowhere"])).unwrap(), []);
    assert_eq!(store.site_states(&[]).unwrap(), [], "no sites, no states");
}

#[test]
fn may_send_only_for_the_fresh_leader_of_its_term_and_a_pending_email() {
    let Some(db) = scratch_db::mysql("cluster_may_send") else { return };
    let (mut a_store, mut b_store) = (open(&db), open(&db));
    let (a, b) = (id("a"), id("b"));
    let mut commit = outage("down");
    for subject in ["sent", "dead"] {
        let mut n = commit.notifications[0].clone();
        (n.key, n.subject) = (store::new_key(), subject.into());
        commit.notifications.push(n);
    }
    let keys: Vec<String> = commit.notifications.iter().map(|n| n.key.clone()).collect();
    let (pending, sent, dead) = (&keys[0], &keys[1], &keys[2]);
    a_store.commit(&commit).unwrap();
    assert!(!a_store.may_send(CLUSTER, &a, 1, LEASE, pending).unwrap(), "no leader row yet");
    assert!(a_store.lead(CLUSTER, &a, &LeaseDecision::TakeOver { next_term: 1 }, LEASE).unwrap());
    a_store.record_sent(sent, 1, Timestamp::from_millis(1_795_000_001_000), None).unwrap();
    a_store
        .record_dead(dead, 1, "550 no such user", Timestamp::from_millis(1_795_000_001_000))
        .unwrap();

    assert_eq!(read_decide_lead(&mut *a_store, &a), (LeaseDecision::Keep { term: 1 }, true));
    assert!(
        a_store.may_send(CLUSTER, &a, 1, LEASE, pending).unwrap(),
        "the leader, a pending email"
    );
    assert!(!a_store.may_send(CLUSTER, &a, 1, LEASE, sent).unwrap(), "already sent");
    assert!(!a_store.may_send(CLUSTER, &a, 1, LEASE, dead).unwrap(), "dead");
    assert!(!a_store.may_send(CLUSTER, &a, 1, LEASE, &store::new_key()).unwrap(), "unknown key");
    assert!(!b_store.may_send(CLUSTER, &b, 1, LEASE, pending).unwrap(), "not the holder");
    assert!(!a_store.may_send(CLUSTER, &a, 2, LEASE, pending).unwrap(), "not its term");
    assert!(!a_store.may_send("staging", &a, 1, LEASE, pending).unwrap(), "another cluster");
    assert!(a_store.may_send(CLUSTER, &a, 1, LEASE, pending).unwrap(), "still fresh");

    let expired = expired_leader(&mut *b_store);
    assert!(!a_store.may_send(CLUSTER, &a, 1, LEASE, pending).unwrap(), "the lease expired");
    assert!(b_store.lead(CLUSTER, &b, &decide(Some(&expired), &b, LEASE), LEASE).unwrap());
    assert!(b_store.may_send(CLUSTER, &b, 2, LEASE, pending).unwrap(), "the new leader's term");
    assert!(!a_store.may_send(CLUSTER, &a, 1, LEASE, pending).unwrap(), "an older term");
    assert!(!a_store.may_send(CLUSTER, &a, 2, LEASE, pending).unwrap(), "not the holder of 2");
}

#[test]
fn a_mysql_store_held_as_a_plain_store_reaches_its_cluster_operations() {
    let Some(db) = scratch_db::mysql("cluster_as") else { return };
    let mut plain: Box<dyn Store> = store::open(&db.url).expect("open");
    let cluster = plain.as_cluster().expect("MySQL serves cluster mode");
    cluster.beat(CLUSTER, &id("a"), "eu", "1.0.0").unwrap();
    // The trait-object upcast: a cluster store handed on as a plain one is still one.
    let mut upcast: Box<dyn Store> = open(&db);
    let members = upcast.as_cluster().expect("still MySQL").members(CLUSTER).unwrap();
    assert_eq!(members.len(), 1, "the same database: {members:?}");
}

#[test]
fn a_sqlite_store_has_no_cluster_operations() {
    let mut sqlite = store::open("sqlite://:memory:").expect("an in-memory SQLite store");
    assert!(sqlite.as_cluster().is_none(), "cluster mode needs MySQL");
}
