//! The courier: the one thread that talks to the mail server.
//!
//! Why a thread of its own: an SMTP conversation can take its whole timeout, and nothing else
//! may wait for it — not a probe, not the state owner. The state owner
//! ([`crate::runtime::state`]) decides *which* notification goes out and when (in order, with
//! backoff); the courier only carries one at a time and reports the result back as an
//! [`Event`]. It owns no state: when the state owner drops its sender, the courier ends.

use std::sync::mpsc::{Receiver, Sender};

use crate::notify::mailer::{Mailer, SMTP_TIMEOUT};
use crate::runtime::ledger::Letter;
use crate::runtime::state::Event;
use crate::timestamp::Clock;

/// Delivers each letter (an outbox entry) received on `letters` with `mailer`, reporting to `events`,
/// until the sender is dropped.
pub fn run(
    letters: &Receiver<Letter>,
    events: &Sender<Event>,
    mailer: &mut dyn Mailer,
    clock: &dyn Clock,
) {
    for letter in letters {
        let content = &letter.content;
        let to: Vec<&str> =
            content.recipients.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
        let deadline = std::time::Instant::now() + SMTP_TIMEOUT;
        let event = match mailer.send(&letter.email(), &to, deadline) {
            Ok(_) => Event::Delivered { key: letter.key, at: clock.now(), via: mailer.channel() },
            Err(e) => Event::DeliveryFailed { key: letter.key, error: e.to_string() },
        };
        let sent = events.send(event);
        mailer.finish();
        if sent.is_err() {
            break;
        }
    }
}
