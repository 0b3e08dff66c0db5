//! The monitor's durable memory: its writes to the database, applied in order, kept in memory
//! while the database is away, and never applied twice.
//!
//! Why it exists: the database fails, and that may cost neither a transition nor a
//! notification. So every write goes through an in-memory *backlog*, applied in order; when the
//! database is unreachable the backlog waits (the outage is logged once, the recovery once) and
//! is replayed with the original timestamps when it returns.
//!
//! Exactly once rests on two properties of the writes (see [`crate::store::Store`]):
//! - **atomic**: a transition's `state` row and the notifications announcing it are one
//!   [`Commit`], one transaction — a crash leaves both or neither, never a row whose email is lost;
//! - **idempotent**: every row carries a key made before the first attempt, so a write retried
//!   after a lost reply (committed on the server, an error on the client) changes nothing.
//!
//! The ledger does no waiting of its own and has one owner, the state thread
//! ([`crate::runtime::state`]), which asks it when to try again. Probes never touch it, so a
//! slow or reconnecting database never delays a probe.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::cluster::MemberId;
use crate::duration::human;
use crate::latency::LatencyRow;
use crate::redact;
use crate::store::{Claim, Commit, Holder, Notification, OutboxEntry, StateRow, Store, StoreError};
use crate::timestamp::Timestamp;

/// The longest wait between two attempts to reach the database again.
pub const MAX_DATABASE_BACKOFF: Duration = Duration::from_secs(60);

/// Opens a store from its URL; [`crate::store::open`] in production, a fake in unit tests.
pub type Opener = Box<dyn Fn(&str) -> Result<Box<dyn Store>, StoreError> + Send>;

/// The database cannot answer right now (down, or writes still queued ahead of the read);
/// the caller falls back to what it remembers, or waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the database is unavailable")]
pub struct Unavailable;

/// One pending database write, applied in order.
#[derive(Clone, Debug)]
pub enum Write {
    /// A transition's row and its notifications, or a notification alone.
    Commit(Commit),
    /// A failed delivery attempt (informative: the count and the error).
    Attempt { key: String, attempts: u32, error: String },
    /// The SMTP server accepted the notification.
    Sent { key: String, attempts: u32, at: Timestamp, refused: Option<String> },
    /// Refused for good.
    Dead { key: String, attempts: u32, error: String, at: Timestamp },
    /// Finished minutes of probe latency ([`crate::latency`]).
    Latency(Vec<LatencyRow>),
    /// Roll the minutes of latency in `[from, to)` up into hours and prune old rows
    /// ([`crate::store::roll_up_latency`]).
    RollUp { from: Timestamp, to: Timestamp, now: Timestamp },
}

impl Write {
    /// Whether it only keeps latency: statistics, which the backlog bounds
    /// ([`MAX_LATENCY_WRITES`]) rather than hold without end while the database is away.
    fn is_latency(&self) -> bool {
        matches!(self, Write::Latency(_) | Write::RollUp { .. })
    }
}

/// The most latency writes (about one a minute) the backlog keeps while the database is away:
/// two hours of them. Older ones are dropped, logged once per outage: latency is statistics,
/// and a long outage must not grow memory without bound. Transitions and notifications are
/// never dropped.
pub const MAX_LATENCY_WRITES: usize = 240;

/// The database is unreachable: since when, and when to try again.
#[derive(Debug)]
struct Unreachable {
    since: Instant,
    next_try: Instant,
    delay: Duration,
}

/// See the module doc. Owned by the state thread ([`crate::runtime::state`]).
pub struct Ledger {
    url: String,
    opener: Opener,
    store: Option<Box<dyn Store>>,
    backlog: VecDeque<Write>,
    unreachable: Option<Unreachable>,
    /// A permanent fault seen mid-run, logged once until the database works again.
    refusing: Option<String>,
    /// The database file vanished (see [`StoreError::Vanished`]): the monitor must stop.
    vanished: Option<String>,
    retry_base: Duration,
    /// Latency writes dropped in this database outage ([`MAX_LATENCY_WRITES`]).
    latency_dropped: usize,
}

impl Ledger {
    /// The first wait before the database is tried again (a reload may change the fastest
    /// interval it derives from).
    pub fn set_retry_base(&mut self, retry_base: Duration) {
        self.retry_base = retry_base;
    }

    /// A ledger over `store` (already opened, or `None` when the database was unreachable at
    /// start: then it starts in the "database down" state and keeps trying).
    pub fn new(
        url: &str,
        opener: Opener,
        store: Option<Box<dyn Store>>,
        retry_base: Duration,
        now: Instant,
    ) -> Ledger {
        let unreachable = store.is_none().then_some(Unreachable {
            since: now,
            next_try: now + retry_base,
            delay: retry_base,
        });
        Ledger {
            url: url.to_owned(),
            opener,
            store,
            backlog: VecDeque::new(),
            unreachable,
            refusing: None,
            vanished: None,
            retry_base,
            latency_dropped: 0,
        }
    }

    /// Whether the database is currently believed reachable.
    pub fn is_up(&self) -> bool {
        self.unreachable.is_none()
    }

    /// Why the monitor must stop, if the database file vanished.
    pub fn vanished(&self) -> Option<String> {
        self.vanished.clone()
    }

    /// Writes not yet in the database.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Makes sure a store is open.
    fn connect(&mut self, now: Instant) -> bool {
        if self.store.is_some() {
            return true;
        }
        match (self.opener)(&self.url) {
            Ok(store) => {
                self.store = Some(store);
                true
            }
            Err(e) => {
                self.fail(&e, now);
                false
            }
        }
    }

    /// Notes a database fault: logged once per outage (and once more if it turns permanent),
    /// then retried with backoff.
    fn fail(&mut self, error: &StoreError, now: Instant) {
        // The connection may be broken mid-transaction: start afresh next time.
        self.store = None;
        if let StoreError::Vanished { .. } = error {
            self.vanished = Some(error.to_string());
        }
        if error.is_permanent() && self.refusing.as_deref() != Some(&error.to_string()) {
            log::error!(
                "DATABASE REFUSES db={} error=\"{error}\": this does not pass by waiting — fix \
                 the database or its settings; writes are kept in memory meanwhile and retried",
                redact::url(&self.url)
            );
            self.refusing = Some(error.to_string());
        }
        match &mut self.unreachable {
            None => {
                if !error.is_permanent() {
                    log::error!(
                        "DATABASE UNAVAILABLE db={} error=\"{error}\"; probing and notifying go \
                         on, writes are kept in memory and replayed when it returns",
                        redact::url(&self.url)
                    );
                }
                self.unreachable = Some(Unreachable {
                    since: now,
                    next_try: now + self.retry_base,
                    delay: self.retry_base,
                });
            }
            Some(u) => {
                log::debug!("database still unavailable error=\"{error}\"");
                u.delay = (u.delay * 2).min(MAX_DATABASE_BACKOFF);
                u.next_try = now + u.delay;
            }
        }
    }

    /// The database answered: log the recovery once.
    fn recovered(&mut self, now: Instant, replayed: usize) {
        self.refusing = None;
        if self.latency_dropped > 0 {
            log::warn!(
                "latency of the database outage partly lost: {} write(s) of latency dropped \
                 (at most {MAX_LATENCY_WRITES} are kept while the database is away)",
                self.latency_dropped
            );
            self.latency_dropped = 0;
        }
        if let Some(u) = self.unreachable.take() {
            log::info!(
                "DATABASE RECOVERED db={} after={} replayed_writes={replayed}",
                redact::url(&self.url),
                human(now.saturating_duration_since(u.since))
            );
        }
    }

    /// Applies the backlog in order. Stops at the first failure (the rest waits, in order; the
    /// failed write is retried whole, which its keys make harmless).
    fn flush(&mut self, now: Instant) -> bool {
        if !self.connect(now) {
            return false;
        }
        let written = self.backlog.len();
        while let Some(write) = self.backlog.front() {
            let Some(store) = self.store.as_mut() else { return false };
            match apply(store.as_mut(), write) {
                Ok(()) => {
                    if let Write::Sent { key, .. } = write {
                        // What tests (and a curious operator) wait for: from here on a crash
                        // cannot send this notification again.
                        log::debug!("notification recorded as sent key={key}");
                    }
                    self.backlog.pop_front();
                }
                Err(e) => {
                    self.fail(&e, now);
                    return false;
                }
            }
        }
        self.recovered(now, written);
        true
    }

    /// Tries the database again if it is down and the backoff has passed, or writes what waits.
    pub fn maintain(&mut self, now: Instant) {
        match &self.unreachable {
            Some(u) if now >= u.next_try => {
                self.flush(now);
            }
            Some(_) => {}
            None if !self.backlog.is_empty() => {
                self.flush(now);
            }
            None => {}
        }
    }

    /// When [`Ledger::maintain`] must next run: the next database retry, or now while writes
    /// wait with the database up.
    pub fn next_maintenance(&self, now: Instant) -> Option<Instant> {
        match &self.unreachable {
            Some(u) => Some(u.next_try),
            None if !self.backlog.is_empty() => Some(now),
            None => None,
        }
    }

    /// Runs `op` on the store once the backlog is written; a failure marks the database down.
    fn read<T>(
        &mut self,
        now: Instant,
        op: impl FnOnce(&mut dyn Store) -> Result<T, StoreError>,
    ) -> Result<T, Unavailable> {
        if self.unreachable.as_ref().is_some_and(|u| now < u.next_try) {
            return Err(Unavailable);
        }
        if !self.flush(now) {
            return Err(Unavailable);
        }
        let store = self.store.as_mut().ok_or(Unavailable)?;
        match op(store.as_mut()) {
            Ok(value) => Ok(value),
            Err(e) => {
                self.fail(&e, now);
                Err(Unavailable)
            }
        }
    }

    /// Queues `write` and applies the backlog now unless the database is known down.
    pub fn write(&mut self, write: Write, now: Instant) {
        let latency = write.is_latency();
        self.backlog.push_back(write);
        if latency && self.backlog.iter().filter(|w| w.is_latency()).count() > MAX_LATENCY_WRITES {
            if let Some(oldest) = self.backlog.iter().position(Write::is_latency) {
                self.backlog.remove(oldest);
                self.latency_dropped += 1;
            }
        }
        if self.unreachable.is_none() {
            self.flush(now);
        }
    }

    /// The rows of a target/region since `from` (with the one before), oldest first.
    pub fn history(
        &mut self,
        target: &str,
        region: &str,
        from: Timestamp,
        now: Instant,
    ) -> Result<Vec<StateRow>, Unavailable> {
        self.read(now, |s| s.since(target, region, from))
    }

    /// The silences not ended by `at` (see [`Store::silences`]).
    pub fn silences(
        &mut self,
        at: Timestamp,
        now: Instant,
    ) -> Result<Vec<crate::store::Silence>, Unavailable> {
        self.read(now, |s| s.silences(at))
    }

    /// The latency rows of `span` starting in `[from, to)` (see [`Store::latency`]).
    pub fn latency(
        &mut self,
        span: crate::latency::Span,
        pair: Option<(&str, &str)>,
        from: Timestamp,
        to: Timestamp,
        now: Instant,
    ) -> Result<Vec<LatencyRow>, Unavailable> {
        self.read(now, |s| s.latency(span, pair, from, to))
    }

    /// Earlier runs' undelivered notifications, oldest first.
    pub fn pending(&mut self, now: Instant) -> Result<Vec<OutboxEntry>, Unavailable> {
        self.read(now, |s| s.pending())
    }

    /// Takes the database for `me` (see [`Store::claim`]).
    pub fn claim(
        &mut self,
        me: &Holder,
        stale_after: Duration,
        gone: &dyn Fn(&Holder) -> bool,
        now: Instant,
    ) -> Result<Claim, Unavailable> {
        self.read(now, |s| s.claim(me, stale_after, gone))
    }

    /// Refreshes `me`'s heartbeat: `Ok(false)` when another instance holds the database now.
    pub fn heartbeat(&mut self, me: &Holder, now: Instant) -> Result<bool, Unavailable> {
        self.read(now, |s| s.heartbeat(me))
    }

    /// [`crate::store::cluster::ClusterStore::commit_fenced`], after the writes queued before
    /// it: `Ok(false)` when `me` no longer holds `term` (nothing written). Never queued: a
    /// leader's write that cannot be made now is dropped, and the next leader decides again.
    pub fn commit_fenced(
        &mut self,
        cluster: &str,
        me: &MemberId,
        term: u64,
        commit: &Commit,
        now: Instant,
    ) -> Result<bool, Unavailable> {
        self.read(now, |s| match s.as_cluster() {
            Some(c) => c.commit_fenced(cluster, me, term, commit),
            None => Err(StoreError::Query("cluster mode needs a MySQL store".into())),
        })
    }

    /// Cluster mode: drops the `state` rows of `pairs` (target, site) still waiting to be
    /// written, because another member probes those targets now and writes their rows. Were
    /// they replayed later (a member cut from the database, back after its targets moved), they
    /// would land after the new owner's rows and make the site's latest state a stale one.
    /// Returns how many were dropped. Rows that carry a notification are never dropped.
    pub fn disown(&mut self, pairs: &[(String, String)]) -> usize {
        let before = self.backlog.len();
        self.backlog.retain(|write| match write {
            Write::Commit(Commit { state: Some(row), notifications, release: None })
                if notifications.is_empty() =>
            {
                !pairs.iter().any(|(target, site)| *target == row.target && *site == row.region)
            }
            _ => true,
        });
        before - self.backlog.len()
    }

    /// Lets go of the database (clean stop), best effort.
    pub fn release(&mut self, me: &Holder, now: Instant) {
        let _ = self.read(now, |s| s.release(me));
    }

    /// At shutdown: one last write attempt, then every write still not in the database is
    /// logged, so nothing disappears silently. Returns the keys of the notifications not saved,
    /// for the caller to log in full (it knows which were delivered).
    pub fn report_leftovers(&mut self, now: Instant) -> Vec<Notification> {
        if !self.backlog.is_empty() {
            if let Some(u) = self.unreachable.as_mut() {
                u.next_try = now;
            }
            self.maintain(now);
        }
        let mut unsaved = Vec::new();
        for write in &self.backlog {
            match write {
                Write::Commit(commit) => {
                    if let Some(row) = &commit.state {
                        log::error!(
                            "state row NOT written (database unavailable) target={} region={} \
                             healthy={} timestamp={} reason={:?}",
                            row.target,
                            row.region,
                            row.healthy,
                            row.timestamp,
                            row.reason.as_deref().unwrap_or("")
                        );
                    }
                    unsaved.extend(commit.notifications.iter().cloned());
                }
                Write::Sent { key, .. } => log::warn!(
                    "notification {key} delivered but NOT recorded as sent (database \
                     unavailable): the next start may send it again"
                ),
                Write::Dead { key, .. } => log::warn!(
                    "notification {key} refused for good but NOT recorded as dead (database \
                     unavailable): the next start tries it again"
                ),
                Write::Latency(rows) => log::warn!(
                    "latency of {} target×region minute(s) NOT written (database unavailable)",
                    rows.len()
                ),
                Write::Attempt { .. } | Write::RollUp { .. } => {}
            }
        }
        unsaved
    }
}

/// Applies one backlog write.
fn apply(store: &mut dyn Store, write: &Write) -> Result<(), StoreError> {
    match write {
        Write::Commit(commit) => store.commit(commit).map(drop),
        Write::Attempt { key, attempts, error } => store.record_attempt(key, *attempts, error),
        Write::Sent { key, attempts, at, refused } => {
            store.record_sent(key, *attempts, *at, refused.as_deref())
        }
        Write::Dead { key, attempts, error, at } => store.record_dead(key, *attempts, error, *at),
        Write::Latency(rows) => store.record_latency(rows),
        Write::RollUp { from, to, now } => crate::store::roll_up_latency(store, *from, *to, *now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::{Histogram, Span};
    use crate::store::{Delivery, NewState};
    use std::sync::{Arc, Mutex};

    const BASE: Duration = Duration::from_secs(1);

    /// An in-memory database that a test can take down, bring back, or make lose its replies.
    #[derive(Default)]
    struct Db {
        down: bool,
        /// Commits apply, then the reply is "lost" (an error), this many more times.
        lose_replies: usize,
        states: Vec<(String, StateRow)>,
        notes: Vec<OutboxEntry>,
        latency: Vec<LatencyRow>,
    }

    struct FakeStore(Arc<Mutex<Db>>);

    impl FakeStore {
        fn db(&self) -> Result<std::sync::MutexGuard<'_, Db>, StoreError> {
            let db = self.0.lock().unwrap();
            if db.down {
                Err(StoreError::Query("connection refused".into()))
            } else {
                Ok(db)
            }
        }
    }

    impl Store for FakeStore {
        fn last(&mut self, _: &str, _: &str) -> Result<Option<StateRow>, StoreError> {
            Ok(self.db()?.states.last().map(|(_, r)| r.clone()))
        }
        fn previous(&mut self, _: &StateRow) -> Result<Option<StateRow>, StoreError> {
            unimplemented!("not used by the ledger")
        }
        fn since(&mut self, _: &str, _: &str, _: Timestamp) -> Result<Vec<StateRow>, StoreError> {
            Ok(self.db()?.states.iter().map(|(_, r)| r.clone()).collect())
        }
        fn commit(&mut self, commit: &Commit) -> Result<Option<i64>, StoreError> {
            let mut db = self.db()?;
            let mut id = None;
            if let Some(row) = &commit.state {
                if !db.states.iter().any(|(k, _)| *k == row.key) {
                    let written = StateRow {
                        id: db.states.len() as i64 + 1,
                        timestamp: row.timestamp,
                        healthy: row.healthy,
                        target: row.target.clone(),
                        region: row.region.clone(),
                        reason: row.reason.clone(),
                        maintenance: row.maintenance.clone(),
                        held: row.held,
                    };
                    db.states.push((row.key.clone(), written));
                }
                id = db.states.iter().find(|(k, _)| *k == row.key).map(|(_, r)| r.id);
            }
            for n in &commit.notifications {
                if !db.notes.iter().any(|e| e.notification.key == n.key) {
                    let entry = OutboxEntry {
                        id: db.notes.len() as i64 + 1,
                        notification: n.clone(),
                        delivery: Delivery::Pending,
                        attempts: 0,
                        last_error: None,
                        refused: None,
                    };
                    db.notes.push(entry);
                }
            }
            if db.lose_replies > 0 {
                db.lose_replies -= 1;
                return Err(StoreError::Query("read timed out (the reply was lost)".into()));
            }
            Ok(id)
        }
        fn pending(&mut self) -> Result<Vec<OutboxEntry>, StoreError> {
            let db = self.db()?;
            Ok(db.notes.iter().filter(|e| e.delivery == Delivery::Pending).cloned().collect())
        }
        fn dead(&mut self) -> Result<Vec<OutboxEntry>, StoreError> {
            let db = self.db()?;
            Ok(db.notes.iter().filter(|e| e.delivery == Delivery::Dead).cloned().collect())
        }
        fn record_attempt(&mut self, key: &str, n: u32, error: &str) -> Result<(), StoreError> {
            let mut db = self.db()?;
            let e = db.notes.iter_mut().find(|e| e.notification.key == key).unwrap();
            e.attempts = n;
            e.last_error = Some(error.into());
            Ok(())
        }
        fn record_sent(
            &mut self,
            key: &str,
            n: u32,
            _: Timestamp,
            refused: Option<&str>,
        ) -> Result<(), StoreError> {
            let mut db = self.db()?;
            let e = db.notes.iter_mut().find(|e| e.notification.key == key).unwrap();
            e.attempts = n;
            e.delivery = Delivery::Sent;
            e.refused = refused.map(Into::into);
            Ok(())
        }
        fn record_dead(
            &mut self,
            key: &str,
            n: u32,
            error: &str,
            _: Timestamp,
        ) -> Result<(), StoreError> {
            let mut db = self.db()?;
            let e = db.notes.iter_mut().find(|e| e.notification.key == key).unwrap();
            e.attempts = n;
            e.delivery = Delivery::Dead;
            e.last_error = Some(error.into());
            Ok(())
        }
        fn requeue(&mut self, _: Option<i64>) -> Result<usize, StoreError> {
            unimplemented!("not used by the ledger")
        }
        fn claim(
            &mut self,
            _: &Holder,
            _: Duration,
            _: &dyn Fn(&Holder) -> bool,
        ) -> Result<Claim, StoreError> {
            self.db().map(|_| Claim::Granted)
        }
        fn heartbeat(&mut self, _: &Holder) -> Result<bool, StoreError> {
            self.db().map(|_| true)
        }
        fn release(&mut self, _: &Holder) -> Result<(), StoreError> {
            self.db().map(drop)
        }
        fn series(&mut self) -> Result<Vec<(String, String)>, StoreError> {
            unimplemented!("not used by the ledger")
        }
        fn silences(&mut self, _: Timestamp) -> Result<Vec<crate::store::Silence>, StoreError> {
            self.db().map(|_| Vec::new())
        }
        fn add_silence(
            &mut self,
            _: &crate::store::Silence,
            _: Timestamp,
        ) -> Result<i64, StoreError> {
            unimplemented!("not used by the ledger")
        }
        fn clear_silences(
            &mut self,
            _: &crate::store::Clear,
            _: Timestamp,
        ) -> Result<usize, StoreError> {
            unimplemented!("not used by the ledger")
        }
        fn record_latency(&mut self, rows: &[LatencyRow]) -> Result<(), StoreError> {
            let mut db = self.db()?;
            for row in rows {
                let same = |r: &LatencyRow| {
                    (&r.target, &r.region, r.span, r.start)
                        == (&row.target, &row.region, row.span, row.start)
                };
                db.latency.retain(|r| !same(r));
                db.latency.push(row.clone());
            }
            Ok(())
        }
        fn latency(
            &mut self,
            span: Span,
            pair: Option<(&str, &str)>,
            from: Timestamp,
            to: Timestamp,
        ) -> Result<Vec<LatencyRow>, StoreError> {
            let db = self.db()?;
            let within = |r: &&LatencyRow| {
                r.span == span
                    && r.start >= from
                    && r.start < to
                    && pair.is_none_or(|(t, g)| r.target == t && r.region == g)
            };
            Ok(db.latency.iter().filter(within).cloned().collect())
        }
        fn latency_pairs(
            &mut self,
            span: Span,
            from: Timestamp,
            to: Timestamp,
        ) -> Result<Vec<(String, String)>, StoreError> {
            let db = self.db()?;
            let mut pairs: Vec<(String, String)> = (db.latency.iter())
                .filter(|r| r.span == span && r.start >= from && r.start < to)
                .map(|r| (r.target.clone(), r.region.clone()))
                .collect();
            pairs.sort_unstable();
            pairs.dedup();
            Ok(pairs)
        }
        fn prune_latency(&mut self, span: Span, before: Timestamp) -> Result<usize, StoreError> {
            let mut db = self.db()?;
            let n = db.latency.len();
            db.latency.retain(|r| r.span != span || r.start >= before);
            Ok(n - db.latency.len())
        }
    }

    fn ledger(db: &Arc<Mutex<Db>>, now: Instant) -> Ledger {
        let opened = Arc::clone(db);
        let opener: Opener = Box::new(move |_| {
            if opened.lock().unwrap().down {
                Err(StoreError::Connect { url: "fake://".into(), source: "refused".into() })
            } else {
                Ok(Box::new(FakeStore(Arc::clone(&opened))))
            }
        });
        let store = opener("fake://db").ok();
        Ledger::new("fake://db", opener, store, BASE, now)
    }

    fn transition(key: &str, ms: i64, healthy: bool) -> Write {
        let state = NewState {
            key: key.into(),
            timestamp: Timestamp::from_millis(ms),
            healthy,
            target: "http://t/health".into(),
            region: "direct".into(),
            reason: (!healthy).then(|| "HTTP 503".to_string()),
            maintenance: None,
            held: false,
        };
        let notification = Notification {
            key: format!("{key}-mail"),
            target: state.target.clone(),
            region: state.region.clone(),
            recipients: "oncall@example.com".into(),
            subject: if healthy { "RECOVERED" } else { "OUTAGE" }.into(),
            text: "text".into(),
            html: "<p>html</p>".into(),
            created_at: Timestamp::from_millis(ms),
        };
        Write::Commit(Commit {
            state: Some(state),
            notifications: vec![notification],
            release: None,
        })
    }

    fn rows(db: &Arc<Mutex<Db>>) -> Vec<(i64, bool)> {
        db.lock().unwrap().states.iter().map(|(_, r)| (r.timestamp.millis(), r.healthy)).collect()
    }

    #[test]
    fn with_the_database_up_a_transition_and_its_email_are_written_at_once_together() {
        let db = Arc::new(Mutex::new(Db::default()));
        let t0 = Instant::now();
        let mut l = ledger(&db, t0);
        l.write(transition("a", 1000, false), t0);
        assert_eq!(l.backlog(), 0);
        assert_eq!(rows(&db), [(1000, false)]);
        assert_eq!(db.lock().unwrap().notes.len(), 1);
        let sent = Write::Sent {
            key: "a-mail".into(),
            attempts: 1,
            at: Timestamp::from_millis(2000),
            refused: Some("x@example.com: 550 no such user".into()),
        };
        l.write(sent, t0);
        let note = &db.lock().unwrap().notes[0];
        assert_eq!((note.delivery, note.attempts), (Delivery::Sent, 1));
        assert_eq!(note.refused.as_deref(), Some("x@example.com: 550 no such user"));
    }

    #[test]
    fn a_lost_reply_is_retried_and_writes_nothing_twice() {
        let db = Arc::new(Mutex::new(Db { lose_replies: 1, ..Db::default() }));
        let t0 = Instant::now();
        let mut l = ledger(&db, t0);
        l.write(transition("a", 1000, false), t0);
        assert!(!l.is_up(), "the lost reply looks like a database fault");
        assert_eq!(l.backlog(), 1, "so the write waits to be retried");
        l.maintain(t0 + BASE);
        assert_eq!(l.backlog(), 0);
        assert_eq!(rows(&db), [(1000, false)], "one row, not two");
        assert_eq!(db.lock().unwrap().notes.len(), 1, "one email, not two");
    }

    #[test]
    fn during_a_database_outage_writes_wait_and_replay_in_order_with_original_timestamps() {
        let db = Arc::new(Mutex::new(Db::default()));
        let t0 = Instant::now();
        let mut l = ledger(&db, t0);
        l.write(transition("a", 1000, true), t0);
        db.lock().unwrap().down = true;
        l.write(transition("b", 5000, false), t0);
        assert!(!l.is_up());
        l.write(transition("c", 9000, true), t0);
        assert_eq!(l.history("t", "direct", Timestamp::from_millis(0), t0), Err(Unavailable));
        l.maintain(t0);
        db.lock().unwrap().down = false;
        l.maintain(t0);
        assert!(!l.is_up(), "not retried before the backoff");
        l.maintain(t0 + BASE);
        assert!(l.is_up(), "retried after the backoff");
        assert_eq!(rows(&db), [(1000, true), (5000, false), (9000, true)]);
        assert_eq!(l.history("t", "direct", Timestamp::from_millis(0), t0).map(|r| r.len()), Ok(3));
    }

    #[test]
    fn disowned_site_rows_are_dropped_unwritten_and_notifications_never_are() {
        let db = Arc::new(Mutex::new(Db::default()));
        let t0 = Instant::now();
        let mut l = ledger(&db, t0);
        db.lock().unwrap().down = true;
        let site_row = |key: &str, ms: i64, target: &str| {
            let Write::Commit(mut commit) = transition(key, ms, false) else { unreachable!() };
            commit.notifications.clear();
            if let Some(row) = commit.state.as_mut() {
                row.target = target.into();
            }
            Write::Commit(commit)
        };
        l.write(site_row("a", 1000, "http://t/health"), t0);
        l.write(transition("b", 2000, false), t0);
        l.write(site_row("c", 3000, "http://u/health"), t0);
        l.write(site_row("d", 4000, "http://t/health"), t0);
        let pairs = [("http://t/health".to_string(), "direct".to_string())];
        assert_eq!(l.disown(&pairs), 2, "the two site rows of t");
        assert_eq!(l.backlog(), 2, "t's row with its email, and u's row, stay");
        assert_eq!(l.disown(&pairs), 0);
        db.lock().unwrap().down = false;
        l.maintain(t0 + BASE);
        assert_eq!(rows(&db), [(2000, false), (3000, false)]);
    }

    #[test]
    fn reads_wait_for_the_writes_queued_before_them() {
        let db = Arc::new(Mutex::new(Db { down: true, ..Db::default() }));
        let t0 = Instant::now();
        let mut l = ledger(&db, t0);
        l.write(transition("a", 1000, false), t0);
        db.lock().unwrap().down = false;
        let read = l.history("t", "direct", Timestamp::from_millis(0), t0 + BASE);
        assert_eq!(read.map(|r| r.len()), Ok(1), "the queued row is written, then read");
    }

    #[test]
    fn the_database_backoff_grows_while_it_stays_down() {
        let db = Arc::new(Mutex::new(Db { down: true, ..Db::default() }));
        let t0 = Instant::now();
        let mut l = ledger(&db, t0);
        l.write(transition("a", 1000, false), t0);
        let mut gaps = Vec::new();
        let mut now = t0;
        for _ in 0..4 {
            let next = l.next_maintenance(now).unwrap();
            gaps.push(next.duration_since(now).as_secs());
            now = next;
            l.maintain(now);
        }
        assert_eq!(gaps, [1, 2, 4, 8]);
    }

    fn minute(ms: i64) -> LatencyRow {
        let mut histogram = Histogram::default();
        histogram.add(Duration::from_millis(12));
        LatencyRow {
            target: "http://t/health".into(),
            region: "direct".into(),
            span: Span::Minute,
            start: Timestamp::from_millis(ms),
            histogram,
        }
    }

    #[test]
    fn latency_waits_for_the_database_bounded_and_never_pushes_out_a_transition() {
        let db = Arc::new(Mutex::new(Db::default()));
        let t0 = Instant::now();
        let mut ledger = ledger(&db, t0);
        db.lock().unwrap().down = true;
        ledger.write(transition("k1", 1, false), t0);
        for m in 0..(MAX_LATENCY_WRITES as i64 + 10) {
            ledger.write(Write::Latency(vec![minute(m * 60_000)]), t0);
        }
        assert_eq!(ledger.backlog(), 1 + MAX_LATENCY_WRITES, "latency bounded, the row kept");
        db.lock().unwrap().down = false;
        ledger.maintain(t0 + Duration::from_secs(120));
        assert_eq!(ledger.backlog(), 0);
        let db = db.lock().unwrap();
        assert_eq!(db.states.len(), 1, "the transition is written");
        assert_eq!(db.latency.len(), MAX_LATENCY_WRITES, "the newest minutes are written");
        assert_eq!(db.latency[0].start, Timestamp::from_millis(10 * 60_000), "the oldest dropped");
    }

    #[test]
    fn a_roll_up_makes_hours_of_the_minutes_and_running_it_twice_changes_nothing() {
        let db = Arc::new(Mutex::new(Db::default()));
        let t0 = Instant::now();
        let mut ledger = ledger(&db, t0);
        let hour = 3_600_000;
        ledger.write(Write::Latency((0..60).map(|m| minute(m * 60_000)).collect()), t0);
        let roll = Write::RollUp {
            from: Timestamp::from_millis(0),
            to: Timestamp::from_millis(hour),
            now: Timestamp::from_millis(hour),
        };
        ledger.write(roll.clone(), t0);
        ledger.write(roll, t0);
        let db = db.lock().unwrap();
        let hours: Vec<&LatencyRow> = db.latency.iter().filter(|r| r.span == Span::Hour).collect();
        assert_eq!(hours.len(), 1);
        assert_eq!(hours[0].histogram.probes(), 60);
    }
}
