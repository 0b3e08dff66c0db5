//! A throwaway MySQL/MariaDB database per test, so MySQL tests can run in parallel without
//! seeing each other's rows, and leave nothing behind.
//!
//! Standalone (only `std`, `mysql` and `url`), so any integration test can include it:
//! `#[path = "support/scratch_db.rs"] mod scratch_db;`.
//!
//! The server comes from `TEST_MYSQL_URL` (default [`DEFAULT_URL`]); its user must be allowed to
//! create and drop databases. When the server is unreachable the test is skipped with a loud
//! `SKIPPED:` line on stderr, unless `REQUIRE_MYSQL=1` (CI), where a missing MySQL is a failure.
#![allow(dead_code)]

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mysql::prelude::Queryable;

/// The admin URL used when `TEST_MYSQL_URL` is unset: the local server's root, no password.
pub const DEFAULT_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// Tells databases of one test process apart.
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A database created for one test and dropped when this value is dropped.
pub struct ScratchDb {
    /// `mysql://` URL of the scratch database: the admin URL with the database name replaced.
    pub url: String,
    /// The scratch database's name: `apimon_<tag>_<pid>_<counter>`.
    pub name: String,
    /// Options for an admin connection with no default database.
    admin: mysql::Opts,
}

impl ScratchDb {
    /// A new admin connection (no default database), e.g. to `KILL` a store's connection.
    pub fn admin(&self) -> mysql::Result<mysql::Conn> {
        mysql::Conn::new(self.admin.clone())
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let dropped = self.admin().and_then(|mut conn| {
            conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name))
        });
        if let Err(e) = dropped {
            eprintln!("warning: could not drop scratch database {}: {e}", self.name);
        }
    }
}

/// A fresh, empty database on the test server, named after `tag`; `None` (with a `SKIPPED:`
/// line on stderr) when the server is unreachable, or a panic if `REQUIRE_MYSQL=1`.
pub fn mysql(tag: &str) -> Option<ScratchDb> {
    let admin_url = std::env::var("TEST_MYSQL_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    match create(&admin_url, tag) {
        Ok(db) => Some(db),
        Err(e) => {
            let shown = redact(&admin_url);
            if std::env::var("REQUIRE_MYSQL").as_deref() == Ok("1") {
                panic!(
                    "MySQL is required (REQUIRE_MYSQL=1) but unreachable at {shown}: {e}\n\
                     Start one or point TEST_MYSQL_URL at a server whose user may create databases."
                );
            }
            // Straight to stderr, not `eprintln!`: the test harness captures that, and a skipped
            // MySQL test must be visible in every run.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: MySQL unreachable at {shown}: {e} (set REQUIRE_MYSQL=1 to fail instead)"
            );
            None
        }
    }
}

/// Creates the scratch database through an admin connection.
fn create(admin_url: &str, tag: &str) -> Result<ScratchDb, String> {
    let mut url = url::Url::parse(admin_url).map_err(|e| format!("bad TEST_MYSQL_URL: {e}"))?;
    // The admin connects to no database: `test` need not exist (MySQL 8 has none).
    url.set_path("");
    let admin: mysql::Opts = mysql::OptsBuilder::from_opts(
        mysql::Opts::from_url(url.as_str()).map_err(|e| format!("bad TEST_MYSQL_URL: {e}"))?,
    )
    .tcp_connect_timeout(Some(Duration::from_secs(3)))
    .read_timeout(Some(Duration::from_secs(30)))
    .write_timeout(Some(Duration::from_secs(30)))
    .into();
    let name = format!(
        "apimon_{}_{}_{}",
        sanitise(tag),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = mysql::Conn::new(admin.clone()).map_err(|e| e.to_string())?;
    // A leftover of a crashed run with the same pid would otherwise make CREATE fail.
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .and_then(|()| conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4")))
        .map_err(|e| format!("cannot create database {name}: {e}"))?;
    url.set_path(&format!("/{name}"));
    Ok(ScratchDb { url: url.into(), name, admin })
}

/// `tag` reduced to what a database name may safely hold: `[a-z0-9_]`, at most 30 characters.
fn sanitise(tag: &str) -> String {
    tag.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .take(30)
        .collect()
}

/// `url` with its password (if any) replaced by `***`.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.into()
        }
        Ok(parsed) => parsed.into(),
        Err(_) => "<unparsable TEST_MYSQL_URL>".to_owned(),
    }
}
