//! Where transitions are recorded: the `state` table, behind one small [`Store`] trait.
//!
//! Two implementations share one logical schema (`sql/sqlite.sql`, `sql/mysql.sql`): SQLite,
//! the embedded default, and MySQL/MariaDB for production. The schema is applied idempotently
//! when a store is opened. Every query is parameterised.

pub mod mysql;
pub mod sqlite;

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

/// A row to insert; the store assigns the id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewState {
    pub timestamp: Timestamp,
    pub healthy: bool,
    pub target: String,
    pub region: String,
    pub reason: Option<String>,
}

/// An email to write into the outbox (`notification`) before it is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNotification {
    /// The `state` row it announces, when that row is known.
    pub state_id: Option<i64>,
    pub target: String,
    pub region: String,
    /// Comma-separated recipient addresses.
    pub recipients: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub created_at: Timestamp,
}

/// An outbox row not yet accepted by the SMTP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub id: i64,
    pub content: NewNotification,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// An outbox row as both stores read it, before its timestamp is parsed: the columns of
/// `SELECT id, state_id, target, region, recipients, subject, text, html, created_at,
/// attempts, last_error` in that order.
pub(crate) type RawNotification =
    (i64, Option<i64>, String, String, String, String, String, String, String, u32, Option<String>);

/// The [`Notification`] a [`RawNotification`] stands for.
pub(crate) fn notification(raw: RawNotification) -> Result<Notification, StoreError> {
    let (id, state_id, target, region, recipients, subject, text, html, at, attempts, last_error) =
        raw;
    Ok(Notification {
        id,
        content: NewNotification {
            state_id,
            target,
            region,
            recipients,
            subject,
            text,
            html,
            created_at: Timestamp::parse_sql(&at)?,
        },
        attempts,
        last_error,
    })
}

/// A fault of the database itself (never of the monitored API).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid database URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("cannot apply schema: {0}")]
    Schema(Box<dyn std::error::Error + Send + Sync>),
    #[error("query failed: {0}")]
    Query(Box<dyn std::error::Error + Send + Sync>),
    #[error("bad timestamp in database: {0}")]
    Timestamp(#[from] crate::timestamp::TimestampError),
}

/// The monitor's view of the database. Rows of one target/region are ordered by
/// `(timestamp, id)`: timestamps are the real order of events, ids break ties.
///
/// Call order in the monitor: [`Store::last`] once per target and [`Store::unsent`] once at start
/// (to resume the detector and the outbox), then for each transition [`Store::insert`],
/// [`Store::previous`] of the inserted row (the length of the period that ended),
/// [`Store::since`] (history for the email) and [`Store::enqueue`]; then, per delivery attempt,
/// [`Store::note_attempt`] or [`Store::mark_sent`].
pub trait Store: Send {
    /// The latest row of `target`/`region`, if any.
    fn last(&mut self, target: &str, region: &str) -> Result<Option<StateRow>, StoreError>;

    /// Inserts `row` and returns it with its id.
    fn insert(&mut self, row: &NewState) -> Result<StateRow, StoreError>;

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

    /// Writes `notification` into the outbox (unsent, no attempts) and returns its id.
    fn enqueue(&mut self, notification: &NewNotification) -> Result<i64, StoreError>;

    /// The unsent notifications, oldest first: what a restart must still deliver.
    fn unsent(&mut self) -> Result<Vec<Notification>, StoreError>;

    /// Records a failed delivery attempt (the total count so far and why it failed).
    fn note_attempt(&mut self, id: i64, attempts: u32, error: &str) -> Result<(), StoreError>;

    /// Marks a notification as accepted by the SMTP server at `at`, after `attempts` attempts.
    fn mark_sent(&mut self, id: i64, attempts: u32, at: Timestamp) -> Result<(), StoreError>;

    /// Every distinct `(target, region)` pair with at least one `state` row, sorted by target
    /// then region in Rust's string order (the same on every backend), each pair once: what
    /// `api-monitor report` walks, including targets no longer in the configuration.
    ///
    /// The default fails: only the real stores answer it. It exists so a test fake that never
    /// reports need not implement it.
    fn series(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        Err(StoreError::Query("this store cannot list its target/region series".into()))
    }
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
