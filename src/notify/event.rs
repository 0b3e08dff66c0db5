//! A notification as a JSON event: what the channels beside email (a webhook, Slack, PagerDuty)
//! are sent, built from the same facts as the email by [`crate::notify::message`].
//!
//! The schema is a stable interface — receivers parse it — so it is versioned (`schema`), every
//! field is always present (`null` when it does not apply) and fields are only ever added
//! (docs/channels.md documents each one). Values are the raw facts, not the email's sentences:
//! times in RFC 3339 UTC with milliseconds, durations in whole seconds.

use serde::Serialize;
use std::time::Duration;

use crate::history::History;
use crate::notify::message::Sites;
use crate::timestamp::Timestamp;

/// The version of the schema below; a change that is not an addition gets a new one.
pub const SCHEMA: &str = "api-monitor.event.v1";

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Outage,
    Recovery,
    Reminder,
    Blind,
    MemberLost,
    MemberBack,
}

/// The kind of the event `json` (`None` for no event, e.g. an email read back from the outbox).
pub fn kind_of(json: &str) -> Option<Kind> {
    #[derive(serde::Deserialize)]
    struct Head {
        event: Kind,
    }
    serde_json::from_str::<Head>(json).ok().map(|h| h.event)
}

impl Kind {
    /// Whether this event opens a problem (an incident in PagerDuty's terms) or closes one.
    pub fn resolves(self) -> bool {
        matches!(self, Kind::Recovery | Kind::MemberBack)
    }
}

/// One event, as sent (the notification's key is added as `id` when it is delivered).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub schema: &'static str,
    pub event: Kind,
    /// The email's subject without its `[api-monitor]` tag: one line.
    pub summary: String,
    /// The target URL (password masked); `null` for member events.
    pub target: Option<String>,
    /// The region or cluster site it is seen from; `"direct"` without a proxy, `"global"` for a
    /// cluster's verdict.
    pub region: Option<String>,
    /// When the new state began (outage, recovery, blind), or the outage began (reminder).
    pub since: Option<String>,
    /// Seconds the period that just ended lasted (outage: the uptime before it; recovery: the
    /// outage), or the outage so far (reminder); `null` with no earlier record.
    pub duration_seconds: Option<u64>,
    /// Failure reasons of the probes that made the outage, oldest first (the latest for a
    /// reminder, the proxy's error for blind).
    pub reasons: Vec<String>,
    pub history: Option<HistoryFigures>,
    /// Cluster mode: how the sites see the target.
    pub sites: Option<Sites>,
    /// Member events: which member.
    pub member: Option<Member>,
    /// A summary sent when maintenance ended (the state differs from when it began): the
    /// maintenance, as logs show it (`silence #3: deploy`); `null` otherwise.
    pub maintenance: Option<String>,
    /// When the notification was composed.
    pub at: String,
}

/// The email's history block as figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryFigures {
    pub windows: Vec<Window>,
    pub mtbf_seconds: Option<u64>,
    pub mttr_seconds: Option<u64>,
    pub longest_outage_seconds: Option<u64>,
}

/// One window of the history: `24h`, `7d`, `30d`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Window {
    pub window: &'static str,
    pub outages: u32,
    pub uptime_percent: Option<f64>,
    /// How much of the window the recorded history covers.
    pub observed_seconds: u64,
}

/// A cluster member in a member event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Member {
    pub cluster: String,
    pub instance: String,
    pub site: String,
    pub last_seen: String,
}

impl Event {
    /// An event of `kind` with `summary`, composed at `at`; every other field empty.
    pub fn new(kind: Kind, summary: String, at: Timestamp) -> Event {
        Event {
            schema: SCHEMA,
            event: kind,
            summary,
            target: None,
            region: None,
            since: None,
            duration_seconds: None,
            reasons: Vec::new(),
            history: None,
            sites: None,
            member: None,
            maintenance: None,
            at: at.to_string(),
        }
    }

    /// The event as compact JSON.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `d` in whole seconds.
pub fn seconds(d: Duration) -> u64 {
    d.as_secs()
}

/// The history as figures.
pub fn figures(history: &History) -> HistoryFigures {
    HistoryFigures {
        windows: history
            .windows
            .iter()
            .map(|w| Window {
                window: w.label,
                outages: w.outages,
                uptime_percent: w.uptime_percent,
                observed_seconds: seconds(w.observed),
            })
            .collect(),
        mtbf_seconds: history.mtbf.map(seconds),
        mttr_seconds: history.mttr.map(seconds),
        longest_outage_seconds: history.longest_outage.map(seconds),
    }
}
