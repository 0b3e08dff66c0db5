//! The embedded SQLite store, selected by a `sqlite://` URL: the default, so `make run` works on
//! a fresh machine with no database server.
//!
//! One [`rusqlite::Connection`] in WAL mode with a busy timeout, so a reader such as
//! `api-monitor report` or the `sqlite3` shell can look at the file while the monitor writes.
//! Timestamps are stored as text in the fixed-width [`Timestamp::to_sql`] form, whose text order
//! is time order, so comparisons and `ORDER BY` need no date functions.
//!
//! Why the rest is shaped this way:
//! - **Write transactions are `BEGIN IMMEDIATE`** (open, commit, claim): the write lock is taken
//!   up front, so two processes never both read and then fail to upgrade to writing.
//! - **The open upgrades in place**, in that same kind of transaction: version check, missing
//!   columns (`pragma_table_info`), then `sql/sqlite.sql`.
//! - **The file is watched.** SQLite writes on happily into a file deleted (or renamed over)
//!   after open, and every later write would vanish with it; so the (device, inode) seen at open
//!   is compared before each commit and heartbeat.
//! - **Read-only opens** (`report`, `outbox`) use `SQLITE_OPEN_READ_ONLY` and write nothing:
//!   no file is created, no schema applied, no journal mode set; a missing file, a file without
//!   a `state` table or an older schema is said so in one line instead.
//! - **Permanent faults are told apart** (`permanent_reason`): not a database, cannot open,
//!   read-only, no permission; busy, locked, full disk and I/O errors stay transient.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{ffi, params, Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction};
use rusqlite::{Error as SqlError, TransactionBehavior};

use super::{
    check_readable, check_version, clip, clip_reason, decide_claim, Access, Claim, Clear, Commit,
    Holder, NewState, Notification, OutboxEntry, RawEntry, Silence, StateRow, Store, StoreError,
    ERROR_MAX_CHARS, HOLDER_NAME, HOST_MAX_CHARS, LEGACY_KEY_PREFIX, MAINTENANCE_MAX_CHARS,
    REFUSED_MAX_CHARS, SILENCE_TEXT_MAX_CHARS,
};
use crate::latency::{LatencyRow, Span};
use crate::timestamp::Timestamp;

/// The schema, applied at every open; every statement is idempotent.
const SCHEMA: &str = include_str!("../../sql/sqlite.sql");

/// How long a write waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The page cache of each connection, in KiB (SQLite's default is 2,000 KiB). The monitor's
/// writes are small appends and its reads touch the newest rows; a page not in the cache is one
/// `pread` from the operating system's file cache away. SQLite's default cache grows with
/// the database to 2 MiB per connection, most of it pages read once at start.
const PAGE_CACHE_KIB: i64 = 256;

/// The columns of [`StateRow`], in the order [`RawRow`] reads them.
const COLUMNS: &str = "id, timestamp, healthy, target, region, reason, maintenance, held";

/// The columns of [`RawEntry`], in its order.
const OUTBOX_COLUMNS: &str = "id, row_key, target, region, recipients, subject, text, html, \
     created_at, attempts, last_error, refused, sent_at IS NOT NULL, dead_at IS NOT NULL";

/// The database's clock as text in the [`Timestamp::to_sql`] form, for the `holder` times.
const NOW: &str = "strftime('%Y-%m-%d %H:%M:%f', 'now')";

/// The columns version 2 added to version 1's tables, with the statement adding each. A new
/// database gets them from [`SCHEMA`]; only an existing table that lacks one is altered.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("state", "row_key", "ALTER TABLE state ADD COLUMN row_key CHAR(32) NULL"),
    ("notification", "row_key", "ALTER TABLE notification ADD COLUMN row_key CHAR(32) NULL"),
    ("notification", "dead_at", "ALTER TABLE notification ADD COLUMN dead_at TEXT NULL"),
    ("notification", "refused", "ALTER TABLE notification ADD COLUMN refused VARCHAR(2048) NULL"),
    // Version 3.
    ("state", "maintenance", "ALTER TABLE state ADD COLUMN maintenance VARCHAR(255) NULL"),
    (
        "state",
        "held",
        "ALTER TABLE state ADD COLUMN held INTEGER NOT NULL DEFAULT 0 CHECK (held IN (0, 1))",
    ),
];

/// A SQLite database file (or an in-memory database) holding the `state` table.
pub struct SqliteStore {
    conn: Connection,
    /// The URL as errors show it.
    shown_url: String,
    /// The file opened, to notice it deleted or replaced under the store; `None` for
    /// `:memory:`.
    file: Option<OpenedFile>,
}

/// Where a `sqlite://` URL points.
#[derive(Debug, PartialEq, Eq)]
enum Location {
    /// `sqlite://:memory:`: a private database that lives as long as the store.
    Memory,
    /// `sqlite://relative.db` (from the current directory) or `sqlite:///abs/path.db`.
    File(PathBuf),
}

/// The identity of a file: what stays the same while it is renamed and changes when another
/// file takes its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

/// The database file as it was at open.
#[derive(Debug)]
struct OpenedFile {
    path: PathBuf,
    id: FileId,
}

/// Whether the file now at the opened path (`now`) is still the one opened. SQLite keeps
/// writing to an unlinked file without a word (its open descriptor still works), so a deleted
/// or replaced file would swallow every later write: this is the check that notices.
/// A failure other than "not found" (a permission problem on a parent directory, say) cannot
/// tell, and leaves it to the write itself to fail.
fn still_there(opened: FileId, now: &io::Result<FileId>) -> bool {
    match now {
        Ok(id) => *id == opened,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

fn file_id(path: &Path) -> io::Result<FileId> {
    std::fs::metadata(path).map(|m| FileId { dev: m.dev(), ino: m.ino() })
}

impl SqliteStore {
    /// Opens (creating if needed) the database named by `url`, upgrades a version 1 database
    /// in place and applies the schema.
    ///
    /// `sqlite://relative.db` is relative to the current directory, `sqlite:///abs/path.db` is
    /// absolute and `sqlite://:memory:` is a private in-memory database. The path is taken
    /// literally (no percent-decoding, no `~`). The directory must already exist: creating it
    /// would hide a typo in the path.
    ///
    /// A fault waiting cannot cure (no such directory, not a database, no permission, a schema
    /// newer than this binary) is [`StoreError::Permanent`].
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, Access::ReadWrite)
    }

    /// [`SqliteStore::open`], or with [`Access::ReadOnly`] the file as it is: opened
    /// read-only, never created, nothing written (see [`super::open_read_only`]).
    pub(crate) fn open_with(url: &str, access: Access) -> Result<Self, StoreError> {
        let shown_url = crate::redact::url(url);
        let location = parse_url(url)?;
        let name = match &location {
            Location::Memory => ":memory:".to_owned(),
            Location::File(path) => path.display().to_string(),
        };
        let fail = |what: &str, e: SqlError| classify(&shown_url, &name, what, e);
        let conn = match &location {
            Location::Memory => Connection::open_in_memory()
                .map_err(|e| fail("cannot open in-memory database", e))?,
            Location::File(path) if access == Access::ReadOnly => {
                if !path.is_file() {
                    return Err(StoreError::NoDatabase { url: shown_url, exists: false });
                }
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(path, flags)
                    .map_err(|e| fail(&format!("cannot open {}", path.display()), e))?;
                conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| fail("cannot set busy_timeout", e))?;
                conn
            }
            Location::File(path) => {
                let dir = match path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir,
                    _ => Path::new("."),
                };
                if !dir.is_dir() {
                    return Err(StoreError::Permanent {
                        url: shown_url,
                        reason: format!(
                            "directory {} does not exist (create it first)",
                            dir.display()
                        ),
                    });
                }
                // No SQLITE_OPEN_URI: the path is a plain file name, never a `file:` URI.
                let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(path, flags)
                    .map_err(|e| fail(&format!("cannot open {}", path.display()), e))?;
                conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| fail("cannot set busy_timeout", e))?;
                let mode: String = conn
                    .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
                    .map_err(|e| {
                        fail(&format!("cannot use {} as a database", path.display()), e)
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
        let mut conn = conn;
        conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)
            .map_err(|e| fail("cannot set cache_size", e))?;
        if access == Access::ReadOnly {
            let (has_state, version) = inspect(&conn).map_err(|e| fail("cannot read", e))?;
            check_readable(&shown_url, has_state, version)?;
        } else {
            match prepare(&mut conn) {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => return Err(StoreError::Permanent { url: shown_url, reason }),
                Err(e) => {
                    return Err(match permanent_reason(&e) {
                        Some(reason) => StoreError::Permanent { url: shown_url, reason },
                        None => StoreError::Schema(format!("sqlite: {}", describe(&e)).into()),
                    })
                }
            }
        }
        let file = match location {
            Location::Memory => None,
            Location::File(path) => {
                // Absolute, so a later change of the current directory cannot fool the check.
                let path = std::fs::canonicalize(&path).unwrap_or(path);
                let id = file_id(&path).map_err(|e| StoreError::Permanent {
                    url: shown_url.clone(),
                    reason: format!("cannot inspect {}: {e}", path.display()),
                })?;
                Some(OpenedFile { path, id })
            }
        };
        Ok(SqliteStore { conn, shown_url, file })
    }

    /// The error for a failed statement: permanent when waiting cannot cure it.
    fn fail(&self, what: &str, e: SqlError) -> StoreError {
        let name = match &self.file {
            Some(file) => file.path.display().to_string(),
            None => ":memory:".to_owned(),
        };
        classify(&self.shown_url, &name, what, e)
    }

    /// [`StoreError::Vanished`] when the database file was deleted or replaced since open.
    fn check_file(&self) -> Result<(), StoreError> {
        let Some(file) = &self.file else { return Ok(()) };
        if still_there(file.id, &file_id(&file.path)) {
            Ok(())
        } else {
            Err(StoreError::Vanished { path: file.path.display().to_string() })
        }
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
            .map_err(|e| self.fail(what, e))?
            .map(RawRow::into_state)
            .transpose()
    }

    /// The notifications `filter` (a `WHERE` condition) selects, oldest first.
    fn outbox(&self, what: &str, filter: &str) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM notification WHERE {filter} ORDER BY created_at, id"
            ))
            .map_err(|e| self.fail(what, e))?;
        let raw = stmt
            .query_map([], read_entry)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| self.fail(what, e))?;
        raw.into_iter().map(RawEntry::into_entry).collect()
    }

    /// Runs one write statement; returns how many rows it matched.
    fn write(
        &self,
        what: &str,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<usize, StoreError> {
        // Cached: the same few statements run all the time (the heartbeat every 5 s).
        self.conn
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute(params))
            .map_err(|e| self.fail(what, e))
    }
}

/// Version check, in-place upgrade and schema, in one write transaction so two processes
/// opening one file at once cannot interleave them. `Ok(Err(reason))`: a schema too new.
fn prepare(conn: &mut Connection) -> rusqlite::Result<Result<(), String>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(version) = stored_version(&tx)? {
        if let Err(reason) = check_version(version) {
            return Ok(Err(reason));
        }
    }
    let mut columns: HashMap<&str, Vec<String>> = HashMap::new();
    for table in ["state", "notification"] {
        let mut stmt = tx.prepare("SELECT name FROM pragma_table_info(?1)")?;
        let names = stmt
            .query_map([table], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        if !names.is_empty() {
            columns.insert(table, names);
        }
    }
    for statement in upgrade_steps(&columns) {
        tx.execute(statement, [])?;
    }
    tx.execute_batch(SCHEMA)?;
    // Version 1 notifications had no key: give them one, so they are delivered by key too.
    tx.execute(
        "UPDATE notification SET row_key = ?1 || id WHERE row_key IS NULL",
        [LEGACY_KEY_PREFIX],
    )?;
    tx.commit()?;
    Ok(Ok(()))
}

/// The `schema_version` of the database; `None` when it has none (new, or version 1).
fn stored_version(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    if !has_table(conn, "schema_version")? {
        return Ok(None);
    }
    conn.query_row("SELECT max(version) FROM schema_version", [], |row| row.get(0))
}

fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |row| row.get(0),
    )
}

/// What a read-only open needs to know: whether there is a `state` table, and the schema
/// version. Reads only.
fn inspect(conn: &Connection) -> rusqlite::Result<(bool, Option<i64>)> {
    Ok((has_table(conn, "state")?, stored_version(conn)?))
}

/// The statements that add what version 2 added to the tables that exist (`columns`: each
/// existing table's column names). Tables that do not exist yet come whole from [`SCHEMA`].
fn upgrade_steps(columns: &HashMap<&str, Vec<String>>) -> Vec<&'static str> {
    ADDED_COLUMNS
        .iter()
        .filter(|(table, column, _)| {
            columns.get(table).is_some_and(|have| !have.iter().any(|c| c == column))
        })
        .map(|(_, _, statement)| *statement)
        .collect()
}

/// Inserts `row` unless a row with its key exists; the id of the row with its key.
fn write_state(tx: &Transaction<'_>, row: &NewState) -> rusqlite::Result<i64> {
    let reason = row.reason.as_deref().map(clip_reason);
    tx.prepare_cached(
        "INSERT INTO state (row_key, timestamp, healthy, target, region, reason, maintenance, \
         held) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (row_key) DO NOTHING",
    )?
    .execute(params![
        row.key,
        row.timestamp.to_sql(),
        row.healthy,
        row.target,
        row.region,
        reason,
        row.maintenance.as_deref().map(|m| clip(m, MAINTENANCE_MAX_CHARS)),
        row.held
    ])?;
    tx.prepare_cached("SELECT id FROM state WHERE row_key = ?1")?
        .query_row([&row.key], |r| r.get(0))
}

/// Inserts `n` unless a notification with its key exists.
fn write_notification(
    tx: &Transaction<'_>,
    n: &Notification,
    state_id: Option<i64>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO notification (row_key, state_id, target, region, recipients, subject, text, \
         html, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (row_key) DO NOTHING",
    )?
    .execute(params![
        n.key,
        state_id,
        n.target,
        n.region,
        n.recipients,
        n.subject,
        n.text,
        n.html,
        n.created_at.to_sql()
    ])
    .map(drop)
}

/// The whole of `commit`, in one transaction; see [`Store::commit`].
fn write_commit(conn: &mut Connection, commit: &Commit) -> rusqlite::Result<Option<i64>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let state_id = commit.state.as_ref().map(|row| write_state(&tx, row)).transpose()?;
    for n in &commit.notifications {
        write_notification(&tx, n, state_id)?;
    }
    if let Some((target, region)) = &commit.release {
        tx.prepare_cached(
            "UPDATE state SET held = 0 WHERE target = ?1 AND region = ?2 AND held = 1",
        )?
        .execute(params![target, region])?;
    }
    tx.commit()?;
    Ok(state_id)
}

/// The claim, in one write transaction (`BEGIN IMMEDIATE`: no other connection can write, so
/// none can claim, between the read and the write); see [`Store::claim`].
fn locked_claim(
    conn: &mut Connection,
    me: &Holder,
    stale_after: Duration,
    gone: &dyn Fn(&Holder) -> bool,
) -> rusqlite::Result<Claim> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // The lock row always exists once claimed; a free lock is a row with no holder.
    tx.execute(
        "INSERT INTO holder (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
        [HOLDER_NAME],
    )?;
    let (id, host, pid, age_micros): (Option<String>, Option<String>, Option<u32>, Option<f64>) =
        tx.query_row(
            "SELECT holder_id, host, pid, \
             (julianday('now') - julianday(heartbeat_at)) * 86400000000.0 \
             FROM holder WHERE name = ?1",
            [HOLDER_NAME],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
    let current = id.map(|id| {
        let holder = Holder { id, host: host.unwrap_or_default(), pid: pid.unwrap_or(0) };
        // A float of microseconds; `as` saturates, and a negative age counts as zero.
        (holder, age_micros.map(|micros| super::age_from_micros(micros.round() as i64)))
    });
    let claim = decide_claim(me, current, stale_after, gone);
    if claim == Claim::Granted {
        tx.execute(
            &format!(
                "UPDATE holder SET started_at = CASE WHEN holder_id = ?2 THEN started_at \
                 ELSE {NOW} END, holder_id = ?2, host = ?3, pid = ?4, heartbeat_at = {NOW} \
                 WHERE name = ?1"
            ),
            params![HOLDER_NAME, me.id, clip(&me.host, HOST_MAX_CHARS), me.pid],
        )?;
        tx.commit()?;
    }
    Ok(claim)
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
            .map_err(|e| self.fail("rows in window", e))?;
        let raw = stmt
            .query_map(params![target, region, from], RawRow::read)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.fail("rows in window", e))?;
        before.into_iter().map(Ok).chain(raw.into_iter().map(RawRow::into_state)).collect()
    }

    fn commit(&mut self, commit: &Commit) -> Result<Option<i64>, StoreError> {
        self.check_file()?;
        let result = write_commit(&mut self.conn, commit);
        result.map_err(|e| self.fail("commit", e))
    }

    fn pending(&mut self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox("pending notifications", "sent_at IS NULL AND dead_at IS NULL")
    }

    fn dead(&mut self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox("dead notifications", "sent_at IS NULL AND dead_at IS NOT NULL")
    }

    fn record_attempt(&mut self, key: &str, attempts: u32, error: &str) -> Result<(), StoreError> {
        self.write(
            "record delivery attempt",
            "UPDATE notification SET attempts = ?1, last_error = ?2 WHERE row_key = ?3",
            params![attempts, clip(error, ERROR_MAX_CHARS), key],
        )
        .map(drop)
    }

    fn record_sent(
        &mut self,
        key: &str,
        attempts: u32,
        at: Timestamp,
        refused: Option<&str>,
    ) -> Result<(), StoreError> {
        let refused = refused.map(|r| clip(r, REFUSED_MAX_CHARS));
        self.write(
            "record notification sent",
            "UPDATE notification SET attempts = ?1, sent_at = ?2, refused = ?3 WHERE row_key = ?4",
            params![attempts, at.to_sql(), refused, key],
        )
        .map(drop)
    }

    fn record_dead(
        &mut self,
        key: &str,
        attempts: u32,
        error: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(
            "record notification dead",
            "UPDATE notification SET attempts = ?1, last_error = ?2, dead_at = ?3 \
             WHERE row_key = ?4 AND sent_at IS NULL",
            params![attempts, clip(error, ERROR_MAX_CHARS), at.to_sql(), key],
        )
        .map(drop)
    }

    fn requeue(&mut self, id: Option<i64>) -> Result<usize, StoreError> {
        // `?1 IS NULL`: one statement for "this one" and "all of them".
        self.write(
            "requeue dead notifications",
            "UPDATE notification SET dead_at = NULL, attempts = 0 \
             WHERE dead_at IS NOT NULL AND sent_at IS NULL AND (?1 IS NULL OR id = ?1)",
            params![id],
        )
    }

    fn claim(
        &mut self,
        me: &Holder,
        stale_after: Duration,
        gone: &dyn Fn(&Holder) -> bool,
    ) -> Result<Claim, StoreError> {
        let result = locked_claim(&mut self.conn, me, stale_after, gone);
        result.map_err(|e| self.fail("claim", e))
    }

    fn heartbeat(&mut self, me: &Holder) -> Result<bool, StoreError> {
        self.check_file()?;
        self.write(
            "heartbeat",
            &format!("UPDATE holder SET heartbeat_at = {NOW} WHERE name = ?1 AND holder_id = ?2"),
            params![HOLDER_NAME, me.id],
        )
        .map(|matched| matched > 0)
    }

    fn release(&mut self, me: &Holder) -> Result<(), StoreError> {
        self.write(
            "release",
            "UPDATE holder SET holder_id = NULL, host = NULL, pid = NULL, started_at = NULL, \
             heartbeat_at = NULL WHERE name = ?1 AND holder_id = ?2",
            params![HOLDER_NAME, me.id],
        )
        .map(drop)
    }

    fn series(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT DISTINCT target, region FROM state")
            .map_err(|e| self.fail("series", e))?;
        let mut series = stmt
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| self.fail("series", e))?;
        // Sorted here, not by the database, so both backends agree on the order.
        series.sort_unstable();
        Ok(series)
    }

    fn silences(&mut self, now: Timestamp) -> Result<Vec<Silence>, StoreError> {
        let what = "silences";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, target, starts_at, ends_at, reason, created_by FROM silence \
                 WHERE ends_at > ?1 AND ends_at > starts_at ORDER BY starts_at, id",
            )
            .map_err(|e| self.fail(what, e))?;
        let raw = stmt
            .query_map([now.to_sql()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| self.fail(what, e))?;
        raw.into_iter().map(super::into_silence).collect()
    }

    fn add_silence(&mut self, s: &Silence, now: Timestamp) -> Result<i64, StoreError> {
        self.write(
            "add silence",
            "INSERT INTO silence (target, starts_at, ends_at, reason, created_by, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                s.target,
                s.starts_at.to_sql(),
                s.ends_at.to_sql(),
                clip(&s.reason, SILENCE_TEXT_MAX_CHARS),
                clip(&s.created_by, SILENCE_TEXT_MAX_CHARS),
                now.to_sql()
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn clear_silences(&mut self, which: &Clear, now: Timestamp) -> Result<usize, StoreError> {
        let now = now.to_sql();
        // A silence not started yet ends where it starts: it never runs.
        let set = "UPDATE silence SET ends_at = max(starts_at, ?1) WHERE ends_at > ?1 AND ends_at > starts_at";
        let what = "clear silences";
        match which {
            Clear::Id(id) => self.write(what, &format!("{set} AND id = ?2"), params![now, id]),
            Clear::Target(t) => {
                self.write(what, &format!("{set} AND target = ?2"), params![now, t])
            }
            Clear::All => self.write(what, set, params![now]),
        }
    }

    fn record_latency(&mut self, rows: &[LatencyRow]) -> Result<(), StoreError> {
        self.check_file()?;
        let result = (|| {
            let tx = self.conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT OR REPLACE INTO latency (target, region, span, start, probes, buckets) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for row in rows {
                    stmt.execute(params![
                        row.target,
                        row.region,
                        row.span.seconds(),
                        row.start.to_sql(),
                        i64::try_from(row.histogram.probes()).unwrap_or(i64::MAX),
                        row.histogram.encode()
                    ])?;
                }
            }
            tx.commit()
        })();
        result.map_err(|e| self.fail("record latency", e))
    }

    fn latency(
        &mut self,
        span: Span,
        pair: Option<(&str, &str)>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<LatencyRow>, StoreError> {
        let what = "latency";
        let (target, region) = pair.unwrap_or(("", ""));
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT target, region, span, start, buckets FROM latency \
                 WHERE span = ?1 AND start >= ?2 AND start < ?3 \
                 AND (?4 = 0 OR (target = ?5 AND region = ?6)) ORDER BY target, region, start",
            )
            .map_err(|e| self.fail(what, e))?;
        let raw = stmt
            .query_map(
                params![span.seconds(), from.to_sql(), to.to_sql(), pair.is_some(), target, region],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| self.fail(what, e))?;
        super::latency_rows(raw)
    }

    fn latency_pairs(
        &mut self,
        span: Span,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let what = "latency pairs";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT target, region FROM latency \
                 WHERE span = ?1 AND start >= ?2 AND start < ?3 ORDER BY target, region",
            )
            .map_err(|e| self.fail(what, e))?;
        stmt.query_map(params![span.seconds(), from.to_sql(), to.to_sql()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| self.fail(what, e))
    }

    fn prune_latency(&mut self, span: Span, before: Timestamp) -> Result<usize, StoreError> {
        self.write(
            "prune latency",
            "DELETE FROM latency WHERE span = ?1 AND start < ?2",
            params![span.seconds(), before.to_sql()],
        )
    }
}

/// Reads one row of [`OUTBOX_COLUMNS`].
fn read_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawEntry> {
    Ok(RawEntry {
        id: r.get(0)?,
        key: r.get(1)?,
        target: r.get(2)?,
        region: r.get(3)?,
        recipients: r.get(4)?,
        subject: r.get(5)?,
        text: r.get(6)?,
        html: r.get(7)?,
        created_at: r.get(8)?,
        attempts: r.get(9)?,
        last_error: r.get(10)?,
        refused: r.get(11)?,
        sent: r.get(12)?,
        dead: r.get(13)?,
    })
}

/// A `state` row as SQLite returns it, before its timestamp text is parsed.
struct RawRow {
    id: i64,
    timestamp: String,
    healthy: bool,
    target: String,
    region: String,
    reason: Option<String>,
    maintenance: Option<String>,
    held: bool,
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
            maintenance: row.get(6)?,
            held: row.get(7)?,
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
            maintenance: self.maintenance,
            held: self.held,
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

/// The driver's message alone: the text SQLite gave, without rusqlite's `Error code N:` prefix.
fn describe(e: &SqlError) -> String {
    let text = match e {
        SqlError::SqliteFailure(_, Some(message)) => message.clone(),
        SqlError::SqliteFailure(failure, None) => ffi::code_to_str(failure.extended_code).into(),
        other => other.to_string(),
    };
    text.replace(['\n', '\r'], " ")
}

/// Why `e` can never succeed on a retry, if it cannot: the one line [`StoreError::Permanent`]
/// shows after the URL. Busy, locked, full and I/O errors stay transient; a moved file is
/// [`StoreError::Vanished`] (see [`classify`]).
fn permanent_reason(e: &SqlError) -> Option<String> {
    let SqlError::SqliteFailure(failure, _) = e else { return None };
    let why = describe(e);
    match failure.code {
        ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => {
            Some(format!("not a SQLite database, or damaged ({why})"))
        }
        ErrorCode::CannotOpen => Some(format!(
            "cannot open the database ({why}): check that the file and its directory are \
             readable and writable"
        )),
        ErrorCode::ReadOnly => Some(format!(
            "the database is read-only ({why}): check the permissions of the file and its \
             directory"
        )),
        ErrorCode::PermissionDenied => Some(format!("access denied ({why})")),
        _ => None,
    }
}

/// A failed statement as a [`StoreError`]: permanent when waiting cannot cure it, otherwise a
/// query error saying what the store was doing.
fn classify(shown_url: &str, name: &str, what: &str, e: SqlError) -> StoreError {
    if let SqlError::SqliteFailure(failure, _) = &e {
        if failure.extended_code == ffi::SQLITE_READONLY_DBMOVED {
            return StoreError::Vanished { path: name.to_owned() };
        }
    }
    match permanent_reason(&e) {
        Some(reason) => StoreError::Permanent { url: shown_url.to_owned(), reason },
        None => StoreError::Query(format!("sqlite {what}: {}", describe(&e)).into()),
    }
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
    fn a_file_is_still_there_only_with_the_same_identity() {
        let opened = FileId { dev: 1, ino: 7 };
        assert!(still_there(opened, &Ok(opened)));
        assert!(!still_there(opened, &Ok(FileId { dev: 1, ino: 8 })), "replaced");
        assert!(!still_there(opened, &Ok(FileId { dev: 2, ino: 7 })), "another file system");
        let gone = Err(io::Error::from(io::ErrorKind::NotFound));
        assert!(!still_there(opened, &gone), "deleted");
        let unknown = Err(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(still_there(opened, &unknown), "cannot tell: the write will say");
    }

    #[test]
    fn only_missing_columns_of_existing_tables_are_added() {
        let names = |list: &[&str]| list.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
        assert!(upgrade_steps(&HashMap::new()).is_empty(), "a new database gets the schema");
        let v1 = HashMap::from([
            ("state", names(&["id", "timestamp", "healthy", "target", "region", "reason"])),
            ("notification", names(&["id", "state_id", "subject", "sent_at"])),
        ]);
        assert_eq!(upgrade_steps(&v1).len(), 6, "every version 2 and 3 column");
        let half = HashMap::from([
            ("state", names(&["id", "row_key", "maintenance", "held"])),
            ("notification", names(&["id", "row_key", "dead_at"])),
        ]);
        assert_eq!(
            upgrade_steps(&half),
            ["ALTER TABLE notification ADD COLUMN refused VARCHAR(2048) NULL"],
            "an interrupted upgrade resumes"
        );
    }

    fn failure(code: std::ffi::c_int) -> SqlError {
        SqlError::SqliteFailure(ffi::Error::new(code), None)
    }

    #[test]
    fn permanent_faults_are_told_from_transient_ones() {
        for code in [
            ffi::SQLITE_NOTADB,
            ffi::SQLITE_CORRUPT,
            ffi::SQLITE_CANTOPEN,
            ffi::SQLITE_READONLY,
            ffi::SQLITE_READONLY_DBMOVED,
            ffi::SQLITE_PERM,
        ] {
            let e = classify("sqlite:///d/s.db", "/d/s.db", "commit", failure(code));
            assert!(e.is_permanent(), "{code}: {e}");
            assert!(!e.to_string().contains("Error code"), "{e}");
        }
        for code in [ffi::SQLITE_BUSY, ffi::SQLITE_LOCKED, ffi::SQLITE_FULL, ffi::SQLITE_IOERR] {
            let e = classify("sqlite:///d/s.db", "/d/s.db", "commit", failure(code));
            assert!(matches!(e, StoreError::Query(_)), "{code}: {e}");
        }
        let moved = classify("u", "/d/s.db", "commit", failure(ffi::SQLITE_READONLY_DBMOVED));
        assert!(matches!(moved, StoreError::Vanished { .. }), "{moved:?}");
        assert_eq!(
            moved.to_string(),
            "the database file /d/s.db was deleted or replaced while api-monitor ran"
        );
        let read_only = classify("u", "/d/s.db", "commit", failure(ffi::SQLITE_READONLY));
        assert_eq!(
            read_only.to_string(),
            "u: the database is read-only (attempt to write a readonly database): check the \
             permissions of the file and its directory"
        );
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
