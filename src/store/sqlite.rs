//! The embedded SQLite store, selected by a `sqlite://` URL: the default, so `make run` works on
//! a fresh machine with no database server.
//!
//! One [`rusqlite::Connection`] in WAL mode with a busy timeout, so a reader such as
//! `api-monitor report` or the `sqlite3` shell can look at the file while the monitor writes.
//! Timestamps are stored as text in the fixed-width [`Timestamp::to_sql`] form, whose text order
//! is time order, so comparisons and `ORDER BY` need no date functions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::{
    clip_reason, notification, NewNotification, NewState, Notification, RawNotification, StateRow,
    Store, StoreError,
};
use crate::timestamp::Timestamp;

/// The schema, applied at every open; every statement is idempotent.
const SCHEMA: &str = include_str!("../../sql/sqlite.sql");

/// How long a write waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The columns of [`StateRow`], in the order [`RawRow`] reads them.
const COLUMNS: &str = "id, timestamp, healthy, target, region, reason";

/// A SQLite database file (or an in-memory database) holding the `state` table.
pub struct SqliteStore {
    conn: Connection,
}

/// Where a `sqlite://` URL points.
#[derive(Debug, PartialEq, Eq)]
enum Location {
    /// `sqlite://:memory:`: a private database that lives as long as the store.
    Memory,
    /// `sqlite://relative.db` (from the current directory) or `sqlite:///abs/path.db`.
    File(PathBuf),
}

impl SqliteStore {
    /// Opens (creating if needed) the database named by `url` and applies the schema.
    ///
    /// `sqlite://relative.db` is relative to the current directory, `sqlite:///abs/path.db` is
    /// absolute and `sqlite://:memory:` is a private in-memory database. The path is taken
    /// literally (no percent-decoding, no `~`). The directory must already exist: creating it
    /// would hide a typo in the path.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let connect_error = |reason: String| StoreError::Connect {
            url: crate::redact::url(url),
            source: reason.into(),
        };
        let conn = match parse_url(url)? {
            Location::Memory => Connection::open_in_memory()
                .map_err(|e| connect_error(format!("cannot open in-memory database: {e}")))?,
            Location::File(path) => {
                let dir = match path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir,
                    _ => Path::new("."),
                };
                if !dir.is_dir() {
                    return Err(connect_error(format!(
                        "directory {} does not exist (create it first)",
                        dir.display()
                    )));
                }
                // No SQLITE_OPEN_URI: the path is a plain file name, never a `file:` URI.
                let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(&path, flags)
                    .map_err(|e| connect_error(format!("cannot open {}: {e}", path.display())))?;
                conn.busy_timeout(BUSY_TIMEOUT)
                    .map_err(|e| connect_error(format!("cannot set busy_timeout: {e}")))?;
                let mode: String = conn
                    .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
                    .map_err(|e| {
                        connect_error(format!("cannot use {} as a database: {e}", path.display()))
                    })?;
                if !mode.eq_ignore_ascii_case("wal") {
                    log::warn!(
                        "sqlite journal_mode={mode} (WAL unavailable) path={}",
                        path.display()
                    );
                }
                conn
            }
        };
        conn.execute_batch(SCHEMA).map_err(|e| StoreError::Schema(Box::new(e)))?;
        Ok(SqliteStore { conn })
    }

    /// The single row `sql` selects (columns [`COLUMNS`]), if any.
    fn query_one(
        &self,
        what: &str,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<StateRow>, StoreError> {
        self.conn
            .query_row(sql, params, RawRow::read)
            .optional()
            .map_err(|e| query_error(what, e))?
            .map(RawRow::into_state)
            .transpose()
    }
}

impl Store for SqliteStore {
    fn last(&mut self, target: &str, region: &str) -> Result<Option<StateRow>, StoreError> {
        self.query_one(
            "last row",
            &format!(
                "SELECT {COLUMNS} FROM state WHERE target = ?1 AND region = ?2 \
                 ORDER BY timestamp DESC, id DESC LIMIT 1"
            ),
            params![target, region],
        )
    }

    fn insert(&mut self, row: &NewState) -> Result<StateRow, StoreError> {
        let reason = row.reason.as_deref().map(clip_reason);
        self.conn
            .execute(
                "INSERT INTO state (timestamp, healthy, target, region, reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![row.timestamp.to_sql(), row.healthy, row.target, row.region, reason],
            )
            .map_err(|e| query_error("insert", e))?;
        Ok(StateRow {
            id: self.conn.last_insert_rowid(),
            timestamp: row.timestamp,
            healthy: row.healthy,
            target: row.target.clone(),
            region: row.region.clone(),
            reason: reason.map(str::to_owned),
        })
    }

    fn previous(&mut self, row: &StateRow) -> Result<Option<StateRow>, StoreError> {
        self.query_one(
            "previous row",
            &format!(
                "SELECT {COLUMNS} FROM state WHERE target = ?1 AND region = ?2 \
                 AND (timestamp < ?3 OR (timestamp = ?3 AND id < ?4)) \
                 ORDER BY timestamp DESC, id DESC LIMIT 1"
            ),
            params![row.target, row.region, row.timestamp.to_sql(), row.id],
        )
    }

    fn since(
        &mut self,
        target: &str,
        region: &str,
        from: Timestamp,
    ) -> Result<Vec<StateRow>, StoreError> {
        let from = from.to_sql();
        let before = self.query_one(
            "last row before window",
            &format!(
                "SELECT {COLUMNS} FROM state WHERE target = ?1 AND region = ?2 AND timestamp < ?3 \
                 ORDER BY timestamp DESC, id DESC LIMIT 1"
            ),
            params![target, region, from],
        )?;
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM state WHERE target = ?1 AND region = ?2 AND timestamp >= ?3 \
                 ORDER BY timestamp, id"
            ))
            .map_err(|e| query_error("rows in window", e))?;
        let raw = stmt
            .query_map(params![target, region, from], RawRow::read)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| query_error("rows in window", e))?;
        before.into_iter().map(Ok).chain(raw.into_iter().map(RawRow::into_state)).collect()
    }

    fn enqueue(&mut self, n: &NewNotification) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO notification (state_id, target, region, recipients, subject, text, \
                 html, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    n.state_id,
                    n.target,
                    n.region,
                    n.recipients,
                    n.subject,
                    n.text,
                    n.html,
                    n.created_at.to_sql()
                ],
            )
            .map_err(|e| query_error("enqueue notification", e))?;
        Ok(self.conn.last_insert_rowid())
    }

    fn unsent(&mut self) -> Result<Vec<Notification>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, state_id, target, region, recipients, subject, text, html, \
                 created_at, attempts, last_error FROM notification WHERE sent_at IS NULL \
                 ORDER BY id",
            )
            .map_err(|e| query_error("unsent notifications", e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                ))
            })
            .and_then(Iterator::collect::<Result<Vec<RawNotification>, _>>)
            .map_err(|e| query_error("unsent notifications", e))?;
        rows.into_iter().map(notification).collect()
    }

    fn note_attempt(&mut self, id: i64, attempts: u32, error: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE notification SET attempts = ?1, last_error = ?2 WHERE id = ?3",
                params![attempts, clip_reason(error), id],
            )
            .map(drop)
            .map_err(|e| query_error("note delivery attempt", e))
    }

    fn mark_sent(&mut self, id: i64, attempts: u32, at: Timestamp) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE notification SET attempts = ?1, sent_at = ?2 WHERE id = ?3",
                params![attempts, at.to_sql(), id],
            )
            .map(drop)
            .map_err(|e| query_error("mark notification sent", e))
    }

    fn series(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT DISTINCT target, region FROM state")
            .map_err(|e| query_error("series", e))?;
        let mut series = stmt
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| query_error("series", e))?;
        // Sorted here, not by the database, so both backends agree on the order.
        series.sort_unstable();
        Ok(series)
    }
}

/// A `state` row as SQLite returns it, before its timestamp text is parsed.
struct RawRow {
    id: i64,
    timestamp: String,
    healthy: bool,
    target: String,
    region: String,
    reason: Option<String>,
}

impl RawRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawRow {
            id: row.get(0)?,
            timestamp: row.get(1)?,
            healthy: row.get(2)?,
            target: row.get(3)?,
            region: row.get(4)?,
            reason: row.get(5)?,
        })
    }

    fn into_state(self) -> Result<StateRow, StoreError> {
        Ok(StateRow {
            id: self.id,
            timestamp: Timestamp::parse_sql(&self.timestamp)?,
            healthy: self.healthy,
            target: self.target,
            region: self.region,
            reason: self.reason,
        })
    }
}

/// Parses `sqlite://PATH`; see [`SqliteStore::open`].
fn parse_url(url: &str) -> Result<Location, StoreError> {
    let bad = |reason: &str| StoreError::Url {
        url: crate::redact::url(url),
        reason: format!(
            "{reason}; expected sqlite://relative.db, sqlite:///abs/path.db or sqlite://:memory:"
        ),
    };
    let path = url.strip_prefix("sqlite://").ok_or_else(|| bad("not a sqlite:// URL"))?;
    if path.is_empty() {
        return Err(bad("no database path"));
    }
    if path.contains(['?', '#']) {
        return Err(bad("query parameters are not supported"));
    }
    if path == ":memory:" {
        return Ok(Location::Memory);
    }
    if path.ends_with('/') {
        return Err(bad("the path names a directory, not a database file"));
    }
    Ok(Location::File(PathBuf::from(path)))
}

/// A failed statement, with what the store was doing.
fn query_error(what: &str, e: rusqlite::Error) -> StoreError {
    StoreError::Query(format!("sqlite {what}: {e}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_relative_absolute_and_memory_databases() {
        assert_eq!(parse_url("sqlite://a.db").unwrap(), Location::File("a.db".into()));
        assert_eq!(parse_url("sqlite://./d/a.db").unwrap(), Location::File("./d/a.db".into()));
        assert_eq!(parse_url("sqlite:///abs/a.db").unwrap(), Location::File("/abs/a.db".into()));
        assert_eq!(parse_url("sqlite://:memory:").unwrap(), Location::Memory);
    }

    #[test]
    fn malformed_urls_are_url_errors() {
        for url in
            ["sqlite://", "sqlite:a.db", "postgres://x", "sqlite://a.db?mode=ro", "sqlite:///tmp/"]
        {
            assert!(matches!(parse_url(url), Err(StoreError::Url { .. })), "{url}");
        }
    }
}
