//! The status page served at `/` by `--listen`: one glance at every target and region.
//!
//! Pure: rows of recorded transitions and `now` in, one self-contained HTML document out. The
//! page has no external assets and no JavaScript (inline CSS, inline SVG), so it works from an
//! air-gapped network and behind a strict Content-Security-Policy; it refreshes itself every
//! 30 seconds with a `<meta http-equiv="refresh">`. Every interpolated value is HTML-escaped:
//! target names come from the command line or a config file and must not inject markup.
//!
//! All uptime figures come from [`crate::history`], the same code the emails and the report
//! use, with its conventions: time before the first recorded change is unknown (neither up nor
//! down), and the current state lasts until `now`.
//!
//! The 90-day bar has one cell per UTC day, oldest on the left, today (so far) on the right,
//! coloured by that day's uptime (see [`COLOURS`]); hovering a cell shows its date and figures.

use std::collections::VecDeque;
use std::time::Duration;

use crate::detector::Health;
use crate::duration::human;
use crate::history::{self, Change, Period};
use crate::latency::{self, Point};
use crate::notify::message::escape;
use crate::timestamp::Timestamp;

/// Cells in the bar: one per UTC day, today included.
pub const DAYS: i64 = 90;

/// How far back a row's `changes` must reach for the bar to be complete: load them with
/// [`crate::store::Store::since`]`(target, region, now.minus(HISTORY_SPAN))`, which also
/// returns the last change before that point so the state at its start is known.
pub const HISTORY_SPAN: Duration = Duration::from_secs(DAYS as u64 * 86_400);

const DAY_MS: i64 = 86_400_000;

/// Cell colours by the day's uptime, checked in order: the first row whose minimum the uptime
/// reaches wins. A day with nothing recorded (before the first change) is [`NO_DATA`].
///
/// | uptime      | colour       |
/// |-------------|--------------|
/// | ≥ 99.9 %    | green        |
/// | ≥ 99 %      | yellow-green |
/// | ≥ 95 %      | orange       |
/// | below 95 %  | red          |
///
/// 99.9 % of a day is 86 s of downtime, 99 % about 14 minutes, 95 % 72 minutes.
pub const COLOURS: [(f64, &str); 4] =
    [(99.9, "#2e9e44"), (99.0, "#9bc53d"), (95.0, "#f0a202"), (0.0, "#d43f3a")];

/// The colour of a day without any recorded state.
pub const NO_DATA: &str = "#cccccc";

/// One target as seen from one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRow {
    pub target: String,
    pub region: String,
    /// Its recorded transitions, oldest first, covering at least [`HISTORY_SPAN`] before `now`
    /// (as [`crate::store::Store::since`] returns them; [`crate::store::StateRow::change`]
    /// converts). The current state is the last one; empty means nothing recorded yet.
    pub changes: Vec<Change>,
    /// The latency of the last finished minutes (up to [`latency::SPARKLINE_MINUTES`]),
    /// oldest first: the sparkline. Empty when no probe was answered lately.
    pub latency: VecDeque<Point>,
}

/// What a member of a cluster shows beside its rows: the members, the leader, and which rows
/// another member of its site probes (their state is not known here).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterPanel {
    pub name: String,
    pub site: String,
    pub lease: std::time::Duration,
    pub members: Vec<crate::cluster::lease::MemberRow>,
    pub leader: Option<(crate::cluster::MemberId, u64)>,
    /// Per row, whether this member probes it.
    pub owned: Vec<bool>,
}

/// The whole page for `rows`, in the order given, as of `now`.
pub fn render(rows: &[StatusRow], now: Timestamp) -> String {
    render_page(rows, None, now)
}

/// The page of a cluster member: its rows, those another member probes marked so, and the
/// members.
pub fn render_member(rows: &[StatusRow], panel: &ClusterPanel, now: Timestamp) -> String {
    render_page(rows, Some(panel), now)
}

fn render_page(rows: &[StatusRow], panel: Option<&ClusterPanel>, now: Timestamp) -> String {
    let elsewhere = |i: usize| panel.is_some_and(|p| !p.owned.get(i).copied().unwrap_or(false));
    let evaluated: Vec<(&StatusRow, Vec<Period>)> =
        rows.iter().map(|row| (row, history::periods(&row.changes))).collect();
    let down = evaluated
        .iter()
        .filter(|(_, periods)| periods.last().is_some_and(|p| p.health == Health::Down))
        .count();
    let summary = match (rows.len(), down) {
        (0, _) => "No targets are watched.".to_owned(),
        (n, 0) => format!("None down ({n} watched)."),
        (n, d) => format!("{d} of {n} down."),
    };
    let mut body = String::new();
    for (i, (row, periods)) in evaluated.iter().enumerate() {
        if elsewhere(i) {
            body.push_str(&format!(
                "<tr class=\"target\"><td>{}</td><td>{}</td><td colspan=\"6\">\
                 <span class=\"unknown\">probed by another member of this site</span></td></tr>\n",
                escape(&row.target),
                escape(&row.region)
            ));
        } else {
            body.push_str(&render_row(row, periods, now));
        }
    }
    let members = panel.map(members_table).unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n\
         <html lang=\"en\">\n\
         <head>\n\
         <meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"30\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>api-monitor status</title>\n\
         <style>\n{STYLE}</style>\n\
         </head>\n\
         <body>\n\
         <h1>api-monitor status</h1>\n\
         <p class=\"summary{}\">{}</p>\n\
         <table>\n\
         <thead><tr><th>Target</th><th>Region</th><th>State</th><th>24 h</th><th>7 d</th>\
         <th>30 d</th><th>Latency, last hour</th><th>Last {DAYS} days (UTC)</th></tr></thead>\n\
         <tbody>\n{body}</tbody>\n\
         </table>\n\
         <p class=\"legend\">{}</p>\n\
         {members}\
         <p class=\"generated\">Generated {}; refreshes every 30 s.</p>\n\
         </body>\n\
         </html>\n",
        if down > 0 { " down" } else { "" },
        escape(&summary),
        legend(),
        escape(&clock(now)),
    )
}

/// The members of the cluster, as the last heartbeat read them.
fn members_table(panel: &ClusterPanel) -> String {
    let live = panel.members.iter().filter(|m| m.age < panel.lease).count();
    let mut rows = String::new();
    for m in &panel.members {
        let leads = panel.leader.as_ref().is_some_and(|(id, _)| *id == m.id);
        let state = match (m.age < panel.lease, leads) {
            (false, _) => "<span class=\"down\">gone</span>",
            (true, true) => "<span class=\"up\">leader</span>",
            (true, false) => "<span class=\"up\">live</span>",
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ago</td><td>{state}</td></tr>\n",
            escape(m.id.as_str()),
            escape(&m.site),
            escape(&m.version),
            escape(&clock(m.started_at)),
            escape(&human(m.age)),
        ));
    }
    let term = panel.leader.as_ref().map_or(String::new(), |(_, t)| format!(", term {t}"));
    format!(
        "<h2>Cluster {}: {live} live member(s){}</h2>\n\
         <p class=\"legend\">This member probes from site {}.</p>\n\
         <table>\n<thead><tr><th>Instance</th><th>Site</th><th>Version</th><th>Started</th>\
         <th>Heartbeat</th><th>State</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n",
        escape(&panel.name),
        escape(&term),
        escape(&panel.site),
    )
}

/// Inline CSS: no external stylesheet.
const STYLE: &str = "body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { padding: 0.4em 0.8em; text-align: left; border-bottom: 1px solid #ddd; \
vertical-align: middle; }
td.uptime { text-align: right; font-variant-numeric: tabular-nums; }
td.spark { white-space: nowrap; }
.up { color: #2e7d32; font-weight: bold; }
.down { color: #c62828; font-weight: bold; }
.unknown { color: #777; }
.since { color: #555; font-size: 0.9em; }
.summary.down { color: #c62828; }
.legend, .generated { color: #555; font-size: 0.9em; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin: 0 0.3em 0 1em; }
";

/// Cell geometry of the bar, in pixels.
const CELL_WIDTH: i64 = 5;
const CELL_GAP: i64 = 1;
const BAR_HEIGHT: i64 = 24;

fn render_row(row: &StatusRow, periods: &[Period], now: Timestamp) -> String {
    let state = match periods.last() {
        Some(current) => {
            let (class, word) = match current.health {
                Health::Up => ("up", "Up"),
                Health::Down => ("down", "Down"),
            };
            format!(
                "<span class=\"{class}\">{word}</span> <span class=\"since\">since {} ({})</span>",
                escape(&clock(current.start)),
                escape(&human(now.since(current.start)))
            )
        }
        None => "<span class=\"unknown\">Unknown</span> <span class=\"since\">nothing \
                 recorded yet</span>"
            .to_owned(),
    };
    let windows: String = history::WINDOWS
        .iter()
        .map(|&(_, span)| {
            let availability = history::window(periods, now.minus(span), now);
            let uptime = availability.uptime_percent();
            // A history shorter than the column's window: say what the figure covers.
            let partial = match uptime {
                Some(_) if availability.observed < span => format!(
                    " <span class=\"since\">({} of data)</span>",
                    escape(&human(availability.observed))
                ),
                _ => String::new(),
            };
            format!("<td class=\"uptime\">{}{partial}</td>", escape(&uptime_text(uptime)))
        })
        .collect();
    format!(
        "<tr class=\"target\"><td>{}</td><td>{}</td><td>{state}</td>{windows}<td class=\"spark\">{}</td>\
         <td>{}</td></tr>\n",
        escape(&row.target),
        escape(&row.region),
        sparkline(row, now),
        bar(row, periods, now)
    )
}

/// Sparkline geometry, in pixels: one step per minute.
const SPARK_STEP: i64 = 2;
const SPARK_HEIGHT: i64 = 24;

/// The last hour's latency as inline SVG: per minute, the median (dark) and the p95 (light),
/// on a scale from 0 to the hour's highest p95; then the last minute's figures. Minutes
/// without an answered probe leave a gap in the time axis, not a fake zero.
fn sparkline(row: &StatusRow, now: Timestamp) -> String {
    let Some(last) = row.latency.back() else {
        return "<span class=\"unknown\">no answers lately</span>".to_owned();
    };
    let minutes = latency::SPARKLINE_MINUTES as i64;
    let first = latency::Span::Minute.start_of(now).millis() - minutes * 60_000;
    let width = minutes * SPARK_STEP;
    let top = (row.latency.iter())
        .filter(|p| p.minute().millis() >= first)
        .map(|p| p.p95())
        .max()
        .unwrap_or_default();
    let top_us = top.as_micros().max(1) as f64;
    let line = |pick: fn(&Point) -> Duration| -> String {
        let points: Vec<String> = row
            .latency
            .iter()
            .filter(|p| p.minute().millis() >= first)
            .map(|p| {
                let x = (p.minute().millis() - first) / 60_000 * SPARK_STEP;
                let y = SPARK_HEIGHT as f64 * (1.0 - pick(p).as_micros() as f64 / top_us);
                format!("{x},{y:.1}")
            })
            .collect();
        points.join(" ")
    };
    // The latest minute with an answer, and how long ago when it is not the one just ended.
    let ago = now.since(last.minute().plus(latency::Span::Minute.length()));
    let when = if ago >= std::time::Duration::from_secs(120) {
        format!(", {} ago", human(ago))
    } else {
        String::new()
    };
    let title = format!(
        "latency per minute over the last hour (median dark, p95 light; top {}); latest minute \
         {}: {}",
        latency::short(top),
        &clock(last.minute())[11..],
        last
    );
    format!(
        "<svg class=\"spark\" width=\"{width}\" height=\"{SPARK_HEIGHT}\" \
         viewBox=\"0 0 {width} {SPARK_HEIGHT}\" role=\"img\" aria-label=\"{title}\">\
         <title>{title}</title>\
         <polyline fill=\"none\" stroke=\"#9ab8d8\" stroke-width=\"1\" points=\"{}\"/>\
         <polyline fill=\"none\" stroke=\"#1f5f9f\" stroke-width=\"1.5\" points=\"{}\"/>\
         </svg><br><span class=\"since\">{}{}</span>",
        line(Point::p95),
        line(Point::p50),
        escape(&last.to_string()),
        escape(&when),
        title = escape(&title),
    )
}

/// The 90-day bar as inline SVG, one `<rect>` per line, oldest day first.
fn bar(row: &StatusRow, periods: &[Period], now: Timestamp) -> String {
    let width = DAYS * (CELL_WIDTH + CELL_GAP) - CELL_GAP;
    let label = format!("{DAYS}-day uptime of {} from {}", row.target, row.region);
    let mut svg = format!(
        "<svg width=\"{width}\" height=\"{BAR_HEIGHT}\" viewBox=\"0 0 {width} {BAR_HEIGHT}\" \
         role=\"img\" aria-label=\"{}\">\n",
        escape(&label)
    );
    let today = now.millis().div_euclid(DAY_MS);
    for (cell, day) in (today - DAYS + 1..=today).enumerate() {
        let from = Timestamp::from_millis(day * DAY_MS);
        let to = Timestamp::from_millis((day + 1) * DAY_MS).min(now);
        let availability = history::window(periods, from, to);
        let uptime = availability.uptime_percent();
        let date = &clock(from)[..10];
        let title = match uptime {
            None => format!("{date}: no data"),
            Some(p) => {
                let down = availability.observed.saturating_sub(availability.up);
                let today = if day == today { " (today so far)" } else { "" };
                format!("{date}{today}: {} up, {} down", uptime_text(Some(p)), human(down))
            }
        };
        let x = i64::try_from(cell).unwrap_or(0) * (CELL_WIDTH + CELL_GAP);
        svg.push_str(&format!(
            "<rect x=\"{x}\" y=\"0\" width=\"{CELL_WIDTH}\" height=\"{BAR_HEIGHT}\" \
             fill=\"{}\"><title>{}</title></rect>\n",
            colour(uptime),
            escape(&title)
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// The cell colour for a day's uptime, per [`COLOURS`].
fn colour(uptime: Option<f64>) -> &'static str {
    match uptime {
        None => NO_DATA,
        Some(p) => COLOURS.iter().find(|&&(min, _)| p >= min).map_or(NO_DATA, |&(_, c)| c),
    }
}

/// The colour key under the table.
fn legend() -> String {
    let names = ["≥ 99.9 %", "≥ 99 %", "≥ 95 %", "< 95 %"];
    let mut out = String::from("Daily uptime:");
    for ((_, colour), name) in COLOURS.iter().zip(names) {
        out.push_str(&format!(
            "<span class=\"swatch\" style=\"background:{colour}\"></span>{}",
            escape(name)
        ));
    }
    out.push_str(&format!("<span class=\"swatch\" style=\"background:{NO_DATA}\"></span>no data"));
    out
}

/// `2026-11-18 11:06 UTC`: minutes are enough on a page that refreshes every 30 s.
fn clock(t: Timestamp) -> String {
    let sql = t.to_sql();
    format!("{} UTC", sql.get(..16).unwrap_or(&sql))
}

/// An uptime as the emails show it (`99.93%`), or `n/a` when nothing was observed.
///
/// The uptime as every other view shows it ([`crate::notify::message::percent`]), `n/a` when unknown.
fn uptime_text(uptime: Option<f64>) -> String {
    uptime.map_or_else(|| "n/a".to_owned(), crate::notify::message::percent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Health::{Down, Up};

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    /// Now: noon of day 20,000 after the epoch (2024-10-04), so today is half over.
    const TODAY: i64 = 20_000;
    const NOW: i64 = TODAY * DAY_MS + 12 * HOUR;

    const GREEN: &str = "#2e9e44";
    const YELLOW_GREEN: &str = "#9bc53d";
    const ORANGE: &str = "#f0a202";
    const RED: &str = "#d43f3a";

    /// A change `days_ago` days before today, at `offset` ms into that UTC day.
    fn change(days_ago: i64, offset: i64, health: Health) -> Change {
        Change { at: Timestamp::from_millis((TODAY - days_ago) * DAY_MS + offset), health }
    }

    /// An outage of `length` ms starting at 10:00 on the day `days_ago` days before today.
    fn outage(days_ago: i64, length: i64) -> [Change; 2] {
        [change(days_ago, 10 * HOUR, Down), change(days_ago, 10 * HOUR + length, Up)]
    }

    fn row(target: &str, changes: Vec<Change>) -> StatusRow {
        StatusRow {
            target: target.into(),
            region: "direct".into(),
            changes,
            latency: VecDeque::new(),
        }
    }

    #[test]
    fn a_member_marks_the_rows_another_member_probes_and_lists_the_members() {
        use crate::cluster::lease::MemberRow;
        use crate::cluster::MemberId;
        let member = |id: &str, age: u64| MemberRow {
            id: MemberId::new(id),
            site: "eu".into(),
            version: "0.1.0".into(),
            started_at: Timestamp::from_millis(NOW - HOUR),
            seen_at: Timestamp::from_millis(NOW),
            age: std::time::Duration::from_secs(age),
        };
        let panel = ClusterPanel {
            name: "prod".into(),
            site: "eu".into(),
            lease: std::time::Duration::from_secs(15),
            members: vec![member("m-1", 1), member("m-2", 40)],
            leader: Some((MemberId::new("m-1"), 4)),
            owned: vec![true, false],
        };
        let page = render_member(&fixture(), &panel, Timestamp::from_millis(NOW));
        let new_row = page.lines().find(|l| l.contains("https://new.example/health")).unwrap();
        assert!(new_row.contains("probed by another member of this site"), "{new_row}");
        let api_row = page.lines().find(|l| l.contains("<td>https://api.example/health")).unwrap();
        assert!(!api_row.contains("another member"), "{api_row}");
        assert!(page.contains("Cluster prod: 1 live member(s), term 4"), "{page}");
        let m1 = page.lines().find(|l| l.contains("<td>m-1</td>")).unwrap();
        assert!(m1.contains(">leader<"), "{m1}");
        let m2 = page.lines().find(|l| l.contains("<td>m-2</td>")).unwrap();
        assert!(m2.contains(">gone<") && m2.contains("40s ago"), "{m2}");
        assert!(!render(&fixture(), Timestamp::from_millis(NOW)).contains("Cluster"));
    }

    /// The fixture: `api` up since long before the bar, with outages of known sizes on known
    /// days; `new` first seen 10 days ago and down since 2 hours ago.
    fn fixture() -> Vec<StatusRow> {
        let mut api = vec![change(200, 0, Up)];
        api.extend(outage(9, 30 * MIN)); // 97.9 %: orange
        api.extend(outage(7, MIN)); // 99.93 %: green
        api.extend(outage(5, 10 * MIN)); // 99.31 %: yellow-green
        api.extend(outage(3, 2 * HOUR)); // 91.7 %: red
        let new = vec![change(10, 18 * HOUR, Up), change(0, 10 * HOUR, Down)];
        vec![row("https://api.example/health", api), row("https://new.example/health", new)]
    }

    /// The rows of the page, each as its `<tr>` line.
    fn rows(page: &str) -> Vec<&str> {
        page.lines().filter(|l| l.starts_with("<tr class=\"target\">")).collect()
    }

    /// The `fill` of every `<rect>` of the `index`-th row's bar, oldest day first.
    fn fills(page: &str, index: usize) -> Vec<String> {
        bars(page, index).iter().map(|rect| attribute(rect, "fill")).collect()
    }

    /// The `<rect>` lines of the `index`-th row's bar.
    fn bars(page: &str, index: usize) -> Vec<&str> {
        let bar = page.split("<svg ").nth(index + 1).expect("row has a bar");
        let bar = &bar[..bar.find("</svg>").expect("bar is closed")];
        bar.lines().filter(|l| l.starts_with("<rect ")).collect()
    }

    fn attribute(tag: &str, name: &str) -> String {
        let start = tag.find(&format!(" {name}=\"")).expect("attribute present") + name.len() + 3;
        tag[start..start + tag[start..].find('"').expect("closed")].to_owned()
    }

    fn title(rect: &str) -> &str {
        let start = rect.find("<title>").expect("title") + "<title>".len();
        &rect[start..rect.find("</title>").expect("title closed")]
    }

    /// The cell of the day `days_ago` days before today (the rightmost is today).
    fn cell(days_ago: i64) -> usize {
        usize::try_from(DAYS - 1 - days_ago).expect("within the bar")
    }

    #[test]
    fn one_row_per_target_and_region_with_ninety_cells() {
        let page = render(&fixture(), Timestamp::from_millis(NOW));
        assert_eq!(rows(&page).len(), 2, "two target/region pairs");
        assert_eq!(bars(&page, 0).len(), 90, "one cell per day");
        assert_eq!(bars(&page, 1).len(), 90, "also for a target with a short history");
        assert!(rows(&page)[0].contains("<td>https://api.example/health</td><td>direct</td>"));
        assert!(rows(&page)[1].contains("<td>https://new.example/health</td>"), "order kept");
    }

    #[test]
    fn cells_are_coloured_by_the_uptime_of_their_day() {
        let page = render(&fixture(), Timestamp::from_millis(NOW));
        let api = fills(&page, 0);
        assert_eq!(api[cell(9)], ORANGE, "30 min down: 97.9%");
        assert_eq!(api[cell(7)], GREEN, "1 min down: 99.93% is at least 99.9%");
        assert_eq!(api[cell(5)], YELLOW_GREEN, "10 min down: 99.31%");
        assert_eq!(api[cell(3)], RED, "2 h down: 91.7%");
        assert_eq!(api[cell(89)], GREEN, "the oldest day, up all day");
        assert_eq!(api[cell(0)], GREEN, "today so far, up");
        let count = |c: &str| api.iter().filter(|f| *f == c).count();
        assert_eq!((count(ORANGE), count(YELLOW_GREEN), count(RED)), (1, 1, 1), "no other day");

        let new = fills(&page, 1);
        assert!(new[..cell(10)].iter().all(|f| f == NO_DATA), "before its first record: grey");
        assert_eq!(new[cell(10)], GREEN, "first seen at 18:00 and up: 100% of what was seen");
        assert_eq!(new[cell(1)], GREEN, "yesterday, up");
        assert_eq!(new[cell(0)], RED, "today: down 2 h of the 12 so far, 83%");
    }

    #[test]
    fn cells_are_oldest_first_and_titled_with_date_and_uptime() {
        let page = render(&fixture(), Timestamp::from_millis(NOW));
        let api = bars(&page, 0);
        assert_eq!(title(api[0]), "2024-07-07: 100.00% up, 0s down", "89 days before today");
        assert_eq!(attribute(api[0], "x"), "0", "the oldest day is leftmost");
        assert_eq!(title(api[cell(3)]), "2024-10-01: 91.67% up, 2h down");
        assert_eq!(title(api[cell(0)]), "2024-10-04 (today so far): 100.00% up, 0s down");
        let new = bars(&page, 1);
        assert_eq!(title(new[0]), "2024-07-07: no data");
    }

    #[test]
    fn state_and_window_uptimes_are_shown() {
        let page = render(&fixture(), Timestamp::from_millis(NOW));
        let rows = rows(&page);
        assert!(
            rows[0].contains(
                "<span class=\"up\">Up</span> <span class=\"since\">since 2024-10-01 12:00 UTC \
                 (3d)</span>"
            ),
            "up since the end of the last outage: {}",
            rows[0]
        );
        let uptimes: Vec<String> = rows[0]
            .split("<td class=\"uptime\">")
            .skip(1)
            .map(|td| td[..td.find("</td>").expect("closed")].to_owned())
            .collect();
        // 24 h: no outage. 7 d: 2 h 10 min down of 168 h. 30 d: 2 h 41 min of 720 h.
        assert_eq!(uptimes, ["100.00%", "98.71%", "99.63%"], "24 h, 7 d, 30 d");
        let uptimes: Vec<String> = rows[1]
            .split("<td class=\"uptime\">")
            .skip(1)
            .map(|td| td[..td.find("</td>").expect("closed")].to_owned())
            .collect();
        assert_eq!(
            uptimes,
            ["91.67%", "98.81%", "99.15% <span class=\"since\">(9d 18h of data)</span>"],
            "first seen 9d 18h ago: the 30 d column covers only that"
        );
        assert!(rows[1].contains("<span class=\"down\">Down</span>"), "{}", rows[1]);
        assert!(page.contains("<p class=\"summary down\">1 of 2 down.</p>"));
    }

    #[test]
    fn a_target_without_history_is_unknown_and_grey() {
        let page = render(&[row("t", vec![])], Timestamp::from_millis(NOW));
        assert!(rows(&page)[0].contains("Unknown"));
        assert!(rows(&page)[0].matches("<td class=\"uptime\">n/a</td>").count() == 3);
        assert!(fills(&page, 0).iter().all(|f| f == NO_DATA), "every day grey");
        assert!(page.contains("None down (1 watched)."));
    }

    #[test]
    fn the_page_is_self_contained_and_refreshes() {
        let page = render(&fixture(), Timestamp::from_millis(NOW));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
        assert!(!page.contains("<script"), "no JavaScript");
        for external in ["src=", "href=", "url(", "@import"] {
            assert!(!page.contains(external), "no external asset ({external})");
        }
    }

    #[test]
    fn every_value_is_escaped() {
        let hostile = "<script>alert(\"x\")</script>&'";
        let page = render(
            &[StatusRow {
                target: hostile.into(),
                region: "<b>eu</b>".into(),
                changes: vec![change(1, 0, Up)],
                latency: VecDeque::from([Point::new(
                    Timestamp::from_millis(NOW - MIN),
                    Duration::from_millis(1),
                    Duration::from_millis(1),
                )]),
            }],
            Timestamp::from_millis(NOW),
        );
        assert!(!page.contains("<script"), "the target cannot inject markup");
        assert!(!page.contains("<b>"), "nor the region");
        let escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;";
        assert!(rows(&page)[0].contains(&format!("<td>{escaped}</td>")), "shown escaped");
        assert!(page.contains(&format!("aria-label=\"90-day uptime of {escaped} from")));
    }

    #[test]
    fn colours_follow_the_documented_thresholds() {
        let cases = [
            (Some(100.0), GREEN),
            (Some(99.9), GREEN),
            (Some(99.899), YELLOW_GREEN),
            (Some(99.0), YELLOW_GREEN),
            (Some(98.99), ORANGE),
            (Some(95.0), ORANGE),
            (Some(94.99), RED),
            (Some(0.0), RED),
            (None, NO_DATA),
        ];
        for (uptime, expected) in cases {
            assert_eq!(colour(uptime), expected, "{uptime:?}");
        }
    }

    #[test]
    fn the_sparkline_draws_the_last_hour_with_gaps_and_says_the_last_minute() {
        let now = Timestamp::from_millis(NOW);
        let point = |minutes_ago: i64, p50: u64, p95: u64| {
            let minute = Timestamp::from_millis(NOW - minutes_ago * MIN);
            Point::new(minute, Duration::from_millis(p50), Duration::from_millis(p95))
        };
        let mut row = row("http://a/health", vec![change(1, 0, Up)]);
        assert!(
            render_row(&row, &history::periods(&row.changes), now).contains("no answers lately")
        );
        // 61 minutes ago is outside the hour; 30 to 3 minutes ago have no point (a gap).
        row.latency = VecDeque::from([
            point(61, 5, 9),
            point(60, 10, 20),
            point(31, 10, 40),
            point(2, 20, 40),
        ]);
        let html = render_row(&row, &history::periods(&row.changes), now);
        let lines: Vec<&str> =
            html.split("points=\"").skip(1).map(|rest| &rest[..rest.find('"').unwrap()]).collect();
        // x: 2 px per minute from an hour ago; y: 24 px high, the top is the highest p95 (40).
        assert_eq!(lines, ["0,12.0 58,0.0 116,0.0", "0,18.0 58,18.0 116,12.0"], "p95, then p50");
        // Figures are the bounds of their buckets: 20 ms reads 22 ms, 40 ms 43 ms.
        assert!(html.contains("latest minute 11:58 UTC: p50 22 ms p95 43 ms"), "{html}");
        assert!(html.contains("<span class=\"since\">p50 22 ms p95 43 ms</span>"), "{html}");
        // An answer half an hour old says so.
        row.latency.truncate(3);
        let html = render_row(&row, &history::periods(&row.changes), now);
        assert!(html.contains(">p50 11 ms p95 43 ms, 30m ago</span>"), "{html}");
    }

    /// `docs/status-page.html` is this renderer's page of [`fixture`] with an hour of latency:
    /// the documentation shows what the code draws. `UPDATE_DOCS=1 cargo test --lib
    /// documented_page` writes it again after a change of the page.
    #[test]
    fn the_documented_page_is_what_the_renderer_draws() {
        let mut rows = fixture();
        // A quick API with a slow spell 20 minutes ago; the new one answers slower, and not at
        // all for the last half hour (its probes time out).
        let point = |minutes_ago: i64, p50_us: u64, p95_us: u64| {
            let minute = Timestamp::from_millis(NOW - minutes_ago * MIN);
            Point::new(minute, Duration::from_micros(p50_us), Duration::from_micros(p95_us))
        };
        rows[0].latency = (1..=60)
            .rev()
            .map(|m| {
                let slow = (18..=24).contains(&m);
                let wobble = (m * 37 % 11) as u64 * 400;
                if slow {
                    point(m, 180_000 + wobble * 10, 420_000)
                } else {
                    point(m, 11_000 + wobble, 24_000 + 2 * wobble)
                }
            })
            .collect();
        rows[1].latency =
            (30..=60).rev().map(|m| point(m, 45_000 + (m as u64 % 7) * 2_000, 95_000)).collect();
        let page = render(&rows, Timestamp::from_millis(NOW));
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status-page.html");
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, &page).expect("write docs/status-page.html");
        }
        let documented = std::fs::read_to_string(path).expect("docs/status-page.html");
        assert!(documented == page, "docs/status-page.html is stale: run with UPDATE_DOCS=1");
    }
}
