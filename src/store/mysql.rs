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
//!   `time_zone` is still set to `+00:00` so ad-hoc `NOW()` in the same session agrees.

use std::fmt::Display;
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, FromRowError, Opts, OptsBuilder};

use super::{Claim, Commit, Holder, OutboxEntry, StateRow, Store, StoreError};
use crate::timestamp::Timestamp;

/// The schema, applied on every new connection; plain SQL that the `mysql` client also runs.
const SCHEMA: &str = include_str!("../../sql/mysql.sql");

/// Longest wait for the TCP connection to a database server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for one read or write on an open connection.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The columns of [`StateRow`], in the order of [`RawRow`]. The timestamp is read as text so no
/// session time zone or driver date conversion can touch it.
const COLUMNS: &str = "id, CAST(`timestamp` AS CHAR), healthy, target, region, reason";

/// A `state` row as the driver returns it: `(id, timestamp text, healthy, target, region,
/// reason)`.
type RawRow = (i64, String, bool, String, String, Option<String>);

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
}

impl MysqlStore {
    /// Connects to the database named by `url` and applies the schema.
    ///
    /// A malformed URL (or one without a database name, or with a parameter the `mysql` crate
    /// does not know) is [`StoreError::Url`]; an unreachable server or rejected login is
    /// [`StoreError::Connect`]. Neither message contains the password.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let shown_url = show_url(url);
        let bad_url = |reason: String| StoreError::Url { url: shown_url.clone(), reason };
        let parsed = Opts::from_url(url).map_err(|e| bad_url(format!("{e}")))?;
        if matches!(parsed.get_db_name(), None | Some("")) {
            return Err(bad_url("no database name (mysql://USER:PASS@HOST:PORT/DB)".into()));
        }
        let password = parsed.get_pass().filter(|p| !p.is_empty()).map(str::to_owned);
        let mut builder = OptsBuilder::from_opts(parsed.clone())
            .init(vec!["SET time_zone = '+00:00'"])
            .tcp_connect_timeout(parsed.get_tcp_connect_timeout().or(Some(CONNECT_TIMEOUT)));
        if parsed.get_read_timeout().is_none() {
            builder = builder.read_timeout(Some(IO_TIMEOUT));
        }
        if parsed.get_write_timeout().is_none() {
            builder = builder.write_timeout(Some(IO_TIMEOUT));
        }
        let mut store = MysqlStore { opts: builder.into(), shown_url, password, conn: None };
        store.conn = Some(store.connect()?);
        Ok(store)
    }

    /// A new connection with the schema applied.
    fn connect(&self) -> Result<Conn, StoreError> {
        let mut conn = Conn::new(self.opts.clone()).map_err(|e| StoreError::Connect {
            url: self.shown_url.clone(),
            source: self.scrub(e).into(),
        })?;
        for statement in statements(SCHEMA) {
            conn.query_drop(&statement)
                .map_err(|e| StoreError::Schema(format!("mysql: {}", self.scrub(e)).into()))?;
        }
        Ok(conn)
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
                        self.scrub(e)
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
            StoreError::Query(format!("mysql {what}: {}", self.scrub(e)).into())
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

    fn commit(&mut self, _: &Commit) -> Result<Option<i64>, StoreError> {
        Err(not_yet())
    }

    fn pending(&mut self) -> Result<Vec<OutboxEntry>, StoreError> {
        Err(not_yet())
    }

    fn dead(&mut self) -> Result<Vec<OutboxEntry>, StoreError> {
        Err(not_yet())
    }

    fn record_attempt(&mut self, _: &str, _: u32, _: &str) -> Result<(), StoreError> {
        Err(not_yet())
    }

    fn record_sent(
        &mut self,
        _: &str,
        _: u32,
        _: Timestamp,
        _: Option<&str>,
    ) -> Result<(), StoreError> {
        Err(not_yet())
    }

    fn record_dead(&mut self, _: &str, _: u32, _: &str, _: Timestamp) -> Result<(), StoreError> {
        Err(not_yet())
    }

    fn requeue(&mut self, _: Option<i64>) -> Result<usize, StoreError> {
        Err(not_yet())
    }

    fn claim(
        &mut self,
        _: &Holder,
        _: std::time::Duration,
        _: &dyn Fn(&Holder) -> bool,
    ) -> Result<Claim, StoreError> {
        Err(not_yet())
    }

    fn heartbeat(&mut self, _: &Holder) -> Result<bool, StoreError> {
        Err(not_yet())
    }

    fn release(&mut self, _: &Holder) -> Result<(), StoreError> {
        Err(not_yet())
    }

    fn series(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let mut series = self.run("series", |c| {
            c.exec::<(String, String), _, _>("SELECT DISTINCT target, region FROM state", ())
        })?;
        // Sorted here, not by the collation, so both backends agree on the order.
        series.sort_unstable();
        Ok(series)
    }
}

/// The MySQL store's exactly-once methods are the next step; until then they say so.
fn not_yet() -> StoreError {
    StoreError::Query("mysql: not implemented yet (schema version 2 is SQLite-only so far)".into())
}

/// Converts a driver row, parsing its timestamp text.
fn into_state(raw: Result<RawRow, FromRowError>) -> Result<StateRow, StoreError> {
    let (id, timestamp, healthy, target, region, reason) =
        raw.map_err(|e| StoreError::Query(format!("mysql: unexpected row: {e}").into()))?;
    Ok(StateRow {
        id,
        timestamp: Timestamp::parse_sql(&timestamp)?,
        healthy,
        target,
        region,
        reason,
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
    fn shipped_schema_is_two_create_tables_without_comments() {
        let statements = statements(SCHEMA);
        assert_eq!(statements.len(), 2, "{statements:?}");
        assert!(statements[0].starts_with("CREATE TABLE IF NOT EXISTS state"), "{statements:?}");
        assert!(statements[1].starts_with("CREATE TABLE IF NOT EXISTS notification"));
        assert!(statements.iter().all(|s| !s.contains("--")), "comments are stripped");
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
