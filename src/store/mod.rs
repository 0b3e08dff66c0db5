//! Where transitions are recorded: the `state` table, behind one small [`Store`] trait.
//!
//! Two implementations share one logical schema (`sql/sqlite.sql`, `sql/mysql.sql`): SQLite,
//! the embedded default, and MySQL/MariaDB for production. The schema is applied idempotently
//! when a store is opened, after a database of an older version has been upgraded in place
//! (see `SCHEMA_VERSION`). Every query is parameterised. The read-only commands (`report`,
//! `outbox`) use [`open_read_only`] instead, which creates, applies and upgrades nothing.
//!
//! What both backends share lives here as pure functions: the version check, the claim
//! decision, how an outbox row becomes an [`OutboxEntry`], and the clipping of free text.

pub mod cluster;
pub mod mysql;
pub mod sqlite;

use std::time::Duration;

use crate::detector::Health;
use crate::history::Change;
use crate::latency::{self, LatencyRow, Span, HOURS_KEPT, MINUTES_KEPT};
pub use crate::maintenance::Silence;
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
    /// The maintenance the transition happened in, as logs show it; `None` outside one.
    pub maintenance: Option<String>,
    /// Its notification is held back by maintenance and the summary is not yet written.
    pub held: bool,
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

/// 32 hex digits derived from `parts`: the key of a row every writer would make alike (a
/// cluster's leaders, the channel copies of one notification), so that the unique key makes a
/// second write a no-op.
pub fn derived_key(parts: &[&str]) -> RowKey {
    use std::hash::Hasher as _;
    let hash = |seed: u64| {
        let mut hasher = twox_hash::XxHash64::with_seed(seed);
        for part in parts {
            hasher.write(&(part.len() as u64).to_le_bytes());
            hasher.write(part.as_bytes());
        }
        hasher.finish()
    };
    format!("{:016x}{:016x}", hash(1), hash(2))
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
    /// See [`StateRow::maintenance`].
    pub maintenance: Option<String>,
    /// See [`StateRow::held`].
    pub held: bool,
}

/// Which silences `api-monitor silence --clear` ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Clear {
    /// The one with this id.
    Id(i64),
    /// Every one of this target (as logs show it; `*` for the ones covering every target).
    Target(String),
    All,
}

/// A `silence` row as both backends read it (times as text), parsed.
pub(crate) fn into_silence(
    (id, target, starts_at, ends_at, reason, created_by): (
        i64,
        String,
        String,
        String,
        String,
        String,
    ),
) -> Result<Silence, StoreError> {
    Ok(Silence {
        id,
        target,
        starts_at: Timestamp::parse_sql(&starts_at)?,
        ends_at: Timestamp::parse_sql(&ends_at)?,
        reason,
        created_by,
    })
}

/// Rolls the minute rows of latency of the hours in `[from, to)` up into hour rows, hour by
/// hour, then deletes minute rows older than [`MINUTES_KEPT`] and hour rows older than
/// [`HOURS_KEPT`] before `now`. An hour that has hour rows already is skipped (it was rolled
/// up whole, in one transaction); an hour is read pair by pair, so memory stays that of one
/// pair's hour whatever the number of targets. Every write replaces its row: an interrupted
/// roll-up is finished by the next.
pub fn roll_up_latency(
    store: &mut dyn Store,
    from: Timestamp,
    to: Timestamp,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut hour = Span::Hour.start_of(from);
    while hour < to {
        let end = hour.plus(Span::Hour.length());
        if store.latency_pairs(Span::Hour, hour, end)?.is_empty() {
            let mut hours = Vec::new();
            for (target, region) in store.latency_pairs(Span::Minute, hour, end)? {
                let minutes = store.latency(Span::Minute, Some((&target, &region)), hour, end)?;
                hours.extend(latency::roll_up(&minutes));
            }
            if !hours.is_empty() {
                store.record_latency(&hours)?;
            }
        }
        hour = end;
    }
    store.prune_latency(Span::Minute, now.minus(MINUTES_KEPT))?;
    store.prune_latency(Span::Hour, now.minus(HOURS_KEPT))?;
    Ok(())
}

/// `latency` rows as both backends read them, ordered by target, region and start, parsed.
/// Should two instances ever have written the same row at once (MySQL has no unique key on
/// it), the first is kept: a figure counted twice would be worse than one partly missing.
pub(crate) fn latency_rows(
    raw: Vec<(String, String, i64, String, String)>,
) -> Result<Vec<LatencyRow>, StoreError> {
    let mut rows = raw.into_iter().map(into_latency).collect::<Result<Vec<_>, _>>()?;
    rows.dedup_by(|b, a| {
        (&a.target, &a.region, a.span, a.start) == (&b.target, &b.region, b.span, b.start)
    });
    Ok(rows)
}

/// A `latency` row as both backends read it (start as text), parsed.
fn into_latency(
    (target, region, span, start, buckets): (String, String, i64, String, String),
) -> Result<LatencyRow, StoreError> {
    Ok(LatencyRow {
        span: Span::from_seconds(span)
            .ok_or_else(|| StoreError::Latency(format!("unknown span {span}")))?,
        start: Timestamp::parse_sql(&start)?,
        histogram: latency::Histogram::decode(&buckets)
            .map_err(|e| StoreError::Latency(e.to_string()))?,
        target,
        region,
    })
}

/// The longest silence reason and `created_by` either store keeps (`VARCHAR(255)`).
pub(crate) const SILENCE_TEXT_MAX_CHARS: usize = 255;

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
    /// `(target, region)` whose held rows are released: the summary that replaces their
    /// notifications is among `notifications` (or none is owed: the state did not change).
    pub release: Option<(String, String)>,
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
    /// A `latency` row that does not read as one (unknown span, bad histogram text).
    #[error("bad latency row in database: {0}")]
    Latency(String),
    /// A read-only open found nothing to read: no such file, or no `state` table in it.
    #[error(
        "{} {url} (start the monitor first, or pass --db)",
        if *.exists { "no api-monitor tables in" } else { "no database at" }
    )]
    NoDatabase { url: String, exists: bool },
    /// A read-only open found an older schema, which only a read-write open upgrades.
    #[error(
        "{url}: schema version {found} is older than this api-monitor's ({SCHEMA_VERSION}): \
         run the monitor once to upgrade it"
    )]
    OldSchema { url: String, found: i64 },
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

    /// The silences that have not ended by `now` (running or to come), by start then id.
    fn silences(&mut self, now: Timestamp) -> Result<Vec<Silence>, StoreError>;

    /// Writes `silence` (its `id` is ignored) at `now`; returns the id it got.
    fn add_silence(&mut self, silence: &Silence, now: Timestamp) -> Result<i64, StoreError>;

    /// Ends early, at `now`, the silences `which` selects among those not ended yet; returns
    /// how many. Rows are kept (with the new end), for the record.
    fn clear_silences(&mut self, which: &Clear, now: Timestamp) -> Result<usize, StoreError>;

    /// Writes `rows` of probe latency, each replacing any row of the same target, region,
    /// span and start: a write retried after a lost reply, or a roll-up run again, changes
    /// nothing.
    fn record_latency(&mut self, rows: &[LatencyRow]) -> Result<(), StoreError>;

    /// The latency rows of `span` that start in `[from, to)`, of one target × region or, with
    /// `None`, of every one; ordered by target, region and start.
    fn latency(
        &mut self,
        span: Span,
        pair: Option<(&str, &str)>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<LatencyRow>, StoreError>;

    /// The target × region pairs with latency rows of `span` starting in `[from, to)`, sorted.
    fn latency_pairs(
        &mut self,
        span: Span,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// Deletes the latency rows of `span` that start before `before`; returns how many.
    fn prune_latency(&mut self, span: Span, before: Timestamp) -> Result<usize, StoreError>;

    /// The same store as a [`cluster::ClusterStore`], when its backend can serve cluster mode
    /// (MySQL); `None` otherwise (SQLite). So that code holding a `Box<dyn Store>` (the
    /// runtime's ledger) reaches the cluster's operations on the same connection, without a
    /// second connection or a second trait object.
    fn as_cluster(&mut self) -> Option<&mut dyn cluster::ClusterStore> {
        None
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

/// The longest `state.maintenance` either store keeps, in characters (`VARCHAR(255)`).
pub(crate) const MAINTENANCE_MAX_CHARS: usize = 255;

/// `text` cut to `max` characters (on a character boundary).
pub(crate) fn clip(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// The longest `last_error` either store keeps, in characters (`VARCHAR(1024)`).
pub(crate) const ERROR_MAX_CHARS: usize = 1024;

/// The longest `refused` either store keeps, in characters (`VARCHAR(2048)`).
pub(crate) const REFUSED_MAX_CHARS: usize = 2048;

/// The longest host name the `holder` table keeps, in characters (`VARCHAR(255)`).
pub(crate) const HOST_MAX_CHARS: usize = 255;

/// The schema this binary writes and understands, kept in the one-row `schema_version` table.
///
/// - 1: `state` and `notification` (no version table: a database with a `state` table and no
///   `schema_version` is version 1).
/// - 2: row keys (`state.row_key`, `notification.row_key`), dead letters
///   (`notification.dead_at`, `notification.refused`), long subjects, the `holder` lock.
/// - 3: maintenance: `state.maintenance` and `state.held`, the `silence` table.
///
/// An older database is upgraded in place at open; a newer one is refused
/// ([`check_version`]), because this binary would misread or damage what it does not know.
pub(crate) const SCHEMA_VERSION: i64 = 3;

/// The name of the one `holder` row: one lock per database.
pub(crate) const HOLDER_NAME: &str = "api-monitor";

/// What a notification written by version 1 (which had no keys) is keyed by after the upgrade:
/// this prefix and its id. Never a valid [`new_key`] (those are hex only), so never a clash.
pub(crate) const LEGACY_KEY_PREFIX: &str = "v1-";

/// What a read-only open makes of the database it found: `has_state`, whether the `state`
/// table exists, and `version`, the `schema_version` (`None`: no such table). Only the current
/// version is read: an older one (a `state` table without a version is version 1) lacks
/// columns the queries read, and upgrading it is a write.
pub(crate) fn check_readable(
    url: &str,
    has_state: bool,
    version: Option<i64>,
) -> Result<(), StoreError> {
    let url = url.to_owned();
    match (has_state, version) {
        (_, Some(found)) if found > SCHEMA_VERSION => {
            let reason = check_version(found).err().unwrap_or_default();
            Err(StoreError::Permanent { url, reason })
        }
        (false, _) => Err(StoreError::NoDatabase { url, exists: true }),
        (true, Some(SCHEMA_VERSION)) => Ok(()),
        (true, found) => Err(StoreError::OldSchema { url, found: found.unwrap_or(1) }),
    }
}

/// Whether this binary may use a database whose `schema_version` says `found`: the reason it
/// may not, as the one line [`StoreError::Permanent`] shows.
pub(crate) fn check_version(found: i64) -> Result<(), String> {
    if found > SCHEMA_VERSION {
        Err(format!(
            "schema version {found} is newer than this api-monitor understands \
             ({SCHEMA_VERSION}): upgrade api-monitor"
        ))
    } else {
        Ok(())
    }
}

/// The claim decision, apart from the locking I/O around it. `current` is the holder row as
/// the locking read found it (`None`: nobody holds the database) with the age of its heartbeat
/// by the database's clock (`None`: no heartbeat was ever written, so nothing vouches for it).
///
/// `gone` is asked last and only about another instance with a fresh heartbeat, because it is
/// the one check that is a guess (a pid on this host) rather than a fact in the database.
pub(crate) fn decide_claim(
    me: &Holder,
    current: Option<(Holder, Option<Duration>)>,
    stale_after: Duration,
    gone: &dyn Fn(&Holder) -> bool,
) -> Claim {
    let Some((holder, age)) = current else { return Claim::Granted };
    if holder.id == me.id {
        return Claim::Granted;
    }
    match age {
        None => Claim::Granted,
        Some(age) if age >= stale_after => Claim::Granted,
        Some(_) if gone(&holder) => Claim::Granted,
        Some(heartbeat_age) => Claim::Held { by: holder, heartbeat_age },
    }
}

/// A heartbeat age the database measured in (possibly negative) microseconds: a heartbeat
/// "in the future" (the database clock stepped back) counts as just written.
pub(crate) fn age_from_micros(micros: i64) -> Duration {
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

/// The delivery status the two nullable columns stand for. Sent wins over dead: once the SMTP
/// server accepted a message, nothing that happened to it before matters.
pub(crate) fn delivery(sent: bool, dead: bool) -> Delivery {
    match (sent, dead) {
        (true, _) => Delivery::Sent,
        (false, true) => Delivery::Dead,
        (false, false) => Delivery::Pending,
    }
}

/// An outbox row as both stores read it (each backend's `OUTBOX_COLUMNS`, in this order),
/// before its timestamp text is parsed.
pub(crate) struct RawEntry {
    pub id: i64,
    pub key: String,
    pub target: String,
    pub region: String,
    pub recipients: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub created_at: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub refused: Option<String>,
    pub sent: bool,
    pub dead: bool,
}

impl RawEntry {
    pub(crate) fn into_entry(self) -> Result<OutboxEntry, StoreError> {
        Ok(OutboxEntry {
            id: self.id,
            notification: Notification {
                key: self.key,
                target: self.target,
                region: self.region,
                recipients: self.recipients,
                subject: self.subject,
                text: self.text,
                html: self.html,
                created_at: Timestamp::parse_sql(&self.created_at)?,
            },
            delivery: delivery(self.sent, self.dead),
            attempts: self.attempts,
            last_error: self.last_error,
            refused: self.refused,
        })
    }
}

/// How a store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Created if missing, upgraded in place, schema applied: the monitor.
    ReadWrite,
    /// Nothing created, upgraded or applied; a missing database or an older schema is an
    /// error ([`StoreError::NoDatabase`], [`StoreError::OldSchema`]): `report`, `outbox`.
    ReadOnly,
}

/// Opens the store named by a `sqlite://` or `mysql://` URL and applies the schema.
pub fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    open_with(url, Access::ReadWrite)
}

/// Opens the store named by `url` to read it only: a SQLite file is opened read-only
/// (`SQLITE_OPEN_READ_ONLY`, never created), a MySQL session is read-only, and no schema is
/// applied or upgraded. The database must exist, with a `state` table of the current schema
/// version: see [`StoreError::NoDatabase`] and [`StoreError::OldSchema`].
pub fn open_read_only(url: &str) -> Result<Box<dyn Store>, StoreError> {
    open_with(url, Access::ReadOnly)
}

/// [`open`] or [`open_read_only`], as `access` says.
pub fn open_with(url: &str, access: Access) -> Result<Box<dyn Store>, StoreError> {
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("sqlite") => Ok(Box::new(sqlite::SqliteStore::open_with(url, access)?)),
        Some("mysql") => Ok(Box::new(mysql::MysqlStore::open_with(url, access)?)),
        _ => Err(StoreError::Url {
            url: crate::redact::url(url),
            reason: "expected sqlite://PATH or mysql://USER:PASS@HOST:PORT/DB".into(),
        }),
    }
}

/// The database `url` names, as a person checking "which database is this?" needs it: the
/// URL with its password masked and, for a relative SQLite path, the file it is from the
/// current directory: `sqlite://api-monitor.db (/srv/monitor/api-monitor.db)`.
pub fn location(url: &str) -> String {
    let shown = crate::redact::url(url);
    match url.strip_prefix("sqlite://").map(std::path::Path::new) {
        Some(path) if path.is_relative() && path != std::path::Path::new(":memory:") => {
            match std::env::current_dir() {
                Ok(dir) => format!("{shown} ({})", dir.join(path).display()),
                Err(_) => shown,
            }
        }
        _ => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(id: &str) -> Holder {
        Holder { id: id.into(), host: "host-a".into(), pid: 42 }
    }

    #[test]
    fn a_claim_is_granted_when_free_mine_stale_or_gone_and_held_otherwise() {
        let me = holder("me");
        let other = holder("other");
        let stale = Duration::from_secs(30);
        let alive = |_: &Holder| false;
        let dead = |_: &Holder| true;
        let fresh = Some(Duration::from_secs(3));
        assert_eq!(decide_claim(&me, None, stale, &alive), Claim::Granted, "free");
        assert_eq!(decide_claim(&me, Some((me.clone(), fresh)), stale, &alive), Claim::Granted);
        assert_eq!(
            decide_claim(&me, Some((other.clone(), Some(stale))), stale, &alive),
            Claim::Granted,
            "a heartbeat exactly stale_after old is stale"
        );
        assert_eq!(decide_claim(&me, Some((other.clone(), None)), stale, &alive), Claim::Granted);
        assert_eq!(decide_claim(&me, Some((other.clone(), fresh)), stale, &dead), Claim::Granted);
        assert_eq!(
            decide_claim(&me, Some((other.clone(), fresh)), stale, &alive),
            Claim::Held { by: other, heartbeat_age: Duration::from_secs(3) }
        );
    }

    #[test]
    fn gone_is_not_asked_about_myself_or_a_stale_holder() {
        let me = holder("me");
        let panics = |_: &Holder| -> bool { panic!("gone asked needlessly") };
        let stale = Duration::from_secs(30);
        decide_claim(&me, Some((me.clone(), Some(Duration::ZERO))), stale, &panics);
        decide_claim(&me, Some((holder("x"), Some(Duration::from_secs(31)))), stale, &panics);
    }

    #[test]
    fn negative_heartbeat_ages_count_as_zero() {
        assert_eq!(age_from_micros(-5), Duration::ZERO);
        assert_eq!(age_from_micros(1_500_000), Duration::from_millis(1_500));
    }

    #[test]
    fn a_location_names_the_file_a_relative_path_resolves_to_and_masks_passwords() {
        let here = std::env::current_dir().expect("a current directory");
        let cases = [
            ("sqlite:///abs/a.db", "sqlite:///abs/a.db".to_owned()),
            ("sqlite://:memory:", "sqlite://:memory:".to_owned()),
            ("sqlite://a.db", format!("sqlite://a.db ({})", here.join("a.db").display())),
            (
                "sqlite://./d/a.db",
                format!("sqlite://./d/a.db ({})", here.join("./d/a.db").display()),
            ),
            (
                "mysql://monitor:s3cret@db:3306/monitor",
                "mysql://monitor:***@db:3306/monitor".to_owned(),
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(location(url), expected, "{url}");
        }
    }

    #[test]
    fn a_read_only_open_reads_the_current_schema_only() {
        let url = "sqlite://a.db";
        let cases: [(bool, Option<i64>, &str); 6] = [
            (true, Some(SCHEMA_VERSION), "ok"),
            (
                false,
                None,
                "no api-monitor tables in sqlite://a.db (start the monitor first, or pass --db)",
            ),
            (
                true,
                None,
                "sqlite://a.db: schema version 1 is older than this api-monitor's (3): run the \
                 monitor once to upgrade it",
            ),
            (
                true,
                Some(1),
                "sqlite://a.db: schema version 1 is older than this api-monitor's (3): run the \
                 monitor once to upgrade it",
            ),
            (
                true,
                Some(SCHEMA_VERSION + 1),
                "sqlite://a.db: schema version 4 is newer than this api-monitor understands (3): \
                 upgrade api-monitor",
            ),
            // A version table without `state` (someone dropped it): nothing to read either.
            (
                false,
                Some(SCHEMA_VERSION),
                "no api-monitor tables in sqlite://a.db (start the monitor first, or pass --db)",
            ),
        ];
        for (has_state, version, expected) in cases {
            let got = check_readable(url, has_state, version)
                .map_or_else(|e| e.to_string(), |()| "ok".to_owned());
            assert_eq!(got, expected, "state table: {has_state}, version {version:?}");
        }
    }

    #[test]
    fn newer_schema_versions_are_refused_in_one_line() {
        assert_eq!(check_version(1), Ok(()));
        assert_eq!(check_version(SCHEMA_VERSION), Ok(()));
        assert_eq!(
            check_version(4),
            Err("schema version 4 is newer than this api-monitor understands (3): upgrade \
                 api-monitor"
                .into())
        );
    }

    #[test]
    fn sent_wins_over_dead() {
        assert_eq!(delivery(false, false), Delivery::Pending);
        assert_eq!(delivery(true, false), Delivery::Sent);
        assert_eq!(delivery(false, true), Delivery::Dead);
        assert_eq!(delivery(true, true), Delivery::Sent);
    }

    #[test]
    fn legacy_keys_never_look_like_new_keys() {
        let key = new_key();
        assert_eq!(key.len(), 32);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(!LEGACY_KEY_PREFIX.chars().all(|c| c.is_ascii_hexdigit()));
    }

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
