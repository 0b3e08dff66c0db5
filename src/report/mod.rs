//! `api-monitor report`: how reliable each target was over a window, read from the database.
//!
//! Operators ask "how reliable was the API last month?" and should not need SQL for it. This
//! module answers per target/region: the current state and since when, uptime %, outages,
//! downtime, MTTR, MTBF, the longest outage and the list of outages, as a human table or as
//! JSON for scripts.
//!
//! The numbers come from the same pure [`history`] functions as the emails ([`history::periods`],
//! [`history::window`], [`history::mttr`], [`history::mtbf`], [`history::longest_outage`]), so a
//! report and an email about the same window can never disagree. The shape is I/O at the edge:
//! [`load`] reads the rows, [`build`] is pure (rows → [`SeriesReport`]), and [`table`] / [`json`]
//! only render.
//!
//! # What the window `[from, now]` contains
//! - A period is *in* the window when it overlaps it by the rule of [`history::window`]: begun
//!   by `now` and not ended by `from`. Outages, MTTR, MTBF and the longest outage cover exactly
//!   those periods.
//! - An outage crossing the window's start counts as an outage of the window; only its part
//!   after `from` counts as downtime (and against uptime), but it is listed with its real start
//!   and full length, and MTTR / the longest outage use its full length (as the emails do).
//! - The last period is ongoing: an outage still open at `now` is listed with no end (`ongoing`)
//!   and measured to `now`; MTTR leaves it out, since its length is not known yet.
//! - Time before a series' first row is unknown: it is neither up nor down, so uptime is
//!   `None` (not 100%) when nothing at all was observed in the window.
//! - The store cannot tell a target removed from the configuration from one still watched: the
//!   last recorded state of every series is taken to last until `now`.
//!
//! # Latency (P50, P95)
//! Percentiles of the probes the API answered in the window (see [`crate::latency`]: within
//! about 9 %, never below the true value). A window that starts within the last two days is
//! read to the minute; a longer one from the start of the hour holding `from`. The minute in
//! progress is not written yet, so not counted.
//!
//! # JSON (`--json`), a stable interface
//! Field names and meanings below are stable: fields may be added, never renamed or removed.
//! Timestamps are ISO-8601 UTC strings with milliseconds (`2026-11-25T06:00:00.000Z`);
//! durations are numbers of seconds with millisecond precision; `null` means unknown.
//!
//! ```text
//! {
//!   "since": "<timestamp>",            // start of the window
//!   "until": "<timestamp>",            // end of the window: when the report was made
//!   "series": [                        // one per target/region, sorted by target then region
//!     {
//!       "target": "<url>",             // as the monitor records it (password masked)
//!       "region": "<name>",
//!       "state": "up" | "down" | "unknown",   // the current state
//!       "state_since": "<timestamp>" | null,  // when the current state began
//!       "uptime_percent": <number> | null,    // up / observed time in the window, 0–100
//!       "outages": <integer>,          // outages overlapping the window
//!       "downtime_seconds": <number>,  // down time inside the window
//!       "mttr_seconds": <number> | null,      // mean length of the completed outages
//!       "mtbf_seconds": <number> | null,      // mean length of the completed up periods
//!       "longest_outage_seconds": <number> | null,
//!       "outages_list": [              // the outages overlapping the window, oldest first
//!         {
//!           "start": "<timestamp>",    // its real start, possibly before "since"
//!           "end": "<timestamp>" | null,      // null: still ongoing
//!           "length_seconds": <number>,       // full length, an ongoing one to "until"
//!           "first_reason": "<text>" | null   // the first failure reason recorded
//!         }
//!       ],
//!       "latency_probes": <integer>,   // answered probes whose latency is kept, in the window
//!       "latency_p50_seconds": <number> | null,   // median latency of those probes
//!       "latency_p95_seconds": <number> | null    // 95th percentile
//!     }
//!   ]
//! }
//! ```

pub mod members;
mod outbox;
mod silences;
pub use outbox::outbox;
pub use silences::silences;

use std::time::Duration;

use serde::Serialize;

use crate::detector::Health;
use crate::duration;
use crate::history::{self, Change, Period};
use crate::latency::{self, Histogram, Span, Summary, MINUTES_KEPT};
use crate::store::{StateRow, Store, StoreError};
use crate::timestamp::Timestamp;

/// One outage overlapping the report's window.
#[derive(Clone, Debug, PartialEq)]
pub struct OutageEntry {
    /// When the outage really began; before the window's start for one crossing it.
    pub start: Timestamp,
    /// When it ended; `None` while it is still ongoing.
    pub end: Option<Timestamp>,
    /// Its full length, an ongoing one measured to `now`.
    pub length: Duration,
    /// The failure reason recorded with its first row, if any.
    pub first_reason: Option<String>,
}

/// What the report says about one target as seen from one region, over `[from, now]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesReport {
    pub target: String,
    pub region: String,
    /// The current health and when it began; `None` when nothing is recorded.
    pub current: Option<(Health, Timestamp)>,
    /// Up time over observed time in the window, in percent; `None` when nothing was observed.
    pub uptime_percent: Option<f64>,
    /// Outages overlapping the window (the length of `outage_list`).
    pub outages: u32,
    /// Down time inside the window only.
    pub downtime: Duration,
    /// Mean length of the completed outages in the window (full lengths).
    pub mttr: Option<Duration>,
    /// Mean length of the completed up periods in the window (full lengths).
    pub mtbf: Option<Duration>,
    /// The longest outage in the window (full length, an ongoing one to `now`).
    pub longest_outage: Option<Duration>,
    /// The outages overlapping the window, oldest first.
    pub outage_list: Vec<OutageEntry>,
    /// The latency of the probes the API answered in the window ([`crate::latency`]); `None`
    /// when none is recorded.
    pub latency: Option<Summary>,
}

/// The report of one series from its rows over `[from, now]`.
///
/// `rows` are the series' rows oldest first, as [`Store::since`] returns them for `from`. The
/// period ongoing at `from` starts at the first row given: [`load`] extends the rows back to
/// its real start, so an outage crossing the window is listed from when it really began.
pub fn build(
    target: &str,
    region: &str,
    rows: &[StateRow],
    from: Timestamp,
    now: Timestamp,
) -> SeriesReport {
    let changes: Vec<Change> = rows.iter().map(StateRow::change).collect();
    let periods = history::periods(&changes);
    // The first row of each period: `periods` starts one at every change of health, so the
    // n-th row that differs from the row before it begins the n-th period.
    let first_rows = rows
        .iter()
        .enumerate()
        .filter(|&(i, row)| i == 0 || rows[i - 1].healthy != row.healthy)
        .map(|(_, row)| row);
    let in_window: Vec<(Period, &StateRow)> =
        periods.iter().copied().zip(first_rows).filter(|(p, _)| overlaps(p, from, now)).collect();
    let kept: Vec<Period> = in_window.iter().map(|&(period, _)| period).collect();
    let availability = history::window(&kept, from, now);
    let outage_list = in_window
        .iter()
        .filter(|(period, _)| period.is_outage())
        .map(|(period, first)| OutageEntry {
            start: period.start,
            end: period.end,
            length: period.length(now),
            first_reason: first.reason.clone(),
        })
        .collect();
    SeriesReport {
        target: target.to_owned(),
        region: region.to_owned(),
        current: periods.last().map(|p| (p.health, p.start)),
        uptime_percent: availability.uptime_percent(),
        outages: availability.outages,
        downtime: availability.observed.saturating_sub(availability.up),
        mttr: history::mttr(&kept),
        mtbf: history::mtbf(&kept),
        longest_outage: history::longest_outage(&kept, now),
        outage_list,
        latency: None,
    }
}

/// Whether `period` overlaps `[from, to]`, decided by [`history::window`] itself (which counts
/// an overlapping outage), so the report keeps exactly the periods the emails would count.
fn overlaps(period: &Period, from: Timestamp, to: Timestamp) -> bool {
    let as_outage = Period { health: Health::Down, ..*period };
    history::window(&[as_outage], from, to).outages == 1
}

/// The reports of every series in `store` over `[from, now]`, sorted by target then region.
///
/// With `target_filter`, only that target's series: it matches the target as recorded, or as
/// recorded after masking its password (the store keeps targets with passwords masked, so the
/// URL an operator types matches too). An empty result means nothing matched.
pub fn load(
    store: &mut dyn Store,
    target_filter: Option<&str>,
    from: Timestamp,
    now: Timestamp,
) -> Result<Vec<SeriesReport>, StoreError> {
    let wanted = target_filter.map(|raw| (raw, crate::redact::url(raw)));
    let mut reports = Vec::new();
    for (target, region) in store.series()? {
        if let Some((raw, shown)) = &wanted {
            if target != *raw && target != *shown {
                continue;
            }
        }
        let rows = rows_from_period_start(store, &target, &region, from)?;
        let mut report = build(&target, &region, &rows, from, now);
        report.latency = Summary::of(&load_latency(store, &target, &region, from, now)?);
        reports.push(report);
    }
    Ok(reports)
}

/// The latency of one series over `[from, now]`: to the minute when the window starts within
/// the minutes kept ([`MINUTES_KEPT`]), otherwise from the hour holding `from` on (hour rows,
/// and the minutes of the hours not rolled up yet).
fn load_latency(
    store: &mut dyn Store,
    target: &str,
    region: &str,
    from: Timestamp,
    now: Timestamp,
) -> Result<Histogram, StoreError> {
    let pair = Some((target, region));
    let end = now.plus(Duration::from_millis(1));
    let minutes_from = Span::Minute.start_of(from);
    if minutes_from >= now.minus(MINUTES_KEPT) {
        let minutes = store.latency(Span::Minute, pair, minutes_from, end)?;
        return Ok(latency::combine(&[], &minutes));
    }
    let hours = store.latency(Span::Hour, pair, Span::Hour.start_of(from), end)?;
    let minutes = store.latency(Span::Minute, pair, now.minus(MINUTES_KEPT), end)?;
    Ok(latency::combine(&hours, &minutes))
}

/// [`Store::since`] for `from`, extended back over the earlier rows of the period ongoing at
/// `from`: a restart may record the same health twice, and the period (an outage crossing the
/// window, say) began at the first of them, with that row's reason.
fn rows_from_period_start(
    store: &mut dyn Store,
    target: &str,
    region: &str,
    from: Timestamp,
) -> Result<Vec<StateRow>, StoreError> {
    let rows = store.since(target, region, from)?;
    let mut earlier = Vec::new();
    if let Some(first) = rows.first().filter(|row| row.timestamp < from) {
        let mut cursor = first.clone();
        while let Some(previous) = store.previous(&cursor)? {
            if previous.healthy != cursor.healthy {
                break;
            }
            earlier.push(previous.clone());
            cursor = previous;
        }
    }
    earlier.reverse();
    earlier.extend(rows);
    Ok(earlier)
}

/// The human report: a heading with the window, one aligned row per series, then the outages
/// of each series. Durations read as [`duration::human`] (truncated, never rounded up); uptime
/// is truncated to three decimals so it is never shown higher than it was; timestamps are
/// ISO-8601 UTC to the second (the JSON keeps milliseconds). Control and bidirectional
/// characters in recorded text are escaped so a hostile reason cannot garble the terminal.
/// Ends with a newline.
pub fn table(reports: &[SeriesReport], from: Timestamp, now: Timestamp) -> String {
    let mut out = format!(
        "Report from {} to {} ({})\n\n",
        seconds(from),
        seconds(now),
        duration::human(now.since(from))
    );
    if reports.is_empty() {
        out.push_str("No recorded states.\n");
        return out;
    }
    use Align::{Left, Right};
    let columns = [
        ("TARGET", Left),
        ("REGION", Left),
        ("STATE", Left),
        ("SINCE", Left),
        ("UPTIME", Right),
        ("OUTAGES", Right),
        ("DOWNTIME", Right),
        ("MTTR", Right),
        ("MTBF", Right),
        ("LONGEST", Right),
        ("P50", Right),
        ("P95", Right),
    ];
    let rows: Vec<[String; 12]> = reports
        .iter()
        .map(|r| {
            let (state, since) = match r.current {
                Some((Health::Up, at)) => ("up", seconds(at)),
                Some((Health::Down, at)) => ("down", seconds(at)),
                None => ("unknown", "-".to_owned()),
            };
            [
                escape(&r.target),
                escape(&r.region),
                state.to_owned(),
                since,
                r.uptime_percent.map_or_else(|| "-".to_owned(), percent),
                r.outages.to_string(),
                duration::human(r.downtime),
                optional(r.mttr),
                optional(r.mtbf),
                optional(r.longest_outage),
                r.latency.map_or_else(|| "-".to_owned(), |l| latency::short(l.p50)),
                r.latency.map_or_else(|| "-".to_owned(), |l| latency::short(l.p95)),
            ]
        })
        .collect();
    grid(&mut out, "", &columns, &rows);

    let outage_columns =
        [("START", Left), ("END", Left), ("LENGTH", Right), ("FIRST REASON", Left)];
    for r in reports {
        let name = format!("{} ({})", escape(&r.target), escape(&r.region));
        if r.outage_list.is_empty() {
            out.push_str(&format!("\nOutages of {name}: none\n"));
            continue;
        }
        out.push_str(&format!("\nOutages of {name}: {}\n", r.outage_list.len()));
        let rows: Vec<[String; 4]> = r
            .outage_list
            .iter()
            .map(|o| {
                let mut start = seconds(o.start);
                if o.start < from {
                    start.push_str(" (started before the window)");
                }
                [
                    start,
                    o.end.map_or_else(|| "ongoing".to_owned(), seconds),
                    duration::human(o.length),
                    o.first_reason.as_deref().map_or_else(|| "-".to_owned(), escape),
                ]
            })
            .collect();
        grid(&mut out, "  ", &outage_columns, &rows);
    }
    out
}

/// The report as pretty-printed JSON in the documented, stable schema (see the module doc).
/// Ends with a newline.
pub fn json(reports: &[SeriesReport], from: Timestamp, now: Timestamp) -> String {
    let document = JsonReport {
        since: from.to_string(),
        until: now.to_string(),
        series: reports.iter().map(JsonSeries::from).collect(),
    };
    let mut text = serde_json::to_string_pretty(&document)
        .expect("plain structs of strings, numbers, options and lists always serialize");
    text.push('\n');
    text
}

/// The JSON document; field order and names are the documented schema.
#[derive(Serialize)]
struct JsonReport<'a> {
    since: String,
    until: String,
    series: Vec<JsonSeries<'a>>,
}

#[derive(Serialize)]
struct JsonSeries<'a> {
    target: &'a str,
    region: &'a str,
    state: &'static str,
    state_since: Option<String>,
    uptime_percent: Option<f64>,
    outages: u32,
    downtime_seconds: f64,
    mttr_seconds: Option<f64>,
    mtbf_seconds: Option<f64>,
    longest_outage_seconds: Option<f64>,
    outages_list: Vec<JsonOutage<'a>>,
    latency_probes: u64,
    latency_p50_seconds: Option<f64>,
    latency_p95_seconds: Option<f64>,
}

#[derive(Serialize)]
struct JsonOutage<'a> {
    start: String,
    end: Option<String>,
    length_seconds: f64,
    first_reason: Option<&'a str>,
}

impl<'a> From<&'a SeriesReport> for JsonSeries<'a> {
    fn from(r: &'a SeriesReport) -> Self {
        JsonSeries {
            target: &r.target,
            region: &r.region,
            state: match r.current {
                Some((Health::Up, _)) => "up",
                Some((Health::Down, _)) => "down",
                None => "unknown",
            },
            state_since: r.current.map(|(_, at)| at.to_string()),
            uptime_percent: r.uptime_percent,
            outages: r.outages,
            downtime_seconds: secs(r.downtime),
            mttr_seconds: r.mttr.map(secs),
            mtbf_seconds: r.mtbf.map(secs),
            longest_outage_seconds: r.longest_outage.map(secs),
            outages_list: r
                .outage_list
                .iter()
                .map(|o| JsonOutage {
                    start: o.start.to_string(),
                    end: o.end.map(|end| end.to_string()),
                    length_seconds: secs(o.length),
                    first_reason: o.first_reason.as_deref(),
                })
                .collect(),
            latency_probes: r.latency.map_or(0, |l| l.probes),
            latency_p50_seconds: r.latency.map(|l| micros(l.p50)),
            latency_p95_seconds: r.latency.map(|l| micros(l.p95)),
        }
    }
}

/// Seconds with millisecond precision: what the store records.
/// Seconds with microsecond precision: a latency on a LAN is a fraction of a millisecond.
fn micros(d: Duration) -> f64 {
    d.as_micros() as f64 / 1e6
}

fn secs(d: Duration) -> f64 {
    d.as_millis() as f64 / 1000.0
}

/// ISO-8601 UTC to the second (`2026-11-25T06:00:00Z`): milliseconds are noise in a table.
fn seconds(t: Timestamp) -> String {
    let full = t.to_string();
    match full.rsplit_once('.') {
        Some((whole, _)) => format!("{whole}Z"),
        None => full,
    }
}

/// `97.321%`: three decimals, truncated so 99.9996% never reads as 100.000%. The tiny bias
/// absorbs binary rounding (97.5 stays 97.500, not 97.499).
fn percent(p: f64) -> String {
    format!("{:.3}%", (p * 1000.0 + 1e-6).floor() / 1000.0)
}

/// A known duration as [`duration::human`], an unknown one as `-`.
fn optional(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), duration::human)
}

/// `text` with control and bidirectional characters escaped (`\n`, `\u{1b}`, `\u{202e}`), so
/// recorded text stays on its line and cannot move the cursor or reorder the row.
fn escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Box<dyn Iterator<Item = char>> = if c.is_control() || is_bidi(c) {
                Box::new(c.escape_default())
            } else {
                Box::new(std::iter::once(c))
            };
            escaped
        })
        .collect()
}

/// Unicode bidirectional controls: invisible, and able to make a row read backwards.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// Appends `rows` under a header, each column as wide as its widest cell, two spaces apart,
/// every line prefixed with `indent` and stripped of trailing spaces. Widths count characters,
/// so wide (CJK, emoji) characters may shift a row; the columns are still in order.
fn grid<const N: usize>(
    out: &mut String,
    indent: &str,
    columns: &[(&str, Align); N],
    rows: &[[String; N]],
) {
    let header: [String; N] = columns.map(|(name, _)| name.to_owned());
    let mut widths = [0usize; N];
    for cells in std::iter::once(&header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for cells in std::iter::once(&header).chain(rows) {
        let mut line = indent.to_owned();
        for (i, ((cell, width), (_, align))) in cells.iter().zip(widths).zip(columns).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = " ".repeat(width - cell.chars().count());
            match align {
                Align::Left => {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
                Align::Right => {
                    line.push_str(&pad);
                    line.push_str(cell);
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{new_key, Commit, NewState};
    use serde_json::json;

    const A: &str = "https://a.example/health";
    const B: &str = "https://b.example/health";
    const C: &str = "https://c.example/health";

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_sql(text).expect("valid fixture timestamp")
    }

    /// The report is made at noon on 25 November over the 7 days before.
    fn window() -> (Timestamp, Timestamp) {
        (at("2026-11-18 12:00:00"), at("2026-11-25 12:00:00"))
    }

    /// `(target, region, when, reason)` rows; `None` is an `Up` row, `Some(reason)` a `Down` one.
    type Fixture = [(&'static str, &'static str, &'static str, Option<&'static str>)];

    /// The fixture history, oldest first per series:
    /// - A/direct: up from 10 Nov; an outage from 17 Nov 06:00 (recorded twice, the second time
    ///   after a restart with another reason) to 18 Nov 18:00, crossing the window's start by
    ///   6 h; a 45 min outage on 22 Nov; up since.
    /// - B/eu: up from 1 Nov; a 2 h outage on 20 Nov; down since 06:00 today, still ongoing.
    /// - C/direct: up since 1 Oct, nothing else.
    const HISTORY: &Fixture = &[
        (A, "direct", "2026-11-10 00:00:00", None),
        (A, "direct", "2026-11-17 06:00:00", Some("HTTP 503")),
        (A, "direct", "2026-11-17 08:00:00", Some("connection refused")),
        (A, "direct", "2026-11-18 18:00:00", None),
        (A, "direct", "2026-11-22 09:30:00", Some("timeout after 5s")),
        (A, "direct", "2026-11-22 10:15:00", None),
        (B, "eu", "2026-11-01 00:00:00", None),
        (B, "eu", "2026-11-20 00:00:00", Some("HTTP 500")),
        (B, "eu", "2026-11-20 02:00:00", None),
        (B, "eu", "2026-11-25 06:00:00", Some("status \"DEGRADED\"")),
        (C, "direct", "2026-10-01 00:00:00", None),
    ];

    fn new_state(&(target, region, when, reason): &(&str, &str, &str, Option<&str>)) -> NewState {
        NewState {
            key: new_key(),
            timestamp: at(when),
            healthy: reason.is_none(),
            target: target.into(),
            region: region.into(),
            reason: reason.map(str::to_owned),
            maintenance: None,
            held: false,
        }
    }

    /// All rows of one series, as a store holding the whole fixture would return them.
    fn rows(fixture: &Fixture, target: &str, region: &str) -> Vec<StateRow> {
        fixture
            .iter()
            .enumerate()
            .filter(|(_, row)| row.0 == target && row.1 == region)
            .map(|(i, row)| {
                let s = new_state(row);
                StateRow {
                    id: i as i64 + 1,
                    timestamp: s.timestamp,
                    healthy: s.healthy,
                    target: s.target,
                    region: s.region,
                    reason: s.reason,
                    maintenance: None,
                    held: false,
                }
            })
            .collect()
    }

    /// A's latency over the window (B and C have none recorded).
    const A_LATENCY: Summary = Summary {
        probes: 1200,
        p50: Duration::from_micros(12_300),
        p95: Duration::from_millis(2_310),
    };

    fn fixture_reports() -> Vec<SeriesReport> {
        let (from, now) = window();
        let mut reports: Vec<SeriesReport> = [(A, "direct"), (B, "eu"), (C, "direct")]
            .iter()
            .map(|&(t, r)| build(t, r, &rows(HISTORY, t, r), from, now))
            .collect();
        reports[0].latency = Some(A_LATENCY);
        reports
    }

    fn store_with(fixture: &Fixture) -> SqliteStore {
        let mut store = SqliteStore::open("sqlite://:memory:").expect("in-memory store");
        for row in fixture {
            let commit =
                Commit { state: Some(new_state(row)), notifications: Vec::new(), release: None };
            store.commit(&commit).expect("commit");
        }
        store
    }

    fn h(hours: u64) -> Duration {
        Duration::from_secs(hours * 3_600)
    }

    fn m(minutes: u64) -> Duration {
        Duration::from_secs(minutes * 60)
    }

    #[test]
    fn build_counts_what_overlaps_the_window() {
        let reports = fixture_reports();
        let a = &reports[0];
        assert_eq!(a.current, Some((Health::Up, at("2026-11-22 10:15:00"))), "up since 22 Nov");
        assert_eq!(a.outages, 2, "the outage crossing the start counts, and the 45 min one");
        assert_eq!(a.downtime, h(6) + m(45), "only the 6 in-window hours of the crossing one");
        assert_eq!(
            a.uptime_percent,
            Some((168.0 - 6.75) * 100.0 / 168.0),
            "the whole 168 h window observed, 6 h 45 min of it down"
        );
        assert_eq!(a.mttr, Some((h(36) + m(45)) / 2), "full lengths: 36 h and 45 min");
        assert_eq!(
            a.mtbf,
            Some(h(3 * 24 + 15) + m(30)),
            "the one completed up period in the window; the one before the window is not in it"
        );
        assert_eq!(a.longest_outage, Some(h(36)), "the crossing outage, both sides");
        assert_eq!(
            a.outage_list,
            vec![
                OutageEntry {
                    start: at("2026-11-17 06:00:00"),
                    end: Some(at("2026-11-18 18:00:00")),
                    length: h(36),
                    first_reason: Some("HTTP 503".into()),
                },
                OutageEntry {
                    start: at("2026-11-22 09:30:00"),
                    end: Some(at("2026-11-22 10:15:00")),
                    length: m(45),
                    first_reason: Some("timeout after 5s".into()),
                },
            ],
            "the repeated down row after a restart is part of the first outage, not its reason"
        );

        let b = &reports[1];
        assert_eq!(b.current, Some((Health::Down, at("2026-11-25 06:00:00"))), "down now");
        assert_eq!((b.outages, b.downtime), (2, h(8)), "2 h completed + 6 h ongoing");
        assert_eq!(b.mttr, Some(h(2)), "the ongoing outage has no known length yet");
        assert_eq!(b.mtbf, Some((h(19 * 24) + h(5 * 24 + 4)) / 2), "19 d and 5 d 4 h");
        assert_eq!(b.longest_outage, Some(h(6)), "the ongoing one, measured to now");
        assert_eq!(b.outage_list[1].end, None, "ongoing");

        let c = &reports[2];
        assert_eq!(
            (c.outages, c.uptime_percent, c.mttr, c.mtbf, c.longest_outage),
            (0, Some(100.0), None, None, None),
            "always up: 100%, nothing else known"
        );
    }

    #[test]
    fn outages_before_the_window_or_ended_at_its_start_are_left_out() {
        let (from, now) = window();
        let fixture: &Fixture = &[
            (A, "direct", "2026-11-01 00:00:00", None),
            (A, "direct", "2026-11-05 00:00:00", Some("HTTP 500")),
            (A, "direct", "2026-11-05 01:00:00", None),
            (A, "direct", "2026-11-18 10:00:00", Some("HTTP 502")),
            (A, "direct", "2026-11-18 12:00:00", None),
        ];
        let r = build(A, "direct", &rows(fixture, A, "direct"), from, now);
        assert_eq!(r.outages, 0, "one long before, one ending exactly at the start");
        assert_eq!(r.outage_list, vec![], "neither is listed");
        assert_eq!((r.mttr, r.longest_outage), (None, None), "nor measured");
        assert_eq!(r.uptime_percent, Some(100.0), "up all window");
        assert_eq!(r.mtbf, None, "the up period in the window is still ongoing");
    }

    #[test]
    fn no_rows_is_unknown_not_up() {
        let (from, now) = window();
        let reports = [build(A, "direct", &[], from, now)];
        assert_eq!(reports[0].current, None);
        assert_eq!(reports[0].uptime_percent, None, "nothing observed: unknown, not 100%");
        assert_eq!(
            table(&reports, from, now),
            "\
Report from 2026-11-18T12:00:00Z to 2026-11-25T12:00:00Z (7d)

TARGET                    REGION  STATE    SINCE  UPTIME  OUTAGES  DOWNTIME  MTTR  MTBF  LONGEST  P50  P95
https://a.example/health  direct  unknown  -           -        0        0s     -     -        -    -    -

Outages of https://a.example/health (direct): none
",
            "unknown state and uptime read as such"
        );
        let value: serde_json::Value = serde_json::from_str(&json(&reports, from, now)).unwrap();
        assert_eq!(value["series"][0]["state"], json!("unknown"));
        assert_eq!(value["series"][0]["state_since"], json!(null));
        assert_eq!(value["series"][0]["uptime_percent"], json!(null));
    }

    #[test]
    fn table_is_aligned_and_lists_the_outages() {
        let (from, now) = window();
        assert_eq!(
            table(&fixture_reports(), from, now),
            "\
Report from 2026-11-18T12:00:00Z to 2026-11-25T12:00:00Z (7d)

TARGET                    REGION  STATE  SINCE                   UPTIME  OUTAGES  DOWNTIME     MTTR    MTBF  LONGEST    P50     P95
https://a.example/health  direct  up     2026-11-22T10:15:00Z   95.982%        2    6h 45m  18h 22m  3d 15h   1d 12h  12 ms  2.31 s
https://b.example/health  eu      down   2026-11-25T06:00:00Z   95.238%        2        8h       2h  12d 2h       6h      -       -
https://c.example/health  direct  up     2026-10-01T00:00:00Z  100.000%        0        0s        -       -        -      -       -

Outages of https://a.example/health (direct): 2
  START                                             END                   LENGTH  FIRST REASON
  2026-11-17T06:00:00Z (started before the window)  2026-11-18T18:00:00Z  1d 12h  HTTP 503
  2026-11-22T09:30:00Z                              2026-11-22T10:15:00Z     45m  timeout after 5s

Outages of https://b.example/health (eu): 2
  START                 END                   LENGTH  FIRST REASON
  2026-11-20T00:00:00Z  2026-11-20T02:00:00Z      2h  HTTP 500
  2026-11-25T06:00:00Z  ongoing                   6h  status \"DEGRADED\"

Outages of https://c.example/health (direct): none
"
        );
    }

    #[test]
    fn json_has_the_documented_fields() {
        let (from, now) = window();
        let value: serde_json::Value =
            serde_json::from_str(&json(&fixture_reports(), from, now)).expect("valid JSON");
        assert_eq!(
            value,
            json!({
                "since": "2026-11-18T12:00:00.000Z",
                "until": "2026-11-25T12:00:00.000Z",
                "series": [
                    {
                        "target": A,
                        "region": "direct",
                        "state": "up",
                        "state_since": "2026-11-22T10:15:00.000Z",
                        "uptime_percent": 161.25 * 100.0 / 168.0,
                        "outages": 2,
                        "downtime_seconds": 24300.0,
                        "mttr_seconds": 66150.0,
                        "mtbf_seconds": 315000.0,
                        "longest_outage_seconds": 129600.0,
                        "outages_list": [
                            {
                                "start": "2026-11-17T06:00:00.000Z",
                                "end": "2026-11-18T18:00:00.000Z",
                                "length_seconds": 129600.0,
                                "first_reason": "HTTP 503"
                            },
                            {
                                "start": "2026-11-22T09:30:00.000Z",
                                "end": "2026-11-22T10:15:00.000Z",
                                "length_seconds": 2700.0,
                                "first_reason": "timeout after 5s"
                            }
                        ],
                        "latency_probes": 1200,
                        "latency_p50_seconds": 0.0123,
                        "latency_p95_seconds": 2.31
                    },
                    {
                        "target": B,
                        "region": "eu",
                        "state": "down",
                        "state_since": "2026-11-25T06:00:00.000Z",
                        "uptime_percent": 160.0 * 100.0 / 168.0,
                        "outages": 2,
                        "downtime_seconds": 28800.0,
                        "mttr_seconds": 7200.0,
                        "mtbf_seconds": 1044000.0,
                        "longest_outage_seconds": 21600.0,
                        "outages_list": [
                            {
                                "start": "2026-11-20T00:00:00.000Z",
                                "end": "2026-11-20T02:00:00.000Z",
                                "length_seconds": 7200.0,
                                "first_reason": "HTTP 500"
                            },
                            {
                                "start": "2026-11-25T06:00:00.000Z",
                                "end": null,
                                "length_seconds": 21600.0,
                                "first_reason": "status \"DEGRADED\""
                            }
                        ],
                        "latency_probes": 0,
                        "latency_p50_seconds": null,
                        "latency_p95_seconds": null
                    },
                    {
                        "target": C,
                        "region": "direct",
                        "state": "up",
                        "state_since": "2026-10-01T00:00:00.000Z",
                        "uptime_percent": 100.0,
                        "outages": 0,
                        "downtime_seconds": 0.0,
                        "mttr_seconds": null,
                        "mtbf_seconds": null,
                        "longest_outage_seconds": null,
                        "outages_list": [],
                        "latency_probes": 0,
                        "latency_p50_seconds": null,
                        "latency_p95_seconds": null
                    }
                ]
            })
        );
    }

    #[test]
    fn load_reads_latency_from_the_hours_and_the_minutes_not_rolled_up_yet() {
        let (from, now) = window();
        let mut store = store_with(HISTORY);
        let row = |span: Span, when: &str, ms: &[u64]| latency::LatencyRow {
            target: A.into(),
            region: "direct".into(),
            span,
            start: at(when),
            histogram: ms.iter().fold(Histogram::default(), |mut h, &m| {
                h.add(Duration::from_millis(m));
                h
            }),
        };
        store
            .record_latency(&[
                // Before the window: not counted.
                row(Span::Hour, "2026-11-18 10:00:00", &[5_000]),
                // The hour holding `from` (the hour tier starts there), and a later one.
                row(Span::Hour, "2026-11-18 12:00:00", &[10, 10]),
                row(Span::Hour, "2026-11-24 09:00:00", &[10, 10, 10]),
                // Its minutes are rolled up: not counted again.
                row(Span::Minute, "2026-11-24 09:30:00", &[10]),
                // The hour in progress: minutes only.
                row(Span::Minute, "2026-11-25 11:58:00", &[900]),
                // B's: another series.
                latency::LatencyRow {
                    target: B.into(),
                    ..row(Span::Hour, "2026-11-24 09:00:00", &[1])
                },
            ])
            .unwrap();
        let reports = load(&mut store, Some(A), from, now).unwrap();
        let summary = reports[0].latency.expect("latency recorded");
        assert_eq!(summary.probes, 6, "two hours and the minute not rolled up");
        assert!(
            summary.p50 >= Duration::from_millis(10) && summary.p50 < Duration::from_millis(11)
        );
        assert!(summary.p95 >= Duration::from_millis(900), "the slow minute is the tail");

        // A window of the last hour is read to the minute.
        let hour_ago = now.minus(Duration::from_secs(3600));
        let last_hour = load(&mut store, Some(A), hour_ago, now).unwrap();
        assert_eq!(last_hour[0].latency.map(|l| l.probes), Some(1), "the one minute");
    }

    #[test]
    fn load_finds_the_real_start_of_an_outage_crossing_the_window() {
        let (from, now) = window();
        let mut store = store_with(HISTORY);
        let loaded = load(&mut store, None, from, now).expect("load");
        let mut want = fixture_reports();
        want[0].latency = None; // no latency in this store
        assert_eq!(
            loaded, want,
            "from the store, same as from every row: the repeated down row before the window \
             is walked back to the outage's first row and its reason"
        );
    }

    #[test]
    fn an_empty_database_reports_nothing() {
        let (from, now) = window();
        let mut store = store_with(&[]);
        let reports = load(&mut store, None, from, now).expect("load");
        assert_eq!(reports, vec![], "no series");
        assert_eq!(
            table(&reports, from, now),
            "Report from 2026-11-18T12:00:00Z to 2026-11-25T12:00:00Z (7d)\n\n\
             No recorded states.\n"
        );
        let value: serde_json::Value = serde_json::from_str(&json(&reports, from, now)).unwrap();
        assert_eq!(
            value,
            json!({
                "since": "2026-11-18T12:00:00.000Z",
                "until": "2026-11-25T12:00:00.000Z",
                "series": []
            })
        );
    }

    #[test]
    fn a_target_filter_keeps_every_region_of_that_target_only() {
        let (from, now) = window();
        let mut fixture = HISTORY.to_vec();
        fixture.push((B, "direct", "2026-11-24 00:00:00", None));
        let secret = "https://probe:***@d.example/health";
        fixture.push((secret, "direct", "2026-11-24 00:00:00", None));
        let mut store = store_with(&fixture);

        let b = load(&mut store, Some(B), from, now).expect("load");
        let series: Vec<_> = b.iter().map(|r| (r.target.as_str(), r.region.as_str())).collect();
        assert_eq!(series, [(B, "direct"), (B, "eu")], "both regions of B, sorted, nothing else");

        let typed = load(&mut store, Some("https://probe:s3cret@d.example/health"), from, now);
        let series: Vec<_> = typed.expect("load").into_iter().map(|r| r.target).collect();
        assert_eq!(series, [secret], "the URL as typed matches the masked name recorded");

        let none = load(&mut store, Some("https://nowhere.example/"), from, now).expect("load");
        assert_eq!(none, vec![], "an unknown target matches nothing");
    }

    #[test]
    fn hostile_text_cannot_break_the_table() {
        let (from, now) = window();
        let hostile = "line one\nline two \u{1b}[2J \u{202e}evil";
        let fixture: &Fixture = &[(A, "direct", "2026-11-20 00:00:00", Some(hostile))];
        let r = build(A, "direct", &rows(fixture, A, "direct"), from, now);
        let text = table(&[r], from, now);
        assert!(
            text.contains(r"line one\nline two \u{1b}[2J \u{202e}evil"),
            "escaped in place:\n{text}"
        );
        assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}'), "no raw control left");
    }

    #[test]
    fn percent_is_truncated_never_rounded_up() {
        assert_eq!(percent(100.0), "100.000%");
        assert_eq!(percent(99.99999), "99.999%", "not 100.000%");
        assert_eq!(percent(97.5), "97.500%");
        assert_eq!(percent(0.0), "0.000%");
    }
}
