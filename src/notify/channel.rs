//! The channels beside email: a generic webhook, a Slack-compatible incoming webhook and
//! PagerDuty's Events API v2. Each is named in the config file and addressed by notifications
//! as `channel:NAME` (the `recipients` of their outbox row), so they go through the same outbox
//! as email — written before they are sent, retried with backoff, dead after repeated refusals,
//! in order per target and channel — and a failing receiver holds up only its own queue.
//!
//! What is sent is decided by pure functions ([`body`], [`verdict`], [`carries`]), tested below;
//! [`deliver`] only POSTs. Every body carries the notification's key (`id`, PagerDuty's
//! `dedup_key` per target and region), so a copy sent again after a crash is recognisable, and
//! harmless to PagerDuty. URLs and routing keys are secrets (a Slack or webhook URL is a
//! credential): they never appear in a log line, an error or `Debug` output, only the channel's
//! name and host.

use std::fmt;
use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::notify::event::{self, Kind};
use crate::redact::SecretUrl;
use crate::store::{derived_key, Notification};

/// PagerDuty's Events API v2 endpoint, the default `url` of a `pagerduty` channel.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// How a channel's notification is addressed in the outbox: `channel:NAME`.
pub const PREFIX: &str = "channel:";
/// The longest one delivery may take, connect to the end of the answer.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// PagerDuty truncates a summary at 1,024 characters; we cut it ourselves, on a character.
const PAGERDUTY_SUMMARY: usize = 1024;
/// The most of a receiver's answer that is read and quoted in an error.
const ANSWER_CAP: u64 = 512;

/// What a channel speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// POST the event as JSON (docs/channels.md documents the schema).
    Webhook,
    /// POST `{"text": …}` to a Slack (or Mattermost, Rocket.Chat…) incoming webhook.
    Slack,
    /// POST an Events API v2 `trigger` on an outage, `resolve` on its recovery.
    PagerDuty,
}

impl ChannelKind {
    /// The name written in the config file and in logs.
    pub fn name(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::PagerDuty => "pagerduty",
        }
    }

    /// The kind named `name` in the config file.
    pub fn parse(name: &str) -> Option<ChannelKind> {
        [ChannelKind::Webhook, ChannelKind::Slack, ChannelKind::PagerDuty]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// A configured channel. `Debug` shows neither the URL's path nor the routing key.
#[derive(Clone, PartialEq, Eq)]
pub struct Channel {
    /// Unique among the channels; what targets, regions and logs name it by.
    pub name: String,
    pub kind: ChannelKind,
    /// Where to POST (a secret: a webhook URL is a credential).
    pub url: SecretUrl,
    /// PagerDuty's integration key (a secret); `None` for the other kinds.
    pub routing_key: Option<String>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("host", &host(self.url.expose()))
            .field("routing_key", &self.routing_key.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The outbox address of the channel named `name`.
pub fn address(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// The channel name in an outbox address, `None` for email recipients.
pub fn named(recipients: &str) -> Option<&str> {
    recipients.strip_prefix(PREFIX)
}

/// `scheme://host[:port]` of `url`, all a log line may show of a channel's URL.
pub fn host(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}", u.scheme(), u.host_str().unwrap_or("?"))
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// The outbox rows of one notification: `email` (the email's row) first, then one per channel
/// named in `names` — each once, in order — whose kind carries the event `event` (JSON),
/// addressed `channel:NAME` and holding the event. Each copy's key is derived from the email's
/// and the channel's name, so writing the same notification twice (a cluster's second leader)
/// writes no second copy either.
pub fn fan_out(
    email: Notification,
    event: &str,
    names: &[&str],
    defined: &[Channel],
) -> Vec<Notification> {
    let kind = event::kind_of(event);
    let mut rows = vec![email];
    let mut seen: Vec<&str> = Vec::new();
    for &name in names {
        let Some(channel) = defined.iter().find(|c| c.name == name) else { continue };
        if seen.contains(&name) || !kind.is_some_and(|k| carries(channel.kind, k)) {
            continue;
        }
        seen.push(name);
        let email = &rows[0];
        let copy = Notification {
            key: derived_key(&["channel", &email.key, name]),
            recipients: address(name),
            text: event.to_owned(),
            html: String::new(),
            ..email.clone()
        };
        rows.push(copy);
    }
    rows
}

/// Whether a channel of `kind` is sent events of `event`. PagerDuty gets only what opens or
/// closes an incident: it re-notifies on its own, so reminders would only add noise, and a
/// blind region has no "seeing again" event that would ever resolve its incident.
pub fn carries(kind: ChannelKind, event: Kind) -> bool {
    match kind {
        ChannelKind::Webhook | ChannelKind::Slack => true,
        ChannelKind::PagerDuty => !matches!(event, Kind::Reminder | Kind::Blind),
    }
}

/// The JSON body POSTed to `channel` for the notification `key` whose event is `event` (the
/// JSON [`crate::notify::event::Event`] stored in the outbox). An event that does not parse
/// is a bug, reported as such rather than sent.
pub fn body(channel: &Channel, key: &str, event: &str) -> Result<String, String> {
    let event: Value = serde_json::from_str(event).map_err(|e| format!("bad event JSON: {e}"))?;
    let Value::Object(fields) = &event else {
        return Err("bad event JSON: not an object".to_owned());
    };
    let text = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
    let body = match channel.kind {
        ChannelKind::Webhook => {
            let mut with_id = Map::new();
            with_id.insert("id".to_owned(), Value::from(key));
            with_id.extend(fields.clone());
            Value::Object(with_id)
        }
        ChannelKind::Slack => json!({ "text": slack_text(&event) }),
        ChannelKind::PagerDuty => {
            let kind = text("event");
            let resolves = matches!(kind.as_str(), "recovery" | "member_back");
            let dedup_key = dedup_key(&event);
            let routing_key = channel.routing_key.clone().unwrap_or_default();
            if resolves {
                json!({
                    "routing_key": routing_key,
                    "event_action": "resolve",
                    "dedup_key": dedup_key,
                })
            } else {
                let summary: String = text("summary").chars().take(PAGERDUTY_SUMMARY).collect();
                let source = event
                    .get("target")
                    .and_then(Value::as_str)
                    .or_else(|| event.pointer("/member/instance").and_then(Value::as_str))
                    .unwrap_or("api-monitor")
                    .to_owned();
                let timestamp = event
                    .get("since")
                    .and_then(Value::as_str)
                    .map_or_else(|| text("at"), str::to_owned);
                json!({
                    "routing_key": routing_key,
                    "event_action": "trigger",
                    "dedup_key": dedup_key,
                    "client": "api-monitor",
                    "payload": {
                        "summary": summary,
                        "source": source,
                        "severity": "critical",
                        "timestamp": timestamp,
                        "component": event.get("region").cloned().unwrap_or(Value::Null),
                        "group": "api-monitor",
                        "class": kind,
                        "custom_details": event.clone(),
                    },
                })
            }
        }
    };
    Ok(body.to_string())
}

/// PagerDuty's `dedup_key`: one incident per target and region (or per cluster member), so the
/// recovery resolves the outage's incident and a trigger sent twice is one incident.
fn dedup_key(event: &Value) -> String {
    let field = |pointer: &str| event.pointer(pointer).and_then(Value::as_str).unwrap_or("");
    match event.get("member") {
        Some(Value::Object(_)) => {
            format!("api-monitor/member/{}/{}", field("/member/cluster"), field("/member/instance"))
        }
        _ => format!("api-monitor/{}/{}", field("/target"), field("/region")),
    }
}

/// The Slack message: the summary in bold, then since when, the ended period and the reasons.
/// Slack's mrkdwn gives `&`, `<` and `>` meaning, so every value is escaped.
fn slack_text(event: &Value) -> String {
    let get = |name: &str| event.get(name).and_then(Value::as_str).map(escape_mrkdwn);
    let icon = match event.get("event").and_then(Value::as_str) {
        Some("recovery" | "member_back") => ":large_green_circle:",
        Some("reminder") => ":hourglass:",
        _ => ":red_circle:",
    };
    let mut lines = vec![format!("{icon} *{}*", get("summary").unwrap_or_default())];
    if let Some(since) = get("since") {
        lines.push(format!("Since: {since}"));
    }
    if let Some(seconds) = event.get("duration_seconds").and_then(Value::as_u64) {
        let ended = crate::duration::human(Duration::from_secs(seconds));
        lines.push(format!("Period that ended: {ended}"));
    }
    let reasons: Vec<String> = event
        .get("reasons")
        .and_then(Value::as_array)
        .map(|all| all.iter().filter_map(Value::as_str).map(escape_mrkdwn).collect())
        .unwrap_or_default();
    if let Some(last) = reasons.last() {
        lines.push(format!("Reason: {last}"));
    }
    lines.join("\n")
}

fn escape_mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// What a receiver's HTTP status means for the notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Try again later: the receiver is down, overloaded or rate-limiting (5xx, 408, 429).
    Retry,
    /// Refused: the request itself is wrong (a revoked URL, a bad routing key): counted towards
    /// the notification's death like an SMTP 5xx.
    Refused,
}

/// The verdict on an HTTP status.
pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Accepted,
        408 | 425 | 429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Refused,
    }
}

/// Why a delivery failed; `permanent` when the receiver refused the request itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ChannelError {
    pub message: String,
    pub permanent: bool,
}

/// POSTs `body` to `channel`, within `deadline`. The answer's first bytes are quoted in the
/// error, never the URL.
pub fn deliver(channel: &Channel, body: &str, deadline: Instant) -> Result<(), ChannelError> {
    let transient = |message: String| ChannelError { message, permanent: false };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(transient("no time left to deliver".to_owned()));
    }
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::WebPki)
        .unversioned_rustls_crypto_provider(crate::crypto::provider())
        .build();
    let agent = ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(left))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(concat!("api-monitor/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .new_agent();
    let to = host(channel.url.expose());
    let response = agent
        .post(channel.url.expose())
        .header("Content-Type", "application/json")
        .send(body)
        .map_err(|e| transient(format!("{} {to}: {}", channel.kind.name(), scrub(&e, channel))))?;
    let status = response.status().as_u16();
    let mut answer = String::new();
    let _ = response.into_body().into_reader().take(ANSWER_CAP).read_to_string(&mut answer);
    let answer: String = answer.chars().filter(|c| !c.is_control()).collect();
    match verdict(status) {
        Verdict::Accepted => Ok(()),
        v => Err(ChannelError {
            message: format!("{} {to}: HTTP {status} {}", channel.kind.name(), answer.trim()),
            permanent: v == Verdict::Refused,
        }),
    }
}

/// An HTTP client error as text without the channel's URL (ureq may quote it).
fn scrub(error: &ureq::Error, channel: &Channel) -> String {
    error.to_string().replace(channel.url.expose(), &host(channel.url.expose()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{Health, Transition};
    use crate::history::History;
    use crate::notify::message::{self, Notice};
    use crate::timestamp::Timestamp;

    fn channel(kind: ChannelKind) -> Channel {
        Channel {
            name: "ops".into(),
            kind,
            url: SecretUrl::new("https://hooks.example.com/services/T0/B0/s3cret"),
            routing_key: (kind == ChannelKind::PagerDuty).then(|| "R0UTING".to_owned()),
        }
    }

    fn event(to: Health, ended: Option<u64>) -> String {
        let transition = Transition {
            from: Some(Health::Up),
            to,
            since: Timestamp::parse_sql("2026-12-01 10:00:00.000").unwrap(),
            reasons: if to == Health::Down {
                vec!["HTTP 503".into(), "HTTP 503".into()]
            } else {
                vec![]
            },
        };
        let history = History { windows: vec![], mtbf: None, mttr: None, longest_outage: None };
        message::compose(&Notice {
            target: "https://api.example.com/health",
            region: Some("eu"),
            transition: &transition,
            ended: ended.map(Duration::from_secs),
            history: &history,
            all_regions_down: None,
            sites: None,
            now: Timestamp::parse_sql("2026-12-01 10:00:05.000").unwrap(),
        })
        .event
    }

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).expect("valid JSON")
    }

    #[test]
    fn a_webhook_gets_the_event_with_its_id() {
        let sent = parsed(
            &body(&channel(ChannelKind::Webhook), "k1", &event(Health::Down, Some(60))).unwrap(),
        );
        assert_eq!(sent["id"], "k1");
        assert_eq!(sent["schema"], "api-monitor.event.v1");
        assert_eq!(sent["event"], "outage");
        assert_eq!(sent["summary"], "OUTAGE: https://api.example.com/health is down (region eu)");
        assert_eq!(sent["target"], "https://api.example.com/health");
        assert_eq!(sent["region"], "eu");
        assert_eq!(sent["since"], "2026-12-01T10:00:00.000Z");
        assert_eq!(sent["duration_seconds"], 60);
        assert_eq!(sent["reasons"], json!(["HTTP 503", "HTTP 503"]));
        assert_eq!(sent["at"], "2026-12-01T10:00:05.000Z");
        for always in ["history", "sites", "member"] {
            assert!(sent.as_object().unwrap().contains_key(always), "{always} is always present");
        }
    }

    #[test]
    fn pagerduty_triggers_on_the_outage_and_resolves_the_same_incident_on_recovery() {
        let pd = channel(ChannelKind::PagerDuty);
        let trigger = parsed(&body(&pd, "k1", &event(Health::Down, Some(60))).unwrap());
        let resolve = parsed(&body(&pd, "k2", &event(Health::Up, Some(120))).unwrap());
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["routing_key"], "R0UTING");
        assert_eq!(trigger["payload"]["severity"], "critical");
        assert_eq!(trigger["payload"]["source"], "https://api.example.com/health");
        assert_eq!(trigger["payload"]["component"], "eu");
        assert_eq!(trigger["payload"]["timestamp"], "2026-12-01T10:00:00.000Z");
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(trigger["dedup_key"], "api-monitor/https://api.example.com/health/eu");
        assert_eq!(
            resolve["dedup_key"], trigger["dedup_key"],
            "one incident per target and region"
        );
        assert_eq!(resolve.as_object().unwrap().len(), 3, "a resolve says only which incident");
    }

    #[test]
    fn slack_gets_one_escaped_message() {
        let sent =
            parsed(&body(&channel(ChannelKind::Slack), "k", &event(Health::Down, None)).unwrap());
        assert_eq!(
            sent["text"],
            ":red_circle: *OUTAGE: https://api.example.com/health is down (region eu)*\n\
             Since: 2026-12-01T10:00:00.000Z\nReason: HTTP 503"
        );
        let mut hostile = Map::new();
        hostile.insert("summary".into(), Value::from("<!channel> & co"));
        assert_eq!(slack_text(&Value::Object(hostile)), ":red_circle: *&lt;!channel&gt; &amp; co*");
    }

    #[test]
    fn a_notification_fans_out_once_per_channel_that_carries_it() {
        let defined = [
            channel(ChannelKind::Webhook),
            Channel { name: "pd".into(), ..channel(ChannelKind::PagerDuty) },
        ];
        let email = Notification {
            key: "e1".into(),
            target: "https://api.example.com/health".into(),
            region: "eu".into(),
            recipients: "a@b.co".into(),
            subject: "[api-monitor] OUTAGE".into(),
            text: "text".into(),
            html: "<p>html</p>".into(),
            created_at: Timestamp::from_millis(0),
        };
        let outage = event(Health::Down, None);
        let rows = fan_out(email.clone(), &outage, &["ops", "pd", "ops", "unknown"], &defined);
        let to: Vec<&str> = rows.iter().map(|r| r.recipients.as_str()).collect();
        assert_eq!(to, ["a@b.co", "channel:ops", "channel:pd"], "each channel once, email first");
        assert_eq!(rows[0], email, "the email's row as it was");
        for copy in &rows[1..] {
            assert_eq!((copy.text.as_str(), copy.html.as_str()), (outage.as_str(), ""));
            assert_eq!(
                (&copy.target, &copy.region, &copy.subject),
                (&email.target, &email.region, &email.subject)
            );
            assert_eq!(copy.key.len(), 32);
        }
        assert_ne!(rows[1].key, rows[2].key);
        let again = fan_out(email.clone(), &outage, &["ops", "pd"], &defined);
        assert_eq!(again, rows, "the same notification fans out to the same keys");

        let reminder = r#"{"event":"reminder"}"#;
        let to: Vec<String> = fan_out(email.clone(), reminder, &["ops", "pd"], &defined)
            .into_iter()
            .map(|r| r.recipients)
            .collect();
        assert_eq!(to, ["a@b.co", "channel:ops"], "PagerDuty gets no reminder");
        assert_eq!(fan_out(email, "", &["ops"], &defined).len(), 1, "no event, no copy");
    }

    #[test]
    fn which_events_each_kind_carries() {
        for kind in [Kind::Outage, Kind::Recovery, Kind::Reminder, Kind::Blind, Kind::MemberLost] {
            assert!(
                carries(ChannelKind::Webhook, kind) && carries(ChannelKind::Slack, kind),
                "{kind:?}"
            );
        }
        assert!(
            carries(ChannelKind::PagerDuty, Kind::Outage)
                && carries(ChannelKind::PagerDuty, Kind::Recovery)
        );
        assert!(
            !carries(ChannelKind::PagerDuty, Kind::Reminder)
                && !carries(ChannelKind::PagerDuty, Kind::Blind)
        );
    }

    #[test]
    fn statuses_are_accepted_retried_or_refused() {
        let cases = [
            (200, Verdict::Accepted),
            (202, Verdict::Accepted),
            (204, Verdict::Accepted),
            (301, Verdict::Refused),
            (400, Verdict::Refused),
            (403, Verdict::Refused),
            (404, Verdict::Refused),
            (408, Verdict::Retry),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (503, Verdict::Retry),
        ];
        for (status, expected) in cases {
            assert_eq!(verdict(status), expected, "{status}");
        }
    }

    #[test]
    fn nothing_shows_the_url_path_or_the_routing_key() {
        let shown = format!("{:?}", channel(ChannelKind::PagerDuty));
        assert!(!shown.contains("s3cret") && !shown.contains("R0UTING"), "{shown}");
        assert!(shown.contains("https://hooks.example.com"), "{shown}");
    }

    #[test]
    fn a_receiver_that_refuses_or_fails_is_told_apart() {
        let mut server = mockito::Server::new();
        let base = server.url();
        let ch = |path: &str| Channel {
            url: SecretUrl::new(format!("{base}{path}")),
            ..channel(ChannelKind::Webhook)
        };
        let ok = server
            .mock("POST", "/ok")
            .match_header("content-type", "application/json")
            .with_status(204)
            .create();
        server.mock("POST", "/gone").with_status(404).with_body("no such hook").create();
        server.mock("POST", "/busy").with_status(503).create();
        let deadline = || Instant::now() + DEADLINE;
        assert_eq!(deliver(&ch("/ok"), "{}", deadline()), Ok(()));
        ok.assert();
        let gone = deliver(&ch("/gone"), "{}", deadline()).unwrap_err();
        assert!(gone.permanent && gone.message.ends_with("HTTP 404 no such hook"), "{gone:?}");
        assert!(!gone.message.contains("/gone"), "no path in errors: {gone:?}");
        let busy = deliver(&ch("/busy"), "{}", deadline()).unwrap_err();
        assert!(!busy.permanent, "{busy:?}");
    }
}
