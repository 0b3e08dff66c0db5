//! The monitor's durable memory: `state` rows and the notification outbox, written through to
//! the database and held in memory while the database is away.
//!
//! Why it exists: the database and the mail server both fail, and neither may cost a
//! notification. So every write goes through an in-memory *backlog*, applied in order; when the
//! database is unreachable the backlog simply waits (the outage is logged once, the recovery
//! once) and is replayed with the original timestamps when it returns. Every email becomes a
//! [`Letter`] in the in-memory *outbox* and a `notification` row; it leaves the outbox only when
//! the SMTP server has accepted it, and the row is marked sent only then. A restart loads the
//! unsent rows back, so a crash or a mail-server outage delays a notification but never loses
//! or repeats it (a crash in the instant between the server's acceptance and the mark can
//! repeat one; that is the one window left).
//!
//! The ledger does no waiting of its own and has one owner, the state thread
//! ([`crate::runtime::state`]): it asks the ledger what is due and when to wake, and hands due
//! letters to the courier thread. Probes never touch it, so a slow or reconnecting database
//! never delays a probe.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::duration::human;
use crate::notify::message::Email;
use crate::redact;
use crate::store::{self, Commit, NewState, Notification, StateRow, Store, StoreError};
use crate::timestamp::Timestamp;

/// The longest wait between two delivery attempts of one letter.
pub const MAX_LETTER_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// The longest wait between two attempts to reach the database again.
pub const MAX_DATABASE_BACKOFF: Duration = Duration::from_secs(60);

/// `base × 2^(attempts − 1)`, capped at `cap`: the wait after the `attempts`-th failure.
pub fn backoff(base: Duration, attempts: u32, cap: Duration) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(20);
    base.saturating_mul(factor).min(cap)
}

/// Opens a store from its URL; [`store::open`] in production, a fake in unit tests.
pub type Opener = Box<dyn Fn(&str) -> Result<Box<dyn Store>, StoreError> + Send>;

/// An email waiting for the SMTP server's acceptance.
#[derive(Clone, Debug)]
pub struct Letter {
    /// This process's name for it (database ids may not exist yet).
    pub key: u64,
    pub content: Notification,
    /// Failed delivery attempts so far.
    pub attempts: u32,
    /// Not before this instant.
    pub due: Instant,
}

impl Letter {
    pub fn email(&self) -> Email {
        Email {
            subject: self.content.subject.clone(),
            text: self.content.text.clone(),
            html: self.content.html.clone(),
        }
    }
}

/// A `state` row the ledger has accepted: written already, or queued until the database returns.
#[derive(Clone, Debug)]
pub enum Recorded {
    Written(StateRow),
    Queued { key: u64 },
}

/// The database cannot answer right now (down, or writes still queued ahead of the read);
/// the caller falls back to what it remembers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the database is unavailable")]
pub struct Unavailable;

/// One pending database write, applied in order.
#[derive(Clone, Debug)]
enum Write {
    State { key: u64, row: NewState },
    Letter { key: u64, content: Notification },
    Sent { row_key: String, attempts: u32, at: Timestamp },
}

/// The database is unreachable: since when, why, and when to try again.
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
    /// The last `state` row the backlog wrote, so [`Ledger::record`] can return its id.
    last_state: Option<(u64, i64)>,
    outbox: VecDeque<Letter>,
    next_key: u64,
    retry_base: Duration,
}

impl Ledger {
    /// Opens the database at `url`; if it is unreachable the ledger starts in the "database
    /// down" state and keeps trying. Unsent notifications of earlier runs join the outbox.
    /// Only a URL that can never work ([`StoreError::Url`]) is an error.
    pub fn open(
        url: &str,
        opener: Opener,
        retry_base: Duration,
        now: Instant,
    ) -> Result<Ledger, StoreError> {
        let mut ledger = Ledger {
            url: url.to_owned(),
            opener,
            store: None,
            backlog: VecDeque::new(),
            unreachable: None,
            last_state: None,
            outbox: VecDeque::new(),
            next_key: 0,
            retry_base,
        };
        match (ledger.opener)(url) {
            Ok(store) => {
                ledger.adopt(store, now);
            }
            Err(e @ StoreError::Url { .. }) => return Err(e),
            Err(e) => ledger.fail(&e, now),
        }
        Ok(ledger)
    }

    /// Whether the database is currently believed reachable.
    pub fn is_up(&self) -> bool {
        self.unreachable.is_none()
    }

    fn key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }

    /// Makes sure a store is open.
    fn connect(&mut self, now: Instant) -> bool {
        if self.store.is_some() {
            return true;
        }
        match (self.opener)(&self.url) {
            Ok(store) => self.adopt(store, now),
            Err(e) => {
                self.fail(&e, now);
                false
            }
        }
    }

    /// Takes a freshly opened store into use, first loading earlier runs' unsent notifications.
    fn adopt(&mut self, mut store: Box<dyn Store>, now: Instant) -> bool {
        let unsent = match store.pending() {
            Ok(unsent) => unsent,
            Err(e) => {
                self.fail(&e, now);
                return false;
            }
        };
        if !unsent.is_empty() {
            log::warn!("resuming {} undelivered notification(s) from the outbox", unsent.len());
        }
        for (i, n) in unsent.into_iter().enumerate() {
            let key = self.key();
            // Older than anything this run created: they go first, in order.
            self.outbox
                .insert(i, Letter { key, content: n.notification, attempts: n.attempts, due: now });
        }
        self.store = Some(store);
        true
    }

    /// Notes a database fault: logged once per outage, then retried with backoff.
    fn fail(&mut self, error: &StoreError, now: Instant) {
        match &mut self.unreachable {
            None => {
                log::error!(
                    "DATABASE UNAVAILABLE db={} error=\"{error}\"; probing and notifying go on, \
                     writes are kept in memory and replayed when it returns",
                    redact::url(&self.url)
                );
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

    /// Applies the backlog in order. Stops at the first failure (the rest waits, in order).
    fn flush(&mut self, now: Instant) -> bool {
        if !self.connect(now) {
            return false;
        }
        let written = self.backlog.len();
        while let Some(write) = self.backlog.front() {
            let Some(store) = self.store.as_mut() else { return false };
            let result = apply(store.as_mut(), write);
            match result {
                Ok(state_id) => {
                    if let (Some(id), Write::State { key, .. }) = (state_id, write) {
                        self.last_state = Some((*key, id));
                    }
                    self.backlog.pop_front();
                }
                Err(e) => {
                    self.fail(&e, now);
                    return false;
                }
            }
        }
        if let Some(u) = self.unreachable.take() {
            log::info!(
                "DATABASE RECOVERED db={} after={} replayed_writes={written}",
                redact::url(&self.url),
                human(now.saturating_duration_since(u.since))
            );
        }
        true
    }

    /// Tries the database again if it is down and the backoff has passed.
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

    /// Runs a read on the store if it is up; a failure marks it down and gives `None`.
    fn read<T>(
        &mut self,
        now: Instant,
        op: impl FnOnce(&mut dyn Store) -> Result<T, StoreError>,
    ) -> Option<T> {
        if self.unreachable.is_some() || !self.backlog.is_empty() {
            return None;
        }
        let store = self.store.as_mut()?;
        match op(store.as_mut()) {
            Ok(value) => Some(value),
            Err(e) => {
                self.fail(&e, now);
                None
            }
        }
    }

    /// The last recorded row of a target/region; `None` if there is none or the database is down
    /// (`Err(Unavailable)` then, so the caller can say so).
    pub fn last(
        &mut self,
        target: &str,
        region: &str,
        now: Instant,
    ) -> Result<Option<StateRow>, Unavailable> {
        self.read(now, |s| s.last(target, region)).ok_or(Unavailable)
    }

    /// Appends a `state` row; written at once unless the database is down.
    pub fn record(&mut self, row: NewState, now: Instant) -> Recorded {
        let key = self.key();
        self.backlog.push_back(Write::State { key, row: row.clone() });
        if self.unreachable.is_none() && self.flush(now) {
            if let Some((_, id)) = self.last_state.take().filter(|(k, _)| *k == key) {
                return Recorded::Written(StateRow {
                    id,
                    timestamp: row.timestamp,
                    healthy: row.healthy,
                    target: row.target,
                    region: row.region,
                    reason: row.reason.map(|r| store::clip_reason(&r).to_owned()),
                });
            }
        }
        Recorded::Queued { key }
    }

    /// The row before `row`, for the length of the period that ended. `Err(())` when the
    /// database cannot say.
    pub fn previous(
        &mut self,
        row: &StateRow,
        now: Instant,
    ) -> Result<Option<StateRow>, Unavailable> {
        self.read(now, |s| s.previous(row)).ok_or(Unavailable)
    }

    /// The rows since `from` (with the one before), for the history block; empty when the
    /// database cannot say.
    pub fn since(
        &mut self,
        target: &str,
        region: &str,
        from: Timestamp,
        now: Instant,
    ) -> Vec<StateRow> {
        self.read(now, |s| s.since(target, region, from)).unwrap_or_default()
    }

    /// Puts a notification in the outbox (and its row in the backlog); the courier delivers it.
    /// `recorded` is the transition it announces (none for reminders and blind regions).
    pub fn post(
        &mut self,
        _recorded: Option<&Recorded>,
        content: Notification,
        now: Instant,
    ) -> u64 {
        let key = self.key();
        self.backlog.push_back(Write::Letter { key, content: content.clone() });
        self.outbox.push_back(Letter { key, content, attempts: 0, due: now });
        if self.unreachable.is_none() {
            self.flush(now);
        }
        key
    }

    /// The oldest undelivered letter if it is due at `now`. Letters go out strictly in order,
    /// so an outage email is never overtaken by its recovery.
    pub fn due_letter(&self, now: Instant) -> Option<Letter> {
        self.outbox.front().filter(|l| l.due <= now).cloned()
    }

    /// The SMTP server accepted letter `key` at `at`.
    pub fn delivered(&mut self, key: u64, at: Timestamp, now: Instant) {
        let Some(pos) = self.outbox.iter().position(|l| l.key == key) else { return };
        let letter = self.outbox.remove(pos).expect("position is in range");
        self.backlog.push_back(Write::Sent {
            row_key: letter.content.key,
            attempts: letter.attempts + 1,
            at,
        });
        if self.unreachable.is_none() {
            self.flush(now);
        }
    }

    /// Delivery of letter `key` failed: count it and schedule the retry.
    pub fn failed(&mut self, key: u64, error: &str, now: Instant) -> Option<Duration> {
        let letter = self.outbox.iter_mut().find(|l| l.key == key)?;
        letter.attempts += 1;
        let wait = backoff(self.retry_base, letter.attempts, MAX_LETTER_BACKOFF);
        letter.due = now + wait;
        let attempts = letter.attempts;
        let row_key = letter.content.key.clone();
        // Best effort: the count is informative; losing it during a database outage is harmless.
        self.read(now, |s| s.record_attempt(&row_key, attempts, error));
        Some(wait)
    }

    /// When the head letter is due (the next delivery to start), if there is one.
    pub fn next_letter_due(&self) -> Option<Instant> {
        self.outbox.front().map(|l| l.due)
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

    /// The rows of a target/region since `from` (with the one before), oldest first; `Err`
    /// when the database cannot say.
    pub fn history(
        &mut self,
        target: &str,
        region: &str,
        from: Timestamp,
        now: Instant,
    ) -> Result<Vec<StateRow>, Unavailable> {
        self.read(now, |s| s.since(target, region, from)).ok_or(Unavailable)
    }

    /// Undelivered letters, oldest first.
    pub fn outbox(&self) -> impl Iterator<Item = &Letter> {
        self.outbox.iter()
    }

    /// At shutdown: one last write attempt, then everything still unwritten or undelivered is
    /// logged — in full where the database does not hold it — so nothing disappears silently.
    pub fn report_leftovers(&mut self, now: Instant) {
        if !self.backlog.is_empty() {
            if let Some(u) = self.unreachable.as_mut() {
                u.next_try = now;
            }
            self.maintain(now);
        }
        let unsaved: std::collections::HashSet<u64> = self
            .backlog
            .iter()
            .filter_map(|w| match w {
                Write::Letter { key, .. } => Some(*key),
                _ => None,
            })
            .collect();
        for letter in &self.outbox {
            let c = &letter.content;
            if unsaved.contains(&letter.key) {
                log::error!(
                    "notification NOT delivered and NOT saved (database unavailable) to={} \
                     subject={:?} created_at={}\n{}",
                    c.recipients,
                    c.subject,
                    c.created_at,
                    c.text.trim_end()
                );
            } else {
                log::warn!(
                    "notification not delivered yet, kept in the outbox for the next start \
                     subject={:?} attempts={}",
                    c.subject,
                    letter.attempts
                );
            }
        }
        let undelivered: std::collections::HashSet<u64> =
            self.outbox.iter().map(|l| l.key).collect();
        for write in &self.backlog {
            if let Write::Letter { key, content, .. } = write {
                if !undelivered.contains(key) {
                    log::warn!(
                        "notification delivered but NOT recorded (database unavailable) \
                         subject={:?} created_at={}",
                        content.subject,
                        content.created_at
                    );
                }
            }
            if let Write::State { row, .. } = write {
                log::error!(
                    "state row NOT written (database unavailable) target={} region={} healthy={} \
                     timestamp={} reason={:?}",
                    row.target,
                    row.region,
                    row.healthy,
                    row.timestamp,
                    row.reason.as_deref().unwrap_or("")
                );
            }
        }
    }
}

/// Applies one backlog write; returns the id of a written `state` row.
fn apply(store: &mut dyn Store, write: &Write) -> Result<Option<i64>, StoreError> {
    match write {
        Write::State { row, .. } => {
            store.commit(&Commit { state: Some(row.clone()), notifications: Vec::new() })
        }
        Write::Letter { content, .. } => {
            store.commit(&Commit { state: None, notifications: vec![content.clone()] })?;
            Ok(None)
        }
        Write::Sent { row_key, attempts, at } => {
            store.record_sent(row_key, *attempts, *at, None)?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Claim, Delivery, Holder, OutboxEntry};
    use std::sync::{Arc, Mutex};

    const BASE: Duration = Duration::from_secs(1);

    /// An in-memory database that a test can take down and bring back.
    #[derive(Default)]
    struct Db {
        down: bool,
        states: Vec<StateRow>,
        notes: Vec<(OutboxEntry, Option<Timestamp>)>,
    }

    struct FakeStore(Arc<Mutex<Db>>);

    fn down_error() -> StoreError {
        StoreError::Query("connection refused".into())
    }

    impl FakeStore {
        fn db(&self) -> Result<std::sync::MutexGuard<'_, Db>, StoreError> {
            let db = self.0.lock().unwrap();
            if db.down {
                Err(down_error())
            } else {
                Ok(db)
            }
        }
    }

    impl Store for FakeStore {
        fn last(&mut self, target: &str, region: &str) -> Result<Option<StateRow>, StoreError> {
            let db = self.db()?;
            Ok(db.states.iter().rev().find(|r| r.target == target && r.region == region).cloned())
        }
        fn commit(&mut self, commit: &Commit) -> Result<Option<i64>, StoreError> {
            let mut db = self.db()?;
            let state_id = commit.state.as_ref().map(|row| {
                let id = db.states.len() as i64 + 1;
                db.states.push(StateRow {
                    id,
                    timestamp: row.timestamp,
                    healthy: row.healthy,
                    target: row.target.clone(),
                    region: row.region.clone(),
                    reason: row.reason.clone(),
                });
                id
            });
            for n in &commit.notifications {
                let id = db.notes.len() as i64 + 1;
                let entry = OutboxEntry {
                    id,
                    notification: n.clone(),
                    delivery: Delivery::Pending,
                    attempts: 0,
                    last_error: None,
                    refused: None,
                };
                db.notes.push((entry, None));
            }
            Ok(state_id)
        }
        fn previous(&mut self, row: &StateRow) -> Result<Option<StateRow>, StoreError> {
            let db = self.db()?;
            Ok(db.states.iter().rev().find(|r| r.id < row.id && r.target == row.target).cloned())
        }
        fn since(&mut self, _: &str, _: &str, _: Timestamp) -> Result<Vec<StateRow>, StoreError> {
            Ok(self.db()?.states.clone())
        }
        fn pending(&mut self) -> Result<Vec<OutboxEntry>, StoreError> {
            let db = self.db()?;
            Ok(db.notes.iter().filter(|(_, sent)| sent.is_none()).map(|(n, _)| n.clone()).collect())
        }
        fn dead(&mut self) -> Result<Vec<OutboxEntry>, StoreError> {
            Ok(Vec::new())
        }
        fn record_attempt(
            &mut self,
            key: &str,
            attempts: u32,
            error: &str,
        ) -> Result<(), StoreError> {
            let mut db = self.db()?;
            if let Some((note, _)) = db.notes.iter_mut().find(|(n, _)| n.notification.key == key) {
                note.attempts = attempts;
                note.last_error = Some(error.into());
            }
            Ok(())
        }
        fn record_sent(
            &mut self,
            key: &str,
            attempts: u32,
            at: Timestamp,
            _: Option<&str>,
        ) -> Result<(), StoreError> {
            let mut db = self.db()?;
            if let Some((note, sent)) = db.notes.iter_mut().find(|(n, _)| n.notification.key == key)
            {
                note.attempts = attempts;
                *sent = Some(at);
            }
            Ok(())
        }
        fn record_dead(
            &mut self,
            _: &str,
            _: u32,
            _: &str,
            _: Timestamp,
        ) -> Result<(), StoreError> {
            Ok(())
        }
        fn requeue(&mut self, _: Option<i64>) -> Result<usize, StoreError> {
            Ok(0)
        }
        fn claim(
            &mut self,
            _: &Holder,
            _: Duration,
            _: &dyn Fn(&Holder) -> bool,
        ) -> Result<Claim, StoreError> {
            Ok(Claim::Granted)
        }
        fn heartbeat(&mut self, _: &Holder) -> Result<bool, StoreError> {
            Ok(true)
        }
        fn release(&mut self, _: &Holder) -> Result<(), StoreError> {
            Ok(())
        }
        fn series(&mut self) -> Result<Vec<(String, String)>, StoreError> {
            Ok(Vec::new())
        }
    }

    fn ledger(db: &Arc<Mutex<Db>>, now: Instant) -> Ledger {
        let db = Arc::clone(db);
        let opener: Opener = Box::new(move |_| {
            if db.lock().unwrap().down {
                Err(StoreError::Connect { url: "fake://".into(), source: "refused".into() })
            } else {
                Ok(Box::new(FakeStore(Arc::clone(&db))))
            }
        });
        Ledger::open("fake://db", opener, BASE, now).expect("a reachable or unreachable db opens")
    }

    fn row(ms: i64, healthy: bool) -> NewState {
        NewState {
            key: store::new_key(),
            timestamp: Timestamp::from_millis(ms),
            healthy,
            target: "http://t/health".into(),
            region: "direct".into(),
            reason: (!healthy).then(|| "HTTP 503".to_string()),
        }
    }

    fn letter(subject: &str) -> Notification {
        Notification {
            key: store::new_key(),
            target: "http://t/health".into(),
            region: "direct".into(),
            recipients: "oncall@example.com".into(),
            subject: subject.into(),
            text: "text".into(),
            html: "<p>html</p>".into(),
            created_at: Timestamp::from_millis(1),
        }
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let cap = Duration::from_secs(300);
        let waits: Vec<u64> =
            (1..=10).map(|n| backoff(Duration::from_secs(5), n, cap).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
        assert_eq!(backoff(Duration::from_secs(5), u32::MAX, cap), cap, "no overflow");
    }

    #[test]
    fn with_the_database_up_rows_and_letters_are_written_at_once() {
        let db = Arc::new(Mutex::new(Db::default()));
        let t0 = Instant::now();
        let mut l = ledger(&db, t0);
        let recorded = l.record(row(1000, false), t0);
        let Recorded::Written(written) = &recorded else { panic!("written at once") };
        assert_eq!(written.id, 1);
        let key = l.post(Some(&recorded), letter("OUTAGE"), t0);
        assert_eq!(l.due_letter(t0).map(|l| l.key), Some(key));
        l.delivered(key, Timestamp::from_millis(2000), t0);
        assert!(l.due_letter(t0).is_none());
        let db = db.lock().unwrap();
        assert_eq!(db.notes[0].1, Some(Timestamp::from_millis(2000)), "marked sent");
        assert_eq!(db.notes[0].0.attempts, 1);
    }

    #[test]
    fn during_a_database_outage_writes_wait_and_replay_in_order_with_original_timestamps() {
        let db = Arc::new(Mutex::new(Db::default()));
        let t0 = Instant::now();
        let mut l = ledger(&db, t0);
        l.record(row(1000, true), t0);

        db.lock().unwrap().down = true;
        let outage = l.record(row(5000, false), t0);
        assert!(matches!(outage, Recorded::Queued { .. }), "queued while down");
        assert!(!l.is_up());
        let k1 = l.post(Some(&outage), letter("OUTAGE"), t0);
        assert_eq!(l.due_letter(t0).map(|l| l.key), Some(k1), "delivery does not wait for the db");
        l.delivered(k1, Timestamp::from_millis(5100), t0);
        let recovery = l.record(row(9000, true), t0);
        let k2 = l.post(Some(&recovery), letter("RECOVERED"), t0);
        assert_eq!(
            l.previous(&StateRow { id: 1, ..written(1000) }, t0),
            Err(Unavailable),
            "reads fail soft"
        );

        // Retries wait for the backoff, then succeed once the database is back.
        assert_eq!(l.next_letter_due(), Some(t0), "the recovery letter is due now");
        let wake = t0 + BASE;
        l.maintain(t0);
        assert!(!l.is_up(), "not retried before the backoff");
        db.lock().unwrap().down = false;
        l.maintain(wake);
        assert!(l.is_up(), "retried after the backoff");

        let db = db.lock().unwrap();
        let states: Vec<_> =
            db.states.iter().map(|r| (r.id, r.timestamp.millis(), r.healthy)).collect();
        assert_eq!(states, [(1, 1000, true), (2, 5000, false), (3, 9000, true)]);
        let notes: Vec<_> = db
            .notes
            .iter()
            .map(|(n, sent)| (n.notification.subject.as_str(), sent.is_some()))
            .collect();
        assert_eq!(notes, [("OUTAGE", true), ("RECOVERED", false)]);
        assert_eq!(l.due_letter(wake).map(|l| l.key), Some(k2));
    }

    fn written(ms: i64) -> StateRow {
        StateRow {
            id: 0,
            timestamp: Timestamp::from_millis(ms),
            healthy: true,
            target: "http://t/health".into(),
            region: "direct".into(),
            reason: None,
        }
    }

    #[test]
    fn the_database_backoff_grows_while_it_stays_down() {
        let db = Arc::new(Mutex::new(Db { down: true, ..Db::default() }));
        let t0 = Instant::now();
        let mut l = ledger(&db, t0);
        l.record(row(1000, false), t0);
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

    #[test]
    fn letters_go_out_in_order_and_a_failed_head_holds_the_rest() {
        let db = Arc::new(Mutex::new(Db::default()));
        let t0 = Instant::now();
        let mut l = ledger(&db, t0);
        let r1 = l.record(row(1000, false), t0);
        let k1 = l.post(Some(&r1), letter("OUTAGE"), t0);
        let r2 = l.record(row(2000, true), t0);
        let k2 = l.post(Some(&r2), letter("RECOVERED"), t0);

        assert_eq!(l.failed(k1, "451 try later", t0), Some(BASE));
        assert!(l.due_letter(t0).is_none(), "the recovery does not overtake the failed outage");
        assert_eq!(l.next_letter_due(), Some(t0 + BASE));
        assert_eq!(l.failed(k1, "451 try later", t0 + BASE), Some(2 * BASE), "backoff doubles");
        assert_eq!(db.lock().unwrap().notes[0].0.attempts, 2, "attempts are recorded");
        let t3 = t0 + 3 * BASE;
        assert_eq!(l.due_letter(t3).map(|l| l.key), Some(k1));
        l.delivered(k1, Timestamp::from_millis(3000), t3);
        assert_eq!(l.due_letter(t3).map(|l| l.key), Some(k2));
        assert_eq!(db.lock().unwrap().notes[0].0.attempts, 3, "two failures and the success");
    }

    #[test]
    fn a_restart_resumes_the_unsent_letters_first() {
        let db = Arc::new(Mutex::new(Db::default()));
        let t0 = Instant::now();
        {
            let mut first = ledger(&db, t0);
            let r = first.record(row(1000, false), t0);
            first.post(Some(&r), letter("OUTAGE from the first run"), t0);
        } // crash: never delivered
        let mut second = ledger(&db, t0);
        let r = second.record(row(2000, true), t0);
        second.post(Some(&r), letter("RECOVERED"), t0);
        let head = second.due_letter(t0).unwrap();
        assert_eq!(head.content.subject, "OUTAGE from the first run");
        second.delivered(head.key, Timestamp::from_millis(2500), t0);
        assert_eq!(second.due_letter(t0).unwrap().content.subject, "RECOVERED");
        let db = db.lock().unwrap();
        assert_eq!(db.notes.len(), 2, "the resumed letter is not written twice");
        assert!(db.notes[0].1.is_some(), "and it is marked sent in place");
    }

    #[test]
    fn an_unreachable_database_at_start_is_survived() {
        let db = Arc::new(Mutex::new(Db { down: true, ..Db::default() }));
        let t0 = Instant::now();
        let mut l = ledger(&db, t0);
        assert!(!l.is_up());
        assert_eq!(l.last("http://t/health", "direct", t0), Err(Unavailable));
        let r = l.record(row(1000, false), t0);
        l.post(Some(&r), letter("OUTAGE"), t0);
        db.lock().unwrap().down = false;
        l.maintain(t0);
        assert!(!l.is_up(), "no retry before the backoff");
        l.maintain(t0 + BASE);
        assert!(l.is_up());
        assert_eq!(db.lock().unwrap().states.len(), 1);
        assert_eq!(
            db.lock().unwrap().notes.len(),
            1,
            "the letter is saved once, not resumed twice"
        );
        assert_eq!(l.outbox().count(), 1);
    }
}
