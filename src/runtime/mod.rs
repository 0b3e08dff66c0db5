//! The monitoring loop: tick → probe → observe → record → notify, one thread per target and
//! region, until shutdown.
//!
//! Order on a transition (the contract tests rely on): **record, then notify**. The row is
//! inserted into `state` first, then the row before it is read back to measure the period that
//! just ended, then history is loaded and the email composed. Recording first means a crash
//! after the email can never leave an outage that the database does not know about; a restart
//! resumes the detector from the last row, so it does not announce that outage again.
//!
//! The email is not sent from here: it is posted to the [`Ledger`]'s outbox and the courier
//! thread ([`crate::runtime::courier`]) delivers it, so a slow mail server never delays a probe.
//! Operational faults (database, SMTP) are logged and the loop goes on; while the database is
//! down, durations come from the last transition this process remembers. Nothing here is fatal.
//!
//! A region whose proxy fails is *blind*: its probes say nothing about the API, so they do not
//! reach the detector; the blindness is logged and mailed once per blind period.
//!
//! [`Ledger`]: crate::runtime::ledger::Ledger

pub mod courier;
pub mod ledger;
pub mod schedule;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Region, Target, DIRECT};
use crate::detector::{Detector, Health, Transition};
use crate::duration::human;
use crate::history::{self, History};
use crate::notify::mailer::Mailer;
use crate::notify::message::{self, Blindness, Email, Notice, Reminder};
use crate::probe::{Outcome, Prober};
use crate::runtime::ledger::{Recorded, SharedLedger, Unavailable};
use crate::runtime::schedule::{Shutdown, Ticker};
use crate::store::{NewNotification, NewState, StateRow};
use crate::timestamp::{Clock, Timestamp};
use crate::web::metrics::{Registry, WatchMetrics};

/// How far back the history in an email looks (its longest window).
const HISTORY_SPAN: Duration = Duration::from_secs(30 * 24 * 3600);
/// Each probe thread's stack: the loop is shallow, so a small stack keeps many targets cheap
/// (only the touched pages are ever committed).
const STACK_SIZE: usize = 256 * 1024;

/// What every loop shares. The ledger is behind one mutex: transitions are rare, so contention
/// is negligible, and one database connection keeps the footprint small.
pub struct Parts {
    /// Makes the prober of a target, given its timeout.
    pub prober: ProberFactory,
    pub ledger: SharedLedger,
    /// Recipients of every email; target and region recipients are added per email. Empty
    /// (and nothing is mailed) without SMTP.
    pub recipients: Vec<String>,
    /// Whether emails go to an SMTP server (else they are only logged).
    pub mail: bool,
    pub clock: Box<dyn Clock>,
    pub shutdown: Arc<Shutdown>,
    /// The settled state of every target/region, to tell "down from all regions".
    pub board: Board,
    /// Counters and gauges for `/metrics`, and the loops' liveness for `/healthz`.
    pub metrics: Arc<Registry>,
}

/// Builds a [`Prober`] with a given whole-request timeout.
pub type ProberFactory = Box<dyn Fn(Duration) -> Box<dyn Prober> + Send + Sync>;

/// The settled state of every (target, region) pair, shared by the loops.
#[derive(Debug, Default)]
pub struct Board {
    states: Mutex<HashMap<(String, String), Health>>,
}

impl Board {
    /// Records `health` for `target`/`region`; returns how many of `regions` now see `Down`.
    fn set(&self, target: &str, region: &str, health: Health, regions: &[String]) -> usize {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.insert((target.to_owned(), region.to_owned()), health);
        regions
            .iter()
            .filter(|r| states.get(&(target.to_owned(), (*r).clone())) == Some(&Health::Down))
            .count()
    }
}

/// Runs one loop per target and region, and the courier with `mailer`, until
/// `parts.shutdown` is triggered; then returns once every loop has finished its in-flight probe
/// and the courier its in-flight delivery and final report.
pub fn run(
    targets: &[Target],
    regions: &[Region],
    parts: Arc<Parts>,
    mut mailer: Box<dyn Mailer>,
) -> std::io::Result<()> {
    let courier = {
        let shared = Arc::clone(&parts);
        std::thread::Builder::new().name("courier".into()).stack_size(STACK_SIZE).spawn(
            move || {
                crate::runtime::courier::run(
                    &shared.ledger,
                    mailer.as_mut(),
                    &*shared.clock,
                    &shared.metrics,
                )
            },
        )?
    };
    let result = run_probes(targets, regions, &parts);
    parts.ledger.lock().close();
    parts.ledger.notify();
    if courier.join().is_err() {
        log::error!("the courier thread panicked");
    }
    result
}

fn run_probes(targets: &[Target], regions: &[Region], parts: &Arc<Parts>) -> std::io::Result<()> {
    let pairs: Vec<(usize, &Target, &Region)> = targets
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            regions.iter().filter(|r| t.regions.contains(&r.name)).map(move |r| (i, t, r))
        })
        .collect();
    let count = u32::try_from(pairs.len()).unwrap_or(u32::MAX).max(1);
    let start = Instant::now();
    let mut threads = Vec::new();
    for (n, (i, target, region)) in pairs.into_iter().enumerate() {
        // Loops start spread over one interval, so many targets never probe in one burst.
        let phase = target.interval / count * u32::try_from(n).unwrap_or(0);
        let (target, region) = (target.clone(), region.clone());
        let shared = Arc::clone(parts);
        let thread = std::thread::Builder::new()
            .name(format!("probe-{i}-{}", region.name))
            .stack_size(STACK_SIZE)
            .spawn(move || Watch::resume(target, region, &shared).run(&shared, start + phase));
        match thread {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                parts.shutdown.trigger();
                threads.into_iter().for_each(|t| drop(t.join()));
                return Err(e);
            }
        }
    }
    for thread in threads {
        if thread.join().is_err() {
            log::error!("a probe thread panicked; stopping");
            parts.shutdown.trigger();
        }
    }
    Ok(())
}

/// One target as seen from one region: its detector and what it remembers.
struct Watch {
    target: Target,
    region: Region,
    prober: Box<dyn Prober>,
    metrics: WatchMetrics,
    detector: Detector,
    /// Start of the current settled state as far as this process knows: from the last row at
    /// start, then from each transition. Used when the database cannot say.
    since: Option<Timestamp>,
    /// Since when the region's proxy has failed, while it does.
    blind_since: Option<Timestamp>,
    /// Reminder periods of the current outage already covered (reminded, or elapsed before a
    /// restart): reminder *k* is due `k × remind` after the outage began.
    reminded: u128,
    /// The latest failure reason, for reminders.
    last_reason: Option<String>,
}

impl Watch {
    /// Resumes from the last recorded row, so a restart continues the current period instead
    /// of starting a new one.
    fn resume(target: Target, region: Region, parts: &Parts) -> Self {
        let name = &region.name;
        // Registered first: a database that hangs at start shows as a stuck loop on /healthz.
        let metrics = parts.metrics.register(
            &target.name,
            name,
            target.interval,
            target.timeout,
            Instant::now(),
        );
        let last = match parts.ledger.lock().last(&target.name, name, Instant::now()) {
            Ok(last) => last,
            Err(Unavailable) => {
                log::warn!(
                    "last state unknown (database unavailable) target={} region={name}: \
                     starting without history",
                    target.name
                );
                None
            }
        };
        match &last {
            Some(row) => log::info!(
                "resuming target={} region={name} state={} since={}",
                target.name,
                if row.healthy { "up" } else { "down" },
                row.timestamp
            ),
            None => log::info!("watching target={} region={name} (no history yet)", target.name),
        }
        let health = last.as_ref().map(StateRow::health);
        if let Some(row) = &last {
            parts.board.set(&target.name, name, row.health(), &target.regions);
            metrics.resume(row.health(), row.timestamp);
        }
        let mut watch = Watch {
            prober: (parts.prober)(target.timeout),
            metrics,
            detector: Detector::resume(target.thresholds, health),
            since: last.map(|row| row.timestamp),
            blind_since: None,
            reminded: 0,
            last_reason: None,
            target,
            region,
        };
        // Reminders that fell due while the monitor was not running are not sent late.
        watch.reminded = watch.reminder_period(parts.clock.now()).unwrap_or(0);
        watch
    }

    /// The region's name as subjects show it: `None` for the implicit `direct`.
    fn region_label(&self) -> Option<&str> {
        (self.region.name != DIRECT || self.target.regions.len() > 1)
            .then_some(self.region.name.as_str())
    }

    /// Probes at a fixed rate from `first` on, until shutdown.
    fn run(mut self, parts: &Parts, first: Instant) {
        let mut ticker = Ticker::new(first, self.target.interval);
        let proxy = self.region.proxy_address();
        loop {
            if parts.shutdown.sleep_until(ticker.due()) {
                break;
            }
            let at = parts.clock.now();
            let outcome = self.prober.probe(&self.target.url, proxy.as_deref());
            self.metrics.probe(&outcome, Instant::now());
            self.watch_blindness(&outcome, at, parts);
            let transition = self.detector.observe(&outcome, at);
            self.log_probe(&outcome);
            if let Some(reason) = outcome.reason().filter(|_| !outcome.is_blind()) {
                self.last_reason = Some(reason.to_string());
            }
            if let Some(transition) = transition {
                self.handle(transition, parts);
            }
            self.remind(parts);
            ticker.advance(Instant::now());
        }
        log::debug!("stopped target={} region={}", self.target.name, self.region.name);
    }

    fn log_probe(&self, outcome: &Outcome) {
        let (name, region) = (&self.target.name, &self.region.name);
        let ms = outcome.latency().as_millis();
        match outcome {
            Outcome::Healthy { .. } => {
                log::debug!("probe ok target={name} region={region} latency_ms={ms}")
            }
            Outcome::Failed { reason, .. } => log::warn!(
                "probe failed target={name} region={region} reason={reason:?} latency_ms={ms} \
                 streak={}",
                self.detector.streak(),
                reason = reason.to_string(),
            ),
            Outcome::Blind { reason, .. } => log::debug!(
                "probe blind target={name} region={region} reason={reason:?}",
                reason = reason.to_string()
            ),
        }
    }

    /// Starts or ends a blind period; its start is logged and mailed once.
    fn watch_blindness(&mut self, outcome: &Outcome, at: Timestamp, parts: &Parts) {
        let (name, region) = (&self.target.name, &self.region.name);
        match (outcome, self.blind_since) {
            (Outcome::Blind { reason, .. }, None) => {
                let reason = &reason.to_string();
                self.blind_since = Some(at);
                log::warn!(
                    "BLIND target={name} region={region} reason={reason:?}: the region's proxy \
                     fails; its probes do not count until it works again"
                );
                let email = message::compose_blind(&Blindness {
                    target: name,
                    region,
                    since: at,
                    reason,
                    now: parts.clock.now(),
                });
                self.post(email, None, parts);
            }
            (Outcome::Blind { .. }, Some(_)) => {}
            (_, Some(since)) => {
                self.blind_since = None;
                log::info!(
                    "SEEING AGAIN target={name} region={region} blind_for={}",
                    human(at.since(since))
                );
            }
            (_, None) => {}
        }
    }

    /// How many whole reminder periods the current outage has lasted at `now`, when reminders
    /// are on and the target is down.
    fn reminder_period(&self, now: Timestamp) -> Option<u128> {
        let every = self.target.remind?.as_millis().max(1);
        match (self.detector.health(), self.since) {
            (Some(Health::Down), Some(start)) => Some(now.since(start).as_millis() / every),
            _ => None,
        }
    }

    /// Sends the reminder of the current period if it is due and not yet sent.
    fn remind(&mut self, parts: &Parts) {
        let now = parts.clock.now();
        let (Some(period), Some(since)) = (self.reminder_period(now), self.since) else {
            return;
        };
        if period <= self.reminded {
            return;
        }
        self.reminded = period;
        let down_for = now.since(since);
        log::warn!(
            "STILL DOWN target={} region={} down_for={}",
            self.target.name,
            self.region.name,
            human(down_for)
        );
        let email = message::compose_reminder(&Reminder {
            target: &self.target.name,
            region: self.region_label(),
            since,
            down_for,
            reason: self.last_reason.as_deref(),
            now,
        });
        self.post(email, None, parts);
    }

    /// Record, then notify (see the module doc).
    fn handle(&mut self, transition: Transition, parts: &Parts) {
        // First, so the metric follows the detector even while the database is down.
        self.metrics.transition(&transition);
        let now = parts.clock.now();
        let instant = Instant::now();
        let remembered = self.since.map(|start| transition.since.since(start));
        let row = NewState {
            timestamp: transition.since,
            healthy: transition.to.is_up(),
            target: self.target.name.clone(),
            region: self.region.name.clone(),
            reason: transition.reasons.first().cloned(),
        };
        let (recorded, ended, changes) = {
            let mut ledger = parts.ledger.lock();
            let recorded = ledger.record(row, instant);
            let (ended, changes) = match &recorded {
                Recorded::Written(row) => {
                    let ended = match ledger.previous(row, instant) {
                        Ok(previous) => previous.map(|p| row.timestamp.since(p.timestamp)),
                        Err(Unavailable) => remembered,
                    };
                    let from = now.minus(HISTORY_SPAN);
                    let rows = ledger.since(&self.target.name, &self.region.name, from, instant);
                    (ended, rows.iter().map(StateRow::change).collect())
                }
                Recorded::Queued { .. } => (remembered, Vec::new()),
            };
            (recorded, ended, changes)
        };
        self.since = Some(transition.since);
        self.reminded = 0;
        let down = parts.board.set(
            &self.target.name,
            &self.region.name,
            transition.to,
            &self.target.regions,
        );
        self.log_transition(&transition, ended);
        if !transition.notifies() {
            return;
        }
        let regions = self.target.regions.len();
        let all_regions_down = (regions > 1 && down == regions).then_some(regions);
        if let Some(n) = all_regions_down {
            log::error!("DOWN FROM ALL {n} REGIONS target={}", self.target.name);
        }
        let history: History = history::summarize(&changes, now);
        let email = message::compose(&Notice {
            target: &self.target.name,
            region: self.region_label(),
            transition: &transition,
            ended,
            history: &history,
            all_regions_down,
            now,
        });
        self.post(email, Some(&recorded), parts);
    }

    /// Puts `email` into the outbox for this target's and region's recipients.
    fn post(&self, email: Email, recorded: Option<&Recorded>, parts: &Parts) {
        let letter = NewNotification {
            state_id: None,
            target: self.target.name.clone(),
            region: self.region.name.clone(),
            recipients: self.recipients(parts).join(","),
            subject: email.subject,
            text: email.text,
            html: email.html,
            created_at: parts.clock.now(),
        };
        let mut ledger = parts.ledger.lock();
        ledger.post(recorded, letter, Instant::now());
        parts.metrics.set_pending_notifications(ledger.outbox().count());
        drop(ledger);
        parts.ledger.notify();
    }

    /// The global recipients, then the target's, then the region's, each once.
    fn recipients(&self, parts: &Parts) -> Vec<String> {
        if !parts.mail {
            return Vec::new();
        }
        let mut all: Vec<String> = Vec::new();
        for r in
            parts.recipients.iter().chain(&self.target.recipients).chain(&self.region.recipients)
        {
            if !all.iter().any(|seen| seen.eq_ignore_ascii_case(r)) {
                all.push(r.clone());
            }
        }
        all
    }

    fn log_transition(&self, transition: &Transition, ended: Option<Duration>) {
        let (name, region) = (&self.target.name, &self.region.name);
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
}
