//! The courier: the one thread that talks to the mail server.
//!
//! Why a thread of its own: an SMTP conversation can take its whole deadline, and nothing else
//! may wait for it — not a probe, not the state owner. The state owner
//! ([`crate::runtime::state`]) decides *which* notification goes out and when (per queue, with
//! backoff); the courier only carries one at a time and reports the result back as an
//! [`Event`]. It reports acceptance as soon as the server answered the end of DATA, before the
//! polite QUIT, so the window in which a crash can repeat an email is that one round trip. It
//! owns no state: when the state owner drops its sender, the courier ends.

use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use crate::notify::mailer::Mailer;
use crate::notify::message::Email;
use crate::runtime::coordinator::{Gate, Lead};
use crate::runtime::state::Event;
use crate::store::Notification;
use crate::timestamp::Clock;

/// A notification to carry, and in cluster mode the leadership it was handed over under: the
/// courier checks that it still holds (by the clock, then in the database) right before it
/// opens the conversation, so a deposed leader sends nothing.
#[derive(Clone, Debug)]
pub struct Parcel {
    pub notification: Notification,
    pub lead: Option<Lead>,
}

/// The longest one SMTP conversation may take, connect to end of DATA, whatever the server
/// does (a tarpit that sends a line every few seconds, a trickle).
pub const SMTP_DEADLINE: Duration = Duration::from_secs(30);

/// Delivers each notification received on `parcels` with `mailer`, reporting to `events`,
/// until the sender is dropped. `gate` fences parcels sent under a lead (cluster mode).
pub fn run(
    parcels: &Receiver<Parcel>,
    events: &Sender<Event>,
    mailer: &mut dyn Mailer,
    clock: &dyn Clock,
    mut gate: Option<Gate>,
) {
    for Parcel { notification: n, lead } in parcels {
        if let (Some(lead), Some(gate)) = (&lead, gate.as_mut()) {
            if let Err(why) = gate.may_send(&n.key, lead) {
                if events.send(Event::Withheld { key: n.key.clone(), why }).is_err() {
                    break;
                }
                continue;
            }
        }
        let to: Vec<&str> =
            n.recipients.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
        let email = Email {
            subject: n.subject.clone(),
            text: n.text.clone(),
            html: n.html.clone(),
            message_id: Some(format!("<{}@api-monitor>", n.key)),
        };
        let result = mailer.send(&email, &to, Instant::now() + SMTP_DEADLINE);
        let event = match result {
            Ok(accepted) => {
                let refused: Vec<String> = accepted
                    .refused
                    .iter()
                    .map(|r| format!("{}: {}", r.address, r.answer))
                    .collect();
                Event::Delivered {
                    key: n.key.clone(),
                    at: clock.now(),
                    via: mailer.channel(),
                    refused: (!refused.is_empty()).then(|| refused.join("; ")),
                }
            }
            Err(e) => Event::DeliveryFailed {
                key: n.key.clone(),
                error: e.to_string(),
                permanent: e.is_permanent(),
            },
        };
        let accepted = matches!(event, Event::Delivered { .. });
        if events.send(event).is_err() {
            break;
        }
        if accepted {
            mailer.finish();
        }
    }
}
