//! The state owner: the one thread that holds every mutable decision of the monitor.
//!
//! It owns every target × region's [`Watch`] (detector, blindness, reminders), the [`Outbox`]
//! (which notification the courier carries next), and the recent history the emails and the
//! status page show. Everything else talks to it through one channel of [`Event`]s: the
//! probing thread sends outcomes, the courier sends delivery results, the recorder (the thread that
//! talks to the database, [`crate::runtime::recorder`]) sends its answers. Nothing is shared
//! behind a lock but the read-only [`Snapshot`] it publishes for `--listen`.
//!
//! **Exactly once.** A transition's email is composed first (from the history in memory), then
//! the `state` row and the notification go to the recorder as one [`Commit`] — one
//! transaction, keys made before the first attempt — and the notification joins the outbox,
//! where it waits until the recorder has written it (so no email ever goes out for a
//! transition a crash could still lose). A crash leaves both or neither in the database; a retry after a lost reply writes nothing
//! twice; the courier's acceptance is recorded at once, so a crash can repeat an email only in
//! the round trip between the server's "250" to DATA and that record (see "Exactly once" in
//! `docs/failure-handling.md`).
//!
//! **Resuming.** Nothing is decided from nothing: until this instance holds the database (one
//! instance per database, a second one waits as a standby) and has read every pair's last
//! state, outcomes wait in memory (the latest [`WAITING_PER_PAIR`] per pair), and are then
//! replayed through the detectors in order. So a recovery that happened while the monitor was
//! stopped or the database away is mailed once, after the outage it ends. `/healthz` says why
//! it waits.
//!
//! This thread never waits on the database: a database that is slow, hangs or reconnects
//! delays only the recorder, and decisions and emails go on from memory.

mod member;

pub use member::Member;

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::DIRECT;
use crate::detector::{Health, Transition};
use crate::duration::human;
use crate::history::{self, Change};
use crate::latency;
use crate::maintenance::{self, Cover, Window};
use crate::notify::channel::{self, Channel};
use crate::notify::mailer::AbortHandle;
use crate::notify::message::{self, Blindness, Email, Notice, Reminder};
use crate::notify::outbox::{AfterFailure, Lane, Outbox};
use crate::probe::Outcome;
use crate::runtime::coordinator::View;
use crate::runtime::courier::Parcel;
use crate::runtime::ledger::{Ledger, Write};
use crate::runtime::recorder::{self, Answer, Job};
use crate::runtime::schedule::Shutdown;
use crate::runtime::step::{self, Effect, Scope, Watch};
use crate::runtime::Slot;
use crate::store::{
    new_key, Commit, Holder, NewState, Notification, OutboxEntry, Silence, StateRow,
};
use crate::timestamp::{Clock, Timestamp};
use crate::web::metrics::Registry;
use crate::web::status_page::{self, ClusterPanel, StatusRow};

/// How far back the history in an email looks (its longest window).
const EMAIL_HISTORY: Duration = Duration::from_secs(30 * 24 * 3600);
/// The most changes kept in memory per target × region; older ones are dropped first. A target
/// that flaps every minute for 90 days would need 130,000: this bounds memory instead.
const MAX_CHANGES: usize = 4096;
/// Beyond this many target × region pairs, start-up logs one summary line instead of a line
/// per pair.
const LOG_EACH_UP_TO: usize = 20;
/// Outcomes kept per pair while the monitor cannot yet decide (database away, standby): the
/// latest ones, enough for any threshold; older ones are dropped (and counted in the log).
pub const WAITING_PER_PAIR: usize = 64;
/// How often the outbox is compared with the database's pending notifications, so that
/// `api-monitor outbox --requeue` takes effect without a restart.
const RESCAN_EVERY: Duration = Duration::from_secs(60);
/// How often a waiting instance asks the database again (also bounded by the ledger's backoff).
const RESUME_EVERY: Duration = Duration::from_secs(2);
/// How often the silences are read again: how soon `api-monitor silence` takes effect.
const SILENCES_EVERY: Duration = Duration::from_secs(10);
/// At a stop, how long the delivery in flight may still take before it is cut (it stays in the
/// outbox for the next start).
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// What the state owner hears.
#[derive(Debug)]
pub enum Event {
    /// Probes that ended, in the order they ended (several at once: see
    /// [`crate::runtime::probing::Handoff`]).
    Probed(Vec<Probed>),
    /// The SMTP server accepted notification `key` at `at` (`refused`: recipients it refused).
    Delivered { key: String, at: Timestamp, via: &'static str, refused: Option<String> },
    /// Delivery of notification `key` failed; `permanent` when the server refused it (5xx).
    DeliveryFailed { key: String, error: String, permanent: bool },
    /// The recorder (the database's thread) answers.
    Recorder(Answer),
    /// Cluster mode: what the coordinator's beat saw (`None`: the beat failed).
    Cluster(Option<View>),
    /// Cluster mode: the courier did not send notification `key`: this member may no longer
    /// send it (its lease is over) or it is sent already.
    Withheld { key: String, why: String },
    /// Every probe has ended: finish the delivery in flight, report what is left, return.
    Stop,
}

/// A probe of `slot` that started at `at` and ended with `outcome`.
#[derive(Debug)]
pub struct Probed {
    pub slot: usize,
    pub outcome: Outcome,
    pub at: Timestamp,
}

/// How the state owner ended.
pub enum Ending {
    /// Asked to stop.
    Stopped,
    /// It had to stop: another instance took over the database, or the database file vanished.
    Fatal(String),
    /// Stopped for a reload: the ledger (connection, lock, unwritten rows) for the next runtime.
    Reload(Box<Ledger>),
}

impl std::fmt::Debug for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Stopped => f.write_str("Stopped"),
            Ending::Fatal(why) => f.debug_tuple("Fatal").field(why).finish(),
            Ending::Reload(_) => f.write_str("Reload"),
        }
    }
}

/// The recent history of every target × region, published for the status page. Only the state
/// owner writes it, one row at a time and briefly; readers copy it out.
#[derive(Debug, Default)]
pub struct Snapshot {
    rows: Mutex<Vec<StatusRow>>,
    /// Cluster mode: the members and this member's share, as of the last heartbeat.
    cluster: Mutex<Option<ClusterPanel>>,
}

impl Snapshot {
    /// A copy of every row, in slot order.
    pub fn rows(&self) -> Vec<StatusRow> {
        self.lock().clone()
    }

    /// A copy of the cluster panel; `None` for a single instance.
    pub fn cluster(&self) -> Option<ClusterPanel> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_cluster(&self, panel: ClusterPanel) {
        *self.cluster.lock().unwrap_or_else(|p| p.into_inner()) = Some(panel);
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
    /// Channels (names) that get every notification; target and region channels are added.
    pub channels: Vec<String>,
    /// Every channel defined, for the kinds of event each one carries.
    pub defined: Arc<[Channel]>,
}

/// This process as the database's holder: a fresh id, the host (with its pid namespace) and pid.
/// `host` is this machine's name (the one the `From:` default uses).
pub fn holder(host: &str) -> Holder {
    Holder { id: new_key(), host: format!("{host}{}", pid_namespace()), pid: std::process::id() }
}

/// `@pid:[N]` naming this process's pid namespace (empty if unknown): two containers with the
/// same host name have different namespaces, so a pid seen in one says nothing in the other.
fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid").map(|l| format!("@{}", l.display())).unwrap_or_default()
}

/// Where the monitor is in its life.
enum Phase {
    /// Not yet holding the database with every pair's last state read: outcomes wait.
    Resuming {
        /// The latest outcomes of each slot, oldest first.
        waiting: Vec<VecDeque<(Outcome, Timestamp)>>,
        /// Outcomes dropped because a slot's queue was full.
        dropped: usize,
        /// Who holds the database, if another instance does (this one is a standby).
        standby: Option<Holder>,
        /// Whether "waiting for the database" was logged.
        said: bool,
        /// Whether a resume is asked and not yet answered.
        asked: bool,
        next_try: Instant,
    },
    Active {
        /// When to look for notifications re-queued by `api-monitor outbox --requeue`.
        next_rescan: Instant,
    },
}

/// The things the state owner is built from.
pub struct Owned {
    pub slots: Arc<[Slot]>,
    pub ledger: Ledger,
    pub recipients: Recipients,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Registry>,
    /// Notifications for the couriers, by [`Lane`]: mail, then channels.
    pub couriers: [Sender<Parcel>; 2],
    /// The state owner's own channel, for the recorder's answers.
    pub events: Sender<Event>,
    /// Cuts the courier's conversation in flight (at a stop that cannot wait).
    pub abort: AbortHandle,
    pub me: Holder,
    pub shutdown: Arc<Shutdown>,
    /// The first wait before a delivery is retried.
    pub retry_base: Duration,
    /// Cluster mode: who this member is and the share it publishes to the probing thread.
    pub member: Option<Member>,
    /// The config file's maintenance windows.
    pub windows: Arc<[Window]>,
}

/// A slot whose notifications maintenance held back: what its summary needs when it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Held {
    /// The state before the first held transition (`None`: none was settled).
    pub(super) before: Option<Health>,
    /// The maintenance, as logs show it, when the first transition was held.
    pub(super) why: String,
    /// The held transitions, oldest first: when, to what, the first reason.
    pub(super) during: Vec<(Timestamp, Health, Option<String>)>,
}

/// See the module doc.
pub struct StateOwner {
    slots: Arc<[Slot]>,
    phase: Phase,
    watches: Vec<Watch>,
    /// Database work, done by the recorder thread in order.
    recorder: Sender<Job>,
    recorder_thread: Option<JoinHandle<recorder::Ended>>,
    outbox: Outbox,
    snapshot: Arc<Snapshot>,
    recipients: Recipients,
    clock: Arc<dyn Clock>,
    metrics: Arc<Registry>,
    /// Notifications for the couriers, by [`Lane`]; `None` once they have been told to stop.
    couriers: Option<[Sender<Parcel>; 2]>,
    abort: AbortHandle,
    /// The notification each courier (by [`Lane`]) is carrying now.
    carrying: [Option<String>; 2],
    shutdown: Arc<Shutdown>,
    retry_base: Duration,
    fatal: Option<String>,
    /// Cluster mode: the share, the lead and the leader's global state.
    member: Option<member::Membership>,
    windows: Arc<[Window]>,
    /// The silences not ended, as last read from the database.
    silences: Vec<Silence>,
    /// When to read them again.
    next_silences: Instant,
    /// By slot: what maintenance held back, until its summary is written.
    held: Vec<Option<Held>>,
    /// The probe latency of the minute in progress (the last hour's, for the sparklines, is
    /// kept in the snapshot only).
    latency: latency::Minutes,
    /// When the minute in progress ends (then its latency is written).
    minute_ends: Timestamp,
    /// Latency minutes before this hour are rolled up into hours (`None`: not since start,
    /// so the first roll-up catches up on the last [`latency::MINUTES_KEPT`]).
    rolled_up_to: Option<Timestamp>,
}

impl StateOwner {
    /// Builds the owner, starts its recorder thread and asks at once to take the database and
    /// resume every slot from its recorded history (see the module doc for what happens when
    /// it cannot yet).
    pub fn start(owned: Owned) -> std::io::Result<(StateOwner, Arc<Snapshot>)> {
        let Owned {
            slots,
            ledger,
            recipients,
            clock,
            metrics,
            couriers,
            events,
            abort,
            me,
            shutdown,
            retry_base,
            member,
            windows,
        } = owned;
        let slots_len = slots.len();
        let (recorder, jobs) = std::sync::mpsc::channel();
        let recorder_thread = std::thread::Builder::new()
            .name("recorder".into())
            .stack_size(256 * 1024)
            .spawn(move || recorder::run(ledger, &jobs, &events, &me))?;
        let snapshot = Arc::new(Snapshot::default());
        let now = Instant::now();
        let phase = match member {
            // A member holds no lock and reads each target's history when it takes it over.
            Some(_) => Phase::Active { next_rescan: now + RESCAN_EVERY },
            None => Phase::Resuming {
                waiting: vec![VecDeque::new(); slots.len()],
                dropped: 0,
                standby: None,
                said: false,
                asked: false,
                next_try: now,
            },
        };
        let mut watches = Vec::new();
        if member.is_some() {
            let clock_now = clock.now();
            watches = slots
                .iter()
                .map(|s| Watch::resume(s.target.thresholds, None, None, clock_now))
                .collect();
            *snapshot.lock() = slots
                .iter()
                .map(|s| StatusRow {
                    target: s.target.name.clone(),
                    region: s.region.name.clone(),
                    changes: Vec::new(),
                    latency: VecDeque::new(),
                })
                .collect();
        }
        let mut owner = StateOwner {
            phase,
            slots,
            watches,
            recorder,
            recorder_thread: Some(recorder_thread),
            outbox: Outbox::default(),
            snapshot: Arc::clone(&snapshot),
            recipients,
            clock,
            metrics,
            couriers: Some(couriers),
            abort,
            carrying: [None, None],
            shutdown,
            retry_base,
            fatal: None,
            member: member.map(member::Membership::new),
            held: vec![None; slots_len],
            windows,
            silences: Vec::new(),
            next_silences: now + SILENCES_EVERY,
            latency: latency::Minutes::new(slots_len),
            minute_ends: Timestamp::from_millis(0),
            rolled_up_to: None,
        };
        owner.tend(now);
        Ok((owner, snapshot))
    }

    /// Hands `job` to the recorder (which outlives every call of this thread's loop).
    fn ask(&self, job: Job) {
        let _ = self.recorder.send(job);
    }

    /// Handles events until [`Event::Stop`] (or every sender is gone), then finishes (or cuts)
    /// the delivery in flight and reports whatever is still undelivered or unwritten.
    pub fn run(mut self, events: &Receiver<Event>) -> Ending {
        loop {
            let now = Instant::now();
            self.tend(now);
            if let Some(why) = self.fatal.take() {
                log::error!("STOPPING: {why}");
                self.fatal = Some(why);
                self.shutdown.trigger();
                break;
            }
            self.dispatch(now);
            let event = match self.next_wake() {
                Some(at) => events.recv_timeout(at.saturating_duration_since(now)),
                None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match event {
                Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        self.finish_delivery(events);
        self.couriers = None;
        // The minute in progress is written too (a restart within it replaces it).
        self.latency_tend(true);
        let reload = self.fatal.is_none() && self.shutdown.is_reload();
        self.ask(if reload { Job::Handover } else { Job::Stop });
        let (unsaved, ledger) = match self.recorder_thread.take().map(JoinHandle::join) {
            Some(Ok(ended)) => (ended.unsaved, ended.ledger),
            Some(Err(_)) => {
                log::error!("the recorder thread panicked");
                (Vec::new(), None)
            }
            None => (Vec::new(), None),
        };
        if let Some(ledger) = ledger {
            // Everything pending is in the database or in the ledger's backlog, which the next
            // runtime takes over: nothing to report, nothing lost.
            return Ending::Reload(Box::new(ledger));
        }
        for n in &unsaved {
            if self.outbox.contains(&n.key) {
                log::error!(
                    "notification NOT delivered and NOT saved (database unavailable) to={} \
                     subject={:?} created_at={}\n{}",
                    n.recipients,
                    n.subject,
                    n.created_at,
                    n.text.trim_end()
                );
            } else {
                log::warn!(
                    "notification delivered but NOT saved (database unavailable) subject={:?} \
                     created_at={}",
                    n.subject,
                    n.created_at
                );
            }
        }
        let saved =
            self.outbox.iter().filter(|e| !unsaved.iter().any(|n| n.key == e.notification.key));
        for entry in saved {
            log::warn!(
                "notification not delivered yet, kept in the outbox for the next start \
                 target={} subject={:?} attempts={}",
                entry.notification.target,
                entry.notification.subject,
                entry.attempts
            );
        }
        if let Phase::Resuming { waiting, standby: None, .. } = &self.phase {
            let n: usize = waiting.iter().map(VecDeque::len).sum();
            if n > 0 {
                log::warn!(
                    "stopped before the database could be read: {n} probe outcome(s) were not \
                     evaluated"
                );
            }
        }
        match self.fatal {
            Some(why) => Ending::Fatal(why),
            None => Ending::Stopped,
        }
    }

    /// After the stop: the delivery in flight gets [`STOP_GRACE`], then it is cut.
    fn finish_delivery(&mut self, events: &Receiver<Event>) {
        let mut deadline = Instant::now() + STOP_GRACE;
        let mut cut = false;
        while self.carrying.iter().any(Option::is_some) {
            let wait = deadline.saturating_duration_since(Instant::now());
            match events.recv_timeout(wait) {
                Ok(event @ (Event::Delivered { .. } | Event::DeliveryFailed { .. })) => {
                    self.handle(event)
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) if !cut => {
                    log::warn!(
                        "stopping: cutting the SMTP conversation in flight after {}; the \
                        notification stays in the outbox",
                        human(STOP_GRACE)
                    );
                    self.abort.abort();
                    cut = true;
                    deadline = Instant::now() + STOP_GRACE;
                }
                Err(_) => {
                    log::warn!("a courier did not answer; its notification stays in the outbox");
                    self.carrying = [None, None];
                }
            }
        }
    }

    /// The next instant something is due: a notification, a resume attempt, a rescan.
    fn next_wake(&self) -> Option<Instant> {
        let sending = self.member.as_ref().is_none_or(|m| m.sending_lead(Instant::now()).is_some());
        let delivery = (Lane::ALL.into_iter())
            .filter(|&lane| sending && self.carrying[lane as usize].is_none())
            .filter_map(|lane| self.outbox.next_wake_in(lane))
            .min();
        let expiry = self.member.as_ref().and_then(member::Membership::next_expiry);
        let phase = match &self.phase {
            Phase::Resuming { asked: true, .. } => None,
            Phase::Resuming { next_try, .. } => Some(*next_try),
            Phase::Active { next_rescan } => Some(*next_rescan),
        };
        let silences = matches!(self.phase, Phase::Active { .. }).then_some(self.next_silences);
        let minute = self.latency.counting().then(|| {
            let left = self.minute_ends.since(self.clock.now());
            Instant::now() + left
        });
        delivery.into_iter().chain(phase).chain(expiry).chain(silences).chain(minute).min()
    }

    /// Periodic work of the phase: ask to resume while resuming, look for re-queued
    /// notifications when active.
    fn tend(&mut self, now: Instant) {
        self.member_tend(now);
        self.latency_tend(false);
        let active = matches!(self.phase, Phase::Active { .. });
        if active && now >= self.next_silences {
            self.next_silences = now + SILENCES_EVERY;
            self.ask(Job::Silences { now: self.clock.now() });
        }
        match &mut self.phase {
            Phase::Resuming { next_try, asked, .. } if now >= *next_try && !*asked => {
                *asked = true;
                let pairs = self
                    .slots
                    .iter()
                    .map(|s| (s.target.name.clone(), s.region.name.clone()))
                    .collect();
                let at = self.clock.now();
                let from = at.minus(status_page::HISTORY_SPAN);
                self.ask(Job::Resume { pairs, from, at });
            }
            Phase::Active { next_rescan } if now >= *next_rescan => {
                *next_rescan = now + RESCAN_EVERY;
                // In a cluster only the leader delivers, so only it looks for re-queued ones.
                if self.member.as_ref().is_none_or(member::Membership::leads) {
                    self.ask(Job::Rescan);
                }
            }
            Phase::Resuming { .. } | Phase::Active { .. } => {}
        }
    }

    /// Once a minute (and with `all` at a stop): writes the latency of the minutes that ended
    /// and refreshes the sparklines; once an hour has the recorder roll the minutes up.
    fn latency_tend(&mut self, all: bool) {
        let now = self.clock.now();
        if all || now >= self.minute_ends {
            self.minute_ends =
                latency::Span::Minute.start_of(now).plus(latency::Span::Minute.length());
            self.write_minutes(now, all);
        }
        // One instance rolls up: the holder of the database, or a cluster's leader. The first
        // time, the hours of the minutes kept, which a stopped monitor may not have rolled up
        // (hours rolled up already are skipped).
        let hour = latency::Span::Hour.start_of(now);
        let rolls = matches!(self.phase, Phase::Active { .. })
            && self.member.as_ref().is_none_or(member::Membership::leads);
        if rolls && self.rolled_up_to.is_none_or(|done| done < hour) {
            let from = self.rolled_up_to.unwrap_or(hour.minus(latency::MINUTES_KEPT));
            self.ask(Job::Write(Write::RollUp { from, to: hour, now }));
            self.rolled_up_to = Some(hour);
        }
    }

    /// The minutes of latency that ended by `now` (all with `all`): drawn, then written.
    fn write_minutes(&mut self, now: Timestamp, all: bool) {
        let names: Vec<(&str, &str)> =
            self.slots.iter().map(|s| (s.target.name.as_str(), s.region.name.as_str())).collect();
        let finished = self.latency.finish(now, all, &names);
        if finished.is_empty() {
            return;
        }
        let mut shown = self.snapshot.lock();
        for (index, row) in &finished {
            if let (Some(shown), Some(point)) =
                (shown.get_mut(*index), latency::Point::of(row.start, &row.histogram))
            {
                latency::add_points(&mut shown.latency, [point]);
            }
        }
        drop(shown);
        let rows = finished.into_iter().map(|(_, row)| row).collect();
        self.ask(Job::Write(Write::Latency(rows)));
    }

    /// The silences as just read: each new one and each one gone is logged once.
    fn silences_read(&mut self, silences: Vec<Silence>) {
        for s in silences.iter().filter(|s| !self.silences.iter().any(|o| o.id == s.id)) {
            let target =
                if s.target == maintenance::ALL_TARGETS { "all" } else { s.target.as_str() };
            log::warn!(
                "SILENCE #{} target={target} from={} until={} reason={:?} by={}: notifications \
                 held back",
                s.id,
                s.starts_at,
                s.ends_at,
                s.reason,
                s.created_by
            );
        }
        for s in self.silences.iter().filter(|o| !silences.iter().any(|s| s.id == o.id)) {
            log::info!("silence #{} is over (ended or cleared)", s.id);
        }
        self.silences = silences;
    }

    /// The recorder's answer.
    fn answered(&mut self, answer: Answer) {
        let now = Instant::now();
        match answer {
            Answer::Resumed { histories, pending, silences, latency } => {
                self.silences_read(silences);
                self.resume(histories, pending, now);
                self.seed_latency(latency);
            }
            Answer::Silences(silences) => self.silences_read(silences),
            Answer::Pending(pending) => {
                let before = self.outbox.len();
                self.outbox.resume(pending, now);
                let added = self.outbox.len() - before;
                if added > 0 {
                    log::warn!("{added} re-queued notification(s) joined the outbox");
                    self.metrics.set_pending_notifications(self.outbox.len());
                }
            }
            Answer::Written(keys) => self.outbox.written(&keys),
            Answer::Adopted { slots, histories } => self.adopted(slots, histories),
            Answer::Leading { term, read } => self.leading(term, read),
            Answer::Fenced { term, keys } => self.fenced(term, &keys),
            Answer::Fatal(why) => self.fatal = Some(why),
            Answer::Unavailable | Answer::Standby { .. } => {
                let Phase::Resuming { standby, said, asked, next_try, .. } = &mut self.phase else {
                    return;
                };
                *asked = false;
                *next_try = now + RESUME_EVERY;
                match answer {
                    Answer::Standby { by, heartbeat_age } if standby.as_ref() != Some(&by) => {
                        log::warn!(
                            "STANDBY: the database is held by another api-monitor (instance {} \
                             on {} pid {}, heartbeat {} ago); this one probes but records and \
                             notifies nothing until that one stops or its heartbeat is {} old",
                            by.id,
                            by.host,
                            by.pid,
                            human(heartbeat_age),
                            human(recorder::STALE_AFTER)
                        );
                        self.metrics.set_waiting(Some(format!(
                            "standby: the database is held by instance {} on {} pid {}",
                            by.id, by.host, by.pid
                        )));
                        *standby = Some(by);
                    }
                    Answer::Unavailable if !*said => {
                        log::warn!(
                            "waiting for the database before deciding anything: probes go on \
                             and their outcomes are kept (the latest {WAITING_PER_PAIR} per \
                             target × region), then evaluated in order"
                        );
                        *said = true;
                        self.metrics.set_waiting(Some("waiting for the database".into()));
                    }
                    _ => {}
                }
            }
        }
    }

    /// The last run's minutes of latency, read back at start (as points, in slot order),
    /// begin each pair's sparkline.
    fn seed_latency(&mut self, points: Vec<Vec<latency::Point>>) {
        let mut shown = self.snapshot.lock();
        for (row, points) in shown.iter_mut().zip(points) {
            latency::add_points(&mut row.latency, points);
        }
    }

    /// The database is this instance's and its history is read: resume every slot, deliver
    /// what earlier runs left, replay what waited, and become active.
    fn resume(&mut self, histories: Vec<Vec<StateRow>>, pending: Vec<OutboxEntry>, now: Instant) {
        let Phase::Resuming { standby, .. } = &mut self.phase else { return };
        if let Some(by) = standby.take() {
            log::warn!("taking over the database from instance {} on {}", by.id, by.host);
        }
        let (watches, rows) = self.read_history(histories);
        if !pending.is_empty() {
            log::warn!("resuming {} undelivered notification(s) from the outbox", pending.len());
        }
        self.outbox.resume(pending, now);
        self.metrics.set_pending_notifications(self.outbox.len());
        let last: Vec<Option<Timestamp>> =
            rows.iter().map(|r| r.changes.last().map(|c| c.at)).collect();
        self.watches = watches;
        *self.snapshot.lock() = rows;
        let Phase::Resuming { waiting, dropped, .. } =
            std::mem::replace(&mut self.phase, Phase::Active { next_rescan: now + RESCAN_EVERY })
        else {
            return;
        };
        self.metrics.set_waiting(None);
        // Replay in time order; outcomes older than a pair's last recorded change were already
        // decided (by this instance before a restart, or by the one it takes over from).
        let mut replay: Vec<(usize, Outcome, Timestamp)> = waiting
            .into_iter()
            .enumerate()
            .flat_map(|(slot, queue)| queue.into_iter().map(move |(o, at)| (slot, o, at)))
            .filter(|(slot, _, at)| last[*slot].is_none_or(|last| *at >= last))
            .collect();
        replay.sort_by_key(|(_, _, at)| *at);
        if !replay.is_empty() || dropped > 0 {
            log::info!(
                "evaluating {} probe outcome(s) that waited for the database ({dropped} older \
                 ones dropped)",
                replay.len()
            );
        }
        for (slot, outcome, at) in replay {
            // Logged when it arrived: once is enough.
            self.observe(slot, &outcome, at, Logged::Already);
        }
    }

    /// Every slot's watch and status row from its recorded history (`histories`, in slot
    /// order).
    fn read_history(&mut self, histories: Vec<Vec<StateRow>>) -> (Vec<Watch>, Vec<StatusRow>) {
        let clock_now = self.clock.now();
        let mut watches = Vec::with_capacity(self.slots.len());
        let mut rows = Vec::with_capacity(self.slots.len());
        let mut down = 0usize;
        let mut held = Vec::with_capacity(self.slots.len());
        let each = self.slots.len() <= LOG_EACH_UP_TO;
        for (slot, history) in self.slots.iter().zip(histories) {
            let (target, region) = (&slot.target.name, &slot.region.name);
            let (watch, changes) = resume_slot(slot, &history, slot.target.remind, clock_now);
            held.push(held_from(&history));
            match changes.last().map(|c| (c.health, c.at)) {
                Some((health, at)) => {
                    down += usize::from(health == Health::Down);
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
            watches.push(watch);
            rows.push(StatusRow {
                target: target.clone(),
                region: region.clone(),
                changes,
                latency: VecDeque::new(),
            });
        }
        if !each {
            log::info!("resumed {} target×region pairs: {down} down", self.slots.len());
        }
        let owed = held.iter().flatten().count();
        if owed > 0 {
            log::info!(
                "{owed} target×region pair(s) had notifications held back by maintenance: a \
                 summary follows when it is over"
            );
        }
        self.held = held;
        (watches, rows)
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Probed(probes) => {
                for Probed { slot, outcome, at } in probes {
                    self.metrics.outcome_handled(Instant::now());
                    if let Some(took) = latency::answered(&outcome) {
                        self.latency.add(slot, took, self.clock.now());
                    }
                    self.probed(slot, outcome, at);
                }
            }
            Event::Delivered { key, at, via, refused } => {
                self.carried(&key);
                let Some(entry) = self.outbox.delivered(&key) else { return };
                let attempts = entry.attempts + 1;
                let n = &entry.notification;
                self.ask(Job::Write(Write::Sent {
                    key: key.clone(),
                    attempts,
                    at,
                    refused: refused.clone(),
                }));
                self.metrics.set_pending_notifications(self.outbox.len());
                log::info!(
                    "notification sent key={key} via={via} target={} subject={:?} \
                     attempts={attempts}",
                    n.target,
                    n.subject
                );
                if let Some(refused) = refused {
                    log::error!(
                        "notification sent, but the mail server refused some recipients \
                        target={} subject={:?} refused=\"{refused}\"",
                        n.target,
                        n.subject
                    );
                }
            }
            Event::DeliveryFailed { key, error, permanent } => {
                self.carried(&key);
                let now = Instant::now();
                let Some((after, entry)) =
                    self.outbox.failed(&key, permanent, self.retry_base, now)
                else {
                    return;
                };
                let n = &entry.notification;
                match after {
                    AfterFailure::Retry(wait) => {
                        log::error!(
                            "notification NOT delivered target={} subject={:?} attempt={} \
                            error=\"{error}\" retry_in={}",
                            n.target,
                            n.subject,
                            entry.attempts,
                            human(wait)
                        );
                        let write = Write::Attempt { key, attempts: entry.attempts, error };
                        self.ask(Job::Write(write));
                    }
                    AfterFailure::Dead => {
                        log::error!(
                            "notification DEAD (refused {} times by the mail server or channel; no more \
                             retries) target={} subject={:?} error=\"{error}\": see `api-monitor \
                             outbox`, re-send with `api-monitor outbox --requeue`",
                            entry.refusals,
                            n.target,
                            n.subject
                        );
                        self.metrics.count_dead_notification();
                        let at = self.clock.now();
                        let write = Write::Dead { key, attempts: entry.attempts, error, at };
                        self.ask(Job::Write(write));
                    }
                }
                self.metrics.set_pending_notifications(self.outbox.len());
            }
            Event::Recorder(answer) => self.answered(answer),
            Event::Cluster(view) => self.member_view(view),
            Event::Withheld { key, why } => {
                self.carried(&key);
                if let Some(entry) = self.outbox.delivered(&key) {
                    log::warn!(
                        "notification withheld key={key} target={} subject={:?}: {why}",
                        entry.notification.target,
                        entry.notification.subject
                    );
                    self.metrics.set_pending_notifications(self.outbox.len());
                }
            }
            Event::Stop => {}
        }
    }

    /// An outcome: decided now when active, kept (bounded) while resuming.
    fn probed(&mut self, slot: usize, outcome: Outcome, at: Timestamp) {
        match &mut self.phase {
            Phase::Active { .. } if self.member.is_some() => self.member_probed(slot, outcome, at),
            Phase::Active { .. } => self.observe(slot, &outcome, at, Logged::Not),
            Phase::Resuming { waiting, dropped, .. } => {
                if let Some(s) = self.slots.get(slot) {
                    log_probe(s, &outcome, 0);
                }
                if let Some(queue) = waiting.get_mut(slot) {
                    if queue.len() == WAITING_PER_PAIR {
                        queue.pop_front();
                        *dropped += 1;
                    }
                    queue.push_back((outcome, at));
                }
            }
        }
    }

    /// Hands each free courier the next due notification of its lane.
    fn dispatch(&mut self, now: Instant) {
        let lead = match &self.member {
            Some(m) => match m.sending_lead(now) {
                Some(lead) => Some(lead),
                None => return,
            },
            None => None,
        };
        for lane in Lane::ALL {
            if self.carrying[lane as usize].is_some() {
                continue;
            }
            let (Some(couriers), Some(entry)) =
                (&self.couriers, self.outbox.next_due_in(now, lane))
            else {
                continue;
            };
            let key = entry.notification.key.clone();
            let parcel = Parcel { notification: entry.notification.clone(), lead };
            if couriers[lane as usize].send(parcel).is_ok() {
                self.carrying[lane as usize] = Some(key);
            }
        }
    }

    /// The courier carrying `key` is free again.
    fn carried(&mut self, key: &str) {
        for carrying in &mut self.carrying {
            if carrying.as_deref() == Some(key) {
                *carrying = None;
            }
        }
    }

    /// One outcome: the pure step, then its effects.
    fn observe(&mut self, index: usize, outcome: &Outcome, at: Timestamp, logged: Logged) {
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
        // A member's site watch never reminds: reminders are about announced outages.
        let remind = if self.member.is_some() { None } else { slot.target.remind };
        let cover = self.cover(slot, now);
        if cover.is_none() && self.held[index].is_some() {
            self.maintenance_over(index, slot, now);
        }
        let watch = &mut self.watches[index];
        let effects = step::step(watch, outcome, at, now, remind, scope);
        if logged == Logged::Not {
            log_probe(slot, outcome, watch.detector.streak());
        }
        for effect in effects {
            self.apply(index, slot, effect, now, cover.as_ref());
        }
    }

    /// The maintenance covering `slot`'s target at `now`, if any. (A cluster member's site
    /// transitions are never notified; its leader holds back global ones: `member.rs`.)
    fn cover(&self, slot: &Slot, now: Timestamp) -> Option<Cover> {
        if self.member.is_some() {
            return None;
        }
        maintenance::covering(&slot.target.name, now, &self.windows, &self.silences)
    }

    /// The maintenance that held back `slot`'s notifications is over: if the state differs
    /// from before it, one notification says how it left the target (an outage or a recovery,
    /// with what happened during it); if not, none. Either way the held rows are released in
    /// the same commit, so a restart knows no summary is owed any more.
    fn maintenance_over(&mut self, index: usize, slot: &Slot, now: Timestamp) {
        let Some(held) = self.held[index].take() else { return };
        let (name, region) = (&slot.target.name, &slot.region.name);
        let release = Some((name.clone(), region.clone()));
        let current = self.watches[index].health();
        let changes: Vec<Change> = {
            let rows = self.snapshot.lock();
            rows.get(index).map(|r| r.changes.clone()).unwrap_or_default()
        };
        let Some((transition, ended)) = held.over(current, &changes, now, name, region) else {
            self.ask(Job::Write(Write::Commit(Commit { release, ..Commit::default() })));
            return;
        };
        let email_from = now.minus(EMAIL_HISTORY);
        let recent: Vec<Change> = changes.iter().filter(|c| c.at >= email_from).copied().collect();
        let history = history::summarize(&recent, now);
        let email = message::compose_after_maintenance(
            &Notice {
                target: name,
                region: region_label(slot),
                transition: &transition,
                ended,
                history: &history,
                all_regions_down: None,
                sites: None,
                now,
            },
            &message::AfterMaintenance { why: &held.why, during: &held.during },
        );
        self.post_with(slot, None, email, now, release);
    }

    fn apply(
        &mut self,
        index: usize,
        slot: &Slot,
        effect: Effect,
        now: Timestamp,
        cover: Option<&Cover>,
    ) {
        let (name, region) = (&slot.target.name, &slot.region.name);
        match effect {
            Effect::Blind { reason, .. } if cover.is_some() && self.member.is_none() => {
                log::warn!(
                    "BLIND target={name} region={region} reason={reason:?}: the region's proxy \
                     fails (in maintenance: {}; no notification)",
                    cover.map_or("", |c| c.why.as_str())
                );
            }
            Effect::Remind { down_for, .. } if cover.is_some() => {
                log::warn!(
                    "STILL DOWN target={name} region={region} down_for={} (in maintenance: {}; \
                     no reminder)",
                    human(down_for),
                    cover.map_or("", |c| c.why.as_str())
                );
            }
            Effect::Blind { since, reason } if self.member.is_some() => log::warn!(
                "BLIND target={name} site={region} since={since} reason={reason:?}: the site's \
                 proxy fails; its probes do not count until it works again"
            ),
            Effect::Changed { transition, .. } if self.member.is_some() => {
                self.site_changed(index, slot, &transition);
            }
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
                self.post(slot, None, email, now);
            }
            Effect::SeeingAgain { blind_for } => {
                log::info!(
                    "SEEING AGAIN target={name} region={region} blind_for={}",
                    human(blind_for)
                );
            }
            Effect::Changed { transition, ended, all_regions_down } => {
                self.changed(index, slot, &transition, ended, all_regions_down, now, cover);
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
                self.post(slot, None, email, now);
            }
        }
    }

    /// A transition: its row and its email, composed first, written as one commit. In
    /// maintenance the row is marked and its notification held back (see [`Held`]).
    #[allow(clippy::too_many_arguments)]
    fn changed(
        &mut self,
        index: usize,
        slot: &Slot,
        transition: &Transition,
        ended: Option<Duration>,
        all_regions_down: Option<usize>,
        now: Timestamp,
        cover: Option<&Cover>,
    ) {
        slot.metrics.transition(transition);
        let row = NewState {
            key: new_key(),
            timestamp: transition.since,
            healthy: transition.to.is_up(),
            target: slot.target.name.clone(),
            region: slot.region.name.clone(),
            reason: transition.reasons.first().cloned(),
            maintenance: cover.map(|c| c.why.clone()),
            held: cover.is_some() && transition.notifies(),
        };
        let changes =
            self.remember(index, Change { at: transition.since, health: transition.to }, now);
        log_transition(slot, transition, ended);
        if let (Some(cover), true) = (cover, row.held) {
            log::warn!(
                "notification held back target={} region={}: in maintenance ({cover}); one \
                 summary when it is over, if the state is not as before",
                slot.target.name,
                slot.region.name
            );
            let held = self.held[index].get_or_insert_with(|| Held {
                before: transition.from,
                why: cover.why.clone(),
                during: Vec::new(),
            });
            held.during.push((transition.since, transition.to, row.reason.clone()));
        }
        if !transition.notifies() || row.held {
            self.ask(Job::Write(Write::Commit(Commit { state: Some(row), ..Commit::default() })));
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
            sites: None,
            now,
        });
        self.post(slot, Some(row), email, now);
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

    /// Writes `email` for the slot's recipients — with the transition `state` it announces, in
    /// one commit — then puts it in the outbox, from which the courier delivers it.
    /// The email goes with a copy to each of the slot's channels that carries its event (see
    /// [`channel::fan_out`]), all in the same commit.
    fn post(&mut self, slot: &Slot, state: Option<NewState>, email: Email, now: Timestamp) {
        self.post_with(slot, state, email, now, None);
    }

    /// [`StateOwner::post`], releasing the held rows of `release` in the same commit.
    fn post_with(
        &mut self,
        slot: &Slot,
        state: Option<NewState>,
        email: Email,
        now: Timestamp,
        release: Option<(String, String)>,
    ) {
        let notification = Notification {
            key: new_key(),
            target: slot.target.name.clone(),
            region: slot.region.name.clone(),
            recipients: self.recipients_of(slot).join(","),
            subject: email.subject,
            text: email.text,
            html: email.html,
            created_at: now,
        };
        let names: Vec<&str> = (self.recipients.channels.iter())
            .chain(&slot.target.channels)
            .chain(&slot.region.channels)
            .map(String::as_str)
            .collect();
        let rows = channel::fan_out(notification, &email.event, &names, &self.recipients.defined);
        let instant = Instant::now();
        let commit = Commit { state, notifications: rows.clone(), release };
        self.ask(Job::Write(Write::Commit(commit)));
        for row in rows {
            self.outbox.push(row, instant);
        }
        self.metrics.set_pending_notifications(self.outbox.len());
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

/// A slot's watch resumed from its recorded `history` (oldest first), with `remind` as this
/// mode has it, and the changes it holds; the slot's metrics resume from its last row too.
fn resume_slot(
    slot: &Slot,
    history: &[StateRow],
    remind: Option<Duration>,
    now: Timestamp,
) -> (Watch, Vec<Change>) {
    let changes: Vec<Change> = history.iter().map(StateRow::change).collect();
    let last = changes.last().map(|c| (c.health, c.at));
    if let Some((health, at)) = last {
        slot.metrics.resume(health, at);
    }
    (Watch::resume(slot.target.thresholds, last, remind, now), changes)
}

impl Held {
    /// The maintenance is over, the state now `current` (its `changes` oldest first): the
    /// transition the summary announces and the length of the period it ended, or `None` when
    /// the state is as before the maintenance (no summary). Logs which, for `target`/`region`.
    pub(super) fn over(
        &self,
        current: Option<Health>,
        changes: &[Change],
        now: Timestamp,
        target: &str,
        region: &str,
    ) -> Option<(Transition, Option<Duration>)> {
        let (Some(to), true) = (current, current != self.before) else {
            log::info!(
                "MAINTENANCE OVER target={target} region={region} ({}): the state is as before \
                 it ({}); {} transition(s) during it, no notification",
                self.why,
                current.map_or("unknown", |h| if h.is_up() { "up" } else { "down" }),
                self.during.len()
            );
            return None;
        };
        let last = changes.last().map_or(now, |c| c.at);
        let ended = (changes.len() >= 2).then(|| last.since(changes[changes.len() - 2].at));
        // The reason of the last held outage: why it is down now.
        let reasons: Vec<String> = match to {
            Health::Down => (self.during.iter().rev())
                .find(|(_, h, _)| *h == Health::Down)
                .and_then(|(_, _, r)| r.clone())
                .into_iter()
                .collect(),
            Health::Up => Vec::new(),
        };
        log::warn!(
            "MAINTENANCE OVER target={target} region={region} ({}): now {} since {last}, not as \
             before it: one notification says so",
            self.why,
            if to.is_up() { "up" } else { "down" }
        );
        Some((Transition { from: self.before, to, since: last, reasons }, ended))
    }
}

/// What maintenance held back in a slot's recorded `history` (oldest first), if a summary is
/// still owed: the held rows (`state.held`), and the state before the first of them.
pub(super) fn held_from(history: &[StateRow]) -> Option<Held> {
    let first = history.iter().position(|r| r.held)?;
    Some(Held {
        before: first.checked_sub(1).map(|i| history[i].health()),
        why: history[first].maintenance.clone().unwrap_or_else(|| "maintenance".to_owned()),
        during: (history[first..].iter())
            .filter(|r| r.held)
            .map(|r| (r.timestamp, r.health(), r.reason.clone()))
            .collect(),
    })
}

/// The region's name as subjects show it: `None` for the implicit `direct`.
fn region_label(slot: &Slot) -> Option<&str> {
    (slot.region.name != DIRECT || slot.target.regions.len() > 1)
        .then_some(slot.region.name.as_str())
}

/// Whether a probe's outcome was logged already: each probe is logged once, when it arrives
/// (with `streak=0` while the monitor waits for the database and cannot count yet) or when it
/// is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Logged {
    Not,
    Already,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, healthy: bool, held: bool) -> StateRow {
        StateRow {
            id,
            timestamp: Timestamp::from_millis(id * 1000),
            healthy,
            target: "t".into(),
            region: DIRECT.into(),
            reason: (!healthy).then(|| format!("HTTP 50{id}")),
            maintenance: held.then(|| "silence #1: deploy".into()),
            held,
        }
    }

    #[test]
    fn a_restart_knows_from_the_held_rows_whether_a_summary_is_owed_and_against_what() {
        let up = Some(Health::Up);
        let down = Some(Health::Down);
        // (rows oldest first, expected: before, number of held transitions)
        type Case = (&'static str, Vec<StateRow>, Option<(Option<Health>, usize)>);
        let cases: &[Case] = &[
            ("no history", vec![], None),
            ("nothing held", vec![row(1, true, false), row(2, false, false)], None),
            ("an outage held", vec![row(1, true, false), row(2, false, true)], Some((up, 1))),
            (
                "down, then up and down again, held",
                vec![row(1, false, false), row(2, true, true), row(3, false, true)],
                Some((down, 2)),
            ),
            ("held from the first row", vec![row(1, false, true)], Some((None, 1))),
            (
                "released rows before a new hold do not count",
                vec![row(1, true, false), row(2, false, false), row(3, true, true)],
                Some((down, 1)),
            ),
        ];
        for (name, rows, expected) in cases {
            let held = held_from(rows);
            assert_eq!(held.as_ref().map(|h| (h.before, h.during.len())), *expected, "{name}");
            if let Some(h) = held {
                assert_eq!(h.why, "silence #1: deploy", "{name}");
            }
        }
    }
}
