//! The state owner: the one thread that holds every mutable decision of the monitor.
//!
//! It owns every target × region's [`Watch`] (detector, blindness, reminders), the [`Ledger`]
//! (`state` rows and the outbox, with its in-memory backlog while the database is away), the
//! recent history the emails and the status page show, and the choice of which letter the
//! courier carries next. Everything else talks to it through one channel of [`Event`]s: probe
//! workers send outcomes, the courier sends delivery results. Nothing is shared behind a lock
//! but the read-only [`Snapshot`] it publishes for `--listen`.
//!
//! Order on a transition (the contract tests rely on): **record, then notify**. The row goes
//! to the ledger first, then the email is composed and posted to the outbox, from which the
//! courier delivers it. Recording first means a crash after the email can never leave an
//! outage that the database does not know about; a restart resumes from the last row.
//!
//! A database that is slow or reconnecting delays this thread only: probes go on (their
//! outcomes wait in the channel, in order), and so does `/healthz`, which the workers feed.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::DIRECT;
use crate::detector::{Health, Transition};
use crate::duration::human;
use crate::history::{self, Change};
use crate::notify::message::{self, Blindness, Email, Notice, Reminder};
use crate::probe::Outcome;
use crate::runtime::ledger::{Ledger, Letter, Recorded, Unavailable};
use crate::runtime::step::{self, Effect, Scope, Watch};
use crate::runtime::Slot;
use crate::store::{self, NewState, Notification, StateRow};
use crate::timestamp::{Clock, Timestamp};
use crate::web::metrics::Registry;
use crate::web::status_page::{self, StatusRow};

/// How far back the history in an email looks (its longest window).
const EMAIL_HISTORY: Duration = Duration::from_secs(30 * 24 * 3600);
/// The most changes kept in memory per target × region; older ones are dropped first. A target
/// that flaps every minute for 90 days would need 130,000: this bounds memory instead.
const MAX_CHANGES: usize = 4096;
/// Beyond this many target × region pairs, start-up logs one summary line instead of a line
/// per pair.
const LOG_EACH_UP_TO: usize = 20;

/// What the state owner hears.
#[derive(Debug)]
pub enum Event {
    /// A probe of `slot` that started at `at` ended with `outcome`.
    Probed { slot: usize, outcome: Outcome, at: Timestamp },
    /// The SMTP server accepted letter `key` at `at`.
    Delivered { key: u64, at: Timestamp, via: &'static str },
    /// Delivery of letter `key` failed.
    DeliveryFailed { key: u64, error: String },
    /// Every probe has ended: finish the delivery in flight, report what is left, return.
    Stop,
}

/// The recent history of every target × region, published for the status page. Only the state
/// owner writes it, one row at a time and briefly; readers copy it out.
#[derive(Debug, Default)]
pub struct Snapshot {
    rows: Mutex<Vec<StatusRow>>,
}

impl Snapshot {
    /// A copy of every row, in slot order.
    pub fn rows(&self) -> Vec<StatusRow> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<StatusRow>> {
        // Rows are replaced or appended whole: a panic cannot leave one half-written.
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Who receives email, fixed at start.
#[derive(Clone, Debug)]
pub struct Recipients {
    /// Recipients of every email; target and region recipients are added per email.
    pub global: Vec<String>,
    /// Whether emails go to an SMTP server (else they are only logged and `to` is empty).
    pub mail: bool,
}

/// See the module doc.
pub struct StateOwner {
    slots: Arc<[Slot]>,
    watches: Vec<Watch>,
    ledger: Ledger,
    snapshot: Arc<Snapshot>,
    recipients: Recipients,
    clock: Arc<dyn Clock>,
    metrics: Arc<Registry>,
    /// Letters for the courier; `None` once it has been told to stop.
    courier: Option<Sender<Letter>>,
    /// The letter the courier is carrying now.
    carrying: Option<u64>,
}

impl StateOwner {
    /// Resumes every slot from its recorded history (one query per slot) and publishes the
    /// first snapshot. A database that cannot answer leaves a slot without history: logged.
    pub fn resume(
        slots: Arc<[Slot]>,
        mut ledger: Ledger,
        recipients: Recipients,
        clock: Arc<dyn Clock>,
        metrics: Arc<Registry>,
        courier: Sender<Letter>,
    ) -> (StateOwner, Arc<Snapshot>) {
        let now = clock.now();
        let from = now.minus(status_page::HISTORY_SPAN);
        let mut watches = Vec::with_capacity(slots.len());
        let mut rows = Vec::with_capacity(slots.len());
        let (mut unknown, mut down) = (0usize, 0usize);
        let each = slots.len() <= LOG_EACH_UP_TO;
        for slot in slots.iter() {
            let (target, region) = (&slot.target.name, &slot.region.name);
            let changes: Vec<Change> = match ledger.history(target, region, from, Instant::now()) {
                Ok(rows) => rows.iter().map(StateRow::change).collect(),
                Err(Unavailable) => {
                    unknown += 1;
                    if each {
                        log::warn!(
                            "last state unknown (database unavailable) target={target} \
                             region={region}: starting without history"
                        );
                    }
                    Vec::new()
                }
            };
            let last = changes.last().map(|c| (c.health, c.at));
            match last {
                Some((health, at)) => {
                    down += usize::from(health == Health::Down);
                    slot.metrics.resume(health, at);
                    if each {
                        log::info!(
                            "resuming target={target} region={region} state={} since={at}",
                            if health.is_up() { "up" } else { "down" }
                        );
                    }
                }
                None if each => {
                    log::info!("watching target={target} region={region} (no history yet)")
                }
                None => {}
            }
            watches.push(Watch::resume(slot.target.thresholds, last, slot.target.remind, now));
            rows.push(StatusRow { target: target.clone(), region: region.clone(), changes });
        }
        if !each {
            log::info!(
                "resumed {} target×region pairs: {down} down, {unknown} without history \
                 (database unavailable)",
                slots.len()
            );
        }
        let snapshot = Arc::new(Snapshot { rows: Mutex::new(rows) });
        metrics.set_pending_notifications(ledger.outbox().count());
        let owner = StateOwner {
            slots,
            watches,
            ledger,
            snapshot: Arc::clone(&snapshot),
            recipients,
            clock,
            metrics,
            courier: Some(courier),
            carrying: None,
        };
        (owner, snapshot)
    }

    /// Handles events until [`Event::Stop`] (or every sender is gone), then finishes the
    /// delivery in flight and reports whatever is still undelivered or unwritten.
    pub fn run(mut self, events: &Receiver<Event>) {
        loop {
            let now = Instant::now();
            self.ledger.maintain(now);
            self.dispatch(now);
            let letter = if self.carrying.is_none() { self.ledger.next_letter_due() } else { None };
            let wake = letter.into_iter().chain(self.ledger.next_maintenance(now)).min();
            let event = match wake {
                Some(at) => events.recv_timeout(at.saturating_duration_since(now)),
                None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match event {
                Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        // The courier finishes the delivery in flight (bounded by the SMTP timeout).
        while let Some(key) = self.carrying {
            match events.recv() {
                Ok(event @ (Event::Delivered { .. } | Event::DeliveryFailed { .. })) => {
                    self.handle(event)
                }
                Ok(_) => {}
                Err(_) => {
                    log::warn!("the courier ended during the delivery of letter {key}");
                    self.carrying = None;
                }
            }
        }
        self.courier = None;
        self.ledger.report_leftovers(Instant::now());
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Probed { slot, outcome, at } => self.observe(slot, &outcome, at),
            Event::Delivered { key, at, via } => {
                self.carrying = None;
                let letter = self.ledger.outbox().find(|l| l.key == key).cloned();
                // Marked sent first, so the log line means "recorded as sent" too.
                self.ledger.delivered(key, at, Instant::now());
                self.metrics.set_pending_notifications(self.ledger.outbox().count());
                if let Some(letter) = letter {
                    log::info!(
                        "notification sent via={via} target={} subject={:?} attempts={}",
                        letter.content.target,
                        letter.content.subject,
                        letter.attempts + 1
                    );
                }
            }
            Event::DeliveryFailed { key, error } => {
                self.carrying = None;
                let letter = self.ledger.outbox().find(|l| l.key == key).cloned();
                let retry = self.ledger.failed(key, &error, Instant::now());
                if let Some(letter) = letter {
                    log::error!(
                        "notification NOT delivered target={} subject={:?} attempt={} \
                         error=\"{error}\" retry_in={}",
                        letter.content.target,
                        letter.content.subject,
                        letter.attempts + 1,
                        retry.map_or_else(|| "-".into(), human)
                    );
                }
            }
            Event::Stop => {}
        }
    }

    /// Hands the head letter to the courier when it is due and the courier is free. One at a
    /// time and strictly in order: a recovery email never overtakes its outage email.
    fn dispatch(&mut self, now: Instant) {
        if self.carrying.is_some() {
            return;
        }
        let (Some(courier), Some(letter)) = (&self.courier, self.ledger.due_letter(now)) else {
            return;
        };
        let key = letter.key;
        if courier.send(letter).is_ok() {
            self.carrying = Some(key);
        }
    }

    /// One outcome: the pure step, then its effects (see the module doc for their order).
    fn observe(&mut self, index: usize, outcome: &Outcome, at: Timestamp) {
        let slots = Arc::clone(&self.slots);
        let Some(slot) = slots.get(index) else { return };
        let now = self.clock.now();
        let scope = Scope {
            regions: slot.siblings.len() + 1,
            others_down: slot
                .siblings
                .iter()
                .filter(|&&s| self.watches[s].health() == Some(Health::Down))
                .count(),
        };
        let watch = &mut self.watches[index];
        let effects = step::step(watch, outcome, at, now, slot.target.remind, scope);
        log_probe(slot, outcome, watch.detector.streak());
        for effect in effects {
            self.apply(index, slot, effect, now);
        }
    }

    fn apply(&mut self, index: usize, slot: &Slot, effect: Effect, now: Timestamp) {
        let (name, region) = (&slot.target.name, &slot.region.name);
        match effect {
            Effect::Blind { since, reason } => {
                log::warn!(
                    "BLIND target={name} region={region} reason={reason:?}: the region's proxy \
                     fails; its probes do not count until it works again"
                );
                let email = message::compose_blind(&Blindness {
                    target: name,
                    region,
                    since,
                    reason: &reason,
                    now,
                });
                self.post(slot, email, None, now);
            }
            Effect::SeeingAgain { blind_for } => {
                log::info!(
                    "SEEING AGAIN target={name} region={region} blind_for={}",
                    human(blind_for)
                );
            }
            Effect::Changed { transition, ended, all_regions_down } => {
                self.changed(index, slot, &transition, ended, all_regions_down, now);
            }
            Effect::Remind { since, down_for, reason } => {
                log::warn!("STILL DOWN target={name} region={region} down_for={}", human(down_for));
                let email = message::compose_reminder(&Reminder {
                    target: name,
                    region: region_label(slot),
                    since,
                    down_for,
                    reason: reason.as_deref(),
                    now,
                });
                self.post(slot, email, None, now);
            }
        }
    }

    /// Record, then notify.
    fn changed(
        &mut self,
        index: usize,
        slot: &Slot,
        transition: &Transition,
        ended: Option<Duration>,
        all_regions_down: Option<usize>,
        now: Timestamp,
    ) {
        slot.metrics.transition(transition);
        let row = NewState {
            key: store::new_key(),
            timestamp: transition.since,
            healthy: transition.to.is_up(),
            target: slot.target.name.clone(),
            region: slot.region.name.clone(),
            reason: transition.reasons.first().cloned(),
        };
        let recorded = self.ledger.record(row, Instant::now());
        let changes =
            self.remember(index, Change { at: transition.since, health: transition.to }, now);
        log_transition(slot, transition, ended);
        if !transition.notifies() {
            return;
        }
        if let Some(n) = all_regions_down {
            log::error!("DOWN FROM ALL {n} REGIONS target={}", slot.target.name);
        }
        let history = history::summarize(&changes, now);
        let email = message::compose(&Notice {
            target: &slot.target.name,
            region: region_label(slot),
            transition,
            ended,
            history: &history,
            all_regions_down,
            now,
        });
        self.post(slot, email, Some(&recorded), now);
    }

    /// Adds `change` to the slot's published history (pruned to the status page's span and
    /// [`MAX_CHANGES`]); returns the part the email's history covers.
    fn remember(&mut self, index: usize, change: Change, now: Timestamp) -> Vec<Change> {
        let mut rows = self.snapshot.lock();
        let Some(row) = rows.get_mut(index) else { return Vec::new() };
        let changes = &mut row.changes;
        changes.push(change);
        let keep_from = now.minus(status_page::HISTORY_SPAN);
        let old = changes.iter().take_while(|c| c.at < keep_from).count();
        // The last change before the window says what state the window began in: keep it.
        let drop = old.saturating_sub(1).max(changes.len().saturating_sub(MAX_CHANGES));
        changes.drain(..drop);
        let email_from = now.minus(EMAIL_HISTORY);
        let before = changes.iter().take_while(|c| c.at < email_from).count();
        changes[before.saturating_sub(1)..].to_vec()
    }

    /// Puts `email` into the outbox for the slot's recipients; the courier delivers it.
    fn post(&mut self, slot: &Slot, email: Email, recorded: Option<&Recorded>, now: Timestamp) {
        let letter = Notification {
            key: store::new_key(),
            target: slot.target.name.clone(),
            region: slot.region.name.clone(),
            recipients: self.recipients_of(slot).join(","),
            subject: email.subject,
            text: email.text,
            html: email.html,
            created_at: now,
        };
        let instant = Instant::now();
        self.ledger.post(recorded, letter, instant);
        self.metrics.set_pending_notifications(self.ledger.outbox().count());
        self.dispatch(instant);
    }

    /// The global recipients, then the target's, then the region's, each once.
    fn recipients_of(&self, slot: &Slot) -> Vec<String> {
        if !self.recipients.mail {
            return Vec::new();
        }
        let mut all: Vec<String> = Vec::new();
        let sources = self
            .recipients
            .global
            .iter()
            .chain(&slot.target.recipients)
            .chain(&slot.region.recipients);
        for r in sources {
            if !all.iter().any(|seen| seen.eq_ignore_ascii_case(r)) {
                all.push(r.clone());
            }
        }
        all
    }
}

/// The region's name as subjects show it: `None` for the implicit `direct`.
fn region_label(slot: &Slot) -> Option<&str> {
    (slot.region.name != DIRECT || slot.target.regions.len() > 1)
        .then_some(slot.region.name.as_str())
}

fn log_probe(slot: &Slot, outcome: &Outcome, streak: u32) {
    let (name, region) = (&slot.target.name, &slot.region.name);
    let ms = outcome.latency().as_millis();
    match outcome {
        Outcome::Healthy { .. } => {
            log::debug!("probe ok target={name} region={region} latency_ms={ms}")
        }
        Outcome::Failed { reason, .. } => log::warn!(
            "probe failed target={name} region={region} reason={:?} latency_ms={ms} \
             streak={streak}",
            reason.to_string()
        ),
        Outcome::Blind { reason, .. } => {
            log::debug!("probe blind target={name} region={region} reason={:?}", reason.to_string())
        }
    }
}

fn log_transition(slot: &Slot, transition: &Transition, ended: Option<Duration>) {
    let (name, region) = (&slot.target.name, &slot.region.name);
    let lasted = ended.map_or_else(|| "unknown".to_string(), human);
    match (transition.from, transition.to) {
        (_, Health::Down) => log::error!(
            "OUTAGE target={name} region={region} since={} reason={:?} up_for={lasted}",
            transition.since,
            transition.reasons.first().map_or("", String::as_str)
        ),
        (Some(Health::Down), Health::Up) => log::info!(
            "RECOVERED target={name} region={region} at={} down_for={lasted}",
            transition.since
        ),
        (_, Health::Up) => log::info!(
            "UP target={name} region={region} since={} (first settled state, recorded)",
            transition.since
        ),
    }
}
