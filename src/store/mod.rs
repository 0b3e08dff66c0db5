//! Where transitions are recorded: the `state` table, behind one small [`Store`] trait.
//!
//! Two implementations share one logical schema (`sql/sqlite.sql`, `sql/mysql.sql`): SQLite,
//! the embedded default, and MySQL/MariaDB for production. The schema is applied idempotently
//! when a store is opened. Every query is parameterised.

pub mod mysql;
pub mod sqlite;

use std::time::Duration;

use crate::detector::Health;
use crate::history::Change;
use crate::timestamp::Timestamp;

/// One row of `state`: a transition of `target` as seen from `region`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateRow {
    pub id: i64,
    /// When the state began (the first probe of the streak that settled it), UTC.
    pub timestamp: Timestamp,
    pub healthy: bool,
    pub target: String,
    pub region: String,
    /// The first failure reason of an outage; `None` for an `Up` row.
    pub reason: Option<String>,
}

impl StateRow {
    pub fn health(&self) -> Health {
        Health::from_healthy(self.healthy)
    }

    /// The row as the pure history module sees it.
    pub fn change(&self) -> Change {
        Change { at: self.timestamp, health: self.health() }
    }
}

/// A key made before the first attempt to write a row, kept in a unique column: a retry after
/// a lost reply (the server committed, the client never heard) finds the row already there and
/// writes nothing. 32 lowercase hex digits of a random (v4) UUID.
pub type RowKey = String;

/// A fresh [`RowKey`].
pub fn new_key() -> RowKey {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A `state` row to insert; the store assigns the id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewState {
    /// Made once, before the first attempt (see [`RowKey`]).
    pub key: RowKey,
    pub timestamp: Timestamp,
    pub healthy: bool,
    pub target: String,
    pub region: String,
    pub reason: Option<String>,
}

/// An email to deliver, as the outbox (`notification`) keeps it. Composed before it is
/// written, so it is written in the same transaction as the transition it announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Made once, before the first attempt (see [`RowKey`]).
    pub key: RowKey,
    pub target: String,
    pub region: String,
    /// Comma-separated recipient addresses.
    pub recipients: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub created_at: Timestamp,
}

/// One atomic write: a transition's `state` row (if any) and the notifications announcing it
/// (reminders and blind-region emails have no row). Either all of it is stored or none of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commit {
    pub state: Option<NewState>,
    pub notifications: Vec<Notification>,
}

/// Where a notification is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Not yet accepted by the SMTP server: a (re)start delivers it.
    Pending,
    /// Accepted by the SMTP server (DATA answered 250).
    Sent,
    /// Refused for good (or too often): kept for `api-monitor outbox`, never retried unless
    /// re-queued by hand.
    Dead,
}

/// A notification as the outbox holds it, with its delivery record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: i64,
    pub notification: Notification,
    pub delivery: Delivery,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The last failure (for a dead one: why it died).
    pub last_error: Option<String>,
    /// Recipients the server refused at RCPT while it accepted the others, with its answers.
    pub refused: Option<String>,
}

/// The instance that holds a database (see [`Store::claim`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Random per process start ([`new_key`]).
    pub id: String,
    pub host: String,
    pub pid: u32,
}

/// The answer to [`Store::claim`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This instance holds the database now.
    Granted,
    /// Another instance holds it and its heartbeat is fresh.
    Held {
        by: Holder,
        /// How long ago its last heartbeat was, by the database's clock.
        heartbeat_age: Duration,
    },
}

/// A fault of the database itself (never of the monitored API).
///
/// [`StoreError::is_permanent`] tells the faults that waiting cannot cure (a wrong password, an
/// unknown database, a missing directory, a corrupt file, a schema newer than this binary, a
/// vanished file) from those it can (the server is down or slow, the connection dropped).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid database URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: Box<dyn std::error::Error + Send + Sync> },
    /// Permanent: waiting will not help (see the type's doc). One clear line.
    #[error("{url}: {reason}")]
    Permanent { url: String, reason: String },
    /// The SQLite file was deleted or replaced while the monitor ran: writes would go to a file
    /// nobody can see, so the monitor stops (exit 1) rather than go on persisting nothing.
    #[error("the database file {path} was deleted or replaced while api-monitor ran")]
    Vanished { path: String },
    #[error("cannot apply schema: {0}")]
    Schema(Box<dyn std::error::Error + Send + Sync>),
    #[error("query failed: {0}")]
    Query(Box<dyn std::error::Error + Send + Sync>),
    #[error("bad timestamp in database: {0}")]
    Timestamp(#[from] crate::timestamp::TimestampError),
}

impl StoreError {
    /// Whether retrying can never succeed: start-up exits 2 on it, and mid-run it is logged as
    /// what it is rather than as "unavailable".
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            StoreError::Url { .. } | StoreError::Permanent { .. } | StoreError::Vanished { .. }
        )
    }
}

/// The monitor's view of the database. Rows of one target/region are ordered by
/// `(timestamp, id)`: timestamps are the real order of events, ids break ties.
///
/// Call order in the monitor: [`Store::claim`] at start (then [`Store::heartbeat`] every few
/// seconds and [`Store::release`] at a clean stop); [`Store::since`] once per target and
/// [`Store::pending`] once (to resume the detectors and the outbox); then one [`Store::commit`]
/// per transition, reminder or blind-region email; per delivery attempt
/// [`Store::record_attempt`], [`Store::record_sent`] or [`Store::record_dead`].
///
/// Every write is idempotent: rows carry a [`RowKey`] under a unique index, and writing a key
/// that exists changes nothing, so a write retried after a lost reply is harmless.
pub trait Store: Send {
    /// The latest row of `target`/`region`, if any.
    fn last(&mut self, target: &str, region: &str) -> Result<Option<StateRow>, StoreError>;

    /// The row of the same target/region just before `row`.
    fn previous(&mut self, row: &StateRow) -> Result<Option<StateRow>, StoreError>;

    /// The rows of `target`/`region` with `timestamp >= from`, oldest first, preceded by the
    /// last row before `from` (if any) so the state at `from` is known.
    fn since(
        &mut self,
        target: &str,
        region: &str,
        from: Timestamp,
    ) -> Result<Vec<StateRow>, StoreError>;

    /// Writes `commit` in one transaction: its `state` row (unless a row with its key exists)
    /// and its notifications (each unless one with its key exists), each notification's
    /// `state_id` pointing at the state row. Returns the state row's id (existing or new).
    fn commit(&mut self, commit: &Commit) -> Result<Option<i64>, StoreError>;

    /// The [`Delivery::Pending`] notifications, oldest first (`created_at`, then id): what a
    /// start must still deliver.
    fn pending(&mut self) -> Result<Vec<OutboxEntry>, StoreError>;

    /// The [`Delivery::Dead`] notifications, oldest first.
    fn dead(&mut self) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Records a failed delivery attempt of the notification `key`: the count so far and why.
    fn record_attempt(&mut self, key: &str, attempts: u32, error: &str) -> Result<(), StoreError>;

    /// Marks `key` sent at `at` after `attempts` attempts; `refused` names the recipients the
    /// server refused (with its answers) while it accepted the others.
    fn record_sent(
        &mut self,
        key: &str,
        attempts: u32,
        at: Timestamp,
        refused: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Marks `key` dead (refused for good) after `attempts` attempts, with the server's answer.
    fn record_dead(
        &mut self,
        key: &str,
        attempts: u32,
        error: &str,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Makes dead notifications pending again with no attempts: the one with `id`, or all of
    /// them. Returns how many. (`api-monitor outbox --requeue`.)
    fn requeue(&mut self, id: Option<i64>) -> Result<usize, StoreError>;

    /// Takes the database for `me` — one instance per database — in one locking transaction:
    /// granted when nobody holds it, when `me` already does, when the holder's heartbeat is at
    /// least `stale_after` old (by the database's clock), or when `gone(holder)` says it is
    /// dead (same host, no such process). Otherwise says who holds it and how old its heartbeat
    /// is, and changes nothing.
    fn claim(
        &mut self,
        me: &Holder,
        stale_after: Duration,
        gone: &dyn Fn(&Holder) -> bool,
    ) -> Result<Claim, StoreError>;

    /// Refreshes `me`'s heartbeat. `Ok(false)`: `me` no longer holds the database (another
    /// instance took it over while this one was stopped or cut off).
    fn heartbeat(&mut self, me: &Holder) -> Result<bool, StoreError>;

    /// Lets go of the database at a clean stop, so the next instance need not wait.
    fn release(&mut self, me: &Holder) -> Result<(), StoreError>;

    /// Every distinct `(target, region)` pair with at least one `state` row, sorted by target
    /// then region in Rust's string order (the same on every backend), each pair once: what
    /// `api-monitor report` walks, including targets no longer in the configuration.
    fn series(&mut self) -> Result<Vec<(String, String)>, StoreError>;
}

/// The longest reason either store keeps, in characters (`reason VARCHAR(1024)`).
pub(crate) const REASON_MAX_CHARS: usize = 1024;

/// `reason` cut to [`REASON_MAX_CHARS`] characters (on a character boundary), so a long probe
/// failure can never make the insert fail.
pub(crate) fn clip_reason(reason: &str) -> &str {
    match reason.char_indices().nth(REASON_MAX_CHARS) {
        Some((end, _)) => &reason[..end],
        None => reason,
    }
}

/// `text` cut to `max` characters (on a character boundary).
pub(crate) fn clip(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Opens the store named by a `sqlite://` or `mysql://` URL and applies the schema.
pub fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("sqlite") => Ok(Box::new(sqlite::SqliteStore::open(url)?)),
        Some("mysql") => Ok(Box::new(mysql::MysqlStore::open(url)?)),
        _ => Err(StoreError::Url {
            url: crate::redact::url(url),
            reason: "expected sqlite://PATH or mysql://USER:PASS@HOST:PORT/DB".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_clipped_on_a_character_boundary() {
        assert_eq!(clip_reason("HTTP 503"), "HTTP 503");
        let long = "é".repeat(REASON_MAX_CHARS + 10);
        let clipped = clip_reason(&long);
        assert_eq!(clipped.chars().count(), REASON_MAX_CHARS, "clipped to the limit in chars");
        assert!(clipped.chars().all(|c| c == 'é'), "no broken character at the end");
        let exact = "x".repeat(REASON_MAX_CHARS);
        assert_eq!(clip_reason(&exact), exact, "a reason at the limit is kept whole");
    }
}
