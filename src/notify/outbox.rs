//! The outbox's decisions: which notification goes out next, and what a failure means.
//!
//! Pure (no I/O, no clock of its own), owned by the state thread, table-tested below.
//!
//! Why queues: one global line retried in order let a single refused email (a 550, a mistyped
//! recipient) block every later notification of every target, forever. So notifications form one
//! queue per *target and recipient set* — the unit whose order matters, since an outage email
//! must never be overtaken by its own recovery — and the courier takes the head of whichever
//! queue is due first. A transient failure (mail server down, 4xx, timeout) retries the same
//! notification with exponential backoff, forever: a long mail outage delays but never loses.
//! A permanent refusal (5xx) is retried [`MAX_REFUSALS`] times in all and then the
//! notification is *dead*: logged as an error with the server's answer, counted, kept in the
//! database for `api-monitor outbox`, and out of the way of the queue behind it.

use std::time::{Duration, Instant};

use crate::store::{Notification, OutboxEntry};

/// The longest wait between two delivery attempts of one notification.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// Permanent refusals (5xx) a notification gets before it is dead: a few, so a mail server's
/// brief misconfiguration does not kill everything at once, and bounded, so a truly refused
/// email stops being retried.
pub const MAX_REFUSALS: u32 = 3;

/// `base × 2^(attempts − 1)`, capped at `cap`: the wait after the `attempts`-th failure.
pub fn backoff(base: Duration, attempts: u32, cap: Duration) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(20);
    base.saturating_mul(factor).min(cap)
}

/// A notification waiting for the SMTP server's acceptance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub notification: Notification,
    /// Failed delivery attempts so far (all kinds).
    pub attempts: u32,
    /// Of those, permanent refusals.
    pub refusals: u32,
    /// Not before this instant.
    pub due: Instant,
    /// Whether the database has it (or cannot take it now): only then may it go out, so a
    /// crash can never leave an email delivered whose transition and notification were never
    /// written (the restart would detect the transition again and mail it twice).
    pub written: bool,
}

/// What a failed attempt leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again after this long.
    Retry(Duration),
    /// Refused for good: out of the outbox.
    Dead,
}

/// The notifications not yet accepted by the SMTP server, oldest first.
#[derive(Debug, Default)]
pub struct Outbox {
    entries: Vec<Entry>,
}

/// Who carries a notification: the mail courier, or the channels' courier (webhook, Slack,
/// PagerDuty). Each carries one notification at a time, so a receiver that hangs for its whole
/// deadline holds up only its own lane, never an email.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Mail = 0,
    Channels = 1,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Mail, Lane::Channels];

    /// The lane of `n`: a notification addressed `channel:NAME` is the channels'.
    pub fn of(n: &Notification) -> Lane {
        if crate::notify::channel::named(&n.recipients).is_some() {
            Lane::Channels
        } else {
            Lane::Mail
        }
    }
}

/// The queue a notification belongs to.
fn queue(n: &Notification) -> (&str, &str) {
    (&n.target, &n.recipients)
}

impl Outbox {
    /// Adds a new notification, due at once but held until [`Outbox::written`].
    pub fn push(&mut self, notification: Notification, now: Instant) {
        let entry = Entry { notification, attempts: 0, refusals: 0, due: now, written: false };
        self.entries.push(entry);
    }

    /// The database has these notifications (or is away and they go out from memory).
    pub fn written(&mut self, keys: &[String]) {
        for entry in &mut self.entries {
            if keys.contains(&entry.notification.key) {
                entry.written = true;
            }
        }
    }

    /// Adds earlier runs' pending notifications ahead of anything newer, skipping any already
    /// here (same key; those are written, then).
    pub fn resume(&mut self, pending: Vec<OutboxEntry>, now: Instant) {
        // Those already here are in the database, then.
        let keys: Vec<String> = pending.iter().map(|p| p.notification.key.clone()).collect();
        self.written(&keys);
        let old: Vec<Entry> = pending
            .into_iter()
            .filter(|p| !self.contains(&p.notification.key))
            .map(|p| Entry {
                notification: p.notification,
                attempts: p.attempts,
                refusals: 0,
                due: now,
                written: true,
            })
            .collect();
        self.entries.splice(0..0, old);
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.notification.key == key)
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.notification.key == key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// The head of every queue: the oldest notification of each target and recipient set.
    fn heads(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().enumerate().filter_map(|(i, e)| {
            let q = queue(&e.notification);
            (!self.entries[..i].iter().any(|older| queue(&older.notification) == q)).then_some(e)
        })
    }

    /// The notification to deliver next at `now`: among the queue heads that are due, the one
    /// due first (the oldest on a tie). A notification never overtakes an older one of its own
    /// queue.
    pub fn next_due(&self, now: Instant) -> Option<&Entry> {
        self.heads().filter(|e| e.written && e.due <= now).min_by_key(|e| e.due)
    }

    /// [`Outbox::next_due`] among the notifications of `lane`.
    pub fn next_due_in(&self, now: Instant, lane: Lane) -> Option<&Entry> {
        (self.heads())
            .filter(|e| e.written && e.due <= now && Lane::of(&e.notification) == lane)
            .min_by_key(|e| e.due)
    }

    /// [`Outbox::next_wake`] among the notifications of `lane`.
    pub fn next_wake_in(&self, lane: Lane) -> Option<Instant> {
        (self.heads())
            .filter(|e| e.written && Lane::of(&e.notification) == lane)
            .map(|e| e.due)
            .min()
    }

    /// When the next queue head falls due, if any notification waits (not counting heads
    /// still being written: their turn comes with [`Outbox::written`]).
    pub fn next_wake(&self) -> Option<Instant> {
        self.heads().filter(|e| e.written).map(|e| e.due).min()
    }

    /// The SMTP server accepted `key`: out of the outbox.
    pub fn delivered(&mut self, key: &str) -> Option<Entry> {
        let at = self.entries.iter().position(|e| e.notification.key == key)?;
        Some(self.entries.remove(at))
    }

    /// Delivery of `key` failed (`permanent`: the server refused it with a 5xx). Counts it and
    /// decides: retry after a backoff from `base`, or dead (removed, and returned with it).
    pub fn failed(
        &mut self,
        key: &str,
        permanent: bool,
        base: Duration,
        now: Instant,
    ) -> Option<(AfterFailure, Entry)> {
        let at = self.entries.iter().position(|e| e.notification.key == key)?;
        let entry = &mut self.entries[at];
        entry.attempts += 1;
        if permanent {
            entry.refusals += 1;
            if entry.refusals >= MAX_REFUSALS {
                return Some((AfterFailure::Dead, self.entries.remove(at)));
            }
        }
        let wait = backoff(base, entry.attempts, MAX_BACKOFF);
        entry.due = now + wait;
        Some((AfterFailure::Retry(wait), entry.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::Timestamp;

    const BASE: Duration = Duration::from_secs(1);

    fn note(key: &str, target: &str, to: &str) -> Notification {
        Notification {
            key: key.into(),
            target: target.into(),
            region: "direct".into(),
            recipients: to.into(),
            subject: format!("about {target}"),
            text: String::new(),
            html: String::new(),
            created_at: Timestamp::from_millis(0),
        }
    }

    fn keys(outbox: &Outbox) -> Vec<&str> {
        outbox.iter().map(|e| e.notification.key.as_str()).collect()
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let cap = Duration::from_secs(10);
        let waits: Vec<u64> = (1..=6).map(|n| backoff(BASE, n, cap).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(BASE, 500, MAX_BACKOFF), MAX_BACKOFF, "no overflow");
    }

    #[test]
    fn the_next_notification_is_the_due_head_of_a_queue() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // (notifications in creation order, failures to apply, now offset, expected next key)
        type Case = (
            &'static str,
            &'static [(&'static str, &'static str, &'static str)],
            &'static [(&'static str, bool)],
            u64,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            ("empty", &[], &[], 0, None),
            ("oldest first", &[("1", "a", "x"), ("2", "b", "x")], &[], 0, Some("1")),
            (
                "a failing head waits; another target's queue goes on",
                &[("1", "a", "x"), ("2", "a", "x"), ("3", "b", "x")],
                &[("1", false)],
                0,
                Some("3"),
            ),
            (
                "the recovery never overtakes its outage",
                &[("1", "a", "x"), ("2", "a", "x")],
                &[("1", false)],
                0,
                None,
            ),
            (
                "after the backoff the head goes",
                &[("1", "a", "x"), ("2", "a", "x")],
                &[("1", false)],
                1,
                Some("1"),
            ),
            (
                "same target, other recipients: another queue",
                &[("1", "a", "x"), ("2", "a", "y")],
                &[("1", true)],
                0,
                Some("2"),
            ),
        ];
        for (name, notes, failures, at, expected) in cases {
            let mut outbox = Outbox::default();
            for (key, target, to) in *notes {
                outbox.push(note(key, target, to), t0);
                outbox.written(&[key.to_string()]);
            }
            for (key, permanent) in *failures {
                outbox.failed(key, *permanent, BASE, t0);
            }
            let next = outbox.next_due(t0 + s(*at)).map(|e| e.notification.key.as_str());
            assert_eq!(next, *expected, "{name}");
        }
    }

    #[test]
    fn transient_failures_retry_forever_permanent_ones_die_after_max_refusals() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        outbox.push(note("1", "a", "x"), t0);
        for n in 1..=30 {
            let (after, entry) = outbox.failed("1", false, BASE, t0).expect("still queued");
            assert_eq!(after, AfterFailure::Retry(backoff(BASE, n, MAX_BACKOFF)));
            assert_eq!(entry.attempts, n);
        }
        for _ in 1..MAX_REFUSALS {
            let (after, _) = outbox.failed("1", true, BASE, t0).expect("still queued");
            assert!(matches!(after, AfterFailure::Retry(_)), "refused, retried");
        }
        let (after, dead) = outbox.failed("1", true, BASE, t0).expect("last refusal");
        assert_eq!(after, AfterFailure::Dead);
        assert_eq!((dead.attempts, dead.refusals), (30 + MAX_REFUSALS, MAX_REFUSALS));
        assert!(outbox.is_empty(), "a dead notification leaves the outbox");
        assert_eq!(outbox.failed("1", true, BASE, t0), None, "unknown key: nothing");
    }

    #[test]
    fn nothing_goes_out_before_the_database_has_it_and_it_holds_its_queue() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        outbox.push(note("1", "a", "x"), t0);
        outbox.push(note("2", "a", "x"), t0);
        outbox.written(&["2".to_string()]);
        assert_eq!(outbox.next_due(t0), None, "1 is not written yet, and 2 may not overtake it");
        assert_eq!(outbox.next_wake(), None, "nothing to wake for until it is");
        outbox.written(&["1".to_string()]);
        assert_eq!(outbox.next_due(t0).map(|e| e.notification.key.as_str()), Some("1"));
    }

    #[test]
    fn a_dead_head_unblocks_its_queue() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        outbox.push(note("1", "a", "x"), t0);
        outbox.push(note("2", "a", "x"), t0);
        outbox.written(&["1".to_string(), "2".to_string()]);
        for _ in 0..MAX_REFUSALS {
            outbox.failed("1", true, BASE, t0);
        }
        assert_eq!(outbox.next_due(t0).map(|e| e.notification.key.as_str()), Some("2"));
    }

    #[test]
    fn each_lane_has_its_own_due_head_and_a_failing_channel_holds_up_no_email() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        outbox.push(note("mail", "a", "ops@example.com"), t0);
        outbox.push(note("hook", "a", "channel:hook"), t0);
        outbox.push(note("hook2", "a", "channel:hook"), t0);
        outbox.written(&["mail".into(), "hook".into(), "hook2".into()]);
        let due = |o: &Outbox, lane| o.next_due_in(t0, lane).map(|e| e.notification.key.clone());
        assert_eq!(due(&outbox, Lane::Mail).as_deref(), Some("mail"));
        assert_eq!(due(&outbox, Lane::Channels).as_deref(), Some("hook"));
        outbox.failed("hook", false, BASE, t0);
        assert_eq!(due(&outbox, Lane::Channels), None, "hook2 waits behind its failing head");
        assert_eq!(outbox.next_wake_in(Lane::Channels), Some(t0 + BASE), "the retry");
        assert_eq!(due(&outbox, Lane::Mail).as_deref(), Some("mail"), "mail goes on");
        assert_eq!(outbox.next_wake_in(Lane::Mail), Some(t0));
    }

    #[test]
    fn earlier_runs_go_first_and_are_not_doubled() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        outbox.push(note("new", "a", "x"), t0);
        let stored = |key: &str| OutboxEntry {
            id: 1,
            notification: note(key, "a", "x"),
            delivery: crate::store::Delivery::Pending,
            attempts: 2,
            last_error: None,
            refused: None,
        };
        outbox.resume(vec![stored("old"), stored("new")], t0);
        assert_eq!(keys(&outbox), ["old", "new"]);
        assert_eq!(outbox.get("old").map(|e| e.attempts), Some(2), "attempts carry over");
        assert_eq!(outbox.delivered("old").map(|e| e.notification.key), Some("old".into()));
        assert_eq!(outbox.next_wake(), Some(t0));
    }
}
