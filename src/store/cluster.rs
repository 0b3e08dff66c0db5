//! What cluster mode needs of the database (issue 12), beside the [`Store`] of one instance:
//! members and their heartbeats, the leader lease, leader-only writes fenced by its term, the
//! sites' latest states, and the fence of every email the leader sends.
//!
//! MySQL/MariaDB only ([`super::mysql::MysqlStore`]): SQLite is one file on one host, so cluster
//! mode refuses it. The decisions are made by [`crate::cluster::lease`] from what this trait
//! reads; this trait only carries them out, each as one conditional statement (or one
//! transaction) in the database, so two members deciding from the same stale row cannot both
//! win, and a deposed leader's write affects nothing.
//!
//! Every time is the database's clock: heartbeats are written as `NOW(6)` and read back as ages
//! (`TIMESTAMPDIFF(MICROSECOND, heartbeat_at, NOW(6))`, see [`crate::cluster::lease::age`]), so
//! hosts' clocks never meet. A heartbeat is also read back as the instant it was written
//! ([`MemberRow::seen_at`]), which does not move between reads, to name a silence.
//!
//! Cost per interval, which is what many members polling one database pay: a follower does
//! [`ClusterStore::beat`] and [`ClusterStore::view`], two queries; the leader adds its renewal
//! ([`ClusterStore::lead`]), one [`ClusterStore::site_states`] and one
//! [`ClusterStore::may_send`] per email.

use std::time::Duration;

use super::{Commit, Store, StoreError};
use crate::cluster::lease::{LeaderRow, LeaseDecision, MemberRow};
use crate::cluster::MemberId;
use crate::timestamp::Timestamp;

/// What one site last recorded for one target: the latest `state` row of `(target, region =
/// site)`, the input of [`crate::cluster::quorum`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteState {
    pub target: String,
    pub site: String,
    pub healthy: bool,
    /// When that state began (the row's `timestamp`, written by the member that probed).
    pub since: Timestamp,
}

/// Opens the store named by `url` for cluster mode: a `mysql://` URL, read-write, schema
/// applied. Any other URL is [`StoreError::Url`] (permanent, so start-up exits 2) saying that
/// cluster mode needs MySQL: a SQLite file cannot be shared by instances on several hosts.
pub fn open(url: &str) -> Result<Box<dyn ClusterStore>, StoreError> {
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("mysql") => Ok(Box::new(super::mysql::MysqlStore::open(url)?)),
        _ => Err(StoreError::Url {
            url: crate::redact::url(url),
            reason: "cluster mode needs a MySQL store (mysql://USER:PASS@HOST:PORT/DB): \
                     a SQLite file cannot be shared by instances on several hosts"
                .into(),
        }),
    }
}

/// The cluster's tables (`cluster_member`, `cluster_leader`), on the store's connection.
pub trait ClusterStore: Store {
    /// Registers `me` or refreshes its heartbeat: upserts its member row with `heartbeat_at =
    /// NOW(6)`, keeping `started_at` from the first insert (site and version are updated).
    fn beat(
        &mut self,
        cluster: &str,
        me: &MemberId,
        site: &str,
        version: &str,
    ) -> Result<(), StoreError>;

    /// Every member row of `cluster`, gone ones included (one that [`Self::leave`]s has no row),
    /// with the age of its heartbeat by the database's clock; sorted by id. [`crate::cluster::lease::members_alive`] tells who is alive.
    fn members(&mut self, cluster: &str) -> Result<Vec<MemberRow>, StoreError>;

    /// The leader row of `cluster` with the age of its heartbeat; `None` before the first leader.
    fn leader(&mut self, cluster: &str) -> Result<Option<LeaderRow>, StoreError>;

    /// [`Self::members`] and [`Self::leader`] in one query (one round trip), so that a follower's
    /// steady state is two queries per interval ([`Self::beat`] and this). One statement also
    /// means one `NOW(6)`: the members' and the leader's ages are measured at the same instant.
    fn view(&mut self, cluster: &str) -> Result<(Vec<MemberRow>, Option<LeaderRow>), StoreError>;

    /// At a clean stop: deletes `me`'s member row and, if `me` holds the leader row, expires its
    /// lease (heartbeat set far in the past; holder and term unchanged), so another member takes
    /// over at its next interval, with the next term, instead of a lease later. Leaves a leader
    /// row held by anyone else untouched. Two statements; both are harmless to repeat.
    fn leave(&mut self, cluster: &str, me: &MemberId) -> Result<(), StoreError>;

    /// For every `(target, region)` of `state` whose region is one of `sites`, the latest row as
    /// a [`SiteState`], sorted by target then site (in Rust's order). One query; none for no
    /// sites. "Latest" is the highest id, i.e. the last row written, not the highest
    /// `timestamp`: timestamps come from the hosts that probed, and when a target moves between
    /// members of a site whose clocks differ, the row written last is the site's current
    /// state even if its timestamp is earlier.
    fn site_states(&mut self, sites: &[String]) -> Result<Vec<SiteState>, StoreError>;

    /// The fence of every email the leader sends, just before sending it: whether, in one query,
    /// `me` still holds `term` of `cluster` with a lease still fresh by the database's clock
    /// (`heartbeat_at > NOW(6) - lease`, as for a renewal), and the notification `key` is still
    /// pending (exists, not sent, not dead). `false`: do not send.
    ///
    /// A check, not a lock: a leader that freezes between this answer and the SMTP exchange may
    /// still send after its lease has passed to another, so an email can be sent twice in that
    /// window (never lost: it stays pending until [`Store::record_sent`]). What it rules out is
    /// a leader deposed *before* the check sending, and sending one already sent or dead.
    fn may_send(
        &mut self,
        cluster: &str,
        me: &MemberId,
        term: u64,
        lease: Duration,
        key: &str,
    ) -> Result<bool, StoreError>;

    /// Carries out `decision` (made by [`crate::cluster::lease::decide`] from [`Self::leader`]
    /// with the same `lease`) as one conditional statement; whether `me` is leader now:
    /// - `TakeOver { next_term: 1 }`: inserts the row with term 1; a duplicate key (someone else
    ///   was first) is `false`;
    /// - `TakeOver { next_term }`: takes the row from term `next_term - 1`, only while that term
    ///   is still there and its lease still expired (`heartbeat_at <= NOW(6) - lease`);
    /// - `Keep { term }`: renews, only while `me` holds `term` and the lease is still fresh;
    ///   `false` means deposed (or expired: take over instead, next interval);
    /// - `Follow`: nothing to do, `false`.
    fn lead(
        &mut self,
        cluster: &str,
        me: &MemberId,
        decision: &LeaseDecision,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// [`Store::commit`] fenced by the leader's term: in one transaction, locks the leader row
    /// of `cluster` only if `me` still holds `term` (`SELECT … FOR UPDATE`), and writes `commit`
    /// only then. `false` (nothing written) for a deposed leader. A takeover waits for this
    /// transaction, so no write of an old term can land after a new term begins.
    fn commit_fenced(
        &mut self,
        cluster: &str,
        me: &MemberId,
        term: u64,
        commit: &Commit,
    ) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_mode_refuses_every_store_but_mysql_and_says_why() {
        for url in ["sqlite://state.db", "sqlite://:memory:", "postgres://u:s3cret@db/m", "x"] {
            match open(url) {
                Err(e @ StoreError::Url { .. }) => {
                    let shown = e.to_string();
                    assert!(e.is_permanent(), "{shown}");
                    assert!(shown.contains("cluster mode needs a MySQL store"), "{shown}");
                    assert!(!shown.contains("s3cret") && !shown.contains('\n'), "{shown}");
                }
                Err(e) => panic!("{url}: expected a URL error, got {e}"),
                Ok(_) => panic!("{url}: expected a refusal, got a store"),
            }
        }
    }
}
