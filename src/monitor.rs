//! The monitoring loop: tick → probe → observe → record → notify, one thread per target,
//! until shutdown.
//!
//! Order on a transition (the contract tests rely on): **record, then notify**. The row is
//! inserted into `state` first, then the row before it is read back to measure the period that
//! just ended, then history is loaded and the email composed and sent. Recording first means a
//! crash after the email can never leave an outage that the database does not know about; a
//! restart resumes the detector from the last row, so it does not announce that outage again.
//!
//! The email is not sent from here: it is posted to the [`Ledger`]'s outbox and the courier
//! thread ([`crate::courier`]) delivers it, so a slow mail server never delays a probe.
//! Operational faults (database, SMTP) are logged and the loop goes on; while the database is
//! down, durations come from the last transition this process remembers. Nothing here is fatal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Target;
use crate::detector::{Detector, Health, Thresholds, Transition};
use crate::duration::human;
use crate::history::{self, History};
use crate::ledger::{Recorded, SharedLedger, Unavailable};
use crate::mailer::Mailer;
use crate::message::{self, Notice};
use crate::probe::{Outcome, Prober};
use crate::schedule::{Shutdown, Ticker};
use crate::store::{NewNotification, NewState, StateRow};
use crate::timestamp::{Clock, Timestamp};

/// The region of a target probed without a proxy.
pub const DIRECT: &str = "direct";
/// How far back the history in an email looks (its longest window).
const HISTORY_SPAN: Duration = Duration::from_secs(30 * 24 * 3600);
/// Each probe thread's stack: the loop is shallow, so a small stack keeps many targets cheap.
const STACK_SIZE: usize = 512 * 1024;

/// What every target's loop shares. The ledger is behind one mutex: transitions are rare, so
/// contention is negligible, and one database connection keeps the footprint small.
pub struct Parts {
    pub prober: Box<dyn Prober>,
    pub ledger: SharedLedger,
    /// Who the notifications go to, as recorded in the outbox (`log only` without SMTP).
    pub recipients: String,
    pub clock: Box<dyn Clock>,
    pub shutdown: Arc<Shutdown>,
}

/// How every loop probes.
#[derive(Clone, Copy, Debug)]
pub struct Cadence {
    pub interval: Duration,
    pub thresholds: Thresholds,
}

/// Runs one loop per target, and the courier with `mailer`, until `parts.shutdown` is
/// triggered; then returns once every loop has finished its in-flight probe and the courier its
/// in-flight delivery and final report.
pub fn run(
    targets: &[Target],
    cadence: Cadence,
    parts: Arc<Parts>,
    mut mailer: Box<dyn Mailer>,
) -> std::io::Result<()> {
    let courier = {
        let shared = Arc::clone(&parts);
        std::thread::Builder::new()
            .name("courier".into())
            .stack_size(STACK_SIZE)
            .spawn(move || crate::courier::run(&shared.ledger, mailer.as_mut(), &*shared.clock))?
    };
    let result = run_probes(targets, cadence, &parts);
    parts.ledger.lock().close();
    parts.ledger.notify();
    if courier.join().is_err() {
        log::error!("the courier thread panicked");
    }
    result
}

fn run_probes(targets: &[Target], cadence: Cadence, parts: &Arc<Parts>) -> std::io::Result<()> {
    let mut threads = Vec::with_capacity(targets.len());
    for (i, target) in targets.iter().enumerate() {
        let target = target.clone();
        let shared = Arc::clone(parts);
        let thread =
            std::thread::Builder::new().name(format!("probe-{i}")).stack_size(STACK_SIZE).spawn(
                move || Watch::resume(target, DIRECT.to_string(), cadence, &shared).run(&shared),
            );
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
    region: String,
    cadence: Cadence,
    detector: Detector,
    /// Start of the current settled state as far as this process knows: from the last row at
    /// start, then from each transition. Used when the database cannot say.
    since: Option<Timestamp>,
}

impl Watch {
    /// Resumes from the last recorded row, so a restart continues the current period instead
    /// of starting a new one.
    fn resume(target: Target, region: String, cadence: Cadence, parts: &Parts) -> Self {
        let last = match parts.ledger.lock().last(&target.name, &region, Instant::now()) {
            Ok(last) => last,
            Err(Unavailable) => {
                log::warn!(
                    "last state unknown (database unavailable) target={} region={region}: \
                     starting without history",
                    target.name
                );
                None
            }
        };
        match &last {
            Some(row) => log::info!(
                "resuming target={} region={region} state={} since={}",
                target.name,
                if row.healthy { "up" } else { "down" },
                row.timestamp
            ),
            None => log::info!("watching target={} region={region} (no history yet)", target.name),
        }
        Watch {
            detector: Detector::resume(cadence.thresholds, last.as_ref().map(StateRow::health)),
            since: last.map(|row| row.timestamp),
            target,
            region,
            cadence,
        }
    }

    fn run(mut self, parts: &Parts) {
        let mut ticker = Ticker::new(Instant::now(), self.cadence.interval);
        loop {
            if parts.shutdown.sleep_until(ticker.due()) {
                break;
            }
            let at = parts.clock.now();
            let outcome = parts.prober.probe(&self.target.url);
            let transition = self.detector.observe(&outcome, at);
            self.log_probe(&outcome);
            if let Some(transition) = transition {
                self.handle(transition, parts);
            }
            ticker.advance(Instant::now());
        }
        log::debug!("stopped target={} region={}", self.target.name, self.region);
    }

    fn log_probe(&self, outcome: &Outcome) {
        let ms = outcome.latency().as_millis();
        match outcome {
            Outcome::Healthy { .. } => {
                log::debug!("probe ok target={} latency_ms={ms}", self.target.name)
            }
            Outcome::Failed { reason, .. } => log::warn!(
                "probe failed target={} reason={reason:?} latency_ms={ms} streak={}",
                self.target.name,
                self.detector.streak()
            ),
        }
    }

    /// Record, then notify (see the module doc).
    fn handle(&mut self, transition: Transition, parts: &Parts) {
        let now = parts.clock.now();
        let instant = Instant::now();
        let remembered = self.since.map(|start| transition.since.since(start));
        let row = NewState {
            timestamp: transition.since,
            healthy: transition.to.is_up(),
            target: self.target.name.clone(),
            region: self.region.clone(),
            reason: transition.reasons.first().cloned(),
        };
        let mut ledger = parts.ledger.lock();
        let recorded = ledger.record(row, instant);
        let (ended, changes) = match &recorded {
            Recorded::Written(row) => {
                let ended = match ledger.previous(row, instant) {
                    Ok(previous) => previous.map(|p| row.timestamp.since(p.timestamp)),
                    Err(Unavailable) => remembered,
                };
                let from = now.minus(HISTORY_SPAN);
                let rows = ledger.since(&self.target.name, &self.region, from, instant);
                (ended, rows.iter().map(StateRow::change).collect())
            }
            Recorded::Queued { .. } => (remembered, Vec::new()),
        };
        self.since = Some(transition.since);
        self.log_transition(&transition, ended);
        if !transition.notifies() {
            return;
        }
        let history: History = history::summarize(&changes, now);
        let region = (self.region != DIRECT).then_some(self.region.as_str());
        let email = message::compose(&Notice {
            target: &self.target.name,
            region,
            transition: &transition,
            ended,
            history: &history,
            now,
        });
        let letter = NewNotification {
            state_id: None,
            target: self.target.name.clone(),
            region: self.region.clone(),
            recipients: parts.recipients.clone(),
            subject: email.subject,
            text: email.text,
            html: email.html,
            created_at: now,
        };
        ledger.post(&recorded, letter, instant);
        drop(ledger);
        parts.ledger.notify();
    }

    fn log_transition(&self, transition: &Transition, ended: Option<Duration>) {
        let name = &self.target.name;
        let lasted = ended.map_or_else(|| "unknown".to_string(), human);
        match (transition.from, transition.to) {
            (_, Health::Down) => log::error!(
                "OUTAGE target={name} region={} since={} reason={:?} up_for={lasted}",
                self.region,
                transition.since,
                transition.reasons.first().map_or("", String::as_str)
            ),
            (Some(Health::Down), Health::Up) => log::info!(
                "RECOVERED target={name} region={} at={} down_for={lasted}",
                self.region,
                transition.since
            ),
            (_, Health::Up) => log::info!(
                "UP target={name} region={} since={} (first settled state, recorded)",
                self.region,
                transition.since
            ),
        }
    }
}
