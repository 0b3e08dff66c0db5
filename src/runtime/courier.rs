//! The courier: the one thread that delivers the outbox and brings the database back.
//!
//! Probe threads never talk to the mail server: they put letters into the [`Ledger`] and wake
//! the courier, so a slow or dead SMTP server can never delay a probe. The courier sends the
//! oldest due letter, and only that one (letters go out in order, so a recovery email never
//! overtakes its outage email); a failure is retried with exponential backoff (from
//! `min(interval, 5s)` up to 5 minutes), forever — a notification is never given up. While the
//! database is down, the courier is also what retries it, on its own backoff.
//!
//! When the monitor stops, the courier finishes the delivery in flight (bounded by the SMTP
//! timeout), then has the ledger report whatever is still undelivered or unwritten.

use std::time::Instant;

use crate::duration::human;
use crate::notify::mailer::Mailer;
use crate::runtime::ledger::SharedLedger;
use crate::timestamp::Clock;
use crate::web::metrics::Registry;

/// Runs until the ledger is closed (see [`crate::runtime::ledger::Ledger::close`]).
pub fn run(ledger: &SharedLedger, mailer: &mut dyn Mailer, clock: &dyn Clock, metrics: &Registry) {
    let mut guard = ledger.lock();
    metrics.set_pending_notifications(guard.outbox().count());
    while !guard.is_closing() {
        let now = Instant::now();
        guard.maintain(now);
        let Some(letter) = guard.due_letter(now) else {
            let wake = guard.next_wakeup();
            guard = ledger.wait(guard, wake);
            continue;
        };
        drop(guard);
        let to: Vec<&str> =
            letter.content.recipients.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
        let result = mailer.send(&letter.email(), &to);
        guard = ledger.lock();
        let subject = &letter.content.subject;
        match result {
            Ok(()) => {
                // Marked sent first, so the log line means "recorded as sent" too.
                guard.delivered(letter.key, clock.now(), Instant::now());
                metrics.set_pending_notifications(guard.outbox().count());
                log::info!(
                    "notification sent via={} target={} subject={subject:?} attempts={}",
                    mailer.channel(),
                    letter.content.target,
                    letter.attempts + 1
                );
            }
            Err(e) => {
                let retry = guard.failed(letter.key, &e.to_string(), Instant::now());
                log::error!(
                    "notification NOT delivered target={} subject={subject:?} attempt={} \
                     error=\"{e}\" retry_in={}",
                    letter.content.target,
                    letter.attempts + 1,
                    retry.map_or_else(|| "-".into(), human)
                );
            }
        }
    }
    guard.report_leftovers(Instant::now());
}
