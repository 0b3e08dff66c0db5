//! Probe latency, kept as histograms: per target × region and per minute, rolled up per hour.
//!
//! Why histograms: an operator asks "what was the p95 last week?", and percentiles cannot be
//! averaged — the p95 of seven daily p95s is not the week's. A histogram of fixed buckets can be
//! added to another, so minutes merge into hours and hours into any report window exactly, and a
//! percentile read from the merge is as good as one read from every probe. The price is the
//! bucket width: bucket bounds grow by 2^(1/8) (about 9 %), so a percentile is reported as the
//! upper bound of its bucket, at most 9 % above the true value and never below it.
//!
//! What is counted: the time of every probe the API *answered* — healthy, slow, or judged
//! failed on its status code, content type or body ([`answered`]). A probe that timed out, was
//! refused, or saw nothing because its region's proxy failed has no latency of the API: it
//! would only add the deadline, or nothing, to the figures.
//!
//! Pure: the state owner feeds [`Minutes`] and writes what it hands back; the stores keep
//! [`LatencyRow`]s with the histogram as text ([`Histogram::encode`]); `report` and the status
//! page read [`Histogram::quantile`].

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use crate::probe::Outcome;
use crate::timestamp::Timestamp;

/// The upper bound of bucket 0, in microseconds: every answer this fast is one bucket.
const FIRST_BOUND_US: f64 = 100.0;
/// Buckets per doubling of the latency: bounds grow by 2^(1/8), about 9 %.
const PER_DOUBLING: u16 = 8;
/// 2^(r/8) for r = 0..8, the steps within one doubling, so that the bounds need no `exp2`:
/// these two functions were all the binary took from libm, whose mapping cost 0.5 MiB of
/// resident memory in the dynamically linked build. A test checks every bound against `exp2`.
const STEPS: [f64; PER_DOUBLING as usize] = [
    1.0,
    1.090_507_732_665_257_7,
    1.189_207_115_002_721,
    1.296_839_554_651_009_6,
    std::f64::consts::SQRT_2,
    1.542_210_825_407_940_7,
    1.681_792_830_507_429,
    1.834_008_086_409_342_4,
];
/// The last bucket: its bound is about 25 minutes, beyond any probe deadline.
pub const LAST_BUCKET: u16 = 191;

/// How long one row covers: a minute as probes happen, an hour once rolled up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Span {
    Minute,
    Hour,
}

impl Span {
    /// Its length.
    pub const fn length(self) -> Duration {
        match self {
            Span::Minute => Duration::from_secs(60),
            Span::Hour => Duration::from_secs(3600),
        }
    }

    /// Seconds, as the `latency.span` column keeps it.
    pub const fn seconds(self) -> i64 {
        self.length().as_secs() as i64
    }

    /// The span whose [`Span::seconds`] is `seconds`.
    pub fn from_seconds(seconds: i64) -> Option<Span> {
        [Span::Minute, Span::Hour].into_iter().find(|s| s.seconds() == seconds)
    }

    /// The start of the span holding `at`.
    pub fn start_of(self, at: Timestamp) -> Timestamp {
        let ms = self.seconds() * 1000;
        Timestamp::from_millis(at.millis().div_euclid(ms) * ms)
    }
}

/// How long minute rows are kept: long enough for the status page's hour and for a day's
/// report to the minute; older ones live on in their hour rows (see [`Store`] roll-up).
///
/// [`Store`]: crate::store::Store
pub const MINUTES_KEPT: Duration = Duration::from_secs(2 * 86_400);
/// How long hour rows are kept: a year and a bit, for "this quarter against the last".
pub const HOURS_KEPT: Duration = Duration::from_secs(400 * 86_400);

/// The latency a probe's outcome counts for, when the API answered it (see the module doc).
pub fn answered(outcome: &Outcome) -> Option<Duration> {
    match outcome {
        Outcome::Healthy { latency } => Some(*latency),
        Outcome::Failed { reason, latency } if reason.answered() => Some(*latency),
        Outcome::Failed { .. } | Outcome::Blind { .. } => None,
    }
}

/// The upper bound of bucket `index`, in microseconds: 100 × 2^(index/8), rounded. Stored
/// histograms name buckets by index, so these values must never change.
pub fn bound_us(index: u16) -> u64 {
    let index = index.min(LAST_BUCKET);
    let doublings = f64::from(1u32 << (index / PER_DOUBLING));
    (FIRST_BOUND_US * doublings * STEPS[usize::from(index % PER_DOUBLING)]).round() as u64
}

/// The bucket `latency` falls in: the first whose bound is not below it.
pub fn bucket(latency: Duration) -> u16 {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    let (mut low, mut high) = (0, LAST_BUCKET);
    // The first index in 0..=LAST_BUCKET whose bound is ≥ us (the last when none is).
    while low < high {
        let middle = low + (high - low) / 2;
        if bound_us(middle) >= us {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    low
}

/// Counts of probes per bucket. Only the buckets used are kept, in order: a minute's answers
/// fall in a handful of buckets, and a monitor keeps one such minute per target × region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<(u16, u64)>,
}

/// A stored histogram that does not read as one (see [`Histogram::decode`]).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid latency histogram {0:?}: expected `bucket:count` pairs separated by commas")]
pub struct HistogramError(pub String);

impl Histogram {
    /// Counts one probe of `latency`.
    pub fn add(&mut self, latency: Duration) {
        self.add_to(bucket(latency), 1);
    }

    fn add_to(&mut self, index: u16, count: u64) {
        match self.counts.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(at) => self.counts[at].1 += count,
            Err(at) => self.counts.insert(at, (index, count)),
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for &(index, count) in &other.counts {
            self.add_to(index, count);
        }
    }

    /// How many probes it counts.
    pub fn probes(&self) -> u64 {
        self.counts.iter().map(|&(_, count)| count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The latency below or at which a fraction `q` (0–1) of the probes answered, as the upper
    /// bound of its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        self.quantile_bucket(q).map(|index| Duration::from_micros(bound_us(index)))
    }

    /// The bucket of [`Histogram::quantile`].
    fn quantile_bucket(&self, q: f64) -> Option<u16> {
        let total = self.probes();
        if total == 0 {
            return None;
        }
        // The rank of the probe at `q`: the p50 of 4 probes is the 2nd, the p95 of 20 the 19th.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(index, count) in &self.counts {
            seen += count;
            if seen >= rank {
                return Some(index);
            }
        }
        None
    }

    /// The stored form: `bucket:count` pairs, ascending, separated by commas (`3:10,5:2`).
    pub fn encode(&self) -> String {
        let pairs: Vec<String> = self.counts.iter().map(|(i, c)| format!("{i}:{c}")).collect();
        pairs.join(",")
    }

    /// Reads what [`Histogram::encode`] writes.
    pub fn decode(text: &str) -> Result<Histogram, HistogramError> {
        let bad = || HistogramError(text.chars().take(80).collect());
        let mut histogram = Histogram::default();
        for pair in text.split(',').filter(|p| !p.is_empty()) {
            let (index, count) = pair.split_once(':').ok_or_else(bad)?;
            let index: u16 = index.trim().parse().map_err(|_| bad())?;
            let count: u64 = count.trim().parse().map_err(|_| bad())?;
            if index > LAST_BUCKET {
                return Err(bad());
            }
            histogram.add_to(index, count);
        }
        Ok(histogram)
    }
}

/// One row of the `latency` table: the probes of one target × region over one span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyRow {
    pub target: String,
    pub region: String,
    pub span: Span,
    /// The start of the span (a whole minute or hour, UTC).
    pub start: Timestamp,
    pub histogram: Histogram,
}

/// Merges minute rows into the hour rows they fall in, one per target × region × hour, in
/// order of target, region and hour.
pub fn roll_up(minutes: &[LatencyRow]) -> Vec<LatencyRow> {
    let mut hours: BTreeMap<(&str, &str, Timestamp), Histogram> = BTreeMap::new();
    for row in minutes.iter().filter(|r| r.span == Span::Minute) {
        let key = (row.target.as_str(), row.region.as_str(), Span::Hour.start_of(row.start));
        hours.entry(key).or_default().merge(&row.histogram);
    }
    hours
        .into_iter()
        .map(|((target, region, start), histogram)| LatencyRow {
            target: target.to_owned(),
            region: region.to_owned(),
            span: Span::Hour,
            start,
            histogram,
        })
        .collect()
}

/// The probes of a window read from both tiers: every hour row, and the minute rows of the
/// hours that have none (not rolled up yet: the current hour, or hours since the last
/// roll-up). No probe is counted twice.
pub fn combine(hours: &[LatencyRow], minutes: &[LatencyRow]) -> Histogram {
    let rolled: std::collections::BTreeSet<Timestamp> =
        hours.iter().filter(|r| r.span == Span::Hour).map(|r| r.start).collect();
    let mut histogram = Histogram::default();
    for row in hours.iter().filter(|r| r.span == Span::Hour) {
        histogram.merge(&row.histogram);
    }
    for row in minutes.iter().filter(|r| r.span == Span::Minute) {
        if !rolled.contains(&Span::Hour.start_of(row.start)) {
            histogram.merge(&row.histogram);
        }
    }
    histogram
}

/// The percentiles a report or a page shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub probes: u64,
    pub p50: Duration,
    pub p95: Duration,
}

impl Summary {
    /// The summary of `histogram`; `None` when it counts nothing.
    pub fn of(histogram: &Histogram) -> Option<Summary> {
        Some(Summary {
            probes: histogram.probes(),
            p50: histogram.quantile(0.50)?,
            p95: histogram.quantile(0.95)?,
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p50 {} p95 {}", short(self.p50), short(self.p95))
    }
}

/// A latency the way a page or table shows it: `0.3 ms`, `12 ms`, `1.25 s`.
pub fn short(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// How many minutes of points the status page's sparkline shows.
pub const SPARKLINE_MINUTES: usize = 60;

/// One finished minute of one target × region, for the sparkline: 8 bytes, because the status
/// page keeps an hour of them for every pair (10,000 targets: under 5 MiB). The percentiles
/// are bucket bounds anyway, so their bucket says them exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// Minutes since the Unix epoch.
    minute: u32,
    p50: u8,
    p95: u8,
}

impl Point {
    /// The point of `histogram`, counted in the minute starting at `minute`; `None` when empty.
    pub fn of(minute: Timestamp, histogram: &Histogram) -> Option<Point> {
        let bucket = |q| histogram.quantile_bucket(q).map(|i| u8::try_from(i).unwrap_or(u8::MAX));
        Some(Point { minute: minute_number(minute), p50: bucket(0.50)?, p95: bucket(0.95)? })
    }

    /// A point whose percentiles are those of `p50` and `p95` (rounded up to their bucket).
    pub fn new(minute: Timestamp, p50: Duration, p95: Duration) -> Point {
        let index = |d| u8::try_from(bucket(d)).unwrap_or(u8::MAX);
        Point { minute: minute_number(minute), p50: index(p50), p95: index(p95) }
    }

    /// The start of its minute.
    pub fn minute(&self) -> Timestamp {
        Timestamp::from_millis(i64::from(self.minute) * 60_000)
    }

    pub fn p50(&self) -> Duration {
        Duration::from_micros(bound_us(u16::from(self.p50)))
    }

    pub fn p95(&self) -> Duration {
        Duration::from_micros(bound_us(u16::from(self.p95)))
    }
}

/// Minutes since the Unix epoch (a `u32` lasts until the year 10136).
fn minute_number(at: Timestamp) -> u32 {
    u32::try_from(at.millis().div_euclid(60_000)).unwrap_or(0)
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p50 {} p95 {}", short(self.p50()), short(self.p95()))
    }
}

/// Adds `points` to a sparkline's `recent` ones: kept in time order, one per minute (a later
/// one given for the same minute wins), the last [`SPARKLINE_MINUTES`] only. Points read back
/// from the database at start may arrive after this run's first minutes: order is restored.
pub fn add_points(recent: &mut VecDeque<Point>, points: impl IntoIterator<Item = Point>) {
    let mut all: Vec<Point> = recent.drain(..).collect();
    all.extend(points);
    // Stable: of two points of one minute, the one given later stays last, and wins.
    all.sort_by_key(|p| p.minute);
    let mut kept: Vec<Point> = Vec::with_capacity(all.len());
    for point in all {
        match kept.last_mut() {
            Some(last) if last.minute == point.minute => *last = point,
            _ => kept.push(point),
        }
    }
    let skip = kept.len().saturating_sub(SPARKLINE_MINUTES);
    recent.extend(kept.into_iter().skip(skip));
}

/// Every target × region's minute in progress: the state owner adds each answered probe and,
/// as minutes end, takes the finished ones to write and to draw.
#[derive(Debug)]
pub struct Minutes {
    current: Vec<Option<(Timestamp, Histogram)>>,
    /// Minutes a probe of a later minute ended before [`Minutes::finish`] came round.
    ended: Vec<(usize, Timestamp, Histogram)>,
}

impl Minutes {
    /// For `pairs` target × region pairs, in slot order.
    pub fn new(pairs: usize) -> Minutes {
        Minutes { current: vec![None; pairs], ended: Vec::new() }
    }

    /// Counts `latency` for pair `index` in the minute holding `now`. A probe is counted in the
    /// minute it is *handled*, so a minute, once finished, never gets more.
    pub fn add(&mut self, index: usize, latency: Duration, now: Timestamp) {
        let Some(current) = self.current.get_mut(index) else { return };
        let minute = Span::Minute.start_of(now);
        match current {
            Some((start, histogram)) if *start == minute => histogram.add(latency),
            _ => {
                let mut histogram = Histogram::default();
                histogram.add(latency);
                if let Some((start, old)) = current.replace((minute, histogram)) {
                    self.ended.push((index, start, old));
                }
            }
        }
    }

    /// Finishes every minute that ended by `now` (all of them with `all`, at a stop or a
    /// reload): returns them with their pair's index, as rows of `names` (target and region
    /// of each pair, in slot order).
    pub fn finish(
        &mut self,
        now: Timestamp,
        all: bool,
        names: &[(&str, &str)],
    ) -> Vec<(usize, LatencyRow)> {
        let minute = Span::Minute.start_of(now);
        let mut finished = std::mem::take(&mut self.ended);
        for (index, current) in self.current.iter_mut().enumerate() {
            if matches!(current, Some((start, _)) if all || *start < minute) {
                if let Some((start, histogram)) = current.take() {
                    finished.push((index, start, histogram));
                }
            }
        }
        finished
            .into_iter()
            .filter_map(|(index, start, histogram)| {
                let (target, region) = names.get(index)?;
                let row = LatencyRow {
                    target: (*target).to_owned(),
                    region: (*region).to_owned(),
                    span: Span::Minute,
                    start,
                    histogram,
                };
                Some((index, row))
            })
            .collect()
    }

    /// Whether a minute is being counted (so the owner must wake at its end).
    pub fn counting(&self) -> bool {
        !self.ended.is_empty() || self.current.iter().any(Option::is_some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Reason;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn buckets_hold_their_bounds_and_grow_by_about_nine_percent() {
        assert_eq!(bound_us(0), 100);
        assert_eq!(bound_us(8), 200, "one doubling per 8 buckets");
        assert_eq!(bound_us(80), 102_400, "10 doublings: 102.4 ms");
        for index in 1..=LAST_BUCKET {
            let (low, high) = (bound_us(index - 1), bound_us(index));
            assert!(high > low, "bounds ascend at {index}");
            assert!((high as f64) <= (low as f64) * 1.095 + 1.0, "about 9 % at {index}");
            assert_eq!(bucket(us(high)), index, "a bound is in its own bucket");
            assert_eq!(bucket(us(low + 1)), index, "just above the last bound: the next one");
        }
        assert!(bound_us(LAST_BUCKET) > 600_000_000, "beyond 10 minutes");
    }

    /// The bounds were `100 × exp2(index / 8)` until the table of steps replaced `exp2`; stored
    /// histograms name buckets by index, so every bound must be what it was.
    #[test]
    fn the_bounds_are_those_exp2_gave() {
        for index in 0..=LAST_BUCKET {
            let before = (100.0 * (f64::from(index) / 8.0).exp2()).round() as u64;
            assert_eq!(bound_us(index), before, "bucket {index}");
        }
        for (r, step) in STEPS.iter().enumerate() {
            assert_eq!(*step, (r as f64 / 8.0).exp2(), "step {r}");
        }
    }

    #[test]
    fn latencies_fall_in_the_bucket_whose_bound_is_not_below_them() {
        let cases: &[(Duration, u16)] = &[
            (Duration::ZERO, 0),
            (us(1), 0),
            (us(100), 0),
            (us(101), 1),
            (us(300), 13),
            (ms(1), 27),
            (ms(2_310), 116),
            (Duration::from_secs(3600), LAST_BUCKET),
        ];
        for &(latency, want) in cases {
            assert_eq!(bucket(latency), want, "{latency:?}");
            assert!(us(bound_us(want)) >= latency || want == LAST_BUCKET, "{latency:?}");
        }
    }

    #[test]
    fn quantiles_are_the_bound_of_the_bucket_of_their_rank() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None, "empty: no figure");
        for n in 1..=100 {
            h.add(ms(n));
        }
        let p50 = h.quantile(0.5).unwrap();
        let p95 = h.quantile(0.95).unwrap();
        assert!(p50 >= ms(50) && p50 <= ms(55), "p50 {p50:?}: 50 ms, at most 9 % above");
        assert!(p95 >= ms(95) && p95 <= ms(104), "p95 {p95:?}");
        assert_eq!(h.quantile(0.0), Some(us(bound_us(bucket(ms(1))))), "the fastest");
        assert_eq!(h.quantile(1.0), Some(us(bound_us(bucket(ms(100))))), "the slowest");
        let mut one = Histogram::default();
        one.add(ms(7));
        assert_eq!(one.quantile(0.5), one.quantile(0.95), "one probe is every percentile");
    }

    #[test]
    fn merged_histograms_give_the_percentiles_of_all_their_probes() {
        // 95 fast minutes and 5 slow ones: averaging per-minute p95s would hide the slow tail.
        let mut week = Histogram::default();
        let mut all = Histogram::default();
        for minute in 0..100 {
            let mut h = Histogram::default();
            for _ in 0..12 {
                let latency = if minute < 95 { ms(20) } else { ms(900) };
                h.add(latency);
                all.add(latency);
            }
            week.merge(&h);
        }
        assert_eq!(week, all);
        assert_eq!(week.probes(), 1200);
        assert!(week.quantile(0.95).unwrap() < ms(25), "exactly 95 % fast");
        assert!(week.quantile(0.96).unwrap() >= ms(900), "the slow 5 % above");
    }

    #[test]
    fn the_stored_form_reads_back_and_bad_text_is_an_error() {
        let mut h = Histogram::default();
        for latency in [us(50), ms(3), ms(3), Duration::from_secs(2)] {
            h.add(latency);
        }
        let text = h.encode();
        assert_eq!(text, "0:1,40:2,115:1");
        assert_eq!(Histogram::decode(&text), Ok(h));
        assert_eq!(Histogram::decode(""), Ok(Histogram::default()), "empty is no probes");
        for bad in ["x", "1:", ":3", "1:2,3", "999:1", "1:-2"] {
            assert!(Histogram::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_answered_probes_count() {
        let slow = Reason::Slow { took: ms(2_310), limit: ms(2_000) };
        let timeout = Reason::Timeout { after: ms(5_000), phase: crate::probe::Phase::Head };
        let blind = Reason::ProxyRefused { proxy: "p".into() };
        let cases = [
            (Outcome::Healthy { latency: ms(12) }, Some(ms(12))),
            (Outcome::Failed { reason: slow, latency: ms(2_310) }, Some(ms(2_310))),
            (Outcome::Failed { reason: Reason::HttpStatus(503), latency: ms(4) }, Some(ms(4))),
            (Outcome::Failed { reason: Reason::BodyNotJson, latency: ms(5) }, Some(ms(5))),
            (Outcome::Failed { reason: timeout, latency: ms(5_000) }, None),
            (Outcome::Failed { reason: Reason::Refused, latency: ms(1) }, None),
            (Outcome::Blind { reason: blind, latency: ms(3) }, None),
        ];
        for (outcome, want) in cases {
            assert_eq!(answered(&outcome), want, "{outcome:?}");
        }
    }

    fn minute_row(target: &str, at: i64, latencies: &[u64]) -> LatencyRow {
        let mut histogram = Histogram::default();
        for &l in latencies {
            histogram.add(ms(l));
        }
        LatencyRow {
            target: target.into(),
            region: "direct".into(),
            span: Span::Minute,
            start: Timestamp::from_millis(at),
            histogram,
        }
    }

    #[test]
    fn minutes_roll_up_into_their_hours() {
        const H: i64 = 3_600_000;
        let minutes = [
            minute_row("b", 10 * H, &[5]),
            minute_row("a", 10 * H + 60_000, &[10, 10]),
            minute_row("a", 10 * H + 59 * 60_000, &[20]),
            minute_row("a", 11 * H, &[30]),
        ];
        let hours = roll_up(&minutes);
        let got: Vec<(&str, i64, u64)> = hours
            .iter()
            .map(|r| (r.target.as_str(), r.start.millis(), r.histogram.probes()))
            .collect();
        assert_eq!(got, [("a", 10 * H, 3), ("a", 11 * H, 1), ("b", 10 * H, 1)]);
        assert!(hours.iter().all(|r| r.span == Span::Hour));
    }

    #[test]
    fn a_window_counts_each_probe_once_from_hours_or_else_minutes() {
        const H: i64 = 3_600_000;
        let hour = |at: i64, n: u64| LatencyRow {
            span: Span::Hour,
            start: Timestamp::from_millis(at),
            histogram: (0..n).fold(Histogram::default(), |mut h, _| {
                h.add(ms(10));
                h
            }),
            ..minute_row("a", at, &[])
        };
        // Hour 0 is rolled up (its minutes still kept too); hour 1 is not yet.
        let hours = [hour(0, 60)];
        let minutes = [
            minute_row("a", 0, &[10]),
            minute_row("a", H, &[10, 10]),
            minute_row("a", H + 60_000, &[10]),
        ];
        assert_eq!(combine(&hours, &minutes).probes(), 63);
        assert_eq!(combine(&[], &minutes).probes(), 4, "minutes alone");
        assert_eq!(combine(&hours, &[]).probes(), 60, "hours alone");
    }

    #[test]
    fn spans_start_on_whole_minutes_and_hours() {
        let at = Timestamp::parse_sql("2026-12-01 10:17:42.123").unwrap();
        assert_eq!(Span::Minute.start_of(at).to_sql(), "2026-12-01 10:17:00.000");
        assert_eq!(Span::Hour.start_of(at).to_sql(), "2026-12-01 10:00:00.000");
        assert_eq!(Span::from_seconds(60), Some(Span::Minute));
        assert_eq!(Span::from_seconds(3600), Some(Span::Hour));
        assert_eq!(Span::from_seconds(61), None);
    }

    #[test]
    fn a_minute_is_finished_once_it_is_over_and_never_lost() {
        let names = [("a", "direct"), ("b", "eu")];
        let mut minutes = Minutes::new(2);
        let t = |s: i64| Timestamp::from_millis(1_800_000_000_000 + s * 1000);
        // t(0) is a whole minute: 1_800_000_000_000 ms is 30,000,000 minutes.
        minutes.add(0, ms(10), t(1));
        minutes.add(0, ms(30), t(59));
        minutes.add(1, ms(5), t(30));
        assert!(minutes.finish(t(59), false, &names).is_empty(), "the minute is not over");
        assert!(minutes.counting());
        let rows = minutes.finish(t(60), false, &names);
        let got: Vec<(usize, &str, Timestamp, u64)> = rows
            .iter()
            .map(|(i, r)| (*i, r.region.as_str(), r.start, r.histogram.probes()))
            .collect();
        assert_eq!(got, [(0, "direct", t(0), 2), (1, "eu", t(0), 1)]);
        assert!(!minutes.counting());
        assert!(minutes.finish(t(61), false, &names).is_empty(), "finished once");
        // A probe of the next minute handled before the finish: the old minute is kept.
        minutes.add(1, ms(7), t(70));
        minutes.add(1, ms(8), t(125));
        let rows = minutes.finish(t(126), false, &names);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].1.start, rows[0].1.histogram.probes()), (t(60), 1));
        // At a stop the minute in progress is written too.
        let rows = minutes.finish(t(126), true, &names);
        assert_eq!((rows.len(), rows[0].1.start), (1, t(120)));
    }

    #[test]
    fn the_sparkline_keeps_the_last_hour_in_order_one_point_a_minute() {
        let minute = |m: i64| Timestamp::from_millis(m * 60_000);
        let point = |m: i64, p50: u64| Point::new(minute(m), ms(p50), ms(p50 * 2));
        let mut recent = VecDeque::new();
        for m in 0..(SPARKLINE_MINUTES as i64 + 10) {
            add_points(&mut recent, [point(m, 10)]);
        }
        assert_eq!(recent.len(), SPARKLINE_MINUTES);
        assert_eq!(recent[0].minute(), minute(10));
        // Older points (read back at start) after newer ones: in order, the oldest dropped.
        let mut fresh = VecDeque::from([point(5, 10)]);
        add_points(&mut fresh, [point(3, 30), point(4, 40), point(5, 50)]);
        let got: Vec<(Timestamp, Duration)> = fresh.iter().map(|p| (p.minute(), p.p50())).collect();
        let bound = |d| us(bound_us(bucket(d)));
        assert_eq!(
            got,
            [(minute(3), bound(ms(30))), (minute(4), bound(ms(40))), (minute(5), bound(ms(50)))]
        );
        assert_eq!(fresh[2].to_string(), "p50 51 ms p95 102 ms", "bucket bounds");
        assert_eq!(std::mem::size_of::<Point>(), 8);
        assert_eq!(Point::of(minute(1), &Histogram::default()), None, "no answers, no point");
    }

    #[test]
    fn short_latencies_read_naturally() {
        assert_eq!(short(us(300)), "0.3 ms");
        assert_eq!(short(ms(12)), "12 ms");
        assert_eq!(short(ms(2_310)), "2.31 s");
    }
}
