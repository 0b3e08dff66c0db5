//! The MySQL / MariaDB store, selected by a `mysql://USER:PASS@HOST:PORT/DB` URL: the production
//! store.
//!
//! Why it is shaped this way:
//! - **One [`mysql::Conn`], not a pool.** The monitor writes a few rows per outage from one
//!   thread; `mysql::Pool` would open 10 connections up front.
//! - **Bounded waits.** A 5 s TCP connect timeout and 10 s read/write timeouts (unless the URL
//!   sets them), so a dead or hung database can never hang the monitor. Name resolution is not
//!   covered by these timeouts; use an IP address or `/etc/hosts` where that matters.
//! - **Survives a database restart.** Before each call the connection is pinged; a dead one is
//!   dropped and one reconnect is attempted. A statement that fails also drops the connection,
//!   so the next call starts on a fresh one. An error is returned, never retried here: retrying
//!   an `INSERT` whose reply was lost could record a transition twice. Retrying with backoff is
//!   the monitor's job.
//! - **No secrets in errors.** URLs are shown through [`crate::redact::url`] (and a `password=`
//!   URL parameter is masked too); the password is also scrubbed from every driver message.
//! - **UTC.** `DATETIME(3)` has no zone; timestamps are written with [`Timestamp::to_sql`] and
//!   read back as text (`CAST(... AS CHAR)`), never through the session zone. The session
//!   `time_zone` is still set to `+00:00` so ad-hoc `NOW()` in the same session agrees. The
//!   `holder` lock uses `UTC_TIMESTAMP(6)`: the database's clock, the one all hosts share.
//! - **Upgrade at connect.** Every new connection checks the schema version, upgrades a
//!   version 1 database in place (checking `information_schema`, since MySQL 8 has no
//!   `ADD COLUMN IF NOT EXISTS`), then applies `sql/mysql.sql`. Two instances upgrading at once
//!   are harmless: the loser's "duplicate column/key" is taken as done.
//! - **Read-only opens** (`report`, `outbox`): the session is `READ ONLY` and nothing is
//!   upgraded or applied; the tables are only looked for (a database without `state`, or of an
//!   older schema, is said so in one line).
//! - **Cluster mode** ([`ClusterStore`], issue 12): the `cluster_member` and `cluster_leader`
//!   tables, every time `NOW(6)` (UTC in this session). Each lease decision is one conditional
//!   statement whose matched-row count says whether it won; a fenced commit locks the leader
//!   row (`FOR UPDATE`, holder and term) in the commit's own transaction. What every member
//!   polls each interval is one statement each (`view` is a `UNION ALL` of the member and
//!   leader rows), and so is the check before each email (`may_send`, a join of the leader
//!   row and the notification).
//! - **Matched rows.** The connection sets `CLIENT_FOUND_ROWS`, so an `UPDATE` reports the rows
//!   it matched, as SQLite does, not only those it changed: a heartbeat within the same
//!   microsecond still counts as "still mine".
//! - **Readable errors.** The driver's `Display` wraps server errors as
//!   `MySqlError { ERROR 1045 (28000): ... }`; `describe` prints the server's message and
//!   code instead, and `permanent_hint` tells faults waiting cannot cure (a wrong password, an
//!   unknown database, a missing privilege) as [`StoreError::Permanent`], at open and mid-run.

use std::fmt::Display;
use std::time::Duration;

use mysql::consts::CapabilityFlags;
use mysql::prelude::{FromValue, Queryable};
use mysql::{Conn, FromRowError, Opts, OptsBuilder, Transaction, TxOpts};

use super::cluster::{ClusterStore, SiteState};
use super::{
    check_readable, check_version, clip, clip_reason, decide_claim, Access, Claim, Clear, Commit,
    Holder, OutboxEntry, RawEntry, Silence, StateRow, Store, StoreError, ERROR_MAX_CHARS,
    HOLDER_NAME, HOST_MAX_CHARS, LEGACY_KEY_PREFIX, MAINTENANCE_MAX_CHARS, REFUSED_MAX_CHARS,
    SILENCE_TEXT_MAX_CHARS,
};
use crate::cluster::lease::{age, LeaderRow, LeaseDecision, MemberRow};
use crate::cluster::MemberId;
use crate::latency::{LatencyRow, Span};
use crate::timestamp::Timestamp;

/// The schema, applied on every new connection; plain SQL that the `mysql` client also runs.
const SCHEMA: &str = include_str!("../../sql/mysql.sql");

/// Longest wait for the TCP connection to a database server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for one read or write on an open connection.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The columns of [`StateRow`], in the order of [`RawRow`]. The timestamp is read as text so no
/// session time zone or driver date conversion can touch it.
const COLUMNS: &str =
    "id, CAST(`timestamp` AS CHAR), healthy, target, region, reason, maintenance, held";

/// The columns of [`RawEntry`], in its order.
const OUTBOX_COLUMNS: &str = "id, row_key, target, region, recipients, subject, `text`, html, \
     CAST(created_at AS CHAR), attempts, last_error, refused, sent_at IS NOT NULL, \
     dead_at IS NOT NULL";

/// A `state` row as the driver returns it: `(id, timestamp text, healthy, target, region,
/// reason)`.
type RawRow = (i64, String, bool, String, String, Option<String>, Option<String>, bool);

/// The columns of a [`MemberRow`], in the order of [`RawMember`]. The times are read as text,
/// like [`COLUMNS`], so `seen_at` is the stored value itself, the same from every connection.
const MEMBER_COLUMNS: &str = "instance_id, site, version, CAST(started_at AS CHAR), \
     CAST(heartbeat_at AS CHAR), TIMESTAMPDIFF(MICROSECOND, heartbeat_at, NOW(6))";

/// A `cluster_member` row as the driver returns it: `(instance id, site, version, started_at
/// text, heartbeat_at text, age in microseconds)`.
type RawMember = (String, String, String, String, String, i64);

/// A row of the `view` query: the columns of a [`RawMember`] (`id or holder, site, version,
/// started_at text, heartbeat_at text, age in microseconds`) between a kind ([`VIEW_MEMBER`] or
/// [`VIEW_LEADER`]) and the term, with `NULL` in the columns the other kind lacks.
type RawView =
    (u8, String, Option<String>, Option<String>, Option<String>, Option<String>, i64, Option<u64>);

/// The kinds of row in the `view` query.
const VIEW_MEMBER: u8 = 0;
const VIEW_LEADER: u8 = 1;

/// Far in the past, by any database's clock: the heartbeat a leader that leaves writes, so its
/// lease is expired at once for everyone. Not `0000-00-00`, which strict modes refuse.
const EXPIRED_HEARTBEAT: &str = "1970-01-01 00:00:01";

/// The columns versions 2 and 3 added to earlier tables, with the statement adding each. A new
/// database gets them from [`SCHEMA`]; only an existing table that lacks one is altered.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    (
        "state",
        "row_key",
        "ALTER TABLE state ADD COLUMN row_key CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL",
    ),
    (
        "notification",
        "row_key",
        "ALTER TABLE notification ADD COLUMN row_key CHAR(32) CHARACTER SET ascii \
         COLLATE ascii_bin NULL",
    ),
    ("notification", "dead_at", "ALTER TABLE notification ADD COLUMN dead_at DATETIME(3) NULL"),
    ("notification", "refused", "ALTER TABLE notification ADD COLUMN refused VARCHAR(2048) NULL"),
    // Version 3.
    ("state", "maintenance", "ALTER TABLE state ADD COLUMN maintenance VARCHAR(255) NULL"),
    ("state", "held", "ALTER TABLE state ADD COLUMN held BOOLEAN NOT NULL DEFAULT FALSE"),
];

/// The indexes version 2 added to version 1's tables (after their columns).
const ADDED_INDEXES: &[(&str, &str, &str)] = &[
    ("state", "state_row_key", "ALTER TABLE state ADD UNIQUE KEY state_row_key (row_key)"),
    (
        "notification",
        "notification_row_key",
        "ALTER TABLE notification ADD UNIQUE KEY notification_row_key (row_key)",
    ),
];

/// Version 1's `subject VARCHAR(1024)` failed the insert of a long subject (error 1406).
const WIDEN_SUBJECT: &str = "ALTER TABLE notification MODIFY subject TEXT NOT NULL";

/// "Duplicate entry" for a unique key: the first leader's row was inserted by another member.
const DUPLICATE_KEY: u16 = 1062;

/// "Duplicate column name" and "duplicate key name": another instance upgrading the same
/// database at the same moment did that step first.
const ALREADY_DONE: &[u16] = &[1060, 1061];

/// A MySQL or MariaDB database holding the `state` table, reached through one connection that
/// is re-established lazily after a failure.
pub struct MysqlStore {
    /// Connection options, with the monitor's timeouts and session setup applied.
    opts: Opts,
    /// The URL as it may be printed: password masked.
    shown_url: String,
    /// The password, to scrub it from driver messages; `None` when there is none.
    password: Option<String>,
    /// The live connection; `None` after a failure, until the next call reconnects.
    conn: Option<Conn>,
    /// Read-only: each connection only checks the schema, in a read-only session.
    access: Access,
}

impl MysqlStore {
    /// Connects to the database named by `url`, upgrades a version 1 database in place and
    /// applies the schema.
    ///
    /// A malformed URL (or one without a database name, or with a parameter the `mysql` crate
    /// does not know) is [`StoreError::Url`]; a rejected login, an unknown database, a missing
    /// privilege or a schema newer than this binary is [`StoreError::Permanent`]; an
    /// unreachable server is [`StoreError::Connect`]. No message contains the password.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, Access::ReadWrite)
    }

    /// [`MysqlStore::open`], or with [`Access::ReadOnly`] a read-only session that applies and
    /// upgrades nothing (see [`super::open_read_only`]).
    pub(crate) fn open_with(url: &str, access: Access) -> Result<Self, StoreError> {
        let shown_url = show_url(url);
        let bad_url = |reason: String| StoreError::Url { url: shown_url.clone(), reason };
        let parsed = Opts::from_url(url).map_err(|e| bad_url(format!("{e}")))?;
        if matches!(parsed.get_db_name(), None | Some("")) {
            return Err(bad_url("no database name (mysql://USER:PASS@HOST:PORT/DB)".into()));
        }
        let password = parsed.get_pass().filter(|p| !p.is_empty()).map(str::to_owned);
        let mut init = vec!["SET time_zone = '+00:00'"];
        if access == Access::ReadOnly {
            init.push("SET SESSION TRANSACTION READ ONLY");
        }
        let mut builder = OptsBuilder::from_opts(parsed.clone())
            .init(init)
            .tcp_connect_timeout(parsed.get_tcp_connect_timeout().or(Some(CONNECT_TIMEOUT)))
            .additional_capabilities(
                parsed.get_additional_capabilities() | CapabilityFlags::CLIENT_FOUND_ROWS,
            );
        if parsed.get_read_timeout().is_none() {
            builder = builder.read_timeout(Some(IO_TIMEOUT));
        }
        if parsed.get_write_timeout().is_none() {
            builder = builder.write_timeout(Some(IO_TIMEOUT));
        }
        let mut store =
            MysqlStore { opts: builder.into(), shown_url, password, conn: None, access };
        store.conn = Some(store.connect()?);
        Ok(store)
    }

    /// A new connection with the schema applied (read-only: with the schema checked).
    fn connect(&self) -> Result<Conn, StoreError> {
        let mut conn = Conn::new(self.opts.clone()).map_err(|e| self.fail(Doing::Connect, e))?;
        match self.access {
            Access::ReadWrite => self.prepare(&mut conn)?,
            Access::ReadOnly => {
                let (has_state, version) = self.inspect(&mut conn)?;
                check_readable(&self.shown_url, has_state, version)?;
            }
        }
        Ok(conn)
    }

    /// Whether the `state` table exists, and the schema version (`None`: no `schema_version`
    /// table, so a new database or version 1). Reads only.
    fn inspect(&self, conn: &mut Conn) -> Result<(bool, Option<i64>), StoreError> {
        let schema = |e| self.fail(Doing::Schema, e);
        let tables: Vec<String> = conn
            .query(
                "SELECT LOWER(table_name) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name IN ('state', 'schema_version')",
            )
            .map_err(schema)?;
        let has = |name: &str| tables.iter().any(|t| t == name);
        let version = if has("schema_version") {
            let version: Option<Option<i64>> =
                conn.query_first("SELECT MAX(version) FROM schema_version").map_err(schema)?;
            version.flatten()
        } else {
            None
        };
        Ok((has("state"), version))
    }

    /// Version check, in-place upgrade, schema. MySQL commits each DDL statement by itself, so
    /// this is not one transaction: every step is idempotent instead, and an interrupted
    /// upgrade resumes at the next connect.
    fn prepare(&self, conn: &mut Conn) -> Result<(), StoreError> {
        let schema = |e| self.fail(Doing::Schema, e);
        if let (_, Some(version)) = self.inspect(conn)? {
            check_version(version)
                .map_err(|reason| StoreError::Permanent { url: self.shown_url.clone(), reason })?;
        }
        let columns: Vec<(String, String, String)> = conn
            .query(
                "SELECT LOWER(table_name), LOWER(column_name), LOWER(data_type) \
                 FROM information_schema.columns WHERE table_schema = DATABASE() \
                 AND table_name IN ('state', 'notification')",
            )
            .map_err(schema)?;
        let indexes: Vec<(String, String)> = conn
            .query(
                "SELECT DISTINCT LOWER(table_name), LOWER(index_name) \
                 FROM information_schema.statistics WHERE table_schema = DATABASE() \
                 AND table_name IN ('state', 'notification')",
            )
            .map_err(schema)?;
        for step in upgrade_steps(&columns, &indexes) {
            log::info!("upgrading the database schema: {step}");
            match conn.query_drop(step) {
                Err(mysql::Error::MySqlError(e)) if ALREADY_DONE.contains(&e.code) => {}
                other => other.map_err(schema)?,
            }
        }
        for statement in statements(SCHEMA) {
            conn.query_drop(&statement).map_err(schema)?;
        }
        // Version 1 notifications had no key: give them one, so they are delivered by key too.
        conn.exec_drop(
            "UPDATE notification SET row_key = CONCAT(?, id) WHERE row_key IS NULL",
            (LEGACY_KEY_PREFIX,),
        )
        .map_err(schema)
    }

    /// `e` as a [`StoreError`]: [`StoreError::Permanent`] when waiting cannot cure it,
    /// otherwise as `doing` says; the password scrubbed either way.
    fn fail(&self, doing: Doing<'_>, e: mysql::Error) -> StoreError {
        let text = self.scrub(describe(&e));
        if let Some(hint) = permanent_hint(&e) {
            return StoreError::Permanent {
                url: self.shown_url.clone(),
                reason: format!("{text}: {hint}"),
            };
        }
        match doing {
            Doing::Connect => {
                StoreError::Connect { url: self.shown_url.clone(), source: text.into() }
            }
            Doing::Schema => StoreError::Schema(format!("mysql: {text}").into()),
            Doing::Query(what) => StoreError::Query(format!("mysql {what}: {text}").into()),
        }
    }

    /// The connection, after checking it is alive; a missing or dead one is replaced by one
    /// new connection attempt.
    fn live_conn(&mut self) -> Result<&mut Conn, StoreError> {
        let conn = match self.conn.take() {
            Some(mut conn) => match conn.ping() {
                Ok(()) => conn,
                Err(e) => {
                    // Debug only: the ledger logs a database outage once, not once per retry.
                    log::debug!(
                        "mysql connection lost, reconnecting url={} error={}",
                        self.shown_url,
                        self.scrub(describe(&e))
                    );
                    self.connect()?
                }
            },
            None => self.connect()?,
        };
        Ok(self.conn.insert(conn))
    }

    /// Runs `op` on a live connection. On failure the connection is dropped, so the next call
    /// starts on a fresh one; the error says what was being done.
    fn run<T>(
        &mut self,
        what: &str,
        op: impl FnOnce(&mut Conn) -> mysql::Result<T>,
    ) -> Result<T, StoreError> {
        let result = op(self.live_conn()?);
        result.map_err(|e| {
            self.conn = None;
            self.fail(Doing::Query(what), e)
        })
    }

    /// The single row `sql` selects (columns [`COLUMNS`]), if any.
    fn query_one(
        &mut self,
        what: &str,
        sql: &str,
        params: impl Into<mysql::Params>,
    ) -> Result<Option<StateRow>, StoreError> {
        let params = params.into();
        let rows = self.run(what, |c| c.exec_opt::<RawRow, _, _>(sql, params))?;
        rows.into_iter().next().map(into_state).transpose()
    }

    /// The notifications `filter` (a `WHERE` condition) selects, oldest first.
    fn outbox(&mut self, what: &str, filter: &str) -> Result<Vec<OutboxEntry>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM notification WHERE {filter} ORDER BY created_at, id"
        );
        let rows: Vec<mysql::Row> = self.run(what, |c| c.query(&sql))?;
        rows.into_iter().map(|row| read_entry(row)?.into_entry()).collect()
    }

    /// `message` with the password replaced by `***`.
    fn scrub(&self, message: impl Display) -> String {
        let message = message.to_string();
        match &self.password {
            Some(password) => message.replace(password.as_str(), "***"),
            None => message,
        }
    }
}

impl Store for MysqlStore {
    fn last(&mut self, target: &str, region: &str) -> Result<Option<StateRow>, StoreError> {
        self.query_one(
            "last row",
            &format!(
                "SELECT {COLUMNS} FROM state WHERE target = ? AND region = ? \
                 ORDER BY `timestamp` DESC, id DESC LIMIT 1"
            ),
            (target, region),
        )
    }

    fn previous(&mut self, row: &StateRow) -> Result<Option<StateRow>, StoreError> {
        let at = row.timestamp.to_sql();
        self.query_one(
            "previous row",
            &format!(
                "SELECT {COLUMNS} FROM state WHERE target = ? AND region = ? \
                 AND (`timestamp` < ? OR (`timestamp` = ? AND id < ?)) \
                 ORDER BY `timestamp` DESC, id DESC LIMIT 1"
            ),
            (&row.target, &row.region, &at, &at, row.id),
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
                "SELECT {COLUMNS} FROM state WHERE target = ? AND region = ? AND `timestamp` < ? \
                 ORDER BY `timestamp` DESC, id DESC LIMIT 1"
            ),
            (target, region, &from),
        )?;
        let sql = format!(
            "SELECT {COLUMNS} FROM state WHERE target = ? AND region = ? AND `timestamp` >= ? \
             ORDER BY `timestamp`, id"
        );
        let window = self
            .run("rows in window", |c| c.exec_opt::<RawRow, _, _>(&sql, (target, region, &from)))?;
        before.into_iter().map(Ok).chain(window.into_iter().map(into_state)).collect()
    }

    fn commit(&mut self, commit: &Commit) -> Result<Option<i64>, StoreError> {
        let state_id = self.run("commit", |c| write_commit(c, commit))?;
        match (&commit.state, state_id) {
            (Some(row), None) => Err(StoreError::Query(
                format!("mysql commit: no state row with key {} after writing it", row.key).into(),
            )),
            _ => Ok(state_id),
        }
    }

    fn pending(&mut self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox("pending notifications", "sent_at IS NULL AND dead_at IS NULL")
    }

    fn dead(&mut self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox("dead notifications", "sent_at IS NULL AND dead_at IS NOT NULL")
    }

    fn record_attempt(&mut self, key: &str, attempts: u32, error: &str) -> Result<(), StoreError> {
        let error = clip(error, ERROR_MAX_CHARS);
        self.run("record delivery attempt", |c| {
            c.exec_drop(
                "UPDATE notification SET attempts = ?, last_error = ? WHERE row_key = ?",
                (attempts, error, key),
            )
        })
    }

    fn record_sent(
        &mut self,
        key: &str,
        attempts: u32,
        at: Timestamp,
        refused: Option<&str>,
    ) -> Result<(), StoreError> {
        let refused = refused.map(|r| clip(r, REFUSED_MAX_CHARS));
        self.run("record notification sent", |c| {
            c.exec_drop(
                "UPDATE notification SET attempts = ?, sent_at = ?, refused = ? WHERE row_key = ?",
                (attempts, at.to_sql(), refused, key),
            )
        })
    }

    fn record_dead(
        &mut self,
        key: &str,
        attempts: u32,
        error: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let error = clip(error, ERROR_MAX_CHARS);
        self.run("record notification dead", |c| {
            c.exec_drop(
                "UPDATE notification SET attempts = ?, last_error = ?, dead_at = ? \
                 WHERE row_key = ? AND sent_at IS NULL",
                (attempts, error, at.to_sql(), key),
            )
        })
    }

    fn requeue(&mut self, id: Option<i64>) -> Result<usize, StoreError> {
        let matched = self.run("requeue dead notifications", |c| {
            // `? IS NULL`: one statement for "this one" and "all of them".
            c.exec_drop(
                "UPDATE notification SET dead_at = NULL, attempts = 0 \
                 WHERE dead_at IS NOT NULL AND sent_at IS NULL AND (? IS NULL OR id = ?)",
                (id, id),
            )?;
            Ok(c.affected_rows())
        })?;
        Ok(usize::try_from(matched).unwrap_or(usize::MAX))
    }

    fn claim(
        &mut self,
        me: &Holder,
        stale_after: Duration,
        gone: &dyn Fn(&Holder) -> bool,
    ) -> Result<Claim, StoreError> {
        let host = clip(&me.host, HOST_MAX_CHARS);
        self.run("claim", |c| {
            // The lock row always exists once claimed (a free lock is a row with no holder), so
            // the FOR UPDATE below always locks a row: two claimers of a missing row would both
            // find nothing, take only gap locks, and deadlock on their inserts.
            c.exec_drop(
                "INSERT INTO holder (name) VALUES (?) ON DUPLICATE KEY UPDATE name = name",
                (HOLDER_NAME,),
            )?;
            let mut tx = c.start_transaction(TxOpts::default())?;
            type Row = (Option<String>, Option<String>, Option<u32>, Option<i64>);
            let row: Option<Row> = tx.exec_first(
                "SELECT holder_id, host, pid, \
                 TIMESTAMPDIFF(MICROSECOND, heartbeat_at, UTC_TIMESTAMP(6)) \
                 FROM holder WHERE name = ? FOR UPDATE",
                (HOLDER_NAME,),
            )?;
            let current = row.and_then(|(id, host, pid, age)| {
                let holder =
                    Holder { id: id?, host: host.unwrap_or_default(), pid: pid.unwrap_or(0) };
                Some((holder, age.map(super::age_from_micros)))
            });
            let claim = decide_claim(me, current, stale_after, gone);
            if claim == Claim::Granted {
                // `started_at` first: MySQL assigns left to right, later ones seeing earlier.
                tx.exec_drop(
                    "UPDATE holder SET \
                     started_at = IF(holder_id <=> ?, started_at, UTC_TIMESTAMP(6)), \
                     holder_id = ?, host = ?, pid = ?, heartbeat_at = UTC_TIMESTAMP(6) \
                     WHERE name = ?",
                    (&me.id, &me.id, host, me.pid, HOLDER_NAME),
                )?;
                tx.commit()?;
            } else {
                tx.rollback()?;
            }
            Ok(claim)
        })
    }

    fn heartbeat(&mut self, me: &Holder) -> Result<bool, StoreError> {
        let matched = self.run("heartbeat", |c| {
            c.exec_drop(
                "UPDATE holder SET heartbeat_at = UTC_TIMESTAMP(6) \
                 WHERE name = ? AND holder_id = ?",
                (HOLDER_NAME, &me.id),
            )?;
            Ok(c.affected_rows())
        })?;
        Ok(matched > 0)
    }

    fn release(&mut self, me: &Holder) -> Result<(), StoreError> {
        self.run("release", |c| {
            c.exec_drop(
                "UPDATE holder SET holder_id = NULL, host = NULL, pid = NULL, started_at = NULL, \
                 heartbeat_at = NULL WHERE name = ? AND holder_id = ?",
                (HOLDER_NAME, &me.id),
            )
        })
    }

    fn series(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let mut series = self.run("series", |c| {
            c.exec::<(String, String), _, _>("SELECT DISTINCT target, region FROM state", ())
        })?;
        // Sorted here, not by the collation, so both backends agree on the order.
        series.sort_unstable();
        Ok(series)
    }

    fn silences(&mut self, now: Timestamp) -> Result<Vec<Silence>, StoreError> {
        type Raw = (i64, String, String, String, String, String);
        let raw = self.run("silences", |c| {
            c.exec::<Raw, _, _>(
                "SELECT id, target, CAST(starts_at AS CHAR), CAST(ends_at AS CHAR), reason, \
                 created_by FROM silence WHERE ends_at > ? AND ends_at > starts_at ORDER BY starts_at, id",
                (now.to_sql(),),
            )
        })?;
        raw.into_iter().map(super::into_silence).collect()
    }

    fn add_silence(&mut self, s: &Silence, now: Timestamp) -> Result<i64, StoreError> {
        self.run("add silence", |c| {
            c.exec_drop(
                "INSERT INTO silence (target, starts_at, ends_at, reason, created_by, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
                (
                    &s.target,
                    s.starts_at.to_sql(),
                    s.ends_at.to_sql(),
                    clip(&s.reason, SILENCE_TEXT_MAX_CHARS),
                    clip(&s.created_by, SILENCE_TEXT_MAX_CHARS),
                    now.to_sql(),
                ),
            )?;
            Ok(i64::try_from(c.last_insert_id()).unwrap_or(i64::MAX))
        })
    }

    fn clear_silences(&mut self, which: &Clear, now: Timestamp) -> Result<usize, StoreError> {
        let now = now.to_sql();
        // A silence not started yet ends where it starts: it never runs.
        let set = "UPDATE silence SET ends_at = GREATEST(starts_at, ?) WHERE ends_at > ? \
                   AND ends_at > starts_at";
        let changed = self.run("clear silences", |c| {
            match which {
                Clear::Id(id) => c.exec_drop(format!("{set} AND id = ?"), (&now, &now, id))?,
                Clear::Target(t) => {
                    c.exec_drop(format!("{set} AND target = ?"), (&now, &now, t))?
                }
                Clear::All => c.exec_drop(set, (&now, &now))?,
            }
            Ok(c.affected_rows())
        })?;
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    fn record_latency(&mut self, rows: &[LatencyRow]) -> Result<(), StoreError> {
        self.run("record latency", |c| {
            // No unique key can tell long URLs apart (see sql/mysql.sql): replace by hand.
            let mut tx = c.start_transaction(TxOpts::default())?;
            for row in rows {
                let start = row.start.to_sql();
                let span = row.span.seconds();
                tx.exec_drop(
                    "DELETE FROM latency WHERE target = ? AND region = ? AND span = ? AND start = ?",
                    (&row.target, &row.region, span, &start),
                )?;
                tx.exec_drop(
                    "INSERT INTO latency (target, region, span, start, probes, buckets) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        &row.target,
                        &row.region,
                        span,
                        &start,
                        i64::try_from(row.histogram.probes()).unwrap_or(i64::MAX),
                        row.histogram.encode(),
                    ),
                )?;
            }
            tx.commit()
        })
    }

    fn latency(
        &mut self,
        span: Span,
        pair: Option<(&str, &str)>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<LatencyRow>, StoreError> {
        type Raw = (String, String, i64, String, String);
        let (target, region) = pair.unwrap_or(("", ""));
        let raw = self.run("latency", |c| {
            c.exec::<Raw, _, _>(
                "SELECT target, region, span, CAST(start AS CHAR), buckets FROM latency \
                 WHERE span = ? AND start >= ? AND start < ? \
                 AND (? = 0 OR (target = ? AND region = ?)) ORDER BY target, region, start",
                (span.seconds(), from.to_sql(), to.to_sql(), pair.is_some(), target, region),
            )
        })?;
        super::latency_rows(raw)
    }

    fn latency_pairs(
        &mut self,
        span: Span,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut pairs = self.run("latency pairs", |c| {
            c.exec::<(String, String), _, _>(
                "SELECT DISTINCT target, region FROM latency WHERE span = ? AND start >= ? \
                 AND start < ?",
                (span.seconds(), from.to_sql(), to.to_sql()),
            )
        })?;
        // Sorted here, not by the collation, so both backends agree on the order.
        pairs.sort_unstable();
        Ok(pairs)
    }

    fn prune_latency(&mut self, span: Span, before: Timestamp) -> Result<usize, StoreError> {
        let deleted = self.run("prune latency", |c| {
            c.exec_drop(
                "DELETE FROM latency WHERE span = ? AND start < ?",
                (span.seconds(), before.to_sql()),
            )?;
            Ok(c.affected_rows())
        })?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    fn as_cluster(&mut self) -> Option<&mut dyn ClusterStore> {
        Some(self)
    }
}

impl ClusterStore for MysqlStore {
    fn beat(
        &mut self,
        cluster: &str,
        me: &MemberId,
        site: &str,
        version: &str,
    ) -> Result<(), StoreError> {
        self.run("member heartbeat", |c| {
            c.exec_drop(
                "INSERT INTO cluster_member \
                 (cluster, instance_id, site, version, started_at, heartbeat_at) \
                 VALUES (?, ?, ?, ?, NOW(6), NOW(6)) ON DUPLICATE KEY UPDATE \
                 site = ?, version = ?, heartbeat_at = NOW(6)",
                (cluster, me.as_str(), site, version, site, version),
            )
        })
    }

    fn members(&mut self, cluster: &str) -> Result<Vec<MemberRow>, StoreError> {
        let sql = format!("SELECT {MEMBER_COLUMNS} FROM cluster_member WHERE cluster = ?");
        let rows = self.run("members", |c| c.exec_opt::<RawMember, _, _>(&sql, (cluster,)))?;
        let mut members = rows
            .into_iter()
            .map(|row| into_member(row.map_err(unexpected_row)?))
            .collect::<Result<Vec<_>, _>>()?;
        // Sorted here, not by the collation, so the order is the same everywhere.
        members.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(members)
    }

    fn leader(&mut self, cluster: &str) -> Result<Option<LeaderRow>, StoreError> {
        let row = self.run("leader", |c| {
            c.exec_first::<(String, u64, i64), _, _>(
                "SELECT holder, term, TIMESTAMPDIFF(MICROSECOND, heartbeat_at, NOW(6)) \
                 FROM cluster_leader WHERE cluster = ?",
                (cluster,),
            )
        })?;
        Ok(row.map(|(holder, term, micros)| LeaderRow {
            holder: MemberId(holder),
            term,
            age: age(micros),
        }))
    }

    fn view(&mut self, cluster: &str) -> Result<(Vec<MemberRow>, Option<LeaderRow>), StoreError> {
        // One statement, so one round trip and one NOW(6) for every age in it.
        let sql = format!(
            "SELECT {VIEW_MEMBER}, {MEMBER_COLUMNS}, NULL FROM cluster_member WHERE cluster = ? \
             UNION ALL \
             SELECT {VIEW_LEADER}, holder, NULL, NULL, NULL, NULL, \
             TIMESTAMPDIFF(MICROSECOND, heartbeat_at, NOW(6)), term \
             FROM cluster_leader WHERE cluster = ?"
        );
        let rows =
            self.run("cluster view", |c| c.exec_opt::<RawView, _, _>(&sql, (cluster, cluster)))?;
        let mut members = Vec::new();
        let mut leader = None;
        for row in rows {
            match row.map_err(unexpected_row)? {
                (VIEW_MEMBER, id, Some(site), Some(version), Some(started), Some(seen), us, _) => {
                    members.push(into_member((id, site, version, started, seen, us))?);
                }
                (VIEW_LEADER, holder, _, _, _, _, micros, Some(term)) => {
                    leader = Some(LeaderRow { holder: MemberId(holder), term, age: age(micros) });
                }
                (kind, ..) => {
                    return Err(StoreError::Query(
                        format!("mysql cluster view: unexpected row of kind {kind}").into(),
                    ))
                }
            }
        }
        members.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((members, leader))
    }

    fn leave(&mut self, cluster: &str, me: &MemberId) -> Result<(), StoreError> {
        self.run("leave the cluster", |c| {
            // Holder only, term untouched: the next member's takeover is the ordinary one, from
            // the term it reads, and another holder's lease is not mine to end.
            c.exec_drop(
                "UPDATE cluster_leader SET heartbeat_at = ? WHERE cluster = ? AND holder = ?",
                (EXPIRED_HEARTBEAT, cluster, me.as_str()),
            )?;
            c.exec_drop(
                "DELETE FROM cluster_member WHERE cluster = ? AND instance_id = ?",
                (cluster, me.as_str()),
            )
        })
    }

    fn site_states(&mut self, sites: &[String]) -> Result<Vec<SiteState>, StoreError> {
        if sites.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; sites.len()].join(", ");
        // The join reads only each pair's latest row, but finding those scans `state`: the
        // `state_target_region_time` index holds a 255-character prefix of target and does not
        // start with region, so it cannot serve this GROUP BY (EXPLAIN: full scan). Bearable
        // while `state` holds transitions only (rows per outage, not per probe); an index on
        // `(region, target(255), id)` would be a schema change.
        let sql = format!(
            "SELECT s.target, s.region, s.healthy, CAST(s.`timestamp` AS CHAR) FROM state s \
             JOIN (SELECT MAX(id) AS id FROM state WHERE region IN ({marks}) \
             GROUP BY target, region) latest ON latest.id = s.id"
        );
        let params: Vec<mysql::Value> = sites.iter().map(|site| site.as_str().into()).collect();
        let rows = self.run("site states", |c| {
            c.exec_opt::<(String, String, bool, String), _, _>(&sql, params)
        })?;
        let mut states = rows
            .into_iter()
            .map(|row| {
                let (target, site, healthy, since) = row.map_err(unexpected_row)?;
                Ok(SiteState { target, site, healthy, since: Timestamp::parse_sql(&since)? })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Sorted here, not by the collation, so the order is the same everywhere.
        states.sort_by(|a, b| (&a.target, &a.site).cmp(&(&b.target, &b.site)));
        Ok(states)
    }

    fn may_send(
        &mut self,
        cluster: &str,
        me: &MemberId,
        term: u64,
        lease: Duration,
        key: &str,
    ) -> Result<bool, StoreError> {
        let count = self.run("may send", |c| {
            // Freshness as a renewal requires it: a lease the holder could no longer renew is
            // one another member may be taking over.
            c.exec_first::<i64, _, _>(
                "SELECT COUNT(*) FROM cluster_leader l JOIN notification n ON n.row_key = ? \
                 WHERE l.cluster = ? AND l.holder = ? AND l.term = ? \
                 AND l.heartbeat_at > NOW(6) - INTERVAL ? MICROSECOND \
                 AND n.sent_at IS NULL AND n.dead_at IS NULL",
                (key, cluster, me.as_str(), term, lease_micros(lease)),
            )
        })?;
        Ok(count.unwrap_or(0) > 0)
    }

    fn lead(
        &mut self,
        cluster: &str,
        me: &MemberId,
        decision: &LeaseDecision,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let lease_us = lease_micros(lease);
        let matched = match decision {
            LeaseDecision::Follow { .. } => return Ok(false),
            LeaseDecision::TakeOver { next_term: 1 } => self.run("first leader", |c| {
                match c.exec_drop(
                    "INSERT INTO cluster_leader (cluster, holder, term, heartbeat_at) \
                     VALUES (?, ?, 1, NOW(6))",
                    (cluster, me.as_str()),
                ) {
                    Ok(()) => Ok(c.affected_rows()),
                    // Another member inserted the first term: lost, not an error.
                    Err(mysql::Error::MySqlError(e)) if e.code == DUPLICATE_KEY => Ok(0),
                    Err(e) => Err(e),
                }
            })?,
            LeaseDecision::TakeOver { next_term } => self.run("leader takeover", |c| {
                // The term read, and the lease still expired: a renewal or another takeover
                // since the read makes this match nothing.
                c.exec_drop(
                    "UPDATE cluster_leader SET holder = ?, term = term + 1, heartbeat_at = NOW(6) \
                     WHERE cluster = ? AND term = ? \
                     AND heartbeat_at <= NOW(6) - INTERVAL ? MICROSECOND",
                    (me.as_str(), cluster, next_term.saturating_sub(1), lease_us),
                )?;
                Ok(c.affected_rows())
            })?,
            LeaseDecision::Keep { term } => self.run("leader renewal", |c| {
                // Only a fresh lease is kept (see `lease::decide`): an expired one may be being
                // taken over, and its holder must race for the next term like anyone else.
                c.exec_drop(
                    "UPDATE cluster_leader SET heartbeat_at = NOW(6) \
                     WHERE cluster = ? AND holder = ? AND term = ? \
                     AND heartbeat_at > NOW(6) - INTERVAL ? MICROSECOND",
                    (cluster, me.as_str(), term, lease_us),
                )?;
                Ok(c.affected_rows())
            })?,
        };
        Ok(matched == 1)
    }

    fn commit_fenced(
        &mut self,
        cluster: &str,
        me: &MemberId,
        term: u64,
        commit: &Commit,
    ) -> Result<bool, StoreError> {
        let written = self.run("fenced commit", |c| {
            let mut tx = c.start_transaction(TxOpts::default())?;
            // Locks the leader row while the commit is written: a takeover waits for it, so no
            // write of this term lands after the next term begins.
            let held: Option<u64> = tx.exec_first(
                "SELECT term FROM cluster_leader \
                 WHERE cluster = ? AND holder = ? AND term = ? FOR UPDATE",
                (cluster, me.as_str(), term),
            )?;
            if held.is_none() {
                tx.rollback()?;
                return Ok(None);
            }
            let state_id = write_commit_in(&mut tx, commit)?;
            tx.commit()?;
            Ok(Some(state_id))
        })?;
        match (&commit.state, written) {
            (_, None) => Ok(false),
            (Some(row), Some(None)) => Err(StoreError::Query(
                format!("mysql fenced commit: no state row with key {} after writing it", row.key)
                    .into(),
            )),
            _ => Ok(true),
        }
    }
}

/// The whole of `commit`, in one transaction (rolled back when dropped on an error); see
/// [`Store::commit`]. `ON DUPLICATE KEY UPDATE row_key = row_key` rather than `INSERT IGNORE`:
/// only a duplicate key is ignored, while truncation and every other error still fail it.
fn write_commit(conn: &mut Conn, commit: &Commit) -> mysql::Result<Option<i64>> {
    let mut tx = conn.start_transaction(TxOpts::default())?;
    let state_id = write_commit_in(&mut tx, commit)?;
    tx.commit()?;
    Ok(state_id)
}

/// The statements of `commit` inside the open transaction `tx` (committed by the caller); the
/// id of its state row, if any.
fn write_commit_in(tx: &mut Transaction<'_>, commit: &Commit) -> mysql::Result<Option<i64>> {
    let state_id = match &commit.state {
        Some(row) => {
            let reason = row.reason.as_deref().map(clip_reason);
            tx.exec_drop(
                "INSERT INTO state (row_key, `timestamp`, healthy, target, region, reason, \
                 maintenance, held) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE row_key = row_key",
                (
                    &row.key,
                    row.timestamp.to_sql(),
                    row.healthy,
                    &row.target,
                    &row.region,
                    reason,
                    row.maintenance.as_deref().map(|m| clip(m, MAINTENANCE_MAX_CHARS)),
                    row.held,
                ),
            )?;
            tx.exec_first("SELECT id FROM state WHERE row_key = ?", (&row.key,))?
        }
        None => None,
    };
    for n in &commit.notifications {
        let params: Vec<mysql::Value> = vec![
            n.key.as_str().into(),
            state_id.into(),
            n.target.as_str().into(),
            n.region.as_str().into(),
            n.recipients.as_str().into(),
            n.subject.as_str().into(),
            n.text.as_str().into(),
            n.html.as_str().into(),
            n.created_at.to_sql().into(),
        ];
        tx.exec_drop(
            "INSERT INTO notification (row_key, state_id, target, region, recipients, subject, \
             `text`, html, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE row_key = row_key",
            params,
        )?;
    }
    if let Some((target, region)) = &commit.release {
        tx.exec_drop(
            "UPDATE state SET held = FALSE WHERE target = ? AND region = ? AND held",
            (target, region),
        )?;
    }
    Ok(state_id)
}

/// What the store was doing when the driver failed, for the error's kind and message.
#[derive(Clone, Copy)]
enum Doing<'a> {
    Connect,
    Schema,
    Query(&'a str),
}

/// The driver's error as one readable line: the server's message and code (`Access denied for
/// user 'u'@'h' (using password: YES) (MySQL error 1045)`) rather than the crate's `Display`
/// (`MySqlError { ERROR 1045 (28000): ... }`), and no `Debug` of values or rows.
fn describe(e: &mysql::Error) -> String {
    let text = match e {
        mysql::Error::MySqlError(e) => format!("{} (MySQL error {})", e.message, e.code),
        mysql::Error::IoError(e) => describe_io(e),
        mysql::Error::DriverError(e) => e.to_string(),
        mysql::Error::CodecError(e) => {
            match std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>()) {
                Some(io) => describe_io(io),
                None => format!("protocol error: {e}"),
            }
        }
        mysql::Error::UrlError(e) => e.to_string(),
        mysql::Error::TlsError(e) => format!("TLS: {e}"),
        mysql::Error::FromValueError(_) => "unexpected value type in a result".to_owned(),
        mysql::Error::FromRowError(_) => "unexpected row shape in a result".to_owned(),
    };
    text.replace(['\n', '\r'], " ")
}

/// An I/O error, saying "timed out" for what a socket timeout reports as "Resource temporarily
/// unavailable" (a read timeout is EAGAIN on Linux).
fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no answer from the server in time ({e})")
        }
        _ => e.to_string(),
    }
}

/// Server errors no retry can cure, with what to do about each; the hint is also what tells
/// them apart: `None` is transient (server down, connection lost, timeout, deadlock...).
fn permanent_hint(e: &mysql::Error) -> Option<&'static str> {
    match e {
        mysql::Error::MySqlError(e) => permanent_code_hint(e.code),
        _ => None,
    }
}

fn permanent_code_hint(code: u16) -> Option<&'static str> {
    match code {
        1044 => Some("grant the user access to this database"),
        1045 => Some("check the user and password in the URL"),
        1049 => Some("create the database, or fix its name in the URL"),
        1142 | 1143 => Some("grant the user the privilege api-monitor needs"),
        _ => None,
    }
}

/// The statements that add what version 2 added to the tables that exist: `columns` are
/// `(table, column, data type)` and `indexes` `(table, index)` of the existing tables, all
/// lowercase. Tables that do not exist yet come whole from [`SCHEMA`].
fn upgrade_steps(
    columns: &[(String, String, String)],
    indexes: &[(String, String)],
) -> Vec<&'static str> {
    let exists = |table: &str| columns.iter().any(|(t, _, _)| t == table);
    let has_column =
        |table: &str, column: &str| columns.iter().any(|(t, c, _)| t == table && c == column);
    let has_index =
        |table: &str, index: &str| indexes.iter().any(|(t, i)| t == table && i == index);
    let mut steps: Vec<&'static str> = ADDED_COLUMNS
        .iter()
        .filter(|(table, column, _)| exists(table) && !has_column(table, column))
        .map(|(_, _, statement)| *statement)
        .collect();
    steps.extend(
        ADDED_INDEXES
            .iter()
            .filter(|(table, index, _)| exists(table) && !has_index(table, index))
            .map(|(_, _, statement)| *statement),
    );
    let narrow_subject = columns
        .iter()
        .any(|(t, c, kind)| t == "notification" && c == "subject" && !kind.ends_with("text"));
    if narrow_subject {
        steps.push(WIDEN_SUBJECT);
    }
    steps
}

/// A driver row of [`OUTBOX_COLUMNS`] (more columns than a tuple can take).
fn read_entry(mut row: mysql::Row) -> Result<RawEntry, StoreError> {
    fn take<T: FromValue>(row: &mut mysql::Row, index: usize) -> Result<T, StoreError> {
        match row.take_opt::<T, _>(index) {
            Some(Ok(value)) => Ok(value),
            Some(Err(_)) => Err(StoreError::Query(
                format!("mysql outbox: unexpected value type in column {index}").into(),
            )),
            None => Err(StoreError::Query(format!("mysql outbox: no column {index}").into())),
        }
    }
    Ok(RawEntry {
        id: take(&mut row, 0)?,
        key: take(&mut row, 1)?,
        target: take(&mut row, 2)?,
        region: take(&mut row, 3)?,
        recipients: take(&mut row, 4)?,
        subject: take(&mut row, 5)?,
        text: take(&mut row, 6)?,
        html: take(&mut row, 7)?,
        created_at: take(&mut row, 8)?,
        attempts: take(&mut row, 9)?,
        last_error: take(&mut row, 10)?,
        refused: take(&mut row, 11)?,
        sent: take(&mut row, 12)?,
        dead: take(&mut row, 13)?,
    })
}

/// A row the driver could not convert to the expected columns: an error, never the driver's
/// panic (`exec` panics on such a row; these queries use `exec_opt`).
fn unexpected_row(e: FromRowError) -> StoreError {
    StoreError::Query(format!("mysql: unexpected row: {e}").into())
}

/// `lease` in whole microseconds for `INTERVAL ? MICROSECOND` (saturating: no panic path).
fn lease_micros(lease: Duration) -> u64 {
    u64::try_from(lease.as_micros()).unwrap_or(u64::MAX)
}

/// Converts a driver member row, parsing its time texts (`DATETIME(6)`, truncated to the
/// millisecond: a [`Timestamp`]'s precision).
fn into_member(
    (id, site, version, started, seen, micros): RawMember,
) -> Result<MemberRow, StoreError> {
    Ok(MemberRow {
        id: MemberId(id),
        site,
        version,
        started_at: Timestamp::parse_sql(&started)?,
        seen_at: Timestamp::parse_sql(&seen)?,
        age: age(micros),
    })
}

/// Converts a driver row, parsing its timestamp text.
fn into_state(raw: Result<RawRow, FromRowError>) -> Result<StateRow, StoreError> {
    let (id, timestamp, healthy, target, region, reason, maintenance, held) =
        raw.map_err(|e| StoreError::Query(format!("mysql: unexpected row: {e}").into()))?;
    Ok(StateRow {
        id,
        timestamp: Timestamp::parse_sql(&timestamp)?,
        healthy,
        target,
        region,
        reason,
        maintenance,
        held,
    })
}

/// The statements of a schema file: comment lines (`--`, `#`) dropped, split on `;`, blank
/// pieces skipped. The schema files keep comments on their own lines and no `;` inside a
/// statement, so this is exact for them.
fn statements(sql: &str) -> Vec<String> {
    let code: Vec<&str> = sql
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            !(line.starts_with("--") || line.starts_with('#'))
        })
        .collect();
    code.join("\n").split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// `url` as it may be printed: the password masked, including a `password=` URL parameter.
fn show_url(url: &str) -> String {
    let mut shown = crate::redact::url(url);
    let mut search_from = 0;
    while let Some(found) = shown[search_from..].find("password=") {
        let start = search_from + found;
        let value = start + "password=".len();
        let preceded_by_separator = shown[..start].ends_with(['?', '&']);
        let end = shown[value..].find(['&', '#']).map_or(shown.len(), |i| value + i);
        if preceded_by_separator && end > value {
            shown.replace_range(value..end, "***");
        }
        search_from = value;
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_schema_is_eight_create_tables_and_the_version_without_comments() {
        let statements = statements(SCHEMA);
        assert_eq!(statements.len(), 10, "{statements:?}");
        let tables = [
            "state",
            "notification",
            "holder",
            "cluster_member",
            "cluster_leader",
            "schema_version",
            "silence",
            "latency",
        ];
        for (statement, table) in statements.iter().zip(tables) {
            let start = format!("CREATE TABLE IF NOT EXISTS {table} ");
            assert!(statement.starts_with(&start), "{statement}");
        }
        assert!(statements[8].starts_with("INSERT INTO schema_version"), "{}", statements[8]);
        assert!(statements[9].starts_with("UPDATE schema_version SET version = 3"));
        assert!(
            statements[8].contains("VALUES (1, 3)"),
            "the version is {}",
            super::super::SCHEMA_VERSION
        );
        assert!(statements.iter().all(|s| !s.contains("--")), "comments are stripped");
        assert!(!SCHEMA.to_uppercase().contains("INSERT IGNORE"), "it hides truncation");
    }

    /// `(table, column, data type)` triples as `information_schema` gives them (lowercased).
    fn columns(items: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        items.iter().map(|(t, c, k)| ((*t).into(), (*c).into(), (*k).into())).collect()
    }

    #[test]
    fn a_version_1_database_gets_every_column_index_and_the_wide_subject() {
        let v1 = columns(&[
            ("state", "id", "bigint"),
            ("state", "reason", "varchar"),
            ("notification", "id", "bigint"),
            ("notification", "subject", "varchar"),
        ]);
        let v1_indexes = vec![("state".to_owned(), "primary".to_owned())];
        let steps = upgrade_steps(&v1, &v1_indexes);
        assert_eq!(steps.len(), 9, "{steps:#?}");
        assert_eq!(steps.last(), Some(&WIDEN_SUBJECT));
        let first_index = steps.iter().position(|s| s.contains("UNIQUE KEY")).unwrap();
        assert!(steps[..first_index].iter().all(|s| s.contains("ADD COLUMN")), "columns first");

        assert!(upgrade_steps(&[], &[]).is_empty(), "a new database gets the schema");
        let mut v3 = columns(&[("notification", "subject", "text")]);
        v3.extend(ADDED_COLUMNS.iter().map(|(t, c, _)| ((*t).into(), (*c).into(), "char".into())));
        let v2_indexes: Vec<(String, String)> =
            ADDED_INDEXES.iter().map(|(t, i, _)| ((*t).to_owned(), (*i).to_owned())).collect();
        assert!(upgrade_steps(&v3, &v2_indexes).is_empty(), "version 3: nothing to do");
    }

    #[test]
    fn access_denied_unknown_database_and_missing_privileges_are_permanent() {
        for code in [1044, 1045, 1049, 1142, 1143] {
            assert!(permanent_code_hint(code).is_some(), "{code}");
        }
        // Too many connections, lock wait timeout, deadlock, server shutdown, read-only replica.
        for code in [1040, 1205, 1213, 1053, 1290, 1146] {
            assert!(permanent_code_hint(code).is_none(), "{code}");
        }
    }

    #[test]
    fn member_times_of_microsecond_columns_truncate_to_the_millisecond() {
        let raw = |seen: &str| {
            (
                "a".into(),
                "eu".into(),
                "1.2.3".into(),
                "2026-11-18 11:06:40.000000".into(),
                seen.into(),
                -5,
            )
        };
        let member = into_member(raw("2026-11-18 11:06:40.123999")).unwrap();
        assert_eq!(member.seen_at, Timestamp::from_millis(1_795_000_000_123), "truncated");
        assert_eq!(member.started_at, Timestamp::from_millis(1_795_000_000_000));
        assert_eq!((member.version.as_str(), member.age), ("1.2.3", Duration::ZERO));
        assert!(
            matches!(into_member(raw("garbage")), Err(StoreError::Timestamp(_))),
            "a bad time is an error, not a panic"
        );
    }

    #[test]
    fn statements_are_split_on_semicolons_and_blanks_dropped() {
        let sql = "-- a comment; with a semicolon\nCREATE TABLE a (x INT);\n\n# other\n;\n\
                   CREATE TABLE b (y INT);\n";
        assert_eq!(statements(sql), vec!["CREATE TABLE a (x INT)", "CREATE TABLE b (y INT)"]);
    }

    #[test]
    fn shown_urls_hide_passwords_in_user_info_and_parameters() {
        assert_eq!(show_url("mysql://u:s3cret@db:3306/m"), "mysql://u:***@db:3306/m");
        assert_eq!(
            show_url("mysql://u@db/m?password=s3cret&prefer_socket=false"),
            "mysql://u@db/m?password=***&prefer_socket=false"
        );
        assert_eq!(show_url("mysql://u@db/m?password=s3cret"), "mysql://u@db/m?password=***");
        assert_eq!(show_url("mysql://u@db/m"), "mysql://u@db/m");
    }

    #[test]
    fn bad_urls_are_url_errors_without_the_password() {
        for url in [
            "mysql://u:s3cret@db:3306/m?no_such_option=1",
            "mysql://u:s3cret@db:notaport/m",
            "mysql://u:s3cret@db:3306",
            "mysql://u:s3cret@db:3306/",
        ] {
            match MysqlStore::open(url) {
                Err(e @ StoreError::Url { .. }) => {
                    assert!(!e.to_string().contains("s3cret"), "{e}")
                }
                Err(e) => panic!("{url}: expected a URL error, got {e}"),
                Ok(_) => panic!("{url}: expected a URL error, got a store"),
            }
        }
    }
}
