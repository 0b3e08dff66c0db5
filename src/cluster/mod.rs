//! PURE: the decisions of cluster mode — several instances, one database, one alert.
//!
//! # What the cluster will be (issue 12)
//! With `--cluster NAME` and a MySQL store, every instance that shares the database and the
//! cluster name is a *member*: it registers itself (instance id, site, version, started) and
//! heartbeats; a member whose heartbeat is older than the lease (`--lease`, default 15 s) is
//! gone. Ages come from the database's clock, never from comparing hosts' clocks. A *site*
//! (`--site`, default `direct`) is where members probe from, as a region is today. Within a site
//! each target is probed by exactly one live member; one member of the whole cluster holds the
//! *leader lease*, and only the leader decides global transitions (a target is globally down
//! when a quorum of the live sites see it down) and delivers the outbox. A deposed leader must
//! not send, so every global transition and every claim of an outbox row is *fenced* by the
//! lease's term inside the database.
//!
//! # What this module decides
//! Everything that can be decided from values alone, so that it is table-tested here and the
//! store and runtime only carry it out:
//! - [`assign`]: which live member of a site probes a target (rendezvous hashing);
//! - [`quorum`]: the global state of a target from what its live sites see, and when that is a
//!   transition to announce;
//! - [`lease`]: whether a member keeps, takes over or follows the leader lease, with which term,
//!   and which members are alive.
//!
//! # What it leaves to the store and the runtime
//! None of these decisions is safe on its own: two members may decide "take over" from the same
//! stale row, and a leader frozen after deciding "keep" may wake up deposed. What makes the
//! decisions real is that each is *applied* by a conditional statement in the database, which
//! fails (zero rows affected) when the row it was decided from has changed meanwhile:
//! - a takeover is `UPDATE leader SET holder = me, term = term + 1, heartbeat_at = NOW(6)
//!   WHERE cluster = ? AND term = <term read>` (or an `INSERT` under the primary key for the
//!   first leader, term 1): of two members deciding the same takeover, one gets the row;
//! - a renewal is `UPDATE leader SET heartbeat_at = NOW(6) WHERE cluster = ? AND holder = me
//!   AND term = <my term>`: zero rows means I was deposed, and I stop acting at once;
//! - a global transition and an outbox claim carry the term and succeed only while the leader
//!   row still holds it (same transaction as a `SELECT … FOR UPDATE` of the leader row, or a
//!   conditional `UPDATE … WHERE` joined to it), so a stale leader's write affects nothing.
//!
//! Carried out by the store ([`crate::store::cluster::ClusterStore`], MySQL only: the
//! `cluster_member` and `cluster_leader` tables, heartbeats with `NOW(6)`, ages as
//! `TIMESTAMPDIFF(MICROSECOND, heartbeat_at, NOW(6))` ([`lease::age`]), the conditional
//! statements above, `commit_fenced`, and `may_send`, the fence of every email) and by the
//! runtime: the coordinator thread ([`crate::runtime::coordinator`]) beats and reads the
//! cluster; the state owner ([`crate::runtime::state`], its `member` module) computes the share
//! of targets, adopts moved targets from their site's last row and, while leading, judges the
//! quorum and announces global transitions and members that stop or resume reporting; the
//! courier checks the fence right before each email.
//!
//! Clocks: the functions here take ages (`Duration`s measured by the database: `NOW(6) -
//! heartbeat_at`), never instants of a host, so skew between hosts cannot enter a decision.

pub mod assign;
pub mod lease;
pub mod quorum;

use std::fmt;

/// A member of the cluster: one running instance, by its instance id (unique per process run,
/// made at start). A newtype so that an instance id is never confused with a site or a target.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub String);

impl MemberId {
    pub fn new(id: impl Into<String>) -> MemberId {
        MemberId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
