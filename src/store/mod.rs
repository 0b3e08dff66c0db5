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
/// Call order in the monitor: [`Store::last`] once per target at start (to resume the detector),
/// then for each transition [`Store::insert`], [`Store::previous`] of the inserted row (the
/// length of the period that ended) and [`Store::since`] (history for the email).
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
