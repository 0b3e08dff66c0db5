//! Email composition: a transition and its history become the outage or recovery email.
//!
//! This is what support actually reads, so it is kept pure and tested to the exact text: no
//! clock (the caller passes `now`), no SMTP (the mailer only delivers an [`Email`]). The content
//! is assembled once and rendered twice, as plain text and as an HTML alternative, so the two
//! parts cannot drift apart.
//!
//! Everything interpolated may come from outside — the target URL from the operator, failure
//! reasons from a possibly hostile endpoint — so every value is reduced to one line of printable
//! text before use, and HTML-escaped in the HTML part. A value can therefore neither inject a
//! mail header through the subject nor markup through the HTML.

use std::fmt::Write as _;
use std::time::Duration;

use crate::detector::{Health, Transition};
use crate::duration::human;
use crate::history::{History, WindowStats};
use crate::notify::event::{self, Event, Kind};
use crate::timestamp::Timestamp;

/// A composed notification, ready for any mailer (or the log when none is configured).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    /// One line: never contains CR, LF or any other control character.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML alternative: the same content, every value escaped, inline styles only.
    pub html: String,
    /// A stable `Message-ID` (`<KEY@api-monitor>`, from the notification's key), so a copy
    /// sent again after a crash is the same message to the receiving side, which may drop it;
    /// `None`: the mailer makes one up.
    pub message_id: Option<String>,
    /// The same notification as a JSON [`Event`], for the channels beside email (webhook,
    /// Slack, PagerDuty); empty where only the email matters (a notification read back from
    /// the outbox).
    pub event: String,
}

/// Everything an email says, gathered by the monitor after the transition is recorded.
#[derive(Clone, Copy, Debug)]
pub struct Notice<'a> {
    /// The target URL, already redacted by the caller (no password).
    pub target: &'a str,
    /// The region the target is probed from; `None` for direct probing (no suffix).
    pub region: Option<&'a str>,
    pub transition: &'a Transition,
    /// Length of the period that just ended (the uptime before an outage, the outage before a
    /// recovery); `None` when there is no earlier record.
    pub ended: Option<Duration>,
    pub history: &'a History,
    /// For an outage seen from several regions: `Some(n)` when it is now down from all `n`.
    pub all_regions_down: Option<usize>,
    /// In cluster mode, how the sites see the target (the quorum's verdict).
    pub sites: Option<&'a Sites>,
    /// When the email is composed.
    pub now: Timestamp,
}

/// How the sites of a cluster see a target when the leader announces its global state.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sites {
    /// The sites that see it down, sorted.
    pub down: Vec<String>,
    /// The quorum applied, and how many sites are live.
    pub quorum: usize,
    pub live: usize,
    /// Sites that probe it but have no live member, sorted.
    pub missing: Vec<String>,
}

/// A member of the cluster stopped reporting, or reports again.
#[derive(Clone, Copy, Debug)]
pub struct MemberNotice<'a> {
    pub cluster: &'a str,
    pub instance: &'a str,
    pub site: &'a str,
    /// Its last heartbeat, by the database's clock.
    pub last_seen: Timestamp,
    /// `false`: it stopped reporting; `true`: it reports again.
    pub back: bool,
    /// The live members left in its site (after a loss) or now (after a return).
    pub site_members: usize,
    /// Sites with no live member now, sorted.
    pub missing_sites: &'a [String],
    pub now: Timestamp,
}

/// The email about a member that stopped reporting (`MEMBER LOST`) or is back (`MEMBER BACK`).
pub fn compose_member(m: &MemberNotice) -> Email {
    let instance = one_line(m.instance);
    let site = one_line(m.site);
    let cluster = one_line(m.cluster);
    let (health, headline, ended) = if m.back {
        (
            Health::Up,
            format!("MEMBER BACK: instance {instance} in site {site} reports again"),
            format!(
                "Instance {instance} of cluster {cluster} heartbeats again; its site has {} live \
                 member(s) and shares its targets among them.",
                m.site_members
            ),
        )
    } else {
        let left = if m.site_members == 0 {
            format!(
                "Site {site} has no live member left: it no longer probes, and the quorum counts \
                 the sites left."
            )
        } else {
            format!(
                "Its targets moved to the {} other live member(s) of site {site}.",
                m.site_members
            )
        };
        (
            Health::Down,
            format!("MEMBER LOST: instance {instance} in site {site} stopped reporting"),
            format!(
                "Instance {instance} of cluster {cluster} has not heart-beaten for a lease (last \
                 seen {}). {left}",
                m.last_seen
            ),
        )
    };
    let mut facts = vec![
        ("Cluster", cluster.clone()),
        ("Instance", instance.clone()),
        ("Site", site.clone()),
        ("Last seen", m.last_seen.to_string()),
    ];
    if !m.missing_sites.is_empty() {
        facts.push(("Sites not reporting", m.missing_sites.join(", ")));
    }
    let kind = if m.back { Kind::MemberBack } else { Kind::MemberLost };
    let mut event = Event::new(kind, headline.clone(), m.now);
    event.member = Some(event::Member {
        cluster: cluster.clone(),
        instance: instance.clone(),
        site: site.clone(),
        last_seen: m.last_seen.to_string(),
    });
    event.region = Some(site.clone());
    if !m.missing_sites.is_empty() {
        event.sites = Some(Sites { missing: m.missing_sites.to_vec(), ..Sites::default() });
    }
    let content = Content {
        health,
        headline,
        facts,
        reasons: None,
        ended,
        history: Vec::new(),
        footer: format!("Composed by api-monitor at {}.", m.now),
    };
    render(content, &event)
}

/// A reminder that an outage goes on (`--remind`).
#[derive(Clone, Copy, Debug)]
pub struct Reminder<'a> {
    pub target: &'a str,
    pub region: Option<&'a str>,
    /// When the outage began.
    pub since: Timestamp,
    /// How long it has lasted so far.
    pub down_for: Duration,
    /// The latest failure reason.
    pub reason: Option<&'a str>,
    pub now: Timestamp,
}

/// A region whose proxy fails: the API cannot be watched from there.
#[derive(Clone, Copy, Debug)]
pub struct Blindness<'a> {
    pub target: &'a str,
    pub region: &'a str,
    pub since: Timestamp,
    /// Why the proxy failed.
    pub reason: &'a str,
    pub now: Timestamp,
}

/// `[api-monitor] STILL DOWN: <url> has been down for <duration>` (+ region suffix).
pub fn compose_reminder(r: &Reminder) -> Email {
    let target = one_line(r.target);
    let region = r.region.map(one_line);
    let suffix = region.as_ref().map_or(String::new(), |r| format!(" (region {r})"));
    let mut facts = vec![("Target", target.clone())];
    if let Some(region) = region {
        facts.push(("Region", region));
    }
    facts.push(("Down since", r.since.to_string()));
    let headline = format!("STILL DOWN: {target} has been down for {}{suffix}", human(r.down_for));
    let mut event = Event::new(Kind::Reminder, headline.clone(), r.now);
    event.target = Some(target.clone());
    event.region = Some(r.region.map_or_else(|| DIRECT.to_owned(), one_line));
    event.since = Some(r.since.to_string());
    event.duration_seconds = Some(event::seconds(r.down_for));
    event.reasons = r.reason.map(one_line).into_iter().collect();
    let content = Content {
        health: Health::Down,
        headline,
        facts,
        reasons: r.reason.map(|reason| vec![format!("latest: {}", one_line(reason))]),
        ended: "This is a reminder: the outage is not over. You will get another one every reminder interval until it is."
            .to_owned(),
        history: Vec::new(),
        footer: format!("Composed by api-monitor at {}.", r.now),
    };
    render(content, &event)
}

/// `[api-monitor] BLIND: region <name> cannot probe <url>`.
pub fn compose_blind(b: &Blindness) -> Email {
    let target = one_line(b.target);
    let region = one_line(b.region);
    let headline = format!("BLIND: region {region} cannot probe {target}");
    let mut event = Event::new(Kind::Blind, headline.clone(), b.now);
    event.target = Some(target.clone());
    event.region = Some(region.clone());
    event.since = Some(b.since.to_string());
    event.reasons = vec![one_line(b.reason)];
    let content = Content {
        health: Health::Down,
        headline,
        facts: vec![
            ("Target", target),
            ("Region", region),
            ("Blind since", b.since.to_string()),
            ("Proxy error", one_line(b.reason)),
        ],
        reasons: None,
        ended: "The proxy of this region fails, so outages of the API are not detected from \
                this region until it works again. This is not an outage of the API."
            .to_owned(),
        history: Vec::new(),
        footer: format!("Composed by api-monitor at {}.", b.now),
    };
    render(content, &event)
}

/// The region name the events give direct probing (no proxy).
const DIRECT: &str = "direct";

fn render(content: Content, event: &Event) -> Email {
    Email {
        subject: one_line(&format!("[api-monitor] {}", content.headline)),
        text: content.text(),
        html: content.html(),
        message_id: None,
        event: event.to_json(),
    }
}

/// Composes the email for `notice`: an outage when the transition goes to `Down`, a recovery
/// when it goes to `Up`. Subjects are fixed texts other tests and mail filters rely on:
///
/// - `[api-monitor] OUTAGE: <url> is down`
/// - `[api-monitor] RECOVERED: <url> is up after <duration>` (`is up again` without `ended`)
///
/// each followed by ` (region <name>)` when a region is set.
pub fn compose(notice: &Notice) -> Email {
    let content = Content::of(notice);
    let event = event_of(notice, content.headline.clone());
    render(content, &event)
}

/// The event of `notice`, with `summary`.
fn event_of(notice: &Notice, summary: String) -> Event {
    let kind = match notice.transition.to {
        Health::Down => Kind::Outage,
        Health::Up => Kind::Recovery,
    };
    let mut event = Event::new(kind, summary, notice.now);
    event.target = Some(one_line(notice.target));
    event.region = Some(notice.region.map_or_else(|| DIRECT.to_owned(), one_line));
    event.since = Some(notice.transition.since.to_string());
    event.duration_seconds = notice.ended.map(event::seconds);
    event.reasons = notice.transition.reasons.iter().map(|r| one_line(r)).collect();
    event.history = Some(event::figures(notice.history));
    event.sites = notice.sites.cloned();
    event
}

/// What a summary after maintenance adds to the outage or recovery email it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfterMaintenance<'a> {
    /// The maintenance, as logs show it (`silence #3: deploy`).
    pub why: &'a str,
    /// The state changes while it lasted, oldest first (with their first reason, for downs).
    pub during: &'a [(Timestamp, Health, Option<String>)],
}

/// The email for `notice` when it closes a maintenance that held back notifications: the
/// outage or recovery it amounts to (how the state differs from before the maintenance), the
/// subject marked `(after maintenance)`, and what happened during it.
pub fn compose_after_maintenance(notice: &Notice, after: &AfterMaintenance) -> Email {
    let mut content = Content::of(notice);
    content.headline.push_str(" (after maintenance)");
    content.facts.push(("Maintenance", one_line(after.why)));
    let during: Vec<String> = after
        .during
        .iter()
        .map(|(at, health, reason)| match (health, reason) {
            (Health::Down, Some(reason)) => format!("down at {at} ({})", one_line(reason)),
            (Health::Down, None) => format!("down at {at}"),
            (Health::Up, _) => format!("up at {at}"),
        })
        .collect();
    if !during.is_empty() {
        content.facts.push(("During it", during.join(", ")));
    }
    content.ended = format!(
        "{} Notifications were held back during the maintenance; this one says how it left the \
         target.",
        content.ended
    );
    let mut event = event_of(notice, content.headline.clone());
    event.maintenance = Some(one_line(after.why));
    render(content, &event)
}

/// What both parts of an email say, every value already reduced to [`one_line`] text.
struct Content {
    health: Health,
    /// The subject without its `[api-monitor]` tag.
    headline: String,
    /// `(label, value)` lines: target, region, since when.
    facts: Vec<(&'static str, String)>,
    /// For an outage: each distinct failure reason with its count, in order of first appearance.
    reasons: Option<Vec<String>>,
    /// The sentence about the period that just ended.
    ended: String,
    /// `(label, value)` rows of the history block.
    history: Vec<(String, String)>,
    footer: String,
}

impl Content {
    fn of(notice: &Notice) -> Content {
        let target = one_line(notice.target);
        let region = notice.region.map(one_line);
        let suffix = region.as_ref().map_or(String::new(), |r| format!(" (region {r})"));
        let health = notice.transition.to;
        let since = notice.transition.since.to_string();

        let (headline, since_label, reasons, ended) = match health {
            Health::Down => (
                format!("OUTAGE: {target} is down{suffix}"),
                "Down since",
                Some(count_reasons(&notice.transition.reasons)),
                notice.ended.map(|d| format!("It had been up for {}.", human(d))),
            ),
            Health::Up => (
                match notice.ended {
                    Some(d) => format!("RECOVERED: {target} is up after {}{suffix}", human(d)),
                    None => format!("RECOVERED: {target} is up again{suffix}"),
                },
                "Up since",
                None,
                notice.ended.map(|d| format!("It was down for {}.", human(d))),
            ),
        };
        let ended = ended.unwrap_or_else(|| {
            "There is no earlier record of this target: this is its first observation.".to_owned()
        });

        let mut facts = vec![("Target", target)];
        if let Some(region) = region {
            facts.push(("Region", region));
        }
        facts.push((since_label, since));
        if let (Health::Down, Some(n)) = (health, notice.all_regions_down) {
            facts.push(("Scope", format!("down from all {n} regions")));
        }
        if let Some(sites) = notice.sites {
            if !sites.down.is_empty() {
                facts.push(("Seen down from", one_line(&sites.down.join(", "))));
            }
            facts.push(("Quorum", format!("{} of {} live site(s)", sites.quorum, sites.live)));
            if !sites.missing.is_empty() {
                facts.push(("Sites not reporting", one_line(&sites.missing.join(", "))));
            }
        }

        Content {
            health,
            headline,
            facts,
            reasons,
            ended,
            history: history_rows(notice.history, notice.now),
            footer: format!("Composed by api-monitor at {}.", notice.now),
        }
    }

    fn text(&self) -> String {
        let mut out = format!("{}\n\n", self.headline);
        let width = self.facts.iter().map(|(label, _)| label.len() + 1).max().unwrap_or(0);
        for (label, value) in &self.facts {
            let _ = writeln!(out, "{:<width$} {value}", format!("{label}:"));
        }
        if let Some(reasons) = &self.reasons {
            out.push_str("\nFailing probes:\n");
            for reason in reasons {
                let _ = writeln!(out, "- {reason}");
            }
        }
        let _ = writeln!(out, "\n{}", self.ended);
        if !self.history.is_empty() {
            out.push_str("\nHistory:\n");
        }
        for (label, value) in &self.history {
            let _ = writeln!(out, "{label}: {value}");
        }
        let _ = writeln!(out, "\n{}", self.footer);
        out
    }

    fn html(&self) -> String {
        let color = match self.health {
            Health::Down => "#b00020",
            Health::Up => "#1b7f3b",
        };
        let cell = "padding:2px 12px 2px 0;text-align:left;vertical-align:top";
        let mut out = String::from(
            "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"></head>\n<body style=\"font-family:Arial,Helvetica,sans-serif;\
             font-size:14px;line-height:1.4;color:#222222\">\n",
        );
        let _ = writeln!(
            out,
            "<h1 style=\"font-size:18px;margin:0 0 12px 0;color:{color}\">{}</h1>",
            escape(&self.headline)
        );
        out.push_str("<p style=\"margin:0 0 12px 0\">");
        let facts: Vec<String> = self
            .facts
            .iter()
            .map(|(label, value)| format!("<strong>{label}:</strong> {}", escape(value)))
            .collect();
        out.push_str(&facts.join("<br>\n"));
        out.push_str("</p>\n");
        if let Some(reasons) = &self.reasons {
            out.push_str("<h2 style=\"font-size:15px;margin:16px 0 4px 0\">Failing probes</h2>\n");
            out.push_str("<ul style=\"margin:0;padding-left:20px\">\n");
            for reason in reasons {
                let _ = writeln!(out, "<li>{}</li>", escape(reason));
            }
            out.push_str("</ul>\n");
        }
        let _ = writeln!(out, "<p style=\"margin:12px 0\">{}</p>", escape(&self.ended));
        if !self.history.is_empty() {
            out.push_str("<h2 style=\"font-size:15px;margin:16px 0 4px 0\">History</h2>\n");
            out.push_str("<table style=\"border-collapse:collapse\">\n");
        }
        for (label, value) in &self.history {
            let _ = writeln!(
                out,
                "<tr><th scope=\"row\" style=\"{cell};font-weight:normal;color:#555555\">{}</th>\
                 <td style=\"{cell}\">{}</td></tr>",
                escape(label),
                escape(value)
            );
        }
        if !self.history.is_empty() {
            out.push_str("</table>\n");
        }
        let _ = writeln!(
            out,
            "<p style=\"margin:16px 0 0 0;font-size:12px;color:#777777\">{}</p>",
            escape(&self.footer)
        );
        out.push_str("</body>\n</html>\n");
        out
    }
}

/// Each distinct reason with its count, in order of first appearance: `HTTP 503 (2×)`.
fn count_reasons(reasons: &[String]) -> Vec<String> {
    let mut counted: Vec<(String, usize)> = Vec::new();
    for reason in reasons {
        let reason = one_line(reason);
        match counted.iter_mut().find(|(seen, _)| *seen == reason) {
            Some((_, count)) => *count += 1,
            None => counted.push((reason, 1)),
        }
    }
    if counted.is_empty() {
        return vec!["no failure reason was recorded".to_owned()];
    }
    counted.into_iter().map(|(reason, count)| format!("{reason} ({count}×)")).collect()
}

/// The history block: one row per window the history covers, then MTBF, MTTR and the longest
/// outage. A window is named for what its figures really cover: `last 7d` when the history
/// covers all of it, else `since 14:42 UTC today (5s of data)`, and no longer window follows
/// (it would repeat the same figures, see [`History::covered`]).
fn history_rows(history: &History, now: Timestamp) -> Vec<(String, String)> {
    let duration = |d: Option<Duration>| d.map_or_else(|| "n/a".to_owned(), human);
    let mut rows: Vec<(String, String)> = history
        .covered()
        .iter()
        .map(|w| {
            let noun = if w.outages == 1 { "outage" } else { "outages" };
            let uptime = w.uptime_percent.map_or_else(|| "n/a".to_owned(), percent);
            (window_name(w, now), format!("{} {noun}, uptime {uptime}", w.outages))
        })
        .collect();
    rows.push(("mean time between outages".to_owned(), duration(history.mtbf)));
    rows.push(("mean time to recovery".to_owned(), duration(history.mttr)));
    rows.push(("longest outage".to_owned(), duration(history.longest_outage)));
    rows
}

/// How a window is named in the history block: `last 24h` when the history covers it whole,
/// else from when the data really goes: `since 14:42 UTC today (5s of data)`, or
/// `since 2026-11-22 10:15 UTC (3d 4h of data)` on an earlier day.
fn window_name(w: &WindowStats, now: Timestamp) -> String {
    if w.is_whole() {
        return format!("last {}", w.label);
    }
    format!("since {} ({} of data)", minute_of(w.data_from(now), now), human(w.observed))
}

/// `14:42 UTC today` when `t` is on `now`'s UTC day, else `2026-11-22 10:15 UTC`.
fn minute_of(t: Timestamp, now: Timestamp) -> String {
    let (sql, today) = (t.to_sql(), now.to_sql());
    let (day, time) = (sql.get(..10).unwrap_or(&sql), sql.get(11..16).unwrap_or_default());
    if today.starts_with(day) {
        format!("{time} UTC today")
    } else {
        format!("{day} {time} UTC")
    }
}

/// An uptime with two decimals, `99.93%`. Rounding never reaches a bound the data did not: any
/// downtime shows at most `99.99%`, any uptime at least `0.01%`, so "100.00%" means no outage.
pub(crate) fn percent(p: f64) -> String {
    let shown = format!("{p:.2}");
    if shown == "100.00" && p < 100.0 {
        "99.99%".to_owned()
    } else if shown == "0.00" && p > 0.0 {
        "0.01%".to_owned()
    } else {
        format!("{shown}%")
    }
}

/// `text` as one line of printable text: control characters (CR, LF, TAB, NUL, DEL, C1),
/// Unicode line/paragraph separators and bidirectional overrides are removed. Applied to every
/// interpolated value, and to the whole subject, so nothing can start a new header or line.
fn one_line(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            !(c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}')
                || matches!(c, '\u{2066}'..='\u{2069}'))
        })
        .collect()
}

/// `text` safe inside HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60;
    const HOUR: u64 = 3_600;
    const DAY: u64 = 86_400;

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse_sql(text).expect("valid fixture timestamp")
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn window(label: &'static str, days: u64, outages: u32, uptime: Option<f64>) -> WindowStats {
        let span = secs(days * DAY);
        WindowStats { label, span, outages, uptime_percent: uptime, observed: span }
    }

    fn history() -> History {
        History {
            windows: vec![
                window("24h", 1, 1, Some(99.93)),
                window("7d", 7, 2, Some(99.98)),
                window("30d", 30, 2, Some(99.9999)),
            ],
            mtbf: Some(secs(3 * DAY + 4 * HOUR + 59 * MIN)),
            mttr: Some(secs(2 * MIN + 10)),
            longest_outage: Some(secs(HOUR + 5 * MIN + 30)),
        }
    }

    fn outage() -> Transition {
        Transition {
            from: Some(Health::Up),
            to: Health::Down,
            since: ts("2026-11-25 14:42:00.123"),
            reasons: vec!["HTTP 503".into(), "timeout after 5s".into(), "HTTP 503".into()],
        }
    }

    fn recovery() -> Transition {
        Transition {
            from: Some(Health::Down),
            to: Health::Up,
            since: ts("2026-11-25 14:44:10.123"),
            reasons: vec![],
        }
    }

    fn notice<'a>(transition: &'a Transition, history: &'a History) -> Notice<'a> {
        Notice {
            target: "https://api.example.com/health",
            region: None,
            transition,
            ended: Some(secs(3 * DAY + 4 * HOUR + 12 * MIN)),
            history,
            all_regions_down: None,
            sites: None,
            now: ts("2026-11-25 14:42:07.500"),
        }
    }

    #[test]
    fn the_summary_after_maintenance_is_the_outage_it_amounts_to_with_what_happened() {
        let h = history();
        let during = [
            (ts("2026-11-25 14:40:00.000"), Health::Down, Some("HTTP 503\r\nBcc: x".to_owned())),
            (ts("2026-11-25 14:41:00.000"), Health::Up, None),
            (ts("2026-11-25 14:42:00.123"), Health::Down, Some("timeout after 5s".to_owned())),
        ];
        let after = AfterMaintenance { why: "silence #3: deploy <b>", during: &during };
        let email = compose_after_maintenance(&notice(&outage(), &h), &after);
        assert_eq!(
            email.subject,
            "[api-monitor] OUTAGE: https://api.example.com/health is down (after maintenance)"
        );
        assert!(email.text.contains("Maintenance: silence #3: deploy <b>\n"), "{}", email.text);
        assert!(
            email.text.contains(
                "During it:   down at 2026-11-25T14:40:00.000Z (HTTP 503Bcc: x), up at \
                 2026-11-25T14:41:00.000Z, down at 2026-11-25T14:42:00.123Z (timeout after 5s)"
            ),
            "{}",
            email.text
        );
        assert!(email.text.contains("Notifications were held back during the maintenance"));
        assert!(email.html.contains("silence #3: deploy &lt;b&gt;"), "escaped in HTML");
        let event: serde_json::Value = serde_json::from_str(&email.event).unwrap();
        assert_eq!(event["event"], "outage");
        assert_eq!(event["maintenance"], "silence #3: deploy <b>");
        assert_eq!(event["summary"], email.subject.trim_start_matches("[api-monitor] "));
        let plain: serde_json::Value =
            serde_json::from_str(&compose(&notice(&outage(), &h)).event).unwrap();
        assert_eq!(plain["maintenance"], serde_json::Value::Null, "always present, null");
    }

    #[test]
    fn member_emails_say_who_where_and_what_is_left_in_plain_sentences() {
        let now = Timestamp::from_millis(1_795_000_000_000);
        let lost = MemberNotice {
            cluster: "prod",
            instance: "host-1-abc",
            site: "eu",
            last_seen: now,
            back: false,
            site_members: 0,
            missing_sites: &["eu".to_string()],
            now,
        };
        let email = compose_member(&lost);
        assert_eq!(
            email.subject,
            "[api-monitor] MEMBER LOST: instance host-1-abc in site eu stopped reporting"
        );
        assert!(email.text.contains("Site eu has no live member left"), "{}", email.text);
        assert!(email.text.contains("Sites not reporting: eu"), "{}", email.text);
        let back = compose_member(&MemberNotice { back: true, site_members: 2, ..lost });
        assert!(back.subject.contains("MEMBER BACK: instance host-1-abc in site eu"));
        for text in [&email.text, &back.text] {
            assert!(!text.contains("  member") && !text.contains("  seen"), "{text}");
            assert!(!text.lines().any(|l| l.contains(". ") && l.contains("   ")), "{text}");
        }
    }

    #[test]
    fn all_regions_down_is_said_in_the_outage_email() {
        let (t, h) = (outage(), history());
        let email =
            compose(&Notice { region: Some("eu"), all_regions_down: Some(3), ..notice(&t, &h) });
        assert!(email.text.contains("Scope:      down from all 3 regions\n"), "{}", email.text);
        assert!(email.html.contains("down from all 3 regions"));
        assert_eq!(
            email.subject,
            "[api-monitor] OUTAGE: https://api.example.com/health is down (region eu)"
        );
    }

    #[test]
    fn reminder_email_reads_exactly() {
        let email = compose_reminder(&Reminder {
            target: "https://api.example.com/health",
            region: Some("eu"),
            since: ts("2026-11-25 14:42:00.123"),
            down_for: secs(HOUR + 5 * MIN + 7),
            reason: Some("HTTP 503"),
            now: ts("2026-11-25 15:47:07.123"),
        });
        assert_eq!(
            email.subject,
            "[api-monitor] STILL DOWN: https://api.example.com/health has been down for 1h 5m \
             (region eu)"
        );
        assert_eq!(
            email.text,
            "STILL DOWN: https://api.example.com/health has been down for 1h 5m (region eu)\n\
             \n\
             Target:     https://api.example.com/health\n\
             Region:     eu\n\
             Down since: 2026-11-25T14:42:00.123Z\n\
             \n\
             Failing probes:\n\
             - latest: HTTP 503\n\
             \n\
             This is a reminder: the outage is not over. You will get another one every reminder \
             interval until it is.\n\
             \n\
             Composed by api-monitor at 2026-11-25T15:47:07.123Z.\n"
        );
        assert!(!email.html.contains("History"), "no history block in a reminder");
    }

    #[test]
    fn blind_email_says_it_is_not_an_outage_and_escapes_the_proxy_error() {
        let email = compose_blind(&Blindness {
            target: "https://api.example.com/health",
            region: "eu",
            since: ts("2026-11-25 14:42:00.123"),
            reason: "proxy p:3128 unreachable: <connection refused>\r\nBcc: x@y",
            now: ts("2026-11-25 14:42:00.500"),
        });
        assert_eq!(
            email.subject,
            "[api-monitor] BLIND: region eu cannot probe https://api.example.com/health"
        );
        assert!(email.text.contains("This is not an outage of the API."));
        assert!(email.text.contains("Proxy error:"));
        assert!(!email.text.contains("\r\nBcc"), "no line can be injected");
        assert!(email.html.contains("&lt;connection refused&gt;"));
    }

    #[test]
    fn outage_email_reads_exactly() {
        let (t, h) = (outage(), history());
        let email = compose(&notice(&t, &h));
        assert_eq!(email.subject, "[api-monitor] OUTAGE: https://api.example.com/health is down");
        let expected = "\
OUTAGE: https://api.example.com/health is down

Target:     https://api.example.com/health
Down since: 2026-11-25T14:42:00.123Z

Failing probes:
- HTTP 503 (2×)
- timeout after 5s (1×)

It had been up for 3d 4h.

History:
last 24h: 1 outage, uptime 99.93%
last 7d: 2 outages, uptime 99.98%
last 30d: 2 outages, uptime 99.99%
mean time between outages: 3d 4h
mean time to recovery: 2m 10s
longest outage: 1h 5m

Composed by api-monitor at 2026-11-25T14:42:07.500Z.
";
        assert_eq!(email.text, expected, "the outage text body, line for line");
    }

    #[test]
    fn recovery_email_reads_exactly() {
        let t = recovery();
        let h = History {
            windows: vec![
                window("24h", 1, 0, Some(100.0)),
                window("7d", 7, 1, Some(97.5)),
                window("30d", 30, 1, None),
            ],
            mtbf: None,
            mttr: Some(secs(2 * MIN + 10)),
            longest_outage: None,
        };
        let notice = Notice {
            region: Some("eu-west"),
            ended: Some(secs(2 * MIN + 10) + Duration::from_millis(999)),
            now: ts("2026-11-25 14:44:20.000"),
            ..notice(&t, &h)
        };
        let email = compose(&notice);
        assert_eq!(
            email.subject,
            "[api-monitor] RECOVERED: https://api.example.com/health is up after 2m 10s \
             (region eu-west)",
            "recovery subject with the truncated outage length and the region suffix"
        );
        let expected = "\
RECOVERED: https://api.example.com/health is up after 2m 10s (region eu-west)

Target:   https://api.example.com/health
Region:   eu-west
Up since: 2026-11-25T14:44:10.123Z

It was down for 2m 10s.

History:
last 24h: 0 outages, uptime 100.00%
last 7d: 1 outage, uptime 97.50%
last 30d: 1 outage, uptime n/a
mean time between outages: n/a
mean time to recovery: 2m 10s
longest outage: n/a

Composed by api-monitor at 2026-11-25T14:44:20.000Z.
";
        assert_eq!(email.text, expected, "the recovery text body: no reasons, n/a where unknown");
    }

    #[test]
    fn subjects_are_exact_for_every_variant() {
        let (down, up, h) = (outage(), recovery(), history());
        let cases: &[(&str, Notice, &str)] = &[
            (
                "outage, direct",
                notice(&down, &h),
                "[api-monitor] OUTAGE: https://api.example.com/health is down",
            ),
            (
                "outage, region",
                Notice { region: Some("us-east"), ..notice(&down, &h) },
                "[api-monitor] OUTAGE: https://api.example.com/health is down (region us-east)",
            ),
            (
                "outage, first observation",
                Notice { ended: None, ..notice(&down, &h) },
                "[api-monitor] OUTAGE: https://api.example.com/health is down",
            ),
            (
                "recovery, direct",
                Notice { ended: Some(secs(45)), ..notice(&up, &h) },
                "[api-monitor] RECOVERED: https://api.example.com/health is up after 45s",
            ),
            (
                "recovery, no earlier record",
                Notice { ended: None, ..notice(&up, &h) },
                "[api-monitor] RECOVERED: https://api.example.com/health is up again",
            ),
            (
                "recovery, no earlier record, region",
                Notice { ended: None, region: Some("ap"), ..notice(&up, &h) },
                "[api-monitor] RECOVERED: https://api.example.com/health is up again (region ap)",
            ),
        ];
        for (name, notice, expected) in cases {
            assert_eq!(compose(notice).subject, *expected, "case {name:?}");
        }
    }

    #[test]
    fn no_earlier_record_is_said_in_both_parts() {
        let (down, up, h) = (outage(), recovery(), history());
        for t in [&down, &up] {
            let email = compose(&Notice { ended: None, ..notice(t, &h) });
            let sentence =
                "There is no earlier record of this target: this is its first observation.";
            assert!(email.text.contains(sentence), "{:?}: text explains the missing length", t.to);
            assert!(email.html.contains(sentence), "{:?}: and so does the HTML", t.to);
            assert!(!email.text.contains("It had been up"), "{:?}: no invented length", t.to);
            assert!(!email.text.contains("It was down"), "{:?}: no invented length", t.to);
        }
    }

    #[test]
    fn html_carries_the_same_content_in_simple_markup() {
        let (t, h) = (outage(), history());
        let html = compose(&notice(&t, &h)).html;
        for part in [
            "<h1 style=\"font-size:18px;margin:0 0 12px 0;color:#b00020\">\
             OUTAGE: https://api.example.com/health is down</h1>",
            "<strong>Target:</strong> https://api.example.com/health<br>",
            "<strong>Down since:</strong> 2026-11-25T14:42:00.123Z</p>",
            "<li>HTTP 503 (2×)</li>\n<li>timeout after 5s (1×)</li>",
            "It had been up for 3d 4h.",
            ">last 24h</th><td style=\"padding:2px 12px 2px 0;text-align:left;\
             vertical-align:top\">1 outage, uptime 99.93%</td></tr>",
            ">longest outage</th>",
            ">1h 5m</td>",
            "Composed by api-monitor at 2026-11-25T14:42:07.500Z.",
        ] {
            assert!(html.contains(part), "the HTML should contain {part:?}; got:\n{html}");
        }
        assert!(html.starts_with("<!DOCTYPE html>"), "a complete document");
        for external in ["<link", "<img", "<script", "src=", "href=", "<style"] {
            assert!(!html.contains(external), "inline styles only, no {external:?}");
        }
        let up = recovery();
        let html = compose(&notice(&up, &h)).html;
        assert!(!html.contains("<ul"), "a recovery lists no failing probes");
        assert!(html.contains("color:#1b7f3b"), "a recovery heading is green, not red");
    }

    #[test]
    fn html_escapes_every_interpolated_value() {
        let mut t = outage();
        t.reasons = vec!["status \"<b>DOWN</b>\" & 'x'".into()];
        let h = history();
        let email = compose(&Notice {
            target: "https://x.example/<script>alert(1)</script>?a=1&b=\"2\"",
            region: Some("<i>eu</i>"),
            ..notice(&t, &h)
        });
        assert!(!email.html.contains("<script>"), "a target cannot inject a script");
        assert!(!email.html.contains("<b>") && !email.html.contains("<i>"), "nor any markup");
        assert!(
            email.html.contains(
                "https://x.example/&lt;script&gt;alert(1)&lt;/script&gt;?a=1&amp;b=&quot;2&quot;"
            ),
            "the target is shown escaped: {}",
            email.html
        );
        assert!(
            email.html.contains(
                "<li>status &quot;&lt;b&gt;DOWN&lt;/b&gt;&quot; &amp; &#39;x&#39; (1×)</li>"
            ),
            "a reason is shown escaped, all five characters"
        );
        assert!(email.html.contains("(region &lt;i&gt;eu&lt;/i&gt;)"), "the region too");
        assert!(
            email.text.contains("- status \"<b>DOWN</b>\" & 'x' (1×)"),
            "the plain text keeps the reason as it was"
        );
    }

    #[test]
    fn nothing_can_break_out_of_the_subject_or_a_line() {
        let mut t = outage();
        t.reasons = vec!["HTTP 503\r\nBcc: evil@example.com".into()];
        let h = history();
        let email = compose(&Notice {
            target: "https://x.example/\r\nBcc: evil@example.com\u{0}\u{2028}",
            region: Some("eu\nX-Spam: yes"),
            ..notice(&t, &h)
        });
        assert_eq!(
            email.subject,
            "[api-monitor] OUTAGE: https://x.example/Bcc: evil@example.com is down \
             (region euX-Spam: yes)",
            "CR, LF, NUL and line separators are stripped from the subject"
        );
        assert!(
            !email.subject.chars().any(|c| c.is_control()),
            "no control character at all in the subject"
        );
        assert!(
            email.text.contains("Target:     https://x.example/Bcc: evil@example.com\n"),
            "a value stays on its own line in the body"
        );
        assert!(
            email.text.contains("- HTTP 503Bcc: evil@example.com (1×)\n"),
            "a reason stays on its own line"
        );
        assert!(!email.text.contains('\r'), "no CR anywhere in the text body");
    }

    #[test]
    fn a_very_long_url_is_shown_whole_in_the_subject_and_both_parts() {
        let (t, h) = (outage(), history());
        let url = format!("https://api.example.com/health/{}", "a1b2c3d4e5".repeat(210));
        let email = compose(&Notice { target: &url, ..notice(&t, &h) });
        assert_eq!(email.subject, format!("[api-monitor] OUTAGE: {url} is down"));
        assert!(email.text.contains(&format!("Target:     {url}\n")), "whole in the text");
        assert!(
            email.html.contains(&format!("<strong>Target:</strong> {url}<br>")),
            "and the HTML"
        );
    }

    #[test]
    fn reasons_are_counted_in_order_of_first_appearance() {
        let reasons: Vec<String> =
            ["timeout after 5s", "HTTP 503", "timeout after 5s", "HTTP 503", "HTTP 503"]
                .map(String::from)
                .to_vec();
        assert_eq!(
            count_reasons(&reasons),
            vec!["timeout after 5s (2×)", "HTTP 503 (3×)"],
            "distinct reasons, counted, first-seen first"
        );
        assert_eq!(
            count_reasons(&[]),
            vec!["no failure reason was recorded"],
            "an outage without reasons still says something"
        );
    }

    #[test]
    fn a_history_shorter_than_a_window_says_what_it_covers() {
        let now = ts("2026-11-25 14:42:07.500");
        let partial = |label, days, outages, uptime, observed: Duration| WindowStats {
            observed,
            ..window(label, days, outages, uptime)
        };
        let ms = Duration::from_millis;
        let cases: [(&str, Vec<WindowStats>, &[&str]); 5] = [
            (
                "a first observation, 5s of data: one row, not three that claim 30 days",
                vec![
                    partial("24h", 1, 1, Some(79.97), ms(5_000)),
                    partial("7d", 7, 1, Some(79.97), ms(5_000)),
                    partial("30d", 30, 1, Some(79.97), ms(5_000)),
                ],
                &["since 14:42 UTC today (5s of data): 1 outage, uptime 79.97%"],
            ),
            (
                "the outage being announced is all there is",
                vec![
                    partial("24h", 1, 1, Some(0.0), ms(200)),
                    partial("7d", 7, 1, Some(0.0), ms(200)),
                ],
                &["since 14:42 UTC today (200ms of data): 1 outage, uptime 0.00%"],
            ),
            (
                "since yesterday: the date is given",
                vec![partial("24h", 1, 0, Some(100.0), secs(15 * HOUR))],
                &["since 2026-11-24 23:42 UTC (15h of data): 0 outages, uptime 100.00%"],
            ),
            (
                "3 days of data: a whole day, then what the rest covers",
                vec![
                    window("24h", 1, 0, Some(100.0)),
                    partial("7d", 7, 2, Some(99.5), secs(3 * DAY + 4 * HOUR)),
                    partial("30d", 30, 2, Some(99.5), secs(3 * DAY + 4 * HOUR)),
                ],
                &[
                    "last 24h: 0 outages, uptime 100.00%",
                    "since 2026-11-22 10:42 UTC (3d 4h of data): 2 outages, uptime 99.50%",
                ],
            ),
            (
                "nothing recorded",
                vec![partial("24h", 1, 0, None, Duration::ZERO)],
                &["since 14:42 UTC today (0s of data): 0 outages, uptime n/a"],
            ),
        ];
        for (name, windows, expected) in cases {
            let h = History { windows, ..history() };
            let rows: Vec<String> = history_rows(&h, now)
                .into_iter()
                .map(|(label, value)| format!("{label}: {value}"))
                .take_while(|row| !row.starts_with("mean time"))
                .collect();
            assert_eq!(rows, expected, "{name}");
        }
    }

    #[test]
    fn the_outage_email_of_a_first_observation_does_not_claim_30_days() {
        let t = Transition { from: None, ..outage() };
        let h = crate::history::summarize(
            &[crate::history::Change { at: t.since, health: Health::Down }],
            ts("2026-11-25 14:42:05.123"),
        );
        let email =
            compose(&Notice { ended: None, now: ts("2026-11-25 14:42:05.123"), ..notice(&t, &h) });
        assert!(
            email.text.contains(
                "History:\nsince 14:42 UTC today (5s of data): 1 outage, uptime 0.00%\n\
                 mean time between outages: n/a\n"
            ),
            "{}",
            email.text
        );
        assert!(!email.text.contains("last "), "{}", email.text);
        assert!(email.html.contains(">since 14:42 UTC today (5s of data)</th>"), "{}", email.html);
    }

    #[test]
    fn percent_never_rounds_to_a_bound_it_did_not_reach() {
        let cases: &[(f64, &str, &str)] = &[
            (100.0, "100.00%", "no downtime at all"),
            (99.9999, "99.99%", "some downtime never reads as 100.00%"),
            (99.934, "99.93%", "two decimals"),
            (99.936, "99.94%", "rounded to nearest otherwise"),
            (97.5, "97.50%", "trailing zero kept"),
            (0.0001, "0.01%", "some uptime never reads as 0.00%"),
            (0.0, "0.00%", "down the whole time"),
        ];
        for (p, expected, why) in cases {
            assert_eq!(percent(*p), *expected, "{p}: {why}");
        }
    }

    #[test]
    fn plural_is_right() {
        let mut h = history();
        h.windows = vec![
            window("24h", 1, 0, Some(100.0)),
            window("7d", 7, 1, Some(99.0)),
            window("30d", 30, 2, Some(98.0)),
        ];
        let rows = history_rows(&h, ts("2026-11-25 14:42:07.500"));
        assert_eq!(rows[0].1, "0 outages, uptime 100.00%", "zero is plural");
        assert_eq!(rows[1].1, "1 outage, uptime 99.00%", "one is singular");
        assert_eq!(rows[2].1, "2 outages, uptime 98.00%", "two is plural");
    }
}
