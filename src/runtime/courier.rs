//! The courier: the one thread that talks to the mail server, and to the channels beside it
//! (webhook, Slack, PagerDuty: a notification addressed `channel:NAME`).
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

use crate::notify::channel::{self, Channel};
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

/// Delivers each notification received on `parcels` with `mailer`, or to its channel among
/// `channels`, reporting to `events`, until the sender is dropped. `gate` fences parcels sent
/// under a lead (cluster mode).
pub fn run(
    parcels: &Receiver<Parcel>,
    events: &Sender<Event>,
    mailer: &mut dyn Mailer,
    channels: &[Channel],
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
        if let Some(name) = channel::named(&n.recipients) {
            let mut deadline = Instant::now() + channel::DEADLINE;
            if let Some(lead) = &lead {
                deadline = deadline.min(lead.valid_until);
            }
            let event = post(&n, name, channels, deadline, clock);
            if events.send(event).is_err() {
                break;
            }
            continue;
        }
        let to: Vec<&str> =
            n.recipients.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
        let email = Email {
            subject: n.subject.clone(),
            text: n.text.clone(),
            html: n.html.clone(),
            message_id: Some(format!("<{}@api-monitor>", n.key)),
            event: String::new(),
        };
        // A leader's conversation ends with its lease, by this host's clock: the next leader
        // takes over only once the lease has expired by the database's, which is later, so a
        // leader that is merely slow never finishes an email after being replaced.
        let mut deadline = Instant::now() + SMTP_DEADLINE;
        if let Some(lead) = &lead {
            deadline = deadline.min(lead.valid_until);
        }
        let result = mailer.send(&email, &to, deadline);
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

/// Delivers the channel notification `n` to the channel `name`. A notification whose channel
/// is no longer configured (removed before a restart) is refused, and so ends dead after the
/// usual refusals, kept for `api-monitor outbox`.
fn post(
    n: &Notification,
    name: &str,
    channels: &[Channel],
    deadline: Instant,
    clock: &dyn Clock,
) -> Event {
    let failed = |error: String, permanent: bool| Event::DeliveryFailed {
        key: n.key.clone(),
        error,
        permanent,
    };
    let Some(ch) = channels.iter().find(|c| c.name == name) else {
        return failed(format!("no [[channel]] named {name:?} is configured"), true);
    };
    let body = match channel::body(ch, &n.key, &n.text) {
        Ok(body) => body,
        Err(e) => return failed(format!("channel {name}: {e}"), true),
    };
    match channel::deliver(ch, &body, deadline) {
        Ok(()) => Event::Delivered {
            key: n.key.clone(),
            at: clock.now(),
            via: ch.kind.name(),
            refused: None,
        },
        Err(e) => failed(format!("channel {name}: {e}"), e.permanent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::mailer::{AbortHandle, Accepted, MailError};
    use crate::runtime::coordinator::Lead;
    use crate::timestamp::{SystemClock, Timestamp};
    use std::sync::mpsc;

    /// Records the deadline of each conversation and accepts.
    struct Deadlines(Vec<Instant>);

    impl Mailer for Deadlines {
        fn send(
            &mut self,
            _: &Email,
            _: &[&str],
            deadline: Instant,
        ) -> Result<Accepted, MailError> {
            self.0.push(deadline);
            Ok(Accepted::default())
        }
        fn channel(&self) -> &'static str {
            "test"
        }
        fn abort_handle(&self) -> AbortHandle {
            AbortHandle::default()
        }
    }

    fn parcel(key: &str, lead: Option<Lead>) -> Parcel {
        Parcel {
            notification: Notification {
                key: key.into(),
                target: "http://t/health".into(),
                region: "direct".into(),
                recipients: "a@b.co".into(),
                subject: "s".into(),
                text: "t".into(),
                html: "h".into(),
                created_at: Timestamp::from_millis(0),
            },
            lead,
        }
    }

    #[test]
    fn a_leaders_conversation_ends_with_its_lease_and_a_single_instances_after_the_deadline() {
        let (parcels_tx, parcels) = mpsc::channel();
        let (events, events_rx) = mpsc::channel();
        let start = Instant::now();
        let lease_ends = start + Duration::from_secs(2);
        parcels_tx.send(parcel("a", Some(Lead { term: 1, valid_until: lease_ends }))).unwrap();
        parcels_tx.send(parcel("b", None)).unwrap();
        drop(parcels_tx);
        let mut mailer = Deadlines(Vec::new());
        run(&parcels, &events, &mut mailer, &[], &SystemClock, None);
        assert_eq!(mailer.0[0], lease_ends, "cut when the lease ends");
        assert!(mailer.0[1] >= start + SMTP_DEADLINE, "the whole deadline without a lease");
        assert_eq!(events_rx.try_iter().count(), 2, "both reported");
    }
}
