//! What cluster mode needs of the database (issue 12), beside the [`Store`] of one instance:
//! members and their heartbeats, the leader lease, and leader-only writes fenced by its term.
//!
//! MySQL/MariaDB only ([`super::mysql::MysqlStore`]): SQLite is one file on one host, so cluster
//! mode refuses it. The decisions are made by [`crate::cluster::lease`] from what this trait
//! reads; this trait only carries them out, each as one conditional statement (or one
//! transaction) in the database, so two members deciding from the same stale row cannot both
//! win, and a deposed leader's write affects nothing.
//!
//! Every time is the database's clock: heartbeats are written as `NOW(6)` and read back as ages
//! (`TIMESTAMPDIFF(MICROSECOND, heartbeat_at, NOW(6))`, see [`crate::cluster::lease::age`]), so
//! hosts' clocks never meet.

use std::time::Duration;

use super::{Commit, Store, StoreError};
use crate::cluster::lease::{LeaderRow, LeaseDecision, MemberRow};
use crate::cluster::MemberId;

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

    /// Every member row of `cluster`, gone ones included, with the age of its heartbeat by the
    /// database's clock; sorted by id. [`crate::cluster::lease::members_alive`] tells who is alive.
    fn members(&mut self, cluster: &str) -> Result<Vec<MemberRow>, StoreError>;

    /// The leader row of `cluster` with the age of its heartbeat; `None` before the first leader.
    fn leader(&mut self, cluster: &str) -> Result<Option<LeaderRow>, StoreError>;

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
