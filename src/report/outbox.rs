//! `api-monitor outbox`: the notifications not yet delivered, and the dead ones, as text.
//!
//! Why a command of its own: a notification the mail server refused for good leaves the queue
//! (so it cannot block the others) and is logged once; an operator needs to find it again,
//! see why it died and send it again once the cause is fixed (`--requeue`).

use std::fmt::Write as _;

use super::{escape, seconds};
use crate::store::OutboxEntry;

/// Both lists, each with a heading and a count, oldest first. Ends with a newline.
pub fn outbox(pending: &[OutboxEntry], dead: &[OutboxEntry]) -> String {
    let mut out = String::new();
    section(&mut out, "PENDING: not yet accepted by the mail server", pending);
    out.push('\n');
    section(
        &mut out,
        "DEAD: refused for good; `api-monitor outbox --requeue ID|all` sends them again",
        dead,
    );
    out
}

fn section(out: &mut String, heading: &str, entries: &[OutboxEntry]) {
    // Writing into a `String` cannot fail.
    let _ = writeln!(out, "{heading} ({})", entries.len());
    for e in entries {
        let n = &e.notification;
        let _ = writeln!(
            out,
            "  #{}  {}  attempts {}  {} from {}  to {}",
            e.id,
            seconds(n.created_at),
            e.attempts,
            escape(&n.target),
            escape(&n.region),
            if n.recipients.is_empty() { "(log only)".into() } else { escape(&n.recipients) },
        );
        let _ = writeln!(out, "      subject: {}", escape(&n.subject));
        if let Some(error) = &e.last_error {
            let _ = writeln!(out, "      last error: {}", escape(error));
        }
        if let Some(refused) = &e.refused {
            let _ = writeln!(out, "      refused recipients: {}", escape(refused));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Delivery, Notification};
    use crate::timestamp::Timestamp;

    fn entry(id: i64, delivery: Delivery, error: Option<&str>) -> OutboxEntry {
        OutboxEntry {
            id,
            notification: Notification {
                key: format!("k{id}"),
                target: "https://api.example/health".into(),
                region: "direct".into(),
                recipients: "oncall@example.com".into(),
                subject: "[api-monitor] OUTAGE\u{1b}[2J".into(),
                text: String::new(),
                html: String::new(),
                created_at: Timestamp::from_millis(1_795_000_000_123),
            },
            delivery,
            attempts: 3,
            last_error: error.map(Into::into),
            refused: None,
        }
    }

    #[test]
    fn lists_both_sections_with_counts_and_escapes_recorded_text() {
        let text = outbox(
            &[entry(12, Delivery::Pending, Some("451 try later"))],
            &[entry(9, Delivery::Dead, Some("550 5.7.1 relaying denied"))],
        );
        assert_eq!(
            text,
            "PENDING: not yet accepted by the mail server (1)\n\
             \x20 #12  2026-11-18T11:06:40Z  attempts 3  https://api.example/health from direct  \
             to oncall@example.com\n\
             \x20     subject: [api-monitor] OUTAGE\\u{1b}[2J\n\
             \x20     last error: 451 try later\n\
             \n\
             DEAD: refused for good; `api-monitor outbox --requeue ID|all` sends them again (1)\n\
             \x20 #9  2026-11-18T11:06:40Z  attempts 3  https://api.example/health from direct  \
             to oncall@example.com\n\
             \x20     subject: [api-monitor] OUTAGE\\u{1b}[2J\n\
             \x20     last error: 550 5.7.1 relaying denied\n"
        );
        assert_eq!(outbox(&[], &[]).lines().count(), 3, "empty sections still say so");
    }
}
